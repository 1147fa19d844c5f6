//! The harness for tests that boot xok in QEMU: build the image once, start QEMU under a hard
//! timeout, collect the serial console, and wait for conditions with deadlines (never fixed
//! sleeps).

use anyhow::{Context, Result, anyhow, bail};
use std::io::Read;
use std::process::{Child, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};
use xok_tools::image::{self, Image};
use xok_tools::qemu::QemuConfig;

/// Builds the kernel and initrd once per test binary.
pub fn image() -> Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let out = image::workspace_root().join("build");
            image::build(&out).expect("building the xok image")
        })
        .clone()
}

/// Scales deadlines for slow machines: `XOK_TEST_TIME_SCALE=2` doubles them.
pub fn scaled(duration: Duration) -> Duration {
    let scale: f64 = std::env::var("XOK_TEST_TIME_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0);
    duration.mul_f64(scale)
}

#[derive(Default)]
struct Console {
    text: String,
    closed: bool,
}

/// A running QEMU with xok in it. Dropping it kills QEMU (only the process this harness
/// started, by its handle).
pub struct Guest {
    child: Child,
    console: Arc<(Mutex<Console>, Condvar)>,
    /// When QEMU was started.
    pub started: Instant,
}

impl Guest {
    /// Boots the image with `cmdline` and extra QEMU arguments.
    pub fn boot(cmdline: &str, extra: &[&str]) -> Result<Guest> {
        let mut config = QemuConfig::new(image(), cmdline);
        for arg in extra {
            config = config.arg(*arg);
        }
        let mut command = config.command();
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = command.spawn().context("starting qemu-system-x86_64 (is QEMU installed? run make setup)")?;
        let console = Arc::new((Mutex::new(Console::default()), Condvar::new()));
        for stream in [
            Box::new(child.stdout.take().expect("piped")) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().expect("piped")),
        ] {
            let console = Arc::clone(&console);
            std::thread::spawn(move || pump(stream, console));
        }
        Ok(Guest { child, console, started })
    }

    /// Everything the console has shown so far.
    pub fn output(&self) -> String {
        self.console.0.lock().expect("console lock").text.clone()
    }

    /// Waits until the console contains `needle`; returns the output up to then.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + scaled(timeout);
        let (lock, ready) = &*self.console;
        let mut console = lock.lock().expect("console lock");
        loop {
            if console.text.contains(needle) {
                return Ok(console.text.clone());
            }
            let now = Instant::now();
            if console.closed || now >= deadline {
                let why = if console.closed { "QEMU exited" } else { "timed out" };
                bail!("{why} waiting for {needle:?}; console so far:\n{}", console.text);
            }
            console = ready.wait_timeout(console, deadline - now).expect("console lock").0;
        }
    }

    /// Waits for QEMU to exit and returns its status code and the whole console.
    pub fn wait_exit(mut self, timeout: Duration) -> Result<(i32, String)> {
        let deadline = Instant::now() + scaled(timeout);
        loop {
            if let Some(status) = self.child.try_wait()? {
                // Let the reader threads drain the pipes.
                let (lock, ready) = &*self.console;
                let mut console = lock.lock().expect("console lock");
                while !console.closed {
                    console = ready.wait_timeout(console, Duration::from_secs(2)).expect("lock").0;
                }
                let text = console.text.clone();
                return status.code().map(|code| (code, text)).ok_or_else(|| anyhow!("QEMU killed by a signal"));
            }
            if Instant::now() >= deadline {
                bail!("QEMU still running after {:?}; console:\n{}", scaled(timeout), self.output());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn pump(mut stream: Box<dyn Read + Send>, console: Arc<(Mutex<Console>, Condvar)>) {
    let mut buffer = [0u8; 4096];
    loop {
        let n = stream.read(&mut buffer).unwrap_or(0);
        let (lock, ready) = &*console;
        let mut console = lock.lock().expect("console lock");
        if n == 0 {
            // Both streams share the flag; the last one to close is what matters for drains,
            // and QEMU closes both at exit.
            console.closed = true;
            ready.notify_all();
            return;
        }
        console.text.push_str(&String::from_utf8_lossy(&buffer[..n]).replace('\r', ""));
        ready.notify_all();
    }
}

/// The lines of `output` that start with `prefix`.
pub fn lines_with<'a>(output: &'a str, prefix: &str) -> Vec<&'a str> {
    output.lines().filter(|line| line.starts_with(prefix)).collect()
}
