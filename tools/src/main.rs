//! `xok-tools`: `image [OUT]` builds the kernel and initrd; `run [CMDLINE]` builds and boots them
//! in QEMU with the console on this terminal.

use anyhow::{Result, bail};
use std::path::PathBuf;
use xok_tools::{image, qemu};

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
            // One e1000 on QEMU's user network, so the NIC drivers have something to find.
            let config = qemu::QemuConfig::new(built, cmdline).arg("-netdev").arg("user,id=net0").arg("-device").arg("e1000,netdev=net0");
            eprintln!("booting xok ({} accelerator); the console follows", qemu::accelerator());
            let status = config.command().status()?;
            match status.code() {
                Some(qemu::EXIT_SUCCESS) => eprintln!("xok shut down cleanly"),
                code => bail!("QEMU ended with {code:?}"),
            }
        }
        _ => bail!("usage: xok-tools image [OUT] | run [CMDLINE]"),
    }
    Ok(())
}
