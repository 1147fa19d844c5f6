//! Deterministic simulation of the socket layer on the host: two machines on a simulated wire
//! with seeded loss, duplication and reordering, and a virtual clock (as smoltcp's netsim).
//! Filter claims go through a real DPF filter set per machine, so overlaps are refused as the
//! kernel refuses them.

use super::errno::Errno;
use super::link::{Lane, Lanes, Link};
use super::segment::{Destination, Segment, classify};
use super::stack::{Fd, HALF_OPEN_TIMEOUT, How, Kind, SockOpt, Stack, StackConfig};
use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::net::SocketAddrV4;
use smoltcp::phy::{self, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl, TcpRepr};
use xok_abi::Error;

/// The server's address and the client's.
pub const SERVER: [u8; 4] = [10, 0, 2, 15];
/// The client's address.
pub const CLIENT: [u8; 4] = [10, 0, 2, 2];

/// An IPv4 + TCP packet.
pub fn tcp_packet(from: ([u8; 4], u16), to: ([u8; 4], u16), control: TcpControl, seq: u32, ack: Option<u32>, payload: &[u8]) -> Vec<u8> {
    let tcp = TcpRepr { max_seg_size: None, ..super::segment::plain_tcp((from.1, to.1), control, seq, ack, 8000, payload) };
    let mut bytes = vec![0u8; super::segment::ipv4_tcp_len(&tcp)];
    super::segment::emit_ipv4_tcp(from.0, to.0, &tcp, &mut bytes);
    bytes
}

/// The TCP segments among packets the server sent to the client (as the client reads them).
pub fn segments_to_client(packets: &[Vec<u8>]) -> Vec<Segment> {
    segments_to(CLIENT, packets)
}

/// The TCP segments among `packets` as the machine at `address` reads them.
fn segments_to(address: [u8; 4], packets: &[Vec<u8>]) -> Vec<Segment> {
    packets
        .iter()
        .filter_map(|packet| match classify(packet, address) {
            Destination::Tcp(segment) => Some(segment),
            _ => None,
        })
        .collect()
}

/// What a machine sent, waiting for the wire.
type Outbox = Rc<RefCell<Vec<Vec<u8>>>>;

/// A simulated machine's link: packets delivered to it wait in two queues, as exos's device
/// keeps two rings: connection requests to a listen that claimed them, and the others.
pub struct SimLink {
    others: VecDeque<Vec<u8>>,
    requests: VecDeque<Vec<u8>>,
    /// Which queue to read next, and the queue of the packet [`Link::next`] gave.
    lanes: Lanes,
    sender: SimSender,
    filters: Rc<RefCell<dpf::Dpf>>,
    /// The principal claims are made as (a "process" of the machine).
    principal: u32,
}

/// The sending half of a [`SimLink`].
pub struct SimSender {
    outbox: Outbox,
}

/// A filter claimed in a machine's DPF set.
pub struct SimClaim {
    filters: Rc<RefCell<dpf::Dpf>>,
    id: dpf::FilterId,
    principal: u32,
}

impl Drop for SimClaim {
    fn drop(&mut self) {
        let _ = self.filters.borrow_mut().delete(self.id, self.principal);
    }
}

/// A packet being sent.
pub struct SimTxToken<'a> {
    outbox: &'a Outbox,
}

impl phy::TxToken for SimTxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut packet = vec![0; len];
        let result = f(&mut packet);
        self.outbox.borrow_mut().push(packet);
        result
    }
}

/// Never used: received packets come through [`Link::next`].
pub struct NoRxToken;

impl phy::RxToken for NoRxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&[])
    }
}

impl phy::Device for SimSender {
    type RxToken<'a> = NoRxToken;
    type TxToken<'a> = SimTxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(NoRxToken, SimTxToken<'_>)> {
        None
    }

    fn transmit(&mut self, _now: Instant) -> Option<SimTxToken<'_>> {
        Some(SimTxToken { outbox: &self.outbox })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = 1500;
        caps
    }
}

impl SimLink {
    /// A machine's link whose claims go into `filters` as `principal`.
    pub fn new(filters: Rc<RefCell<dpf::Dpf>>, principal: u32) -> SimLink {
        let (others, requests) = (VecDeque::new(), VecDeque::new());
        SimLink { others, requests, lanes: Lanes::default(), sender: SimSender { outbox: Rc::default() }, filters, principal }
    }

