//! Executable memory for code the kernel compiles (DPF tries, wakeup predicates).
//!
//! A window of `CODE_PAGES` pages at [`CODE_WINDOW`] is mapped at boot, read-only and
//! executable, onto kernel pages; code is written through those pages' identity mapping, which
//! is no-execute. So no mapping is ever writable and executable at once, and the window's page
//! tables never change after boot (no TLB shootdowns). The window sits in the upper half of
//! the kernel's PML4, which every address space shares.

use crate::ownership::{Page, PageOwnership};
use crate::vm::{PhysMem, bits};
use alloc::vec::Vec;
use xok_abi::layout::PAGE_SIZE;

/// Where compiled code runs.
pub const CODE_WINDOW: u64 = 0xffff_8080_0000_0000;
/// Pages in the window (4 MiB).
pub const CODE_PAGES: usize = 1024;

/// The executable window and which of its pages hold code.
pub struct CodeArena {
    pages: Vec<Page>,
    used: Vec<bool>,
}

/// A piece of loaded code: its first page index and page count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeRange {
    first: usize,
    count: usize,
}

impl CodeRange {
    /// Packs into one word (for `Wakeup::code`).
    pub fn to_handle(self) -> u64 {
        (self.first as u64) | ((self.count as u64) << 32)
    }

    /// Unpacks [`CodeRange::to_handle`].
    pub fn from_handle(handle: u64) -> CodeRange {
        CodeRange { first: handle as u32 as usize, count: (handle >> 32) as usize }
    }

    /// The entry point.
    pub fn entry(self) -> *const u8 {
        (CODE_WINDOW + (self.first * PAGE_SIZE) as u64) as *const u8
    }
}

impl CodeArena {
    /// Builds the window's page tables under the kernel's `pml4` and returns the arena and
    /// the PML4 entry (to be copied into every address space).
    pub fn new(pages: &mut PageOwnership, mem: &mut impl PhysMem, pml4: Page) -> (CodeArena, u64) {
        let mut fresh = || {
            let page = pages.alloc_kernel().expect("pages for the code window at boot");
            mem.zero(page);
            page
        };
        let (pdpt, pd) = (fresh(), fresh());
        let tables: Vec<Page> = (0..CODE_PAGES / 512).map(|_| fresh()).collect();
        let code_pages: Vec<Page> = (0..CODE_PAGES).map(|_| fresh()).collect();
        let directory = bits::PRESENT | bits::WRITABLE;
        let index = |shift: u32| ((CODE_WINDOW >> shift) & 511) as usize;
        let pml4_entry = pdpt.address() as u64 | directory;
        mem.write_entry(pml4, index(39), pml4_entry);
        mem.write_entry(pdpt, index(30), pd.address() as u64 | directory);
        for (n, table) in tables.iter().enumerate() {
            mem.write_entry(pd, index(21) + n, table.address() as u64 | directory);
            for slot in 0..512 {
                // Present, not writable, not user, executable.
                mem.write_entry(*table, slot, code_pages[n * 512 + slot].address() as u64 | bits::PRESENT);
            }
        }
        (CodeArena { used: alloc::vec![false; code_pages.len()], pages: code_pages }, pml4_entry)
    }

    /// Copies `code` into free pages of the window and returns where it runs.
    pub fn load(&mut self, mem: &mut impl PhysMem, code: &[u8]) -> Option<CodeRange> {
        let count = code.len().div_ceil(PAGE_SIZE).max(1);
        let first = (0..=self.used.len().checked_sub(count)?).find(|&i| self.used[i..i + count].iter().all(|u| !u))?;
        for (n, chunk) in code.chunks(PAGE_SIZE).enumerate() {
            mem.write(self.pages[first + n], 0, chunk);
        }
        self.used[first..first + count].fill(true);
        Some(CodeRange { first, count })
    }

    /// Frees a range returned by `load`.
    pub fn free(&mut self, range: CodeRange) {
        self.used[range.first..range.first + range.count].fill(false);
    }
}
