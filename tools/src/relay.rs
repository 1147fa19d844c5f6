//! A fault-injecting relay between a namespace's tap device and QEMU (`-netdev dgram` on the
//! namespace's own 127.0.0.1): every Ethernet frame passes through it, in both directions, and
//! each direction drops, delays, reorders, duplicates and corrupts frames at its own seeded
//! rates. This machine has no `tc netem`; this is ours. Tests start it with [`Relay::start`];
//! a person runs `xok-tools relay` (see `make run RELAY=...`).
//!
//! The relay works inside the namespace (its thread enters it with `setns`), so its traffic
//! never leaves the namespace: the tap on one side, the namespace's loopback to QEMU on the
//! other.

use anyhow::{Context, Result, bail};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What one direction does to the frames that pass. Rates are probabilities per frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Faults {
    /// Frames dropped.
    pub loss: f64,
    /// Every frame's delay.
    pub delay: Duration,
    /// Frames held back a further [`Faults::reorder_by`], so that later frames overtake them.
    pub reorder: f64,
    /// How much longer a reordered frame waits.
    pub reorder_by: Duration,
    /// Frames sent twice.
    pub duplicate: f64,
    /// Frames with one bit flipped past the Ethernet header (in the IP header or anything
    /// after it), so that a checksum must catch it.
    pub corrupt: f64,
}

impl Default for Faults {
    /// A clean wire: no faults, no delay.
    fn default() -> Faults {
        Faults { loss: 0.0, delay: Duration::ZERO, reorder: 0.0, reorder_by: Duration::from_millis(5), duplicate: 0.0, corrupt: 0.0 }
    }
}

impl Faults {
    /// Reads `loss=0.05,delay=10ms,reorder=0.25,reorder_by=5ms,duplicate=0.01,corrupt=0.01`
    /// (any subset, in any order; rates as fractions or with `%`).
    pub fn parse(text: &str) -> Result<Faults> {
        let mut faults = Faults::default();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = item.split_once('=').with_context(|| format!("`{item}` is not key=value"))?;
            let rate = || -> Result<f64> {
                let rate = match value.strip_suffix('%') {
                    Some(percent) => percent.parse::<f64>()? / 100.0,
                    None => value.parse::<f64>()?,
                };
                if !(0.0..=1.0).contains(&rate) {
                    bail!("{key}={value}: a rate is between 0 and 1 (or 0% and 100%)");
                }
                Ok(rate)
            };
            let duration = || -> Result<Duration> {
                let millis = value.strip_suffix("ms").with_context(|| format!("{key}={value}: give milliseconds, as `10ms`"))?;
                Ok(Duration::from_secs_f64(millis.parse::<f64>()? / 1000.0))
            };
            match key {
                "loss" => faults.loss = rate()?,
                "delay" => faults.delay = duration()?,
                "reorder" => faults.reorder = rate()?,
                "reorder_by" => faults.reorder_by = duration()?,
                "duplicate" => faults.duplicate = rate()?,
                "corrupt" => faults.corrupt = rate()?,
                _ => bail!("unknown fault `{key}` (loss, delay, reorder, reorder_by, duplicate, corrupt)"),
            }
        }
        Ok(faults)
    }
}

/// What the relay did in one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Frames that came in.
    pub frames: u64,
    /// Frames dropped.
    pub dropped: u64,
    /// Frames held back to be overtaken.
    pub reordered: u64,
    /// Extra copies sent.
    pub duplicated: u64,
    /// Frames with a flipped bit.
    pub corrupted: u64,
    /// Frames sent on (copies included).
    pub sent: u64,
}

/// Both directions' counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// From the namespace (the tap) to the guest.
    pub to_guest: Counts,
    /// From the guest to the namespace.
    pub from_guest: Counts,
}

/// The fate of one frame, decided by [`Direction::admit`]: when each copy leaves, and whether
/// (and where) a bit is flipped.
#[derive(Clone, Debug, PartialEq)]
pub struct Fate {
    /// Departure offsets from arrival, one per copy (none: dropped).
    pub copies: Vec<Duration>,
    /// Bit to flip, counted from the first byte after the Ethernet header.
    pub flip: Option<usize>,
}

