//! The network interface, with the test as the wire (`-netdev dgram` on 127.0.0.1): frames are
//! injected and replies checked byte by byte. Every test runs once per NIC model.

use std::time::Duration;
use xok_tests::frames::{arp_reply, arp_request, icmp_echo};
use xok_tests::{Guest, Wire, lines_with};
use xok_tools::qemu::EXIT_SUCCESS;

const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xab, 0xcd, 0x01];
const GUEST_IP: [u8; 4] = [10, 0, 2, 15];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x22];
const PEER_IP: [u8; 4] = [10, 0, 2, 2];
const MODELS: [&str; 2] = ["e1000", "tulip"];

fn boot(model: &str, cmdline: &str) -> (Guest, Wire) {
    let (wire, args) = Wire::new(model, "52:54:00:ab:cd:01").unwrap();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (Guest::boot(cmdline, &args).unwrap(), wire)
}

fn rawecho_answers(model: &str) {
    let (guest, wire) = boot(model, "init=rawecho:seconds=4");
    guest.wait_for("rawecho: nic 0", Duration::from_secs(30)).unwrap();
    // ARP: the reply must be exactly the expected frame (no padding trimmed by QEMU's wire: the
    // guest pads to 60 bytes, so compare the first 42 and check the rest is zero).
    wire.send(&arp_request(PEER_MAC, PEER_IP, GUEST_IP)).unwrap();
    let reply = wire.receive(Duration::from_secs(10), |f| f.len() >= 42 && f[12..14] == [8, 6]).expect("ARP reply");
    assert_eq!(&reply[..42], &arp_reply(GUEST_MAC, GUEST_IP, PEER_MAC, PEER_IP)[..], "{model}");
    assert!(reply[42..].iter().all(|b| *b == 0), "padding");
    // An ARP request for someone else gets nothing.
    wire.send(&arp_request(PEER_MAC, PEER_IP, [10, 0, 2, 99])).unwrap();
    // ICMP echo: the reply mirrors the request.
    let data: Vec<u8> = (0..56).collect();
    wire.send(&icmp_echo(8, GUEST_MAC, PEER_MAC, PEER_IP, GUEST_IP, 64, 0x4242, 7, &data)).unwrap();
    let reply = wire.receive(Duration::from_secs(10), |f| f.len() > 34 && f[12..14] == [8, 0]).expect("echo reply");
    assert_eq!(reply, icmp_echo(0, PEER_MAC, GUEST_MAC, GUEST_IP, PEER_IP, 64, 0x4242, 7, &data), "{model}");
    assert!(wire.receive(Duration::from_millis(500), |f| f[12..14] == [8, 6]).is_none(), "no reply to the foreign ARP");

    let (status, output) = guest.wait_exit(Duration::from_secs(60)).unwrap();
    assert_eq!(status, EXIT_SUCCESS, "{output}");
    assert!(output.contains("rawecho: received 3, answered 2, ring drops 0"), "{output}");
    // Idle CPU share: over 4 s (400 ticks) rawecho ran only when woken.
    let line = lines_with(&output, "xok: env").into_iter().find(|l| l.contains("(rawecho) exited")).unwrap();
    let numbers: Vec<u64> = line.split(|c: char| !c.is_ascii_digit()).filter_map(|s| s.parse().ok()).collect();
    let (ticks, runs) = (numbers[numbers.len() - 2], numbers[numbers.len() - 1]);
    eprintln!("{model}: rawecho over 4 s idle: {ticks} cpu ticks, {runs} runs");
    assert!(ticks <= 10 && runs <= 25, "rawecho polled: {line}");
}

#[test]
fn rawecho_answers_arp_and_echo_byte_for_byte_and_sleeps_when_idle() {
    for model in MODELS {
        rawecho_answers(model);
    }
}
