//! The ARP table page: `arpd` writes it, every program reads it (read-only) to find the MAC
//! of a neighbour. Layout: a version word at offset 0, odd while arpd is writing (a sequence
//! lock: a reader copies what it needs and retries if the version moved or was odd), then
//! [`ARP_ENTRIES`] entries of [`ARP_ENTRY_LEN`] bytes from [`ARP_ENTRIES_AT`].
//!
//! The request page: programs that miss an address ask arpd to find it. Layout: a counter
//! word at offset 0 that a program bumps after writing a request, then [`ARP_REQUEST_SLOTS`]
//! `u64` slots from offset 8, each 0 (free) or an IPv4 address (big-endian in the low 32
//! bits, plus [`ARP_REQUEST_PENDING`]) that arpd clears once it has sent the request.

/// Where the entries start in the page.
pub const ARP_ENTRIES_AT: usize = 16;
/// Size of one entry.
pub const ARP_ENTRY_LEN: usize = 24;
/// Entries in the page.
pub const ARP_ENTRIES: usize = (crate::layout::PAGE_SIZE - ARP_ENTRIES_AT) / ARP_ENTRY_LEN;

/// Request slots in the request page.
pub const ARP_REQUEST_SLOTS: usize = crate::layout::PAGE_SIZE / 8 - 1;
/// Marks a request slot in use (so that 0.0.0.0 is never confused with a free slot).
pub const ARP_REQUEST_PENDING: u64 = 1 << 32;

/// A request slot's value for `ip`.
pub fn request_word(ip: [u8; 4]) -> u64 {
    ARP_REQUEST_PENDING | u64::from(u32::from_be_bytes(ip))
}

/// The address a request slot asks for, if it holds a request.
pub fn requested_ip(word: u64) -> Option<[u8; 4]> {
    (word & ARP_REQUEST_PENDING != 0).then(|| (word as u32).to_be_bytes())
}

/// One neighbour: its IPv4 address, its MAC, and when arpd last heard from it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArpEntry {
    /// The address (0.0.0.0: an empty slot).
    pub ip: [u8; 4],
    /// Its hardware address.
    pub mac: [u8; 6],
    /// The tick (`xok_abi::layout::TICKS_VA`) at which arpd last learned it.
    pub learned_tick: u64,
}

impl ArpEntry {
    /// Whether the slot is empty.
    pub fn is_empty(&self) -> bool {
        self.ip == [0; 4]
    }

    /// The entry as it lies in the page: ip, mac, 6 reserved bytes, tick (little-endian).
    pub fn to_bytes(self) -> [u8; ARP_ENTRY_LEN] {
        let mut bytes = [0u8; ARP_ENTRY_LEN];
        bytes[0..4].copy_from_slice(&self.ip);
        bytes[4..10].copy_from_slice(&self.mac);
        bytes[16..24].copy_from_slice(&self.learned_tick.to_le_bytes());
        bytes
    }

    /// Reads an entry from the page's bytes.
    pub fn from_bytes(bytes: [u8; ARP_ENTRY_LEN]) -> ArpEntry {
        let (mut ip, mut mac, mut tick) = ([0u8; 4], [0u8; 6], [0u8; 8]);
        ip.copy_from_slice(&bytes[0..4]);
        mac.copy_from_slice(&bytes[4..10]);
        tick.copy_from_slice(&bytes[16..24]);
        ArpEntry { ip, mac, learned_tick: u64::from_le_bytes(tick) }
    }
}

/// Where entry `index` lies in the page.
pub fn entry_offset(index: usize) -> Option<usize> {
    (index < ARP_ENTRIES).then(|| ARP_ENTRIES_AT + index * ARP_ENTRY_LEN)
}

/// Finds `ip` among the entries of a copy of the page (`page`: at least a page of bytes).
pub fn lookup(page: &[u8], ip: [u8; 4]) -> Option<[u8; 6]> {
    (0..ARP_ENTRIES).find_map(|index| {
        let at = entry_offset(index)?;
        let bytes: [u8; ARP_ENTRY_LEN] = page.get(at..at + ARP_ENTRY_LEN)?.try_into().ok()?;
        let entry = ArpEntry::from_bytes(bytes);
        (!entry.is_empty() && entry.ip == ip).then_some(entry.mac)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        assert_eq!(requested_ip(request_word([10, 0, 2, 2])), Some([10, 0, 2, 2]));
        assert_eq!(requested_ip(request_word([0, 0, 0, 0])), Some([0, 0, 0, 0]));
        assert_eq!(requested_ip(0), None);
        assert_eq!(8 + ARP_REQUEST_SLOTS * 8, crate::layout::PAGE_SIZE);
    }

    #[test]
    fn entries_fit_and_round_trip() {
        assert!(entry_offset(ARP_ENTRIES - 1).unwrap() + ARP_ENTRY_LEN <= crate::layout::PAGE_SIZE);
        assert_eq!(entry_offset(ARP_ENTRIES), None);
        let entry = ArpEntry { ip: [10, 0, 2, 2], mac: [0x52, 0x55, 10, 0, 2, 2], learned_tick: 1234 };
        assert_eq!(ArpEntry::from_bytes(entry.to_bytes()), entry);
        let mut page = [0u8; crate::layout::PAGE_SIZE];
        let at = entry_offset(7).unwrap();
        page[at..at + ARP_ENTRY_LEN].copy_from_slice(&entry.to_bytes());
        assert_eq!(lookup(&page, [10, 0, 2, 2]), Some(entry.mac));
        assert_eq!(lookup(&page, [10, 0, 2, 3]), None);
        assert_eq!(lookup(&page[..100], [10, 0, 2, 2]), None, "a short copy finds nothing, and does not panic");
    }
}
