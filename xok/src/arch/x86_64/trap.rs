//! What happens on every entry to the kernel: syscalls, interrupts and exceptions, and how the
//! kernel leaves again (running an environment, or idling until an interrupt).

use super::cpu::{EXIT_FAILURE, EXIT_SUCCESS, exit_qemu};
use super::idt::{IRQ_BASE, exception_name};
use super::machine::{BareMachine, load_page_table};
use super::profile;
use super::timer;
use crate::kernel::jobs::Job;
use crate::kernel::{InterruptStats, Kernel, Next};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use crate::kprintln;
use crate::trapframe::{SYSCALL_VECTOR, TrapFrame};
use alloc::format;
use alloc::string::String;
use spin::Mutex;
use xok_abi::{EnvId, EnvStatus};

/// The kernel state, set once at boot.
pub static KERNEL: Mutex<Option<Kernel<BareMachine>>> = Mutex::new(None);

/// When (TSC) the kernel last turned interrupts off (entered, or finished a compile).
static OFF_SINCE: AtomicU64 = AtomicU64::new(0);
/// The longest interrupts-off stretch seen, in TSC cycles.
static MAX_OFF: AtomicU64 = AtomicU64::new(0);
/// `xok.compile=locked`: run compiles with interrupts off inside the kernel's critical section,
/// as xok did before compile jobs (to measure the difference in one build).
pub static COMPILE_LOCKED: AtomicBool = AtomicBool::new(false);

/// What the kernel entered for when interrupts last went off (see [`InterruptStats`]).
static OFF_CAUSE: AtomicU64 = AtomicU64::new(0);
/// The cause of the longest stretch.
static MAX_OFF_CAUSE: AtomicU64 = AtomicU64::new(0);
/// Stretches of at least 1 ms and at least 10 ms.
static OFF_OVER_1MS: AtomicU64 = AtomicU64::new(0);
static OFF_OVER_10MS: AtomicU64 = AtomicU64::new(0);
/// TSC cycles spent halted in the idle loop.
static IDLE_CYCLES: AtomicU64 = AtomicU64::new(0);
/// TSC cycles spent handling interrupts taken in ring 0 (mostly while halted: the idle loop
/// takes them out of its own count).
static RING0_INTERRUPT_CYCLES: AtomicU64 = AtomicU64::new(0);

/// Interrupts went off now, for `cause` (a vector, `SYSCALL_VECTOR + number`, or 0 for the
/// kernel's own work: scheduling, finishing a compile).
fn interrupts_off_now(cause: u64) {
    OFF_SINCE.store(super::cpu::rdtsc(), Ordering::Relaxed);
    OFF_CAUSE.store(cause, Ordering::Relaxed);
}

/// Interrupts go on again: the stretch since [`interrupts_off_now`] counts toward the
/// interrupts-off statistics and the profile's time for its cause. Returns it, in cycles.
fn interrupts_on_now() -> u64 {
    let since = OFF_SINCE.load(Ordering::Relaxed);
    if since == 0 {
        return 0;
    }
    let stretch = super::cpu::rdtsc().saturating_sub(since);
    profile::account(OFF_CAUSE.load(Ordering::Relaxed), stretch);
    let millisecond = timer::tsc_hz() / 1000;
    if stretch >= millisecond {
        OFF_OVER_1MS.fetch_add(1, Ordering::Relaxed);
    }
    if stretch >= 10 * millisecond {
        OFF_OVER_10MS.fetch_add(1, Ordering::Relaxed);
    }
    if MAX_OFF.fetch_max(stretch, Ordering::Relaxed) < stretch {
        MAX_OFF_CAUSE.store(OFF_CAUSE.load(Ordering::Relaxed), Ordering::Relaxed);
    }
    stretch
}

/// Lost ticks and the longest interrupts-off stretch since boot.
pub fn interrupt_stats() -> InterruptStats {
    let hz = timer::tsc_hz().max(1);
    InterruptStats {
        lost_ticks: timer::lost_ticks(),
        max_off_ns: (u128::from(MAX_OFF.load(Ordering::Relaxed)) * 1_000_000_000 / u128::from(hz)) as u64,
        max_off_cause: MAX_OFF_CAUSE.load(Ordering::Relaxed),
        off_over_1ms: OFF_OVER_1MS.load(Ordering::Relaxed),
        off_over_10ms: OFF_OVER_10MS.load(Ordering::Relaxed),
        idle_ns: (u128::from(IDLE_CYCLES.load(Ordering::Relaxed)) * 1_000_000_000 / u128::from(hz)) as u64,
    }
}

