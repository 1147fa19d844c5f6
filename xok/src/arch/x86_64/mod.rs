//! x86-64 support: boot, descriptor tables, traps, the PIC and PIT, the serial console, and the
//! [`machine::BareMachine`] that gives the kernel physical memory.

pub mod boot;
pub mod code;
pub mod cpu;
pub mod gdt;
pub mod idt;
pub mod machine;
pub mod profile;
pub mod serial;
pub mod timer;
pub mod trap;
