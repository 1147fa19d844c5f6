//! Runs a program and kills it on request, then reports whether the kernel got everything
//! back: `supervise:PROGRAM[:ARG...]` opens UDP port `9` (its own resources, taken first),
//! notes the kernel's free pages, filters and rings, starts PROGRAM with the ARGs (passing on
//! its ARP table settings and rights), waits for a datagram `kill` on port 9, kills the
//! program, waits until it has ended and notes the counts again:
//! `supervise: before free_pages=.. filters=.. rings=..`, `supervise: during ...` (just before
//! the kill) and `supervise: after ...`.
//! Needs arpd (`init=arpd,supervise:tcpecho`).
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

use alloc::vec::Vec;
use exos::abi::{EnvStatus, Rights, SPAWN_SHARE_WHOLE, Stat, spawn_flags};
use exos::netdev::HostConfig;
use exos::socket::{self, UdpSocket};
use exos::{println, sys};
use smoltcp::time::Duration;

exos::entry!(run);

/// The port `kill` arrives on.
const CONTROL_PORT: u16 = 9;

/// The counts the kernel must get back: free pages, filters, rings.
fn counts() -> [usize; 3] {
    [sys::kernel_stat(Stat::FreePages), sys::kernel_stat(Stat::Filters), sys::kernel_stat(Stat::Rings)]
}

fn report(when: &str, [pages, filters, rings]: [usize; 3]) {
    println!("supervise: {when} free_pages={pages} filters={filters} rings={rings}");
}

fn run(args: exos::Args) -> i32 {
    let mut words = args.iter();
    let Some(program) = words.next() else {
        println!("supervise: usage: supervise:PROGRAM[:ARG...]");
        return 2;
    };
    let mut child_words: Vec<&str> = words.collect();
    if let Err(error) = socket::open(HostConfig::from_args(&args)) {
        println!("supervise: cannot open the network (needs arpd): {error}");
        return 1;
    }
    let control = match UdpSocket::bind(CONTROL_PORT) {
        Ok(control) => control,
        Err(error) => {
            println!("supervise: port {CONTROL_PORT}: {error}");
            return 1;
        }
    };
    let mut buffer = [0u8; 64];
    // arpd starts beside this program: its ring and filter count only once it serves the
    // table, so wait for that (at most 5 s) before the counts are noted.
    let deadline = sys::ticks() + 5 * exos::abi::layout::TICK_HZ;
    if let Ok(table) = exos::arp::ArpTable::get() {
        while !table.is_served() && sys::ticks() < deadline {
            sys::env_yield();
        }
    }
    let before = counts();
    report("before", before);
    let settings: Vec<alloc::string::String> =
        ["arp", "arpreq"].iter().filter_map(|name| exos::rt::setting(name).map(|value| alloc::format!("exos.{name}={value}"))).collect();
    child_words.extend(settings.iter().map(alloc::string::String::as_str));
    let child = match sys::env_spawn_with(program, &exos::Args::encode(&child_words), spawn_flags(false, SPAWN_SHARE_WHOLE / 2)) {
        Ok(child) => child,
        Err(error) => {
            println!("supervise: cannot start {program}: {error}");
            return 1;
        }
    };
    for (setting, rights) in [("arp", Rights::READ), ("arpreq", Rights::READ | Rights::WRITE)] {
        if let Some(page) = exos::rt::setting(setting).and_then(|page| page.parse().ok())
            && let Err(error) = sys::page_grant(page, child, rights)
        {
            println!("supervise: {program} gets no ARP {setting} page: {error}");
        }
    }
    println!("supervise: started {program} as env {:08x}; send 'kill' to port {CONTROL_PORT}", child.0);
    loop {
        match control.recv_from(&mut buffer) {
            Ok((len, _)) if buffer[..len].trim_ascii() == b"kill" => break,
            Ok(_) => {}
            Err(error) => println!("supervise: control: {error}"),
        }
    }
    report("during", counts());
    match sys::env_kill(child) {
        Ok(_) => println!("supervise: killed {program}"),
        Err(error) => println!("supervise: cannot kill {program}: {error}"),
    }
    // The kernel tears an ended environment down in batches: wait (10 ms at a time, 5 s at
    // most) until it has ended and its resources are back.
    let deadline = sys::ticks() + 500;
    while (matches!(sys::env_status(child), Ok(EnvStatus::Alive)) || counts() != before) && sys::ticks() < deadline {
        let _ = socket::poll(&mut [], Some(Duration::from_millis(10)));
    }
    report("after", counts());
    0
}
