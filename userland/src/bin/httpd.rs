//! The baseline HTTP server: one process, event-driven, on exos's socket API only (a
//! non-blocking listener and connections served by one `poll` loop), serving the files of the
//! image under `www/` with the HTTP code it shares with Cheetah (`cheetah::http`). Tuned as the
//! paper's baseline was: every response head is prepared at start, a response goes out with
//! one `writev`-style call (head and file bytes, no copy into a response buffer), TCP_NODELAY,
//! and nothing is allocated per request.
//!
//! A connection that is to close (HTTP/1.0, `Connection: close`, a refused request) is shut
//! for sending once its response is out and read to its end, so the client gets the whole
//! response before the connection goes. Keep-alive connections idle for `idle` seconds are
//! closed; a response the socket takes no byte of for `send` seconds (its client stopped
//! reading, or the path lost it) is given up, as nginx's `send_timeout` does. The default
//! outlasts the retransmission backoff of exos's TCP (smoltcp's: 1 s doubled up to 60 s, so a
//! chain of timeouts can take 123 s on a lossy path that still delivers; 60 s cut a download
//! through the fault relay). Each close that loses response bytes is logged. On a lossy path a
//! smaller `sndbuf` recovers faster: after a timeout smoltcp sends the whole flight again and
//! keeps its doubled timeout until data past that flight is acknowledged, so the larger the
//! flight the likelier another loss doubles it again (docs/network.md, "Sockets").
//!
//! Arguments: those of `exos::netdev::HostConfig`, `port=P` (80), `backlog=N` (128), `idle=S`
//! (15), `send=S` (150), `sndbuf=BYTES` (each connection's send buffer, 65536), `root=DIR`
//! (`www`). Needs arpd (`init=arpd,httpd`).
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::vec::Vec;
use cheetah::http::{self, HEAD_MAX, Parsed, Reply, Site};
use embedded_io::Read;
use exos::abi::layout::TICK_HZ;
use exos::ipv4::Dotted;
use exos::netdev::HostConfig;
use exos::socket::{self, Errno, How, PollFd, SockOpt, TcpListener, TcpStream, events};
use exos::{fs, println, sys};
use smoltcp::time::Duration;

exos::entry!(run);

/// How long a closing connection may take to finish reading (ticks: 2 s).
const DRAIN_TICKS: u64 = 2 * TICK_HZ;

/// How long a connection may wait (ticks): for its next request, and for the socket to take
/// more of a response.
#[derive(Clone, Copy)]
struct Limits {
    idle_ticks: u64,
    send_ticks: u64,
}

/// One client connection.
struct Connection<'s> {
    stream: TcpStream,
    /// Bytes received and not yet parsed (at most one head and one byte).
    input: Box<[u8]>,
    filled: usize,
    /// The response being sent, and how much of it is out.
    reply: Option<Reply<'s>>,
    sent: usize,
    /// Shut for sending: read to the end, then close.
    draining: bool,
    /// When it last moved a byte (ticks).
    active: u64,
}

impl<'s> Connection<'s> {
    fn new(stream: TcpStream, now: u64) -> Connection<'s> {
        Connection { stream, input: alloc::vec![0u8; HEAD_MAX + 1].into_boxed_slice(), filled: 0, reply: None, sent: 0, draining: false, active: now }
    }

    /// Moves what it can without waiting: sends the response, parses the next request,
    /// reads. False once the connection is done.
    fn serve(&mut self, site: &'s Site<'s>, now: u64, served: &mut u64) -> Result<bool, Errno> {
        loop {
            if let Some(reply) = self.reply {
                let total = reply.head.len() + reply.body.len();
                while self.sent < total {
                    let parts: [&[u8]; 2] = match self.sent.checked_sub(reply.head.len()) {
                        None => [&reply.head[self.sent..], reply.body],
                        Some(into_body) => [&reply.body[into_body..], &[]],
                    };
                    match self.stream.write_vectored(&parts) {
                        Ok(sent) => {
                            self.sent += sent;
                            self.active = now;
                        }
                        Err(Errno::WouldBlock) => return Ok(true),
                        Err(error) => return Err(error),
                    }
                }
                self.reply = None;
                self.sent = 0;
                *served += 1;
                if !reply.keep_alive {
                    self.stream.shutdown(How::Write)?;
                    self.draining = true;
                }
            }
            if self.draining {
                match self.stream.read(&mut self.input) {
                    Ok(0) => return Ok(false),
                    Ok(_) => continue,
                    Err(Errno::WouldBlock) => return Ok(true),
                    Err(error) => return Err(error),
                }
            }
            match http::parse(&self.input[..self.filled]) {
                Parsed::Complete(request, length) => {
                    self.reply = Some(site.reply(&request));
                    self.input.copy_within(length..self.filled, 0);
                    self.filled -= length;
                    continue;
                }
                Parsed::Refused(refusal) => {
                    self.reply = Some(site.refusal(refusal));
                    self.filled = 0;
                    continue;
                }
                Parsed::Partial => {}
            }
            match self.stream.read(&mut self.input[self.filled..]) {
                Ok(0) => return Ok(false),
                Ok(received) => {
                    self.filled += received;
                    self.active = now;
                }
                Err(Errno::WouldBlock) => return Ok(true),
                Err(error) => return Err(error),
            }
        }
    }

    /// Bytes of the current response not yet taken by the socket.
    fn unsent(&self) -> usize {
        self.reply.map_or(0, |reply| reply.head.len() + reply.body.len() - self.sent)
    }

    /// The tick after which it is closed for idleness.
    fn deadline(&self, limits: Limits) -> u64 {
        self.active
            + match (self.draining, self.reply.is_some()) {
                (true, _) => DRAIN_TICKS,
                (false, true) => limits.send_ticks,
                (false, false) => limits.idle_ticks,
            }
    }
}

