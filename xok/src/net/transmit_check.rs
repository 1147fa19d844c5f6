//! The transmit header check ("reverse filters"): an unprivileged environment may send only a
//! frame it could have received, mirrored. Its source MAC must be the NIC's, and the frame with
//! sources and destinations swapped (MACs; IPv4 addresses and TCP/UDP ports; an ARP frame's
//! sender and target) must be classified by DPF to a filter the sender holds. So the kernel
//! needs no notion of addresses or connections of its own: whoever receives a port's segments
//! may send from that port, whoever answers ARP for an address may speak for it, and a
//! fallback filter (strayd's) lets its holder answer for ports nobody else owns.
//!
//! The check reads a copy of the frame's first bytes ([`HeaderCopy`]), and the kernel sends
//! that copy, so a program that rewrites its pages after `net_xmit` (the NIC gathers later)
//! changes only bytes behind the headers. This module is plain byte logic; the kernel
//! (`kernel/net.rs`) classifies the mirror and asks who holds the filter.

/// Most bytes of a frame the kernel copies and checks: the Ethernet header (14) and the
/// longest IPv4 (60) and TCP (60) headers.
pub const HEADER_COPY_MAX: usize = 14 + 60 + 60;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const IP_PROTOCOL_TCP: u8 = 6;
const IP_PROTOCOL_UDP: u8 = 17;

/// Byte offsets in an Ethernet frame.
mod field {
    /// Destination MAC.
    pub const DESTINATION_MAC: usize = 0;
    /// Source MAC.
    pub const SOURCE_MAC: usize = 6;
    /// Ethertype.
    pub const ETHERTYPE: usize = 12;
    /// First byte behind the Ethernet header.
    pub const PAYLOAD: usize = 14;
    /// ARP (IPv4 over Ethernet): hardware type, protocol type, their lengths.
    pub const ARP_FORMAT: core::ops::Range<usize> = 14..20;
    /// ARP sender hardware address.
    pub const ARP_SENDER_MAC: usize = 22;
    /// ARP sender protocol address.
    pub const ARP_SENDER_IP: usize = 28;
    /// ARP target hardware address.
    pub const ARP_TARGET_MAC: usize = 32;
    /// ARP target protocol address.
    pub const ARP_TARGET_IP: usize = 38;
    /// End of an IPv4-over-Ethernet ARP packet.
    pub const ARP_END: usize = 42;
    /// IPv4 flags and fragment offset.
    pub const IPV4_FRAGMENT: usize = 20;
    /// IPv4 protocol.
    pub const IPV4_PROTOCOL: usize = 23;
    /// IPv4 source address.
    pub const IPV4_SOURCE: usize = 26;
    /// IPv4 destination address.
    pub const IPV4_DESTINATION: usize = 30;
    /// End of an IPv4 header without options.
    pub const IPV4_MIN_END: usize = 34;
}

/// The format bytes of an ARP packet for IPv4 over Ethernet: hardware type 1, protocol type
/// 0x0800, address lengths 6 and 4.
const ARP_IPV4_OVER_ETHERNET: [u8; 6] = [0, 1, 0x08, 0x00, 6, 4];

/// The first bytes of a frame to send, copied into the kernel: what the check reads, and what
/// the NIC sends in place of the sender's own bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderCopy {
    bytes: [u8; HEADER_COPY_MAX],
    len: usize,
}

impl HeaderCopy {
    /// How many bytes of a `frame_len`-byte frame are copied.
    pub fn len_for(frame_len: usize) -> usize {
        frame_len.min(HEADER_COPY_MAX)
    }

    /// A copy of `bytes` (at most [`HEADER_COPY_MAX`]; the rest is cut).
    pub fn new(bytes: &[u8]) -> HeaderCopy {
        let mut copy = HeaderCopy::zeroed(bytes.len());
        copy.bytes[..copy.len].copy_from_slice(&bytes[..copy.len]);
        copy
    }

    /// `len` zero bytes (at most [`HEADER_COPY_MAX`]), to be filled through [`HeaderCopy::bytes_mut`].
    pub fn zeroed(len: usize) -> HeaderCopy {
        HeaderCopy { bytes: [0; HEADER_COPY_MAX], len: len.min(HEADER_COPY_MAX) }
    }

    /// The copied bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The copied bytes, to fill.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[..self.len]
    }
}

/// Why a frame was refused before classification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Its source MAC, or an ARP sender's hardware address, is not the NIC's.
    ForeignMac,
    /// An IPv4 or ARP header the check cannot read (wrong version or lengths, cut short).
    Malformed,
}

