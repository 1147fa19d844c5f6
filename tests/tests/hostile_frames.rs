//! Hostile frames (issue 12): the project's injector (`xok_tools::hostile`, through the relay)
//! sends more than 2 000 malformed frames in named groups -- runts and giants, unknown and
//! stacked ethertypes, bad IPv4 header and total lengths, bad checksums of every protocol,
//! fragments of every hostile kind, IP options garbage, bad TCP data offsets and options, flag
//! combinations, bad UDP lengths, truncated ICMP, malformed and poisoning ARP, random frames --
//! at a machine running every network program: arpd, strayd, Cheetah (port 80), httpd (8080),
//! tcpecho and udpecho (7). After each group every one of them must still answer: ping, curl
//! with the body checked from both web servers, a TCP and a UDP echo. Nothing may panic or die.

use std::time::Duration;
use xok_tests::{Guest, Netns, image_with_docroot};
use xok_tools::hostile::{Target, groups};
use xok_tools::relay::{Faults, Relay};

const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xab, 0xcd, 0x01];

fn everything_answers(ns: &Netns, guest: &Guest, after: &str) {
    let script = "ping -c 1 -W 3 10.0.2.15 > /dev/null && echo ping; \
                  curl -sS --max-time 10 http://10.0.2.15/page.txt; \
                  curl -sS --max-time 10 http://10.0.2.15:8080/page.txt; \
                  echo tcp-echo | nc -q 2 -w 5 10.0.2.15 7; \
                  echo udp-echo | nc -u -w 5 10.0.2.15 7";
    let out = ns.exec(&["timeout", "60", "sh", "-c", script]).unwrap_or_else(|error| panic!("after {after}: {error}\nconsole:\n{}", guest.output()));
    assert_eq!(out, "ping\nhello from both\nhello from both\ntcp-echo\nudp-echo\n", "after {after}\nconsole:\n{}", guest.output());
}

#[test]
fn malformed_frames_in_every_group_leave_every_program_answering() {
    let image = image_with_docroot("hostile-frames", &[("page.txt", b"hello from both\n".to_vec())]);
    let ns = Netns::new("hostile-frames").unwrap();
    let relay = Relay::start(&ns.name, "tap0", Faults::default(), Faults::default(), 1).unwrap();
    let args = relay.nic_args("e1000", "52:54:00:ab:cd:01");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cmdline = "init=arpd,!strayd,cheetah,httpd:port=8080,tcpecho,udpecho";
    let guest = Guest::boot_image(image, Some(&ns), cmdline, &args).unwrap();
    for ready in ["cheetah: 10.0.2.15 port 80 ready", "httpd: 10.0.2.15 port 8080 ready", "tcpecho: 10.0.2.15 port 7 ready"] {
        guest.wait_for(ready, Duration::from_secs(30)).unwrap();
    }
    everything_answers(&ns, &guest, "boot");
    let tap_mac = ns.exec(&["cat", "/sys/class/net/tap0/address"]).unwrap();
    let peer_mac: Vec<u8> = tap_mac.trim().split(':').map(|byte| u8::from_str_radix(byte, 16).unwrap()).collect();
    let target = Target { mac: GUEST_MAC, ip: [10, 0, 2, 15], peer_mac: peer_mac.try_into().unwrap(), peer_ip: [10, 0, 2, 2], tcp_port: 80, udp_port: 7 };
    let mut total = 0;
    for (name, frames) in groups(&target, 12) {
        let count = frames.len();
        // Paced: 32 frames, then a pause, so that the NIC's ring is not what drops them.
        for batch in frames.chunks(32) {
            relay.inject(batch.to_vec());
            std::thread::sleep(Duration::from_millis(60));
        }
        std::thread::sleep(Duration::from_millis(300));
        everything_answers(&ns, &guest, name);
        println!("{name}: {count} frames, everything answers");
        total += count;
    }
    let console = guest.output();
    for bad in ["panic", "PANIC", "KERNEL FAULT", "killed", "exited"] {
        assert!(!console.contains(bad), "`{bad}` on the console:\n{console}");
    }
    println!("{total} hostile frames in all");
    assert!(total >= 2_000);
}
