//! Answers for the two questions every host must answer: ARP requests for its address and
//! ICMP echo requests to it; and what arpd learns from ARP and announces. Frames are read
//! through smoltcp's checked wire views, so a malformed frame gets no answer, never a panic.

use alloc::vec;
use alloc::vec::Vec;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv4Packet,
    Icmpv4Repr, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr,
};

/// The reply to `frame` if it is an ARP request for `ip` or an ICMP echo request to `ip`.
pub fn reply(frame: &[u8], mac: [u8; 6], ip: [u8; 4]) -> Option<Vec<u8>> {
    let ethernet = EthernetFrame::new_checked(frame).ok()?;
    let mac = EthernetAddress(mac);
    let ip = Ipv4Address::from_octets(ip);
    match ethernet.ethertype() {
        EthernetProtocol::Arp => arp_reply(&ethernet, mac, ip),
        EthernetProtocol::Ipv4 => echo_reply(&ethernet, mac, ip),
        _ => None,
    }
}

/// The sender of an ARP request or reply for IPv4 over Ethernet: its address and MAC (`None`
/// for anything else, and for a sender claiming 0.0.0.0, a probe).
pub fn arp_sender(frame: &[u8]) -> Option<([u8; 4], [u8; 6])> {
    let ethernet = EthernetFrame::new_checked(frame).ok()?;
    if ethernet.ethertype() != EthernetProtocol::Arp {
        return None;
    }
    let packet = ArpPacket::new_checked(ethernet.payload()).ok()?;
    let ArpRepr::EthernetIpv4 { source_hardware_addr, source_protocol_addr, .. } = ArpRepr::parse(&packet).ok()? else {
        return None;
    };
    let ip = source_protocol_addr.octets();
    (ip != [0; 4]).then_some((ip, source_hardware_addr.0))
}

/// A gratuitous ARP: a broadcast request for `ip` from `ip` itself, announcing that `ip` is
/// at `mac`.
pub fn gratuitous_arp(mac: [u8; 6], ip: [u8; 4]) -> Vec<u8> {
    arp_request(mac, ip, ip)
}

/// A broadcast ARP request from `mac`/`ip` asking for `target`.
pub fn arp_request(mac: [u8; 6], ip: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let request = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress(mac),
        source_protocol_addr: Ipv4Address::from_octets(ip),
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: Ipv4Address::from_octets(target),
    };
    let header = EthernetRepr { src_addr: EthernetAddress(mac), dst_addr: EthernetAddress::BROADCAST, ethertype: EthernetProtocol::Arp };
    let mut out = vec![0u8; header.buffer_len() + request.buffer_len()];
    let mut frame = EthernetFrame::new_unchecked(&mut out[..]);
    header.emit(&mut frame);
    request.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    out
}

fn arp_reply(ethernet: &EthernetFrame<&[u8]>, mac: EthernetAddress, ip: Ipv4Address) -> Option<Vec<u8>> {
    let packet = ArpPacket::new_checked(ethernet.payload()).ok()?;
    let ArpRepr::EthernetIpv4 { operation, source_hardware_addr, source_protocol_addr, target_protocol_addr, .. } =
        ArpRepr::parse(&packet).ok()?
    else {
        return None;
    };
    if operation != ArpOperation::Request || target_protocol_addr != ip {
        return None;
    }
    let answer = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: mac,
        source_protocol_addr: ip,
        target_hardware_addr: source_hardware_addr,
        target_protocol_addr: source_protocol_addr,
    };
    let header = EthernetRepr { src_addr: mac, dst_addr: source_hardware_addr, ethertype: EthernetProtocol::Arp };
    let mut out = vec![0u8; header.buffer_len() + answer.buffer_len()];
    let mut frame = EthernetFrame::new_unchecked(&mut out[..]);
    header.emit(&mut frame);
    answer.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    Some(out)
}

