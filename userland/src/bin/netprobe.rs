//! Exercises the network interface for the QEMU tests; each mode prints `netprobe: ...` lines
//! the tests parse.
//!
//! - `recv port=P [count=N] [entries=E] [size=S] [hold] [seconds=T]`: a ring of E entries of S
//!   bytes and a filter for UDP port P; prints each frame (`frame len=.. captured=.. nic=..`)
//!   until N frames or T seconds; with `hold` it never hands entries back (to provoke drops);
//!   prints the ring's drop count at the end.
//! - `gather [nic=N]`: sends one broadcast frame gathered from three regions on three pages.
//!
//! Every sending mode sends from the UDP port it sends to, and first takes that port with a
//! filter: the kernel sends only frames whose source port the sender receives on.
//! - `badxmit`: tries `net_xmit` from memory it does not hold and with a bad counter.
//! - `flood port=P count=N [nic=N] [delay_ms=D] [wait_filters=F]`: sends N UDP frames to port
//!   P as fast as the queue takes them, after waiting D ms (and, first, until F filters exist);
//!   prints its rate.
//! - `dirty`: sets up a ring and a filter, queues frames, and exits at once.
//! - `filters count=N`: installs N UDP-port filters (ports 20000..) on one ring and waits for
//!   one frame to port 20000, so the kernel compiles the trie (it logs the compile time).
//!
//! `recv poll` yields between frames instead of sleeping on a predicate. `recv conns=N` also
//! installs, on the same ring, a TCP listen on 10.0.2.15:80 and N connections under it (from
//! 172.16.x.y, ports 1024 and up, as `frames::tcp_connection` numbers them) and waits for the
//! kernel's code to be compiled before `ready`; `recv classify` (privileged) prints the
//! kernel's time classifying received frames (`Cause::Classify`) while it received.
//! `recv quiet` prints no line per frame, only the summary with the receive rate; `flood
//! size=B` sends B-byte frames (60..1514).
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use dpf::Filter;
use exos::abi::{Error, Stat};
use exos::abi::layout::{PAGE_SIZE, TICK_HZ};
use exos::abi::net::GatherSegment;
use exos::abi::profile::{CAUSE_COUNT, CLASSIFY_CAUSE, Op, Record};
use exos::filter::InstalledFilter;
use exos::ring::PacketRing;
use exos::wait::Waiter;
use exos::{println, sys};

exos::entry!(run);

fn run(args: exos::Args) -> i32 {
    let words = args.to_vec();
    match words.first().copied() {
        Some("recv") => recv(&args),
        Some("gather") => gather(args.parsed::<u64>("nic").unwrap_or(0) as usize),
        Some("badxmit") => badxmit(),
        Some("flood") => flood(&args),
        Some("dirty") => dirty(),
        Some("filters") => filters(&args),
        other => {
            println!("netprobe: unknown mode {other:?}");
            2
        }
    }
}

/// A UDP/IPv4 broadcast frame from and to `port` with `payload` (checksums 0: the tests read
/// raw bytes).
fn udp_frame(mac: [u8; 6], port: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
    frame.extend_from_slice(&((28 + payload.len()) as u16).to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 2, 15, 10, 0, 2, 255]);
    frame.extend_from_slice(&port.to_be_bytes());
    frame.extend_from_slice(&port.to_be_bytes());
    frame.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(payload);
    frame
}

/// A UDP port taken with a filter into a small ring, so frames from it may be sent, for as
/// long as the value lives.
struct Claim {
    _filter: InstalledFilter,
    ring: PacketRing,
}

/// Takes UDP port `port`.
fn claim(port: u16) -> Result<Claim, Error> {
    let ring = PacketRing::new(2, 128)?;
    Ok(Claim { _filter: ring.install(&Filter::udp_port(port))?, ring })
}

