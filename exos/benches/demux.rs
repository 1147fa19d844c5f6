//! `cargo bench -p exos --bench demux`: what one received TCP data segment costs exos's
//! stack on the host against the number of open connections (the 4-tuple hash, the
//! connection's own smoltcp socket set, its ACK), next to smoltcp given every connection in
//! one socket set (what a stack without the demultiplexer pays: smoltcp scans the set for
//! each packet and for egress). The segments cycle over all the connections. Writes
//! `docs/demux-bench.json` and `docs/demux-bench.md`.
//!
//! Figures are the median of timed batches; every figure is measured in each of several
//! rounds, interleaved, and the best round is kept (the machine is shared and noisy).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::rc::Rc;

use exos::tcpip::{Errno, Kind, Link, Stack, StackConfig};
use smoltcp::iface::{Interface, SocketSet};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

const SERVER: [u8; 4] = [10, 0, 0, 1];
const CLIENT: [u8; 4] = [10, 0, 0, 2];
const SIZES: [usize; 4] = [1, 100, 1000, 10_000];
const BATCHES: usize = 11;
const ROUNDS: usize = 5;
const FIGURES: [&str; 2] = ["exos stack (demultiplexed)", "smoltcp, one socket set"];

/// Packets a machine sent.
type Outbox = Rc<RefCell<Vec<Vec<u8>>>>;

/// The sending half: keeps what is sent while `recording`, else only fills a scratch buffer.
struct Sender {
    outbox: Outbox,
    recording: bool,
    scratch: Vec<u8>,
}

struct TxToken<'a> {
    sender: &'a mut Sender,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        self.sender.scratch.resize(len, 0);
        let result = f(&mut self.sender.scratch);
        if self.sender.recording {
            self.sender.outbox.borrow_mut().push(self.sender.scratch.clone());
        }
        result
    }
}

struct RxToken<'a>(&'a [u8]);

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl phy::Device for Sender {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        None
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        Some(TxToken { sender: self })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = 1500;
        caps
    }
}

/// A machine's link: received packets are indices into a shared store, so a measured
/// delivery copies nothing. Every claim is granted (one process on the machine).
struct BenchLink {
    store: Rc<RefCell<Vec<Vec<u8>>>>,
    inbox: VecDeque<usize>,
    current: Vec<u8>,
    sender: Sender,
}

impl BenchLink {
    fn new(store: Rc<RefCell<Vec<Vec<u8>>>>) -> BenchLink {
        BenchLink { store, inbox: VecDeque::new(), current: Vec::new(), sender: Sender { outbox: Rc::default(), recording: true, scratch: Vec::new() } }
    }

    fn deliver(&mut self, packet: Vec<u8>) {
        let mut store = self.store.borrow_mut();
        store.push(packet);
        self.inbox.push_back(store.len() - 1);
    }
}

impl Link for BenchLink {
    type Sender = Sender;
    type Claim = ();

    fn claim(&mut self, _filter: &dpf::Filter) -> Result<(), xok_abi::Error> {
        Ok(())
    }

    fn next(&mut self) -> (Option<&[u8]>, &mut Sender) {
        match self.inbox.front() {
            Some(&index) => {
                // One copy per received packet into the link's frame buffer, as a ring slot holds it.
                self.current.clear();
                self.current.extend_from_slice(&self.store.borrow()[index]);
                (Some(&self.current), &mut self.sender)
            }
            None => (None, &mut self.sender),
        }
    }

    fn consumed(&mut self) {
        self.inbox.pop_front();
    }

    fn sender(&mut self) -> &mut Sender {
        &mut self.sender
    }

    fn can_send(&mut self) -> bool {
        true
    }

    fn flush(&mut self) {}
}

/// A device for plain smoltcp: receives packets of a store by index (copied into a frame
/// buffer, as the stack's link does), sends like [`Sender`].
struct PlainDevice {
    store: Vec<Vec<u8>>,
    inbox: VecDeque<usize>,
    current: Vec<u8>,
    sender: Sender,
}

impl PlainDevice {
    fn deliver(&mut self, packet: Vec<u8>) {
        self.store.push(packet);
        self.inbox.push_back(self.store.len() - 1);
    }
}

impl phy::Device for PlainDevice {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let index = self.inbox.pop_front()?;
        self.current.clear();
        self.current.extend_from_slice(&self.store[index]);
        Some((RxToken(&self.current), TxToken { sender: &mut self.sender }))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        Some(TxToken { sender: &mut self.sender })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.sender.capabilities()
    }
}

fn config(ip: [u8; 4], seed: u64) -> StackConfig {
    StackConfig { ip, prefix: 24, gateway: None, seed }
}

fn time(f: impl FnMut()) -> f64 {
    xok_codegen::bench::time_per_call(BATCHES, 0.002, f).median
}

