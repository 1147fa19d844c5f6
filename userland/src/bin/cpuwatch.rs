//! Reports the machine's idle share from the kernel's accounting (`Stat::IdleNs`, time spent
//! halted with nothing to run), its free pages and the frames the kernel could give no one:
//! every `period` seconds (2), `cpuwatch: idle P% over S s, N free pages, U unmatched frames,
//! H fragments held (D dropped)`. For benchmarks (how much of the CPU a server left unused),
//! load tests (whether memory comes back) and a person at the console. It sleeps between
//! reports.
//!
//! Arguments: `period=S` (2), `count=N` (stop after N reports; default: run forever).
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

use exos::abi::Stat;
use exos::abi::layout::TICK_HZ;
use exos::wait::Waiter;
use exos::{println, sys};

exos::entry!(run);

fn run(args: exos::Args) -> i32 {
    let period: u64 = args.parsed("period").unwrap_or(2).max(1);
    let count: u64 = args.parsed("count").unwrap_or(u64::MAX);
    let Some(mut waiter) = Waiter::new() else { return 1 };
    let (mut idle, mut at) = (sys::kernel_stat(Stat::IdleNs) as u64, sys::time());
    for _ in 0..count {
        if waiter.sleep_until(sys::ticks() + period * TICK_HZ).is_err() {
            return 1;
        }
        let (idle_now, now) = (sys::kernel_stat(Stat::IdleNs) as u64, sys::time());
        let share = (idle_now - idle) as f64 * 100.0 / (now - at).max(1) as f64;
        println!(
            "cpuwatch: idle {share:.1}% over {:.1} s, {} free pages, {} unmatched frames, {} fragments held ({} dropped)",
            (now - at) as f64 / 1e9,
            sys::kernel_stat(Stat::FreePages),
            sys::kernel_stat(Stat::UnmatchedFrames),
            sys::kernel_stat(Stat::FragmentsHeld),
            sys::kernel_stat(Stat::FragmentsDropped)
        );
        (idle, at) = (idle_now, now);
    }
    0
}
