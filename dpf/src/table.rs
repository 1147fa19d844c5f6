//! The hash-dispatch table: open addressing with linear probing over plain `u32` words, the
//! same words the compiled code probes (layout in [`crate::abi::TableDesc`]).
//!
//! Adding or removing a key changes words in this table and nothing else; growing moves the
//! words, and the new address reaches the compiled code through the context.

use alloc::vec;
use alloc::vec::Vec;

use crate::abi::{TableDesc, entry_field, hash_key};
use crate::filter::MAX_ATOMS;

/// A map from key tuples (`arity` words) to node numbers, each entry also holding its node's
/// owner record (`entry_field`), so that compiled code finds the owner of a frame's node in
/// the slot it probed, without a second, dependent load.
#[derive(Clone, Debug)]
pub struct FlatTable {
    words: Vec<u32>,
    arity: usize,
    capacity: usize,
    len: usize,
    seed: u64,
}

/// The smallest table: one that holds a single key within [`LOAD_DIVISOR`] (so a table's
/// first insert and last delete do not resize it).
const MIN_CAPACITY: usize = LOAD_DIVISOR;

/// Where an entry's key starts, in words: after the tag and the two record words.
const KEY_WORD: usize = entry_field::KEY as usize / 4;

/// At most one slot in this many is used (the table grows past it) while the table is small
/// ([`SMALL_TABLE_BYTES`]): probe runs stay short (a miss, such as a listen's frame that
/// opens a connection, probes 1.15 slots on average; at one slot in four it was 1.4, and the
/// benchmark's listen-owned frame at 1 000 connections took 140 instructions, now 130).
const LOAD_DIVISOR: usize = 8;

/// A table bigger than this (it no longer fits a core's L2 cache) fills up to one slot in
/// [`BIG_LOAD_DIVISOR`] before it grows: a lookup there waits on a cache miss anyway, and half
/// the memory (100 000 connections in 262 144 slots, 5 MiB, rather than twice that) misses
/// less; a miss probes 2.5 slots on average at that load.
const SMALL_TABLE_BYTES: usize = 256 * 1024;
const BIG_LOAD_DIVISOR: usize = 2;

impl FlatTable {
    /// An empty table for keys of `arity` words.
    pub fn new(arity: usize, seed: u64) -> FlatTable {
        FlatTable { words: vec![0; MIN_CAPACITY * (arity + KEY_WORD)], arity, capacity: MIN_CAPACITY, len: 0, seed }
    }

    fn stride(&self) -> usize {
        self.arity + KEY_WORD
    }

