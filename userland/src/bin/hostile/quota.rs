//! Attacks on the kernel's resource accounting (issue 7): heap exhaustion through each kind of
//! kernel object, filter floods, shape churn and leaks, catch-all squatting, quota laundering,
//! orphans, compile storms and spawner floods. Each runs in a child (whose quota is carved out
//! of this program's) or a tree of them; the driver checks the outcome and, at the end, that
//! every counter is back where it started. `load` makes the spinner, sleeper and flooder
//! crowds that the QEMU tests time a neighbour against.

use super::{Report, start_child, wait_for};
use alloc::format;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use dpf::{Atom, Base, Filter, FilterBuilder, Width};
use exos::abi::layout::{PAGE_SIZE, USER_BASE};
use exos::abi::net::GatherSegment;
use exos::abi::{EnvId, EnvStatus, Error, PteFlags, Rights, SPAWN_SHARE_WHOLE, Stat, spawn_flags};
use exos::filter::InstalledFilter;
use exos::ring::PacketRing;
use exos::wait::{deadline_word_clause, install};
use exos::{println, sys};

/// Where children map pages for rings (far from everything else).
const RING_AREA: usize = USER_BASE + 0x40_0000_0000;
/// A private ethertype for filters of made-up shapes (not IPv4 or ARP, so not broad).
const PRIVATE_ETHERTYPE: u16 = 0x88b5;

/// The kernel's counters that must come back after every attack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Counters {
    free_pages: usize,
    filters: usize,
    shapes: usize,
    envs: usize,
    zombies: usize,
    my_pages: usize,
    my_heap: usize,
}

impl Counters {
    fn now() -> Counters {
        Counters {
            free_pages: sys::kernel_stat(Stat::FreePages),
            filters: sys::kernel_stat(Stat::Filters),
            shapes: sys::kernel_stat(Stat::Shapes),
            envs: sys::kernel_stat(Stat::Envs),
            zombies: sys::kernel_stat(Stat::Zombies),
            my_pages: sys::kernel_stat(Stat::MyPages),
            my_heap: sys::kernel_stat(Stat::MyHeap),
        }
    }
}

/// Every attack of this module, from the driver.
pub fn attacks(r: &mut Report) {
    squatting(r);
    let before = Counters::now();
    let heap_size = sys::kernel_stat(Stat::HeapSize);
    for (name, attack) in [
        ("heap exhaustion through filters (filter flood)", "exhaust-filters"),
        ("heap exhaustion through filter shapes", "exhaust-shapes"),
        ("heap exhaustion through ring page lists (a tree of children)", "exhaust-rings"),
        ("heap exhaustion through page holder entries", "exhaust-grants"),
        ("heap exhaustion through filter references", "exhaust-refs"),
        ("compile storm: predicate installs", "compile-storm"),
        ("compile storm: shape churn", "shape-churn"),
        ("spawner flood", "spawn-flood"),
    ] {
        in_child(r, name, attack);
    }
    laundering(r);
    orphans(r);
    let after = Counters::now();
    let detail = format!("before {before:?}, after {after:?}");
    r.outcome("nothing leaks after the resource attacks", after == before, &detail);
    let peak = sys::kernel_stat(Stat::HeapPeak);
    r.outcome("the kernel heap never fills", peak < heap_size, &format!("peak {peak} of {heap_size} bytes"));
    afterwards(r);
}

/// Exclusive filters that would take a whole protocol from everyone.
fn squatting(r: &mut Report) {
    let Ok(ring) = PacketRing::new(4, 2048) else { return r.outcome("catch-all squatting", false, "no ring") };
    for (name, filter) in [
        ("squat on every frame", Filter::everything()),
        ("squat on all IPv4", Filter::ipv4()),
        ("squat on all ARP", Filter::arp()),
        ("squat on all TCP", FilterBuilder::new().ip_protocol(6).build().unwrap_or_default()),
    ] {
        r.expect_error(name, sys::dpf_insert(&filter.to_bytes(), ring.id(), 0), &[Error::NotPermitted]);
    }
}

