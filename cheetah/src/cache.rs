//! What the maintenance tool (`xok-tools`, when it builds the image) stores beside each served
//! file for Cheetah: the file's two response heads (keep-alive and close) and the RFC 1071 sum
//! of every segment of each response (head then body) for the segment sizes Cheetah uses, so
//! that a send only folds in the pseudo-header and the TCP header. Read back through checked
//! parsing: a record that does not fit its file is ignored (Cheetah then computes).
//!
//! Layout (little-endian): `b"CHTA"`, version (u32), body length (u32), the two heads' lengths
//! (u32 each), the count of segment sizes (u32); the heads' bytes; then per segment size: the
//! size (u32) and, for the keep-alive then the close response, one u16 sum per segment.

use crate::http::Head;
use alloc::vec::Vec;
use smoltcp::wire::checksum;

/// The segment sizes sums are kept for: Ethernet's MSS without options, and the default MSS.
pub const SEGMENT_SIZES: [u16; 2] = [1460, 536];
const MAGIC: &[u8; 4] = b"CHTA";
const VERSION: u32 = 1;

/// The RFC 1071 sums of the segments of `head` then `body`, `mss` bytes each (the last one
/// shorter). Segments start at even offsets (an even `mss`), so sums combine with the header's.
pub fn segment_sums(head: &[u8], body: &[u8], mss: usize) -> Vec<u16> {
    let total = head.len() + body.len();
    let mut sums = Vec::with_capacity(total.div_ceil(mss));
    let mut start = 0;
    while start < total {
        let end = (start + mss).min(total);
        let part = |bytes: &[u8], from: usize| -> (usize, usize) { (start.saturating_sub(from).min(bytes.len()), end.saturating_sub(from).min(bytes.len())) };
        let (h0, h1) = part(head, 0);
        let (b0, b1) = part(body, head.len());
        let first = &head[h0..h1];
        let second = checksum::data(&body[b0..b1]);
        let second = if first.len() % 2 == 1 { second.swap_bytes() } else { second };
        sums.push(checksum::combine(&[checksum::data(first), second]));
        start = end;
    }
    sums
}

/// The record for a file of `body` whose heads are `head`.
pub fn encode(body: &[u8], head: &Head) -> Vec<u8> {
    let (keep, close) = (head.bytes(true), head.bytes(false));
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    for word in [VERSION, body.len() as u32, keep.len() as u32, close.len() as u32, SEGMENT_SIZES.len() as u32] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.extend_from_slice(keep);
    out.extend_from_slice(close);
    for size in SEGMENT_SIZES {
        out.extend_from_slice(&u32::from(size).to_le_bytes());
        for head in [keep, close] {
            for sum in segment_sums(head, body, usize::from(size)) {
                out.extend_from_slice(&sum.to_le_bytes());
            }
        }
    }
    out
}

/// The sums of one response's segments, read in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentSums<'a> {
    /// The segment size.
    pub mss: u16,
    bytes: &'a [u8],
}

impl SegmentSums<'_> {
    /// The sum of segment `index`.
    pub fn get(&self, index: usize) -> Option<u16> {
        let bytes = self.bytes.get(index * 2..index * 2 + 2)?;
        Some(u16::from_le_bytes([bytes[0], bytes[1]]))
    }
}

/// A decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared<'a> {
    /// The keep-alive head.
    pub head_keep: &'a [u8],
    /// The close head.
    pub head_close: &'a [u8],
    /// Per segment size: (size, keep-alive sums, close sums).
    sizes: Vec<(u16, SegmentSums<'a>, SegmentSums<'a>)>,
}

impl<'a> Prepared<'a> {
    /// The record in `bytes`, if it is a well-formed one for a body of `body_len` bytes.
    pub fn decode(bytes: &'a [u8], body_len: usize) -> Option<Prepared<'a>> {
        let word = |at: usize| -> Option<usize> { Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?) as usize) };
        if bytes.get(..4)? != MAGIC || word(4)? != VERSION as usize || word(8)? != body_len {
            return None;
        }
        let (keep_len, close_len, count) = (word(12)?, word(16)?, word(20)?);
        let mut at: usize = 24;
        let head_keep = bytes.get(at..at.checked_add(keep_len)?)?;
        at += keep_len;
        let head_close = bytes.get(at..at.checked_add(close_len)?)?;
        at += close_len;
        let mut sizes = Vec::new();
        for _ in 0..count.min(16) {
            let size = u16::try_from(word(at)?).ok().filter(|size| *size >= 2 && size % 2 == 0)?;
            at += 4;
            let mut pair = [SegmentSums { mss: size, bytes: &[] }; 2];
            for (sums, head_len) in pair.iter_mut().zip([keep_len, close_len]) {
                let segments = (head_len + body_len).div_ceil(usize::from(size));
                let len = segments.checked_mul(2)?;
                *sums = SegmentSums { mss: size, bytes: bytes.get(at..at.checked_add(len)?)? };
                at += len;
            }
            sizes.push((size, pair[0], pair[1]));
        }
        (at == bytes.len()).then_some(Prepared { head_keep, head_close, sizes })
    }

    /// The sums of the keep-alive or close response for segments of `mss` bytes.
    pub fn sums(&self, keep_alive: bool, mss: u16) -> Option<SegmentSums<'a>> {
        self.sizes.iter().find(|(size, ..)| *size == mss).map(|&(_, keep, close)| if keep_alive { keep } else { close })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_sums_match_a_direct_computation() {
        let body: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let head = Head::new(200, "OK", "application/octet-stream", body.len());
        let record = encode(&body, &head);
        let prepared = Prepared::decode(&record, body.len()).unwrap();
        assert_eq!((prepared.head_keep, prepared.head_close), (head.bytes(true), head.bytes(false)));
        let stream = [head.bytes(false), &body[..]].concat();
        let sums = prepared.sums(false, 1460).unwrap();
        for (index, segment) in stream.chunks(1460).enumerate() {
            assert_eq!(sums.get(index), Some(checksum::data(segment)), "segment {index}");
        }
        assert_eq!(sums.get(stream.len().div_ceil(1460)), None);
        assert!(prepared.sums(true, 536).is_some() && prepared.sums(true, 1000).is_none());
        assert_eq!(Prepared::decode(&record, body.len() + 1), None, "another file's record");
        for len in 0..record.len() {
            assert_eq!(Prepared::decode(&record[..len], body.len()), None, "truncated to {len}");
        }
        let mut longer = record.clone();
        longer.push(0);
        assert_eq!(Prepared::decode(&longer, body.len()), None);
    }
}
