//! TCP sockets shaped like `std::net`: [`TcpListener`] and [`TcpStream`] (accepted or
//! connected from a random local port), over the process's
//! one network stack (smoltcp on an [`IpDevice`]) and its one [`Waiter`]. Blocking calls poll
//! the stack and sleep on the waiter (a frame, a table change or smoltcp's next timer), never
//! spin. Streams implement `embedded_io`'s `Read` and `Write`.
//!
//! One packet ring serves every endpoint of the process: a listener adds its DPF filter to it
//! (refused as [`SocketError::AddrInUse`] when another program holds the port). smoltcp gives
//! one connection per listening socket, so a listener keeps `backlog` of them and re-arms one
//! as each connection is accepted (DESIGN.md §6a).

use crate::filter::InstalledFilter;
use crate::netdev::{HostConfig, IpDevice, now};
use crate::wait::Waiter;
use alloc::vec;
use alloc::vec::Vec;
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use xok_abi::Error;

/// Bytes of receive and of send buffer per connection.
pub const TCP_BUFFER: usize = 64 * 1024;
/// Ring entries of the process's stack.
const RING_ENTRIES: usize = 128;

/// What a socket call can fail with (errno-style).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketError {
    /// Another program holds the address and port (EADDRINUSE).
    AddrInUse,
    /// The connection is not open for this (ENOTCONN).
    NotConnected,
    /// The peer reset the connection (ECONNRESET).
    ConnectionReset,
    /// The peer refused the connection (ECONNREFUSED).
    ConnectionRefused,
    /// The peer did not answer in time (ETIMEDOUT).
    TimedOut,
    /// No local port was free (EADDRNOTAVAIL).
    NoPortFree,
    /// The network was never opened ([`open`]), or the kernel refused a resource.
    Network(Error),
}

impl core::fmt::Display for SocketError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SocketError::AddrInUse => f.write_str("address in use"),
            SocketError::NotConnected => f.write_str("not connected"),
            SocketError::ConnectionReset => f.write_str("connection reset"),
            SocketError::ConnectionRefused => f.write_str("connection refused"),
            SocketError::TimedOut => f.write_str("timed out"),
            SocketError::NoPortFree => f.write_str("no local port free"),
            SocketError::Network(error) => write!(f, "network: {error}"),
        }
    }
}

impl core::error::Error for SocketError {}

impl embedded_io::Error for SocketError {
    fn kind(&self) -> embedded_io::ErrorKind {
        match self {
            SocketError::AddrInUse => embedded_io::ErrorKind::AddrInUse,
            SocketError::NotConnected => embedded_io::ErrorKind::NotConnected,
            SocketError::ConnectionReset => embedded_io::ErrorKind::ConnectionReset,
            SocketError::ConnectionRefused => embedded_io::ErrorKind::ConnectionRefused,
            SocketError::TimedOut => embedded_io::ErrorKind::TimedOut,
            SocketError::NoPortFree => embedded_io::ErrorKind::AddrNotAvailable,
            SocketError::Network(_) => embedded_io::ErrorKind::Other,
        }
    }
}

/// The process's network stack.
struct Stack {
    host: HostConfig,
    device: IpDevice,
    iface: Interface,
    sockets: SocketSet<'static>,
    waiter: Waiter,
    /// Sockets whose streams were dropped: removed once closed.
    orphans: Vec<SocketHandle>,
    _filters: Vec<InstalledFilter>,
}

/// The stack, once [`open`] has run (the process is single-threaded: the lock is never
/// contended, it only makes the global sound).
static STACK: spin::Mutex<Option<Stack>> = spin::Mutex::new(None);

/// Opens the process's network as `host` (its address, NIC and gateway; needs arpd's table).
pub fn open(host: HostConfig) -> Result<(), SocketError> {
    let (device, iface, filters) = host.open(RING_ENTRIES, &[], now()).map_err(SocketError::Network)?;
    let mut waiter = Waiter::new().ok_or(SocketError::Network(Error::TooMany))?;
    device.watch(&mut waiter);
    let stack = Stack { host, device, iface, sockets: SocketSet::new(vec![]), waiter, orphans: Vec::new(), _filters: filters };
    *STACK.lock() = Some(stack);
    Ok(())
}

/// Runs `f` on the open stack.
fn with_stack<R>(f: impl FnOnce(&mut Stack) -> R) -> Result<R, SocketError> {
    let mut stack = STACK.lock();
    stack.as_mut().map(f).ok_or(SocketError::Network(Error::NotFound))
}

