//! Looks an address up in the ARP table (`exos::arp`), waiting on the table's version word
//! until arpd has learned it: `arplookup A.B.C.D [seconds=T]` prints `arplookup: A.B.C.D is at
//! <mac>` or `arplookup: A.B.C.D unknown after T s`.
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

use core::sync::atomic::{AtomicU64, Ordering};
use exos::abi::layout::TICK_HZ;
use exos::arp::ArpTable;
use exos::wait::Waiter;
use exos::{println, sys};

exos::entry!(run);

fn run(args: exos::Args) -> i32 {
    let words = args.to_vec();
    let parts: alloc::vec::Vec<u8> = words.first().map(|w| w.split('.').filter_map(|p| p.parse().ok()).collect()).unwrap_or_default();
    let [a, b, c, d] = parts[..] else {
        println!("arplookup: usage: arplookup A.B.C.D [seconds=T]");
        return 2;
    };
    let seconds: u64 = words.iter().find_map(|w| w.strip_prefix("seconds=")).and_then(|v| v.parse().ok()).unwrap_or(10);
    let table = match ArpTable::get() {
        Ok(table) => table,
        Err(error) => {
            println!("arplookup: no ARP table: {error}");
            return 1;
        }
    };
    let seen = alloc::boxed::Box::new(AtomicU64::new(table.version().load(Ordering::Acquire)));
    let mut waiter = Waiter::new().expect("the process's waiter");
    waiter.watch_change(table.version(), &seen);
    let deadline = sys::ticks() + seconds * TICK_HZ;
    loop {
        seen.store(table.version().load(Ordering::Acquire), Ordering::Release);
        if let Some(m) = table.lookup([a, b, c, d]) {
            println!("arplookup: {a}.{b}.{c}.{d} is at {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5]);
            return 0;
        }
        if sys::ticks() >= deadline {
            println!("arplookup: {a}.{b}.{c}.{d} unknown after {seconds} s");
            return 1;
        }
        if waiter.sleep_until(deadline).is_err() {
            return 1;
        }
    }
}
