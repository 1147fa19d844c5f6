//! Forging attacks on the transmit check (issue 8): a child (`victim`) holds a UDP port, a TCP
//! connection and the ARP filter for the guest's address, and sends its own datagrams
//! throughout; the attacker tries to send frames that would pass for the victim's, or for
//! another machine's, and one whose header it rewrites after `net_xmit` returned. Every forged
//! frame carries [`FORGED`] in its payload, so a test watching the wire can tell that none got
//! out and that all of the victim's did.

use super::{Report, start_child, wait_for};
use alloc::format;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use dpf::Filter;
use exos::abi::net::{GatherSegment, XMIT_UNCHECKED};
use exos::abi::{EnvStatus, Error, Stat};
use exos::filter::InstalledFilter;
use exos::ring::PacketRing;
use exos::{println, sys};

/// The guest's address (QEMU user networking's default).
const GUEST_IP: [u8; 4] = [10, 0, 2, 15];
/// The peer the victim's connection is with.
const PEER_IP: [u8; 4] = [10, 0, 2, 2];
/// The victim's UDP port and TCP connection.
const VICTIM_PORT: u16 = 7300;
const VICTIM_TCP: (u16, u16) = (80, 4321);
/// The attacker's own UDP port.
const ATTACKER_PORT: u16 = 7400;
/// Filters the victim installs.
const VICTIM_FILTERS: usize = 4;
/// Datagrams the victim sends.
const VICTIM_FRAMES: u64 = 20;
/// In the payload of every forged frame.
const FORGED: &[u8] = b"FORGED";
/// Another NIC's MAC (locally administered).
const OTHER_MAC: [u8; 6] = [0x02, 0x66, 0x66, 0x66, 0x66, 0x66];

/// An Ethernet header from `src` to the broadcast address.
fn ethernet(src: [u8; 6], ethertype: u16) -> Vec<u8> {
    let mut frame = Vec::from([0xff; 6]);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame
}

/// An IPv4 packet (`protocol` 6 or 17) from `src`:`sport` to PEER_IP:`dport` with `payload`;
/// TCP segments carry RST.
fn ipv4(mac: [u8; 6], protocol: u8, src: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let transport = if protocol == 6 { 20 } else { 8 };
    let mut frame = ethernet(mac, 0x0800);
    frame.extend_from_slice(&[0x45, 0]);
    frame.extend_from_slice(&((20 + transport + payload.len()) as u16).to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0x40, 0, 64, protocol, 0, 0]);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&PEER_IP);
    frame.extend_from_slice(&sport.to_be_bytes());
    frame.extend_from_slice(&dport.to_be_bytes());
    if protocol == 6 {
        frame.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x04, 0, 0, 0, 0, 0, 0]);
    } else {
        frame.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
    }
    frame.extend_from_slice(payload);
    frame
}

/// An ARP reply from `mac` saying `ip` is at `mac`, padded with [`FORGED`].
fn arp_reply(mac: [u8; 6], ip: [u8; 4]) -> Vec<u8> {
    let mut frame = ethernet(mac, 0x0806);
    frame.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(&PEER_IP);
    frame.extend_from_slice(FORGED);
    frame
}

/// Sends `frame` with `flags` and waits until the NIC is done with it.
fn send(frame: &[u8], flags: usize) -> Result<(), Error> {
    let counter = AtomicU64::new(1);
    let segment = [GatherSegment { addr: frame.as_ptr() as u64, len: frame.len() as u64 }];
    sys::net_xmit_with(0, &segment, &counter, flags)?;
    while counter.load(Ordering::Acquire) != 0 {
        sys::env_yield();
    }
    Ok(())
}

/// `filters` held into a small ring; the right to send from them lasts as long as the value.
struct Held {
    _filters: Vec<InstalledFilter>,
    _ring: PacketRing,
}

/// Holds `filters`.
fn hold(filters: &[Filter]) -> Result<Held, Error> {
    let ring = PacketRing::new(2, 128)?;
    let filters = filters.iter().map(|filter| ring.install(filter)).collect::<Result<Vec<_>, _>>()?;
    Ok(Held { _filters: filters, _ring: ring })
}

