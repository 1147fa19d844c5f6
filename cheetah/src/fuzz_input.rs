//! Arbitrary bytes into Cheetah, for the fuzz targets (`cheetah/fuzz`, cargo-fuzz) and their
//! seeded runs in the tests (`tests/fuzz_segments.rs`): [`run`] drives a server's TCP, [`http`]
//! the HTTP parser. For [`run`], the bytes are a stream of
//! commands: a raw IPv4 packet; a well-formed segment from one of four clients with arbitrary
//! flags, numbers, window and payload (or a real request); or time passing, with the timers run.
//! It panics when the server breaks a rule: a segment it sends that a peer cannot parse (bad
//! checksum, bad header), or more connections than clients.

use crate::http::Site;
use crate::tcp::{Config, Incoming, Outgoing, Server, Transmit};
use alloc::vec;
use alloc::vec::Vec;
use exos::tcpip::fuzz_input::Commands;
use exos::tcpip::segment::Tuple;
use smoltcp::time::{Duration, Instant};

const SERVER: [u8; 4] = [10, 0, 2, 15];
const CLIENT: [u8; 4] = [10, 0, 2, 2];
/// Requests a well-formed segment may carry instead of its own bytes.
const REQUESTS: [&[u8]; 4] = [b"GET /f.bin HTTP/1.1\r\n\r\n", b"GET /f.bin HTTP/1.0\r\n\r\n", b"HEAD / HTTP/1.1\r\n\r\n", b"\x00\xff garbage\r\n\r\n"];

/// Checks every segment the server sends: it must parse back, checksums and all.
struct Checked;

impl<'s> Transmit<'s> for Checked {
    fn transmit(&mut self, segment: &Outgoing<'s>) -> bool {
        let packet = packet_of(segment, SERVER);
        let parsed = Incoming::parse(&packet, segment.tuple.remote).expect("Cheetah sent a segment a peer cannot parse");
        assert_eq!(parsed.payload.len(), segment.payload_len());
        true
    }
}

/// The IPv4 packet of `segment` sent from `from`.
fn packet_of(segment: &Outgoing<'_>, from: [u8; 4]) -> Vec<u8> {
    let mut packet = vec![0u8; 64 + segment.payload_len()];
    let header = segment.write_headers(from, segment.payload_sum(), &mut packet);
    let mut at = header;
    for part in segment.payload {
        packet[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    packet.truncate(at);
    packet
}

/// Runs the commands in `bytes` against a fresh server's TCP; then lets time run out and checks that
/// every connection has ended.
pub fn run(bytes: &[u8]) {
    let body = vec![b'x'; 20_000];
    let site = Site::new([("f.bin", body.as_slice())]);
    let config = Config { half_open_max: 2, ..Config::new(SERVER, 80) };
    let mut server = Server::new(config, &site, [3, 4]);
    let mut now = Instant::from_secs(1);
    let mut commands = Commands(bytes);
    while let Some(kind) = commands.byte() {
        match kind % 4 {
            0 => {
                let len = usize::from(commands.byte().unwrap_or(0));
                let packet = commands.take(len);
                if let Some(segment) = Incoming::parse(&packet, SERVER) {
                    server.receive(now, &segment, &mut Checked);
                }
            }
            1 | 2 => {
                let (Some(client), Some(flags), Some(seq)) = (commands.byte(), commands.byte(), commands.word()) else { break };
                let ack = if flags & 0x10 != 0 { commands.word() } else { None };
                let window = u16::from(commands.byte().unwrap_or(0)) << 8;
                let payload = if flags & 0x20 != 0 {
                    REQUESTS[usize::from(flags >> 6)].to_vec()
                } else {
                    let len = usize::from(commands.byte().unwrap_or(0) % 64);
                    commands.take(len)
                };
                let segment = Outgoing {
                    tuple: Tuple { local_port: 40_000 + u16::from(client % 4), remote: SERVER, remote_port: 80 },
                    seq,
                    ack,
                    syn: flags & 1 != 0,
                    fin: flags & 2 != 0,
                    rst: flags & 4 != 0,
                    psh: flags & 8 != 0,
                    window,
                    mss: (flags & 1 != 0).then_some(536),
                    payload: [&payload, &[]],
                    payload_sum: None,
                };
                // smoltcp refuses some flag sets (SYN with FIN or RST): those never reach Cheetah.
                if let Some(segment) = Incoming::parse(&packet_of(&segment, CLIENT), SERVER) {
                    server.receive(now, &segment, &mut Checked);
                }
            }
            _ => {
                now += Duration::from_millis(u64::from(commands.byte().unwrap_or(0)) * 20);
                server.poll(now, &mut Checked);
            }
        }
        assert!(server.connections() <= 4, "more connections than clients");
    }
    // Everything ends: after the longest timeouts nothing is left but TIME_WAIT.
    for _ in 0..400 {
        now += Duration::from_secs(3);
        server.poll(now, &mut Checked);
    }
    assert_eq!(server.connections(), 0, "a connection outlived every timeout");
}

/// Parses `bytes` as requests arriving on one connection (pipelined), answering each from a
/// small site; panics if a parse claims more bytes than it was given or none, or if a target
/// that climbs out of the root (`..`) names a file.
pub fn http(bytes: &[u8]) {
    let site = Site::new([("index.html", &b"<p>hi"[..]), ("a/b.txt", b"b")]);
    let mut rest = bytes;
    loop {
        match crate::http::parse(rest) {
            crate::http::Parsed::Complete(request, length) => {
                assert!(length > 0 && length <= rest.len(), "a request of {length} bytes in {}", rest.len());
                if let Some(path) = crate::http::file_path(request.target) {
                    assert!(!path.split('/').any(|segment| segment == ".."), "{path} climbs out");
                }
                let reply = site.reply(&request);
                assert!(reply.head.ends_with(b"\r\n\r\n"));
                rest = &rest[length..];
            }
            crate::http::Parsed::Partial => break,
            crate::http::Parsed::Refused(refusal) => {
                let _ = site.refusal(refusal);
                break;
            }
        }
    }
}
