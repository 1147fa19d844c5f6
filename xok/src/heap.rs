//! The kernel heap: a fixed region in the kernel image's .bss, managed by
//! `linked_list_allocator`. Kernel-internal tables (ownership vectors, environments) live here,
//! so they never take pages from the pool environments allocate from.
//!
//! The allocator's lock is taken with interrupts off, because compiles run with interrupts
//! enabled (`kernel::jobs`) and an interrupt handler may allocate. Use and peak are tracked
//! for the quota tree's reports.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};
use linked_list_allocator::Heap;
use spin::Mutex;

/// Size of the kernel heap.
pub const HEAP_SIZE: usize = 32 << 20;

#[repr(C, align(4096))]
struct HeapArea([u8; HEAP_SIZE]);

static mut HEAP_AREA: HeapArea = HeapArea([0; HEAP_SIZE]);

struct KernelHeap(Mutex<Heap>);

#[global_allocator]
static ALLOCATOR: KernelHeap = KernelHeap(Mutex::new(Heap::empty()));

static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: allocation is delegated to linked_list_allocator under a lock; it returns blocks of at
// least the requested size and alignment from HEAP_AREA, or null.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        x86_64::instructions::interrupts::without_interrupts(|| {
            let mut heap = self.0.lock();
            let block = heap.allocate_first_fit(layout).map_or(core::ptr::null_mut(), |p| p.as_ptr());
            PEAK.fetch_max(heap.used(), Ordering::Relaxed);
            block
        })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(ptr) = core::ptr::NonNull::new(ptr) {
            // SAFETY: the caller returns a block this allocator handed out with this layout.
            x86_64::instructions::interrupts::without_interrupts(|| unsafe { self.0.lock().deallocate(ptr, layout) })
        }
    }
}

/// The heap's use: bytes in use, the most ever in use, and its size.
pub fn usage() -> crate::kernel::HeapUse {
    let (used, size) = x86_64::instructions::interrupts::without_interrupts(|| {
        let heap = ALLOCATOR.0.lock();
        (heap.used(), heap.size())
    });
    crate::kernel::HeapUse { used, peak: PEAK.load(Ordering::Relaxed).max(used), size }
}

/// Hands the heap area to the allocator. Called once, first thing at boot.
pub fn init() {
    let area = &raw mut HEAP_AREA;
    // SAFETY: HEAP_AREA is used only by the allocator, and init runs once before any allocation.
    unsafe { ALLOCATOR.0.lock().init(area as *mut u8, HEAP_SIZE) };
}
