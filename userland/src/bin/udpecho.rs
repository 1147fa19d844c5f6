//! A UDP echo server (port 7 by default) on exos's smoltcp stack: the frames come from a packet
//! ring through `exos::netdev::RingDevice`, and the program sleeps on a wakeup predicate (a
//! frame stored, or smoltcp's next timer) between polls.
//!
//! Arguments: `ip=A.B.C.D` (default 10.0.2.15/24), `port=P`, `nic=N`, `count=K` (exit after
//! echoing K datagrams; default: run forever).
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

use alloc::vec;
use dpf::Filter;
use exos::netdev::RingDevice;
use exos::ring::PacketRing;
use exos::wait::Waiter;
use exos::{println, sys};
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::socket::udp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, Ipv4Address};

exos::entry!(run);

fn now() -> Instant {
    Instant::from_micros((sys::time() / 1000) as i64)
}

fn run(args: exos::Args) -> i32 {
    let ip = args.value("ip").and_then(exos::ipv4::parse).unwrap_or([10, 0, 2, 15]);
    let port: u16 = args.parsed("port").unwrap_or(7);
    let nic: usize = args.parsed("nic").unwrap_or(0);
    let count: u64 = args.parsed("count").unwrap_or(u64::MAX);
    let Ok(info) = sys::nic_info(nic) else {
        println!("udpecho: no nic {nic}");
        return 1;
    };
    let ring = PacketRing::new(64, 2048).expect("packet ring");
    let mut filters = alloc::vec::Vec::new();
    for filter in [Filter::arp_for(ip), Filter::icmp_to(ip), Filter::udp_port(port)] {
        match ring.install(&filter) {
            Ok(installed) => filters.push(installed),
            Err(error) => {
                println!("udpecho: filter refused: {error}");
                return 1;
            }
        }
    }
    let mut device = RingDevice::new(ring, nic);
    let mut config = Config::new(EthernetAddress(info.mac).into());
    config.random_seed = sys::time();
    let mut iface = Interface::new(config, &mut device, now());
    iface.update_ip_addrs(|addrs| {
        let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(Ipv4Address::from_octets(ip)), 24));
    });
    let socket = udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 16], vec![0; 16 * 1536]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 16], vec![0; 16 * 1536]),
    );
    let mut sockets = SocketSet::new(vec![]);
    let handle = sockets.add(socket);
    sockets.get_mut::<udp::Socket>(handle).bind(port).expect("bind");
    println!("udpecho: {} port {port} ready", exos::ipv4::Dotted(ip));
    // One predicate for the whole run: a frame stored, or the deadline the loop moves to
    // smoltcp's next timer before each sleep.
    let mut waiter = Waiter::new().expect("the process's waiter");
    waiter.watch_ring(&device.ring);
    let mut echoed = 0u64;
    let mut buffer = [0u8; 1536];
    while echoed < count {
        iface.poll(now(), &mut device, &mut sockets);
        let socket = sockets.get_mut::<udp::Socket>(handle);
        while let Ok((len, meta)) = socket.recv_slice(&mut buffer) {
            if socket.send_slice(&buffer[..len], meta.endpoint).is_ok() {
                echoed += 1;
            }
        }
        iface.poll(now(), &mut device, &mut sockets);
        // Sleep until a frame is stored or smoltcp's next timer (ARP retries, ...), at most 1 s.
        let delay_ms = iface.poll_delay(now(), &sockets).map_or(1000, |d| d.total_millis().min(1000));
        waiter.sleep_ms(delay_ms).expect("wakeup predicate");
    }
    println!("udpecho: echoed {echoed} datagrams");
    0
}
