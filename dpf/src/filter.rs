//! The filter language: atoms, validated filters, a typed builder and common filters.
//!
//! A filter is a conjunction of atoms. An atom loads 1, 2 or 4 bytes (big-endian) at an
//! offset, masks them and compares with a value. The offset counts either from the start of
//! the frame or from the IPv4 payload, whose start is read from the packet:
//! `14 + 4 * (frame[14] & 0x0f)` (the Ethernet header plus the IHL), so ports match behind IP
//! options. An atom whose bytes lie past the end of the frame does not hold: a short frame
//! simply does not match.

use alloc::vec::Vec;
use core::fmt;

use crate::model;

/// The most atoms one filter may have.
pub const MAX_ATOMS: usize = 16;

/// Where an atom's offset counts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Base {
    /// The first byte of the frame (the Ethernet destination address).
    Frame,
    /// The IPv4 payload: `14 + 4 * (frame[14] & 0x0f)`. An atom with this base needs the
    /// frame to be at least 15 bytes long, so that the IHL can be read.
    Ipv4Payload,
}

/// How many bytes an atom loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Width {
    /// One byte.
    W1,
    /// Two bytes, big-endian.
    W2,
    /// Four bytes, big-endian.
    W4,
}

impl Width {
    /// The number of bytes.
    pub const fn bytes(self) -> u32 {
        match self {
            Width::W1 => 1,
            Width::W2 => 2,
            Width::W4 => 4,
        }
    }

    /// The largest mask that fits this width.
    pub const fn full_mask(self) -> u32 {
        match self {
            Width::W1 => 0xff,
            Width::W2 => 0xffff,
            Width::W4 => 0xffff_ffff,
        }
    }

    /// The width of `n` bytes, if 1, 2 or 4.
    pub const fn from_bytes(n: u32) -> Option<Width> {
        match n {
            1 => Some(Width::W1),
            2 => Some(Width::W2),
            4 => Some(Width::W4),
            _ => None,
        }
    }
}

/// What an atom loads: base, offset, width and mask. Filters that test the same key share
/// trie nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AtomKey {
    /// Where the offset counts from.
    pub base: Base,
    /// Byte offset from the base.
    pub offset: u16,
    /// Bytes loaded.
    pub width: Width,
    /// Mask applied to the loaded big-endian value.
    pub mask: u32,
}

impl AtomKey {
    /// One past the last byte this key reads, relative to its base.
    pub const fn end(&self) -> u64 {
        self.offset as u64 + self.width.bytes() as u64
    }

    /// Loads and masks this key's value from `frame`, or `None` if a byte lies outside it.
    /// `l4` is the start of the IPv4 payload (see [`ipv4_payload_start`]).
    pub fn load(&self, frame: &[u8], l4: Option<u64>) -> Option<u32> {
        let base = match self.base {
            Base::Frame => 0,
            Base::Ipv4Payload => l4?,
        };
        let start = usize::try_from(base + u64::from(self.offset)).ok()?;
        let value = match self.width {
            Width::W1 => u32::from(*frame.get(start)?),
            Width::W2 => u32::from(u16::from_be_bytes(frame.get(start..start.checked_add(2)?)?.try_into().ok()?)),
            Width::W4 => u32::from_be_bytes(frame.get(start..start.checked_add(4)?)?.try_into().ok()?),
        };
        Some(value & self.mask)
    }
}

/// Start of the IPv4 payload of `frame`, or `None` if the frame is too short to hold the IHL.
pub fn ipv4_payload_start(frame: &[u8]) -> Option<u64> {
    frame.get(14).map(|b| 14 + 4 * u64::from(b & 0x0f))
}

/// One test: `(load(key) & key.mask) == value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Atom {
    /// What is loaded.
    pub key: AtomKey,
    /// The value the masked load must equal.
    pub value: u32,
}

impl Atom {
    /// An atom with a full mask.
    pub const fn new(base: Base, offset: u16, width: Width, value: u32) -> Atom {
        Atom { key: AtomKey { base, offset, width, mask: width.full_mask() }, value }
    }

    /// An atom with an explicit mask.
    pub const fn masked(base: Base, offset: u16, width: Width, mask: u32, value: u32) -> Atom {
        Atom { key: AtomKey { base, offset, width, mask }, value }
    }

    /// Whether the atom holds on `frame` (`l4` from [`ipv4_payload_start`]).
    pub fn holds(&self, frame: &[u8], l4: Option<u64>) -> bool {
        self.key.load(frame, l4) == Some(self.value)
    }
}

