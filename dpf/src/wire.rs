//! The byte encoding of a filter, as programs pass it to `dpf_insert`.
//!
//! ```text
//! u8        number of atoms (at most MAX_ATOMS)
//! per atom, 12 bytes:
//!   u8      base: 0 = frame, 1 = IPv4 payload
//!   u8      width in bytes: 1, 2 or 4
//!   u16 LE  offset
//!   u32 LE  mask
//!   u32 LE  value
//! ```
//!
//! Decoding checks the length exactly and then validates the atoms like [`Filter::new`].

use alloc::vec::Vec;
use core::fmt;

use crate::filter::{Atom, AtomKey, Base, Filter, FilterError, MAX_ATOMS, Width};

/// Bytes per encoded atom.
pub const ATOM_BYTES: usize = 12;
/// Longest encoding.
pub const MAX_ENCODED: usize = 1 + MAX_ATOMS * ATOM_BYTES;

/// Why bytes are not a filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The length does not match the atom count (or the count is over [`MAX_ATOMS`]).
    Length,
    /// Atom `n` has an unknown base.
    Base(usize),
    /// Atom `n` has a width other than 1, 2 or 4.
    Width(usize),
    /// The atoms do not form a valid filter.
    Filter(FilterError),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Length => write!(f, "encoded filter has the wrong length"),
            WireError::Base(n) => write!(f, "atom {n}: unknown base"),
            WireError::Width(n) => write!(f, "atom {n}: width is not 1, 2 or 4"),
            WireError::Filter(error) => write!(f, "{error}"),
        }
    }
}

impl Filter {
    /// Encodes the filter for `dpf_insert`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.atoms().len() * ATOM_BYTES);
        out.push(self.atoms().len() as u8);
        for atom in self.atoms() {
            out.push(match atom.key.base {
                Base::Frame => 0,
                Base::Ipv4Payload => 1,
            });
            out.push(atom.key.width.bytes() as u8);
            out.extend_from_slice(&atom.key.offset.to_le_bytes());
            out.extend_from_slice(&atom.key.mask.to_le_bytes());
            out.extend_from_slice(&atom.value.to_le_bytes());
        }
        out
    }

    /// Decodes and validates an encoded filter.
    pub fn from_bytes(bytes: &[u8]) -> Result<Filter, WireError> {
        let (&count, body) = bytes.split_first().ok_or(WireError::Length)?;
        let count = usize::from(count);
        if count > MAX_ATOMS || body.len() != count * ATOM_BYTES {
            return Err(WireError::Length);
        }
        let mut atoms = Vec::with_capacity(count);
        for (n, chunk) in body.chunks_exact(ATOM_BYTES).enumerate() {
            let base = match chunk[0] {
                0 => Base::Frame,
                1 => Base::Ipv4Payload,
                _ => return Err(WireError::Base(n)),
            };
            let width = Width::from_bytes(u32::from(chunk[1])).ok_or(WireError::Width(n))?;
            let word = |at: usize| u32::from_le_bytes([chunk[at], chunk[at + 1], chunk[at + 2], chunk[at + 3]]);
            let key = AtomKey { base, offset: u16::from_le_bytes([chunk[2], chunk[3]]), width, mask: word(4) };
            atoms.push(Atom { key, value: word(8) });
        }
        Filter::new(&atoms).map_err(WireError::Filter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for filter in [
            Filter::everything(),
            Filter::arp(),
            Filter::icmp_to([10, 0, 2, 15]),
            Filter::tcp_connection([10, 0, 2, 15], 80, [10, 0, 2, 2], 40_000),
        ] {
            assert_eq!(Filter::from_bytes(&filter.to_bytes()), Ok(filter));
        }
    }

    #[test]
    fn malformed_bytes_are_refused_precisely() {
        let good = Filter::udp_port(53).to_bytes();
        assert_eq!(Filter::from_bytes(&[]), Err(WireError::Length));
        assert_eq!(Filter::from_bytes(&good[..good.len() - 1]), Err(WireError::Length));
        assert_eq!(Filter::from_bytes(&[17]), Err(WireError::Length));
        let mut bad = good.clone();
        bad[1] = 9;
        assert_eq!(Filter::from_bytes(&bad), Err(WireError::Base(0)));
        let mut bad = good.clone();
        bad[2] = 3;
        assert_eq!(Filter::from_bytes(&bad), Err(WireError::Width(0)));
        let mut bad = good;
        bad[5..9].copy_from_slice(&0u32.to_le_bytes());
        assert!(matches!(Filter::from_bytes(&bad), Err(WireError::Filter(_))));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut seed = 7u64;
        for len in 0..4000usize {
            let bytes: Vec<u8> = (0..len % 200)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (seed >> 56) as u8
                })
                .collect();
            let _ = Filter::from_bytes(&bytes);
        }
    }
}
