//! Attacks the kernel from ring 3 and reports each outcome.
//!
//! Run with no arguments it is the driver: it makes every attack whose result comes back as a
//! syscall error itself, and starts a child (`hostile <attack>`) for each attack that can only
//! end in the kernel killing the attacker, then checks how the child ended. Each attack prints
//! one line, `hostile: attack <name>: REFUSED|CONTAINED|FAILED (<detail>)`, and a summary line
//! ends the run. The QEMU test asserts that every attack was refused or contained.
//! `hostile forge` makes only the forging attacks (`forge.rs`), for the test that watches the
//! wire.
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

use alloc::format;
use alloc::vec::Vec;
use exos::abi::layout::{HEAP_BASE, PAGE_SIZE, USER_BASE, USER_TOP};
use exos::abi::{EnvId, EnvStatus, Error, KILLED_BY_PARENT, PteFlags, Rights, SYSCALL_COUNT, Stat, Syscall};
use exos::{println, sys};

mod forge;
mod quota;

exos::entry!(run);

/// Where the driver maps its scratch pages (far from the heap's start).
const SCRATCH: usize = HEAP_BASE + 0x10_0000_0000;
/// A page of the kernel image (xok is loaded at 1 MiB).
const KERNEL_PAGE: usize = 0x100;
/// How long to wait for a child to end.
const CHILD_DEADLINE_NS: u64 = 20_000_000_000;

struct Report {
    attacks: usize,
    failed: usize,
    /// The kernel's counts of interrupts-off stretches of 1 ms and 10 ms or more when the
    /// last attack ended.
    off_counts: (usize, usize),
}

impl Report {
    fn new() -> Report {
        let off_counts = (sys::kernel_stat(Stat::InterruptsOffOver1ms), sys::kernel_stat(Stat::InterruptsOffOver10ms));
        Report { attacks: 0, failed: 0, off_counts }
    }

    fn outcome(&mut self, name: &str, ok: bool, detail: &str) {
        self.attacks += 1;
        let verdict = if ok { if detail.starts_with("killed") { "CONTAINED" } else { "REFUSED" } } else { "FAILED" };
        if !ok {
            self.failed += 1;
        }
        println!("hostile: attack {name}: {verdict} ({detail})");
        let counts = (sys::kernel_stat(Stat::InterruptsOffOver1ms), sys::kernel_stat(Stat::InterruptsOffOver10ms));
        if counts != self.off_counts {
            let (over_1ms, over_10ms) = (counts.0 - self.off_counts.0, counts.1 - self.off_counts.1);
            println!("hostile: interrupts off for 1 ms or more {over_1ms} times, 10 ms or more {over_10ms} times, during {name}");
            self.off_counts = counts;
        }
    }

    /// Prints the summary line; the exit status (0 when every attack was refused or contained).
    fn finish(&self) -> i32 {
        println!("hostile: summary: {} attacks, {} refused or contained, {} failed", self.attacks, self.attacks - self.failed, self.failed);
        i32::from(self.failed != 0)
    }

    /// Records a syscall attack: refused when it failed with one of `expected`.
    fn expect_error<T: core::fmt::Debug>(&mut self, name: &str, result: Result<T, Error>, expected: &[Error]) {
        match result {
            Err(error) if expected.contains(&error) => self.outcome(name, true, error.describe()),
            Err(error) => self.outcome(name, false, &format!("unexpected error {error}")),
            Ok(value) => self.outcome(name, false, &format!("succeeded with {value:?}")),
        }
    }
}

fn raw(call: Syscall, args: [usize; 5]) -> Result<usize, Error> {
    raw_number(call as usize, args)
}

fn raw_number(number: usize, args: [usize; 5]) -> Result<usize, Error> {
    match sys::raw(number, args) {
        (0, value) => Ok(value),
        (code, _) => Err(Error::from_code(code).unwrap_or(Error::NoSuchCall)),
    }
}

