//! A packet ring in the program's own memory, and the wakeup predicate that sleeps until a
//! frame lands in it: the kernel counts stored frames in one word, the ring counts consumed
//! frames in another, and the predicate is "the two differ" -- installed once, any ring size.

use alloc::alloc::{Layout, alloc_zeroed};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};
use wkpred::{Clause, Op, Operand, Predicate, Term, Width, Word};
use xok_abi::Error;
use xok_abi::layout::PAGE_SIZE;
use xok_abi::net::{RING_HEADER_LEN, RingEntryHeader};

/// A registered ring of `count` entries of `size` bytes.
pub struct PacketRing {
    base: NonNull<u8>,
    count: usize,
    size: usize,
    next: usize,
    /// Frames the kernel has stored (it increments this word).
    stored: Box<AtomicU64>,
    /// Frames this program has handed back.
    consumed: Box<AtomicU64>,
    /// The kernel's id for the ring.
    pub id: usize,
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
        let id = crate::sys::pktring_setring(base.as_ptr() as usize, count, size, &stored)?;
        Ok(PacketRing { base, count, size, next: 0, stored, consumed: Box::new(AtomicU64::new(0)), id })
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
        let word = |predicate: &mut Predicate, counter: &AtomicU64| {
            let address = counter.as_ptr() as u64;
            let location = location_of(predicate, address);
            Word { location, offset: (address % PAGE_SIZE as u64) as u16, width: Width::W64 }
        };
        let stored = word(predicate, &self.stored);
        let consumed = word(predicate, &self.consumed);
        predicate.clauses.push(Clause { terms: alloc::vec![Term { left: stored, op: Op::Ne, right: Operand::Word(consumed) }] });
    }
}

/// The index of `address`'s page in the predicate's location table (adding it if new).
pub fn location_of(predicate: &mut Predicate, address: u64) -> u32 {
    let page = address & !(PAGE_SIZE as u64 - 1);
    match predicate.locations.iter().position(|&l| l == page) {
        Some(i) => i as u32,
        None => {
            predicate.locations.push(page);
            (predicate.locations.len() - 1) as u32
        }
    }
}

/// Adds the clause "the tick counter has reached `deadline`".
pub fn deadline_clause(predicate: &mut Predicate, deadline: u64) {
    let location = location_of(predicate, xok_abi::layout::TICKS_VA as u64);
    let word = Word { location, offset: 0, width: Width::W64 };
    predicate.clauses.push(Clause { terms: alloc::vec![Term { left: word, op: Op::Ge, right: Operand::Constant(deadline) }] });
}

/// Adds the clause "the tick counter has reached the value in `deadline`": a deadline the
/// program moves by storing into the word, without installing the predicate again.
pub fn deadline_word_clause(predicate: &mut Predicate, deadline: &AtomicU64) {
    let ticks = location_of(predicate, xok_abi::layout::TICKS_VA as u64);
    let address = deadline.as_ptr() as u64;
    let location = location_of(predicate, address);
    let left = Word { location: ticks, offset: 0, width: Width::W64 };
    let right = Word { location, offset: (address % PAGE_SIZE as u64) as u16, width: Width::W64 };
    predicate.clauses.push(Clause { terms: alloc::vec![Term { left, op: Op::Ge, right: Operand::Word(right) }] });
}

/// Installs `predicate` as the caller's wakeup predicate.
pub fn install(predicate: &Predicate) -> Result<(), Error> {
    let bytes: Vec<u8> = wkpred::encode(predicate).map_err(|_| Error::BadPredicate)?;
    crate::sys::wk_install(&bytes)
}
