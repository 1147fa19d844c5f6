//! Cheetah's TCP: a server-side TCP that serves HTTP straight from the file cache. Plain Rust,
//! no I/O: segments come in as [`Incoming`] (parsed and checksum-verified with smoltcp's wire
//! types) and go out through a [`Transmit`] as [`Outgoing`] descriptions whose payload is a
//! slice of a prepared response head and a slice of a file, never copied; retransmissions come
//! from the same slices. Time is passed in; the secret for initial sequence numbers too.
//!
//! What it does, by RFC:
//! - the state machine from LISTEN to TIME_WAIT (793, 9293), the MSS option, the peer's window
//!   respected with zero-window probes, out-of-order data answered with a duplicate ACK, a
//!   duplicate SYN answered with the same SYN-ACK, RST and FIN in every state, challenge ACKs
//!   (5961), ISNs per 6528 ([`crate::isn`]);
//! - retransmission per 6298 (Karn's rule, exponential backoff, a 200 ms minimum as Linux),
//!   fast retransmit on three duplicate ACKs with NewReno recovery (6582), slow start and
//!   congestion avoidance (5681) from an initial window of 10 segments (6928);
//! - connections found through a hash of the 4-tuple; TIME_WAIT kept compactly
//!   (`exos::tcpip::time_wait`) with a new SYN accepted as 6191 allows; half-open connections
//!   bounded (the oldest is dropped when a flood fills the table, so real clients still get in);
//! - knowledge-based merging: the ACK of a request rides on the first response segment, the FIN
//!   on the last data segment of a response after which the connection closes.

use crate::http::{self, Parsed, Reply, Site};
use crate::isn::IsnGenerator;
use alloc::collections::{BinaryHeap, VecDeque};
use alloc::vec::Vec;
use core::cmp::Reverse;
use exos::tcpip::segment::Tuple;
use exos::tcpip::time_wait::{TimeWaits, Verdict};
use hashbrown::HashMap;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpAddress, IpProtocol, Ipv4Address, Ipv4Packet, TcpControl, TcpPacket, TcpRepr, checksum};

/// Whether sequence number `a` is before `b`.
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// Whether `a` is before or at `b`.
fn at_or_before(a: u32, b: u32) -> bool {
    !before(b, a)
}

/// How Cheetah's TCP behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The address served.
    pub ip: [u8; 4],
    /// The port served.
    pub port: u16,
    /// The largest segment payload sent (and the MSS announced).
    pub mss: u16,
    /// The receive window announced (requests are small).
    pub window: u16,
    /// The retransmission timeout before any round trip is measured.
    pub rto_initial: Duration,
    /// The smallest retransmission timeout.
    pub rto_min: Duration,
    /// The largest retransmission timeout.
    pub rto_max: Duration,
    /// Timeouts in a row after which a connection is reset.
    pub retries: u32,
    /// Half-open connections kept at most.
    pub half_open_max: usize,
    /// Connections kept at most (new SYNs are dropped past it).
    pub connections_max: usize,
    /// How long an idle keep-alive connection stays open.
    pub idle: Duration,
    /// How long a partial request may wait before its ACK goes out alone.
    pub ack_delay: Duration,
    /// Responses queued at most per connection (pipelined requests past it wait).
    pub pipeline_max: usize,
}

impl Config {
    /// The defaults for serving `ip`:`port`.
    pub fn new(ip: [u8; 4], port: u16) -> Config {
        Config {
            ip,
            port,
            mss: 1460,
            window: 32 * 1024,
            rto_initial: Duration::from_secs(1),
            rto_min: Duration::from_millis(200),
            rto_max: Duration::from_secs(60),
            retries: 8,
            half_open_max: 1024,
            connections_max: 16 * 1024,
            idle: Duration::from_secs(15),
            ack_delay: Duration::from_millis(40),
            pipeline_max: 16,
        }
    }
}

/// A received TCP segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Incoming<'a> {
    /// Whose it is.
    pub tuple: Tuple,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number, if the ACK flag is set.
    pub ack: Option<u32>,
    /// SYN.
    pub syn: bool,
    /// FIN.
    pub fin: bool,
    /// RST.
    pub rst: bool,
    /// The window (unscaled: Cheetah offers no window scaling).
    pub window: u16,
    /// The MSS option.
    pub mss: Option<u16>,
    /// The data.
    pub payload: &'a [u8],
}

impl<'a> Incoming<'a> {
    /// The TCP segment in IPv4 `packet` for address `local`, if it is one and its checksums
    /// hold.
    pub fn parse(packet: &'a [u8], local: [u8; 4]) -> Option<Incoming<'a>> {
        let ip = Ipv4Packet::new_checked(packet).ok()?;
        if ip.dst_addr().octets() != local || ip.next_header() != IpProtocol::Tcp || ip.frag_offset() != 0 || ip.more_frags() || !ip.verify_checksum() {
            return None;
        }
        let (src, dst) = (IpAddress::Ipv4(ip.src_addr()), IpAddress::Ipv4(ip.dst_addr()));
        let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
        let repr = TcpRepr::parse(&tcp, &src, &dst, &ChecksumCapabilities::default()).ok()?;
        let (syn, fin, rst) = match repr.control {
            TcpControl::Syn => (true, false, false),
            TcpControl::Fin => (false, true, false),
            TcpControl::Rst => (false, false, true),
            TcpControl::Psh | TcpControl::None => (false, false, false),
        };
        Some(Incoming {
            tuple: Tuple { local_port: repr.dst_port, remote: ip.src_addr().octets(), remote_port: repr.src_port },
            seq: repr.seq_number.0 as u32,
            ack: repr.ack_number.map(|ack| ack.0 as u32),
            syn,
            fin,
            rst,
            window: repr.window_len,
            mss: repr.max_seg_size,
            payload: tcp.payload(),
        })
    }

    /// The sequence space the segment occupies (SYN and FIN count one).
    fn len(&self) -> u32 {
        self.payload.len() as u32 + u32::from(self.syn) + u32::from(self.fin)
    }
}

/// A segment to send: headers to build and a payload gathered from up to two slices (a part of
/// a response head and a part of a file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outgoing<'a> {
    /// Whose it is.
    pub tuple: Tuple,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (`None`: a RST without ACK).
    pub ack: Option<u32>,
    /// SYN.
    pub syn: bool,
    /// FIN.
    pub fin: bool,
    /// RST.
    pub rst: bool,
    /// PSH (the end of a response).
    pub psh: bool,
    /// The window announced.
    pub window: u16,
    /// The MSS option (on a SYN-ACK).
    pub mss: Option<u16>,
    /// The payload, in order.
    pub payload: [&'a [u8]; 2],
    /// The payload's RFC 1071 sum, when the maintenance tool precomputed it.
    pub payload_sum: Option<u16>,
}

/// Bytes of an IPv4 header as Cheetah writes it.
pub const IPV4_HEADER: usize = 20;
/// Bytes of the longest TCP header Cheetah writes (with the MSS option).
pub const TCP_HEADER_MAX: usize = 24;

impl Outgoing<'_> {
    /// Bytes of payload.
    pub fn payload_len(&self) -> usize {
        self.payload[0].len() + self.payload[1].len()
    }