    /// Delivers an IPv4 packet to the machine: to the queue of the filter the machine's DPF
    /// set gives it to, as the kernel does.
    pub fn deliver(&mut self, packet: Vec<u8>) {
        let mut frame = vec![0u8; 14];
        frame[12..14].copy_from_slice(&dpf::filter::ETHERTYPE_IPV4.to_be_bytes());
        frame.extend_from_slice(&packet);
        let filters = self.filters.borrow();
        let owner = filters.classify_interpreted(&frame).owner;
        match owner.and_then(|id| filters.payload(id)) {
            Some(REQUESTS_QUEUE) => self.requests.push_back(packet),
            _ => self.others.push_back(packet),
        }
    }

    fn claim_for(&mut self, filter: &dpf::Filter, queue: u32) -> Result<SimClaim, Error> {
        let inserted = self.filters.borrow_mut().insert(filter, self.principal, queue).map_err(|_| Error::FilterOverlap)?;
        Ok(SimClaim { filters: self.filters.clone(), id: inserted.id, principal: self.principal })
    }

    /// Takes what the machine sent.
    pub fn take_sent(&mut self) -> Vec<Vec<u8>> {
        core::mem::take(&mut *self.sender.outbox.borrow_mut())
    }
}

/// The payload of filters claimed for the connection requests' queue.
const REQUESTS_QUEUE: u32 = 1;

impl Link for SimLink {
    type Sender = SimSender;
    type Claim = SimClaim;

    fn claim(&mut self, filter: &dpf::Filter) -> Result<SimClaim, Error> {
        self.claim_for(filter, 0)
    }

    fn claim_requests(&mut self, filter: &dpf::Filter) -> Result<SimClaim, Error> {
        self.claim_for(filter, REQUESTS_QUEUE)
    }

    fn next(&mut self) -> (Option<&[u8]>, &mut SimSender) {
        let packet = match self.lanes.lane(|| (!self.others.is_empty(), !self.requests.is_empty())) {
            Some(Lane::Others) => self.others.front(),
            Some(Lane::Requests) => self.requests.front(),
            None => None,
        };
        (packet.map(Vec::as_slice), &mut self.sender)
    }

    fn consumed(&mut self) {
        match self.lanes.done() {
            Some(Lane::Others) => self.others.pop_front(),
            Some(Lane::Requests) => self.requests.pop_front(),
            None => None,
        };
    }

    fn sender(&mut self) -> &mut SimSender {
        &mut self.sender
    }

    fn can_send(&mut self) -> bool {
        true
    }

    fn flush(&mut self) {}
}

/// How the wire misbehaves, in per-mille.
#[derive(Clone, Copy, Debug)]
pub struct Faults {
    /// Packets lost.
    pub loss: u64,
    /// Packets delivered twice.
    pub duplicate: u64,
    /// Packets held back by up to 20 ms (so others overtake them).
    pub reorder: u64,
}

/// Two machines and the wire between them.
pub struct Sim {
    /// The server (10.0.2.15).
    pub server: Stack<SimLink>,
    /// The client (10.0.2.2).
    pub client: Stack<SimLink>,
    /// Virtual time.
    pub now: Instant,
    faults: Faults,
    random: u64,
    /// Packets on the wire: when they arrive, to the server?, bytes.
    in_flight: Vec<(Instant, bool, Vec<u8>)>,
    /// Packets the wire lost, duplicated and reordered.
    pub counts: [u64; 3],
}

impl Sim {
    /// Two machines, the wire seeded with `seed`.
    pub fn new(seed: u64, faults: Faults) -> Sim {
        let now = Instant::from_secs(1);
        let machine = |ip: [u8; 4], seed: u64| {
            let link = SimLink::new(Rc::new(RefCell::new(dpf::Dpf::new())), 1);
            Stack::new(link, StackConfig { ip, prefix: 24, gateway: None, seed }, now)
        };
        Sim { server: machine(SERVER, seed ^ 0x5e), client: machine(CLIENT, seed ^ 0xc1), now, faults, random: seed | 1, in_flight: Vec::new(), counts: [0; 3] }
    }

    fn roll(&mut self, per_mille: u64) -> bool {
        self.random ^= self.random << 13;
        self.random ^= self.random >> 7;
        self.random ^= self.random << 17;
        self.random % 1000 < per_mille
    }