fn run(args: exos::Args) -> i32 {
    let words = args.to_vec();
    match words.first() {
        None => driver(),
        Some(attack) => child(attack, &words[1..]),
    }
}

fn driver() -> i32 {
    let mut report = Report::new();
    let free_before = sys::page_stats();
    pointer_attacks(&mut report);
    mapping_attacks(&mut report);
    grant_and_free_attacks(&mut report);
    environment_attacks(&mut report);
    nested_task_attack(&mut report);
    exhaustion_attack(&mut report);
    fatal_attacks(&mut report);
    read_only_grant_attack(&mut report);
    file_store_attacks(&mut report);
    loop_forever_attack(&mut report);
    quota::attacks(&mut report);
    console_forgery(&mut report);
    forge::attacks(&mut report);
    let free_after = sys::page_stats();
    println!("hostile: free pages before {free_before}, after {free_after}");
    report.finish()
}

/// Wild, kernel, unaligned, unmapped and overflowing pointers and lengths to every syscall that
/// takes a pointer.
fn pointer_attacks(r: &mut Report) {
    let wild = 0xdead_beef_0000;
    let text = "x";
    r.expect_error("console_write wild pointer", raw(Syscall::ConsoleWrite, [wild, 16, 0, 0, 0]), &[Error::BadAddress]);
    r.expect_error("console_write kernel pointer (leak kernel image)", raw(Syscall::ConsoleWrite, [0x10_0000, 64, 0, 0, 0]), &[Error::BadAddress]);
    r.expect_error("console_write kernel upper half", raw(Syscall::ConsoleWrite, [0xffff_8000_0000_0000, 64, 0, 0, 0]), &[Error::BadAddress]);
    r.expect_error("console_write unmapped user memory", raw(Syscall::ConsoleWrite, [USER_TOP - PAGE_SIZE, 16, 0, 0, 0]), &[Error::BadAddress]);
    r.expect_error("console_write pointer+length overflow", raw(Syscall::ConsoleWrite, [usize::MAX - 7, 64, 0, 0, 0]), &[Error::BadAddress, Error::BadLength]);
    r.expect_error("console_write huge length", raw(Syscall::ConsoleWrite, [text.as_ptr() as usize, 1 << 40, 0, 0, 0]), &[Error::BadLength]);
    r.expect_error("console_write length usize::MAX", raw(Syscall::ConsoleWrite, [text.as_ptr() as usize, usize::MAX, 0, 0, 0]), &[Error::BadLength]);
    r.expect_error("console_write range running off user space", raw(Syscall::ConsoleWrite, [USER_TOP - 8, 64, 0, 0, 0]), &[Error::BadAddress]);
    let name = "hello";
    r.expect_error("env_spawn kernel path pointer", raw(Syscall::EnvSpawn, [0x10_0000, 5, 0, 0, 0]), &[Error::BadAddress]);
    r.expect_error("env_spawn wild args pointer", raw(Syscall::EnvSpawn, [name.as_ptr() as usize, 5, wild, 8, 0]), &[Error::BadAddress]);
    r.expect_error("env_spawn huge path length", raw(Syscall::EnvSpawn, [name.as_ptr() as usize, 1 << 20, 0, 0, 0]), &[Error::BadLength]);
    r.expect_error("env_spawn huge args length", raw(Syscall::EnvSpawn, [name.as_ptr() as usize, 5, name.as_ptr() as usize, usize::MAX, 0]), &[Error::BadLength]);
    r.expect_error("env_spawn program not in the initrd", sys::env_spawn("no-such-program", b""), &[Error::NotFound]);
    for number in [SYSCALL_COUNT, 999, usize::MAX] {
        r.expect_error(&format!("undefined syscall {number:#x}"), raw_number(number, [0; 5]), &[Error::NoSuchCall]);
    }
}