/// Why a list of atoms is not a filter. `atom` is the index in the list as given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterError {
    /// More than [`MAX_ATOMS`] atoms.
    TooManyAtoms {
        /// How many were given.
        count: usize,
    },
    /// The mask is zero: the atom would test nothing.
    ZeroMask {
        /// Index of the atom.
        atom: usize,
    },
    /// The mask has bits above the width (e.g. `0x1ff` on one byte).
    MaskWiderThanLoad {
        /// Index of the atom.
        atom: usize,
    },
    /// The value has bits outside the mask, so the atom can never hold.
    ValueOutsideMask {
        /// Index of the atom.
        atom: usize,
    },
    /// Two atoms load the same key (base, offset, width, mask).
    DuplicateKey {
        /// Index of the first atom.
        first: usize,
        /// Index of the second atom.
        second: usize,
    },
    /// The atoms contradict each other (the same bits must take different values), so no
    /// frame can match.
    Unsatisfiable,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilterError::TooManyAtoms { count } => {
                write!(f, "{count} atoms; at most {MAX_ATOMS} are allowed")
            }
            FilterError::ZeroMask { atom } => write!(f, "atom {atom}: mask is zero"),
            FilterError::MaskWiderThanLoad { atom } => {
                write!(f, "atom {atom}: mask has bits above the load width")
            }
            FilterError::ValueOutsideMask { atom } => {
                write!(f, "atom {atom}: value has bits outside the mask")
            }
            FilterError::DuplicateKey { first, second } => {
                write!(f, "atoms {first} and {second} test the same field with the same mask")
            }
            FilterError::Unsatisfiable => write!(f, "the atoms contradict each other"),
        }
    }
}

/// A validated filter: a conjunction of atoms, kept sorted by key. The empty filter matches
/// every frame.
#[derive(Clone, Default)]
pub struct Filter {
    atoms: Vec<Atom>,
    /// The atoms as constraints on frame bytes: built once, by validation, for every insert
    /// decides overlaps with it.
    shape: model::Shape,
}

impl PartialEq for Filter {
    fn eq(&self, other: &Filter) -> bool {
        // The shape follows from the atoms.
        self.atoms == other.atoms
    }
}

impl Eq for Filter {}

impl core::hash::Hash for Filter {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.atoms.hash(state);
    }
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Filter").field("atoms", &self.atoms).finish()
    }
}

impl Filter {
    /// Validates `atoms` and builds a filter. Errors name the offending atom by its index.
    pub fn new(atoms: &[Atom]) -> Result<Filter, FilterError> {
        if atoms.len() > MAX_ATOMS {
            return Err(FilterError::TooManyAtoms { count: atoms.len() });
        }
        for (i, atom) in atoms.iter().enumerate() {
            let key = atom.key;
            if key.mask == 0 {
                return Err(FilterError::ZeroMask { atom: i });
            }
            if key.mask & !key.width.full_mask() != 0 {
                return Err(FilterError::MaskWiderThanLoad { atom: i });
            }
            if atom.value & !key.mask != 0 {
                return Err(FilterError::ValueOutsideMask { atom: i });
            }
            if let Some(first) = atoms[..i].iter().position(|a| a.key == key) {
                return Err(FilterError::DuplicateKey { first, second: i });
            }
        }
        let mut sorted: Vec<Atom> = atoms.to_vec();
        sorted.sort_unstable();
        let shape = model::Shape::of(&sorted);
        if !shape.satisfiable() {
            return Err(FilterError::Unsatisfiable);
        }
        Ok(Filter { atoms: sorted, shape })
    }

    /// The filter that matches every frame.
    pub fn everything() -> Filter {
        Filter::default()
    }

    /// The atoms, sorted by key.
    pub fn atoms(&self) -> &[Atom] {
        &self.atoms
    }

    /// The constraints on frame bytes.
    pub(crate) fn shape(&self) -> &model::Shape {
        &self.shape
    }

    /// Whether some atom counts from the IPv4 payload.
    pub fn reads_ihl(&self) -> bool {
        self.atoms.iter().any(|a| a.key.base == Base::Ipv4Payload)
    }

    /// Whether the filter matches `frame`: every atom holds. This is the definition that the
    /// trie, the interpreter and the compiled code implement.
    pub fn matches(&self, frame: &[u8]) -> bool {
        let l4 = ipv4_payload_start(frame);
        self.atoms.iter().all(|a| a.holds(frame, l4))
    }

