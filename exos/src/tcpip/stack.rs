//! The socket layer's core: POSIX-shaped calls on descriptors over smoltcp, none of which
//! blocks (a call that would wait returns [`Errno::WouldBlock`]) and all of which take the time
//! as an argument, so the same code runs in a program and in host simulations.
//!
//! smoltcp scans its whole socket set for every packet, so each connection lives in a socket
//! set of its own and received packets are demultiplexed first, through a hash on the 4-tuple
//! ([`Tuple`]); a listening port has one listening socket, and a connection request that turns
//! it into a connection moves it to the tuple table and re-arms a fresh one, up to `backlog`
//! connections that wait for `accept` (more SYNs are dropped, and the peers retry). A connection
//! that reaches TIME_WAIT leaves smoltcp for the compact [`TimeWaits`] table; data it still
//! held unread is kept (smoltcp would forget it when the connection ends). Each connection's
//! next smoltcp timer sits in a heap, so a poll touches only connections with work to do.

use super::errno::Errno;
use super::link::{Link, OnePacket};
use super::segment::{Destination, Segment, Tuple, classify, duplicate_ack_window, emit_ipv4_tcp, ipv4_tcp_len, plain_tcp, with_window};
use super::time_wait::{TimeWaits, Verdict};
use crate::reassembly::ReassemblyCounts;
use alloc::collections::{BinaryHeap, VecDeque};
use alloc::vec;
use alloc::vec::Vec;
use core::cmp::Reverse;
use core::net::{Ipv4Addr, SocketAddrV4};
use hashbrown::HashMap;
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, ChecksumCapabilities};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{HardwareAddress, Icmpv4Packet, Icmpv4Repr, IpAddress, IpCidr, IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl};

/// A socket descriptor: an index into the process's table.
pub type Fd = usize;

/// Descriptors a process may hold at once (EMFILE past it).
pub const MAX_DESCRIPTORS: usize = 16384;
/// Default bytes of receive and of send buffer per socket (SO_RCVBUF, SO_SNDBUF).
pub const DEFAULT_BUFFER: usize = 16 * 1024;
/// The bounds a buffer size option must be within.
pub const BUFFER_RANGE: core::ops::RangeInclusive<usize> = 1024..=1024 * 1024;
/// Local ports an unbound socket is given (the IANA dynamic range).
pub const EPHEMERAL: core::ops::Range<u16> = 49152..65535;
/// Ports tried before a call gives up with [`Errno::AddrNotAvailable`].
const PORT_TRIES: usize = 32;
/// How long a connection attempt waits for the peer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a half-open connection (a SYN answered, its ACK not come) is kept: smoltcp would
/// keep it for ever, and with it its buffers. Linux gives up after five SYN-ACK retries (about
/// 63 s); smoltcp's first four, from 1 s and doubled, are out by 15 s.
pub const HALF_OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Datagrams a UDP socket queues each way.
const DATAGRAMS_QUEUED: usize = 32;
/// The longest UDP payload (no IP fragmentation).
pub const UDP_PAYLOAD_MAX: usize = 1472;

/// What `socket` makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// TCP (SOCK_STREAM).
    Stream,
    /// UDP (SOCK_DGRAM).
    Datagram,
    /// ICMP echo, a ping socket (SOCK_DGRAM with IPPROTO_ICMP): bound to an identifier, it
    /// sends echo requests and receives the replies with that identifier.
    Ping,
}

/// Which half `shutdown` closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// No more receiving (SHUT_RD).
    Read,
    /// No more sending: the peer reads the end of the stream (SHUT_WR).
    Write,
    /// Both (SHUT_RDWR).
    Both,
}

/// A socket's options, as `setsockopt` and `fcntl` set them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// TCP_NODELAY: send small segments at once (Nagle's algorithm off).
    pub nodelay: bool,
    /// SO_REUSEADDR: listen on a port while connections of it are in TIME_WAIT.
    pub reuse_addr: bool,
    /// SO_RCVBUF in bytes (for connections made after it is set).
    pub recv_buffer: usize,
    /// SO_SNDBUF in bytes (for connections made after it is set).
    pub send_buffer: usize,
    /// SO_RCVTIMEO: how long a blocking receive or accept waits (`None`: for ever).
    pub recv_timeout: Option<Duration>,
    /// SO_SNDTIMEO: how long a blocking send or connect waits (`None`: for ever).
    pub send_timeout: Option<Duration>,
    /// O_NONBLOCK: calls return [`Errno::WouldBlock`] instead of waiting.
    pub nonblocking: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nodelay: false,
            reuse_addr: false,
            recv_buffer: DEFAULT_BUFFER,
            send_buffer: DEFAULT_BUFFER,
            recv_timeout: None,
            send_timeout: None,
            nonblocking: false,
        }
    }
}

/// One option, for [`Stack::set_option`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SockOpt {
    /// TCP_NODELAY.
    NoDelay(bool),
    /// SO_REUSEADDR.
    ReuseAddr(bool),
    /// SO_RCVBUF.
    RecvBuffer(usize),
    /// SO_SNDBUF.
    SendBuffer(usize),
    /// SO_RCVTIMEO.
    RecvTimeout(Option<Duration>),
    /// SO_SNDTIMEO.
    SendTimeout(Option<Duration>),
    /// O_NONBLOCK.
    NonBlocking(bool),
}

/// What a socket is ready for, as `poll` reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// A receive (or accept) would not wait (POLLIN).
    pub readable: bool,
    /// A send would not wait; a connection attempt has ended (POLLOUT).
    pub writable: bool,
    /// The connection failed (POLLERR).
    pub error: bool,
    /// The peer has finished or the connection is over (POLLHUP).
    pub hangup: bool,
}

/// Counters, for tests, benchmarks and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets taken from the link.
    pub received: u64,
    /// Connection requests dropped because the listener's backlog was full.
    pub syns_dropped: u64,
    /// Half-open connections dropped, oldest first, to make room for new connection
    /// requests (a SYN flood's).
    pub half_open_evicted: u64,
    /// Half-open connections dropped after [`HALF_OPEN_TIMEOUT`].
    pub half_open_expired: u64,
    /// Packets dropped for a wrong IPv4, TCP, UDP or ICMP checksum.
    pub bad_checksums: u64,
    /// Duplicate ACKs with SACK blocks handed to smoltcp with the window unchanged, so that it
    /// retransmits fast (`segment::duplicate_ack_window`).
    pub duplicate_acks_evened: u64,
    /// Segments for tuples in TIME_WAIT that were answered or dropped there.
    pub time_wait_segments: u64,
    /// New connections accepted on tuples that were in TIME_WAIT.
    pub time_wait_reopened: u64,
    /// Connections in smoltcp now (listening sockets included).
    pub connections: usize,
    /// Tuples in TIME_WAIT now.
    pub time_waits: usize,
    /// Descriptors open now.
    pub descriptors: usize,
    /// What the link's reassembly did with fragments.
    pub fragments: ReassemblyCounts,
}