/// Pages it does not hold, kernel memory, kernel addresses, unaligned addresses, bad flags.
fn mapping_attacks(r: &mut Report) {
    // Every page number in a sweep of physical memory that this program does not hold: the
    // kernel image, other programs' pages, free pages, and numbers past the end of RAM.
    // The sweep also meets this program's own pages; a page it may grant to itself is its own.
    let me = sys::env_id();
    let (mut mapped, mut own, mut tried) = (0, 0, 0);
    for page in (0..300_000).step_by(97).chain([usize::MAX, 1 << 40]) {
        tried += 1;
        // SAFETY: SCRATCH is unused by this program; the call is expected to fail anyway.
        if unsafe { sys::insert_pte(SCRATCH, page, PteFlags::empty()) }.is_ok() {
            if sys::page_grant(page, me, Rights::READ).is_ok() {
                own += 1;
            } else {
                mapped += 1;
            }
            // SAFETY: as above.
            let _ = unsafe { sys::remove_pte(SCRATCH) };
        }
    }
    let detail = format!("{mapped} of {tried} page numbers held by others mapped ({own} of its own)");
    r.outcome("map pages it does not hold (sweep)", mapped == 0, &detail);
    // SAFETY: SCRATCH is unused.
    r.expect_error("map the kernel image page", unsafe { sys::insert_pte(SCRATCH, KERNEL_PAGE, PteFlags::empty()) }, &[Error::NoSuchPage]);
    let page = sys::page_alloc().expect("one page");
    for (name, va) in [("map own page over the kernel image", 0x10_0000), ("map own page in the kernel upper half", 0xffff_8000_0000_0000), ("map own page at USER_TOP", USER_TOP), ("map own page at address 0", 0)] {
        // SAFETY: these addresses are not program memory; the calls must fail.
        r.expect_error(name, unsafe { sys::insert_pte(va, page, PteFlags::WRITE) }, &[Error::BadAddress]);
    }
    // SAFETY: SCRATCH + 123 is unused; the call must fail.
    r.expect_error("map at an unaligned address", unsafe { sys::insert_pte(SCRATCH + 123, page, PteFlags::WRITE) }, &[Error::BadAlignment]);
    r.expect_error("insert_pte with undefined flags", raw(Syscall::InsertPte, [SCRATCH, page, 0xff00, 0, 0]), &[Error::BadFlags]);
    // SAFETY: not program memory.
    r.expect_error("remove_pte of a kernel address", unsafe { sys::remove_pte(0x10_0000) }, &[Error::BadAddress]);
    // SAFETY: SCRATCH is not mapped.
    r.expect_error("remove_pte of an unmapped address", unsafe { sys::remove_pte(SCRATCH) }, &[Error::NotMapped]);
    // SAFETY: SCRATCH is unused; mapped and unmapped here only.
    unsafe { sys::insert_pte(SCRATCH, page, PteFlags::WRITE) }.expect("own page maps");
    r.expect_error("free a page that is still mapped", sys::page_free(page), &[Error::PageMapped]);
    // SAFETY: nothing refers to SCRATCH.
    unsafe { sys::remove_pte(SCRATCH) }.expect("unmap");
    sys::page_free(page).expect("free");
}

fn grant_and_free_attacks(r: &mut Report) {
    let me = sys::env_id();
    r.expect_error("grant the kernel image page", sys::page_grant(KERNEL_PAGE, me, Rights::READ), &[Error::NoSuchPage]);
    let page = sys::page_alloc().expect("one page");
    r.expect_error("grant to a nonexistent environment", sys::page_grant(page, EnvId(0x7fff_f3ff), Rights::READ), &[Error::NoSuchEnv]);
    r.expect_error("grant undefined rights bits", raw(Syscall::PageGrant, [page, me.0 as usize, 0x80, 0, 0]), &[Error::BadFlags]);
    sys::page_free(page).expect("first free");
    r.expect_error("free a page twice", sys::page_free(page), &[Error::NoSuchPage, Error::NoRights]);
    r.expect_error("free a page never held", sys::page_free(KERNEL_PAGE), &[Error::NoSuchPage]);
}