    /// One millisecond: both machines poll, their packets go onto the wire, due ones arrive.
    pub fn step(&mut self) {
        self.server.poll(self.now);
        self.client.poll(self.now);
        for (to_server, sent) in [(false, self.server.link().take_sent()), (true, self.client.link().take_sent())] {
            for packet in sent {
                if self.roll(self.faults.loss) {
                    self.counts[0] += 1;
                    continue;
                }
                let mut delay = Duration::from_millis(1);
                if self.roll(self.faults.reorder) {
                    self.counts[2] += 1;
                    delay += Duration::from_millis(1 + self.random % 20);
                }
                if self.roll(self.faults.duplicate) {
                    self.counts[1] += 1;
                    self.in_flight.push((self.now + delay + Duration::from_millis(3), to_server, packet.clone()));
                }
                self.in_flight.push((self.now + delay, to_server, packet));
            }
        }
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
            let stack = if to_server { &mut self.server } else { &mut self.client };
            stack.link().deliver(packet);
        }
    }

    /// Steps until `done` holds (false after `limit` of virtual time).
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Sim) -> bool) -> bool {
        let give_up = self.now + limit;
        while self.now < give_up {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }
}

fn server_addr(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(SERVER.into(), port)
}

fn listen(stack: &mut Stack<SimLink>, port: u16, backlog: usize) -> Fd {
    let fd = stack.socket(Kind::Stream).unwrap();
    stack.bind(fd, port).unwrap();
    stack.listen(fd, backlog).unwrap();
    fd
}

/// Echoes what each accepted connection of `listener` sends and closes when the peer has.
struct EchoServer {
    listener: Fd,
    streams: Vec<(Fd, Vec<u8>)>,
    accepted: usize,
}

impl EchoServer {
    fn step(&mut self, stack: &mut Stack<SimLink>, now: Instant) {
        while let Ok((fd, _)) = stack.accept(self.listener) {
            self.accepted += 1;
            self.streams.push((fd, Vec::new()));
        }
        let mut buffer = [0u8; 4096];
        self.streams.retain_mut(|(fd, pending)| {
            loop {
                if !pending.is_empty() {
                    match stack.send(*fd, pending, now) {
                        Ok(sent) => {
                            pending.drain(..sent);
                            continue;
                        }
                        Err(Errno::WouldBlock) => return true,
                        Err(_) => {
                            let _ = stack.close(*fd, now);
                            return false;
                        }
                    }
                }
                match stack.recv(*fd, &mut buffer, now) {
                    Ok(0) | Err(Errno::ConnectionReset | Errno::TimedOut) => {
                        let _ = stack.close(*fd, now);
                        return false;
                    }
                    Ok(len) => pending.extend_from_slice(&buffer[..len]),
                    Err(_) => return true,
                }
            }
        });
    }
}

