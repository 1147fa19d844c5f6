//! The COM1 serial port, the kernel's console. Writes poll the transmitter; the kernel runs with
//! interrupts off on one CPU, so no lock is needed.

use super::cpu::{inb, outb};
use core::sync::atomic::{AtomicBool, Ordering};

const COM1: u16 = 0x3f8;

/// Whether the last byte written ended a line (or nothing was written yet).
static AT_LINE_START: AtomicBool = AtomicBool::new(true);

/// Whether the console is at the start of a line.
pub fn at_line_start() -> bool {
    AT_LINE_START.load(Ordering::Relaxed)
}

/// Sets COM1 to 115200 baud, 8N1, FIFOs on.
pub fn init() {
    outb(COM1 + 1, 0x00); // no interrupts
    outb(COM1 + 3, 0x80); // divisor latch
    outb(COM1, 0x01); // 115200 baud
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03); // 8N1
    outb(COM1 + 2, 0xc7); // FIFO on, cleared
    outb(COM1 + 4, 0x03); // DTR, RTS
}

/// Writes bytes to the console (a newline becomes CR LF).
pub fn write_bytes(bytes: &[u8]) {
    for &byte in bytes {
        if byte == b'\n' {
            put(b'\r');
        }
        put(byte);
    }
    if let Some(&last) = bytes.last() {
        AT_LINE_START.store(last == b'\n', Ordering::Relaxed);
    }
}

fn put(byte: u8) {
    while inb(COM1 + 5) & 0x20 == 0 {
        core::hint::spin_loop();
    }
    outb(COM1, byte);
}

/// A `core::fmt::Write` for the console.
pub struct SerialWriter;

impl core::fmt::Write for SerialWriter {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        write_bytes(s.as_bytes());
        Ok(())
    }
}

/// Prints a formatted line to the console, prefixed `xok: `, on a line of its own (after a
/// newline if a program left its line unfinished: see `crate::console`).
#[macro_export]
macro_rules! kprintln {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        if !$crate::arch::x86_64::serial::at_line_start() {
            $crate::arch::x86_64::serial::write_bytes(b"\n");
        }
        let _ = writeln!($crate::arch::x86_64::serial::SerialWriter, "xok: {}", format_args!($($arg)*));
    }};
}
