//! smoltcp's `Device` over a packet ring and a transmit pool: how exos's protocol stack sees
//! the NIC.

use crate::ring::PacketRing;
use crate::xmit::TxPool;
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use xok_abi::net::XMIT_MAX_FRAME;

/// A NIC as smoltcp sees it: frames from the ring, frames out through `net_xmit`.
pub struct RingDevice {
    /// Where received frames land (the caller installs the filters).
    pub ring: PacketRing,
    tx: TxPool,
}

impl RingDevice {
    /// A device receiving from `ring` and sending on `nic`.
    pub fn new(ring: PacketRing, nic: usize) -> RingDevice {
        RingDevice { ring, tx: TxPool::new(nic) }
    }
}

/// A received frame, handed back to the kernel once smoltcp has read it.
pub struct RxToken<'a> {
    ring: &'a mut PacketRing,
}

/// Room for one frame to send.
pub struct TxToken<'a> {
    tx: &'a mut TxPool,
    index: usize,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let result = f(self.ring.peek().map_or(&[][..], |received| received.frame));
        self.ring.release();
        result
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        // A refused send is a lost frame, which TCP and the applications above recover from.
        self.tx.send_with(self.index, len, f).0
    }
}

impl phy::Device for RingDevice {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        self.ring.peek()?;
        let index = self.tx.free_buffer()?;
        Some((RxToken { ring: &mut self.ring }, TxToken { tx: &mut self.tx, index }))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        let index = self.tx.free_buffer()?;
        Some(TxToken { tx: &mut self.tx, index })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut capabilities = DeviceCapabilities::default();
        capabilities.medium = Medium::Ethernet;
        capabilities.max_transmission_unit = XMIT_MAX_FRAME;
        capabilities
    }
}
