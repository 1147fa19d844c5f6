//! The ARP table as programs see it: a page that `arpd` writes and every program maps
//! read-only, and a request page where programs ask arpd for addresses it does not know yet
//! (layouts: `xok_abi::arp`). Where they are comes from init, not the kernel: init allocates
//! both pages, gives arpd write access to both and every other program it starts read access
//! to the table and write access to the requests, and names them in their settings
//! (`exos.arp=<page>`, `exos.arpreq=<page>`; see [`crate::rt::setting`]).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use xok_abi::arp::{ARP_ENTRIES, ARP_ENTRY_LEN, ArpEntry, entry_offset, request_word, requested_ip};
use xok_abi::layout::{PAGE_SIZE, TICK_HZ};
use xok_abi::{Error, PteFlags};

use crate::wait::Waiter;

/// Where exos maps the table (an address of exos's choosing).
pub const ARP_VA: usize = 0x5f_ffff_0000;
/// Where exos maps the request page.
pub const ARP_REQUESTS_VA: usize = 0x5f_fffe_0000;

/// A mapped page, as words.
type Words = &'static [AtomicU64; PAGE_SIZE / 8];

/// The mapped ARP table (and request page, if the program has one).
#[derive(Clone, Copy, Debug)]
pub struct ArpTable {
    page: Words,
    requests: Option<Words>,
    /// The table version this program saw last (for its waiter).
    seen: &'static AtomicU64,
}

impl ArpTable {
    /// The table named by this program's settings, mapped on first use. Waits (yielding, at
    /// most a second) for the rights, which the parent grants right after starting the
    /// program.
    pub fn get() -> Result<ArpTable, Error> {
        static TABLE: spin::Once<Result<ArpTable, Error>> = spin::Once::new();
        *TABLE.call_once(|| {
            let page = crate::rt::setting("arp").and_then(|v| v.parse().ok()).ok_or(Error::NotFound)?;
            let requests = crate::rt::setting("arpreq").and_then(|v| v.parse().ok());
            ArpTable::map(page, PteFlags::empty(), requests)
        })
    }

    /// The table in `page` mapped writable, with the request page (arpd's side: it alone
    /// may write the table).
    pub fn writable(page: usize, requests: Option<usize>) -> Result<ArpTable, Error> {
        ArpTable::map(page, PteFlags::WRITE, requests)
    }

    fn map(page: usize, flags: PteFlags, requests: Option<usize>) -> Result<ArpTable, Error> {
        let page = map_words(ARP_VA, page, flags)?;
        let requests = requests.map(|requests| map_words(ARP_REQUESTS_VA, requests, PteFlags::WRITE)).transpose()?;
        Ok(ArpTable::over(page, requests))
    }

    /// A table over pages already in memory.
    fn over(page: Words, requests: Option<Words>) -> ArpTable {
        ArpTable { page, requests, seen: Box::leak(Box::new(AtomicU64::new(0))) }
    }

    /// The MAC of `ip`: from the table, or else by asking arpd (again every second) and
    /// sleeping on `waiter` until the table has it or tick `deadline` passes (`NotFound`).
    pub fn resolve(&self, ip: [u8; 4], waiter: &mut Waiter, deadline: u64) -> Result<[u8; 6], Error> {
        self.watch(waiter);
        let mut ask_at = 0;
        loop {
            self.mark_seen();
            if let Some(mac) = self.lookup(ip) {
                return Ok(mac);
            }
            let now = crate::sys::ticks();
            if now >= deadline {
                return Err(Error::NotFound);
            }
            if now >= ask_at {
                self.request(ip)?;
                ask_at = now + TICK_HZ;
            }
            waiter.sleep_until(deadline.min(ask_at))?;
        }
    }

    /// Makes `waiter` wake when the table changes after [`ArpTable::mark_seen`].
    pub fn watch(&self, waiter: &mut Waiter) {
        waiter.watch_change(self.version(), self.seen);
    }

    /// Notes the table's current version as seen (the waiter then sleeps until it changes).
    pub fn mark_seen(&self) {
        self.seen.store(self.version().load(Ordering::Acquire), Ordering::Release);
    }

