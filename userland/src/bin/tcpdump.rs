//! A packet capture: a privileged copy filter that matches every frame, received or sent (the
//! owners still get theirs; the kernel copies sent frames only while a copy filter exists),
//! one line per frame in tcpdump's style (`tcpdump: <seconds since boot> <what>`,
//! `exos::dump`), chosen by an optional expression, and optionally a pcap capture carried
//! over the console (`exos::pcap`; `xok-tools pcap` or `make run PCAP=file` writes the file).
//! When it is not running, no copy filter exists and nothing is slowed. Start it privileged:
//! `init=arpd,!tcpdump:tcp:port=80:pcap,httpd`.
//!
//! Arguments: expression words (`tcp`, `udp`, `icmp`, `arp`, `host=A.B.C.D`, `port=N`; all
//! must hold), `pcap` (emit the capture), `quiet` (no text lines), `count=N` (stop after N
//! frames), `seconds=S` (stop after S seconds), `nic=N` (0).
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

use dpf::Filter;
use exos::abi::layout::TICK_HZ;
use exos::abi::net::DPF_COPY;
use exos::dump::{Expression, describe};
use exos::ring::PacketRing;
use exos::wait::Waiter;
use exos::{pcap, println, sys};

exos::entry!(run);

/// Words that are options, not expression terms.
fn is_option(word: &str) -> bool {
    matches!(word, "pcap" | "quiet") || ["count=", "seconds=", "nic="].iter().any(|prefix| word.starts_with(prefix))
}

fn run(args: exos::Args) -> i32 {
    let expression = match Expression::parse(args.iter().filter(|word| !is_option(word))) {
        Ok(expression) => expression,
        Err(word) => {
            println!("tcpdump: {word:?} is not an expression term (tcp, udp, icmp, arp, host=A.B.C.D, port=N)");
            return 2;
        }
    };
    let capture = args.iter().any(|word| word == "pcap");
    let quiet = args.iter().any(|word| word == "quiet");
    let count: u64 = args.parsed("count").unwrap_or(u64::MAX);
    let deadline = args.parsed::<u64>("seconds").map(|seconds| sys::ticks() + seconds * TICK_HZ);
    let Ok(mut ring) = PacketRing::new(256, 2048) else {
        println!("tcpdump: no ring");
        return 1;
    };
    let _copy = match ring.install_with(&Filter::everything(), DPF_COPY) {
        Ok(filter) => filter,
        Err(error) => {
            println!("tcpdump: the copy filter is refused (start it privileged: !tcpdump): {error}");
            return 1;
        }
    };
    let Some(mut waiter) = Waiter::new() else { return 1 };
    waiter.watch_ring(&ring);
    println!("tcpdump: listening on nic {}, {expression:?}{}", args.parsed::<usize>("nic").unwrap_or(0), if capture { ", pcap on the console" } else { "" });
    if capture {
        let _ = sys::console_write(pcap::line(&pcap::file_header()).as_bytes());
    }
    let mut shown = 0u64;
    while shown < count {
        while let Some(received) = ring.peek() {
            if expression.matches(received.frame) && shown < count {
                shown += 1;
                if !quiet {
                    let micros = received.timestamp_ns / 1000;
                    println!("tcpdump: {}.{:06} {}", micros / 1_000_000, micros % 1_000_000, describe(received.frame));
                }
                if capture {
                    let record = pcap::record(received.timestamp_ns, received.original_len, received.frame);
                    // One write per record, so no other program's output lands inside the line.
                    let _ = sys::console_write(pcap::line(&record).as_bytes());
                }
            }
            ring.release();
        }
        if deadline.is_some_and(|deadline| sys::ticks() >= deadline) {
            break;
        }
        if waiter.sleep_until(deadline.unwrap_or(u64::MAX)).is_err() {
            sys::env_yield();
        }
    }
    println!("tcpdump: {shown} frames, {} dropped by the ring", ring.drops());
    0
}