/// Every forging attack, from the driver (skipped, and said so, without a NIC).
pub fn attacks(r: &mut Report) {
    let Ok(info) = sys::nic_info(0) else {
        println!("hostile: no NIC: forging attacks skipped");
        return;
    };
    let mac = info.mac;
    // The victim has taken its port, connection and ARP filter (and the filter count shows it).
    let filters = sys::kernel_stat(Stat::Filters);
    let victim = match start_child("victim", &[]) {
        Ok(victim) => victim,
        Err(error) => return r.outcome("forge frames", false, &format!("victim not started: {error}")),
    };
    let deadline = sys::time() + 10_000_000_000;
    while sys::kernel_stat(Stat::Filters) < filters + VICTIM_FILTERS {
        if sys::time() > deadline {
            return r.outcome("forge frames", false, "the victim never took its filters");
        }
        sys::env_yield();
    }
    let Ok(_own) = hold(&[Filter::udp_port(ATTACKER_PORT)]) else {
        return r.outcome("forge frames", false, "could not take its own port");
    };
    let forged = [Error::ForeignSource];
    r.expect_error("forge an ARP reply for the guest's address", send(&arp_reply(mac, GUEST_IP), 0), &forged);
    r.expect_error("forge an ARP reply for an address nobody here holds", send(&arp_reply(mac, [10, 0, 2, 99]), 0), &forged);
    let (local, remote) = VICTIM_TCP;
    r.expect_error("forge a TCP RST for another program's connection", send(&ipv4(mac, 6, GUEST_IP, local, remote, FORGED), 0), &forged);
    r.expect_error("forge a UDP datagram from another program's port", send(&ipv4(mac, 17, GUEST_IP, VICTIM_PORT, 9, FORGED), 0), &forged);
    r.expect_error("send from its own port with another NIC's MAC", send(&ipv4(OTHER_MAC, 17, GUEST_IP, ATTACKER_PORT, 9, FORGED), 0), &forged);
    r.expect_error("send an ARP reply naming another NIC's MAC", send(&arp_reply(OTHER_MAC, GUEST_IP), 0), &forged);
    let mut malformed = ipv4(mac, 17, GUEST_IP, ATTACKER_PORT, 9, FORGED);
    malformed[14] = 0x43; // a header length below the minimum hides where the ports are
    r.expect_error("send an IPv4 header too short to hold its ports", send(&malformed, 0), &[Error::MalformedHeader]);
    r.expect_error("skip the check without privilege", send(&ipv4(mac, 17, GUEST_IP, VICTIM_PORT, 9, FORGED), XMIT_UNCHECKED), &[Error::NotPermitted]);
    rewrite_after_xmit(r, mac);
    match wait_for(victim) {
        Some(EnvStatus::Exited(0)) => r.outcome("disturb the victim's sends by forging", true, "it sent all its datagrams"),
        other => r.outcome("disturb the victim's sends by forging", false, &format!("victim ended {other:?}")),
    }
}

/// Sends a datagram from its own port, then at once rewrites the frame to come from the
/// victim's port and another MAC (and marks it [`FORGED`]) while the NIC has not sent it yet.
/// The wire must show the frame as checked: port [`ATTACKER_PORT`], the NIC's MAC.
fn rewrite_after_xmit(r: &mut Report, mac: [u8; 6]) {
    let mut frame = ipv4(mac, 17, GUEST_IP, ATTACKER_PORT, 9, b"REWRITE");
    let counter = AtomicU64::new(1);
    let segment = [GatherSegment { addr: frame.as_ptr() as u64, len: frame.len() as u64 }];
    let name = "rewrite a header after net_xmit returned";
    if let Err(error) = sys::net_xmit(0, &segment, &counter) {
        return r.outcome(name, false, &format!("its own frame was refused: {error}"));
    }
    let pending = counter.load(Ordering::Acquire) != 0;
    frame[6..12].copy_from_slice(&OTHER_MAC);
    frame[34..36].copy_from_slice(&VICTIM_PORT.to_be_bytes());
    frame[42..42 + FORGED.len()].copy_from_slice(FORGED);
    while counter.load(Ordering::Acquire) != 0 {
        // The stores above must happen (the kernel reads the buffer behind the compiler's back).
        core::hint::black_box(&frame);
        sys::env_yield();
    }
    let detail = if pending { "rewritten before the NIC was done; the NIC sent the checked copy" } else { "the NIC was done before the rewrite" };
    r.outcome(name, true, detail);
}

/// The victim: holds its port, a TCP connection (under its own listen) and ARP for the
/// guest's address, and sends [`VICTIM_FRAMES`] datagrams from its port, 50 ms apart.
pub fn victim() -> i32 {
    let Ok(mac) = sys::nic_info(0).map(|info| info.mac) else { return 20 };
    let (local, remote) = VICTIM_TCP;
    let filters: [Filter; VICTIM_FILTERS] = [
        Filter::udp_port(VICTIM_PORT),
        Filter::tcp_listen(GUEST_IP, local),
        Filter::tcp_connection(GUEST_IP, local, PEER_IP, remote),
        Filter::arp_for(GUEST_IP),
    ];
    let _held = match hold(&filters) {
        Ok(ring) => ring,
        Err(error) => {
            println!("hostile: victim could not take its filters: {error}");
            return 21;
        }
    };
    for n in 0..VICTIM_FRAMES {
        let payload = format!("victim {n:02}");
        if let Err(error) = send(&ipv4(mac, 17, GUEST_IP, VICTIM_PORT, 9, payload.as_bytes()), 0) {
            println!("hostile: victim's datagram {n} refused: {error}");
            return 22;
        }
        let next = sys::time() + 50_000_000;
        while sys::time() < next {
            sys::env_yield();
        }
    }
    println!("hostile: victim sent {VICTIM_FRAMES} datagrams");
    0
}
