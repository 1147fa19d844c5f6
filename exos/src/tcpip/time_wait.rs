//! TIME_WAIT outside smoltcp: a connection that reaches it leaves smoltcp's socket set (its
//! buffers go back to the heap) and is remembered here in a few words until 2·MSL has passed.
//! What a segment for such a tuple gets (RFC 793, 1122 §4.2.2.13, 1337, 6191):
//! - a retransmitted FIN (our ACK of it was lost) is acknowledged again and the wait restarts;
//! - a new SYN whose sequence number is past the old connection's reopens the tuple;
//! - a RST is ignored (RFC 1337: no TIME-WAIT assassination); anything else is dropped.

use super::segment::{Segment, Tuple};
use alloc::collections::VecDeque;
use hashbrown::HashMap;
use smoltcp::time::{Duration, Instant};

/// How long a tuple stays in TIME_WAIT (2·MSL; Linux waits 60 s too).
pub const TIME_WAIT: Duration = Duration::from_secs(60);
/// Tuples remembered at most; past it the oldest are forgotten first.
pub const TIME_WAIT_MAX: usize = 16 * 1024;
/// Entries the expiry queue holds at most: each tuple once, and those of reopened tuples
/// until their time comes.
const ORDER_MAX: usize = 2 * TIME_WAIT_MAX;

/// One remembered connection.
struct Entry<C> {
    /// When it may be forgotten.
    until: Instant,
    /// The sequence number past the peer's FIN.
    peer_next: u32,
    /// The filter of a connection this machine opened, kept so that the peer's retransmissions
    /// still arrive and nobody else reuses the tuple meanwhile.
    _claim: Option<C>,
}

/// What to do with a segment for a tuple in TIME_WAIT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Acknowledge it: send an ACK with these sequence and acknowledgement numbers.
    Ack {
        /// Our sequence number (what the peer acknowledged).
        seq: u32,
        /// The peer's next sequence number.
        ack: u32,
    },
    /// The tuple is free again: handle the segment as a new connection request.
    Reopen,
    /// Drop it.
    Drop,
}

/// The tuples in TIME_WAIT, generic over the filter handle `C` a connection may keep.
pub struct TimeWaits<C> {
    entries: HashMap<Tuple, Entry<C>>,
    /// Each tuple once, in the order it entered (an entry whose wait restarted goes to the
    /// back when its first place comes up, so a peer repeating its FIN grows nothing).
    order: VecDeque<(Instant, Tuple)>,
}

impl<C> Default for TimeWaits<C> {
    fn default() -> Self {
        TimeWaits { entries: HashMap::new(), order: VecDeque::new() }
    }
}

impl<C> TimeWaits<C> {
    /// Remembers `tuple`, whose peer's FIN ended at `peer_next`, from `now`.
    ///
    /// The first insert takes the room of both bounds at once (about 1.8 MB for a server's
    /// entries): grown on demand, the table's and the queue's room would follow each load's
    /// peak, and a second burst could take memory the first did not need.
    pub fn insert(&mut self, tuple: Tuple, peer_next: u32, claim: Option<C>, now: Instant) {
        if self.entries.capacity() == 0 {
            self.entries.reserve(TIME_WAIT_MAX);
            self.order.reserve(ORDER_MAX);
        }
        while self.entries.len() >= TIME_WAIT_MAX || self.order.len() >= ORDER_MAX {
            let Some((_, oldest)) = self.order.pop_front() else { break };
            self.entries.remove(&oldest);
        }
        let until = now + TIME_WAIT;
        self.entries.insert(tuple, Entry { until, peer_next, _claim: claim });
        self.order.push_back((until, tuple));
    }

