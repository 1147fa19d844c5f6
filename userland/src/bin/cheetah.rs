//! Cheetah, the HTTP server that owns its TCP: one packet ring with the port's listen filter,
//! `cheetah::tcp` for the connections, and `net_xmit` sends that gather a small header buffer
//! with slices of the prepared response head and of the file's pages in the image (never
//! copied; retransmitted from the same pages). A header buffer is reused only once its
//! completion counter says the NIC is done with it. The event loop sleeps on one wakeup
//! predicate (a frame stored, or the next TCP timer) and never spins. No sockets.
//!
//! Arguments: those of `exos::netdev::HostConfig`, `port=P` (80), `root=DIR` (`www`). Needs
//! arpd for the machine's ARP (`init=arpd,!strayd,cheetah`).
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::vec::Vec;
use cheetah::http::Site;
use cheetah::tcp::{Config, Incoming, Outgoing, Server, Transmit};
use dpf::Filter;
use exos::abi::layout::TICK_HZ;
use exos::ipv4::Dotted;
use exos::netdev::{HostConfig, now};
use exos::ring::PacketRing;
use exos::wait::Waiter;
use exos::xmit::TxPool;
use exos::{fs, println, sys};
use hashbrown::HashMap;

exos::entry!(run);

/// A served file: its path under the root, its bytes, and the maintenance tool's record.
type ServedFile = (&'static str, &'static [u8], Option<&'static [u8]>);

/// Header buffers (frames in flight at once).
const HEADER_BUFFERS: usize = 256;
/// Bytes of an Ethernet header.
const ETHERNET: usize = 14;

/// Where Cheetah's segments go: Ethernet headers to the MAC each client's frames came from,
/// IPv4/TCP headers into a free header buffer, the payload gathered from the file cache.
struct NicSender {
    pool: TxPool,
    mac: [u8; 6],
    ip: [u8; 4],
    /// The MAC each peer's frames arrive from (answers go back the same way; no ARP needed),
    /// learned from segments whose checksums hold; at most [`NEIGHBOURS_MAX`].
    neighbours: HashMap<[u8; 4], [u8; 6]>,
    /// Segments that found no free header buffer (TCP sends them again).
    no_buffer: u64,
}

impl Transmit<'static> for NicSender {
    fn transmit(&mut self, segment: &Outgoing<'static>) -> bool {
        let Some(&peer) = self.neighbours.get(&segment.tuple.remote) else { return false };
        let Some(index) = self.pool.free_buffer() else {
            self.no_buffer += 1;
            return false;
        };
        let buffer = self.pool.buffer(index);
        buffer[..6].copy_from_slice(&peer);
        buffer[6..12].copy_from_slice(&self.mac);
        buffer[12..14].copy_from_slice(&[0x08, 0x00]);
        let headers = segment.write_headers(self.ip, segment.payload_sum(), &mut buffer[ETHERNET..]);
        self.pool.send_gathered(index, ETHERNET + headers, &segment.payload).is_ok()
    }
}

/// Peers whose MAC Cheetah remembers at most. A SYN flood from random sources would otherwise
/// grow the map without end (the load test found it: 3.3 MB a round); when it is full it is
/// emptied, and every live peer is learned again from its next segment.
const NEIGHBOURS_MAX: usize = 4_096;

/// The IPv4 source address and MAC of a received Ethernet frame, if it carries IPv4.
fn sender_of(frame: &[u8]) -> Option<([u8; 4], [u8; 6])> {
    if frame.len() < ETHERNET + 20 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    Some((frame[26..30].try_into().ok()?, frame[6..12].try_into().ok()?))
}

/// How often the counters are printed when they moved (ticks).
const REPORT_TICKS: u64 = 10 * TICK_HZ;

