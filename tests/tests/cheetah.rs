//! Cheetah's TCP on the wire: a raw client that is the test itself (`-netdev dgram`: every
//! frame passes through the test, which drops or holds what it wants), and Linux clients in a
//! namespace (curl, hping3, tshark) for the SYN flood and the merged packets.

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use xok_tests::{Guest, Netns, Wire, image_with_docroot};
use xok_tools::image::Image;

const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xab, 0xcd, 0x01];
const GUEST_IP: [u8; 4] = [10, 0, 2, 15];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x22];
const PEER_IP: [u8; 4] = [10, 0, 2, 2];
const PORT: u16 = 40_000;

fn body(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

fn image() -> Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| image_with_docroot("cheetah", &[("f1000.bin", body(1000)), ("f10000.bin", body(10_000))])).clone()
}

/// A TCP segment seen on the wire from Cheetah.
#[derive(Clone, Debug)]
struct Seen {
    seq: u32,
    ack: u32,
    syn: bool,
    fin: bool,
    window: u16,
    payload: Vec<u8>,
}

/// The test as Cheetah's client, frame by frame.
struct RawClient {
    wire: Wire,
    guest: Guest,
}

impl RawClient {
    fn boot() -> RawClient {
        let (wire, args) = Wire::new("e1000", "52:54:00:ab:cd:01").unwrap();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let guest = Guest::boot_image(image(), None, "init=arpd,cheetah", &args).unwrap();
        guest.wait_for("cheetah: 10.0.2.15 port 80 ready", Duration::from_secs(30)).unwrap();
        // QEMU's e1000 ignores frames for its first second (docs/network.md, "Known limits").
        std::thread::sleep(Duration::from_millis(1500));
        RawClient { wire, guest }
    }

    fn send(&self, seq: u32, ack: Option<u32>, control: TcpControl, window: u16, payload: &[u8]) {
        let tcp = TcpRepr {
            src_port: PORT,
            dst_port: 80,
            control,
            seq_number: TcpSeqNumber(seq as i32),
            ack_number: ack.map(|ack| TcpSeqNumber(ack as i32)),
            window_len: window,
            window_scale: None,
            max_seg_size: (control == TcpControl::Syn).then_some(1460),
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload,
        };
        let ip = Ipv4Repr { src_addr: PEER_IP.into(), dst_addr: GUEST_IP.into(), next_header: IpProtocol::Tcp, payload_len: tcp.buffer_len(), hop_limit: 64 };
        let ethernet = EthernetRepr { src_addr: EthernetAddress(PEER_MAC), dst_addr: EthernetAddress(GUEST_MAC), ethertype: EthernetProtocol::Ipv4 };
        let mut frame = vec![0u8; ethernet.buffer_len() + ip.buffer_len() + tcp.buffer_len()];
        let caps = ChecksumCapabilities::default();
        let mut view = EthernetFrame::new_unchecked(&mut frame[..]);
        ethernet.emit(&mut view);
        let mut packet = Ipv4Packet::new_unchecked(view.payload_mut());
        ip.emit(&mut packet, &caps);
        tcp.emit(&mut TcpPacket::new_unchecked(packet.payload_mut()), &IpAddress::Ipv4(PEER_IP.into()), &IpAddress::Ipv4(GUEST_IP.into()), &caps);
        self.wire.send(&frame).unwrap();
    }

    /// The next segment Cheetah sends to our port (within `timeout`).
    fn receive(&self, timeout: Duration) -> Option<Seen> {
        let deadline = Instant::now() + timeout;
        while let Some(frame) = self.wire.receive(deadline.saturating_duration_since(Instant::now()), |frame| frame.len() >= 54 && frame[12..14] == [8, 0] && frame[23] == 6) {
            let ethernet = EthernetFrame::new_checked(&frame[..]).ok()?;
            let ip = Ipv4Packet::new_checked(ethernet.payload()).ok()?;
            let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
            assert!(tcp.verify_checksum(&IpAddress::Ipv4(ip.src_addr()), &IpAddress::Ipv4(ip.dst_addr())), "Cheetah's checksum");
            if tcp.dst_port() == PORT {
                return Some(Seen { seq: tcp.seq_number().0 as u32, ack: tcp.ack_number().0 as u32, syn: tcp.syn(), fin: tcp.fin(), window: tcp.window_len(), payload: tcp.payload().to_vec() });
            }
        }
        None
    }

