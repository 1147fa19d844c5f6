//! The exact meaning of a filter as constraints on frame bytes, used to decide overlap and
//! subset (see `docs/dpf.md`, "The overlap rule").
//!
//! A filter fixes some bits of some bytes and needs the frame to be long enough. Bytes named
//! relative to the IPv4 payload land at `14 + 4h + offset`, where `h = frame[14] & 0x0f`; so a
//! filter that reads the IHL is decided case by case over the 16 values of `h`, and in case
//! `h` the frame is at least 15 bytes long and has `frame[14] & 0x0f == h`. Within one case
//! everything is a set of fixed bits plus a minimum length, and overlap and implication are
//! exact byte-by-byte comparisons.

use alloc::vec::Vec;

use crate::filter::{Atom, Base};

/// One constrained byte: `frame[offset] & mask == value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Byte {
    offset: u32,
    mask: u8,
    value: u8,
}

/// The byte constraints of one filter, split by base and sorted by offset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    /// The absolute bytes (`..split`), then the relative ones, each part sorted (one
    /// allocation for both).
    bytes: Vec<Byte>,
    split: usize,
    /// The frame length the absolute atoms need.
    absolute_len: u64,
    /// The length past the IPv4 payload start the relative atoms need.
    relative_len: u64,
    /// The absolute bytes contradict each other.
    absolute_conflict: bool,
    /// The relative bytes contradict each other.
    relative_conflict: bool,
    /// Bits fixed by the absolute bytes.
    absolute_bits: u32,
    /// Bits fixed by the relative bytes.
    relative_bits: u32,
}

/// Most constrained bytes one case can have: 16 atoms of 4 bytes, plus the IHL byte.
const MAX_BYTES: usize = crate::filter::MAX_ATOMS * 4 + 1;

/// The constraints of one filter in one case, sorted by offset, duplicates merged.
struct Case {
    bytes: [Byte; MAX_BYTES],
    len: usize,
    min_len: u64,
}

impl Case {
    fn new() -> Case {
        Case { bytes: [Byte { offset: 0, mask: 0, value: 0 }; MAX_BYTES], len: 0, min_len: 0 }
    }

    fn bytes(&self) -> &[Byte] {
        &self.bytes[..self.len]
    }

    /// Appends `byte` (at the last offset or after it), merging it into a byte at the same
    /// offset; `false` if the two contradict each other.
    fn push(&mut self, byte: Byte) -> bool {
        if let Some(last) = self.len.checked_sub(1).map(|i| &mut self.bytes[i])
            && last.offset == byte.offset
        {
            let contradict = (last.mask & byte.mask) & (last.value ^ byte.value) != 0;
            last.mask |= byte.mask;
            last.value |= byte.value;
            return !contradict;
        }
        if self.len < MAX_BYTES {
            self.bytes[self.len] = byte;
            self.len += 1;
        }
        true
    }
}

/// Adds `byte` to the part of `list` from `start` on, merged into a byte at its offset there.
fn push_merged(list: &mut Vec<Byte>, start: usize, byte: Byte) -> bool {
    // Atoms are sorted by offset, so bytes mostly come in order: a byte past the last one
    // is new.
    if list.len() == start || list.last().is_some_and(|last| last.offset < byte.offset) {
        list.push(byte);
        return true;
    }
    match list[start..].iter_mut().find(|b| b.offset == byte.offset) {
        Some(b) => {
            let conflict = (b.mask & byte.mask) & (b.value ^ byte.value) != 0;
            b.mask |= byte.mask;
            b.value |= byte.value;
            !conflict
        }
        None => {
            list.push(byte);
            true
        }
    }
}

