//! Pings a host through an exos ping socket (ICMP echo; `socket(Kind::Ping)`):
//! `ping:A.B.C.D[:count=N]` sends N echo requests (3), each once the last was answered or 3 s
//! passed, prints each reply
//! (`ping: 16 bytes from A.B.C.D: seq S time T ms`) and a summary (`ping: R of N replies`);
//! exits 0 if every request was answered. Needs arpd (`init=arpd,ping:10.0.2.2`).
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

use core::net::SocketAddrV4;
use exos::netdev::HostConfig;
use exos::socket::{self, Kind, SockOpt};
use exos::{ipv4, println, sys};
use smoltcp::time::Duration;

exos::entry!(run);

fn run(args: exos::Args) -> i32 {
    let Some(address) = args.iter().find(|word| !word.contains('=')).and_then(ipv4::parse) else {
        println!("ping: usage: ping:A.B.C.D[:count=N]");
        return 2;
    };
    let count: u16 = args.parsed("count").unwrap_or(3);
    if let Err(error) = socket::open(HostConfig::from_args(&args)) {
        println!("ping: cannot open the network (needs arpd): {error}");
        return 1;
    }
    let ping = match socket::socket(Kind::Ping).and_then(|fd| socket::set_option(fd, SockOpt::RecvTimeout(Some(Duration::from_secs(3)))).map(|()| fd)) {
        Ok(fd) => fd,
        Err(error) => {
            println!("ping: {error}");
            return 1;
        }
    };
    let to = SocketAddrV4::new(address.into(), 0);
    let mut replies = 0;
    let mut buffer = [0u8; 64];
    for seq in 0..count {
        let sent_at = sys::time();
        let mut data = [0u8; 16];
        data[..8].copy_from_slice(&sent_at.to_le_bytes());
        data[8..10].copy_from_slice(&seq.to_le_bytes());
        if let Err(error) = socket::send_to(ping, &data, to) {
            println!("ping: send: {error}");
            continue;
        }
        // The reply to this request (late replies to older ones are skipped), for 3 s at most.
        loop {
            match socket::recv_from(ping, &mut buffer) {
                Ok((len, from)) if len == data.len() && buffer[8..10] == seq.to_le_bytes() => {
                    let micros = (sys::time() - sent_at) / 1000;
                    println!("ping: {len} bytes from {}: seq {seq} time {}.{:03} ms", from.ip(), micros / 1000, micros % 1000);
                    replies += 1;
                    break;
                }
                Ok(_) => {}
                Err(error) => {
                    println!("ping: seq {seq}: {error}");
                    break;
                }
            }
        }
    }
    println!("ping: {replies} of {count} replies");
    i32::from(replies != count)
}