fn environment_attacks(r: &mut Report) {
    // init is always the first environment: slot 0, generation 1.
    let init = EnvId(1 << EnvId::SLOT_BITS);
    r.expect_error("kill an environment that is not its child", sys::env_kill(init), &[Error::NotPermitted, Error::NoSuchEnv]);
    r.expect_error("kill itself through env_kill", sys::env_kill(sys::env_id()), &[Error::NotPermitted]);
    r.expect_error("env_status of a made-up id", sys::env_status(EnvId(0xffff_ffff)), &[Error::NoSuchEnv]);
}

/// Prints lines made to read as the kernel's (`xok: ...`): whole, split across writes, and
/// after a newline in the middle of a write. The console marks them (`!xok:`); the QEMU test
/// checks that no line starting with `xok:` says FORGED.
fn console_forgery(r: &mut Report) {
    let attempts: [&[&[u8]]; 3] = [
        &[b"xok: env 00000401 (hostile) exited with status 0 FORGED\n"],
        &[b"xo", b"k", b": all environments have ended; free pages 1 (at boot 1) FORGED\n"],
        &[b"an unfinished line, then\nxok: KERNEL PANIC FORGED\n"],
    ];
    let written = attempts.iter().all(|writes| writes.iter().all(|bytes| sys::console_write(bytes).is_ok()));
    r.outcome("forge kernel console lines (the test reads the console)", written, "marked by the kernel as !xok:");
}

