//! The xok kernel interface, defined once and used by both sides: the kernel's dispatcher and
//! exos's stubs.
//!
//! Calling convention (the `syscall` instruction): `rax` holds the [`Syscall`] number, the
//! arguments go in `rdi`, `rsi`, `rdx`, `r10`, `r8`, `r9`. On return `rax` is `0` on success or an
//! [`Error`] code, and `rdx` holds the result value. `rcx` and `r11` are clobbered; every other
//! register is preserved.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod arp;
pub mod initrd;
pub mod layout;
pub mod net;
pub mod profile;

use bitflags::bitflags;

/// Syscall numbers. Each handler in xok is named `sys_<object>_<verb>` after its variant.
#[repr(usize)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syscall {
    /// `console_write(ptr, len)`: writes `len` bytes (at most [`CONSOLE_WRITE_MAX`]) of the
    /// caller's readable memory to the console. Errors: `BadAddress`, `BadLength`.
    ConsoleWrite = 0,
    /// `time() -> nanoseconds since boot`. Never fails.
    Time = 1,
    /// `env_id() -> the caller's EnvId`. Never fails; the cheapest call (the "null syscall").
    EnvId = 2,
    /// `env_yield()`: gives up the rest of the time slice. Never fails.
    EnvYield = 3,
    /// `env_exit(status)`: ends the caller, releasing everything it holds. Does not return.
    EnvExit = 4,
    /// `env_spawn(path_ptr, path_len, args_ptr, args_len, flags) -> EnvId`: starts the initrd
    /// program `path` as a child with the NUL-separated words `args`. `flags` (see
    /// [`spawn_flags`]) may hold [`SPAWN_PRIVILEGED`], which only a privileged caller may pass,
    /// and the child's share of the caller's available resources and CPU tickets (the child's
    /// quota is carved out of the caller's and given back when the child's account closes:
    /// `docs/kernel.md`, "Quotas"). Errors: `BadAddress`, `BadLength`, `NotFound`,
    /// `BadProgram`, `TooManyEnvs`, `NoMemory`, `QuotaExceeded`, `BadFlags`, `NotPermitted`.
    EnvSpawn = 5,
    /// `env_kill(env) -> environments ended`: ends `env` and every live descendant of it;
    /// the caller must be a strict ancestor of `env` (its parent, or the parent of an ended
    /// environment that `env` descends from). `env` itself may have ended already: its
    /// orphans are still ended. Errors: `NoSuchEnv`, `NotPermitted`.
    EnvKill = 6,
    /// `env_status(env) -> EnvStatus word` (see [`EnvStatus`]). Errors: `NoSuchEnv`.
    EnvStatus = 7,
    /// `page_alloc() -> page number`: a free physical page; the caller holds read and write
    /// rights, charged to the caller until the page is free again. Errors: `NoMemory`,
    /// `QuotaExceeded`.
    PageAlloc = 8,
    /// `page_grant(page, env, rights)`: gives `env` the same or lesser rights than the caller
    /// holds. A new holder entry is charged to the caller's heap quota. Errors: `NoSuchPage`,
    /// `NoRights`, `NoSuchEnv`, `BadFlags`, `QuotaExceeded`.
    PageGrant = 9,
    /// `page_free(page)`: drops every right the caller holds on the page; the page returns to the
    /// free list once nobody holds a right and no pin remains. Errors: `NoSuchPage`, `NoRights`,
    /// `PageMapped`, `PagePinned`.
    PageFree = 10,
    /// `insert_pte(va, page, flags)`: maps `page` at `va` in the caller's page table, replacing
    /// any earlier mapping. Errors: `BadAddress`, `BadAlignment`, `NoSuchPage`, `NoRights`,
    /// `BadFlags`, `NoMemory`, `QuotaExceeded` (a new page table would pass the page quota).
    InsertPte = 11,
    /// `remove_pte(va) -> page`: unmaps the page at `va` and returns its number (so that a
    /// program that keeps no record of its pages can free them). Errors: `BadAddress`,
    /// `BadAlignment`, `NotMapped`.
    RemovePte = 12,
    /// `page_stats() -> free pages`: how many physical pages are free (for tests and tools).
    PageStats = 13,
    /// `nic_info(nic) -> word`: the NIC's MAC address and link state, packed as [`NicInfo`].
    /// Errors: `NoSuchNic`.
    NicInfo = 14,
    /// `pktring_setring(va, entry_count, entry_size, counter_va) -> ring`: registers a ring of
    /// `entry_count` entries of `entry_size` bytes at `va` (see [`net::RingEntryHeader`]); the
    /// caller must map every page writable. If `counter_va` is not 0, the kernel increments
    /// the `u64` there (8-aligned, writable) after every stored frame. The pages stay pinned while the ring exists; a ring
    /// spans at most [`net::RING_MAX_BYTES`]; its page list is charged to the caller's heap
    /// quota. Errors: `BadAddress`, `BadAlignment`, `BadLength`, `TooMany`, `NoMemory`,
    /// `QuotaExceeded`.
    PktringSetring = 15,
    /// `pktring_modring(ring, va, entry_count, entry_size, counter_va)`: replaces the ring's
    /// buffers and notification word (same checks as `pktring_setring`); delivery restarts at
    /// entry 0. Errors: as `setring`, and
    /// `NoSuchRing`.
    PktringModring = 16,
    /// `pktring_delring(ring)`: unregisters the ring and unpins its pages; its filters stop
    /// delivering. Errors: `NoSuchRing`.
    PktringDelring = 17,
    /// `dpf_insert(filter_ptr, filter_len, ring, flags) -> filter id`: installs a filter (the
    /// byte encoding of `dpf::Filter`, see `docs/dpf.md`) that delivers into `ring`. Errors: `BadAddress`,
    /// `BadLength`, `BadFilter`, `NoSuchRing`, `FilterOverlap`, `NotPermitted` (copy and
    /// fallback filters, and exclusive filters that take a whole protocol -- everything, all
    /// IPv4, all ARP, all TCP or UDP without a port -- need privilege), `TooMany` (no copy
    /// slot or dispatch group left anywhere), `QuotaExceeded` (the caller's filter, shape or
    /// heap quota).
    DpfInsert = 18,
    /// `dpf_delete(filter)`: drops the caller's reference. Errors: `NoSuchFilter`.
    DpfDelete = 19,
    /// `dpf_ref(filter, env)`: gives `env` a reference to a filter the caller holds (charged
    /// to the caller's heap quota). Errors: `NoSuchFilter`, `NoSuchEnv`, `QuotaExceeded`.
    DpfRef = 20,
    /// `net_xmit(nic, gather_ptr, gather_count, counter_va, flags)`: queues one frame gathered
    /// from `gather_count` [`net::GatherSegment`]s (readable by the caller); when the NIC is done
    /// the kernel decrements the `u64` at `counter_va` (writable by the caller).
    ///
    /// The frame's headers are checked like a received frame, mirrored (`docs/network.md`,
    /// "Transmit checks"): its source MAC (and an ARP sender's hardware address) must be the
    /// NIC's, and with sources and destinations swapped it must be a frame the caller would
    /// receive, through an exclusive or fallback filter it holds. So its source IPv4 address
    /// and TCP/UDP port, or the address an ARP frame speaks for, are the caller's. The kernel
    /// sends the header bytes it checked, from its own copy. `flags` may hold
    /// [`net::XMIT_UNCHECKED`] (privileged callers only), which skips the check.
    ///
    /// Errors: `NoSuchNic`, `BadAddress`, `BadLength`, `BadFlags`, `NotPermitted`
    /// (`XMIT_UNCHECKED` without privilege), `ForeignSource`, `MalformedHeader`, `QueueFull`,
    /// `LinkDown`, `QuotaExceeded` (the queued frame is charged to the caller's heap quota until
    /// the NIC is done).
    NetXmit = 21,
    /// `wk_install(pred_ptr, pred_len)`: sets the caller's wakeup predicate (the `wkpred`
    /// encoding); length 0 removes it. The predicate is compiled on the caller's time with
    /// interrupts enabled and charged to its heap quota. Errors: `BadAddress`, `BadLength`,
    /// `BadPredicate`, `QuotaExceeded`.
    WkInstall = 22,
    /// `wk_sleep()`: sleeps until the installed predicate is true (at once if it already is,
    /// or if none is installed). Never fails.
    WkSleep = 23,
    /// `pktring_stats(ring) -> dropped frames`: how many frames found the ring's next entry not
    /// free. `ring = usize::MAX` asks for the frames that matched no filter at all. Errors:
    /// `NoSuchRing`.
    PktringStats = 24,
    /// `kernel_stats(stat) -> value`: one of the kernel's counters, named by [`Stat`] (for
    /// tests, tools and programs that size themselves to their quota). Errors: `BadFlags`.
    KernelStats = 25,
    /// `kernel_profile(op, ptr, len, first) -> records`: the kernel's profile of where the CPU
    /// goes (`docs/kernel.md`, "Profile"); privileged callers only. `op` is a
    /// [`profile::Op`]: `Start` zeroes the time per cause and the samples and starts sampling;
    /// `Causes` writes up to `len` [`profile::Record`]s (cause, nanoseconds) to `ptr`;
    /// `Samples` writes up to `len` samples (environment, user instruction pointer) from sample
    /// number `first` on. Returns how many records it wrote. Errors: `NotPermitted`,
    /// `BadFlags` (no such op), `BadAddress`, `BadLength`.
    KernelProfile = 26,
}

