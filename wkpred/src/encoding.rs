//! The binary form: what a process hands the kernel (a pointer and a length) to install a
//! predicate. All integers little-endian.
//!
//! ```text
//! header   4 bytes   version (1), location count, clause count, reserved (0)
//! location 8 bytes   u64 address, `location count` times
//! clause   1 byte    term count, then that many terms; `clause count` times
//! term     8 bytes   op, flags, left location, right location,
//!                    left offset (u16), right offset (u16)
//!          8 bytes   mask (u64), only when op is masked equality
//!          8 bytes   constant (u64), only when the right side is a constant
//! ```
//!
//! `op`: 0 `==`, 1 `!=`, 2 `<`, 3 `<=`, 4 `>`, 5 `>=`, 6 signed `<`, 7 signed `<=`,
//! 8 signed `>`, 9 signed `>=`, 10 masked `==`. `flags`: bits 0–1 the width (0 = 8 bits,
//! 1 = 16, 2 = 32, 3 = 64), bit 2 set when the right side is a word (of the same width);
//! other bits zero. With a constant right side the right location and offset are zero.
//! Nothing may follow the last clause.
//!
//! [`decode`] checks the form only and never panics; [`crate::validate()`] checks the rules.

use alloc::vec::Vec;
use core::fmt;

use crate::predicate::{
    Clause, MAX_CLAUSES, MAX_LOCATIONS, MAX_TERMS_PER_CLAUSE, Op, Operand, Predicate, Term, Width, Word,
};
use crate::validate::{ValidationError, validate};

/// The version byte this crate writes and reads.
pub const VERSION: u8 = 1;

/// The longest encoding of a valid predicate; the kernel need not copy more.
pub const MAX_ENCODED_LEN: usize = 4 + 8 * MAX_LOCATIONS + MAX_CLAUSES * (1 + MAX_TERMS_PER_CLAUSE * 24);

const RIGHT_IS_WORD: u8 = 0b100;
const WIDTH_BITS: u8 = 0b011;

/// Why bytes are not a predicate's encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Longer than [`MAX_ENCODED_LEN`].
    TooLong {
        /// The length given.
        len: usize,
    },
    /// The bytes end inside a field that starts at `offset`.
    Truncated {
        /// Where the missing field starts.
        offset: usize,
    },
    /// The version byte is not [`VERSION`].
    UnsupportedVersion {
        /// The version found.
        version: u8,
    },
    /// A reserved byte or field is not zero.
    NonZeroReserved {
        /// Where.
        offset: usize,
    },
    /// An op code above 10.
    UnknownOp {
        /// Where.
        offset: usize,
        /// The code.
        code: u8,
    },
    /// Flag bits that mean nothing are set.
    UnknownFlags {
        /// Where.
        offset: usize,
        /// The byte.
        flags: u8,
    },
    /// Bytes after the last clause.
    TrailingBytes {
        /// Where they start.
        offset: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooLong { len } => write!(f, "{len} bytes (at most {MAX_ENCODED_LEN})"),
            DecodeError::Truncated { offset } => write!(f, "truncated at byte {offset}"),
            DecodeError::UnsupportedVersion { version } => write!(f, "unsupported version {version}"),
            DecodeError::NonZeroReserved { offset } => write!(f, "reserved byte {offset} is not zero"),
            DecodeError::UnknownOp { offset, code } => write!(f, "unknown op {code} at byte {offset}"),
            DecodeError::UnknownFlags { offset, flags } => write!(f, "unknown flags {flags:#x} at byte {offset}"),
            DecodeError::TrailingBytes { offset } => write!(f, "trailing bytes from byte {offset}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DecodeError {}

fn op_code(op: Op) -> u8 {
    match op {
        Op::Eq => 0,
        Op::Ne => 1,
        Op::Lt => 2,
        Op::Le => 3,
        Op::Gt => 4,
        Op::Ge => 5,
        Op::SignedLt => 6,
        Op::SignedLe => 7,
        Op::SignedGt => 8,
        Op::SignedGe => 9,
        Op::MaskedEq { .. } => 10,
    }
}

fn width_code(width: Width) -> u8 {
    match width {
        Width::W8 => 0,
        Width::W16 => 1,
        Width::W32 => 2,
        Width::W64 => 3,
    }
}

/// Encodes a valid predicate (it is validated first).
pub fn encode(predicate: &Predicate) -> Result<Vec<u8>, ValidationError> {
    validate(predicate)?;
    let mut out = Vec::with_capacity(MAX_ENCODED_LEN.min(64 + 32 * predicate.term_count()));
    // Validation bounds every count and index below 256.
    out.extend_from_slice(&[VERSION, predicate.locations.len() as u8, predicate.clauses.len() as u8, 0]);
    for address in &predicate.locations {
        out.extend_from_slice(&address.to_le_bytes());
    }
    for clause in &predicate.clauses {
        out.push(clause.terms.len() as u8);
        for term in &clause.terms {
            let (right, constant) = match term.right {
                Operand::Word(w) => (Some(w), None),
                Operand::Constant(c) => (None, Some(c)),
            };
            let flags = width_code(term.left.width) | if right.is_some() { RIGHT_IS_WORD } else { 0 };
            let right_word = right.unwrap_or(Word::at(0, term.left.width));
            let right_offset = if right.is_some() { right_word.offset } else { 0 };
            out.extend_from_slice(&[op_code(term.op), flags, term.left.location as u8, right_word.location as u8]);
            out.extend_from_slice(&term.left.offset.to_le_bytes());
            out.extend_from_slice(&right_offset.to_le_bytes());
            if let Op::MaskedEq { mask } = term.op {
                out.extend_from_slice(&mask.to_le_bytes());
            }
            if let Some(c) = constant {
                out.extend_from_slice(&c.to_le_bytes());
            }
        }
    }
    Ok(out)
}

/// A length-checked reader: no method can index past the end.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let end = self.pos.checked_add(N).ok_or(DecodeError::Truncated { offset: self.pos })?;
        let slice = self.bytes.get(self.pos..end).ok_or(DecodeError::Truncated { offset: self.pos })?;
        let mut out = [0; N];
        out.copy_from_slice(slice);
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.take()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take()?))
    }
}

