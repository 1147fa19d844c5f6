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
pub use xok_tools::netns::Netns;

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

/// Builds an image whose document root holds `files` (path, bytes), under `build/<name>`
/// (the programs are the same build as [`image`]'s).
pub fn image_with_docroot(name: &str, files: &[(&str, Vec<u8>)]) -> Image {
    let root = image::workspace_root();
    let docroot = root.join("target").join("test-docroots").join(name);
    let _ = std::fs::remove_dir_all(&docroot);
    for (path, bytes) in files {
        let path = docroot.join(path);
        std::fs::create_dir_all(path.parent().expect("a file has a directory")).expect("creating the test docroot");
        std::fs::write(&path, bytes).expect("writing the test docroot");
    }
    image::build_with_docroot(&root.join("build").join(name), &docroot).expect("building the xok image")
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
        Guest::boot_in(None, cmdline, extra)
    }

    /// Boots the image inside network namespace `netns` (if given).
    pub fn boot_in(netns: Option<&Netns>, cmdline: &str, extra: &[&str]) -> Result<Guest> {
        Guest::boot_image(image(), netns, cmdline, extra)
    }

    /// Boots `image` (see [`image_with_docroot`]) inside `netns` (if given).
    pub fn boot_image(image: Image, netns: Option<&Netns>, cmdline: &str, extra: &[&str]) -> Result<Guest> {
        let mut config = QemuConfig::new(image, cmdline);
        for arg in extra {
            config = config.arg(*arg);
        }
        let qemu = config.command();
        let mut command = match netns {
            Some(ns) => {
                let mut inside = std::process::Command::new("ip");
                inside.args(["netns", "exec", &ns.name]).arg(qemu.get_program()).args(qemu.get_args());
                inside
            }
            None => qemu,
        };
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

    /// The QEMU process's id (`ip netns exec` runs QEMU in its own place), for reading its
    /// threads' CPU time under /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
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

    /// Waits until the console holds a whole line (ended by a newline) containing `needle`;
    /// returns that line.
    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + scaled(timeout);
        loop {
            let output = self.wait_for(needle, deadline.saturating_duration_since(Instant::now()))?;
            let at = output.find(needle).expect("wait_for found it");
            if let Some(end) = output[at..].find('\n') {
                let start = output[..at].rfind('\n').map_or(0, |newline| newline + 1);
                return Ok(output[start..at + end].to_string());
            }
            if Instant::now() >= deadline {
                bail!("timed out waiting for the end of the line with {needle:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
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

/// The test as the wire: a UDP socket on 127.0.0.1 that QEMU's `-netdev dgram` sends the
/// guest's frames to, and that injects frames into the guest.
pub struct Wire {
    socket: std::net::UdpSocket,
    guest: std::net::SocketAddr,
}

impl Wire {
    /// A wire and the QEMU arguments that attach a NIC of `model` (`e1000`, `tulip`) to it.
    pub fn new(model: &str, mac: &str) -> Result<(Wire, Vec<String>)> {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
        // A free port for QEMU's end: bind, note, release (QEMU binds it right after).
        let guest = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
        let ours = socket.local_addr()?;
        let args = vec![
            "-netdev".to_string(),
            format!(
                "dgram,id=wire{},local.type=inet,local.host=127.0.0.1,local.port={},remote.type=inet,remote.host=127.0.0.1,remote.port={}",
                ours.port(),
                guest.port(),
                ours.port()
            ),
            "-device".to_string(),
            format!("{model},netdev=wire{},mac={mac}", ours.port()),
        ];
        Ok((Wire { socket, guest }, args))
    }

    /// Injects one Ethernet frame.
    pub fn send(&self, frame: &[u8]) -> Result<()> {
        self.socket.send_to(frame, self.guest)?;
        Ok(())
    }

    /// The next frame from the guest for which `wanted` holds, within `timeout`.
    pub fn receive(&self, timeout: Duration, wanted: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
        let deadline = Instant::now() + scaled(timeout);
        let mut buffer = [0u8; 2048];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            self.socket.set_read_timeout(Some(left.max(Duration::from_millis(1)))).ok()?;
            match self.socket.recv_from(&mut buffer) {
                Ok((n, _)) if wanted(&buffer[..n]) => return Some(buffer[..n].to_vec()),
                Ok(_) => continue,
                Err(_) if Instant::now() >= deadline => return None,
                Err(_) => continue,
            }
        }
    }
}

/// Builds frames for tests.
pub mod frames {
    /// The Internet checksum of `bytes` (smoltcp's, as in exos).
    pub fn checksum(bytes: &[u8]) -> u16 {
        !smoltcp::wire::checksum::data(bytes)
    }

    /// An ARP request from (`mac`, `ip`) asking for `target`.
    pub fn arp_request(mac: [u8; 6], ip: [u8; 4], target: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&mac);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&mac);
        f.extend_from_slice(&ip);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&target);
        f
    }

    /// A UDP/IPv4 frame from 10.0.2.2:4000 to 10.0.2.15:`port` (UDP checksum 0), padded to 60
    /// bytes.
    pub fn udp(dst_mac: [u8; 6], src_mac: [u8; 6], port: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = dst_mac.to_vec();
        f.extend_from_slice(&src_mac);
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
        f.extend_from_slice(&((28 + payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 2, 2, 10, 0, 2, 15]);
        let sum = checksum(&f[14..34]);
        f[24..26].copy_from_slice(&sum.to_be_bytes());
        f.extend_from_slice(&4000u16.to_be_bytes());
        f.extend_from_slice(&port.to_be_bytes());
        f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        f.resize(f.len().max(60), 0); // Ethernet's minimum, as a real sender pads
        f
    }

    /// A TCP/IPv4 ACK segment without payload from `src`:`sport` to 10.0.2.15:`dport`
    /// (TCP checksum 0: for classification, not for a stack), padded to 60 bytes.
    pub fn tcp(dst_mac: [u8; 6], src_mac: [u8; 6], src: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut f = dst_mac.to_vec();
        f.extend_from_slice(&src_mac);
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&[10, 0, 2, 15]);
        let sum = checksum(&f[14..34]);
        f[24..26].copy_from_slice(&sum.to_be_bytes());
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0]);
        f.resize(60, 0);
        f
    }

    /// The IPv4 datagram in Ethernet `frame` cut into fragments of `size` payload bytes (a
    /// multiple of 8), in order, each padded to Ethernet's minimum.
    pub fn fragments(frame: &[u8], size: usize) -> Vec<Vec<u8>> {
        let header = usize::from(frame[14] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
        let payload = &frame[14 + header..14 + total];
        (0..payload.len())
            .step_by(size)
            .map(|start| {
                let stop = (start + size).min(payload.len());
                let mut f = frame[..14 + header].to_vec();
                f.extend_from_slice(&payload[start..stop]);
                f[16..18].copy_from_slice(&((header + stop - start) as u16).to_be_bytes());
                let more = if stop < payload.len() { 0x2000 } else { 0 };
                f[20..22].copy_from_slice(&((start / 8) as u16 | more).to_be_bytes());
                f[24..26].copy_from_slice(&[0, 0]);
                let sum = checksum(&f[14..14 + header]);
                f[24..26].copy_from_slice(&sum.to_be_bytes());
                f.resize(f.len().max(60), 0);
                f
            })
            .collect()
    }

    /// The ARP reply (`mac`, `ip`) owes the asker (`peer_mac`, `peer_ip`).
    pub fn arp_reply(mac: [u8; 6], ip: [u8; 4], peer_mac: [u8; 6], peer_ip: [u8; 4]) -> Vec<u8> {
        let mut f = peer_mac.to_vec();
        f.extend_from_slice(&mac);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
        f.extend_from_slice(&mac);
        f.extend_from_slice(&ip);
        f.extend_from_slice(&peer_mac);
        f.extend_from_slice(&peer_ip);
        f
    }

    /// An ICMP echo (request `kind` 8, reply 0) with its Ethernet and IPv4 headers (DF set).
    #[allow(clippy::too_many_arguments)] // reason: one argument per header field the tests vary
    pub fn icmp_echo(kind: u8, dst_mac: [u8; 6], src_mac: [u8; 6], src: [u8; 4], dst: [u8; 4], ttl: u8, id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
        let mut icmp = vec![kind, 0, 0, 0];
        icmp.extend_from_slice(&id.to_be_bytes());
        icmp.extend_from_slice(&seq.to_be_bytes());
        icmp.extend_from_slice(data);
        let sum = checksum(&icmp);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        let total = (20 + icmp.len()) as u16;
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&[0, 0, 0x40, 0, ttl, 1, 0, 0]); // DF, as Linux and smoltcp send
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        let sum = checksum(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        let mut f = dst_mac.to_vec();
        f.extend_from_slice(&src_mac);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend(ip);
        f.extend(icmp);
        f
    }
}