unsafe extern "C" {
    fn enter_user(frame: *const TrapFrame) -> !;
}

/// Called by every stub in entry.s with the frame it built on the kernel stack. Returns only for
/// interrupts taken in ring 0 (the idle loop and TSC calibration).
#[unsafe(no_mangle)]
extern "C" fn trap_handler(frame: &mut TrapFrame) {
    let cause = if frame.vector == SYSCALL_VECTOR { SYSCALL_VECTOR + frame.rax } else { frame.vector };
    interrupts_off_now(cause);
    check_stack_guard();
    if frame.from_user() {
        user_trap(frame);
    }
    match frame.vector {
        v if (IRQ_BASE as u64..IRQ_BASE as u64 + 16).contains(&v) => {
            let mut guard = KERNEL.lock();
            interrupt(guard.as_mut(), (v - IRQ_BASE as u64) as u8, None);
            drop(guard);
            RING0_INTERRUPT_CYCLES.fetch_add(interrupts_on_now(), Ordering::Relaxed);
        }
        _ => kernel_fault(frame),
    }
}

/// Runs `job` and every job after it, each with the kernel unlocked and interrupts enabled
/// (unless `xok.compile=locked`), handing results back under the lock.
fn run_jobs(mut job: Job) {
    loop {
        let locked = COMPILE_LOCKED.load(Ordering::Relaxed);
        let start = timer::now_ns();
        let done = if locked {
            job.run()
        } else {
            interrupts_on_now();
            let started = super::cpu::rdtsc();
            x86_64::instructions::interrupts::enable();
            let done = job.run();
            x86_64::instructions::interrupts::disable();
            profile::account(0, super::cpu::rdtsc().saturating_sub(started));
            interrupts_off_now(0);
            done
        };
        let spent = timer::now_ns().saturating_sub(start);
        let mut guard = KERNEL.lock();
        let kernel = guard.as_mut().expect("booted");
        kernel.finish_job(done, spent);
        match kernel.take_job() {
            Some(next) => job = next,
            None => return,
        }
    }
}

/// Handles PIC line `irq` (with the kernel, once it exists): the timer ticks, NICs receive and
/// complete. `interrupted` is the environment that was running, if any.
fn interrupt(kernel: Option<&mut Kernel<BareMachine>>, irq: u8, interrupted: Option<EnvId>) {
    if irq == 0 {
        timer::tick();
    }
    if let Some(kernel) = kernel {
        if irq == 0 {
            kernel.timer_tick(interrupted);
        } else {
            kernel.nic_interrupt(irq);
        }
    }
    timer::end_of_interrupt(irq);
}

fn user_trap(frame: &TrapFrame) -> ! {
    let (current, next, job) = {
        let mut guard = KERNEL.lock();
        let kernel = guard.as_mut().expect("traps from ring 3 come after boot");
        let Some(current) = kernel.current else { panic!("trap from ring 3 with no current environment") };
        if let Some(env) = kernel.envs.get_mut(current) {
            env.frame = *frame;
        }
        let next = match frame.vector {
            SYSCALL_VECTOR => kernel.syscall(current),
            v if (IRQ_BASE as u64..IRQ_BASE as u64 + 16).contains(&v) => {
                if v == IRQ_BASE as u64 {
                    profile::sample(current, frame.rip);
                }
                // Timer: the slice is over. NIC: a sleeper may have woken; reconsider.
                interrupt(Some(kernel), (v - IRQ_BASE as u64) as u8, Some(current));
                Next::Schedule
            }
            vector => {
                let why = describe_fault(frame);
                kernel.destroy(current, EnvStatus::Killed(vector as u32), &why);
                Next::Schedule
            }
        };
        (current, next, kernel.take_job())
    };
    if let Some(job) = job {
        run_jobs(job);
    }
    match next {
        Next::Resume => run(current),
        Next::Schedule => schedule(),
    }
}

/// Runs environment `id` (which must be alive): loads its page table and returns to ring 3.
fn run(id: EnvId) -> ! {
    let frame: *const TrapFrame = {
        let guard = KERNEL.lock();
        let kernel = guard.as_ref().expect("booted");
        let env = kernel.envs.get(id).expect("run() is only called for live environments");
        load_page_table(env.space.root() as u64);
        &env.frame
    };
    if profile::sampling() {
        profile::leaving_kernel(timer::timer_pending());
    }
    interrupts_on_now();
    // SAFETY: the frame lives in the environment's boxed table entry, which stays put until the
    // kernel runs again; it holds user selectors and IF set (TrapFrame::new_user or a frame
    // saved from ring 3), so iretq returns to ring 3 and cannot raise privilege.
    unsafe { enter_user(frame) }
}