fn recv(args: &exos::Args) -> i32 {
    let port = args.parsed::<u64>("port").unwrap_or(7000) as u16;
    let count = args.parsed::<u64>("count").unwrap_or(u64::MAX);
    let entries = args.parsed::<u64>("entries").unwrap_or(8) as usize;
    let size = args.parsed::<u64>("size").unwrap_or(2048) as usize;
    let hold = args.flag("hold");
    let quiet = args.flag("quiet");
    let mut ring = match PacketRing::new(entries, size) {
        Ok(ring) => ring,
        Err(error) => {
            println!("netprobe: ring refused: {error}");
            return 1;
        }
    };
    let _filter = match ring.install(&Filter::udp_port(port)) {
        Ok(filter) => filter,
        Err(error) => {
            println!("netprobe: port {port}: filter refused: {error}");
            return 1;
        }
    };
    let _connections = match connections(&ring, args.parsed::<u64>("conns").unwrap_or(0) as usize) {
        Ok(installed) => installed,
        Err(error) => {
            println!("netprobe: port {port}: connection filters refused: {error}");
            return 1;
        }
    };
    let classify = args.flag("classify");
    let classify_start = if classify { classify_ns() } else { 0 };
    let deadline = sys::ticks() + args.parsed::<u64>("seconds").unwrap_or(10) * TICK_HZ;
    // `poll` yields instead of sleeping (for measuring the receive ceiling without wakeups).
    let poll = args.flag("poll");
    let mut waiter = Waiter::new().expect("the process's waiter");
    waiter.watch_ring(&ring);
    println!("netprobe: port {port} ready");
    let mut seen = 0;
    let mut held = 0;
    let (mut first_ns, mut last_ns) = (0u64, 0u64);
    while seen < count && sys::ticks() < deadline {
        while let Some(frame) = ring.peek() {
            if held == entries {
                break;
            }
            seen += 1;
            if first_ns == 0 {
                first_ns = frame.timestamp_ns;
            }
            last_ns = frame.timestamp_ns;
            if quiet {
                ring.release();
                continue;
            }
            println!(
                "netprobe: port {port} frame len={} captured={} nic={} first={:02x?}",
                frame.original_len,
                frame.frame.len(),
                frame.nic,
                frame.frame.get(42..frame.frame.len().min(46)).unwrap_or(&[])
            );
            if hold {
                held += 1;
                break;
            }
            ring.release();
        }
        if hold && held == entries {
            // Every entry is ours: the kernel must drop what comes next.
            sys::env_yield();
            if sys::ticks() >= deadline {
                break;
            }
            continue;
        }
        if poll {
            sys::env_yield();
        } else {
            waiter.sleep_until(deadline).expect("wakeup predicate");
        }
    }
    let rate = (seen.saturating_sub(1)) * 1_000_000_000 / (last_ns - first_ns).max(1);
    println!("netprobe: port {port} done: {seen} frames, {} dropped, {rate} frames/s", ring.drops());
    if classify {
        let frames = seen + ring.drops() as u64;
        let ns = classify_ns().saturating_sub(classify_start);
        println!("netprobe: port {port} classify: {ns} ns for {frames} frames, {} ns per frame", ns / frames.max(1));
    }
    0
}

/// Installs, on `ring`, a TCP listen on 10.0.2.15:80 and `count` connections under it, then
/// waits (up to 30 s) until the kernel's compiled code is current.
fn connections(ring: &PacketRing, count: usize) -> Result<Vec<InstalledFilter>, Error> {
    let mut installed = Vec::new();
    if count == 0 {
        return Ok(installed);
    }
    const LOCAL: [u8; 4] = [10, 0, 2, 15];
    installed.push(ring.install(&Filter::tcp_listen(LOCAL, 80))?);
    for i in 0..count {
        let remote = [172, 16 + (i >> 16) as u8, (i >> 8) as u8, i as u8];
        installed.push(ring.install(&Filter::tcp_connection(LOCAL, 80, remote, 1024 + (i % 60_000) as u16))?);
    }
    let deadline = sys::ticks() + 30 * TICK_HZ;
    while sys::kernel_stat(Stat::DpfCodeStale) != 0 && sys::ticks() < deadline {
        sys::env_yield();
    }
    Ok(installed)
}

