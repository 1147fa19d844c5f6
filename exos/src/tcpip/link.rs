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
