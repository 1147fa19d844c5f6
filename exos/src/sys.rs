//! Syscall stubs: one function per call of the xok interface (see `xok_abi::Syscall`).

use xok_abi::{EnvId, EnvStatus, Error, PteFlags, Rights, Stat, Syscall};

/// Issues syscall `number` with raw arguments; returns xok's `(rax, rdx)` status and value.
/// Memory safety holds whatever the arguments: the kernel checks every pointer. (Only
/// `insert_pte`/`remove_pte`, which can pull memory out from under Rust, have `unsafe`
/// wrappers.) Programs normally use the typed functions below; `hostile` uses this one.
pub fn raw(number: usize, args: [usize; 5]) -> (usize, usize) {
    let status: usize;
    let value: usize;
    // SAFETY: `syscall` enters xok, which preserves every register except rax, rdx (results),
    // rcx and r11 (clobbered by the instruction), and touches no memory of ours except through
    // checked pointers we passed. The remove_pte/insert_pte cases are covered by their wrappers.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") number => status,
            in("rdi") args[0],
            in("rsi") args[1],
            inlateout("rdx") args[2] => value,
            in("r10") args[3],
            in("r8") args[4],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    (status, value)
}

fn call(call: Syscall, args: [usize; 5]) -> Result<usize, Error> {
    match raw(call as usize, args) {
        (0, value) => Ok(value),
        (code, _) => Err(Error::from_code(code).unwrap_or(Error::NoSuchCall)),
    }
}

/// Writes bytes to the console (at most `xok_abi::CONSOLE_WRITE_MAX` per call).
pub fn console_write(bytes: &[u8]) -> Result<usize, Error> {
    call(Syscall::ConsoleWrite, [bytes.as_ptr() as usize, bytes.len(), 0, 0, 0])
}

/// Nanoseconds since boot.
pub fn time() -> u64 {
    call(Syscall::Time, [0; 5]).unwrap_or(0) as u64
}

/// The caller's environment id.
pub fn env_id() -> EnvId {
    EnvId(call(Syscall::EnvId, [0; 5]).unwrap_or(0) as u32)
}

/// Gives up the CPU for the rest of the time slice.
pub fn env_yield() {
    let _ = call(Syscall::EnvYield, [0; 5]);
}

/// Ends the program with `status`.
pub fn env_exit(status: u32) -> ! {
    let _ = call(Syscall::EnvExit, [status as usize, 0, 0, 0, 0]);
    unreachable!("env_exit returned")
}

/// Starts the initrd program `path` as a child with the NUL-separated words `args`.
pub fn env_spawn(path: &str, args: &[u8]) -> Result<EnvId, Error> {
    env_spawn_with(path, args, 0)
}

/// `env_spawn` with a flags word (`xok_abi::spawn_flags`: privilege and the child's share of
/// the caller's resources).
pub fn env_spawn_with(path: &str, args: &[u8], flags: usize) -> Result<EnvId, Error> {
    let a = [path.as_ptr() as usize, path.len(), args.as_ptr() as usize, args.len(), flags];
    call(Syscall::EnvSpawn, a).map(|id| EnvId(id as u32))
}

/// Ends a descendant environment and every live descendant of it; returns how many ended.
pub fn env_kill(env: EnvId) -> Result<usize, Error> {
    call(Syscall::EnvKill, [env.0 as usize, 0, 0, 0, 0])
}

/// One of the kernel's counters (see `xok_abi::Stat`).
pub fn kernel_stat(stat: Stat) -> usize {
    call(Syscall::KernelStats, [stat as usize, 0, 0, 0, 0]).unwrap_or(0)
}

/// Starts the kernel's profile over (privileged programs only; `xok_abi::profile`).
pub fn kernel_profile_start() -> Result<(), Error> {
    call(Syscall::KernelProfile, [xok_abi::profile::Op::Start as usize, 0, 0, 0, 0]).map(|_| ())
}

/// Reads the kernel's profile into `records`: the time per cause (`Op::Causes`, `first`
/// ignored) or the samples from number `first` on (`Op::Samples`). Returns how many it filled.
pub fn kernel_profile_read(op: xok_abi::profile::Op, first: usize, records: &mut [xok_abi::profile::Record]) -> Result<usize, Error> {
    use xok_abi::profile::{RECORD_LEN, Record};
    let mut bytes = alloc::vec![0u8; records.len() * RECORD_LEN];
    let filled = call(Syscall::KernelProfile, [op as usize, bytes.as_mut_ptr() as usize, records.len(), first, 0])?;
    for (record, chunk) in records.iter_mut().zip(bytes.chunks_exact(RECORD_LEN)).take(filled) {
        *record = Record::from_bytes(chunk.try_into().expect("RECORD_LEN bytes"));
    }
    Ok(filled)
}

/// What became of an environment.
pub fn env_status(env: EnvId) -> Result<EnvStatus, Error> {
    let word = call(Syscall::EnvStatus, [env.0 as usize, 0, 0, 0, 0])?;
    EnvStatus::from_word(word).ok_or(Error::NoSuchEnv)
}

/// Allocates a physical page; returns its page number.
pub fn page_alloc() -> Result<usize, Error> {
    call(Syscall::PageAlloc, [0; 5])
}

