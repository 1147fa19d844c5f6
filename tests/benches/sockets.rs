//! `cargo bench -p xok-tests --bench sockets`: exos sockets as Linux clients see them under
//! the current accelerator -- TCP connections accepted per second (connect, echo a byte,
//! close, again) and echo round trips per second on one connection (64 bytes with
//! TCP_NODELAY) -- for `tcpecho` on e1000 and on tulip, from a network namespace the benchmark
//! creates. The NICs alternate within each of several rounds (the machine is noisy); the
//! table gives the median and the range. Writes docs/sockets-bench.json and
//! docs/sockets-bench.md.

use std::fmt::Write as _;
use std::time::Duration;
use xok_tests::{Guest, Netns, lines_with};

const TCPLOAD: &str = env!("CARGO_BIN_EXE_tcpload");
const ROUNDS: usize = 3;
/// Seconds each client runs.
const SECONDS: u64 = 10;
const MODELS: [&str; 2] = ["e1000", "tulip"];

/// The rate (the number before ` accepts/s` or ` round trips/s`) in tcpload's output.
fn rate(output: &str, unit: &str) -> f64 {
    let line = lines_with(output, "tcpload:").pop().unwrap_or_else(|| panic!("no result:\n{output}"));
    let before = line.split(unit).next().unwrap_or_default();
    before.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no rate in {line:?}"))
}

/// One boot in a fresh namespace (a used one keeps the client's TIME_WAIT sockets, which
/// slow Linux's search for a free local port several times over): (accepts/s, round trips/s).
fn measure(model: &str, round: usize) -> (f64, f64) {
    let ns = &Netns::new(&format!("bench-{model}-{round}")).unwrap();
    let args = ns.nic_args(model, "52:54:00:ab:cd:01");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let guest = Guest::boot_in(Some(ns), "init=arpd:seconds=900,tcpecho:backlog=64", &args).unwrap();
    guest.wait_for("tcpecho: 10.0.2.15 port 7 ready", Duration::from_secs(30)).unwrap();
    let limit = (SECONDS + 60).to_string();
    let accepts = ns.exec(&["timeout", &limit, TCPLOAD, "accepts", "10.0.2.15:7", &SECONDS.to_string()]).unwrap();
    let rtt = ns.exec(&["timeout", &limit, TCPLOAD, "rtt", "10.0.2.15:7", &SECONDS.to_string()]).unwrap();
    (rate(&accepts, " accepts/s"), rate(&rtt, " round trips/s"))
}

fn summary(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (values[values.len() / 2], values[0], values[values.len() - 1])
}

fn main() {
    let accel = xok_tools::qemu::accelerator();
    let mut results: Vec<Vec<(f64, f64)>> = vec![Vec::new(); MODELS.len()];
    for round in 0..ROUNDS {
        for (i, model) in MODELS.iter().enumerate() {
            let (accepts, round_trips) = measure(model, round);
            println!("round {round} {model}: {accepts:.1} accepts/s, {round_trips:.1} round trips/s");
            results[i].push((accepts, round_trips));
        }
    }
    let mut table = format!(
        "# exos sockets from Linux clients\n\nMeasured by `cargo bench -p xok-tests --bench sockets` ({accel}): `tcpecho` (exos sockets, one `poll` loop) \
         against `tcpload` in a fresh network namespace on a tap device for each boot; each client runs {SECONDS} s; {ROUNDS} rounds, the NICs alternating. \
         Median (min-max).\n\n| NIC | connections accepted/s | echo round trips/s (64 B) |\n|---|---:|---:|\n"
    );
    let mut json = format!("{{\n  \"command\": \"cargo bench -p xok-tests --bench sockets\",\n  \"accelerator\": \"{accel}\",\n  \"seconds\": {SECONDS},\n  \"nics\": [\n");
    for (i, model) in MODELS.iter().enumerate() {
        let accepts = summary(results[i].iter().map(|r| r.0).collect());
        let round_trips = summary(results[i].iter().map(|r| r.1).collect());
        let _ = writeln!(table, "| {model} | {:.0} ({:.0}-{:.0}) | {:.0} ({:.0}-{:.0}) |", accepts.0, accepts.1, accepts.2, round_trips.0, round_trips.1, round_trips.2);
        let runs = |pick: fn(&(f64, f64)) -> f64| results[i].iter().map(|r| format!("{:.1}", pick(r))).collect::<Vec<_>>().join(", ");
        let _ = writeln!(
            json,
            "    {{\"model\": \"{model}\", \"accepts_per_s\": [{}], \"round_trips_per_s\": [{}]}}{}",
            runs(|r| r.0),
            runs(|r| r.1),
            if i + 1 < MODELS.len() { "," } else { "" }
        );
    }
    json.push_str("  ]\n}\n");
    print!("{table}");
    let docs = xok_tools::image::workspace_root().join("docs");
    std::fs::write(docs.join("sockets-bench.md"), &table).unwrap();
    std::fs::write(docs.join("sockets-bench.json"), &json).unwrap();
}