    /// The payload's RFC 1071 sum: the precomputed one, or computed now (the second part may
    /// start at an odd offset).
    pub fn payload_sum(&self) -> u16 {
        self.payload_sum.unwrap_or_else(|| self.compute_payload_sum())
    }

    /// The payload's RFC 1071 sum, computed.
    pub fn compute_payload_sum(&self) -> u16 {
        let second = checksum::data(self.payload[1]);
        let second = if self.payload[0].len() % 2 == 1 { second.swap_bytes() } else { second };
        checksum::combine(&[checksum::data(self.payload[0]), second])
    }

    /// Writes the IPv4 and TCP headers into `out` for a payload whose RFC 1071 sum is
    /// `payload_sum`; returns their length. `out` holds at least `IPV4_HEADER +
    /// TCP_HEADER_MAX` bytes.
    pub fn write_headers(&self, local: [u8; 4], payload_sum: u16, out: &mut [u8]) -> usize {
        let tcp_len = if self.mss.is_some() { 24 } else { 20 };
        let total = IPV4_HEADER + tcp_len + self.payload_len();
        let ip = &mut out[..IPV4_HEADER];
        ip.copy_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        ip[12..16].copy_from_slice(&local);
        ip[16..20].copy_from_slice(&self.tuple.remote);
        let ip_sum = !checksum::data(ip);
        ip[10..12].copy_from_slice(&ip_sum.to_be_bytes());
        let tcp = &mut out[IPV4_HEADER..IPV4_HEADER + tcp_len];
        tcp[0..2].copy_from_slice(&self.tuple.local_port.to_be_bytes());
        tcp[2..4].copy_from_slice(&self.tuple.remote_port.to_be_bytes());
        tcp[4..8].copy_from_slice(&self.seq.to_be_bytes());
        tcp[8..12].copy_from_slice(&self.ack.unwrap_or(0).to_be_bytes());
        let flags = u8::from(self.fin) | u8::from(self.syn) << 1 | u8::from(self.rst) << 2 | u8::from(self.psh) << 3 | u8::from(self.ack.is_some()) << 4;
        tcp[12] = ((tcp_len / 4) as u8) << 4;
        tcp[13] = flags;
        tcp[14..16].copy_from_slice(&self.window.to_be_bytes());
        tcp[16..20].fill(0);
        if let Some(mss) = self.mss {
            tcp[20..24].copy_from_slice(&[2, 4, (mss >> 8) as u8, mss as u8]);
        }
        let pseudo = checksum::pseudo_header_v4(&Ipv4Address::from(local), &Ipv4Address::from(self.tuple.remote), IpProtocol::Tcp, (tcp_len + self.payload_len()) as u32);
        let sum = !checksum::combine(&[pseudo, checksum::data(tcp), payload_sum]);
        tcp[16..18].copy_from_slice(&sum.to_be_bytes());
        IPV4_HEADER + tcp_len
    }
}

/// Where segments go; their payload slices live for `'s` (the file cache), so a sender may
/// gather from them after `transmit` returns.
pub trait Transmit<'s> {
    /// Sends `segment`; false if it could not (no buffer): it counts as lost, and TCP sends it
    /// again.
    fn transmit(&mut self, segment: &Outgoing<'s>) -> bool;
}

/// A connection's state (LISTEN is the server itself, TIME_WAIT the compact table, CLOSED no
/// entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// SYN received, SYN-ACK sent.
    SynReceived,
    /// Open both ways.
    Established,
    /// The client finished sending; responses may still go out.
    CloseWait,
    /// Our FIN sent, not yet acknowledged.
    FinWait1,
    /// Our FIN acknowledged; waiting for the client's.
    FinWait2,
    /// Both FINs sent, ours not yet acknowledged.
    Closing,
    /// Client finished first, our FIN sent.
    LastAck,
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections that completed the handshake.
    pub accepted: u64,
    /// Responses queued.
    pub responses: u64,
    /// Segments sent (data, control and retransmissions).
    pub segments: u64,
    /// Segments sent again after a timeout.
    pub timeouts: u64,
    /// Fast retransmissions (three duplicate ACKs, and NewReno's partial ACKs).
    pub fast_retransmits: u64,
    /// RSTs sent.
    pub resets_sent: u64,
    /// Half-open connections dropped to make room (a SYN flood).
    pub half_open_dropped: u64,
    /// SYNs dropped because the connection table was full.
    pub syns_dropped: u64,
    /// Zero-window probes sent.
    pub window_probes: u64,
    /// Data segments whose payload sum was computed at send time (no precomputed one fitted).
    pub sums_computed: u64,
    /// Segments the transmitter had no room for (held back and sent when room comes).
    pub transmit_full: u64,
    /// Connections reset after too many timeouts.
    pub given_up: u64,
}

/// A response in the send stream.
#[derive(Clone, Copy)]
struct Queued<'s> {
    reply: Reply<'s>,
    /// The sequence number of its first byte.
    start: u32,
}

