//! The process's one waiter. The kernel gives an environment one wakeup predicate; the
//! [`Waiter`] owns it. Rings, words (an ARP table's version, a socket's state) and a deadline
//! add their clauses; the predicate is installed when its clauses change, and between sleeps
//! the program only moves the deadline word. Dropping the waiter removes the predicate.
//!
//! The free functions build clauses for programs that manage a predicate of their own (the
//! kernel tests' attack programs).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use wkpred::{Clause, Op, Operand, Predicate, Term, Width, Word};
use xok_abi::Error;
use xok_abi::layout::{PAGE_SIZE, TICK_HZ, TICKS_VA};

use crate::ring::PacketRing;

/// Whether a waiter exists (one per process: the kernel keeps one predicate).
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The owner of this environment's wakeup predicate.
pub struct Waiter {
    predicate: Predicate,
    /// The tick at which to wake at the latest (`u64::MAX`: none).
    deadline: Box<AtomicU64>,
    /// Whether the kernel has the current clauses.
    installed: bool,
    /// The (word, seen) pairs watched already, by address.
    changes: Vec<(usize, usize)>,
}

impl Waiter {
    /// The process's waiter; `None` if one exists already.
    pub fn new() -> Option<Waiter> {
        if TAKEN.swap(true, Ordering::AcqRel) {
            return None;
        }
        let deadline = Box::new(AtomicU64::new(u64::MAX));
        let mut predicate = Predicate::default();
        deadline_word_clause(&mut predicate, &deadline);
        Some(Waiter { predicate, deadline, installed: false, changes: Vec::new() })
    }

    /// Wakes when a frame lands in `ring`. The ring must live as long as the waiter (its
    /// counters stay in the predicate).
    pub fn watch_ring(&mut self, ring: &PacketRing) {
        ring.wakeup_clause(&mut self.predicate);
        self.installed = false;
    }

    /// Wakes when `word` differs from `seen` (a version word another environment bumps, and
    /// the value this program saw last). Both must live as long as the waiter. Watching the
    /// same pair again changes nothing.
    pub fn watch_change(&mut self, word: &AtomicU64, seen: &AtomicU64) {
        let pair = (word.as_ptr() as usize, seen.as_ptr() as usize);
        if self.changes.contains(&pair) {
            return;
        }
        self.changes.push(pair);
        let left = word_of(&mut self.predicate, word);
        let right = word_of(&mut self.predicate, seen);
        self.predicate.clauses.push(Clause { terms: alloc::vec![Term { left, op: Op::Ne, right: Operand::Word(right) }] });
        self.installed = false;
    }

    /// Sleeps until a watched event or tick `deadline` (`u64::MAX`: no deadline), whichever
    /// comes first; at once if one has happened already.
    ///
    /// A program that sleeps with page runs cached wakes once when they have been idle long
    /// enough, gives their pages back ([`crate::heap::release_idle`]) and sleeps on: every
    /// clause is a level (a counter differs, a deadline has passed), so an event that came
    /// meanwhile ends the second sleep at once.
    pub fn sleep_until(&mut self, deadline: u64) -> Result<(), Error> {
        if !self.installed {
            install(&self.predicate)?;
            self.installed = true;
        }
        if let Some(release) = crate::heap::release_at()
            && release < deadline
        {
            self.deadline.store(release, Ordering::Release);
            crate::sys::wk_sleep();
            if crate::sys::ticks() < release {
                return Ok(());
            }
            crate::heap::release_idle();
        }
        self.deadline.store(deadline, Ordering::Release);
        crate::sys::wk_sleep();
        Ok(())
    }

    /// Sleeps until a watched event or `ms` milliseconds from now.
    pub fn sleep_ms(&mut self, ms: u64) -> Result<(), Error> {
        self.sleep_until(crate::sys::ticks() + ms.saturating_mul(TICK_HZ).div_ceil(1000))
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let _ = crate::sys::wk_install(&[]);
        TAKEN.store(false, Ordering::Release);
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

/// The predicate's name for the `u64` at `word` (adding its page if new).
pub fn word_of(predicate: &mut Predicate, word: &AtomicU64) -> Word {
    let address = word.as_ptr() as u64;
    let location = location_of(predicate, address);
    Word { location, offset: (address % PAGE_SIZE as u64) as u16, width: Width::W64 }
}

/// Adds the clause "the tick counter has reached `deadline`".
pub fn deadline_clause(predicate: &mut Predicate, deadline: u64) {
    let location = location_of(predicate, TICKS_VA as u64);
    let word = Word { location, offset: 0, width: Width::W64 };
    predicate.clauses.push(Clause { terms: alloc::vec![Term { left: word, op: Op::Ge, right: Operand::Constant(deadline) }] });
}

/// Adds the clause "the tick counter has reached the value in `deadline`": a deadline the
/// program moves by storing into the word, without installing the predicate again.
pub fn deadline_word_clause(predicate: &mut Predicate, deadline: &AtomicU64) {
    let location = location_of(predicate, TICKS_VA as u64);
    let left = Word { location, offset: 0, width: Width::W64 };
    let right = word_of(predicate, deadline);
    predicate.clauses.push(Clause { terms: alloc::vec![Term { left, op: Op::Ge, right: Operand::Word(right) }] });
}

/// Installs `predicate` as the caller's wakeup predicate.
pub fn install(predicate: &Predicate) -> Result<(), Error> {
    let bytes: Vec<u8> = wkpred::encode(predicate).map_err(|_| Error::BadPredicate)?;
    crate::sys::wk_install(&bytes)
}
