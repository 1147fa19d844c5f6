//! `xok-tools`: `image [OUT]` builds the kernel and initrd; `run [CMDLINE]` builds and boots them
//! in QEMU with the console on this terminal (`XOK_HTTP_PORT`: the host port forwarded to the
//! guest's port 80; `XOK_NETNS=1`: a tap in a namespace of its own instead; `XOK_PCAP=file`:
//! the capture a `tcpdump pcap` prints goes into `file`; `XOK_FAULTS=loss=5%,delay=10ms,...`
//! with `XOK_NETNS`: the tap reaches QEMU through the fault-injecting relay, `relay::Faults`
//! in both directions, seeded by `XOK_SEED`); `pcap CONSOLE_LOG OUT` extracts a
//! capture from a saved console; `plot` draws Figure 4 (docs/servers-bench.png) from the
//! benchmarks' JSON.

use anyhow::{Result, bail};
use std::path::PathBuf;
use std::io::{BufRead, BufReader, Write};
use xok_tools::{image, netns, pcap, plot, qemu, relay};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = image::workspace_root().join("build");
    match args.first().map(String::as_str) {
        Some("image") => {
            let out = args.get(1).map_or(out, PathBuf::from);
            let built = image::build(&out)?;
            println!("kernel {}\ninitrd {}", built.kernel.display(), built.initrd.display());
        }
        Some("run") => {
            let built = image::build(&out)?;
            let cmdline = args.get(1).map_or("init=hello", String::as_str);
            let config = qemu::QemuConfig::new(built, cmdline);
            // With XOK_NETNS set: an e1000 on a tap in a namespace of its own (the guest is
            // 10.0.2.15, the namespace's side 10.0.2.2). Otherwise an e1000 on QEMU's user
            // network with 127.0.0.1:XOK_HTTP_PORT (8080) forwarded to the guest's port 80.
            let netns = match std::env::var("XOK_NETNS").ok().filter(|tag| !tag.is_empty()) {
                Some(_) => Some(netns::Netns::named("xok-run")?),
                None => None,
            };
            let faults = std::env::var("XOK_FAULTS").ok().filter(|f| !f.is_empty()).map(|f| relay::Faults::parse(&f)).transpose()?;
            let relay = match (&netns, faults) {
                (Some(ns), Some(faults)) => {
                    let seed = std::env::var("XOK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
                    eprintln!("relay: {faults:?} each way, seed {seed}");
                    Some(relay::Relay::start(&ns.name, "tap0", faults, faults, seed)?)
                }
                (None, Some(_)) => bail!("FAULTS needs NETNS=1: the relay sits between the namespace's tap and QEMU"),
                _ => None,
            };
            let config = match &netns {
                Some(ns) => {
                    eprintln!("booting xok ({} accelerator) on tap0 in namespace {name}; try: sudo ip netns exec {name} curl http://10.0.2.15/", qemu::accelerator(), name = ns.name);
                    let mac = "52:54:00:12:34:56";
                    let nic = relay.as_ref().map_or_else(|| ns.nic_args("e1000", mac), |relay| relay.nic_args("e1000", mac));
                    nic.into_iter().fold(config, qemu::QemuConfig::arg)
                }
                None => {
                    let port: u16 = std::env::var("XOK_HTTP_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(8080);
                    eprintln!("booting xok ({} accelerator), http://127.0.0.1:{port}/ forwarded to its port 80; the console follows", qemu::accelerator());
                    let netdev = format!("user,id=net0,hostfwd=tcp:127.0.0.1:{port}-10.0.2.15:80");
                    config.arg("-netdev").arg(netdev).arg("-device").arg("e1000,netdev=net0")
                }
            };
            let mut command = config.command();
            if let Some(ns) = &netns {
                let mut inside = std::process::Command::new("ip");
                inside.args(["netns", "exec", &ns.name]).arg(command.get_program()).args(command.get_args());
                command = inside;
            }
            let status = match std::env::var("XOK_PCAP").ok().filter(|path| !path.is_empty()) {
                None => command.status()?,
                Some(path) => run_capturing(command, &path)?,
            };
            if let Some(relay) = relay {
                eprintln!("relay: {:?}", relay.stop()?);
            }
            match status.code() {
                Some(qemu::EXIT_SUCCESS) => eprintln!("xok shut down cleanly"),
                code => bail!("QEMU ended with {code:?}"),
            }
        }
        Some("pcap") => {
            let (Some(console), Some(out)) = (args.get(1), args.get(2)) else { bail!("usage: xok-tools pcap CONSOLE_LOG OUT.pcap") };
            let bytes = pcap::from_console(&std::fs::read_to_string(console)?);
            if bytes.is_empty() {
                bail!("{console} carries no capture (run tcpdump with the pcap option)");
            }
            std::fs::write(out, &bytes)?;
            println!("{out}: {} bytes", bytes.len());
        }
        Some("plot") => {
            let docs = image::workspace_root().join("docs");
            plot::servers_figure(&docs.join("servers-bench.json"), &docs.join("nic-ceiling.json"), &docs.join("servers-bench.png"))?;
            println!("{}", docs.join("servers-bench.png").display());
        }
        _ => bail!("usage: xok-tools image [OUT] | run [CMDLINE] | pcap CONSOLE_LOG OUT.pcap | plot"),
    }
    Ok(())
}

/// Runs QEMU with its console passed through to this terminal, except the lines that carry a
/// capture, which are written to `path` as a pcap file.
fn run_capturing(mut command: std::process::Command, path: &str) -> Result<std::process::ExitStatus> {
    let mut child = command.stdout(std::process::Stdio::piped()).spawn()?;
    let mut file = std::fs::File::create(path)?;
    let (mut records, stdout) = (0usize, std::io::stdout());
    for line in BufReader::new(child.stdout.take().expect("piped stdout")).lines() {
        let line = line?;
        match pcap::decode_line(&line) {
            Some(bytes) => {
                file.write_all(&bytes)?;
                records += 1;
            }
            None => writeln!(stdout.lock(), "{line}")?,
        }
    }
    eprintln!("{path}: {} frames captured", records.saturating_sub(1));
    Ok(child.wait()?)
}
