//! How exos's protocol stack sees the NIC: [`IpDevice`], the stack's [`Link`] over a packet
//! ring and a transmit pool. It hands the stack IPv4 packets (smoltcp's `Medium::Ip`) and
//! writes the Ethernet headers itself, with neighbours' MACs from arpd's table: smoltcp's own
//! neighbour cache holds 4 entries and cannot be filled from outside (DESIGN.md §6a), and only
//! arpd may speak ARP.

use crate::arp::ArpTable;
use crate::filter::InstalledFilter;
use crate::reassembly::{Reassembled, Reassembler, ReassemblyCounts};
use crate::tcpip::Link;
use crate::tcpip::link::{Lane, Lanes};
use crate::wait::Waiter;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use crate::ring::PacketRing;
use crate::xmit::TxPool;
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use xok_abi::net::XMIT_MAX_FRAME;

/// Length of an Ethernet header.
const ETHERNET_HEADER: usize = 14;

/// Where an [`IpDevice`] is: its MAC and address, its network, and the gateway beyond it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpLink {
    /// The NIC's MAC.
    pub mac: [u8; 6],
    /// The machine's address.
    pub ip: [u8; 4],
    /// The network's prefix length.
    pub prefix: u8,
    /// Where packets for other networks go.
    pub gateway: Option<[u8; 4]>,
}

impl IpLink {
    /// The neighbour a packet to `destination` goes to.
    pub fn next_hop(&self, destination: [u8; 4]) -> Option<[u8; 4]> {
        let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix.min(32))).unwrap_or(0);
        let same = u32::from_be_bytes(destination) & mask == u32::from_be_bytes(self.ip) & mask;
        if same { Some(destination) } else { self.gateway }
    }

    /// Whether a received frame is an IPv4 frame for this link (to its MAC or broadcast).
    pub fn accepts(&self, frame: &[u8]) -> bool {
        frame.len() > ETHERNET_HEADER && frame[12..14] == [0x08, 0x00] && (frame[..6] == self.mac || frame[..6] == [0xff; 6])
    }
}

/// Bytes per entry of the connection requests' ring: a SYN with the longest IP and TCP
/// headers (14 + 60 + 60) and the ring's header fit. (A SYN carrying more data is cut short,
/// and dropped by the stack as a truncated packet: its sender retries without.)
const REQUEST_ENTRY: usize = 256;

/// Packets that may wait for a neighbour's MAC at once.
pub const PENDING_MAX: usize = 16;
/// How long a packet waits for a neighbour's MAC before it is dropped (ticks: 3 s).
pub const PENDING_TICKS: u64 = 300;

/// A NIC as smoltcp sees it with `Medium::Ip`: IPv4 packets in and out; exos strips and
/// writes the Ethernet headers. A packet to a neighbour the table does not know waits (a few,
/// for a few seconds) while arpd is asked; [`IpDevice::send_pending`] sends it once the table
/// has the answer.
pub struct IpDevice {
    /// Where received frames land (the caller installs the filters).
    pub ring: PacketRing,
    /// Where the connection requests of listens land ([`Link::claim_requests`]).
    pub requests: PacketRing,
    /// Which ring to read next, and the ring the frame [`Link::next`] gave is in.
    lanes: Lanes,
    /// The sending half.
    pub out: IpSender,
    /// Fragments put back together into their datagrams.
    pub reassembler: Reassembler,
    /// A datagram just put together, handed to the stack instead of the ring's next frame.
    assembled: Option<Vec<u8>>,
}

/// The sending half of an [`IpDevice`].
pub struct IpSender {
    tx: TxPool,
    link: IpLink,
    table: ArpTable,
    /// Packets waiting for their next hop's MAC: the hop, when they began to wait, the packet.
    pending: VecDeque<([u8; 4], u64, Vec<u8>)>,
    /// Packets dropped for want of a neighbour's MAC.
    pub unresolved: u64,
}

impl IpDevice {
    /// A device receiving from `ring` (and listens' connection requests from `requests`) and
    /// sending on `nic` as `link`, resolving through `table`.
    pub fn new(ring: PacketRing, requests: PacketRing, nic: usize, link: IpLink, table: ArpTable) -> IpDevice {
        let out = IpSender { tx: TxPool::new(nic), link, table, pending: VecDeque::new(), unresolved: 0 };
        IpDevice { ring, requests, lanes: Lanes::default(), out, reassembler: Reassembler::default(), assembled: None }
    }

    /// Frames the kernel dropped because a ring was full (both rings).
    pub fn ring_drops(&self) -> usize {
        self.ring.drops() + self.requests.drops()
    }

    /// Makes `waiter` wake when a frame arrives or the ARP table changes (an answer for a
    /// waiting packet).
    pub fn watch(&self, waiter: &mut Waiter) {
        waiter.watch_ring(&self.ring);
        waiter.watch_ring(&self.requests);
        self.out.table.watch(waiter);
    }

