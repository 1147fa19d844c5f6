//! Filter kinds against realistic frames, and the overlap, subset, delete and ref rules.
//! Every classification is checked three ways: interpreter, linear baseline, compiled code.

mod common;

use common::*;
use dpf::exec::JitCode;
use dpf::{Classification, Dpf, Filter, FilterAccessError, FilterClass, FilterId, InsertError, InsertOptions};

const HOST: [u8; 4] = [10, 0, 0, 1];
const PEER: [u8; 4] = [10, 0, 0, 2];
const OTHER: [u8; 4] = [192, 168, 7, 9];

const ARPD: u32 = 1;
const STRAYD: u32 = 2;
const HTTPD: u32 = 3;
const DNS: u32 = 4;
const PING: u32 = 5;
const TCPDUMP: u32 = 6;
const EVIL: u32 = 7;

fn privileged(class: FilterClass) -> InsertOptions {
    InsertOptions { class, privileged: true }
}

/// Classifies with all three engines and checks they agree.
fn classify(dpf: &Dpf, frame: &[u8]) -> Classification {
    let interpreted = dpf.classify_interpreted(frame);
    assert_eq!(dpf.classify_linear(frame), interpreted, "linear vs interpreted");
    let code = JitCode::load(&dpf.compile().unwrap()).unwrap();
    assert_eq!(code.classify(dpf, frame), Some(interpreted), "compiled vs interpreted");
    // Every truncation agrees as well.
    for len in 0..frame.len() {
        let short = &frame[..len];
        assert_eq!(code.classify(dpf, short), Some(dpf.classify_interpreted(short)), "truncated to {len}");
        assert_eq!(dpf.classify_linear(short), dpf.classify_interpreted(short), "linear, truncated to {len}");
    }
    interpreted
}

fn owner(dpf: &Dpf, frame: &[u8]) -> Option<FilterId> {
    classify(dpf, frame).owner
}

struct Setup {
    dpf: Dpf,
    arp: FilterId,
    ipv4: FilterId,
    icmp: FilterId,
    dns: FilterId,
    listen: FilterId,
    conn: FilterId,
    tcpdump: FilterId,
}

fn setup() -> Setup {
    let mut dpf = Dpf::new();
    let arp = dpf.insert(&Filter::arp(), ARPD, 10).unwrap().id;
    let ipv4 = dpf.insert_with(&Filter::ipv4(), privileged(FilterClass::Fallback), STRAYD, 20).unwrap().id;
    let icmp = dpf.insert(&Filter::icmp_to(HOST), PING, 30).unwrap().id;
    let dns = dpf.insert(&Filter::udp_port(53), DNS, 40).unwrap().id;
    let listen = dpf.insert(&Filter::tcp_listen(HOST, 80), HTTPD, 50).unwrap().id;
    let conn = dpf.insert(&Filter::tcp_connection(HOST, 80, PEER, 40000), HTTPD, 51).unwrap().id;
    let tcpdump = dpf.insert_with(&Filter::everything(), privileged(FilterClass::Copy), TCPDUMP, 60).unwrap().id;
    Setup { dpf, arp, ipv4, icmp, dns, listen, conn, tcpdump }
}