/// Number of defined syscalls; numbers at or above it are refused with `NoSuchCall`.
pub const SYSCALL_COUNT: usize = 27;

/// What `kernel_stats` reports.
#[repr(usize)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// Free physical pages.
    FreePages = 0,
    /// Kernel heap bytes in use.
    HeapUsed = 1,
    /// Most kernel heap bytes ever in use at once.
    HeapPeak = 2,
    /// Kernel heap size in bytes.
    HeapSize = 3,
    /// Kernel heap bytes charged to all accounts.
    HeapCharged = 4,
    /// Installed DPF filters.
    Filters = 5,
    /// Live DPF dispatch groups (filter shapes).
    Shapes = 6,
    /// Live environments.
    Envs = 7,
    /// Accounts of ended environments that something still charges.
    Zombies = 8,
    /// Pages the caller may still take (page_alloc, page tables).
    MyPages = 9,
    /// Kernel heap bytes the caller may still be charged.
    MyHeap = 10,
    /// Environments the caller may still spawn (itself not counted).
    MyEnvs = 11,
    /// DPF shapes the caller may still create.
    MyShapes = 12,
    /// DPF filters the caller may still install.
    MyFilters = 13,
    /// The caller's CPU tickets.
    MyTickets = 14,
    /// Timer ticks the kernel missed because interrupts were off too long.
    LostTicks = 15,
    /// The longest stretch the kernel ran with interrupts off, in nanoseconds.
    MaxInterruptsOffNs = 16,
    /// The generation of the compiled DPF code is behind the filter set (frames are
    /// interpreted until it is rebuilt): 1 or 0.
    DpfCodeStale = 17,
    /// What the kernel was doing in its longest interrupts-off stretch: `0x100 + n` for
    /// syscall `n`, an interrupt or exception vector below `0x100`, 0 for its own work.
    MaxInterruptsOffCause = 18,
    /// How many times the kernel ran with interrupts off for 1 ms or more.
    InterruptsOffOver1ms = 19,
    /// How many times the kernel ran with interrupts off for 10 ms (a timer tick) or more.
    InterruptsOffOver10ms = 20,
    /// The physical page where the initrd (the file store, a cpio newc archive) starts: it and
    /// the pages after it are public, so any program may map them read-only with
    /// `insert_pte`. 0 if the kernel has none to share.
    InitrdPage = 21,
    /// The initrd's length in bytes.
    InitrdBytes = 22,
    /// Live packet rings (of all environments).
    Rings = 23,
    /// Nanoseconds the CPU spent halted with nothing to run since boot (the machine's idle
    /// time; against the clock, its idle share).
    IdleNs = 24,
    /// Received frames that matched no filter, or whose ring was gone.
    UnmatchedFrames = 25,
    /// Later IPv4 fragments stored in the ring their datagram's first fragment went to.
    FragmentsRouted = 26,
    /// Later IPv4 fragments that came before their first and were held for it.
    FragmentsHeld = 27,
    /// Held fragments dropped: their first fragment never came in time, or the hold was full.
    FragmentsDropped = 28,
}

