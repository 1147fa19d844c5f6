//! Packet rings: buffers in an environment's own pages that the kernel fills with received
//! frames (DESIGN.md §4, "buffering").
//!
//! Each entry starts with a [`RingEntryHeader`]. The kernel fills entry `next` only if its owner
//! word is 0; it writes the frame (truncated to the entry), then the header, and the original
//! length into the owner word last. Otherwise the frame is dropped and the ring's drop counter
//! goes up. The ring's pages are pinned while it is registered.
//!
//! A ring may have a notification word: a `u64` in the owner's memory that the kernel
//! increments after every stored frame. A program that also counts the frames it has consumed
//! sleeps on the predicate "stored != consumed" -- one word-against-word term, installed once,
//! whatever the ring's size.

use crate::ownership::{Page, PageOwnership};
use crate::vm::{Access, AddressSpace, PhysMem};
use alloc::vec::Vec;
use xok_abi::layout::{PAGE_SIZE, is_user_range};
use xok_abi::net::{RING_HEADER_LEN, RING_MAX_BYTES, RING_MAX_ENTRIES, RING_MAX_ENTRY, RING_MIN_ENTRY, RingEntryHeader};
use xok_abi::{EnvId, Error};

/// What happened to a frame offered to a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Stored in an entry.
    Stored,
    /// The next entry was not free: dropped and counted.
    Dropped,
}

/// Where and how big a ring is, as `pktring_setring` gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingGeometry {
    /// User address of the first entry (8-aligned).
    pub va: usize,
    /// Number of entries.
    pub entry_count: usize,
    /// Bytes per entry (a multiple of 8).
    pub entry_size: usize,
    /// User address of the notification word (8-aligned), or 0 for none.
    pub counter: usize,
}

/// A registered ring.
#[derive(Debug)]
pub struct PacketRing {
    /// The environment that registered it.
    pub owner: EnvId,
    /// The physical pages behind the ring's bytes, in order (each pinned once).
    pages: Vec<Page>,
    /// Offset of the ring's first byte in `pages[0]`.
    start: usize,
    entry_size: usize,
    entry_count: usize,
    next: usize,
    /// Frames dropped because the next entry was not free.
    pub drops: u64,
    /// Frames stored.
    pub stored: u64,
    /// The notification word: its page (pinned) and offset.
    counter: Option<(Page, usize)>,
}

impl PacketRing {
    /// Checks the ring's geometry and the caller's mappings, pins the pages, and returns the
    /// ring. Every byte, and the notification word if any, must be mapped writable by `owner`.
    pub fn register(
        owner: EnvId,
        space: &AddressSpace,
        pages: &mut PageOwnership,
        mem: &impl PhysMem,
        geometry: RingGeometry,
    ) -> Result<PacketRing, Error> {
        let RingGeometry { va, entry_count, entry_size, counter } = geometry;
        if !va.is_multiple_of(8) || !entry_size.is_multiple_of(8) || !counter.is_multiple_of(8) {
            return Err(Error::BadAlignment);
        }
        if !(1..=RING_MAX_ENTRIES).contains(&entry_count) || !(RING_MIN_ENTRY..=RING_MAX_ENTRY).contains(&entry_size) {
            return Err(Error::BadLength);
        }
        let len = entry_count * entry_size;
        if len > RING_MAX_BYTES {
            return Err(Error::BadLength);
        }
        if !is_user_range(va, len) {
            return Err(Error::BadAddress);
        }
        let first = va & !(PAGE_SIZE - 1);
        let mut backing = Vec::new();
        backing.try_reserve_exact((va + len).div_ceil(PAGE_SIZE) - first / PAGE_SIZE).map_err(|_| Error::NoMemory)?;
        for page_va in (first..va + len).step_by(PAGE_SIZE) {
            backing.push(space.translate(mem, page_va, Access::Write).ok_or(Error::BadAddress)?);
        }
        let counter = match counter {
            0 => None,
            va => Some((space.translate(mem, va, Access::Write).ok_or(Error::BadAddress)?, va % PAGE_SIZE)),
        };
        for &page in backing.iter().chain(counter.iter().map(|(page, _)| page)) {
            pages.pin(page).expect("a page mapped by an environment is in use");
        }
        Ok(PacketRing { owner, pages: backing, start: va - first, entry_size, entry_count, next: 0, drops: 0, stored: 0, counter })
    }

