//! The network syscalls and events: NIC information, packet rings, filters, transmission,
//! and what happens when a NIC interrupts.

use super::{Kernel, Machine};
use crate::account::{Resources, cost};
use crate::net::classifier::Classifier;
use crate::net::fragments::{self, FragmentRoutes, Piece};
use crate::net::nic::{NicDriver, PhysSegment};
use crate::net::ring::{PacketRing, RingGeometry};
use crate::net::transmit_check::{self, HeaderCopy, Refusal};
use crate::net::xmit::{HeaderSlots, OutgoingFrame, TransmitQueues};
use crate::ownership::{Page, PageOwnership};
use crate::vm::Access;
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
use alloc::vec::Vec;
use dpf::{Dpf, Filter, FilterAccessError, FilterClass, FilterId, InsertError, InsertOptions};
use xok_abi::layout::PAGE_SIZE;
use xok_abi::net::{
    DPF_COPY, DPF_FALLBACK, GATHER_SEGMENT_LEN, GatherSegment, RINGS_PER_ENV, XMIT_MAX_FRAME, XMIT_MAX_SEGMENTS, XMIT_MIN_FRAME,
    XMIT_UNCHECKED,
};
use xok_abi::{EnvId, Error};

/// Ethernet's minimum frame without FCS; shorter frames are padded from a zero page.
pub const MIN_WIRE_FRAME: usize = 60;

/// The most filters installed at once, all environments together (the root's filter quota;
/// each one is also charged [`cost::FILTER`] heap bytes).
pub const MAX_FILTERS: usize = 1 << 18;

/// Filters of ended environments removed per teardown step: the longest stretch of filter
/// teardown with interrupts off ([`Kernel::teardown_step`]).
pub const TEARDOWN_BATCH: usize = 128;

/// Who pays for an installed filter: the inserter (the filter, and its shape if it made
/// one) and, for each extra holder, whoever gave it the reference.
#[derive(Debug)]
struct FilterCharge {
    payer: EnvId,
    charge: Resources,
    /// (holder, payer) of each `dpf_ref`.
    refs: Vec<(EnvId, EnvId)>,
}

/// The kernel's network state.
pub struct Network {
    /// The NICs, numbered by position.
    pub nics: Vec<Box<dyn NicDriver + Send>>,
    /// Registered packet rings by id.
    pub rings: BTreeMap<u32, PacketRing>,
    next_ring: u32,
    /// All installed filters. Shared with a classifier compile running outside the kernel's
    /// critical section (`kernel::jobs`); changes clone it only while such a compile runs.
    pub dpf: Arc<Dpf>,
    /// Their compiled code, when it matches their structure.
    pub classifier: Classifier,
    /// What each installed filter costs whom, by id.
    filter_charges: BTreeMap<u64, FilterCharge>,
    /// Holds of ended environments on filters, still to drop (a few at a time, so an exit
    /// with many filters never holds interrupts off for long). Their rings are gone, so the
    /// frames they match are unmatched meanwhile.
    doomed: VecDeque<(EnvId, FilterId)>,
    /// Frames waiting for each NIC.
    queues: Vec<TransmitQueues>,
    /// Each NIC's kernel memory for checked headers.
    header_slots: Vec<HeaderSlots>,
    /// Frames on a NIC, by token.
    in_flight: BTreeMap<u64, OutgoingFrame>,
    next_token: u64,
    /// A zeroed kernel page that pads short frames (set by `Kernel::new`).
    pub(super) zero_page: Option<Page>,
    /// Frames that matched no filter (or whose ring is gone).
    pub unmatched: u64,
    /// Where later IPv4 fragments go, and those waiting for their first.
    pub fragments: FragmentRoutes,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            nics: Vec::new(),
            rings: BTreeMap::new(),
            next_ring: 0,
            dpf: Arc::new(Dpf::new()),
            classifier: Classifier::default(),
            filter_charges: BTreeMap::new(),
            doomed: VecDeque::new(),
            queues: Vec::new(),
            header_slots: Vec::new(),
            in_flight: BTreeMap::new(),
            next_token: 1,
            zero_page: None,
            unmatched: 0,
            fragments: FragmentRoutes::default(),
        }
    }
}

