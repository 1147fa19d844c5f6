//! The network part of the kernel interface: NIC information, packet-ring entries, gather
//! segments for `net_xmit`, and the byte encoding of DPF filters.

/// What `nic_info` reports, packed into one word: the MAC in bits 0..48 (first byte lowest),
/// link up in bit 48, the NIC model in bits 56..64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NicInfo {
    /// The MAC address.
    pub mac: [u8; 6],
    /// Whether the link is up.
    pub link_up: bool,
    /// Which model the NIC is.
    pub model: NicModel,
}

/// The NIC models xok drives.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NicModel {
    /// Intel 82540EM (QEMU `e1000`).
    E1000 = 1,
    /// DEC 21143 (QEMU `tulip`).
    Tulip = 2,
}

impl NicInfo {
    /// Packs into the syscall result word.
    pub fn to_word(self) -> usize {
        let mut word = 0u64;
        for (i, byte) in self.mac.iter().enumerate() {
            word |= u64::from(*byte) << (8 * i);
        }
        word |= u64::from(self.link_up) << 48;
        word |= (self.model as u64) << 56;
        word as usize
    }

    /// Unpacks a syscall result word.
    pub fn from_word(word: usize) -> Option<Self> {
        let word = word as u64;
        let mut mac = [0u8; 6];
        for (i, byte) in mac.iter_mut().enumerate() {
            *byte = (word >> (8 * i)) as u8;
        }
        let model = match (word >> 56) as u8 {
            1 => NicModel::E1000,
            2 => NicModel::Tulip,
            _ => return None,
        };
        Some(NicInfo { mac, link_up: word & (1 << 48) != 0, model })
    }
}

/// The header at the start of every packet-ring entry; the frame bytes follow it.
///
/// Protocol: `owner == 0` means the kernel may fill the entry. The kernel writes the frame, then
/// the other header fields, and last `owner` = the frame's original length (never 0). The
/// program reads the entry and hands it back by writing 0 to `owner`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingEntryHeader {
    /// 0: free for the kernel; otherwise the received frame's original length.
    pub owner: u32,
    /// Bytes of the frame stored after the header (less than `owner` if truncated).
    pub captured: u32,
    /// Which NIC received the frame.
    pub nic: u32,
    /// Always 0.
    pub reserved: u32,
    /// When the kernel received the frame, in nanoseconds since boot.
    pub timestamp_ns: u64,
}

/// Size of [`RingEntryHeader`].
pub const RING_HEADER_LEN: usize = 24;
const _: () = assert!(core::mem::size_of::<RingEntryHeader>() == RING_HEADER_LEN);

impl RingEntryHeader {
    /// Where `owner` lies in an entry: the word whose write hands the entry over (written
    /// last by the kernel, first read by the program).
    pub const OWNER: core::ops::Range<usize> = 0..4;

    /// The header as it lies in an entry (little-endian, `repr(C)` order).
    pub fn to_bytes(self) -> [u8; RING_HEADER_LEN] {
        let mut bytes = [0u8; RING_HEADER_LEN];
        bytes[Self::OWNER].copy_from_slice(&self.owner.to_le_bytes());
        bytes[4..8].copy_from_slice(&self.captured.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.nic.to_le_bytes());
        bytes[12..16].copy_from_slice(&self.reserved.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.timestamp_ns.to_le_bytes());
        bytes
    }

    /// Reads a header from the bytes of an entry.
    pub fn from_bytes(bytes: [u8; RING_HEADER_LEN]) -> RingEntryHeader {
        let word = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let mut timestamp = [0u8; 8];
        timestamp.copy_from_slice(&bytes[16..24]);
        RingEntryHeader { owner: word(0), captured: word(4), nic: word(8), reserved: word(12), timestamp_ns: u64::from_le_bytes(timestamp) }
    }
}

