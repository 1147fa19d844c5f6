//! A TCP echo server (RFC 862, port 7 by default) written against exos's sockets: a
//! non-blocking `TcpListener` and `TcpStream`s (embedded-io Read/Write) served together by one
//! `poll` loop, so any number of connections echo at once.
//!
//! Arguments: those of `exos::netdev::HostConfig`, `port=P` (7), `backlog=N` (64), `count=K`
//! (exit once K connections have been served). Needs arpd (`init=arpd,tcpecho`).
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

use alloc::vec::Vec;
use embedded_io::{Read, Write};
use exos::ipv4::Dotted;
use exos::netdev::HostConfig;
use exos::println;
use exos::socket::{self, Errno, PollFd, TcpListener, TcpStream, events};

exos::entry!(run);

/// Bytes a connection may have waiting to be echoed before it is read no further.
const PENDING_MAX: usize = 16 * 1024;

/// A connection being served.
struct Client {
    stream: TcpStream,
    /// Received bytes not yet echoed.
    pending: Vec<u8>,
    /// The peer has finished sending.
    finished: bool,
}

fn run(args: exos::Args) -> i32 {
    let host = HostConfig::from_args(&args);
    let port: u16 = args.parsed("port").unwrap_or(7);
    let backlog: usize = args.parsed("backlog").unwrap_or(64);
    let count: u64 = args.parsed("count").unwrap_or(u64::MAX);
    if let Err(error) = socket::open(host) {
        println!("tcpecho: cannot open the network (needs arpd: init=arpd,tcpecho): {error}");
        return 1;
    }
    let listener = match TcpListener::bind(port, backlog).and_then(|listener| listener.set_nonblocking(true).map(|()| listener)) {
        Ok(listener) => listener,
        Err(error) => {
            println!("tcpecho: port {port}: {error}");
            return 1;
        }
    };
    println!("tcpecho: {} port {port} ready, backlog {backlog}, heap {} bytes", Dotted(host.ip), exos::heap::used());
    let (mut accepted, mut served, mut echoed, mut most) = (0u64, 0u64, 0u64, 0usize);
    let mut clients: Vec<Client> = Vec::new();
    let mut fds: Vec<PollFd> = Vec::new();
    let mut buffer = alloc::vec![0u8; 16 * 1024];
    while served < count {
        fds.clear();
        fds.push(PollFd::new(listener.fd(), if accepted < count { events::IN } else { 0 }));
        for client in &clients {
            let read = if client.pending.len() < PENDING_MAX && !client.finished { events::IN } else { 0 };
            let write = if client.pending.is_empty() { 0 } else { events::OUT };
            fds.push(PollFd::new(client.stream.fd(), read | write));
        }
        if let Err(error) = socket::poll(&mut fds, None) {
            println!("tcpecho: poll: {error}");
            return 1;
        }
        socket::report_drops("tcpecho", false);
        if fds[0].revents & events::IN != 0 {
            while accepted < count {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(true).and_then(|()| stream.set_nodelay(true));
                        clients.push(Client { stream, pending: Vec::new(), finished: false });
                        accepted += 1;
                    }
                    Err(Errno::WouldBlock) => break,
                    Err(error) => {
                        println!("tcpecho: accept: {error}");
                        break;
                    }
                }
            }
            // Each new hundred of connections open at once: what they cost in memory.
            if clients.len() / 100 > most / 100 {
                println!("tcpecho: {} connections open, heap {} bytes", clients.len() / 100 * 100, exos::heap::used());
            }
            most = most.max(clients.len());
        }
        let before = clients.len();
        clients.retain_mut(|client| match serve(client, &mut buffer, &mut echoed) {
            Ok(open) => open,
            Err(error) => {
                println!("tcpecho: connection: {error}");
                false
            }
        });
        served += (before - clients.len()) as u64;
    }
    socket::report_drops("tcpecho", true);
    println!("tcpecho: served {served} connections (at most {most} at once), echoed {echoed} bytes");
    0
}

/// Moves what it can of one connection without waiting; false once it is done.
fn serve(client: &mut Client, buffer: &mut [u8], echoed: &mut u64) -> Result<bool, Errno> {
    loop {
        while !client.pending.is_empty() {
            match client.stream.write(&client.pending) {
                Ok(sent) => {
                    client.pending.drain(..sent);
                    *echoed += sent as u64;
                }
                Err(Errno::WouldBlock) => return Ok(true),
                Err(error) => return Err(error),
            }
        }
        if client.finished {
            return Ok(false);
        }
        let room = PENDING_MAX - client.pending.len();
        match client.stream.read(&mut buffer[..room]) {
            Ok(0) => client.finished = true,
            Ok(received) => client.pending.extend_from_slice(&buffer[..received]),
            Err(Errno::WouldBlock) => return Ok(true),
            Err(error) => return Err(error),
        }
    }
}
