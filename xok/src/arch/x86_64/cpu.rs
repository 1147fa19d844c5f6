//! Small CPU helpers: port I/O, the TSC, ending QEMU.

use x86_64::instructions::port::Port;

/// Writes a byte to an I/O port.
pub fn outb(port: u16, value: u8) {
    // SAFETY: only called for ports of devices this kernel owns (PIC, PIT, COM1, isa-debug-exit);
    // port writes do not touch memory.
    unsafe { Port::new(port).write(value) }
}

/// Reads a byte from an I/O port.
pub fn inb(port: u16) -> u8 {
    // SAFETY: as for `outb`; reading these ports has no memory effects.
    unsafe { Port::new(port).read() }
}

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc only reads a counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// `isa-debug-exit` status for a clean shutdown (QEMU exits with 33).
pub const EXIT_SUCCESS: u8 = 0x10;
/// `isa-debug-exit` status for a kernel failure (QEMU exits with 35).
pub const EXIT_FAILURE: u8 = 0x11;

/// Ends QEMU through the isa-debug-exit device (port 0xf4); halts if there is none.
pub fn exit_qemu(status: u8) -> ! {
    outb(0xf4, status);
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
