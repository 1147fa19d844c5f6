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

    /// Marks the table served (arpd, once its ring and filter are in place): the version
    /// moves on by two, so it stays even and is never 0 again.
    pub fn mark_served(&self) {
        self.version().fetch_add(2, Ordering::AcqRel);
    }

    /// Whether arpd has started serving the table ([`ArpTable::mark_served`]).
    pub fn is_served(&self) -> bool {
        self.version().load(Ordering::Acquire) != 0
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

/// What arpd checks an ARP sender against: this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Station {
    /// The machine's address.
    pub ip: [u8; 4],
    /// Its network's prefix length.
    pub prefix: u8,
    /// Its NIC's hardware address.
    pub mac: [u8; 6],
}

/// Why arpd does not learn an ARP packet's sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unlearnable {
    /// The sender claims this machine's own address (a conflict, or a spoof).
    OurAddress,
    /// The sender's hardware address is no other station's: zero, broadcast, multicast, or
    /// this machine's own.
    JunkHardwareAddress,
    /// The sender's address is no host of this machine's network: zero, the network's or
    /// the limited broadcast address, multicast, or another network's.
    NotANeighbour,
}

impl Station {
    /// Whether arpd may learn that `ip` is at `mac`.
    pub fn check(&self, ip: [u8; 4], mac: [u8; 6]) -> Result<(), Unlearnable> {
        if ip == self.ip {
            return Err(Unlearnable::OurAddress);
        }
        if mac == [0; 6] || mac[0] & 1 != 0 || mac == self.mac {
            return Err(Unlearnable::JunkHardwareAddress);
        }
        let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix.min(32))).unwrap_or(0);
        let (host, own) = (u32::from_be_bytes(ip), u32::from_be_bytes(self.ip));
        let hosts_part = host & !mask;
        let on_network = host & mask == own & mask;
        let special = host == 0 || host == u32::MAX || ip[0] >= 224 || (mask != u32::MAX && mask != u32::MAX - 1 && (hosts_part == 0 || hosts_part == !mask));
        if !on_network || special {
            return Err(Unlearnable::NotANeighbour);
        }
        Ok(())
    }
}

impl Neighbours {
    /// [`Neighbours::learn`] for an ARP packet's sender, unless `station` says it is junk:
    /// a packet cannot put a broadcast, zero or foreign-looking address in the table, or
    /// claim this machine's address.
    pub fn learn_from(&mut self, station: &Station, ip: [u8; 4], mac: [u8; 6], now: u64) -> Result<(usize, ArpEntry), Unlearnable> {
        station.check(ip, mac)?;
        Ok(self.learn(ip, mac, now))
    }

    /// The entries held, with their slots.
    pub fn held(&self) -> impl Iterator<Item = (usize, &ArpEntry)> {
        self.slots.iter().enumerate().filter(|(_, entry)| !entry.is_empty())
    }

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

/// The fuzzer's input for arpd's table update (a cargo-fuzz target in `exos/fuzz` and a seeded
/// run in `make test`): a command stream of raw frames, ARP packets with chosen fields, and
/// time passing, applied as arpd applies them (learn from the sender if it is learnable, write
/// the table page, expire). After every command the table must hold no junk: no entry for this
/// machine's address, none with a zero, broadcast, multicast or own hardware address, none
/// off the network, each address once, and the page must say what arpd's bookkeeping says.
pub fn fuzz_input(bytes: &[u8]) {
    use crate::tcpip::fuzz_input::Commands;
    /// The table page of every run, zeroed at its start (a fuzzer makes millions of runs: a page
    /// leaked per run would fill memory); one run at a time holds it.
    static PAGE: [AtomicU64; PAGE_SIZE / 8] = [const { AtomicU64::new(0) }; PAGE_SIZE / 8];
    static HELD: spin::Mutex<()> = spin::Mutex::new(());
    let _held = HELD.lock();
    for word in &PAGE {
        word.store(0, Ordering::Relaxed);
    }
    let station = Station { ip: [10, 0, 2, 15], prefix: 24, mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56] };
    let table = ArpTable::over(&PAGE, None);
    let mut neighbours = Neighbours::default();
    let mut commands = Commands(bytes);
    let mut now = 0u64;
    while let Some(op) = commands.byte() {
        let frame = match op % 3 {
            0 => {
                let len = usize::from(commands.byte().unwrap_or(0));
                commands.take(len)
            }
            1 => {
                let fields = commands.take(10);
                let (ip, mac) = (fields.get(..4).map_or([0; 4], |f| f.try_into().expect("4")), fields.get(4..10).map_or([0; 6], |f| f.try_into().expect("6")));
                // Senders near the station (its network, itself, its broadcast) are likelier.
                let ip = if op & 0x80 != 0 { [10, 0, 2, ip[3]] } else { ip };
                let mac = if op & 0x40 != 0 { station.mac } else { mac };
                crate::echo::arp_request(mac, ip, station.ip)
            }
            _ => {
                now += u64::from(commands.byte().unwrap_or(0)) * 100;
                for slot in neighbours.expire(now, 300 * 100) {
                    table.store(slot, ArpEntry::default());
                }
                alloc::vec::Vec::new()
            }
        };
        if let Some((ip, mac)) = crate::echo::arp_sender(&frame)
            && let Ok((slot, entry)) = neighbours.learn_from(&station, ip, mac, now)
        {
            table.store(slot, entry);
        }
        let mut seen = alloc::vec::Vec::new();
        for (_, entry) in neighbours.held() {
            assert_eq!(station.check(entry.ip, entry.mac), Ok(()), "junk in the table: {entry:?}");
            assert!(!seen.contains(&entry.ip), "{:?} twice", entry.ip);
            seen.push(entry.ip);
            assert_eq!(table.lookup(entry.ip), Some(entry.mac), "the page disagrees about {:?}", entry.ip);
        }
        let mut on_page = alloc::vec::Vec::new();
        table.entries(&mut on_page);
        assert_eq!(on_page.len(), seen.len(), "the page holds entries arpd forgot");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_that_would_poison_the_table_are_refused() {
        let station = Station { ip: [10, 0, 2, 15], prefix: 24, mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56] };
        let host = [0x02, 0, 0, 0, 0, 9];
        assert_eq!(station.check([10, 0, 2, 2], host), Ok(()));
        assert_eq!(station.check([10, 0, 2, 15], host), Err(Unlearnable::OurAddress), "a reply claiming our address");
        for junk in [[0; 6], [0xff; 6], [0x01, 0, 0x5e, 0, 0, 1], station.mac] {
            assert_eq!(station.check([10, 0, 2, 2], junk), Err(Unlearnable::JunkHardwareAddress), "{junk:?}");
        }
        for far in [[0, 0, 0, 0], [10, 0, 2, 0], [10, 0, 2, 255], [255; 4], [224, 0, 0, 1], [10, 0, 3, 2], [192, 168, 1, 1]] {
            assert_eq!(station.check(far, host), Err(Unlearnable::NotANeighbour), "{far:?}");
        }
        let mut neighbours = Neighbours::default();
        neighbours.learn_from(&station, [10, 0, 2, 2], host, 1).unwrap();
        assert_eq!(neighbours.learn_from(&station, [10, 0, 2, 2], [0xff; 6], 2), Err(Unlearnable::JunkHardwareAddress));
        assert_eq!(neighbours.held().map(|(_, e)| e.mac).collect::<Vec<_>>(), [host], "the known host keeps its address");
        fuzz_input(&[1, 10, 0, 2, 2, 2, 0, 0, 0, 0, 9, 0x81, 0, 0, 0, 15, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 255]);
    }

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