    /// Whether packets wait for a neighbour's MAC (a program that is done should let them go
    /// out, or drop, before it exits).
    pub fn has_pending(&self) -> bool {
        !self.out.pending.is_empty()
    }

    /// Sends the waiting packets whose neighbour the table now knows, and drops those that
    /// waited too long. Call it before each sleep.
    pub fn send_pending(&mut self) {
        let out = &mut self.out;
        out.table.mark_seen();
        let now = crate::sys::ticks();
        let mut waiting = core::mem::take(&mut out.pending);
        waiting.retain(|(hop, since, packet)| {
            if let Some(mac) = out.table.lookup(*hop) {
                return !out.send_to(mac, packet);
            }
            if now.saturating_sub(*since) > PENDING_TICKS {
                out.unresolved += 1;
                return false;
            }
            true
        });
        out.pending = waiting;
    }
}

impl IpSender {
    /// Sends `packet` in an Ethernet frame to `mac`; false if no transmit buffer is free.
    fn send_to(&mut self, mac: [u8; 6], packet: &[u8]) -> bool {
        let Some(index) = self.tx.free_buffer() else { return false };
        let len = packet.len().min(XMIT_MAX_FRAME - ETHERNET_HEADER);
        let source = self.link.mac;
        let buffer = self.tx.buffer(index);
        buffer[..6].copy_from_slice(&mac);
        buffer[6..12].copy_from_slice(&source);
        buffer[12..14].copy_from_slice(&[0x08, 0x00]);
        buffer[ETHERNET_HEADER..ETHERNET_HEADER + len].copy_from_slice(&packet[..len]);
        // A refused send is a lost packet, which the protocols above recover from.
        let _ = self.tx.send_buffer(index, ETHERNET_HEADER + len);
        true
    }
}

/// What [`IpSender`] would receive with: nothing ever (its `receive` says `None`).
pub struct NoRxToken;

impl phy::RxToken for NoRxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&[])
    }
}

/// Room for one packet to send.
pub struct IpTxToken<'a> {
    out: &'a mut IpSender,
    index: usize,
}

impl phy::TxToken for IpTxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let IpTxToken { out, index } = self;
        let len = len.min(XMIT_MAX_FRAME - ETHERNET_HEADER);
        let buffer = out.tx.buffer(index);
        let result = f(&mut buffer[ETHERNET_HEADER..ETHERNET_HEADER + len]);
        let mut destination = [0u8; 4];
        destination.copy_from_slice(&buffer[ETHERNET_HEADER + 16..ETHERNET_HEADER + 20]);
        let neighbour = out.link.next_hop(destination);
        match (neighbour, neighbour.and_then(|hop| out.table.lookup(hop))) {
            (_, Some(mac)) => {
                let source = out.link.mac;
                let buffer = out.tx.buffer(index);
                buffer[..6].copy_from_slice(&mac);
                buffer[6..12].copy_from_slice(&source);
                buffer[12..14].copy_from_slice(&[0x08, 0x00]);
                // A refused send is a lost packet, which the protocols above recover from.
                let _ = out.tx.send_buffer(index, ETHERNET_HEADER + len);
            }
            (Some(hop), None) if out.pending.len() < PENDING_MAX => {
                let packet = out.tx.buffer(index)[ETHERNET_HEADER..ETHERNET_HEADER + len].to_vec();
                out.pending.push_back((hop, crate::sys::ticks(), packet));
                let _ = out.table.request(hop);
            }
            _ => out.unresolved += 1,
        }
        result
    }
}

impl phy::Device for IpSender {
    type RxToken<'a> = NoRxToken;
    type TxToken<'a> = IpTxToken<'a>;

    /// The sending half receives nothing (frames come through [`Link::next`]).
    fn receive(&mut self, _now: Instant) -> Option<(NoRxToken, IpTxToken<'_>)> {
        None
    }

    fn transmit(&mut self, _now: Instant) -> Option<IpTxToken<'_>> {
        let index = self.tx.free_buffer()?;
        Some(IpTxToken { out: self, index })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        ip_capabilities()
    }
}

impl Link for IpDevice {
    type Sender = IpSender;
    type Claim = InstalledFilter;

    fn claim(&mut self, filter: &dpf::Filter) -> Result<InstalledFilter, xok_abi::Error> {
        self.ring.install(filter)
    }

    fn claim_requests(&mut self, filter: &dpf::Filter) -> Result<InstalledFilter, xok_abi::Error> {
        self.requests.install(filter)
    }

