//! What a good TCP/IP host says to a packet nobody asked for (strayd's logic, plain Rust so it
//! is tested on the host): an ICMP echo request gets its reply (the machine answers ping, as
//! it answers ARP, whatever programs run), a TCP segment for no connection gets a RST as RFC
//! 793 §3.4 says, a UDP datagram for no port gets ICMP port unreachable quoting its IP header
//! and first 8 bytes (RFC 792, 1122 §3.2.2), and nothing is said to a RST, to other ICMP, to
//! broadcasts or to another machine's packets. The answer goes straight back to the frame's
//! sender MAC.

use alloc::vec;
use alloc::vec::Vec;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv4DstUnreachable, Icmpv4Packet, Icmpv4Repr, IpAddress, IpProtocol,
    Ipv4Address, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpSeqNumber, UdpPacket,
};

/// What to do with a stray frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Send this echo reply.
    EchoReply(Vec<u8>),
    /// Send this RST frame.
    Reset(Vec<u8>),
    /// Send this ICMP port unreachable frame (rate-limited by the caller).
    PortUnreachable(Vec<u8>),
    /// Say nothing, for this reason.
    Drop(Dropped),
}

/// Why a stray frame gets no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// Not an IPv4 packet this machine can read, or one for another address.
    NotForUs,
    /// A RST (never answered).
    Reset,
    /// A UDP datagram to a broadcast or multicast address (no ICMP errors for those).
    Broadcast,
    /// Another protocol (ICMP, a later fragment, ...): counted only.
    Other,
}

/// The frame `answer` is built around: Ethernet to `to` from `mac`, IPv4 `ip` to `peer`.
fn frame(mac: [u8; 6], to: EthernetAddress, ip: Ipv4Repr, emit_payload: impl FnOnce(&mut [u8], &ChecksumCapabilities)) -> Vec<u8> {
    let ethernet = EthernetRepr { src_addr: EthernetAddress(mac), dst_addr: to, ethertype: EthernetProtocol::Ipv4 };
    let mut bytes = vec![0u8; ethernet.buffer_len() + ip.buffer_len() + ip.payload_len];
    let caps = ChecksumCapabilities::default();
    let mut frame = EthernetFrame::new_unchecked(&mut bytes[..]);
    ethernet.emit(&mut frame);
    let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut packet, &caps);
    emit_payload(packet.payload_mut(), &caps);
    bytes
}

