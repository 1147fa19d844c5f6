//! A UDP echo server (port 7 by default) on exos's smoltcp stack: the frames come from a packet
//! ring through `exos::netdev::IpDevice` (Ethernet headers from arpd's table), and the program
//! sleeps on a wakeup predicate (a frame stored, the table changed, or smoltcp's next timer)
//! between polls. It answers ping too.
//!
//! Arguments: those of `exos::netdev::HostConfig`, `port=P`, `count=K` (exit after echoing K
//! datagrams; default: run forever). Needs arpd (`init=arpd,udpecho`).
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

use alloc::vec;
use dpf::Filter;
use exos::netdev::{HostConfig, now};
use exos::wait::Waiter;
use exos::println;
use smoltcp::iface::SocketSet;
use smoltcp::socket::udp;

exos::entry!(run);

fn run(args: exos::Args) -> i32 {
    let host = HostConfig::from_args(&args);
    let port: u16 = args.parsed("port").unwrap_or(7);
    let count: u64 = args.parsed("count").unwrap_or(u64::MAX);
    let (mut device, mut iface, _filters) = match host.open(64, &[Filter::icmp_to(host.ip), Filter::udp_port(port)], now()) {
        Ok(opened) => opened,
        Err(error) => {
            println!("udpecho: cannot open the network (port {port}; needs arpd: init=arpd,udpecho): {error}");
            return 1;
        }
    };
    let socket = udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 16], vec![0; 16 * 1536]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 16], vec![0; 16 * 1536]),
    );
    let mut sockets = SocketSet::new(vec![]);
    let handle = sockets.add(socket);
    sockets.get_mut::<udp::Socket>(handle).bind(port).expect("bind");
    println!("udpecho: {} port {port} ready", exos::ipv4::Dotted(host.ip));
    // One predicate for the whole run: a frame stored, the ARP table changed, or the deadline
    // the loop moves to smoltcp's next timer before each sleep.
    let mut waiter = Waiter::new().expect("the process's waiter");
    device.watch(&mut waiter);
    let mut echoed = 0u64;
    let mut buffer = [0u8; 1536];
    // Done once `count` datagrams are echoed and none waits for a neighbour's MAC.
    while echoed < count || device.has_pending() {
        iface.poll(now(), &mut device, &mut sockets);
        let socket = sockets.get_mut::<udp::Socket>(handle);
        while let Ok((len, meta)) = socket.recv_slice(&mut buffer) {
            if socket.send_slice(&buffer[..len], meta.endpoint).is_ok() {
                echoed += 1;
            }
        }
        iface.poll(now(), &mut device, &mut sockets);
        device.send_pending();
        // Sleep until a frame is stored, the table changes or smoltcp's next timer, at most 1 s.
        let delay_ms = iface.poll_delay(now(), &sockets).map_or(1000, |d| d.total_millis().min(1000));
        waiter.sleep_ms(delay_ms).expect("wakeup predicate");
    }
    println!("udpecho: echoed {echoed} datagrams");
    0
}
