//! A small netcat: `netcat A.B.C.D PORT [send=TEXT]` connects out (a random local port, the
//! peer's MAC through arpd), sends TEXT, prints what comes back until the peer has finished
//! sending (`netcat: received <n> bytes: <text>`), and closes.
//! Needs arpd (`init=arpd,netcat:...`).
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

use embedded_io::{Read, Write};
use exos::netdev::HostConfig;
use core::net::SocketAddrV4;
use exos::socket::{self, How, TcpStream};
use exos::{ipv4, println};

exos::entry!(run);

fn run(args: exos::Args) -> i32 {
    let mut words = args.iter().filter(|word| !word.contains('='));
    let (Some(address), Some(port)) = (words.next().and_then(ipv4::parse), words.next().and_then(|p| p.parse::<u16>().ok())) else {
        println!("netcat: usage: netcat A.B.C.D PORT [send=TEXT]");
        return 2;
    };
    if let Err(error) = socket::open(HostConfig::from_args(&args)) {
        println!("netcat: cannot open the network (needs arpd): {error}");
        return 1;
    }
    let mut stream = match TcpStream::connect(SocketAddrV4::new(address.into(), port)) {
        Ok(stream) => stream,
        Err(error) => {
            println!("netcat: connect to {}:{port}: {error}", ipv4::Dotted(address));
            return 1;
        }
    };
    if let Some(text) = args.value("send")
        && let Err(error) = stream.write_all(text.as_bytes()).and_then(|()| stream.flush())
    {
        println!("netcat: send: {error}");
        return 1;
    }
    let mut received = alloc::vec::Vec::new();
    let mut buffer = [0u8; 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => received.extend_from_slice(&buffer[..count]),
            Err(error) => {
                println!("netcat: receive: {error}");
                return 1;
            }
        }
    }
    println!("netcat: received {} bytes: {}", received.len(), core::str::from_utf8(&received).unwrap_or("(not UTF-8)"));
    let _ = stream.shutdown(How::Write);
    0
}