#[test]
fn each_filter_kind_gets_its_frames() {
    let s = setup();
    let d = &s.dpf;
    assert_eq!(owner(d, &arp(false, PEER, HOST)), Some(s.arp));
    assert_eq!(owner(d, &arp(true, PEER, HOST)), Some(s.arp));
    assert_eq!(owner(d, &icmp_echo(PEER, HOST)), Some(s.icmp));
    assert_eq!(owner(d, &icmp_echo(PEER, OTHER)), Some(s.ipv4), "ICMP to another address falls to the catch-all");
    assert_eq!(owner(d, &udp(PEER, 5353, HOST, 53, &[])), Some(s.dns));
    assert_eq!(owner(d, &udp(PEER, 5353, OTHER, 53, &IP_OPTIONS)), Some(s.dns), "UDP port behind IP options");
    assert_eq!(owner(d, &udp(PEER, 53, HOST, 54, &[])), Some(s.ipv4));
    assert_eq!(owner(d, &tcp(OTHER, 1234, HOST, 80, &[])), Some(s.listen));
    assert_eq!(owner(d, &tcp(OTHER, 1234, HOST, 80, &IP_OPTIONS)), Some(s.listen), "listen behind IP options");
    assert_eq!(owner(d, &tcp(PEER, 40000, HOST, 80, &[])), Some(s.conn), "the connection beats its listen");
    assert_eq!(owner(d, &tcp(PEER, 40000, HOST, 80, &IP_OPTIONS)), Some(s.conn), "connection behind IP options");
    assert_eq!(owner(d, &tcp(PEER, 40001, HOST, 80, &[])), Some(s.listen));
    assert_eq!(owner(d, &tcp(PEER, 40000, HOST, 81, &[])), Some(s.ipv4));
    assert_eq!(owner(d, &ipv6_tcp(80)), None, "IPv6 matches no IPv4 filter");
    assert_eq!(owner(d, &lldp()), None);
    // tcpdump sees everything, including frames nobody owns.
    for frame in [arp(false, PEER, HOST), ipv6_tcp(80), lldp(), tcp(PEER, 40000, HOST, 80, &[]), vec![]] {
        let c = classify(d, &frame);
        assert_eq!(c.copies.iter().map(|i| d.copy_filter(i)).collect::<Vec<_>>(), vec![Some(s.tcpdump)]);
    }
    assert_eq!(d.payload(s.conn), Some(51));
}

#[test]
fn short_frames_do_not_match() {
    let s = setup();
    let full = tcp(PEER, 40000, HOST, 80, &[]);
    // The destination port is the last field the connection reads: l4 + 4 = 38 bytes.
    assert_eq!(owner(&s.dpf, &full[..38]), Some(s.conn));
    assert_eq!(owner(&s.dpf, &full[..37]), Some(s.ipv4));
    assert_eq!(owner(&s.dpf, &full[..13]), None);
    // With IP options the ports move back 8 bytes.
    let opt = tcp(PEER, 40000, HOST, 80, &IP_OPTIONS);
    assert_eq!(owner(&s.dpf, &opt[..45]), Some(s.ipv4));
    assert_eq!(owner(&s.dpf, &opt[..46]), Some(s.conn));
}

#[test]
fn overlaps_are_refused() {
    let mut s = setup();
    let d = &mut s.dpf;
    // Another principal cannot take the same listen, a connection under it, or a superset.
    assert_eq!(d.insert(&Filter::tcp_listen(HOST, 80), EVIL, 0), Err(InsertError::Overlap { with: s.listen }));
    assert_eq!(
        d.insert(&Filter::tcp_connection(HOST, 80, OTHER, 5), EVIL, 0),
        Err(InsertError::Overlap { with: s.listen })
    );
    // Port 80 on any address overlaps the listen (neither contains the other... it contains
    // it, but EVIL does not hold the listen and the new filter is not a fallback).
    let any80 = "frame[12:2] == 0x0800 && frame[23:1] == 6 && l4[2:2] == 80".parse().unwrap();
    assert_eq!(d.insert(&any80, EVIL, 0), Err(InsertError::Overlap { with: s.listen }));
    // The same principal may not install an equal filter either (not a strict subset).
    assert_eq!(d.insert(&Filter::tcp_listen(HOST, 80), HTTPD, 0), Err(InsertError::Overlap { with: s.listen }));
    assert_eq!(
        d.insert(&Filter::tcp_connection(HOST, 80, PEER, 40000), HTTPD, 0),
        Err(InsertError::Overlap { with: s.conn })
    );
    // ARP is held by arpd: nobody else may install a sub-filter.
    let arp_reply = "frame[12:2] == 0x0806 && frame[21:1] == 2".parse().unwrap();
    assert_eq!(d.insert(&arp_reply, EVIL, 0), Err(InsertError::Overlap { with: s.arp }));
    assert!(d.insert(&arp_reply, ARPD, 0).is_ok(), "arpd may refine its own filter");
    // Any principal may install under the fallback catch-all, disjoint from the rest.
    assert!(d.insert(&Filter::tcp_listen(HOST, 8080), EVIL, 0).is_ok());
    // Privilege.
    assert_eq!(
        d.insert_with(&Filter::everything(), InsertOptions { class: FilterClass::Copy, privileged: false }, EVIL, 0),
        Err(InsertError::NotPrivileged)
    );
    // Copy filters may overlap anything, each other included.
    assert!(d.insert_with(&Filter::tcp_listen(HOST, 80), privileged(FilterClass::Copy), TCPDUMP, 0).is_ok());
    assert!(d.insert_with(&Filter::everything(), privileged(FilterClass::Copy), TCPDUMP, 0).is_ok());
}

