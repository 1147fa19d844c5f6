//! The virtual memory layout every environment sees.
//!
//! The low gigabyte of every address space is the kernel's (an identity map of physical memory,
//! supervisor-only); the kernel's device mappings live in the upper half. Programs own
//! `[USER_BASE, USER_TOP)`: their ELF segments, heap, stack and argument page all lie there, and
//! `insert_pte` refuses any address outside it.

/// Size of a page.
pub const PAGE_SIZE: usize = 4096;
/// Lowest user virtual address (1 GiB). Programs are linked here.
pub const USER_BASE: usize = 0x4000_0000;
/// One past the highest user virtual address (512 GiB).
pub const USER_TOP: usize = 0x80_0000_0000;
/// Where exos puts its heap.
pub const HEAP_BASE: usize = 0x10_0000_0000;
/// One past the top of the initial stack.
pub const STACK_TOP: usize = 0x7f_0000_0000;
/// Pages of initial stack the kernel maps below [`STACK_TOP`] (a guard gap lies below).
pub const STACK_PAGES: usize = 32;
/// The read-only page holding the program's arguments; `rdi` points here at entry.
/// Layout: `u64` argument block length, then the NUL-separated argument words.
pub const ARGS_VA: usize = 0x7f_0001_0000;

/// The read-only page every environment sees with the kernel's tick counter: a `u64` at
/// offset 0 that counts timer interrupts ([`TICK_HZ`] per second). Timeouts in wakeup
/// predicates are terms on it.
pub const TICKS_VA: usize = 0x7f_0002_0000;
/// Timer interrupts per second.
pub const TICK_HZ: u64 = 100;

/// Whether `[addr, addr + len)` lies wholly inside user space (and does not wrap).
pub fn is_user_range(addr: usize, len: usize) -> bool {
    match addr.checked_add(len) {
        Some(end) => addr >= USER_BASE && end <= USER_TOP,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ranges() {
        assert!(is_user_range(USER_BASE, PAGE_SIZE));
        assert!(is_user_range(USER_TOP - 1, 1));
        assert!(!is_user_range(USER_TOP - 1, 2));
        assert!(!is_user_range(USER_BASE - 1, 1));
        assert!(!is_user_range(0x10_0000, 1));
        assert!(!is_user_range(usize::MAX - 2, 10));
        assert!(!is_user_range(0xffff_8000_0000_0000, 8));
    }
}