    /// Whether the table holds no key.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The hash seed (fixed for the table's life).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    fn home(&self, key: &[u32]) -> usize {
        let shift = 64 - self.capacity.trailing_zeros();
        ((hash_key(self.seed, key) >> shift) as usize) & (self.capacity - 1)
    }

    fn slot(&self, index: usize) -> &[u32] {
        let s = self.stride();
        self.words.get(index * s..(index + 1) * s).unwrap_or(&[])
    }

    /// The descriptor the compiled code reads. Valid until the table is next modified.
    pub fn desc(&self) -> TableDesc {
        TableDesc {
            entries: self.words.as_ptr() as u64,
            mask: (self.capacity - 1) as u64,
            shift: u64::from(64 - self.capacity.trailing_zeros()),
            seed: self.seed,
        }
    }

    /// Finds the slot holding `key`.
    fn find_slot(&self, key: &[u32]) -> Option<usize> {
        let mut index = self.home(key);
        for _ in 0..self.capacity {
            let slot = self.slot(index);
            match slot.first() {
                Some(0) | None => return None,
                Some(_) if slot[KEY_WORD..].iter().zip(key).all(|(a, b)| a == b) => return Some(index),
                _ => index = (index + 1) & (self.capacity - 1),
            }
        }
        None
    }

    /// The node stored under `key`.
    pub fn get(&self, key: &[u32]) -> Option<u32> {
        let slot = self.find_slot(key)?;
        self.slot(slot).first().map(|tag| tag - 1)
    }

    /// Sets the owner record of the entry under `key` (its node's `owner` and `depth`, as in
    /// [`crate::abi::NodeInfo`]). Returns whether there is such an entry.
    pub fn set_record(&mut self, key: &[u32], owner: u32, depth: u32) -> bool {
        let Some(slot) = self.find_slot(key) else { return false };
        let record = slot * self.stride() + entry_field::RECORD as usize / 4;
        self.words[record..record + 2].copy_from_slice(&[owner, depth]);
        true
    }

    /// Stores `node` under `key`, which is not in the table (the caller looked it up), with
    /// an empty record.
    pub fn insert(&mut self, key: &[u32], node: u32) {
        debug_assert_eq!(key.len(), self.arity);
        debug_assert!(self.find_slot(key).is_none(), "a key is inserted once");
        let big = self.capacity * self.stride() * 4 > SMALL_TABLE_BYTES;
        let divisor = if big { BIG_LOAD_DIVISOR } else { LOAD_DIVISOR };
        if (self.len + 1) * divisor > self.capacity {
            self.grow();
        }
        let mut entry = [0u32; KEY_WORD + MAX_ATOMS];
        entry[0] = node + 1;
        entry[KEY_WORD..KEY_WORD + key.len()].copy_from_slice(key);
        self.place(&entry[..self.stride()]);
        self.len += 1;
    }

    /// Puts a whole entry (tag, record, key) into the first free slot of its probe run.
    fn place(&mut self, entry: &[u32]) {
        let s = self.stride();
        let mut index = self.home(&entry[KEY_WORD..]);
        while self.words[index * s] != 0 {
            index = (index + 1) & (self.capacity - 1);
        }
        self.words[index * s..(index + 1) * s].copy_from_slice(entry);
    }

    fn grow(&mut self) {
        self.resize(self.capacity * 2);
    }

    /// Rehashes into `capacity` slots (a power of two that holds every key within the load
    /// limit, [`LOAD_DIVISOR`] or [`BIG_LOAD_DIVISOR`]).
    fn resize(&mut self, capacity: usize) {
        let old = core::mem::take(&mut self.words);
        self.capacity = capacity;
        self.words = vec![0; self.capacity * self.stride()];
        for entry in old.chunks_exact(self.stride()) {
            if entry[0] != 0 {
                self.place(entry);
            }
        }
    }

    /// Removes `key`, returning its node. Later entries of the probe run shift back, so no
    /// tombstones are left.
    pub fn remove(&mut self, key: &[u32]) -> Option<u32> {
        let mut hole = self.find_slot(key)?;
        let s = self.stride();
        let node = self.words[hole * s] - 1;
        let mask = self.capacity - 1;
        let mut next = (hole + 1) & mask;
        loop {
            if self.words[next * s] == 0 {
                break;
            }
            let home = self.home(&self.words[next * s + KEY_WORD..(next + 1) * s]);
            // Move the entry back if its home does not lie cyclically in (hole, next].
            let distance_home = next.wrapping_sub(home) & mask;
            let distance_hole = next.wrapping_sub(hole) & mask;
            if distance_home >= distance_hole {
                self.words.copy_within(next * s..(next + 1) * s, hole * s);
                hole = next;
            }
            next = (next + 1) & mask;
        }
        self.words[hole * s..(hole + 1) * s].fill(0);
        self.len -= 1;
        // Give memory back once the table is mostly empty (so tables emptied by deletes do
        // not keep their peak size), leaving room to grow again before the next shrink: at a
        // quarter of the small tables' load limit, for big tables too (they then keep their
        // size longer, never oscillate).
        if self.capacity > MIN_CAPACITY && self.len * 4 * LOAD_DIVISOR <= self.capacity {
            self.resize((self.capacity / 2).max(MIN_CAPACITY));
        }
        Some(node)
    }

    /// All (key, node) pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&[u32], u32)> {
        self.words.chunks_exact(self.stride()).filter(|entry| entry[0] != 0).map(|entry| (&entry[KEY_WORD..], entry[0] - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;

    #[test]
    fn matches_a_map_under_random_operations() {
        let mut table = FlatTable::new(2, 7);
        let mut model = BTreeMap::new();
        let mut x: u64 = 1;
        for step in 0..200_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = [(x % 64) as u32, ((x >> 8) % 4) as u32];
            if x >> 60 < 9 {
                if table.get(&key).is_none() {
                    table.insert(&key, step);
                    model.insert(key, step);
                }
            } else {
                assert_eq!(table.remove(&key), model.remove(&key));
            }
            assert_eq!(table.len, model.len());
            let probe = [((x >> 20) % 64) as u32, ((x >> 30) % 4) as u32];
            assert_eq!(table.get(&probe), model.get(&probe).copied());
        }
        let mut all: Vec<_> = table.iter().map(|(k, v)| ([k[0], k[1]], v)).collect();
        all.sort();
        assert_eq!(all, model.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn an_emptied_table_shrinks() {
        let mut table = FlatTable::new(1, 3);
        for k in 0..10_000u32 {
            table.insert(&[k], k);
        }
        let peak = table.capacity;
        for k in 0..10_000u32 {
            assert_eq!(table.remove(&[k]), Some(k));
        }
        assert!(table.capacity <= 16, "capacity {} after peak {peak}", table.capacity);
        assert_eq!(table.get(&[5]), None);
    }
}
