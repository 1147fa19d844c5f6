//! The quota tree, the charges and the scheduler on the host: charges are real upper bounds of
//! the heap an object takes (a counting allocator measures it), nothing stays behind after an
//! exit, quota cannot be laundered, orphans stay killable, and sleepers cost nothing until an
//! event names them.

use super::net_tests::{DATA, env_with_ring, insert_filter, install, map_data, poke, receive, send, udp_frame, udp_from, with_nic, with_nic_over};
use super::tests::{TestMachine, call, kernel_with_pages};
use super::*;
use alloc::vec::Vec;
use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use dpf::{Atom, Base, Filter, FilterBuilder, Width};
use std::alloc::System;
use xok_abi::SPAWN_SHARE_WHOLE;

/// The system allocator, counting the bytes each thread has live (tests run in parallel
/// threads; each measures only its own kernel).
struct Counting;

std::thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counter is a
// thread-local cell that never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LIVE.try_with(|live| {
            live.set(live.get() + layout.size() as isize);
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
        });
        // SAFETY: the caller's layout contract is passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = LIVE.try_with(|live| live.set(live.get() - layout.size() as isize));
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Heap bytes this thread has live.
fn live() -> isize {
    LIVE.with(Cell::get)
}

/// The most heap bytes this thread has had live since the last call (which resets it).
fn peak_since_last() -> isize {
    PEAK.with(|peak| peak.replace(live()))
}

/// A filter of a shape of its own for each `n` (and disjoint from the others).
fn shape_filter(n: u16) -> Filter {
    FilterBuilder::new()
        .ethertype(0x88b5)
        .atom(Atom::new(Base::Frame, 14, Width::W2, u32::from(n)))
        .atom(Atom::new(Base::Frame, 16 + n, Width::W1, 1))
        .build()
        .unwrap()
}

/// Runs `make` (which creates kernel objects for `env`) and checks that the heap it took is
/// no more than the heap it was charged. Returns (bytes taken, bytes charged).
fn measured(k: &mut Kernel<TestMachine>, make: impl FnOnce(&mut Kernel<TestMachine>)) -> (isize, isize) {
    let (heap, charged) = (live(), k.accounts.heap_charged() as isize);
    make(k);
    let taken = live() - heap;
    let paid = k.accounts.heap_charged() as isize - charged;
    assert!(taken <= paid, "took {taken} heap bytes, charged {paid}");
    (taken, paid)
}

#[test]
fn charges_cover_the_heap_objects_take_and_exits_leave_nothing_behind() {
    let (mut k, _nic) = with_nic(16);
    let before = live();
    let mut residue = Vec::new();
    for round in 0..3 {
        let (env, ring) = env_with_ring(&mut k);
        let (filters, paid) = measured(&mut k, |k| {
            for port in 1..=2000 {
                insert_filter(k, env, &Filter::udp_port(port), ring, 0).unwrap();
            }
        });
        let (shapes, shape_paid) = measured(&mut k, |k| {
            for n in 0..40 {
                insert_filter(k, env, &shape_filter(n), ring, 0).unwrap();
            }
        });
        // The classifier's compile and load (host memory in the test machine, the code
        // window on the bare metal) are not the predicate's: run them first.
        k.run_jobs_inline();
        let (rings, ring_paid) = measured(&mut k, |k| {
            for _ in 0..8 {
                call(k, env, Syscall::PktringSetring, [DATA, 4, 256, 0, 0]).unwrap();
            }
        });
        let (predicates, predicate_paid) = measured(&mut k, |k| {
            install(k, env, &alloc::format!("locations {DATA:#x}; [0]:u32 != 0 && [0+8]:u64 > 2 || [0+16]:u8 == 1")).unwrap();
            k.run_jobs_inline();
        });
        // Checked frames, some on the NIC and the rest queued (each keeps its header copy).
        let (frames, frame_paid) = measured(&mut k, |k| {
            for _ in 0..60 {
                send(k, env, &udp_from(1, 400)).unwrap();
            }
        });
        if round == 0 {
            std::eprintln!(
                "heap per object (taken / charged): frame {} / {}, filter {} / {}, shape {} / {}, ring {} / {}, predicate {} / {}",
                frames / 60,
                frame_paid / 60,
                filters / 2000,
                paid / 2000,
                shapes / 40,
                shape_paid / 40,
                rings / 8,
                ring_paid / 8,
                predicates,
                predicate_paid
            );
        }
        k.destroy(env, EnvStatus::Exited(0), "");
        k.run_jobs_inline();
        k.nic_interrupt(11); // the frames on the NIC finish
        assert_eq!((k.net.dpf.len(), k.net.dpf.group_count(), k.accounts.len()), (0, 0, 0));
        residue.push(live() - before);
    }
    // Containers keep some capacity for the next tenant, but rounds do not pile up.
    assert!(residue[2] <= residue[0] + 4096, "heap left after each round: {residue:?}");
}

