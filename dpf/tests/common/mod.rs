//! Realistic frames for the tests: Ethernet + ARP, IPv4 (with or without options) carrying
//! ICMP, UDP or TCP, IPv6 and other ethertypes.
#![allow(dead_code)] // reason: each test file uses a different part of these helpers

pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

fn ethernet(ethertype: u16) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// An ARP request (`reply == false`) or reply.
pub fn arp(reply: bool, sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut f = ethernet(0x0806);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, if reply { 2 } else { 1 }]);
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&sender);
    f.extend_from_slice(if reply { &MAC_A } else { &[0; 6] });
    f.extend_from_slice(&target);
    f.resize(60, 0);
    f
}

/// An IPv4 frame with `options` (a multiple of 4 bytes, at most 40) and `payload`.
pub fn ipv4(protocol: u8, src: [u8; 4], dst: [u8; 4], options: &[u8], payload: &[u8]) -> Vec<u8> {
    assert!(options.len().is_multiple_of(4) && options.len() <= 40);
    let mut f = ethernet(0x0800);
    let ihl = 5 + options.len() / 4;
    let total = (ihl * 4 + payload.len()) as u16;
    f.push(0x40 | ihl as u8);
    f.push(0);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 64, protocol, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(options);
    f.extend_from_slice(payload);
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

/// An ICMP echo request.
pub fn icmp_echo(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    ipv4(1, src, dst, &[], &[8, 0, 0xf7, 0xff, 0, 1, 0, 1, b'p', b'i', b'n', b'g'])
}

/// A UDP datagram.
pub fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, options: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&12u16.to_be_bytes());
    p.extend_from_slice(&[0, 0, b'd', b'n', b's', b'?']);
    ipv4(17, src, dst, options, &p)
}

/// A TCP segment (SYN) with IP `options`.
pub fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, options: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    ipv4(6, src, dst, options, &p)
}

/// A record-route IP option, 8 bytes.
pub const IP_OPTIONS: [u8; 8] = [7, 7, 4, 0, 0, 0, 0, 1];

/// An IPv6 TCP segment (must match no IPv4 filter).
pub fn ipv6_tcp(dport: u16) -> Vec<u8> {
    let mut f = ethernet(0x86dd);
    f.extend_from_slice(&[0x60, 0, 0, 0, 0, 20, 6, 64]);
    f.extend_from_slice(&[0xfe; 16]);
    f.extend_from_slice(&[0xfd; 16]);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&[0; 16]);
    f
}

/// An LLDP frame (not IP at all).
pub fn lldp() -> Vec<u8> {
    let mut f = ethernet(0x88cc);
    f.extend_from_slice(&[0x02, 0x07, 0x04, 1, 2, 3, 4, 5, 6, 0, 0]);
    f.resize(60, 0);
    f
}

/// A small deterministic generator (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}