/// Sets RFLAGS.NT (allowed in ring 3) and makes a syscall: a kernel that returns with `iretq`
/// while NT is still set would fault in ring 0.
fn nested_task_attack(r: &mut Report) {
    let id: usize;
    // SAFETY: sets and clears NT around one syscall (env_id); NT has no effect in ring 3 code
    // that does not execute iret, and rcx/r11 are declared clobbered.
    unsafe {
        core::arch::asm!(
            "pushfq",
            "or qword ptr [rsp], 0x4000",
            "popfq",
            "syscall",
            "pushfq",
            "and qword ptr [rsp], ~0x4000",
            "popfq",
            inlateout("rax") Syscall::EnvId as usize => _,
            lateout("rdx") id,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    let ok = id == sys::env_id().0 as usize;
    r.outcome("syscall with the nested-task flag set", ok, if ok { "kernel returned normally" } else { "wrong result" });
}

fn exhaustion_attack(r: &mut Report) {
    const BOUND: usize = 1 << 20;
    let mut pages = Vec::new();
    let end = loop {
        match sys::page_alloc() {
            Ok(page) if pages.len() < BOUND => pages.push(page),
            Ok(page) => {
                let _ = sys::page_free(page);
                break None;
            }
            Err(error) => break Some(error),
        }
    };
    let got = pages.len();
    let freed = pages.into_iter().filter(|&page| sys::page_free(page).is_ok()).count();
    let ok = matches!(end, Some(Error::QuotaExceeded | Error::NoMemory)) && freed == got;
    let detail = format!("stopped after {got} pages by {}; freed {freed}", end.map_or("nothing", Error::describe));
    r.outcome("exhaust physical memory", ok, &detail);
}

/// Starts `hostile <attack> <extra...>` and returns its id.
fn start_child(attack: &str, extra: &[&str]) -> Result<EnvId, Error> {
    let mut words = Vec::from([attack]);
    words.extend_from_slice(extra);
    sys::env_spawn("hostile", &exos::Args::encode(&words))
}

/// Waits (yielding) until the child is no longer alive.
fn wait_for(child: EnvId) -> Option<EnvStatus> {
    wait_for_within(child, CHILD_DEADLINE_NS)
}

/// Waits (yielding) up to `ns` nanoseconds until the child is no longer alive.
fn wait_for_within(child: EnvId, ns: u64) -> Option<EnvStatus> {
    let deadline = sys::time() + ns;
    while sys::time() < deadline {
        match sys::env_status(child) {
            Ok(EnvStatus::Alive) => sys::env_yield(),
            Ok(status) => return Some(status),
            Err(_) => return None,
        }
    }
    None
}

fn fatal_attacks(r: &mut Report) {
    const FATAL: [(&str, u32); 15] = [
        ("x87-instruction", 7),
        ("read-kernel", 14),
        ("write-kernel", 14),
        ("read-kernel-upper-half", 14),
        ("jump-into-kernel", 14),
        ("write-own-code", 14),
        ("execute-stack", 14),
        ("stack-overflow", 14),
        ("divide-by-zero", 0),
        ("cli", 13),
        ("hlt", 13),
        ("write-cr3", 13),
        ("port-io", 13),
        ("int3", 13),
        ("int-0x80", 13),
    ];
    for (attack, vector) in FATAL {
        let outcome = start_child(attack, &[]).map(wait_for);
        let name = format!("{attack} (in a child)");
        match outcome {
            Ok(Some(EnvStatus::Killed(v))) if v == vector => r.outcome(&name, true, &format!("killed by the kernel, vector {v}")),
            other => r.outcome(&name, false, &format!("expected a kill with vector {vector}, got {other:?}")),
        }
    }
}

/// Grants a page read-only to a child, which tries to map it writable, to grant more than it
/// holds, and finally writes through its read-only mapping.
fn read_only_grant_attack(r: &mut Report) {
    let page = sys::page_alloc().expect("one page");
    let argument = format!("{page}");
    let child = match start_child("read-only", &[&argument]) {
        Ok(child) => child,
        Err(error) => return r.outcome("write to a page granted read-only", false, &format!("spawn failed: {error}")),
    };
    sys::page_grant(page, child, Rights::READ).expect("grant to own child");
    match wait_for(child) {
        Some(EnvStatus::Killed(14)) => r.outcome("write to a page granted read-only (in a child)", true, "killed by the kernel, vector 14"),
        other => r.outcome("write to a page granted read-only (in a child)", false, &format!("{other:?}")),
    }
    sys::page_free(page).expect("free granted page");
}

/// The file store's pages (the initrd) are public: readable by all, writable by none.
fn file_store_attacks(r: &mut Report) {
    let page = sys::kernel_stat(Stat::InitrdPage);
    if page == 0 {
        return r.outcome("write to the file store", false, "the kernel shares no file store");
    }
    // SAFETY: SCRATCH is unused here; a writable mapping must be refused.
    r.expect_error("map a file-store page writable", unsafe { sys::insert_pte(SCRATCH, page, PteFlags::WRITE) }, &[Error::NoRights]);
    r.expect_error("free a file-store page", sys::page_free(page), &[Error::NoRights]);
    r.expect_error("grant write rights on a file-store page", sys::page_grant(page, sys::env_id(), Rights::READ | Rights::WRITE), &[Error::NoRights]);
    match start_child("write-file-store", &[]).map(wait_for) {
        Ok(Some(EnvStatus::Killed(14))) => r.outcome("write to the mapped file store (in a child)", true, "killed by the kernel, vector 14"),
        other => r.outcome("write to the mapped file store (in a child)", false, &format!("{other:?}")),
    }
}

fn loop_forever_attack(r: &mut Report) {
    let child = match start_child("loop-forever", &[]) {
        Ok(child) => child,
        Err(error) => return r.outcome("loop forever", false, &format!("spawn failed: {error}")),
    };
    // While the child spins, this program must keep getting the CPU (preemption).
    let start = sys::time();
    let mut rounds = 0u64;
    while sys::time() < start + 300_000_000 {
        sys::env_yield();
        rounds += 1;
    }
    let alive = sys::env_status(child) == Ok(EnvStatus::Alive);
    let killed = sys::env_kill(child).is_ok() && sys::env_status(child) == Ok(EnvStatus::Killed(KILLED_BY_PARENT));
    let detail = format!("killed by the kernel at its parent's request after {rounds} parent rounds; spinning child was alive: {alive}");
    r.outcome("loop forever (in a child)", alive && killed, &detail);
}

/// The attacks that end in the kernel killing this environment.
fn child(attack: &str, extra: &[&str]) -> i32 {
    if let Some(status) = quota::child(attack, extra) {
        return status;
    }
    match attack {
        "victim" => return forge::victim(),
        "forge" => {
            let mut report = Report::new();
            forge::attacks(&mut report);
            return report.finish();
        }
        _ => {}
    }
    // SAFETY: not sound on purpose: every attack below faults, and the kernel kills this
    // environment before any of them could return.
    unsafe {
        match attack {
            "read-kernel" => { core::ptr::read_volatile(0x10_0000 as *const u64); }
            "write-kernel" => core::ptr::write_volatile(0x10_0000 as *mut u64, 0),
            "read-kernel-upper-half" => { core::ptr::read_volatile(0xffff_8000_0000_1000 as *const u64); }
            "jump-into-kernel" => core::arch::asm!("call {0}", in(reg) 0x10_0000usize),
            "write-own-code" => core::ptr::write_volatile(USER_BASE as *mut u8, 0xcc),
            "execute-stack" => {
                let code = [0xc3u8; 16]; // ret
                core::arch::asm!("call {0}", in(reg) code.as_ptr());
            }
            "stack-overflow" => return recurse(0) as i32,
            "divide-by-zero" => core::arch::asm!("xor edx, edx", "xor ecx, ecx", "mov eax, 1", "div ecx", out("eax") _, out("ecx") _, out("edx") _),
            "cli" => core::arch::asm!("cli"),
            "hlt" => core::arch::asm!("hlt"),
            "write-cr3" => core::arch::asm!("xor eax, eax", "mov cr3, rax", out("rax") _),
            "port-io" => core::arch::asm!("mov al, 0x11", "out 0xf4, al", out("al") _),
            "int3" => core::arch::asm!("int3"),
            "x87-instruction" => core::arch::asm!("fld1", "fstp st(0)"),
            "int-0x80" => core::arch::asm!("int 0x80"),
            "read-only" => read_only_child(extra),
            "write-file-store" => {
                let file = exos::fs::open("www/index.html").map(|file| file.bytes().as_ptr());
                if let Ok(byte) = file {
                    core::ptr::write_volatile(byte as *mut u8, b'!');
                }
            }
            "loop-forever" => loop { core::hint::spin_loop() },
            _ => {
                println!("hostile: unknown attack {attack}");
                return 2;
            }
        }
    }
    println!("hostile: attack {attack} was not stopped");
    3
}

/// Recurses until the stack runs into the unmapped guard area below it.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let frame = [depth; 64];
    core::hint::black_box(&frame);
    if core::hint::black_box(depth) == u64::MAX { return 0 }
    recurse(depth + 1) + frame[3]
}

fn read_only_child(extra: &[&str]) {
    let mut r = Report::new();
    let page: usize = extra.first().and_then(|p| p.parse().ok()).unwrap_or(0);
    let va = SCRATCH;
    let deadline = sys::time() + CHILD_DEADLINE_NS;
    // The parent grants the page right after starting us: retry until it has.
    // SAFETY: va is unused by this program.
    while unsafe { sys::insert_pte(va, page, PteFlags::empty()) }.is_err() && sys::time() < deadline {
        sys::env_yield();
    }
    // SAFETY: va maps the granted page (or nothing); writable mapping must be refused.
    r.expect_error("map a read-only grant writable", unsafe { sys::insert_pte(va + PAGE_SIZE, page, PteFlags::WRITE) }, &[Error::NoRights]);
    let parent_and_me = sys::env_id();
    r.expect_error("grant write rights it was never given", sys::page_grant(page, parent_and_me, Rights::READ | Rights::WRITE), &[Error::NoRights]);
    // SAFETY: deliberately writes through the read-only mapping; the kernel must kill us.
    unsafe { core::ptr::write_volatile(va as *mut u64, 0x4141) };
}