impl Stack {
    /// Moves packets both ways and drops finished orphans.
    fn poll(&mut self) {
        self.iface.poll(now(), &mut self.device, &mut self.sockets);
        self.device.send_pending();
        let sockets = &mut self.sockets;
        self.orphans.retain(|handle| {
            let closed = sockets.get::<tcp::Socket>(*handle).state() == tcp::State::Closed;
            if closed {
                sockets.remove(*handle);
            }
            !closed
        });
    }

    /// Sleeps until something may have changed (at most until smoltcp's next timer, 1 s).
    fn wait(&mut self) {
        let delay_ms = self.iface.poll_delay(now(), &self.sockets).map_or(1000, |d| d.total_millis().min(1000));
        let _ = self.waiter.sleep_ms(delay_ms);
    }

    fn listening_socket(&mut self, port: u16) -> SocketHandle {
        let mut socket = tcp::Socket::new(tcp::SocketBuffer::new(vec![0; TCP_BUFFER]), tcp::SocketBuffer::new(vec![0; TCP_BUFFER]));
        socket.set_nagle_enabled(false);
        socket.set_ack_delay(None);
        let _ = socket.listen(port);
        self.sockets.add(socket)
    }
}

/// Polls and, until `step` gives an answer, sleeps and tries again.
fn block<T>(mut step: impl FnMut(&mut Stack) -> Option<T>) -> Result<T, SocketError> {
    loop {
        let answer = with_stack(|stack| {
            stack.poll();
            let answer = step(stack);
            if answer.is_none() {
                stack.wait();
            }
            answer
        })?;
        if let Some(answer) = answer {
            return Ok(answer);
        }
    }
}

/// A TCP port this process listens on, with a backlog of listening sockets.
pub struct TcpListener {
    port: u16,
    backlog: Vec<SocketHandle>,
    _filter: InstalledFilter,
}

impl TcpListener {
    /// Listens on `port` of the process's address with room for `backlog` connections that
    /// wait to be accepted.
    pub fn bind(port: u16, backlog: usize) -> Result<TcpListener, SocketError> {
        with_stack(|stack| {
            let filter = stack.device.ring.install(&dpf::Filter::tcp_listen(stack.host.ip, port)).map_err(|error| match error {
                Error::FilterOverlap => SocketError::AddrInUse,
                other => SocketError::Network(other),
            })?;
            let backlog = (0..backlog.max(1)).map(|_| stack.listening_socket(port)).collect();
            Ok(TcpListener { port, backlog, _filter: filter })
        })?
    }

    /// The next connection (waiting for one).
    pub fn accept(&mut self) -> Result<TcpStream, SocketError> {
        let port = self.port;
        let backlog = &mut self.backlog;
        block(|stack| {
            let index = backlog.iter().position(|handle| {
                let state = stack.sockets.get::<tcp::Socket>(*handle).state();
                !matches!(state, tcp::State::Listen | tcp::State::SynReceived | tcp::State::Closed)
            })?;
            let accepted = backlog[index];
            backlog[index] = stack.listening_socket(port);
            Some(TcpStream { handle: accepted, _filter: None })
        })
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        let _ = with_stack(|stack| {
            for handle in self.backlog.drain(..) {
                stack.sockets.get_mut::<tcp::Socket>(handle).abort();
                stack.orphans.push(handle);
            }
        });
    }
}

/// Local ports `connect` picks from (the IANA dynamic range).
const EPHEMERAL: core::ops::Range<u16> = 49152..65535;
/// Ports tried before `connect` gives up with [`SocketError::NoPortFree`].
const PORT_TRIES: usize = 32;
/// How long `connect` waits for the peer (ticks: 20 s).
const CONNECT_TICKS: u64 = 2000;

/// A TCP connection.
pub struct TcpStream {
    handle: SocketHandle,
    /// The filter of a connection this program opened (accepted ones arrive through their
    /// listener's filter).
    _filter: Option<InstalledFilter>,
}

