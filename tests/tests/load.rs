//! Floods and load against Cheetah and httpd, from Linux clients in a namespace the test
//! creates (issue 12): a SYN flood from random sources while curl asks 100 times (at least 95
//! answered), `ab -n 20000 -c 100` and `wrk -c 200 -d 30s` without a failed request, an nmap
//! TCP/UDP port scan with OS detection, and after all of it the server still answers, strayd
//! still answers ping; the whole round runs twice, and the free pages after the second are
//! where they were after the first (a program's heap keeps the pages it grew to; no round may
//! take more). Every load is bounded in count and time.

use std::sync::OnceLock;
use std::time::Duration;
use xok_tests::{Guest, Netns, image_with_docroot};
use xok_tools::image::Image;

const URL: &str = "http://10.0.2.15";
/// The most pages a second round of the same load may end with fewer than the first. What
/// holds memory after a round is what its peak left: the small-object heap (connection
/// records, a few hundred bytes each) grows 16 pages at a time and keeps its peak, and tables
/// sized by the connections open at once may double once more. The peak differs between
/// rounds, most when both tests run at once (CI): httpd measured 21 and 60 pages lower there
/// and 19 and 40 higher alone; Cheetah equal in 5 runs. A leak per connection of 26 bytes or
/// more (20 000 connections a round) passes the bound; smaller ones are the host tests' to
/// find (Cheetah's 16-byte half-open entries were found by printing capacities, and are
/// pinned by `cheetah::sim`).
const ROUND_SPREAD_PAGES: usize = 128;
/// How long the machine is left after a round before its free pages are read: connections the
/// flood and the scan left half-open time out (exos: 30 s; Cheetah's retries give up sooner)
/// and freed page runs go back to the kernel a second after their last use.
const SETTLE_WAIT: Duration = Duration::from_secs(32);

/// The free-page count of the last `cpuwatch` line in `console`.
fn free_pages(console: &str) -> usize {
    console
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("cpuwatch: idle ")?.split(", ").nth(1)?.strip_suffix(" free pages")?.parse().ok())
        .unwrap_or_else(|| panic!("no cpuwatch line:\n{console}"))
}

/// The free pages once the machine has settled: two `cpuwatch` reports in a row that agree.
fn settled_free_pages(guest: &Guest) -> usize {
    let mut last = free_pages(&guest.output());
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(1100));
        let now = free_pages(&guest.output());
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

/// The server's last report of its counters (Cheetah's every 10 s; httpd's when it dropped
/// something).
fn last_report(console: &str, server: &str) -> String {
    let counters = [format!("{server}: accepted"), format!("{server}: dropped")];
    console.lines().rev().find(|line| counters.iter().any(|prefix| line.starts_with(prefix.as_str()))).unwrap_or("(none)").to_string()
}

fn sh(ns: &Netns, guest: &Guest, script: &str) -> String {
    ns.exec(&["timeout", "150", "sh", "-c", script]).unwrap_or_else(|error| panic!("{error}\nconsole:\n{}", guest.output()))
}

fn alive(ns: &Netns, guest: &Guest, server: &str, after: &str) {
    let body = sh(ns, guest, &format!("curl -sS --max-time 10 {URL}/f1000.bin | sha256sum"));
    let expected = sh(ns, guest, "head -c 1000 /dev/zero | tr '\\0' 'x' | sha256sum");
    assert_eq!(body, expected, "{server} after {after}: the body differs");
    let ping = sh(ns, guest, "ping -c 2 -W 2 10.0.2.15 | grep -c 'bytes from' || true");
    assert_eq!(ping.trim(), "2", "strayd answers ping after {after} ({server})");
}

/// The image both tests boot (built once: the tests run in parallel).
fn image() -> Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| image_with_docroot("load", &[("f1000.bin", vec![b'x'; 1000])])).clone()
}

