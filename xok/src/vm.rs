//! Address spaces: each environment's x86-64 page table, edited only through checks against the
//! page ownership vectors.
//!
//! Physical memory is reached through the [`PhysMem`] seam, so the same code runs on the bare
//! metal (the kernel's identity map) and in host unit tests (a map of fake pages).
//!
//! Layout (see `xok_abi::layout`): `PML4[0]` points at the environment's own PDPT, whose entry 0
//! is the kernel's supervisor-only identity map of the low gigabyte and whose entries 1..512
//! hold user mappings; the upper half of the PML4 is copied from the kernel's.

use crate::ownership::{Page, PageOwnership};
use xok_abi::layout::{PAGE_SIZE, USER_BASE, USER_TOP, is_user_range};
use xok_abi::{EnvId, Error, PteFlags};

/// Page-table entry bits.
pub mod bits {
    /// The entry is valid.
    pub const PRESENT: u64 = 1;
    /// Writes are allowed.
    pub const WRITABLE: u64 = 1 << 1;
    /// Ring 3 may use the mapping.
    pub const USER: u64 = 1 << 2;
    /// A 2 MiB page (in a page directory).
    pub const HUGE: u64 = 1 << 7;
    /// Instruction fetches are not allowed.
    pub const NO_EXECUTE: u64 = 1 << 63;
    /// The physical address field.
    pub const ADDRESS: u64 = 0x000f_ffff_ffff_f000;
}

/// Access to physical memory by page number.
pub trait PhysMem {
    /// Reads entry `index` of the page table in `table`.
    fn read_entry(&self, table: Page, index: usize) -> u64;
    /// Writes entry `index` of the page table in `table`.
    fn write_entry(&mut self, table: Page, index: usize, value: u64);
    /// Fills a page with zeros.
    fn zero(&mut self, page: Page);
    /// Copies bytes out of a page, starting at `offset`.
    fn read(&self, page: Page, offset: usize, out: &mut [u8]);
    /// Copies bytes into a page, starting at `offset`.
    fn write(&mut self, page: Page, offset: usize, data: &[u8]);
    /// Drops any cached translation of `va` in the current address space.
    fn invalidate(&mut self, va: usize);
}

/// The kernel's part of every address space.
#[derive(Clone, Copy, Debug)]
pub struct KernelMappings {
    /// The PDPT entry for the low gigabyte (supervisor-only).
    pub low_gigabyte: u64,
    /// PML4 entries 256..512.
    pub upper_half: [u64; 256],
}

/// One environment's page table.
#[derive(Debug)]
pub struct AddressSpace {
    pml4: Page,
    pdpt: Page,
    /// Page directories and page tables created for user mappings (charged to the
    /// environment's quota by the kernel).
    tables: usize,
}

/// Access a user range must allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Reading.
    Read,
    /// Reading and writing.
    Write,
}

fn indices(va: usize) -> [usize; 4] {
    [(va >> 39) & 511, (va >> 30) & 511, (va >> 21) & 511, (va >> 12) & 511]
}

fn check_user_page(va: usize) -> Result<(), Error> {
    if !is_user_range(va, PAGE_SIZE) {
        return Err(Error::BadAddress);
    }
    if !va.is_multiple_of(PAGE_SIZE) {
        return Err(Error::BadAlignment);
    }
    Ok(())
}

impl AddressSpace {
    /// A new address space holding only the kernel's mappings.
    pub fn new(
        pages: &mut PageOwnership,
        mem: &mut impl PhysMem,
        kernel: &KernelMappings,
    ) -> Result<Self, Error> {
        let pml4 = pages.alloc_kernel()?;
        let pdpt = match pages.alloc_kernel() {
            Ok(page) => page,
            Err(error) => {
                pages.free_kernel(pml4);
                return Err(error);
            }
        };
        mem.zero(pml4);
        mem.zero(pdpt);
        let table = bits::PRESENT | bits::WRITABLE | bits::USER;
        mem.write_entry(pml4, 0, pdpt.address() as u64 | table);
        for (i, entry) in kernel.upper_half.iter().enumerate() {
            mem.write_entry(pml4, 256 + i, *entry);
        }
        mem.write_entry(pdpt, 0, kernel.low_gigabyte);
        Ok(AddressSpace { pml4, pdpt, tables: 0 })
    }