/// Runs the next environment round-robin; idles while there is none; ends QEMU successfully
/// once every environment has ended.
pub fn schedule() -> ! {
    loop {
        let (next, job, tore_down) = {
            let mut guard = KERNEL.lock();
            let kernel = guard.as_mut().expect("booted");
            if kernel.teardown_pending() {
                kernel.teardown_step();
                (None, None, true)
            } else if kernel.envs.alive() == 0 {
                kernel.final_report();
                kprintln!("halting: nothing left to run");
                exit_qemu(EXIT_SUCCESS);
            } else {
                match kernel.take_job() {
                    Some(job) => (None, Some(job), false),
                    None => (kernel.pick_next(), None, false),
                }
            }
        };
        if tore_down {
            // Let waiting interrupts in between teardown steps.
            interrupts_on_now();
            x86_64::instructions::interrupts::enable();
            core::hint::spin_loop();
            x86_64::instructions::interrupts::disable();
            interrupts_off_now(0);
            continue;
        }
        if let Some(job) = job {
            run_jobs(job);
            continue;
        }
        match next {
            Some(id) => run(id),
            None => {
                interrupts_on_now();
                let handled_before = RING0_INTERRUPT_CYCLES.load(Ordering::Relaxed);
                let halted = super::cpu::rdtsc();
                x86_64::instructions::interrupts::enable_and_hlt();
                x86_64::instructions::interrupts::disable();
                // The interrupt that ended the halt was handled before `hlt` returned: its
                // time is the interrupt's, not idle.
                let handled = RING0_INTERRUPT_CYCLES.load(Ordering::Relaxed) - handled_before;
                IDLE_CYCLES.fetch_add(super::cpu::rdtsc().saturating_sub(halted).saturating_sub(handled), Ordering::Relaxed);
                interrupts_off_now(0);
            }
        }
    }
}

unsafe extern "C" {
    static stack_guard: [u64; 512];
}

/// The guard pattern below the kernel stack; `boot::kernel_main` writes it.
pub const STACK_GUARD_PATTERN: u64 = 0x5afe_57ac_6ead_beef;

/// Ends the machine if the kernel stack has grown into its guard area. Checks every 64th word
/// (and the topmost, which an overflow reaches first): cheap enough for every kernel entry.
fn check_stack_guard() {
    let guard = (&raw const stack_guard) as *const u64;
    // SAFETY: stack_guard is 512 u64s of .bss that only arm_stack_guard writes, at boot; the
    // indexes are below 512.
    let intact = (0..8).map(|i| 511 - 64 * i).all(|i| unsafe { guard.add(i).read_volatile() } == STACK_GUARD_PATTERN);
    if !intact {
        kprintln!("KERNEL FAULT: kernel stack overflow (guard area overwritten)");
        exit_qemu(EXIT_FAILURE);
    }
}

/// Fills the guard area below the kernel stack.
pub fn arm_stack_guard() {
    let guard = (&raw const stack_guard) as *mut u64;
    for i in 0..512 {
        // SAFETY: the guard area is 512 u64s of .bss owned by this function at boot.
        unsafe { guard.add(i).write_volatile(STACK_GUARD_PATTERN) };
    }
}

fn describe_fault(frame: &TrapFrame) -> String {
    let name = exception_name(frame.vector);
    if frame.vector == 14 {
        let address = x86_64::registers::control::Cr2::read_raw();
        let e = frame.error_code;
        let access = if e & 16 != 0 { "execute" } else if e & 2 != 0 { "write" } else { "read" };
        let kind = if e & 1 != 0 { "protection violation" } else { "not present" };
        format!("{name} at {address:#x} ({access}, {kind}), rip {:#x}", frame.rip)
    } else {
        format!("{name} (error code {:#x}), rip {:#x}", frame.error_code, frame.rip)
    }
}

fn kernel_fault(frame: &TrapFrame) -> ! {
    let cr2 = x86_64::registers::control::Cr2::read_raw();
    kprintln!(
        "KERNEL FAULT: {} (vector {}, error code {:#x}) at rip {:#x}, rsp {:#x}, cr2 {:#x}",
        exception_name(frame.vector),
        frame.vector,
        frame.error_code,
        frame.rip,
        frame.rsp,
        cr2
    );
    exit_qemu(EXIT_FAILURE);
}

/// Reports a kernel panic and ends QEMU with a failure status.
pub fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    kprintln!("KERNEL PANIC: {info}");
    exit_qemu(EXIT_FAILURE);
}