impl Network {

    fn ring_of(&self, env: EnvId, ring: usize) -> Result<u32, Error> {
        let id = u32::try_from(ring).map_err(|_| Error::NoSuchRing)?;
        match self.rings.get(&id) {
            Some(r) if r.owner == env => Ok(id),
            _ => Err(Error::NoSuchRing),
        }
    }

    /// Frames waiting or on a NIC (for tests and leak checks).
    pub fn frames_pending(&self) -> usize {
        self.queues.iter().map(TransmitQueues::len).sum::<usize>() + self.in_flight.len()
    }
}

fn unpin_all(pages: &mut PageOwnership, pins: &[Page]) {
    for &page in pins {
        pages.unpin(page);
    }
}

/// Drops the first `count` bytes of `segments` (they go from a header slot instead).
fn drop_front(segments: &mut Vec<PhysSegment>, count: usize) {
    let mut left = count;
    segments.retain_mut(|segment| {
        let len = usize::from(segment.len);
        if left >= len {
            left -= len;
            return false;
        }
        segment.address += left as u64;
        segment.len -= left as u16;
        left = 0;
        true
    });
}

impl<M: Machine> Kernel<M> {
    /// Adds a NIC (it gets the next number) with its header slots.
    pub fn add_nic(&mut self, nic: Box<dyn NicDriver + Send>) {
        let pages = (0..HeaderSlots::PAGES).map(|_| self.pages.alloc_kernel().expect("pages for a NIC's header slots at boot")).collect();
        self.net.nics.push(nic);
        self.net.queues.push(TransmitQueues::default());
        self.net.header_slots.push(HeaderSlots::new(pages));
    }

    /// Drops everything `env` held in the network: rings (unpinning their pages), and frames
    /// still waiting to be sent. Frames already on a NIC finish and are released then. Its
    /// filters go in teardown steps ([`Kernel::teardown_step`]). Every charge goes back.
    pub(super) fn release_network(&mut self, env: EnvId) {
        let ids: Vec<u32> = self.net.rings.iter().filter(|(_, r)| r.owner == env).map(|(id, _)| *id).collect();
        for id in ids {
            if let Some(ring) = self.net.rings.remove(&id) {
                self.release_ring(ring);
            }
        }
        let held: Vec<FilterId> = self.net.dpf.ids().filter(|id| self.net.dpf.holds(*id, env.0)).collect();
        self.net.doomed.extend(held.into_iter().map(|id| (env, id)));
        for queue in 0..self.net.queues.len() {
            for frame in self.net.queues[queue].remove_env(env) {
                unpin_all(&mut self.pages, &frame.pins);
                self.credit(frame.env, Resources::heap(frame.heap_charge()));
            }
        }
    }

    /// Whether filters of ended environments are still to be dropped.
    pub(super) fn filter_teardown_pending(&self) -> bool {
        !self.net.doomed.is_empty()
    }

    /// Drops up to [`TEARDOWN_BATCH`] filter holds of ended environments; once none is left,
    /// frees the dispatch groups they left empty (so no exit leaves the filter set poorer).
    pub(super) fn filter_teardown_step(&mut self) {
        let mut last = None;
        for _ in 0..TEARDOWN_BATCH {
            let Some((env, id)) = self.net.doomed.pop_front() else { break };
            let _ = self.drop_filter_hold(id, env);
            last = Some(env);
        }
        if let Some(env) = last
            && self.net.doomed.is_empty()
        {
            self.compact_filters(env);
        }
    }

    fn release_ring(&mut self, ring: PacketRing) {
        let (owner, charge) = (ring.owner, ring.heap_charge());
        ring.release(&mut self.pages);
        self.credit(owner, Resources::heap(charge));
    }

