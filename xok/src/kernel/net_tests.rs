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
use xok_abi::net::{DPF_COPY, NicInfo, NicModel, RING_HEADER_LEN};

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
    k.net.add_nic(Box::new(FakeNic(Arc::clone(&state))));
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
fn a_three_region_gather_goes_out_as_one_frame_and_completes() {
    let (mut k, nic) = with_nic(16);
    let (env, _) = env_with_ring(&mut k);
    let header = [0xaau8; 14];
    let middle = [0xbbu8; 100];
    let tail = [0xccu8; 30];
    // The middle region straddles a page boundary.
    let regions = [(DATA + 2 * PAGE_SIZE, &header[..]), (DATA + PAGE_SIZE - 50, &middle[..]), (DATA + 2 * PAGE_SIZE + 500, &tail[..])];
    let mut gather = Vec::new();
    for (va, bytes) in regions {
        poke(&mut k, env, va, bytes);
        gather.extend_from_slice(&(va as u64).to_le_bytes());
        gather.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    }
    let gather_va = DATA + 3 * PAGE_SIZE;
    let counter_va = gather_va + 512;
    poke(&mut k, env, gather_va, &gather);
    poke(&mut k, env, counter_va, &5u64.to_le_bytes());
    let free = k.pages.free_count();
    call(&mut k, env, Syscall::NetXmit, [0, gather_va, 3, counter_va, 0]).unwrap();
    let (segments, _) = nic.lock().unwrap().sent[0].clone();
    assert_eq!(segments.len(), 4, "a region crossing a page becomes two segments");
    let mut bytes = Vec::new();
    for s in &segments {
        let mut chunk = alloc::vec![0; s.len as usize];
        k.machine.mem.read(Page(s.address as usize / PAGE_SIZE), s.address as usize % PAGE_SIZE, &mut chunk);
        bytes.extend(chunk);
    }
    assert_eq!(bytes, [&header[..], &middle[..], &tail[..]].concat());
    assert_eq!(nic.lock().unwrap().flushes, 1);
    // Not yet sent: the pages are pinned, the counter unchanged.
    assert_eq!(peek(&k, env, counter_va, 8), 5u64.to_le_bytes());
    k.nic_interrupt(11);
    assert_eq!(peek(&k, env, counter_va, 8), 4u64.to_le_bytes());
    assert_eq!(k.net.frames_pending(), 0);
    assert_eq!(k.pages.free_count(), free);
}

#[test]
fn short_frames_are_padded_and_bad_sends_refused() {
    let (mut k, nic) = with_nic(16);
    let (env, _) = env_with_ring(&mut k);
    let gather_va = DATA + 3 * PAGE_SIZE;
    let counter = gather_va + 512;
    let send = |k: &mut Kernel<TestMachine>, regions: &[(usize, usize)], nic_number: usize, counter: usize| {
        let mut gather = Vec::new();
        for (va, len) in regions {
            gather.extend_from_slice(&(*va as u64).to_le_bytes());
            gather.extend_from_slice(&(*len as u64).to_le_bytes());
        }
        poke(k, env, gather_va, &gather);
        call(k, env, Syscall::NetXmit, [nic_number, gather_va, regions.len(), counter, 0])
    };
    send(&mut k, &[(DATA, 42)], 0, counter).unwrap();
    let total: u16 = nic.lock().unwrap().sent[0].0.iter().map(|s| s.len).sum();
    assert_eq!(total, 60);
    assert_eq!(send(&mut k, &[(DATA, 42)], 1, counter), Err(Error::NoSuchNic));
    assert_eq!(send(&mut k, &[(DATA, 42)], 0, counter + 4), Err(Error::BadAlignment));
    assert_eq!(send(&mut k, &[(DATA, 42)], 0, 0x10_0000), Err(Error::BadAddress));
    assert_eq!(send(&mut k, &[(USER_BASE, 42)], 0, counter), Ok(0), "code pages are readable");
    assert_eq!(send(&mut k, &[(USER_BASE, 42)], 0, USER_BASE), Err(Error::BadAddress), "counter must be writable");
    assert_eq!(send(&mut k, &[(0x10_0000, 42)], 0, counter), Err(Error::BadAddress), "kernel memory");
    assert_eq!(send(&mut k, &[(0x30_0000_0000, 42)], 0, counter), Err(Error::BadAddress), "unmapped");
    assert_eq!(send(&mut k, &[(DATA, 10)], 0, counter), Err(Error::BadLength));
    assert_eq!(send(&mut k, &[(DATA, 1515)], 0, counter), Err(Error::BadLength));
    assert_eq!(send(&mut k, &[(DATA, 14), (DATA, 0)], 0, counter), Err(Error::BadLength));
    assert_eq!(send(&mut k, &[(DATA, 14), (DATA, usize::MAX)], 0, counter), Err(Error::BadLength));
    assert_eq!(send(&mut k, &[(DATA, 20); 9], 0, counter), Err(Error::BadLength));
    assert_eq!(call(&mut k, env, Syscall::NetXmit, [0, gather_va, 0, counter, 0]), Err(Error::BadLength));
}

