//! Syscall validation and environment lifetimes, driven on the host with a fake machine.

use super::*;
use crate::program::tests::elf;
use crate::vm::fake::FakeMem;
use alloc::boxed::Box;
use alloc::vec::Vec;
use goblin::elf::{header, program_header};
use xok_abi::layout::{USER_BASE, USER_TOP};

#[derive(Default)]
pub(super) struct TestMachine {
    pub(super) mem: FakeMem,
    pub(super) console: Vec<u8>,
    /// Code loaded by `load_code`, mapped executable in this process, by handle.
    pub(super) code: std::collections::BTreeMap<u64, xok_codegen::jit::Mapped>,
    next_code: u64,
    /// The clock (nanoseconds), moved by tests.
    pub(super) now: u64,
    /// The heap use reported (tests set it; the default is an empty 64 MiB heap).
    pub(super) heap: HeapUse,
    /// The profile reported: nanoseconds by cause number, and samples (tests set them;
    /// `profile_start` clears them).
    pub(super) profile_ns: std::collections::BTreeMap<usize, u64>,
    pub(super) profile_samples: Vec<(EnvId, u64)>,
}

impl PhysMem for TestMachine {
    fn read_entry(&self, table: Page, index: usize) -> u64 {
        self.mem.read_entry(table, index)
    }
    fn write_entry(&mut self, table: Page, index: usize, value: u64) {
        self.mem.write_entry(table, index, value)
    }
    fn zero(&mut self, page: Page) {
        self.mem.zero(page)
    }
    fn read(&self, page: Page, offset: usize, out: &mut [u8]) {
        self.mem.read(page, offset, out)
    }
    fn write(&mut self, page: Page, offset: usize, data: &[u8]) {
        self.mem.write(page, offset, data)
    }
    fn invalidate(&mut self, va: usize) {
        self.mem.invalidate(va)
    }
}

impl Machine for TestMachine {
    fn console_write(&mut self, bytes: &[u8]) {
        self.console.extend_from_slice(bytes);
    }
    fn console_at_line_start(&self) -> bool {
        self.console.last().is_none_or(|b| *b == b'\n')
    }
    fn now_ns(&self) -> u64 {
        self.now
    }
    fn use_kernel_page_table(&mut self) {}
    fn wake_check(&mut self, wakeup: &mut crate::wk::Wakeup) -> bool {
        wakeup.interpret(&self.mem)
    }
    fn load_code(&mut self, bytes: &[u8]) -> Option<LoadedCode> {
        // Any signature: the bytes are copied as they are (only the classifier's are run).
        let mapped = xok_codegen::jit::Mapped::map([bytes], &dpf::compile::signature(), 64).ok()?;
        self.next_code += 1;
        let code = LoadedCode { handle: self.next_code, entry: mapped.entry(0) as usize };
        self.code.insert(code.handle, mapped);
        Some(code)
    }
    fn release_code(&mut self, code: LoadedCode) {
        assert!(self.code.remove(&code.handle).is_some(), "released code that was not loaded");
    }
    fn heap_use(&self) -> HeapUse {
        if self.heap.size == 0 { HeapUse { used: 0, peak: 0, size: 64 << 20 } } else { self.heap }
    }
    fn interrupt_stats(&self) -> InterruptStats {
        InterruptStats::default()
    }
    fn profile_start(&mut self) {
        self.profile_ns.clear();
        self.profile_samples.clear();
    }
    fn profile_cause_ns(&self, cause: usize) -> u64 {
        self.profile_ns.get(&cause).copied().unwrap_or(0)
    }
    fn profile_sample(&self, n: usize) -> Option<(EnvId, u64)> {
        self.profile_samples.get(n).copied()
    }
    fn profile_mark(&self) -> u64 {
        0
    }
    fn profile_part(&mut self, _part: u64, _mark: u64) {}
}

pub(super) fn kernel() -> Kernel<TestMachine> {
    kernel_with_pages(8192)
}

