//! Fuzzing Cheetah's TCP with hostile segment input (proptest; stable Rust has no cargo-fuzz):
//! arbitrary bytes as IPv4 packets, and well-formed segments with arbitrary flags, numbers,
//! windows and payloads for a handful of tuples, interleaved with timer runs. The server must
//! never panic, must keep its tables bounded, and every segment it sends must be one a TCP
//! peer can parse with a correct checksum.

use cheetah::http::Site;
use cheetah::tcp::{Config, Incoming, Outgoing, Server, Transmit};
use exos::tcpip::segment::Tuple;
use proptest::prelude::*;
use smoltcp::time::{Duration, Instant};

const SERVER: [u8; 4] = [10, 0, 2, 15];

/// Checks every segment Cheetah sends: it must parse back, checksums and all.
#[derive(Default)]
struct Checked {
    sent: usize,
}

impl<'s> Transmit<'s> for Checked {
    fn transmit(&mut self, segment: &Outgoing<'s>) -> bool {
        let mut packet = vec![0u8; 64 + segment.payload_len()];
        let header = segment.write_headers(SERVER, segment.payload_sum(), &mut packet);
        let mut at = header;
        for part in segment.payload {
            packet[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        packet.truncate(at);
        let parsed = Incoming::parse(&packet, segment.tuple.remote).expect("a segment a peer can parse");
        assert_eq!(parsed.payload.len(), segment.payload_len());
        self.sent += 1;
        true
    }
}

/// A well-formed segment from one of four clients, with anything in its fields.
fn client_segment() -> impl Strategy<Value = (u8, u32, Option<u32>, u8, u16, Vec<u8>)> {
    (0u8..4, any::<u32>(), proptest::option::of(any::<u32>()), 0u8..16, any::<u16>(), proptest::collection::vec(any::<u8>(), 0..64))
}

fn packet(client: u8, seq: u32, ack: Option<u32>, flags: u8, window: u16, payload: &[u8]) -> Vec<u8> {
    let tuple = Tuple { local_port: 40_000 + u16::from(client), remote: SERVER, remote_port: 80 };
    let segment = Outgoing {
        tuple,
        seq,
        ack,
        syn: flags & 1 != 0,
        fin: flags & 2 != 0,
        rst: flags & 4 != 0,
        psh: flags & 8 != 0,
        window,
        mss: (flags & 1 != 0).then_some(536),
        payload: [payload, &[]],
        payload_sum: None,
    };
    let mut bytes = vec![0u8; 64 + payload.len()];
    let header = segment.write_headers([10, 0, 2, 2], segment.payload_sum(), &mut bytes);
    bytes[header..header + payload.len()].copy_from_slice(payload);
    bytes.truncate(header + payload.len());
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 1..40)) {
        let body = vec![b'x'; 5000];
        let site = Site::new([("f.bin", body.as_slice())]);
        let mut server = Server::new(Config::new(SERVER, 80), &site, [1, 2]);
        let mut out = Checked::default();
        for (n, bytes) in packets.iter().enumerate() {
            if let Some(segment) = Incoming::parse(bytes, SERVER) {
                server.receive(Instant::from_millis(n as i64), &segment, &mut out);
            }
        }
    }

    #[test]
    fn hostile_segments_never_panic_and_tables_stay_bounded(
        segments in proptest::collection::vec((client_segment(), 0u64..3000), 1..120),
        request in proptest::sample::select(vec![&b"GET /f.bin HTTP/1.1\r\n\r\n"[..], b"GET /f.bin HTTP/1.0\r\n\r\n", b"HEAD / HTTP/1.1\r\n\r\n", b"\x00\xff garbage\r\n\r\n"]),
    ) {
        let body = vec![b'x'; 20_000];
        let site = Site::new([("f.bin", body.as_slice())]);
        let config = Config { half_open_max: 2, ..Config::new(SERVER, 80) };
        let mut server = Server::new(config, &site, [3, 4]);
        let mut out = Checked::default();
        let mut now = Instant::from_secs(1);
        for ((client, seq, ack, flags, window, payload), gap_ms) in segments {
            // Some segments carry a real request, so that responses are under way.
            let payload = if payload.first().is_some_and(|b| b % 3 == 0) { request.to_vec() } else { payload };
            let bytes = packet(client, seq, ack, flags, window, &payload);
            // smoltcp refuses some flag sets (SYN with FIN or RST): those never reach Cheetah.
            if let Some(segment) = Incoming::parse(&bytes, SERVER) {
                server.receive(now, &segment, &mut out);
            }
            now += Duration::from_millis(gap_ms);
            server.poll(now, &mut out);
            prop_assert!(server.connections() <= 4);
        }
        // Everything ends: after the longest timeouts nothing is left but TIME_WAIT.
        for _ in 0..2000 {
            now += Duration::from_millis(500);
            server.poll(now, &mut out);
        }
        prop_assert_eq!(server.connections(), 0);
    }
}
