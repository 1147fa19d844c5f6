//! Instructions per classified frame, counted by callgrind (repeatable where timings on this
//! shared machine are not): the compiled trie against the benchmark's hand-written classifier,
//! for the benchmark's filter sets and frames.
//! `cargo run --release -p dpf --example instructions` (needs valgrind; about two minutes).
//!
//! Each figure is the instructions counted inside `measured` (callgrind's `--toggle-collect`:
//! the set-up, building the filters and compiling, is not counted) over the calls it made,
//! the loop included. The process runs itself under valgrind for each figure.

use std::hint::black_box;
use std::process::Command;

use dpf::{Dpf, Filter};
use dpf::exec::JitCode;

#[path = "../benches/common/setup.rs"]
#[allow(dead_code)] // reason: shared with the benchmark, which uses the edge frames too
mod setup;
use setup::{HOST, build, remote, tcp_frame};

/// Classifications per counted run.
const CALLS: u64 = 20_000;
const SIZES: [usize; 3] = [1, 1_000, 100_000];
const FRAMES: [&str; 4] = ["first", "last", "none", "unmatched"];
const ENGINES: [&str; 2] = ["compiled", "hand-written"];

fn frame(kind: &str, n: usize) -> Vec<u8> {
    let (first_addr, first_port) = remote(0);
    let (last_addr, last_port) = remote(n - 1);
    match kind {
        "first" => tcp_frame(first_addr, first_port, HOST, 80),
        "last" => tcp_frame(last_addr, last_port, HOST, 80),
        "none" => tcp_frame([198, 51, 100, 7], 5555, HOST, 80),
        _ => {
            let mut f = tcp_frame([198, 51, 100, 7], 5555, HOST, 80);
            f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
            f
        }
    }
}

/// The child: classify one kind of frame `calls` times with one engine, or (engine
/// `insert-delete`) insert and delete a connection under the listen `calls` times.
fn run(n: usize, kind: &str, engine: &str, calls: u64) {
    let (mut dpf, hand) = build(n);
    let jit = JitCode::load(&dpf.compile().unwrap()).unwrap();
    let frame = frame(kind, n);
    assert_eq!(hand.classify(&frame), dpf.classify_interpreted(&frame).owner);
    let filters: Vec<Filter> = (0..calls).map(|i| Filter::tcp_connection(HOST, 80, [203, 0, (i >> 8) as u8, i as u8], 7)).collect();
    let start = std::time::Instant::now();
    measured(engine, &mut dpf, &jit, &hand, &frame, &filters, calls);
    // Wall time too, for a quick look without valgrind (the benchmark is the real timing).
    println!("{:.1} ns per call", start.elapsed().as_secs_f64() * 1e9 / calls as f64);
}

/// The counted part.
#[inline(never)]
fn measured(engine: &str, dpf: &mut Dpf, jit: &JitCode, hand: &setup::hand::Classifier, frame: &[u8], filters: &[Filter], calls: u64) {
    match engine {
        "insert-delete" => {
            for filter in filters {
                let inserted = dpf.insert(black_box(filter), 4, 9).unwrap();
                dpf.delete(black_box(inserted.id), 4).unwrap();
            }
        }
        "compiled" => {
            for _ in 0..calls {
                black_box(jit.classify_raw(black_box(dpf), black_box(frame)));
            }
        }
        _ => {
            for _ in 0..calls {
                black_box(black_box(hand).classify(black_box(frame)));
            }
        }
    }
}

/// Instructions per call in the child's `measured`.
fn count(n: usize, kind: &str, engine: &str) -> f64 {
    let me = std::env::current_exe().unwrap();
    let out = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null", "--toggle-collect=*measured*"])
        .arg(&me)
        .args(["run", &n.to_string(), kind, engine, &CALLS.to_string()])
        .output()
        .expect("valgrind runs (scripts/setup.sh installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let total: u64 = stderr
        .lines()
        .find_map(|line| line.split("Collected : ").nth(1))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count in:\n{stderr}"));
    total as f64 / CALLS as f64
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("run") {
        run(args[2].parse().unwrap(), &args[3], &args[4], args[5].parse().unwrap());
        return;
    }
    println!("instructions per frame (callgrind; compiled / hand-written = ratio)");
    for n in SIZES {
        let mut cells = Vec::new();
        for kind in FRAMES {
            let [compiled, hand] = ENGINES.map(|engine| count(n, kind, engine));
            cells.push(format!("{kind} {compiled:.0} / {hand:.0} = {:.2}x", compiled / hand));
        }
        let pair = count(n, "first", "insert-delete");
        println!("{n:>6} connections: {}; insert + delete {pair:.0}", cells.join(", "));
    }
}
