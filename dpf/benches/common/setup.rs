//! What the DPF benchmark and the instruction counter share: the installed filters, the
//! frames, and the hand-written classifier they are measured against.

use dpf::{Dpf, Filter, FilterClass, InsertOptions};

/// The host's address.
pub const HOST: [u8; 4] = [10, 0, 0, 1];

/// The i-th remote end of a connection.
pub fn remote(i: usize) -> ([u8; 4], u16) {
    ([172, 16 + (i >> 16) as u8, (i >> 8) as u8, i as u8], 1024 + (i % 60_000) as u16)
}

/// A TCP segment's frame (no payload, padded to 60 bytes).
pub fn tcp_frame(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 0xa, 2, 0, 0, 0, 0, 0xb, 0x08, 0x00];
    f.extend_from_slice(&[0x45, 0, 0, 40, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0]);
    f.resize(60, 0);
    f
}


/// The benchmark's filters, installed in DPF and in the hand-written classifier.
pub fn build(n: usize) -> (Dpf, hand::Classifier) {
    let mut dpf = Dpf::with_seed(0x1234_5678);
    let privileged = |class| InsertOptions { class, privileged: true };
    let arp = dpf.insert(&Filter::arp(), 1, 1).unwrap().id;
    let ipv4 = dpf.insert_with(&Filter::ipv4(), privileged(FilterClass::Fallback), 2, 2).unwrap().id;
    let icmp = dpf.insert(&Filter::icmp_to(HOST), 3, 3).unwrap().id;
    let listens = [80, 443, 22, 25].map(|port| (port, dpf.insert(&Filter::tcp_listen(HOST, port), 4, 4).unwrap().id)).to_vec();
    let mut connections = hashbrown::HashMap::default();
    for i in 0..n {
        let (addr, port) = remote(i);
        let id = dpf.insert(&Filter::tcp_connection(HOST, 80, addr, port), 4, 100 + i as u32).unwrap().id;
        connections.insert(hand::ConnKey::new(addr, port, HOST, 80), id);
    }
    (dpf, hand::Classifier { host: u32::from_be_bytes(HOST), arp, ipv4, icmp, listens, connections })
}

/// The baseline the compiled trie is measured against: a classifier written by hand for
/// exactly the filters [`build`] installs, as a skilled engineer would write it (parse
/// Ethernet, IPv4 with its IHL and TCP with bounds checks, then one hash lookup of the
/// connection with an inline folded-multiply hash, then the listens, ICMP, ARP and the IPv4
/// fallback). Its answers are checked against DPF's on every frame before anything is timed.
pub mod hand {
    use core::hash::{BuildHasherDefault, Hash, Hasher};
    use dpf::FilterId;
    use hashbrown::HashMap;

    /// The key's hash is computed by the key itself ([`ConnKey`]'s `Hash`), inline: this
    /// hasher only carries the word. (Fx's rotate-xor-multiply per word was tried first: its
    /// low bits, which pick the bucket, hardly depend on the high words, and at 100 000
    /// connections a lookup took 250 ns.)
    #[derive(Default)]
    pub struct KeyHasher(u64);

    impl Hasher for KeyHasher {
        #[inline]
        fn write(&mut self, bytes: &[u8]) {
            for chunk in bytes.chunks(8) {
                let mut word = [0u8; 8];
                word[..chunk.len()].copy_from_slice(chunk);
                self.0 = fold_multiply(self.0 ^ u64::from_le_bytes(word), 0x9e37_79b9_7f4a_7c15);
            }
        }
        #[inline]
        fn write_u64(&mut self, n: u64) {
            self.0 = n;
        }
        #[inline]
        fn finish(&self) -> u64 {
            self.0
        }
    }

    /// The high and low words of a 64×64-bit product, xored (foldhash's mixing step).
    #[inline]
    fn fold_multiply(a: u64, b: u64) -> u64 {
        let product = u128::from(a) * u128::from(b);
        product as u64 ^ (product >> 64) as u64
    }

    /// A connection as one packed `u64 + u32` (stored and compared as two wide words: a key
    /// stored in 2-byte pieces and reloaded wider stalls store forwarding).
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub struct ConnKey {
        /// Source address << 32 | destination address.
        addresses: u64,
        /// Source port << 16 | destination port.
        ports: u32,
    }

    impl Hash for ConnKey {
        #[inline]
        fn hash<H: Hasher>(&self, state: &mut H) {
            state.write_u64(fold_multiply(self.addresses ^ 0x243f_6a88_85a3_08d3, u64::from(self.ports) ^ 0x1319_8a2e_0370_7344));
        }
    }

