//! Fair transmission: each process tree (a child of init and all its descendants) has its own
//! queue of frames waiting for the NIC, and the kernel feeds the NIC round-robin between them,
//! so a flooding program cannot starve another (Xok had one FIFO), and spawning more senders
//! buys no more of the link. Frames keep their pages pinned from `net_xmit` until the NIC is
//! done.

use crate::net::nic::PhysSegment;
use crate::ownership::Page;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use xok_abi::EnvId;

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
}

impl OutgoingFrame {
    /// The kernel heap bytes charged to the sender while the frame waits or is on a NIC.
    pub fn heap_charge(&self) -> usize {
        crate::account::cost::FRAME + (self.segments.len() + self.pins.len()) * crate::account::cost::FRAME_SEGMENT
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

    /// The next frame round-robin, if its segment count fits `room`. A frame that does not fit
    /// stays first in its queue and ends this round (frames of one sender stay in order).
    pub fn pop_fitting(&mut self, room: usize) -> Option<OutgoingFrame> {
        let env = {
            let after = self.last_served;
            let mut later = self.queues.keys().filter(|env| after.is_none_or(|a| **env > a));
            let first = self.queues.keys().next();
            later.next().or(first).copied()?
        };
        let queue = self.queues.get_mut(&env).expect("key from the map");
        if queue.front().is_none_or(|f| f.segments.len() > room) {
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
        }
    }

    #[test]
    fn senders_take_turns() {
        let mut queues = TransmitQueues::default();
        for tag in 0..10 {
            queues.push(frame(1, tag, 1)); // a flood from env 1
        }
        queues.push(frame(2, 100, 1));
        queues.push(frame(2, 101, 1));
        let order: Vec<(u32, u64)> = core::iter::from_fn(|| queues.pop_fitting(8))
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
        let tags: Vec<u64> = core::iter::from_fn(|| queues.pop_fitting(8)).map(|f| f.segments[0].address / 100).collect();
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
        let senders: Vec<u32> = core::iter::from_fn(|| queues.pop_fitting(8)).map(|f| f.env.0).collect();
        assert_eq!(&senders[..4], &[10, 2, 11, 2], "ten children of one tree share its turns");
        assert_eq!(queues.remove_env(EnvId(12)).len(), 0, "already sent");
    }

    #[test]
    fn a_frame_that_does_not_fit_waits() {
        let mut queues = TransmitQueues::default();
        queues.push(frame(1, 1, 4));
        assert_eq!(queues.pop_fitting(3), None);
        assert_eq!(queues.len(), 1);
        assert_eq!(queues.pop_fitting(4).unwrap().segments.len(), 4);
    }

    #[test]
    fn an_ended_sender_leaves_nothing_behind() {
        let mut queues = TransmitQueues::default();
        queues.push(frame(1, 1, 1));
        queues.push(frame(2, 2, 1));
        queues.push(frame(1, 3, 1));
        assert_eq!(queues.remove_env(EnvId(1)).len(), 2);
        assert_eq!(queues.len(), 1);
        assert_eq!(queues.pop_fitting(8).unwrap().env, EnvId(2));
    }
}
