//! A TCP echo server (RFC 862, port 7 by default) written against exos's sockets
//! (`exos::socket`: `TcpListener`, `TcpStream` with `embedded_io` Read/Write), one connection
//! at a time (serving many at once waits for `poll`).
//!
//! Arguments: those of `exos::netdev::HostConfig`, `port=P` (7), `backlog=N` (8), `count=K`
//! (exit after K connections). Needs arpd (`init=arpd,tcpecho`).
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

use embedded_io::{Read, Write};
use exos::ipv4::Dotted;
use exos::netdev::HostConfig;
use exos::println;
use exos::socket::{self, TcpListener};

exos::entry!(run);

fn run(args: exos::Args) -> i32 {
    let host = HostConfig::from_args(&args);
    let port: u16 = args.parsed("port").unwrap_or(7);
    let backlog: usize = args.parsed("backlog").unwrap_or(8);
    let count: u64 = args.parsed("count").unwrap_or(u64::MAX);
    if let Err(error) = socket::open(host) {
        println!("tcpecho: cannot open the network (needs arpd: init=arpd,tcpecho): {error}");
        return 1;
    }
    let mut listener = match TcpListener::bind(port, backlog) {
        Ok(listener) => listener,
        Err(error) => {
            println!("tcpecho: port {port}: {error}");
            return 1;
        }
    };
    println!("tcpecho: {} port {port} ready, backlog {backlog}", Dotted(host.ip));
    let (mut served, mut echoed) = (0u64, 0u64);
    let mut buffer = alloc::vec![0u8; 16 * 1024];
    while served < count {
        let mut stream = match listener.accept() {
            Ok(stream) => stream,
            Err(error) => {
                println!("tcpecho: accept: {error}");
                return 1;
            }
        };
        loop {
            match stream.read(&mut buffer) {
                Ok(0) => break,
                Ok(received) => match stream.write_all(&buffer[..received]) {
                    Ok(()) => echoed += received as u64,
                    Err(error) => {
                        println!("tcpecho: write: {error}");
                        break;
                    }
                },
                Err(error) => {
                    println!("tcpecho: read: {error}");
                    break;
                }
            }
        }
        let _ = stream.flush();
        served += 1;
    }
    println!("tcpecho: served {served} connections, echoed {echoed} bytes");
    0
}