    /// Asks arpd to find `ip` (once: a pending request for it is enough).
    pub fn request(&self, ip: [u8; 4]) -> Result<(), Error> {
        let requests = self.requests.ok_or(Error::NotFound)?;
        let word = request_word(ip);
        let slots = &requests[1..];
        if !slots.iter().any(|slot| slot.load(Ordering::Acquire) == word) {
            let free = slots.iter().find(|slot| slot.compare_exchange(0, word, Ordering::AcqRel, Ordering::Acquire).is_ok());
            free.ok_or(Error::TooMany)?;
        }
        requests[0].fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// The counter programs bump after a request (arpd's waiter watches it).
    pub fn request_counter(&self) -> Option<&'static AtomicU64> {
        self.requests.map(|requests| &requests[0])
    }

    /// Takes every pending request (arpd): the addresses asked for, each once.
    pub fn take_requests(&self) -> Vec<[u8; 4]> {
        let mut asked = Vec::new();
        for slot in self.requests.map_or(&[][..], |requests| &requests[1..]) {
            let word = slot.swap(0, Ordering::AcqRel);
            if let Some(ip) = requested_ip(word)
                && !asked.contains(&ip)
            {
                asked.push(ip);
            }
        }
        asked
    }

    /// Writes entry `index` (arpd): the version goes odd, the words change, the version goes
    /// even again, so readers retry rather than read a torn entry.
    pub fn store(&self, index: usize, entry: ArpEntry) {
        let Some(at) = entry_offset(index) else { return };
        self.version().fetch_add(1, Ordering::AcqRel);
        for (n, chunk) in entry.to_bytes().chunks(8).enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.page[at / 8 + n].store(u64::from_le_bytes(word), Ordering::Relaxed);
        }
        self.version().fetch_add(1, Ordering::AcqRel);
    }

    /// The version word: odd while arpd writes; it changes with every change of the table (a
    /// waiter can watch it, [`crate::wait::Waiter::watch_change`]).
    pub fn version(&self) -> &'static AtomicU64 {
        &self.page[0]
    }

    /// The MAC of `ip`, if arpd knows it.
    pub fn lookup(&self, ip: [u8; 4]) -> Option<[u8; 6]> {
        self.snapshot(|entry| (!entry.is_empty() && entry.ip == ip).then_some(entry.mac))
    }

    /// Every entry, in table order (for tools).
    pub fn entries(&self, out: &mut alloc::vec::Vec<ArpEntry>) {
        out.clear();
        let _: Option<()> = self.snapshot(|entry| {
            if !entry.is_empty() {
                out.push(entry);
            }
            None
        });
    }

    /// Runs `find` over a consistent copy of the entries (retrying while arpd writes).
    fn snapshot<T>(&self, mut find: impl FnMut(ArpEntry) -> Option<T>) -> Option<T> {
        loop {
            let before = self.version().load(Ordering::Acquire);
            if before % 2 == 1 {
                crate::sys::env_yield();
                continue;
            }
            let mut found = None;
            for index in 0..ARP_ENTRIES {
                let entry = self.entry(index);
                if found.is_none() {
                    found = find(entry);
                }
            }
            if self.version().load(Ordering::Acquire) == before {
                return found;
            }
        }
    }

    /// A copy of entry `index` (which may be torn if arpd is writing: see `snapshot`).
    fn entry(&self, index: usize) -> ArpEntry {
        let at = entry_offset(index).unwrap_or(0);
        let mut bytes = [0u8; ARP_ENTRY_LEN];
        for (n, chunk) in bytes.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(&self.page[at / 8 + n].load(Ordering::Relaxed).to_le_bytes());
        }
        ArpEntry::from_bytes(bytes)
    }
}

/// Maps `page` at `va` with `flags` (waiting up to a second for the right) and views it as
/// words.
fn map_words(va: usize, page: usize, flags: PteFlags) -> Result<Words, Error> {
    let give_up = crate::sys::time() + 1_000_000_000;
    loop {
        // SAFETY: exos keeps `va` for the ARP table; nothing else of the program lives there.
        match unsafe { crate::sys::insert_pte(va, page, flags) } {
            Ok(()) => break,
            Err(Error::NoRights) if crate::sys::time() < give_up => crate::sys::env_yield(),
            Err(error) => return Err(error),
        }
    }
    // SAFETY: the page is mapped at `va` for the rest of the program (exos never unmaps it);
    // it is 8-aligned, and every access goes through atomics, so other environments'
    // concurrent writes are never a data race.
    Ok(unsafe { &*(va as *const [AtomicU64; PAGE_SIZE / 8]) })
}