fn echo_reply(ethernet: &EthernetFrame<&[u8]>, mac: EthernetAddress, ip: Ipv4Address) -> Option<Vec<u8>> {
    let checksums = ChecksumCapabilities::default();
    let packet = Ipv4Packet::new_checked(ethernet.payload()).ok()?;
    let ip_repr = Ipv4Repr::parse(&packet, &checksums).ok()?;
    if ip_repr.dst_addr != ip || ip_repr.next_header != IpProtocol::Icmp || packet.more_frags() || packet.frag_offset() != 0 {
        return None;
    }
    let icmp = Icmpv4Packet::new_checked(packet.payload()).ok()?;
    let Icmpv4Repr::EchoRequest { ident, seq_no, data } = Icmpv4Repr::parse(&icmp, &checksums).ok()? else {
        return None;
    };
    let answer = Icmpv4Repr::EchoReply { ident, seq_no, data };
    let ip_answer = Ipv4Repr {
        src_addr: ip,
        dst_addr: ip_repr.src_addr,
        next_header: IpProtocol::Icmp,
        payload_len: answer.buffer_len(),
        hop_limit: 64,
    };
    let header = EthernetRepr { src_addr: mac, dst_addr: ethernet.src_addr(), ethertype: EthernetProtocol::Ipv4 };
    let mut out = vec![0u8; header.buffer_len() + ip_answer.buffer_len() + answer.buffer_len()];
    let mut frame = EthernetFrame::new_unchecked(&mut out[..]);
    header.emit(&mut frame);
    let mut ip_packet = Ipv4Packet::new_unchecked(frame.payload_mut());
    ip_answer.emit(&mut ip_packet, &checksums);
    answer.emit(&mut Icmpv4Packet::new_unchecked(ip_packet.payload_mut()), &checksums);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const IP: [u8; 4] = [10, 0, 2, 15];
    const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn arp_request(target: [u8; 4]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&[0xff; 6]);
        f.extend_from_slice(&PEER_MAC);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&PEER_MAC);
        f.extend_from_slice(&[10, 0, 2, 2]);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&target);
        f
    }

    #[test]
    fn answers_arp_for_its_address_only() {
        let reply = reply(&arp_request(IP), MAC, IP).unwrap();
        let mut expected = Vec::new();
        expected.extend_from_slice(&PEER_MAC);
        expected.extend_from_slice(&MAC);
        expected.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
        expected.extend_from_slice(&MAC);
        expected.extend_from_slice(&IP);
        expected.extend_from_slice(&PEER_MAC);
        expected.extend_from_slice(&[10, 0, 2, 2]);
        assert_eq!(reply, expected);
        assert_eq!(super::reply(&arp_request([10, 0, 2, 99]), MAC, IP), None);
    }

    #[test]
    fn answers_echo_requests_with_the_same_data() {
        // 10.0.2.2 -> 10.0.2.15, echo request id 0x1234 seq 7, data "abcd".
        let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34, 0, 7, b'a', b'b', b'c', b'd'];
        let sum = checksum(&icmp);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        let mut ip = vec![0x45, 0, 0, 32, 0, 1, 0, 0, 64, 1, 0, 0, 10, 0, 2, 2, 10, 0, 2, 15];
        let sum = checksum(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        let mut frame = Vec::from(MAC);
        frame.extend_from_slice(&PEER_MAC);
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend(ip);
        frame.extend(icmp);
        let answer = reply(&frame, MAC, IP).unwrap();
        assert_eq!(&answer[..6], &PEER_MAC);
        assert_eq!(&answer[26..30], &IP);
        assert_eq!(&answer[30..34], &[10, 0, 2, 2]);
        assert_eq!(answer[34], 0, "echo reply");
        assert_eq!(&answer[38..46], &[0x12, 0x34, 0, 7, b'a', b'b', b'c', b'd']);
        assert_eq!(checksum(&answer[14..34]), 0, "IPv4 checksum");
        assert_eq!(checksum(&answer[34..]), 0, "ICMP checksum");
        let mut wrong = frame.clone();
        wrong[33] = 16; // to 10.0.2.16
        assert_eq!(reply(&wrong, MAC, IP), None);
    }

    #[test]
    fn senders_are_learned_and_announcements_built() {
        assert_eq!(arp_sender(&arp_request(IP)), Some(([10, 0, 2, 2], PEER_MAC)));
        let announcement = gratuitous_arp(MAC, IP);
        assert_eq!(arp_sender(&announcement), Some((IP, MAC)));
        assert_eq!(&announcement[..6], &[0xff; 6]);
        assert_eq!(&announcement[38..42], &IP, "asks for its own address");
        let mut probe = arp_request(IP);
        probe[28..32].copy_from_slice(&[0; 4]);
        assert_eq!(arp_sender(&probe), None, "a probe teaches nothing");
        for len in 0..42 {
            assert_eq!(arp_sender(&announcement[..len]), None);
        }
    }

    #[test]
    fn hostile_frames_get_no_answer_and_no_panic() {
        let base = arp_request(IP);
        for len in 0..base.len() {
            let _ = reply(&base[..len], MAC, IP);
        }
        let mut seed = 99u64;
        for _ in 0..20_000 {
            let mut frame = base.clone();
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let at = (seed >> 33) as usize % frame.len();
            frame[at] ^= (seed >> 13) as u8;
            let _ = reply(&frame, MAC, IP);
        }
    }

    /// The Internet checksum (smoltcp's, the one every part of exos uses).
    fn checksum(bytes: &[u8]) -> u16 {
        !smoltcp::wire::checksum::data(bytes)
    }
}