    impl ConnKey {
        /// The key of segments from `src`:`sport` to `dst`:`dport`.
        pub fn new(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> ConnKey {
            ConnKey {
                addresses: u64::from(u32::from_be_bytes(src)) << 32 | u64::from(u32::from_be_bytes(dst)),
                ports: u32::from(sport) << 16 | u32::from(dport),
            }
        }
    }

    /// The hand-written demultiplexer.
    pub struct Classifier {
        pub host: u32,
        pub arp: FilterId,
        pub ipv4: FilterId,
        pub icmp: FilterId,
        pub listens: Vec<(u16, FilterId)>,
        pub connections: HashMap<ConnKey, FilterId, BuildHasherDefault<KeyHasher>>,
    }

    #[inline]
    fn be16(frame: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([frame[at], frame[at + 1]])
    }

    #[inline]
    fn be32(frame: &[u8], at: usize) -> u32 {
        u32::from_be_bytes([frame[at], frame[at + 1], frame[at + 2], frame[at + 3]])
    }

    impl Classifier {
        /// [`Classifier::classify`] behind a call the compiler may not inline, as compiled
        /// code is reached (the difference from the inlined classifier is the call's cost).
        #[inline(never)]
        pub fn classify_called(&self, frame: &[u8]) -> Option<FilterId> {
            self.classify(frame)
        }

        /// The owner of `frame`, under DPF's rules for the installed filters (the most
        /// specific match wins; a field past the frame's end matches nothing).
        #[inline]
        pub fn classify(&self, frame: &[u8]) -> Option<FilterId> {
            if frame.len() < 14 {
                return None;
            }
            match be16(frame, 12) {
                0x0806 => return Some(self.arp),
                0x0800 => {}
                _ => return None,
            }
            // IPv4: the fallback owns it unless something more specific does.
            if frame.len() < 34 || be32(frame, 30) != self.host {
                return Some(self.ipv4);
            }
            match frame[23] {
                1 => Some(self.icmp),
                6 => {
                    let l4 = 14 + 4 * usize::from(frame[14] & 0x0f);
                    if be16(frame, 20) & 0x1fff != 0 || frame.len() < l4 + 4 {
                        return Some(self.ipv4);
                    }
                    let ports = be32(frame, l4);
                    let dport = ports as u16;
                    let Some(&(_, listen)) = self.listens.iter().find(|(port, _)| *port == dport)
                    else {
                        return Some(self.ipv4);
                    };
                    let key = ConnKey {
                        addresses: u64::from(be32(frame, 26)) << 32 | u64::from(self.host),
                        ports,
                    };
                    Some(self.connections.get(&key).copied().unwrap_or(listen))
                }
                _ => Some(self.ipv4),
            }
        }
    }
}

/// Frames that probe every edge of the rules: each given frame cut at every length, with IP
/// options (IHL 6 to 15), as later and middle fragments, with other protocols and addresses,
/// ARP, and with seeded random bit flips.
pub fn edge_frames(frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for frame in frames {
        out.push(frame.clone());
        for cut in 0..frame.len() {
            out.push(frame[..cut].to_vec());
        }
        for ihl in 6..=15usize {
            let mut f = frame[..34].to_vec();
            f[14] = 0x40 | ihl as u8;
            f.extend(std::iter::repeat_n(1u8, (ihl - 5) * 4));
            f.extend_from_slice(&frame[34..]);
            out.push(f.clone());
            out.push(f[..f.len().min(14 + ihl * 4 + 3)].to_vec());
        }
        for (flags, offset) in [(0x20u8, 0u8), (0x20, 1), (0x00, 8), (0x1f, 0xff)] {
            let mut f = frame.clone();
            f[20] = flags;
            f[21] = offset;
            out.push(f);
        }
        for protocol in [1u8, 17, 0, 255] {
            let mut f = frame.clone();
            f[23] = protocol;
            out.push(f);
        }
        for (at, byte) in [(33usize, 2u8), (37, 81), (36, 0), (29, 0xff)] {
            let mut f = frame.clone();
            f[at] = byte;
            out.push(f);
        }
        let mut arp = frame.clone();
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        out.push(arp);
        for _ in 0..200 {
            let mut f = frame.clone();
            for _ in 0..1 + next() % 3 {
                let bit = (next() % (f.len() as u64 * 8)) as usize;
                f[bit / 8] ^= 1 << (bit % 8);
            }
            out.push(f);
        }
    }
    out
}