/// Runs `hostile <attack>` and expects it to exit with 0 (it stopped at the limit it should).
fn in_child(r: &mut Report, name: &str, attack: &str) {
    match start_child(attack, &[]).map(wait_for) {
        Ok(Some(EnvStatus::Exited(0))) => r.outcome(name, true, "stopped at its quota; see its line"),
        other => r.outcome(name, false, &format!("{other:?}")),
    }
}

/// A child allocates pages, grants them to this program and exits: its quota must stay lent
/// (a zombie account) until the pages are free, so nothing is laundered.
fn laundering(r: &mut Report) {
    let mine = sys::kernel_stat(Stat::MyPages);
    let me = sys::env_id().0;
    let arg = format!("{me}");
    let outcome = start_child("launder", &[&arg]).map(wait_for);
    let while_held = sys::kernel_stat(Stat::MyPages);
    let zombies = sys::kernel_stat(Stat::Zombies);
    // Free every page the child granted (the ones this program holds and has not mapped).
    let mut freed = 0;
    for page in 0..(1usize << 18) {
        if sys::page_grant(page, EnvId(me), Rights::READ).is_ok() && sys::page_free(page).is_ok() {
            freed += 1;
        }
    }
    let after = sys::kernel_stat(Stat::MyPages);
    let ok = matches!(outcome, Ok(Some(EnvStatus::Exited(0)))) && freed > 0 && while_held < mine && zombies >= 1 && after == mine;
    let detail = format!(
        "received {freed} pages; available pages {mine} before, {while_held} while held (zombies {zombies}), {after} once freed"
    );
    r.outcome("launder pages through a grant and an exit", ok, &detail);
}

/// A child starts spinners and a memory hog, then exits: this program (their grand-parent) must
/// still be able to end them all.
fn orphans(r: &mut Report) {
    let envs = sys::kernel_stat(Stat::Envs);
    let child = match start_child("orphan-maker", &[]) {
        Ok(child) => child,
        Err(error) => return r.outcome("orphans outlive their parent", false, &format!("{error}")),
    };
    let status = wait_for(child);
    let orphans = sys::kernel_stat(Stat::Envs).saturating_sub(envs);
    let killed = sys::env_kill(child);
    let left = sys::kernel_stat(Stat::Envs);
    let ok = status == Some(EnvStatus::Exited(0)) && orphans == 4 && killed == Ok(4) && left == envs;
    r.outcome("orphans outlive their parent", ok, &format!("{orphans} orphans; env_kill of the dead parent ended {killed:?}"));
}

/// After everything: this program can still start a program and install filters of a new shape.
fn afterwards(r: &mut Report) {
    let started = sys::env_spawn("hello", &exos::Args::encode(&["after-the-attacks"])).map(wait_for);
    r.outcome("a new program starts after the attacks", matches!(started, Ok(Some(EnvStatus::Exited(0)))), &format!("{started:?}"));
    let ok = PacketRing::new(4, 2048).and_then(|ring| {
        let id = sys::dpf_insert(&shape_filter(700).to_bytes(), ring.id(), 0)?;
        sys::dpf_delete(id)
    });
    r.outcome("a new filter shape installs after the attacks", ok.is_ok(), &format!("{ok:?}"));
}

/// A filter of a shape of its own for each `n`, disjoint from the others: the private
/// ethertype, `n` in the two bytes after it, and one byte at offset 16 + n.
fn shape_filter(n: usize) -> Filter {
    FilterBuilder::new()
        .ethertype(PRIVATE_ETHERTYPE)
        .atom(Atom::new(Base::Frame, 14, Width::W2, n as u32))
        .atom(Atom::new(Base::Frame, 16 + n as u16, Width::W1, 1))
        .build()
        .unwrap_or_default()
}