/// Gives `env` rights on `page`.
pub fn page_grant(page: usize, env: EnvId, rights: Rights) -> Result<(), Error> {
    call(Syscall::PageGrant, [page, env.0 as usize, rights.bits() as usize, 0, 0]).map(drop)
}

/// Drops the caller's rights on `page`.
pub fn page_free(page: usize) -> Result<(), Error> {
    call(Syscall::PageFree, [page, 0, 0, 0, 0]).map(drop)
}

/// Maps `page` at `va`.
///
/// # Safety
/// Replacing a mapping changes memory under any Rust reference into that page: `va` must not be
/// memory the program is using (its image, stack or heap).
pub unsafe fn insert_pte(va: usize, page: usize, flags: PteFlags) -> Result<(), Error> {
    call(Syscall::InsertPte, [va, page, flags.bits() as usize, 0, 0]).map(drop)
}

/// Unmaps the page at `va`; returns the page number that was mapped there.
///
/// # Safety
/// Nothing may use memory at `va` afterwards.
pub unsafe fn remove_pte(va: usize) -> Result<usize, Error> {
    call(Syscall::RemovePte, [va, 0, 0, 0, 0])
}

/// How many physical pages are free.
pub fn page_stats() -> usize {
    call(Syscall::PageStats, [0; 5]).unwrap_or(0)
}

/// What NIC `nic` is (MAC, link, model).
pub fn nic_info(nic: usize) -> Result<xok_abi::net::NicInfo, Error> {
    let word = call(Syscall::NicInfo, [nic, 0, 0, 0, 0])?;
    xok_abi::net::NicInfo::from_word(word).ok_or(Error::NoSuchNic)
}

/// Registers a packet ring of `count` entries of `size` bytes at `va` (mapped writable); the
/// kernel increments `counter` after every stored frame.
pub fn pktring_setring(va: usize, count: usize, size: usize, counter: &core::sync::atomic::AtomicU64) -> Result<usize, Error> {
    call(Syscall::PktringSetring, [va, count, size, counter.as_ptr() as usize, 0])
}

/// Unregisters a packet ring.
pub fn pktring_delring(ring: usize) -> Result<(), Error> {
    call(Syscall::PktringDelring, [ring, 0, 0, 0, 0]).map(drop)
}

/// Frames dropped at a ring because its next entry was busy (`usize::MAX`: frames that matched
/// no filter at all).
pub fn pktring_stats(ring: usize) -> Result<usize, Error> {
    call(Syscall::PktringStats, [ring, 0, 0, 0, 0])
}

/// Installs an encoded filter delivering into `ring`; `flags` from `xok_abi::net`.
pub fn dpf_insert(filter: &[u8], ring: usize, flags: usize) -> Result<u64, Error> {
    call(Syscall::DpfInsert, [filter.as_ptr() as usize, filter.len(), ring, flags, 0]).map(|id| id as u64)
}

/// Drops the caller's reference to a filter.
pub fn dpf_delete(filter: u64) -> Result<(), Error> {
    call(Syscall::DpfDelete, [filter as usize, 0, 0, 0, 0]).map(drop)
}

/// Gives `env` a reference to a filter.
pub fn dpf_ref(filter: u64, env: EnvId) -> Result<(), Error> {
    call(Syscall::DpfRef, [filter as usize, env.0 as usize, 0, 0, 0]).map(drop)
}

/// Queues one frame gathered from `segments` on `nic`; the kernel decrements `counter` when the
/// NIC is done with it (an atomic, because the kernel changes it behind the program's back). The
/// segments' memory must stay unchanged until then. The kernel sends only frames from the NIC's
/// MAC and from addresses and ports the caller holds a receive filter for (`ForeignSource`).
pub fn net_xmit(
    nic: usize,
    segments: &[xok_abi::net::GatherSegment],
    counter: &core::sync::atomic::AtomicU64,
) -> Result<(), Error> {
    net_xmit_with(nic, segments, counter, 0)
}

/// [`net_xmit`] with `flags` (`xok_abi::net::XMIT_UNCHECKED`, for privileged callers).
pub fn net_xmit_with(
    nic: usize,
    segments: &[xok_abi::net::GatherSegment],
    counter: &core::sync::atomic::AtomicU64,
    flags: usize,
) -> Result<(), Error> {
    let counter = counter.as_ptr() as usize;
    call(Syscall::NetXmit, [nic, segments.as_ptr() as usize, segments.len(), counter, flags]).map(drop)
}

/// Installs the caller's wakeup predicate (`wkpred` encoding); empty removes it.
pub fn wk_install(predicate: &[u8]) -> Result<(), Error> {
    call(Syscall::WkInstall, [predicate.as_ptr() as usize, predicate.len(), 0, 0, 0]).map(drop)
}

/// Sleeps until the installed predicate holds.
pub fn wk_sleep() {
    let _ = call(Syscall::WkSleep, [0; 5]);
}

/// The kernel's tick counter (`xok_abi::layout::TICK_HZ` per second).
pub fn ticks() -> u64 {
    // SAFETY: xok maps its tick-counter page read-only at TICKS_VA in every environment; the
    // u64 at offset 0 is aligned and only the kernel writes it.
    unsafe { core::ptr::read_volatile(xok_abi::layout::TICKS_VA as *const u64) }
}
