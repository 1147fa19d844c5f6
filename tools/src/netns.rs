//! Network namespaces with a tap device for QEMU: the tests' private networks, and
//! `make run NETNS=1`'s. Traffic goes only to the namespace.

use anyhow::{Context, Result, bail};
use std::process::Stdio;

/// A network namespace made for a test or a run, with a tap device `tap0` at 10.0.2.2/24 for QEMU to
/// attach to. Deleted (with its devices) on drop. Needs root.
pub struct Netns {
    /// The namespace's name.
    pub name: String,
}

impl Netns {
    /// Creates the namespace and its tap device.
    pub fn new(tag: &str) -> Result<Netns> {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Netns::named(&format!("xok-{}-{tag}-{n}", std::process::id()))
    }

    /// Creates namespace `name` and its tap device, deleting first a namespace of that name a
    /// run that was killed left behind (`make run NETNS=1` uses `xok-run`).
    pub fn named(name: &str) -> Result<Netns> {
        let ns = Netns { name: name.to_string() };
        if std::path::Path::new("/run/netns").join(name).exists() {
            ns.ip(&["netns", "del", name])?;
        }
        ns.ip(&["netns", "add", &ns.name])?;
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        ns.exec(&["ip", "tuntap", "add", "dev", "tap0", "mode", "tap"])?;
        ns.exec(&["ip", "addr", "add", "10.0.2.2/24", "dev", "tap0"])?;
        ns.exec(&["ip", "link", "set", "tap0", "up"])?;
        Ok(ns)
    }

    fn ip(&self, args: &[&str]) -> Result<()> {
        let status = std::process::Command::new("ip").args(args).status().context("running ip (iproute2)")?;
        if !status.success() {
            bail!("ip {} failed ({status}); these tests need root", args.join(" "));
        }
        Ok(())
    }

    /// Runs a command inside the namespace and returns its output; fails if it fails.
    pub fn exec(&self, command: &[&str]) -> Result<String> {
        let output = std::process::Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(command)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {command:?} in {}", self.name))?;
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        if !output.status.success() {
            bail!("{command:?} failed ({}):\n{text}", output.status);
        }
        Ok(text)
    }

    /// The QEMU arguments that attach a NIC of `model` to `tap0`.
    pub fn nic_args(&self, model: &str, mac: &str) -> Vec<String> {
        vec![
            "-netdev".into(),
            "tap,id=tap,ifname=tap0,script=no,downscript=no".into(),
            "-device".into(),
            format!("{model},netdev=tap,mac={mac}"),
        ]
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}
