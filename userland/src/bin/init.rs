//! The first program. It starts what the kernel command line names: `init=prog[:arg...],...`
//! (for example `init=hello:a:b,worker`), reports each child's id, and stays alive as the
//! root of the process tree until every environment it started (and every orphan of theirs)
//! has ended, so that some live ancestor can always end any program.
//!
//! Each program gets an equal share of init's resources and CPU tickets: the kernel carves a
//! child's quota out of its parent's (`docs/kernel.md`, "Quotas"), so programs started by
//! init are isolated from one another, whatever they spawn. `prog%N` gives a program N/256 of
//! what is left instead (for example `init=hostile%254:load:idle:1000:20,worker`). init also
//! holds the ARP table and request pages: it grants `arpd` write access to both (`table=<page>
//! requests=<page>`) and every other program read access to the table and write access to the
//! requests (the exos settings `exos.arp=<page> exos.arpreq=<page>`). A leading
//! `!` starts the program privileged (for example `init=!sysbench`): it may then install copy
//! and fallback filters and send unchecked frames.
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

use alloc::vec::Vec;
use alloc::format;
use alloc::string::String;
use exos::abi::{Rights, SPAWN_SHARE_WHOLE, Stat, spawn_flags};
use exos::wait::Waiter;
use exos::{println, sys};

exos::entry!(run);

/// How often init looks whether it is the last environment (ticks of 10 ms).
const CHECK_TICKS: u64 = 5;

fn run(args: exos::Args) -> i32 {
    let Some(list) = args.iter().find_map(|word| word.strip_prefix("init=")) else {
        println!("init: no init= on the kernel command line; nothing to start");
        return 0;
    };
    let specs: Vec<&str> = list.split(',').filter(|s| !s.is_empty()).collect();
    // The ARP table page (arpd writes it, every other program reads it) and the request page
    // (every program may ask arpd there): `exos::arp`. init holds them, so they outlive any
    // one program.
    let arp_pages = sys::page_alloc().ok().zip(sys::page_alloc().ok());
    let arp_settings = arp_pages.map(|(table, requests)| [format!("exos.arp={table}"), format!("exos.arpreq={requests}")]);
    let arpd_settings = arp_pages.map(|(table, requests)| [format!("table={table}"), format!("requests={requests}")]);
    let mut failures = 0;
    for (n, spec) in specs.iter().enumerate() {
        let (privileged, spec) = match spec.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, *spec),
        };
        let mut parts = spec.split(':');
        let first = parts.next().unwrap_or_default();
        let (program, share) = match first.split_once('%') {
            Some((program, share)) => (program, share.parse().unwrap_or(0)),
            // An equal part of what is left for each program still to start, keeping 1/256
            // for init itself (its wakeup predicate).
            None => (first, (SPAWN_SHARE_WHOLE - 1) / (specs.len() - n)),
        };
        let mut words: Vec<&str> = parts.collect();
        let is_arpd = program == "arpd";
        let settings = if is_arpd { &arpd_settings } else { &arp_settings };
        words.extend(settings.iter().flatten().map(String::as_str));
        match sys::env_spawn_with(program, &exos::Args::encode(&words), spawn_flags(privileged, share)) {
            Ok(id) => {
                println!("init: started {program} as env {:08x}", id.0);
                let table_rights = if is_arpd { Rights::READ | Rights::WRITE } else { Rights::READ };
                if let Some((table, requests)) = arp_pages {
                    let granted = sys::page_grant(table, id, table_rights).and_then(|()| sys::page_grant(requests, id, Rights::READ | Rights::WRITE));
                    if let Err(error) = granted {
                        println!("init: {program} gets no ARP table: {error}");
                    }
                }
            }
            Err(error) => {
                println!("init: cannot start {program}: {error}");
                failures += 1;
            }
        }
    }
    // The predicate after the programs: compiling it is charged to init's CPU share, which
    // must not delay their start.
    let mut waiter = Waiter::new();
    while sys::kernel_stat(Stat::Envs) > 1 {
        let slept = waiter.as_mut().map(|waiter| waiter.sleep_until(sys::ticks() + CHECK_TICKS));
        if !matches!(slept, Some(Ok(()))) {
            sys::env_yield();
        }
    }
    failures
}
