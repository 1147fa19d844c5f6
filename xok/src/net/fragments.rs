//! Where the later fragments of an IPv4 datagram go. Only a datagram's first fragment carries
//! the TCP or UDP ports that filters read, so no filter can claim the rest: the kernel
//! remembers, per datagram (source, destination, protocol, identification), the ring its first
//! fragment was stored in and stores the later fragments there too, as the Mach packet
//! filter did. A later fragment that comes before its first is held, bounded in count, bytes
//! and time, and stored right after the first when it comes. Reassembly itself is the
//! library's (`exos::reassembly`): the kernel only multiplexes.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// How many datagrams' routes are remembered (the oldest is forgotten first).
pub const ROUTES_MAX: usize = 256;
/// How long a route is kept after its first fragment, in nanoseconds.
pub const ROUTE_TTL_NS: u64 = 15_000_000_000;
/// How many later fragments may wait for their first at once.
pub const HELD_MAX: usize = 64;
/// How many bytes of frames may wait for their first at once.
pub const HELD_BYTES_MAX: usize = 64 * 1024;
/// How long a later fragment waits for its first, in nanoseconds.
pub const HOLD_NS: u64 = 5_000_000_000;

/// A datagram: source, destination, protocol and identification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram {
    source: [u8; 4],
    destination: [u8; 4],
    protocol: u8,
    id: u16,
}

/// What a received frame is, as far as fragments go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Not an IPv4 fragment (a whole datagram, another protocol, or too short to say).
    Whole,
    /// The first fragment (offset 0, more fragments follow) of a datagram.
    First(Datagram),
    /// A fragment at a non-zero offset.
    Later(Datagram),
}

/// What a frame is: reads the Ethernet and IPv4 headers with every length checked.
pub fn piece(frame: &[u8]) -> Piece {
    const IP: usize = 14;
    let Some(header) = frame.get(IP..IP + 20) else { return Piece::Whole };
    if frame[12..14] != [0x08, 0x00] || header[0] >> 4 != 4 {
        return Piece::Whole;
    }
    let flags_offset = u16::from_be_bytes([header[6], header[7]]);
    let more = flags_offset & 0x2000 != 0;
    let offset = flags_offset & 0x1fff;
    let datagram = Datagram {
        source: [header[12], header[13], header[14], header[15]],
        destination: [header[16], header[17], header[18], header[19]],
        protocol: header[9],
        id: u16::from_be_bytes([header[4], header[5]]),
    };
    match (offset, more) {
        (0, false) => Piece::Whole,
        (0, true) => Piece::First(datagram),
        _ => Piece::Later(datagram),
    }
}

/// What happened to fragments, for `kernel_stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragmentCounts {
    /// Later fragments stored in their first fragment's ring.
    pub routed: u64,
    /// Later fragments that came before their first and were held.
    pub held: u64,
    /// Held fragments stored once their first came.
    pub released: u64,
    /// Held fragments dropped: their first never came in time, or the hold was full.
    pub dropped: u64,
}

/// A held later fragment.
#[derive(Debug)]
pub struct HeldFragment {
    datagram: Datagram,
    /// The frame as received.
    pub frame: Vec<u8>,
    /// The NIC it came from.
    pub nic: u32,
    arrived_ns: u64,
}

/// The routes and the held fragments.
#[derive(Debug, Default)]
pub struct FragmentRoutes {
    /// (datagram, ring, expiry), oldest first.
    routes: VecDeque<(Datagram, u32, u64)>,
    held: VecDeque<HeldFragment>,
    held_bytes: usize,
    /// What happened so far.
    pub counts: FragmentCounts,
}

impl FragmentRoutes {
    /// `datagram`'s first fragment was stored in `ring` at `now_ns`: remembers that, and returns
    /// the held later fragments of it, to be stored after it.
    pub fn first(&mut self, datagram: Datagram, ring: u32, now_ns: u64) -> Vec<HeldFragment> {
        self.expire(now_ns);
        self.routes.retain(|(d, _, _)| *d != datagram);
        if self.routes.len() == ROUTES_MAX {
            self.routes.pop_front();
        }
        self.routes.push_back((datagram, ring, now_ns.saturating_add(ROUTE_TTL_NS)));
        let (mine, others): (VecDeque<_>, VecDeque<_>) = self.held.drain(..).partition(|held| held.datagram == datagram);
        self.held = others;
        self.held_bytes = self.held.iter().map(|held| held.frame.len()).sum();
        self.counts.released += mine.len() as u64;
        mine.into()
    }

    /// The ring for a later fragment of `datagram`, if its first came.
    pub fn route(&mut self, datagram: Datagram, now_ns: u64) -> Option<u32> {
        self.expire(now_ns);
        let ring = self.routes.iter().find(|(d, _, _)| *d == datagram).map(|&(_, ring, _)| ring)?;
        self.counts.routed += 1;
        Some(ring)
    }

