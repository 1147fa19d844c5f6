//! IPv4 reassembly (RFC 791, with RFC 815's bookkeeping of what has come): fragments that
//! arrive in any order become the datagram they were cut from, in bounded memory and within a
//! timeout. The kernel stores a datagram's later fragments where its first went
//! (`docs/network.md`, "Fragments"); this puts them together. Plain Rust, time passed in.
//!
//! What it refuses, counting each: fragments with a bad header checksum, a length that is not
//! a multiple of 8 before the last, or an end past 65 535 bytes (the ping of death); any
//! overlap with bytes already received (teardrop and its kin drop the whole datagram, as Linux
//! does; a repeat of bytes already received, as a duplicating network makes, is ignored); a second, different last fragment. When more than
//! [`DATAGRAMS_MAX`] datagrams or [`BYTES_MAX`] bytes are in progress the oldest datagram is
//! dropped, so a flood of incomplete datagrams costs bounded memory and delays real ones by
//! at most their eviction.

use alloc::vec::Vec;
use smoltcp::wire::Ipv4Packet;

/// Datagrams in progress at once.
pub const DATAGRAMS_MAX: usize = 8;
/// Payload bytes buffered across the datagrams in progress.
pub const BYTES_MAX: usize = 128 * 1024;
/// How long a datagram may take to arrive whole, in nanoseconds (RFC 791 suggests 15 s).
pub const TIMEOUT_NS: u64 = 15_000_000_000;
/// The longest IPv4 datagram.
const DATAGRAM_MAX: usize = 65_535;

/// What happened to fragments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReassemblyCounts {
    /// Fragments taken in.
    pub fragments: u64,
    /// Datagrams put together.
    pub reassembled: u64,
    /// Fragments refused: bad header checksum, misaligned length, past 65 535 bytes, or a
    /// last fragment that disagrees with an earlier one.
    pub malformed: u64,
    /// Datagrams dropped because a fragment overlapped bytes already received.
    pub overlapping: u64,
    /// Exact repeats of fragments already received, ignored.
    pub duplicates: u64,
    /// Datagrams dropped because they were not whole within [`TIMEOUT_NS`].
    pub timed_out: u64,
    /// Datagrams dropped, oldest first, to make room for new ones.
    pub evicted: u64,
}

/// What [`Reassembler::input`] made of a packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Reassembled {
    /// Not a fragment (or not an IPv4 packet at all): use the packet as it is.
    Whole,
    /// A fragment, kept until the rest comes.
    Pending,
    /// The last missing fragment: the whole datagram, as one IPv4 packet.
    Complete(Vec<u8>),
    /// A fragment refused (counted).
    Dropped,
}

/// A datagram by source, destination, protocol and identification.
type Key = ([u8; 4], [u8; 4], u8, u16);

/// A datagram in progress.
struct Partial {
    key: Key,
    started_ns: u64,
    /// The first fragment's IPv4 header, options included, once it came.
    header: Option<Vec<u8>>,
    /// The fragments' payloads received so far, by offset, sorted and disjoint (memory is
    /// what was received, not what a far offset would span).
    pieces: Vec<(usize, Vec<u8>)>,
    /// The payload's length, once the last fragment came.
    end: Option<usize>,
}

/// The datagrams in progress.
#[derive(Default)]
pub struct Reassembler {
    partials: Vec<Partial>,
    /// What happened so far.
    pub counts: ReassemblyCounts,
}