/// The child side: returns the exit status (0 = stopped where it should).
pub fn child(attack: &str, extra: &[&str]) -> Option<i32> {
    Some(match attack {
        "exhaust-filters" => exhaust_filters(),
        "exhaust-shapes" => exhaust_shapes(),
        "exhaust-rings" => exhaust_rings(),
        "exhaust-grants" => exhaust_grants(),
        "exhaust-refs" => exhaust_refs(),
        "compile-storm" => compile_storm(),
        "shape-churn" => shape_churn(),
        "spawn-flood" => spawn_flood(),
        "launder" => launder(extra),
        "orphan-maker" => orphan_maker(),
        "spin" => loop {
            core::hint::spin_loop();
        },
        "hog" => hog(),
        "flood" => flood(),
        "load" => load(extra),
        "crowd" => crowd(extra),
        _ => return None,
    })
}

/// Reports how an exhaustion loop ended; 0 if `stop` is one of `expected`.
fn verdict(attack: &str, count: usize, what: &str, stop: Option<Error>, expected: &[Error]) -> i32 {
    let why = stop.map_or("nothing (bound reached)", Error::describe);
    println!("hostile: {attack}: {count} {what}, stopped by {why}");
    i32::from(!stop.is_some_and(|e| expected.contains(&e)))
}

fn exhaust_filters() -> i32 {
    let Ok(ring) = PacketRing::new(4, 2048) else { return 10 };
    let mut count = 0;
    let stop = (1..=u16::MAX).find_map(|port| match sys::dpf_insert(&Filter::udp_port(port).to_bytes(), ring.id(), 0) {
        Ok(_) => {
            count += 1;
            None
        }
        Err(error) => Some(error),
    });
    verdict("exhaust-filters", count, "filters", stop, &[Error::QuotaExceeded])
}

fn exhaust_shapes() -> i32 {
    let Ok(ring) = PacketRing::new(4, 2048) else { return 10 };
    let mut count = 0;
    let stop = (0..1400).find_map(|n| match sys::dpf_insert(&shape_filter(n).to_bytes(), ring.id(), 0) {
        Ok(_) => {
            count += 1;
            None
        }
        Err(error) => Some(error),
    });
    verdict("exhaust-shapes", count, "shapes", stop, &[Error::QuotaExceeded])
}

/// Maps one page at every page of a 4 MiB window, registers the largest rings over it until
/// refused, then starts a child that does the same, and so on down the tree until a spawn is
/// refused. Each level waits for the one below.
fn exhaust_rings() -> i32 {
    let Ok(page) = sys::page_alloc() else { return verdict("exhaust-rings", 0, "rings", Some(Error::QuotaExceeded), &[Error::QuotaExceeded]) };
    let window = exos::abi::net::RING_MAX_BYTES;
    for offset in (0..window).step_by(PAGE_SIZE) {
        // SAFETY: RING_AREA is used by nothing else in this program; the rings only ever
        // receive frames from the kernel.
        if unsafe { sys::insert_pte(RING_AREA + offset, page, PteFlags::WRITE) }.is_err() {
            break;
        }
    }
    let counter = AtomicU64::new(0);
    let mut rings = 0;
    let stop = loop {
        match sys::pktring_setring(RING_AREA, window / 2048, 2048, &counter) {
            Ok(_) => rings += 1,
            Err(error) => break error,
        }
    };
    let below = start_child("exhaust-rings", &[]);
    let below_status = below.map(wait_for);
    println!("hostile: exhaust-rings: {rings} rings of 4 MiB over one page, stopped by {stop}; child: {below_status:?}");
    let ok_stop = matches!(stop, Error::TooMany | Error::QuotaExceeded);
    let ok_below = matches!(below_status, Err(Error::QuotaExceeded | Error::TooManyEnvs) | Ok(Some(EnvStatus::Exited(0))));
    i32::from(!(ok_stop && ok_below))
}

