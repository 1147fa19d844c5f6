//! Rough cost of compiled classification by trie depth (development aid).
//! `cargo run -p dpf --release --example probe_cost`

use std::hint::black_box;
use std::time::Instant;

use dpf::exec::JitCode;
use dpf::{Dpf, Filter};

fn time(dpf: &Dpf, frame: &[u8]) -> f64 {
    let code = JitCode::load(&dpf.compile().unwrap()).unwrap();
    let n = 5_000_000;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..n {
            black_box(code.classify_raw(black_box(dpf), black_box(frame)));
        }
        best = best.min(t.elapsed().as_secs_f64() * 1e9 / n as f64);
    }
    best
}

fn main() {
    let mut frame = vec![0u8; 60];
    frame[12] = 8;
    frame[14] = 0x45;
    frame[23] = 6;
    frame[30..34].copy_from_slice(&[10, 0, 0, 1]);
    frame[36..38].copy_from_slice(&80u16.to_be_bytes());
    let mut dpf = Dpf::new();
    println!("empty: {:.1} ns", time(&dpf, &frame));
    dpf.insert(&Filter::ipv4(), 1, 1).unwrap();
    println!("1 level (ipv4): {:.1} ns", time(&dpf, &frame));
    dpf.insert(&Filter::arp(), 1, 1).unwrap();
    dpf.insert(&Filter::tcp_listen([10, 0, 0, 1], 80), 1, 1).unwrap();
    println!("2 levels (listen): {:.1} ns", time(&dpf, &frame));
    dpf.insert(&Filter::tcp_connection([10, 0, 0, 1], 80, [0, 0, 0, 0], 0), 1, 1).unwrap();
    println!("3 levels (connection): {:.1} ns", time(&dpf, &frame));
}
