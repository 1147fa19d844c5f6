//! A TCP echo server (RFC 862, port 7 by default) on exos's smoltcp stack with `Medium::Ip`:
//! frames come from a packet ring through `exos::netdev::IpDevice`, which writes the Ethernet
//! headers from arpd's table. A backlog of listening sockets is re-armed as connections end
//! (smoltcp gives one connection per listening socket: DESIGN.md §6a).
//!
//! Arguments: those of `exos::netdev::HostConfig`, `port=P` (7), `backlog=N` (8), `count=K`
//! (exit after K connections ended), `seconds=T` (exit after T seconds). Needs arpd
//! (`init=arpd,tcpecho`).
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;
use dpf::Filter;
use exos::abi::layout::TICK_HZ;
use exos::ipv4::Dotted;
use exos::netdev::{HostConfig, now};
use exos::wait::Waiter;
use exos::{println, sys};
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;

exos::entry!(run);

/// Bytes of receive and of send buffer per connection.
const BUFFER: usize = 64 * 1024;

fn run(args: exos::Args) -> i32 {
    let host = HostConfig::from_args(&args);
    let port: u16 = args.parsed("port").unwrap_or(7);
    let backlog: usize = args.parsed("backlog").unwrap_or(8).max(1);
    let count: u64 = args.parsed("count").unwrap_or(u64::MAX);
    let stop = args.parsed::<u64>("seconds").map(|s| sys::ticks() + s * TICK_HZ);
    let (mut device, mut iface, _filters) = match host.open(64, &[Filter::tcp_listen(host.ip, port)], now()) {
        Ok(opened) => opened,
        Err(error) => {
            println!("tcpecho: cannot open the network (port {port}; needs arpd: init=arpd,tcpecho): {error}");
            return 1;
        }
    };
    let mut sockets = SocketSet::new(vec![]);
    let mut listeners: Vec<(SocketHandle, bool)> = (0..backlog)
        .map(|_| {
            let mut socket = tcp::Socket::new(tcp::SocketBuffer::new(vec![0; BUFFER]), tcp::SocketBuffer::new(vec![0; BUFFER]));
            socket.set_nagle_enabled(false);
            socket.set_ack_delay(None);
            let _ = socket.listen(port);
            (sockets.add(socket), false)
        })
        .collect();
    println!("tcpecho: {} port {port} ready, backlog {backlog}", Dotted(host.ip));
    let mut waiter = Waiter::new().expect("the process's waiter");
    device.watch(&mut waiter);
    let (mut served, mut echoed) = (0u64, 0u64);
    let mut buffer = vec![0u8; BUFFER];
    while served < count && stop.is_none_or(|stop| sys::ticks() < stop) {
        iface.poll(now(), &mut device, &mut sockets);
        for (handle, active) in &mut listeners {
            let socket = sockets.get_mut::<tcp::Socket>(*handle);
            if socket.is_active() {
                *active = true;
            }
            let room = socket.send_capacity() - socket.send_queue();
            if socket.can_recv() && room > 0 {
                let limit = room.min(buffer.len());
                if let Ok(received) = socket.recv_slice(&mut buffer[..limit]) {
                    echoed += socket.send_slice(&buffer[..received]).unwrap_or(0) as u64;
                }
            }
            // The peer is done sending and everything is echoed: close our side.
            if !socket.may_recv() && socket.may_send() && socket.send_queue() == 0 && *active {
                socket.close();
            }
            if socket.state() == tcp::State::Closed {
                if *active {
                    served += 1;
                    *active = false;
                }
                let _ = socket.listen(port);
            }
        }
        iface.poll(now(), &mut device, &mut sockets);
        device.send_pending();
        let delay_ms = iface.poll_delay(now(), &sockets).map_or(1000, |d| d.total_millis().min(1000));
        if waiter.sleep_ms(delay_ms).is_err() {
            return 1;
        }
    }
    println!("tcpecho: served {served} connections, echoed {echoed} bytes, {} packets dropped for want of a MAC", device.out.unresolved);
    0
}
