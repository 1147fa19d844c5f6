//! `xok-tools`: `image [OUT]` builds the kernel and initrd; `run [CMDLINE]` builds and boots them
//! in QEMU with the console on this terminal (with `XOK_PCAP=file`, the capture a `tcpdump
//! pcap` prints goes into `file` instead); `pcap CONSOLE_LOG OUT` extracts a capture from a
//! saved console.

use anyhow::{Result, bail};
use std::path::PathBuf;
use std::io::{BufRead, BufReader, Write};
use xok_tools::{image, pcap, qemu};

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
            // One e1000 on QEMU's user network (the guest is 10.0.2.15, the host 10.0.2.2), with
            // 127.0.0.1:XOK_HTTP_PORT (8080) forwarded to the guest's port 80.
            let port: u16 = std::env::var("XOK_HTTP_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(8080);
            let netdev = format!("user,id=net0,hostfwd=tcp:127.0.0.1:{port}-10.0.2.15:80");
            let config = qemu::QemuConfig::new(built, cmdline).arg("-netdev").arg(&netdev).arg("-device").arg("e1000,netdev=net0");
            eprintln!("booting xok ({} accelerator), http://127.0.0.1:{port}/ forwarded to its port 80; the console follows", qemu::accelerator());
            let status = match std::env::var("XOK_PCAP").ok().filter(|path| !path.is_empty()) {
                None => config.command().status()?,
                Some(path) => run_capturing(config, &path)?,
            };
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
        _ => bail!("usage: xok-tools image [OUT] | run [CMDLINE] | pcap CONSOLE_LOG OUT.pcap"),
    }
    Ok(())
}

/// Runs QEMU with its console passed through to this terminal, except the lines that carry a
/// capture, which are written to `path` as a pcap file.
fn run_capturing(config: qemu::QemuConfig, path: &str) -> Result<std::process::ExitStatus> {
    let mut child = config.command().stdout(std::process::Stdio::piped()).spawn()?;
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