/// A kernel over `count` physical pages (the first 256 reserved).
pub(super) fn kernel_with_pages(count: usize) -> Kernel<TestMachine> {
    let base = USER_BASE as u64;
    let rx = program_header::PF_R | program_header::PF_X;
    let rw = program_header::PF_R | program_header::PF_W;
    let program = elf(header::ET_EXEC, base, &[(base, 64, &[0xcc; 64], rx), (base + 0x1000, 0x2100, b"data", rw)]);
    let archive = xok_abi::initrd::write_archive([("good", &program[..]), ("junk", b"\x7fELFjunk")]);
    let initrd = Initrd::new(Box::leak(archive.into_boxed_slice()));
    let mut pages = PageOwnership::new(count);
    for n in 256..count {
        pages.add_free(Page(n));
    }
    let mappings = KernelMappings { low_gigabyte: 0x1003, upper_half: [0; 256] };
    Kernel::new(TestMachine::default(), pages, mappings, initrd)
}

/// Runs syscall `call` as `env` and returns its result.
pub(super) fn call(k: &mut Kernel<TestMachine>, env: EnvId, call: Syscall, args: [usize; 5]) -> Result<usize, Error> {
    call_raw(k, env, call as usize, args)
}

fn call_raw(k: &mut Kernel<TestMachine>, env: EnvId, number: usize, args: [usize; 5]) -> Result<usize, Error> {
    let frame = &mut k.envs.get_mut(env).unwrap().frame;
    frame.rax = number as u64;
    [frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8] = args.map(|a| a as u64);
    k.syscall(env);
    let frame = k.envs.get(env).unwrap().frame;
    match frame.rax {
        0 => Ok(frame.rdx as usize),
        code => Err(Error::from_code(code as usize).unwrap()),
    }
}

#[test]
fn spawn_loads_segments_stack_and_arguments() {
    let mut k = kernel();
    let id = k.spawn(None, "good", b"one\0two", false, 0).unwrap();
    let env = k.envs.get(id).unwrap();
    assert_eq!(env.frame.rip, USER_BASE as u64);
    let mut data = [0u8; 4];
    env.space.copy_from_user(&k.machine, USER_BASE + 0x1000, &mut data).unwrap();
    assert_eq!(&data, b"data");
    let mut tail = [1u8; 8];
    env.space.copy_from_user(&k.machine, USER_BASE + 0x3000, &mut tail).unwrap();
    assert_eq!(tail, [0; 8], "bss is zeroed");
    let mut args = [0u8; 15];
    env.space.copy_from_user(&k.machine, ARGS_VA, &mut args).unwrap();
    assert_eq!(&args[..8], &7u64.to_le_bytes());
    assert_eq!(&args[8..], b"one\0two");
    assert!(env.space.copy_to_user(&mut k.machine, ARGS_VA, b"x").is_err(), "arguments are read-only");
    assert!(String::from_utf8_lossy(&k.machine.console).contains("(good) started"));
}

#[test]
fn a_program_cannot_print_a_kernel_line() {
    let mut k = kernel();
    let id = k.spawn(None, "good", b"", false, 0).unwrap();
    let va = USER_BASE + 0x1000;
    let write = |k: &mut Kernel<TestMachine>, text: &[u8]| {
        k.envs.get(id).unwrap().space.copy_to_user(&mut k.machine, va, text).unwrap();
        call(k, id, Syscall::ConsoleWrite, [va, text.len(), 0, 0, 0]).unwrap();
    };
    write(&mut k, b"xok: env 00000401 (good) exited with status 0\n");
    write(&mut k, b"xo");
    write(&mut k, b"k: all environments have ended\n");
    write(&mut k, b"unfinished");
    k.log(format_args!("a real kernel line"));
    let console = String::from_utf8_lossy(&k.machine.console).into_owned();
    let kernel_lines: Vec<&str> = console.lines().filter(|l| l.starts_with("xok:")).collect();
    assert!(kernel_lines.iter().all(|l| !l.contains("exited with status 0") && !l.contains("all environments")), "{console}");
    assert!(kernel_lines.contains(&"xok: a real kernel line"), "a kernel line starts its own line: {console}");
    assert!(console.contains("!xok: env 00000401") && console.contains("!xok: all environments"), "{console}");
}

