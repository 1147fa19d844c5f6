//! The network syscalls on the host: rings, filters, demultiplexing, gather sends, fairness and
//! teardown, with a fake NIC.

use super::tests::{TestMachine, call, kernel};
use super::*;
use crate::net::nic::{NicDriver, PhysSegment};
use alloc::boxed::Box;
use alloc::vec::Vec;
use dpf::Filter;
use std::sync::{Arc, Mutex};
use xok_abi::layout::{PAGE_SIZE, USER_BASE};
use crate::net::transmit_check;
use xok_abi::net::{DPF_COPY, DPF_FALLBACK, GatherSegment, NicInfo, NicModel, RING_HEADER_LEN, XMIT_UNCHECKED};

#[derive(Default)]
pub(super) struct FakeNicState {
    /// Frames handed to the NIC: segments and token.
    sent: Vec<(Vec<PhysSegment>, u64)>,
    /// Tokens not yet reclaimed.
    pending: Vec<u64>,
    /// Frames waiting to be received.
    incoming: Vec<Vec<u8>>,
    room: usize,
    flushes: usize,
}

struct FakeNic(Arc<Mutex<FakeNicState>>);

impl NicDriver for FakeNic {
    fn info(&self) -> NicInfo {
        NicInfo { mac: [2, 0, 0, 0, 0, 1], link_up: true, model: NicModel::E1000 }
    }
    fn irq(&self) -> u8 {
        11
    }
    fn tx_room(&self) -> usize {
        let state = self.0.lock().unwrap();
        state.room - state.pending.len().min(state.room)
    }
    fn tx_push(&mut self, segments: &[PhysSegment], token: u64) {
        let mut state = self.0.lock().unwrap();
        state.sent.push((segments.to_vec(), token));
        state.pending.push(token);
    }
    fn tx_flush(&mut self) {
        self.0.lock().unwrap().flushes += 1;
    }
    fn tx_reclaim(&mut self, done: &mut dyn FnMut(u64)) {
        for token in core::mem::take(&mut self.0.lock().unwrap().pending) {
            done(token);
        }
    }
    fn rx_poll(&mut self, deliver: &mut dyn FnMut(&[u8])) {
        for frame in core::mem::take(&mut self.0.lock().unwrap().incoming) {
            deliver(&frame);
        }
    }
    fn ack_interrupt(&mut self) -> bool {
        true
    }
}

pub(super) fn with_nic(room: usize) -> (Kernel<TestMachine>, Arc<Mutex<FakeNicState>>) {
    with_nic_over(kernel(), room)
}

/// Adds a fake NIC with `room` send slots to `k`.
pub(super) fn with_nic_over(mut k: Kernel<TestMachine>, room: usize) -> (Kernel<TestMachine>, Arc<Mutex<FakeNicState>>) {
    let state = Arc::new(Mutex::new(FakeNicState { room, ..FakeNicState::default() }));
    k.add_nic(Box::new(FakeNic(Arc::clone(&state))));
    (k, state)
}

/// Where test environments keep their scratch data and rings.
pub(super) const DATA: usize = 0x20_0000_0000;

/// Maps `pages` fresh writable pages at DATA for `env`.
pub(super) fn map_data(k: &mut Kernel<TestMachine>, env: EnvId, pages: usize) {
    for i in 0..pages {
        let page = call(k, env, Syscall::PageAlloc, [0; 5]).unwrap();
        call(k, env, Syscall::InsertPte, [DATA + i * PAGE_SIZE, page, PteFlags::WRITE.bits() as usize, 0, 0]).unwrap();
    }
}

pub(super) fn poke(k: &mut Kernel<TestMachine>, env: EnvId, va: usize, bytes: &[u8]) {
    k.envs.get(env).unwrap().space.copy_to_user(&mut k.machine, va, bytes).unwrap();
}

fn peek(k: &Kernel<TestMachine>, env: EnvId, va: usize, len: usize) -> Vec<u8> {
    let mut out = alloc::vec![0; len];
    k.envs.get(env).unwrap().space.copy_from_user(&k.machine, va, &mut out).unwrap();
    out
}

pub(super) fn insert_filter(k: &mut Kernel<TestMachine>, env: EnvId, filter: &Filter, ring: usize, flags: usize) -> Result<usize, Error> {
    let bytes = filter.to_bytes();
    let at = DATA + 3 * PAGE_SIZE;
    poke(k, env, at, &bytes);
    call(k, env, Syscall::DpfInsert, [at, bytes.len(), ring, flags, 0])
}

/// A minimal UDP datagram to `port` (no IP options, not a fragment).
pub(super) fn udp_frame(port: u16) -> Vec<u8> {
    let mut frame = alloc::vec![0xff; 6];
    frame.extend_from_slice(&[2, 0, 0, 0, 0, 9, 0x08, 0x00]);
    frame.extend_from_slice(&[0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 2, 10, 0, 0, 15]);
    frame.extend_from_slice(&[0x30, 0x39]);
    frame.extend_from_slice(&port.to_be_bytes());
    frame.extend_from_slice(&[0, 8, 0, 0]);
    frame
}

