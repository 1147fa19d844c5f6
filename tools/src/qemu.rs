//! The QEMU command line for booting xok, shared by `make run`, the tests and the benchmarks.

use crate::image::Image;
use std::process::Command;

/// Which accelerator to use: KVM only where a real one is loaded (`kvm_intel`/`kvm_amd`, not
/// the paravirtual `kvm_pvm`) or when `XOK_ACCEL=kvm` asks for it; TCG otherwise.
pub fn accelerator() -> &'static str {
    match std::env::var("XOK_ACCEL").as_deref() {
        Ok("kvm") => return "kvm",
        Ok("tcg") => return "tcg",
        _ => {}
    }
    let modules = std::fs::read_to_string("/proc/modules").unwrap_or_default();
    let loaded = |name: &str| modules.lines().any(|line| line.split(' ').next() == Some(name));
    let real_kvm = (loaded("kvm_intel") || loaded("kvm_amd")) && !loaded("kvm_pvm");
    if real_kvm && std::path::Path::new("/dev/kvm").exists() { "kvm" } else { "tcg" }
}

/// A QEMU invocation for xok: PC machine, serial console on stdout, isa-debug-exit, no
/// display, no reboot. Add network devices with [`QemuConfig::arg`].
#[derive(Clone, Debug)]
pub struct QemuConfig {
    /// The kernel and initrd.
    pub image: Image,
    /// The kernel command line.
    pub cmdline: String,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Extra arguments (network devices and back ends).
    pub extra: Vec<String>,
}

impl QemuConfig {
    /// A configuration with 512 MiB and no network.
    pub fn new(image: Image, cmdline: &str) -> Self {
        QemuConfig { image, cmdline: cmdline.to_string(), memory_mib: 512, extra: Vec::new() }
    }

    /// Appends a QEMU argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra.push(arg.into());
        self
    }

    /// The command (not yet started).
    pub fn command(&self) -> Command {
        let mut command = Command::new("qemu-system-x86_64");
        command
            .args(["-M", "pc", "-accel", accelerator(), "-m"])
            .arg(format!("{}M", self.memory_mib))
            .args(["-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot"])
            .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
            .arg("-kernel")
            .arg(&self.image.kernel)
            .arg("-initrd")
            .arg(&self.image.initrd)
            .arg("-append")
            .arg(&self.cmdline)
            .args(&self.extra);
        command
    }
}

/// QEMU's exit status when xok shut down cleanly (isa-debug-exit value 0x10).
pub const EXIT_SUCCESS: i32 = 33;
/// QEMU's exit status when the kernel failed (isa-debug-exit value 0x11).
pub const EXIT_FAILURE: i32 = 35;
