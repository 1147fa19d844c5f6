//! The program heap: `linked_list_allocator` over pages taken with `page_alloc` and mapped with
//! `insert_pte` at `HEAP_BASE`, growing on demand.

use core::alloc::{GlobalAlloc, Layout};
use linked_list_allocator::Heap;
use spin::Mutex;
use xok_abi::PteFlags;
use xok_abi::layout::{HEAP_BASE, PAGE_SIZE, STACK_TOP, STACK_PAGES};

/// The heap never grows past here (it would reach the stack's guard area).
const HEAP_LIMIT: usize = STACK_TOP - STACK_PAGES * PAGE_SIZE - (1 << 30);

/// A heap that asks xok for pages when it runs out.
pub struct PageHeap {
    inner: Mutex<(Heap, usize)>,
}

impl PageHeap {
    /// An empty heap; the first allocation maps its first pages.
    pub const fn new() -> Self {
        PageHeap { inner: Mutex::new((Heap::empty(), HEAP_BASE)) }
    }
}

impl Default for PageHeap {
    fn default() -> Self {
        Self::new()
    }
}

impl PageHeap {
    /// Bytes handed out and not yet given back.
    pub fn used(&self) -> usize {
        self.inner.lock().0.used()
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

/// Maps `count` fresh pages at `top`; returns how many it mapped.
fn grow(top: usize, count: usize) -> usize {
    for n in 0..count {
        let va = top + n * PAGE_SIZE;
        if va >= HEAP_LIMIT {
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

// SAFETY: blocks come from linked_list_allocator under a lock, from pages mapped writable for
// this program and never unmapped.
unsafe impl GlobalAlloc for PageHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut guard = self.inner.lock();
        let (heap, top) = &mut *guard;
        loop {
            if let Ok(block) = heap.allocate_first_fit(layout) {
                return block.as_ptr();
            }
            let want = (layout.size() + layout.align()).div_ceil(PAGE_SIZE).max(16);
            let got = grow(*top, want);
            if got == 0 {
                return core::ptr::null_mut();
            }
            if heap.size() == 0 {
                // SAFETY: [top, top + got pages) was just mapped writable and is unused.
                unsafe { heap.init(*top as *mut u8, got * PAGE_SIZE) };
            } else {
                // SAFETY: the new pages directly follow the heap's current end.
                unsafe { heap.extend(got * PAGE_SIZE) };
            }
            *top += got * PAGE_SIZE;
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(ptr) = core::ptr::NonNull::new(ptr) {
            // SAFETY: the caller returns a block this allocator handed out with this layout.
            unsafe { self.inner.lock().0.deallocate(ptr, layout) }
        }
    }
}