#[test]
fn fallback_installed_last_still_yields_to_specific_filters() {
    let mut d = Dpf::new();
    let listen = d.insert(&Filter::tcp_listen(HOST, 80), HTTPD, 0).unwrap().id;
    let conn = d.insert(&Filter::tcp_connection(HOST, 80, PEER, 1), HTTPD, 0).unwrap().id;
    // A non-fallback superset from another principal is refused...
    assert_eq!(d.insert(&Filter::ipv4(), STRAYD, 0), Err(InsertError::Overlap { with: listen }));
    // ...a fallback is accepted, below everything it contains.
    let all = d.insert_with(&Filter::ipv4(), privileged(FilterClass::Fallback), STRAYD, 0).unwrap().id;
    assert_eq!(owner(&d, &tcp(PEER, 1, HOST, 80, &[])), Some(conn));
    assert_eq!(owner(&d, &tcp(PEER, 2, HOST, 80, &[])), Some(listen));
    assert_eq!(owner(&d, &udp(PEER, 2, HOST, 80, &[])), Some(all));
    // Deleting the fallback restores the old depths; deleting the listen keeps the connection.
    assert_eq!(d.delete(all, STRAYD), Ok(true));
    assert_eq!(d.delete(listen, HTTPD), Ok(true));
    assert_eq!(owner(&d, &tcp(PEER, 1, HOST, 80, &[])), Some(conn));
    assert_eq!(owner(&d, &tcp(PEER, 2, HOST, 80, &[])), None);
}

#[test]
fn delete_and_reference() {
    let mut s = setup();
    let d = &mut s.dpf;
    let frame = tcp(PEER, 40000, HOST, 80, &[]);
    assert_eq!(d.delete(s.conn, EVIL), Err(FilterAccessError::NotHeld));
    // ref: another principal gains access; deletion needs every holder to let go.
    assert_eq!(d.reference(s.conn, EVIL, 9), Err(FilterAccessError::NotHeld));
    assert_eq!(d.reference(s.conn, HTTPD, 9), Ok(()));
    assert_eq!(d.reference(s.conn, HTTPD, 9), Err(FilterAccessError::AlreadyHeld));
    assert!(d.holds(s.conn, 9));
    assert_eq!(d.delete(s.conn, HTTPD), Ok(false));
    assert_eq!(owner(d, &frame), Some(s.conn));
    assert_eq!(d.delete(s.conn, 9), Ok(true));
    assert_eq!(owner(d, &frame), Some(s.listen));
    assert_eq!(d.delete(s.conn, 9), Err(FilterAccessError::UnknownFilter));
    // A holder by ref may install strict subsets of the filter.
    assert_eq!(d.reference(s.listen, HTTPD, 9), Ok(()));
    let again = d.insert(&Filter::tcp_connection(HOST, 80, PEER, 40000), 9, 0).unwrap();
    assert!(!again.needs_recompile, "the connection group still exists: a table change");
    assert_ne!(again.id, s.conn, "ids are not reused");
    assert_eq!(owner(d, &frame), Some(again.id));
    // Teardown releases every hold.
    assert_eq!(d.release_principal(9), 1, "the connection goes; the listen is still held by httpd");
    assert_eq!(d.release_principal(HTTPD), 1);
    assert_eq!(owner(d, &frame), Some(s.ipv4));
    let _ = (s.icmp, s.dns, s.tcpdump);
}