impl TcpStream {
    /// Connects to `address`:`port` from a random local port; a port whose filter DPF refuses
    /// (another program's) is re-picked.
    pub fn connect(address: [u8; 4], port: u16) -> Result<TcpStream, SocketError> {
        let handle_and_filter = with_stack(|stack| {
            let mut seed = crate::sys::time() ^ (u64::from(crate::sys::env_id().0) << 32);
            for _ in 0..PORT_TRIES {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let local = EPHEMERAL.start + (seed % u64::from(EPHEMERAL.end - EPHEMERAL.start)) as u16;
                let filter = dpf::Filter::tcp_connection(stack.host.ip, local, address, port);
                let installed = match stack.device.ring.install(&filter) {
                    Ok(installed) => installed,
                    Err(Error::FilterOverlap) => continue,
                    Err(error) => return Err(SocketError::Network(error)),
                };
                let mut socket = tcp::Socket::new(tcp::SocketBuffer::new(vec![0; TCP_BUFFER]), tcp::SocketBuffer::new(vec![0; TCP_BUFFER]));
                socket.set_nagle_enabled(false);
                socket.set_ack_delay(None);
                let remote = (smoltcp::wire::Ipv4Address::from_octets(address), port);
                socket.connect(stack.iface.context(), remote, local).map_err(|_| SocketError::NotConnected)?;
                return Ok((stack.sockets.add(socket), installed));
            }
            Err(SocketError::NoPortFree)
        })??;
        let (handle, filter) = handle_and_filter;
        let stream = TcpStream { handle, _filter: Some(filter) };
        let give_up = crate::sys::ticks() + CONNECT_TICKS;
        block(|stack| {
            let socket = stack.sockets.get::<tcp::Socket>(handle);
            match socket.state() {
                tcp::State::Established => Some(Ok(())),
                tcp::State::Closed => Some(Err(SocketError::ConnectionRefused)),
                _ if crate::sys::ticks() >= give_up => Some(Err(SocketError::TimedOut)),
                _ => None,
            }
        })??;
        Ok(stream)
    }

    /// Says this side will send no more (the peer reads the end of the stream). Known limit:
    /// smoltcp forgets received data a connection still holds when its close completes, so
    /// read what the peer sends before shutting down if the peer may finish first.
    pub fn shutdown(&mut self) -> Result<(), SocketError> {
        let handle = self.handle;
        with_stack(|stack| {
            stack.sockets.get_mut::<tcp::Socket>(handle).close();
            stack.poll();
        })
    }
}

impl embedded_io::ErrorType for TcpStream {
    type Error = SocketError;
}

impl embedded_io::Read for TcpStream {
    /// Reads what has arrived (waiting for something); 0 once the peer has finished sending.
    fn read(&mut self, buffer: &mut [u8]) -> Result<usize, SocketError> {
        if buffer.is_empty() {
            return Ok(0);
        }
        let handle = self.handle;
        block(|stack| {
            let socket = stack.sockets.get_mut::<tcp::Socket>(handle);
            if socket.can_recv() {
                return Some(socket.recv_slice(buffer).map_err(|_| SocketError::NotConnected));
            }
            if !socket.may_recv() {
                return Some(if socket.state() == tcp::State::Closed { Err(SocketError::ConnectionReset) } else { Ok(0) });
            }
            None
        })?
    }
}

impl embedded_io::Write for TcpStream {
    /// Queues as much of `data` as the send buffer takes (waiting for room).
    fn write(&mut self, data: &[u8]) -> Result<usize, SocketError> {
        if data.is_empty() {
            return Ok(0);
        }
        let handle = self.handle;
        block(|stack| {
            let socket = stack.sockets.get_mut::<tcp::Socket>(handle);
            if !socket.may_send() {
                return Some(Err(SocketError::NotConnected));
            }
            if socket.can_send() {
                let sent = socket.send_slice(data).map_err(|_| SocketError::NotConnected);
                stack.poll();
                return Some(sent);
            }
            None
        })?
    }

    /// Waits until the peer has acknowledged everything written.
    fn flush(&mut self) -> Result<(), SocketError> {
        let handle = self.handle;
        block(|stack| {
            let socket = stack.sockets.get::<tcp::Socket>(handle);
            (socket.send_queue() == 0 || !socket.may_send()).then_some(())
        })
    }
}

impl Drop for TcpStream {
    /// Closes the connection; the socket leaves the stack once the close has finished.
    fn drop(&mut self) {
        let handle = self.handle;
        let _ = with_stack(|stack| {
            stack.sockets.get_mut::<tcp::Socket>(handle).close();
            stack.orphans.push(handle);
            stack.poll();
        });
    }
}