impl<'s> Queued<'s> {
    fn end(&self) -> u32 {
        self.start.wrapping_add((self.reply.head.len() + self.reply.body.len()) as u32)
    }

    /// The payload of `len` bytes from sequence number `seq`.
    fn slices(&self, seq: u32, len: usize) -> [&'s [u8]; 2] {
        let offset = seq.wrapping_sub(self.start) as usize;
        let head = self.reply.head;
        if offset < head.len() {
            let from_head = (head.len() - offset).min(len);
            [&head[offset..offset + from_head], &self.reply.body[..len - from_head]]
        } else {
            let at = offset - head.len();
            [&self.reply.body[at..at + len], &[]]
        }
    }
}

/// One connection.
struct Conn<'s> {
    tuple: Tuple,
    state: State,
    iss: u32,
    snd_una: u32,
    snd_nxt: u32,
    /// The highest sequence number sent (`snd_nxt` goes back to `snd_una` after a timeout; an
    /// ACK up to here is still for data sent).
    snd_max: u32,
    /// The peer's window and the segment that set it.
    snd_wnd: u32,
    snd_wl1: u32,
    snd_wl2: u32,
    irs: u32,
    rcv_nxt: u32,
    mss: u32,
    /// Responses not yet fully acknowledged, in order.
    queue: VecDeque<Queued<'s>>,
    /// The sequence number after the last queued byte.
    stream_end: u32,
    /// Close after the stream: a FIN at `stream_end`.
    closing: bool,
    /// Request bytes received and not yet parsed.
    request: Vec<u8>,
    /// The client finished sending.
    peer_finished: bool,
    // Timing (RFC 6298).
    srtt: Option<Duration>,
    rttvar: Duration,
    rto: Duration,
    /// The segment being timed: the sequence number that acknowledges it, and when it left.
    timed: Option<(u32, Instant)>,
    retransmit_at: Option<Instant>,
    timeouts: u32,
    probe_at: Option<Instant>,
    ack_at: Option<Instant>,
    idle_at: Instant,
    // Congestion control.
    cwnd: u32,
    ssthresh: u32,
    dupacks: u32,
    /// NewReno: in recovery until this sequence number is acknowledged.
    recover: Option<u32>,
    /// An ACK is owed.
    ack_owed: bool,
    timer_generation: u64,
    scheduled: Option<Instant>,
}

impl<'s> Conn<'s> {
    fn flight(&self) -> u32 {
        self.snd_nxt.wrapping_sub(self.snd_una)
    }

    /// The FIN's sequence number, once the close is decided.
    fn fin_seq(&self) -> Option<u32> {
        self.closing.then_some(self.stream_end)
    }

    fn fin_sent(&self) -> bool {
        self.fin_seq().is_some_and(|fin| before(fin, self.snd_nxt))
    }

    fn fin_acked(&self) -> bool {
        self.fin_seq().is_some_and(|fin| before(fin, self.snd_una))
    }

    fn receive_window(&self, config: &Config) -> u16 {
        (usize::from(config.window).saturating_sub(self.request.len())).min(usize::from(u16::MAX)) as u16
    }

    fn next_deadline(&self) -> Option<Instant> {
        [self.retransmit_at, self.probe_at, self.ack_at, Some(self.idle_at)].into_iter().flatten().min()
    }

    fn segment<'a>(&self, config: &Config, seq: u32, payload: [&'a [u8]; 2]) -> Outgoing<'a> {
        Outgoing {
            tuple: self.tuple,
            seq,
            ack: Some(self.rcv_nxt),
            syn: false,
            fin: false,
            rst: false,
            psh: false,
            window: self.receive_window(config),
            mss: None,
            payload,
            payload_sum: None,
        }
    }

    fn syn_ack(&self, config: &Config) -> Outgoing<'static> {
        Outgoing { syn: true, mss: Some(config.mss), ..self.segment(config, self.iss, [&[], &[]]) }
    }

    /// A new RTT sample (RFC 6298 2.2, 2.3).
    fn sample(&mut self, config: &Config, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let delta = if srtt > rtt { srtt - rtt } else { rtt - srtt };
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
        let rto = self.srtt.unwrap_or(rtt) + (self.rttvar * 4).max(Duration::from_millis(1));
        self.rto = rto.max(config.rto_min).min(config.rto_max);
    }
}

/// What sending a segment changes in a connection, to undo when the segment could not go.
#[derive(Clone, Copy)]
struct Progress {
    state: State,
    snd_nxt: u32,
    snd_max: u32,
    timed: Option<(u32, Instant)>,
    retransmit_at: Option<Instant>,
    ack_owed: bool,
    ack_at: Option<Instant>,
}

impl Progress {
    fn of(conn: &Conn<'_>) -> Progress {
        Progress {
            state: conn.state,
            snd_nxt: conn.snd_nxt,
            snd_max: conn.snd_max,
            timed: conn.timed,
            retransmit_at: conn.retransmit_at,
            ack_owed: conn.ack_owed,
            ack_at: conn.ack_at,
        }
    }

    fn restore(self, conn: &mut Conn<'_>) {
        conn.state = self.state;
        conn.snd_nxt = self.snd_nxt;
        conn.snd_max = self.snd_max;
        conn.timed = self.timed;
        conn.retransmit_at = self.retransmit_at;
        conn.ack_owed = self.ack_owed;
        conn.ack_at = self.ack_at;
    }
}

/// How long held-back segments wait before the next try.
const HELD_RETRY: Duration = Duration::from_millis(1);

/// Where an index-slab timer entry points: (microseconds, slot, generation).
type Timer = Reverse<(i64, usize, u64)>;

/// Stale entries the half-open queue and the timer heap may hold beyond twice their live ones
/// before they are compacted (so a server with few connections does not compact at every one).
const STALE_SLACK: usize = 64;

