//! Sleeps until it is killed, waking once a minute: the member of the sleeper crowds that the
//! scheduling and quota tests start by the thousand (`hostile load idle`). It is as small as
//! an exos program gets, so a thousand of them fit in one program's share of memory.
#![cfg_attr(target_os = "none", no_std, no_main)]

use exos::sys;
use exos::wait::Waiter;

exos::entry!(run);

/// Ticks between wakeups (one minute).
const WAKE_EVERY: u64 = 6000;

fn run(_: exos::Args) -> i32 {
    let Some(mut waiter) = Waiter::new() else { return 1 };
    loop {
        if waiter.sleep_until(sys::ticks() + WAKE_EVERY).is_err() {
            return 1;
        }
    }
}