/// One direction's faults and random source: the decisions, apart from any I/O, so a test
/// can check the rates.
pub struct Direction {
    faults: Faults,
    random: SmallRng,
    /// What this direction did.
    pub counts: Counts,
}

/// Bytes of the Ethernet header, never corrupted (the NIC would drop a frame with a changed
/// destination, which is loss, not corruption).
const ETHERNET: usize = 14;

impl Direction {
    /// A direction with `faults`, its random choices seeded by `seed`.
    pub fn new(faults: Faults, seed: u64) -> Direction {
        Direction { faults, random: SmallRng::seed_from_u64(seed), counts: Counts::default() }
    }

    /// Decides what happens to a frame of `len` bytes.
    pub fn admit(&mut self, len: usize) -> Fate {
        let faults = self.faults;
        self.counts.frames += 1;
        if self.random.random_bool(faults.loss) {
            self.counts.dropped += 1;
            return Fate { copies: Vec::new(), flip: None };
        }
        let mut delay = faults.delay;
        if self.random.random_bool(faults.reorder) {
            delay += faults.reorder_by;
            self.counts.reordered += 1;
        }
        let mut copies = vec![delay];
        if self.random.random_bool(faults.duplicate) {
            copies.push(delay);
            self.counts.duplicated += 1;
        }
        let flip = (len > ETHERNET && self.random.random_bool(faults.corrupt)).then(|| self.random.random_range(0..(len - ETHERNET) * 8));
        if flip.is_some() {
            self.counts.corrupted += 1;
        }
        self.counts.sent += copies.len() as u64;
        Fate { copies, flip }
    }

    /// Changes the faults from the next frame on (the random sequence goes on).
    pub fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
    }

    /// Applies `fate`'s bit flip to `frame`.
    pub fn flip(frame: &mut [u8], fate: &Fate) {
        if let Some(bit) = fate.flip {
            frame[ETHERNET + bit / 8] ^= 1 << (bit % 8);
        }
    }
}

/// A frame waiting for its departure.
struct Held {
    at: Instant,
    order: u64,
    to_guest: bool,
    frame: Vec<u8>,
}

impl PartialEq for Held {
    fn eq(&self, other: &Held) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Held) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    /// Earliest departure first (the heap is a max-heap).
    fn cmp(&self, other: &Held) -> std::cmp::Ordering {
        (other.at, other.order).cmp(&(self.at, self.order))
    }
}

/// What the relay's thread and its owner share.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    stats: Mutex<Stats>,
    /// The faults each way (to the guest, from it), read by the relay's loop as it goes.
    faults: Mutex<[Faults; 2]>,
    /// Frames to put on the wire to the guest as they are (`inject`).
    injected: Mutex<Vec<Vec<u8>>>,
}

/// A running relay; stops (and gives back the tap) when dropped.
pub struct Relay {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Result<()>>>,
    /// QEMU's port on the namespace's loopback (the relay sends the guest's frames there).
    pub qemu_port: u16,
    /// The relay's port on the namespace's loopback (QEMU sends there).
    pub relay_port: u16,
}

/// Enters network namespace `name` (this thread only).
fn enter_namespace(name: &str) -> Result<()> {
    let file = File::open(format!("/run/netns/{name}")).with_context(|| format!("opening network namespace {name}"))?;
    // SAFETY: setns on a valid namespace file descriptor changes only this thread's network
    // namespace; no memory is involved.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("entering network namespace {name}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Opens the existing tap device `name` (as `ip tuntap add ... mode tap` made it), without
/// packet information headers: each read is one Ethernet frame.
fn open_tap(name: &str) -> Result<File> {
    let tun = std::fs::OpenOptions::new().read(true).write(true).open("/dev/net/tun").context("opening /dev/net/tun")?;
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= request.ifr_name.len() {
        bail!("tap name {name} is too long");
    }
    for (slot, byte) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *slot = byte as libc::c_char;
    }
    request.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes an ifreq, which `request` is, for the duration of
    // the call; the descriptor is the open tun device.
    if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut request) } != 0 {
        bail!("attaching to tap {name}: {}", std::io::Error::last_os_error());
    }
    Ok(tun)
}