/// The server: every connection of one listening port.
pub struct Server<'s> {
    config: Config,
    site: &'s Site<'s>,
    isn: IsnGenerator,
    slots: Vec<Option<Conn<'s>>>,
    free: Vec<usize>,
    by_tuple: HashMap<Tuple, usize>,
    /// Half-open connections, oldest first (entries may be stale).
    half_open: VecDeque<(Tuple, u32)>,
    half_open_count: usize,
    time_waits: TimeWaits<()>,
    timers: BinaryHeap<Timer>,
    /// Connections with segments held back for want of room below, and since when.
    held: Vec<usize>,
    held_since: Option<Instant>,
    stats: Stats,
}

impl<'s> Server<'s> {
    /// A server for `config`, answering from `site`, with `secret` for its ISNs.
    pub fn new(config: Config, site: &'s Site<'s>, secret: [u64; 2]) -> Server<'s> {
        Server {
            config,
            site,
            isn: IsnGenerator::new(secret),
            slots: Vec::new(),
            free: Vec::new(),
            by_tuple: HashMap::new(),
            half_open: VecDeque::new(),
            half_open_count: 0,
            time_waits: TimeWaits::default(),
            timers: BinaryHeap::new(),
            held: Vec::new(),
            held_since: None,
            stats: Stats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// A line per connection (state; sequence numbers relative to the ISN; windows; timers),
    /// for failing tests and logs.
    pub fn describe_connections(&self) -> alloc::string::String {
        let mut out = alloc::string::String::new();
        for conn in self.slots.iter().flatten() {
            out += &alloc::format!("{:?} una {} nxt {} end {} wnd {} cwnd {} ssthresh {} rto {:?} rtx {:?} probe {:?} timeouts {} recover {:?} dup {} sched {:?}\n", conn.state, conn.snd_una.wrapping_sub(conn.iss), conn.snd_nxt.wrapping_sub(conn.iss), conn.stream_end.wrapping_sub(conn.iss), conn.snd_wnd, conn.cwnd, conn.ssthresh, conn.rto, conn.retransmit_at, conn.probe_at, conn.timeouts, conn.recover.map(|r| r.wrapping_sub(conn.iss)), conn.dupacks, conn.scheduled);
        }
        out
    }

    /// Connections open now (TIME_WAIT not counted).
    pub fn connections(&self) -> usize {
        self.by_tuple.len()
    }

    /// Tuples in TIME_WAIT now.
    pub fn time_waits(&self) -> usize {
        self.time_waits.len()
    }

    /// When [`Server::poll`] next has work (`None`: only a segment can bring any).
    pub fn poll_at(&mut self) -> Option<Instant> {
        let held = self.held_since.map(|since| since + HELD_RETRY);
        while let Some(&Reverse((micros, slot, generation))) = self.timers.peek() {
            if matches!(self.slots.get(slot), Some(Some(conn)) if conn.timer_generation == generation) {
                return Some(Instant::from_micros(micros)).into_iter().chain(held).min();
            }
            self.timers.pop();
        }
        held
    }

    /// Hands `segment` to `out`; false if `out` had no room (the segment was not sent).
    fn send(&mut self, out: &mut impl Transmit<'s>, segment: &Outgoing<'s>) -> bool {
        if !out.transmit(segment) {
            self.stats.transmit_full += 1;
            return false;
        }
        self.stats.segments += 1;
        self.stats.sums_computed += u64::from(segment.payload_sum.is_none() && segment.payload_len() > 0);
        self.stats.resets_sent += u64::from(segment.rst);
        true
    }

    /// The answer to a segment for no connection (RFC 793 3.4); nothing for a RST.
    fn reset_for(&mut self, segment: &Incoming<'_>, out: &mut impl Transmit<'s>) {
        if segment.rst {
            return;
        }
        let reset = match segment.ack {
            Some(ack) => Outgoing { tuple: segment.tuple, seq: ack, ack: None, syn: false, fin: false, rst: true, psh: false, window: 0, mss: None, payload: [&[], &[]], payload_sum: None },
            None => Outgoing {
                tuple: segment.tuple,
                seq: 0,
                ack: Some(segment.seq.wrapping_add(segment.len())),
                syn: false,
                fin: false,
                rst: true,
                psh: false,
                window: 0,
                mss: None,
                payload: [&[], &[]],
                payload_sum: None,
            },
        };
        let _ = self.send(out, &reset);
    }

    /// Handles one received segment.
    pub fn receive(&mut self, now: Instant, segment: &Incoming<'_>, out: &mut impl Transmit<'s>) {
        self.time_waits.expire(now);
        if let Some(&slot) = self.by_tuple.get(&segment.tuple) {
            self.process(now, slot, segment, out);
            self.settle(now, slot, out);
            return;
        }
        let facts = exos::tcpip::segment::Segment {
            tuple: segment.tuple,
            syn: segment.syn,
            ack: segment.ack.is_some(),
            rst: segment.rst,
            fin: segment.fin,
            seq: segment.seq,
            ack_number: segment.ack.unwrap_or(0),
            payload_len: segment.payload.len() as u32,
            window: segment.window,
            sack: false,
        };
        match self.time_waits.check(&facts, now) {
            Some(Verdict::Ack { seq, ack }) => {
                let reply = Outgoing { tuple: segment.tuple, seq, ack: Some(ack), syn: false, fin: false, rst: false, psh: false, window: 0, mss: None, payload: [&[], &[]], payload_sum: None };
                self.send(out, &reply);
                return;
            }
            Some(Verdict::Drop) => return,
            Some(Verdict::Reopen) | None => {}
        }
        if segment.syn && segment.ack.is_none() && !segment.rst && segment.tuple.local_port == self.config.port {
            self.open(now, segment, out);
        } else {
            self.reset_for(segment, out);
        }
    }

    /// A connection request: a new half-open connection and its SYN-ACK.
    fn open(&mut self, now: Instant, segment: &Incoming<'_>, out: &mut impl Transmit<'s>) {
        while self.half_open_count >= self.config.half_open_max {
            let Some((tuple, iss)) = self.half_open.pop_front() else { break };
            if let Some(&slot) = self.by_tuple.get(&tuple)
                && self.slots[slot].as_ref().is_some_and(|conn| conn.state == State::SynReceived && conn.iss == iss)
            {
                self.remove(slot);
                self.stats.half_open_dropped += 1;
            }
        }
        if self.by_tuple.len() >= self.config.connections_max {
            self.stats.syns_dropped += 1;
            return;
        }
        let iss = self.isn.isn((self.config.ip, segment.tuple.local_port), (segment.tuple.remote, segment.tuple.remote_port), now.total_micros() as u64);
        let mss = u32::from(segment.mss.unwrap_or(536).clamp(64, self.config.mss));
        let conn = Conn {
            tuple: segment.tuple,
            state: State::SynReceived,
            iss,
            snd_una: iss,
            snd_nxt: iss.wrapping_add(1),
            snd_max: iss.wrapping_add(1),
            snd_wnd: u32::from(segment.window),
            snd_wl1: segment.seq,
            snd_wl2: iss,
            irs: segment.seq,
            rcv_nxt: segment.seq.wrapping_add(1),
            mss,
            queue: VecDeque::new(),
            stream_end: iss.wrapping_add(1),
            closing: false,
            request: Vec::new(),
            peer_finished: false,
            srtt: None,
            rttvar: Duration::ZERO,
            rto: self.config.rto_initial,
            timed: Some((iss.wrapping_add(1), now)),
            retransmit_at: Some(now + self.config.rto_initial),
            timeouts: 0,
            probe_at: None,
            ack_at: None,
            idle_at: now + self.config.idle,
            cwnd: 10 * mss,
            ssthresh: u32::MAX,
            dupacks: 0,
            recover: None,
            ack_owed: false,
            timer_generation: 0,
            scheduled: None,
        };
        let syn_ack = conn.syn_ack(&self.config);
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(conn);
                slot
            }
            None => {
                self.slots.push(Some(conn));
                self.slots.len() - 1
            }
        };
        self.by_tuple.insert(segment.tuple, slot);
        self.half_open.push_back((segment.tuple, iss));
        self.half_open_count += 1;
        self.compact_half_open();
        self.send(out, &syn_ack);
        self.settle(now, slot, out);
    }

    fn remove(&mut self, slot: usize) {
        if let Some(conn) = self.slots[slot].take() {
            self.by_tuple.remove(&conn.tuple);
            if conn.state == State::SynReceived {
                self.half_open_count -= 1;
            }
            self.free.push(slot);
        }
    }

    /// Resets connection `slot` (sends RST) and forgets it.
    fn abort(&mut self, slot: usize, out: &mut impl Transmit<'s>) {
        if let Some(conn) = self.slots[slot].as_ref() {
            let reset = Outgoing { rst: true, ack: None, window: 0, ..conn.segment(&self.config, conn.snd_nxt, [&[], &[]]) };
            self.send(out, &reset);
        }
        self.remove(slot);
    }

    /// RFC 793 "SEGMENT ARRIVES" for a connection.
    fn process(&mut self, now: Instant, slot: usize, segment: &Incoming<'_>, out: &mut impl Transmit<'s>) {
        let config = self.config;
        let Some(conn) = self.slots[slot].as_mut() else { return };
        if conn.state == State::SynReceived {
            if segment.rst {
                if segment.seq == conn.rcv_nxt {
                    self.remove(slot);
                }
                return;
            }
            if segment.syn && segment.ack.is_none() {
                // A duplicate SYN (its SYN-ACK was lost): the same SYN-ACK, the same ISN.
                if segment.seq == conn.irs {
                    let syn_ack = conn.syn_ack(&config);
                    self.send(out, &syn_ack);
                }
                return;
            }
            match segment.ack {
                Some(ack) if ack == conn.iss.wrapping_add(1) => {
                    conn.state = State::Established;
                    self.half_open_count -= 1;
                    self.stats.accepted += 1;
                }
                Some(ack) => {
                    let reset = Outgoing { tuple: conn.tuple, seq: ack, ack: None, syn: false, fin: false, rst: true, psh: false, window: 0, mss: None, payload: [&[], &[]], payload_sum: None };
                    self.send(out, &reset);
                    return;
                }
                None => return,
            }
        }
        let Some(conn) = self.slots[slot].as_mut() else { return };
        // Acceptability (RFC 793 3.9): the segment must overlap the receive window.
        let window = u32::from(conn.receive_window(&config)).max(1);
        let seg_end = segment.seq.wrapping_add(segment.len().max(1)).wrapping_sub(1);
        let in_window = |seq: u32| at_or_before(conn.rcv_nxt, seq) && before(seq, conn.rcv_nxt.wrapping_add(window));
        let acceptable = if segment.len() == 0 { segment.seq == conn.rcv_nxt || in_window(segment.seq) } else { in_window(segment.seq) || in_window(seg_end) };
        if !acceptable {
            if !segment.rst {
                conn.ack_owed = true;
            }
            return;
        }
        if segment.rst {
            if segment.seq == conn.rcv_nxt {
                self.remove(slot);
            } else {
                conn.ack_owed = true; // a challenge ACK (RFC 5961 3.2)
            }
            return;
        }
        if segment.syn {
            conn.ack_owed = true; // a challenge ACK (RFC 5961 4.2)
            return;
        }
        let Some(ack) = segment.ack else { return };
        if before(conn.snd_max, ack) {
            conn.ack_owed = true;
            return;
        }
        conn.idle_at = now + config.idle;
        let mut rtx = false;
        if before(conn.snd_una, ack) {
            let acked = ack.wrapping_sub(conn.snd_una);
            if let Some((timed, sent)) = conn.timed
                && at_or_before(timed, ack)
            {
                conn.sample(&config, now - sent);
                conn.timed = None;
            }
            conn.snd_una = ack;
            if before(conn.snd_nxt, ack) {
                conn.snd_nxt = ack;
            }
            while conn.queue.front().is_some_and(|queued| at_or_before(queued.end(), ack)) {
                conn.queue.pop_front();
            }
            match conn.recover {
                Some(recover) if before(ack, recover) => {
                    // NewReno partial ACK: the next hole goes out at once; deflate.
                    conn.cwnd = conn.cwnd.saturating_sub(acked).saturating_add(conn.mss);
                    rtx = true;
                    self.stats.fast_retransmits += 1;
                }
                Some(_) => {
                    conn.cwnd = conn.ssthresh;
                    conn.recover = None;
                }
                None if conn.cwnd < conn.ssthresh => conn.cwnd = conn.cwnd.saturating_add(acked.min(conn.mss)),
                None => conn.cwnd = conn.cwnd.saturating_add((conn.mss * conn.mss / conn.cwnd).max(1)),
            }
            conn.dupacks = 0;
            conn.timeouts = 0;
            conn.retransmit_at = before(conn.snd_una, conn.snd_max).then(|| now + conn.rto);
            if conn.state == State::FinWait1 && conn.fin_acked() {
                conn.state = State::FinWait2;
            } else if conn.state == State::Closing && conn.fin_acked() {
                self.enter_time_wait(now, slot);
                return;
            } else if conn.state == State::LastAck && conn.fin_acked() {
                self.remove(slot);
                return;
            }
        } else if ack == conn.snd_una
            && segment.payload.is_empty()
            && !segment.fin
            && u32::from(segment.window) == conn.snd_wnd
            && conn.flight() > 0
        {
            conn.dupacks += 1;
            if conn.dupacks == 3 && conn.recover.is_none() {
                conn.ssthresh = (conn.flight() / 2).max(2 * conn.mss);
                conn.cwnd = conn.ssthresh + 3 * conn.mss;
                conn.recover = Some(conn.snd_nxt);
                rtx = true;
                self.stats.fast_retransmits += 1;
            } else if conn.dupacks > 3 {
                conn.cwnd = conn.cwnd.saturating_add(conn.mss);
            }
        }
        if before(conn.snd_wl1, segment.seq) || (conn.snd_wl1 == segment.seq && at_or_before(conn.snd_wl2, ack)) {
            conn.snd_wnd = u32::from(segment.window);
            conn.snd_wl1 = segment.seq;
            conn.snd_wl2 = ack;
            if conn.snd_wnd > 0 {
                conn.probe_at = None;
            }
        }
        if rtx {
            self.retransmit_first(now, slot, out);
        }
        let Some(conn) = self.slots[slot].as_mut() else { return };
        // Data, in order only; anything else gets a duplicate ACK.
        let mut seq = segment.seq;
        let mut data = segment.payload;
        if before(seq, conn.rcv_nxt) {
            let skip = conn.rcv_nxt.wrapping_sub(seq) as usize;
            data = data.get(skip..).unwrap_or(&[]);
            seq = conn.rcv_nxt;
        }
        if !data.is_empty() && seq == conn.rcv_nxt && conn.closing && !conn.peer_finished {
            // No more requests will be read (the connection closes after its responses):
            // what the client still sends is taken and dropped, so it can finish sending and
            // read its answer (the lingering close of a web server).
            conn.rcv_nxt = conn.rcv_nxt.wrapping_add(data.len() as u32);
            conn.ack_owed = true;
            seq = conn.rcv_nxt;
            data = &[];
        }
        if !data.is_empty() {
            if seq == conn.rcv_nxt && !conn.peer_finished && matches!(conn.state, State::Established | State::FinWait1 | State::FinWait2) {
                let room = (http::HEAD_MAX + 1).saturating_sub(conn.request.len()).min(usize::from(conn.receive_window(&config)));
                let taken = data.len().min(room);
                conn.request.extend_from_slice(&data[..taken]);
                conn.rcv_nxt = conn.rcv_nxt.wrapping_add(taken as u32);
                if taken < data.len() {
                    conn.ack_owed = true;
                } else if conn.ack_at.is_none() {
                    conn.ack_at = Some(now + config.ack_delay);
                }
                seq = seq.wrapping_add(taken as u32);
                data = &data[taken..];
            } else {
                conn.ack_owed = true;
            }
        }
        if segment.fin && data.is_empty() && seq == conn.rcv_nxt && !conn.peer_finished {
            conn.rcv_nxt = conn.rcv_nxt.wrapping_add(1);
            conn.peer_finished = true;
            conn.ack_owed = true;
            match conn.state {
                State::Established => conn.state = State::CloseWait,
                State::FinWait1 => conn.state = State::Closing,
                State::FinWait2 => {
                    self.parse_requests(slot);
                    self.send_ack(slot, out);
                    self.enter_time_wait(now, slot);
                    return;
                }
                _ => {}
            }
        }
        self.parse_requests(slot);
    }

    /// Queues the responses to the complete requests received (in order, a bounded number).
    fn parse_requests(&mut self, slot: usize) {
        let (site, config) = (self.site, self.config);
        let Some(conn) = self.slots[slot].as_mut() else { return };
        let mut consumed = 0;
        while !conn.closing && conn.queue.len() < config.pipeline_max {
            let reply = match http::parse(&conn.request[consumed..]) {
                Parsed::Complete(request, length) => {
                    consumed += length;
                    site.reply_in_segments(&request, conn.mss as u16)
                }
                Parsed::Refused(refusal) => {
                    consumed = conn.request.len();
                    site.refusal(refusal)
                }
                Parsed::Partial => break,
            };
            let start = conn.stream_end;
            let queued = Queued { reply, start };
            conn.stream_end = queued.end();
            conn.queue.push_back(queued);
            conn.closing = !reply.keep_alive;
            self.stats.responses += 1;
        }
        conn.request.drain(..consumed);
        if conn.peer_finished && !conn.closing {
            // The client is done: what it left unfinished is dropped, and we close too.
            conn.request.clear();
            conn.closing = true;
        }
    }

    fn send_ack(&mut self, slot: usize, out: &mut impl Transmit<'s>) {
        let config = self.config;
        let Some(conn) = self.slots[slot].as_mut() else { return };
        let ack = conn.segment(&config, conn.snd_nxt, [&[], &[]]);
        conn.ack_owed = false;
        conn.ack_at = None;
        self.send(out, &ack);
    }

    fn enter_time_wait(&mut self, now: Instant, slot: usize) {
        if let Some(conn) = self.slots[slot].as_ref() {
            self.time_waits.insert(conn.tuple, conn.rcv_nxt, None, now);
        }
        self.remove(slot);
    }

    /// Sends the first unacknowledged segment again (a timeout or a fast retransmit).
    fn retransmit_first(&mut self, now: Instant, slot: usize, out: &mut impl Transmit<'s>) {
        let Some(conn) = self.slots[slot].as_mut() else { return };
        conn.timed = None; // Karn: no sample from a retransmitted segment
        let saved = conn.snd_nxt;
        conn.snd_nxt = conn.snd_una;
        let segment = self.next_segment(now, slot, true);
        let Some(conn) = self.slots[slot].as_mut() else { return };
        if before(conn.snd_nxt, saved) {
            conn.snd_nxt = saved;
        }
        if let Some(segment) = segment {
            self.send(out, &segment);
        }
    }

    /// The next segment of connection `slot` the windows allow (`force`: one segment even if
    /// the congestion window is full, for a retransmission); advances `snd_nxt`.
    fn next_segment(&mut self, now: Instant, slot: usize, force: bool) -> Option<Outgoing<'s>> {
        let config = self.config;
        let conn = self.slots[slot].as_mut()?;
        if conn.state == State::SynReceived {
            return None;
        }
        let flight = conn.flight();
        // Limited transmit (RFC 3042): the first two duplicate ACKs each let one new segment
        // out, so that a small window still draws the three duplicates fast retransmit needs
        // (without it most losses at a window of a few segments waited for the timer).
        let limited = if conn.recover.is_none() { conn.dupacks.min(2) * conn.mss } else { 0 };
        let window = conn.snd_wnd.min(conn.cwnd.saturating_add(limited));
        let available = if force { conn.mss.min(conn.snd_wnd.max(1)) } else { window.saturating_sub(flight) };
        if before(conn.snd_nxt, conn.stream_end) {
            let queued = *conn.queue.iter().find(|queued| before(conn.snd_nxt, queued.end()))?;
            let room = queued.end().wrapping_sub(conn.snd_nxt).min(conn.mss);
            let len = room.min(available);
            if len == 0 || (len < room && flight > 0 && !force) {
                return None; // the window is full, or only a sliver is open (SWS avoidance)
            }
            let seq = conn.snd_nxt;
            let end = seq.wrapping_add(len);
            let fin = conn.fin_seq() == Some(end);
            let mut segment = conn.segment(&config, seq, queued.slices(seq, len as usize));
            let offset = seq.wrapping_sub(queued.start);
            let whole = len == conn.mss || end == queued.end();
            segment.payload_sum = queued.reply.sums.filter(|sums| u32::from(sums.mss) == conn.mss && offset % conn.mss == 0 && whole).and_then(|sums| sums.get((offset / conn.mss) as usize));
            segment.psh = end == queued.end();
            segment.fin = fin;
            conn.snd_nxt = end.wrapping_add(u32::from(fin));
            Some(self.after_send(now, slot, segment))
        } else if conn.fin_seq() == Some(conn.snd_nxt) && (available > 0 || force || conn.snd_wnd == 0) {
            let mut segment = conn.segment(&config, conn.snd_nxt, [&[], &[]]);
            segment.fin = true;
            conn.snd_nxt = conn.snd_nxt.wrapping_add(1);
            Some(self.after_send(now, slot, segment))
        } else {
            None
        }
    }

    /// Bookkeeping for a segment about to go: the timed segment, the retransmission timer, the
    /// owed ACK, the state a FIN leads to.
    fn after_send(&mut self, now: Instant, slot: usize, segment: Outgoing<'s>) -> Outgoing<'s> {
        if let Some(conn) = self.slots[slot].as_mut() {
            if before(conn.snd_max, conn.snd_nxt) {
                conn.snd_max = conn.snd_nxt;
            }
            if conn.timed.is_none() && conn.timeouts == 0 && conn.recover.is_none() {
                conn.timed = Some((conn.snd_nxt, now));
            }
            if conn.retransmit_at.is_none() {
                conn.retransmit_at = Some(now + conn.rto);
            }
            conn.ack_owed = false;
            conn.ack_at = None;
            if segment.fin {
                conn.state = match conn.state {
                    State::Established => State::FinWait1,
                    State::CloseWait => State::LastAck,
                    other => other,
                };
            }
        }
        segment
    }

    /// Sends what connection `slot` may, any owed ACK, and schedules its next timer.
    fn settle(&mut self, now: Instant, slot: usize, out: &mut impl Transmit<'s>) {
        loop {
            let Some(saved) = self.slots[slot].as_ref().map(Progress::of) else { return };
            let Some(segment) = self.next_segment(now, slot, false) else { break };
            if !self.send(out, &segment) {
                // No room below: the segment is held back, not lost; try again shortly.
                if let Some(conn) = self.slots[slot].as_mut() {
                    saved.restore(conn);
                }
                if !self.held.contains(&slot) {
                    self.held.push(slot);
                }
                self.held_since.get_or_insert(now);
                break;
            }
        }
        let Some(conn) = self.slots[slot].as_mut() else { return };
        if conn.snd_wnd == 0 && conn.flight() == 0 && before(conn.snd_nxt, conn.stream_end) && conn.probe_at.is_none() {
            conn.probe_at = Some(now + conn.rto);
        }
        if conn.ack_owed {
            self.send_ack(slot, out);
        }
        let Some(conn) = self.slots[slot].as_mut() else { return };
        if let Some(next) = conn.next_deadline()
            && conn.scheduled.is_none_or(|scheduled| next < scheduled)
        {
            conn.scheduled = Some(next);
            conn.timer_generation += 1;
            self.timers.push(Reverse((next.total_micros(), slot, conn.timer_generation)));
            if self.timers.len() > 2 * self.by_tuple.len() + STALE_SLACK {
                self.compact_timers();
            }
        }
    }

    /// Drops the half-open queue's stale entries (connections that completed or went) once
    /// they outnumber the live ones: otherwise every connection ever made would leave one
    /// there until a flood came to pop it, and the queue's room would follow the peaks.
    fn compact_half_open(&mut self) {
        if self.half_open.len() <= 2 * self.half_open_count + STALE_SLACK {
            return;
        }
        let (by_tuple, slots) = (&self.by_tuple, &self.slots);
        self.half_open.retain(|&(tuple, iss)| {
            by_tuple.get(&tuple).and_then(|&slot| slots[slot].as_ref()).is_some_and(|conn| conn.state == State::SynReceived && conn.iss == iss)
        });
    }

    /// Drops timer entries no connection waits on any more (deadlines a connection moved
    /// earlier, and those of connections that went) once they outnumber the live ones.
    fn compact_timers(&mut self) {
        let slots = &self.slots;
        self.timers.retain(|&Reverse((_, slot, generation))| slots.get(slot).and_then(Option::as_ref).is_some_and(|conn| conn.timer_generation == generation));
    }

    /// The half-open queue's and the timer heap's entries, stale ones included.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> (usize, usize) {
        (self.half_open.len(), self.timers.len())
    }

    /// Runs the timers that are due: retransmissions, window probes, delayed ACKs, idle closes.
    pub fn poll(&mut self, now: Instant, out: &mut impl Transmit<'s>) {
        self.time_waits.expire(now);
        self.held_since = None;
        for slot in core::mem::take(&mut self.held) {
            self.settle(now, slot, out);
        }
        while let Some(&Reverse((micros, slot, generation))) = self.timers.peek() {
            if micros > now.total_micros() {
                break;
            }
            self.timers.pop();
            let config = self.config;
            let Some(conn) = self.slots.get_mut(slot).and_then(Option::as_mut) else { continue };
            if conn.timer_generation != generation {
                continue;
            }
            conn.scheduled = None;
            if conn.retransmit_at.is_some_and(|at| at <= now) {
                conn.timeouts += 1;
                if conn.timeouts > config.retries {
                    self.stats.given_up += 1;
                    self.abort(slot, out);
                    continue;
                }
                self.stats.timeouts += 1;
                conn.rto = (conn.rto * 2).min(config.rto_max);
                conn.retransmit_at = Some(now + conn.rto);
                if conn.state == State::SynReceived {
                    let syn_ack = conn.syn_ack(&config);
                    self.send(out, &syn_ack);
                } else {
                    conn.ssthresh = (conn.flight() / 2).max(2 * conn.mss);
                    conn.cwnd = conn.mss;
                    conn.recover = None;
                    conn.dupacks = 0;
                    conn.timed = None;
                    // Go back N: everything after snd_una is sent again as the window reopens.
                    conn.snd_nxt = conn.snd_una;
                    if let Some(segment) = self.next_segment(now, slot, true) {
                        self.send(out, &segment);
                    }
                }
            }
            let Some(conn) = self.slots.get_mut(slot).and_then(Option::as_mut) else { continue };
            if conn.probe_at.is_some_and(|at| at <= now) {
                // A zero-window probe: one old sequence number, which the peer must ACK with
                // its current window.
                let probe = conn.segment(&config, conn.snd_una.wrapping_sub(1), [&[], &[]]);
                conn.rto = (conn.rto * 2).min(config.rto_max);
                conn.probe_at = Some(now + conn.rto);
                self.stats.window_probes += 1;
                self.send(out, &probe);
            }
            let Some(conn) = self.slots.get_mut(slot).and_then(Option::as_mut) else { continue };
            if conn.ack_at.is_some_and(|at| at <= now) {
                conn.ack_owed = true;
                conn.ack_at = None;
            }
            if conn.idle_at <= now {
                if conn.state == State::SynReceived || conn.fin_sent() {
                    // Half-open or closing for a whole idle period: give up.
                    self.remove(slot);
                    continue;
                }
                if conn.flight() == 0 && !conn.closing {
                    conn.closing = true;
                }
                conn.idle_at = now + config.idle;
            }
            self.settle(now, slot, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_carry_a_checksum_linux_accepts() {
        let tuple = Tuple { local_port: 80, remote: [10, 0, 2, 2], remote_port: 4000 };
        let head = b"HTTP/1.1 200 OK\r\n\r\n"; // odd length: the body starts at an odd offset
        let body = b"hello, world";
        let segment = Outgoing { tuple, seq: 7, ack: Some(9), syn: false, fin: true, rst: false, psh: true, window: 1000, mss: Some(1460), payload: [head, body], payload_sum: None };
        let mut frame = [0u8; 64 + 31];
        let header_len = segment.write_headers([10, 0, 2, 15], segment.payload_sum(), &mut frame);
        frame[header_len..header_len + head.len()].copy_from_slice(head);
        frame[header_len + head.len()..header_len + head.len() + body.len()].copy_from_slice(body);
        let packet = &frame[..header_len + segment.payload_len()];
        assert_eq!(Incoming::parse(packet, [10, 0, 2, 15]), None, "addressed to the client, not to us");
        let parsed = Incoming::parse(packet, [10, 0, 2, 2]).expect("the client reads it");
        assert!(parsed.fin && parsed.ack == Some(9) && parsed.mss == Some(1460));
        let ip = Ipv4Packet::new_checked(packet).unwrap();
        assert!(ip.verify_checksum());
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(tcp.verify_checksum(&IpAddress::v4(10, 0, 2, 15), &IpAddress::v4(10, 0, 2, 2)));
        let repr = TcpRepr::parse(&tcp, &IpAddress::v4(10, 0, 2, 15), &IpAddress::v4(10, 0, 2, 2), &ChecksumCapabilities::default()).unwrap();
        assert_eq!((repr.seq_number.0, repr.ack_number.map(|a| a.0), repr.control, repr.max_seg_size), (7, Some(9), TcpControl::Fin, Some(1460)));
        assert_eq!(repr.payload, b"HTTP/1.1 200 OK\r\n\r\nhello, world");
    }
}
