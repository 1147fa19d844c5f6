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
    fn nic_info_packs() {
        let info = NicInfo { mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56], link_up: true, model: NicModel::Tulip };
        assert_eq!(NicInfo::from_word(info.to_word()), Some(info));
        assert_eq!(NicInfo::from_word(0), None);
    }
}