#[test]
fn filters_of_an_ended_environment_go_a_batch_at_a_time() {
    let (mut k, _nic) = with_nic(16);
    let (env, ring) = env_with_ring(&mut k);
    let count = 3 * crate::kernel::net::TEARDOWN_BATCH + 5;
    for port in 0..count {
        insert_filter(&mut k, env, &Filter::udp_port(port as u16 + 1), ring, 0).unwrap();
    }
    k.destroy(env, EnvStatus::Exited(0), "");
    assert_eq!(k.accounts.zombies(), 1, "the filters are still charged");
    let mut steps = 0;
    while k.teardown_pending() {
        let before = k.net.dpf.len();
        k.teardown_step();
        assert!(before - k.net.dpf.len() <= crate::kernel::net::TEARDOWN_BATCH);
        steps += 1;
    }
    assert_eq!((steps, k.net.dpf.len(), k.net.dpf.group_count(), k.accounts.zombies()), (4, 0, 0, 0));
}

/// The heap the root may charge leaves room for the kernel's own transient use: the largest
/// classifier compile the root's shape quota allows, and the largest predicate compile, take
/// no more than the reserve counts on.
#[test]
fn the_largest_compiles_fit_in_the_reserved_heap() {
    let mut set = dpf::Dpf::new();
    for port in 1..=1000 {
        set.insert(&Filter::udp_port(port), 1, 0).unwrap();
    }
    for n in 0..ROOT_SHAPES as u16 - 1 {
        set.insert(&shape_filter(n), 1, 0).unwrap();
    }
    assert_eq!(set.group_count(), ROOT_SHAPES);
    let job = jobs::Job::Classifier { dpf: alloc::sync::Arc::new(set), cause: None };
    peak_since_last();
    let base = live();
    let done = job.run();
    let classifier = peak_since_last() - base;
    assert!(matches!(done, jobs::JobDone::Classifier { code: Some(_), .. }), "it compiled");
    let clause = (0..16).map(|n| alloc::format!("[{n}]:u64 >= [{}+8]:u64", (n + 1) % 16)).collect::<Vec<_>>().join(" && ");
    let text = (0..16).map(|_| clause.clone()).collect::<Vec<_>>().join(" || ");
    let predicate = wkpred::parse(&text).unwrap();
    let base = live();
    let done = jobs::Job::Predicate { env: EnvId(1), serial: 1, predicate }.run();
    let predicate = peak_since_last() - base;
    assert!(matches!(done, jobs::JobDone::Predicate { code: Some(_), .. }), "it compiled");
    std::eprintln!("compile heap peaks: classifier with {ROOT_SHAPES} shapes {classifier} bytes, 16x16-term predicate {predicate} bytes");
    assert!(classifier <= (ROOT_SHAPES * COMPILE_BYTES_PER_SHAPE) as isize, "{classifier} bytes");
    assert!(predicate <= 3 << 20, "{predicate} bytes");
}

/// Heap for a compile that the reserve does not hold: the kernel interprets instead.
#[test]
fn a_compile_without_heap_room_is_skipped_not_run() {
    let (mut k, _nic) = with_nic(16);
    let (env, ring) = env_with_ring(&mut k);
    for n in 0..4 {
        insert_filter(&mut k, env, &shape_filter(n), ring, 0).unwrap();
    }
    k.machine.heap = HeapUse { used: (64 << 20) - (1 << 20), peak: 0, size: 64 << 20 };
    assert!(k.take_job().is_none(), "no room: no compile");
    assert!(String::from_utf8_lossy(&k.machine.console).contains("not compiling"));
    k.machine.heap = HeapUse { used: 0, peak: 0, size: 64 << 20 };
    k.machine.now += jobs::RECOMPILE_INTERVAL_NS;
    insert_filter(&mut k, env, &shape_filter(9), ring, 0).unwrap();
    assert!(k.take_job().is_some(), "room again: the next structure compiles");
}

