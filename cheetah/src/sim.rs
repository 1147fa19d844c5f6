//! Deterministic simulations of Cheetah's TCP against smoltcp's TCP as the client: a wire with
//! seeded loss, duplication, reordering and delay, and a virtual clock.

use crate::http::Site;
use crate::tcp::{Config, Incoming, Outgoing, Server, Transmit};
use alloc::collections::VecDeque;
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

const SERVER: [u8; 4] = [10, 0, 2, 15];
const CLIENT: [u8; 4] = [10, 0, 2, 2];

/// The client's NIC: packets in, packets out.
#[derive(Default)]
struct ClientDevice {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
}

struct Rx(Vec<u8>);
struct Tx<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut packet = vec![0; len];
        let result = f(&mut packet);
        self.0.push(packet);
        result
    }
}

impl phy::Device for ClientDevice {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(Rx, Tx<'_>)> {
        let packet = self.rx.pop_front()?;
        Some((Rx(packet), Tx(&mut self.tx)))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = 1500;
        caps
    }
}

/// Cheetah's output: whole IPv4 packets, at most `room` a millisecond if set.
#[derive(Default)]
struct ServerWire {
    packets: Vec<Vec<u8>>,
    room: Option<usize>,
}

impl<'s> Transmit<'s> for ServerWire {
    fn transmit(&mut self, segment: &Outgoing<'s>) -> bool {
        if self.room.is_some_and(|room| self.packets.len() >= room) {
            return false;
        }
        let mut packet = vec![0u8; 64 + segment.payload_len()];
        let header = segment.write_headers(SERVER, segment.payload_sum(), &mut packet);
        let mut at = header;
        for part in segment.payload {
            packet[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        packet.truncate(at);
        self.packets.push(packet);
        true
    }
}

/// How the wire misbehaves, in per-mille.
#[derive(Clone, Copy, Debug, Default)]
struct Faults {
    loss: u64,
    duplicate: u64,
    reorder: u64,
    /// One-way delay.
    delay_ms: u64,
}

/// A client machine, Cheetah, and the wire.
struct Sim<'s> {
    server: Server<'s>,
    iface: Interface,
    device: ClientDevice,
    sockets: SocketSet<'static>,
    now: Instant,
    faults: Faults,
    random: u64,
    /// Packets on the wire: arrival, to the server?, bytes.
    in_flight: Vec<(Instant, bool, Vec<u8>)>,
    /// Packets Cheetah sent.
    server_sent: Vec<Vec<u8>>,
    /// Packets Cheetah may send a millisecond (`None`: any number).
    room: Option<usize>,
}

impl<'s> Sim<'s> {
    fn new(site: &'s Site<'s>, config: Config, seed: u64, faults: Faults) -> Sim<'s> {
        let now = Instant::from_secs(1);
        let mut device = ClientDevice::default();
        let mut iface_config = smoltcp::iface::Config::new(HardwareAddress::Ip);
        iface_config.random_seed = seed;
        let mut iface = Interface::new(iface_config, &mut device, now);
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(IpAddress::v4(CLIENT[0], CLIENT[1], CLIENT[2], CLIENT[3]), 24));
        });
        Sim {
            server: Server::new(config, site, [seed, seed ^ 0x55]),
            iface,
            device,
            sockets: SocketSet::new(vec![]),
            now,
            faults,
            random: seed | 1,
            in_flight: Vec::new(),
            server_sent: Vec::new(),
            room: None,
        }
    }

    fn roll(&mut self, per_mille: u64) -> bool {
        self.random ^= self.random << 13;
        self.random ^= self.random >> 7;
        self.random ^= self.random << 17;
        self.random % 1000 < per_mille
    }

    fn put_on_wire(&mut self, to_server: bool, packet: Vec<u8>) {
        if self.roll(self.faults.loss) {
            return;
        }
        let mut delay = Duration::from_millis(self.faults.delay_ms.max(1));
        if self.roll(self.faults.reorder) {
            delay += Duration::from_millis(1 + self.random % 20);
        }
        if self.roll(self.faults.duplicate) {
            self.in_flight.push((self.now + delay + Duration::from_millis(2), to_server, packet.clone()));
        }
        self.in_flight.push((self.now + delay, to_server, packet));
    }

    /// A client connection to Cheetah from `port`, with `rx` bytes of receive buffer.
    fn connect(&mut self, port: u16, rx: usize) -> SocketHandle {
        let mut socket = tcp::Socket::new(tcp::SocketBuffer::new(vec![0; rx]), tcp::SocketBuffer::new(vec![0; 64 * 1024]));
        socket.set_ack_delay(None);
        socket.connect(self.iface.context(), (IpAddress::v4(SERVER[0], SERVER[1], SERVER[2], SERVER[3]), 80), port).unwrap();
        self.sockets.add(socket)
    }

    /// One millisecond.
    fn step(&mut self) {
        self.iface.poll(self.now, &mut self.device, &mut self.sockets);
        for packet in core::mem::take(&mut self.device.tx) {
            self.put_on_wire(true, packet);
        }
        let mut wire = ServerWire { room: self.room, ..ServerWire::default() };
        self.server.poll(self.now, &mut wire);
        self.now += Duration::from_millis(1);
        let now = self.now;
        let mut arriving = Vec::new();
        self.in_flight.retain(|(at, to_server, packet)| {
            if *at <= now {
                arriving.push((*to_server, packet.clone()));
                return false;
            }
            true
        });
        for (to_server, packet) in arriving {
            if to_server {
                if let Some(segment) = Incoming::parse(&packet, SERVER) {
                    self.server.receive(now, &segment, &mut wire);
                }
            } else {
                self.device.rx.push_back(packet);
            }
        }
        for packet in wire.packets {
            self.server_sent.push(packet.clone());
            self.put_on_wire(false, packet);
        }
    }

    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Sim<'s>) -> bool) -> bool {
        let give_up = self.now + limit;
        while self.now < give_up {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }

    /// Sends `request` on `handle` once it is connected, and collects the response until the
    /// server closes (or `expected` bytes arrived).
    fn exchange(&mut self, handle: SocketHandle, request: &[u8], expected: Option<usize>, limit: Duration) -> Vec<u8> {
        let mut sent = false;
        let mut received = Vec::new();
        let finished = self.run_until(limit, |sim| {
            let socket = sim.sockets.get_mut::<tcp::Socket>(handle);
            if !sent && socket.may_send() {
                assert_eq!(socket.send_slice(request), Ok(request.len()));
                sent = true;
            }
            while socket.can_recv() {
                let _ = socket.recv(|data| {
                    received.extend_from_slice(data);
                    (data.len(), ())
                });
            }
            let done = expected.is_some_and(|len| received.len() >= len) || (sent && !socket.may_recv() && socket.state() != tcp::State::SynSent);
            if done && expected.is_none() {
                // The server finished: so does the client, as curl does.
                socket.close();
            }
            done
        });
        assert!(finished, "no whole response after {limit:?}: {} bytes\n{}\nnow {:?} {:?}", received.len(), self.server.describe_connections(), self.now, self.server.stats());
        received
    }
}