    /// SYN, SYN-ACK, then the ACK carrying `request`: Cheetah's ISN.
    fn open(&self, window: u16, request: &[u8]) -> u32 {
        self.send(1000, None, TcpControl::Syn, window, b"");
        let syn_ack = self.receive(Duration::from_secs(10)).expect("SYN-ACK");
        assert!(syn_ack.syn && syn_ack.ack == 1001, "{syn_ack:?}");
        self.send(1001, Some(syn_ack.seq.wrapping_add(1)), TcpControl::Psh, window, request);
        syn_ack.seq
    }
}

/// The response Cheetah sends for `f{size}.bin` with `Connection: close`.
fn response_of(size: usize, reassembled: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(reassembled);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{}", &text[..text.len().min(200)]);
    let body_at = reassembled.windows(4).position(|w| w == b"\r\n\r\n").expect("end of head") + 4;
    assert!(text.contains(&format!("Content-Length: {size}\r\n")));
    reassembled[body_at..].to_vec()
}

#[test]
fn a_dropped_first_response_segment_is_sent_again_from_the_same_pages() {
    let client = RawClient::boot();
    let iss = client.open(65535, b"GET /f10000.bin HTTP/1.0\r\n\r\n");
    let mut segments: Vec<Seen> = Vec::new();
    // Everything the initial window lets out; the first one is "lost": never acknowledged.
    while let Some(segment) = client.receive(Duration::from_millis(150)) {
        segments.push(segment);
    }
    let first = segments.iter().find(|s| s.seq == iss.wrapping_add(1) && !s.payload.is_empty()).expect("the first data segment").clone();
    assert_eq!(first.ack, 1001 + 28, "the ACK of the request rides on the first data segment");
    assert_eq!(first.window, 32 * 1024, "Cheetah's whole receive window: the request was consumed");
    let started = Instant::now();
    let again = loop {
        let segment = client.receive(Duration::from_secs(5)).expect("a retransmission");
        if segment.seq == first.seq {
            break segment;
        }
    };
    eprintln!("the first segment came again after {:?}", started.elapsed());
    assert_eq!(again.payload, first.payload, "the same bytes");
    // Acknowledge everything, collect the rest, and check the file.
    let mut data: std::collections::BTreeMap<u32, Vec<u8>> = segments.iter().map(|s| (s.seq.wrapping_sub(iss), s.payload.clone())).collect();
    let mut next = 1u32;
    let mut fin = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !fin && Instant::now() < deadline {
        while let Some(bytes) = data.get(&next) {
            next += bytes.len() as u32;
        }
        client.send(1029, Some(iss.wrapping_add(next)), TcpControl::None, 65535, b"");
        if let Some(segment) = client.receive(Duration::from_millis(500)) {
            fin |= segment.fin && segment.seq.wrapping_sub(iss).wrapping_add(segment.payload.len() as u32) == next;
            data.entry(segment.seq.wrapping_sub(iss)).or_insert(segment.payload);
        }
    }
    let reassembled: Vec<u8> = data.range(1..next).flat_map(|(_, bytes)| bytes.clone()).collect();
    assert!(response_of(10_000, &reassembled) == body(10_000), "the file, whole");
    assert!(fin, "the FIN rode on the last data segment");
    drop(client.guest);
}

