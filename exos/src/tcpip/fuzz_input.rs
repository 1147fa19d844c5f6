//! Arbitrary frames into the socket layer, for fuzzing (the seeded run in this crate's tests,
//! and any fuzzer that links exos): a [`Stack`] with a TCP listener and a UDP socket takes a
//! stream of commands -- a raw IPv4 packet, a well-formed TCP segment from one of four clients
//! with arbitrary flags, numbers, window and payload, a fragment of a UDP datagram (put
//! together by the link, as exos's is), time passing, or the program acting
//! (accepting, reading, writing, closing, answering datagrams; their errnos are expected). It
//! panics if the stack sends a packet that is not well-formed IPv4, or loses or leaks a
//! descriptor.

use super::link::Link;
use super::stack::{Fd, Kind, Stack, StackConfig};
use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::net::SocketAddrV4;
use super::segment::{emit_ipv4_tcp, ipv4_tcp_len, plain_tcp};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::{Duration, Instant};
use crate::reassembly::{Reassembled, Reassembler};
use smoltcp::wire::{IpProtocol, Ipv4Address, Ipv4Packet, TcpControl};

const LOCAL: [u8; 4] = [10, 0, 2, 15];
const PEER: [u8; 4] = [10, 0, 2, 2];

/// Takes what the stack sends and checks it is well-formed IPv4.
struct Sink;

/// A packet being sent.
struct SinkToken;

/// Never used: received packets come through [`Link::next`].
struct NoRx;

impl phy::RxToken for NoRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&[])
    }
}

impl phy::TxToken for SinkToken {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut packet = vec![0u8; len];
        let result = f(&mut packet);
        let ip = Ipv4Packet::new_checked(&packet[..]).expect("the stack sent a packet that is not IPv4");
        assert!(ip.verify_checksum(), "the stack sent a bad IPv4 checksum");
        result
    }
}

impl phy::Device for Sink {
    type RxToken<'a> = NoRx;
    type TxToken<'a> = SinkToken;

    fn receive(&mut self, _now: Instant) -> Option<(NoRx, SinkToken)> {
        None
    }

    fn transmit(&mut self, _now: Instant) -> Option<SinkToken> {
        Some(SinkToken)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = 1500;
        caps
    }
}

/// The fuzzer's link: packets queued by the commands, fragments put together as exos's
/// real link does; every claim granted.
struct FuzzLink {
    inbox: VecDeque<Vec<u8>>,
    sink: Sink,
    reassembler: Reassembler,
    assembled: Option<Vec<u8>>,
    now_ns: u64,
}

impl Link for FuzzLink {
    type Sender = Sink;
    type Claim = ();

    fn claim(&mut self, _filter: &dpf::Filter) -> Result<(), xok_abi::Error> {
        Ok(())
    }

    fn next(&mut self) -> (Option<&[u8]>, &mut Sink) {
        while self.assembled.is_none() {
            let Some(packet) = self.inbox.front() else { break };
            match self.reassembler.input(packet, self.now_ns) {
                Reassembled::Whole => break,
                Reassembled::Complete(datagram) => self.assembled = Some(datagram),
                Reassembled::Pending | Reassembled::Dropped => {}
            }
            self.inbox.pop_front();
        }
        match &self.assembled {
            Some(datagram) => (Some(datagram), &mut self.sink),
            None => (self.inbox.front().map(Vec::as_slice), &mut self.sink),
        }
    }

    fn consumed(&mut self) {
        if self.assembled.take().is_none() {
            self.inbox.pop_front();
        }
    }

    fn sender(&mut self) -> &mut Sink {
        &mut self.sink
    }

    fn can_send(&mut self) -> bool {
        true
    }

    fn flush(&mut self) {}
}

/// Reads a fuzzer's command stream (also Cheetah's): bytes, big-endian words and runs, each
/// `None` or short once the input is used up.
pub struct Commands<'a>(pub &'a [u8]);

impl Commands<'_> {
    /// The next byte.
    pub fn byte(&mut self) -> Option<u8> {
        let (first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*first)
    }

    /// The next four bytes, big-endian.
    pub fn word(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes([self.byte()?, self.byte()?, self.byte()?, self.byte()?]))
    }

    /// The next `n` bytes (fewer at the end).
    pub fn take(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        taken.to_vec()
    }
}