fn body(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

fn sizes() -> Vec<(alloc::string::String, Vec<u8>)> {
    [0, 100, 1_000, 10_000, 100_000, 1_000_000].iter().map(|&size| (format!("f{size}.bin"), body(size))).collect()
}

/// The maintenance tool's records for `files`.
fn records(files: &[(alloc::string::String, Vec<u8>)]) -> Vec<Vec<u8>> {
    files
        .iter()
        .map(|(path, body)| crate::cache::encode(body, &crate::http::Head::new(200, "OK", crate::http::content_type(path), body.len())))
        .collect()
}

fn expected(site: &Site<'_>, path: &str, keep_alive: bool) -> Vec<u8> {
    let request = crate::http::Request { method: crate::http::Method::Get, target: path, keep_alive };
    let reply = site.reply(&request);
    [reply.head, reply.body].concat()
}

#[test]
fn every_size_arrives_whole_through_loss_duplication_reordering_and_delay() {
    let files = sizes();
    let records = records(&files);
    // Precomputed segment sums: a wrong one would make smoltcp drop the segment for ever.
    let site = Site::with_prepared(files.iter().zip(&records).map(|((path, bytes), record)| (path.as_str(), bytes.as_slice(), Some(record.as_slice()))));
    assert_eq!(site.prepared(), files.len());
    for seed in [1u64, 2, 3] {
        let faults = Faults { loss: 20, duplicate: 20, reorder: 50, delay_ms: 5 };
        let mut sim = Sim::new(&site, Config::new(SERVER, 80), seed, faults);
        for (n, (path, _)) in files.iter().enumerate() {
            let handle = sim.connect(40_000 + n as u16, 64 * 1024);
            let request = format!("GET /{path} HTTP/1.0\r\n\r\n");
            let response = sim.exchange(handle, request.as_bytes(), None, Duration::from_secs(600));
            assert!(response == expected(&site, path, false), "seed {seed}: {path} differs ({} bytes)", response.len());
        }
        let stats = sim.server.stats();
        assert_eq!(stats.accepted as usize, files.len(), "seed {seed}: {stats:?}");
        assert!(stats.timeouts + stats.fast_retransmits > 0, "seed {seed}: the wire lost nothing? {stats:?}");
    }
}

#[test]
fn a_clean_wire_merges_the_ack_into_the_data_and_the_fin_into_the_last_segment() {
    let files = sizes();
    let records = records(&files);
    let site = Site::with_prepared(files.iter().zip(&records).map(|((path, bytes), record)| (path.as_str(), bytes.as_slice(), Some(record.as_slice()))));
    let mut sim = Sim::new(&site, Config::new(SERVER, 80), 9, Faults::default());
    let handle = sim.connect(40_000, 64 * 1024);
    let response = sim.exchange(handle, b"GET /f1000.bin HTTP/1.0\r\n\r\n", None, Duration::from_secs(5));
    assert!(response == expected(&site, "f1000.bin", false));
    // SYN-ACK, then one segment with the ACK of the request, the response and the FIN, then the
    // ACK of the client's FIN: no bare ACK, no bare FIN.
    sim.run_until(Duration::from_millis(100), |_| false);
    let segments: Vec<Incoming<'_>> = sim.server_sent.iter().filter_map(|packet| Incoming::parse(packet, CLIENT)).collect();
    assert_eq!(segments.len(), 3, "{segments:?}");
    assert!(segments[0].syn && segments[0].mss == Some(1460));
    assert!(segments[1].fin && segments[1].ack.is_some() && segments[1].payload.len() == response.len(), "ACK and FIN ride on the data");
    assert!(!segments[2].fin && segments[2].payload.is_empty());
    assert_eq!(sim.server.stats().sums_computed, 0, "the response's sum was precomputed");
    assert_eq!((sim.server.connections(), sim.server.time_waits()), (0, 1), "the server closed first: TIME_WAIT, outside the table");
}

#[test]
fn a_full_transmitter_holds_segments_back_and_loses_none() {
    let files = sizes();
    let site = Site::new(files.iter().map(|(path, bytes)| (path.as_str(), bytes.as_slice())));
    let mut sim = Sim::new(&site, Config::new(SERVER, 80), 14, Faults { delay_ms: 1, ..Faults::default() });
    sim.room = Some(3);
    let handle = sim.connect(40_000, 64 * 1024);
    let response = sim.exchange(handle, b"GET /f1000000.bin HTTP/1.0\r\n\r\n", None, Duration::from_secs(30));
    assert!(response == expected(&site, "f1000000.bin", false));
    let stats = sim.server.stats();
    assert!(stats.transmit_full > 0, "the transmitter was full: {stats:?}");
    assert_eq!(stats.timeouts, 0, "held back, not lost: {stats:?}");
}

#[test]
fn keep_alive_and_pipelined_requests_are_answered_in_order() {
    let files = sizes();
    let site = Site::new(files.iter().map(|(path, bytes)| (path.as_str(), bytes.as_slice())));
    let mut sim = Sim::new(&site, Config::new(SERVER, 80), 10, Faults { delay_ms: 2, ..Faults::default() });
    let handle = sim.connect(40_000, 64 * 1024);
    let request = b"GET /f100.bin HTTP/1.1\r\nHost: x\r\n\r\nHEAD /f10000.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /f10000.bin HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut wanted = expected(&site, "f100.bin", true);
    let head = site.reply(&crate::http::Request { method: crate::http::Method::Head, target: "/f10000.bin", keep_alive: true }).head.to_vec();
    wanted.extend_from_slice(&head);
    wanted.extend_from_slice(&expected(&site, "f10000.bin", true));
    let response = sim.exchange(handle, request, Some(wanted.len()), Duration::from_secs(10));
    assert!(response == wanted, "three responses in order");
    assert_eq!(sim.server.connections(), 1, "still open");
}

#[test]
fn a_zero_window_is_probed_and_the_transfer_resumes() {
    let files = sizes();
    let site = Site::new(files.iter().map(|(path, bytes)| (path.as_str(), bytes.as_slice())));
    let mut sim = Sim::new(&site, Config::new(SERVER, 80), 11, Faults { delay_ms: 1, ..Faults::default() });
    let handle = sim.connect(40_000, 4096);
    let mut sent = false;
    // The client reads nothing for 3 s: its window closes.
    sim.run_until(Duration::from_secs(3), |sim| {
        let socket = sim.sockets.get_mut::<tcp::Socket>(handle);
        if !sent && socket.may_send() {
            socket.send_slice(b"GET /f100000.bin HTTP/1.0\r\n\r\n").unwrap();
            sent = true;
        }
        false
    });
    assert!(sim.server.stats().window_probes > 0, "{:?}", sim.server.stats());
    let response = sim.exchange(handle, b"", None, Duration::from_secs(60));
    assert!(response == expected(&site, "f100000.bin", false));
}

#[test]
fn a_syn_flood_fills_the_half_open_table_and_real_clients_still_get_in() {
    let files = sizes();
    let site = Site::new(files.iter().map(|(path, bytes)| (path.as_str(), bytes.as_slice())));
    let config = Config { half_open_max: 32, ..Config::new(SERVER, 80) };
    let mut sim = Sim::new(&site, config, 12, Faults::default());
    let mut wire = ServerWire::default();
    let flood = |port: u16| client_packet(([10, 0, 3, (port % 250) as u8], port), 1000 + u32::from(port), None, true, b"");
    for port in 1..=500u16 {
        let packet = flood(port);
        let segment = Incoming::parse(&packet, SERVER).unwrap();
        sim.server.receive(sim.now, &segment, &mut wire);
        // A duplicate SYN gets the same SYN-ACK (same ISN).
        if port == 500 {
            let before = wire.packets.len();
            sim.server.receive(sim.now, &segment, &mut wire);
            let (first, again) = (&wire.packets[before - 1], &wire.packets[before]);
            assert_eq!(first, again, "the same SYN-ACK");
        }
    }
    assert!(sim.server.stats().half_open_dropped >= 468, "{:?}", sim.server.stats());
    assert!(sim.server.connections() <= 32);
    let handle = sim.connect(40_000, 64 * 1024);
    let response = sim.exchange(handle, b"GET /f1000.bin HTTP/1.0\r\n\r\n", None, Duration::from_secs(10));
    assert!(response == expected(&site, "f1000.bin", false), "served during the flood");
}

/// The most stale entries the test allows beyond twice the live ones (Cheetah's slack, 64,
/// and a few connections still half-open or closing).
const STALE_SLACK_TEST: usize = 64 + 5;

#[test]
fn connections_that_come_and_go_leave_the_half_open_queue_and_timer_heap_bounded() {
    let files = sizes();
    let site = Site::new(files.iter().map(|(path, bytes)| (path.as_str(), bytes.as_slice())));
    let mut sim = Sim::new(&site, Config::new(SERVER, 80), 14, Faults::default());
    for n in 0..400u16 {
        let handle = sim.connect(20_000 + n, 64 * 1024);
        let response = sim.exchange(handle, b"GET /f100.bin HTTP/1.0\r\n\r\n", None, Duration::from_secs(5));
        assert!(response == expected(&site, "f100.bin", false));
        let (half_open, timers) = sim.server.queued();
        let live = sim.server.connections();
        assert!(half_open <= STALE_SLACK_TEST && timers <= 2 * live + STALE_SLACK_TEST, "after {n}: {half_open} half-open entries, {timers} timers, {live} connections");
    }
}

#[test]
fn strays_get_rfc_793_resets_and_time_wait_reopens_for_a_later_syn() {
    let files = sizes();
    let site = Site::new(files.iter().map(|(path, bytes)| (path.as_str(), bytes.as_slice())));
    let mut sim = Sim::new(&site, Config::new(SERVER, 80), 13, Faults::default());
    let mut wire = ServerWire::default();
    let stray = client_packet((CLIENT, 5555), 77, Some(999), false, b"x");
    sim.server.receive(sim.now, &Incoming::parse(&stray, SERVER).unwrap(), &mut wire);
    let reset = Incoming::parse(&wire.packets[0], CLIENT).unwrap();
    assert!(reset.rst && reset.seq == 999 && reset.ack.is_none(), "{reset:?}");
    let handle = sim.connect(40_000, 64 * 1024);
    let _ = sim.exchange(handle, b"GET / HTTP/1.0\r\n\r\n", None, Duration::from_secs(5));
    sim.run_until(Duration::from_millis(50), |_| false);
    assert_eq!(sim.server.time_waits(), 1);
    let reopen = client_packet((CLIENT, 40_000), 0x7000_0000, None, true, b"");
    let mut wire = ServerWire::default();
    sim.server.receive(sim.now, &Incoming::parse(&reopen, SERVER).unwrap(), &mut wire);
    let answer = Incoming::parse(&wire.packets[0], CLIENT).unwrap();
    assert!(answer.syn && answer.ack == Some(0x7000_0001), "{answer:?}");
    assert_eq!(sim.server.time_waits(), 0);
}

/// A packet from `from` to Cheetah's port 80 (written with Cheetah's own header writer, the
/// other way round).
fn client_packet(from: ([u8; 4], u16), seq: u32, ack: Option<u32>, syn: bool, payload: &[u8]) -> Vec<u8> {
    let tuple = exos::tcpip::segment::Tuple { local_port: from.1, remote: SERVER, remote_port: 80 };
    let segment = Outgoing { tuple, seq, ack, syn, fin: false, rst: false, psh: false, window: 8000, mss: syn.then_some(1460), payload: [payload, &[]], payload_sum: None };
    let mut packet = vec![0u8; 64 + payload.len()];
    let header = segment.write_headers(from.0, segment.payload_sum(), &mut packet);
    packet[header..header + payload.len()].copy_from_slice(payload);
    packet.truncate(header + payload.len());
    packet
}

#[test]
fn limited_transmit_lets_fast_retransmit_repair_losses_in_small_windows() {
    let files = sizes();
    let site = Site::new(files.iter().map(|(path, bytes)| (path.as_str(), bytes.as_slice())));
    // Loss in per mille: 5 %, both ways, and a 10 ms one-way delay (the relay test's wire).
    let mut sim = Sim::new(&site, Config::new(SERVER, 80), 21, Faults { loss: 50, delay_ms: 10, ..Faults::default() });
    let handle = sim.connect(40_000, 64 * 1024);
    let response = sim.exchange(handle, b"GET /f1000000.bin HTTP/1.0\r\n\r\n", None, Duration::from_secs(600));
    assert!(response == expected(&site, "f1000000.bin", false));
    let stats = sim.server.stats();
    // Limited transmit (RFC 3042) lets the first duplicates send new data, so even a small
    // window draws the three duplicates fast retransmit needs: with it 20 fast retransmits
    // against 34 timeouts here, without it 2 against 54 (smoltcp's delayed ACKs and windows
    // of one or two segments after a timeout leave the rest to the timer).
    assert!(2 * stats.fast_retransmits > stats.timeouts, "{stats:?}");
}
