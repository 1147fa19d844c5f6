//! Wakeup predicates in the kernel: installing one (decode, check the caller may read every
//! word, pin those pages) and evaluating it. Compiling happens later, outside the kernel's
//! critical section (`kernel::jobs`); until then the predicate is interpreted.

use crate::ownership::{Page, PageOwnership};
use crate::vm::{Access, AddressSpace, PhysMem};
use alloc::vec::Vec;
use wkpred::{CompiledPredicate, Op, Operand, Predicate, Width, Word};
use xok_abi::layout::PAGE_SIZE;
use xok_abi::Error;

/// When a sleeper's predicate must be evaluated again (besides the kernel's writes to memory
/// it reads: frames stored in its rings, its sends completed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WakePlan {
    /// Never on its own: only those writes can make it true.
    Events,
    /// Once the tick counter reaches this value (its deadline), and on those writes.
    At(u64),
    /// At every tick: it reads memory someone else may write, or the clock in a way that is
    /// not a deadline.
    EveryTick,
}

/// An installed predicate.
#[derive(Debug)]
pub struct Wakeup {
    /// The predicate, for the interpreter.
    pub predicate: Predicate,
    /// Its native code, once compiled.
    pub compiled: Option<CompiledPredicate>,
    /// The install this is (matches the compile job's serial).
    pub serial: u64,
    /// Each location's kernel (identity-mapped physical) address.
    pub addresses: Vec<u64>,
    /// The pages it reads, pinned while installed.
    pins: Vec<Page>,
    /// The loaded code, once loaded.
    pub code: Option<crate::kernel::LoadedCode>,
}

/// Code bytes a predicate of `terms` terms compiles to at most (for the heap charge).
const CODE_BYTES_PER_TERM: usize = 96;

impl Wakeup {
    /// Decodes and checks `bytes`: every page it reads must be mapped readable in `space`.
    /// Nothing is pinned yet ([`Wakeup::pin`]).
    pub fn decode(space: &AddressSpace, mem: &impl PhysMem, bytes: &[u8]) -> Result<Wakeup, Error> {
        let predicate = wkpred::decode(bytes).map_err(|_| Error::BadPredicate)?;
        let mut pins = Vec::new();
        let addresses = wkpred::resolve(&predicate, |user_page| {
            let page = space.translate(mem, user_page as usize, Access::Read).ok_or(())?;
            pins.push(page);
            Ok::<u64, ()>(page.address() as u64)
        })
        .map_err(|_| Error::BadPredicate)?;
        Ok(Wakeup { predicate, compiled: None, serial: 0, addresses, pins, code: None })
    }

    /// Pins the pages it reads, for as long as it is installed.
    pub fn pin(self, pages: &mut PageOwnership) -> Wakeup {
        for &page in &self.pins {
            pages.pin(page).expect("a mapped page is in use");
        }
        self
    }

    /// The kernel heap bytes charged for it: its record, terms, addresses and code (which is
    /// held twice: compiled bytes and the loaded copy).
    pub fn charge(&self) -> usize {
        let terms = self.predicate.term_count() + self.addresses.len();
        crate::account::cost::PREDICATE + terms * (crate::account::cost::PREDICATE_WORD + 2 * CODE_BYTES_PER_TERM)
    }

    /// The physical pages it reads.
    pub fn watched_pages(&self) -> &[Page] {
        &self.pins
    }

    /// Unpins the pages (the predicate is replaced, removed, or its environment ended).
    pub fn release(self, pages: &mut PageOwnership) {
        for page in self.pins {
            pages.unpin(page);
        }
    }

    /// Evaluates the predicate with the interpreter, reading through `mem`.
    pub fn interpret(&self, mem: &impl PhysMem) -> bool {
        wkpred::evaluate(&self.predicate, |word: Word| self.read(mem, word))
    }

    /// The current value of `word`.
    fn read(&self, mem: &impl PhysMem, word: Word) -> u64 {
        let address = self.addresses[word.location as usize] as usize + usize::from(word.offset);
        let width = match word.width {
            Width::W8 => 1,
            Width::W16 => 2,
            Width::W32 => 4,
            Width::W64 => 8,
        };
        let mut bytes = [0u8; 8];
        // Validation guarantees an aligned word inside one page.
        mem.read(Page(address / PAGE_SIZE), address % PAGE_SIZE, &mut bytes[..width]);
        u64::from_le_bytes(bytes)
    }

    /// The physical page of `word`.
    fn page_of(&self, word: Word) -> Page {
        Page(self.addresses[word.location as usize] as usize / PAGE_SIZE)
    }

    /// When the predicate, false at tick `now`, may become true while its owner sleeps (the
    /// owner cannot change its own memory then). `ticks_page` holds the tick counter (a `u64`
    /// at offset 0); `shared` says whether someone else may write a page. A clause whose
    /// deadline has passed waits on its memory terms, which only events change.
    pub fn wake_plan(&self, mem: &impl PhysMem, ticks_page: Page, now: u64, shared: impl Fn(Page) -> bool) -> WakePlan {
        if self.pins.iter().any(|&page| page != ticks_page && shared(page)) {
            return WakePlan::EveryTick;
        }
        let is_clock = |word: Word| self.page_of(word) == ticks_page && word.offset == 0 && word.width == Width::W64;
        let mut earliest: Option<u64> = None;
        for clause in &self.predicate.clauses {
            // A clause's clock terms must all hold: it can come true at the latest of them.
            let mut due: Option<u64> = None;
            for term in &clause.terms {
                let clock_on_right = matches!(term.right, Operand::Word(w) if self.page_of(w) == ticks_page);
                if clock_on_right || (self.page_of(term.left) == ticks_page && !is_clock(term.left)) {
                    return WakePlan::EveryTick;
                }
                if !is_clock(term.left) {
                    continue;
                }
                let bound = match term.right {
                    Operand::Constant(value) => value,
                    Operand::Word(word) => self.read(mem, word),
                };
                let from = match term.op {
                    Op::Ge => bound,
                    Op::Gt => bound.saturating_add(1),
                    _ => return WakePlan::EveryTick,
                };
                due = Some(due.map_or(from, |d| d.max(from)));
            }
            if let Some(due) = due.filter(|due| *due > now) {
                earliest = Some(earliest.map_or(due, |e| e.min(due)));
            }
        }
        earliest.map_or(WakePlan::Events, WakePlan::At)
    }
}
