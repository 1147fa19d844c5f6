//! The rules a predicate must follow before the kernel accepts it, and [`resolve`], which
//! turns its location table into the address table that compiled code reads.
//!
//! Rules (each broken rule has its own [`ValidationError`]):
//! - at most [`MAX_CLAUSES`] clauses, each with 1 to [`MAX_TERMS_PER_CLAUSE`] terms;
//! - at most [`MAX_LOCATIONS`] locations, each used by some word, every word naming one;
//! - every word lies inside its location's page and is aligned to its width
//!   (`locations[l] + offset` is a multiple of the width), so it never straddles pages;
//! - word-vs-word terms compare words of the same width;
//! - constants and masks fit the width; a masked constant has no bits outside the mask.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::predicate::{
    MAX_CLAUSES, MAX_LOCATIONS, MAX_TERMS_PER_CLAUSE, Op, Operand, PAGE_SIZE, Predicate, TermIndex, Width, Word,
};

/// Why a predicate was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValidationError {
    /// More than [`MAX_CLAUSES`] clauses.
    TooManyClauses {
        /// How many there are.
        count: usize,
    },
    /// A clause with no terms (it would always be true).
    EmptyClause {
        /// Index of the clause.
        clause: usize,
    },
    /// A clause with more than [`MAX_TERMS_PER_CLAUSE`] terms.
    TooManyTerms {
        /// Index of the clause.
        clause: usize,
        /// How many terms it has.
        count: usize,
    },
    /// More than [`MAX_LOCATIONS`] locations.
    TooManyLocations {
        /// How many there are.
        count: usize,
    },
    /// A word names a location past the end of the table.
    NoSuchLocation {
        /// The term.
        at: TermIndex,
        /// The index it names.
        location: u32,
    },
    /// A location that no word reads.
    UnusedLocation {
        /// Index of the location.
        location: usize,
    },
    /// A word is not inside its location's page (`offset` goes past the page's end, or
    /// the address wraps around).
    OutsidePage {
        /// The term.
        at: TermIndex,
        /// The word.
        word: Word,
    },
    /// A word's address is not a multiple of its width.
    Misaligned {
        /// The term.
        at: TermIndex,
        /// The word.
        word: Word,
        /// Its address.
        address: u64,
    },
    /// Two words of different widths compared.
    WidthMismatch {
        /// The term.
        at: TermIndex,
    },
    /// A constant with bits above the word's width.
    ConstantTooWide {
        /// The term.
        at: TermIndex,
        /// The constant.
        value: u64,
        /// The width of the word.
        width: Width,
    },
    /// A mask with bits above the word's width.
    MaskTooWide {
        /// The term.
        at: TermIndex,
        /// The mask.
        mask: u64,
        /// The width of the word.
        width: Width,
    },
    /// A masked comparison with a constant that has bits outside the mask (never true).
    ConstantOutsideMask {
        /// The term.
        at: TermIndex,
    },
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pos = |at: &TermIndex| (at.clause, at.term);
        match self {
            ValidationError::TooManyClauses { count } => write!(f, "{count} clauses (at most {MAX_CLAUSES})"),
            ValidationError::EmptyClause { clause } => write!(f, "clause {clause} has no terms"),
            ValidationError::TooManyTerms { clause, count } => {
                write!(f, "clause {clause} has {count} terms (at most {MAX_TERMS_PER_CLAUSE})")
            }
            ValidationError::TooManyLocations { count } => {
                write!(f, "{count} locations (at most {MAX_LOCATIONS})")
            }
            ValidationError::NoSuchLocation { at, location } => {
                write!(f, "term {:?} reads location {location}, which is not in the table", pos(at))
            }
            ValidationError::UnusedLocation { location } => write!(f, "location {location} is never read"),
            ValidationError::OutsidePage { at, word } => {
                write!(f, "term {:?}: offset {} leaves the page of location {}", pos(at), word.offset, word.location)
            }
            ValidationError::Misaligned { at, word, address } => {
                write!(f, "term {:?}: address {address:#x} is not aligned to {} bytes", pos(at), word.width.bytes())
            }
            ValidationError::WidthMismatch { at } => write!(f, "term {:?} compares words of different widths", pos(at)),
            ValidationError::ConstantTooWide { at, value, width } => {
                write!(f, "term {:?}: constant {value:#x} does not fit {} bits", pos(at), width.bits())
            }
            ValidationError::MaskTooWide { at, mask, width } => {
                write!(f, "term {:?}: mask {mask:#x} does not fit {} bits", pos(at), width.bits())
            }
            ValidationError::ConstantOutsideMask { at } => {
                write!(f, "term {:?}: the constant has bits outside the mask", pos(at))
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ValidationError {}

/// The address of `word` given the location table, if the location exists and the
/// addition does not wrap.
pub fn word_address(locations: &[u64], word: Word) -> Option<u64> {
    let base = *locations.get(word.location as usize)?;
    base.checked_add(u64::from(word.offset))
}

fn check_word(locations: &[u64], at: TermIndex, word: Word, used: &mut [bool]) -> Result<(), ValidationError> {
    let Some(&base) = locations.get(word.location as usize) else {
        return Err(ValidationError::NoSuchLocation { at, location: word.location });
    };
    used[word.location as usize] = true;
    let Some(address) = base.checked_add(u64::from(word.offset)) else {
        return Err(ValidationError::OutsidePage { at, word });
    };
    if address % word.width.bytes() != 0 {
        return Err(ValidationError::Misaligned { at, word, address });
    }
    // Aligned and starting in the location's page: it ends in it too (widths divide pages).
    if address / PAGE_SIZE != base / PAGE_SIZE {
        return Err(ValidationError::OutsidePage { at, word });
    }
    Ok(())
}

/// Checks every rule of the module documentation; the first broken one is reported
/// (bounds first, then terms in order, then unused locations).
pub fn validate(predicate: &Predicate) -> Result<(), ValidationError> {
    if predicate.clauses.len() > MAX_CLAUSES {
        return Err(ValidationError::TooManyClauses { count: predicate.clauses.len() });
    }
    if predicate.locations.len() > MAX_LOCATIONS {
        return Err(ValidationError::TooManyLocations { count: predicate.locations.len() });
    }
    for (clause, c) in predicate.clauses.iter().enumerate() {
        if c.terms.is_empty() {
            return Err(ValidationError::EmptyClause { clause });
        }
        if c.terms.len() > MAX_TERMS_PER_CLAUSE {
            return Err(ValidationError::TooManyTerms { clause, count: c.terms.len() });
        }
    }
    let mut used = vec![false; predicate.locations.len()];
    for (at, term) in predicate.terms() {
        let width = term.left.width;
        check_word(&predicate.locations, at, term.left, &mut used)?;
        if let Op::MaskedEq { mask } = term.op
            && !width.fits(mask)
        {
            return Err(ValidationError::MaskTooWide { at, mask, width });
        }
        match term.right {
            Operand::Constant(value) => {
                if !width.fits(value) {
                    return Err(ValidationError::ConstantTooWide { at, value, width });
                }
                if let Op::MaskedEq { mask } = term.op
                    && value & !mask != 0
                {
                    return Err(ValidationError::ConstantOutsideMask { at });
                }
            }
            Operand::Word(right) => {
                check_word(&predicate.locations, at, right, &mut used)?;
                if right.width != width {
                    return Err(ValidationError::WidthMismatch { at });
                }
            }
        }
    }
    if let Some(location) = used.iter().position(|u| !u) {
        return Err(ValidationError::UnusedLocation { location });
    }
    Ok(())
}

/// Why [`resolve`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResolveError<E> {
    /// The predicate breaks a rule.
    Invalid(ValidationError),
    /// The translation of a location's page failed.
    Translate {
        /// Index of the location.
        location: usize,
        /// The translator's error.
        error: E,
    },
}

/// Builds the address table that compiled code (and kernel-side interpreter
/// readers) use: `table[l]` is where location `l` is *for the evaluator*.
///
/// `translate(page)` is called once per location with the page-aligned address of the
/// location's page (in the installer's address space); it returns where that page can be
/// read by the evaluator (in the kernel: after checking the installer's read right and
/// pinning the page, its kernel-mapped address). The table entry is that address plus the
/// location's offset inside its page. Validation runs first, so every word of location `l`
/// lies in `[table[l], table[l] + offset + width)` inside the translated page.
pub fn resolve<E>(
    predicate: &Predicate,
    mut translate: impl FnMut(u64) -> Result<u64, E>,
) -> Result<Vec<u64>, ResolveError<E>> {
    validate(predicate).map_err(ResolveError::Invalid)?;
    predicate
        .locations
        .iter()
        .enumerate()
        .map(|(location, &address)| {
            let page = address & !(PAGE_SIZE - 1);
            let translated = translate(page).map_err(|error| ResolveError::Translate { location, error })?;
            Ok(translated.wrapping_add(address - page))
        })
        .collect()
}

/// The distinct pages (page-aligned addresses) the predicate reads, in table order: what
/// the kernel pins.
pub fn pages(predicate: &Predicate) -> Vec<u64> {
    let mut pages: Vec<u64> = Vec::new();
    for &address in &predicate.locations {
        let page = address & !(PAGE_SIZE - 1);
        if !pages.contains(&page) {
            pages.push(page);
        }
    }
    pages
}