/// Starts `count` sleeping children, each with `share`/256 of what is left.
fn idle_children(count: usize, share: usize) -> Vec<EnvId> {
    (0..count).filter_map(|_| sys::env_spawn_with("sleeper", b"", spawn_flags(false, share)).ok()).collect()
}

/// Ends every environment of `children`.
fn end_all(children: Vec<EnvId>) {
    for child in children {
        let _ = sys::env_kill(child);
    }
}

/// Starts idle children, then grants every page it can allocate to each of them.
fn exhaust_grants() -> i32 {
    let children = idle_children(8, 8);
    let (mut grants, mut stop) = (0, None);
    'outer: for _ in 0..1_000_000 {
        let page = match sys::page_alloc() {
            Ok(page) => page,
            Err(error) => {
                stop = Some(error);
                break;
            }
        };
        for &child in &children {
            match sys::page_grant(page, child, Rights::READ) {
                Ok(()) => grants += 1,
                Err(error) => {
                    stop = Some(error);
                    break 'outer;
                }
            }
        }
    }
    end_all(children);
    verdict("exhaust-grants", grants, "holder entries", stop, &[Error::QuotaExceeded])
}

/// Installs filters and gives references to them to idle children.
fn exhaust_refs() -> i32 {
    let Ok(ring) = PacketRing::new(4, 2048) else { return 10 };
    let children = idle_children(16, 4);
    let (mut refs, mut stop) = (0, None);
    'outer: for port in 1..=u16::MAX {
        let filter = match sys::dpf_insert(&Filter::udp_port(port).to_bytes(), ring.id(), 0) {
            Ok(filter) => filter,
            Err(error) => {
                stop = Some(error);
                break;
            }
        };
        for &child in &children {
            match sys::dpf_ref(filter, child) {
                Ok(()) => refs += 1,
                Err(error) => {
                    stop = Some(error);
                    break 'outer;
                }
            }
        }
    }
    end_all(children);
    verdict("exhaust-refs", refs, "filter references", stop, &[Error::QuotaExceeded])
}

/// Installs 40 different predicates in a row: each is a compile, which must run on this
/// program's time with interrupts enabled (the test reads the kernel's lost-tick count).
fn compile_storm() -> i32 {
    let words: Vec<AtomicU64> = (0..40).map(AtomicU64::new).collect();
    let lost_before = sys::kernel_stat(Stat::LostTicks);
    let start = sys::time();
    let mut installed = 0;
    for (n, word) in words.iter().enumerate() {
        let mut predicate = wkpred::Predicate::default();
        for _ in 0..=n % 8 {
            deadline_word_clause(&mut predicate, word);
        }
        if install(&predicate).is_ok() {
            installed += 1;
        }
    }
    let spent_ms = (sys::time() - start) / 1_000_000;
    let lost = sys::kernel_stat(Stat::LostTicks).saturating_sub(lost_before);
    let off_us = sys::kernel_stat(Stat::MaxInterruptsOffNs) / 1000;
    println!("hostile: compile-storm: {installed} predicates in {spent_ms} ms; ticks lost meanwhile {lost}; longest interrupts-off so far {off_us} us");
    i32::from(installed != words.len())
}

/// Installs and deletes filters of new shapes in a loop: every change is a classifier
/// compile, rate-limited and charged to this program.
fn shape_churn() -> i32 {
    let Ok(ring) = PacketRing::new(4, 2048) else { return 10 };
    let lost_before = sys::kernel_stat(Stat::LostTicks);
    let start = sys::time();
    let mut rounds = 0;
    for n in 0..100 {
        let Ok(id) = sys::dpf_insert(&shape_filter(800 + n).to_bytes(), ring.id(), 0) else { break };
        let _ = sys::dpf_delete(id);
        rounds += 1;
    }
    let spent_ms = (sys::time() - start) / 1_000_000;
    let lost = sys::kernel_stat(Stat::LostTicks).saturating_sub(lost_before);
    let shapes = sys::kernel_stat(Stat::Shapes);
    println!("hostile: shape-churn: {rounds} shapes added and removed in {spent_ms} ms; ticks lost meanwhile {lost}; shapes left {shapes}");
    i32::from(rounds != 100)
}

