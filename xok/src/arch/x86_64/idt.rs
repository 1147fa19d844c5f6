//! The interrupt descriptor table: all 32 exception vectors and the 16 PIC interrupts go to the
//! stubs in `entry.s`. Every gate has DPL 0, so `int n` from ring 3 is a general protection
//! fault, not a way in.

use super::gdt::DOUBLE_FAULT_IST;
use spin::Once;
use x86_64::VirtAddr;
use x86_64::instructions::tables::lidt;
use x86_64::structures::DescriptorTablePointer;

/// Vectors with stubs: 32 exceptions and 16 PIC interrupts.
pub const STUB_COUNT: usize = 48;
/// The first PIC vector (IRQ 0, the timer).
pub const IRQ_BASE: u8 = 32;

/// A 64-bit interrupt gate.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    attributes: u8,
    offset_middle: u16,
    offset_high: u32,
    reserved: u32,
}

const _: () = assert!(core::mem::size_of::<Gate>() == 16);

impl Gate {
    fn interrupt(handler: u64, ist: u8) -> Self {
        Gate {
            offset_low: handler as u16,
            selector: 0x08,
            ist,
            attributes: 0x8e, // present, DPL 0, 64-bit interrupt gate
            offset_middle: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

#[repr(C, align(16))]
struct Idt([Gate; 256]);

unsafe extern "C" {
    static trap_stub_table: [u64; STUB_COUNT];
}

static IDT: Once<Idt> = Once::new();

/// Builds and loads the IDT.
pub fn init() {
    let idt = IDT.call_once(|| {
        let mut gates = [Gate::default(); 256];
        for (vector, gate) in gates.iter_mut().take(STUB_COUNT).enumerate() {
            // SAFETY: trap_stub_table is an immutable table of code addresses in entry.s.
            let handler = unsafe { trap_stub_table[vector] };
            let ist = if vector == 8 { DOUBLE_FAULT_IST as u8 + 1 } else { 0 };
            *gate = Gate::interrupt(handler, ist);
        }
        Idt(gates)
    });
    let pointer = DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: VirtAddr::from_ptr(idt),
    };
    // SAFETY: the IDT is 'static and every present gate points at a stub in entry.s.
    unsafe { lidt(&pointer) };
}

/// A short name for an exception vector.
pub fn exception_name(vector: u64) -> &'static str {
    const NAMES: [&str; 32] = [
        "divide error", "debug", "NMI", "breakpoint", "overflow", "bound range exceeded",
        "invalid opcode", "device not available", "double fault", "coprocessor overrun",
        "invalid TSS", "segment not present", "stack fault", "general protection fault",
        "page fault", "reserved", "x87 floating-point error", "alignment check", "machine check",
        "SIMD floating-point error", "virtualization exception", "control protection",
        "reserved", "reserved", "reserved", "reserved", "reserved", "reserved",
        "hypervisor injection", "VMM communication", "security exception", "reserved",
    ];
    NAMES.get(vector as usize).copied().unwrap_or("interrupt")
}