    /// Drops `holder`'s hold on filter `id`, crediting whoever paid for it. Returns whether a
    /// filter that made a dispatch group went (its group may now be empty).
    fn drop_filter_hold(&mut self, id: FilterId, holder: EnvId) -> Result<bool, FilterAccessError> {
        let removed = Arc::make_mut(&mut self.net.dpf).delete(id, holder.0)?;
        let key = id.to_u64();
        if removed {
            let Some(record) = self.net.filter_charges.remove(&key) else { return Ok(false) };
            self.credit(record.payer, record.charge);
            for (_, payer) in record.refs {
                self.credit(payer, Resources::heap(cost::FILTER_REF));
            }
            return Ok(record.charge.shapes > 0);
        }
        if let Some(record) = self.net.filter_charges.get_mut(&key)
            && let Some(at) = record.refs.iter().position(|(h, _)| *h == holder)
        {
            let (_, payer) = record.refs.swap_remove(at);
            self.credit(payer, Resources::heap(cost::FILTER_REF));
        }
        Ok(false)
    }

    /// Frees dispatch groups that deletes left empty, so no exit leaves the filter set poorer
    /// and no empty group costs every frame a probe. Called when a filter that made a group
    /// goes (connection filters under a listen share one group, so their churn compacts only
    /// when the last one goes) and at exit. The new structure is compiled later, on `cause`'s
    /// account (`kernel::jobs`).
    fn compact_filters(&mut self, cause: EnvId) {
        if Arc::make_mut(&mut self.net.dpf).compact() {
            self.jobs.classifier_cause = Some(cause);
        }
    }

    pub(super) fn sys_nic_info(&self, nic: usize) -> Result<usize, Error> {
        self.net.nics.get(nic).map(|n| n.info().to_word()).ok_or(Error::NoSuchNic)
    }

    /// Registers a ring and charges its page list to the caller.
    fn register_ring(&mut self, caller: EnvId, geometry: RingGeometry) -> Result<PacketRing, Error> {
        let env = self.envs.get(caller).ok_or(Error::NoSuchEnv)?;
        let ring = PacketRing::register(caller, &env.space, &mut self.pages, &self.machine, geometry)?;
        if let Err(error) = self.charge(caller, Resources::heap(ring.heap_charge())) {
            ring.release(&mut self.pages);
            return Err(error);
        }
        Ok(ring)
    }

    pub(super) fn sys_pktring_setring(&mut self, caller: EnvId, geometry: RingGeometry) -> Result<usize, Error> {
        if self.net.rings.values().filter(|r| r.owner == caller).count() >= RINGS_PER_ENV {
            return Err(Error::TooMany);
        }
        let ring = self.register_ring(caller, geometry)?;
        // Never reuse an id a ring or a filter still names: a filter left pointing at a deleted
        // ring must not start delivering into someone else's new one.
        let net = &mut self.net;
        let in_use = |id: u32| net.rings.contains_key(&id) || net.dpf.ids().any(|f| net.dpf.payload(f) == Some(id));
        let mut id = net.next_ring;
        while in_use(id) {
            id = id.wrapping_add(1) & 0x7fff_ffff;
        }
        net.next_ring = id.wrapping_add(1) & 0x7fff_ffff;
        net.rings.insert(id, ring);
        Ok(id as usize)
    }

    pub(super) fn sys_pktring_modring(&mut self, caller: EnvId, ring: usize, geometry: RingGeometry) -> Result<usize, Error> {
        let id = self.net.ring_of(caller, ring)?;
        let fresh = self.register_ring(caller, geometry)?;
        let old = self.net.rings.insert(id, fresh).expect("ring_of found it");
        self.release_ring(old);
        Ok(0)
    }

    pub(super) fn sys_pktring_delring(&mut self, caller: EnvId, ring: usize) -> Result<usize, Error> {
        let id = self.net.ring_of(caller, ring)?;
        let old = self.net.rings.remove(&id).expect("ring_of found it");
        self.release_ring(old);
        Ok(0)
    }

    pub(super) fn sys_pktring_stats(&self, caller: EnvId, ring: usize) -> Result<usize, Error> {
        if ring == usize::MAX {
            return Ok(self.net.unmatched as usize);
        }
        let id = self.net.ring_of(caller, ring)?;
        Ok(self.net.rings[&id].drops as usize)
    }