#[test]
fn holder_entries_are_charged_to_the_granter_until_they_go() {
    let mut k = kernel_with_pages(16384);
    let granter = k.spawn(None, "good", b"", false, 0).unwrap();
    let receivers: Vec<EnvId> = (0..4).map(|_| k.spawn(None, "good", b"", false, 16).unwrap()).collect();
    // The pages first: their own records come with the page charge (and the fake memory
    // behind them is heap on the host).
    let pages: Vec<usize> = (0..200).map(|_| call(&mut k, granter, Syscall::PageAlloc, [0; 5]).unwrap()).collect();
    let heap_before = k.available(granter, k.live_tables(granter)).heap;
    let before = live();
    let mut grants = 0;
    for page in pages {
        for &to in &receivers {
            call(&mut k, granter, Syscall::PageGrant, [page, to.0 as usize, 1, 0, 0]).unwrap();
            grants += 1;
        }
    }
    let taken = live() - before;
    let paid = (heap_before - k.available(granter, k.live_tables(granter)).heap) as isize;
    assert_eq!(paid, grants * crate::account::cost::HOLDER as isize);
    assert!(taken <= paid, "{grants} holder entries took {taken} bytes, charged {paid}");
    for to in receivers {
        k.destroy(to, EnvStatus::Exited(0), "");
    }
    assert_eq!(k.available(granter, k.live_tables(granter)).heap, heap_before, "the entries went with their holders");
}

#[test]
fn a_zombie_keeps_its_quota_lent_until_granted_pages_are_free() {
    let mut k = kernel_with_pages(16384);
    let parent = k.spawn(None, "good", b"", false, SPAWN_SHARE_WHOLE).unwrap();
    let alone = call(&mut k, parent, Syscall::KernelStats, [xok_abi::Stat::MyPages as usize, 0, 0, 0, 0]).unwrap();
    let child = k.spawn(Some(parent), "good", b"", false, 0).unwrap();
    let mut given = Vec::new();
    for _ in 0..100 {
        let page = call(&mut k, child, Syscall::PageAlloc, [0; 5]).unwrap();
        call(&mut k, child, Syscall::PageGrant, [page, parent.0 as usize, 3, 0, 0]).unwrap();
        given.push(page);
    }
    k.destroy(child, EnvStatus::Exited(0), "");
    assert_eq!(k.accounts.zombies(), 1);
    let held = call(&mut k, parent, Syscall::KernelStats, [xok_abi::Stat::MyPages as usize, 0, 0, 0, 0]).unwrap();
    assert!(held + 100 < alone, "the child's quota is still lent: {held} of {alone}");
    // The parent cannot take more than its own quota by keeping the child's pages.
    for page in given {
        call(&mut k, parent, Syscall::PageFree, [page, 0, 0, 0, 0]).unwrap();
    }
    assert_eq!(k.accounts.zombies(), 0);
    let after = call(&mut k, parent, Syscall::KernelStats, [xok_abi::Stat::MyPages as usize, 0, 0, 0, 0]).unwrap();
    assert_eq!(after, alone);
}

#[test]
fn ancestors_end_orphans_and_strangers_cannot() {
    let mut k = kernel_with_pages(16384);
    let top = k.spawn(None, "good", b"", false, 0).unwrap();
    let stranger = k.spawn(None, "good", b"", false, 0).unwrap();
    let middle = k.spawn(Some(top), "good", b"", false, 0).unwrap();
    let orphans: Vec<EnvId> = (0..3).map(|_| k.spawn(Some(middle), "good", b"", false, 32).unwrap()).collect();
    k.destroy(middle, EnvStatus::Exited(0), "");
    assert!(orphans.iter().all(|o| k.envs.get(*o).is_some()), "orphans keep running");
    assert_eq!(call(&mut k, stranger, Syscall::EnvKill, [middle.0 as usize, 0, 0, 0, 0]), Err(Error::NotPermitted));
    assert_eq!(call(&mut k, orphans[0], Syscall::EnvKill, [top.0 as usize, 0, 0, 0, 0]), Err(Error::NotPermitted));
    assert_eq!(call(&mut k, top, Syscall::EnvKill, [middle.0 as usize, 0, 0, 0, 0]), Ok(3));
    assert_eq!(k.envs_running(), 2, "the victims stop running at once");
    let mut steps = 0;
    while k.teardown_pending() {
        k.teardown_step();
        steps += 1;
    }
    assert_eq!(steps, 3, "one environment per teardown step");
    assert!(orphans.iter().all(|o| k.envs.get(*o).is_none()));
    assert_eq!(k.accounts.zombies(), 0);
}