/// Where the stack is on the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackConfig {
    /// The machine's address.
    pub ip: [u8; 4],
    /// The network's prefix length.
    pub prefix: u8,
    /// Where packets for other networks go.
    pub gateway: Option<[u8; 4]>,
    /// Seeds initial sequence numbers and ephemeral ports.
    pub seed: u64,
}

/// How a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    /// Both sides finished.
    Graceful,
    /// The peer reset it.
    Reset,
    /// The peer refused the connection request.
    Refused,
    /// The peer stopped answering.
    TimedOut,
}

impl Ended {
    fn error(self) -> Option<Errno> {
        match self {
            Ended::Graceful => None,
            Ended::Reset => Some(Errno::ConnectionReset),
            Ended::Refused => Some(Errno::ConnectionRefused),
            Ended::TimedOut => Some(Errno::TimedOut),
        }
    }
}

/// A TCP connection (or a listening socket waiting to become one).
struct Conn<C> {
    /// Its smoltcp socket, in a set of its own, until the connection leaves smoltcp.
    tcp: Option<(SocketSet<'static>, SocketHandle)>,
    /// Its key in the tuple table, once it has a peer.
    tuple: Option<Tuple>,
    /// The filter of a connection this machine opened.
    claim: Option<C>,
    /// Data received but unread when the connection left smoltcp.
    stash: VecDeque<u8>,
    /// How it ended, once it has.
    ended: Option<Ended>,
    /// Whether the ending was reported (an error is reported once).
    reported: bool,
    /// The state at the last look.
    last_state: tcp::State,
    /// Whether it was ever established (an accept queue holds only these).
    established: bool,
    /// The sequence number past the peer's FIN, if one came.
    peer_next: u32,
    /// Whether the last segment handed to it was a RST.
    last_rst: bool,
    /// The peer's last ACK number and window (`segment::duplicate_ack_window`).
    peer_ack: Option<(u32, u16)>,
    /// Whether its descriptor was closed (it is freed once it leaves smoltcp).
    orphaned: bool,
    /// Whether this side stopped receiving (SHUT_RD).
    read_shut: bool,
    /// When a connection attempt gives up.
    connect_deadline: Option<Instant>,
    /// When its current timer entry is due (an entry is only added for an earlier time, so
    /// the heap holds about one entry per connection however many packets pass).
    scheduled: Option<Instant>,
    /// Which timer entry is current.
    timer_generation: u64,
}

impl<C> Conn<C> {
    fn new(socket: tcp::Socket<'static>, claim: Option<C>) -> Conn<C> {
        let mut set = SocketSet::new(Vec::with_capacity(1));
        let state = socket.state();
        let handle = set.add(socket);
        Conn {
            tcp: Some((set, handle)),
            tuple: None,
            claim,
            stash: VecDeque::new(),
            ended: None,
            reported: false,
            last_state: state,
            established: false,
            peer_next: 0,
            last_rst: false,
            peer_ack: None,
            orphaned: false,
            read_shut: false,
            connect_deadline: None,
            scheduled: None,
            timer_generation: 0,
        }
    }

    fn socket(&mut self) -> Option<&mut tcp::Socket<'static>> {
        self.tcp.as_mut().map(|(set, handle)| set.get_mut::<tcp::Socket>(*handle))
    }
}

/// A listening port.
struct Listener<C> {
    port: u16,
    backlog: usize,
    /// The connection slot waiting in LISTEN.
    listening: usize,
    /// Connections made and not yet accepted (some still in the handshake).
    queue: VecDeque<usize>,
    /// The connection requests' filter, inside the listen's ([`Link::claim_requests`]);
    /// `None` if a connection of this process from the port holds a filter it overlaps.
    /// (Fields drop in order: this one before the listen's.)
    _requests: Option<C>,
    _claim: C,
}

/// A bound UDP socket.
struct Datagram<C> {
    port: u16,
    set: SocketSet<'static>,
    handle: SocketHandle,
    _claim: C,
}

/// Half-open connections a listener keeps (each holds a socket with its buffers, 32 KiB by
/// default); a SYN past this drops the oldest.
const HALF_OPEN_MAX: usize = 256;

/// Echo replies a ping socket queues at most.
const REPLIES_QUEUED: usize = 32;
/// The longest echo payload (no IP fragmentation).
pub const PING_PAYLOAD_MAX: usize = 1472;

/// A bound ping socket.
struct Ping<C> {
    ident: u16,
    /// The next request's sequence number.
    seq: u16,
    /// Replies received: who sent each and its data.
    replies: VecDeque<(SocketAddrV4, Vec<u8>)>,
    /// The filters of the replies and of the requests (the transmit check's mirror).
    _claims: (C, C),
}

impl<C> Ping<C> {
    /// Queues the echo reply in IPv4 `packet` (a full queue drops it, as a full socket buffer
    /// would).
    fn take_reply(&mut self, packet: &[u8]) {
        let Ok(ip) = Ipv4Packet::new_checked(packet) else { return };
        let Ok(icmp) = Icmpv4Packet::new_checked(ip.payload()) else { return };
        if !icmp.verify_checksum() || self.replies.len() >= REPLIES_QUEUED {
            return;
        }
        self.replies.push_back((SocketAddrV4::new(ip.src_addr(), 0), icmp.data().to_vec()));
    }
}

/// What a descriptor is.
enum Socket<C> {
    /// Made by `socket`, not yet listening, connected or (for UDP) bound.
    Fresh { kind: Kind, port: Option<u16> },
    /// Listening.
    Listener(Listener<C>),
    /// A connection (index of its slot).
    Stream(usize),
    /// A bound UDP socket.
    Datagram(Datagram<C>),
    /// A bound ping socket.
    Ping(Ping<C>),
}

/// An open descriptor.
struct Open<C> {
    socket: Socket<C>,
    options: Options,
}

/// Where the demultiplexer sends a received packet.
#[derive(Clone, Copy)]
enum Target {
    /// A connection's socket set, and the window smoltcp is to see in the segment when it is a
    /// duplicate ACK whose grown window would hide it (`segment::duplicate_ack_window`).
    Conn(usize, Option<u16>),
    /// A listener's listening socket (a connection request).
    Listening(Fd, Tuple),
    /// A UDP socket.
    Datagram(Fd),
    /// A ping socket (an echo reply).
    Ping(Fd),
    /// The interface alone: it answers pings and refuses the rest.
    Interface,
    /// Handled by TIME_WAIT or dropped.
    Done,
}

