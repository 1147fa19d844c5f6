//! The readable text form, for tests and tools.
//!
//! ```text
//! predicate := ("locations" address ("," address)* ";")? sum
//! sum       := "false" | clause ("||" clause)*
//! clause    := term ("&&" term)*
//! term      := word ("&" number "==" | op) (number | word)
//! word      := "[" index ("+" offset)? "]" ":" type
//! type      := "u8" | "u16" | "u32" | "u64" | "i8" | "i16" | "i32" | "i64"
//! op        := "==" | "!=" | "<" | "<=" | ">" | ">="
//! number    := "-"? decimal | "0x" hex
//! ```
//!
//! Example: `[0]:u64 >= 1000 && [1+4]:u32 & 0xff == 3 || [2]:u8 != [3]:u8`.
//!
//! `uN` words compare unsigned, `iN` words signed (`<`, `<=`, `>`, `>=` become the signed
//! operators; equality is the same either way). Negative numbers are allowed with `iN` only.
//! In a word-vs-word term both words have the same type. Without a `locations` prefix,
//! location `i` is at the placeholder address `0x1000 * (i + 1)` (one page each), for as
//! many locations as the highest index used needs. `Display` writes the canonical form,
//! which parses back to the same predicate. Parsing also validates ([`crate::validate()`]).

use alloc::vec::Vec;
use core::fmt;

use xok_codegen::text::Cursor;

use crate::predicate::{Clause, Op, Operand, PAGE_SIZE, Predicate, Term, Width, Word};
use crate::validate::{ValidationError, validate};

/// Why a text predicate was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The text does not follow the grammar: at byte `position`, `expected` was expected.
    Syntax {
        /// Byte offset in the input.
        position: usize,
        /// What the parser wanted there.
        expected: &'static str,
    },
    /// A number does not fit where it stands.
    OutOfRange {
        /// Byte offset of the number.
        position: usize,
    },
    /// The text parses but is not a valid predicate.
    Invalid(ValidationError),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Syntax { position, expected } => write!(f, "at byte {position}: expected {expected}"),
            ParseError::OutOfRange { position } => write!(f, "at byte {position}: number out of range"),
            ParseError::Invalid(e) => write!(f, "invalid predicate: {e}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ParseError {}

/// The placeholder address of location `index` when the text gives no `locations`.
pub const fn default_location(index: usize) -> u64 {
    PAGE_SIZE * (index as u64 + 1)
}

/// A word with the signedness its type was written with.
#[derive(Clone, Copy)]
struct TypedWord {
    word: Word,
    signed: bool,
}

struct Parser<'a> {
    c: Cursor<'a>,
}

