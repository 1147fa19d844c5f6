//! What a received IPv4 packet is for: the key the stack demultiplexes on, read through
//! smoltcp's checked views (a packet too short or malformed for them is [`Destination::Other`]
//! and smoltcp drops it).

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{Icmpv4Message, Icmpv4Packet, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, UdpPacket};

/// A TCP connection as this machine sees it: its port and the peer's address and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tuple {
    /// This machine's port.
    pub local_port: u16,
    /// The peer's address.
    pub remote: [u8; 4],
    /// The peer's port.
    pub remote_port: u16,
}

/// The header facts of a received TCP segment that the demultiplexer and TIME_WAIT need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Whose segment it is.
    pub tuple: Tuple,
    /// SYN flag.
    pub syn: bool,
    /// ACK flag.
    pub ack: bool,
    /// RST flag.
    pub rst: bool,
    /// FIN flag.
    pub fin: bool,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (meaningful with `ack`).
    pub ack_number: u32,
    /// Bytes of payload.
    pub payload_len: u32,
    /// The window field as sent (unscaled).
    pub window: u16,
    /// Whether it carries SACK blocks (the peer holds data past a hole).
    pub sack: bool,
}

impl Segment {
    /// The sequence number just past this segment (its SYN, payload and FIN count).
    pub fn end(&self) -> u32 {
        self.seq.wrapping_add(self.payload_len).wrapping_add(u32::from(self.syn)).wrapping_add(u32::from(self.fin))
    }

    /// Whether this is a connection request (SYN without ACK).
    pub fn is_connection_request(&self) -> bool {
        self.syn && !self.ack && !self.rst
    }
}

/// Where a received packet goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// A TCP segment to this machine.
    Tcp(Segment),
    /// A UDP datagram to this machine's port.
    Udp(u16),
    /// An ICMP echo reply with this identifier.
    EchoReply(u16),
    /// Anything else: the interface answers it (ICMP echo, "port unreachable") or drops it.
    Other,
    /// A packet to this machine whose IPv4, TCP, UDP or ICMP checksum is wrong: dropped
    /// before anything reads its fields.
    Corrupt,
}

/// Reads where `packet` (an IPv4 packet, no link header) goes on a machine at `local`.
pub fn classify(packet: &[u8], local: [u8; 4]) -> Destination {
    let Ok(ip) = Ipv4Packet::new_checked(packet) else { return Destination::Other };
    if ip.dst_addr().octets() != local || ip.frag_offset() != 0 || ip.more_frags() {
        return Destination::Other;
    }
    if !ip.verify_checksum() {
        return Destination::Corrupt;
    }
    let payload = ip.payload();
    let (src, dst) = (IpAddress::Ipv4(ip.src_addr()), IpAddress::Ipv4(ip.dst_addr()));
    match ip.next_header() {
        IpProtocol::Tcp => match TcpPacket::new_checked(payload) {
            Ok(tcp) if !tcp.verify_checksum(&src, &dst) => Destination::Corrupt,
            Ok(tcp) => Destination::Tcp(Segment {
                tuple: Tuple { local_port: tcp.dst_port(), remote: ip.src_addr().octets(), remote_port: tcp.src_port() },
                syn: tcp.syn(),
                ack: tcp.ack(),
                rst: tcp.rst(),
                fin: tcp.fin(),
                seq: tcp.seq_number().0 as u32,
                ack_number: tcp.ack_number().0 as u32,
                payload_len: tcp.payload().len() as u32,
                window: tcp.window_len(),
                sack: TcpRepr::parse(&tcp, &src, &dst, &ChecksumCapabilities::ignored()).is_ok_and(|repr| repr.sack_ranges[0].is_some()),
            }),
            Err(_) => Destination::Other,
        },
        IpProtocol::Udp => match UdpPacket::new_checked(payload) {
            // A zero UDP checksum means the sender computed none (RFC 768).
            Ok(udp) if udp.checksum() != 0 && !udp.verify_checksum(&src, &dst) => Destination::Corrupt,
            Ok(udp) => Destination::Udp(udp.dst_port()),
            Err(_) => Destination::Other,
        },
        IpProtocol::Icmp => match Icmpv4Packet::new_checked(payload) {
            Ok(icmp) if !icmp.verify_checksum() => Destination::Corrupt,
            Ok(icmp) if icmp.msg_type() == Icmpv4Message::EchoReply => Destination::EchoReply(icmp.echo_ident()),
            _ => Destination::Other,
        },
        _ => Destination::Other,
    }
}

/// The window to hand smoltcp for `segment`, a connection's segment, so that it counts a
/// duplicate ACK as one; `last` is the connection's last (ACK number, window).
///
/// smoltcp counts an ACK as a duplicate only if it leaves the window as it was (RFC 5681's
/// definition), but a Linux receiver grows its window with every segment it takes out of order
/// (receive-buffer autotuning), so smoltcp never sees three duplicates from it, never
/// retransmits fast, and recovers every loss by timeout, each at least 1 s and doubled
/// (docs/network.md, "Sockets"). A pure ACK that repeats the last ACK number, carries SACK
/// blocks (RFC 6675 counts such an ACK as a duplicate) and only grows the window is handed on
/// with the last window instead; the next ACK that moves brings the grown window.
pub fn duplicate_ack_window(last: &mut Option<(u32, u16)>, segment: &Segment) -> Option<u16> {
    if !segment.ack || segment.rst {
        return None;
    }
    let pure = segment.payload_len == 0 && !segment.syn && !segment.fin;
    match *last {
        Some((ack, window)) if pure && segment.sack && ack == segment.ack_number && segment.window > window => Some(window),
        _ => {
            *last = Some((segment.ack_number, segment.window));
            None
        }
    }
}

