//! `cargo bench -p xok-tests --bench profile`: where the guest's CPU goes while Cheetah and httpd
//! serve `ab -c 6` (HTTP/1.0) -- the measured answer to "what limits the servers" in the Figure 4
//! benchmark (`--bench servers`). Each case boots the server with the privileged `profile`
//! program (`xok_abi::profile`): the kernel times every entry by its cause (syscall or
//! interrupt), the timer samples the programs' instruction pointers (named with their symbols),
//! and idle time is the kernel's. Beside it, the host side: the CPU time of QEMU's vCPU thread
//! and of its other threads, and the whole machine's busy share, over the same window.
//! Cases alternate between the servers, [`ROUNDS`] rounds. Writes docs/servers-profile.md and
//! docs/servers-profile.json.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use xok_tests::{Guest, Netns, image_with_docroot};
use xok_tools::profile::{Profile, Symbols, breakdown, programs};

const SIZES: [usize; 2] = [0, 100_000];
const SERVERS: [&str; 2] = ["cheetah", "httpd"];
const ROUNDS: usize = 2;
/// Seconds from the profile program's start to its window, and the window.
const DELAY: u64 = 8;
const WINDOW: u64 = 10;
/// Seconds `ab` runs: from before the window opens until after it closes.
const LOAD: u64 = DELAY + WINDOW + 4;
/// Functions listed per case.
const TOP: usize = 12;

/// CPU time (clock ticks) of each thread of process `pid`, by thread id, with its name (QEMU
/// names its threads with `-name ...,debug-threads=on`: "CPU 0/TCG" is the vCPU).
fn thread_ticks(pid: u32) -> BTreeMap<String, (String, u64)> {
    let mut ticks = BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let fields: Vec<u64> = stat[close + 1..].split_whitespace().skip(11).take(2).filter_map(|f| f.parse().ok()).collect();
        ticks.insert(task.file_name().to_string_lossy().into_owned(), (stat[open + 1..close].to_string(), fields.iter().sum::<u64>()));
    }
    ticks
}

/// Frames through the namespace's tap: (sent by the guest, sent to the guest).
fn tap_frames(ns: &Netns) -> (u64, u64) {
    let read = |counter: &str| -> u64 { ns.exec(&["cat", &format!("/sys/class/net/tap0/statistics/{counter}")]).unwrap().trim().parse().unwrap() };
    (read("rx_packets"), read("tx_packets"))
}

/// The whole machine's (busy, total) clock ticks from /proc/stat.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat.lines().next().unwrap_or_default().split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    let total: u64 = fields.iter().take(8).sum();
    (total - idle, total)
}

/// What one case measured.
struct Run {
    profile: Profile,
    programs: HashMap<u32, String>,
    requests_per_s: f64,
    /// Frames per request the guest sent and received, over the window.
    frames_out: f64,
    frames_in: f64,
    /// Host: vCPU thread busy share, QEMU's other threads, whole machine busy (of all cores), in %.
    vcpu: f64,
    qemu_other: f64,
    machine: f64,
}

