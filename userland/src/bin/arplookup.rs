//! Looks an address up in the ARP table (`exos::arp`), waiting on the table's version word
//! until arpd has learned it: `arplookup A.B.C.D [seconds=T] [resolve]` prints `arplookup:
//! A.B.C.D is at <mac>` or `arplookup: A.B.C.D unknown after T s`. With `resolve` it asks arpd
//! to find the address (a request on the wire); without, it only waits for arpd to learn it.
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

use core::sync::atomic::{AtomicU64, Ordering};
use exos::abi::layout::TICK_HZ;
use exos::arp::ArpTable;
use exos::wait::Waiter;
use exos::ipv4::{self, Dotted};
use exos::{println, sys};

exos::entry!(run);

fn run(args: exos::Args) -> i32 {
    let Some(ip) = args.iter().next().and_then(ipv4::parse) else {
        println!("arplookup: usage: arplookup A.B.C.D [seconds=T]");
        return 2;
    };
    let seconds: u64 = args.parsed("seconds").unwrap_or(10);
    let table = match ArpTable::get() {
        Ok(table) => table,
        Err(error) => {
            println!("arplookup: no ARP table: {error}");
            return 1;
        }
    };
    let mut waiter = Waiter::new().expect("the process's waiter");
    let deadline = sys::ticks() + seconds * TICK_HZ;
    if args.iter().any(|word| word == "resolve") {
        return match table.resolve(ip, &mut waiter, deadline) {
            Ok(m) => {
                println!("arplookup: {} is at {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", Dotted(ip), m[0], m[1], m[2], m[3], m[4], m[5]);
                0
            }
            Err(error) => {
                println!("arplookup: {} unknown after {seconds} s ({error})", Dotted(ip));
                1
            }
        };
    }
    let seen = alloc::boxed::Box::new(AtomicU64::new(table.version().load(Ordering::Acquire)));
    waiter.watch_change(table.version(), &seen);
    loop {
        seen.store(table.version().load(Ordering::Acquire), Ordering::Release);
        if let Some(m) = table.lookup(ip) {
            println!("arplookup: {} is at {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", Dotted(ip), m[0], m[1], m[2], m[3], m[4], m[5]);
            return 0;
        }
        if sys::ticks() >= deadline {
            println!("arplookup: {} unknown after {seconds} s", Dotted(ip));
            return 1;
        }
        if waiter.sleep_until(deadline).is_err() {
            return 1;
        }
    }
}
