//! exos sockets under load, with real Linux clients in a network namespace the test creates:
//! many connections to one process at once, and a process killed with connections open.

use std::time::{Duration, Instant};
use xok_tests::{Guest, Netns, lines_with};

/// The Linux load client built with these tests (`src/bin/tcpload.rs`).
const TCPLOAD: &str = env!("CARGO_BIN_EXE_tcpload");

/// The number after `key=` (or before ` bytes` for `heap`) in `line`.
fn number_after(line: &str, key: &str) -> u64 {
    let rest = line.split(key).nth(1).unwrap_or_else(|| panic!("no {key} in {line:?}"));
    rest.trim_start().split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no number after {key} in {line:?}"))
}

/// 1 000 TCP connections open at once to one tcpecho process (one ring, one listen filter,
/// the demultiplexer in front of smoltcp) each echo their own message. tcpecho's heap as the
/// connections arrive gives the memory an idle connection costs.
#[test]
fn a_thousand_concurrent_connections_to_one_tcpecho_all_echo_their_own_bytes() {
    let ns = Netns::new("many").unwrap();
    let args = ns.nic_args("e1000", "52:54:00:ab:cd:01");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let guest = Guest::boot_in(Some(&ns), "init=arpd:seconds=900,!strayd,tcpecho:count=1000:backlog=128", &args).unwrap();
    let ready = guest.wait_for_line("tcpecho: 10.0.2.15 port 7 ready", Duration::from_secs(30)).unwrap();
    let heap_at_start = number_after(&ready, "heap");
    // strayd answers ping (ICMP belongs to no program).
    let ping = ns.exec(&["ping", "-c", "3", "-W", "5", "10.0.2.15"]).unwrap();
    assert!(ping.contains("3 received"), "{ping}");
    let started = Instant::now();
    let load = ns.exec(&["timeout", "400", "sh", "-c", &format!("ulimit -n 4096 && {TCPLOAD} many 10.0.2.15:7 1000")]).unwrap();
    assert!(load.contains("tcpload: 1000 connections open at once"), "{load}");
    guest.wait_for("tcpecho: served 1000 connections (at most 1000 at once)", Duration::from_secs(120)).unwrap();
    let at_1000 = guest.wait_for_line("tcpecho: 1000 connections open, heap", Duration::from_secs(10)).unwrap();
    let per_connection = (number_after(&at_1000, "heap") - heap_at_start) / 1000;
    eprintln!("{} ({:.1} s in all); an idle connection costs {per_connection} bytes of heap", load.trim(), started.elapsed().as_secs_f64());
    // Two 16 KiB buffers, smoltcp's socket and the program's own entry.
    assert!((32 * 1024..48 * 1024).contains(&per_connection), "{per_connection} bytes per idle connection");
}

/// A program killed while Linux holds 50 connections to it leaves nothing behind: the
/// kernel's free pages, filters and rings return to their counts before it started.
#[test]
fn a_program_killed_with_open_connections_leaves_no_pages_filters_or_rings() {
    let ns = Netns::new("kill").unwrap();
    let args = ns.nic_args("e1000", "52:54:00:ab:cd:01");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let guest = Guest::boot_in(Some(&ns), "init=arpd:seconds=900,supervise:tcpecho", &args).unwrap();
    guest.wait_for("tcpecho: 10.0.2.15 port 7 ready", Duration::from_secs(30)).unwrap();
    let before = guest.wait_for_line("supervise: before", Duration::from_secs(10)).unwrap();
    let dir = std::env::temp_dir().join(format!("xok-kill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("hold");
    let pid = ns.exec(&["sh", "-c", &format!("timeout 150 {TCPLOAD} hold 10.0.2.15:7 50 > {} 2>&1 & echo $!", log.display())]).unwrap();
    let pid = pid.trim().to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    let held = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("tcpload: holding 50 connections") || text.contains("tcpload: ") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(held.contains("tcpload: holding 50 connections"), "{held}");
    ns.exec(&["sh", "-c", "printf kill | nc -u -w 1 10.0.2.15 9"]).unwrap();
    let after = guest.wait_for_line("supervise: after", Duration::from_secs(60));
    let _ = std::process::Command::new("kill").arg(&pid).status();
    let _ = std::fs::remove_dir_all(&dir);
    let after = after.unwrap();
    let output = guest.output();
    assert!(output.contains("supervise: killed tcpecho"), "{output}");
    let during = lines_with(&output, "supervise: during").pop().unwrap();
    eprintln!("{before}\n{during}\n{after}");
    assert_eq!(number_after(during, "rings="), number_after(&before, "rings=") + 2, "tcpecho's rings (its packets', its listen's connection requests'), while it ran:\n{output}");
    assert!(number_after(during, "filters=") > number_after(&before, "filters="), "its listen filter");
    assert!(number_after(during, "free_pages=") + 50 * 8 < number_after(&before, "free_pages="), "its pages: 50 connections' buffers");
    for key in ["free_pages=", "filters=", "rings="] {
        assert_eq!(number_after(&after, key), number_after(&before, key), "{key}\n{before}\n{after}");
    }
}

/// A ping socket in the guest pings Linux in the namespace: each echo request is answered.
#[test]
fn a_guest_program_pings_linux_through_a_ping_socket() {
    let ns = Netns::new("ping").unwrap();
    let args = ns.nic_args("e1000", "52:54:00:ab:cd:01");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let guest = Guest::boot_in(Some(&ns), "init=arpd:seconds=5,ping:10.0.2.2:count=3", &args).unwrap();
    let (status, output) = guest.wait_exit(Duration::from_secs(60)).unwrap();
    assert!(output.contains("ping: 3 of 3 replies"), "{output}");
    assert_eq!(status, xok_tools::qemu::EXIT_SUCCESS, "{output}");
}