    pub(super) fn sys_dpf_insert(&mut self, caller: EnvId, ptr: usize, len: usize, ring: usize, flags: usize) -> Result<usize, Error> {
        let mut buffer = [0u8; dpf::wire::MAX_ENCODED];
        let len = self.copy_in(caller, ptr, len, &mut buffer)?.len();
        let filter = Filter::from_bytes(&buffer[..len]).map_err(|_| Error::BadFilter)?;
        let ring = self.net.ring_of(caller, ring)?;
        let class = match flags {
            0 => FilterClass::Exclusive,
            DPF_COPY => FilterClass::Copy,
            DPF_FALLBACK => FilterClass::Fallback,
            _ => return Err(Error::BadFlags),
        };
        let privileged = self.envs.get(caller).is_some_and(|env| env.privileged);
        if class == FilterClass::Exclusive && filter.is_broad() && !privileged {
            return Err(Error::NotPermitted);
        }
        let shape = usize::from(self.net.dpf.needs_group(&filter));
        let charge = Resources { heap: cost::FILTER + shape * cost::SHAPE, filters: 1, shapes: shape, ..Resources::ZERO };
        self.charge(caller, charge)?;
        let options = InsertOptions { class, privileged };
        let result = Arc::make_mut(&mut self.net.dpf).insert_with(&filter, options, caller.0, ring);
        let inserted = match result {
            Ok(inserted) => inserted,
            Err(error) => {
                self.credit(caller, charge);
                return Err(match error {
                    InsertError::Overlap { .. } => Error::FilterOverlap,
                    InsertError::NotPrivileged => Error::NotPermitted,
                    InsertError::TooManyCopyFilters | InsertError::TooManyShapes | InsertError::TooManyFilters => Error::TooMany,
                });
            }
        };
        if inserted.needs_recompile {
            self.jobs.classifier_cause = Some(caller);
        }
        let key = inserted.id.to_u64();
        self.net.filter_charges.insert(key, FilterCharge { payer: caller, charge, refs: Vec::new() });
        Ok(key as usize)
    }

    pub(super) fn sys_dpf_delete(&mut self, caller: EnvId, filter: usize) -> Result<usize, Error> {
        let id = FilterId::from_u64(filter as u64);
        let generation = self.net.dpf.generation();
        if self.drop_filter_hold(id, caller).map_err(|_| Error::NoSuchFilter)? {
            self.compact_filters(caller);
        }
        // Removing a filter from a group compiled inline (a listen's) needs new code too.
        if self.net.dpf.generation() != generation {
            self.jobs.classifier_cause = Some(caller);
        }
        Ok(0)
    }

    pub(super) fn sys_dpf_ref(&mut self, caller: EnvId, filter: usize, env: usize) -> Result<usize, Error> {
        let to = EnvId(u32::try_from(env).map_err(|_| Error::NoSuchEnv)?);
        if self.envs.get(to).is_none() {
            return Err(Error::NoSuchEnv);
        }
        let id = FilterId::from_u64(filter as u64);
        if !self.net.dpf.holds(id, caller.0) {
            return Err(Error::NoSuchFilter);
        }
        if self.net.dpf.holds(id, to.0) {
            return Ok(0);
        }
        self.charge(caller, Resources::heap(cost::FILTER_REF))?;
        match Arc::make_mut(&mut self.net.dpf).reference(id, caller.0, to.0) {
            Ok(()) => {
                if let Some(record) = self.net.filter_charges.get_mut(&id.to_u64()) {
                    record.refs.push((to, caller));
                }
                Ok(0)
            }
            Err(_) => {
                self.credit(caller, Resources::heap(cost::FILTER_REF));
                Err(Error::NoSuchFilter)
            }
        }
    }