/// A TCP segment from `PEER`:`port` to the listener, as the command describes it (`None` for
/// a flag set smoltcp cannot express).
fn segment(port: u16, flags: u8, seq: u32, ack: Option<u32>, window: u16, payload: &[u8]) -> Vec<u8> {
    let control = match flags & 7 {
        1 => TcpControl::Syn,
        2 => TcpControl::Fin,
        4 => TcpControl::Rst,
        _ if flags & 8 != 0 => TcpControl::Psh,
        _ => TcpControl::None,
    };
    let tcp = plain_tcp((port, 7), control, seq, ack, window, payload);
    let mut bytes = vec![0u8; ipv4_tcp_len(&tcp)];
    emit_ipv4_tcp(PEER, LOCAL, &tcp, &mut bytes);
    bytes
}

/// A fragment of UDP datagram `id` from `PEER` at `offset_units` (8 bytes), with a good IPv4
/// header checksum.
fn fragment(id: u16, offset_units: u16, more: bool, payload: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0u8; 20 + payload.len()];
    let mut ip = Ipv4Packet::new_unchecked(&mut bytes[..]);
    ip.set_version(4);
    ip.set_header_len(20);
    ip.set_total_len((20 + payload.len()) as u16);
    ip.set_ident(id);
    ip.set_more_frags(more);
    ip.set_frag_offset(offset_units * 8);
    ip.set_hop_limit(64);
    ip.set_next_header(IpProtocol::Udp);
    ip.set_src_addr(Ipv4Address::from_octets(PEER));
    ip.set_dst_addr(Ipv4Address::from_octets(LOCAL));
    ip.fill_checksum();
    bytes[20..].copy_from_slice(payload);
    bytes
}

/// Runs the commands in `bytes` against a fresh stack.
pub fn run(bytes: &[u8]) {
    let mut now = Instant::from_secs(1);
    let link = FuzzLink { inbox: VecDeque::new(), sink: Sink, reassembler: Reassembler::default(), assembled: None, now_ns: 0 };
    let mut stack = Stack::new(link, StackConfig { ip: LOCAL, prefix: 24, gateway: None, seed: 7 }, now);
    let listener = stack.socket(Kind::Stream).expect("a socket");
    stack.bind(listener, 7).expect("bind");
    stack.listen(listener, 4).expect("listen");
    let datagrams = stack.socket(Kind::Datagram).expect("a socket");
    stack.bind(datagrams, 9).expect("bind");
    let mut streams: Vec<Fd> = Vec::new();
    let mut buffer = [0u8; 512];
    let mut commands = Commands(bytes);
    while let Some(kind) = commands.byte() {
        match kind % 5 {
            0 => {
                let len = usize::from(commands.byte().unwrap_or(0));
                let packet = commands.take(len);
                stack.link().inbox.push_back(packet);
            }
            1 => {
                let (Some(client), Some(flags), Some(seq)) = (commands.byte(), commands.byte(), commands.word()) else { break };
                let ack = if flags & 0x10 != 0 { commands.word() } else { None };
                let window = u16::from(commands.byte().unwrap_or(0)) << 6;
                let len = usize::from(commands.byte().unwrap_or(0) % 64);
                let payload = commands.take(len);
                let packet = segment(40_000 + u16::from(client % 4), flags, seq, ack, window, &payload);
                stack.link().inbox.push_back(packet);
            }
            2 => now += Duration::from_millis(u64::from(commands.byte().unwrap_or(0)) * 10),
            3 => {
                let (Some(id), Some(place), Some(len)) = (commands.byte(), commands.byte(), commands.byte()) else { break };
                let payload = commands.take(usize::from(len));
                stack.link().inbox.push_back(fragment(u16::from(id % 4), u16::from(place & 0x7f), place & 0x80 != 0, &payload));
            }
            _ => {
                let action = commands.byte().unwrap_or(0);
                while let Ok((fd, _)) = stack.accept(listener) {
                    streams.push(fd);
                }
                for &fd in &streams {
                    if let Ok(len) = stack.recv(fd, &mut buffer, now) {
                        let _ = stack.send(fd, &buffer[..len], now);
                    }
                }
                if action & 1 != 0
                    && let Some(fd) = streams.pop()
                {
                    stack.close(fd, now).expect("closing an open descriptor");
                }
                if let Ok((len, from)) = stack.recv_from(datagrams, &mut buffer) {
                    let _ = stack.send_to(datagrams, &buffer[..len], SocketAddrV4::new(*from.ip(), from.port().max(1)), now);
                }
            }
        }
        stack.link().now_ns = now.total_micros() as u64 * 1_000;
        stack.poll(now);
        assert_eq!(stack.stats().descriptors, 2 + streams.len(), "descriptors leaked or lost");
    }
}