/// Number of defined stats.
pub const STAT_COUNT: usize = 29;

impl Stat {
    /// The stat with number `n`, if there is one.
    pub fn from_number(n: usize) -> Option<Stat> {
        use Stat::*;
        const ALL: [Stat; STAT_COUNT] = [
            FreePages, HeapUsed, HeapPeak, HeapSize, HeapCharged, Filters, Shapes, Envs, Zombies, MyPages,
            MyHeap, MyEnvs, MyShapes, MyFilters, MyTickets, LostTicks, MaxInterruptsOffNs, DpfCodeStale,
            MaxInterruptsOffCause, InterruptsOffOver1ms, InterruptsOffOver10ms, InitrdPage, InitrdBytes, Rings, IdleNs,
            UnmatchedFrames, FragmentsRouted, FragmentsHeld, FragmentsDropped,
        ];
        ALL.get(n).copied()
    }
}

impl Syscall {
    /// The syscall with number `n`, if there is one.
    pub fn from_number(n: usize) -> Option<Self> {
        use Syscall::*;
        const ALL: [Syscall; SYSCALL_COUNT] = [
            ConsoleWrite, Time, EnvId, EnvYield, EnvExit, EnvSpawn, EnvKill, EnvStatus, PageAlloc,
            PageGrant, PageFree, InsertPte, RemovePte, PageStats, NicInfo, PktringSetring,
            PktringModring, PktringDelring, DpfInsert, DpfDelete, DpfRef, NetXmit, WkInstall, WkSleep,
            PktringStats, KernelStats, KernelProfile,
        ];
        ALL.get(n).copied()
    }
}

