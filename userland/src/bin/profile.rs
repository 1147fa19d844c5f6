//! The kernel's profile of where the CPU goes (`xok_abi::profile`), for benchmarks: after
//! `delay` seconds it starts the profile, and `seconds` later prints the time the kernel spent
//! per cause of entry, the idle time, and where the timer found programs running. Needs
//! privilege (`!profile` in init's list). Its lines, for `xok_tools::profile` to read:
//!
//! ```text
//! profile: window <ns> idle <ns> ticks <n> samples <n>
//! profile cause <number> <ns> <name>
//! profile sample <env, hex> <instruction pointer, hex> <count>
//! profile: done
//! ```
//!
//! Arguments: `delay=S` (0), `seconds=S` (10).
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use exos::abi::Stat;
use exos::abi::layout::TICK_HZ;
use exos::abi::profile::{Cause, MAX_SAMPLES, Op, Record};
use exos::wait::Waiter;
use exos::{println, sys};

exos::entry!(run);

fn run(args: exos::Args) -> i32 {
    let delay: u64 = args.parsed("delay").unwrap_or(0);
    let seconds: u64 = args.parsed("seconds").unwrap_or(10).max(1);
    let Some(mut waiter) = Waiter::new() else { return 1 };
    println!("profile: starting in {delay} s, for {seconds} s");
    if waiter.sleep_until(sys::ticks() + delay * TICK_HZ).is_err() {
        return 1;
    }
    if let Err(error) = sys::kernel_profile_start() {
        println!("profile: cannot start: {error:?}");
        return 1;
    }
    let (idle, at, ticks) = (sys::kernel_stat(Stat::IdleNs) as u64, sys::time(), sys::ticks());
    if waiter.sleep_until(sys::ticks() + seconds * TICK_HZ).is_err() {
        return 1;
    }
    let mut causes = [Record::default(); exos::abi::profile::CAUSE_COUNT];
    let Ok(cause_count) = sys::kernel_profile_read(Op::Causes, 0, &mut causes) else { return 1 };
    let (idle, window, ticks) = (sys::kernel_stat(Stat::IdleNs) as u64 - idle, sys::time() - at, sys::ticks() - ticks);
    let mut samples = Vec::new();
    let mut batch = [Record::default(); 256];
    while samples.len() < MAX_SAMPLES {
        match sys::kernel_profile_read(Op::Samples, samples.len(), &mut batch) {
            Ok(0) | Err(_) => break,
            Ok(n) => samples.extend_from_slice(&batch[..n]),
        }
    }
    println!("profile: window {window} idle {idle} ticks {ticks} samples {}", samples.len());
    for record in &causes[..cause_count] {
        let name = match Cause::from_number(record.key) {
            Some(Cause::Kernel) | None => alloc::string::String::from("kernel"),
            Some(Cause::Vector(vector)) => alloc::format!("vector{vector}"),
            Some(Cause::Syscall(call)) => alloc::format!("{call:?}"),
            Some(Cause::NicDoorbell) => alloc::string::String::from("NicDoorbell"),
            Some(Cause::Classify) => alloc::string::String::from("Classify"),
        };
        println!("profile cause {} {} {name}", record.key, record.value);
    }
    let mut counts: BTreeMap<(u64, u64), u32> = BTreeMap::new();
    for sample in &samples {
        *counts.entry((sample.key, sample.value)).or_default() += 1;
    }
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort_by_key(|c| core::cmp::Reverse(c.1));
    for ((env, rip), count) in counts {
        println!("profile sample {env:08x} {rip:x} {count}");
    }
    println!("profile: done");
    0
}
