//! The language: a [`Predicate`] is a sum (OR) of [`Clause`]s, each a product (AND) of
//! [`Term`]s; a term compares a memory [`Word`] with a constant or another word.
//!
//! Memory is reached through the predicate's *location table*: a word names a location by
//! index plus a byte offset, and its address is `locations[location] + offset`. The kernel
//! translates each location once, at install time, so compiled code never holds an address.

use alloc::vec::Vec;

/// Most clauses in one predicate.
pub const MAX_CLAUSES: usize = 16;
/// Most terms in one clause.
pub const MAX_TERMS_PER_CLAUSE: usize = 16;
/// Most entries in the location table.
pub const MAX_LOCATIONS: usize = 32;
/// The page size the address rules use: a word never crosses a boundary of this size.
pub const PAGE_SIZE: u64 = 4096;

/// The size of a memory word. Words are read in the machine's byte order (little-endian).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Width {
    /// One byte.
    W8,
    /// Two bytes.
    W16,
    /// Four bytes.
    W32,
    /// Eight bytes.
    W64,
}

impl Width {
    /// All widths, narrowest first.
    pub const ALL: [Width; 4] = [Width::W8, Width::W16, Width::W32, Width::W64];

    /// Size in bytes (also the required alignment).
    pub const fn bytes(self) -> u64 {
        match self {
            Width::W8 => 1,
            Width::W16 => 2,
            Width::W32 => 4,
            Width::W64 => 8,
        }
    }

    /// Size in bits.
    pub const fn bits(self) -> u32 {
        self.bytes() as u32 * 8
    }

    /// The largest unsigned value of this width (all bits set).
    pub const fn max(self) -> u64 {
        match self {
            Width::W64 => u64::MAX,
            w => (1u64 << w.bits()) - 1,
        }
    }

    /// Whether `value` has no bits above this width.
    pub const fn fits(self, value: u64) -> bool {
        value & !self.max() == 0
    }

    /// `value` (bits of this width) sign-extended to 64 bits.
    pub const fn sign_extend(self, value: u64) -> i64 {
        let shift = 64 - self.bits();
        ((value << shift) as i64) >> shift
    }
}

/// How a term compares its left word with its right operand.
///
/// Plain comparisons are **unsigned**; the `Signed*` variants read both sides as two's
/// complement numbers of the word's width. Equality does not depend on signedness.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `left == right`.
    Eq,
    /// `left != right`.
    Ne,
    /// `left < right`, unsigned.
    Lt,
    /// `left <= right`, unsigned.
    Le,
    /// `left > right`, unsigned.
    Gt,
    /// `left >= right`, unsigned.
    Ge,
    /// `left < right`, signed.
    SignedLt,
    /// `left <= right`, signed.
    SignedLe,
    /// `left > right`, signed.
    SignedGt,
    /// `left >= right`, signed.
    SignedGe,
    /// `(left & mask) == (right & mask)`. With a constant right side, the constant must have
    /// no bits outside `mask` (so the term reads as `left & mask == constant`).
    MaskedEq {
        /// The bits compared; must fit the word's width.
        mask: u64,
    },
}

impl Op {
    /// Whether the operator reads its operands as signed numbers.
    pub const fn is_signed(self) -> bool {
        matches!(self, Op::SignedLt | Op::SignedLe | Op::SignedGt | Op::SignedGe)
    }

    /// Compares two values of `width` (bits above the width are ignored).
    pub fn apply(self, width: Width, left: u64, right: u64) -> bool {
        let (l, r) = (left & width.max(), right & width.max());
        let (sl, sr) = (width.sign_extend(l), width.sign_extend(r));
        match self {
            Op::Eq => l == r,
            Op::Ne => l != r,
            Op::Lt => l < r,
            Op::Le => l <= r,
            Op::Gt => l > r,
            Op::Ge => l >= r,
            Op::SignedLt => sl < sr,
            Op::SignedLe => sl <= sr,
            Op::SignedGt => sl > sr,
            Op::SignedGe => sl >= sr,
            Op::MaskedEq { mask } => l & mask == r & mask,
        }
    }
}

/// A word of memory: `width` bytes at `locations[location] + offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Word {
    /// Index into the predicate's location table.
    pub location: u32,
    /// Byte offset from the location's address (the word stays in the location's page).
    pub offset: u16,
    /// Size of the word.
    pub width: Width,
}

impl Word {
    /// The word of `width` at location `location`, offset 0.
    pub const fn at(location: u32, width: Width) -> Word {
        Word { location, offset: 0, width }
    }

    /// The word of `width` at `offset` bytes from location `location`.
    pub const fn new(location: u32, offset: u16, width: Width) -> Word {
        Word { location, offset, width }
    }
}

/// The right side of a term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operand {
    /// A constant: the bits of a value of the left word's width (two's complement for
    /// negative numbers under signed operators).
    Constant(u64),
    /// Another word, of the same width as the left one.
    Word(Word),
}

/// One comparison: `left op right`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Term {
    /// The word read.
    pub left: Word,
    /// The comparison.
    pub op: Op,
    /// What it is compared with.
    pub right: Operand,
}

impl Term {
    /// `left op constant`.
    pub const fn constant(left: Word, op: Op, value: u64) -> Term {
        Term { left, op, right: Operand::Constant(value) }
    }

    /// `left op right`, two words.
    pub const fn words(left: Word, op: Op, right: Word) -> Term {
        Term { left, op, right: Operand::Word(right) }
    }

    /// The words this term reads: the left one, and the right one if any.
    pub fn words_read(&self) -> impl Iterator<Item = Word> {
        let right = match self.right {
            Operand::Word(w) => Some(w),
            Operand::Constant(_) => None,
        };
        core::iter::once(self.left).chain(right)
    }
}

/// A product: true when all its terms are true (checked in order; the first false one ends
/// the clause). A valid clause has at least one term.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Clause {
    /// The terms, in evaluation order.
    pub terms: Vec<Term>,
}

impl Clause {
    /// A clause of `terms`.
    pub fn new(terms: Vec<Term>) -> Clause {
        Clause { terms }
    }
}

/// A sum of products over the memory named by `locations`: true when any clause is true
/// (checked in order; the first true one ends the evaluation). No clauses means false.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Predicate {
    /// Addresses (in the installer's address space) that words are relative to.
    pub locations: Vec<u64>,
    /// The clauses, in evaluation order.
    pub clauses: Vec<Clause>,
}

impl Predicate {
    /// A predicate over `locations` made of `clauses`.
    pub fn new(locations: Vec<u64>, clauses: Vec<Clause>) -> Predicate {
        Predicate { locations, clauses }
    }

    /// Every term, with its clause and term index.
    pub fn terms(&self) -> impl Iterator<Item = (TermIndex, &Term)> {
        self.clauses.iter().enumerate().flat_map(|(c, clause)| {
            clause.terms.iter().enumerate().map(move |(t, term)| (TermIndex { clause: c, term: t }, term))
        })
    }

    /// Number of terms over all clauses.
    pub fn term_count(&self) -> usize {
        self.clauses.iter().map(|c| c.terms.len()).sum()
    }
}

/// Where a term stands in its predicate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TermIndex {
    /// Index of the clause.
    pub clause: usize,
    /// Index of the term inside the clause.
    pub term: usize,
}
