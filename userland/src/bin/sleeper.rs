//! Sleeps until it is killed, waking once a minute: the member of the sleeper crowds that the
//! scheduling and quota tests start by the thousand (`hostile load idle`). It is as small as
//! an exos program gets, so a thousand of them fit in one program's share of memory.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::{AtomicU64, Ordering};
use exos::ring::{deadline_word_clause, install};
use exos::sys;

exos::entry!(run);

/// Ticks between wakeups (one minute).
const WAKE_EVERY: u64 = 6000;

fn run(_: exos::Args) -> i32 {
    let wake_at = AtomicU64::new(0);
    let mut predicate = wkpred::Predicate::default();
    deadline_word_clause(&mut predicate, &wake_at);
    if install(&predicate).is_err() {
        return 1;
    }
    loop {
        wake_at.store(sys::ticks() + WAKE_EVERY, Ordering::Release);
        sys::wk_sleep();
    }
}
