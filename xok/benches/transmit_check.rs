//! `cargo bench -p xok`: what the transmit header check (`xok::net::transmit_check` and
//! `Kernel::check_source`) costs per frame on the host, against the number of TCP connection
//! filters installed: copying the headers, mirroring them, and classifying the mirror (with
//! the compiled trie, as the kernel does once a compile has run, and with the interpreter,
//! as between a structural change and its compile) plus the holder lookup. Writes
//! `docs/xmit-check-bench.json` and `docs/xmit-check-bench.md`.
//!
//! Figures are the median of timed batches; every figure is measured in each of several
//! rounds, interleaved, and the best round is kept (the machine is shared and noisy).

use std::hint::black_box;

use dpf::exec::JitCode;
use dpf::{Dpf, Filter};
use xok::net::transmit_check::{HeaderCopy, mirror};

const HOST: [u8; 4] = [10, 0, 0, 1];
const NIC_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
const SERVER: u32 = 4;
const SIZES: [usize; 4] = [1, 100, 10_000, 100_000];
const BATCHES: usize = 11;
const ROUNDS: usize = 5;
/// The figures of a row, in order.
const FIGURES: [&str; 5] = ["copy", "mirror", "classify compiled", "classify interpreted", "whole check compiled"];

fn remote(i: usize) -> ([u8; 4], u16) {
    ([172, 16 + (i >> 16) as u8, (i >> 8) as u8, i as u8], 1024 + (i % 60_000) as u16)
}

/// A full-size TCP segment from HOST:80 to `dst`:`dport`, sent by the server.
fn outgoing(dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 0xb];
    f.extend_from_slice(&NIC_MAC);
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0x05, 0xdc, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&HOST);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&80u16.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0]);
    f.resize(1514, 0x5a);
    f
}

fn build(n: usize) -> Dpf {
    let mut dpf = Dpf::with_seed(0x1234_5678);
    dpf.insert(&Filter::arp_for(HOST), 1, 1).unwrap();
    dpf.insert(&Filter::icmp_to(HOST), 3, 3).unwrap();
    for port in [80, 443, 22, 25] {
        dpf.insert(&Filter::tcp_listen(HOST, port), SERVER, 4).unwrap();
    }
    for i in 0..n {
        let (addr, port) = remote(i);
        dpf.insert(&Filter::tcp_connection(HOST, 80, addr, port), SERVER, 100 + i as u32).unwrap();
    }
    dpf
}

/// Whether the owner of the mirror is held by the sender (the kernel's last step).
fn held(dpf: &Dpf, owner: Option<dpf::FilterId>) -> bool {
    owner.is_some_and(|id| dpf.holds(id, SERVER))
}

fn time(f: impl FnMut()) -> f64 {
    xok_codegen::bench::time_per_call(BATCHES, 0.001, f).median
}

struct Case {
    connections: usize,
    dpf: Dpf,
    jit: JitCode,
    frame: Vec<u8>,
    best: [f64; 5],
}

impl Case {
    fn new(n: usize) -> Case {
        let dpf = build(n);
        let jit = JitCode::load(&dpf.compile().unwrap()).unwrap();
        let (addr, port) = remote(n - 1);
        let frame = outgoing(addr, port);
        let probe = mirror(&HeaderCopy::new(&frame), NIC_MAC).unwrap();
        let owner = jit.classify(&dpf, probe.bytes()).unwrap().owner;
        assert_eq!(owner, dpf.classify_interpreted(probe.bytes()).owner);
        assert_eq!(owner.and_then(|id| dpf.payload(id)), Some(100 + n as u32 - 1), "the connection's own filter");
        assert!(held(&dpf, owner));
        Case { connections: n, dpf, jit, frame, best: [f64::INFINITY; 5] }
    }

    fn round(&mut self) {
        let (dpf, jit, frame) = (&self.dpf, &self.jit, &self.frame);
        let copy = HeaderCopy::new(frame);
        let probe = mirror(&copy, NIC_MAC).unwrap();
        let figures = [
            time(|| {
                black_box(HeaderCopy::new(black_box(frame)));
            }),
            time(|| {
                black_box(mirror(black_box(&copy), NIC_MAC).unwrap());
            }),
            time(|| {
                let owner = jit.classify(dpf, black_box(probe.bytes())).and_then(|c| c.owner);
                black_box(held(dpf, owner));
            }),
            time(|| {
                black_box(held(dpf, dpf.classify_interpreted(black_box(probe.bytes())).owner));
            }),
            time(|| {
                let probe = mirror(&HeaderCopy::new(black_box(frame)), NIC_MAC).unwrap();
                let owner = jit.classify(dpf, probe.bytes()).and_then(|c| c.owner);
                assert!(black_box(held(dpf, owner)));
            }),
        ];
        for (best, now) in self.best.iter_mut().zip(figures) {
            *best = best.min(now);
        }
    }
}

fn main() {
    let mut cases: Vec<Case> = SIZES.iter().map(|n| Case::new(*n)).collect();
    for _ in 0..ROUNDS {
        for case in &mut cases {
            case.round();
        }
    }
    let table = xok_codegen::bench::ConnectionTable {
        title: "The transmit header check on the host",
        command: "cargo bench -p xok",
        description: &format!(
            "ns per 1514-byte frame, best of {ROUNDS} interleaved rounds of the median of {BATCHES} batches.\nThe frame is a server's TCP segment on its connection; the installed filters are ARP, ICMP, four listens and N connections."
        ),
        unit: "ns per frame",
        figures: &FIGURES,
        rows: cases.iter().map(|case| (case.connections, case.best.iter().map(|ns| format!("{ns:.1}")).collect())).collect(),
    };
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    print!("{}", table.write(&docs, "xmit-check-bench"));
}