pub(super) fn arp_request() -> Vec<u8> {
    let mut frame = alloc::vec![0xff; 6];
    frame.extend_from_slice(&[2, 0, 0, 0, 0, 9, 0x08, 0x06]);
    frame.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    frame.resize(42, 0);
    frame
}

/// An environment with 4 data pages and a 4-entry ring at DATA.
pub(super) fn env_with_ring(k: &mut Kernel<TestMachine>) -> (EnvId, usize) {
    let env = k.spawn(None, "good", b"", false, 0).unwrap();
    map_data(k, env, 4);
    let ring = call(k, env, Syscall::PktringSetring, [DATA, 4, 256, 0, 0]).unwrap(); // no counter
    (env, ring)
}

pub(super) fn receive(k: &mut Kernel<TestMachine>, state: &Arc<Mutex<FakeNicState>>, frame: &[u8]) {
    state.lock().unwrap().incoming.push(frame.to_vec());
    k.nic_interrupt(11);
}

#[test]
fn filters_deliver_into_the_owners_ring_and_unmatched_frames_are_counted() {
    let (mut k, nic) = with_nic(16);
    let (env, ring) = env_with_ring(&mut k);
    insert_filter(&mut k, env, &Filter::arp_for([0; 4]), ring, 0).unwrap();
    receive(&mut k, &nic, &arp_request());
    let owner = u32::from_le_bytes(peek(&k, env, DATA, 4).try_into().unwrap());
    assert_eq!(owner, 42);
    assert_eq!(peek(&k, env, DATA + RING_HEADER_LEN, 42), arp_request());
    let mut ipv6 = arp_request();
    ipv6[12..14].copy_from_slice(&[0x86, 0xdd]);
    receive(&mut k, &nic, &ipv6);
    assert_eq!(call(&mut k, env, Syscall::PktringStats, [usize::MAX, 0, 0, 0, 0]), Ok(1));
    assert_eq!(u32::from_le_bytes(peek(&k, env, DATA + 256, 4).try_into().unwrap()), 0);
}

#[test]
fn overlapping_filters_are_refused_and_copy_filters_need_privilege() {
    let (mut k, nic) = with_nic(16);
    let (first, ring1) = env_with_ring(&mut k);
    let (second, ring2) = env_with_ring(&mut k);
    insert_filter(&mut k, first, &Filter::arp_for([0; 4]), ring1, 0).unwrap();
    assert_eq!(insert_filter(&mut k, second, &Filter::arp_for([0; 4]), ring2, 0), Err(Error::FilterOverlap));
    assert_eq!(insert_filter(&mut k, second, &Filter::everything(), ring2, DPF_COPY), Err(Error::NotPermitted));
    for broad in [Filter::everything(), Filter::ipv4(), Filter::arp()] {
        assert_eq!(insert_filter(&mut k, second, &broad, ring2, 0), Err(Error::NotPermitted), "{broad:?} needs privilege");
    }
    assert_eq!(insert_filter(&mut k, second, &Filter::arp_for([0; 4]), ring1, 0), Err(Error::NoSuchRing), "another env's ring");
    assert_eq!(insert_filter(&mut k, second, &Filter::arp_for([0; 4]), ring2, 7), Err(Error::BadFlags));
    poke(&mut k, second, DATA + 3 * PAGE_SIZE, &[1, 9, 9, 9]);
    assert_eq!(call(&mut k, second, Syscall::DpfInsert, [DATA + 3 * PAGE_SIZE, 4, ring2, 0, 0]), Err(Error::BadFilter));
    assert_eq!(call(&mut k, second, Syscall::DpfInsert, [0x10_0000, 13, ring2, 0, 0]), Err(Error::BadAddress));
    assert_eq!(call(&mut k, second, Syscall::DpfInsert, [DATA, 1 << 20, ring2, 0, 0]), Err(Error::BadLength));

    k.envs.get_mut(second).unwrap().privileged = true;
    insert_filter(&mut k, second, &Filter::everything(), ring2, DPF_COPY).unwrap();
    receive(&mut k, &nic, &arp_request());
    assert_eq!(peek(&k, first, DATA, 1), [42]);
    assert_eq!(peek(&k, second, DATA, 1), [42], "the copy filter saw it too");
}

#[test]
fn a_capture_sees_the_frames_the_machine_sends_and_not_the_refused_ones() {
    let (mut k, _nic) = with_nic(16);
    let sender = sender_holding(&mut k, &Filter::udp_port(5000));
    let (capture, ring) = env_with_ring(&mut k);
    k.envs.get_mut(capture).unwrap().privileged = true;
    send(&mut k, sender, &udp_from(5000, 10)).unwrap();
    assert_eq!(peek(&k, capture, DATA, 4), [0; 4], "no capture running: nothing copied");
    insert_filter(&mut k, capture, &Filter::everything(), ring, DPF_COPY).unwrap();
    assert_eq!(send(&mut k, sender, &udp_from(5001, 10)), Err(Error::ForeignSource));
    assert_eq!(peek(&k, capture, DATA, 4), [0; 4], "a refused frame is not captured");
    let frame = udp_from(5000, 20);
    send(&mut k, sender, &frame).unwrap();
    let owner = u32::from_le_bytes(peek(&k, capture, DATA, 4).try_into().unwrap());
    assert_eq!(owner as usize, frame.len());
    assert_eq!(peek(&k, capture, DATA + RING_HEADER_LEN, frame.len()), frame, "the sent frame, whole");
}

