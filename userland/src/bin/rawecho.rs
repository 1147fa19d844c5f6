//! Answers ICMP echo requests to its address using only the kernel's primitives: a packet
//! ring, a DPF filter and `net_xmit`, sleeping on a wakeup predicate between frames (no
//! polling). It answers the sender's MAC straight from the request; ARP for the address is
//! arpd's (`init=arpd,rawecho`).
//!
//! Arguments: `ip=A.B.C.D` (default 10.0.2.15), `nic=N` (default 0), `seconds=S` (exit after S
//! seconds; default: run forever). On exit it prints how many frames it answered.
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

use dpf::Filter;
use exos::abi::layout::TICK_HZ;
use exos::ring::PacketRing;
use exos::wait::Waiter;
use exos::{println, sys};

exos::entry!(run);

fn run(args: exos::Args) -> i32 {
    let ip = args.value("ip").and_then(exos::ipv4::parse).unwrap_or([10, 0, 2, 15]);
    let nic: usize = args.parsed("nic").unwrap_or(0);
    let seconds: Option<u64> = args.parsed("seconds");
    let info = match sys::nic_info(nic) {
        Ok(info) => info,
        Err(error) => {
            println!("rawecho: nic {nic}: {error}");
            return 1;
        }
    };
    let mut ring = PacketRing::new(32, 2048).expect("packet ring");
    let mut filters = alloc::vec::Vec::new();
    for filter in [Filter::icmp_to(ip)] {
        match ring.install(&filter) {
            Ok(installed) => filters.push(installed),
            Err(error) => {
                println!("rawecho: filter refused: {error}");
                return 1;
            }
        }
    }
    let deadline = seconds.map(|s| sys::ticks() + s * TICK_HZ);
    let mut waiter = Waiter::new().expect("the process's waiter");
    waiter.watch_ring(&ring);
    let mut tx = exos::xmit::TxPool::new(nic);
    let m = info.mac;
    println!(
        "rawecho: nic {nic} ({:?}) mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} ip {} ready",
        info.model,
        m[0],
        m[1],
        m[2],
        m[3],
        m[4],
        m[5],
        exos::ipv4::Dotted(ip)
    );
    let (mut received, mut answered) = (0u64, 0u64);
    loop {
        while let Some(frame) = ring.peek() {
            received += 1;
            if let Some(reply) = exos::echo::reply(frame.frame, info.mac, ip) {
                match tx.send(&reply) {
                    Ok(()) => answered += 1,
                    Err(error) => println!("rawecho: net_xmit failed: {error}"),
                }
            }
            ring.release();
        }
        if deadline.is_some_and(|d| sys::ticks() >= d) {
            break;
        }
        waiter.sleep_until(deadline.unwrap_or(u64::MAX)).expect("wakeup predicate");
    }
    println!("rawecho: received {received}, answered {answered}, ring drops {}", ring.drops());
    0
}