    /// The next IPv4 packet for this link from the ring [`Lanes`] picks, or the datagram its
    /// fragments made.
    fn next(&mut self) -> (Option<&[u8]>, &mut IpSender) {
        while self.assembled.is_none() {
            let ring = match self.lanes.lane(|| (self.ring.peek().is_some(), self.requests.peek().is_some())) {
                Some(Lane::Others) => &mut self.ring,
                Some(Lane::Requests) => &mut self.requests,
                None => break,
            };
            let Some(received) = ring.peek() else {
                self.lanes.done();
                break;
            };
            let outcome = match self.out.link.accepts(received.frame) {
                true => self.reassembler.input(&received.frame[ETHERNET_HEADER..], crate::sys::time()),
                false => Reassembled::Dropped,
            };
            match outcome {
                Reassembled::Whole => break,
                Reassembled::Complete(datagram) => self.assembled = Some(datagram),
                Reassembled::Pending | Reassembled::Dropped => {}
            }
            ring.release();
            self.lanes.done();
        }
        if let Some(datagram) = &self.assembled {
            return (Some(datagram), &mut self.out);
        }
        let ring = match self.lanes.current() {
            Some(Lane::Others) => &self.ring,
            Some(Lane::Requests) => &self.requests,
            None => return (None, &mut self.out),
        };
        (ring.peek().and_then(|received| received.frame.get(ETHERNET_HEADER..)), &mut self.out)
    }

    fn consumed(&mut self) {
        if self.assembled.take().is_none() {
            match self.lanes.done() {
                Some(Lane::Others) => self.ring.release(),
                Some(Lane::Requests) => self.requests.release(),
                None => {}
            }
        }
    }

    fn fragments(&self) -> ReassemblyCounts {
        self.reassembler.counts
    }

    fn sender(&mut self) -> &mut IpSender {
        &mut self.out
    }

    fn can_send(&mut self) -> bool {
        self.out.tx.free_buffer().is_some()
    }

    fn flush(&mut self) {
        self.send_pending();
    }
}

fn ip_capabilities() -> DeviceCapabilities {
    let mut capabilities = DeviceCapabilities::default();
    capabilities.medium = Medium::Ip;
    capabilities.max_transmission_unit = XMIT_MAX_FRAME - ETHERNET_HEADER;
    capabilities
}

/// A program's place on the network, from its arguments: `ip=A.B.C.D` (10.0.2.15),
/// `prefix=N` (24), `gateway=A.B.C.D` (10.0.2.2), `nic=N` (0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostConfig {
    /// The NIC to use.
    pub nic: usize,
    /// The machine's address.
    pub ip: [u8; 4],
    /// The network's prefix length.
    pub prefix: u8,
    /// Where packets for other networks go.
    pub gateway: Option<[u8; 4]>,
}

impl HostConfig {
    /// The configuration the arguments ask for.
    pub fn from_args(args: &crate::Args) -> HostConfig {
        HostConfig {
            nic: args.parsed("nic").unwrap_or(0),
            ip: args.value("ip").and_then(crate::ipv4::parse).unwrap_or([10, 0, 2, 15]),
            prefix: args.parsed("prefix").unwrap_or(24),
            gateway: args.value("gateway").and_then(crate::ipv4::parse).or(Some([10, 0, 2, 2])),
        }
    }

    /// The NIC as exos's stack sees it: a ring of `entries` entries and one of `requests`
    /// entries for listens' connection requests (the stack installs the filters), and an
    /// [`IpDevice`] over them resolving through arpd's table.
    pub fn device(&self, entries: usize, requests: usize) -> Result<IpDevice, xok_abi::Error> {
        let info = crate::sys::nic_info(self.nic)?;
        let table = ArpTable::get()?;
        let ring = PacketRing::new(entries, 2048)?;
        let requests = PacketRing::new(requests, REQUEST_ENTRY)?;
        let link = IpLink { mac: info.mac, ip: self.ip, prefix: self.prefix, gateway: self.gateway };
        Ok(IpDevice::new(ring, requests, self.nic, link, table))
    }

    /// The stack's configuration, seeded with `seed`.
    pub fn stack_config(&self, seed: u64) -> crate::tcpip::StackConfig {
        crate::tcpip::StackConfig { ip: self.ip, prefix: self.prefix, gateway: self.gateway, seed }
    }
}

/// smoltcp's clock: now, from the kernel's.
pub fn now() -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros((crate::sys::time() / 1000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_hops_and_accepted_frames() {
        let link = IpLink { mac: [2, 0, 0, 0, 0, 1], ip: [10, 0, 2, 15], prefix: 24, gateway: Some([10, 0, 2, 2]) };
        assert_eq!(link.next_hop([10, 0, 2, 99]), Some([10, 0, 2, 99]));
        assert_eq!(link.next_hop([192, 168, 1, 1]), Some([10, 0, 2, 2]));
        assert_eq!(IpLink { gateway: None, ..link }.next_hop([192, 168, 1, 1]), None);
        assert_eq!(IpLink { prefix: 0, ..link }.next_hop([192, 168, 1, 1]), Some([192, 168, 1, 1]));
        let mut frame = [0u8; 60];
        frame[..6].copy_from_slice(&link.mac);
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        assert!(link.accepts(&frame));
        frame[..6].copy_from_slice(&[0xff; 6]);
        assert!(link.accepts(&frame));
        frame[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        assert!(!link.accepts(&frame), "another MAC");
        frame[..6].copy_from_slice(&link.mac);
        frame[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(!link.accepts(&frame), "ARP is arpd's");
        assert!(!link.accepts(&frame[..14]));
    }
}
