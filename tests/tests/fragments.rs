//! IPv4 fragments (issue 12), with the test as the wire: datagrams of 1 000 bytes cut into
//! fragments and sent out of order reach their program whole. The kernel stores a datagram's
//! later fragments where its first went (a UDP datagram's in udpecho's ring, an echo request's
//! in strayd's) and holds those that come before the first; exos puts them together.

use std::time::Duration;
use xok_tests::frames::{arp_reply, fragments, icmp_echo, udp};
use xok_tests::{Guest, Wire};
use xok_tools::qemu::EXIT_SUCCESS;

const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xab, 0xcd, 0x01];
const GUEST_IP: [u8; 4] = [10, 0, 2, 15];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x22];
const PEER_IP: [u8; 4] = [10, 0, 2, 2];

/// The next IPv4 frame of `protocol` from the guest, answering its ARP requests meanwhile.
fn next_ipv4(wire: &Wire, protocol: u8) -> Vec<u8> {
    loop {
        let frame = wire.receive(Duration::from_secs(10), |f| f.len() >= 42).expect("an answer from the guest");
        if frame[12..14] == [8, 6] && frame[38..42] == PEER_IP {
            wire.send(&arp_reply(PEER_MAC, PEER_IP, GUEST_MAC, GUEST_IP)).unwrap();
        } else if frame[12..14] == [8, 0] && frame[23] == protocol {
            return frame;
        }
    }
}

/// `frame`'s datagram, numbered `id`, cut into fragments of `size` bytes.
fn cut(mut frame: Vec<u8>, id: u16, size: usize) -> Vec<Vec<u8>> {
    frame[18..20].copy_from_slice(&id.to_be_bytes());
    fragments(&frame, size)
}

#[test]
fn datagrams_cut_into_fragments_in_any_order_arrive_whole() {
    let (wire, args) = Wire::new("e1000", "52:54:00:ab:cd:01").unwrap();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let guest = Guest::boot("init=arpd:seconds=25,!strayd:seconds=25,udpecho:count=3", &args).unwrap();
    guest.wait_for("udpecho: 10.0.2.15 port 7 ready", Duration::from_secs(30)).unwrap();
    guest.wait_for("strayd: 10.0.2.15 catch-all ready", Duration::from_secs(30)).unwrap();
    let data: Vec<u8> = (0..1000u32).map(|n| (n * 7 % 251) as u8).collect();

    // Reversed: every later fragment comes before the first and is held for it.
    let mut pieces = cut(udp(GUEST_MAC, PEER_MAC, 7, &data), 100, 128);
    assert_eq!(pieces.len(), 8);
    pieces.reverse();
    // Shuffled, with a repeat, and a teardrop pair of another datagram in between.
    let mut shuffled = cut(udp(GUEST_MAC, PEER_MAC, 7, &data), 101, 200);
    shuffled.swap(0, 3);
    shuffled.swap(1, 4);
    shuffled.insert(2, shuffled[1].clone());
    let mut teardrop = cut(udp(GUEST_MAC, PEER_MAC, 7, &data), 102, 504);
    teardrop[1][20..22].copy_from_slice(&(500u16 / 8).to_be_bytes());
    teardrop[1][24..26].copy_from_slice(&[0, 0]);
    let sum = xok_tests::frames::checksum(&teardrop[1][14..34]);
    teardrop[1][24..26].copy_from_slice(&sum.to_be_bytes());
    shuffled.splice(1..1, teardrop);
    for (name, pieces) in [("reversed", pieces), ("shuffled", shuffled)] {
        for piece in &pieces {
            wire.send(piece).unwrap();
        }
        let echo = next_ipv4(&wire, 17);
        assert_eq!(u16::from_be_bytes([echo[16], echo[17]]), 28 + 1000, "{name}: the whole datagram came back");
        assert_eq!(&echo[34..38], &[0, 7, 0x0f, 0xa0], "{name}");
        assert_eq!(&echo[42..1042], &data[..], "{name}");
    }

    // An echo request (strayd answers for the machine), first fragment last.
    let request = icmp_echo(8, GUEST_MAC, PEER_MAC, PEER_IP, GUEST_IP, 64, 0x4242, 1, &data);
    let mut pieces = cut(request, 103, 256);
    pieces.rotate_left(1);
    for piece in &pieces {
        wire.send(piece).unwrap();
    }
    let reply = next_ipv4(&wire, 1);
    assert_eq!(reply[34], 0, "an echo reply");
    assert_eq!(&reply[42..1042], &data[..], "the whole request's data came back");

    // udpecho's third datagram, unfragmented: it exits after it.
    wire.send(&udp(GUEST_MAC, PEER_MAC, 7, b"last")).unwrap();
    next_ipv4(&wire, 17);
    let (status, output) = guest.wait_exit(Duration::from_secs(60)).unwrap();
    assert_eq!(status, EXIT_SUCCESS, "{output}");
    assert!(output.contains("udpecho: echoed 3 datagrams"), "{output}");
    assert!(output.contains("strayd: fragments 4: 1 datagrams reassembled"), "strayd's counters:\n{output}");
    // 8 reversed, 6 shuffled and a repeat, a teardrop pair: 2 datagrams, 1 dropped for overlap.
    let udpecho = "udpecho: dropped 0 frames (ring full), 0 packets with bad checksums, 0 connection requests (backlog full), 0 half-open connections (0 evicted, 0 timed out); \
                   fragments 17: 2 datagrams reassembled, dropped 0 malformed, 1 overlapping, 0 timed out, 0 evicted";
    assert!(output.contains(udpecho), "udpecho's counters:\n{output}");
    for bad in ["panic", "PANIC", "KERNEL FAULT"] {
        assert!(!output.contains(bad), "{output}");
    }
}