    /// The physical address to load into CR3.
    pub fn root(&self) -> usize {
        self.pml4.address()
    }

    /// Page directories and tables this space has made for user mappings.
    pub fn tables(&self) -> usize {
        self.tables
    }

    /// How many tables mapping `va` would have to create.
    fn missing_tables(&self, mem: &impl PhysMem, va: usize) -> usize {
        let [_, i3, i2, _] = indices(va);
        let pd = mem.read_entry(self.pdpt, i3);
        if pd & bits::PRESENT == 0 {
            return 2;
        }
        let pt = mem.read_entry(Page(((pd & bits::ADDRESS) as usize) / PAGE_SIZE), i2);
        usize::from(pt & bits::PRESENT == 0)
    }

    /// The leaf entry for `va`, if every table on the way exists.
    fn leaf(&self, mem: &impl PhysMem, va: usize) -> Option<(Page, usize)> {
        let [_, i3, i2, i1] = indices(va);
        let mut table = self.pdpt;
        for index in [i3, i2] {
            let entry = mem.read_entry(table, index);
            if entry & bits::PRESENT == 0 || entry & bits::HUGE != 0 {
                return None;
            }
            table = Page(((entry & bits::ADDRESS) as usize) / PAGE_SIZE);
        }
        Some((table, i1))
    }

    /// The leaf entry for `va`, creating the tables on the way.
    fn leaf_or_create(
        &mut self,
        pages: &mut PageOwnership,
        mem: &mut impl PhysMem,
        va: usize,
    ) -> Result<(Page, usize), Error> {
        let [_, i3, i2, i1] = indices(va);
        let mut table = self.pdpt;
        for index in [i3, i2] {
            let mut entry = mem.read_entry(table, index);
            if entry & bits::PRESENT == 0 {
                let fresh = pages.alloc_kernel()?;
                mem.zero(fresh);
                self.tables += 1;
                entry = fresh.address() as u64 | bits::PRESENT | bits::WRITABLE | bits::USER;
                mem.write_entry(table, index, entry);
            }
            table = Page(((entry & bits::ADDRESS) as usize) / PAGE_SIZE);
        }
        Ok((table, i1))
    }

    /// Maps `page` at `va` for `env`, replacing any mapping there. `env` must hold read rights,
    /// and write rights for a writable mapping; at most `table_budget` new page tables may be
    /// needed (else `QuotaExceeded`).
    #[allow(clippy::too_many_arguments)] // reason: the syscall's three arguments plus the state it edits
    pub fn insert_pte(
        &mut self,
        pages: &mut PageOwnership,
        mem: &mut impl PhysMem,
        env: EnvId,
        va: usize,
        page: Page,
        flags: PteFlags,
        table_budget: usize,
    ) -> Result<(), Error> {
        check_user_page(va)?;
        let write = flags.contains(PteFlags::WRITE);
        pages.check_mapping(env, page, write)?;
        if self.missing_tables(mem, va) > table_budget {
            return Err(Error::QuotaExceeded);
        }
        let (table, index) = self.leaf_or_create(pages, mem, va)?;
        pages.add_mapping(env, page, write)?;
        let old = mem.read_entry(table, index);
        let mut entry = page.address() as u64 | bits::PRESENT | bits::USER;
        if write {
            entry |= bits::WRITABLE;
        }
        if !flags.contains(PteFlags::EXECUTE) {
            entry |= bits::NO_EXECUTE;
        }
        mem.write_entry(table, index, entry);
        if old & bits::PRESENT != 0 {
            pages.remove_mapping(env, Page(((old & bits::ADDRESS) as usize) / PAGE_SIZE));
            mem.invalidate(va);
        }
        Ok(())
    }

    /// Unmaps the page at `va`; returns the page that was mapped there.
    pub fn remove_pte(
        &self,
        pages: &mut PageOwnership,
        mem: &mut impl PhysMem,
        env: EnvId,
        va: usize,
    ) -> Result<Page, Error> {
        check_user_page(va)?;
        let (table, index) = self.leaf(mem, va).ok_or(Error::NotMapped)?;
        let old = mem.read_entry(table, index);
        if old & bits::PRESENT == 0 {
            return Err(Error::NotMapped);
        }
        mem.write_entry(table, index, 0);
        mem.invalidate(va);
        let page = Page(((old & bits::ADDRESS) as usize) / PAGE_SIZE);
        pages.remove_mapping(env, page);
        Ok(page)
    }