impl Relay {
    /// Starts relaying between tap `tap` of namespace `netns` and a QEMU started in the same
    /// namespace with [`Relay::nic_args`]; `to_guest` and `from_guest` are the two directions'
    /// faults, seeded from `seed`.
    pub fn start(netns: &str, tap: &str, to_guest: Faults, from_guest: Faults, seed: u64) -> Result<Relay> {
        let shared = Arc::new(Shared { faults: Mutex::new([to_guest, from_guest]), ..Shared::default() });
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (netns, tap) = (netns.to_string(), tap.to_string());
        let inside = Arc::clone(&shared);
        let thread = std::thread::spawn(move || -> Result<()> {
            let setup = || -> Result<(File, UdpSocket, u16)> {
                enter_namespace(&netns)?;
                let tap = open_tap(&tap)?;
                let socket = UdpSocket::bind("127.0.0.1:0").context("binding the relay's socket")?;
                // A free port for QEMU's end (nothing else runs in the namespace to take it).
                let qemu_port = UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port();
                Ok((tap, socket, qemu_port))
            };
            let (tap, socket, qemu_port) = match setup() {
                Ok(parts) => parts,
                Err(error) => {
                    let _ = ready_tx.send(Err(format!("{error:#}")));
                    return Err(error);
                }
            };
            let _ = ready_tx.send(Ok((socket.local_addr()?.port(), qemu_port)));
            let directions = [Direction::new(to_guest, seed), Direction::new(from_guest, seed ^ 0x9e37_79b9_7f4a_7c15)];
            pump(tap, socket, qemu_port, directions, &inside)
        });
        let (relay_port, qemu_port) = match ready_rx.recv() {
            Ok(Ok(ports)) => ports,
            Ok(Err(error)) => bail!("starting the relay: {error}"),
            Err(_) => bail!("the relay's thread ended before it was ready"),
        };
        Ok(Relay { shared, thread: Some(thread), qemu_port, relay_port })
    }

    /// The QEMU arguments that attach a NIC of `model` to this relay.
    pub fn nic_args(&self, model: &str, mac: &str) -> Vec<String> {
        vec![
            "-netdev".into(),
            format!(
                "dgram,id=relay,local.type=inet,local.host=127.0.0.1,local.port={},remote.type=inet,remote.host=127.0.0.1,remote.port={}",
                self.qemu_port, self.relay_port
            ),
            "-device".into(),
            format!("{model},netdev=relay,mac={mac}"),
        ]
    }

    /// Changes the faults each way, from the next frame on.
    pub fn set_faults(&self, to_guest: Faults, from_guest: Faults) {
        *self.shared.faults.lock().expect("faults lock") = [to_guest, from_guest];
    }

    /// Puts `frames` on the wire to the guest, as they are and before anything else waiting
    /// (within the relay's next turn, 50 ms at most); they are not counted in [`Stats`].
    pub fn inject(&self, frames: impl IntoIterator<Item = Vec<u8>>) {
        self.shared.injected.lock().expect("injection lock").extend(frames);
    }

    /// What the relay has done so far.
    pub fn stats(&self) -> Stats {
        *self.shared.stats.lock().expect("stats lock")
    }