    /// Every ARP frame.
    pub fn arp() -> Filter {
        FilterBuilder::new().ethertype(ETHERTYPE_ARP).build_known()
    }

    /// ARP frames whose target protocol address is `ip` (requests for `ip`, replies to it).
    pub fn arp_for(ip: [u8; 4]) -> Filter {
        FilterBuilder::new()
            .ethertype(ETHERTYPE_ARP)
            .atom(Atom::new(Base::Frame, ARP_TARGET_IP_OFFSET, Width::W4, u32::from_be_bytes(ip)))
            .build_known()
    }

    /// Whether the filter claims a whole protocol: it names no ethertype, or it is ARP without
    /// a target address, IPv4 without a protocol, TCP or UDP without a destination port, or
    /// another IPv4 protocol without a destination address. Owning such frames exclusively
    /// locks everyone else out of that protocol, so the kernel requires privilege for it.
    pub fn is_broad(&self) -> bool {
        let value = |base: Base, offset: u16, width: Width| {
            self.atoms
                .iter()
                .find(|a| a.key.base == base && a.key.offset == offset && a.key.width == width && a.key.mask == width.full_mask())
                .map(|a| a.value)
        };
        let named = |base: Base, offset: u16, width: Width| value(base, offset, width).is_some();
        match value(Base::Frame, 12, Width::W2).map(|v| v as u16) {
            None => true,
            Some(ETHERTYPE_ARP) => !named(Base::Frame, ARP_TARGET_IP_OFFSET, Width::W4),
            Some(ETHERTYPE_IPV4) => match value(Base::Frame, 23, Width::W1).map(|v| v as u8) {
                None => true,
                Some(IP_PROTOCOL_TCP | IP_PROTOCOL_UDP) => !named(Base::Ipv4Payload, 2, Width::W2),
                Some(_) => !named(Base::Frame, 30, Width::W4),
            },
            Some(_) => false,
        }
    }

    /// Every IPv4 frame (a catch-all).
    pub fn ipv4() -> Filter {
        FilterBuilder::new().ethertype(ETHERTYPE_IPV4).build_known()
    }

    /// ICMP to `dst`.
    pub fn icmp_to(dst: [u8; 4]) -> Filter {
        FilterBuilder::new().ip_protocol(IP_PROTOCOL_ICMP).ipv4_destination(dst).build_known()
    }

    /// ICMP echo messages of type `kind` (8 request, 0 reply) with identifier `ident`, to
    /// `dst`: a ping socket holds both (the replies it waits for, and the requests it sends,
    /// whose mirror the transmit check classifies).
    pub fn icmp_echo(dst: [u8; 4], kind: u8, ident: u16) -> Filter {
        FilterBuilder::new()
            .ip_protocol(IP_PROTOCOL_ICMP)
            .ipv4_destination(dst)
            .first_fragment()
            .atom(Atom::new(Base::Ipv4Payload, 0, Width::W1, u32::from(kind)))
            .atom(Atom::new(Base::Ipv4Payload, 4, Width::W2, u32::from(ident)))
            .build_known()
    }

    /// UDP to destination port `port`, any address (first fragments and whole datagrams).
    pub fn udp_port(port: u16) -> Filter {
        FilterBuilder::new()
            .ip_protocol(IP_PROTOCOL_UDP)
            .first_fragment()
            .destination_port(port)
            .build_known()
    }

    /// A TCP listen: segments to `addr`:`port`.
    pub fn tcp_listen(addr: [u8; 4], port: u16) -> Filter {
        FilterBuilder::new()
            .ip_protocol(IP_PROTOCOL_TCP)
            .first_fragment()
            .ipv4_destination(addr)
            .destination_port(port)
            .build_known()
    }

    /// Connection requests to a TCP listen: segments to `addr`:`port` with SYN set and ACK,
    /// RST and FIN clear. A strict subset of `tcp_listen(addr, port)`, so the listener may
    /// install it beside its listen to receive them apart (exos gives them a ring of their own,
    /// served after the listener's other segments: a flood of SYNs then never delays the ACKs
    /// that complete real handshakes). It overlaps the `tcp_connection` filters under the same
    /// listen (a connection's retransmitted SYN matches both) and nests in neither, so one
    /// listen has one or the other beneath it.
    pub fn tcp_connection_requests(addr: [u8; 4], port: u16) -> Filter {
        FilterBuilder::new()
            .ip_protocol(IP_PROTOCOL_TCP)
            .first_fragment()
            .ipv4_destination(addr)
            .destination_port(port)
            .tcp_flags(TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN, TCP_SYN)
            .build_known()
    }

