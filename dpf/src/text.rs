//! The readable text form of filters, for tests and tools.
//!
//! ```text
//! filter := "all" | atom ("&&" atom)*
//! atom   := base "[" offset ":" width "]" ("&" number)? "==" number
//! base   := "frame" | "l4"          l4 = the IPv4 payload, 14 + 4 * (frame[14] & 0x0f)
//! width  := "1" | "2" | "4"
//! number := decimal | "0x" hex | dotted IPv4 address (a.b.c.d, width 4 only)
//! ```
//!
//! Example: `frame[12:2] == 0x0800 && frame[23:1] == 6 && l4[2:2] == 80`.
//! `Display` writes the canonical form (atoms sorted), which parses back to the same filter.

use alloc::vec::Vec;
use core::fmt;

use xok_codegen::text::Cursor;

use crate::filter::{Atom, AtomKey, Base, Filter, FilterError, Width};

/// Why a text filter was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The text does not follow the grammar: at byte `position`, `expected` was expected.
    Syntax {
        /// Byte offset in the input.
        position: usize,
        /// What the parser wanted there.
        expected: &'static str,
    },
    /// A number does not fit where it stands (offset above 65535, value above the width).
    OutOfRange {
        /// Byte offset of the number.
        position: usize,
    },
    /// The text parses but the atoms are not a valid filter.
    Invalid(FilterError),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Syntax { position, expected } => {
                write!(f, "at byte {position}: expected {expected}")
            }
            ParseError::OutOfRange { position } => write!(f, "at byte {position}: number out of range"),
            ParseError::Invalid(e) => write!(f, "invalid filter: {e}"),
        }
    }
}

struct Parser<'a> {
    c: Cursor<'a>,
}

impl Parser<'_> {
    fn expect(&mut self, token: &'static str) -> Result<(), ParseError> {
        if self.c.eat(token) { Ok(()) } else { Err(self.syntax(token)) }
    }

    fn syntax(&self, expected: &'static str) -> ParseError {
        ParseError::Syntax { position: self.c.pos, expected }
    }

    /// A plain number (decimal or hex); `None` if no digit is here.
    fn plain_number(&mut self) -> Result<Option<u64>, ParseError> {
        let start = self.c.pos;
        let (radix, digits_start) =
            if self.c.text.get(start..start + 2) == Some(b"0x") || self.c.text.get(start..start + 2) == Some(b"0X") {
                (16, start + 2)
            } else {
                (10, start)
            };
        let mut end = digits_start;
        let mut value: u64 = 0;
        while let Some(d) = self.c.text.get(end).and_then(|c| char::from(*c).to_digit(radix)) {
            value = value
                .checked_mul(u64::from(radix))
                .and_then(|v| v.checked_add(u64::from(d)))
                .filter(|v| *v <= u64::from(u32::MAX))
                .ok_or(ParseError::OutOfRange { position: start })?;
            end += 1;
        }
        if end == digits_start {
            return Ok(None);
        }
        self.c.pos = end;
        Ok(Some(value))
    }

    /// A number or a dotted IPv4 address.
    fn number(&mut self) -> Result<(u64, usize), ParseError> {
        self.c.skip_space();
        let start = self.c.pos;
        let first = self.plain_number()?.ok_or_else(|| self.syntax("a number"))?;
        if self.c.text.get(self.c.pos) != Some(&b'.') {
            return Ok((first, start));
        }
        let mut value = first;
        if first > 255 {
            return Err(ParseError::OutOfRange { position: start });
        }
        for _ in 0..3 {
            if self.c.text.get(self.c.pos) != Some(&b'.') {
                return Err(self.syntax("'.' in an IPv4 address"));
            }
            self.c.pos += 1;
            let part_at = self.c.pos;
            let part = self.plain_number()?.ok_or_else(|| self.syntax("an address byte"))?;
            if part > 255 {
                return Err(ParseError::OutOfRange { position: part_at });
            }
            value = (value << 8) | part;
        }
        Ok((value, start))
    }

    fn atom(&mut self) -> Result<Atom, ParseError> {
        let base = if self.c.eat("frame") {
            Base::Frame
        } else if self.c.eat("l4") {
            Base::Ipv4Payload
        } else {
            return Err(self.syntax("'frame', 'l4' or 'all'"));
        };
        self.expect("[")?;
        let (offset, at) = self.number()?;
        let offset = u16::try_from(offset).map_err(|_| ParseError::OutOfRange { position: at })?;
        self.expect(":")?;
        let (width, at) = self.number()?;
        let width = u32::try_from(width)
            .ok()
            .and_then(Width::from_bytes)
            .ok_or(ParseError::Syntax { position: at, expected: "width 1, 2 or 4" })?;
        self.expect("]")?;
        let mut mask = width.full_mask();
        if !self.c.eat("==") {
            self.expect("&")?;
            let (m, at) = self.number()?;
            mask = u32::try_from(m).ok().filter(|m| m & !width.full_mask() == 0).ok_or(ParseError::OutOfRange { position: at })?;
            self.expect("==")?;
        }
        let (value, at) = self.number()?;
        let value = u32::try_from(value).ok().filter(|v| v & !width.full_mask() == 0).ok_or(ParseError::OutOfRange { position: at })?;
        Ok(Atom { key: AtomKey { base, offset, width, mask }, value })
    }
}