#[test]
fn spawn_refuses_missing_and_bad_programs() {
    let mut k = kernel();
    let free = k.pages.free_count();
    assert_eq!(k.spawn(None, "missing", b"", false, 0), Err(Error::NotFound));
    assert_eq!(k.spawn(None, "junk", b"", false, 0), Err(Error::BadProgram));
    assert_eq!(k.spawn(None, "good", &[0; ARGS_MAX + 1], false, 0), Err(Error::BadLength));
    assert_eq!(k.pages.free_count(), free);
}

#[test]
fn exit_returns_every_page() {
    let mut k = kernel();
    let free = k.pages.free_count();
    let id = k.spawn(None, "good", b"", false, 0).unwrap();
    let page = call(&mut k, id, Syscall::PageAlloc, [0; 5]).unwrap();
    call(&mut k, id, Syscall::InsertPte, [0x20_0000_0000, page, PteFlags::WRITE.bits() as usize, 0, 0]).unwrap();
    assert!(k.pages.free_count() < free);
    let frame = &mut k.envs.get_mut(id).unwrap().frame;
    (frame.rax, frame.rdi) = (Syscall::EnvExit as u64, 3);
    assert_eq!(k.syscall(id), Next::Schedule);
    assert_eq!(k.pages.free_count(), free);
    assert_eq!(k.envs.status(id), Some(EnvStatus::Exited(3)));
    k.final_report();
    let console = String::from_utf8_lossy(&k.machine.console).into_owned();
    assert!(console.contains(&alloc::format!("all environments have ended; free pages {free} (at boot")), "{console}");
}

#[test]
fn every_pointer_argument_is_checked() {
    let mut k = kernel();
    let id = k.spawn(None, "good", b"", false, 0).unwrap();
    let bad_pointers = [0, 8, 0x10_0000, USER_BASE - 1, USER_TOP - 2, 0xffff_8000_0000_0000, usize::MAX - 3, 0x30_0000_0000];
    for ptr in bad_pointers {
        assert_eq!(call(&mut k, id, Syscall::ConsoleWrite, [ptr, 4, 0, 0, 0]), Err(Error::BadAddress), "{ptr:#x}");
        assert_eq!(call(&mut k, id, Syscall::EnvSpawn, [ptr, 4, USER_BASE, 0, 0]), Err(Error::BadAddress));
        assert_eq!(call(&mut k, id, Syscall::EnvSpawn, [USER_BASE, 4, ptr, 4, 0]), Err(Error::BadAddress));
    }
    assert_eq!(call(&mut k, id, Syscall::ConsoleWrite, [USER_BASE, usize::MAX, 0, 0, 0]), Err(Error::BadLength));
    assert_eq!(call(&mut k, id, Syscall::ConsoleWrite, [USER_BASE, CONSOLE_WRITE_MAX + 1, 0, 0, 0]), Err(Error::BadLength));
    assert_eq!(call(&mut k, id, Syscall::EnvSpawn, [USER_BASE, PATH_MAX + 1, 0, 0, 0]), Err(Error::BadLength));
    // Unmapped gap between the code page and the data pages.
    assert_eq!(call(&mut k, id, Syscall::ConsoleWrite, [USER_BASE + 0x1000 - 2, 4, 0, 0, 0]), Ok(4));
    assert_eq!(call(&mut k, id, Syscall::ConsoleWrite, [USER_BASE + 0x4000 - 2, 4, 0, 0, 0]), Err(Error::BadAddress));
    assert_eq!(call_raw(&mut k, id, 999, [0; 5]), Err(Error::NoSuchCall));
    assert_eq!(call_raw(&mut k, id, usize::MAX, [0; 5]), Err(Error::NoSuchCall));
}