#[test]
fn sleepers_cost_nothing_until_an_event_names_them() {
    let (mut k, nic) = with_nic_over(kernel_with_pages(65536), 16);
    let runner = k.spawn(None, "good", b"", false, 32).unwrap();
    // The runner makes the UDP-port shape; the sleepers' filters are entries under it.
    map_data(&mut k, runner, 4);
    let ring = call(&mut k, runner, Syscall::PktringSetring, [DATA, 4, 256, 0, 0]).unwrap();
    insert_filter(&mut k, runner, &Filter::udp_port(999), ring, 0).unwrap();
    let mut sleepers = Vec::new();
    for n in 0..200u16 {
        let env = k.spawn(None, "good", b"", false, 2).unwrap();
        map_data(&mut k, env, 4);
        let ring = call(&mut k, env, Syscall::PktringSetring, [DATA, 4, 256, 0, 0]).unwrap();
        insert_filter(&mut k, env, &Filter::udp_port(1000 + n), ring, 0).unwrap();
        install(&mut k, env, &alloc::format!("locations {DATA:#x}; [0]:u32 != 0")).unwrap();
        call(&mut k, env, Syscall::WkSleep, [0; 5]).unwrap();
        sleepers.push(env);
    }
    k.run_jobs_inline();
    let evaluations = k.sched.evaluations;
    for _ in 0..100 {
        assert_eq!(k.pick_next(), Some(runner));
    }
    assert_eq!(k.sched.evaluations, evaluations, "no sleeper is evaluated at a decision");
    assert_eq!(k.sched.runnable(), 1);
    // A datagram for sleeper 7: exactly one evaluation, and it runs.
    receive(&mut k, &nic, &udp_frame(1007));
    let next: Vec<EnvId> = (0..2).filter_map(|_| k.pick_next()).collect();
    assert_eq!(k.sched.evaluations, evaluations + 1);
    assert!(next.contains(&sleepers[7]), "{next:?}");
    // Ticks wake only predicates that read the clock (none here).
    for _ in 0..10 {
        k.timer_tick(None);
    }
    k.pick_next();
    assert_eq!(k.sched.evaluations, evaluations + 1);
}

#[test]
fn cpu_is_shared_between_trees_not_environments() {
    let mut k = kernel_with_pages(65536);
    let neighbour = k.spawn(None, "good", b"", false, SPAWN_SHARE_WHOLE / 2).unwrap();
    let spawner = k.spawn(None, "good", b"", false, SPAWN_SHARE_WHOLE).unwrap();
    for _ in 0..50 {
        k.spawn(Some(spawner), "good", b"", false, 4).unwrap();
    }
    // Everyone spins: each decision gives the chosen one 1 ms.
    let mut neighbour_runs = 0;
    for _ in 0..2000 {
        let next = k.pick_next().unwrap();
        neighbour_runs += usize::from(next == neighbour);
        k.machine.now += 1_000_000;
    }
    let share = neighbour_runs as f64 / 2000.0;
    assert!(share > 0.4, "the neighbour got {share:.2} of the CPU beside 50 spinning children of one tree");
}