/// The fake NIC's MAC, and the addresses test frames use.
const NIC_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const HOST: [u8; 4] = [10, 0, 0, 15];
const PEER: [u8; 4] = [10, 0, 0, 2];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];

/// An IPv4 frame from the NIC: `protocol` (UDP with an 8-byte header, TCP with a 20-byte one
/// carrying RST) from `src`:`sport` to `dst`:`dport`, then `payload` bytes of 0x5a.
fn ipv4_frame(protocol: u8, src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: usize) -> Vec<u8> {
    let transport = if protocol == 6 { 20 } else { 8 };
    let mut frame = PEER_MAC.to_vec();
    frame.extend_from_slice(&NIC_MAC);
    frame.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
    frame.extend_from_slice(&((20 + transport + payload) as u16).to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0x40, 0, 64, protocol, 0, 0]);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&sport.to_be_bytes());
    frame.extend_from_slice(&dport.to_be_bytes());
    if protocol == 6 {
        frame.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x04, 0, 0, 0, 0, 0, 0]);
    } else {
        frame.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
    }
    frame.resize(frame.len() + payload, 0x5a);
    frame
}

/// A UDP datagram from HOST:`port`.
pub(super) fn udp_from(port: u16, payload: usize) -> Vec<u8> {
    ipv4_frame(17, HOST, port, PEER, 9, payload)
}

/// An ARP reply saying `ip` is at `mac`, sent from the NIC.
fn arp_reply(mac: [u8; 6], ip: [u8; 4]) -> Vec<u8> {
    let mut frame = PEER_MAC.to_vec();
    frame.extend_from_slice(&NIC_MAC);
    frame.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 2]);
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(&PEER_MAC);
    frame.extend_from_slice(&PEER);
    frame
}

/// Where `send` keeps its gather list and counter.
const GATHER_VA: usize = DATA + 3 * PAGE_SIZE;
const COUNTER_VA: usize = GATHER_VA + 512;

/// The gather list for `regions` (va, len), as a program passes it.
fn gather_list(regions: &[(usize, usize)]) -> Vec<u8> {
    regions.iter().flat_map(|(va, len)| GatherSegment { addr: *va as u64, len: *len as u64 }.to_bytes()).collect()
}

/// Sends the bytes at the `regions` (va, len) of `env` as one frame with `flags`.
fn send_regions(k: &mut Kernel<TestMachine>, env: EnvId, regions: &[(usize, usize)], flags: usize) -> Result<usize, Error> {
    poke(k, env, GATHER_VA, &gather_list(regions));
    call(k, env, Syscall::NetXmit, [0, GATHER_VA, regions.len(), COUNTER_VA, flags])
}

/// Writes `frame` at DATA in `env` and sends it from there.
pub(super) fn send(k: &mut Kernel<TestMachine>, env: EnvId, frame: &[u8]) -> Result<usize, Error> {
    poke(k, env, DATA, frame);
    send_regions(k, env, &[(DATA, frame.len())], 0)
}

/// The bytes a frame handed to the NIC consists of, read now.
fn wire_bytes(k: &Kernel<TestMachine>, segments: &[PhysSegment]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for s in segments {
        let mut chunk = alloc::vec![0; s.len as usize];
        k.machine.mem.read(Page(s.address as usize / PAGE_SIZE), s.address as usize % PAGE_SIZE, &mut chunk);
        bytes.extend(chunk);
    }
    bytes
}

/// An environment with a ring that holds `filter`.
fn sender_holding(k: &mut Kernel<TestMachine>, filter: &Filter) -> EnvId {
    let (env, ring) = env_with_ring(k);
    insert_filter(k, env, filter, ring, 0).unwrap();
    env
}

#[test]
fn a_three_region_gather_goes_out_as_one_frame_and_completes() {
    let (mut k, nic) = with_nic(16);
    let (env, _) = env_with_ring(&mut k);
    k.envs.get_mut(env).unwrap().privileged = true;
    let header = [0xaau8; 14];
    let middle = [0xbbu8; 100];
    let tail = [0xccu8; 30];
    // The middle region straddles a page boundary.
    let regions = [(DATA + 2 * PAGE_SIZE, &header[..]), (DATA + PAGE_SIZE - 50, &middle[..]), (DATA + 2 * PAGE_SIZE + 500, &tail[..])];
    for (va, bytes) in regions {
        poke(&mut k, env, va, bytes);
    }
    poke(&mut k, env, COUNTER_VA, &5u64.to_le_bytes());
    let free = k.pages.free_count();
    let spans: Vec<(usize, usize)> = regions.iter().map(|(va, bytes)| (*va, bytes.len())).collect();
    send_regions(&mut k, env, &spans, XMIT_UNCHECKED).unwrap();
    let (segments, _) = nic.lock().unwrap().sent[0].clone();
    assert_eq!(segments.len(), 4, "a region crossing a page becomes two segments");
    assert_eq!(wire_bytes(&k, &segments), [&header[..], &middle[..], &tail[..]].concat());
    assert_eq!(nic.lock().unwrap().flushes, 1);
    // Not yet sent: the pages are pinned, the counter unchanged.
    assert_eq!(peek(&k, env, COUNTER_VA, 8), 5u64.to_le_bytes());
    k.nic_interrupt(11);
    assert_eq!(peek(&k, env, COUNTER_VA, 8), 4u64.to_le_bytes());
    assert_eq!(k.net.frames_pending(), 0);
    assert_eq!(k.pages.free_count(), free);
}