#[test]
fn memory_calls_check_rights_flags_and_addresses() {
    let mut k = kernel();
    let a = k.spawn(None, "good", b"", false, 0).unwrap();
    let b = k.spawn(None, "good", b"", false, 0).unwrap();
    let page = call(&mut k, a, Syscall::PageAlloc, [0; 5]).unwrap();
    let va = 0x20_0000_0000;
    // b holds nothing yet.
    assert_eq!(call(&mut k, b, Syscall::InsertPte, [va, page, 0, 0, 0]), Err(Error::NoRights));
    assert_eq!(call(&mut k, b, Syscall::PageGrant, [page, b.0 as usize, 1, 0, 0]), Err(Error::NoRights));
    assert_eq!(call(&mut k, a, Syscall::PageGrant, [page, b.0 as usize, 0, 0, 0]), Err(Error::BadFlags));
    assert_eq!(call(&mut k, a, Syscall::PageGrant, [page, b.0 as usize, 0x104, 0, 0]), Err(Error::BadFlags));
    assert_eq!(call(&mut k, a, Syscall::PageGrant, [page, 0x7777, 1, 0, 0]), Err(Error::NoSuchEnv));
    assert_eq!(call(&mut k, a, Syscall::PageGrant, [page, usize::MAX, 1, 0, 0]), Err(Error::NoSuchEnv));
    call(&mut k, a, Syscall::PageGrant, [page, b.0 as usize, Rights::READ.bits() as usize, 0, 0]).unwrap();
    assert_eq!(call(&mut k, b, Syscall::InsertPte, [va, page, PteFlags::WRITE.bits() as usize, 0, 0]), Err(Error::NoRights));
    assert_eq!(call(&mut k, b, Syscall::InsertPte, [va, page, 0x80, 0, 0]), Err(Error::BadFlags));
    assert_eq!(call(&mut k, b, Syscall::InsertPte, [va + 1, page, 0, 0, 0]), Err(Error::BadAlignment));
    assert_eq!(call(&mut k, b, Syscall::InsertPte, [0x1000, page, 0, 0, 0]), Err(Error::BadAddress));
    assert_eq!(call(&mut k, b, Syscall::InsertPte, [va, 1, 0, 0, 0]), Err(Error::NoSuchPage));
    assert_eq!(call(&mut k, b, Syscall::InsertPte, [va, usize::MAX, 0, 0, 0]), Err(Error::NoSuchPage));
    call(&mut k, b, Syscall::InsertPte, [va, page, 0, 0, 0]).unwrap();
    assert_eq!(call(&mut k, b, Syscall::PageFree, [page, 0, 0, 0, 0]), Err(Error::PageMapped));
    assert_eq!(call(&mut k, b, Syscall::RemovePte, [va, 0, 0, 0, 0]), Ok(page), "remove_pte names the page it unmapped");
    assert_eq!(call(&mut k, b, Syscall::RemovePte, [va, 0, 0, 0, 0]), Err(Error::NotMapped));
    call(&mut k, b, Syscall::PageFree, [page, 0, 0, 0, 0]).unwrap();
    assert_eq!(call(&mut k, b, Syscall::PageFree, [page, 0, 0, 0, 0]), Err(Error::NoRights));
    call(&mut k, a, Syscall::PageFree, [page, 0, 0, 0, 0]).unwrap();
    assert_eq!(call(&mut k, a, Syscall::PageFree, [page, 0, 0, 0, 0]), Err(Error::NoSuchPage));
}

#[test]
fn quota_stops_exhaustion_and_others_still_allocate() {
    let mut k = kernel();
    let hog = k.spawn(None, "good", b"", false, 0).unwrap();
    let other = k.spawn(None, "good", b"", false, 0).unwrap();
    let limit = k.accounts.get(hog).unwrap().limit.pages;
    let mut got = 0;
    while call(&mut k, hog, Syscall::PageAlloc, [0; 5]).is_ok() {
        got += 1;
        assert!(got <= limit);
    }
    // Its program image, stack and page tables count too.
    assert!(got + 10 < limit, "{got} of {limit}");
    assert_eq!(call(&mut k, hog, Syscall::PageAlloc, [0; 5]), Err(Error::QuotaExceeded));
    assert!(call(&mut k, other, Syscall::PageAlloc, [0; 5]).is_ok());
}

