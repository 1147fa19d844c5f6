//! The screen: the root's test, made by the caller before it calls the compiled code.
//!
//! A frame that no filter can match still costs the call into the compiled code and its
//! return, which is most of what classifying it costs (an IPv6 frame on a host whose filters
//! all name IPv4 or ARP: 27 instructions, the call's and the generation check's among them).
//! When the root's test is one the caller can make in a few instructions, the set keeps it
//! here, and [`crate::exec::classify`] answers "nothing matched" for the frames it rejects
//! without calling the code.
//!
//! The screen stands for a root that owns and copies nothing and has exactly one dispatch
//! group, compiled inline (so its values are part of the code's structure and change only
//! with the structure generation), that tests one field of the frame whose mask keeps the
//! field's last byte whole: the Ethernet type in every filter set the system installs. It
//! tests that last byte: a frame too short to hold the field is rejected (the group misses
//! it), and so is one whose byte's low six bits are those of no value the group dispatches
//! on. That is a load, a bounds check and a bit test, 7 instructions: a matched frame pays
//! them too, so the test is kept this small. Any other root gets [`Screen::NONE`]. The test
//! never rejects a frame the root would pass on; some it passes the code then rejects (for
//! the Ethernet type: a VLAN tag, 0x8100, shares IPv4's bits; IPv6, ARP, LLDP do not).

use crate::filter::Base;
use crate::trie::{ROOT, Trie};

/// The root's test (see the module docs). [`Screen::NONE`] rejects nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Screen {
    /// Bit `b` set: a frame whose tested byte has low six bits `b` is rejected.
    rejected: u64,
    /// Offset of the tested byte: the last byte of the root's field.
    at: u16,
    /// Whether a frame too short to hold the tested byte is rejected.
    short_rejected: bool,
}

impl Screen {
    /// The screen that rejects nothing.
    pub const NONE: Screen = Screen { rejected: 0, at: 0, short_rejected: false };

    /// The screen for `trie`'s root as it is ([`Screen::NONE`] unless the root has the shape
    /// the module docs describe).
    pub(crate) fn of(trie: &Trie) -> Screen {
        let info = &trie.info[ROOT as usize];
        let groups = &trie.nodes[ROOT as usize].groups;
        if info.depth != 0 || info.copies != 0 || groups.len() != 1 || !trie.inlined(groups[0]) {
            return Screen::NONE;
        }
        let group = &trie.groups[groups[0] as usize];
        let [key] = group.atoms.as_slice() else { return Screen::NONE };
        let Ok(at) = u16::try_from(key.end() - 1) else { return Screen::NONE };
        if key.base != Base::Frame || key.mask & 0xff != 0xff {
            return Screen::NONE;
        }
        let passed = group.table.iter().fold(0u64, |bits, (values, _)| bits | 1 << (values[0] & 63));
        Screen { rejected: !passed, at, short_rejected: true }
    }

    /// Whether `frame` matches no filter of the set this screen was made for, as far as the
    /// root's test tells. `false` says nothing: the code decides.
    #[inline]
    pub fn rejects(&self, frame: &[u8]) -> bool {
        match frame.get(usize::from(self.at)) {
            Some(byte) => self.rejected >> (byte & 63) & 1 != 0,
            None => self.short_rejected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dpf, Filter, FilterClass, InsertOptions, Width};

    const HOST: [u8; 4] = [10, 0, 2, 15];
    const FALLBACK: InsertOptions = InsertOptions { class: FilterClass::Fallback, privileged: true };

    fn ethernet(ethertype: u16, len: usize) -> alloc::vec::Vec<u8> {
        let mut frame = alloc::vec![0u8; len];
        if len >= 14 {
            frame[12..14].copy_from_slice(&ethertype.to_be_bytes());
        }
        frame
    }

    #[test]
    fn an_empty_set_and_a_root_owner_screen_nothing() {
        let mut dpf = Dpf::new();
        assert_eq!(*dpf.screen(), Screen::NONE);
        assert!(!dpf.screen().rejects(&[]));
        // A filter with no atom owns every frame: nothing may be screened out.
        dpf.insert_with(&Filter::everything(), FALLBACK, 1, 0).unwrap();
        dpf.insert(&Filter::arp(), 1, 0).unwrap();
        assert_eq!(*dpf.screen(), Screen::NONE);
    }

    #[test]
    fn rejects_only_frames_the_root_passes_on_to_no_filter() {
        let mut dpf = Dpf::new();
        dpf.insert(&Filter::arp(), 1, 0).unwrap();
        dpf.insert_with(&Filter::ipv4(), FALLBACK, 1, 0).unwrap();
        dpf.insert(&Filter::tcp_listen(HOST, 80), 1, 0).unwrap();
        let screen = *dpf.screen();
        assert_ne!(screen, Screen::NONE);
        for frame in [ethernet(0x86dd, 60), ethernet(0x88cc, 60), ethernet(0x0801, 60), ethernet(0x0800, 13), vec_of(0)] {
            assert!(screen.rejects(&frame), "{frame:02x?}");
            assert_eq!(dpf.classify_interpreted(&frame).owner, None);
        }
        // A VLAN tag (0x8100) shares IPv4's bits: the code rejects it.
        for frame in [ethernet(0x0800, 60), ethernet(0x0806, 42), ethernet(0x0800, 14), ethernet(0x8100, 60)] {
            assert!(!screen.rejects(&frame), "{frame:02x?}");
        }
        // The first connection makes the listen's connection group; later ones change no
        // structure, and the screen stays.
        dpf.insert(&Filter::tcp_connection(HOST, 80, [192, 0, 2, 1], 4000), 1, 0).unwrap();
        assert_eq!(*dpf.screen(), screen);
        let generation = dpf.generation();
        dpf.insert(&Filter::tcp_connection(HOST, 80, [192, 0, 2, 2], 4000), 1, 0).unwrap();
        assert_eq!(dpf.generation(), generation);
        assert_eq!(*dpf.screen(), screen);
        // IPv6 gets a filter: the root's group changes, and so does the screen.
        let ipv6 = Filter::new(&[crate::Atom::new(Base::Frame, 12, Width::W2, 0x86dd)]).unwrap();
        dpf.insert(&ipv6, 1, 0).unwrap();
        assert!(!dpf.screen().rejects(&ethernet(0x86dd, 60)));
        assert!(dpf.screen().rejects(&ethernet(0x88cc, 60)));
    }

    fn vec_of(len: usize) -> alloc::vec::Vec<u8> {
        alloc::vec![0; len]
    }
}
