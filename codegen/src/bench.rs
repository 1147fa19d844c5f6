//! The timing loop of the benchmarks (feature `std`).

use std::time::{Duration, Instant};
use std::vec::Vec;

/// Time per call of an operation, in nanoseconds, over several timed batches.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    /// The median batch.
    pub median: f64,
    /// The fastest batch (on a shared machine, the least disturbed figure).
    pub fastest: f64,
}

/// Times `f`: calibrates for about 2 ms, then runs `batches` batches (at least one) of
/// about `batch_seconds` each.
pub fn time_per_call(batches: usize, batch_seconds: f64, mut f: impl FnMut()) -> Timing {
    let start = Instant::now();
    let mut calibration = 0u64;
    while start.elapsed() < Duration::from_millis(2) {
        f();
        calibration += 1;
    }
    let per_call = start.elapsed().as_secs_f64() / calibration as f64;
    let iterations = ((batch_seconds / per_call) as u64).clamp(1, 10_000_000);
    let mut samples: Vec<f64> = (0..batches.max(1))
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iterations {
                f();
            }
            t.elapsed().as_secs_f64() * 1e9 / iterations as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    Timing { median: samples[samples.len() / 2], fastest: samples[0] }
}

/// The CPU's model name from `/proc/cpuinfo`, if there is one.
pub fn cpu_name() -> Option<std::string::String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split(':').nth(1).unwrap_or("").trim().into())
}