#[test]
fn listens_are_compiled_inline_so_adding_or_removing_one_needs_new_code() {
    let mut d = Dpf::new();
    d.insert(&Filter::tcp_listen(HOST, 80), HTTPD, 0).unwrap();
    d.insert(&Filter::tcp_connection(HOST, 80, PEER, 1), HTTPD, 0).unwrap();
    let code = JitCode::load(&d.compile().unwrap()).unwrap();
    let generation = d.generation();
    // The listens' group leads to the connections' (it is interior) and is small: inline.
    let ssh = d.insert(&Filter::tcp_listen(HOST, 22), HTTPD, 0).unwrap();
    assert!(ssh.needs_recompile, "a new listen is a new immediate");
    assert_eq!(code.classify(&d, &tcp(PEER, 1, HOST, 80, &[])), None, "the old code refuses to run");
    let code = JitCode::load(&d.compile().unwrap()).unwrap();
    assert_eq!(code.classify(&d, &tcp(PEER, 5, HOST, 22, &[])).unwrap().owner, Some(ssh.id));
    let generation_with_ssh = d.generation();
    assert_ne!(generation_with_ssh, generation);
    assert_eq!(d.delete(ssh.id, HTTPD), Ok(true));
    assert_ne!(d.generation(), generation_with_ssh, "removing a listen changes the code too");
    let code = JitCode::load(&d.compile().unwrap()).unwrap();
    assert_eq!(code.classify(&d, &tcp(PEER, 5, HOST, 22, &[])).unwrap().owner, None);
    // Past INLINE_MAX entries the group is a hash table again: listens become data.
    for port in 1000..1000 + dpf::INLINE_MAX as u16 {
        d.insert(&Filter::tcp_listen(HOST, port), HTTPD, 0).unwrap();
    }
    let many = d.generation();
    let code = JitCode::load(&d.compile().unwrap()).unwrap();
    let more = d.insert(&Filter::tcp_listen(HOST, 2000), HTTPD, 0).unwrap();
    assert!(!more.needs_recompile && d.generation() == many);
    assert_eq!(code.classify(&d, &tcp(PEER, 5, HOST, 2000, &[])).unwrap().owner, Some(more.id));
}

#[test]
fn records_reached_through_inline_code_are_compiled_in() {
    let mut d = Dpf::new();
    let listen = d.insert(&Filter::tcp_listen(HOST, 80), HTTPD, 0).unwrap().id;
    let conn = d.insert(&Filter::tcp_connection(HOST, 80, PEER, 1), HTTPD, 0).unwrap().id;
    let code = JitCode::load(&d.compile().unwrap()).unwrap();
    // The IPv4 node is a child of the inline ethertype group: a fallback ending there
    // changes a record the code holds as an immediate, so the code must be rebuilt.
    let all = d.insert_with(&Filter::ipv4(), privileged(FilterClass::Fallback), STRAYD, 0).unwrap();
    assert!(all.needs_recompile, "the fallback's record is compiled in");
    assert_eq!(code.classify(&d, &tcp(PEER, 1, HOST, 80, &[])), None, "the old code refuses to run");
    let code = JitCode::load(&d.compile().unwrap()).unwrap();
    assert_eq!(code.classify(&d, &udp(PEER, 2, HOST, 80, &[])).unwrap().owner, Some(all.id));
    assert_eq!(code.classify(&d, &tcp(PEER, 2, HOST, 80, &[])).unwrap().owner, Some(listen));
    // A capture of everything ends at the root, whose record is compiled in too.
    let generation = d.generation();
    let capture = d.insert_with(&Filter::everything(), privileged(FilterClass::Copy), TCPDUMP, 0).unwrap();
    assert!(capture.needs_recompile && d.generation() != generation);
    let code = JitCode::load(&d.compile().unwrap()).unwrap();
    let seen = code.classify(&d, &tcp(PEER, 1, HOST, 80, &[])).unwrap();
    assert_eq!((seen.owner, d.copy_ids(&seen).collect::<Vec<_>>()), (Some(conn), vec![capture.id]));
    // Deleting either changes the code again; connections stay table data.
    let generation = d.generation();
    assert_eq!(d.delete(capture.id, TCPDUMP), Ok(true));
    assert_ne!(d.generation(), generation);
    let generation = d.generation();
    assert!(!d.insert(&Filter::tcp_connection(HOST, 80, PEER, 2), HTTPD, 0).unwrap().needs_recompile);
    assert_eq!(d.generation(), generation);
}