/// Sends `data` to an echo server on a new connection and checks the echo.
fn echo_through(sim: &mut Sim, data: &[u8], limit: Duration) -> Vec<u8> {
    let mut server = EchoServer { listener: listen(&mut sim.server, 7, 8), streams: Vec::new(), accepted: 0 };
    let fd = sim.client.socket(Kind::Stream).unwrap();
    assert_eq!(sim.client.connect(fd, server_addr(7), sim.now), Err(Errno::InProgress));
    let (mut sent, mut echoed, mut buffer) = (0, Vec::new(), [0u8; 4096]);
    let finished = sim.run_until(limit, |sim| {
        server.step(&mut sim.server, sim.now);
        let now = sim.now;
        if sim.client.connect(fd, server_addr(7), now) != Ok(()) {
            return false;
        }
        if sent < data.len()
            && let Ok(len) = sim.client.send(fd, &data[sent..], now)
        {
            sent += len;
            if sent == data.len() {
                sim.client.shutdown(fd, How::Write, now).unwrap();
            }
        }
        loop {
            match sim.client.recv(fd, &mut buffer, now) {
                Ok(0) => return true,
                Ok(len) => echoed.extend_from_slice(&buffer[..len]),
                Err(Errno::WouldBlock) => return false,
                Err(error) => panic!("client recv: {error}"),
            }
        }
    });
    assert!(finished, "echo of {} bytes unfinished after {limit:?}: sent {sent}, echoed {}", data.len(), echoed.len());
    sim.client.close(fd, sim.now).unwrap();
    echoed
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn a_100_kb_echo_arrives_whole_through_loss_duplication_and_reordering() {
    for seed in [1, 2, 3] {
        let mut sim = Sim::new(seed, Faults { loss: 30, duplicate: 30, reorder: 100 });
        let data = pattern(100 * 1024);
        let echoed = echo_through(&mut sim, &data, Duration::from_secs(600));
        assert!(echoed == data, "seed {seed}: the echo differs ({} of {} bytes)", echoed.len(), data.len());
        assert!(sim.counts.iter().all(|&count| count >= 5), "seed {seed}: the wire misbehaved too little: {:?}", sim.counts);
    }
}

#[test]
fn a_clean_wire_echoes_fast_and_leaves_nothing_in_smoltcp() {
    let mut sim = Sim::new(9, Faults { loss: 0, duplicate: 0, reorder: 0 });
    let start = sim.now;
    let data = pattern(64 * 1024);
    assert!(echo_through(&mut sim, &data, Duration::from_secs(10)) == data);
    assert!(sim.now - start < Duration::from_secs(2), "took {:?}", sim.now - start);
    sim.run_until(Duration::from_secs(2), |sim| sim.server.stats().connections == 1 && sim.client.stats().connections == 0);
    let (server, client) = (sim.server.stats(), sim.client.stats());
    assert_eq!(server.connections, 1, "only the listening socket is left: {server:?}");
    assert_eq!(client.connections, 0, "{client:?}");
    assert_eq!(client.time_waits, 1, "the client closed first: its tuple waits outside smoltcp");
    assert_eq!(server.time_waits, 0);
}

#[test]
fn the_backlog_bounds_connections_not_yet_accepted_and_a_full_one_drops_syns_not_refuses() {
    let mut sim = Sim::new(4, Faults { loss: 0, duplicate: 0, reorder: 0 });
    let listener = listen(&mut sim.server, 80, 4);
    let connect_all = |sim: &mut Sim, count: usize| -> Vec<Fd> {
        let now = sim.now;
        (0..count)
            .map(|_| {
                let fd = sim.client.socket(Kind::Stream).unwrap();
                assert_eq!(sim.client.connect(fd, server_addr(80), now), Err(Errno::InProgress));
                fd
            })
            .collect()
    };
    // A burst of 12: all wait in the half-open table and complete (the backlog counts
    // connections made, as Linux's accept queue does).
    let burst = connect_all(&mut sim, 12);
    sim.run_until(Duration::from_millis(100), |_| false);
    assert_eq!(sim.server.stats().syns_dropped, 0);
    assert!(burst.iter().all(|&fd| sim.client.connect(fd, server_addr(80), sim.now) == Ok(())));
    // With 12 made and none accepted the backlog is full: a 13th is dropped, not refused, and
    // gets in by retrying once the program accepts.
    let late = connect_all(&mut sim, 1)[0];
    sim.run_until(Duration::from_millis(100), |_| false);
    assert_eq!(sim.server.stats().syns_dropped, 1);
    assert_eq!(sim.client.connect(late, server_addr(80), sim.now), Err(Errno::Already));
    let mut accepted = Vec::new();
    let all_in = sim.run_until(Duration::from_secs(30), |sim| {
        while let Ok((fd, _)) = sim.server.accept(listener) {
            accepted.push(fd);
        }
        sim.client.connect(late, server_addr(80), sim.now) == Ok(())
    });
    assert!(all_in, "the dropped SYN was retried and accepted");
    sim.run_until(Duration::from_millis(10), |_| false);
    while let Ok((fd, _)) = sim.server.accept(listener) {
        accepted.push(fd);
    }
    assert_eq!(accepted.len(), 13);
}

#[test]
fn a_handshake_completes_when_its_ack_waits_behind_a_flood_of_syns() {
    let mut sim = Sim::new(7, Faults { loss: 0, duplicate: 0, reorder: 0 });
    let listener = listen(&mut sim.server, 80, 128);
    let client = sim.client.socket(Kind::Stream).unwrap();
    assert_eq!(sim.client.connect(client, server_addr(80), sim.now), Err(Errno::InProgress));
    // The client's SYN crosses, the server answers it: its half-open connection is the newest.
    sim.step();
    sim.step();
    // The server falls behind (a busy machine): 1 000 spoofed SYNs arrive, then the client's
    // ACK, before it polls again. Served in arrival order, the SYNs would evict the client's
    // half-open connection (the table holds 256) before its ACK is read, and the ACK would be
    // answered with a reset.
    for n in 0..1_000u32 {
        let spoofed = [10, 0, 4, (n % 250) as u8 + 1];
        sim.server.link().deliver(tcp_packet((spoofed, 2000 + (n / 250) as u16), (SERVER, 80), TcpControl::Syn, n * 7919, None, b""));
    }
    sim.client.poll(sim.now);
    let acks = sim.client.link().take_sent();
    assert_eq!(segments_to(SERVER, &acks).iter().filter(|segment| segment.ack && !segment.syn).count(), 1, "the client's ACK");
    for packet in acks {
        sim.server.link().deliver(packet);
    }
    let mut accepted = None;
    assert!(
        sim.run_until(Duration::from_millis(100), |sim| {
            accepted = accepted.or(sim.server.accept(listener).ok());
            accepted.is_some()
        }),
        "the client's connection was made: {:?}",
        sim.server.stats()
    );
    assert_eq!(sim.client.connect(client, server_addr(80), sim.now), Ok(()));
    let stats = sim.server.stats();
    assert_eq!(stats.half_open_evicted, 1_000 - 256, "the flood evicted only its own: {stats:?}");
    let (served, _) = accepted.unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(sim.client.send(client, b"x", sim.now), Ok(1));
    assert!(sim.run_until(Duration::from_secs(1), |sim| sim.server.recv(served, &mut byte, sim.now) == Ok(1)), "the connection carries data");
}

#[test]
fn a_flood_of_syns_that_never_complete_does_not_lock_out_a_real_client() {
    let mut sim = Sim::new(6, Faults { loss: 0, duplicate: 0, reorder: 0 });
    let listener = listen(&mut sim.server, 80, 128);
    // 2 000 SYNs from addresses that never answer (their SYN-ACKs go nowhere).
    for n in 0..2_000u32 {
        let spoofed = [10, 0, 3, (n % 250) as u8 + 1];
        sim.server.link().deliver(tcp_packet((spoofed, 1024 + (n / 250) as u16), (SERVER, 80), TcpControl::Syn, n * 7919, None, b""));
        if n % 100 == 0 {
            sim.step();
        }
    }
    sim.run_until(Duration::from_millis(50), |_| false);
    let stats = sim.server.stats();
    assert_eq!(stats.half_open_evicted, 2_000 - 256, "the half-open table holds 256: {stats:?}");
    assert_eq!(stats.syns_dropped, 0, "{stats:?}");
    let client = sim.client.socket(Kind::Stream).unwrap();
    let _ = sim.client.connect(client, server_addr(80), sim.now);
    let mut accepted = None;
    assert!(sim.run_until(Duration::from_secs(2), |sim| {
        accepted = accepted.or(sim.server.accept(listener).ok());
        accepted.is_some()
    }), "the real client got in");
    assert_eq!(sim.client.connect(client, server_addr(80), sim.now), Ok(()));
    // The flood's half-open connections (and their buffers) go after HALF_OPEN_TIMEOUT; the
    // real one stays.
    let before = sim.server.stats().connections;
    sim.run_until(HALF_OPEN_TIMEOUT + Duration::from_secs(1), |_| false);
    let stats = sim.server.stats();
    assert_eq!(stats.half_open_evicted + stats.half_open_expired, 2_000, "every spoofed SYN's connection went: {stats:?}");
    assert_eq!(stats.connections, before - 255, "the 255 the real client's SYN did not evict: {stats:?}");
    let mut byte = [0u8; 1];
    let (served, _) = accepted.unwrap();
    assert_eq!(sim.client.send(client, b"x", sim.now), Ok(1));
    assert!(sim.run_until(Duration::from_secs(1), |sim| sim.server.recv(served, &mut byte, sim.now) == Ok(1)), "the real connection lives on");
}

#[test]
fn time_wait_leaves_smoltcp_answers_a_retransmitted_fin_and_reopens_for_a_later_syn() {
    let mut sim = Sim::new(5, Faults { loss: 0, duplicate: 0, reorder: 0 });
    let listener = listen(&mut sim.server, 80, 4);
    let client = sim.client.socket(Kind::Stream).unwrap();
    sim.client.bind(client, 5000).unwrap();
    let _ = sim.client.connect(client, server_addr(80), sim.now);
    let mut accepted = None;
    assert!(sim.run_until(Duration::from_secs(2), |sim| {
        accepted = accepted.or(sim.server.accept(listener).ok().map(|(fd, _)| fd));
        accepted.is_some()
    }));
    let server_side = accepted.unwrap();
    sim.server.close(server_side, sim.now).unwrap();
    assert!(sim.run_until(Duration::from_secs(2), |sim| sim.client.recv(client, &mut [0; 8], sim.now) == Ok(0)));
    sim.client.close(client, sim.now).unwrap();
    assert!(sim.run_until(Duration::from_secs(2), |sim| sim.server.stats().time_waits == 1));
    assert_eq!(sim.server.stats().connections, 1, "the connection left smoltcp; the listening socket stays");
    // The client's last ACK was lost: it retransmits its FIN. The server acknowledges again.
    let sent = sim.server.link().take_sent();
    assert!(sent.is_empty());
    let client_fin_end = 0x1000; // any: the answer echoes what the segment says
    let fin = tcp_packet((CLIENT, 5000), (SERVER, 80), TcpControl::Fin, client_fin_end - 1, Some(777), b"");
    sim.server.link().deliver(fin);
    sim.server.poll(sim.now);
    let answer = segments_to_client(&sim.server.link().take_sent());
    assert_eq!(answer.len(), 1, "{answer:?}");
    let ack = answer[0];
    assert_eq!((ack.tuple.remote_port, ack.tuple.local_port), (80, 5000));
    assert!(ack.ack && !ack.syn && !ack.fin && !ack.rst, "a bare ACK: {ack:?}");
    assert_eq!((ack.seq, ack.ack_number), (777, client_fin_end));
    // A new SYN far past the old sequence space reopens the tuple.
    let syn = tcp_packet((CLIENT, 5000), (SERVER, 80), TcpControl::Syn, 0x4000_0000, None, b"");
    sim.server.link().deliver(syn);
    sim.server.poll(sim.now);
    let answer = segments_to_client(&sim.server.link().take_sent());
    assert_eq!(answer.len(), 1, "{answer:?}");
    assert!(answer[0].syn && answer[0].ack && answer[0].ack_number == 0x4000_0001, "a SYN-ACK: {answer:?}");
    assert_eq!(sim.server.stats().time_wait_reopened, 1);
    assert_eq!(sim.server.stats().time_waits, 0);
}

#[test]
fn data_left_unread_survives_the_end_of_the_connection() {
    let mut sim = Sim::new(6, Faults { loss: 0, duplicate: 0, reorder: 0 });
    let listener = listen(&mut sim.server, 80, 4);
    let client = sim.client.socket(Kind::Stream).unwrap();
    let _ = sim.client.connect(client, server_addr(80), sim.now);
    assert!(sim.run_until(Duration::from_secs(2), |sim| sim.client.connect(client, server_addr(80), sim.now).is_ok()));
    sim.client.send(client, b"last words", sim.now).unwrap();
    sim.client.shutdown(client, How::Write, sim.now).unwrap();
    let mut accepted = None;
    assert!(sim.run_until(Duration::from_secs(2), |sim| {
        accepted = accepted.or(sim.server.accept(listener).ok().map(|(fd, _)| fd));
        accepted.is_some() && sim.server.readiness(accepted.unwrap()).unwrap().hangup
    }));
    let server_side = accepted.unwrap();
    // The server closes its half without reading; the connection ends (LAST-ACK, CLOSED).
    sim.server.shutdown(server_side, How::Write, sim.now).unwrap();
    assert!(sim.run_until(Duration::from_secs(2), |sim| sim.server.stats().connections == 1));
    let mut buffer = [0u8; 32];
    assert_eq!(sim.server.recv(server_side, &mut buffer, sim.now), Ok(10));
    assert_eq!(&buffer[..10], b"last words");
    assert_eq!(sim.server.recv(server_side, &mut buffer, sim.now), Ok(0));
}

#[test]
fn refusals_timeouts_and_port_exhaustion_have_their_errnos() {
    let mut sim = Sim::new(7, Faults { loss: 0, duplicate: 0, reorder: 0 });
    // Nobody listens on 81: the server's interface answers RST.
    let fd = sim.client.socket(Kind::Stream).unwrap();
    assert_eq!(sim.client.connect(fd, server_addr(81), sim.now), Err(Errno::InProgress));
    assert_eq!(sim.client.connect(fd, server_addr(81), sim.now), Err(Errno::Already));
    assert!(sim.run_until(Duration::from_secs(2), |sim| sim.client.connect(fd, server_addr(81), sim.now) != Err(Errno::Already)));
    assert_eq!(sim.client.connect(fd, server_addr(81), sim.now), Err(Errno::ConnectionRefused));
    assert_eq!(sim.client.take_error(fd), Ok(Some(Errno::ConnectionRefused)));
    assert_eq!(sim.client.take_error(fd), Ok(None), "reported once");
    // An address nobody has: the attempt times out.
    let fd = sim.client.socket(Kind::Stream).unwrap();
    let silent = SocketAddrV4::new([10, 0, 2, 99].into(), 80);
    assert_eq!(sim.client.connect(fd, silent, sim.now), Err(Errno::InProgress));
    assert!(!sim.run_until(Duration::from_secs(19), |sim| sim.client.connect(fd, silent, sim.now) != Err(Errno::Already)));
    assert!(sim.run_until(Duration::from_secs(2), |sim| sim.client.connect(fd, silent, sim.now) == Err(Errno::TimedOut)));
    // Another program on the client holds every local port to the server's port 80.
    let filters = sim.client.link().filters.clone();
    let held: Vec<_> = super::stack::EPHEMERAL
        .chain([6000])
        .map(|port| filters.borrow_mut().insert(&dpf::Filter::tcp_connection(CLIENT, port, SERVER, 80), 2, 0).unwrap())
        .collect();
    assert_eq!(held.len(), 16384);
    let fd = sim.client.socket(Kind::Stream).unwrap();
    assert_eq!(sim.client.connect(fd, server_addr(80), sim.now), Err(Errno::AddrNotAvailable));
    sim.client.bind(fd, 6000).unwrap();
    assert_eq!(sim.client.connect(fd, server_addr(80), sim.now), Err(Errno::AddrInUse));
    // A second program on the same machine binding a held port.
    listen(&mut sim.server, 80, 1);
    let other = SimLink::new(sim.server.link().filters.clone(), 2);
    let mut other = Stack::new(other, StackConfig { ip: SERVER, prefix: 24, gateway: None, seed: 3 }, sim.now);
    let fd = other.socket(Kind::Stream).unwrap();
    other.bind(fd, 80).unwrap();
    assert_eq!(other.listen(fd, 1), Err(Errno::AddrInUse));
    let udp = other.socket(Kind::Datagram).unwrap();
    other.bind(udp, 53).unwrap();
    let again = sim.server.socket(Kind::Datagram).unwrap();
    assert_eq!(sim.server.bind(again, 53), Err(Errno::AddrInUse));
    // Bad descriptors and bad arguments.
    assert_eq!(sim.server.send(999, b"x", sim.now), Err(Errno::BadDescriptor));
    assert_eq!(sim.server.set_option(again, SockOpt::RecvBuffer(1)), Err(Errno::Invalid));
    assert_eq!(sim.server.recv(again, &mut [0; 4], sim.now), Err(Errno::NotSupported));
}

#[test]
fn udp_datagrams_go_both_ways_with_their_senders() {
    let mut sim = Sim::new(8, Faults { loss: 0, duplicate: 0, reorder: 0 });
    let server = sim.server.socket(Kind::Datagram).unwrap();
    sim.server.bind(server, 7).unwrap();
    let client = sim.client.socket(Kind::Datagram).unwrap();
    assert_eq!(sim.client.send_to(client, &[0; 1473], server_addr(7), sim.now), Err(Errno::MessageTooLong));
    assert_eq!(sim.client.send_to(client, b"ping", server_addr(7), sim.now), Ok(4));
    let client_port = sim.client.local_addr(client).unwrap().port();
    assert!(super::stack::EPHEMERAL.contains(&client_port), "bound to a random port: {client_port}");
    let mut buffer = [0u8; 64];
    let mut got = None;
    assert!(sim.run_until(Duration::from_secs(1), |sim| {
        got = sim.server.recv_from(server, &mut buffer).ok();
        got.is_some()
    }));
    let (len, from) = got.unwrap();
    assert_eq!((&buffer[..len], from), (&b"ping"[..], SocketAddrV4::new(CLIENT.into(), client_port)));
    sim.server.send_to(server, b"pong", from, sim.now).unwrap();
    let mut got = None;
    assert!(sim.run_until(Duration::from_secs(1), |sim| {
        got = sim.client.recv_from(client, &mut buffer).ok();
        got.is_some()
    }));
    assert_eq!(&buffer[..got.unwrap().0], b"pong");
}

#[test]
fn the_interface_answers_ping_and_refuses_a_port_nobody_holds() {
    use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr};
    let mut sim = Sim::new(10, Faults { loss: 0, duplicate: 0, reorder: 0 });
    let data = [0x42u8; 32];
    let icmp = Icmpv4Repr::EchoRequest { ident: 7, seq_no: 1, data: &data };
    let ip = Ipv4Repr { src_addr: CLIENT.into(), dst_addr: SERVER.into(), next_header: IpProtocol::Icmp, payload_len: icmp.buffer_len(), hop_limit: 64 };
    let mut bytes = vec![0u8; ip.buffer_len() + icmp.buffer_len()];
    let caps = ChecksumCapabilities::default();
    let mut packet = Ipv4Packet::new_unchecked(&mut bytes[..]);
    ip.emit(&mut packet, &caps);
    icmp.emit(&mut Icmpv4Packet::new_unchecked(packet.payload_mut()), &caps);
    sim.server.link().deliver(bytes);
    sim.server.poll(sim.now);
    let sent = sim.server.link().take_sent();
    assert_eq!(sent.len(), 1, "an echo reply");
    let reply = Ipv4Packet::new_checked(&sent[0][..]).unwrap();
    assert_eq!((reply.src_addr(), reply.dst_addr(), reply.next_header()), (SERVER.into(), CLIENT.into(), IpProtocol::Icmp));
    let echo = Icmpv4Repr::parse(&Icmpv4Packet::new_checked(reply.payload()).unwrap(), &caps).unwrap();
    assert_eq!(echo, Icmpv4Repr::EchoReply { ident: 7, seq_no: 1, data: &data });
    // A SYN to a port nobody listens on is refused with a RST.
    sim.server.link().deliver(tcp_packet((CLIENT, 4000), (SERVER, 99), TcpControl::Syn, 10, None, b""));
    sim.server.poll(sim.now);
    let answer = segments_to_client(&sim.server.link().take_sent());
    assert!(answer.len() == 1 && answer[0].rst && answer[0].ack_number == 11, "{answer:?}");
}