    pub(super) fn sys_net_xmit(&mut self, caller: EnvId, nic: usize, gather: usize, count: usize, counter: usize, flags: usize) -> Result<usize, Error> {
        let info = self.net.nics.get(nic).ok_or(Error::NoSuchNic)?.info();
        if !info.link_up {
            return Err(Error::LinkDown);
        }
        if flags & !XMIT_UNCHECKED != 0 {
            return Err(Error::BadFlags);
        }
        let checked = flags & XMIT_UNCHECKED == 0;
        let privileged = self.envs.get(caller).is_some_and(|env| env.privileged);
        if !checked && !privileged {
            return Err(Error::NotPermitted);
        }
        if !(1..=XMIT_MAX_SEGMENTS).contains(&count) {
            return Err(Error::BadLength);
        }
        let mut raw = [0u8; XMIT_MAX_SEGMENTS * GATHER_SEGMENT_LEN];
        let raw = self.copy_in(caller, gather, count * GATHER_SEGMENT_LEN, &mut raw)?;
        let regions: Vec<(usize, usize)> = raw
            .chunks_exact(GATHER_SEGMENT_LEN)
            .filter_map(|bytes| bytes.try_into().ok().map(GatherSegment::from_bytes))
            .map(|segment| (segment.addr as usize, segment.len as usize))
            .collect();
        let total = regions.iter().try_fold(0usize, |sum, (_, len)| sum.checked_add(*len)).ok_or(Error::BadLength)?;
        if !(XMIT_MIN_FRAME..=XMIT_MAX_FRAME).contains(&total) || regions.iter().any(|(_, len)| *len == 0) {
            return Err(Error::BadLength);
        }
        if !counter.is_multiple_of(8) {
            return Err(Error::BadAlignment);
        }
        let env = self.envs.get(caller).ok_or(Error::NoSuchEnv)?;
        let counter_page = env.space.translate(&self.machine, counter, Access::Write).ok_or(Error::BadAddress)?;
        let mut segments = Vec::new();
        for (addr, len) in regions {
            if !xok_abi::layout::is_user_range(addr, len) {
                return Err(Error::BadAddress);
            }
            let mut done = 0;
            while done < len {
                let at = addr + done;
                let page = env.space.translate(&self.machine, at, Access::Read).ok_or(Error::BadAddress)?;
                let chunk = (PAGE_SIZE - at % PAGE_SIZE).min(len - done);
                segments.push(PhysSegment { address: (page.address() + at % PAGE_SIZE) as u64, len: chunk as u16 });
                done += chunk;
            }
        }
        // A capture sees sent frames too: only while a copy filter exists is the frame read.
        let captured = self.net.dpf.has_copy_filters().then(|| self.read_frame(&segments, total));
        let header = if checked {
            let header = self.copy_header(&segments, total);
            self.check_source(caller, info.mac, &header)?;
            drop_front(&mut segments, header.bytes().len());
            // The slot's address is filled in when the frame goes onto the NIC.
            let on_wire = header.bytes().len().max(MIN_WIRE_FRAME);
            segments.insert(0, PhysSegment { address: 0, len: on_wire as u16 });
            Some(header)
        } else {
            None
        };
        let tree = self.accounts.tree_of(caller);
        if !self.net.queues[nic].has_room(tree) {
            return Err(Error::QueueFull);
        }
        let user_segments = &segments[usize::from(header.is_some())..];
        let mut pins: Vec<Page> = user_segments.iter().map(|s| Page(s.address as usize / PAGE_SIZE)).collect();
        pins.push(counter_page);
        if total < MIN_WIRE_FRAME
            && header.is_none()
            && let Some(zero) = self.net.zero_page
        {
            segments.push(PhysSegment { address: zero.address() as u64, len: (MIN_WIRE_FRAME - total) as u16 });
        }
        let frame = OutgoingFrame { env: caller, tree, segments, counter: (counter_page, counter % PAGE_SIZE), pins, header, slot: None };
        self.charge(caller, Resources::heap(frame.heap_charge()))?;
        for &page in &frame.pins {
            self.pages.pin(page).expect("pages mapped by the caller are in use");
        }
        self.net.queues[nic].push(frame);
        if let Some(bytes) = captured {
            self.deliver_copies(nic, &bytes);
        }
        self.pump_transmit(nic);
        Ok(0)
    }