#[test]
fn the_first_copy_filter_makes_the_code_track_copies_and_later_ones_are_data() {
    let mut d = Dpf::new();
    d.insert(&Filter::tcp_listen(HOST, 80), HTTPD, 0).unwrap();
    let conn = d.insert(&Filter::tcp_connection(HOST, 80, PEER, 1), HTTPD, 0).unwrap().id;
    d.insert(&Filter::tcp_connection(HOST, 80, PEER, 2), HTTPD, 0).unwrap();
    let copy_of = |port| Filter::tcp_connection(HOST, 80, PEER, port);
    // Without copy filters the code keeps no copies; the first one is structural even where
    // its record is table data (a connection's node).
    let first = d.insert_with(&copy_of(1), privileged(FilterClass::Copy), TCPDUMP, 0).unwrap();
    assert!(first.needs_recompile, "the first copy filter turns copy tracking on");
    let code = JitCode::load(&d.compile().unwrap()).unwrap();
    let generation = d.generation();
    let second = d.insert_with(&copy_of(2), privileged(FilterClass::Copy), TCPDUMP, 0).unwrap();
    assert!(!second.needs_recompile && d.generation() == generation, "later copy filters are data");
    let seen = code.classify(&d, &tcp(PEER, 2, HOST, 80, &[])).unwrap();
    assert_eq!(d.copy_ids(&seen).collect::<Vec<_>>(), vec![second.id]);
    let seen = code.classify(&d, &tcp(PEER, 1, HOST, 80, &[])).unwrap();
    assert_eq!((seen.owner, d.copy_ids(&seen).collect::<Vec<_>>()), (Some(conn), vec![first.id]));
    // Removing one keeps tracking; removing the last turns it off.
    assert_eq!(d.delete(first.id, TCPDUMP), Ok(true));
    assert_eq!(d.generation(), generation);
    assert_eq!(d.delete(second.id, TCPDUMP), Ok(true));
    assert_ne!(d.generation(), generation);
    let code = JitCode::load(&d.compile().unwrap()).unwrap();
    let seen = code.classify(&d, &tcp(PEER, 1, HOST, 80, &[])).unwrap();
    assert_eq!((seen.owner, seen.copies.iter().count()), (Some(conn), 0));
}

#[test]
fn connections_under_a_listen_change_only_tables() {
    let mut d = Dpf::new();
    d.insert(&Filter::tcp_listen(HOST, 80), HTTPD, 0).unwrap();
    let first = d.insert(&Filter::tcp_connection(HOST, 80, PEER, 1), HTTPD, 0).unwrap();
    assert!(first.needs_recompile, "the first connection makes the connection group");
    let code = JitCode::load(&d.compile().unwrap()).unwrap();
    let generation = d.generation();
    let mut ids = Vec::new();
    for port in 2..2000u16 {
        let ins = d.insert(&Filter::tcp_connection(HOST, 80, PEER, port), HTTPD, 0).unwrap();
        assert!(!ins.needs_recompile);
        ids.push((port, ins.id));
    }
    assert_eq!(d.generation(), generation);
    for (port, id) in &ids {
        assert_eq!(code.classify(&d, &tcp(PEER, *port, HOST, 80, &[])).unwrap().owner, Some(*id));
    }
    for (port, id) in ids.iter().step_by(2) {
        assert_eq!(d.delete(*id, HTTPD), Ok(true));
        assert_ne!(code.classify(&d, &tcp(PEER, *port, HOST, 80, &[])).unwrap().owner, Some(*id));
    }
    assert_eq!(d.generation(), generation, "deletes never change the structure");
    // A new shape does; the old code then refuses to run instead of misreading tables.
    assert!(d.insert(&Filter::udp_port(53), DNS, 0).unwrap().needs_recompile);
    assert_eq!(code.classify(&d, &tcp(PEER, 3, HOST, 80, &[])), None);
}