    /// Forgets the tuples whose wait is over. (One whose wait restarted behind a later
    /// arrival is forgotten when that one is: late, never early.)
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(until, tuple)) = self.order.front() {
            if until > now {
                break;
            }
            self.order.pop_front();
            match self.entries.get(&tuple).map(|entry| entry.until) {
                Some(restarted) if restarted > now => self.order.push_back((restarted, tuple)),
                Some(_) => {
                    self.entries.remove(&tuple);
                }
                None => {}
            }
        }
    }

    /// What `segment` gets, or `None` if its tuple is not in TIME_WAIT.
    pub fn check(&mut self, segment: &Segment, now: Instant) -> Option<Verdict> {
        let entry = self.entries.get_mut(&segment.tuple)?;
        if segment.rst {
            return Some(Verdict::Drop);
        }
        if segment.is_connection_request() {
            // RFC 6191 without timestamps, RFC 1122 4.2.2.13: only past the old sequence space.
            if (segment.seq.wrapping_sub(entry.peer_next) as i32) > 0 {
                self.entries.remove(&segment.tuple);
                return Some(Verdict::Reopen);
            }
            return Some(Verdict::Drop);
        }
        if segment.fin && segment.ack {
            entry.until = now + TIME_WAIT;
            return Some(Verdict::Ack { seq: segment.ack_number, ack: segment.end() });
        }
        Some(Verdict::Drop)
    }

    /// Whether some tuple of local port `port` is in TIME_WAIT (a listener there needs
    /// SO_REUSEADDR).
    pub fn holds_port(&self, port: u16) -> bool {
        self.entries.keys().any(|tuple| tuple.local_port == port)
    }

    /// Tuples in TIME_WAIT.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no tuple is in TIME_WAIT.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(seq: u32, syn: bool, ack: bool, fin: bool, rst: bool) -> Segment {
        Segment {
            tuple: Tuple { local_port: 80, remote: [10, 0, 2, 2], remote_port: 4000 },
            syn,
            ack,
            rst,
            fin,
            seq,
            ack_number: 555,
            payload_len: 0,
            window: 0,
            sack: false,
        }
    }

    #[test]
    fn fins_are_acked_again_rsts_ignored_and_later_syns_reopen() {
        let mut waits: TimeWaits<()> = TimeWaits::default();
        let start = Instant::from_secs(100);
        waits.insert(segment(0, false, false, false, false).tuple, 1000, None, start);
        assert!(waits.holds_port(80) && !waits.holds_port(81));
        assert_eq!(waits.check(&segment(999, false, true, true, false), start), Some(Verdict::Ack { seq: 555, ack: 1000 }));
        assert_eq!(waits.check(&segment(1000, false, false, false, true), start), Some(Verdict::Drop), "RFC 1337");
        assert_eq!(waits.check(&segment(10, true, false, false, false), start), Some(Verdict::Drop), "old sequence space");
        assert_eq!(waits.check(&segment(1000, false, true, false, false), start), Some(Verdict::Drop));
        assert_eq!(waits.check(&segment(5000, true, false, false, false), start), Some(Verdict::Reopen));
        assert!(waits.is_empty());
        assert_eq!(waits.check(&segment(5000, true, false, false, false), start), None);
    }

    #[test]
    fn waits_expire_and_restart_with_a_retransmitted_fin() {
        let mut waits: TimeWaits<()> = TimeWaits::default();
        let tuple = segment(0, false, false, false, false).tuple;
        waits.insert(tuple, 1000, None, Instant::from_secs(0));
        let _ = waits.check(&segment(999, false, true, true, false), Instant::from_secs(30));
        waits.expire(Instant::from_secs(61));
        assert_eq!(waits.len(), 1, "the FIN at 30 s restarted the wait");
        waits.expire(Instant::from_secs(90));
        assert!(waits.is_empty());
    }

    #[test]
    fn a_peer_repeating_its_fin_grows_nothing() {
        let mut waits: TimeWaits<()> = TimeWaits::default();
        let tuple = segment(0, false, false, false, false).tuple;
        waits.insert(tuple, 1000, None, Instant::from_secs(0));
        for n in 0..100_000 {
            let _ = waits.check(&segment(999, false, true, true, false), Instant::from_millis(n));
        }
        assert_eq!(waits.order.len(), 1);
        waits.expire(Instant::from_secs(100));
        assert_eq!((waits.len(), waits.order.len()), (1, 1), "restarted at 99.999 s, requeued");
        waits.expire(Instant::from_secs(160));
        assert!(waits.is_empty() && waits.order.is_empty());
    }

    #[test]
    fn the_table_and_its_queue_are_bounded() {
        let mut waits: TimeWaits<()> = TimeWaits::default();
        let mut room = None;
        for port in 0..(4 * TIME_WAIT_MAX as u32) {
            let tuple = Tuple { local_port: 80, remote: [10, 0, (port >> 16) as u8, (port >> 8) as u8], remote_port: port as u16 };
            waits.insert(tuple, 0, None, Instant::from_secs(0));
            let now = (waits.entries.allocation_size(), waits.order.capacity());
            assert!(*room.get_or_insert(now) == now, "the room taken at the first insert never grows: {room:?}, then {now:?} at {port}");
            // Three tuples of four reopen at once: their queue entries stay until their time,
            // so without a bound of its own the queue would hold four entries a live tuple.
            if port % 4 != 0 {
                let syn = Segment { tuple, syn: true, seq: 1, ..segment(0, false, false, false, false) };
                assert_eq!(waits.check(&syn, Instant::from_secs(0)), Some(Verdict::Reopen));
            }
        }
        assert!(waits.len() <= TIME_WAIT_MAX && waits.order.len() <= ORDER_MAX);
    }
}