    /// Holds a later fragment of `datagram` whose first has not come, dropping the oldest held
    /// ones if the hold is full.
    pub fn hold(&mut self, datagram: Datagram, frame: &[u8], nic: u32, now_ns: u64) {
        self.expire(now_ns);
        if frame.len() > HELD_BYTES_MAX {
            self.counts.dropped += 1;
            return;
        }
        while self.held.len() == HELD_MAX || self.held_bytes + frame.len() > HELD_BYTES_MAX {
            self.drop_oldest();
        }
        self.held_bytes += frame.len();
        self.held.push_back(HeldFragment { datagram, frame: frame.to_vec(), nic, arrived_ns: now_ns });
        self.counts.held += 1;
    }

    /// Fragments waiting for their first.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    fn drop_oldest(&mut self) {
        if let Some(old) = self.held.pop_front() {
            self.held_bytes -= old.frame.len();
            self.counts.dropped += 1;
        }
    }

    fn expire(&mut self, now_ns: u64) {
        while self.routes.front().is_some_and(|&(_, _, expiry)| expiry <= now_ns) {
            self.routes.pop_front();
        }
        while self.held.front().is_some_and(|held| held.arrived_ns.saturating_add(HOLD_NS) <= now_ns) {
            self.drop_oldest();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet frame with an IPv4 fragment of datagram `id` at `offset_units` (8 bytes).
    fn fragment(id: u16, offset_units: u16, more: bool, payload: usize) -> Vec<u8> {
        let mut frame = alloc::vec![0u8; 14 + 20 + payload];
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        frame[14] = 0x45;
        frame[18..20].copy_from_slice(&id.to_be_bytes());
        frame[20..22].copy_from_slice(&(offset_units | if more { 0x2000 } else { 0 }).to_be_bytes());
        frame[23] = 17;
        frame[26..30].copy_from_slice(&[10, 0, 0, 2]);
        frame[30..34].copy_from_slice(&[10, 0, 0, 15]);
        frame
    }

    fn datagram(frame: &[u8]) -> Datagram {
        match piece(frame) {
            Piece::First(d) | Piece::Later(d) => d,
            Piece::Whole => panic!("not a fragment"),
        }
    }

    #[test]
    fn pieces_are_read_from_the_flags_and_offset() {
        assert_eq!(piece(&fragment(1, 0, false, 8)), Piece::Whole);
        assert!(matches!(piece(&fragment(1, 0, true, 8)), Piece::First(_)));
        assert!(matches!(piece(&fragment(1, 5, false, 8)), Piece::Later(_)));
        assert!(matches!(piece(&fragment(1, 5, true, 8)), Piece::Later(_)));
        assert_eq!(piece(&fragment(1, 5, true, 8)[..33]), Piece::Whole, "too short to say");
        let mut arp = fragment(1, 5, true, 8);
        arp[13] = 0x06;
        assert_eq!(piece(&arp), Piece::Whole);
        assert_ne!(datagram(&fragment(1, 5, true, 8)), datagram(&fragment(2, 5, true, 8)));
    }

    #[test]
    fn later_fragments_follow_their_first_and_early_ones_wait_for_it() {
        let mut routes = FragmentRoutes::default();
        let early = fragment(7, 100, false, 40);
        routes.hold(datagram(&early), &early, 0, 0);
        assert_eq!(routes.route(datagram(&early), 1), None);
        let released = routes.first(datagram(&fragment(7, 0, true, 800)), 3, 2);
        assert_eq!(released.len(), 1);
        assert_eq!(released[0].frame, early);
        assert_eq!(routes.route(datagram(&fragment(7, 50, true, 400)), 3), Some(3));
        assert_eq!(routes.route(datagram(&fragment(8, 50, true, 400)), 3), None, "another datagram");
        assert_eq!(routes.counts, FragmentCounts { routed: 1, held: 1, released: 1, dropped: 0 });
        assert_eq!(routes.route(datagram(&fragment(7, 50, true, 400)), 2 + ROUTE_TTL_NS), None, "expired");
    }

    #[test]
    fn the_hold_is_bounded_in_count_bytes_and_time() {
        let mut routes = FragmentRoutes::default();
        for id in 0..200 {
            let frame = fragment(id, 1, false, 100);
            routes.hold(datagram(&frame), &frame, 0, 0);
        }
        assert_eq!(routes.held(), HELD_MAX);
        assert_eq!(routes.counts.dropped, 200 - HELD_MAX as u64);
        for id in 0..100 {
            let frame = fragment(1000 + id, 1, false, 1480);
            routes.hold(datagram(&frame), &frame, 0, 0);
        }
        assert!(routes.held_bytes <= HELD_BYTES_MAX);
        assert!(routes.first(datagram(&fragment(199, 0, true, 8)), 1, 0).is_empty(), "dropped by then");
        let frame = fragment(5000, 1, false, 8);
        routes.hold(datagram(&frame), &frame, 0, HOLD_NS);
        assert_eq!(routes.held(), 1, "the rest waited too long");
    }

    #[test]
    fn routes_are_bounded() {
        let mut routes = FragmentRoutes::default();
        for id in 0..1000 {
            routes.first(datagram(&fragment(id, 0, true, 8)), 1, 0);
        }
        assert_eq!(routes.routes.len(), ROUTES_MAX);
        assert_eq!(routes.route(datagram(&fragment(0, 1, true, 8)), 0), None);
        assert_eq!(routes.route(datagram(&fragment(999, 1, true, 8)), 0), Some(1));
    }
}
