//! The kernel heap: a fixed region in the kernel image's .bss, managed by `talc`. Kernel-internal
//! tables (ownership vectors, environments) live here, so they never take pages from the pool
//! environments allocate from.
//!
//! `talc` keeps free blocks in size bins, so an allocation or a free costs about the same
//! however fragmented the heap is (a first-fit list allocator walked every free block, and an
//! exit that freed ten thousand small blocks held interrupts off for 68 ms under TCG). The
//! allocator's lock is taken with interrupts off, because compiles run with interrupts enabled
//! (`kernel::jobs`) and an interrupt handler may allocate. Use and peak are tracked for the
//! quota tree's reports.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};
use spin::Mutex;
use talc::{ErrOnOom, Span, Talc};

/// Size of the kernel heap.
pub const HEAP_SIZE: usize = 64 << 20;

#[repr(C, align(4096))]
struct HeapArea([u8; HEAP_SIZE]);

static mut HEAP_AREA: HeapArea = HeapArea([0; HEAP_SIZE]);

struct KernelHeap(Mutex<Talc<ErrOnOom>>);

#[global_allocator]
static ALLOCATOR: KernelHeap = KernelHeap(Mutex::new(Talc::new(ErrOnOom)));

static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: allocation is delegated to talc under a lock; it returns blocks of at least the
// requested size and alignment from HEAP_AREA, or null.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        x86_64::instructions::interrupts::without_interrupts(|| {
            let mut heap = self.0.lock();
            // SAFETY: GlobalAlloc's contract gives a layout of non-zero size, talc's one
            // requirement for malloc.
            let block = unsafe { heap.malloc(layout) }.map_or(core::ptr::null_mut(), |p| p.as_ptr());
            PEAK.fetch_max(heap.get_counters().allocated_bytes, Ordering::Relaxed);
            block
        })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(ptr) = core::ptr::NonNull::new(ptr) {
            // SAFETY: the caller returns a block this allocator handed out with this layout.
            x86_64::instructions::interrupts::without_interrupts(|| unsafe { self.0.lock().free(ptr, layout) })
        }
    }
}

/// The heap's use: bytes in use, the most ever in use, and its size.
pub fn usage() -> crate::kernel::HeapUse {
    let (used, size) = x86_64::instructions::interrupts::without_interrupts(|| {
        let heap = ALLOCATOR.0.lock();
        let counters = heap.get_counters();
        (counters.allocated_bytes, counters.claimed_bytes)
    });
    crate::kernel::HeapUse { used, peak: PEAK.load(Ordering::Relaxed).max(used), size }
}

/// Hands the heap area to the allocator. Called once, first thing at boot.
pub fn init() {
    let area = &raw mut HEAP_AREA;
    // SAFETY: HEAP_AREA is used only by the allocator, and init runs once before any
    // allocation; talc owns the span from here on.
    let claimed = unsafe { ALLOCATOR.0.lock().claim(Span::from_base_size(area as *mut u8, HEAP_SIZE)) };
    assert!(claimed.is_ok(), "the kernel heap could not be claimed");
}