impl Reassembler {
    /// Takes in the IPv4 packet `packet` received at `now_ns`.
    pub fn input(&mut self, packet: &[u8], now_ns: u64) -> Reassembled {
        let Ok(ip) = Ipv4Packet::new_checked(packet) else { return Reassembled::Whole };
        let (offset, more) = (usize::from(ip.frag_offset()), ip.more_frags());
        if offset == 0 && !more {
            return Reassembled::Whole;
        }
        self.expire(now_ns);
        self.counts.fragments += 1;
        let header_len = usize::from(ip.header_len());
        let payload = &packet[header_len..usize::from(ip.total_len())];
        let end = offset + payload.len();
        let misaligned = more && !payload.len().is_multiple_of(8);
        if !ip.verify_checksum() || payload.is_empty() || misaligned || header_len + end > DATAGRAM_MAX {
            self.counts.malformed += 1;
            return Reassembled::Dropped;
        }
        let key = (ip.src_addr().octets(), ip.dst_addr().octets(), u8::from(ip.next_header()), ip.ident());
        let at = match self.partials.iter().position(|partial| partial.key == key) {
            Some(at) => at,
            None => {
                if self.partials.len() == DATAGRAMS_MAX {
                    self.evict_oldest();
                }
                self.partials.push(Partial { key, started_ns: now_ns, header: None, pieces: Vec::new(), end: None });
                self.partials.len() - 1
            }
        };
        let partial = &self.partials[at];
        let repeat = partial.pieces.iter().any(|(start, bytes)| {
            *start <= offset && end <= start + bytes.len() && bytes[offset - start..end - start] == *payload
        });
        if repeat {
            self.counts.duplicates += 1;
            return Reassembled::Pending;
        }
        if partial.pieces.iter().any(|(start, bytes)| offset < start + bytes.len() && *start < end) {
            self.counts.overlapping += 1;
            self.partials.swap_remove(at);
            return Reassembled::Dropped;
        }
        let beyond_last = partial.end.is_some_and(|last| end > last || (!more && end != last));
        let short_last = !more && partial.pieces.last().is_some_and(|(start, bytes)| start + bytes.len() > end);
        if beyond_last || short_last {
            self.counts.malformed += 1;
            self.partials.swap_remove(at);
            return Reassembled::Dropped;
        }
        if !self.make_room(key, payload.len()) {
            self.counts.evicted += 1;
            self.partials.retain(|partial| partial.key != key);
            return Reassembled::Dropped;
        }
        let partial = self.partials.iter_mut().find(|partial| partial.key == key).expect("make_room keeps the datagram being filled");
        let at = partial.pieces.partition_point(|(start, _)| *start < offset);
        partial.pieces.insert(at, (offset, payload.to_vec()));
        if offset == 0 {
            partial.header = Some(packet[..header_len].to_vec());
        }
        if !more {
            partial.end = Some(end);
        }
        let received: usize = partial.pieces.iter().map(|(_, bytes)| bytes.len()).sum();
        // The pieces are disjoint and within [0, end): as many bytes as the end means no hole.
        let whole = partial.end == Some(received) && partial.header.is_some();
        if !whole {
            return Reassembled::Pending;
        }
        let at = self.partials.iter().position(|partial| partial.key == key).expect("found above");
        let partial = self.partials.swap_remove(at);
        if partial.header.as_ref().map_or(0, Vec::len) + received > DATAGRAM_MAX {
            // A long first header with a last fragment that only fit a short one.
            self.counts.malformed += 1;
            return Reassembled::Dropped;
        }
        self.counts.reassembled += 1;
        Reassembled::Complete(assemble(partial))
    }

    /// Datagrams in progress.
    pub fn in_progress(&self) -> usize {
        self.partials.len()
    }

    /// Payload bytes buffered.
    fn buffered(&self) -> usize {
        self.partials.iter().flat_map(|partial| &partial.pieces).map(|(_, bytes)| bytes.len()).sum()
    }

    /// Evicts other datagrams, oldest first, until `growth` more bytes fit; false if they
    /// cannot.
    fn make_room(&mut self, keep: Key, growth: usize) -> bool {
        while self.buffered() + growth > BYTES_MAX {
            let oldest = self.partials.iter().enumerate().filter(|(_, partial)| partial.key != keep).min_by_key(|(_, partial)| partial.started_ns);
            let Some((at, _)) = oldest else { return false };
            self.partials.swap_remove(at);
            self.counts.evicted += 1;
        }
        true
    }

