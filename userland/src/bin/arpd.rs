//! arpd, the ARP daemon: the one program that holds the machine's ARP filter. It answers
//! requests for the machine's address, learns the senders of the requests and replies it
//! receives (unless they are junk: this machine's own address, a zero, broadcast or multicast
//! hardware address, a sender off the network; `exos::arp::Station::check`) into the ARP
//! table page (layout `xok_abi::arp`) that every program reads through
//! `exos::arp`, forgets entries it has not heard from for `age` seconds, announces the
//! address with a gratuitous ARP when it starts, and sends the requests programs ask for in
//! the request page (at most one per address per half second, and 20 a second in all: the
//! page is writable by every program, so its contents are only hints).
//!
//! Arguments: `table=<page>` and `requests=<page>` (init allocates both and grants arpd write
//! access), `ip=A.B.C.D` (default 10.0.2.15), `nic=N`, `age=S` (default 300), `seconds=T`
//! (stop after T seconds; default: run until killed).
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

use core::sync::atomic::{AtomicU64, Ordering};
use dpf::Filter;
use exos::abi::layout::TICK_HZ;
use exos::arp::{ArpTable, Neighbours, Station, Unlearnable};
use exos::ring::PacketRing;
use exos::wait::Waiter;
use exos::xmit::TxPool;
use exos::ipv4::{self, Dotted};
use exos::{echo, println, sys};

exos::entry!(run);

/// Requests arpd sends for programs in any one second, at most.
const MAX_REQUESTS_PER_SECOND: usize = 20;

fn run(args: exos::Args) -> i32 {
    let ip = args.value("ip").and_then(ipv4::parse).unwrap_or([10, 0, 2, 15]);
    let nic: usize = args.parsed("nic").unwrap_or(0);
    let table: Option<usize> = args.parsed("table");
    let requests: Option<usize> = args.parsed("requests");
    let age: u64 = args.parsed("age").unwrap_or(300);
    let seconds: Option<u64> = args.parsed("seconds");
    let Some(table) = table.and_then(|page| ArpTable::writable(page, requests).ok()) else {
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
            println!("arpd: ARP for {} is taken: {error}", Dotted(ip));
            return 1;
        }
    };
    let mut tx = TxPool::new(nic);
    if let Err(error) = tx.send(&echo::gratuitous_arp(mac, ip)) {
        println!("arpd: announcement refused: {error}");
    }
    table.mark_served();
    println!("arpd: {} announced; table ready", Dotted(ip));
    let mut waiter = Waiter::new().expect("the process's waiter");
    waiter.watch_ring(&ring);
    let requests_seen = alloc::boxed::Box::new(AtomicU64::new(0));
    if let Some(counter) = table.request_counter() {
        waiter.watch_change(counter, &requests_seen);
    }
    let mut asked: alloc::vec::Vec<([u8; 4], u64)> = alloc::vec::Vec::new();
    let mut ring = ring;
    let mut neighbours = Neighbours::default();
    let stop = seconds.map(|s| sys::ticks() + s * TICK_HZ);
    let (mut answered, mut learned, mut requested, mut refused) = (0u64, 0u64, 0u64, 0u64);
    let station = Station { ip, prefix: exos::netdev::HostConfig::from_args(&args).prefix, mac };
    let mut next_conflict_log = 0;
    while stop.is_none_or(|stop| sys::ticks() < stop) {
        while let Some(received) = ring.peek() {
            if let Some((sender, sender_mac)) = echo::arp_sender(received.frame) {
                match neighbours.learn_from(&station, sender, sender_mac, sys::ticks()) {
                    Ok((slot, entry)) => {
                        table.store(slot, entry);
                        learned += 1;
                    }
                    Err(Unlearnable::OurAddress) => {
                        refused += 1;
                        if sender_mac != mac && sys::ticks() >= next_conflict_log {
                            println!("arpd: {} at {sender_mac:02x?} claims this machine's address; not learned", Dotted(sender));
                            next_conflict_log = sys::ticks() + 10 * TICK_HZ;
                        }
                    }
                    Err(_) => refused += 1,
                }
            }
            if let Some(reply) = echo::reply(received.frame, mac, ip)
                && tx.send(&reply).is_ok()
            {
                answered += 1;
            }
            ring.release();
        }
        if let Some(counter) = table.request_counter() {
            requests_seen.store(counter.load(Ordering::Acquire), Ordering::Release);
        }
        let now = sys::ticks();
        asked.retain(|(_, at)| now.saturating_sub(*at) < TICK_HZ);
        for wanted in table.take_requests() {
            let recently = asked.iter().any(|(ip, at)| *ip == wanted && now.saturating_sub(*at) < TICK_HZ / 2);
            if recently || asked.len() >= MAX_REQUESTS_PER_SECOND || table.lookup(wanted).is_some() {
                continue;
            }
            if tx.send(&echo::arp_request(mac, ip, wanted)).is_ok() {
                asked.push((wanted, now));
                requested += 1;
            }
        }
        for slot in neighbours.expire(sys::ticks(), age * TICK_HZ) {
            table.store(slot, Default::default());
        }
        let next = (sys::ticks() + TICK_HZ).min(stop.unwrap_or(u64::MAX));
        if waiter.sleep_until(next).is_err() {
            return 1;
        }
    }
    println!("arpd: answered {answered} requests, learned {learned} times, refused {refused} senders, asked {requested} times for programs");
    0
}
