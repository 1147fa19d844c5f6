//! Measures syscall costs from ring 3 with the TSC: the null syscall (`env_id`),
//! `page_alloc` + `insert_pte` (+ `remove_pte` + `page_free` to keep memory steady), and
//! `net_xmit` of a full-size frame in two regions with the transmit header check and (when
//! started privileged, `init=!sysbench`) without it, interleaved.
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

use core::sync::atomic::{AtomicU64, Ordering};
use dpf::Filter;
use exos::abi::layout::HEAP_BASE;
use exos::abi::net::{GatherSegment, XMIT_UNCHECKED};
use exos::abi::{Error, PteFlags};
use exos::ring::PacketRing;
use exos::{println, sys};

exos::entry!(run);

const SCRATCH: usize = HEAP_BASE + 0x20_0000_0000;

fn rdtsc() -> u64 {
    // SAFETY: rdtsc reads the time-stamp counter, which xok leaves readable in ring 3.
    unsafe { core::arch::x86_64::_rdtsc() }
}

fn run(_: exos::Args) -> i32 {
    const NULL_CALLS: u64 = 100_000;
    const PAGE_ROUNDS: u64 = 2_000;
    let start = rdtsc();
    for _ in 0..NULL_CALLS {
        core::hint::black_box(sys::env_id());
    }
    let null = (rdtsc() - start) / NULL_CALLS;

    let (mut map_cycles, mut unmap_cycles) = (0, 0);
    for _ in 0..PAGE_ROUNDS {
        let t0 = rdtsc();
        let page = sys::page_alloc().expect("page_alloc");
        // SAFETY: SCRATCH is unused by this program.
        unsafe { sys::insert_pte(SCRATCH, page, PteFlags::WRITE) }.expect("insert_pte");
        let t1 = rdtsc();
        // SAFETY: nothing refers to SCRATCH.
        unsafe { sys::remove_pte(SCRATCH) }.expect("remove_pte");
        sys::page_free(page).expect("page_free");
        let t2 = rdtsc();
        map_cycles += t1 - t0;
        unmap_cycles += t2 - t1;
    }
    println!(
        "sysbench: null syscall {null} cycles; page_alloc+insert_pte {} cycles; remove_pte+page_free {} cycles",
        map_cycles / PAGE_ROUNDS,
        unmap_cycles / PAGE_ROUNDS
    );
    match transmit() {
        Ok(line) => println!("sysbench: {line}"),
        Err(error) => println!("sysbench: net_xmit not measured: {error}"),
    }
    0
}

/// The UDP port the transmit measurement sends from.
const PORT: u16 = 7500;

/// Times `net_xmit` of a 1514-byte UDP frame (42 header bytes, then the payload from another
/// buffer), checked and unchecked in alternate rounds. Each call is timed alone; the program
/// waits for the NIC before the next one, so the queue never fills.
fn transmit() -> Result<alloc::string::String, Error> {
    const ROUNDS: u64 = 20;
    const PER_ROUND: u64 = 50;
    let mac = sys::nic_info(0)?.mac;
    let ring = PacketRing::new(2, 128)?;
    let _port = ring.install(&Filter::udp_port(PORT))?;
    let payload = alloc::vec![0x5au8; 1472];
    let mut header = alloc::vec![0xffu8; 6];
    header.extend_from_slice(&mac);
    header.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0x05, 0xdc, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 2, 15, 10, 0, 2, 255]);
    header.extend_from_slice(&PORT.to_be_bytes());
    header.extend_from_slice(&PORT.to_be_bytes());
    header.extend_from_slice(&[0x05, 0xc8, 0, 0]);
    let segments = [
        GatherSegment { addr: header.as_ptr() as u64, len: header.len() as u64 },
        GatherSegment { addr: payload.as_ptr() as u64, len: payload.len() as u64 },
    ];
    let counter = AtomicU64::new(1);
    let unchecked_allowed = match sys::net_xmit_with(0, &segments, &counter, XMIT_UNCHECKED) {
        Ok(()) => true,
        Err(Error::NotPermitted) => {
            counter.store(0, Ordering::Release);
            false
        }
        Err(error) => return Err(error),
    };
    let send = |flags: usize| -> Result<u64, Error> {
        while counter.load(Ordering::Acquire) != 0 {
            sys::env_yield();
        }
        counter.store(1, Ordering::Release);
        let start = rdtsc();
        sys::net_xmit_with(0, &segments, &counter, flags)?;
        Ok(rdtsc() - start)
    };
    let (mut checked, mut unchecked) = (alloc::vec::Vec::new(), alloc::vec::Vec::new());
    for _ in 0..ROUNDS {
        for _ in 0..PER_ROUND {
            checked.push(send(0)?);
        }
        if unchecked_allowed {
            for _ in 0..PER_ROUND {
                unchecked.push(send(XMIT_UNCHECKED)?);
            }
        }
    }
    while counter.load(Ordering::Acquire) != 0 {
        sys::env_yield();
    }
    let median = |samples: &mut alloc::vec::Vec<u64>| {
        samples.sort_unstable();
        samples[samples.len() / 2]
    };
    let checked = median(&mut checked);
    Ok(if unchecked_allowed {
        let unchecked = median(&mut unchecked);
        alloc::format!(
            "net_xmit of a 1514-byte frame in 2 regions: checked {checked} cycles, unchecked {unchecked} cycles (median of {} each; the check costs {} cycles)",
            ROUNDS * PER_ROUND,
            checked as i64 - unchecked as i64
        )
    } else {
        alloc::format!("net_xmit of a 1514-byte frame in 2 regions: checked {checked} cycles (median of {}; unprivileged, so not unchecked)", ROUNDS * PER_ROUND)
    })
}