fn run_case(image: &xok_tools::image::Image, server: &str, size: usize, round: usize) -> Run {
    let ns = Netns::new(&format!("prof-{server}-{round}")).unwrap();
    let mut args = ns.nic_args("e1000", "52:54:00:ab:cd:01");
    args.extend(["-name".to_string(), "xok,debug-threads=on".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cmdline = format!("init=arpd,!strayd,{server},!profile:delay={DELAY}:seconds={WINDOW}");
    let guest = Guest::boot_image(image.clone(), Some(&ns), &cmdline, &args).unwrap();
    let started = guest.wait_for("profile: starting", Duration::from_secs(30)).map(|_| Instant::now()).unwrap();
    guest.wait_for(&format!("{server}: 10.0.2.15 port 80 ready"), Duration::from_secs(30)).unwrap();
    let url = format!("http://10.0.2.15/f{size}.bin");
    let client = {
        let ns_name = ns.name.clone();
        std::thread::spawn(move || {
            let out = std::process::Command::new("ip")
                .args(["netns", "exec", &ns_name, "timeout", &(LOAD + 30).to_string(), "ab", "-q", "-c", "6", "-t", &LOAD.to_string(), "-n", "10000000", &url])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
    };
    // The host side over the guest's window (timed from the profile program's first line).
    std::thread::sleep((started + Duration::from_secs(DELAY)).saturating_duration_since(Instant::now()));
    let (threads_before, machine_before, frames_before, at) = (thread_ticks(guest.pid()), machine_ticks(), tap_frames(&ns), Instant::now());
    std::thread::sleep(Duration::from_secs(WINDOW));
    let (threads_after, machine_after, frames_after, seconds) = (thread_ticks(guest.pid()), machine_ticks(), tap_frames(&ns), at.elapsed().as_secs_f64());
    let out = client.join().unwrap();
    assert!(out.contains("Failed requests:        0"), "{out}");
    let console = guest.wait_for("profile: done", Duration::from_secs(60)).unwrap();
    let profile = Profile::parse(&console).unwrap();
    let hz = 100.0; // USER_HZ, the unit of /proc's clock ticks
    let share = |ticks: u64| ticks as f64 / hz / seconds * 100.0;
    let delta = |tid: &str| threads_after.get(tid).map_or(0, |t| t.1).saturating_sub(threads_before.get(tid).map_or(0, |t| t.1));
    let vcpu = threads_after.iter().filter(|(_, (name, _))| name.starts_with("CPU ")).map(|(tid, _)| delta(tid)).sum::<u64>();
    let all: u64 = threads_after.keys().map(|tid| delta(tid)).sum();
    let requests_per_s = out.lines().find_map(|line| line.strip_prefix("Requests per second:")?.split_whitespace().next()?.parse().ok()).unwrap();
    let (busy, total) = (machine_after.0 - machine_before.0, (machine_after.1 - machine_before.1).max(1));
    let requests = requests_per_s * seconds;
    Run {
        frames_out: (frames_after.0 - frames_before.0) as f64 / requests,
        frames_in: (frames_after.1 - frames_before.1) as f64 / requests,
        programs: programs(&console),
        profile,
        requests_per_s,
        vcpu: share(vcpu),
        qemu_other: share(all - vcpu),
        machine: busy as f64 * 100.0 / total as f64,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let accel = xok_tools::qemu::accelerator();
    let files: Vec<(String, Vec<u8>)> = SIZES.iter().map(|&size| (format!("f{size}.bin"), vec![b'x'; size])).collect();
    let files: Vec<(&str, Vec<u8>)> = files.iter().map(|(path, bytes)| (path.as_str(), bytes.clone())).collect();
    let image = image_with_docroot("bench-profile", &files);
    let symbols: HashMap<String, Symbols> = SERVERS
        .iter()
        .chain(&["arpd", "strayd", "profile"])
        .map(|name| (name.to_string(), Symbols::load(&xok_tools::image::built_program(name)).unwrap()))
        .collect();
    let mut runs: BTreeMap<(usize, usize), Vec<Run>> = BTreeMap::new();
    for round in 0..ROUNDS {
        for (s, &size) in SIZES.iter().enumerate() {
            for (v, server) in SERVERS.iter().enumerate() {
                let run = run_case(&image, server, size, round);
                println!(
                    "round {round} {server} {size} B: {:.0} requests/s, guest idle {:.1}%, kernel {:.1}%, programs {:.1}%, {} samples; host vCPU thread {:.0}%",
                    run.requests_per_s,
                    run.profile.idle_ns as f64 * 100.0 / run.profile.window_ns as f64,
                    run.profile.kernel_ns() as f64 * 100.0 / run.profile.window_ns as f64,
                    run.profile.user_ns() as f64 * 100.0 / run.profile.window_ns as f64,
                    run.profile.sample_count(),
                    run.vcpu
                );
                runs.entry((s, v)).or_default().push(run);
            }
        }
    }
    let mut table = format!(
        "# Where the guest's CPU goes: Cheetah and httpd under `ab -c 6`\n\n\
         Measured by `cargo bench -p xok-tests --bench profile` ({accel}, e1000 on a tap in a namespace): each server booted with \
         `init=arpd,!strayd,<server>,!profile:delay={DELAY}:seconds={WINDOW}` while `ab -c 6` (HTTP/1.0) runs; {ROUNDS} rounds, servers \
         alternating. The kernel times every stay by the cause it was entered for (`xok_abi::profile`: a syscall, or an interrupt \
         vector -- 32 is the timer, 43 the e1000) and times the NIC's doorbell (the transmit register write, inside which QEMU's \
         device model sends the frames) apart; idle is time halted. A program's share is its share of the timer's ticks (100 Hz; \
         a tick that comes while the kernel runs is no sample), named by the instruction pointer; what is left is the way into \
         and out of the kernel, which no cause times. \"µs/request\" is a share of the window divided by the requests served in \
         it. Frames are counted on the tap. Host rows: CPU of QEMU's vCPU thread and of its other threads (the tap, the main \
         loop), and the whole machine's busy share of its cores, over the same window.\n"
    );
    let mut json_cases = Vec::new();
    for (s, &size) in SIZES.iter().enumerate() {
        let _ = write!(table, "\n## {size} B documents\n\n| | Cheetah | httpd |\n|---|---:|---:|\n");
        let cases: Vec<&Vec<Run>> = (0..SERVERS.len()).map(|v| &runs[&(s, v)]).collect();
        let rate: Vec<f64> = cases.iter().map(|runs| median(runs.iter().map(|r| r.requests_per_s).collect())).collect();
        let _ = writeln!(table, "| requests/s (median) | {:.0} | {:.0} |", rate[0], rate[1]);
        for (label, pick) in [
            ("frames sent per request", (|r: &Run| r.frames_out) as fn(&Run) -> f64),
            ("frames received per request", |r: &Run| r.frames_in),
        ] {
            let _ = writeln!(table, "| {label} | {:.1} | {:.1} |", median(cases[0].iter().map(pick).collect()), median(cases[1].iter().map(pick).collect()));
        }
        for (label, pick) in [
            ("host: QEMU vCPU thread busy", (|r: &Run| r.vcpu) as fn(&Run) -> f64),
            ("host: QEMU other threads", |r: &Run| r.qemu_other),
            ("host: machine busy (all cores)", |r: &Run| r.machine),
        ] {
            let _ = writeln!(table, "| {label} | {:.0}% | {:.0}% |", median(cases[0].iter().map(pick).collect()), median(cases[1].iter().map(pick).collect()));
        }
        // Every part either server showed, with its median share and its cost per request.
        let shares: Vec<BTreeMap<String, f64>> = cases
            .iter()
            .map(|runs| {
                let breakdowns: Vec<_> = runs.iter().map(|r| breakdown(&r.profile, &r.programs, &symbols)).collect();
                let names: std::collections::BTreeSet<String> = breakdowns.iter().flat_map(|b| b.parts.iter().map(|p| p.0.clone())).collect();
                names
                    .into_iter()
                    .map(|name| {
                        let values = breakdowns.iter().map(|b| b.parts.iter().find(|p| p.0 == name).map_or(0.0, |p| p.1)).collect();
                        (name, median(values))
                    })
                    .collect()
            })
            .collect();
        let mut names: Vec<&String> = shares.iter().flat_map(|m| m.keys()).collect();
        names.sort_by(|a, b| {
            let most = |n: &String| shares.iter().map(|m| m.get(n).copied().unwrap_or(0.0)).fold(0.0, f64::max);
            most(b).total_cmp(&most(a))
        });
        names.dedup();
        let mut parts_json = Vec::new();
        for name in names {
            let share = |v: usize| shares[v].get(name).copied().unwrap_or(0.0);
            let per_request = |v: usize| share(v) / 100.0 * 1e6 / rate[v].max(1e-9);
            if share(0) < 0.05 && share(1) < 0.05 {
                continue;
            }
            let _ = writeln!(table, "| {name} | {:.1}% ({:.0} µs/request) | {:.1}% ({:.0} µs/request) |", share(0), per_request(0), share(1), per_request(1));
            parts_json.push(format!("{{\"part\": \"{name}\", \"cheetah_percent\": {:.2}, \"httpd_percent\": {:.2}}}", share(0), share(1)));
        }
        let frames_out: Vec<f64> = cases.iter().map(|runs| median(runs.iter().map(|r| r.frames_out).collect())).collect();
        let per_frame = |v: usize, part: &str| shares[v].get(part).copied().unwrap_or(0.0) / 100.0 * 1e6 / (rate[v] * frames_out[v]).max(1e-9);
        for part in ["kernel: NetXmit", "kernel: NicDoorbell"] {
            let _ = writeln!(table, "| {part}, µs per frame sent | {:.1} | {:.1} |", per_frame(0, part), per_frame(1, part));
        }
        for (v, server) in SERVERS.iter().enumerate() {
            let _ = write!(table, "\n{server}, {size} B: the busiest functions (samples of all rounds)\n\n| program | function | samples | share of the window |\n|---|---|---:|---:|\n");
            let mut merged: BTreeMap<(String, String), (u32, f64)> = BTreeMap::new();
            for run in cases[v] {
                for (program, function, share, count) in breakdown(&run.profile, &run.programs, &symbols).functions {
                    let entry = merged.entry((program, function)).or_default();
                    entry.0 += count;
                    entry.1 += share / ROUNDS as f64;
                }
            }
            let mut merged: Vec<_> = merged.into_iter().collect();
            merged.sort_by_key(|m| std::cmp::Reverse(m.1.0));
            for ((program, function), (count, share)) in merged.into_iter().take(TOP) {
                let _ = writeln!(table, "| {program} | `{function}` | {count} | {share:.1}% |");
            }
        }
        json_cases.push(format!(
            "    {{\"bytes\": {size}, \"cheetah_requests_per_s\": {:.1}, \"httpd_requests_per_s\": {:.1}, \"parts\": [{}]}}",
            rate[0],
            rate[1],
            parts_json.join(", ")
        ));
    }
    let json = format!(
        "{{\n  \"command\": \"cargo bench -p xok-tests --bench profile\",\n  \"accelerator\": \"{accel}\",\n  \"window_seconds\": {WINDOW},\n  \"cases\": [\n{}\n  ]\n}}\n",
        json_cases.join(",\n")
    );
    print!("{table}");
    let docs = xok_tools::image::workspace_root().join("docs");
    std::fs::write(docs.join("servers-profile.md"), &table).unwrap();
    std::fs::write(docs.join("servers-profile.json"), &json).unwrap();
}
