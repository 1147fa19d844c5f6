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

/// A benchmark's figures by number of connections, to write as Markdown and JSON.
pub struct ConnectionTable<'a> {
    /// The Markdown title.
    pub title: &'a str,
    /// The command that measured it.
    pub command: &'a str,
    /// What was measured, how, and on what (Markdown, under the title).
    pub description: &'a str,
    /// The unit of every figure.
    pub unit: &'a str,
    /// The figures' names (the columns).
    pub figures: &'a [&'a str],
    /// Per row: the number of connections and the figures, formatted.
    pub rows: Vec<(usize, Vec<std::string::String>)>,
}

impl ConnectionTable<'_> {
    /// Writes `<stem>.md` and `<stem>.json` into `docs`, and returns the Markdown.
    pub fn write(&self, docs: &std::path::Path, stem: &str) -> std::string::String {
        use std::fmt::Write as _;
        let cpu = cpu_name().unwrap_or_else(|| "unknown".into());
        let mut table = std::format!("# {}\n\n", self.title);
        let _ = writeln!(table, "`{}` on {cpu}: {}\n", self.command, self.description);
        let _ = writeln!(table, "| connections | {} |", self.figures.join(" | "));
        let _ = writeln!(table, "|---:|{}", "---:|".repeat(self.figures.len()));
        let mut json = std::string::String::new();
        let _ = writeln!(json, "{{\n  \"command\": {:?},\n  \"cpu\": {cpu:?},\n  \"unit\": {:?},", self.command, self.unit);
        let names: Vec<std::string::String> = self.figures.iter().map(|f| std::format!("{f:?}")).collect();
        let _ = writeln!(json, "  \"figures\": [{}],\n  \"rows\": [", names.join(", "));
        for (i, (connections, cells)) in self.rows.iter().enumerate() {
            let _ = writeln!(table, "| {connections} | {} |", cells.join(" | "));
            let comma = if i + 1 < self.rows.len() { "," } else { "" };
            let _ = writeln!(json, "    {{\"connections\": {connections}, \"ns\": [{}]}}{comma}", cells.join(", "));
        }
        let _ = writeln!(json, "  ]\n}}");
        std::fs::write(docs.join(std::format!("{stem}.md")), &table).expect("write the benchmark's Markdown");
        std::fs::write(docs.join(std::format!("{stem}.json")), &json).expect("write the benchmark's JSON");
        table
    }
}