/// The frame whose headers `header` holds, as its sender would receive it: MACs swapped, and
/// for IPv4 the addresses and (whole datagrams and first fragments of TCP and UDP) the ports,
/// for ARP the sender and target. Checks on the way that the frame comes from `nic_mac`.
pub fn mirror(header: &HeaderCopy, nic_mac: [u8; 6]) -> Result<HeaderCopy, Refusal> {
    let mut probe = header.clone();
    let bytes = probe.bytes_mut();
    if bytes.get(field::SOURCE_MAC..field::SOURCE_MAC + 6) != Some(&nic_mac[..]) {
        return Err(Refusal::ForeignMac);
    }
    let ethertype = match bytes.get(field::ETHERTYPE..field::PAYLOAD) {
        Some(&[high, low]) => u16::from_be_bytes([high, low]),
        _ => return Err(Refusal::Malformed),
    };
    swap(bytes, field::DESTINATION_MAC, field::SOURCE_MAC, 6);
    match ethertype {
        ETHERTYPE_ARP => mirror_arp(bytes, nic_mac)?,
        ETHERTYPE_IPV4 => mirror_ipv4(bytes)?,
        // Anything else is the sender's if it holds a filter for it, MACs swapped.
        _ => {}
    }
    Ok(probe)
}

fn mirror_arp(bytes: &mut [u8], nic_mac: [u8; 6]) -> Result<(), Refusal> {
    if bytes.len() < field::ARP_END || bytes[field::ARP_FORMAT] != ARP_IPV4_OVER_ETHERNET {
        return Err(Refusal::Malformed);
    }
    if bytes[field::ARP_SENDER_MAC..field::ARP_SENDER_MAC + 6] != nic_mac {
        return Err(Refusal::ForeignMac);
    }
    swap(bytes, field::ARP_SENDER_MAC, field::ARP_TARGET_MAC, 6);
    swap(bytes, field::ARP_SENDER_IP, field::ARP_TARGET_IP, 4);
    Ok(())
}

fn mirror_ipv4(bytes: &mut [u8]) -> Result<(), Refusal> {
    let first = *bytes.get(field::PAYLOAD).ok_or(Refusal::Malformed)?;
    let header_end = field::PAYLOAD + 4 * usize::from(first & 0x0f);
    if first >> 4 != 4 || header_end < field::IPV4_MIN_END || bytes.len() < header_end {
        return Err(Refusal::Malformed);
    }
    swap(bytes, field::IPV4_SOURCE, field::IPV4_DESTINATION, 4);
    let fragment_offset = u16::from_be_bytes([bytes[field::IPV4_FRAGMENT], bytes[field::IPV4_FRAGMENT + 1]]) & 0x1fff;
    let has_ports = matches!(bytes[field::IPV4_PROTOCOL], IP_PROTOCOL_TCP | IP_PROTOCOL_UDP) && fragment_offset == 0;
    if has_ports {
        if bytes.len() < header_end + 4 {
            return Err(Refusal::Malformed);
        }
        swap(bytes, header_end, header_end + 2, 2);
    }
    Ok(())
}