/// Every error a syscall can return. `0` is success and is not an error.
#[repr(usize)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The syscall number is not defined.
    NoSuchCall = 1,
    /// A pointer or virtual address lies outside user space, or a range is not mapped with the
    /// access the call needs.
    BadAddress = 2,
    /// An address that must be page-aligned is not.
    BadAlignment = 3,
    /// A length or count is over the call's bound, or a range wraps around.
    BadLength = 4,
    /// The page number names no physical page that programs may hold.
    NoSuchPage = 5,
    /// The caller does not hold the rights the call needs.
    NoRights = 6,
    /// No free physical memory is left.
    NoMemory = 7,
    /// The call would take the caller past its quota (pages, kernel heap, environments,
    /// filters or filter shapes).
    QuotaExceeded = 8,
    /// No live environment has this id.
    NoSuchEnv = 9,
    /// The caller may not do this (only ancestors may kill an environment; privileged filters
    /// and spawns need privilege).
    NotPermitted = 10,
    /// Flags or rights with undefined bits, or an empty rights set.
    BadFlags = 11,
    /// No mapping exists at the address.
    NotMapped = 12,
    /// The page is still mapped in the caller's page table.
    PageMapped = 13,
    /// No program of that name is in the initrd.
    NotFound = 14,
    /// The program is not a valid ELF executable for xok.
    BadProgram = 15,
    /// The environment table is full.
    TooManyEnvs = 16,
    /// No NIC has this number.
    NoSuchNic = 17,
    /// No ring of the caller's has this id.
    NoSuchRing = 18,
    /// No filter of the caller's has this id.
    NoSuchFilter = 19,
    /// The filter is malformed.
    BadFilter = 20,
    /// The filter overlaps an installed one and is not a strict subset of one the caller holds.
    FilterOverlap = 21,
    /// The NIC's send queue (or the caller's share of it) is full; retry after completions.
    QueueFull = 22,
    /// The NIC's link is down.
    LinkDown = 23,
    /// The predicate is malformed or reads memory the caller may not read.
    BadPredicate = 24,
    /// The caller holds as many of these objects (rings, filters) as it may.
    TooMany = 25,
    /// The page is in use by the kernel (a packet ring, a wakeup predicate or a frame being
    /// sent) and the caller is its last holder.
    PagePinned = 26,
    /// `net_xmit`: the frame's source is not the caller's: its source MAC (or an ARP sender's
    /// hardware address) is not the NIC's, or no filter the caller holds would receive the
    /// frame with sources and destinations swapped (another program's address or port, or
    /// nobody's).
    ForeignSource = 27,
    /// `net_xmit`: an IPv4 or ARP header too malformed to tell whose the frame is (IPv4
    /// version or header length wrong, a header cut short, ARP not for IPv4 over Ethernet).
    MalformedHeader = 28,
}

