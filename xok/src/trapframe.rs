//! The saved user register state of an environment, in the order the entry stubs push it.

/// User code segment selector (GDT entry 4, RPL 3).
pub const USER_CODE_SELECTOR: u64 = 0x20 | 3;
/// User data segment selector (GDT entry 3, RPL 3).
pub const USER_DATA_SELECTOR: u64 = 0x18 | 3;
/// RFLAGS for user code: interrupts enabled, reserved bit 1 set.
pub const USER_RFLAGS: u64 = 0x202;
/// The `vector` recorded for a `syscall` entry (above every IDT vector).
pub const SYSCALL_VECTOR: u64 = 0x100;

/// Registers of an interrupted or calling environment.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)] // reason: the fields are the x86-64 registers of the same names
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// The IDT vector, or [`SYSCALL_VECTOR`].
    pub vector: u64,
    /// The CPU's error code (0 where it pushes none).
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

const _: () = assert!(core::mem::size_of::<TrapFrame>() == 22 * 8);

impl TrapFrame {
    /// The state a new program starts in.
    pub fn new_user(entry: usize, stack_top: usize, argument: usize) -> Self {
        TrapFrame {
            rip: entry as u64,
            rsp: stack_top as u64,
            rdi: argument as u64,
            cs: USER_CODE_SELECTOR,
            ss: USER_DATA_SELECTOR,
            rflags: USER_RFLAGS,
            ..TrapFrame::default()
        }
    }

    /// Whether the frame was saved while running in ring 3.
    pub fn from_user(&self) -> bool {
        self.cs & 3 == 3
    }
}
