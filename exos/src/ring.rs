//! A packet ring in the program's own memory, and the wakeup clause that sleeps until a frame
//! lands in it: the kernel counts stored frames in one word, the ring counts consumed frames
//! in another, and the clause is "the two differ" -- installed once, any ring size. A ring is
//! an owned handle: dropping it unregisters it (`pktring_delring`) and only then frees its
//! memory; the filters that deliver into it are handles too ([`crate::filter`]).

use crate::filter::InstalledFilter;
use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use alloc::boxed::Box;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};
use wkpred::{Clause, Op, Operand, Predicate, Term};
use xok_abi::Error;
use xok_abi::layout::PAGE_SIZE;
use xok_abi::net::{RING_HEADER_LEN, RingEntryHeader};

/// A registered ring of `count` entries of `size` bytes.
pub struct PacketRing {
    base: NonNull<u8>,
    layout: Layout,
    count: usize,
    size: usize,
    next: usize,
    /// Frames the kernel has stored (it increments this word).
    stored: Box<AtomicU64>,
    /// Frames this program has handed back.
    consumed: Box<AtomicU64>,
    /// The kernel's id for the ring.
    id: usize,
}

/// A received frame, borrowed from its ring entry until [`PacketRing::release`].
pub struct Received<'a> {
    /// The bytes stored (the frame, or its first part if it was truncated).
    pub frame: &'a [u8],
    /// The frame's original length.
    pub original_len: usize,
    /// The NIC it came from.
    pub nic: u32,
    /// When the kernel received it (ns since boot).
    pub timestamp_ns: u64,
}

impl PacketRing {
    /// Allocates page-aligned memory for the ring and registers it with the kernel.
    pub fn new(count: usize, size: usize) -> Result<PacketRing, Error> {
        let bytes = count.checked_mul(size).ok_or(Error::BadLength)?;
        let layout = Layout::from_size_align(bytes.max(1), PAGE_SIZE).map_err(|_| Error::BadLength)?;
        // SAFETY: the layout has a non-zero size.
        let base = NonNull::new(unsafe { alloc_zeroed(layout) }).ok_or(Error::NoMemory)?;
        let stored = Box::new(AtomicU64::new(0));
        match crate::sys::pktring_setring(base.as_ptr() as usize, count, size, &stored) {
            Ok(id) => Ok(PacketRing { base, layout, count, size, next: 0, stored, consumed: Box::new(AtomicU64::new(0)), id }),
            Err(error) => {
                // SAFETY: allocated above with `layout`; the kernel refused it, so nothing else
                // refers to it.
                unsafe { dealloc(base.as_ptr(), layout) };
                Err(error)
            }
        }
    }

    /// The kernel's number for the ring (for raw syscalls; programs use [`PacketRing::install`]).
    pub fn id(&self) -> usize {
        self.id
    }

    /// Installs an exclusive filter that delivers into this ring.
    pub fn install(&self, filter: &dpf::Filter) -> Result<InstalledFilter, Error> {
        InstalledFilter::install(filter, self.id, 0)
    }

    /// Installs a filter of another class (`xok_abi::net::DPF_COPY`, `DPF_FALLBACK`; both need
    /// privilege) that delivers into this ring.
    pub fn install_with(&self, filter: &dpf::Filter, flags: usize) -> Result<InstalledFilter, Error> {
        InstalledFilter::install(filter, self.id, flags)
    }

    /// Entry `index`'s first byte.
    fn entry(&self, index: usize) -> *mut u8 {
        // SAFETY: index < count, so the entry lies inside the ring's allocation.
        unsafe { self.base.as_ptr().add(index * self.size) }
    }

    fn owner_word(&self, index: usize) -> *mut u32 {
        // SAFETY: the owner word lies inside the entry (`RingEntryHeader::OWNER`), 4-aligned
        // because entries are 8-aligned.
        unsafe { self.entry(index).add(RingEntryHeader::OWNER.start) as *mut u32 }
    }

    /// The next received frame, if the kernel has filled the next entry.
    pub fn peek(&self) -> Option<Received<'_>> {
        // SAFETY: the owner word is written by the kernel while we run no code (one CPU), so a
        // volatile read sees either 0 or the final length; the header and frame were written
        // before it.
        if unsafe { self.owner_word(self.next).read_volatile() } == 0 {
            return None;
        }
        let entry = self.entry(self.next);
        // SAFETY: the kernel filled this entry's header (RING_HEADER_LEN bytes, inside the
        // entry); nothing writes it until we release the entry.
        let header = RingEntryHeader::from_bytes(unsafe { (entry as *const [u8; RING_HEADER_LEN]).read_volatile() });
        let captured = (header.captured as usize).min(self.size - RING_HEADER_LEN);
        // SAFETY: `captured` frame bytes follow the header inside the entry (bounded above).
        let frame = unsafe { core::slice::from_raw_parts(entry.add(RING_HEADER_LEN), captured) };
        Some(Received { frame, original_len: header.owner as usize, nic: header.nic, timestamp_ns: header.timestamp_ns })
    }

    /// Hands the entry returned by `peek` back to the kernel.
    pub fn release(&mut self) {
        // SAFETY: the entry belongs to us until we write 0, which hands it back.
        unsafe { self.owner_word(self.next).write_volatile(0) };
        self.next = (self.next + 1) % self.count;
        self.consumed.fetch_add(1, Ordering::Release);
    }

    /// Frames the kernel dropped because the next entry was still ours.
    pub fn drops(&self) -> usize {
        crate::sys::pktring_stats(self.id).unwrap_or(0)
    }

    /// Adds the clause "a frame is waiting": the kernel's stored count differs from this
    /// ring's consumed count. (A dropped frame is not stored, so it wakes nobody.)
    pub fn wakeup_clause(&self, predicate: &mut Predicate) {
        let stored = crate::wait::word_of(predicate, &self.stored);
        let consumed = crate::wait::word_of(predicate, &self.consumed);
        predicate.clauses.push(Clause { terms: alloc::vec![Term { left: stored, op: Op::Ne, right: Operand::Word(consumed) }] });
    }
}

// SAFETY: `base` points to an allocation the ring owns alone, like a `Box<[u8]>` (nothing
// else in the program refers to it); the kernel's writes into it follow the owner-word
// handoff whichever thread holds the ring.
unsafe impl Send for PacketRing {}

impl Drop for PacketRing {
    fn drop(&mut self) {
        // Unregistered first: the kernel stops writing and unpins the pages. Should it refuse
        // (it cannot for a ring we registered), the memory is leaked rather than reused under
        // the kernel's writes.
        if crate::sys::pktring_delring(self.id).is_ok() {
            // SAFETY: allocated in `new` with `self.layout`; the kernel no longer refers to it.
            unsafe { dealloc(self.base.as_ptr(), self.layout) };
        }
    }
}
