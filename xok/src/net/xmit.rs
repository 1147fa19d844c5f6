//! Fair transmission: each process tree (a child of init and all its descendants) has its own
//! queue of frames waiting for the NIC, and the kernel feeds the NIC round-robin between them,
//! so a flooding program cannot starve another (Xok had one FIFO), and spawning more senders
//! buys no more of the link. Frames keep their pages pinned from `net_xmit` until the NIC is
//! done. A checked frame's headers wait in the frame ([`HeaderCopy`]) and go to the NIC from
//! a [`HeaderSlots`] slot of kernel memory.

use crate::net::nic::PhysSegment;
use crate::net::transmit_check::{HEADER_COPY_MAX, HeaderCopy};
use crate::ownership::Page;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use xok_abi::EnvId;
use xok_abi::layout::PAGE_SIZE;

/// Frames one process tree may have waiting (not yet on the NIC).
pub const QUEUE_LIMIT: usize = 64;

/// A frame accepted by `net_xmit`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingFrame {
    /// Who sent it.
    pub env: EnvId,
    /// The process tree it is queued under (see the module comment).
    pub tree: EnvId,
    /// Its bytes, by physical address, each within one page.
    pub segments: Vec<PhysSegment>,
    /// The `u64` to decrement when the NIC is done: page and byte offset.
    pub counter: (Page, usize),
    /// Every pin taken for it (segment pages and the counter page), released on completion.
    pub pins: Vec<Page>,
    /// The checked headers, sent from a header slot ahead of `segments` (which then hold only
    /// the bytes behind them); `None` for an unchecked frame.
    pub header: Option<HeaderCopy>,
    /// The header slot the frame occupies while on the NIC.
    pub slot: Option<HeaderSlot>,
}

impl OutgoingFrame {
    /// The kernel heap bytes charged to the sender while the frame waits or is on a NIC.
    pub fn heap_charge(&self) -> usize {
        crate::account::cost::FRAME + (self.segments.len() + self.pins.len()) * crate::account::cost::FRAME_SEGMENT
    }

    /// How many NIC descriptors the frame takes (its header slot and segments).
    pub fn descriptors(&self) -> usize {
        self.segments.len() + usize::from(self.header.is_some())
    }
}

/// Bytes of one header slot: a checked header, or a whole short frame padded to the Ethernet
/// minimum.
pub const HEADER_SLOT_SIZE: usize = 256;
/// Header slots per NIC: as many as frames the largest send ring holds.
pub const HEADER_SLOTS: usize = 256;
const SLOTS_PER_PAGE: usize = PAGE_SIZE / HEADER_SLOT_SIZE;
const _: () = assert!(HEADER_COPY_MAX <= HEADER_SLOT_SIZE && PAGE_SIZE.is_multiple_of(HEADER_SLOT_SIZE));

/// One header slot, taken from a [`HeaderSlots`] (its index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderSlot(usize);

/// Kernel pages the NIC sends checked headers from, cut into [`HEADER_SLOTS`] slots: a frame
/// takes one when it goes onto the NIC and gives it back when the NIC is done, so the bytes
/// sent are the bytes checked whatever the sender writes meanwhile.
#[derive(Debug)]
pub struct HeaderSlots {
    pages: Vec<Page>,
    free: Vec<HeaderSlot>,
}

impl HeaderSlots {
    /// Pages a NIC's slots take.
    pub const PAGES: usize = HEADER_SLOTS / SLOTS_PER_PAGE;

    /// Slots over `pages` (kernel pages, [`HeaderSlots::PAGES`] of them).
    pub fn new(pages: Vec<Page>) -> HeaderSlots {
        let free = (0..pages.len() * SLOTS_PER_PAGE).rev().map(HeaderSlot).collect();
        HeaderSlots { pages, free }
    }

    /// Whether a slot is free.
    pub fn available(&self) -> bool {
        !self.free.is_empty()
    }

    /// Takes a free slot.
    pub fn take(&mut self) -> Option<HeaderSlot> {
        self.free.pop()
    }

    /// Gives a slot back.
    pub fn give_back(&mut self, slot: HeaderSlot) {
        self.free.push(slot);
    }

    /// Where slot `slot` lies: its page and the byte offset in it.
    pub fn place(&self, slot: HeaderSlot) -> (Page, usize) {
        (self.pages[slot.0 / SLOTS_PER_PAGE], slot.0 % SLOTS_PER_PAGE * HEADER_SLOT_SIZE)
    }
}

/// The waiting frames of one NIC, per process tree.
#[derive(Debug, Default)]
pub struct TransmitQueues {
    queues: BTreeMap<EnvId, VecDeque<OutgoingFrame>>,
    /// The tree served last; the next turn goes to the one after it.
    last_served: Option<EnvId>,
}

impl TransmitQueues {
    /// Whether process tree `tree` may queue another frame.
    pub fn has_room(&self, tree: EnvId) -> bool {
        self.queues.get(&tree).is_none_or(|q| q.len() < QUEUE_LIMIT)
    }

    /// Queues a frame (the caller checked `has_room`).
    pub fn push(&mut self, frame: OutgoingFrame) {
        self.queues.entry(frame.tree).or_default().push_back(frame);
    }