/// The kernel's time classifying received frames since boot (ns; 0 without privilege).
fn classify_ns() -> u64 {
    let mut causes = [Record::default(); CAUSE_COUNT];
    let Ok(count) = sys::kernel_profile_read(Op::Causes, 0, &mut causes) else { return 0 };
    causes[..count].iter().find(|record| record.key == CLASSIFY_CAUSE).map_or(0, |record| record.value)
}

/// Sends `frame` from `segments` and waits for the NIC to finish.
fn send_and_wait(nic: usize, segments: &[GatherSegment]) -> Result<(), Error> {
    let counter = AtomicU64::new(1);
    sys::net_xmit(nic, segments, &counter)?;
    while counter.load(Ordering::Acquire) != 0 {
        sys::env_yield();
    }
    Ok(())
}

fn gather(nic: usize) -> i32 {
    let mac = sys::nic_info(nic).map(|i| i.mac).unwrap_or_default();
    let frame = udp_frame(mac, 7777, b"gathered from three regions on three pages!");
    let Ok(_port) = claim(7777) else {
        println!("netprobe: gather: port 7777 taken");
        return 1;
    };
    // Three page-aligned buffers; the frame is cut into three unequal parts.
    let mut pages = vec![0u8; 4 * PAGE_SIZE];
    let base = pages.as_ptr() as usize;
    let first_page = base.next_multiple_of(PAGE_SIZE) - base;
    let cuts = [(0, 14), (14, 42), (42, frame.len())];
    let mut segments = Vec::new();
    for (n, (from, to)) in cuts.iter().enumerate() {
        let at = first_page + n * PAGE_SIZE + 100 * n;
        pages[at..at + (to - from)].copy_from_slice(&frame[*from..*to]);
        segments.push(GatherSegment { addr: (base + at) as u64, len: (to - from) as u64 });
    }
    match send_and_wait(nic, &segments) {
        Ok(()) => println!("netprobe: gather sent {} bytes in 3 regions", frame.len()),
        Err(error) => println!("netprobe: gather failed: {error}"),
    }
    0
}

fn badxmit() -> i32 {
    let counter = AtomicU64::new(1);
    let ours = counter.as_ptr() as usize;
    let cases: [(&str, GatherSegment, usize); 4] = [
        ("kernel memory", GatherSegment { addr: 0x10_0000, len: 60 }, ours),
        ("unmapped memory", GatherSegment { addr: 0x30_0000_0000, len: 60 }, ours),
        ("counter in kernel memory", GatherSegment { addr: ours as u64, len: 60 }, 0x10_0000),
        ("counter in read-only memory", GatherSegment { addr: ours as u64, len: 60 }, exos::abi::layout::USER_BASE),
    ];
    for (name, segment, counter_va) in cases {
        let result = sys::raw(exos::abi::Syscall::NetXmit as usize, [0, &segment as *const _ as usize, 1, counter_va, 0]);
        let verdict = match Error::from_code(result.0) {
            Some(error) => alloc::format!("refused ({error})"),
            None => alloc::string::String::from("ACCEPTED"),
        };
        println!("netprobe: badxmit {name}: {verdict}");
    }
    0
}