#[test]
fn only_parents_kill_and_status_survives_death() {
    let mut k = kernel();
    let parent = k.spawn(None, "good", b"", false, 0).unwrap();
    let stranger = k.spawn(None, "good", b"", false, 0).unwrap();
    let name = b"good";
    let va = USER_BASE + 0x1000;
    k.envs.get(parent).unwrap().space.copy_to_user(&mut k.machine, va, name).unwrap();
    let child = EnvId(call(&mut k, parent, Syscall::EnvSpawn, [va, 4, va, 0, 0]).unwrap() as u32);
    assert_eq!(call(&mut k, stranger, Syscall::EnvKill, [child.0 as usize, 0, 0, 0, 0]), Err(Error::NotPermitted));
    assert_eq!(call(&mut k, child, Syscall::EnvKill, [parent.0 as usize, 0, 0, 0, 0]), Err(Error::NotPermitted));
    assert_eq!(call(&mut k, stranger, Syscall::EnvStatus, [child.0 as usize, 0, 0, 0, 0]), Ok(0));
    call(&mut k, parent, Syscall::EnvKill, [child.0 as usize, 0, 0, 0, 0]).unwrap();
    k.run_jobs_inline();
    let word = call(&mut k, parent, Syscall::EnvStatus, [child.0 as usize, 0, 0, 0, 0]).unwrap();
    assert_eq!(EnvStatus::from_word(word), Some(EnvStatus::Killed(KILLED_BY_PARENT)));
    assert_eq!(call(&mut k, parent, Syscall::EnvKill, [child.0 as usize, 0, 0, 0, 0]), Err(Error::NoSuchEnv));
    assert_eq!(call(&mut k, parent, Syscall::EnvStatus, [0xdead_beef_usize << 12, 0, 0, 0, 0]), Err(Error::NoSuchEnv));
}

#[test]
fn allocated_pages_are_zeroed_even_when_reused() {
    let mut k = kernel();
    let a = k.spawn(None, "good", b"", false, 0).unwrap();
    let b = k.spawn(None, "good", b"", false, 0).unwrap();
    let page = call(&mut k, a, Syscall::PageAlloc, [0; 5]).unwrap();
    k.machine.mem.write(Page(page), 0, b"secret");
    call(&mut k, a, Syscall::PageFree, [page, 0, 0, 0, 0]).unwrap();
    let again = call(&mut k, b, Syscall::PageAlloc, [0; 5]).unwrap();
    assert_eq!(again, page, "the free list hands the same page back");
    let mut bytes = [1u8; 6];
    k.machine.mem.read(Page(again), 0, &mut bytes);
    assert_eq!(bytes, [0; 6]);
}

#[test]
fn page_tables_count_against_the_quota() {
    let mut k = kernel();
    let a = k.spawn(None, "good", b"", false, 6).unwrap();
    assert!(k.accounts.get(a).unwrap().limit.pages < 200);
    let page = call(&mut k, a, Syscall::PageAlloc, [0; 5]).unwrap();
    // One mapping per 1 GiB region costs two new tables each time.
    let mut mapped = 0;
    let result = loop {
        let va = 0x10_0000_0000 + mapped * 0x4000_0000;
        match call(&mut k, a, Syscall::InsertPte, [va, page, 0, 0, 0]) {
            Ok(_) => mapped += 1,
            Err(error) => break error,
        }
        assert!(mapped < 200, "tables are not charged");
    };
    assert_eq!(result, Error::QuotaExceeded);
    // Two tables did not fit; at most one page may.
    let _ = call(&mut k, a, Syscall::PageAlloc, [0; 5]);
    assert_eq!(call(&mut k, a, Syscall::PageAlloc, [0; 5]), Err(Error::QuotaExceeded));
}