const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(RingEntryHeader, owner) == RingEntryHeader::OWNER.start);
    assert!(offset_of!(RingEntryHeader, captured) == 4 && offset_of!(RingEntryHeader, nic) == 8);
    assert!(offset_of!(RingEntryHeader, reserved) == 12 && offset_of!(RingEntryHeader, timestamp_ns) == 16);
};

/// Most entries in one ring.
pub const RING_MAX_ENTRIES: usize = 4096;
/// Smallest entry (a header and a minimal Ethernet header).
pub const RING_MIN_ENTRY: usize = RING_HEADER_LEN + 14;
/// Largest entry.
pub const RING_MAX_ENTRY: usize = 16384;
/// Most bytes one ring may span (the kernel keeps a page list per ring).
pub const RING_MAX_BYTES: usize = 4 << 20;
/// Most rings one environment may hold.
pub const RINGS_PER_ENV: usize = 16;

/// One region of a frame to send.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GatherSegment {
    /// User virtual address of the bytes.
    pub addr: u64,
    /// Number of bytes.
    pub len: u64,
}

/// Size of [`GatherSegment`].
pub const GATHER_SEGMENT_LEN: usize = 16;
const _: () = assert!(core::mem::size_of::<GatherSegment>() == GATHER_SEGMENT_LEN);
const _: () = assert!(core::mem::offset_of!(GatherSegment, addr) == 0 && core::mem::offset_of!(GatherSegment, len) == 8);

impl GatherSegment {
    /// Reads a segment from the bytes a program passed (little-endian, `repr(C)` order).
    pub fn from_bytes(bytes: [u8; GATHER_SEGMENT_LEN]) -> GatherSegment {
        let (addr, len) = bytes.split_at(8);
        let word = |half: &[u8]| {
            let mut word = [0u8; 8];
            word.copy_from_slice(half);
            u64::from_le_bytes(word)
        };
        GatherSegment { addr: word(addr), len: word(len) }
    }

    /// The segment as a program passes it.
    pub fn to_bytes(self) -> [u8; GATHER_SEGMENT_LEN] {
        let mut bytes = [0u8; GATHER_SEGMENT_LEN];
        bytes[..8].copy_from_slice(&self.addr.to_le_bytes());
        bytes[8..].copy_from_slice(&self.len.to_le_bytes());
        bytes
    }
}
/// Most segments in one frame.
pub const XMIT_MAX_SEGMENTS: usize = 8;
/// Longest frame `net_xmit` sends (Ethernet without FCS).
pub const XMIT_MAX_FRAME: usize = 1514;
/// Shortest frame `net_xmit` sends (an Ethernet header).
pub const XMIT_MIN_FRAME: usize = 14;

/// `net_xmit` flag: send the frame as it is, without the transmit header check (privileged
/// callers only: a forwarder, a replay tool). Its bytes go straight from the caller's pages.
pub const XMIT_UNCHECKED: usize = 1;

/// `dpf_insert` flag: a copy filter (sees every matching frame beside its owner, may overlap
/// anything; needs privilege).
pub const DPF_COPY: usize = 1;
/// `dpf_insert` flag: a fallback filter (any environment may install strict subsets of it;
/// needs privilege). strayd's catch-all.
pub const DPF_FALLBACK: usize = 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_round_trip() {
        let header = RingEntryHeader { owner: 60, captured: 42, nic: 1, reserved: 0, timestamp_ns: 0x1122_3344_5566_7788 };
        assert_eq!(RingEntryHeader::from_bytes(header.to_bytes()), header);
        assert_eq!(&header.to_bytes()[RingEntryHeader::OWNER], &60u32.to_le_bytes());
        let segment = GatherSegment { addr: 0x7000_1234, len: 1514 };
        assert_eq!(GatherSegment::from_bytes(segment.to_bytes()), segment);
    }

    #[test]
    fn nic_info_packs() {
        let info = NicInfo { mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56], link_up: true, model: NicModel::Tulip };
        assert_eq!(NicInfo::from_word(info.to_word()), Some(info));
        assert_eq!(NicInfo::from_word(0), None);
    }
}