#[test]
fn compact_removes_empty_groups() {
    let mut d = Dpf::new();
    let listen = d.insert(&Filter::tcp_listen(HOST, 80), HTTPD, 0).unwrap().id;
    let conn = d.insert(&Filter::tcp_connection(HOST, 80, PEER, 1), HTTPD, 0).unwrap().id;
    assert_eq!(d.delete(conn, HTTPD), Ok(true));
    assert!(d.compact());
    assert!(!d.compact());
    assert_eq!(owner(&d, &tcp(PEER, 1, HOST, 80, &[])), Some(listen));
    assert_eq!(d.delete(listen, HTTPD), Ok(true));
    assert!(d.compact());
    assert_eq!(owner(&d, &tcp(PEER, 1, HOST, 80, &[])), None);
    assert!(d.insert(&Filter::tcp_connection(HOST, 80, PEER, 1), HTTPD, 0).is_ok());
}

#[test]
fn hundred_thousand_connections() {
    let mut d = Dpf::new();
    d.insert(&Filter::tcp_listen(HOST, 80), HTTPD, 0).unwrap();
    let mut last = None;
    for i in 0..100_000u32 {
        let remote = [172, 16, (i >> 8) as u8, i as u8];
        last = Some(d.insert(&Filter::tcp_connection(HOST, 80, remote, 1024 + (i % 50000) as u16), HTTPD, i).unwrap().id);
    }
    assert_eq!(d.len(), 100_001);
    let code = JitCode::load(&d.compile().unwrap()).unwrap();
    let i = 99_999u32;
    let frame = tcp([172, 16, (i >> 8) as u8, i as u8], 1024 + (i % 50000) as u16, HOST, 80, &[]);
    assert_eq!(code.classify(&d, &frame).unwrap().owner, last);
    assert_eq!(d.classify_interpreted(&frame).owner, last);
}

#[test]
fn code_never_runs_against_another_set() {
    let mut a = Dpf::new();
    a.insert(&Filter::tcp_listen(HOST, 80), HTTPD, 0).unwrap();
    let mut b = a.clone();
    let code = JitCode::load(&a.compile().unwrap()).unwrap();
    let frame = tcp(PEER, 1, HOST, 80, &[]);
    // An unchanged clone has the same structure: the code serves it.
    assert_eq!(code.classify(&b, &frame), Some(b.classify_interpreted(&frame)));
    // After different structural changes the two sets never share a generation.
    a.insert(&Filter::udp_port(53), DNS, 0).unwrap();
    b.insert(&Filter::icmp_to(HOST), PING, 0).unwrap();
    assert_ne!(a.generation(), b.generation());
    let fresh = Dpf::new();
    assert_ne!(fresh.generation(), a.generation());
    assert_eq!(code.classify(&b, &frame), None);
    assert_eq!(code.classify(&fresh, &frame), None);
}

#[test]
fn sixty_four_copy_filters() {
    let mut d = Dpf::new();
    let mut ids = Vec::new();
    for i in 0..64u32 {
        let f: Filter = format!("frame[0:1] & {:#04x} == 0x00", 1u32 << (i % 8)).parse().unwrap();
        ids.push(d.insert_with(&f, privileged(FilterClass::Copy), TCPDUMP, i).unwrap().id);
    }
    assert_eq!(d.insert_with(&Filter::everything(), privileged(FilterClass::Copy), TCPDUMP, 0), Err(InsertError::TooManyCopyFilters));
    let c = classify(&d, &[0u8; 20]);
    assert_eq!(c.copies.iter().count(), 64);
    assert_eq!(c.owner, None);
    let c = classify(&d, &[0x80u8; 20]);
    assert_eq!(c.copies.iter().count(), 56, "bit 7 set: the eight filters testing it fail");
    assert_eq!(d.delete(ids[63], TCPDUMP), Ok(true));
    assert_eq!(classify(&d, &[0u8; 20]).copies.iter().count(), 63);
    assert!(d.insert_with(&Filter::everything(), privileged(FilterClass::Copy), TCPDUMP, 0).is_ok());
}

