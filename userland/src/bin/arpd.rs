//! arpd, the ARP daemon: the one program that holds the machine's ARP filter. It answers
//! requests for the machine's address, learns every sender of the requests and replies it
//! receives into the ARP table page (layout `xok_abi::arp`) that every program reads through
//! `exos::arp`, forgets entries it has not heard from for `age` seconds, and announces the
//! address with a gratuitous ARP when it starts.
//!
//! Arguments: `table=<page>` (the table page; init allocates it and grants arpd write access),
//! `ip=A.B.C.D` (default 10.0.2.15), `nic=N`, `age=S` (default 300), `seconds=T` (stop after
//! T seconds; default: run until killed).
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

use dpf::Filter;
use exos::abi::layout::TICK_HZ;
use exos::arp::{ArpTable, Neighbours};
use exos::ring::PacketRing;
use exos::wait::Waiter;
use exos::xmit::TxPool;
use exos::{echo, println, sys};

exos::entry!(run);

fn run(args: exos::Args) -> i32 {
    let (mut ip, mut nic, mut table, mut age) = ([10, 0, 2, 15], 0usize, None::<usize>, 300u64);
    let mut seconds: Option<u64> = None;
    for word in args.iter() {
        match word.split_once('=') {
            Some(("ip", v)) => {
                let parts: alloc::vec::Vec<u8> = v.split('.').filter_map(|p| p.parse().ok()).collect();
                if let [a, b, c, d] = parts[..] {
                    ip = [a, b, c, d];
                }
            }
            Some(("nic", v)) => nic = v.parse().unwrap_or(nic),
            Some(("table", v)) => table = v.parse().ok(),
            Some(("age", v)) => age = v.parse().unwrap_or(age),
            Some(("seconds", v)) => seconds = v.parse().ok(),
            _ => println!("arpd: ignoring argument {word}"),
        }
    }
    let Some(table) = table.and_then(|page| ArpTable::writable(page).ok()) else {
        println!("arpd: no table page (init passes table=<page>)");
        return 1;
    };
    let Ok(mac) = sys::nic_info(nic).map(|info| info.mac) else {
        println!("arpd: no nic {nic}");
        return 1;
    };
    let Ok(ring) = PacketRing::new(32, 128) else {
        println!("arpd: no ring");
        return 1;
    };
    let _filter = match ring.install(&Filter::arp_for(ip)) {
        Ok(filter) => filter,
        Err(error) => {
            println!("arpd: ARP for {}.{}.{}.{} is taken: {error}", ip[0], ip[1], ip[2], ip[3]);
            return 1;
        }
    };
    let mut tx = TxPool::new(nic);
    if let Err(error) = tx.send(&echo::gratuitous_arp(mac, ip)) {
        println!("arpd: announcement refused: {error}");
    }
    println!("arpd: {}.{}.{}.{} announced; table ready", ip[0], ip[1], ip[2], ip[3]);
    let mut waiter = Waiter::new().expect("the process's waiter");
    waiter.watch_ring(&ring);
    let mut ring = ring;
    let mut neighbours = Neighbours::default();
    let stop = seconds.map(|s| sys::ticks() + s * TICK_HZ);
    let (mut answered, mut learned) = (0u64, 0u64);
    while stop.is_none_or(|stop| sys::ticks() < stop) {
        while let Some(received) = ring.peek() {
            if let Some((sender, sender_mac)) = echo::arp_sender(received.frame) {
                let (slot, entry) = neighbours.learn(sender, sender_mac, sys::ticks());
                table.store(slot, entry);
                learned += 1;
            }
            if let Some(reply) = echo::reply(received.frame, mac, ip)
                && tx.send(&reply).is_ok()
            {
                answered += 1;
            }
            ring.release();
        }
        for slot in neighbours.expire(sys::ticks(), age * TICK_HZ) {
            table.store(slot, Default::default());
        }
        let next = (sys::ticks() + TICK_HZ).min(stop.unwrap_or(u64::MAX));
        if waiter.sleep_until(next).is_err() {
            return 1;
        }
    }
    println!("arpd: answered {answered} requests, learned {learned} times");
    0
}