/// Parses the text form of a filter.
pub fn parse(text: &str) -> Result<Filter, ParseError> {
    let mut p = Parser { c: Cursor::new(text) };
    if p.c.eat("all") {
        if !p.c.at_end() {
            return Err(p.syntax("end of filter after 'all'"));
        }
        return Ok(Filter::everything());
    }
    let mut atoms = Vec::new();
    loop {
        atoms.push(p.atom()?);
        if p.c.at_end() {
            break;
        }
        p.expect("&&")?;
    }
    Filter::new(&atoms).map_err(ParseError::Invalid)
}

impl core::str::FromStr for Filter {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Filter, ParseError> {
        parse(s)
    }
}

fn write_value(f: &mut fmt::Formatter<'_>, key: &AtomKey, value: u32) -> fmt::Result {
    let full = key.mask == key.width.full_mask();
    match (key.base, key.width) {
        (Base::Frame, Width::W4) if full => {
            let [a, b, c, d] = value.to_be_bytes();
            write!(f, "{a}.{b}.{c}.{d}")
        }
        (Base::Frame, Width::W1) | (Base::Ipv4Payload, _) if full => write!(f, "{value}"),
        _ => write!(f, "{value:#0w$x}", w = 2 + 2 * key.width.bytes() as usize),
    }
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        let base = match key.base {
            Base::Frame => "frame",
            Base::Ipv4Payload => "l4",
        };
        write!(f, "{base}[{}:{}]", key.offset, key.width.bytes())?;
        if key.mask != key.width.full_mask() {
            write!(f, " & {:#0w$x}", key.mask, w = 2 + 2 * key.width.bytes() as usize)?;
        }
        f.write_str(" == ")?;
        write_value(f, key, self.value)
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.atoms().is_empty() {
            return f.write_str("all");
        }
        for (i, atom) in self.atoms().iter().enumerate() {
            if i > 0 {
                f.write_str(" && ")?;
            }
            write!(f, "{atom}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn round_trips() {
        for filter in [
            Filter::everything(),
            Filter::arp(),
            Filter::ipv4(),
            Filter::icmp_to([10, 0, 0, 1]),
            Filter::udp_port(53),
            Filter::tcp_listen([10, 0, 0, 1], 80),
            Filter::tcp_connection([10, 0, 0, 1], 80, [192, 168, 1, 9], 40000),
        ] {
            let text = filter.to_string();
            assert_eq!(parse(&text), Ok(filter), "{text}");
        }
        assert_eq!(
            Filter::tcp_listen([10, 0, 0, 1], 80).to_string(),
            "frame[12:2] == 0x0800 && frame[20:2] & 0x1fff == 0x0000 && frame[23:1] == 6 \
             && frame[30:4] == 10.0.0.1 && l4[2:2] == 80"
        );
    }

    #[test]
    fn errors_are_precise() {
        assert_eq!(parse("frame[12:3] == 1"), Err(ParseError::Syntax { position: 9, expected: "width 1, 2 or 4" }));
        assert_eq!(parse("frame[70000:1] == 1"), Err(ParseError::OutOfRange { position: 6 }));
        assert_eq!(parse("frame[0:1] == 256"), Err(ParseError::OutOfRange { position: 14 }));
        assert_eq!(parse("frame[0:1] == 1 &&"), Err(ParseError::Syntax { position: 18, expected: "'frame', 'l4' or 'all'" }));
        assert_eq!(parse("frame[0:1] == 1 frame"), Err(ParseError::Syntax { position: 16, expected: "&&" }));
        assert_eq!(parse("frame[0:1] & 0x0f == 0x10"), Err(ParseError::Invalid(FilterError::ValueOutsideMask { atom: 0 })));
        assert_eq!(parse("frame[0:1] & 0 == 0"), Err(ParseError::Invalid(FilterError::ZeroMask { atom: 0 })));
        assert_eq!(
            parse("frame[0:1] == 1 && frame[0:1] == 2"),
            Err(ParseError::Invalid(FilterError::DuplicateKey { first: 0, second: 1 }))
        );
        assert_eq!(parse("frame[0:2] == 1 && frame[1:1] == 2"), Err(ParseError::Invalid(FilterError::Unsatisfiable)));
        assert_eq!(parse("frame[26:4] == 1.2.3.256"), Err(ParseError::OutOfRange { position: 21 }));
        assert_eq!(parse("all all"), Err(ParseError::Syntax { position: 4, expected: "end of filter after 'all'" }));
        assert_eq!(parse(""), Err(ParseError::Syntax { position: 0, expected: "'frame', 'l4' or 'all'" }));
    }
}