#[test]
fn a_ping_socket_gets_the_replies_to_its_echo_requests() {
    let mut sim = Sim::new(15, Faults { loss: 0, duplicate: 0, reorder: 0 });
    let ping = sim.client.socket(Kind::Ping).unwrap();
    assert_eq!(sim.client.send_to(ping, &[0; 1473], server_addr(0), sim.now), Err(Errno::MessageTooLong));
    assert_eq!(sim.client.send_to(ping, b"are you there", server_addr(0), sim.now), Ok(13));
    let ident = sim.client.local_addr(ping).unwrap().port();
    let mut buffer = [0u8; 64];
    let mut got = None;
    assert!(sim.run_until(Duration::from_secs(1), |sim| {
        got = sim.client.recv_from(ping, &mut buffer).ok();
        got.is_some()
    }));
    let (len, from) = got.unwrap();
    assert_eq!((&buffer[..len], *from.ip()), (&b"are you there"[..], SERVER.into()));
    assert_eq!(sim.client.recv_from(ping, &mut buffer), Err(Errno::WouldBlock), "one reply");
    // Another socket of the program cannot take the same identifier.
    let again = sim.client.socket(Kind::Ping).unwrap();
    assert_eq!(sim.client.bind(again, ident), Err(Errno::AddrInUse));
}

