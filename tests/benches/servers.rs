//! `cargo bench -p xok-tests --bench servers`: Figure 4 of the paper for this system --
//! Cheetah (its own TCP) against the baseline `httpd` (exos sockets), booted in turn on the
//! same image and NIC (e1000 on a tap in a namespace), under the current accelerator, from
//! Linux clients: `ab -c 6` (HTTP/1.0, a connection per request) and `wrk -c 6` (keep-alive)
//! for files of 0 B, 100 B, 1 KB, 10 KB and 100 KB; requests per second, MB/s, and packets
//! per request from the tap's counters (both directions), and the guest's idle share from the
//! kernel's accounting (`cpuwatch`). Each round boots each server fresh in
//! a fresh namespace, the servers alternating; the table gives medians and ranges. Writes
//! docs/servers-bench.json and docs/servers-bench.md.

use std::fmt::Write as _;
use std::time::Duration;
use xok_tests::{Guest, Netns, image_with_docroot};

const SIZES: [usize; 5] = [0, 100, 1_000, 10_000, 100_000];
const ROUNDS: usize = 3;
/// Seconds each client runs.
const SECONDS: u64 = 8;
const CLIENTS: [&str; 2] = ["ab -c 6 (HTTP/1.0)", "wrk -c 6 (keep-alive)"];
const SERVERS: [&str; 2] = ["cheetah", "httpd"];

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

/// The mean idle share `cpuwatch` reported in `console` (the part printed during a run).
fn idle_share(console: &str) -> f64 {
    let shares: Vec<f64> = console
        .lines()
        .filter_map(|line| line.strip_prefix("cpuwatch: idle ")?.split('%').next()?.parse().ok())
        .collect();
    if shares.is_empty() { f64::NAN } else { shares.iter().sum::<f64>() / shares.len() as f64 }
}

fn summary(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (values[values.len() / 2], values[0], values[values.len() - 1])
}

fn main() {
    let accel = xok_tools::qemu::accelerator();
    let files: Vec<(String, Vec<u8>)> = SIZES.iter().map(|&size| (format!("f{size}.bin"), vec![b'x'; size])).collect();
    let files: Vec<(&str, Vec<u8>)> = files.iter().map(|(path, bytes)| (path.as_str(), bytes.clone())).collect();
    let image = image_with_docroot("bench-servers", &files);
    // results[server][client][size] = runs of (requests/s, packets per request, guest idle %)
    let mut results = vec![vec![vec![Vec::new(); SIZES.len()]; CLIENTS.len()]; SERVERS.len()];
    for round in 0..ROUNDS {
        for (v, server) in SERVERS.iter().enumerate() {
            let ns = Netns::new(&format!("{server}-{round}")).unwrap();
            let args = ns.nic_args("e1000", "52:54:00:ab:cd:01");
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let guest = Guest::boot_image(image.clone(), Some(&ns), &format!("init=arpd,!strayd,{server},cpuwatch:period=2"), &args).unwrap();
            guest.wait_for(&format!("{server}: 10.0.2.15 port 80 ready"), Duration::from_secs(30)).unwrap();
            for (s, &size) in SIZES.iter().enumerate() {
                for (client, name) in CLIENTS.iter().enumerate() {
                    let before = guest.output().len();
                    let (rate, packets) = measure(&ns, client, size);
                    let idle = idle_share(&guest.output()[before..]);
                    println!("round {round} {server} {size} B {name}: {rate:.0} requests/s, {packets:.1} packets/request, guest idle {idle:.0}%");
                    results[v][client][s].push((rate, packets, idle));
                }
            }
        }
    }
    let mut table = format!(
        "# Cheetah against httpd (Figure 4)\n\nMeasured by `cargo bench -p xok-tests --bench servers` ({accel}, e1000 on a tap in a namespace): \
         Cheetah (its own TCP) and the baseline httpd (exos sockets), each booted with `init=arpd,!strayd,<server>` on the same image; \
         each client runs {SECONDS} s per case; {ROUNDS} rounds, each server booted fresh in a fresh namespace per round, alternating. \
         Requests/s median (min-max); MB/s of documents; packets per request counted on the tap, both directions, median.\n"
    );
    let mut json = format!("{{\n  \"command\": \"cargo bench -p xok-tests --bench servers\",\n  \"accelerator\": \"{accel}\",\n  \"seconds\": {SECONDS},\n  \"cells\": [\n");
    let mut cells = Vec::new();
    for (client, name) in CLIENTS.iter().enumerate() {
        let _ = write!(
            table,
            "\n## {name}\n\n| file | Cheetah req/s | httpd req/s | Cheetah / httpd | Cheetah MB/s | httpd MB/s | Cheetah packets/req | httpd packets/req | Cheetah guest idle | httpd guest idle |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        );
        for (s, size) in SIZES.iter().enumerate() {
            let rate = |v: usize| summary(results[v][client][s].iter().map(|r| r.0).collect());
            let packets = |v: usize| summary(results[v][client][s].iter().map(|r| r.1).collect()).0;
            let idle = |v: usize| summary(results[v][client][s].iter().map(|r| r.2).collect()).0;
            let (cheetah, httpd) = (rate(0), rate(1));
            let mb = |r: f64| r * *size as f64 / 1e6;
            let _ = writeln!(
                table,
                "| {size} B | {:.0} ({:.0}-{:.0}) | {:.0} ({:.0}-{:.0}) | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0}% | {:.0}% |",
                cheetah.0,
                cheetah.1,
                cheetah.2,
                httpd.0,
                httpd.1,
                httpd.2,
                cheetah.0 / httpd.0,
                mb(cheetah.0),
                mb(httpd.0),
                packets(0),
                packets(1),
                idle(0),
                idle(1)
            );
            for (v, server) in SERVERS.iter().enumerate() {
                let runs = |pick: fn(&(f64, f64, f64)) -> f64| results[v][client][s].iter().map(|r| format!("{:.1}", pick(r))).collect::<Vec<_>>().join(", ");
                cells.push(format!(
                    "    {{\"server\": \"{server}\", \"client\": \"{name}\", \"bytes\": {size}, \"requests_per_s\": [{}], \"packets_per_request\": [{}], \"guest_idle_percent\": [{}]}}",
                    runs(|r| r.0),
                    runs(|r| r.1),
                    runs(|r| r.2)
                ));
            }
        }
    }
    json.push_str(&cells.join(",\n"));
    json.push_str("\n  ]\n}\n");
    let docs = xok_tools::image::workspace_root().join("docs");
    let _ = writeln!(table, "\nPlot: docs/servers-bench.png (`xok-tools plot`; the NIC ceiling line from docs/nic-ceiling.json).");
    print!("{table}");
    std::fs::write(docs.join("servers-bench.md"), &table).unwrap();
    std::fs::write(docs.join("servers-bench.json"), &json).unwrap();
    if let Err(error) = xok_tools::plot::servers_figure(&docs.join("servers-bench.json"), &docs.join("nic-ceiling.json"), &docs.join("servers-bench.png")) {
        eprintln!("no plot: {error:#}");
    }
}