fn decode_term(r: &mut Reader<'_>) -> Result<Term, DecodeError> {
    let start = r.pos;
    let [code, flags, left_location, right_location] = r.take::<4>()?;
    let left_offset = r.u16()?;
    let right_offset = r.u16()?;
    if flags & !(WIDTH_BITS | RIGHT_IS_WORD) != 0 {
        return Err(DecodeError::UnknownFlags { offset: start + 1, flags });
    }
    let width = Width::ALL[usize::from(flags & WIDTH_BITS)];
    let op = match code {
        0 => Op::Eq,
        1 => Op::Ne,
        2 => Op::Lt,
        3 => Op::Le,
        4 => Op::Gt,
        5 => Op::Ge,
        6 => Op::SignedLt,
        7 => Op::SignedLe,
        8 => Op::SignedGt,
        9 => Op::SignedGe,
        10 => Op::MaskedEq { mask: r.u64()? },
        _ => return Err(DecodeError::UnknownOp { offset: start, code }),
    };
    let left = Word::new(u32::from(left_location), left_offset, width);
    let right = if flags & RIGHT_IS_WORD != 0 {
        Operand::Word(Word::new(u32::from(right_location), right_offset, width))
    } else {
        if right_location != 0 {
            return Err(DecodeError::NonZeroReserved { offset: start + 3 });
        }
        if right_offset != 0 {
            return Err(DecodeError::NonZeroReserved { offset: start + 6 });
        }
        Operand::Constant(r.u64()?)
    };
    Ok(Term { left, op, right })
}

/// Decodes `bytes`. Checks the form only (call [`crate::validate()`] next); never panics and
/// allocates in proportion to `bytes.len()`, which must not exceed [`MAX_ENCODED_LEN`].
pub fn decode(bytes: &[u8]) -> Result<Predicate, DecodeError> {
    if bytes.len() > MAX_ENCODED_LEN {
        return Err(DecodeError::TooLong { len: bytes.len() });
    }
    let mut r = Reader { bytes, pos: 0 };
    let [version, location_count, clause_count, reserved] = r.take::<4>()?;
    if version != VERSION {
        return Err(DecodeError::UnsupportedVersion { version });
    }
    if reserved != 0 {
        return Err(DecodeError::NonZeroReserved { offset: 3 });
    }
    let mut locations = Vec::with_capacity(usize::from(location_count));
    for _ in 0..location_count {
        locations.push(r.u64()?);
    }
    let mut clauses = Vec::with_capacity(usize::from(clause_count));
    for _ in 0..clause_count {
        let count = r.u8()?;
        let mut terms = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            terms.push(decode_term(&mut r)?);
        }
        clauses.push(Clause { terms });
    }
    if r.pos != bytes.len() {
        return Err(DecodeError::TrailingBytes { offset: r.pos });
    }
    Ok(Predicate { locations, clauses })
}