/// The process's sockets over a [`Link`].
pub struct Stack<L: Link> {
    link: L,
    iface: Interface,
    ip: [u8; 4],
    descriptors: Vec<Option<Open<L::Claim>>>,
    /// Closed descriptors, lowest first (a new socket gets the lowest free one, as in POSIX).
    free_descriptors: BinaryHeap<Reverse<Fd>>,
    conns: Vec<Option<Conn<L::Claim>>>,
    free_conns: Vec<usize>,
    connections: HashMap<Tuple, usize>,
    listeners: HashMap<u16, Fd>,
    datagrams: HashMap<u16, Fd>,
    pings: HashMap<u16, Fd>,
    /// An empty socket set: packets for no socket go through it to the interface.
    nobody: SocketSet<'static>,
    /// Connections' next smoltcp timers: (microseconds, slot, generation).
    timers: BinaryHeap<Reverse<(i64, usize, u64)>>,
    time_waits: TimeWaits<L::Claim>,
    random: u64,
    stats: Stats,
}

/// Whether sequence number `a` is after `b`.
fn seq_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

fn endpoint(address: IpAddress, port: u16) -> SocketAddrV4 {
    let IpAddress::Ipv4(v4) = address;
    SocketAddrV4::new(v4, port)
}

impl<L: Link> Stack<L> {
    /// A stack with no sockets on `link`, at `config`'s address.
    pub fn new(mut link: L, config: StackConfig, now: Instant) -> Stack<L> {
        let mut iface_config = smoltcp::iface::Config::new(HardwareAddress::Ip);
        iface_config.random_seed = config.seed;
        let mut iface = Interface::new(iface_config, link.sender(), now);
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(Ipv4Addr::from(config.ip)), config.prefix));
        });
        if let Some(gateway) = config.gateway {
            let _ = iface.routes_mut().add_default_ipv4_route(Ipv4Addr::from(gateway));
        }
        Stack {
            link,
            iface,
            ip: config.ip,
            descriptors: Vec::new(),
            free_descriptors: BinaryHeap::new(),
            conns: Vec::new(),
            free_conns: Vec::new(),
            connections: HashMap::new(),
            listeners: HashMap::new(),
            datagrams: HashMap::new(),
            pings: HashMap::new(),
            nobody: SocketSet::new(vec![]),
            timers: BinaryHeap::new(),
            time_waits: TimeWaits::default(),
            random: config.seed | 1,
            stats: Stats::default(),
        }
    }

    /// The link below.
    pub fn link(&mut self) -> &mut L {
        &mut self.link
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        Stats {
            connections: self.conns.iter().flatten().filter(|conn| conn.tcp.is_some()).count(),
            time_waits: self.time_waits.len(),
            descriptors: self.descriptors.len() - self.free_descriptors.len(),
            fragments: self.link.fragments(),
            ..self.stats
        }
    }

    // ----- moving packets -----

    /// Handles every received packet, then the timers that are due.
    pub fn poll(&mut self, now: Instant) {
        self.time_waits.expire(now);
        while self.receive_one(now) {}
        self.run_timers(now);
        self.link.flush();
    }

    /// When [`Stack::poll`] next has timer work (`None`: only a packet can change anything).
    pub fn poll_at(&mut self) -> Option<Instant> {
        while let Some(&Reverse((micros, slot, generation))) = self.timers.peek() {
            if self.timer_is_current(slot, generation) {
                return Some(Instant::from_micros(micros));
            }
            self.timers.pop();
        }
        None
    }

    fn timer_is_current(&self, slot: usize, generation: u64) -> bool {
        matches!(self.conns.get(slot), Some(Some(conn)) if conn.timer_generation == generation && conn.tcp.is_some())
    }

    /// Demultiplexes and handles one received packet; false when none is waiting (or no
    /// transmit room is free for an answer: the packet waits in the ring).
    fn receive_one(&mut self, now: Instant) -> bool {
        if !self.link.can_send() {
            return false;
        }
        let destination = match self.link.next().0 {
            Some(packet) => classify(packet, self.ip),
            None => return false,
        };
        self.stats.received += 1;
        let target = self.route(destination, now);
        let (packet, sender) = self.link.next();
        let evened: Vec<u8>;
        let packet = match (target, packet) {
            (Target::Conn(_, Some(window)), Some(packet)) => {
                evened = with_window(packet, window);
                Some(&evened[..])
            }
            (_, packet) => packet,
        };
        let set = match target {
            Target::Conn(slot, _) => self.conns[slot].as_mut().and_then(|conn| conn.tcp.as_mut()).map(|(set, _)| set),
            Target::Listening(fd, _) => match self.descriptors[fd].as_ref().map(|open| &open.socket) {
                Some(Socket::Listener(listener)) => self.conns[listener.listening].as_mut().and_then(|conn| conn.tcp.as_mut()).map(|(set, _)| set),
                _ => None,
            },
            Target::Datagram(fd) => match self.descriptors[fd].as_mut().map(|open| &mut open.socket) {
                Some(Socket::Datagram(datagram)) => Some(&mut datagram.set),
                _ => None,
            },
            Target::Ping(fd) => {
                if let (Some(packet), Some(Open { socket: Socket::Ping(ping), .. })) = (packet, self.descriptors[fd].as_mut()) {
                    ping.take_reply(packet);
                }
                None
            }
            Target::Interface => Some(&mut self.nobody),
            Target::Done => None,
        };
        if let Some(set) = set {
            let mut device = OnePacket { packet, sender };
            self.iface.poll_ingress_single(now, &mut device, set);
            self.iface.poll_egress(now, device.sender, set);
        }
        self.link.consumed();
        match target {
            Target::Conn(slot, _) => self.settle(slot, now),
            Target::Listening(fd, tuple) => self.promote(fd, tuple, now),
            _ => {}
        }
        true
    }

    /// Where a packet goes.
    fn route(&mut self, destination: Destination, now: Instant) -> Target {
        match destination {
            Destination::Tcp(segment) => self.route_segment(&segment, now),
            Destination::Udp(port) => self.datagrams.get(&port).map_or(Target::Interface, |&fd| Target::Datagram(fd)),
            Destination::EchoReply(ident) => self.pings.get(&ident).map_or(Target::Interface, |&fd| Target::Ping(fd)),
            Destination::Other => Target::Interface,
            Destination::Corrupt => {
                self.stats.bad_checksums += 1;
                Target::Done
            }
        }
    }

    fn route_segment(&mut self, segment: &Segment, now: Instant) -> Target {
        if let Some(&slot) = self.connections.get(&segment.tuple) {
            let mut window = None;
            if let Some(conn) = self.conns[slot].as_mut() {
                conn.last_rst = segment.rst;
                window = duplicate_ack_window(&mut conn.peer_ack, segment);
                self.stats.duplicate_acks_evened += u64::from(window.is_some());
                if segment.fin && (conn.peer_next == 0 || seq_after(segment.end(), conn.peer_next)) {
                    conn.peer_next = segment.end();
                }
            }
            return Target::Conn(slot, window);
        }
        match self.time_waits.check(segment, now) {
            Some(Verdict::Ack { seq, ack }) => {
                self.stats.time_wait_segments += 1;
                self.send_ack(segment.tuple, seq, ack, now);
                return Target::Done;
            }
            Some(Verdict::Drop) => {
                self.stats.time_wait_segments += 1;
                return Target::Done;
            }
            Some(Verdict::Reopen) => self.stats.time_wait_reopened += 1,
            None => {}
        }
        if segment.is_connection_request()
            && let Some(&fd) = self.listeners.get(&segment.tuple.local_port)
            && let Some(Socket::Listener(listener)) = self.descriptors[fd].as_ref().map(|open| &open.socket)
        {
            // The backlog bounds connections made and not yet accepted (as Linux's accept
            // queue); half-open ones have a table of their own, and when it is full the oldest
            // goes, so a flood of SYNs that never complete cannot lock real clients out.
            let (mut waiting, mut half_open, mut oldest) = (0, 0, None);
            for &slot in &listener.queue {
                match self.conns[slot].as_ref() {
                    Some(conn) if conn.established => waiting += 1,
                    Some(conn) if conn.tcp.is_some() => {
                        half_open += 1;
                        oldest = oldest.or(Some(slot));
                    }
                    _ => {}
                }
            }
            if waiting >= listener.backlog {
                self.stats.syns_dropped += 1;
                return Target::Done;
            }
            if half_open >= HALF_OPEN_MAX
                && let Some(oldest) = oldest
                && self.drop_half_open(oldest)
            {
                self.stats.half_open_evicted += 1;
            }
            return Target::Listening(fd, segment.tuple);
        }
        Target::Interface
    }

    /// Sends a bare ACK for a tuple in TIME_WAIT.
    fn send_ack(&mut self, tuple: Tuple, seq: u32, ack: u32, now: Instant) {
        let tcp = plain_tcp((tuple.local_port, tuple.remote_port), TcpControl::None, seq, Some(ack), 0, &[]);
        let Some(token) = phy::Device::transmit(self.link.sender(), now) else { return };
        phy::TxToken::consume(token, ipv4_tcp_len(&tcp), |bytes| emit_ipv4_tcp(self.ip, tuple.remote, &tcp, bytes));
    }

    /// After a connection request reached a listener: if its listening socket became a
    /// connection, queue that and re-arm a fresh listening socket.
    fn promote(&mut self, fd: Fd, tuple: Tuple, now: Instant) {
        let Some(Open { socket: Socket::Listener(listener), options }) = self.descriptors[fd].as_mut() else { return };
        let slot = listener.listening;
        let Some(conn) = self.conns[slot].as_mut() else { return };
        if conn.socket().is_none_or(|socket| socket.state() == tcp::State::Listen) {
            return;
        }
        conn.tuple = Some(tuple);
        conn.connect_deadline = Some(now + HALF_OPEN_TIMEOUT);
        self.connections.insert(tuple, slot);
        listener.queue.push_back(slot);
        let (port, options) = (listener.port, *options);
        let fresh = self.listening_slot(port, &options);
        if let Some(Open { socket: Socket::Listener(listener), .. }) = self.descriptors[fd].as_mut() {
            listener.listening = fresh;
        }
        self.settle(slot, now);
    }

    /// Frees half-open connection `slot` of a listener's queue, silently (as Linux does: a RST
    /// would go to whoever the SYN claimed to come from); false if no listener queues it.
    fn drop_half_open(&mut self, slot: usize) -> bool {
        let port = self.conns[slot].as_ref().and_then(|conn| conn.tuple).map(|tuple| tuple.local_port);
        let Some(&fd) = port.and_then(|port| self.listeners.get(&port)) else { return false };
        let Some(Open { socket: Socket::Listener(listener), .. }) = self.descriptors[fd].as_mut() else { return false };
        let before = listener.queue.len();
        listener.queue.retain(|&queued| queued != slot);
        if listener.queue.len() == before {
            return false;
        }
        self.free_conn(slot);
        true
    }

    /// Runs the smoltcp timers that are due.
    fn run_timers(&mut self, now: Instant) {
        while let Some(&Reverse((micros, slot, generation))) = self.timers.peek() {
            if micros > now.total_micros() {
                break;
            }
            self.timers.pop();
            if !self.timer_is_current(slot, generation) {
                continue;
            }
            let mut half_open_over = false;
            if let Some(conn) = self.conns[slot].as_mut() {
                conn.scheduled = None;
                let gave_up = conn.connect_deadline.is_some_and(|deadline| deadline <= now);
                match conn.socket() {
                    Some(socket) if gave_up && socket.state() == tcp::State::SynSent => socket.abort(),
                    Some(socket) if gave_up && socket.state() == tcp::State::SynReceived => half_open_over = true,
                    _ => {}
                }
            }
            if half_open_over {
                if self.drop_half_open(slot) {
                    self.stats.half_open_expired += 1;
                    continue;
                }
                // A simultaneous open of this machine's own connect: it gives up as SYN_SENT does.
                if let Some(socket) = self.conns[slot].as_mut().and_then(Conn::socket) {
                    socket.abort();
                }
            }
            self.egress(slot, now);
        }
    }

    /// Lets connection `slot` send what it has, then settles it.
    fn egress(&mut self, slot: usize, now: Instant) {
        if let Some((set, _)) = self.conns[slot].as_mut().and_then(|conn| conn.tcp.as_mut()) {
            self.iface.poll_egress(now, self.link.sender(), set);
        }
        self.settle(slot, now);
    }

    /// Looks at connection `slot` after smoltcp had it: an ended connection leaves smoltcp
    /// (to TIME_WAIT, keeping unread data), a live one gets its next timer.
    fn settle(&mut self, slot: usize, now: Instant) {
        let Some(conn) = self.conns[slot].as_mut() else { return };
        let Some((set, handle)) = conn.tcp.as_mut() else { return };
        let socket = set.get_mut::<tcp::Socket>(*handle);
        let state = socket.state();
        if !matches!(state, tcp::State::Listen | tcp::State::SynSent | tcp::State::SynReceived | tcp::State::Closed) {
            conn.established = true;
        }
        if !matches!(state, tcp::State::TimeWait | tcp::State::Closed) {
            conn.last_state = state;
            let mut next = self.iface.poll_at(now, set);
            if matches!(state, tcp::State::SynSent | tcp::State::SynReceived) {
                next = next.into_iter().chain(conn.connect_deadline).min();
            }
            if let Some(next) = next
                && conn.scheduled.is_none_or(|scheduled| next < scheduled)
            {
                conn.scheduled = Some(next);
                conn.timer_generation += 1;
                self.timers.push(Reverse((next.total_micros(), slot, conn.timer_generation)));
            }
            return;
        }
        while socket.can_recv() {
            let stash = &mut conn.stash;
            let _ = socket.recv(|data| {
                stash.extend(data.iter().copied());
                (data.len(), ())
            });
        }
        conn.ended = Some(match (state, conn.last_state) {
            (tcp::State::TimeWait, _) | (_, tcp::State::LastAck | tcp::State::Closing) => Ended::Graceful,
            (_, tcp::State::SynSent) if conn.last_rst => Ended::Refused,
            _ if conn.last_rst => Ended::Reset,
            _ => Ended::TimedOut,
        });
        conn.tcp = None;
        if let Some(tuple) = conn.tuple.take() {
            self.connections.remove(&tuple);
            if state == tcp::State::TimeWait {
                self.time_waits.insert(tuple, conn.peer_next, conn.claim.take(), now);
            }
        }
        conn.claim = None;
        if conn.orphaned {
            self.free_conn(slot);
        }
    }

    fn free_conn(&mut self, slot: usize) {
        if let Some(mut conn) = self.conns[slot].take() {
            if let Some(tuple) = conn.tuple.take() {
                self.connections.remove(&tuple);
            }
            self.free_conns.push(slot);
        }
    }

    fn add_conn(&mut self, conn: Conn<L::Claim>) -> usize {
        match self.free_conns.pop() {
            Some(slot) => {
                self.conns[slot] = Some(conn);
                slot
            }
            None => {
                self.conns.push(Some(conn));
                self.conns.len() - 1
            }
        }
    }

    fn tcp_socket(options: &Options) -> tcp::Socket<'static> {
        let mut socket = tcp::Socket::new(tcp::SocketBuffer::new(vec![0; options.recv_buffer]), tcp::SocketBuffer::new(vec![0; options.send_buffer]));
        socket.set_nagle_enabled(!options.nodelay);
        socket
    }

    fn listening_slot(&mut self, port: u16, options: &Options) -> usize {
        let mut socket = Self::tcp_socket(options);
        // A fresh socket and a non-zero port: listen cannot fail.
        let _ = socket.listen(port);
        self.add_conn(Conn::new(socket, None))
    }

    fn next_random(&mut self) -> u64 {
        self.random ^= self.random << 13;
        self.random ^= self.random >> 7;
        self.random ^= self.random << 17;
        self.random
    }

    fn ephemeral_port(&mut self) -> u16 {
        EPHEMERAL.start + (self.next_random() % u64::from(EPHEMERAL.end - EPHEMERAL.start)) as u16
    }

    // ----- descriptors -----

    fn open(&self, fd: Fd) -> Result<&Open<L::Claim>, Errno> {
        self.descriptors.get(fd).and_then(Option::as_ref).ok_or(Errno::BadDescriptor)
    }

    fn open_mut(&mut self, fd: Fd) -> Result<&mut Open<L::Claim>, Errno> {
        self.descriptors.get_mut(fd).and_then(Option::as_mut).ok_or(Errno::BadDescriptor)
    }

    fn add_descriptor(&mut self, open: Open<L::Claim>) -> Result<Fd, Errno> {
        if let Some(Reverse(fd)) = self.free_descriptors.pop() {
            self.descriptors[fd] = Some(open);
            return Ok(fd);
        }
        if self.descriptors.len() >= MAX_DESCRIPTORS {
            return Err(Errno::TooManyOpen);
        }
        self.descriptors.push(Some(open));
        Ok(self.descriptors.len() - 1)
    }

    fn stream_slot(&self, fd: Fd) -> Result<usize, Errno> {
        match self.open(fd)?.socket {
            Socket::Stream(slot) => Ok(slot),
            Socket::Fresh { kind: Kind::Stream, .. } | Socket::Listener(_) => Err(Errno::NotConnected),
            _ => Err(Errno::NotSupported),
        }
    }

    fn conn_mut(&mut self, slot: usize) -> &mut Conn<L::Claim> {
        // A stream descriptor's slot lives until the descriptor is closed.
        self.conns[slot].as_mut().expect("a stream descriptor's connection")
    }

    /// A new socket of `kind` (`socket(AF_INET, SOCK_STREAM or SOCK_DGRAM, 0)`).
    pub fn socket(&mut self, kind: Kind) -> Result<Fd, Errno> {
        self.add_descriptor(Open { socket: Socket::Fresh { kind, port: None }, options: Options::default() })
    }

    /// The socket's options.
    pub fn options(&self, fd: Fd) -> Result<Options, Errno> {
        Ok(self.open(fd)?.options)
    }

    /// Sets one option (`setsockopt`, or `fcntl` for O_NONBLOCK).
    pub fn set_option(&mut self, fd: Fd, option: SockOpt) -> Result<(), Errno> {
        let open = self.open_mut(fd)?;
        match option {
            SockOpt::NoDelay(on) => open.options.nodelay = on,
            SockOpt::ReuseAddr(on) => open.options.reuse_addr = on,
            SockOpt::RecvBuffer(bytes) if BUFFER_RANGE.contains(&bytes) => open.options.recv_buffer = bytes,
            SockOpt::SendBuffer(bytes) if BUFFER_RANGE.contains(&bytes) => open.options.send_buffer = bytes,
            SockOpt::RecvBuffer(_) | SockOpt::SendBuffer(_) => return Err(Errno::Invalid),
            SockOpt::RecvTimeout(timeout) => open.options.recv_timeout = timeout,
            SockOpt::SendTimeout(timeout) => open.options.send_timeout = timeout,
            SockOpt::NonBlocking(on) => open.options.nonblocking = on,
        }
        if let (SockOpt::NoDelay(on), Socket::Stream(slot)) = (option, &open.socket) {
            let slot = *slot;
            if let Some(socket) = self.conn_mut(slot).socket() {
                socket.set_nagle_enabled(!on);
            }
        }
        Ok(())
    }

    /// Binds the socket to local `port` (0: any). A UDP socket claims the port at once
    /// ([`Errno::AddrInUse`] if another program holds it); a TCP socket when it listens or
    /// connects.
    pub fn bind(&mut self, fd: Fd, port: u16) -> Result<(), Errno> {
        match self.open(fd)?.socket {
            Socket::Fresh { kind: Kind::Stream, port: None } => {
                if let Socket::Fresh { port: bound, .. } = &mut self.open_mut(fd)?.socket {
                    *bound = (port != 0).then_some(port);
                }
                Ok(())
            }
            Socket::Fresh { kind: Kind::Datagram, port: None } => self.bind_datagram(fd, (port != 0).then_some(port)),
            Socket::Fresh { kind: Kind::Ping, .. } => self.bind_ping(fd, (port != 0).then_some(port)),
            _ => Err(Errno::Invalid),
        }
    }

    fn bind_datagram(&mut self, fd: Fd, port: Option<u16>) -> Result<(), Errno> {
        let options = self.open(fd)?.options;
        let mut tries = 0;
        let (port, claim) = loop {
            let candidate = port.unwrap_or_else(|| self.ephemeral_port());
            match self.link.claim(&dpf::Filter::udp_port(candidate)) {
                Ok(claim) => break (candidate, claim),
                Err(xok_abi::Error::FilterOverlap) if port.is_none() && tries < PORT_TRIES => tries += 1,
                Err(xok_abi::Error::FilterOverlap) if port.is_none() => return Err(Errno::AddrNotAvailable),
                Err(error) => return Err(Errno::from_kernel(error)),
            }
        };
        let buffer = |bytes: usize| udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; DATAGRAMS_QUEUED], vec![0; bytes]);
        let mut socket = udp::Socket::new(buffer(options.recv_buffer), buffer(options.send_buffer));
        socket.bind(port).map_err(|_| Errno::Invalid)?;
        let mut set = SocketSet::new(Vec::with_capacity(1));
        let handle = set.add(socket);
        self.open_mut(fd)?.socket = Socket::Datagram(Datagram { port, set, handle, _claim: claim });
        self.datagrams.insert(port, fd);
        Ok(())
    }

    /// Binds a ping socket to echo identifier `ident` (`None`: a random free one).
    fn bind_ping(&mut self, fd: Fd, ident: Option<u16>) -> Result<(), Errno> {
        let mut tries = 0;
        let (ident, claims) = loop {
            let candidate = ident.unwrap_or_else(|| self.ephemeral_port());
            let claimed = self
                .link
                .claim(&dpf::Filter::icmp_echo(self.ip, 0, candidate))
                .and_then(|replies| Ok((replies, self.link.claim(&dpf::Filter::icmp_echo(self.ip, 8, candidate))?)));
            match claimed {
                Ok(claims) => break (candidate, claims),
                Err(xok_abi::Error::FilterOverlap) if ident.is_none() && tries < PORT_TRIES => tries += 1,
                Err(xok_abi::Error::FilterOverlap) if ident.is_none() => return Err(Errno::AddrNotAvailable),
                Err(error) => return Err(Errno::from_kernel(error)),
            }
        };
        self.open_mut(fd)?.socket = Socket::Ping(Ping { ident, seq: 0, replies: VecDeque::new(), _claims: claims });
        self.pings.insert(ident, fd);
        Ok(())
    }

    /// Listens on the bound port, with room for `backlog` connections that wait to be
    /// accepted ([`Errno::AddrInUse`] if another program holds the port, or connections of it
    /// are in TIME_WAIT and SO_REUSEADDR is off).
    pub fn listen(&mut self, fd: Fd, backlog: usize) -> Result<(), Errno> {
        let backlog = backlog.clamp(1, 4096);
        let open = self.open_mut(fd)?;
        let port = match &mut open.socket {
            Socket::Listener(listener) => {
                listener.backlog = backlog;
                return Ok(());
            }
            Socket::Fresh { kind: Kind::Stream, port: Some(port) } => *port,
            Socket::Fresh { kind: Kind::Stream, port: None } => return Err(Errno::DestinationRequired),
            _ => return Err(Errno::Invalid),
        };
        let options = open.options;
        if self.listeners.contains_key(&port) || (!options.reuse_addr && self.time_waits.holds_port(port)) {
            return Err(Errno::AddrInUse);
        }
        let claim = self.link.claim(&dpf::Filter::tcp_listen(self.ip, port)).map_err(Errno::from_kernel)?;
        let requests = self.link.claim_requests(&dpf::Filter::tcp_connection_requests(self.ip, port)).ok();
        let listening = self.listening_slot(port, &options);
        self.open_mut(fd)?.socket = Socket::Listener(Listener { port, backlog, listening, queue: VecDeque::new(), _requests: requests, _claim: claim });
        self.listeners.insert(port, fd);
        Ok(())
    }

    /// The next established connection of a listener, as a new descriptor, and its peer.
    pub fn accept(&mut self, fd: Fd) -> Result<(Fd, SocketAddrV4), Errno> {
        let Socket::Listener(listener) = &mut self.open_mut(fd)?.socket else { return Err(Errno::Invalid) };
        let mut queue = core::mem::take(&mut listener.queue);
        let mut found = None;
        let conns = &mut self.conns;
        let mut dead = Vec::new();
        queue.retain(|&slot| {
            let Some(conn) = conns[slot].as_ref() else { return false };
            if found.is_none() && conn.established {
                found = Some(slot);
                return false;
            }
            if conn.tcp.is_none() && !conn.established {
                dead.push(slot);
                return false;
            }
            true
        });
        if let Socket::Listener(listener) = &mut self.open_mut(fd)?.socket {
            listener.queue = queue;
        }
        for slot in dead {
            self.free_conn(slot);
        }
        let slot = found.ok_or(Errno::WouldBlock)?;
        let options = Options { nonblocking: false, ..self.open(fd)?.options };
        let peer = self.peer_of(slot).unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
        match self.add_descriptor(Open { socket: Socket::Stream(slot), options }) {
            Ok(accepted) => Ok((accepted, peer)),
            Err(error) => {
                self.abort_conn(slot);
                Err(error)
            }
        }
    }

    fn peer_of(&mut self, slot: usize) -> Option<SocketAddrV4> {
        let conn = self.conns[slot].as_mut()?;
        if let Some(tuple) = conn.tuple {
            return Some(SocketAddrV4::new(Ipv4Addr::from(tuple.remote), tuple.remote_port));
        }
        conn.socket()?.remote_endpoint().map(|remote| endpoint(remote.addr, remote.port))
    }

    /// Starts connecting to `to` from the bound port or a random one (re-picked when another
    /// program holds the tuple's filter). Returns [`Errno::InProgress`] while the handshake
    /// runs; called again it says how it went: `Ok` once connected, [`Errno::Already`] while
    /// still connecting, or why it failed.
    pub fn connect(&mut self, fd: Fd, to: SocketAddrV4, now: Instant) -> Result<(), Errno> {
        let open = self.open(fd)?;
        let bound = match open.socket {
            Socket::Stream(slot) => return self.connect_status(slot),
            Socket::Fresh { kind: Kind::Stream, port } => port,
            Socket::Fresh { kind: Kind::Datagram | Kind::Ping, .. } | Socket::Datagram(_) | Socket::Ping(_) => return Err(Errno::NotSupported),
            Socket::Listener(_) => return Err(Errno::Invalid),
        };
        if to.port() == 0 || to.ip().is_unspecified() {
            return Err(Errno::Invalid);
        }
        let options = open.options;
        let remote = to.ip().octets();
        let mut tries = 0;
        let (local, claim) = loop {
            let local = bound.unwrap_or_else(|| self.ephemeral_port());
            let tuple = Tuple { local_port: local, remote, remote_port: to.port() };
            let taken = self.connections.contains_key(&tuple);
            match (taken, self.link.claim(&dpf::Filter::tcp_connection(self.ip, local, remote, to.port()))) {
                (false, Ok(claim)) => break (local, claim),
                (_, Ok(_)) | (_, Err(xok_abi::Error::FilterOverlap)) if bound.is_none() && tries < PORT_TRIES => tries += 1,
                (_, Ok(_)) | (_, Err(xok_abi::Error::FilterOverlap)) => {
                    return Err(if bound.is_some() { Errno::AddrInUse } else { Errno::AddrNotAvailable });
                }
                (_, Err(error)) => return Err(Errno::from_kernel(error)),
            }
        };
        let mut socket = Self::tcp_socket(&options);
        socket.connect(self.iface.context(), (IpAddress::Ipv4(*to.ip()), to.port()), local).map_err(|_| Errno::Invalid)?;
        let mut conn = Conn::new(socket, Some(claim));
        let tuple = Tuple { local_port: local, remote, remote_port: to.port() };
        conn.tuple = Some(tuple);
        conn.connect_deadline = Some(now + CONNECT_TIMEOUT);
        let slot = self.add_conn(conn);
        self.connections.insert(tuple, slot);
        self.open_mut(fd)?.socket = Socket::Stream(slot);
        self.egress(slot, now);
        Err(Errno::InProgress)
    }

    fn connect_status(&mut self, slot: usize) -> Result<(), Errno> {
        let conn = self.conn_mut(slot);
        if conn.established {
            return Ok(());
        }
        match conn.ended {
            Some(ended) => Err(ended.error().unwrap_or(Errno::NotConnected)),
            None => Err(Errno::Already),
        }
    }

    /// The error a connection ended with, once (SO_ERROR).
    pub fn take_error(&mut self, fd: Fd) -> Result<Option<Errno>, Errno> {
        let Socket::Stream(slot) = self.open(fd)?.socket else { return Ok(None) };
        let conn = self.conn_mut(slot);
        if conn.reported {
            return Ok(None);
        }
        let error = conn.ended.and_then(Ended::error);
        conn.reported = error.is_some();
        Ok(error)
    }

    /// Queues as much of `data` as the send buffer takes.
    pub fn send(&mut self, fd: Fd, data: &[u8], now: Instant) -> Result<usize, Errno> {
        self.send_vectored(fd, &[data], now)
    }

    /// Queues as much of `parts`, in order, as the send buffer takes (one call for a head and
    /// a body: `writev`).
    pub fn send_vectored(&mut self, fd: Fd, parts: &[&[u8]], now: Instant) -> Result<usize, Errno> {
        let slot = self.stream_slot(fd)?;
        let conn = self.conn_mut(slot);
        if let Some(ended) = conn.ended {
            return Err(ended.error().unwrap_or(Errno::BrokenPipe));
        }
        let established = conn.established;
        let Some(socket) = conn.socket() else { return Err(Errno::BrokenPipe) };
        if !socket.may_send() {
            return Err(if established { Errno::BrokenPipe } else { Errno::WouldBlock });
        }
        let mut sent = 0;
        for part in parts.iter().filter(|part| !part.is_empty()) {
            let taken = socket.send_slice(part).map_err(|_| Errno::BrokenPipe)?;
            sent += taken;
            if taken < part.len() {
                break;
            }
        }
        if sent == 0 && parts.iter().any(|part| !part.is_empty()) {
            return Err(Errno::WouldBlock);
        }
        self.egress(slot, now);
        Ok(sent)
    }

    /// Reads what has arrived: 0 once the peer has finished sending (or this side shut
    /// reading down).
    pub fn recv(&mut self, fd: Fd, buffer: &mut [u8], now: Instant) -> Result<usize, Errno> {
        let slot = self.stream_slot(fd)?;
        let conn = self.conn_mut(slot);
        if conn.read_shut {
            return Ok(0);
        }
        if !conn.stash.is_empty() {
            let len = buffer.len().min(conn.stash.len());
            for (to, from) in buffer.iter_mut().zip(conn.stash.drain(..len)) {
                *to = from;
            }
            return Ok(len);
        }
        if let Some(ended) = conn.ended {
            return match ended.error() {
                Some(error) if !conn.reported => {
                    conn.reported = true;
                    Err(error)
                }
                _ => Ok(0),
            };
        }
        let Some(socket) = conn.socket() else { return Ok(0) };
        if socket.can_recv() {
            let len = socket.recv_slice(buffer).unwrap_or(0);
            self.egress(slot, now);
            return Ok(len);
        }
        if !socket.may_recv() && !matches!(socket.state(), tcp::State::SynSent | tcp::State::SynReceived) {
            return Ok(0);
        }
        Err(Errno::WouldBlock)
    }

    /// Bytes sent and not yet acknowledged by the peer.
    pub fn unacknowledged(&mut self, fd: Fd) -> Result<usize, Errno> {
        let slot = self.stream_slot(fd)?;
        Ok(self.conn_mut(slot).socket().map_or(0, |socket| socket.send_queue()))
    }

    /// Sends one datagram to `to` (binding the socket to a random port first if it is not).
    pub fn send_to(&mut self, fd: Fd, data: &[u8], to: SocketAddrV4, now: Instant) -> Result<usize, Errno> {
        if data.len() > UDP_PAYLOAD_MAX {
            return Err(Errno::MessageTooLong);
        }
        if to.port() == 0 && !matches!(self.open(fd)?.socket, Socket::Fresh { kind: Kind::Ping, .. } | Socket::Ping(_)) {
            return Err(Errno::Invalid);
        }
        match self.open(fd)?.socket {
            Socket::Fresh { kind: Kind::Ping, .. } | Socket::Ping(_) => return self.send_echo(fd, data, to, now),
            Socket::Fresh { kind: Kind::Datagram, .. } => self.bind_datagram(fd, None)?,
            Socket::Datagram(_) => {}
            Socket::Stream(_) => return Err(Errno::AlreadyConnected),
            _ => return Err(Errno::NotSupported),
        }
        let Socket::Datagram(datagram) = &mut self.open_mut(fd)?.socket else { return Err(Errno::Invalid) };
        let socket = datagram.set.get_mut::<udp::Socket>(datagram.handle);
        socket.send_slice(data, (IpAddress::Ipv4(*to.ip()), to.port())).map_err(|error| match error {
            udp::SendError::BufferFull => Errno::WouldBlock,
            udp::SendError::Unaddressable => Errno::Invalid,
        })?;
        if let Some(Open { socket: Socket::Datagram(datagram), .. }) = self.descriptors[fd].as_mut() {
            self.iface.poll_egress(now, self.link.sender(), &mut datagram.set);
        }
        Ok(data.len())
    }

    /// Sends `data` as an echo request to `to` from ping socket `fd` (binding it to a random
    /// identifier first if it is not); the port of `to` is ignored.
    fn send_echo(&mut self, fd: Fd, data: &[u8], to: SocketAddrV4, now: Instant) -> Result<usize, Errno> {
        if data.len() > PING_PAYLOAD_MAX {
            return Err(Errno::MessageTooLong);
        }
        if matches!(self.open(fd)?.socket, Socket::Fresh { .. }) {
            self.bind_ping(fd, None)?;
        }
        let Socket::Ping(ping) = &mut self.open_mut(fd)?.socket else { return Err(Errno::Invalid) };
        let icmp = Icmpv4Repr::EchoRequest { ident: ping.ident, seq_no: ping.seq, data };
        ping.seq = ping.seq.wrapping_add(1);
        let ip = Ipv4Repr { src_addr: Ipv4Addr::from(self.ip), dst_addr: *to.ip(), next_header: IpProtocol::Icmp, payload_len: icmp.buffer_len(), hop_limit: 64 };
        let token = phy::Device::transmit(self.link.sender(), now).ok_or(Errno::WouldBlock)?;
        phy::TxToken::consume(token, ip.buffer_len() + icmp.buffer_len(), |bytes| {
            let caps = ChecksumCapabilities::default();
            let mut packet = Ipv4Packet::new_unchecked(bytes);
            ip.emit(&mut packet, &caps);
            icmp.emit(&mut Icmpv4Packet::new_unchecked(packet.payload_mut()), &caps);
        });
        Ok(data.len())
    }

    /// Receives one datagram (for a ping socket: the data of an echo reply) and who sent it
    /// (a datagram longer than `buffer` is cut).
    pub fn recv_from(&mut self, fd: Fd, buffer: &mut [u8]) -> Result<(usize, SocketAddrV4), Errno> {
        if let Socket::Ping(ping) = &mut self.open_mut(fd)?.socket {
            let (from, data) = ping.replies.pop_front().ok_or(Errno::WouldBlock)?;
            let len = data.len().min(buffer.len());
            buffer[..len].copy_from_slice(&data[..len]);
            return Ok((len, from));
        }
        let Socket::Datagram(datagram) = &mut self.open_mut(fd)?.socket else { return Err(Errno::Invalid) };
        let socket = datagram.set.get_mut::<udp::Socket>(datagram.handle);
        let (data, meta) = socket.recv().map_err(|_| Errno::WouldBlock)?;
        let len = data.len().min(buffer.len());
        buffer[..len].copy_from_slice(&data[..len]);
        Ok((len, endpoint(meta.endpoint.addr, meta.endpoint.port)))
    }

    /// The socket's local address and port.
    pub fn local_addr(&self, fd: Fd) -> Result<SocketAddrV4, Errno> {
        let ip = Ipv4Addr::from(self.ip);
        match &self.open(fd)?.socket {
            Socket::Fresh { port, .. } => Ok(SocketAddrV4::new(ip, port.unwrap_or(0))),
            Socket::Listener(listener) => Ok(SocketAddrV4::new(ip, listener.port)),
            Socket::Datagram(datagram) => Ok(SocketAddrV4::new(ip, datagram.port)),
            Socket::Ping(ping) => Ok(SocketAddrV4::new(ip, ping.ident)),
            Socket::Stream(slot) => {
                let port = self.conns[*slot].as_ref().and_then(|conn| conn.tuple).map_or(0, |tuple| tuple.local_port);
                Ok(SocketAddrV4::new(ip, port))
            }
        }
    }

    /// The peer of a connection.
    pub fn peer_addr(&mut self, fd: Fd) -> Result<SocketAddrV4, Errno> {
        let slot = self.stream_slot(fd)?;
        self.peer_of(slot).ok_or(Errno::NotConnected)
    }

    /// Closes one or both halves of a connection.
    pub fn shutdown(&mut self, fd: Fd, how: How, now: Instant) -> Result<(), Errno> {
        let slot = self.stream_slot(fd)?;
        let conn = self.conn_mut(slot);
        if matches!(how, How::Read | How::Both) {
            conn.read_shut = true;
        }
        if matches!(how, How::Write | How::Both) {
            if let Some(socket) = conn.socket() {
                socket.close();
            }
            self.egress(slot, now);
        }
        Ok(())
    }

    /// Closes the descriptor. A connection finishes sending and closes in the background
    /// (or is reset if received data was left unread, as Linux does); a listener resets the
    /// connections nobody accepted.
    pub fn close(&mut self, fd: Fd, now: Instant) -> Result<(), Errno> {
        let open = self.descriptors.get_mut(fd).and_then(Option::take).ok_or(Errno::BadDescriptor)?;
        self.free_descriptors.push(Reverse(fd));
        match open.socket {
            Socket::Fresh { .. } => {}
            Socket::Stream(slot) => self.close_conn(slot, now),
            Socket::Listener(listener) => {
                self.listeners.remove(&listener.port);
                for slot in listener.queue.into_iter().chain([listener.listening]) {
                    self.abort_conn(slot);
                    self.egress(slot, now);
                }
            }
            Socket::Datagram(datagram) => {
                self.datagrams.remove(&datagram.port);
            }
            Socket::Ping(ping) => {
                self.pings.remove(&ping.ident);
            }
        }
        Ok(())
    }

    fn close_conn(&mut self, slot: usize, now: Instant) {
        let conn = self.conn_mut(slot);
        conn.orphaned = true;
        match conn.socket() {
            Some(socket) if socket.can_recv() => socket.abort(),
            Some(socket) => socket.close(),
            None => {
                self.free_conn(slot);
                return;
            }
        }
        self.egress(slot, now);
    }

    fn abort_conn(&mut self, slot: usize) {
        if let Some(conn) = self.conns[slot].as_mut() {
            conn.orphaned = true;
            if let Some(socket) = conn.socket() {
                socket.abort();
            }
        }
    }

    /// What the socket is ready for.
    pub fn readiness(&mut self, fd: Fd) -> Result<Ready, Errno> {
        let (conns, open) = (&mut self.conns, self.descriptors.get_mut(fd).and_then(Option::as_mut).ok_or(Errno::BadDescriptor)?);
        Ok(match &mut open.socket {
            Socket::Fresh { .. } => Ready::default(),
            Socket::Listener(listener) => Ready {
                readable: listener.queue.iter().any(|&slot| conns[slot].as_ref().is_some_and(|conn| conn.established || conn.tcp.is_none())),
                ..Ready::default()
            },
            Socket::Datagram(datagram) => {
                let socket = datagram.set.get::<udp::Socket>(datagram.handle);
                Ready { readable: socket.can_recv(), writable: socket.can_send(), ..Ready::default() }
            }
            Socket::Ping(ping) => Ready { readable: !ping.replies.is_empty(), writable: true, ..Ready::default() },
            Socket::Stream(slot) => {
                let Some(conn) = conns[*slot].as_mut() else { return Err(Errno::BadDescriptor) };
                let stashed = !conn.stash.is_empty() || conn.read_shut;
                let (ended, established) = (conn.ended, conn.established);
                match conn.socket() {
                    Some(socket) => {
                        let peer_finished = matches!(socket.state(), tcp::State::CloseWait | tcp::State::LastAck | tcp::State::Closing);
                        Ready {
                            readable: stashed || socket.can_recv() || peer_finished,
                            writable: socket.can_send() || (established && !socket.may_send()),
                            error: false,
                            hangup: peer_finished,
                        }
                    }
                    None => Ready { readable: true, writable: true, error: ended.and_then(Ended::error).is_some(), hangup: true },
                }
            }
        })
    }
}