/// Spawns children, each with 1/32 of what is left, until refused.
fn spawn_flood() -> i32 {
    let mut children = Vec::new();
    let stop = loop {
        if children.len() >= 2000 {
            break None;
        }
        match sys::env_spawn_with("sleeper", b"", spawn_flags(false, 8)) {
            Ok(child) => children.push(child),
            Err(error) => break Some(error),
        }
    };
    let count = children.len();
    end_all(children);
    verdict("spawn-flood", count, "children", stop, &[Error::QuotaExceeded])
}

/// Allocates up to 256 pages and grants them to `extra[0]` (the driver), then exits.
fn launder(extra: &[&str]) -> i32 {
    let Some(to) = extra.first().and_then(|w| w.parse().ok()).map(EnvId) else { return 10 };
    let mut given = 0;
    for _ in 0..256 {
        let Ok(page) = sys::page_alloc() else { break };
        if sys::page_grant(page, to, Rights::READ | Rights::WRITE).is_ok() && sys::page_free(page).is_ok() {
            given += 1;
        }
    }
    println!("hostile: launder: granted {given} pages to env {:08x} and exits", to.0);
    i32::from(given == 0)
}

/// Starts three spinners and a memory hog, and exits at once.
fn orphan_maker() -> i32 {
    let mut started = 0;
    for kind in ["spin", "spin", "spin", "hog"] {
        if sys::env_spawn_with("hostile", &exos::Args::encode(&[kind]), spawn_flags(false, 32)).is_ok() {
            started += 1;
        }
    }
    i32::from(started != 4)
}

/// Takes every page it may, then sleeps.
fn hog() -> i32 {
    while sys::page_alloc().is_ok() {}
    idle()
}

/// Sleeps for good (until killed), waking once a minute.
fn idle() -> i32 {
    let wake_at = AtomicU64::new(0);
    let mut predicate = wkpred::Predicate::default();
    deadline_word_clause(&mut predicate, &wake_at);
    if install(&predicate).is_err() {
        return 11;
    }
    loop {
        wake_at.store(sys::ticks() + 6000, Ordering::Release);
        sys::wk_sleep();
    }
}