#[test]
fn sleepers_with_deadlines_are_checked_when_their_deadline_comes_not_every_tick() {
    let (mut k, _nic) = with_nic_over(kernel_with_pages(65536), 16);
    let ticks = xok_abi::layout::TICKS_VA;
    let mut sleepers = Vec::new();
    for n in 0..100u64 {
        let env = k.spawn(None, "good", b"", false, 2).unwrap();
        map_data(&mut k, env, 4);
        // A deadline word the program moves (tick 30 + n % 3), and a constant one (tick 90).
        poke(&mut k, env, DATA + 8, &(30 + n % 3).to_le_bytes());
        install(&mut k, env, &alloc::format!("locations {ticks:#x}, {DATA:#x}; [0]:u64 >= [1+8]:u64 && [1]:u32 != 0 || [0]:u64 >= 90")).unwrap();
        call(&mut k, env, Syscall::WkSleep, [0; 5]).unwrap();
        sleepers.push(env);
    }
    k.run_jobs_inline();
    let evaluations = k.sched.evaluations;
    for _ in 0..29 {
        k.timer_tick(None);
        assert_eq!(k.pick_next(), None);
    }
    assert_eq!(k.sched.evaluations, evaluations, "nobody is due before tick 30");
    for _ in 0..3 {
        k.timer_tick(None);
        assert_eq!(k.pick_next(), None, "the memory term is false: they sleep on");
    }
    assert_eq!(k.sched.evaluations, evaluations + 100, "each checked once, at its own deadline");
    for _ in 32..89 {
        k.timer_tick(None);
    }
    assert_eq!(k.pick_next(), None);
    assert_eq!(k.sched.evaluations, evaluations + 100, "the first deadline passed; nothing is due until 90");
    k.timer_tick(None);
    let woken: Vec<EnvId> = core::iter::from_fn(|| k.pick_next()).take(100).collect();
    assert_eq!(k.sched.evaluations, evaluations + 200);
    assert!(sleepers.iter().all(|s| woken.contains(s)), "all wake at tick 90");
}

#[test]
fn wake_plans_follow_what_a_predicate_reads() {
    use crate::wk::WakePlan;
    let (mut k, _nic) = with_nic(16);
    let (env, _) = env_with_ring(&mut k);
    let ticks = xok_abi::layout::TICKS_VA;
    poke(&mut k, env, DATA + 8, &500u64.to_le_bytes());
    let plan_at = |k: &mut Kernel<TestMachine>, text: &str, now: u64| {
        install(k, env, text).unwrap();
        let wakeup = k.envs.get(env).unwrap().wakeup.as_ref().unwrap();
        let ticks_page = k.ticks_page;
        wakeup.wake_plan(&k.machine, ticks_page, now, |page| k.pages.other_writer(env, page))
    };
    let plan = |k: &mut Kernel<TestMachine>, text: &str| plan_at(k, text, 0);
    assert_eq!(plan(&mut k, &alloc::format!("locations {DATA:#x}; [0]:u32 != 0")), WakePlan::Events);
    assert_eq!(plan(&mut k, &alloc::format!("locations {ticks:#x}; [0]:u64 >= 7")), WakePlan::At(7));
    assert_eq!(plan(&mut k, &alloc::format!("locations {ticks:#x}; [0]:u64 > 7")), WakePlan::At(8));
    assert_eq!(plan(&mut k, &alloc::format!("locations {ticks:#x}, {DATA:#x}; [0]:u64 >= [1+8]:u64 || [0]:u64 >= 900")), WakePlan::At(500));
    assert_eq!(plan(&mut k, &alloc::format!("locations {ticks:#x}, {DATA:#x}; [0]:u64 >= 9 && [0]:u64 >= [1+8]:u64")), WakePlan::At(500), "a clause needs all its deadlines");
    let two_deadlines = alloc::format!("locations {ticks:#x}, {DATA:#x}; [0]:u64 >= [1+8]:u64 && [1]:u32 != 0 || [0]:u64 >= 900");
    assert_eq!(plan_at(&mut k, &two_deadlines, 600), WakePlan::At(900), "a passed deadline waits on memory");
    assert_eq!(plan_at(&mut k, &two_deadlines, 950), WakePlan::Events);
    assert_eq!(plan(&mut k, &alloc::format!("locations {ticks:#x}; [0]:u64 == 7")), WakePlan::EveryTick);
    // Another environment may write the page: polled.
    let other = k.spawn(None, "good", b"", false, 0).unwrap();
    let page = k.envs.get(env).unwrap().space.translate(&k.machine, DATA, crate::vm::Access::Read).unwrap();
    call(&mut k, env, Syscall::PageGrant, [page.0, other.0 as usize, 3, 0, 0]).unwrap();
    assert_eq!(plan(&mut k, &alloc::format!("locations {DATA:#x}; [0]:u32 != 0")), WakePlan::EveryTick);
}