/// The answer to a stray `frame` received by a machine at `mac` and `ip`.
pub fn answer(received: &[u8], mac: [u8; 6], ip: [u8; 4]) -> Answer {
    let not_for_us = Answer::Drop(Dropped::NotForUs);
    let Ok(ethernet) = EthernetFrame::new_checked(received) else { return not_for_us };
    if ethernet.ethertype() != EthernetProtocol::Ipv4 {
        return not_for_us;
    }
    let Ok(packet) = Ipv4Packet::new_checked(ethernet.payload()) else { return not_for_us };
    let (local, peer) = (Ipv4Address::from(ip), packet.src_addr());
    let to_us = packet.dst_addr() == local;
    let to_broadcast = packet.dst_addr().is_broadcast() || packet.dst_addr().is_multicast() || packet.dst_addr().octets()[3] == 255;
    if !to_us && !to_broadcast {
        return not_for_us;
    }
    if packet.frag_offset() != 0 {
        return Answer::Drop(Dropped::Other);
    }
    let back = |payload_len| Ipv4Repr { src_addr: local, dst_addr: peer, next_header: IpProtocol::Tcp, payload_len, hop_limit: 64 };
    match packet.next_header() {
        IpProtocol::Tcp if to_us => {
            let Ok(segment) = TcpPacket::new_checked(packet.payload()) else { return not_for_us };
            if segment.rst() {
                return Answer::Drop(Dropped::Reset);
            }
            // RFC 793 3.4: if the segment has an ACK, the RST takes its sequence number from
            // it; otherwise the RST has sequence 0 and acknowledges everything the segment
            // occupied (SYN and FIN count one each).
            let occupied = segment.payload().len() + usize::from(segment.syn()) + usize::from(segment.fin());
            let (seq_number, ack_number) = if segment.ack() {
                (segment.ack_number(), None)
            } else {
                (TcpSeqNumber(0), Some(segment.seq_number() + occupied))
            };
            let rst = crate::tcpip::segment::plain_tcp((segment.dst_port(), segment.src_port()), TcpControl::Rst, seq_number.0 as u32, ack_number.map(|ack| ack.0 as u32), 0, &[]);
            Answer::Reset(frame(mac, ethernet.src_addr(), back(rst.buffer_len()), |payload, caps| {
                rst.emit(&mut TcpPacket::new_unchecked(payload), &IpAddress::Ipv4(local), &IpAddress::Ipv4(peer), caps);
            }))
        }
        IpProtocol::Udp if to_us => {
            if UdpPacket::new_checked(packet.payload()).is_err() {
                return not_for_us;
            }
            let header = Ipv4Repr {
                src_addr: peer,
                dst_addr: local,
                next_header: IpProtocol::Udp,
                payload_len: packet.payload().len(),
                hop_limit: packet.hop_limit(),
            };
            let quoted = &packet.payload()[..8];
            let icmp = Icmpv4Repr::DstUnreachable { reason: Icmpv4DstUnreachable::PortUnreachable, header, data: quoted };
            let ip = Ipv4Repr { next_header: IpProtocol::Icmp, ..back(icmp.buffer_len()) };
            Answer::PortUnreachable(frame(mac, ethernet.src_addr(), ip, |payload, caps| {
                icmp.emit(&mut Icmpv4Packet::new_unchecked(payload), caps);
            }))
        }
        IpProtocol::Udp => Answer::Drop(Dropped::Broadcast),
        IpProtocol::Icmp if to_us => crate::echo::reply(received, mac, ip).map_or(Answer::Drop(Dropped::Other), Answer::EchoReply),
        _ => Answer::Drop(Dropped::Other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0xab, 0xcd, 1];
    const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x22];
    const IP: [u8; 4] = [10, 0, 2, 15];
    const PEER: [u8; 4] = [10, 0, 2, 2];

    fn ethernet(packet: &[u8]) -> Vec<u8> {
        let mut frame = Vec::from(&MAC[..]);
        frame.extend_from_slice(&PEER_MAC);
        frame.extend_from_slice(&[8, 0]);
        frame.extend_from_slice(packet);
        frame
    }

    fn tcp(control: TcpControl, ack: Option<u32>, payload: &[u8]) -> Vec<u8> {
        ethernet(&crate::tcpip::sim::tcp_packet((PEER, 4000), (IP, 81), control, 1000, ack, payload))
    }

    fn reset_of(answer: Answer) -> (u32, Option<u32>, [u8; 6]) {
        let Answer::Reset(frame) = answer else { panic!("{answer:?}") };
        let ethernet = EthernetFrame::new_checked(&frame[..]).unwrap();
        assert_eq!(ethernet.src_addr().0, MAC);
        let packet = Ipv4Packet::new_checked(ethernet.payload()).unwrap();
        assert_eq!((packet.src_addr().octets(), packet.dst_addr().octets()), (IP, PEER));
        assert!(packet.verify_checksum());
        let segment = TcpPacket::new_checked(packet.payload()).unwrap();
        assert!(segment.verify_checksum(&IpAddress::Ipv4(IP.into()), &IpAddress::Ipv4(PEER.into())));
        assert_eq!((segment.src_port(), segment.dst_port()), (81, 4000));
        assert!(segment.rst());
        let ack = segment.ack().then(|| segment.ack_number().0 as u32);
        (segment.seq_number().0 as u32, ack, ethernet.dst_addr().0)
    }

    #[test]
    fn segments_for_no_connection_get_the_rfc_793_reset() {
        assert_eq!(reset_of(answer(&tcp(TcpControl::Syn, None, b""), MAC, IP)), (0, Some(1001), PEER_MAC), "SYN: ACK = SEQ + 1");
        assert_eq!(reset_of(answer(&tcp(TcpControl::None, None, b"abc"), MAC, IP)), (0, Some(1003), PEER_MAC), "no ACK: SEQ + LEN");
        assert_eq!(reset_of(answer(&tcp(TcpControl::Fin, Some(77), b"ab"), MAC, IP)), (77, None, PEER_MAC), "ACK: SEQ = its ACK");
        assert_eq!(answer(&tcp(TcpControl::Rst, None, b""), MAC, IP), Answer::Drop(Dropped::Reset));
        assert_eq!(answer(&tcp(TcpControl::Syn, None, b""), MAC, [10, 0, 2, 16]), Answer::Drop(Dropped::NotForUs));
    }

    #[test]
    fn datagrams_for_no_port_get_port_unreachable_quoting_them() {
        let udp = [0x0f, 0xa0, 0, 9, 0, 12, 0, 0, b'a', b'b', b'c', b'd'];
        let ip = Ipv4Repr { src_addr: PEER.into(), dst_addr: IP.into(), next_header: IpProtocol::Udp, payload_len: udp.len(), hop_limit: 64 };
        let mut packet = vec![0u8; ip.buffer_len() + udp.len()];
        ip.emit(&mut Ipv4Packet::new_unchecked(&mut packet[..]), &ChecksumCapabilities::default());
        packet[20..].copy_from_slice(&udp);
        let Answer::PortUnreachable(frame) = answer(&ethernet(&packet), MAC, IP) else { panic!("no ICMP") };
        let reply = Ipv4Packet::new_checked(&frame[14..]).unwrap();
        assert_eq!((reply.src_addr().octets(), reply.dst_addr().octets(), reply.next_header()), (IP, PEER, IpProtocol::Icmp));
        let icmp = Icmpv4Packet::new_checked(reply.payload()).unwrap();
        assert!(icmp.verify_checksum());
        assert_eq!((u8::from(icmp.msg_type()), icmp.msg_code()), (3, 3));
        assert_eq!(&icmp.data()[..20], &packet[..20], "the datagram's IP header");
        assert_eq!(&icmp.data()[20..], &udp[..8], "and its first 8 bytes");
        let mut broadcast = packet.clone();
        broadcast[16..20].copy_from_slice(&[10, 0, 2, 255]);
        assert_eq!(answer(&ethernet(&broadcast), MAC, IP), Answer::Drop(Dropped::Broadcast));
    }

    #[test]
    fn pings_are_answered() {
        let icmp = Icmpv4Repr::EchoRequest { ident: 7, seq_no: 1, data: b"ping" };
        let ip = Ipv4Repr { src_addr: PEER.into(), dst_addr: IP.into(), next_header: IpProtocol::Icmp, payload_len: icmp.buffer_len(), hop_limit: 64 };
        let mut packet = vec![0u8; ip.buffer_len() + icmp.buffer_len()];
        let caps = ChecksumCapabilities::default();
        let mut view = Ipv4Packet::new_unchecked(&mut packet[..]);
        ip.emit(&mut view, &caps);
        icmp.emit(&mut Icmpv4Packet::new_unchecked(view.payload_mut()), &caps);
        let request = ethernet(&packet);
        let Answer::EchoReply(reply) = answer(&request, MAC, IP) else { panic!("no echo reply") };
        assert_eq!(Some(reply), crate::echo::reply(&request, MAC, IP));
    }

    #[test]
    fn anything_else_is_dropped_and_garbage_never_panics() {
        assert_eq!(answer(&[0u8; 10], MAC, IP), Answer::Drop(Dropped::NotForUs));
        let mut arp = ethernet(&[0u8; 28]);
        arp[12..14].copy_from_slice(&[8, 6]);
        assert_eq!(answer(&arp, MAC, IP), Answer::Drop(Dropped::NotForUs));
        let syn = tcp(TcpControl::Syn, None, b"");
        for len in 0..syn.len() {
            let _ = answer(&syn[..len], MAC, IP);
        }
        for seed in 0..2000u32 {
            let mut frame = syn.clone();
            let at = (seed as usize * 7) % frame.len();
            frame[at] ^= (seed >> 3) as u8 | 1;
            let _ = answer(&frame, MAC, IP);
        }
    }
}