    /// The kernel heap bytes charged for the ring: its record and page list.
    pub fn heap_charge(&self) -> usize {
        crate::account::cost::RING + (self.pages.len() + usize::from(self.counter.is_some())) * crate::account::cost::RING_PAGE
    }

    /// Unpins the ring's pages (the ring is being deleted or replaced).
    pub fn release(self, pages: &mut PageOwnership) {
        for page in self.pages.into_iter().chain(self.counter.map(|(page, _)| page)) {
            pages.unpin(page);
        }
    }

    /// Writes `bytes` at byte `offset` of the ring, across pages.
    fn write(&self, mem: &mut impl PhysMem, offset: usize, bytes: &[u8]) {
        let mut done = 0;
        while done < bytes.len() {
            let at = self.start + offset + done;
            let chunk = (PAGE_SIZE - at % PAGE_SIZE).min(bytes.len() - done);
            mem.write(self.pages[at / PAGE_SIZE], at % PAGE_SIZE, &bytes[done..done + chunk]);
            done += chunk;
        }
    }

    fn read_owner(&self, mem: &impl PhysMem, offset: usize) -> u32 {
        let at = self.start + offset + RingEntryHeader::OWNER.start;
        let mut word = [0u8; 4];
        // Entries are 8-aligned, so the owner word never straddles a page.
        mem.read(self.pages[at / PAGE_SIZE], at % PAGE_SIZE, &mut word);
        u32::from_le_bytes(word)
    }

