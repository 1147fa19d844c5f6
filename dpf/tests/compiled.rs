//! Property tests: on random filter sets and random frames (truncated ones included), the
//! compiled code, the interpreter and the linear baseline classify identically. Also checks
//! that data-only changes (no new structure) keep old code correct.

mod common;

use common::*;
use dpf::exec::JitCode;
use dpf::{Atom, AtomKey, Base, Dpf, Filter, FilterClass, FilterId, InsertOptions, Width};

const ADDRS: [u32; 3] = [0x0a00_0001, 0x0a00_0002, 0xc0a8_0709];
const PORTS: [u32; 4] = [80, 53, 7, 40000];

/// A random atom from a vocabulary of header fields, with values likely to occur.
fn random_atom(rng: &mut Rng) -> Atom {
    let pick = |rng: &mut Rng, xs: &[u32]| xs[rng.below(xs.len() as u64) as usize];
    match rng.below(13) {
        0 => Atom::new(Base::Frame, 12, Width::W2, pick(rng, &[0x0800, 0x0800, 0x0806, 0x86dd])),
        1 => Atom::masked(Base::Frame, 14, Width::W1, 0x0f, pick(rng, &[5, 6, 7, 15])),
        2 => Atom::masked(Base::Frame, 20, Width::W2, 0x1fff, 0),
        3 => Atom::new(Base::Frame, 23, Width::W1, pick(rng, &[1, 6, 17])),
        4 => Atom::new(Base::Frame, 26, Width::W4, pick(rng, &ADDRS)),
        5 => Atom::new(Base::Frame, 30, Width::W4, pick(rng, &ADDRS)),
        6 => Atom::new(Base::Frame, 30, Width::W2, pick(rng, &ADDRS) >> 16),
        7 => Atom::new(Base::Ipv4Payload, 0, Width::W2, pick(rng, &PORTS)),
        8 => Atom::new(Base::Ipv4Payload, 2, Width::W2, pick(rng, &PORTS)),
        9 => Atom::new(Base::Ipv4Payload, 0, Width::W4, pick(rng, &PORTS) << 16 | pick(rng, &PORTS)),
        10 => Atom::masked(Base::Ipv4Payload, 13, Width::W1, 0x02, pick(rng, &[0, 2])),
        11 => Atom::masked(Base::Frame, 21, Width::W1, 0xff, pick(rng, &[1, 2])),
        _ => {
            let width = [Width::W1, Width::W2, Width::W4][rng.below(3) as usize];
            let mask = (rng.next() as u32 & width.full_mask()).max(1);
            let base = if rng.chance(30) { Base::Ipv4Payload } else { Base::Frame };
            Atom::masked(base, rng.below(70) as u16, width, mask, rng.next() as u32 & mask)
        }
    }
}

fn random_filter(rng: &mut Rng) -> Option<Filter> {
    let addr = |rng: &mut Rng| ADDRS[rng.below(3) as usize].to_be_bytes();
    let port = |rng: &mut Rng| PORTS[rng.below(4) as usize] as u16;
    match rng.below(10) {
        0 => Some(Filter::arp()),
        1 => Some(Filter::ipv4()),
        2 => Some(Filter::icmp_to(addr(rng))),
        3 => Some(Filter::udp_port(port(rng))),
        4 => Some(Filter::tcp_listen(addr(rng), port(rng))),
        5 | 6 => Some(Filter::tcp_connection(addr(rng), port(rng), addr(rng), port(rng))),
        _ => {
            let n = rng.below(5) as usize;
            let atoms: Vec<Atom> = (0..n).map(|_| random_atom(rng)).collect();
            Filter::new(&atoms).ok()
        }
    }
}

fn template(rng: &mut Rng) -> Vec<u8> {
    let addr = |rng: &mut Rng| ADDRS[rng.below(3) as usize].to_be_bytes();
    let port = |rng: &mut Rng| PORTS[rng.below(4) as usize] as u16;
    let options: &[u8] = match rng.below(4) {
        0 => &IP_OPTIONS,
        1 => &[1, 1, 1, 1],
        2 => &[0; 40],
        _ => &[],
    };
    match rng.below(8) {
        0 => arp(rng.chance(50), addr(rng), addr(rng)),
        1 => icmp_echo(addr(rng), addr(rng)),
        2 => udp(addr(rng), port(rng), addr(rng), port(rng), options),
        3 => ipv6_tcp(port(rng)),
        4 => lldp(),
        5 => (0..rng.below(80)).map(|_| rng.next() as u8).collect(),
        _ => tcp(addr(rng), port(rng), addr(rng), port(rng), options),
    }
}

/// Writes the atom's value into `frame` (growing it if needed).
fn force(frame: &mut Vec<u8>, atom: &Atom) {
    let base = match atom.key.base {
        Base::Frame => 0,
        Base::Ipv4Payload => {
            if frame.len() < 15 {
                frame.resize(15, 0);
            }
            14 + 4 * usize::from(frame[14] & 0x0f)
        }
    };
    let AtomKey { offset, width, mask, .. } = atom.key;
    let n = width.bytes() as usize;
    let start = base + usize::from(offset);
    if frame.len() < start + n {
        frame.resize(start + n, 0);
    }
    for i in 0..n {
        let shift = 8 * (n - 1 - i);
        let m = (mask >> shift) as u8;
        let v = (atom.value >> shift) as u8;
        frame[start + i] = (frame[start + i] & !m) | (v & m);
    }
}