    /// Frames waiting in all queues.
    pub fn len(&self) -> usize {
        self.queues.values().map(VecDeque::len).sum()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// The next frame round-robin, if `fits` it (room on the NIC). A frame that does not fit
    /// stays first in its queue and ends this round (frames of one sender stay in order).
    pub fn pop_fitting(&mut self, fits: impl Fn(&OutgoingFrame) -> bool) -> Option<OutgoingFrame> {
        let env = {
            let after = self.last_served;
            let mut later = self.queues.keys().filter(|env| after.is_none_or(|a| **env > a));
            let first = self.queues.keys().next();
            later.next().or(first).copied()?
        };
        let queue = self.queues.get_mut(&env).expect("key from the map");
        if queue.front().is_none_or(|f| !fits(f)) {
            return None;
        }
        let frame = queue.pop_front();
        if queue.is_empty() {
            self.queues.remove(&env);
        }
        self.last_served = Some(env);
        frame
    }

    /// Removes and returns every frame `env` still has waiting (it has ended).
    pub fn remove_env(&mut self, env: EnvId) -> Vec<OutgoingFrame> {
        let mut removed = Vec::new();
        for queue in self.queues.values_mut() {
            let (gone, kept): (Vec<OutgoingFrame>, Vec<OutgoingFrame>) = queue.drain(..).partition(|f| f.env == env);
            removed.extend(gone);
            queue.extend(kept);
        }
        self.queues.retain(|_, queue| !queue.is_empty());
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(env: u32, tag: u64, segments: usize) -> OutgoingFrame {
        OutgoingFrame {
            env: EnvId(env),
            tree: EnvId(env),
            segments: (0..segments).map(|i| PhysSegment { address: tag * 100 + i as u64, len: 60 }).collect(),
            counter: (Page(1), 0),
            pins: Vec::new(),
            header: None,
            slot: None,
        }
    }

    fn room(room: usize) -> impl Fn(&OutgoingFrame) -> bool {
        move |frame| frame.descriptors() <= room
    }

    #[test]
    fn senders_take_turns() {
        let mut queues = TransmitQueues::default();
        for tag in 0..10 {
            queues.push(frame(1, tag, 1)); // a flood from env 1
        }
        queues.push(frame(2, 100, 1));
        queues.push(frame(2, 101, 1));
        let order: Vec<(u32, u64)> = core::iter::from_fn(|| queues.pop_fitting(room(8)))
            .map(|f| (f.env.0, f.segments[0].address / 100))
            .collect();
        assert_eq!(&order[..5], &[(1, 0), (2, 100), (1, 1), (2, 101), (1, 2)]);
        assert_eq!(order.len(), 12);
        assert!(queues.is_empty());
    }

    #[test]
    fn per_sender_limit_and_order_within_a_sender() {
        let mut queues = TransmitQueues::default();
        for tag in 0..QUEUE_LIMIT as u64 {
            assert!(queues.has_room(EnvId(1)));
            queues.push(frame(1, tag, 1));
        }
        assert!(!queues.has_room(EnvId(1)));
        assert!(queues.has_room(EnvId(2)));
        let tags: Vec<u64> = core::iter::from_fn(|| queues.pop_fitting(room(8))).map(|f| f.segments[0].address / 100).collect();
        assert_eq!(tags, (0..QUEUE_LIMIT as u64).collect::<Vec<_>>());
    }

    #[test]
    fn a_tree_of_senders_gets_one_turn() {
        let mut queues = TransmitQueues::default();
        for child in 10..20 {
            queues.push(OutgoingFrame { tree: EnvId(1), ..frame(child, u64::from(child), 1) });
        }
        queues.push(frame(2, 100, 1));
        queues.push(frame(2, 101, 1));
        let senders: Vec<u32> = core::iter::from_fn(|| queues.pop_fitting(room(8))).map(|f| f.env.0).collect();
        assert_eq!(&senders[..4], &[10, 2, 11, 2], "ten children of one tree share its turns");
        assert_eq!(queues.remove_env(EnvId(12)).len(), 0, "already sent");
    }

    #[test]
    fn a_frame_that_does_not_fit_waits() {
        let mut queues = TransmitQueues::default();
        queues.push(frame(1, 1, 4));
        assert_eq!(queues.pop_fitting(room(3)), None);
        assert_eq!(queues.len(), 1);
        assert_eq!(queues.pop_fitting(room(4)).unwrap().segments.len(), 4);
    }

    #[test]
    fn a_checked_header_takes_a_descriptor() {
        let mut queues = TransmitQueues::default();
        queues.push(OutgoingFrame { header: Some(HeaderCopy::new(&[0; 54])), ..frame(1, 1, 2) });
        assert_eq!(queues.pop_fitting(room(2)), None);
        assert_eq!(queues.pop_fitting(room(3)).unwrap().descriptors(), 3);
    }

    #[test]
    fn header_slots_are_distinct_and_come_back() {
        let mut slots = HeaderSlots::new((0..HeaderSlots::PAGES).map(|n| Page(100 + n)).collect());
        let taken: Vec<HeaderSlot> = core::iter::from_fn(|| slots.take()).collect();
        assert_eq!(taken.len(), HEADER_SLOTS);
        assert!(!slots.available());
        let mut places: Vec<(Page, usize)> = taken.iter().map(|s| slots.place(*s)).collect();
        places.sort_by_key(|(page, offset)| (page.0, *offset));
        places.dedup();
        assert_eq!(places.len(), HEADER_SLOTS, "no two slots share bytes");
        assert!(places.iter().all(|(_, offset)| offset + HEADER_SLOT_SIZE <= PAGE_SIZE));
        slots.give_back(taken[7]);
        assert_eq!(slots.take(), Some(taken[7]));
    }

    #[test]
    fn an_ended_sender_leaves_nothing_behind() {
        let mut queues = TransmitQueues::default();
        queues.push(frame(1, 1, 1));
        queues.push(frame(2, 2, 1));
        queues.push(frame(1, 3, 1));
        assert_eq!(queues.remove_env(EnvId(1)).len(), 2);
        assert_eq!(queues.len(), 1);
        assert_eq!(queues.pop_fitting(room(8)).unwrap().env, EnvId(2));
    }
}