    /// A TCP connection as seen by the receiver: segments from `remote`:`remote_port` to
    /// `local`:`local_port`. A strict subset of `tcp_listen(local, local_port)`.
    pub fn tcp_connection(local: [u8; 4], local_port: u16, remote: [u8; 4], remote_port: u16) -> Filter {
        FilterBuilder::new()
            .ip_protocol(IP_PROTOCOL_TCP)
            .first_fragment()
            .ipv4_destination(local)
            .destination_port(local_port)
            .ipv4_source(remote)
            .source_port(remote_port)
            .build_known()
    }
}

/// Offset of the target protocol address in an Ethernet ARP frame for IPv4.
pub const ARP_TARGET_IP_OFFSET: u16 = 38;

/// TCP's FIN flag (in the flags byte, offset 13 of the TCP header).
pub const TCP_FIN: u8 = 0x01;
/// TCP's SYN flag.
pub const TCP_SYN: u8 = 0x02;
/// TCP's RST flag.
pub const TCP_RST: u8 = 0x04;
/// TCP's ACK flag.
pub const TCP_ACK: u8 = 0x10;

/// Ethertype of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// Ethertype of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// IP protocol number of ICMP.
pub const IP_PROTOCOL_ICMP: u8 = 1;
/// IP protocol number of TCP.
pub const IP_PROTOCOL_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IP_PROTOCOL_UDP: u8 = 17;

/// A typed builder for filters over Ethernet/IPv4 frames. Field methods add atoms; the IP-level
/// methods also add the IPv4 ethertype once. `build` validates.
#[derive(Clone, Debug, Default)]
pub struct FilterBuilder {
    atoms: Vec<Atom>,
}

impl FilterBuilder {
    /// An empty builder (it builds the filter that matches everything).
    pub fn new() -> FilterBuilder {
        FilterBuilder::default()
    }

    /// Adds any atom.
    pub fn atom(mut self, atom: Atom) -> FilterBuilder {
        self.atoms.push(atom);
        self
    }

    fn ensure(self, atom: Atom) -> FilterBuilder {
        if self.atoms.contains(&atom) { self } else { self.atom(atom) }
    }

    /// The Ethernet type field.
    pub fn ethertype(self, ethertype: u16) -> FilterBuilder {
        self.ensure(Atom::new(Base::Frame, 12, Width::W2, u32::from(ethertype)))
    }

    fn ipv4(self) -> FilterBuilder {
        self.ethertype(ETHERTYPE_IPV4)
    }

    /// The IPv4 protocol field (implies IPv4).
    pub fn ip_protocol(self, protocol: u8) -> FilterBuilder {
        self.ipv4().atom(Atom::new(Base::Frame, 23, Width::W1, u32::from(protocol)))
    }

    /// The IPv4 fragment offset is zero (a whole datagram or its first fragment), so that
    /// transport ports are present (implies IPv4).
    pub fn first_fragment(self) -> FilterBuilder {
        self.ipv4().atom(Atom::masked(Base::Frame, 20, Width::W2, 0x1fff, 0))
    }

    /// The IPv4 source address (implies IPv4).
    pub fn ipv4_source(self, addr: [u8; 4]) -> FilterBuilder {
        self.ipv4().atom(Atom::new(Base::Frame, 26, Width::W4, u32::from_be_bytes(addr)))
    }

    /// The IPv4 destination address (implies IPv4).
    pub fn ipv4_destination(self, addr: [u8; 4]) -> FilterBuilder {
        self.ipv4().atom(Atom::new(Base::Frame, 30, Width::W4, u32::from_be_bytes(addr)))
    }

    /// The TCP/UDP source port, behind any IP options.
    pub fn source_port(self, port: u16) -> FilterBuilder {
        self.atom(Atom::new(Base::Ipv4Payload, 0, Width::W2, u32::from(port)))
    }

    /// The TCP/UDP destination port, behind any IP options.
    pub fn destination_port(self, port: u16) -> FilterBuilder {
        self.atom(Atom::new(Base::Ipv4Payload, 2, Width::W2, u32::from(port)))
    }

    /// The TCP flags byte, masked with `mask`, equals `value` (behind any IP options).
    pub fn tcp_flags(self, mask: u8, value: u8) -> FilterBuilder {
        self.atom(Atom::masked(Base::Ipv4Payload, 13, Width::W1, u32::from(mask), u32::from(value)))
    }