/// One round of the loads: a SYN flood from random sources (40 000 SYNs, at most 60 s) while
/// curl asks 100 times, `ab -n 20000 -c 100`, `wrk -c 200 -d 30s`, and an nmap scan; liveness
/// after each. Returns the curls answered during the flood and ab's and wrk's rates.
fn round(ns: &Netns, guest: &Guest, server: &str) -> (usize, String, String) {
    let flood = sh(ns, guest, "timeout 60 hping3 -q -S -p 80 --rand-source -c 40000 -i u200 10.0.2.15 > /dev/null 2>&1 & echo $!");
    // One line per request: curl's exit code and the HTTP status (7: no connection, 28: the
    // time ran out, 52/56: the connection closed or was reset).
    let outcomes = sh(
        ns,
        guest,
        &format!("for i in $(seq 100); do code=$(curl -s -o /dev/null --max-time 5 -w '%{{http_code}}' {URL}/f1000.bin); echo \"$? $code\"; done"),
    );
    let _ = std::process::Command::new("kill").arg(flood.trim()).status();
    let answered = outcomes.lines().filter(|line| *line == "0 200").count();
    let mut failures = std::collections::BTreeMap::<&str, usize>::new();
    for line in outcomes.lines().filter(|line| *line != "0 200") {
        *failures.entry(line).or_default() += 1;
    }
    println!("{server}: {answered} of 100 curl requests answered during the SYN flood; the others: {failures:?}");
    assert!(
        answered >= 95,
        "{server}: {answered} of 100 curl requests answered during the SYN flood; the others (curl's exit code, HTTP status: count): {failures:?}; the server's last counters: {}",
        last_report(&guest.output(), server)
    );
    alive(ns, guest, server, "the SYN flood");

    let ab = sh(ns, guest, &format!("ab -q -n 20000 -c 100 {URL}/f1000.bin 2>&1"));
    assert!(ab.contains("Complete requests:      20000") && ab.contains("Failed requests:        0") && !ab.contains("Non-2xx"), "{server}: {ab}");
    // wrk counts a request slower than its default 2 s as a socket error though it succeeds
    // (Cheetah, twice in a row on a busy machine: 1 of ~470 000); failures are what the test
    // counts, so wrk waits 10 s. Why one request took over 2 s is not established yet.
    let wrk = sh(ns, guest, &format!("wrk -t 2 -c 200 -d 30s --timeout 10s {URL}/f1000.bin 2>&1"));
    assert!(!wrk.contains("Socket errors") && !wrk.contains("Non-2xx"), "{server}: {wrk}");
    alive(ns, guest, server, "ab and wrk");

    let nmap = sh(ns, guest, "nmap -n -Pn -sS -sU -O -T4 --top-ports 100 --max-retries 2 --host-timeout 120s 10.0.2.15 2>&1");
    assert!(nmap.contains("80/tcp") && nmap.contains("open"), "{server}: {nmap}");
    alive(ns, guest, server, "the nmap scan");
    let rate = |text: &str, label: &str| text.lines().find(|line| line.starts_with(label)).unwrap_or_default().to_string();
    (answered, rate(&ab, "Requests per second:"), rate(&wrk, "Requests/sec:"))
}

fn survives_floods_and_load(server: &str) {
    let ns = Netns::new(&format!("load-{server}")).unwrap();
    let args = ns.nic_args("e1000", "52:54:00:ab:cd:01");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let guest = Guest::boot_image(image(), Some(&ns), &format!("init=arpd,!strayd,{server},cpuwatch:period=1"), &args).unwrap();
    guest.wait_for(&format!("{server}: 10.0.2.15 port 80 ready"), Duration::from_secs(30)).unwrap();
    guest.wait_for("cpuwatch: idle", Duration::from_secs(10)).unwrap();
    // Two rounds: the first grows each program's heap to its working size (a heap keeps the
    // pages it grew to); the second must take no more.
    let first = round(&ns, &guest, server);
    std::thread::sleep(SETTLE_WAIT);
    let before = settled_free_pages(&guest);
    println!("after round 1: {}", last_report(&guest.output(), server));
    let second = round(&ns, &guest, server);
    std::thread::sleep(SETTLE_WAIT);
    let after = settled_free_pages(&guest);
    println!("after round 2: {}", last_report(&guest.output(), server));
    println!(
        "{server}: curl answered during the SYN flood {}/100 and {}/100; ab -n 20000 -c 100: {} / {}; wrk -c 200 -d 30s: {} / {}; free pages after round 1: {before}, after round 2: {after}",
        first.0, second.0, first.1, second.1, first.2, second.2
    );
    assert!(
        before.saturating_sub(after) <= ROUND_SPREAD_PAGES,
        "{server}: the second round took {} pages the first did not give back (allowed: {ROUND_SPREAD_PAGES})",
        before - after
    );
}

/// Cheetah's half-open queue and timer heap drop stale entries, and its TIME_WAIT table takes
/// its whole room at the first close (before: 194-580 pages lower in 5 runs of 6).
#[test]
fn cheetah_survives_a_syn_flood_ab_wrk_and_nmap() {
    survives_floods_and_load("cheetah");
}

/// httpd's connection buffers are page runs that go back to the kernel, and half-open
/// connections time out (before: 0-160 pages lower, the peak of its buffers kept).
#[test]
fn httpd_survives_a_syn_flood_ab_wrk_and_nmap() {
    survives_floods_and_load("httpd");
}