    /// The whole frame in `segments` (for a capture).
    fn read_frame(&self, segments: &[PhysSegment], total: usize) -> Vec<u8> {
        let mut bytes = alloc::vec![0u8; total];
        let mut filled = 0;
        for segment in segments {
            let (address, len) = (segment.address as usize, usize::from(segment.len));
            self.machine.read(Page(address / PAGE_SIZE), address % PAGE_SIZE, &mut bytes[filled..filled + len]);
            filled += len;
        }
        bytes
    }

    /// Gives a frame this machine sends on NIC `nic` to every copy filter that matches it.
    fn deliver_copies(&mut self, nic: usize, frame: &[u8]) {
        let now = self.machine.now_ns();
        let Network { rings, dpf, classifier, .. } = &mut self.net;
        let classification = classifier.classify(dpf, frame);
        let mut woken: Vec<EnvId> = Vec::new();
        for ring in dpf.copy_ids(&classification).filter_map(|id| dpf.payload(id)) {
            if let Some(ring) = rings.get_mut(&ring) {
                ring.deliver(&mut self.machine, frame, nic as u32, now);
                if !woken.contains(&ring.owner) {
                    woken.push(ring.owner);
                }
            }
        }
        for env in woken {
            self.notify(env);
        }
    }

    /// Copies the first bytes of the frame in `segments` (the headers the check reads).
    fn copy_header(&self, segments: &[PhysSegment], total: usize) -> HeaderCopy {
        let mut header = HeaderCopy::zeroed(HeaderCopy::len_for(total));
        let mut filled = 0;
        let bytes = header.bytes_mut();
        for segment in segments {
            if filled == bytes.len() {
                break;
            }
            let take = usize::from(segment.len).min(bytes.len() - filled);
            let address = segment.address as usize;
            self.machine.read(Page(address / PAGE_SIZE), address % PAGE_SIZE, &mut bytes[filled..filled + take]);
            filled += take;
        }
        header
    }

    /// The transmit check (`net::transmit_check`): the frame must come from `nic_mac`, and its
    /// mirror image must be classified to a filter `caller` holds.
    fn check_source(&mut self, caller: EnvId, nic_mac: [u8; 6], header: &HeaderCopy) -> Result<(), Error> {
        let probe = transmit_check::mirror(header, nic_mac).map_err(|refusal| match refusal {
            Refusal::ForeignMac => Error::ForeignSource,
            Refusal::Malformed => Error::MalformedHeader,
        })?;
        match self.net.classifier.classify(&self.net.dpf, probe.bytes()).owner {
            Some(owner) if self.net.dpf.holds(owner, caller.0) => Ok(()),
            _ => Err(Error::ForeignSource),
        }
    }

    /// Moves waiting frames onto NIC `nic`, round-robin between senders, and tells the NIC.
    fn pump_transmit(&mut self, nic: usize) {
        let mut pushed = false;
        loop {
            let (room, slot_free) = (self.net.nics[nic].tx_room(), self.net.header_slots[nic].available());
            let fits = |frame: &OutgoingFrame| frame.descriptors() <= room && (frame.header.is_none() || slot_free);
            let Some(mut frame) = self.net.queues[nic].pop_fitting(fits) else { break };
            if let Some(header) = &frame.header {
                let slots = &mut self.net.header_slots[nic];
                let slot = slots.take().expect("a free slot was checked");
                let (page, offset) = slots.place(slot);
                let on_wire = &mut frame.segments[0];
                let copied = header.bytes().len();
                self.machine.write(page, offset, header.bytes());
                // A short frame is padded to the Ethernet minimum in the slot.
                let padding = usize::from(on_wire.len).saturating_sub(copied);
                self.machine.write(page, offset + copied, &[0u8; MIN_WIRE_FRAME][..padding]);
                on_wire.address = (page.address() + offset) as u64;
                frame.slot = Some(slot);
            }
            let token = self.net.next_token;
            self.net.next_token += 1;
            self.net.nics[nic].tx_push(&frame.segments, token);
            self.net.in_flight.insert(token, frame);
            pushed = true;
        }
        if pushed {
            let mark = self.machine.profile_mark();
            self.net.nics[nic].tx_flush();
            self.machine.profile_part(xok_abi::profile::NIC_DOORBELL_CAUSE, mark);
        }
    }

