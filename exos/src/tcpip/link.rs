//! The seam between the protocol stack and the machine: [`Link`] gives it received IPv4 packets
//! one at a time, a smoltcp device to send through, and DPF filters to claim. exos's
//! [`IpDevice`](crate::netdev::IpDevice) is the real one; host tests use a simulated wire.

use smoltcp::phy::{self, DeviceCapabilities};
use smoltcp::time::Instant;
use crate::reassembly::ReassemblyCounts;
use xok_abi::Error;

/// What the stack needs from below.
pub trait Link {
    /// The sending half: smoltcp transmits through it (its `receive` is never called).
    type Sender: phy::Device;
    /// A claimed filter: dropping it gives the filter back.
    type Claim;

    /// Claims `filter` for this process (`FilterOverlap` when another holds it).
    fn claim(&mut self, filter: &dpf::Filter) -> Result<Self::Claim, Error>;
    /// Claims `filter`, a listen's connection requests
    /// ([`dpf::Filter::tcp_connection_requests`]), for the [`Lane::Requests`] queue: its
    /// packets come after the others ([`Lanes`]). A link with one queue claims it as any other.
    fn claim_requests(&mut self, filter: &dpf::Filter) -> Result<Self::Claim, Error> {
        self.claim(filter)
    }
    /// The next received IPv4 packet (kept until [`Link::consumed`]) and the sender.
    fn next(&mut self) -> (Option<&[u8]>, &mut Self::Sender);
    /// Lets the packet [`Link::next`] gave go.
    fn consumed(&mut self);
    /// The sender alone.
    fn sender(&mut self) -> &mut Self::Sender;
    /// Whether a packet could be sent now (received packets wait in the ring while not).
    fn can_send(&mut self) -> bool;
    /// Sends what waited for the link (ARP answers); called after every round.
    fn flush(&mut self);
    /// What the link's reassembly did with fragments (a link that reassembles nothing: none).
    fn fragments(&self) -> ReassemblyCounts {
        ReassemblyCounts::default()
    }
}

/// A device that receives exactly one packet (handed to one socket set) and sends through `S`.
pub struct OnePacket<'a, S> {
    /// The packet, until smoltcp takes it.
    pub packet: Option<&'a [u8]>,
    /// Where answers go.
    pub sender: &'a mut S,
}

/// The packet of a [`OnePacket`].
pub struct PacketToken<'a>(&'a [u8]);

impl phy::RxToken for PacketToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl<S: phy::Device> phy::Device for OnePacket<'_, S> {
    type RxToken<'b>
        = PacketToken<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = S::TxToken<'b>
    where
        Self: 'b;

    fn receive(&mut self, now: Instant) -> Option<(PacketToken<'_>, S::TxToken<'_>)> {
        let packet = self.packet.take()?;
        let tx = self.sender.transmit(now)?;
        Some((PacketToken(packet), tx))
    }

    fn transmit(&mut self, now: Instant) -> Option<S::TxToken<'_>> {
        self.sender.transmit(now)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.sender.capabilities()
    }
}

/// The two queues of received packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// Everything but connection requests.
    Others,
    /// Connection requests: pure SYNs to a listening port.
    Requests,
}

/// Packets of the other lane served before one connection request while both wait.
pub const OTHERS_PER_REQUEST: u32 = 32;

/// Which queue the next received packet comes from. Other packets go first: a SYN flood then
/// fills only the requests' queue, and the ACK that completes a real client's handshake is
/// handled as soon as it arrives, not after the SYNs that came before it, each of which may
/// evict the oldest half-open connection (with one queue, a guest that falls a few hundred
/// SYNs behind evicts every handshake it is completing). While both wait, one request goes
/// after every [`OTHERS_PER_REQUEST`] other packets, so that a flood of other packets cannot
/// keep new connections out either.
#[derive(Clone, Copy, Debug, Default)]
pub struct Lanes {
    /// Other packets served in a row while requests waited.
    others_in_a_row: u32,
    /// The lane of the packet being handled, until [`Lanes::done`].
    current: Option<Lane>,
}

impl Lanes {
    /// The lane of the packet being handled: the one picked last, until [`Lanes::done`], or
    /// a new pick given which lanes have a packet waiting (`waiting`, asked only then).
    pub fn lane(&mut self, waiting: impl FnOnce() -> (bool, bool)) -> Option<Lane> {
        if self.current.is_none() {
            let (others, requests) = waiting();
            self.current = self.pick(others, requests);
        }
        self.current
    }

    /// The lane of the packet being handled, if any.
    pub fn current(&self) -> Option<Lane> {
        self.current
    }

    /// The packet being handled is done with: its lane, and the next [`Lanes::lane`] picks
    /// again.
    pub fn done(&mut self) -> Option<Lane> {
        self.current.take()
    }

    /// The lane to take the next packet from, given which have one waiting.
    pub fn pick(&mut self, others_waiting: bool, requests_waiting: bool) -> Option<Lane> {
        match (others_waiting, requests_waiting) {
            (true, true) if self.others_in_a_row >= OTHERS_PER_REQUEST => {
                self.others_in_a_row = 0;
                Some(Lane::Requests)
            }
            (true, waiting) => {
                self.others_in_a_row = if waiting { self.others_in_a_row + 1 } else { 0 };
                Some(Lane::Others)
            }
            (false, true) => {
                self.others_in_a_row = 0;
                Some(Lane::Requests)
            }
            (false, false) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn others_go_first_and_a_request_waits_at_most_its_share() {
        let mut lanes = Lanes::default();
        assert_eq!(lanes.pick(false, false), None);
        assert_eq!(lanes.pick(false, true), Some(Lane::Requests));
        assert_eq!(lanes.pick(true, false), Some(Lane::Others));
        // Both waiting: OTHERS_PER_REQUEST others, then one request, and again.
        let picks: alloc::vec::Vec<Lane> = (0..2 * (OTHERS_PER_REQUEST + 1)).filter_map(|_| lanes.pick(true, true)).collect();
        let requests: alloc::vec::Vec<usize> = picks.iter().enumerate().filter(|(_, lane)| **lane == Lane::Requests).map(|(i, _)| i).collect();
        let every = OTHERS_PER_REQUEST as usize;
        assert_eq!(requests, [every, 2 * every + 1]);
        // Others alone do not bank credit: requests arriving later wait the full share.
        for _ in 0..100 {
            lanes.pick(true, false);
        }
        assert_eq!(lanes.pick(true, true), Some(Lane::Others));
    }
}