#[test]
fn a_checked_frame_goes_out_from_the_kernels_copy_of_its_headers() {
    let (mut k, nic) = with_nic(16);
    let env = sender_holding(&mut k, &Filter::udp_port(5000));
    let frame = udp_from(5000, 300);
    // Headers in one region, the payload in two, across a page boundary.
    poke(&mut k, env, DATA + PAGE_SIZE - 20, &frame[..20]);
    poke(&mut k, env, DATA + PAGE_SIZE, &frame[20..100]);
    poke(&mut k, env, DATA + 2 * PAGE_SIZE, &frame[100..]);
    let free = k.pages.free_count();
    let regions = [(DATA + PAGE_SIZE - 20, 100), (DATA + 2 * PAGE_SIZE, frame.len() - 100)];
    send_regions(&mut k, env, &regions, 0).unwrap();
    let (segments, _) = nic.lock().unwrap().sent[0].clone();
    assert_eq!(wire_bytes(&k, &segments), frame);
    let user_pages: Vec<usize> = (0..3).map(|n| k.envs.get(env).unwrap().space.translate(&k.machine, DATA + n * PAGE_SIZE, crate::vm::Access::Read).unwrap().0).collect();
    assert!(!user_pages.contains(&(segments[0].address as usize / PAGE_SIZE)), "the headers come from kernel memory");
    assert_eq!(segments[0].len as usize, transmit_check::HEADER_COPY_MAX);
    // The program rewrites its buffers while the NIC has not sent yet: the source port (and
    // every byte up to HEADER_COPY_MAX) stays as checked.
    poke(&mut k, env, DATA + PAGE_SIZE - 20, &[0xee; 20]);
    poke(&mut k, env, DATA + PAGE_SIZE, &[0xee; 80]);
    let on_wire = wire_bytes(&k, &segments);
    assert_eq!(&on_wire[..transmit_check::HEADER_COPY_MAX], &frame[..transmit_check::HEADER_COPY_MAX]);
    k.nic_interrupt(11);
    assert_eq!(k.net.frames_pending(), 0);
    assert_eq!(k.pages.free_count(), free, "no pin or slot left behind");
    // Every slot comes back: more frames than there are slots go out one after the other.
    for _ in 0..crate::net::xmit::HEADER_SLOTS + 10 {
        send(&mut k, env, &udp_from(5000, 10)).unwrap();
        k.nic_interrupt(11);
    }
    assert_eq!(k.net.frames_pending(), 0);
}

#[test]
fn a_program_sends_only_from_the_addresses_and_ports_it_receives() {
    let (mut k, nic) = with_nic(64);
    let web = sender_holding(&mut k, &Filter::tcp_listen(HOST, 80));
    let (udp, ring) = env_with_ring(&mut k);
    insert_filter(&mut k, udp, &Filter::udp_port(5000), ring, 0).unwrap();
    insert_filter(&mut k, udp, &Filter::icmp_to(HOST), ring, 0).unwrap();
    let arp = sender_holding(&mut k, &Filter::arp_for(HOST));
    let sent_before = nic.lock().unwrap().sent.len();
    let charged = k.accounts.get(udp).unwrap().charged;
    // Forgeries, each refused before it reaches a queue.
    let rst_for_web = ipv4_frame(6, HOST, 80, PEER, 4321, 0);
    assert_eq!(send(&mut k, udp, &rst_for_web), Err(Error::ForeignSource), "a RST for another program's connection");
    assert_eq!(send(&mut k, udp, &udp_from(5001, 10)), Err(Error::ForeignSource), "a datagram from a port it does not hold");
    assert_eq!(send(&mut k, web, &udp_from(5000, 10)), Err(Error::ForeignSource), "a datagram from another's port");
    assert_eq!(send(&mut k, udp, &arp_reply(NIC_MAC, HOST)), Err(Error::ForeignSource), "an ARP reply for an address it does not answer for");
    assert_eq!(send(&mut k, arp, &arp_reply(NIC_MAC, PEER)), Err(Error::ForeignSource), "an ARP reply for someone else's address");
    assert_eq!(send(&mut k, arp, &arp_reply(PEER_MAC, HOST)), Err(Error::ForeignSource), "an ARP reply naming another NIC");
    let mut other_mac = udp_from(5000, 10);
    other_mac[6..12].copy_from_slice(&PEER_MAC);
    assert_eq!(send(&mut k, udp, &other_mac), Err(Error::ForeignSource), "another NIC's source MAC");
    let mut bad_ihl = udp_from(5000, 10);
    bad_ihl[14] = 0x44;
    assert_eq!(send(&mut k, udp, &bad_ihl), Err(Error::MalformedHeader));
    assert_eq!(send(&mut k, udp, &udp_from(5000, 10)[..36]), Err(Error::MalformedHeader), "cut inside the ports");
    let mut private = udp_from(5000, 10);
    private[12..14].copy_from_slice(&[0x88, 0xb5]);
    assert_eq!(send(&mut k, udp, &private), Err(Error::ForeignSource), "an ethertype nobody gave it");
    assert_eq!(nic.lock().unwrap().sent.len(), sent_before, "nothing refused reached the NIC");
    assert_eq!(k.net.frames_pending(), 0);
    assert_eq!(k.accounts.get(udp).unwrap().charged, charged, "nothing refused stays charged");
    // The same programs' own frames go out.
    assert_eq!(send(&mut k, web, &rst_for_web), Ok(0));
    assert_eq!(send(&mut k, web, &ipv4_frame(6, HOST, 80, [192, 168, 1, 1], 5555, 100)), Ok(0), "to anyone");
    assert_eq!(send(&mut k, udp, &udp_from(5000, 10)), Ok(0));
    assert_eq!(send(&mut k, udp, &ipv4_frame(1, HOST, 0, PEER, 0, 20)), Ok(0), "ICMP from the address it receives ICMP for");
    assert_eq!(send(&mut k, arp, &arp_reply(NIC_MAC, HOST)), Ok(0));
    assert_eq!(nic.lock().unwrap().sent.len(), sent_before + 5);
}