    /// Stops the relay; returns its last counts, or the error that ended it.
    pub fn stop(mut self) -> Result<Stats> {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().map_err(|_| anyhow::anyhow!("the relay's thread panicked"))??;
        }
        Ok(self.stats())
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The relay's loop: waits (poll) for a frame on either side or the next departure, and
/// sends what is due.
fn pump(mut tap: File, socket: UdpSocket, qemu_port: u16, mut directions: [Direction; 2], shared: &Shared) -> Result<()> {
    let qemu = std::net::SocketAddr::from(([127, 0, 0, 1], qemu_port));
    let mut held: BinaryHeap<Held> = BinaryHeap::new();
    let mut order = 0u64;
    let mut buffer = vec![0u8; 65_536];
    while !shared.stop.load(Ordering::Relaxed) {
        // Never an empty datagram: QEMU's dgram backend takes one for the end of the connection
        // and stops reading.
        for frame in core::mem::take(&mut *shared.injected.lock().expect("injection lock")).into_iter().filter(|f| !f.is_empty()) {
            let _ = socket.send_to(&frame, qemu);
        }
        let now = Instant::now();
        while held.peek().is_some_and(|h| h.at <= now) {
            let frame = held.pop().expect("peeked");
            // A full tap queue or a QEMU not yet listening loses the frame, as a wire would.
            let _ = if frame.to_guest { socket.send_to(&frame.frame, qemu).map(drop) } else { tap.write_all(&frame.frame) };
        }
        let wait = held.peek().map_or(Duration::from_millis(50), |h| h.at.saturating_duration_since(now)).min(Duration::from_millis(50));
        let mut fds = [
            libc::pollfd { fd: tap.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: socket.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        let millis = wait.as_micros().div_ceil(1000) as libc::c_int;
        // SAFETY: `fds` is an array of two pollfd, valid for the call.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, millis) } < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            bail!("poll: {error}");
        }
        let now_faults = *shared.faults.lock().expect("faults lock");
        for (side, fd) in fds.iter().enumerate() {
            if fd.revents & libc::POLLIN == 0 {
                continue;
            }
            directions[side].set_faults(now_faults[side]);
            let to_guest = side == 0;
            let len = if to_guest { tap.read(&mut buffer)? } else { socket.recv_from(&mut buffer)?.0 };
            let fate = directions[side].admit(len);
            let mut frame = buffer[..len].to_vec();
            Direction::flip(&mut frame, &fate);
            let arrived = Instant::now();
            for offset in fate.copies {
                order += 1;
                held.push(Held { at: arrived + offset, order, to_guest, frame: frame.clone() });
            }
        }
        *shared.stats.lock().expect("stats lock") = Stats { to_guest: directions[0].counts, from_guest: directions[1].counts };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_from_their_command_line_form() {
        let faults = Faults::parse("loss=5%, delay=10ms,reorder=0.25,duplicate=0.01,corrupt=1%").unwrap();
        assert_eq!(faults, Faults { loss: 0.05, delay: Duration::from_millis(10), reorder: 0.25, duplicate: 0.01, corrupt: 0.01, ..Faults::default() });
        assert_eq!(Faults::parse("").unwrap(), Faults::default());
        assert!(Faults::parse("loss=1.5").is_err(), "a rate above 1");
        assert!(Faults::parse("delay=10").is_err(), "a delay without a unit");
        assert!(Faults::parse("jitter=1ms").is_err(), "an unknown fault");
    }

    #[test]
    fn each_fault_happens_at_its_rate_and_the_same_seed_decides_the_same() {
        let faults = Faults { loss: 0.05, delay: Duration::from_millis(10), reorder: 0.25, duplicate: 0.1, corrupt: 0.01, ..Faults::default() };
        let mut direction = Direction::new(faults, 7);
        let fates: Vec<Fate> = (0..100_000).map(|_| direction.admit(1514)).collect();
        let counts = direction.counts;
        let near = |count: u64, rate: f64, of: u64| (count as f64 / of as f64 - rate).abs() < rate * 0.1 + 0.002;
        assert!(near(counts.dropped, 0.05, counts.frames), "{counts:?}");
        let kept = counts.frames - counts.dropped;
        assert!(near(counts.reordered, 0.25, kept) && near(counts.duplicated, 0.1, kept) && near(counts.corrupted, 0.01, kept), "{counts:?}");
        assert_eq!(counts.sent, kept + counts.duplicated);
        for fate in &fates {
            assert!(fate.copies.iter().all(|&d| d == Duration::from_millis(10) || d == Duration::from_millis(15)));
            assert!(fate.flip.is_none_or(|bit| bit < (1514 - ETHERNET) * 8));
        }
        let mut again = Direction::new(faults, 7);
        assert!(fates.iter().all(|fate| *fate == again.admit(1514)), "seeded");
        let mut frame = vec![0u8; 60];
        Direction::flip(&mut frame, &Fate { copies: vec![Duration::ZERO], flip: Some(9) });
        assert_eq!((frame[ETHERNET + 1], frame.iter().map(|b| b.count_ones()).sum::<u32>()), (2, 1), "one bit, past the Ethernet header");
    }
}
