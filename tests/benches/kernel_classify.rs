//! `cargo bench -p xok-tests --bench kernel_classify`: the kernel's time classifying one
//! received frame with DPF, booted in QEMU (issue 13, point 4: the kernel runs the same
//! compiled code as the host benchmark). `netprobe recv` installs a UDP-port filter, a TCP
//! listen and N connections under it on one ring, waits for the kernel's code to be current,
//! and reads the kernel's `Classify` time (the two TSC reads around `Classifier::classify` in
//! the receive path, `xok_abi::profile::CLASSIFY_CAUSE`) before and after the host sends it
//! 20 000 frames: UDP frames to its port, or TCP segments of its last connection.
//! Interleaved rounds; the median per case. Writes docs/<name>.json and docs/<name>.md, where
//! <name> is `$KERNEL_CLASSIFY_OUT` or `kernel-classify` (a comparison against another
//! version of dpf writes its own name).

use std::fmt::Write as _;
use std::time::{Duration, Instant};
use xok_tests::{Guest, Wire, lines_with};

const MAC: &str = "52:54:00:ab:cd:01";
const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xab, 0xcd, 0x01];
const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
/// Frames per run, sent in bursts of 64 with a pause (as the NIC benchmark's receive test).
const FRAMES: usize = 20_000;
const PAUSE_US: u64 = 4000;
const ROUNDS: usize = 9;
const CONNECTIONS: [usize; 2] = [1, 1000];
const KINDS: [&str; 2] = ["connection", "udp"];

/// The frame of `kind` for a guest with `conns` connections installed (the last one's).
fn frame(kind: &str, conns: usize) -> Vec<u8> {
    match kind {
        "connection" => {
            let i = conns - 1;
            let remote = [172, 16 + (i >> 16) as u8, (i >> 8) as u8, i as u8];
            xok_tests::frames::tcp(GUEST_MAC, HOST_MAC, remote, 1024 + (i % 60_000) as u16, 80)
        }
        _ => xok_tests::frames::udp(GUEST_MAC, HOST_MAC, 9200, &[7; 18]),
    }
}

/// One boot: (ns per classified frame, frames classified into the ring).
fn run(kind: &str, conns: usize) -> (u64, u64) {
    let (wire, args) = Wire::new("e1000", MAC).unwrap();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cmdline = format!("init=!netprobe:recv:port=9200:count={FRAMES}:entries=512:quiet:poll:seconds=60:conns={conns}:classify");
    let guest = Guest::boot(&cmdline, &args).unwrap();
    guest.wait_for("netprobe: port 9200 ready", Duration::from_secs(120)).unwrap();
    // QEMU's e1000 refuses frames for a second after the driver's RCTL write (nic.rs).
    std::thread::sleep(Duration::from_millis(1500));
    let frame = frame(kind, conns);
    for n in 0..FRAMES {
        wire.send(&frame).unwrap();
        if n % 64 == 63 {
            std::thread::sleep(Duration::from_micros(PAUSE_US));
        }
    }
    let (_, output) = guest.wait_exit(Duration::from_secs(180)).unwrap();
    let line = lines_with(&output, "netprobe: port 9200 classify:").pop().unwrap_or_else(|| panic!("no classify line in:\n{output}")).to_string();
    // "netprobe: port 9200 classify: NS ns for F frames, P ns per frame"
    let numbers: Vec<u64> = line.split(|c: char| !c.is_ascii_digit()).filter_map(|s| s.parse().ok()).collect();
    let (ns, frames) = (numbers[1], numbers[2]);
    assert!(frames >= FRAMES as u64 / 2, "only {frames} of {FRAMES} frames classified into the ring:\n{line}");
    (ns / frames.max(1), frames)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let started = Instant::now();
    let accel = xok_tools::qemu::accelerator();
    let name = std::env::var("KERNEL_CLASSIFY_OUT").unwrap_or_else(|_| "kernel-classify".into());
    let cases: Vec<(usize, &str)> = CONNECTIONS.iter().flat_map(|c| KINDS.map(|k| (*c, k))).collect();
    let mut results: Vec<Vec<(u64, u64)>> = vec![Vec::new(); cases.len()];
    for round in 0..ROUNDS {
        for (i, (conns, kind)) in cases.iter().enumerate() {
            let result = run(kind, *conns);
            println!("round {round}: {conns} connections, {kind} frames: {} ns per frame ({} frames)", result.0, result.1);
            results[i].push(result);
        }
    }
    let mut table = String::from("| connections | frame | ns per frame (median) | all rounds (ns) | frames classified (median run) |\n|---:|---|---:|---|---:|\n");
    let mut json = format!("{{\n  \"accelerator\": \"{accel}\",\n  \"frames_per_run\": {FRAMES},\n  \"cases\": [\n");
    for (i, ((conns, kind), runs)) in cases.iter().zip(&mut results).enumerate() {
        runs.sort_by_key(|r| r.0);
        let (median, frames) = runs[runs.len() / 2];
        let all: Vec<String> = runs.iter().map(|r| r.0.to_string()).collect();
        let _ = writeln!(table, "| {conns} | {kind} | {median} | {} | {frames} |", all.join(", "));
        let _ = writeln!(
            json,
            "    {{\"connections\": {conns}, \"frame\": \"{kind}\", \"ns_per_frame\": {median}, \"rounds_ns\": [{}], \"frames\": {frames}}}{}",
            all.join(", "),
            if i + 1 < cases.len() { "," } else { "" }
        );
    }
    json.push_str("  ]\n}\n");
    let docs = xok_tools::image::workspace_root().join("docs");
    std::fs::write(docs.join(format!("{name}.json")), &json).unwrap();
    let header = format!(
        "# In-kernel DPF classification per frame\n\nMeasured by `cargo bench -p xok-tests --bench kernel_classify` ({accel}, {} s, {ROUNDS} interleaved rounds, \
         {FRAMES} frames a run through an e1000 on `-netdev dgram`). The kernel's time inside `Classifier::classify` for each received frame \
         (two TSC reads around it; under TCG each read is an emulator call, in every figure alike), over the frames that reached the ring. \
         Installed: netprobe's UDP-port filter, a TCP listen and N connections under it, besides arpd's and the kernel's own; \
         *connection* frames are segments of the last connection, *udp* frames go to the UDP port.\n\n",
        started.elapsed().as_secs()
    );
    std::fs::write(docs.join(format!("{name}.md")), header + &table).unwrap();
    println!("{table}");
}