    fn evict_oldest(&mut self) {
        if let Some((at, _)) = self.partials.iter().enumerate().min_by_key(|(_, partial)| partial.started_ns) {
            self.partials.swap_remove(at);
            self.counts.evicted += 1;
        }
    }

    fn expire(&mut self, now_ns: u64) {
        let before = self.partials.len();
        self.partials.retain(|partial| partial.started_ns.saturating_add(TIMEOUT_NS) > now_ns);
        self.counts.timed_out += (before - self.partials.len()) as u64;
    }
}

/// The whole datagram: the first fragment's header, not a fragment any more, with its total
/// length and checksum set, then the payload.
fn assemble(partial: Partial) -> Vec<u8> {
    let mut packet = partial.header.expect("a whole datagram has its first fragment");
    for (_, bytes) in &partial.pieces {
        packet.extend_from_slice(bytes);
    }
    let total = packet.len() as u16;
    let mut ip = Ipv4Packet::new_unchecked(&mut packet[..]);
    ip.set_total_len(total);
    ip.set_more_frags(false);
    ip.set_frag_offset(0);
    ip.fill_checksum();
    packet
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;
    use smoltcp::wire::{IpProtocol, Ipv4Address, Ipv4Repr};

    /// A UDP-ish payload of `len` bytes: every byte says where it is.
    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|n| (n * 7 + n / 256) as u8).collect()
    }

    /// The IPv4 packet carrying `payload[range]` of datagram `id` as a fragment.
    fn fragment(id: u16, payload: &[u8], start: usize, stop: usize, last: bool) -> Vec<u8> {
        let repr = Ipv4Repr {
            src_addr: Ipv4Address::new(10, 0, 2, 2),
            dst_addr: Ipv4Address::new(10, 0, 2, 15),
            next_header: IpProtocol::Udp,
            payload_len: stop - start,
            hop_limit: 64,
        };
        let mut packet = vec![0u8; repr.buffer_len() + stop - start];
        let mut ip = Ipv4Packet::new_unchecked(&mut packet[..]);
        repr.emit(&mut ip, &smoltcp::phy::ChecksumCapabilities::ignored());
        ip.set_ident(id);
        ip.set_more_frags(!last);
        ip.set_frag_offset(start as u16);
        ip.payload_mut().copy_from_slice(&payload[start..stop]);
        ip.fill_checksum();
        packet
    }

    /// `payload` cut into fragments of `size` bytes (a multiple of 8).
    fn cut(id: u16, payload: &[u8], size: usize) -> Vec<Vec<u8>> {
        (0..payload.len()).step_by(size).map(|start| {
            let stop = (start + size).min(payload.len());
            fragment(id, payload, start, stop, stop == payload.len())
        }).collect()
    }

    fn complete_payload(result: Reassembled) -> Vec<u8> {
        let Reassembled::Complete(packet) = result else { panic!("not complete: {result:?}") };
        let ip = Ipv4Packet::new_checked(&packet[..]).unwrap();
        assert!(ip.verify_checksum());
        assert!(!ip.more_frags() && ip.frag_offset() == 0);
        ip.payload().to_vec()
    }

    #[test]
    fn whole_packets_pass_and_fragments_in_reverse_order_come_together() {
        let mut reassembler = Reassembler::default();
        let data = payload(1000);
        assert_eq!(reassembler.input(&fragment(1, &data, 0, 1000, true), 0), Reassembled::Whole);
        let mut pieces = cut(2, &data, 136);
        pieces.reverse();
        let last = pieces.pop().unwrap();
        for piece in &pieces {
            assert_eq!(reassembler.input(piece, 0), Reassembled::Pending);
        }
        assert_eq!(complete_payload(reassembler.input(&last, 0)), data);
        assert_eq!(reassembler.in_progress(), 0);
        assert_eq!(reassembler.counts.reassembled, 1);
    }

    #[test]
    fn overlaps_drop_the_datagram_and_exact_duplicates_are_ignored() {
        let mut reassembler = Reassembler::default();
        let data = payload(800);
        assert_eq!(reassembler.input(&fragment(4, &data, 0, 400, false), 0), Reassembled::Pending);
        assert_eq!(reassembler.input(&fragment(4, &data, 0, 400, false), 0), Reassembled::Pending);
        assert_eq!(reassembler.counts.duplicates, 1);
        // Teardrop: the second fragment starts inside the first.
        assert_eq!(reassembler.input(&fragment(4, &data, 392, 800, true), 0), Reassembled::Dropped);
        assert_eq!(reassembler.counts.overlapping, 1);
        assert_eq!(reassembler.in_progress(), 0);
    }

    #[test]
    fn malformed_fragments_are_refused() {
        let mut reassembler = Reassembler::default();
        let data = payload(70_000);
        let mut bad_sum = fragment(5, &data, 0, 400, false);
        bad_sum[10] ^= 1;
        assert_eq!(reassembler.input(&bad_sum, 0), Reassembled::Dropped);
        assert_eq!(reassembler.input(&fragment(5, &data, 0, 100, false), 0), Reassembled::Dropped, "not a multiple of 8");
        assert_eq!(reassembler.input(&fragment(6, &data, 65_000, 65_520, true), 0), Reassembled::Dropped, "ping of death");
        assert_eq!(reassembler.input(&fragment(7, &data, 800, 1000, true), 0), Reassembled::Pending);
        assert_eq!(reassembler.input(&fragment(7, &data, 1000, 1200, true), 0), Reassembled::Dropped, "a second last");
        assert_eq!(reassembler.counts.malformed, 4);
    }

    #[test]
    fn memory_and_time_are_bounded() {
        let mut reassembler = Reassembler::default();
        let data = payload(65_000);
        for id in 0..400 {
            assert_eq!(reassembler.input(&fragment(id, &data, 64_000, 64_008, false), u64::from(id)), Reassembled::Pending);
            assert_eq!(reassembler.input(&fragment(id, &data, 8_000, 17_000, false), u64::from(id)), Reassembled::Pending);
            assert!(reassembler.in_progress() <= DATAGRAMS_MAX && reassembler.buffered() <= BYTES_MAX);
        }
        assert!(reassembler.counts.evicted >= 400 - DATAGRAMS_MAX as u64);
        assert_eq!(reassembler.input(&fragment(1000, &data, 0, 8, false), TIMEOUT_NS + 400), Reassembled::Pending);
        assert_eq!(reassembler.in_progress(), 1, "the rest timed out");
        assert_eq!(reassembler.counts.timed_out, DATAGRAMS_MAX as u64);
        // A real datagram still comes together after the flood.
        let small = payload(600);
        for piece in cut(2000, &small, 200).into_iter().rev() {
            if let Reassembled::Complete(_) = reassembler.input(&piece, TIMEOUT_NS + 500) {
                return;
            }
        }
        panic!("the datagram after the flood never came together");
    }

    proptest! {
        #[test]
        fn any_order_and_any_cut_gives_the_datagram(len in 576usize..9000, size_units in 1usize..72, seed in any::<u64>()) {
            let data = payload(len);
            let mut pieces = cut(9, &data, size_units * 8);
            let mut state = seed | 1;
            for n in (1..pieces.len()).rev() {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                pieces.swap(n, (state % (n as u64 + 1)) as usize);
            }
            let mut reassembler = Reassembler::default();
            let count = pieces.len();
            for (n, piece) in pieces.iter().enumerate() {
                let result = reassembler.input(piece, 0);
                if n + 1 < count {
                    prop_assert_eq!(result, Reassembled::Pending);
                } else {
                    prop_assert_eq!(complete_payload(result), data.clone());
                }
            }
        }
    }
}
