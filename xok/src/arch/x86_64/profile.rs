//! The bare machine's profile (`Syscall::KernelProfile`, `xok_abi::profile`): TSC cycles spent
//! in the kernel per cause of entry, and samples of the user instruction pointer at timer
//! interrupts. The trap layer feeds both; the kernel reads them through its `Machine`.

use super::timer;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use xok_abi::EnvId;
use xok_abi::profile::{CAUSE_COUNT, MAX_SAMPLES};

/// Cycles in the kernel, by cause number.
static CAUSE_CYCLES: [AtomicU64; CAUSE_COUNT] = [const { AtomicU64::new(0) }; CAUSE_COUNT];
/// Samples since `start`: environment id and instruction pointer, interleaved.
static SAMPLES: [AtomicU64; 2 * MAX_SAMPLES] = [const { AtomicU64::new(0) }; 2 * MAX_SAMPLES];
/// Samples taken since `start` (kept or not).
static SAMPLE_COUNT: AtomicUsize = AtomicUsize::new(0);
/// Whether `start` has been called (sampling costs nothing until then).
static SAMPLING: AtomicBool = AtomicBool::new(false);
/// Cycles of parts timed apart ([`account_part`]) since the current stay in the kernel began.
static PARTS_THIS_STAY: AtomicU64 = AtomicU64::new(0);
/// The timer ticked while the kernel ran: its interrupt arrives as soon as the program runs
/// again, and is no sample of the program.
static TICKED_IN_KERNEL: AtomicBool = AtomicBool::new(false);

/// Adds a stay in the kernel of `cycles` to `cause` (a cause number; unknown ones, such as a
/// syscall number past the last, count as the kernel's own work), less the parts timed apart
/// during it.
pub fn account(cause: u64, cycles: u64) {
    let index = usize::try_from(cause).ok().filter(|&c| c < CAUSE_COUNT).unwrap_or(0);
    let parts = PARTS_THIS_STAY.swap(0, Ordering::Relaxed);
    CAUSE_CYCLES[index].fetch_add(cycles.saturating_sub(parts), Ordering::Relaxed);
}

/// Adds `cycles` of the current stay to `part` (such as `NIC_DOORBELL_CAUSE`) instead of the
/// stay's cause.
pub fn account_part(part: u64, cycles: u64) {
    if let Some(total) = usize::try_from(part).ok().and_then(|p| CAUSE_CYCLES.get(p)) {
        total.fetch_add(cycles, Ordering::Relaxed);
        PARTS_THIS_STAY.fetch_add(cycles, Ordering::Relaxed);
    }
}

/// The kernel is about to run a program; `timer_pending` says whether the timer has ticked
/// while the kernel ran (its interrupt is still waiting).
pub fn leaving_kernel(timer_pending: bool) {
    TICKED_IN_KERNEL.store(timer_pending, Ordering::Relaxed);
}

/// Whether samples are being taken (and [`leaving_kernel`] wants to know about the timer).
pub fn sampling() -> bool {
    SAMPLING.load(Ordering::Relaxed)
}

/// The timer interrupted `env` at user address `rip`: a sample, unless the tick happened while
/// the kernel ran (then it says nothing about where the program spends its time).
pub fn sample(env: EnvId, rip: u64) {
    if !SAMPLING.load(Ordering::Relaxed) || TICKED_IN_KERNEL.swap(false, Ordering::Relaxed) {
        return;
    }
    let n = SAMPLE_COUNT.fetch_add(1, Ordering::Relaxed);
    if n < MAX_SAMPLES {
        SAMPLES[2 * n].store(u64::from(env.0), Ordering::Relaxed);
        SAMPLES[2 * n + 1].store(rip, Ordering::Relaxed);
    }
}

/// Zeroes the time per cause and the samples, and starts sampling.
pub fn start() {
    for cycles in &CAUSE_CYCLES {
        cycles.store(0, Ordering::Relaxed);
    }
    SAMPLE_COUNT.store(0, Ordering::Relaxed);
    SAMPLING.store(true, Ordering::Relaxed);
}

/// Nanoseconds spent for cause number `cause` since `start` (or boot).
pub fn cause_ns(cause: usize) -> u64 {
    let cycles = CAUSE_CYCLES.get(cause).map_or(0, |c| c.load(Ordering::Relaxed));
    (u128::from(cycles) * 1_000_000_000 / u128::from(timer::tsc_hz().max(1))) as u64
}

/// Sample number `n` since `start`, if it was kept.
pub fn sample_at(n: usize) -> Option<(EnvId, u64)> {
    if n >= SAMPLE_COUNT.load(Ordering::Relaxed).min(MAX_SAMPLES) {
        return None;
    }
    Some((EnvId(SAMPLES[2 * n].load(Ordering::Relaxed) as u32), SAMPLES[2 * n + 1].load(Ordering::Relaxed)))
}