/// Prints Cheetah's counters: what it served, and what it dropped or gave up.
fn report(server: &Server<'_>, refused: u64) {
    let stats = server.stats();
    println!(
        "cheetah: accepted {} connections, {} responses, {} segments ({} timeouts, {} fast retransmits); dropped {} frames that were no good segment for us, {} half-open connections, {} SYNs (table full); {} connections given up; {} in TIME_WAIT, heap {} bytes",
        stats.accepted,
        stats.responses,
        stats.segments,
        stats.timeouts,
        stats.fast_retransmits,
        refused,
        stats.half_open_dropped,
        stats.syns_dropped,
        stats.given_up,
        server.time_waits(),
        exos::heap::used()
    );
}

fn run(args: exos::Args) -> i32 {
    let host = HostConfig::from_args(&args);
    let port: u16 = args.parsed("port").unwrap_or(80);
    let root = args.value("root").unwrap_or("www");
    let store = match fs::store() {
        Ok(store) => store,
        Err(error) => {
            println!("cheetah: no file store: {error}");
            return 1;
        }
    };
    let prefix = alloc::format!("{root}/");
    // Each file with the maintenance tool's record `cache/<path>` (heads and segment sums).
    let files: Vec<ServedFile> = store
        .files()
        .filter_map(|(path, _)| {
            let relative = path.strip_prefix(prefix.as_str())?;
            let record = store.open(&alloc::format!("cache/{relative}")).ok().map(|file| file.bytes());
            Some((relative, store.open(path).ok()?.bytes(), record))
        })
        .collect();
    // The site lives as long as the program: its heads are gathered into frames in flight.
    let site: &'static Site<'static> = Box::leak(Box::new(Site::with_prepared(files)));
    let Ok(info) = sys::nic_info(host.nic) else {
        println!("cheetah: no nic {}", host.nic);
        return 1;
    };
    let Ok(mut ring) = PacketRing::new(1024, 2048) else {
        println!("cheetah: no packet ring");
        return 1;
    };
    let _listen = match ring.install(&Filter::tcp_listen(host.ip, port)) {
        Ok(filter) => filter,
        Err(error) => {
            println!("cheetah: port {port}: {error}");
            return 1;
        }
    };
    let Some(mut waiter) = Waiter::new() else { return 1 };
    waiter.watch_ring(&ring);
    let secret = [sys::time(), sys::time().rotate_left(29) ^ u64::from(sys::env_id().0)];
    let mut server = Server::new(Config::new(host.ip, port), site, secret);
    let mut sender = NicSender { pool: TxPool::with_buffers(host.nic, HEADER_BUFFERS), mac: info.mac, ip: host.ip, neighbours: HashMap::new(), no_buffer: 0 };
    println!("cheetah: {} port {port} ready, {} files from {root}/ ({} with precomputed segment sums)", Dotted(host.ip), site.len(), site.prepared());
    // Frames that were no TCP segment for this address with good checksums (fragments too:
    // Linux sends TCP with DF set), and the counters last printed.
    let mut refused = 0u64;
    let (mut reported, mut next_report) = ((server.stats(), refused), 0);
    loop {
        // One clock reading per wakeup: the frames of a batch arrived together, and a
        // `time` call per frame was 6 % of the CPU (docs/servers-profile.md).
        let at = now();
        while let Some(received) = ring.peek() {
            if let Some((ip, mac)) = sender_of(received.frame)
                && let Some(segment) = Incoming::parse(&received.frame[ETHERNET..], host.ip)
            {
                if sender.neighbours.len() >= NEIGHBOURS_MAX && !sender.neighbours.contains_key(&ip) {
                    sender.neighbours.clear();
                }
                sender.neighbours.insert(ip, mac);
                server.receive(at, &segment, &mut sender);
            } else {
                refused += 1;
            }
            ring.release();
        }
        server.poll(at, &mut sender);
        let ticks = sys::ticks();
        if ticks >= next_report && (server.stats(), refused) != reported {
            reported = (server.stats(), refused);
            report(&server, refused);
            next_report = ticks + REPORT_TICKS;
        }
        let wake = server.poll_at().map_or(u64::MAX, |deadline| {
            let micros = (deadline - at.min(deadline)).total_micros();
            sys::ticks() + micros.div_ceil(1_000_000 / TICK_HZ)
        });
        if waiter.sleep_until(wake).is_err() {
            sys::env_yield();
        }
    }
}
