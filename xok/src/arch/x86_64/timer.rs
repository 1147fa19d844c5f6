//! The 8259 PICs and the PIT: a 100 Hz tick on vector 32, and the TSC calibrated against it.

use super::cpu::{inb, outb, rdtsc};
use super::idt::IRQ_BASE;
use core::sync::atomic::{AtomicU64, Ordering};

/// Timer interrupts per second.
pub const HZ: u64 = 100;
const PIT_HZ: u64 = 1_193_182;

static TICKS: AtomicU64 = AtomicU64::new(0);
static TSC_HZ: AtomicU64 = AtomicU64::new(1);
static TSC_AT_BOOT: AtomicU64 = AtomicU64::new(0);
static TICKS_AT_BOOT: AtomicU64 = AtomicU64::new(0);

/// Remaps the PICs to vectors 32..48, unmasks only the timer, and starts the PIT.
pub fn init() {
    outb(0x20, 0x11); // ICW1: init, expect ICW4
    outb(0xa0, 0x11);
    outb(0x21, IRQ_BASE); // ICW2: vector offsets
    outb(0xa1, IRQ_BASE + 8);
    outb(0x21, 4); // ICW3: slave on IRQ 2
    outb(0xa1, 2);
    outb(0x21, 1); // ICW4: 8086 mode
    outb(0xa1, 1);
    outb(0x21, 0xfe); // mask all but IRQ 0
    outb(0xa1, 0xff);
    outb(0x20, 0x0a); // OCW3: reads of port 0x20 return the request register (timer_pending)
    let divisor = (PIT_HZ / HZ) as u16;
    outb(0x43, 0x34); // channel 0, lobyte/hibyte, rate generator
    outb(0x40, divisor as u8);
    outb(0x40, (divisor >> 8) as u8);
}

/// Lets PIC line `irq` interrupt (and the cascade line, for the second PIC).
pub fn unmask(irq: u8) {
    if irq < 8 {
        outb(0x21, inb(0x21) & !(1 << irq));
    } else if irq < 16 {
        outb(0x21, inb(0x21) & !(1 << 2));
        outb(0xa1, inb(0xa1) & !(1 << (irq - 8)));
    }
}

/// Acknowledges an interrupt on PIC line `irq`.
pub fn end_of_interrupt(irq: u8) {
    if irq >= 8 {
        outb(0xa0, 0x20);
    }
    outb(0x20, 0x20);
}

/// Whether the timer has raised an interrupt the CPU has not taken yet (IRQ 0 in the master
/// PIC's request register, which port 0x20 reads by default).
pub fn timer_pending() -> bool {
    inb(0x20) & 1 != 0
}

/// Counts a timer interrupt.
pub fn tick() {
    TICKS.fetch_add(1, Ordering::Relaxed);
}

/// Timer interrupts since boot.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Measures the TSC frequency over a few timer ticks (interrupts are enabled briefly).
pub fn calibrate_tsc() {
    const TICKS_TO_MEASURE: u64 = 3;
    let wait_for_tick = || {
        let start = ticks();
        while ticks() == start {
            x86_64::instructions::interrupts::enable_and_hlt();
            x86_64::instructions::interrupts::disable();
        }
    };
    wait_for_tick();
    let start = rdtsc();
    for _ in 0..TICKS_TO_MEASURE {
        wait_for_tick();
    }
    let cycles = rdtsc() - start;
    TSC_HZ.store((cycles * HZ / TICKS_TO_MEASURE).max(1), Ordering::Relaxed);
    TSC_AT_BOOT.store(start, Ordering::Relaxed);
    TICKS_AT_BOOT.store(ticks() - TICKS_TO_MEASURE, Ordering::Relaxed);
}

/// Timer ticks that the clock says were due since calibration but never arrived (the PIC
/// keeps one pending tick; interrupts off for longer than a tick lose the rest).
pub fn lost_ticks() -> u64 {
    let due = now_ns() / (1_000_000_000 / HZ);
    due.saturating_sub(ticks().saturating_sub(TICKS_AT_BOOT.load(Ordering::Relaxed)))
}

/// TSC cycles per second.
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Nanoseconds since calibration.
pub fn now_ns() -> u64 {
    let cycles = rdtsc().wrapping_sub(TSC_AT_BOOT.load(Ordering::Relaxed));
    (u128::from(cycles) * 1_000_000_000 / u128::from(tsc_hz())) as u64
}
