//! A UDP echo server (RFC 862, port 7 by default) written against exos's sockets
//! (`exos::socket::UdpSocket`, non-blocking, waiting in `select`). The process's stack answers ping too (unless another program
//! already does).
//!
//! Arguments: those of `exos::netdev::HostConfig`, `port=P`, `count=K` (exit after echoing K
//! datagrams; default: run forever). Needs arpd (`init=arpd,udpecho`).
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

use exos::netdev::HostConfig;
use exos::println;
use exos::socket::{self, Errno, FdSet, UdpSocket};
use smoltcp::time::Duration;

exos::entry!(run);

fn run(args: exos::Args) -> i32 {
    let host = HostConfig::from_args(&args);
    let port: u16 = args.parsed("port").unwrap_or(7);
    let count: u64 = args.parsed("count").unwrap_or(u64::MAX);
    if let Err(error) = socket::open(host) {
        println!("udpecho: cannot open the network (needs arpd: init=arpd,udpecho): {error}");
        return 1;
    }
    let socket = match UdpSocket::bind(port).and_then(|socket| socket.set_nonblocking(true).map(|()| socket)) {
        Ok(socket) => socket,
        Err(error) => {
            println!("udpecho: port {port}: {error}");
            return 1;
        }
    };
    println!("udpecho: {} port {port} ready", exos::ipv4::Dotted(host.ip));
    let mut echoed = 0u64;
    let mut buffer = [0u8; 1536];
    // `select` waits for a datagram; the non-blocking socket then gives every one that came.
    while echoed < count {
        let (mut readable, mut writable) = (FdSet::default(), FdSet::default());
        readable.insert(socket.fd());
        if let Err(error) = socket::select(&mut readable, &mut writable, None) {
            println!("udpecho: select: {error}");
            return 1;
        }
        socket::report_drops("udpecho", false);
        while echoed < count {
            match socket.recv_from(&mut buffer) {
                Ok((len, from)) => match socket.send_to(&buffer[..len], from) {
                    Ok(_) => echoed += 1,
                    Err(error) => println!("udpecho: {error}"),
                },
                Err(Errno::WouldBlock) => break,
                Err(error) => println!("udpecho: {error}"),
            }
        }
    }
    socket::drain(Duration::from_secs(3));
    socket::report_drops("udpecho", true);
    println!("udpecho: echoed {echoed} datagrams");
    0
}
