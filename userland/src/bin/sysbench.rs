//! Measures syscall costs from ring 3 with the TSC: the null syscall (`env_id`), and
//! `page_alloc` + `insert_pte` (+ `remove_pte` + `page_free` to keep memory steady).
#![cfg_attr(target_os = "none", no_std, no_main)]

use exos::abi::PteFlags;
use exos::abi::layout::HEAP_BASE;
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
    0
}