impl Parser<'_> {
    fn expect(&mut self, token: &'static str) -> Result<(), ParseError> {
        if self.c.eat(token) { Ok(()) } else { Err(self.error(token)) }
    }

    fn error(&self, expected: &'static str) -> ParseError {
        ParseError::Syntax { position: self.c.pos, expected }
    }

    /// A number as (negative, magnitude).
    fn number(&mut self) -> Result<(bool, u64, usize), ParseError> {
        self.c.skip_space();
        let start = self.c.pos;
        let negative = self.c.eat("-");
        self.c.skip_space();
        let (radix, digits_start) = if self.c.starts_with(b"0x") {
            (16, self.c.pos + 2)
        } else {
            (10, self.c.pos)
        };
        let mut end = digits_start;
        while self.c.text.get(end).is_some_and(|c| c.is_ascii_hexdigit() && (radix == 16 || c.is_ascii_digit())) {
            end += 1;
        }
        if end == digits_start {
            self.c.pos = digits_start;
            return Err(self.error("a number"));
        }
        let mut value: u64 = 0;
        for &c in &self.c.text[digits_start..end] {
            let digit = u64::from((c as char).to_digit(radix).unwrap_or(0));
            value = value
                .checked_mul(u64::from(radix))
                .and_then(|v| v.checked_add(digit))
                .ok_or(ParseError::OutOfRange { position: start })?;
        }
        self.c.pos = end;
        Ok((negative, value, start))
    }

    fn unsigned<T: TryFrom<u64>>(&mut self) -> Result<T, ParseError> {
        let (negative, value, position) = self.number()?;
        if negative {
            return Err(ParseError::OutOfRange { position });
        }
        T::try_from(value).map_err(|_| ParseError::OutOfRange { position })
    }

    fn word(&mut self) -> Result<TypedWord, ParseError> {
        self.expect("[")?;
        let location: u32 = self.unsigned()?;
        let offset: u16 = if self.c.eat("+") { self.unsigned()? } else { 0 };
        self.expect("]")?;
        self.expect(":")?;
        let types = [
            ("u8", Width::W8, false),
            ("u16", Width::W16, false),
            ("u32", Width::W32, false),
            ("u64", Width::W64, false),
            ("i8", Width::W8, true),
            ("i16", Width::W16, true),
            ("i32", Width::W32, true),
            ("i64", Width::W64, true),
        ];
        for (name, width, signed) in types {
            // Longest names first is unnecessary: "u8" cannot prefix "u16" etc.
            if self.c.eat(name) {
                return Ok(TypedWord { word: Word::new(location, offset, width), signed });
            }
        }
        Err(self.error("a type (u8, u16, u32, u64, i8, i16, i32, i64)"))
    }

    /// A constant for a word of `width`, as its bits.
    fn constant(&mut self, width: Width, signed: bool) -> Result<u64, ParseError> {
        let (negative, magnitude, position) = self.number()?;
        let out_of_range = ParseError::OutOfRange { position };
        if negative {
            let min = 1u64 << (width.bits() - 1);
            if !signed || magnitude > min {
                return Err(out_of_range);
            }
            return Ok(magnitude.wrapping_neg() & width.max());
        }
        if width.fits(magnitude) { Ok(magnitude) } else { Err(out_of_range) }
    }

    fn term(&mut self) -> Result<Term, ParseError> {
        let left = self.word()?;
        let width = left.word.width;
        let mask = if self.c.eat("&") {
            let (negative, mask, position) = self.number()?;
            if negative || !width.fits(mask) {
                return Err(ParseError::OutOfRange { position });
            }
            self.expect("==")?;
            Some(mask)
        } else {
            None
        };
        let op = match mask {
            Some(mask) => Op::MaskedEq { mask },
            None => {
                let ops = [
                    ("==", Op::Eq, Op::Eq),
                    ("!=", Op::Ne, Op::Ne),
                    ("<=", Op::Le, Op::SignedLe),
                    (">=", Op::Ge, Op::SignedGe),
                    ("<", Op::Lt, Op::SignedLt),
                    (">", Op::Gt, Op::SignedGt),
                ];
                let found = ops.iter().find(|(token, _, _)| self.c.eat(token));
                match found {
                    Some(&(_, unsigned, signed)) => {
                        if left.signed {
                            signed
                        } else {
                            unsigned
                        }
                    }
                    None => return Err(self.error("a comparison (==, !=, <, <=, >, >=) or &")),
                }
            }
        };
        let right = if self.c.peek() == Some(b'[') {
            let position = self.c.pos;
            let right = self.word()?;
            if right.signed != left.signed {
                return Err(ParseError::Syntax { position, expected: "a word of the same signedness" });
            }
            Operand::Word(right.word)
        } else {
            Operand::Constant(self.constant(width, left.signed)?)
        };
        Ok(Term { left: left.word, op, right })
    }

    fn predicate(&mut self) -> Result<Predicate, ParseError> {
        let mut locations = None;
        if self.c.eat("locations") {
            let mut list = Vec::new();
            loop {
                list.push(self.unsigned::<u64>()?);
                if !self.c.eat(",") {
                    break;
                }
            }
            self.expect(";")?;
            locations = Some(list);
        }
        let mut clauses = Vec::new();
        if !self.c.eat("false") {
            loop {
                let mut terms = Vec::new();
                loop {
                    terms.push(self.term()?);
                    if !self.c.eat("&&") {
                        break;
                    }
                }
                clauses.push(Clause { terms });
                if !self.c.eat("||") {
                    break;
                }
            }
        }
        if self.c.peek().is_some() {
            return Err(self.error(if clauses.is_empty() { "the end" } else { "&&, || or the end" }));
        }
        let mut predicate = Predicate { locations: Vec::new(), clauses };
        predicate.locations = match locations {
            Some(list) => list,
            None => {
                let count = predicate
                    .terms()
                    .flat_map(|(_, t)| t.words_read())
                    .map(|w| w.location as usize + 1)
                    .max()
                    .unwrap_or(0);
                // Beyond the limit, validation refuses the word that names it.
                let count = count.min(crate::predicate::MAX_LOCATIONS + 1);
                (0..count).map(default_location).collect()
            }
        };
        validate(&predicate).map_err(ParseError::Invalid)?;
        Ok(predicate)
    }
}

/// Parses the text form (and validates the result).
pub fn parse(text: &str) -> Result<Predicate, ParseError> {
    Parser { c: Cursor::new(text) }.predicate()
}

impl core::str::FromStr for Predicate {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Predicate, ParseError> {
        parse(text)
    }
}

fn write_word(f: &mut fmt::Formatter<'_>, word: Word, signed: bool) -> fmt::Result {
    write!(f, "[{}", word.location)?;
    if word.offset != 0 {
        write!(f, "+{}", word.offset)?;
    }
    write!(f, "]:{}{}", if signed { 'i' } else { 'u' }, word.width.bits())
}

fn write_number(f: &mut fmt::Formatter<'_>, value: u64) -> fmt::Result {
    if value < 10_000 { write!(f, "{value}") } else { write!(f, "{value:#x}") }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let signed = self.op.is_signed();
        write_word(f, self.left, signed)?;
        let op = match self.op {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt | Op::SignedLt => "<",
            Op::Le | Op::SignedLe => "<=",
            Op::Gt | Op::SignedGt => ">",
            Op::Ge | Op::SignedGe => ">=",
            Op::MaskedEq { mask } => {
                write!(f, " & {mask:#x}")?;
                "=="
            }
        };
        write!(f, " {op} ")?;
        match self.right {
            Operand::Word(w) => write_word(f, w, signed),
            Operand::Constant(c) if signed => write!(f, "{}", self.left.width.sign_extend(c)),
            Operand::Constant(c) => write_number(f, c),
        }
    }
}

impl fmt::Display for Predicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let implicit = self.locations.iter().enumerate().all(|(i, &a)| a == default_location(i));
        if !implicit {
            f.write_str("locations ")?;
            for (i, address) in self.locations.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{address:#x}")?;
            }
            f.write_str("; ")?;
        }
        if self.clauses.is_empty() {
            return f.write_str("false");
        }
        for (c, clause) in self.clauses.iter().enumerate() {
            if c > 0 {
                f.write_str(" || ")?;
            }
            for (t, term) in clause.terms.iter().enumerate() {
                if t > 0 {
                    f.write_str(" && ")?;
                }
                write!(f, "{term}")?;
            }
        }
        Ok(())
    }
}