#[test]
fn a_zero_window_is_probed_held_and_resumed() {
    let client = RawClient::boot();
    let iss = client.open(2000, b"GET /f10000.bin HTTP/1.0\r\n\r\n");
    // The bytes received, by their end (a retransmission of the same bytes counts once).
    let mut received = 0usize;
    while let Some(segment) = client.receive(Duration::from_millis(300)) {
        received = received.max(segment.seq.wrapping_sub(iss) as usize - 1 + segment.payload.len());
    }
    assert!(received > 0 && received <= 2000, "the window is respected: {received} bytes");
    // Our buffer is full: a zero window, held for 3 s.
    let acked = iss.wrapping_add(1 + received as u32);
    client.send(1029, Some(acked), TcpControl::None, 0, b"");
    let (mut probes, mut data_while_closed) = (0, 0);
    let held = Instant::now() + Duration::from_secs(3);
    while let Some(segment) = client.receive(held.saturating_duration_since(Instant::now())) {
        if segment.payload.is_empty() && segment.seq == acked.wrapping_sub(1) {
            probes += 1;
            client.send(1029, Some(acked), TcpControl::None, 0, b"");
        } else if segment.seq.wrapping_sub(acked) < 0x8000_0000 {
            data_while_closed += segment.payload.len();
        }
    }
    assert!(probes >= 1, "zero-window probes");
    assert_eq!(data_while_closed, 0, "nothing sent into a closed window");
    // The window opens: the rest arrives.
    client.send(1029, Some(acked), TcpControl::None, 65535, b"");
    let mut total = received;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut fin = false;
    while !fin && Instant::now() < deadline {
        let Some(segment) = client.receive(Duration::from_secs(2)) else { break };
        if segment.seq == iss.wrapping_add(1 + total as u32) {
            total += segment.payload.len();
            fin = segment.fin;
            client.send(1029, Some(iss.wrapping_add(1 + total as u32 + u32::from(fin))), TcpControl::None, 65535, b"");
        }
    }
    assert!(fin, "resumed to the end: {total} bytes");
    eprintln!("{probes} probes while the window was closed; {total} bytes in all");
}

/// The fields tshark prints for Cheetah's segments in `capture`.
fn server_segments(ns: &Netns, capture: &str) -> Vec<String> {
    let out = ns.exec(&["sh", "-c", &format!("tshark -r {capture} -Y 'tcp.srcport == 80' -T fields -E separator=' ' -e tcp.flags.syn -e tcp.flags.fin -e tcp.len 2>/dev/null")]).unwrap();
    out.lines().map(str::to_string).collect()
}

#[test]
fn a_bounded_syn_flood_does_not_keep_curl_out_and_responses_carry_their_ack_and_fin() {
    let ns = Netns::new("cheetah").unwrap();
    let args = ns.nic_args("e1000", "52:54:00:ab:cd:01");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let guest = Guest::boot_image(image(), Some(&ns), "init=arpd,!strayd,cheetah", &args).unwrap();
    guest.wait_for("cheetah: 10.0.2.15 port 80 ready", Duration::from_secs(30)).unwrap();
    let dir = std::env::temp_dir().join(format!("xok-cheetah-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let capture = dir.join("tap.pcap").display().to_string();
    // One HTTP/1.0 request, captured on the tap: SYN-ACK, one segment with the ACK of the
    // request, the response and the FIN, then the ACK of the client's FIN.
    ns.exec(&["sh", "-c", &format!("tshark -q -i tap0 -f 'tcp port 80' -w {capture} -a duration:8 >/dev/null 2>&1 & sleep 3")]).unwrap();
    let got = ns.exec(&["curl", "-sS", "-0", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", "http://10.0.2.15/f1000.bin"]).unwrap();
    assert_eq!(got, "200 1000");
    std::thread::sleep(Duration::from_secs(6));
    let segments = server_segments(&ns, &capture);
    assert_eq!(segments.len(), 3, "{segments:?}");
    assert!(segments[0].starts_with("1 0 0") || segments[0].starts_with("True False 0"), "SYN-ACK: {segments:?}");
    let data: Vec<&str> = segments[1].split(' ').collect();
    assert!(matches!(data[1], "1" | "True") && data[2].parse::<usize>().unwrap() > 1000, "data and FIN together: {segments:?}");
    // A SYN flood from random sources (3 000 SYNs), and curl during it.
    let flood = ns.exec(&["sh", "-c", "hping3 -q -S -p 80 --rand-source -c 3000 -i u300 10.0.2.15 > /dev/null 2>&1 & echo $!"]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let during = ns.exec(&["timeout", "60", "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", "http://10.0.2.15/f10000.bin"]);
    let _ = std::process::Command::new("kill").arg(flood.trim()).status();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(during.unwrap(), "200 10000", "curl during the flood");
    eprintln!("curl during a SYN flood: {:?}", started.elapsed());
}
