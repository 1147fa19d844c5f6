//! Profiling aid for the interpreter: classifies one TCP connection frame in a loop.
//! `cargo run -p dpf --release --example interp_profile`

use std::hint::black_box;
use std::time::Instant;

use dpf::{Dpf, Filter, FilterClass, InsertOptions};

fn main() {
    let host = [10, 0, 0, 1];
    let mut dpf = Dpf::new();
    dpf.insert(&Filter::arp(), 1, 1).unwrap();
    let fallback = InsertOptions { class: FilterClass::Fallback, privileged: true };
    dpf.insert_with(&Filter::ipv4(), fallback, 2, 2).unwrap();
    dpf.insert(&Filter::icmp_to(host), 3, 3).unwrap();
    dpf.insert(&Filter::tcp_listen(host, 80), 4, 4).unwrap();
    dpf.insert(&Filter::tcp_connection(host, 80, [10, 0, 0, 2], 999), 4, 5).unwrap();
    let mut frame = vec![0u8; 60];
    frame[12] = 8;
    frame[14] = 0x45;
    frame[23] = 6;
    frame[26..30].copy_from_slice(&[10, 0, 0, 2]);
    frame[30..34].copy_from_slice(&host);
    frame[34..36].copy_from_slice(&999u16.to_be_bytes());
    frame[36..38].copy_from_slice(&80u16.to_be_bytes());
    assert!(dpf.classify_interpreted(&frame).owner.is_some());
    let n = 20_000_000;
    let t = Instant::now();
    for _ in 0..n {
        black_box(dpf.classify_interpreted(black_box(&frame)));
    }
    println!("{:.1} ns", t.elapsed().as_secs_f64() * 1e9 / n as f64);
}