const _: () = assert!(xok_abi::arp::ARP_ENTRIES_AT.is_multiple_of(8) && ARP_ENTRY_LEN.is_multiple_of(8));

/// arpd's bookkeeping of the table (plain data, time passed in): which slot holds whom.
#[derive(Clone, Debug)]
pub struct Neighbours {
    slots: alloc::vec::Vec<ArpEntry>,
}

impl Default for Neighbours {
    fn default() -> Self {
        Neighbours { slots: alloc::vec![ArpEntry::default(); ARP_ENTRIES] }
    }
}

impl Neighbours {
    /// Records that `ip` is at `mac` at tick `now`; returns the slot to write and its entry
    /// (the same slot for a known address, else a free one, else the oldest).
    pub fn learn(&mut self, ip: [u8; 4], mac: [u8; 6], now: u64) -> (usize, ArpEntry) {
        let slot = self
            .slots
            .iter()
            .position(|entry| entry.ip == ip)
            .or_else(|| self.slots.iter().position(ArpEntry::is_empty))
            .unwrap_or_else(|| (0..self.slots.len()).min_by_key(|&i| self.slots[i].learned_tick).unwrap_or(0));
        let entry = ArpEntry { ip, mac, learned_tick: now };
        self.slots[slot] = entry;
        (slot, entry)
    }

    /// Forgets entries not heard from for `max_age` ticks at tick `now`; returns their slots.
    pub fn expire(&mut self, now: u64, max_age: u64) -> alloc::vec::Vec<usize> {
        let mut gone = alloc::vec::Vec::new();
        for (slot, entry) in self.slots.iter_mut().enumerate() {
            if !entry.is_empty() && now.saturating_sub(entry.learned_tick) > max_age {
                *entry = ArpEntry::default();
                gone.push(slot);
            }
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> Words {
        Box::leak(Box::new(core::array::from_fn(|_| AtomicU64::new(0))))
    }

    #[test]
    fn entries_are_stored_under_the_version_lock_and_requests_taken_once() {
        let table = ArpTable::over(page(), Some(page()));
        table.store(3, ArpEntry { ip: [10, 0, 2, 2], mac: [7; 6], learned_tick: 5 });
        assert_eq!(table.version().load(Ordering::Acquire), 2, "odd while writing, even after");
        assert_eq!(table.lookup([10, 0, 2, 2]), Some([7; 6]));
        let mut all = Vec::new();
        table.entries(&mut all);
        assert_eq!(all.len(), 1);
        table.request([10, 0, 2, 9]).unwrap();
        table.request([10, 0, 2, 9]).unwrap();
        table.request([10, 0, 2, 8]).unwrap();
        assert_eq!(table.request_counter().unwrap().load(Ordering::Acquire), 3);
        assert_eq!(table.take_requests(), alloc::vec![[10, 0, 2, 9], [10, 0, 2, 8]], "each address once");
        assert!(table.take_requests().is_empty());
        let without = ArpTable::over(page(), None);
        assert_eq!(without.request([1, 2, 3, 4]), Err(Error::NotFound));
    }

    #[test]
    fn neighbours_are_updated_in_place_aged_and_replaced_oldest_first() {
        let mut neighbours = Neighbours::default();
        let (first, _) = neighbours.learn([10, 0, 2, 2], [1; 6], 10);
        let (again, entry) = neighbours.learn([10, 0, 2, 2], [2; 6], 20);
        assert_eq!((first, entry.mac, entry.learned_tick), (again, [2; 6], 20), "one slot per address");
        let (other, _) = neighbours.learn([10, 0, 2, 3], [3; 6], 30);
        assert_ne!(other, first);
        assert_eq!(neighbours.expire(100, 75), alloc::vec![first]);
        assert_eq!(neighbours.expire(100, 75), alloc::vec::Vec::<usize>::new());
        for n in 0..ARP_ENTRIES as u64 {
            neighbours.learn([10, 1, (n >> 8) as u8, n as u8], [4; 6], 200 + n);
        }
        let (slot, _) = neighbours.learn([10, 9, 9, 9], [5; 6], 1000);
        assert_eq!(neighbours.slots[slot].ip, [10, 9, 9, 9]);
        assert!(neighbours.slots.iter().all(|e| e.ip != [10, 1, 0, 0]), "the oldest went");
    }
}