    /// NIC `nic` is done with frame `token`: decrement its counter, unpin its pages and free
    /// its header slot.
    fn transmit_done(&mut self, nic: usize, token: u64) {
        let Some(frame) = self.net.in_flight.remove(&token) else { return };
        if let Some(slot) = frame.slot {
            self.net.header_slots[nic].give_back(slot);
        }
        let (page, offset) = frame.counter;
        let mut word = [0u8; 8];
        self.machine.read(page, offset, &mut word);
        let value = u64::from_le_bytes(word).wrapping_sub(1);
        self.machine.write(page, offset, &value.to_le_bytes());
        unpin_all(&mut self.pages, &frame.pins);
        self.credit(frame.env, Resources::heap(frame.heap_charge()));
        self.notify(frame.env);
    }

    /// Handles an interrupt on line `irq`: receives and demultiplexes every waiting frame,
    /// completes sent frames, and refills the NICs' send rings.
    pub fn nic_interrupt(&mut self, irq: u8) {
        for n in 0..self.net.nics.len() {
            if self.net.nics[n].irq() != irq || !self.net.nics[n].ack_interrupt() {
                continue;
            }
            self.poll_nic(n);
        }
    }

    /// Receives, completes and refills on NIC `n` (also used when polling without interrupts).
    /// Each received frame goes into the ring of its owner filter and of every matching copy
    /// filter; a later IPv4 fragment goes where its datagram's first fragment went (held until
    /// that comes: `net::fragments`); a frame nobody takes is counted.
    pub fn poll_nic(&mut self, n: usize) {
        let now = self.machine.now_ns();
        let Network { nics, rings, dpf, classifier, unmatched, fragments, .. } = &mut self.net;
        let machine = &mut self.machine;
        let mut woken: Vec<EnvId> = Vec::new();
        nics[n].rx_poll(&mut |frame| {
            let mark = machine.profile_mark();
            let classification = classifier.classify(dpf, frame);
            machine.profile_part(xok_abi::profile::CLASSIFY_CAUSE, mark);
            let mut owner = classification.owner.and_then(|id| dpf.payload(id));
            let mut released = Vec::new();
            let mut held = false;
            match fragments::piece(frame) {
                Piece::Whole => {}
                Piece::First(datagram) => {
                    if let Some(ring) = owner.filter(|ring| rings.contains_key(ring)) {
                        released = fragments.first(datagram, ring, now);
                    }
                }
                Piece::Later(datagram) => {
                    owner = fragments.route(datagram, now);
                    if owner.is_none() {
                        fragments.hold(datagram, frame, n as u32, now);
                        held = true;
                    }
                }
            }
            let copies = dpf.copy_ids(&classification).filter_map(|id| dpf.payload(id));
            let mut stored = false;
            for ring in owner.into_iter().chain(copies) {
                if let Some(ring) = rings.get_mut(&ring) {
                    ring.deliver(machine, frame, n as u32, now);
                    stored = true;
                    if !woken.contains(&ring.owner) {
                        woken.push(ring.owner);
                    }
                }
            }
            if let Some(ring) = owner.and_then(|ring| rings.get_mut(&ring)) {
                for fragment in released {
                    ring.deliver(machine, &fragment.frame, fragment.nic, now);
                }
            }
            if !stored && !held {
                *unmatched += 1;
            }
        });
        for env in woken {
            self.notify(env);
        }
        let mut done = Vec::new();
        self.net.nics[n].tx_reclaim(&mut |token| done.push(token));
        for token in done {
            self.transmit_done(n, token);
        }
        self.pump_transmit(n);
    }
}