#[test]
fn connection_filters_and_fallback_filters_give_their_holders_the_right_to_send() {
    let (mut k, _nic) = with_nic(64);
    let (web, ring) = env_with_ring(&mut k);
    insert_filter(&mut k, web, &Filter::tcp_listen(HOST, 80), ring, 0).unwrap();
    let connection = insert_filter(&mut k, web, &Filter::tcp_connection(HOST, 80, PEER, 4321), ring, 0).unwrap();
    // The connection is handed to a worker: the worker may answer on it, and only on it.
    let worker = k.spawn(None, "good", b"", false, 0).unwrap();
    map_data(&mut k, worker, 4);
    call(&mut k, web, Syscall::DpfRef, [connection, worker.0 as usize, 0, 0, 0]).unwrap();
    assert_eq!(send(&mut k, worker, &ipv4_frame(6, HOST, 80, PEER, 4321, 0)), Ok(0));
    assert_eq!(send(&mut k, worker, &ipv4_frame(6, HOST, 80, PEER, 4322, 0)), Err(Error::ForeignSource), "another connection of the listener's");
    // strayd's fallback filter lets it answer for ports nobody owns, not for owned ones.
    let (stray, stray_ring) = env_with_ring(&mut k);
    k.envs.get_mut(stray).unwrap().privileged = true;
    let all_tcp = dpf::FilterBuilder::new().ip_protocol(6).ipv4_destination(HOST).build().unwrap();
    insert_filter(&mut k, stray, &all_tcp, stray_ring, DPF_FALLBACK).unwrap();
    assert_eq!(send(&mut k, stray, &ipv4_frame(6, HOST, 9999, PEER, 1234, 0)), Ok(0), "a RST from a closed port");
    assert_eq!(send(&mut k, stray, &ipv4_frame(6, HOST, 80, PEER, 4321, 0)), Err(Error::ForeignSource), "a RST for a live connection");
    assert_eq!(send(&mut k, stray, &ipv4_frame(6, HOST, 80, PEER, 7777, 0)), Err(Error::ForeignSource), "a RST from a listening port");
}

#[test]
fn only_privileged_senders_may_skip_the_check_and_only_by_asking() {
    let (mut k, _nic) = with_nic(16);
    let env = sender_holding(&mut k, &Filter::udp_port(5000));
    let forged = udp_from(6000, 10);
    poke(&mut k, env, DATA, &forged);
    let region = [(DATA, forged.len())];
    assert_eq!(send_regions(&mut k, env, &region, XMIT_UNCHECKED), Err(Error::NotPermitted));
    assert_eq!(send_regions(&mut k, env, &region, 2), Err(Error::BadFlags));
    k.envs.get_mut(env).unwrap().privileged = true;
    assert_eq!(send_regions(&mut k, env, &region, 0), Err(Error::ForeignSource), "privilege alone does not skip the check");
    assert_eq!(send_regions(&mut k, env, &region, XMIT_UNCHECKED), Ok(0));
}