#[test]
fn code_bytes_run_wherever_they_are_copied() {
    let s = setup();
    let code = s.dpf.compile().unwrap();
    // Two separate copies (two addresses), as the kernel would map them.
    let first = JitCode::load(&code).unwrap();
    let second = JitCode::load(&code).unwrap();
    for frame in [tcp(PEER, 40000, HOST, 80, &IP_OPTIONS), arp(true, PEER, HOST), icmp_echo(PEER, HOST)] {
        let expected = Some(s.dpf.classify_interpreted(&frame));
        assert_eq!(first.classify(&s.dpf, &frame), expected);
        assert_eq!(second.classify(&s.dpf, &frame), expected);
    }
    // Unoptimized code (cheaper to compile under emulation) agrees too.
    let unoptimized = JitCode::load(&dpf::compile(&s.dpf, dpf::compile::OptLevel::None).unwrap()).unwrap();
    let frame = tcp(PEER, 40000, HOST, 80, &[]);
    assert_eq!(unoptimized.classify(&s.dpf, &frame), Some(s.dpf.classify_interpreted(&frame)));
}

#[test]
fn the_number_of_shapes_is_bounded() {
    let mut d = Dpf::new();
    // Disjoint filters (different values at frame[0:2]) of different shapes (a second atom at
    // a different offset each): every one makes a group at the root.
    for i in 0..dpf::MAX_GROUPS as u32 {
        let f: Filter = format!("frame[0:2] == {i} && frame[{}:1] == 0", 2 + i).parse().unwrap();
        assert!(d.insert(&f, EVIL, 0).unwrap().needs_recompile);
    }
    let more: Filter = "frame[0:2] == 9999 && frame[1000:1] == 0".parse().unwrap();
    assert_eq!(d.insert(&more, EVIL, 0), Err(InsertError::TooManyShapes));
    // A filter of an existing shape still fits.
    let same: Filter = "frame[0:2] == 9999 && frame[2:1] == 0".parse().unwrap();
    assert!(!d.insert(&same, EVIL, 0).unwrap().needs_recompile);
    let mut frame = vec![0u8; 300];
    frame[1] = 200;
    let code = JitCode::load(&d.compile().unwrap()).unwrap();
    assert_eq!(code.classify(&d, &frame), Some(d.classify_interpreted(&frame)));
    assert!(d.classify_interpreted(&frame).owner.is_some());
}

#[test]
fn standalone_filter_programs_agree_with_the_definition() {
    let filters = [
        Filter::arp(),
        Filter::icmp_to(HOST),
        Filter::udp_port(53),
        Filter::tcp_connection(HOST, 80, PEER, 40000),
        "frame[14:1] & 0x0f == 6 && l4[0:4] & 0xffff0000 == 0x9c400000".parse().unwrap(),
    ];
    let codes: Vec<_> =
        filters.iter().map(|f| dpf::compile::compile_alone(f, dpf::compile::OptLevel::Speed).unwrap()).collect();
    let set = dpf::exec::JitSet::load(&codes).unwrap();
    let frames = [
        arp(false, PEER, HOST),
        icmp_echo(PEER, HOST),
        udp(PEER, 1, HOST, 53, &IP_OPTIONS),
        tcp(PEER, 40000, HOST, 80, &[]),
        tcp(PEER, 40000, HOST, 80, &[1, 1, 1, 1]),
        ipv6_tcp(80),
    ];
    for frame in &frames {
        for len in 0..=frame.len() {
            let short = &frame[..len];
            for (i, filter) in filters.iter().enumerate() {
                assert_eq!(set.run_alone(i, short).owner_slot().is_some(), filter.matches(short), "{filter} on {len} bytes");
            }
        }
    }
    // A set's code cannot be run as a standalone program.
    let mut d = Dpf::new();
    d.insert(&Filter::arp(), ARPD, 0).unwrap();
    let mixed = dpf::exec::JitSet::load(&[d.compile().unwrap()]).unwrap();
    assert!(mixed.run_alone(0, &arp(false, PEER, HOST)).is_stale());
    assert!(set.run_alone(99, &[]).is_stale());
}
