//! Device drivers (bare metal only): PCI configuration space and the NICs.

pub mod e1000;
pub mod pci;
pub mod tulip;

use crate::ownership::{Page, PageOwnership};

/// Where the boot page table maps the low 4 GiB of physical memory for device registers.
pub const DEVICE_WINDOW: u64 = 0xffff_8000_0000_0000;

/// Pages for DMA (descriptor rings, receive buffers): kernel pages, zeroed, physically
/// contiguous one page at a time.
pub fn dma_page(pages: &mut PageOwnership) -> Page {
    let page = pages.alloc_kernel().expect("memory for NIC rings at boot");
    // SAFETY: a fresh kernel page in the identity map, used by nothing else yet.
    unsafe { (page.address() as *mut u8).write_bytes(0, xok_abi::layout::PAGE_SIZE) };
    page
}