/// A frame likely to match `filter` (absolute atoms first, so the IHL is set before the
/// relative atoms are placed).
fn frame_for(rng: &mut Rng, filter: &Filter) -> Vec<u8> {
    let mut frame = template(rng);
    for atom in filter.atoms().iter().filter(|a| a.key.base == Base::Frame) {
        force(&mut frame, atom);
    }
    for atom in filter.atoms().iter().filter(|a| a.key.base == Base::Ipv4Payload) {
        force(&mut frame, atom);
    }
    frame
}

fn random_frame(rng: &mut Rng, filters: &[Filter]) -> Vec<u8> {
    let mut frame = if !filters.is_empty() && rng.chance(70) {
        let i = rng.below(filters.len() as u64) as usize;
        frame_for(rng, &filters[i])
    } else {
        template(rng)
    };
    if rng.chance(10) && !frame.is_empty() {
        let i = rng.below(frame.len() as u64) as usize;
        frame[i] ^= 1 << rng.below(8);
    }
    if rng.chance(25) {
        frame.truncate(rng.below(frame.len() as u64 + 1) as usize);
    }
    frame
}

fn random_insert(rng: &mut Rng, dpf: &mut Dpf, installed: &mut Vec<(FilterId, u32, Filter)>) {
    let Some(filter) = random_filter(rng) else { return };
    let class = match rng.below(10) {
        0 => FilterClass::Copy,
        1 => FilterClass::Fallback,
        _ => FilterClass::Exclusive,
    };
    let principal = rng.below(3) as u32;
    if let Ok(ins) = dpf.insert_with(&filter, InsertOptions { class, privileged: true }, principal, 0) {
        installed.push((ins.id, principal, filter));
    }
}

/// Checks every classifier on `frame`; returns whether the set's screen answered it.
fn check(code: &JitCode, dpf: &Dpf, frame: &[u8]) -> bool {
    let interpreted = dpf.classify_interpreted(frame);
    // Most specific wins, checked from the definition: the non-copy filters matching a frame
    // form a chain (all supersets of the owner match too), so the owner's depth is exactly
    // their number, and no frame matched by some filter is left without an owner.
    let matching = dpf
        .ids()
        .filter(|id| dpf.class(*id) != Some(FilterClass::Copy) && dpf.filter(*id).unwrap().matches(frame))
        .count() as u32;
    match interpreted.owner {
        Some(owner) => assert_eq!(dpf.depth(owner), Some(matching), "frame {frame:02x?}\n{}", describe(dpf)),
        None => assert_eq!(matching, 0),
    }
    let compiled = dpf.resolve(&code.run_code(dpf, frame));
    assert_eq!(compiled, Some(interpreted), "frame {frame:02x?}\nfilters:\n{}", describe(dpf));
    let screened = code.classify(dpf, frame);
    assert_eq!(screened, Some(interpreted), "screened, frame {frame:02x?}\nfilters:\n{}", describe(dpf));
    assert_eq!(dpf.classify_linear(frame), interpreted, "linear, frame {frame:02x?}\nfilters:\n{}", describe(dpf));
    dpf.screen().rejects(frame)
}

fn describe(dpf: &Dpf) -> String {
    dpf.ids().map(|id| format!("  {:?} {:?}: {}\n", id, dpf.class(id), dpf.filter(id).unwrap())).collect()
}

#[test]
fn compiled_equals_interpreted_on_random_sets_and_frames() {
    let mut rng = Rng(0x0dd_ba11_5eed);
    let mut cases = 0usize;
    let mut owned = 0usize;
    let mut screened = 0usize;
    for _set in 0..500 {
        let mut dpf = Dpf::with_seed(rng.next());
        let mut installed = Vec::new();
        for _ in 0..rng.below(25) {
            random_insert(&mut rng, &mut dpf, &mut installed);
        }
        // Some deletes: structure stays, tables change.
        for _ in 0..rng.below(4) {
            if installed.is_empty() {
                break;
            }
            let (id, principal, _) = installed.swap_remove(rng.below(installed.len() as u64) as usize);
            assert_eq!(dpf.delete(id, principal), Ok(true));
        }
        if rng.chance(20) {
            dpf.compact();
        }
        let code = JitCode::load(&dpf.compile().unwrap()).unwrap();
        let filters: Vec<Filter> = installed.iter().map(|(_, _, f)| f.clone()).collect();
        for _ in 0..200 {
            let frame = random_frame(&mut rng, &filters);
            screened += usize::from(check(&code, &dpf, &frame));
            owned += usize::from(dpf.classify_interpreted(&frame).owner.is_some());
            cases += 1;
        }
        // Data-only changes keep the old code valid.
        for _ in 0..10 {
            let generation = dpf.generation();
            if rng.chance(50) {
                random_insert(&mut rng, &mut dpf, &mut installed);
            } else if !installed.is_empty() {
                let (id, principal, _) = installed.swap_remove(rng.below(installed.len() as u64) as usize);
                assert_eq!(dpf.delete(id, principal), Ok(true));
            }
            if dpf.generation() != generation {
                break;
            }
            let filters: Vec<Filter> = installed.iter().map(|(_, _, f)| f.clone()).collect();
            for _ in 0..5 {
                let frame = random_frame(&mut rng, &filters);
                screened += usize::from(check(&code, &dpf, &frame));
                cases += 1;
            }
        }
    }
    assert!(cases >= 100_000, "{cases} cases");
    assert!(owned > cases / 5, "too few frames matched an owner: {owned} of {cases}");
    assert!(screened > cases / 100, "too few frames answered by a screen: {screened} of {cases}");
    println!("{cases} cases, {owned} with an owner, {screened} answered by the screen");
}
