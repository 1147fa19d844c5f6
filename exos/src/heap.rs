//! The program heap: small blocks from `linked_list_allocator` over pages taken with
//! `page_alloc` and mapped with `insert_pte` at `HEAP_BASE`, growing on demand; blocks of
//! [`runs::RUN_MIN`] bytes or more as page runs of their own ([`runs`]), whose pages go back
//! to the kernel when the program stops using them.

pub mod runs;

use core::alloc::{GlobalAlloc, Layout};
use linked_list_allocator::Heap;
use runs::{RUN_MIN, RunStats, Runs};
use spin::Mutex;
use xok_abi::PteFlags;
use xok_abi::layout::{HEAP_BASE, PAGE_SIZE};

/// Where page runs live; the small-object heap never grows past it.
const RUNS_BASE: usize = 0x40_0000_0000;
/// The end of the runs' range (below the ARP table and the file store, at `0x5f_fffe_0000` and
/// up).
const RUNS_LIMIT: usize = 0x5f_0000_0000;

/// The small-object heap, where it ends, and the page runs.
struct Inner {
    small: Heap,
    top: usize,
    runs: Runs,
}

/// A heap that asks xok for pages when it runs out.
pub struct PageHeap {
    inner: Mutex<Inner>,
}

impl PageHeap {
    /// An empty heap; the first allocation maps its first pages.
    pub const fn new() -> Self {
        PageHeap { inner: Mutex::new(Inner { small: Heap::empty(), top: HEAP_BASE, runs: Runs::new(RUNS_BASE, RUNS_LIMIT) }) }
    }
}

impl Default for PageHeap {
    fn default() -> Self {
        Self::new()
    }
}

impl PageHeap {
    /// Bytes handed out and not yet given back (page runs counted whole).
    pub fn used(&self) -> usize {
        let inner = self.inner.lock();
        let runs = inner.runs.stats();
        inner.small.used() + (runs.mapped - runs.cached) * PAGE_SIZE
    }
}

/// The kernel as page runs see it.
struct Kernel;

impl runs::Pages for Kernel {
    fn map_fresh(&mut self, va: usize) -> bool {
        let Ok(page) = crate::sys::page_alloc() else { return false };
        // SAFETY: `va` lies in the runs' range, in no run or block the program holds.
        if unsafe { crate::sys::insert_pte(va, page, PteFlags::WRITE) }.is_err() {
            let _ = crate::sys::page_free(page);
            return false;
        }
        true
    }

    fn unmap(&mut self, va: usize) -> Option<usize> {
        // SAFETY: `va` belongs to a run the program gave back (freed or cached and now idle).
        unsafe { crate::sys::remove_pte(va) }.ok()
    }

    fn free(&mut self, page: usize) -> bool {
        crate::sys::page_free(page).is_ok()
    }
}

/// The program's heap.
#[cfg(target_os = "none")]
#[global_allocator]
static HEAP: PageHeap = PageHeap::new();

/// Bytes of the program's heap in use (on the host, where programs only type-check, the
/// host allocator's are not counted: 0).
pub fn used() -> usize {
    #[cfg(target_os = "none")]
    return HEAP.used();
    #[cfg(not(target_os = "none"))]
    0
}

/// The program's page runs: pages mapped, cached, given back.
pub fn run_stats() -> RunStats {
    #[cfg(target_os = "none")]
    return HEAP.inner.lock().runs.stats();
    #[cfg(not(target_os = "none"))]
    RunStats::default()
}

/// When the page-run cache goes back to the kernel if the program does not use it before
/// (ticks; `None`: nothing cached). [`crate::wait::Waiter`] wakes the program for it.
pub fn release_at() -> Option<u64> {
    #[cfg(target_os = "none")]
    return HEAP.inner.lock().runs.release_at();
    #[cfg(not(target_os = "none"))]
    None
}

/// Gives the page-run cache back to the kernel if it sat unused long enough.
pub fn release_idle() {
    #[cfg(target_os = "none")]
    HEAP.inner.lock().runs.release_idle(&mut Kernel, crate::sys::ticks());
}