#[test]
fn the_initrd_is_public_readable_by_every_program_and_writable_by_none() {
    let mut k = kernel();
    let first = Page(100); // below 256: reserved, as the initrd's pages are at boot
    k.share_initrd(first);
    let env = k.spawn(None, "good", b"", false, 0).unwrap();
    let stat = |k: &mut Kernel<TestMachine>, stat: xok_abi::Stat| call(k, env, Syscall::KernelStats, [stat as usize, 0, 0, 0, 0]);
    assert_eq!(stat(&mut k, xok_abi::Stat::InitrdPage), Ok(100));
    let bytes = stat(&mut k, xok_abi::Stat::InitrdBytes).unwrap();
    assert!(bytes > 0);
    let last = first.0 + bytes.div_ceil(PAGE_SIZE) - 1;
    let va = 0x60_0000_0000;
    let free = k.pages.free_count();
    assert_eq!(call(&mut k, env, Syscall::InsertPte, [va, first.0, PteFlags::WRITE.bits() as usize, 0, 0]), Err(Error::NoRights));
    call(&mut k, env, Syscall::InsertPte, [va, first.0, 0, 0, 0]).unwrap();
    call(&mut k, env, Syscall::InsertPte, [va + PAGE_SIZE, last, 0, 0, 0]).unwrap();
    assert_eq!(call(&mut k, env, Syscall::InsertPte, [va, last + 1, 0, 0, 0]), Err(Error::NoSuchPage), "the page after it is not public");
    assert_eq!(call(&mut k, env, Syscall::PageFree, [first.0, 0, 0, 0, 0]), Err(Error::NoRights));
    assert_eq!(call(&mut k, env, Syscall::PageGrant, [first.0, env.0 as usize, 3, 0, 0]), Err(Error::NoRights));
    k.destroy(env, EnvStatus::Exited(0), "");
    k.run_jobs_inline();
    assert!(k.pages.free_count() >= free, "nothing of the mapping stays behind");
    let next = k.spawn(None, "good", b"", false, 0).unwrap();
    call(&mut k, next, Syscall::InsertPte, [va, first.0, 0, 0, 0]).unwrap();
}

#[test]
fn the_profile_is_read_by_privileged_programs_only_in_whole_records() {
    use xok_abi::profile::{Op, RECORD_LEN, Record};
    let mut k = kernel();
    let env = k.spawn(None, "good", b"", false, 0).unwrap();
    let buffer = USER_BASE + 0x1000;
    let profile = |k: &mut Kernel<TestMachine>, op: Op, len: usize, first: usize| call(k, env, Syscall::KernelProfile, [op as usize, buffer, len, first, 0]);
    assert_eq!(profile(&mut k, Op::Start, 0, 0), Err(Error::NotPermitted));
    k.envs.get_mut(env).unwrap().privileged = true;
    assert_eq!(call(&mut k, env, Syscall::KernelProfile, [3, buffer, 1, 0, 0]), Err(Error::BadFlags));
    k.machine.profile_ns.insert(0x100 + Syscall::NetXmit as usize, 7_000);
    k.machine.profile_ns.insert(43, 500);
    k.machine.profile_samples = (0..150).map(|n| (env, USER_BASE as u64 + n)).collect();
    let read = |k: &Kernel<TestMachine>, count: usize| -> Vec<Record> {
        let mut bytes = vec![0u8; count * RECORD_LEN];
        k.envs.get(env).unwrap().space.copy_from_user(&k.machine, buffer, &mut bytes).unwrap();
        bytes.chunks(RECORD_LEN).map(|c| Record::from_bytes(c.try_into().unwrap())).collect()
    };
    assert_eq!(profile(&mut k, Op::Causes, 10, 0), Ok(2), "only causes with time");
    assert_eq!(read(&k, 2), [Record { key: 43, value: 500 }, Record { key: 0x115, value: 7_000 }]);
    // Samples 10.. in batches: all 140 fit in the 0x2100 bytes of the program's data.
    assert_eq!(profile(&mut k, Op::Samples, 1_000, 10), Ok(140));
    let samples = read(&k, 140);
    assert_eq!(samples[0], Record { key: u64::from(env.0), value: USER_BASE as u64 + 10 });
    assert_eq!(samples[139].value, USER_BASE as u64 + 149);
    assert_eq!(profile(&mut k, Op::Samples, 5, 0), Ok(5), "no more than asked for");
    assert_eq!(profile(&mut k, Op::Samples, 10, 150), Ok(0));
    assert_eq!(call(&mut k, env, Syscall::KernelProfile, [Op::Samples as usize, 0x10, 10, 0, 0]), Err(Error::BadAddress));
    assert_eq!(profile(&mut k, Op::Start, 0, 0), Ok(0));
    assert_eq!(profile(&mut k, Op::Causes, 10, 0), Ok(0), "started over");
}
