//! The kernel heap: a fixed region in the kernel image's .bss, managed by
//! `linked_list_allocator`. Kernel-internal tables (ownership vectors, environments) live here,
//! so they never take pages from the pool environments allocate from.

use core::alloc::{GlobalAlloc, Layout};
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

// SAFETY: allocation is delegated to linked_list_allocator under a lock; it returns blocks of at
// least the requested size and alignment from HEAP_AREA, or null.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0.lock().allocate_first_fit(layout).map_or(core::ptr::null_mut(), |p| p.as_ptr())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(ptr) = core::ptr::NonNull::new(ptr) {
            // SAFETY: the caller returns a block this allocator handed out with this layout.
            unsafe { self.0.lock().deallocate(ptr, layout) }
        }
    }
}

/// Hands the heap area to the allocator. Called once, first thing at boot.
pub fn init() {
    let area = &raw mut HEAP_AREA;
    // SAFETY: HEAP_AREA is used only by the allocator, and init runs once before any allocation.
    unsafe { ALLOCATOR.0.lock().init(area as *mut u8, HEAP_SIZE) };
}