    /// Validates the atoms.
    pub fn build(self) -> Result<Filter, FilterError> {
        Filter::new(&self.atoms)
    }

    /// Builds a filter from the fixed shapes above, which are valid by construction.
    fn build_known(self) -> Filter {
        // The presets never repeat a key or contradict themselves; an empty filter is the
        // harmless answer should that ever change.
        self.build().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_protocols_are_broad_and_demultiplexing_filters_are_not() {
        let ip = [10, 0, 2, 15];
        for broad in [Filter::everything(), Filter::arp(), Filter::ipv4(), FilterBuilder::new().ip_protocol(IP_PROTOCOL_TCP).build_known()] {
            assert!(broad.is_broad(), "{broad:?}");
        }
        let icmp_any = FilterBuilder::new().ip_protocol(IP_PROTOCOL_ICMP).build_known();
        assert!(icmp_any.is_broad());
        let masked_port = FilterBuilder::new()
            .ip_protocol(IP_PROTOCOL_UDP)
            .atom(Atom::masked(Base::Ipv4Payload, 2, Width::W2, 0, 0))
            .build();
        if let Ok(f) = masked_port {
            assert!(f.is_broad(), "a port atom with an empty mask names no port");
        }
        for narrow in [Filter::arp_for(ip), Filter::icmp_to(ip), Filter::udp_port(7), Filter::tcp_listen(ip, 80), Filter::tcp_connection(ip, 80, [10, 0, 2, 2], 5000)] {
            assert!(!narrow.is_broad(), "{narrow:?}");
        }
        assert!(!Filter::tcp_connection_requests(ip, 80).is_broad());
        let custom = FilterBuilder::new().ethertype(0x88b5).build_known();
        assert!(!custom.is_broad(), "a private ethertype is not IPv4 or ARP");
    }

    /// A TCP segment from 10.0.2.2:5000 to 10.0.2.15:80 with `flags`, behind `ihl` words of IP
    /// header.
    fn tcp_frame(flags: u8, ihl: u8) -> Vec<u8> {
        let ip_len = 4 * usize::from(ihl);
        let mut frame = alloc::vec![0u8; 14 + ip_len + 20];
        frame[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        frame[14] = 0x40 | ihl;
        frame[23] = IP_PROTOCOL_TCP;
        frame[26..30].copy_from_slice(&[10, 0, 2, 2]);
        frame[30..34].copy_from_slice(&[10, 0, 2, 15]);
        let tcp = 14 + ip_len;
        frame[tcp..tcp + 2].copy_from_slice(&5000u16.to_be_bytes());
        frame[tcp + 2..tcp + 4].copy_from_slice(&80u16.to_be_bytes());
        frame[tcp + 13] = flags;
        frame
    }

    #[test]
    fn connection_requests_are_the_pure_syns_of_a_listen_and_nest_in_it() {
        let ip = [10, 0, 2, 15];
        let requests = Filter::tcp_connection_requests(ip, 80);
        for ihl in [5, 6, 15] {
            assert!(requests.matches(&tcp_frame(TCP_SYN, ihl)), "a SYN behind IHL {ihl}");
            for flags in [TCP_SYN | TCP_ACK, TCP_ACK, TCP_SYN | TCP_RST, TCP_SYN | TCP_FIN, TCP_RST, 0x18] {
                assert!(!requests.matches(&tcp_frame(flags, ihl)), "flags {flags:#04x}");
                assert!(Filter::tcp_listen(ip, 80).matches(&tcp_frame(flags, ihl)));
            }
        }
        // PSH, URG, ECE and CWR do not matter (an ECN-setup SYN is a request).
        assert!(requests.matches(&tcp_frame(TCP_SYN | 0xc0, 5)));
        let mut set = crate::Dpf::new();
        let listen = set.insert(&Filter::tcp_listen(ip, 80), 1, 0).unwrap().id;
        let inside = set.insert(&requests, 1, 1).unwrap().id;
        assert_eq!(set.classify_interpreted(&tcp_frame(TCP_SYN, 5)).owner, Some(inside));
        assert_eq!(set.classify_interpreted(&tcp_frame(TCP_ACK, 5)).owner, Some(listen));
        assert!(set.insert(&requests, 2, 2).is_err(), "only the listen's holder nests in it");
        assert!(set.insert(&Filter::tcp_connection(ip, 80, [10, 0, 2, 2], 5000), 1, 3).is_err(), "a connection overlaps the requests");
    }
}
