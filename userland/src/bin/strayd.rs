//! The stray-packet daemon: holds the catch-all IPv4 fallback filter (every other filter is a
//! subset of it, so it sees exactly the packets nobody else claims) and answers them as a good
//! TCP/IP host does (`exos::stray`): an echo reply to a ping, a RST for a TCP segment for no
//! connection, ICMP port unreachable for a UDP datagram for no port (at most `rate` a second),
//! nothing for the rest, which is counted. Fragmented datagrams are put together first. The transmit check lets it speak only for what no program owns. Started
//! privileged by init (`init=arpd,!strayd,...`).
//!
//! Arguments: those of `exos::netdev::HostConfig`, `rate=N` (ICMP errors a second, 50),
//! `seconds=S` (exit after S seconds; default: run forever). Every 10 s in which something
//! happened, and at exit, it prints its counters.

#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

use dpf::Filter;
use exos::abi::layout::TICK_HZ;
use exos::abi::net::DPF_FALLBACK;
use exos::netdev::HostConfig;
use exos::reassembly::{Reassembled, ReassemblyCounts, Reassembler};
use exos::ring::PacketRing;
use alloc::vec::Vec;
use exos::stray::{Answer, Dropped, answer};
use exos::wait::Waiter;
use exos::xmit::TxPool;
use exos::{println, sys};

exos::entry!(run);

/// Length of an Ethernet header.
const ETHERNET_HEADER: usize = 14;
/// How often the counters are printed when they moved (ticks).
const REPORT_TICKS: u64 = 10 * TICK_HZ;

/// What strayd has seen.
#[derive(Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    echo_replies: u64,
    resets: u64,
    unreachables: u64,
    rate_limited: u64,
    not_for_us: u64,
    resets_received: u64,
    broadcasts: u64,
    other: u64,
    send_failures: u64,
    /// Fragments of datagrams nobody claimed (later fragments come here only when their
    /// first did), put together before they are answered.
    fragments: ReassemblyCounts,
}

fn report(counts: &Counts) {
    println!(
        "strayd: sent {} echo replies, {} resets, {} port unreachables ({} rate-limited); dropped {} not for us, {} resets, {} broadcasts, {} other; {} sends failed",
        counts.echo_replies,
        counts.resets,
        counts.unreachables,
        counts.rate_limited,
        counts.not_for_us,
        counts.resets_received,
        counts.broadcasts,
        counts.other,
        counts.send_failures
    );
    let f = counts.fragments;
    if f.fragments > 0 {
        println!(
            "strayd: fragments {}: {} datagrams reassembled; dropped {} malformed, {} overlapping datagrams, {} timed out, {} evicted; {} repeats ignored",
            f.fragments, f.reassembled, f.malformed, f.overlapping, f.timed_out, f.evicted, f.duplicates
        );
    }
}

fn run(args: exos::Args) -> i32 {
    let host = HostConfig::from_args(&args);
    let rate: u64 = args.parsed("rate").unwrap_or(50);
    let seconds: Option<u64> = args.parsed("seconds");
    let Ok(info) = sys::nic_info(host.nic) else {
        println!("strayd: no nic {}", host.nic);
        return 1;
    };
    let Ok(mut ring) = PacketRing::new(64, 2048) else {
        println!("strayd: no ring");
        return 1;
    };
    let _filter = match ring.install_with(&Filter::ipv4(), DPF_FALLBACK) {
        Ok(filter) => filter,
        Err(error) => {
            println!("strayd: the catch-all filter is refused (start it privileged: !strayd): {error}");
            return 1;
        }
    };
    let Some(mut waiter) = Waiter::new() else { return 1 };
    waiter.watch_ring(&ring);
    let mut tx = TxPool::new(host.nic);
    println!("strayd: {} catch-all ready, {rate} ICMP errors/s at most", exos::ipv4::Dotted(host.ip));
    let deadline = seconds.map(|s| sys::ticks() + s * TICK_HZ);
    let mut counts = Counts::default();
    let mut reassembler = Reassembler::default();
    let (mut reported, mut next_report) = (counts, sys::ticks() + REPORT_TICKS);
    // A token bucket for ICMP errors: `rate` a second, as many at once.
    let (mut tokens, mut refilled) = (rate, sys::ticks());
    loop {
        while let Some(received) = ring.peek() {
            let assembled: Vec<u8>;
            let outcome = reassembler.input(received.frame.get(ETHERNET_HEADER..).unwrap_or_default(), sys::time());
            counts.fragments = reassembler.counts;
            let frame = match outcome {
                Reassembled::Whole => received.frame,
                Reassembled::Complete(datagram) => {
                    assembled = [&received.frame[..ETHERNET_HEADER], &datagram[..]].concat();
                    &assembled
                }
                Reassembled::Pending | Reassembled::Dropped => {
                    ring.release();
                    continue;
                }
            };
            match answer(frame, info.mac, host.ip) {
                Answer::EchoReply(frame) => match tx.send(&frame) {
                    Ok(()) => counts.echo_replies += 1,
                    Err(_) => counts.send_failures += 1,
                },
                Answer::Reset(frame) => match tx.send(&frame) {
                    Ok(()) => counts.resets += 1,
                    Err(_) => counts.send_failures += 1,
                },
                Answer::PortUnreachable(frame) => {
                    let now = sys::ticks();
                    let earned = (now - refilled) * rate / TICK_HZ;
                    if earned > 0 {
                        tokens = (tokens + earned).min(rate);
                        refilled = now;
                    }
                    if tokens == 0 {
                        counts.rate_limited += 1;
                    } else if tx.send(&frame).is_ok() {
                        tokens -= 1;
                        counts.unreachables += 1;
                    } else {
                        counts.send_failures += 1;
                    }
                }
                Answer::Drop(Dropped::NotForUs) => counts.not_for_us += 1,
                Answer::Drop(Dropped::Reset) => counts.resets_received += 1,
                Answer::Drop(Dropped::Broadcast) => counts.broadcasts += 1,
                Answer::Drop(Dropped::Other) => counts.other += 1,
            }
            ring.release();
        }
        let now = sys::ticks();
        if deadline.is_some_and(|deadline| now >= deadline) {
            break;
        }
        if now >= next_report {
            if counts != reported {
                report(&counts);
                reported = counts;
            }
            next_report = now + REPORT_TICKS;
        }
        let wake = deadline.unwrap_or(u64::MAX).min(next_report);
        if waiter.sleep_until(wake).is_err() {
            sys::env_yield();
        }
    }
    report(&counts);
    0
}