struct Case {
    connections: usize,
    server: Stack<BenchLink>,
    plain: (Interface, PlainDevice, SocketSet<'static>),
    /// One data segment per connection, client to server: indices in the server link's store.
    stored: Vec<usize>,
    /// The same for the plain smoltcp server.
    plain_stored: Vec<usize>,
    next: usize,
    now: Instant,
    best: [f64; 2],
}

/// Moves everything `from` sent to `to`.
fn shuttle(from: &mut Stack<BenchLink>, to: &mut Stack<BenchLink>) {
    for packet in from.link().sender.outbox.borrow_mut().drain(..) {
        to.link().deliver(packet);
    }
}

impl Case {
    fn new(n: usize) -> Case {
        let store = Rc::new(RefCell::new(Vec::new()));
        let mut now = Instant::from_secs(1);
        let mut server = Stack::new(BenchLink::new(store.clone()), config(SERVER, 1), now);
        let mut client = Stack::new(BenchLink::new(Rc::new(RefCell::new(Vec::new()))), config(CLIENT, 2), now);
        let listener = server.socket(Kind::Stream).unwrap();
        server.bind(listener, 80).unwrap();
        server.listen(listener, 4096).unwrap();
        let to = SocketAddrV4::new(SERVER.into(), 80);
        let fds: Vec<usize> = (0..n)
            .map(|_| {
                let fd = client.socket(Kind::Stream).unwrap();
                assert_eq!(client.connect(fd, to, now), Err(Errno::InProgress));
                fd
            })
            .collect();
        // The plain smoltcp server: every connection in one set (n listening sockets).
        let mut plain_device = PlainDevice { store: Vec::new(), inbox: VecDeque::new(), current: Vec::new(), sender: Sender { outbox: Rc::default(), recording: true, scratch: Vec::new() } };
        let mut plain_iface = Interface::new(smoltcp::iface::Config::new(HardwareAddress::Ip), &mut plain_device, now);
        plain_iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(IpAddress::v4(SERVER[0], SERVER[1], SERVER[2], SERVER[3]), 24));
        });
        let mut plain_set = SocketSet::new(Vec::new());
        for _ in 0..n {
            let mut socket = tcp::Socket::new(tcp::SocketBuffer::new(vec![0; 16384]), tcp::SocketBuffer::new(vec![0; 16384]));
            socket.listen(80).unwrap();
            plain_set.add(socket);
        }
        let mut plain_client = Stack::new(BenchLink::new(Rc::new(RefCell::new(Vec::new()))), config(CLIENT, 3), now);
        let plain_fds: Vec<usize> = (0..n)
            .map(|_| {
                let fd = plain_client.socket(Kind::Stream).unwrap();
                let _ = plain_client.connect(fd, to, now);
                fd
            })
            .collect();
        for _ in 0..5000 {
            client.poll(now);
            server.poll(now);
            while server.accept(listener).is_ok() {}
            shuttle(&mut client, &mut server);
            shuttle(&mut server, &mut client);
            plain_client.poll(now);
            for packet in plain_client.link().sender.outbox.borrow_mut().drain(..) {
                plain_device.deliver(packet);
            }
            plain_iface.poll(now, &mut plain_device, &mut plain_set);
            for packet in plain_device.sender.outbox.borrow_mut().drain(..) {
                plain_client.link().deliver(packet);
            }
            let connected = |stack: &mut Stack<BenchLink>, fds: &[usize]| fds.iter().all(|&fd| stack.connect(fd, to, now) == Ok(()));
            if connected(&mut client, &fds) && connected(&mut plain_client, &plain_fds) {
                break;
            }
            now += Duration::from_millis(1);
        }
        assert!(fds.iter().all(|&fd| client.connect(fd, to, now) == Ok(())), "{n}: all connected");
        assert!(plain_fds.iter().all(|&fd| plain_client.connect(fd, to, now) == Ok(())), "{n}: all connected to plain smoltcp");
        assert_eq!(server.stats().connections, n + 1);
        // One data segment per connection, each client to its server.
        let segment_of = |stack: &mut Stack<BenchLink>, fd: usize| {
            stack.send(fd, b"x", now).unwrap();
            let sent: Vec<Vec<u8>> = stack.link().sender.outbox.borrow_mut().drain(..).collect();
            assert_eq!(sent.len(), 1);
            sent.into_iter().next().unwrap()
        };
        let stored = fds
            .iter()
            .map(|&fd| {
                let segment = segment_of(&mut client, fd);
                let mut store = store.borrow_mut();
                store.push(segment);
                store.len() - 1
            })
            .collect();
        let plain_stored = plain_fds
            .iter()
            .map(|&fd| {
                plain_device.store.push(segment_of(&mut plain_client, fd));
                plain_device.store.len() - 1
            })
            .collect();
        server.link().sender.recording = false;
        plain_device.sender.recording = false;
        Case { connections: n, server, plain: (plain_iface, plain_device, plain_set), stored, plain_stored, next: 0, now, best: [f64::INFINITY; 2] }
    }

    fn round(&mut self) {
        let n = self.connections;
        let now = self.now;
        let (server, stored, next) = (&mut self.server, &self.stored, &mut self.next);
        let demultiplexed = time(|| {
            *next = (*next + 1) % n;
            server.link().inbox.push_back(stored[*next]);
            server.poll(now);
        });
        let (iface, device, set) = &mut self.plain;
        let (stored, next) = (&self.plain_stored, &mut self.next);
        let plain = time(|| {
            *next = (*next + 1) % n;
            device.inbox.push_back(stored[*next]);
            iface.poll(now, device, set);
        });
        for (best, measured) in self.best.iter_mut().zip([demultiplexed, plain]) {
            *best = best.min(measured);
        }
    }
}

fn main() {
    let mut cases: Vec<Case> = SIZES.iter().map(|&n| Case::new(n)).collect();
    for _ in 0..ROUNDS {
        for case in &mut cases {
            case.round();
        }
    }
    let table = xok_codegen::bench::ConnectionTable {
        title: "Receiving a TCP segment: exos's demultiplexer against one smoltcp socket set",
        command: "cargo bench -p exos --bench demux",
        description: &format!(
            "ns per received 1-byte data segment (its handling and the ACK it\ncauses), cycling over every open connection; best of {ROUNDS} interleaved rounds of the median of {BATCHES} batches."
        ),
        unit: "ns per segment",
        figures: &FIGURES,
        rows: cases.iter().map(|case| (case.connections, case.best.iter().map(|ns| format!("{ns:.0}")).collect())).collect(),
    };
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    print!("{}", table.write(&docs, "demux-bench"));
}