/// Whether `layout` is served as a page run.
fn is_run(layout: &Layout) -> bool {
    layout.size() >= RUN_MIN && layout.align() <= PAGE_SIZE
}

/// Maps `count` fresh pages at `top`; returns how many it mapped.
fn grow(top: usize, count: usize) -> usize {
    for n in 0..count {
        let va = top + n * PAGE_SIZE;
        if va >= RUNS_BASE {
            return n;
        }
        let Ok(page) = crate::sys::page_alloc() else { return n };
        // SAFETY: `va` is above the heap's current end, a range nothing in the program uses.
        if unsafe { crate::sys::insert_pte(va, page, PteFlags::WRITE) }.is_err() {
            let _ = crate::sys::page_free(page);
            return n;
        }
    }
    count
}

// SAFETY: small blocks come from linked_list_allocator under a lock, from pages mapped
// writable for this program and never unmapped; page runs are whole pages mapped writable for
// the block alone (the runs' bookkeeping never hands out a range twice) and unmapped only after
// the program freed them.
unsafe impl GlobalAlloc for PageHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut inner = self.inner.lock();
        if is_run(&layout) {
            let pages = layout.size().div_ceil(PAGE_SIZE);
            return match inner.runs.alloc(&mut Kernel, pages, crate::sys::ticks()) {
                Some((va, _)) => va as *mut u8,
                None => core::ptr::null_mut(),
            };
        }
        let Inner { small, top, .. } = &mut *inner;
        loop {
            if let Ok(block) = small.allocate_first_fit(layout) {
                return block.as_ptr();
            }
            let want = (layout.size() + layout.align()).div_ceil(PAGE_SIZE).max(16);
            let got = grow(*top, want);
            if got == 0 {
                return core::ptr::null_mut();
            }
            if small.size() == 0 {
                // SAFETY: [top, top + got pages) was just mapped writable and is unused.
                unsafe { small.init(*top as *mut u8, got * PAGE_SIZE) };
            } else {
                // SAFETY: the new pages directly follow the heap's current end.
                unsafe { small.extend(got * PAGE_SIZE) };
            }
            *top += got * PAGE_SIZE;
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_run(&layout) {
            let pages = layout.size().div_ceil(PAGE_SIZE);
            let got = self.inner.lock().runs.alloc(&mut Kernel, pages, crate::sys::ticks());
            return match got {
                // Fresh pages come zeroed from the kernel.
                Some((va, true)) => va as *mut u8,
                Some((va, false)) => {
                    // SAFETY: the run is `pages` whole pages mapped writable, now this block's.
                    unsafe { core::ptr::write_bytes(va as *mut u8, 0, layout.size()) };
                    va as *mut u8
                }
                None => core::ptr::null_mut(),
            };
        }
        // SAFETY: forwarded; `alloc` returns null or a block of `layout.size()` bytes.
        let block = unsafe { self.alloc(layout) };
        if !block.is_null() {
            // SAFETY: as above.
            unsafe { core::ptr::write_bytes(block, 0, layout.size()) };
        }
        block
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let mut inner = self.inner.lock();
        if inner.runs.owns(ptr as usize) {
            let pages = layout.size().div_ceil(PAGE_SIZE);
            inner.runs.free(&mut Kernel, ptr as usize, pages, crate::sys::ticks());
        } else if let Some(ptr) = core::ptr::NonNull::new(ptr) {
            // SAFETY: the caller returns a block this allocator handed out with this layout.
            unsafe { inner.small.deallocate(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A run that keeps its page count stays where it is.
        if self.inner.lock().runs.owns(ptr as usize) && new_size >= RUN_MIN && new_size.div_ceil(PAGE_SIZE) == layout.size().div_ceil(PAGE_SIZE) {
            return ptr;
        }
        // SAFETY: the caller's conditions for `realloc` imply those of `alloc` (the new layout
        // is valid) and `dealloc` (`ptr` was allocated with `layout`).
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let new = self.alloc(new_layout);
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}