    /// The page mapped at `va` if the mapping allows `access` from ring 3.
    pub fn translate(&self, mem: &impl PhysMem, va: usize, access: Access) -> Option<Page> {
        if !is_user_range(va, 1) {
            return None;
        }
        let (table, index) = self.leaf(mem, va)?;
        let entry = mem.read_entry(table, index);
        let needed = bits::PRESENT
            | bits::USER
            | if access == Access::Write { bits::WRITABLE } else { 0 };
        (entry & needed == needed).then_some(Page(((entry & bits::ADDRESS) as usize) / PAGE_SIZE))
    }

    /// Copies `out.len()` bytes of user memory at `va` into `out`. Every byte must be mapped
    /// readable in this address space.
    pub fn copy_from_user(&self, mem: &impl PhysMem, va: usize, out: &mut [u8]) -> Result<(), Error> {
        self.walk_user(mem, va, out.len(), Access::Read, |mem, page, offset, range| {
            mem.read(page, offset, &mut out[range]);
        })
    }

    /// Copies `data` into user memory at `va`, which must be mapped writable.
    pub fn copy_to_user(&self, mem: &mut impl PhysMem, va: usize, data: &[u8]) -> Result<(), Error> {
        // Check the whole range first so a failure changes nothing.
        self.walk_user(mem, va, data.len(), Access::Write, |_, _, _, _| {})?;
        let mut done = 0;
        while done < data.len() {
            let at = va + done;
            let page = self.translate(mem, at, Access::Write).ok_or(Error::BadAddress)?;
            let offset = at % PAGE_SIZE;
            let chunk = (PAGE_SIZE - offset).min(data.len() - done);
            mem.write(page, offset, &data[done..done + chunk]);
            done += chunk;
        }
        Ok(())
    }

    /// Visits each page-sized piece of `[va, va + len)`, checking the access first.
    fn walk_user<M: PhysMem>(
        &self,
        mem: &M,
        va: usize,
        len: usize,
        access: Access,
        mut visit: impl FnMut(&M, Page, usize, core::ops::Range<usize>),
    ) -> Result<(), Error> {
        if len == 0 {
            return Ok(()); // an empty range names no memory, whatever the pointer
        }
        if !is_user_range(va, len) {
            return Err(Error::BadAddress);
        }
        let mut done = 0;
        while done < len {
            let at = va + done;
            let page = self.translate(mem, at, access).ok_or(Error::BadAddress)?;
            let offset = at % PAGE_SIZE;
            let chunk = (PAGE_SIZE - offset).min(len - done);
            visit(mem, page, offset, done..done + chunk);
            done += chunk;
        }
        Ok(())
    }

    /// Tears the address space down: forgets every user mapping and frees every table.
    pub fn destroy(self, pages: &mut PageOwnership, mem: &mut impl PhysMem, env: EnvId) {
        let first = indices(USER_BASE)[1];
        let last = indices(USER_TOP - 1)[1];
        for i3 in first..=last {
            let pd_entry = mem.read_entry(self.pdpt, i3);
            if pd_entry & bits::PRESENT == 0 {
                continue;
            }
            let pd = Page(((pd_entry & bits::ADDRESS) as usize) / PAGE_SIZE);
            for i2 in 0..512 {
                let pt_entry = mem.read_entry(pd, i2);
                if pt_entry & bits::PRESENT == 0 {
                    continue;
                }
                let pt = Page(((pt_entry & bits::ADDRESS) as usize) / PAGE_SIZE);
                for i1 in 0..512 {
                    let leaf = mem.read_entry(pt, i1);
                    if leaf & bits::PRESENT != 0 {
                        pages.remove_mapping(env, Page(((leaf & bits::ADDRESS) as usize) / PAGE_SIZE));
                    }
                }
                pages.free_kernel(pt);
            }
            pages.free_kernel(pd);
        }
        pages.free_kernel(self.pdpt);
        pages.free_kernel(self.pml4);
    }
}