#[test]
fn a_flooding_sender_does_not_starve_another() {
    let (mut k, nic) = with_nic(4);
    let (flood, _) = env_with_ring(&mut k);
    let (quiet, _) = env_with_ring(&mut k);
    let gather_va = DATA + 3 * PAGE_SIZE;
    for env in [flood, quiet] {
        let mut gather = Vec::new();
        gather.extend_from_slice(&(DATA as u64).to_le_bytes());
        gather.extend_from_slice(&60u64.to_le_bytes());
        poke(&mut k, env, gather_va, &gather);
    }
    let mut refused = 0;
    for _ in 0..200 {
        if call(&mut k, flood, Syscall::NetXmit, [0, gather_va, 1, gather_va + 512, 0]) == Err(Error::QueueFull) {
            refused += 1;
        }
    }
    assert!(refused > 0, "the flooder's queue is bounded");
    for _ in 0..10 {
        call(&mut k, quiet, Syscall::NetXmit, [0, gather_va, 1, gather_va + 512, 0]).unwrap();
    }
    // Let the NIC drain in rounds of 4 and watch who gets sent.
    let before = nic.lock().unwrap().sent.len();
    for _ in 0..10 {
        k.nic_interrupt(11);
    }
    let senders: Vec<usize> = nic.lock().unwrap().sent[before..]
        .iter()
        .map(|(segments, _)| segments[0].address as usize)
        .collect();
    let quiet_page = k.envs.get(quiet).unwrap().space.translate(&k.machine, DATA, crate::vm::Access::Read).unwrap();
    let quiet_sent = senders.iter().filter(|a| **a / PAGE_SIZE == quiet_page.0).count();
    assert_eq!(quiet_sent, 10, "all of the quiet sender's frames went out within the first rounds");
    let first_twenty_quiet = senders.iter().take(20).filter(|a| **a / PAGE_SIZE == quiet_page.0).count();
    assert!(first_twenty_quiet >= 9, "turns alternate: {first_twenty_quiet} of the first 20");
}

#[test]
fn an_exiting_program_leaves_no_pins_filters_or_frames() {
    let (mut k, nic) = with_nic(2);
    let free = k.pages.free_count();
    let (env, ring) = env_with_ring(&mut k);
    insert_filter(&mut k, env, &Filter::arp_for([0; 4]), ring, 0).unwrap();
    let gather_va = DATA + 3 * PAGE_SIZE;
    let mut gather = Vec::new();
    gather.extend_from_slice(&(DATA as u64).to_le_bytes());
    gather.extend_from_slice(&100u64.to_le_bytes());
    poke(&mut k, env, gather_va, &gather);
    for _ in 0..6 {
        call(&mut k, env, Syscall::NetXmit, [0, gather_va, 1, gather_va + 512, 0]).unwrap();
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