/// Number of defined error codes (1..=ERROR_COUNT).
pub const ERROR_COUNT: usize = 28;

impl Error {
    /// The error with code `code`, if there is one.
    pub fn from_code(code: usize) -> Option<Self> {
        use Error::*;
        const ALL: [Error; ERROR_COUNT] = [
            NoSuchCall, BadAddress, BadAlignment, BadLength, NoSuchPage, NoRights, NoMemory,
            QuotaExceeded, NoSuchEnv, NotPermitted, BadFlags, NotMapped, PageMapped, NotFound,
            BadProgram, TooManyEnvs, NoSuchNic, NoSuchRing, NoSuchFilter, BadFilter, FilterOverlap,
            QueueFull, LinkDown, BadPredicate, TooMany, PagePinned, ForeignSource, MalformedHeader,
        ];
        code.checked_sub(1).and_then(|i| ALL.get(i)).copied()
    }

    /// A short description for logs and test reports.
    pub fn describe(self) -> &'static str {
        match self {
            Error::NoSuchCall => "no such syscall",
            Error::BadAddress => "bad address",
            Error::BadAlignment => "bad alignment",
            Error::BadLength => "bad length",
            Error::NoSuchPage => "no such page",
            Error::NoRights => "no rights",
            Error::NoMemory => "out of memory",
            Error::QuotaExceeded => "quota exceeded",
            Error::NoSuchEnv => "no such environment",
            Error::NotPermitted => "not permitted",
            Error::BadFlags => "bad flags",
            Error::NotMapped => "not mapped",
            Error::PageMapped => "page still mapped",
            Error::NotFound => "not found",
            Error::BadProgram => "bad program",
            Error::TooManyEnvs => "too many environments",
            Error::NoSuchNic => "no such NIC",
            Error::NoSuchRing => "no such packet ring",
            Error::NoSuchFilter => "no such filter",
            Error::BadFilter => "bad filter",
            Error::FilterOverlap => "filter overlaps an installed one",
            Error::QueueFull => "send queue full",
            Error::LinkDown => "link down",
            Error::BadPredicate => "bad predicate",
            Error::TooMany => "too many",
            Error::PagePinned => "page pinned by the kernel",
            Error::ForeignSource => "the frame's source is not the sender's",
            Error::MalformedHeader => "malformed frame header",
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.describe())
    }
}

bitflags! {
    /// Access rights an environment holds on a physical page.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Rights: u8 {
        /// The page may be read (mapped without write access).
        const READ = 1;
        /// The page may be written (mapped writable).
        const WRITE = 2;
    }
}

bitflags! {
    /// Flags for `insert_pte`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct PteFlags: u64 {
        /// Map writable (needs the write right).
        const WRITE = 1;
        /// Map executable (otherwise the mapping is no-execute).
        const EXECUTE = 2;
    }
}

/// An environment id: a slot index and a generation, so a stale id never names a newer
/// environment that reuses the slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnvId(pub u32);

impl EnvId {
    /// Bits of the id that hold the slot index.
    pub const SLOT_BITS: u32 = 10;

    /// The id for `slot` in its `generation`.
    pub fn new(slot: usize, generation: u32) -> Self {
        EnvId((generation << Self::SLOT_BITS) | (slot as u32 & ((1 << Self::SLOT_BITS) - 1)))
    }

    /// The slot index.
    pub fn slot(self) -> usize {
        (self.0 & ((1 << Self::SLOT_BITS) - 1)) as usize
    }

    /// The generation of the slot this id was issued in.
    pub fn generation(self) -> u32 {
        self.0 >> Self::SLOT_BITS
    }
}

/// What `env_status` reports about an environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvStatus {
    /// Running, runnable or waiting.
    Alive,
    /// Ended by `env_exit` with this status.
    Exited(u32),
    /// Ended by the kernel after this CPU exception vector (or [`KILLED_BY_PARENT`]).
    Killed(u32),
}