#[cfg(test)]
pub mod fake {
    //! A host stand-in for physical memory.
    use super::*;
    use alloc::boxed::Box;
    use alloc::collections::BTreeMap;

    /// Physical pages kept in a map, created zeroed on first touch.
    #[derive(Default)]
    pub struct FakeMem {
        pages: BTreeMap<usize, Box<[u8; PAGE_SIZE]>>,
        /// Addresses passed to `invalidate`.
        pub invalidated: alloc::vec::Vec<usize>,
    }

    impl FakeMem {
        fn page(&self, page: Page) -> [u8; PAGE_SIZE] {
            self.pages.get(&page.0).map_or([0; PAGE_SIZE], |p| **p)
        }
        fn page_mut(&mut self, page: Page) -> &mut [u8; PAGE_SIZE] {
            self.pages.entry(page.0).or_insert_with(|| Box::new([0; PAGE_SIZE]))
        }
    }

    impl PhysMem for FakeMem {
        fn read_entry(&self, table: Page, index: usize) -> u64 {
            let bytes = self.page(table);
            u64::from_le_bytes(bytes[index * 8..index * 8 + 8].try_into().unwrap())
        }
        fn write_entry(&mut self, table: Page, index: usize, value: u64) {
            self.page_mut(table)[index * 8..index * 8 + 8].copy_from_slice(&value.to_le_bytes());
        }
        fn zero(&mut self, page: Page) {
            *self.page_mut(page) = [0; PAGE_SIZE];
        }
        fn read(&self, page: Page, offset: usize, out: &mut [u8]) {
            out.copy_from_slice(&self.page(page)[offset..offset + out.len()]);
        }
        fn write(&mut self, page: Page, offset: usize, data: &[u8]) {
            self.page_mut(page)[offset..offset + data.len()].copy_from_slice(data);
        }
        fn invalidate(&mut self, va: usize) {
            self.invalidated.push(va);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeMem;
    use super::*;
    use xok_abi::Rights;

    const A: EnvId = EnvId(1);
    const B: EnvId = EnvId(2);
    const KERNEL: KernelMappings = KernelMappings { low_gigabyte: 0x1000 | 3, upper_half: [0; 256] };

    fn setup() -> (PageOwnership, FakeMem, AddressSpace) {
        let mut pages = PageOwnership::new(1024);
        for n in 256..1024 {
            pages.add_free(Page(n));
        }
        let mut mem = FakeMem::default();
        let space = AddressSpace::new(&mut pages, &mut mem, &KERNEL).unwrap();
        (pages, mem, space)
    }

    #[test]
    fn map_translate_copy_and_unmap() {
        let (mut pages, mut mem, mut space) = setup();
        let page = pages.alloc(A, 100).unwrap();
        let va = USER_BASE + 5 * PAGE_SIZE;
        space.insert_pte(&mut pages, &mut mem, A, va, page, PteFlags::WRITE, usize::MAX).unwrap();
        assert_eq!(space.translate(&mem, va + 17, Access::Write), Some(page));
        assert_eq!(space.copy_to_user(&mut mem, va + 4093, b"hello"), Err(Error::BadAddress));
        space.copy_to_user(&mut mem, va + 10, b"hello").unwrap();
        let mut out = [0; 5];
        space.copy_from_user(&mem, va + 10, &mut out).unwrap();
        assert_eq!(&out, b"hello");
        assert_eq!(pages.free(A, page), Err(Error::PageMapped));
        assert_eq!(space.remove_pte(&mut pages, &mut mem, A, va), Ok(page));
        assert_eq!(space.remove_pte(&mut pages, &mut mem, A, va), Err(Error::NotMapped));
        assert_eq!(space.translate(&mem, va, Access::Read), None);
        pages.free(A, page).unwrap();
    }

    #[test]
    fn mappings_need_rights_and_user_addresses() {
        let (mut pages, mut mem, mut space) = setup();
        let page = pages.alloc(B, 100).unwrap();
        let va = USER_BASE;
        assert_eq!(space.insert_pte(&mut pages, &mut mem, A, va, page, PteFlags::empty(), usize::MAX), Err(Error::NoRights));
        pages.grant(B, page, A, Rights::READ).unwrap();
        assert_eq!(space.insert_pte(&mut pages, &mut mem, A, va, page, PteFlags::WRITE, usize::MAX), Err(Error::NoRights));
        space.insert_pte(&mut pages, &mut mem, A, va, page, PteFlags::empty(), usize::MAX).unwrap();
        assert_eq!(space.translate(&mem, va, Access::Write), None);
        assert_eq!(space.copy_to_user(&mut mem, va, b"x"), Err(Error::BadAddress));
        let mine = pages.alloc(A, 100).unwrap();
        for bad in [0, 0x10_0000, USER_BASE - PAGE_SIZE, USER_TOP, 0xffff_8000_0000_0000] {
            assert_eq!(space.insert_pte(&mut pages, &mut mem, A, bad, mine, PteFlags::WRITE, usize::MAX), Err(Error::BadAddress));
        }
        assert_eq!(space.insert_pte(&mut pages, &mut mem, A, va + 8, mine, PteFlags::WRITE, usize::MAX), Err(Error::BadAlignment));
        assert_eq!(space.insert_pte(&mut pages, &mut mem, A, va, Page(3), PteFlags::empty(), usize::MAX), Err(Error::NoSuchPage));
    }

    #[test]
    fn replacing_a_mapping_releases_the_old_one() {
        let (mut pages, mut mem, mut space) = setup();
        let first = pages.alloc(A, 100).unwrap();
        let second = pages.alloc(A, 100).unwrap();
        space.insert_pte(&mut pages, &mut mem, A, USER_BASE, first, PteFlags::WRITE, usize::MAX).unwrap();
        space.insert_pte(&mut pages, &mut mem, A, USER_BASE, second, PteFlags::WRITE, usize::MAX).unwrap();
        assert_eq!(mem.invalidated, [USER_BASE]);
        pages.free(A, first).unwrap();
        assert_eq!(pages.free(A, second), Err(Error::PageMapped));
    }

    #[test]
    fn new_page_tables_need_budget() {
        let (mut pages, mut mem, mut space) = setup();
        let page = pages.alloc(A, 100).unwrap();
        let far = USER_BASE + 0x4000_0000; // a new PDPT slot: needs a directory and a table
        assert_eq!(space.insert_pte(&mut pages, &mut mem, A, far, page, PteFlags::empty(), 1), Err(Error::QuotaExceeded));
        assert_eq!(space.tables(), 0, "a refused call creates nothing");
        space.insert_pte(&mut pages, &mut mem, A, far, page, PteFlags::empty(), 2).unwrap();
        assert_eq!(space.tables(), 2);
        space.insert_pte(&mut pages, &mut mem, A, far + PAGE_SIZE, page, PteFlags::empty(), 0).unwrap();
        space.insert_pte(&mut pages, &mut mem, A, far + 0x20_0000, page, PteFlags::empty(), 1).unwrap();
        assert_eq!(space.tables(), 3);
    }

    #[test]
    fn destroy_returns_every_page() {
        let (mut pages, mut mem, mut space) = setup();
        let before = pages.free_count() + 2; // the PML4 and PDPT
        for i in 0..40 {
            let page = pages.alloc(A, 100).unwrap();
            let va = USER_BASE + i * 0x20_0000 + (i % 3) * 0x10_0000_0000;
            space.insert_pte(&mut pages, &mut mem, A, va, page, PteFlags::WRITE, usize::MAX).unwrap();
        }
        space.destroy(&mut pages, &mut mem, A);
        pages.release_env(A);
        assert_eq!(pages.free_count(), before);
    }

    #[test]
    fn ranges_that_wrap_or_leave_user_space_are_refused() {
        let (pages, mem, space) = setup();
        let _ = pages;
        let mut buf = [0; 16];
        assert_eq!(space.copy_from_user(&mem, usize::MAX - 4, &mut buf), Err(Error::BadAddress));
        assert_eq!(space.copy_from_user(&mem, USER_TOP - 8, &mut buf), Err(Error::BadAddress));
        assert_eq!(space.copy_from_user(&mem, USER_BASE, &mut buf), Err(Error::BadAddress));
        assert_eq!(space.copy_from_user(&mem, 1, &mut []), Ok(()), "empty ranges need no memory");
    }
}