impl Shape {
    /// The byte constraints of a filter with these atoms.
    pub fn of(atoms: &[Atom]) -> Shape {
        let total = atoms.iter().map(|a| a.key.width.bytes() as usize).sum();
        let mut shape = Shape { bytes: Vec::with_capacity(total), ..Shape::default() };
        // The absolute atoms' bytes, then the relative ones'.
        let absolute = atoms.iter().filter(|a| a.key.base == Base::Frame);
        let relative = atoms.iter().filter(|a| a.key.base == Base::Ipv4Payload);
        for atom in absolute.chain(relative) {
            let width = atom.key.width.bytes();
            let end = atom.key.end();
            if atom.key.base == Base::Ipv4Payload && shape.relative_len == 0 {
                shape.split = shape.bytes.len();
            }
            let (start, conflict, len) = match atom.key.base {
                Base::Frame => (0, &mut shape.absolute_conflict, &mut shape.absolute_len),
                Base::Ipv4Payload => (shape.split, &mut shape.relative_conflict, &mut shape.relative_len),
            };
            *len = (*len).max(end);
            for i in 0..width {
                let shift = 8 * (width - 1 - i);
                let mask = ((atom.key.mask >> shift) & 0xff) as u8;
                if mask == 0 {
                    continue;
                }
                let value = ((atom.value >> shift) & 0xff) as u8;
                let byte = Byte { offset: u32::from(atom.key.offset) + i, mask, value };
                if !push_merged(&mut shape.bytes, start, byte) {
                    *conflict = true;
                }
            }
        }
        if shape.relative_len == 0 {
            shape.split = shape.bytes.len();
        }
        let (absolute, relative) = shape.bytes.split_at_mut(shape.split);
        absolute.sort_unstable_by_key(|b| b.offset);
        relative.sort_unstable_by_key(|b| b.offset);
        let bits = |bytes: &[Byte]| bytes.iter().map(|b| b.mask.count_ones()).sum();
        shape.absolute_bits = bits(shape.absolute());
        shape.relative_bits = bits(shape.relative());
        shape
    }

    fn absolute(&self) -> &[Byte] {
        &self.bytes[..self.split]
    }

    fn relative(&self) -> &[Byte] {
        &self.bytes[self.split..]
    }

    /// Whether the filter reads the IHL.
    fn reads_ihl(&self) -> bool {
        self.relative_len > 0
    }

    /// The constraints in case `ihl` (ignored if the filter does not read the IHL and
    /// `force_ihl` is false). `None` when they contradict each other.
    /// `case` is scratch space, reused across calls (returned when the case is satisfiable).
    fn case<'c>(&self, ihl: u8, force_ihl: bool, case: &'c mut Case) -> Option<&'c Case> {
        if self.absolute_conflict || self.relative_conflict {
            return None;
        }
        case.len = 0;
        case.min_len = self.absolute_len;
        let with_ihl = force_ihl || self.reads_ihl();
        let base = 14 + 4 * u32::from(ihl);
        // The absolute bytes are sorted and merged already. With the IHL, the IHL byte (14)
        // and the relative bytes (at `base` and up, so at 14 or later) merge into those from
        // 14 on.
        let absolute = self.absolute();
        let split = if with_ihl { absolute.partition_point(|b| b.offset < 14) } else { absolute.len() };
        for byte in &absolute[..split] {
            case.push(*byte);
        }
        if with_ihl {
            case.push(Byte { offset: 14, mask: 0x0f, value: ihl });
            let relative = self.relative();
            let (mut a, mut r) = (split, 0);
            while a < absolute.len() || r < relative.len() {
                let take_absolute = r == relative.len() || (a < absolute.len() && absolute[a].offset <= relative[r].offset + base);
                let byte = if take_absolute {
                    a += 1;
                    absolute[a - 1]
                } else {
                    r += 1;
                    Byte { offset: relative[r - 1].offset + base, ..relative[r - 1] }
                };
                if !case.push(byte) {
                    return None;
                }
            }
        }
        if with_ihl {
            case.min_len = case.min_len.max(15);
            if self.reads_ihl() {
                case.min_len = case.min_len.max(u64::from(base) + self.relative_len);
            }
        }
        Some(case)
    }

    /// Whether some frame matches the filter.
    pub fn satisfiable(&self) -> bool {
        if self.reads_ihl() {
            let mut scratch = Case::new();
            (0..16).any(|h| self.case(h, true, &mut scratch).is_some())
        } else {
            self.case(0, false, &mut Case::new()).is_some()
        }
    }

    /// Whether some frame matches both filters.
    pub fn overlaps(&self, other: &Shape) -> bool {
        let (mut x, mut y) = (Case::new(), Case::new());
        if !self.reads_ihl() && !other.reads_ihl() {
            return match (self.case(0, false, &mut x), other.case(0, false, &mut y)) {
                (Some(a), Some(b)) => compatible(a, b),
                _ => false,
            };
        }
        // Cases from the largest IHL down: ports at large IHL never collide with the
        // absolute header bytes, so common filters decide on the first case.
        (0..16u8).rev().any(|h| match (self.case(h, true, &mut x), other.case(h, true, &mut y)) {
            (Some(a), Some(b)) => compatible(a, b),
            _ => false,
        })
    }

    /// Whether every frame that matches `self` matches `other` (`self ⊆ other`). `self` must
    /// be the shape of a [`crate::Filter`] (some frame matches every filter).
    pub fn subset_of(&self, other: &Shape) -> bool {
        !self.fixes_too_few_bits_for(other) && self.subset_of_by_cases(other)
    }

    /// A quick "not a subset": `self` matches some frame, in some case, and there its bytes
    /// imply `other`'s, so they fix every bit `other`'s fix: at least all of `other`'s
    /// absolute bits, and at least all of its relative ones. `self` fixes at most its own bits
    /// and the IHL nibble. (A connection is never a subset of its listen's shape: this answers
    /// without building a case.)
    fn fixes_too_few_bits_for(&self, other: &Shape) -> bool {
        other.absolute_bits.max(other.relative_bits) > self.absolute_bits + self.relative_bits + 4
    }

    /// [`Shape::subset_of`] decided case by case.
    fn subset_of_by_cases(&self, other: &Shape) -> bool {
        let (mut x, mut y) = (Case::new(), Case::new());
        if !self.reads_ihl() && !other.reads_ihl() {
            return match (self.case(0, false, &mut x), other.case(0, false, &mut y)) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(a), Some(b)) => implies(a, b),
            };
        }
        if !self.reads_ihl() {
            // `other` reads the IHL, so it needs 15 bytes; `self` must need them too,
            // else a short frame matches `self` only.
            match self.case(0, false, &mut x) {
                None => return true,
                Some(c) if c.min_len < 15 => return false,
                Some(_) => {}
            }
        }
        (0..16u8).all(|h| match self.case(h, true, &mut x) {
            None => true,
            Some(a) => match other.case(h, true, &mut y) {
                None => false,
                Some(b) => implies(a, b),
            },
        })
    }
}

