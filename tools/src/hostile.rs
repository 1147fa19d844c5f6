//! Hostile frames, in named groups, for the robustness test (issue 12): malformed on purpose
//! at every layer a received frame passes (Ethernet, ARP, IPv4 and its fragments, TCP, UDP,
//! ICMP), plus random frames from a fixed seed. Each group is a list of whole Ethernet frames
//! addressed to one machine; the relay's [`crate::relay::Relay::inject`] puts them on its wire.
//!
//! The frames are built by hand, byte by byte: the point is to write what a correct emitter
//! (smoltcp's) never would.

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

/// Who the frames are for and whom they claim to come from.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// The victim's hardware and IPv4 address.
    pub mac: [u8; 6],
    /// Its address.
    pub ip: [u8; 4],
    /// The sender's hardware address and address (a host on the victim's network).
    pub peer_mac: [u8; 6],
    /// The sender's address.
    pub peer_ip: [u8; 4],
    /// A TCP port that is open on the victim (so that segments reach a listener).
    pub tcp_port: u16,
    /// A UDP port that is open on the victim.
    pub udp_port: u16,
}

/// The RFC 1071 sum of `bytes`, folded, not complemented (so sums can be chained).
fn sum(bytes: &[u8], mut acc: u32) -> u32 {
    for pair in bytes.chunks(2) {
        acc += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

/// The Internet checksum of `bytes` after the partial sum `acc`.
fn checksum(bytes: &[u8], acc: u32) -> u16 {
    !(sum(bytes, acc) as u16)
}

impl Target {
    fn ethernet(&self, ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut frame = Vec::with_capacity(14 + payload.len());
        frame.extend_from_slice(&self.mac);
        frame.extend_from_slice(&self.peer_mac);
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    /// An IPv4 header (with `options`, checksum filled in) and `payload`.
    fn ipv4_packet(&self, protocol: u8, fragment: u16, options: &[u8], payload: &[u8]) -> Vec<u8> {
        let header_len = 20 + options.len();
        let mut packet = vec![0u8; header_len];
        packet[0] = 0x40 | (header_len / 4) as u8;
        packet[2..4].copy_from_slice(&((header_len + payload.len()) as u16).to_be_bytes());
        packet[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        packet[6..8].copy_from_slice(&fragment.to_be_bytes());
        packet[8] = 64;
        packet[9] = protocol;
        packet[12..16].copy_from_slice(&self.peer_ip);
        packet[16..20].copy_from_slice(&self.ip);
        packet[20..].copy_from_slice(options);
        let sum = checksum(&packet, 0);
        packet[10..12].copy_from_slice(&sum.to_be_bytes());
        packet.extend_from_slice(payload);
        packet
    }

    fn ipv4(&self, protocol: u8, payload: &[u8]) -> Vec<u8> {
        self.ethernet(0x0800, &self.ipv4_packet(protocol, 0x4000, &[], payload))
    }

    /// The pseudo-header sum for a transport payload of `len` bytes.
    fn pseudo(&self, protocol: u8, len: usize) -> u32 {
        let mut pseudo = Vec::with_capacity(12);
        pseudo.extend_from_slice(&self.peer_ip);
        pseudo.extend_from_slice(&self.ip);
        pseudo.extend_from_slice(&[0, protocol]);
        pseudo.extend_from_slice(&(len as u16).to_be_bytes());
        sum(&pseudo, 0)
    }

    /// A TCP segment (header with `options`, data offset as given, checksum filled in).
    fn tcp_segment(&self, flags: u8, offset_words: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut segment = vec![0u8; 20];
        segment[0..2].copy_from_slice(&40_000u16.to_be_bytes());
        segment[2..4].copy_from_slice(&self.tcp_port.to_be_bytes());
        segment[4..8].copy_from_slice(&0x0101_0101u32.to_be_bytes());
        segment[8..12].copy_from_slice(&0x0202_0202u32.to_be_bytes());
        segment[12] = offset_words << 4;
        segment[13] = flags;
        segment[14..16].copy_from_slice(&8192u16.to_be_bytes());
        segment.extend_from_slice(options);
        segment.extend_from_slice(payload);
        let sum = checksum(&segment, self.pseudo(6, segment.len()));
        segment[16..18].copy_from_slice(&sum.to_be_bytes());
        segment
    }

    fn tcp(&self, flags: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
        self.ipv4(6, &self.tcp_segment(flags, (5 + options.len() / 4) as u8, options, payload))
    }

    fn udp_datagram(&self, length_field: Option<u16>, payload: &[u8]) -> Vec<u8> {
        let mut datagram = vec![0u8; 8];
        datagram[0..2].copy_from_slice(&40_001u16.to_be_bytes());
        datagram[2..4].copy_from_slice(&self.udp_port.to_be_bytes());
        let length = length_field.unwrap_or((8 + payload.len()) as u16);
        datagram[4..6].copy_from_slice(&length.to_be_bytes());
        datagram.extend_from_slice(payload);
        let sum = checksum(&datagram, self.pseudo(17, datagram.len()));
        datagram[6..8].copy_from_slice(&sum.to_be_bytes());
        datagram
    }

    fn icmp_message(&self, kind: u8, code: u8, body: &[u8]) -> Vec<u8> {
        let mut message = vec![kind, code, 0, 0];
        message.extend_from_slice(body);
        let sum = checksum(&message, 0);
        message[2..4].copy_from_slice(&sum.to_be_bytes());
        message
    }

    fn arp(&self, hardware: u16, protocol: u16, hlen: u8, plen: u8, operation: u16, sender: ([u8; 6], [u8; 4])) -> Vec<u8> {
        let mut packet = Vec::with_capacity(28);
        packet.extend_from_slice(&hardware.to_be_bytes());
        packet.extend_from_slice(&protocol.to_be_bytes());
        packet.extend_from_slice(&[hlen, plen]);
        packet.extend_from_slice(&operation.to_be_bytes());
        packet.extend_from_slice(&sender.0);
        packet.extend_from_slice(&sender.1);
        packet.extend_from_slice(&self.mac);
        packet.extend_from_slice(&self.ip);
        self.ethernet(0x0806, &packet)
    }
}

/// The groups of hostile frames for `target`, by name; random frames come from `seed`.
/// Every group's frames differ from one another; together they are more than 2 000.
pub fn groups(target: &Target, seed: u64) -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let t = target;
    let mut random = SmallRng::seed_from_u64(seed);
    let mut groups: Vec<(&'static str, Vec<Vec<u8>>)> = Vec::new();
    let valid_tcp = t.tcp(0x02, &[], &[]);

    // From 1 byte: QEMU's `-netdev dgram` takes an empty datagram for the end of the connection
    // and stops reading (no wire carries an empty frame anyway).
    groups.push(("runts", (1..60).map(|len| valid_tcp[..len.min(valid_tcp.len())].to_vec()).collect()));
    groups.push(("giants", [1515, 1518, 1600, 2048, 4096, 9000, 16_000].iter().map(|&len| {
        let mut frame = t.ipv4(17, &t.udp_datagram(None, &vec![0x5a; len]));
        frame.truncate(len);
        frame
    }).collect()));
    groups.push(("unknown and stacked ethertypes", {
        let ip = t.ipv4_packet(6, 0x4000, &[], &t.tcp_segment(0x02, 5, &[], &[]));
        let mut frames: Vec<Vec<u8>> = [0x0000u16, 0x05dc, 0x0600, 0x88b5, 0x88cc, 0x8863, 0xffff].iter().map(|&kind| t.ethernet(kind, &ip)).collect();
        // VLAN and QinQ tags before IPv4 and ARP, and IPv6 (none of which the machine speaks).
        for tags in [vec![0x8100u16], vec![0x88a8, 0x8100], vec![0x8100, 0x8100, 0x8100]] {
            let mut payload = Vec::new();
            for (n, _) in tags.iter().enumerate().skip(1) {
                payload.extend_from_slice(&[0, 5]);
                payload.extend_from_slice(&tags[n].to_be_bytes());
            }
            payload.extend_from_slice(&[0, 5, 0x08, 0x00]);
            payload.extend_from_slice(&ip);
            frames.push(t.ethernet(tags[0], &payload));
        }
        let mut ipv6 = vec![0x60, 0, 0, 0, 0, 20, 6, 64];
        ipv6.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        ipv6.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        ipv6.extend_from_slice(&t.tcp_segment(0x02, 5, &[], &[]));
        frames.push(t.ethernet(0x86dd, &ipv6));
        frames.push(t.ethernet(0x0800, &ipv6));
        frames
    }));
    groups.push(("IPv4 header lengths", {
        let mut frames = Vec::new();
        for ihl in 0..16u8 {
            let mut frame = valid_tcp.clone();
            frame[14] = 0x40 | ihl;
            frames.push(frame);
        }
        for version in [0u8, 4, 6, 15] {
            let mut frame = valid_tcp.clone();
            frame[14] = (version << 4) | 5;
            frames.push(frame);
        }
        frames
    }));
    groups.push(("IPv4 total length wrong both ways", {
        let mut frames = Vec::new();
        for total in [0u16, 1, 19, 20, 21, 39, 41, 60, 100, 1500, 65_535] {
            let mut frame = t.tcp(0x18, &[], b"GET / HTTP/1.0\r\n\r\n");
            frame[16..18].copy_from_slice(&total.to_be_bytes());
            frame[24..26].copy_from_slice(&[0, 0]);
            let sum = checksum(&frame[14..34], 0);
            frame[24..26].copy_from_slice(&sum.to_be_bytes());
            frames.push(frame);
        }
        // Ethernet padding past the IP length (a short frame padded to 60 bytes with junk).
        let mut padded = t.tcp(0x10, &[], &[]);
        padded.resize(60, 0xee);
        frames.push(padded);
        frames
    }));
    groups.push(("bad checksums", {
        let mut frames = Vec::new();
        for (name_offset, base) in [
            (24usize, t.tcp(0x02, &[], &[])),
            (50, t.tcp(0x18, &[], b"GET / HTTP/1.0\r\n\r\n")),
            (40, t.ipv4(17, &t.udp_datagram(None, b"ping"))),
            (36, t.ipv4(1, &t.icmp_message(8, 0, &[0, 1, 0, 1, 1, 2, 3, 4]))),
        ] {
            for delta in 1..=8u16 {
                let mut frame = base.clone();
                let old = u16::from_be_bytes([frame[name_offset], frame[name_offset + 1]]);
                frame[name_offset..name_offset + 2].copy_from_slice(&old.wrapping_add(delta).to_be_bytes());
                frames.push(frame);
            }
        }
        frames
    }));
    groups.push(("fragments", {
        let mut frames = Vec::new();
        let udp = t.udp_datagram(None, &[0x42; 1200]);
        let fragment = |offset_units: u16, more: bool, bytes: &[u8], id: u16| {
            let mut packet = t.ipv4_packet(17, offset_units | if more { 0x2000 } else { 0 }, &[], bytes);
            packet[4..6].copy_from_slice(&id.to_be_bytes());
            packet[10..12].copy_from_slice(&[0, 0]);
            let sum = checksum(&packet[..20], 0);
            packet[10..12].copy_from_slice(&sum.to_be_bytes());
            t.ethernet(0x0800, &packet)
        };
        // First only, middle only, last only.
        frames.push(fragment(0, true, &udp[..512], 1));
        frames.push(fragment(64, true, &udp[512..1024], 2));
        frames.push(fragment(128, false, &udp[1024..], 3));
        // Overlapping, and teardrop (the second inside the first).
        frames.push(fragment(0, true, &udp[..800], 4));
        frames.push(fragment(50, false, &udp[400..], 4));
        frames.push(fragment(0, true, &udp[..800], 5));
        frames.push(fragment(3, false, &udp[24..48], 5));
        // Ping of death: fragments reaching past 65 535 bytes.
        let big = vec![0x11u8; 1480];
        for n in 0..45u16 {
            frames.push(fragment(n * 185, n < 44, &big, 6));
        }
        // Tiny TCP fragments (the TCP header split over fragments of 8 bytes).
        let tcp = t.tcp_segment(0x02, 5, &[], &[]);
        for (n, piece) in tcp.chunks(8).enumerate() {
            let mut packet = t.ipv4_packet(6, n as u16 | if (n + 1) * 8 < tcp.len() { 0x2000 } else { 0 }, &[], piece);
            packet[4..6].copy_from_slice(&7u16.to_be_bytes());
            packet[10..12].copy_from_slice(&[0, 0]);
            let sum = checksum(&packet[..20], 0);
            packet[10..12].copy_from_slice(&sum.to_be_bytes());
            frames.push(t.ethernet(0x0800, &packet));
        }
        // Hundreds of datagrams that never complete.
        for id in 0..400u16 {
            frames.push(fragment(0, true, &udp[..512], 1000 + id));
        }
        frames
    }));
    groups.push(("IPv4 options garbage", {
        let options: [&[u8]; 8] = [
            &[0xff, 0xff, 0xff, 0xff],
            &[0x07, 0x00, 0x00, 0x00],
            &[0x07, 0x27, 0x04, 0x00],
            &[0x44, 0x02, 0x00, 0x00],
            &[0x83, 0xff, 0x04, 0x00],
            &[0x01, 0x01, 0x01, 0x00],
            &[0x00; 40],
            &[0x82; 40],
        ];
        options.iter().map(|options| t.ethernet(0x0800, &t.ipv4_packet(6, 0x4000, options, &t.tcp_segment(0x02, 5, &[], &[])))).collect()
    }));
    groups.push(("TCP data offsets and options", {
        let mut frames = Vec::new();
        for offset in 0..16u8 {
            frames.push(t.ipv4(6, &t.tcp_segment(0x02, offset, &[], &[])));
        }
        let options: [&[u8]; 8] = [
            &[2, 4, 0, 0],
            &[2, 0, 0, 0],
            &[2, 40, 0, 0],
            &[3, 3, 200, 0],
            &[4, 2, 8, 0],
            &[8, 10, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0],
            &[5, 255, 0, 0],
            &[1, 1, 1, 2],
        ];
        for option in options {
            frames.push(t.tcp(0x02, option, &[]));
        }
        frames
    }));
    groups.push(("TCP flag combinations", {
        // SYN+FIN, SYN+RST, SYN+FIN+RST, XMAS, NULL, FIN alone, URG+PSH+FIN, every flag.
        [0x03u8, 0x06, 0x07, 0x29, 0x00, 0x01, 0x29, 0xff, 0x3f, 0x12, 0x14, 0x04].iter().map(|&flags| t.tcp(flags, &[], b"x")).collect()
    }));
    groups.push(("UDP lengths", {
        [0u16, 1, 7, 8, 9, 100, 65_535].iter().map(|&length| t.ipv4(17, &t.udp_datagram(Some(length), b"hello"))).collect()
    }));
    groups.push(("ICMP truncated and odd", {
        let mut frames: Vec<Vec<u8>> = (0..8).map(|len| t.ipv4(1, &t.icmp_message(8, 0, &[1, 2, 3, 4])[..len])).collect();
        for (kind, code) in [(0u8, 0u8), (3, 3), (3, 4), (5, 1), (11, 0), (12, 0), (13, 0), (255, 255)] {
            frames.push(t.ipv4(1, &t.icmp_message(kind, code, &[0; 28])));
        }
        frames
    }));
    groups.push(("malformed ARP", {
        let mut frames = vec![
            t.arp(1, 0x0800, 6, 4, 1, (t.peer_mac, t.peer_ip)),
            t.arp(1, 0x0800, 6, 4, 3, (t.peer_mac, t.peer_ip)),
            t.arp(6, 0x0800, 6, 4, 1, (t.peer_mac, t.peer_ip)),
            t.arp(1, 0x86dd, 6, 4, 1, (t.peer_mac, t.peer_ip)),
            t.arp(1, 0x0800, 8, 4, 1, (t.peer_mac, t.peer_ip)),
            t.arp(1, 0x0800, 6, 16, 1, (t.peer_mac, t.peer_ip)),
            t.arp(1, 0x0800, 0, 0, 1, (t.peer_mac, t.peer_ip)),
            // Replies claiming the victim's own address, and junk senders.
            t.arp(1, 0x0800, 6, 4, 2, ([0x02, 0, 0, 0, 0, 0x66], t.ip)),
            t.arp(1, 0x0800, 6, 4, 2, ([0xff; 6], t.peer_ip)),
            t.arp(1, 0x0800, 6, 4, 2, ([0; 6], t.peer_ip)),
            t.arp(1, 0x0800, 6, 4, 2, ([0x01, 0, 0x5e, 0, 0, 1], t.peer_ip)),
            t.arp(1, 0x0800, 6, 4, 1, (t.mac, t.peer_ip)),
        ];
        let full = frames[0].clone();
        frames.extend((14..full.len()).map(|len| full[..len].to_vec()));
        frames
    }));
    groups.push(("random frames", (0..1_400).map(|_| {
        let len = random.random_range(14..1515);
        let mut frame: Vec<u8> = (0..len).map(|_| random.random::<u8>()).collect();
        frame[..6].copy_from_slice(&t.mac);
        // Half claim to be IPv4 or ARP, so that they get past the first test.
        match random.random_range(0..4) {
            0 => frame[12..14].copy_from_slice(&[0x08, 0x00]),
            1 => frame[12..14].copy_from_slice(&[0x08, 0x06]),
            _ => {}
        }
        frame
    }).collect()));
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_groups_hold_over_2000_frames_and_the_base_frames_are_well_formed() {
        let target = Target { mac: [0x52, 0x54, 0, 0xab, 0xcd, 1], ip: [10, 0, 2, 15], peer_mac: [2, 0, 0, 0, 0, 2], peer_ip: [10, 0, 2, 2], tcp_port: 80, udp_port: 7 };
        let all = groups(&target, 1);
        let total: usize = all.iter().map(|g| g.1.len()).sum();
        assert!(total >= 2_000, "{total} frames");
        assert!(all.iter().all(|(name, frames)| !frames.is_empty() && !name.is_empty()));
        // The frames the malformed ones are made from are correct (smoltcp agrees).
        use smoltcp::wire::{EthernetFrame, Ipv4Packet, TcpPacket, UdpPacket};
        let tcp = target.tcp(0x02, &[2, 4, 5, 0xb4], &[]);
        let ip = Ipv4Packet::new_checked(EthernetFrame::new_checked(&tcp[..]).unwrap().payload()).unwrap();
        assert!(ip.verify_checksum());
        let segment = TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(segment.verify_checksum(&ip.src_addr().into(), &ip.dst_addr().into()));
        let udp = target.ipv4(17, &target.udp_datagram(None, b"hi"));
        let ip = Ipv4Packet::new_checked(EthernetFrame::new_checked(&udp[..]).unwrap().payload()).unwrap();
        assert!(UdpPacket::new_checked(ip.payload()).unwrap().verify_checksum(&ip.src_addr().into(), &ip.dst_addr().into()));
        assert_eq!(groups(&target, 1), all, "seeded");
    }
}