/// The `Killed` code of an environment ended by its parent's `env_kill`.
pub const KILLED_BY_PARENT: u32 = 0x100;

impl EnvStatus {
    /// Packs the status into the syscall result word.
    pub fn to_word(self) -> usize {
        match self {
            EnvStatus::Alive => 0,
            EnvStatus::Exited(code) => 1 | ((code as usize) << 8),
            EnvStatus::Killed(code) => 2 | ((code as usize) << 8),
        }
    }

    /// Unpacks a syscall result word.
    pub fn from_word(word: usize) -> Option<Self> {
        let code = (word >> 8) as u32;
        match word & 0xff {
            0 => Some(EnvStatus::Alive),
            1 => Some(EnvStatus::Exited(code)),
            2 => Some(EnvStatus::Killed(code)),
            _ => None,
        }
    }
}

/// `env_spawn` flag: the child is privileged (may install copy and fallback filters and pass
/// privilege on). init is privileged.
pub const SPAWN_PRIVILEGED: usize = 1;
/// Where the child's share sits in the `env_spawn` flags.
pub const SPAWN_SHARE_SHIFT: u32 = 8;
/// A whole share: the child gets everything the parent has available.
pub const SPAWN_SHARE_WHOLE: usize = 256;
/// The share a child gets when the flags name none (0): half of what is available.
pub const SPAWN_DEFAULT_SHARE: usize = 128;

/// The `env_spawn` flags word: privilege and the child's share of the caller's available
/// resources and CPU tickets in 1/[`SPAWN_SHARE_WHOLE`]ths (0 = [`SPAWN_DEFAULT_SHARE`]).
pub const fn spawn_flags(privileged: bool, share: usize) -> usize {
    (privileged as usize) | (share << SPAWN_SHARE_SHIFT)
}

/// Splits an `env_spawn` flags word into (privileged, share); `None` if undefined bits are
/// set or the share is over a whole.
pub const fn parse_spawn_flags(flags: usize) -> Option<(bool, usize)> {
    let share = flags >> SPAWN_SHARE_SHIFT;
    let other = flags & ((1 << SPAWN_SHARE_SHIFT) - 1) & !SPAWN_PRIVILEGED;
    if other != 0 || share > SPAWN_SHARE_WHOLE {
        return None;
    }
    Some((flags & SPAWN_PRIVILEGED != 0, share))
}

/// Longest `console_write` in bytes.
pub const CONSOLE_WRITE_MAX: usize = 4096;
/// Longest program path for `env_spawn`.
pub const PATH_MAX: usize = 128;
/// Longest argument block for `env_spawn` (it must fit the argument page with its header).
pub const ARGS_MAX: usize = 4000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_numbers_round_trip() {
        for n in 0..SYSCALL_COUNT {
            assert_eq!(Syscall::from_number(n).unwrap() as usize, n);
        }
        assert_eq!(Syscall::from_number(SYSCALL_COUNT), None);
    }

    #[test]
    fn error_codes_round_trip() {
        assert_eq!(Error::from_code(0), None);
        for code in 1..=ERROR_COUNT {
            assert_eq!(Error::from_code(code).unwrap() as usize, code);
        }
        assert_eq!(Error::from_code(ERROR_COUNT + 1), None);
    }

    #[test]
    fn stats_and_spawn_flags_round_trip() {
        for n in 0..STAT_COUNT {
            assert_eq!(Stat::from_number(n).unwrap() as usize, n);
        }
        assert_eq!(Stat::from_number(STAT_COUNT), None);
        assert_eq!(parse_spawn_flags(spawn_flags(true, 64)), Some((true, 64)));
        assert_eq!(parse_spawn_flags(spawn_flags(false, 0)), Some((false, 0)));
        assert_eq!(parse_spawn_flags(spawn_flags(false, 257)), None);
        assert_eq!(parse_spawn_flags(2), None);
    }

    #[test]
    fn env_ids_and_statuses_pack() {
        let id = EnvId::new(1023, 77);
        assert_eq!((id.slot(), id.generation()), (1023, 77));
        for s in [EnvStatus::Alive, EnvStatus::Exited(3), EnvStatus::Killed(14)] {
            assert_eq!(EnvStatus::from_word(s.to_word()), Some(s));
        }
    }
}