#[test]
fn short_frames_are_padded_and_bad_sends_refused() {
    let (mut k, nic) = with_nic(16);
    let env = sender_holding(&mut k, &Filter::udp_port(5000));
    let short = udp_from(5000, 0);
    assert_eq!(short.len(), 42);
    send(&mut k, env, &short).unwrap();
    let on_wire = wire_bytes(&k, &nic.lock().unwrap().sent[0].0);
    assert_eq!(on_wire.len(), 60);
    assert_eq!(&on_wire[..42], &short[..]);
    assert_eq!(&on_wire[42..], &[0; 18], "padded with zeros");
    k.envs.get_mut(env).unwrap().privileged = true;
    send_regions(&mut k, env, &[(DATA, 42)], XMIT_UNCHECKED).unwrap();
    let unchecked = wire_bytes(&k, &nic.lock().unwrap().sent[1].0);
    assert_eq!(unchecked.len(), 60, "unchecked frames are padded from the zero page");
    k.envs.get_mut(env).unwrap().privileged = false;
    let mut bad = |nic_number: usize, regions: &[(usize, usize)], counter: usize| {
        poke(&mut k, env, GATHER_VA, &gather_list(regions));
        call(&mut k, env, Syscall::NetXmit, [nic_number, GATHER_VA, regions.len(), counter, 0])
    };
    assert_eq!(bad(1, &[(DATA, 42)], COUNTER_VA), Err(Error::NoSuchNic));
    assert_eq!(bad(0, &[(DATA, 42)], COUNTER_VA + 4), Err(Error::BadAlignment));
    assert_eq!(bad(0, &[(DATA, 42)], 0x10_0000), Err(Error::BadAddress));
    assert_eq!(bad(0, &[(USER_BASE, 42)], COUNTER_VA), Err(Error::ForeignSource), "code pages are readable (but hold no frame of its own)");
    assert_eq!(bad(0, &[(USER_BASE, 42)], USER_BASE), Err(Error::BadAddress), "counter must be writable");
    assert_eq!(bad(0, &[(0x10_0000, 42)], COUNTER_VA), Err(Error::BadAddress), "kernel memory");
    assert_eq!(bad(0, &[(0x30_0000_0000, 42)], COUNTER_VA), Err(Error::BadAddress), "unmapped");
    assert_eq!(bad(0, &[(DATA, 10)], COUNTER_VA), Err(Error::BadLength));
    assert_eq!(bad(0, &[(DATA, 1515)], COUNTER_VA), Err(Error::BadLength));
    assert_eq!(bad(0, &[(DATA, 14), (DATA, 0)], COUNTER_VA), Err(Error::BadLength));
    assert_eq!(bad(0, &[(DATA, 14), (DATA, usize::MAX)], COUNTER_VA), Err(Error::BadLength));
    assert_eq!(bad(0, &[(DATA, 20); 9], COUNTER_VA), Err(Error::BadLength));
    assert_eq!(call(&mut k, env, Syscall::NetXmit, [0, GATHER_VA, 0, COUNTER_VA, 0]), Err(Error::BadLength));
}

#[test]
fn a_flooding_sender_does_not_starve_another() {
    let (mut k, nic) = with_nic(4);
    let flood = sender_holding(&mut k, &Filter::udp_port(5000));
    let quiet = sender_holding(&mut k, &Filter::udp_port(6000));
    let mut refused = 0;
    // Frames longer than the checked headers, so each has a segment in its sender's page.
    for _ in 0..200 {
        if send(&mut k, flood, &udp_from(5000, 200)) == Err(Error::QueueFull) {
            refused += 1;
        }
    }
    assert!(refused > 0, "the flooder's queue is bounded");
    for _ in 0..10 {
        send(&mut k, quiet, &udp_from(6000, 200)).unwrap();
    }
    // Let the NIC drain in rounds of 2 frames (header and payload each) and watch who gets sent.
    let before = nic.lock().unwrap().sent.len();
    for _ in 0..10 {
        k.nic_interrupt(11);
    }
    let quiet_page = k.envs.get(quiet).unwrap().space.translate(&k.machine, DATA, crate::vm::Access::Read).unwrap();
    let quiet_frames: Vec<bool> =
        nic.lock().unwrap().sent[before..].iter().map(|(segments, _)| segments[1].address as usize / PAGE_SIZE == quiet_page.0).collect();
    assert_eq!(quiet_frames.iter().filter(|q| **q).count(), 10, "all of the quiet sender's frames went out within the first rounds");
    let first_twenty_quiet = quiet_frames.iter().take(20).filter(|q| **q).count();
    assert!(first_twenty_quiet >= 9, "turns alternate: {first_twenty_quiet} of the first 20");
}

#[test]
fn an_exiting_program_leaves_no_pins_filters_or_frames() {
    let (mut k, nic) = with_nic(4);
    let free = k.pages.free_count();
    let env = sender_holding(&mut k, &Filter::arp_for(HOST));
    let reply = arp_reply(NIC_MAC, HOST);
    let mut frame = reply.clone();
    frame.resize(300, 7); // headers from the kernel's copy, the rest from the program's page
    for _ in 0..6 {
        send(&mut k, env, &frame).unwrap();
    }
    assert_eq!(k.net.frames_pending(), 6, "two on the NIC, four queued");
    k.destroy(env, EnvStatus::Exited(0), "");
    assert_eq!(k.net.dpf.len(), 1, "filters go in teardown steps");
    assert!(k.teardown_pending());
    k.teardown_step();
    assert_eq!(k.net.dpf.len(), 0);
    assert!(!k.teardown_pending());
    assert!(k.net.rings.is_empty());
    assert_eq!(k.net.frames_pending(), 2, "frames on the NIC finish first");
    assert!(k.pages.free_count() < free, "their pages stay pinned until then");
    k.nic_interrupt(11);
    assert_eq!(k.net.frames_pending(), 0);
    assert_eq!(k.pages.free_count(), free);
    // The ring is gone: an ARP frame is now unmatched.
    receive(&mut k, &nic, &arp_request());
    assert_eq!(k.net.unmatched, 1);
}