    /// Offers a received frame to the ring.
    pub fn deliver(&mut self, mem: &mut impl PhysMem, frame: &[u8], nic: u32, timestamp_ns: u64) -> Delivery {
        let offset = self.next * self.entry_size;
        if self.read_owner(mem, offset) != 0 || frame.is_empty() {
            self.drops += 1;
            return Delivery::Dropped;
        }
        let captured = frame.len().min(self.entry_size - RING_HEADER_LEN);
        self.write(mem, offset + RING_HEADER_LEN, &frame[..captured]);
        let original = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let header = RingEntryHeader { owner: original, captured: captured as u32, nic, reserved: 0, timestamp_ns };
        let bytes = header.to_bytes();
        let owner = RingEntryHeader::OWNER;
        self.write(mem, offset + owner.end, &bytes[owner.end..]);
        // The owner word last: it hands the entry to the program.
        self.write(mem, offset + owner.start, &bytes[owner]);
        self.next = (self.next + 1) % self.entry_count;
        self.stored += 1;
        if let Some((page, offset)) = self.counter {
            let mut word = [0u8; 8];
            mem.read(page, offset, &mut word);
            mem.write(page, offset, &u64::from_le_bytes(word).wrapping_add(1).to_le_bytes());
        }
        Delivery::Stored
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::{KernelMappings, fake::FakeMem};
    use xok_abi::PteFlags;
    use xok_abi::layout::USER_BASE;

    const A: EnvId = EnvId(1);
    const BASE: usize = USER_BASE + 0x10_0000;

    struct Setup {
        pages: PageOwnership,
        mem: FakeMem,
        space: AddressSpace,
    }

    fn setup(mapped_pages: usize, writable: bool) -> Setup {
        let mut pages = PageOwnership::new(2048);
        for n in 64..2048 {
            pages.add_free(Page(n));
        }
        let mut mem = FakeMem::default();
        let kernel = KernelMappings { low_gigabyte: 0, upper_half: [0; 256] };
        let mut space = AddressSpace::new(&mut pages, &mut mem, &kernel).unwrap();
        let flags = if writable { PteFlags::WRITE } else { PteFlags::empty() };
        for i in 0..mapped_pages {
            let page = pages.alloc(A, 1000).unwrap();
            space.insert_pte(&mut pages, &mut mem, A, BASE + i * PAGE_SIZE, page, flags, usize::MAX).unwrap();
        }
        Setup { pages, mem, space }
    }

    fn geometry(va: usize, entry_count: usize, entry_size: usize) -> RingGeometry {
        RingGeometry { va, entry_count, entry_size, counter: 0 }
    }

    fn read(s: &Setup, va: usize, len: usize) -> Vec<u8> {
        let mut out = alloc::vec![0; len];
        s.space.copy_from_user(&s.mem, va, &mut out).unwrap();
        out
    }

    fn owner(s: &Setup, va: usize) -> u32 {
        u32::from_le_bytes(read(s, va, 4).try_into().unwrap())
    }

    #[test]
    fn frames_fill_entries_in_order_and_the_owner_word_comes_last() {
        let mut s = setup(2, true);
        let mut ring = PacketRing::register(A, &s.space, &mut s.pages, &s.mem, geometry(BASE, 4, 128)).unwrap();
        assert_eq!(ring.deliver(&mut s.mem, &[0xab; 60], 1, 777), Delivery::Stored);
        assert_eq!(owner(&s, BASE), 60);
        let header = RingEntryHeader::from_bytes(read(&s, BASE, RING_HEADER_LEN).try_into().unwrap());
        assert_eq!(header, RingEntryHeader { owner: 60, captured: 60, nic: 1, reserved: 0, timestamp_ns: 777 });
        assert_eq!(read(&s, BASE + RING_HEADER_LEN, 60), [0xab; 60]);
        assert_eq!(ring.deliver(&mut s.mem, &[1; 10], 0, 0), Delivery::Stored);
        assert_eq!(owner(&s, BASE + 128), 10);
    }

    #[test]
    fn long_frames_are_truncated_with_the_original_length_recorded() {
        let mut s = setup(1, true);
        let mut ring = PacketRing::register(A, &s.space, &mut s.pages, &s.mem, geometry(BASE, 2, 64)).unwrap();
        let frame: Vec<u8> = (0..200).map(|i| i as u8).collect();
        ring.deliver(&mut s.mem, &frame, 0, 0);
        assert_eq!(owner(&s, BASE), 200);
        let header = RingEntryHeader::from_bytes(read(&s, BASE, RING_HEADER_LEN).try_into().unwrap());
        assert_eq!((header.owner, header.captured), (200, 40));
        assert_eq!(read(&s, BASE + RING_HEADER_LEN, 40), &frame[..40]);
        // The second entry is untouched by the truncated first frame.
        assert_eq!(owner(&s, BASE + 64), 0);
    }

    #[test]
    fn a_busy_entry_drops_the_frame_and_counts_it() {
        let mut s = setup(1, true);
        let mut ring = PacketRing::register(A, &s.space, &mut s.pages, &s.mem, geometry(BASE, 2, 64)).unwrap();
        assert_eq!(ring.deliver(&mut s.mem, &[1; 20], 0, 0), Delivery::Stored);
        assert_eq!(ring.deliver(&mut s.mem, &[2; 20], 0, 0), Delivery::Stored);
        assert_eq!(ring.deliver(&mut s.mem, &[3; 20], 0, 0), Delivery::Dropped);
        assert_eq!(ring.drops, 1);
        // The program hands entry 0 back; the next frame goes there.
        s.space.copy_to_user(&mut s.mem, BASE, &0u32.to_le_bytes()).unwrap();
        assert_eq!(ring.deliver(&mut s.mem, &[4; 20], 0, 0), Delivery::Stored);
        assert_eq!(read(&s, BASE + RING_HEADER_LEN, 1), [4]);
    }

    #[test]
    fn the_notification_word_counts_stored_frames() {
        let mut s = setup(2, true);
        let counter = BASE + PAGE_SIZE + 8;
        let free = s.pages.free_count();
        let geometry = RingGeometry { counter, ..geometry(BASE, 2, 64) };
        let mut ring = PacketRing::register(A, &s.space, &mut s.pages, &s.mem, geometry).unwrap();
        ring.deliver(&mut s.mem, &[1; 20], 0, 0);
        ring.deliver(&mut s.mem, &[2; 20], 0, 0);
        ring.deliver(&mut s.mem, &[3; 20], 0, 0); // dropped: not counted
        assert_eq!(read(&s, counter, 8), 2u64.to_le_bytes());
        let unaligned = RingGeometry { counter: counter + 4, ..geometry };
        assert_eq!(PacketRing::register(A, &s.space, &mut s.pages, &s.mem, unaligned).unwrap_err(), Error::BadAlignment);
        let unmapped = RingGeometry { counter: BASE + 5 * PAGE_SIZE, ..geometry };
        assert_eq!(PacketRing::register(A, &s.space, &mut s.pages, &s.mem, unmapped).unwrap_err(), Error::BadAddress);
        ring.release(&mut s.pages);
        assert_eq!(s.pages.free_count(), free);
        for n in 0..2 {
            let page = s.space.translate(&s.mem, BASE + n * PAGE_SIZE, Access::Read).unwrap();
            s.space.remove_pte(&mut s.pages, &mut s.mem, A, BASE + n * PAGE_SIZE).unwrap();
            s.pages.free(A, page).unwrap();
        }
    }

    #[test]
    fn entries_may_straddle_pages() {
        let mut s = setup(3, true);
        let va = BASE + PAGE_SIZE - 40;
        let mut ring = PacketRing::register(A, &s.space, &mut s.pages, &s.mem, geometry(va, 3, 1600)).unwrap();
        let frame: Vec<u8> = (0..1514).map(|i| (i * 7) as u8).collect();
        for _ in 0..3 {
            assert_eq!(ring.deliver(&mut s.mem, &frame, 0, 0), Delivery::Stored);
        }
        assert_eq!(read(&s, va + 1600 + RING_HEADER_LEN, 1514), frame);
    }

    #[test]
    fn registration_checks_geometry_and_rights_and_pins() {
        let mut s = setup(1, true);
        let free = s.pages.free_count();
        let cases = [
            (BASE + 4, 2, 64, Error::BadAlignment),
            (BASE, 2, 60, Error::BadAlignment),
            (BASE, 0, 64, Error::BadLength),
            (BASE, RING_MAX_ENTRIES + 1, 64, Error::BadLength),
            (BASE, 2, 16, Error::BadLength),
            (BASE, 2, RING_MAX_ENTRY + 8, Error::BadLength),
            (BASE, RING_MAX_ENTRIES, RING_MAX_ENTRY, Error::BadLength), // over RING_MAX_BYTES
            (BASE, 2, 4096, Error::BadAddress), // the second page is not mapped
            (0x1000, 1, 64, Error::BadAddress),
            (usize::MAX & !7, 4, 64, Error::BadAddress),
        ];
        for (va, count, size, error) in cases {
            assert_eq!(PacketRing::register(A, &s.space, &mut s.pages, &s.mem, geometry(va, count, size)).unwrap_err(), error);
        }
        let ring = PacketRing::register(A, &s.space, &mut s.pages, &s.mem, geometry(BASE, 2, 64)).unwrap();
        let page = s.space.translate(&s.mem, BASE, Access::Read).unwrap();
        s.space.remove_pte(&mut s.pages, &mut s.mem, A, BASE).unwrap();
        assert_eq!(s.pages.free(A, page), Err(Error::PagePinned), "the ring still uses it");
        ring.release(&mut s.pages);
        s.pages.free(A, page).unwrap();
        assert_eq!(s.pages.free_count(), free + 1);

        let mut read_only = setup(1, false);
        let result = PacketRing::register(A, &read_only.space, &mut read_only.pages, &read_only.mem, geometry(BASE, 2, 64));
        assert_eq!(result.unwrap_err(), Error::BadAddress);
    }
}
