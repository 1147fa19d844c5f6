//! The frame no filter matches (an IPv6 frame), timed per filter set and round: the figure of
//! issue 13 that moved between benchmark runs until the screen (docs/dpf.md section 7).
//! `cargo run --release -p dpf --example unmatched_frame`
//!
//! Eight sets of the benchmark's filters, each with its own mapping, context and frame, are
//! timed in three rounds as classified (`JitCode::classify_raw`: the set's screen rejects the
//! frame, no call), with the compiled code called all the same (`JitCode::run_code`), and
//! with the hand-written classifier, inlined and behind a call. If slow figures stayed with a
//! set, where its code or data landed would decide them; if they move between rounds of the
//! same set, it does not. This loop is smaller than the benchmark's (no choice of engine or
//! frame per call), so an inlined classifier costs less here and a call weighs more.

use std::hint::black_box;

use dpf::Dpf;
use dpf::exec::JitCode;

#[path = "../benches/common/setup.rs"]
#[allow(dead_code)] // reason: shared with the benchmark, which uses all of it
mod setup;
use setup::{HOST, build, tcp_frame};

const SETS: usize = 8;
const ROUNDS: usize = 3;

/// One set of filters with its code and its own copy of the frame.
struct Set {
    dpf: Box<Dpf>,
    hand: setup::hand::Classifier,
    jit: JitCode,
    frame: Vec<u8>,
}

/// The engines timed, by row.
const ENGINES: [&str; 4] = ["classified (screened)", "compiled code (a call)", "hand-written, inlined", "hand-written, called"];

/// Median ns per call of engine number `engine` (see [`ENGINES`]) on `set`.
fn time(set: &Set, engine: usize) -> f64 {
    let (dpf, jit, hand, frame) = (&*set.dpf, &set.jit, &set.hand, &set.frame[..]);
    xok_codegen::bench::time_per_call(11, 0.001, || match engine {
        0 => {
            black_box(jit.classify_raw(black_box(dpf), black_box(frame)));
        }
        1 => {
            black_box(jit.run_code(black_box(dpf), black_box(frame)));
        }
        2 => {
            black_box(black_box(hand).classify(black_box(frame)));
        }
        _ => {
            black_box(black_box(hand).classify_called(black_box(frame)));
        }
    })
    .median
}

fn main() {
    let sets: Vec<Set> = (0..SETS)
        .map(|i| {
            let (dpf, hand) = build(10 + i);
            let jit = JitCode::load(&dpf.compile().unwrap()).unwrap();
            let mut frame = tcp_frame([198, 51, 100, 7], 5555, HOST, 80);
            frame[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
            let unmatched = dpf.classify_interpreted(&frame);
            assert_eq!(unmatched.owner, None);
            assert!(dpf.screen().rejects(&frame), "the screen answers this frame");
            assert_eq!(jit.classify(&dpf, &frame), Some(unmatched));
            assert_eq!(dpf.resolve(&jit.run_code(&dpf, &frame)), Some(unmatched));
            assert_eq!(hand.classify(&frame), None);
            Set { dpf: Box::new(dpf), hand, jit, frame }
        })
        .collect();
    println!("ns per unmatched frame, best of 5 medians; columns: set 0..{}", SETS - 1);
    for round in 0..ROUNDS {
        let mut rows = [[f64::INFINITY; SETS]; ENGINES.len()];
        for (s, set) in sets.iter().enumerate() {
            for _ in 0..5 {
                for (engine, row) in rows.iter_mut().enumerate() {
                    row[s] = row[s].min(time(set, engine));
                }
            }
        }
        for (name, row) in ENGINES.iter().zip(&rows) {
            let cells: Vec<String> = row.iter().map(|t| format!("{t:5.2}")).collect();
            println!("round {round} {name:>22}: {}", cells.join(" "));
        }
    }
}