fn predicate_bytes(text: &str) -> Vec<u8> {
    wkpred::encode(&wkpred::parse(text).unwrap()).unwrap()
}

pub(super) fn install(k: &mut Kernel<TestMachine>, env: EnvId, text: &str) -> Result<usize, Error> {
    let bytes = predicate_bytes(text);
    let at = DATA + 3 * PAGE_SIZE + 1024;
    poke(k, env, at, &bytes);
    call(k, env, Syscall::WkInstall, [at, bytes.len(), 0, 0, 0])
}

#[test]
fn a_sleeper_wakes_when_a_frame_lands_in_its_ring() {
    let (mut k, nic) = with_nic(16);
    let (env, ring) = env_with_ring(&mut k);
    insert_filter(&mut k, env, &Filter::arp_for([0; 4]), ring, 0).unwrap();
    install(&mut k, env, &alloc::format!("locations {DATA:#x}; [0]:u32 != 0")).unwrap();
    call(&mut k, env, Syscall::WkSleep, [0; 5]).unwrap();
    assert!(k.envs.get(env).unwrap().sleeping);
    assert_eq!(k.pick_next(), None, "nothing to run while the ring is empty");
    receive(&mut k, &nic, &arp_request());
    assert_eq!(k.pick_next(), Some(env));
    assert!(!k.envs.get(env).unwrap().sleeping);
}

#[test]
fn a_tick_deadline_is_an_ordinary_term() {
    let (mut k, _) = with_nic(16);
    let (env, _) = env_with_ring(&mut k);
    let ticks = xok_abi::layout::TICKS_VA;
    install(&mut k, env, &alloc::format!("locations {ticks:#x}; [0]:u64 >= 3")).unwrap();
    call(&mut k, env, Syscall::WkSleep, [0; 5]).unwrap();
    for _ in 0..2 {
        k.timer_tick(None);
        assert_eq!(k.pick_next(), None);
    }
    k.timer_tick(None);
    assert_eq!(k.pick_next(), Some(env));
    assert_eq!(peek(&k, env, ticks, 8), 3u64.to_le_bytes(), "programs read the tick counter");
}

#[test]
fn predicates_are_checked_and_their_pins_released() {
    let (mut k, _) = with_nic(16);
    let free = k.pages.free_count();
    let (env, _) = env_with_ring(&mut k);
    assert_eq!(install(&mut k, env, "locations 0x100000; [0]:u32 != 0"), Err(Error::BadPredicate), "kernel memory");
    assert_eq!(install(&mut k, env, "locations 0x3000000000; [0]:u32 != 0"), Err(Error::BadPredicate), "unmapped");
    poke(&mut k, env, DATA, &[9, 9, 9, 9]);
    assert_eq!(call(&mut k, env, Syscall::WkInstall, [DATA, 4, 0, 0, 0]), Err(Error::BadPredicate));
    assert_eq!(call(&mut k, env, Syscall::WkInstall, [DATA, 1 << 20, 0, 0, 0]), Err(Error::BadLength));
    install(&mut k, env, &alloc::format!("locations {DATA:#x}; [0]:u32 != 0")).unwrap();
    // Sleeping without a predicate returns at once.
    call(&mut k, env, Syscall::WkInstall, [DATA, 0, 0, 0, 0]).unwrap();
    call(&mut k, env, Syscall::WkSleep, [0; 5]).unwrap();
    assert!(!k.envs.get(env).unwrap().sleeping);
    install(&mut k, env, &alloc::format!("locations {DATA:#x}; [0]:u32 != 0")).unwrap();
    k.destroy(env, EnvStatus::Exited(0), "");
    assert_eq!(k.pages.free_count(), free);
}

#[test]
fn a_deleted_rings_id_is_not_reused_while_a_filter_names_it() {
    let (mut k, nic) = with_nic(16);
    let (first, ring) = env_with_ring(&mut k);
    insert_filter(&mut k, first, &Filter::arp_for([0; 4]), ring, 0).unwrap();
    call(&mut k, first, Syscall::PktringDelring, [ring, 0, 0, 0, 0]).unwrap();
    let (second, other) = env_with_ring(&mut k);
    assert_ne!(other, ring);
    // The orphaned filter's frames go nowhere (counted), not into the new ring.
    receive(&mut k, &nic, &arp_request());
    assert_eq!(k.net.unmatched, 1);
    assert_eq!(peek(&k, second, DATA, 4), [0; 4]);
}

#[test]
fn the_timer_polls_nics_whose_interrupts_are_lost() {
    let (mut k, nic) = with_nic(16);
    let (env, ring) = env_with_ring(&mut k);
    insert_filter(&mut k, env, &Filter::arp_for([0; 4]), ring, 0).unwrap();
    nic.lock().unwrap().incoming.push(arp_request());
    k.timer_tick(None);
    assert_eq!(peek(&k, env, DATA, 1), [42]);
}

