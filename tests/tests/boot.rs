//! Boots xok in QEMU and checks that programs run in ring 3 under page ownership vectors.

use std::time::Duration;
use xok_tests::{Guest, lines_with};
use xok_tools::qemu::EXIT_SUCCESS;

/// `free pages N (at boot M)` from the kernel's last line.
fn final_free_pages(output: &str) -> (usize, usize) {
    let line = lines_with(output, "xok: all environments have ended").pop().expect("final kernel line");
    let numbers: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    (numbers[0], numbers[1])
}

#[test]
fn hello_runs_and_the_kernel_shuts_down_cleanly() {
    let guest = Guest::boot("init=hello:alpha:beta", &[]).unwrap();
    guest.wait_for("(init) started", Duration::from_secs(30)).unwrap();
    let to_init = guest.started.elapsed();
    guest.wait_for("hello from env", Duration::from_secs(30)).unwrap();
    let to_hello = guest.started.elapsed();
    let (status, output) = guest.wait_exit(Duration::from_secs(30)).unwrap();
    assert_eq!(status, EXIT_SUCCESS, "{output}");
    assert!(output.contains(r#"with args ["alpha", "beta"]"#), "{output}");
    assert!(output.contains("(init) started"), "{output}");
    assert!(output.contains("(hello) exited with status 0"), "{output}");
    let (free, at_boot) = final_free_pages(&output);
    assert_eq!(free, at_boot, "pages leaked");
    eprintln!("QEMU start to init running: {to_init:?}; to hello's output: {to_hello:?}");
}

#[test]
fn hostile_is_contained_while_worker_finishes() {
    let guest = Guest::boot("init=hostile,worker", &[]).unwrap();
    let (status, output) = guest.wait_exit(Duration::from_secs(240)).unwrap();
    assert_eq!(status, EXIT_SUCCESS, "kernel did not survive:\n{output}");
    assert!(lines_with(&output, "xok: KERNEL").is_empty(), "{output}");

    for line in lines_with(&output, "hostile: ").iter().chain(&lines_with(&output, "xok: heap used")).chain(&lines_with(&output, "worker: done")) {
        eprintln!("{line}");
    }
    let attacks = lines_with(&output, "hostile: attack ");
    let failed: Vec<_> = attacks.iter().filter(|l| !l.contains(": REFUSED (") && !l.contains(": CONTAINED (")).collect();
    assert!(failed.is_empty(), "attacks not stopped: {failed:#?}");
    assert!(attacks.len() >= 15, "only {} attacks ran:\n{output}", attacks.len());
    // The forging attacks ran against a victim (the wire-level check is in net.rs).
    assert!(output.contains("hostile: attack forge a TCP RST for another program's connection: REFUSED (the frame's source is not the sender's)"), "{output}");
    assert!(output.contains("hostile: attack disturb the victim's sends by forging: REFUSED (it sent all its datagrams)"), "{output}");
    assert!(output.contains("hostile: attack write to the mapped file store (in a child): CONTAINED"), "{output}");
    let summary = lines_with(&output, "hostile: summary:").pop().expect("hostile finished");
    assert!(summary.ends_with(" 0 failed"), "{summary}");
    assert!(output.contains("(hostile) exited with status 0"), "{output}");
    // Every fatal attack shows up in the kernel's log as a kill that names the fault.
    for needle in [
        "killed: page fault at 0x100000 (read, protection violation)",
        "killed: page fault at 0x100000 (write, protection violation)",
        "killed: page fault at 0x100000 (execute, protection violation)",
        "killed: divide error",
        "killed: device not available",
        "killed: general protection fault",
        "(write, not present)",
        "killed: by its ancestor",
    ] {
        assert!(output.contains(needle), "missing kernel log {needle:?}:\n{output}");
    }

    assert!(output.contains("worker: primes below 200000: 17984; heap checksum 8257536"), "{output}");
    assert!(output.contains("(worker) exited with status 0"), "{output}");
    let (free, at_boot) = final_free_pages(&output);
    assert_eq!(free, at_boot, "pages leaked:\n{output}");
    // hostile's forged kernel lines reached the console marked, never as kernel lines.
    let forged: Vec<_> = lines_with(&output, "xok:").into_iter().filter(|l| l.contains("FORGED")).collect();
    assert!(forged.is_empty(), "a program forged kernel lines: {forged:#?}");
    assert_eq!(lines_with(&output, "!xok:").iter().filter(|l| l.contains("FORGED")).count(), 3, "{output}");
}

#[test]
fn syscall_costs_are_measured() {
    let guest = Guest::boot("init=!sysbench", &[]).unwrap();
    let (status, output) = guest.wait_exit(Duration::from_secs(120)).unwrap();
    assert_eq!(status, EXIT_SUCCESS, "{output}");
    let lines = lines_with(&output, "sysbench: ");
    assert_eq!(lines.len(), 2, "sysbench printed its numbers:\n{output}");
    let numbers = |line: &str| -> Vec<u64> { line.split_whitespace().filter_map(|w| w.trim_start_matches('(').parse().ok()).collect() };
    let syscalls = numbers(lines[0]);
    assert_eq!(syscalls.len(), 3, "{}", lines[0]);
    assert!(syscalls.iter().all(|&n| n > 0), "{}", lines[0]);
    // net_xmit checked and unchecked (the default NIC, QEMU's user network, drops the frames).
    assert!(lines[1].contains("checked") && lines[1].contains("unchecked"), "{}", lines[1]);
    let cycles_after = |label: &str| -> u64 {
        let at = lines[1].find(label).unwrap_or_else(|| panic!("no {label:?} in {}", lines[1])) + label.len();
        lines[1][at..].split_whitespace().next().and_then(|w| w.parse().ok()).unwrap_or_else(|| panic!("{}", lines[1]))
    };
    assert!(cycles_after("regions: checked ") > 0 && cycles_after(", unchecked ") > 0, "{}", lines[1]);
    for line in lines {
        eprintln!("{line}");
    }
}

#[test]
fn init_reports_a_missing_program_and_starts_the_rest() {
    let guest = Guest::boot("init=no-such-program,hello", &[]).unwrap();
    let (status, output) = guest.wait_exit(Duration::from_secs(60)).unwrap();
    assert_eq!(status, EXIT_SUCCESS, "{output}");
    assert!(output.contains("init: cannot start no-such-program: not found"), "{output}");
    assert!(output.contains("hello from env"), "{output}");
}

#[test]
fn a_kernel_fault_is_reported_and_fails_qemu() {
    for (kind, needle) in [
        ("page-fault", "xok: KERNEL FAULT: page fault (vector 14, error code 0x0) at rip"),
        ("panic", "xok: KERNEL PANIC: panicked at"),
        ("write-text", "xok: KERNEL FAULT: page fault (vector 14, error code 0x3)"),
        ("execute-data", "xok: KERNEL FAULT: page fault (vector 14, error code 0x11)"),
    ] {
        let guest = Guest::boot(&format!("xok.crash={kind} init=hello"), &[]).unwrap();
        let (status, output) = guest.wait_exit(Duration::from_secs(30)).unwrap();
        assert_eq!(status, xok_tools::qemu::EXIT_FAILURE, "{output}");
        assert!(output.contains(needle), "{output}");
        if kind == "page-fault" {
            assert!(output.contains("cr2 0xffff9000dead0000"), "{output}");
        }
    }
}

#[test]
fn a_panicking_program_prints_its_message_and_exits_101() {
    let guest = Guest::boot("init=hello:panic,hello", &[]).unwrap();
    let (status, output) = guest.wait_exit(Duration::from_secs(60)).unwrap();
    assert_eq!(status, EXIT_SUCCESS, "{output}");
    assert!(output.contains("panicked at userland/src/bin/hello.rs"), "{output}");
    assert!(output.contains("asked to panic"), "{output}");
    assert!(output.contains("(hello) exited with status 101"), "{output}");
    assert!(output.contains("(hello) exited with status 0"), "{output}");
}

/// The worker's run time in ms from `worker: done in N ms`.
fn worker_ms(output: &str) -> u64 {
    let line = lines_with(output, "worker: done in").pop().unwrap_or_else(|| panic!("worker finished:\n{output}"));
    line.split_whitespace().filter_map(|w| w.parse().ok()).next().expect("a number")
}

/// Boots `init=<load>worker:<rounds>:<delay>:<envs>` (the worker starts once `envs`
/// environments run) and returns the worker's time and the output.
fn time_worker(load: &str, envs: usize) -> (u64, String) {
    let guest = Guest::boot(&format!("init={load}worker:40:500:{envs}"), &[]).unwrap();
    let (status, output) = guest.wait_exit(Duration::from_secs(300)).unwrap();
    assert_eq!(status, EXIT_SUCCESS, "{output}");
    assert!(!output.contains("KERNEL"), "{output}");
    let (free, at_boot) = final_free_pages(&output);
    assert_eq!(free, at_boot, "pages leaked:\n{output}");
    (worker_ms(&output), output)
}

/// A well-behaved program keeps a bounded share of the CPU whatever a neighbour spawns: 100
/// spinners, 1 000 sleepers with timeouts, 50 flooding senders (each crowd is one process
/// tree, and CPU and link are shared between trees). The sleepers' tree gets nearly all
/// environments (`hostile%254`): a tree at an equal share could not hold 1 000.
#[test]
fn a_neighbour_keeps_its_share_beside_spinners_sleepers_and_flooders() {
    let (alone, _) = time_worker("", 0);
    let mut report = vec![format!("worker alone: {alone} ms")];
    for (crowd, share, count, seconds, bound) in [("spin", "", 100, 12, 4.0), ("idle", "%254", 1000, 30, 2.0), ("flood", "", 50, 12, 4.0)] {
        // init, hostile, the crowd and the worker.
        let envs = count + 3;
        let (ms, output) = time_worker(&format!("hostile{share}:load:{crowd}:{count}:{seconds},"), envs);
        let running = lines_with(&output, "hostile: load:").first().map(|l| l.to_string()).unwrap_or_default();
        assert!(running.contains(&format!(" {count} {crowd} children running")), "{running}\n{output}");
        let beside: usize = lines_with(&output, "worker: started beside")
            .first()
            .and_then(|l| l.split_whitespace().find_map(|w| w.parse().ok()))
            .unwrap_or(0);
        assert!(beside >= envs, "the worker started beside {beside} environments, not {envs}:\n{output}");
        let slowdown = ms as f64 / alone.max(1) as f64;
        report.push(format!("beside {count} {crowd} ({beside} environments): {ms} ms ({slowdown:.2}x)"));
        assert!(slowdown <= bound, "{crowd}: {ms} ms against {alone} ms alone:\n{output}");
    }
    eprintln!("{}", report.join("\n"));
}

/// 64-bit FNV-1a, as `files cat` prints it.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

/// Programs read the document root from the image (`exos::fs` over the initrd's public pages):
/// every file listed with its length, contents identical to the host's, a missing one refused.
#[test]
fn programs_read_the_document_root_from_the_image() {
    let guest = Guest::boot("init=files:list,files:cat:www/index.html:www/xok.txt:www/nope", &[]).unwrap();
    let (status, output) = guest.wait_exit(Duration::from_secs(60)).unwrap();
    assert_eq!(status, EXIT_SUCCESS, "{output}");
    let docroot = xok_tools::image::workspace_root().join("site");
    for (name, bytes) in xok_tools::image::docroot_files(&docroot).unwrap() {
        assert!(output.contains(&format!("files: {name} {} bytes\n", bytes.len())), "{name} not listed:\n{output}");
    }
    for name in ["index.html", "xok.txt"] {
        let bytes = std::fs::read(docroot.join(name)).unwrap();
        let line = format!("files: www/{name} {} bytes fnv1a {:016x}", bytes.len(), fnv1a(&bytes));
        assert!(output.contains(&line), "missing {line:?}:\n{output}");
    }
    assert!(output.contains("files: www/nope: no such file"), "{output}");
}