#[test]
fn children_start_no_earlier_than_their_parent() {
    let mut k = kernel_with_pages(65536);
    let neighbour = k.spawn(None, "good", b"", false, SPAWN_SHARE_WHOLE / 2).unwrap();
    let parent = k.spawn(None, "good", b"", false, SPAWN_SHARE_WHOLE).unwrap();
    // The parent was charged a long compile; then it starts two children.
    k.charge_cpu(parent, 200_000_000);
    let first = k.spawn(Some(parent), "good", b"", false, SPAWN_SHARE_WHOLE / 2).unwrap();
    let second = k.spawn(Some(parent), "good", b"", false, SPAWN_SHARE_WHOLE).unwrap();
    let mut runs = [0usize; 2];
    for _ in 0..100 {
        let next = k.pick_next().unwrap();
        if next == first {
            runs[0] += 1;
        }
        if next == second {
            runs[1] += 1;
        }
        k.machine.now += 1_000_000;
    }
    assert!(runs[0] == 0 && runs[1] == 0, "the children ran {runs:?} before the neighbour caught up with their parent");
    assert!(k.envs.get(neighbour).unwrap().runs > 90);
}

#[test]
fn children_spawned_one_after_another_start_together() {
    let mut k = kernel_with_pages(65536);
    let parent = k.spawn(None, "good", b"", false, SPAWN_SHARE_WHOLE).unwrap();
    k.charge_cpu(parent, 50_000_000);
    // Equal parts, like init: the parent keeps little for itself after the last one.
    let first = k.spawn(Some(parent), "good", b"", false, SPAWN_SHARE_WHOLE / 2).unwrap();
    let second = k.spawn(Some(parent), "good", b"", false, SPAWN_SHARE_WHOLE).unwrap();
    k.destroy(parent, EnvStatus::Exited(0), "");
    let picks: Vec<EnvId> = (0..20)
        .map(|_| {
            let next = k.pick_next().unwrap();
            k.machine.now += 10_000_000;
            next
        })
        .collect();
    let seconds = picks.iter().filter(|p| **p == second).count();
    assert!((8..=12).contains(&seconds), "the second child ran {seconds} of 20 slices beside {first:?}: {picks:?}");
}

#[test]
fn a_parent_that_got_its_tickets_back_is_not_starved() {
    let mut k = kernel_with_pages(65536);
    let parent = k.spawn(None, "good", b"", false, SPAWN_SHARE_WHOLE / 2).unwrap();
    let spinner = k.spawn(None, "good", b"", false, SPAWN_SHARE_WHOLE).unwrap();
    // The parent gives (almost) all its tickets to a child and runs a while with what is left.
    let child = k.spawn(Some(parent), "good", b"", false, SPAWN_SHARE_WHOLE).unwrap();
    k.charge_cpu(parent, 50_000_000);
    k.destroy(child, EnvStatus::Exited(0), "");
    // Back to its tickets, it shares the CPU with the spinner again.
    let mut parent_runs = 0;
    for _ in 0..200 {
        let next = k.pick_next().unwrap();
        parent_runs += usize::from(next == parent);
        k.machine.now += 1_000_000;
    }
    assert!(parent_runs > 60, "the parent ran {parent_runs} of 200 slices beside {spinner:?}");
}

#[test]
#[ignore = "measurement"]
fn classifier_compile_heap_by_groups() {
    for groups in [8u16, 32, 64, 128, 192, 255] {
        let mut set = dpf::Dpf::new();
        for n in 0..groups {
            set.insert(&shape_filter(n), 1, 0).unwrap();
        }
        let job = jobs::Job::Classifier { dpf: alloc::sync::Arc::new(set), cause: None };
        peak_since_last();
        let base = live();
        let _ = job.run();
        std::eprintln!("{groups} groups: compile peak {} bytes", peak_since_last() - base);
    }
}

#[test]
fn a_large_environment_gives_its_pages_back_in_steps() {
    let mut k = kernel_with_pages(32768);
    let free = k.pages.free_count();
    let env = k.spawn(None, "good", b"", false, SPAWN_SHARE_WHOLE).unwrap();
    for _ in 0..(2 * RELEASE_BATCH + 100) {
        call(&mut k, env, Syscall::PageAlloc, [0; 5]).unwrap();
    }
    k.destroy(env, EnvStatus::Exited(0), "");
    assert!(k.teardown_pending());
    assert_eq!(k.accounts.zombies(), 1, "its pages are still charged");
    let mut steps = 0;
    while k.teardown_pending() {
        k.teardown_step();
        steps += 1;
    }
    assert_eq!(steps, 2, "the rest of {} pages in batches of {RELEASE_BATCH}", 2 * RELEASE_BATCH + 100);
    assert_eq!((k.pages.free_count(), k.accounts.zombies()), (free, 0));
}