fn flood(args: &exos::Args) -> i32 {
    let nic = args.parsed::<u64>("nic").unwrap_or(0) as usize;
    let port = args.parsed::<u64>("port").unwrap_or(9000) as u16;
    let count = args.parsed::<u64>("count").unwrap_or(1000);
    let mac = sys::nic_info(nic).map(|i| i.mac).unwrap_or_default();
    let size = args.parsed::<u64>("size").unwrap_or(60).clamp(60, 1514) as usize;
    let frame = udp_frame(mac, port, &vec![0x5a; size - 42]);
    // `wait_filters=N`: take the port only once N filters exist, so that another sender's
    // filter makes the shape and its compile (whose CPU time is charged to whoever caused it)
    // is not this sender's.
    let wait_filters = args.parsed::<u64>("wait_filters").unwrap_or(0) as usize;
    let give_up = sys::time() + 10_000_000_000;
    while sys::kernel_stat(Stat::Filters) < wait_filters && sys::time() < give_up {
        sys::env_yield();
    }
    let _port = match claim(port) {
        Ok(ring) => ring,
        Err(error) => {
            println!("netprobe: flood {port}: cannot take the port: {error}");
            return 1;
        }
    };
    // One in-flight counter per queued frame is not needed: the frame bytes never change, so
    // every send shares one buffer and one counter.
    let counter = AtomicU64::new(0);
    let segment = [GatherSegment { addr: frame.as_ptr() as u64, len: frame.len() as u64 }];
    // `delay_ms`: let a neighbour's load start first (the fairness tests).
    let ready = sys::time() + args.parsed::<u64>("delay_ms").unwrap_or(0) * 1_000_000;
    while sys::time() < ready {
        sys::env_yield();
    }
    let start = sys::time();
    let (mut sent, mut full) = (0u64, 0u64);
    while sent < count {
        counter.fetch_add(1, Ordering::AcqRel);
        match sys::net_xmit(nic, &segment, &counter) {
            Ok(()) => sent += 1,
            Err(Error::QueueFull) => {
                counter.fetch_sub(1, Ordering::AcqRel);
                full += 1;
                sys::env_yield();
            }
            Err(error) => {
                println!("netprobe: flood {port}: {error}");
                return 1;
            }
        }
    }
    while counter.load(Ordering::Acquire) != 0 {
        sys::env_yield();
    }
    let elapsed = (sys::time() - start).max(1);
    println!("netprobe: flood {port} sent {sent} frames in {} us ({} frames/s), queue full {full} times", elapsed / 1000, sent * 1_000_000_000 / elapsed);
    0
}

fn dirty() -> i32 {
    let ring = claim(6000).expect("port 6000");
    let mac = sys::nic_info(0).map(|i| i.mac).unwrap_or_default();
    let frame = udp_frame(mac, 6000, &[1; 1000]);
    let counter = AtomicU64::new(0);
    let segment = [GatherSegment { addr: frame.as_ptr() as u64, len: frame.len() as u64 }];
    let mut queued = 0;
    while sys::net_xmit(0, &segment, &counter).is_ok() && queued < 40 {
        queued += 1;
    }
    println!("netprobe: dirty exit with a ring ({}), a filter and {queued} frames queued", ring.ring.id());
    // Ends here, without giving anything back: the kernel must clean up.
    sys::env_exit(0)
}

fn filters(args: &exos::Args) -> i32 {
    let count = args.parsed::<u64>("count").unwrap_or(10) as u16;
    let ring = PacketRing::new(4, 2048).expect("ring");
    let mut installed = Vec::new();
    for n in 0..count {
        match ring.install(&Filter::udp_port(20000 + n)) {
            Ok(filter) => installed.push(filter),
            Err(error) => {
                println!("netprobe: filter {n} refused: {error}");
                return 1;
            }
        }
    }
    let deadline = sys::ticks() + 30 * TICK_HZ;
    let mut waiter = Waiter::new().expect("the process's waiter");
    waiter.watch_ring(&ring);
    println!("netprobe: {count} filters installed");
    while ring.peek().is_none() && sys::ticks() < deadline {
        waiter.sleep_until(deadline).expect("wakeup predicate");
    }
    println!("netprobe: filters got a frame: {}", ring.peek().is_some());
    0
}