/// Sends minimum frames of the private ethertype from the NIC's own MAC as fast as the
/// kernel takes them (the frames end in QEMU's user network, which drops them). Each flooder
/// first takes the frames tagged with its id (bytes 18..22) with a filter: the kernel sends
/// only frames the sender would receive, mirrored.
fn flood() -> i32 {
    let Ok(info) = sys::nic_info(0) else { return 12 };
    let tag = sys::env_id().0;
    let _ring = match take_flood_tag(tag) {
        Ok(ring) => ring,
        Err(error) => {
            println!("hostile: flooder {tag:#x}: filter refused: {error}");
            return 14;
        }
    };
    let mut frame = [0u8; 60];
    frame[..6].fill(0xff);
    frame[6..12].copy_from_slice(&info.mac);
    frame[12..14].copy_from_slice(&PRIVATE_ETHERTYPE.to_be_bytes());
    frame[18..22].copy_from_slice(&tag.to_be_bytes());
    let counter = AtomicU64::new(0);
    let segment = [GatherSegment { addr: frame.as_ptr() as u64, len: frame.len() as u64 }];
    loop {
        match sys::net_xmit(0, &segment, &counter) {
            Ok(()) => {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Err(Error::QueueFull | Error::QuotaExceeded) => sys::env_yield(),
            Err(error) => {
                println!("hostile: flooder {tag:#x}: frame refused: {error}");
                return 15;
            }
        }
    }
}

/// Takes the flood frames tagged `tag` with a filter into a small ring (both kept as long as
/// the returned pair). All tags share one filter shape, which `load` makes first: a flooder's
/// share of the quota is too small to pay for a shape of its own.
fn take_flood_tag(tag: u32) -> Result<(InstalledFilter, PacketRing), Error> {
    let filter = FilterBuilder::new()
        .ethertype(PRIVATE_ETHERTYPE)
        .atom(Atom::new(Base::Frame, 18, Width::W4, tag))
        .build()
        .map_err(|_| Error::BadFilter)?;
    let ring = PacketRing::new(2, 128)?;
    Ok((ring.install(&filter)?, ring))
}

/// Children one `crowd` starts at most (their shares stay close to one environment each
/// below this).
const CROWD: usize = 100;

/// `load <spin|idle|flood> <count> <seconds>`: starts `count` children of one kind in crowds
/// of at most [`CROWD`] (each crowd a child with an equal share of what is left, which starts
/// its members and exits), keeps them for the given time, then ends them all through their
/// crowds' accounts.
fn load(extra: &[&str]) -> i32 {
    let kind = extra.first().copied().unwrap_or("spin");
    let count: usize = extra.get(1).and_then(|w| w.parse().ok()).unwrap_or(100);
    let seconds: u64 = extra.get(2).and_then(|w| w.parse().ok()).unwrap_or(10);
    // The flooders' filter shape, made here so that they only add filters to it.
    let _shape = match kind {
        "flood" => take_flood_tag(sys::env_id().0).ok(),
        _ => None,
    };
    let (mut crowds, mut running) = (Vec::new(), 0);
    while running < count {
        let want = (count - running).min(CROWD);
        let share = SPAWN_SHARE_WHOLE / (count - running).div_ceil(CROWD);
        let size = format!("{want}");
        let Ok(crowd) = sys::env_spawn_with("hostile", &exos::Args::encode(&["crowd", kind, &size]), spawn_flags(false, share)) else { break };
        crowds.push(crowd);
        match wait_for(crowd) {
            Some(EnvStatus::Exited(started)) if started > 0 => running += started as usize,
            _ => break,
        }
    }
    println!("hostile: load: {running} {kind} children running in {} crowds", crowds.len());
    let end = sys::time() + seconds * 1_000_000_000;
    let wake_at = AtomicU64::new(0);
    let mut predicate = wkpred::Predicate::default();
    deadline_word_clause(&mut predicate, &wake_at);
    let can_sleep = install(&predicate).is_ok();
    while sys::time() < end {
        if can_sleep {
            wake_at.store(sys::ticks() + 10, Ordering::Release);
            sys::wk_sleep();
        } else {
            sys::env_yield();
        }
    }
    let ended: usize = crowds.iter().filter_map(|c| sys::env_kill(*c).ok()).sum();
    println!("hostile: load: ended {ended} environments");
    0
}

/// `crowd <kind> <count>`: starts up to `count` children of `kind`, each with an equal part of
/// what is left, and exits with how many it started (its orphans stay reachable through its
/// account).
fn crowd(extra: &[&str]) -> i32 {
    let kind = extra.first().copied().unwrap_or("spin");
    let count: usize = extra.get(1).and_then(|w| w.parse().ok()).unwrap_or(CROWD);
    let mut started = 0;
    for n in 0..count {
        let share = (SPAWN_SHARE_WHOLE / (count - n)).max(1);
        // Sleepers are a program of their own, small enough for a thousand to fit.
        let spawned = match kind {
            "idle" => sys::env_spawn_with("sleeper", b"", spawn_flags(false, share)),
            _ => sys::env_spawn_with("hostile", &exos::Args::encode(&[kind]), spawn_flags(false, share)),
        };
        if let Err(error) = spawned {
            println!("hostile: crowd: {started} of {count} {kind} children started; then {error}");
            break;
        }
        started += 1;
    }
    started
}