/// Whether one frame can satisfy both cases.
fn compatible(a: &Case, b: &Case) -> bool {
    let (mut i, mut j) = (0, 0);
    let (x, y) = (a.bytes(), b.bytes());
    while i < x.len() && j < y.len() {
        match x[i].offset.cmp(&y[j].offset) {
            core::cmp::Ordering::Less => i += 1,
            core::cmp::Ordering::Greater => j += 1,
            core::cmp::Ordering::Equal => {
                if (x[i].mask & y[j].mask) & (x[i].value ^ y[j].value) != 0 {
                    return false;
                }
                i += 1;
                j += 1;
            }
        }
    }
    true
}

/// Whether every frame satisfying `a` satisfies `b`.
fn implies(a: &Case, b: &Case) -> bool {
    if b.min_len > a.min_len {
        return false;
    }
    let x = a.bytes();
    let mut i = 0;
    for need in b.bytes() {
        while i < x.len() && x[i].offset < need.offset {
            i += 1;
        }
        match x.get(i) {
            Some(have) if have.offset == need.offset => {
                if have.mask & need.mask != need.mask || have.value & need.mask != need.value {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::{Filter, Width};

    fn shape(atoms: &[Atom]) -> Shape {
        Filter::new(atoms).unwrap().shape().clone()
    }

    #[test]
    fn connection_is_strict_subset_of_listen() {
        let listen = Filter::tcp_listen([10, 0, 0, 1], 80).shape().clone();
        let conn = Filter::tcp_connection([10, 0, 0, 1], 80, [10, 0, 0, 2], 999).shape().clone();
        assert!(conn.subset_of(&listen));
        assert!(!listen.subset_of(&conn));
        assert!(conn.overlaps(&listen));
        let all = Filter::ipv4().shape().clone();
        assert!(listen.subset_of(&all));
        assert!(Filter::arp().shape().subset_of(Filter::everything().shape()));
        assert!(!Filter::arp().shape().overlaps(&all));
    }

    #[test]
    fn masks_and_widths_compare_bytewise() {
        let word = shape(&[Atom::new(Base::Frame, 12, Width::W2, 0x0800)]);
        let byte = shape(&[Atom::new(Base::Frame, 12, Width::W1, 0x08)]);
        assert!(word.subset_of(&byte));
        assert!(!byte.subset_of(&word));
        let nibble = shape(&[Atom::masked(Base::Frame, 12, Width::W1, 0xf0, 0x00)]);
        assert!(word.subset_of(&nibble));
        let other = shape(&[Atom::masked(Base::Frame, 12, Width::W1, 0xf0, 0x10)]);
        assert!(!word.overlaps(&other));
    }

    #[test]
    fn relative_atoms_follow_the_ihl() {
        // Absolute byte 34 vs relative byte 0 with IHL 5: the same byte.
        let abs = shape(&[
            Atom::masked(Base::Frame, 14, Width::W1, 0x0f, 5),
            Atom::new(Base::Frame, 34, Width::W1, 7),
        ]);
        let rel = shape(&[Atom::new(Base::Ipv4Payload, 0, Width::W1, 7)]);
        assert!(abs.subset_of(&rel));
        assert!(!rel.subset_of(&abs));
        let rel_other = shape(&[
            Atom::masked(Base::Frame, 14, Width::W1, 0x0f, 5),
            Atom::new(Base::Ipv4Payload, 0, Width::W1, 8),
        ]);
        assert!(!abs.overlaps(&rel_other));
        // Length: a one-byte absolute filter matches short frames a relative one cannot.
        let short = shape(&[Atom::new(Base::Frame, 0, Width::W1, 1)]);
        let rel_any = shape(&[Atom::masked(Base::Ipv4Payload, 0, Width::W1, 0x80, 0)]);
        assert!(!short.subset_of(&rel_any));
        assert!(short.overlaps(&rel_any));
    }

    #[test]
    fn the_bit_count_never_refuses_a_true_subset() {
        // Atoms over a few bytes, absolute and relative (which alias under a fixed IHL), with
        // full and partial masks, so that many pairs are subsets in non-obvious ways.
        let pool = [
            Atom::new(Base::Frame, 12, Width::W2, 0x0800),
            Atom::new(Base::Frame, 12, Width::W1, 0x08),
            Atom::masked(Base::Frame, 14, Width::W1, 0x0f, 5),
            Atom::masked(Base::Frame, 14, Width::W1, 0xff, 0x45),
            Atom::new(Base::Frame, 34, Width::W2, 80),
            Atom::new(Base::Frame, 34, Width::W1, 0),
            Atom::new(Base::Ipv4Payload, 0, Width::W2, 80),
            Atom::masked(Base::Ipv4Payload, 0, Width::W2, 0xff00, 0),
            Atom::new(Base::Ipv4Payload, 2, Width::W4, 7),
            Atom::new(Base::Frame, 36, Width::W2, 0),
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (mut subsets, mut refused) = (0, 0);
        for _ in 0..20_000 {
            let pick = |bits: u64| -> Option<Shape> {
                let atoms: Vec<Atom> = pool.iter().enumerate().filter(|(i, _)| bits >> i & 1 != 0).map(|(_, a)| *a).collect();
                Filter::new(&atoms).ok().map(|f| f.shape().clone())
            };
            let (r, s) = (next(), next());
            let (Some(a), Some(b)) = (pick(r | s), pick(s & (r >> 10))) else { continue };
            for (inner, outer) in [(&a, &b), (&b, &a)] {
                let subset = inner.subset_of_by_cases(outer);
                let quick_no = inner.fixes_too_few_bits_for(outer);
                assert!(!(subset && quick_no), "{inner:?} is inside {outer:?}");
                subsets += usize::from(subset);
                refused += usize::from(quick_no);
            }
        }
        assert!(subsets > 1_000 && refused > 1_000, "{subsets} subsets, {refused} quick refusals");
    }

    #[test]
    fn contradictions_are_unsatisfiable() {
        let err = Filter::new(&[
            Atom::new(Base::Frame, 12, Width::W2, 0x0800),
            Atom::new(Base::Frame, 13, Width::W1, 0x06),
        ]);
        assert_eq!(err, Err(crate::filter::FilterError::Unsatisfiable));
        // The IHL byte itself cannot be both 5 and 6 in its low nibble.
        let ihl = Filter::new(&[
            Atom::masked(Base::Frame, 14, Width::W1, 0x0f, 5),
            Atom::masked(Base::Frame, 14, Width::W2, 0x0f00, 0x0600),
        ]);
        assert_eq!(ihl, Err(crate::filter::FilterError::Unsatisfiable));
    }
}