/// Swaps `bytes[a..a + len]` with `bytes[b..b + len]`; the ranges do not overlap, `a < b`, and
/// the caller checked that both lie inside `bytes`.
fn swap(bytes: &mut [u8], a: usize, b: usize, len: usize) {
    let (front, back) = bytes.split_at_mut(b);
    front[a..a + len].swap_with_slice(&mut back[..len]);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const PEER: [u8; 6] = [0x52, 0x55, 10, 0, 2, 2];

    fn ethernet(ethertype: u16) -> Vec<u8> {
        let mut f = PEER.to_vec();
        f.extend_from_slice(&MAC);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f
    }

    /// A TCP segment from 10.0.2.15:`sport` to 10.0.2.2:`dport`, with `options` IP option bytes.
    fn tcp(sport: u16, dport: u16, options: usize) -> Vec<u8> {
        let mut f = ethernet(ETHERTYPE_IPV4);
        f.extend_from_slice(&[0x45 + (options / 4) as u8, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 2, 15, 10, 0, 2, 2]);
        f.extend(core::iter::repeat_n(1u8, options));
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x14, 0xff, 0xff, 0, 0, 0, 0]);
        f
    }

    fn arp(sender_mac: [u8; 6], sender_ip: [u8; 4], target_ip: [u8; 4]) -> Vec<u8> {
        let mut f = ethernet(ETHERTYPE_ARP);
        f.extend_from_slice(&ARP_IPV4_OVER_ETHERNET);
        f.extend_from_slice(&[0, 2]);
        f.extend_from_slice(&sender_mac);
        f.extend_from_slice(&sender_ip);
        f.extend_from_slice(&PEER);
        f.extend_from_slice(&target_ip);
        f
    }

    fn mirrored(frame: &[u8]) -> Result<Vec<u8>, Refusal> {
        mirror(&HeaderCopy::new(frame), MAC).map(|p| p.bytes().to_vec())
    }

    #[test]
    fn tcp_is_seen_as_its_reply() {
        let probe = mirrored(&tcp(80, 4321, 0)).unwrap();
        assert_eq!(&probe[..6], &MAC, "to the NIC");
        assert_eq!(&probe[6..12], &PEER);
        assert_eq!(&probe[26..34], &[10, 0, 2, 2, 10, 0, 2, 15], "addresses swapped");
        assert_eq!(&probe[34..38], &[0x10, 0xe1, 0, 80], "ports swapped");
        assert!(dpf::Filter::tcp_listen([10, 0, 2, 15], 80).matches(&probe));
        assert!(dpf::Filter::tcp_connection([10, 0, 2, 15], 80, [10, 0, 2, 2], 4321).matches(&probe));
        assert!(!dpf::Filter::tcp_listen([10, 0, 2, 15], 4321).matches(&probe));
    }

    #[test]
    fn ports_are_found_behind_ip_options() {
        let probe = mirrored(&tcp(80, 4321, 8)).unwrap();
        assert_eq!(&probe[42..46], &[0x10, 0xe1, 0, 80]);
        assert!(dpf::Filter::tcp_listen([10, 0, 2, 15], 80).matches(&probe));
    }

    #[test]
    fn later_fragments_keep_their_bytes() {
        let mut frame = tcp(80, 4321, 0);
        frame[20] = 0x00;
        frame[21] = 0x10; // offset 16 * 8 bytes: no transport header here
        let probe = mirrored(&frame).unwrap();
        assert_eq!(&probe[34..38], &frame[34..38]);
        assert!(!dpf::Filter::tcp_listen([10, 0, 2, 15], 80).matches(&probe), "listen filters take first fragments only");
    }

    #[test]
    fn arp_speaks_for_its_sender_address() {
        let probe = mirrored(&arp(MAC, [10, 0, 2, 15], [10, 0, 2, 2])).unwrap();
        assert!(dpf::Filter::arp_for([10, 0, 2, 15]).matches(&probe));
        assert!(!dpf::Filter::arp_for([10, 0, 2, 2]).matches(&probe));
        assert_eq!(&probe[22..28], &PEER);
        assert_eq!(&probe[32..38], &MAC);
    }

    #[test]
    fn foreign_macs_are_refused() {
        let mut frame = tcp(80, 1, 0);
        frame[6..12].copy_from_slice(&PEER);
        assert_eq!(mirrored(&frame), Err(Refusal::ForeignMac));
        assert_eq!(mirrored(&arp(PEER, [10, 0, 2, 15], [10, 0, 2, 2])), Err(Refusal::ForeignMac), "ARP for another NIC");
    }

    #[test]
    fn unreadable_headers_are_refused() {
        let whole = tcp(80, 1, 0);
        assert_eq!(mirrored(&whole[..13]), Err(Refusal::Malformed), "no ethertype");
        for len in [14, 20, 33, 35, 37] {
            assert_eq!(mirrored(&whole[..len]), Err(Refusal::Malformed), "cut at {len}");
        }
        for (at, value) in [(14, 0x44), (14, 0x65), (14, 0x4f)] {
            let mut frame = whole.clone();
            frame[at] = value;
            assert_eq!(mirrored(&frame), Err(Refusal::Malformed), "byte {at} = {value:#x}");
        }
        let mut odd_arp = arp(MAC, [10, 0, 2, 15], [10, 0, 2, 2]);
        odd_arp[19] = 16; // IPv6-sized protocol addresses
        assert_eq!(mirrored(&odd_arp), Err(Refusal::Malformed));
        assert_eq!(mirrored(&odd_arp[..41]), Err(Refusal::Malformed));
    }

    #[test]
    fn other_ethertypes_swap_only_macs() {
        let mut frame = ethernet(0x88b5);
        frame.extend_from_slice(&[1, 2, 3, 4]);
        let probe = mirrored(&frame).unwrap();
        assert_eq!(&probe[12..], &frame[12..]);
        assert_eq!(&probe[..6], &MAC);
    }

    #[test]
    fn the_copy_is_cut_at_the_longest_headers() {
        let long = vec![7u8; 1514];
        assert_eq!(HeaderCopy::new(&long).bytes().len(), HEADER_COPY_MAX);
        assert_eq!(HeaderCopy::len_for(60), 60);
        assert_eq!(HeaderCopy::len_for(1514), HEADER_COPY_MAX);
    }
}