/// An ACK from the client at `CLIENT:4000` as Linux sends one while it holds data past a hole:
/// SACK blocks for `sacked`, and a window that grows with each.
fn sack_ack(seq: u32, ack: u32, window: u16, sacked: (u32, u32)) -> Vec<u8> {
    let tcp = TcpRepr {
        sack_ranges: [Some(sacked), None, None],
        max_seg_size: None,
        ..super::segment::plain_tcp((4000, 80), TcpControl::None, seq, Some(ack), window, b"")
    };
    let mut bytes = vec![0u8; super::segment::ipv4_tcp_len(&tcp)];
    super::segment::emit_ipv4_tcp(CLIENT, SERVER, &tcp, &mut bytes);
    bytes
}

#[test]
fn duplicate_acks_whose_window_grows_still_bring_a_fast_retransmit() {
    let mut sim = Sim::new(8, Faults { loss: 0, duplicate: 0, reorder: 0 });
    let listener = listen(&mut sim.server, 80, 8);
    let server = &mut sim.server;
    server.link().deliver(tcp_packet((CLIENT, 4000), (SERVER, 80), TcpControl::Syn, 1000, None, b""));
    server.poll(sim.now);
    let syn_ack = segments_to_client(&server.link().take_sent()).pop().expect("a SYN-ACK");
    let mut next = syn_ack.seq.wrapping_add(1);
    server.link().deliver(tcp_packet((CLIENT, 4000), (SERVER, 80), TcpControl::None, 1001, Some(next), b""));
    server.poll(sim.now);
    let (stream, _) = server.accept(listener).expect("accepted");
    assert_eq!(server.send(stream, &pattern(8 * 536), sim.now), Ok(8 * 536));
    server.poll(sim.now);
    let sent = segments_to_client(&server.link().take_sent());
    assert!(sent.len() >= 6, "a window's worth of segments: {sent:?}");
    // The first segment arrives, the second is lost, four after it arrive: Linux acknowledges
    // the first, then sends duplicates with SACK blocks and a window grown each time.
    next = next.wrapping_add(sent[0].payload_len);
    let hole_end = next.wrapping_add(sent[1].payload_len);
    server.link().deliver(tcp_packet((CLIENT, 4000), (SERVER, 80), TcpControl::None, 1001, Some(next), b""));
    for (n, segment) in sent[2..6].iter().enumerate() {
        server.link().deliver(sack_ack(1001, next, 9000 + 1000 * n as u16, (hole_end, segment.seq.wrapping_add(segment.payload_len))));
    }
    sim.now += Duration::from_millis(5);
    server.poll(sim.now);
    let again = segments_to_client(&server.link().take_sent());
    assert!(again.iter().any(|segment| segment.seq == next && segment.payload_len > 0), "the lost segment was sent again at once: {again:?}");
    assert_eq!(server.stats().duplicate_acks_evened, 4, "{:?}", server.stats());
}