fn run(args: exos::Args) -> i32 {
    let host = HostConfig::from_args(&args);
    let port: u16 = args.parsed("port").unwrap_or(80);
    let backlog: usize = args.parsed("backlog").unwrap_or(128);
    let limits = Limits { idle_ticks: args.parsed::<u64>("idle").unwrap_or(15) * TICK_HZ, send_ticks: args.parsed::<u64>("send").unwrap_or(150) * TICK_HZ };
    let root = args.value("root").unwrap_or("www");
    let store = match fs::store() {
        Ok(store) => store,
        Err(error) => {
            println!("httpd: no file store: {error}");
            return 1;
        }
    };
    let prefix = alloc::format!("{root}/");
    let files: Vec<(&'static str, &'static [u8])> = store
        .files()
        .filter_map(|(path, _)| Some((path.strip_prefix(prefix.as_str())?, store.open(path).ok()?.bytes())))
        .collect();
    let site = Site::new(files);
    if let Err(error) = socket::open(host) {
        println!("httpd: cannot open the network (needs arpd: init=arpd,httpd): {error}");
        return 1;
    }
    let send_buffer: usize = args.parsed("sndbuf").unwrap_or(64 * 1024);
    let options = [SockOpt::NoDelay(true), SockOpt::SendBuffer(send_buffer), SockOpt::NonBlocking(true)];
    let listener = match TcpListener::bind_with(port, backlog, &options) {
        Ok(listener) => listener,
        Err(error) => {
            println!("httpd: port {port}: {error}");
            return 1;
        }
    };
    println!("httpd: {} port {port} ready, {} files from {root}/", Dotted(host.ip), site.len());
    let mut connections: Vec<Connection<'_>> = Vec::new();
    let mut fds: Vec<PollFd> = Vec::new();
    let mut served = 0u64;
    loop {
        let now = sys::ticks();
        fds.clear();
        fds.push(PollFd::new(listener.fd(), events::IN));
        let mut next_deadline = u64::MAX;
        for connection in &connections {
            let interest = if connection.reply.is_some() { events::OUT } else { events::IN };
            fds.push(PollFd::new(connection.stream.fd(), interest));
            next_deadline = next_deadline.min(connection.deadline(limits));
        }
        let timeout = (next_deadline != u64::MAX).then(|| Duration::from_millis(next_deadline.saturating_sub(now) * 1000 / TICK_HZ));
        if let Err(error) = socket::poll(&mut fds, timeout) {
            println!("httpd: poll: {error}");
            return 1;
        }
        socket::report_drops("httpd", false);
        let now = sys::ticks();
        if fds[0].revents & events::IN != 0 {
            loop {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Err(error) = stream.set_nonblocking(true) {
                            println!("httpd: accept: {error}");
                            continue;
                        }
                        connections.push(Connection::new(stream, now));
                    }
                    Err(Errno::WouldBlock) => break,
                    Err(error) => {
                        println!("httpd: accept: {error}");
                        break;
                    }
                }
            }
        }
        let site = &site;
        connections.retain_mut(|connection| {
            let open = match connection.serve(site, now, &mut served) {
                Ok(open) => open,
                Err(error) => {
                    println!("httpd: a connection ended: {error} ({} bytes of a response unsent)", connection.unsent());
                    false
                }
            };
            let idle = open && now >= connection.deadline(limits);
            if idle && connection.reply.is_some() {
                println!("httpd: giving up a response the socket took no bytes of for {} s ({} bytes unsent)", limits.send_ticks / TICK_HZ, connection.unsent());
            }
            open && !idle
        });
    }
}
