//! `cargo bench -p xok-tests --bench httpd`: the baseline `httpd` under the current
//! accelerator, from Linux clients in a network namespace: `ab -c 6` (HTTP/1.0, a connection
//! per request) and `wrk -c 6` (keep-alive) for files of 0 B, 100 B, 1 KB, 10 KB and 100 KB;
//! requests per second, and packets per request from the tap's counters (both directions).
//! Each round boots a fresh guest in a fresh namespace and runs every case; rounds repeat and
//! the table gives the median and range. Writes docs/httpd-bench.json and docs/httpd-bench.md.

use std::fmt::Write as _;
use std::time::Duration;
use xok_tests::{Guest, Netns, image_with_docroot};

const SIZES: [usize; 5] = [0, 100, 1_000, 10_000, 100_000];
const ROUNDS: usize = 3;
/// Seconds each client runs.
const SECONDS: u64 = 8;
const CLIENTS: [&str; 2] = ["ab -c 6 (HTTP/1.0)", "wrk -c 6 (keep-alive)"];

/// Packets through the namespace's tap so far, both directions.
fn tap_packets(ns: &Netns) -> u64 {
    let read = |counter: &str| -> u64 { ns.exec(&["cat", &format!("/sys/class/net/tap0/statistics/{counter}")]).unwrap().trim().parse().unwrap() };
    read("rx_packets") + read("tx_packets")
}

/// The number after `label` on the line that starts with it.
fn number(output: &str, label: &str) -> f64 {
    let line = output.lines().map(str::trim_start).find(|line| line.starts_with(label)).unwrap_or_else(|| panic!("no {label:?} in:\n{output}"));
    line[label.len()..].split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no number in {line:?}"))
}

/// One client run: (requests/s, packets per request).
fn measure(ns: &Netns, client: usize, size: usize) -> (f64, f64) {
    let url = format!("http://10.0.2.15/f{size}.bin");
    let before = tap_packets(ns);
    let limit = (SECONDS + 30).to_string();
    let (rate, requests) = if client == 0 {
        let out = ns.exec(&["timeout", &limit, "ab", "-q", "-c", "6", "-t", &SECONDS.to_string(), "-n", "1000000", &url]).unwrap();
        assert!(out.contains("Failed requests:        0"), "{out}");
        (number(&out, "Requests per second:"), number(&out, "Complete requests:"))
    } else {
        let out = ns.exec(&["timeout", &limit, "wrk", "-t", "2", "-c", "6", "-d", &format!("{SECONDS}s"), &url]).unwrap();
        assert!(!out.contains("Socket errors") && !out.contains("Non-2xx"), "{out}");
        let requests = out.lines().find(|line| line.contains("requests in")).and_then(|line| line.split_whitespace().next()?.parse().ok()).unwrap();
        (number(&out, "Requests/sec:"), requests)
    };
    (rate, (tap_packets(ns) - before) as f64 / requests.max(1.0))
}

fn summary(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (values[values.len() / 2], values[0], values[values.len() - 1])
}

fn main() {
    let accel = xok_tools::qemu::accelerator();
    let files: Vec<(String, Vec<u8>)> = SIZES.iter().map(|&size| (format!("f{size}.bin"), vec![b'x'; size])).collect();
    let files: Vec<(&str, Vec<u8>)> = files.iter().map(|(path, bytes)| (path.as_str(), bytes.clone())).collect();
    let image = image_with_docroot("bench-httpd", &files);
    // results[client][size] = runs of (requests/s, packets per request)
    let mut results = vec![vec![Vec::new(); SIZES.len()]; CLIENTS.len()];
    for round in 0..ROUNDS {
        let ns = Netns::new(&format!("httpd-{round}")).unwrap();
        let args = ns.nic_args("e1000", "52:54:00:ab:cd:01");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let guest = Guest::boot_image(image.clone(), Some(&ns), "init=arpd,!strayd,httpd", &args).unwrap();
        guest.wait_for("httpd: 10.0.2.15 port 80 ready", Duration::from_secs(30)).unwrap();
        for (s, &size) in SIZES.iter().enumerate() {
            for (client, name) in CLIENTS.iter().enumerate() {
                let (rate, packets) = measure(&ns, client, size);
                println!("round {round} {size} B {name}: {rate:.0} requests/s, {packets:.1} packets/request");
                results[client][s].push((rate, packets));
            }
        }
    }
    let mut table = format!(
        "# httpd from Linux clients\n\nMeasured by `cargo bench -p xok-tests --bench httpd` ({accel}, e1000 on a tap in a namespace): the baseline \
         `httpd` (exos sockets) booted with `init=arpd,!strayd,httpd`; each client runs {SECONDS} s per case; {ROUNDS} rounds, each a fresh boot \
         in a fresh namespace. Requests/s median (min-max); packets per request counted on the tap, both directions, median.\n\n\
         | file | {0} req/s | packets/req | {1} req/s | packets/req |\n|---:|---:|---:|---:|---:|\n",
        CLIENTS[0], CLIENTS[1]
    );
    let mut json = format!("{{\n  \"command\": \"cargo bench -p xok-tests --bench httpd\",\n  \"accelerator\": \"{accel}\",\n  \"seconds\": {SECONDS},\n  \"rows\": [\n");
    for (s, size) in SIZES.iter().enumerate() {
        let mut cells = Vec::new();
        for runs in &results {
            let rate = summary(runs[s].iter().map(|r| r.0).collect());
            let packets = summary(runs[s].iter().map(|r| r.1).collect());
            cells.push(format!("{:.0} ({:.0}-{:.0}) | {:.1}", rate.0, rate.1, rate.2, packets.0));
        }
        let _ = writeln!(table, "| {size} B | {} |", cells.join(" | "));
        let runs = |client: usize, pick: fn(&(f64, f64)) -> f64| results[client][s].iter().map(|r| format!("{:.1}", pick(r))).collect::<Vec<_>>().join(", ");
        let _ = writeln!(
            json,
            "    {{\"bytes\": {size}, \"ab_c6_requests_per_s\": [{}], \"ab_c6_packets_per_request\": [{}], \"wrk_c6_requests_per_s\": [{}], \"wrk_c6_packets_per_request\": [{}]}}{}",
            runs(0, |r| r.0),
            runs(0, |r| r.1),
            runs(1, |r| r.0),
            runs(1, |r| r.1),
            if s + 1 < SIZES.len() { "," } else { "" }
        );
    }
    json.push_str("  ]\n}\n");
    print!("{table}");
    let docs = xok_tools::image::workspace_root().join("docs");
    std::fs::write(docs.join("httpd-bench.md"), &table).unwrap();
    std::fs::write(docs.join("httpd-bench.json"), &json).unwrap();
}