#[test]
fn frames_and_sends_are_classified_by_the_compiled_trie_once_it_is_loaded() {
    let (mut k, nic) = with_nic(16);
    let (env, ring) = env_with_ring(&mut k);
    insert_filter(&mut k, env, &Filter::arp_for(HOST), ring, 0).unwrap();
    insert_filter(&mut k, env, &Filter::udp_port(5000), ring, 0).unwrap();
    assert_eq!(k.net.classifier.generation(), None, "interpreted until the compile job runs");
    k.run_jobs_inline();
    assert_eq!(k.net.classifier.generation(), Some(k.net.dpf.generation()), "the compiled trie is loaded");
    assert_eq!(call(&mut k, env, Syscall::KernelStats, [xok_abi::Stat::DpfCodeStale as usize, 0, 0, 0, 0]), Ok(0));
    let mut request = arp_request();
    request[38..42].copy_from_slice(&HOST);
    receive(&mut k, &nic, &request);
    assert_eq!(peek(&k, env, DATA, 1), [42], "delivered through compiled code");
    assert_eq!(k.net.unmatched, 0);
    assert_eq!(send(&mut k, env, &udp_from(5000, 10)), Ok(0), "the transmit check classifies with it too");
    assert_eq!(send(&mut k, env, &udp_from(5001, 10)), Err(Error::ForeignSource));
    // A structural change makes the code stale: the interpreter takes over at once.
    let (other, other_ring) = env_with_ring(&mut k);
    insert_filter(&mut k, other, &Filter::tcp_listen(HOST, 80), other_ring, 0).unwrap();
    assert_ne!(k.net.classifier.generation(), Some(k.net.dpf.generation()));
    assert_eq!(send(&mut k, other, &ipv4_frame(6, HOST, 80, PEER, 1, 0)), Ok(0));
}

/// `udp_frame(port)` made a fragment of datagram `id`: at `offset_units` (8 bytes) with the
/// more-fragments flag `more`, `tag` in its last byte.
fn udp_fragment(port: u16, id: u16, offset_units: u16, more: bool, tag: u8) -> Vec<u8> {
    let mut frame = udp_frame(port);
    frame[18..20].copy_from_slice(&id.to_be_bytes());
    frame[20..22].copy_from_slice(&(offset_units | if more { 0x2000 } else { 0 }).to_be_bytes());
    *frame.last_mut().unwrap() = tag;
    frame
}

#[test]
fn later_fragments_go_where_their_first_went_and_early_ones_wait_for_it() {
    let (mut k, nic) = with_nic(16);
    let (owner, owner_ring) = env_with_ring(&mut k);
    let (stray, stray_ring) = env_with_ring(&mut k);
    k.envs.get_mut(stray).unwrap().privileged = true;
    insert_filter(&mut k, owner, &Filter::udp_port(7), owner_ring, 0).unwrap();
    insert_filter(&mut k, stray, &Filter::ipv4(), stray_ring, DPF_FALLBACK).unwrap();
    let entry_tag = |k: &Kernel<TestMachine>, env: EnvId, n: usize| {
        let length = u32::from_le_bytes(peek(k, env, DATA + n * 256, 4).try_into().unwrap()) as usize;
        (length != 0).then(|| peek(k, env, DATA + n * 256 + RING_HEADER_LEN + length - 1, 1)[0])
    };
    let stat = |k: &mut Kernel<TestMachine>, stat: xok_abi::Stat| call(k, owner, Syscall::KernelStats, [stat as usize, 0, 0, 0, 0]).unwrap();

    receive(&mut k, &nic, &udp_fragment(7, 5, 100, false, 0xa1));
    assert_eq!((entry_tag(&k, owner, 0), entry_tag(&k, stray, 0)), (None, None), "held for its first");
    receive(&mut k, &nic, &udp_fragment(7, 5, 0, true, 0xa0));
    assert_eq!((entry_tag(&k, owner, 0), entry_tag(&k, owner, 1)), (Some(0xa0), Some(0xa1)), "the first, then the held one");
    // A later fragment's bytes 2..4 past the IP header are data, here 7: still routed by datagram.
    receive(&mut k, &nic, &udp_fragment(9, 5, 50, true, 0xa2));
    assert_eq!(entry_tag(&k, owner, 2), Some(0xa2));
    receive(&mut k, &nic, &udp_fragment(7, 6, 50, true, 0xb1));
    assert_eq!((entry_tag(&k, owner, 3), entry_tag(&k, stray, 0)), (None, None), "another datagram waits for its own first");
    assert_eq!(stat(&mut k, xok_abi::Stat::FragmentsRouted), 1);
    assert_eq!(stat(&mut k, xok_abi::Stat::FragmentsHeld), 2);
    assert_eq!(stat(&mut k, xok_abi::Stat::FragmentsDropped), 0);
    assert_eq!(stat(&mut k, xok_abi::Stat::UnmatchedFrames), 0);
}
