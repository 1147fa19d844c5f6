//! The bare-metal [`Machine`]: physical memory through the kernel's identity map of the low
//! gigabyte, the serial console, the TSC clock.

use super::code::{CodeArena, CodeRange};
use super::{serial, timer};
use crate::kernel::{LoadedCode, Machine};
use crate::ownership::Page;
use crate::vm::PhysMem;
use x86_64::PhysAddr;
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::PhysFrame;
use xok_abi::layout::PAGE_SIZE;

/// Physical memory the identity map covers; the kernel never manages pages above it.
pub const IDENTITY_MAPPED: usize = 1 << 30;

/// The machine xok runs on.
pub struct BareMachine {
    /// Physical address of the kernel's own PML4 (the boot page table).
    pub kernel_root: u64,
    /// Executable memory for compiled filters and predicates (set once at boot).
    pub code: Option<CodeArena>,
}

impl BareMachine {
    /// A machine whose kernel page table is at `kernel_root`; the code arena comes later.
    pub fn new(kernel_root: u64) -> Self {
        BareMachine { kernel_root, code: None }
    }
}

fn page_ptr(page: Page) -> *mut u8 {
    assert!(page.address() + PAGE_SIZE <= IDENTITY_MAPPED, "page {page:?} is outside the identity map");
    page.address() as *mut u8
}

impl PhysMem for BareMachine {
    fn read_entry(&self, table: Page, index: usize) -> u64 {
        assert!(index < 512);
        // SAFETY: `table` is a page the kernel allocated for a page table (in the identity map,
        // checked by page_ptr) and index < 512 keeps the read inside it.
        unsafe { (page_ptr(table) as *const u64).add(index).read_volatile() }
    }

    fn write_entry(&mut self, table: Page, index: usize, value: u64) {
        assert!(index < 512);
        // SAFETY: as for read_entry; the kernel owns the table page.
        unsafe { (page_ptr(table) as *mut u64).add(index).write_volatile(value) }
    }

    fn zero(&mut self, page: Page) {
        // SAFETY: the page lies in the identity map (page_ptr) and is owned by the caller's
        // environment or the kernel; no Rust reference aliases it. `rep stosq` stores
        // PAGE_SIZE / 8 zero words from rdi upwards (DF is clear in the kernel) -- one
        // instruction, where a byte loop costs thousands under emulation.
        unsafe {
            core::arch::asm!(
                "rep stosq",
                inout("rdi") page_ptr(page) => _,
                inout("rcx") PAGE_SIZE / 8 => _,
                in("rax") 0u64,
                options(nostack),
            );
        }
    }

    fn read(&self, page: Page, offset: usize, out: &mut [u8]) {
        assert!(offset + out.len() <= PAGE_SIZE);
        // SAFETY: the range lies within one identity-mapped page (checked above); user memory
        // is plain bytes, and `out` is kernel memory that cannot overlap a user page.
        unsafe { core::ptr::copy_nonoverlapping(page_ptr(page).add(offset), out.as_mut_ptr(), out.len()) }
    }

    fn write(&mut self, page: Page, offset: usize, data: &[u8]) {
        assert!(offset + data.len() <= PAGE_SIZE);
        // SAFETY: as for read.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), page_ptr(page).add(offset), data.len()) }
    }

    fn invalidate(&mut self, va: usize) {
        x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(va as u64));
    }
}

impl Machine for BareMachine {
    fn console_write(&mut self, bytes: &[u8]) {
        serial::write_bytes(bytes);
    }

    fn console_at_line_start(&self) -> bool {
        serial::at_line_start()
    }

    fn now_ns(&self) -> u64 {
        timer::now_ns()
    }

    fn use_kernel_page_table(&mut self) {
        load_page_table(self.kernel_root);
    }

    fn wake_check(&mut self, wakeup: &mut crate::wk::Wakeup) -> bool {
        let Some(compiled) = wakeup.compiled.as_ref() else { return wakeup.interpret(self) };
        if wakeup.code.is_none() {
            wakeup.code = self.load_code(compiled.code());
        }
        match wakeup.code {
            // SAFETY: the entry is the predicate's code, loaded above into the executable
            // window and kept there until release_code; the address table was made by
            // wkpred::resolve for this predicate and its pages are pinned while installed.
            Some(code) => unsafe {
                let function = wkpred::exec::entry_point(code.entry as *const u8);
                wkpred::exec::call(function, compiled, &wakeup.addresses)
            },
            None => wakeup.interpret(self),
        }
    }

    fn load_code(&mut self, bytes: &[u8]) -> Option<LoadedCode> {
        let mut arena = self.code.take();
        let range = arena.as_mut().and_then(|a| a.load(self, bytes));
        self.code = arena;
        range.map(|range| LoadedCode { handle: range.to_handle(), entry: range.entry() as usize })
    }

    fn release_code(&mut self, code: LoadedCode) {
        if let Some(arena) = self.code.as_mut() {
            arena.free(CodeRange::from_handle(code.handle));
        }
    }

    fn heap_use(&self) -> crate::kernel::HeapUse {
        crate::heap::usage()
    }

    fn interrupt_stats(&self) -> crate::kernel::InterruptStats {
        super::trap::interrupt_stats()
    }

    fn profile_start(&mut self) {
        super::profile::start();
    }

    fn profile_cause_ns(&self, cause: usize) -> u64 {
        super::profile::cause_ns(cause)
    }

    fn profile_sample(&self, n: usize) -> Option<(xok_abi::EnvId, u64)> {
        super::profile::sample_at(n)
    }

    fn profile_mark(&self) -> u64 {
        super::cpu::rdtsc()
    }

    fn profile_part(&mut self, part: u64, mark: u64) {
        super::profile::account_part(part, super::cpu::rdtsc().saturating_sub(mark));
    }
}

/// Loads `root` into CR3 unless it is already there.
pub fn load_page_table(root: u64) {
    let (current, _) = Cr3::read();
    if current.start_address().as_u64() != root {
        let frame = PhysFrame::containing_address(PhysAddr::new(root));
        // SAFETY: every root the kernel loads is either the boot page table or an address space
        // built by vm::AddressSpace::new, which maps the kernel identically.
        unsafe { Cr3::write(frame, Cr3Flags::empty()) };
    }
}