/// `packet` (an IPv4 packet carrying a TCP segment whose checksums were verified) with its
/// window field set to `window` and its TCP checksum made good again.
pub fn with_window(packet: &[u8], window: u16) -> alloc::vec::Vec<u8> {
    let mut copy = packet.to_vec();
    let mut ip = Ipv4Packet::new_unchecked(&mut copy[..]);
    let (src, dst) = (IpAddress::Ipv4(ip.src_addr()), IpAddress::Ipv4(ip.dst_addr()));
    let mut tcp = TcpPacket::new_unchecked(ip.payload_mut());
    tcp.set_window_len(window);
    tcp.fill_checksum(&src, &dst);
    copy
}

/// A TCP segment without options (an MSS option on a SYN only), as exos writes its own: a
/// TIME_WAIT ACK, strayd's RST, a test's or a fuzzer's segment.
pub fn plain_tcp<'a>(ports: (u16, u16), control: TcpControl, seq: u32, ack: Option<u32>, window: u16, payload: &'a [u8]) -> TcpRepr<'a> {
    TcpRepr {
        src_port: ports.0,
        dst_port: ports.1,
        control,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: ack.map(|ack| TcpSeqNumber(ack as i32)),
        window_len: window,
        window_scale: None,
        max_seg_size: (control == TcpControl::Syn).then_some(536),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload,
    }
}

/// Bytes of the IPv4 packet carrying `tcp`.
pub fn ipv4_tcp_len(tcp: &TcpRepr<'_>) -> usize {
    20 + tcp.buffer_len()
}

/// Writes `tcp` from `src` to `dst` as an IPv4 packet into `out` (at least
/// [`ipv4_tcp_len`] bytes), checksums and all.
pub fn emit_ipv4_tcp(src: [u8; 4], dst: [u8; 4], tcp: &TcpRepr<'_>, out: &mut [u8]) {
    let ip = Ipv4Repr { src_addr: src.into(), dst_addr: dst.into(), next_header: IpProtocol::Tcp, payload_len: tcp.buffer_len(), hop_limit: 64 };
    let caps = ChecksumCapabilities::default();
    let mut packet = Ipv4Packet::new_unchecked(out);
    ip.emit(&mut packet, &caps);
    tcp.emit(&mut TcpPacket::new_unchecked(packet.payload_mut()), &IpAddress::Ipv4(src.into()), &IpAddress::Ipv4(dst.into()), &caps);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcpip::sim::{CLIENT, SERVER, tcp_packet};
    use smoltcp::wire::TcpControl;

    #[test]
    fn tcp_segments_are_read_and_everything_else_is_other() {
        let syn = tcp_packet((CLIENT, 4000), (SERVER, 80), TcpControl::Syn, 7, None, b"");
        let Destination::Tcp(segment) = classify(&syn, [10, 0, 2, 15]) else { panic!("not tcp") };
        assert_eq!(segment.tuple, Tuple { local_port: 80, remote: [10, 0, 2, 2], remote_port: 4000 });
        assert!(segment.is_connection_request());
        assert_eq!(segment.end(), 8);
        let fin = tcp_packet((CLIENT, 4000), (SERVER, 80), TcpControl::Fin, u32::MAX, None, b"ab");
        let Destination::Tcp(segment) = classify(&fin, [10, 0, 2, 15]) else { panic!("not tcp") };
        assert_eq!(segment.end(), 2, "wraps");
        assert_eq!(classify(&syn, [10, 0, 2, 16]), Destination::Other, "another machine's");
        for len in 0..syn.len() {
            assert_ne!(classify(&syn[..len], [10, 0, 2, 15]), Destination::Tcp(segment), "truncated to {len}");
        }
        assert_eq!(classify(&[0xff; 60], [10, 0, 2, 15]), Destination::Other);
    }

    #[test]
    fn a_flipped_bit_anywhere_but_the_addresses_makes_a_packet_corrupt() {
        let data = tcp_packet((CLIENT, 4000), (SERVER, 80), TcpControl::Psh, 7, Some(9), b"hello");
        assert!(matches!(classify(&data, SERVER), Destination::Tcp(_)));
        // Bytes 12..20 are the addresses (a flip there names another machine: Other or
        // Corrupt); every other bit is covered by the IPv4 or the TCP checksum. (Bit flips in
        // the length fields may also make the packet unreadable: Other.)
        for bit in (0..data.len() * 8).filter(|bit| !(12..20).contains(&(bit / 8))) {
            let mut flipped = data.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let destination = classify(&flipped, SERVER);
            assert!(matches!(destination, Destination::Corrupt | Destination::Other), "bit {bit}: {destination:?}");
        }
        // A UDP datagram without a checksum (0) is taken; with a wrong one it is corrupt.
        let mut udp = vec![0x45, 0, 0, 30, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 2, 2, 10, 0, 2, 15, 0x13, 0x88, 0, 7, 0, 10, 0, 0, b'h', b'i'];
        let mut ip = Ipv4Packet::new_unchecked(&mut udp[..]);
        ip.fill_checksum();
        assert_eq!(classify(&udp, SERVER), Destination::Udp(7));
        udp[26] = 0x12;
        assert_eq!(classify(&udp, SERVER), Destination::Corrupt);
    }
}
