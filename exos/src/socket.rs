//! Sockets for programs: POSIX-shaped calls on descriptors (`socket`, `bind`, `listen`,
//! `accept`, `connect`, `send`/`recv`, `send_to`/`recv_from`, `shutdown`, `close`, `poll`,
//! `select`, `set_option`), and the same as types shaped like `std::net` ([`TcpListener`],
//! [`TcpStream`], [`UdpSocket`]; streams implement `embedded_io`'s Read and Write).
//!
//! The process has one stack ([`crate::tcpip::Stack`] on an [`IpDevice`]: one packet ring for
//! all its endpoints, DPF filters per listening port, connection and UDP port) and one
//! [`Waiter`]. A blocking call polls the stack and sleeps on the waiter (a frame, an ARP table
//! change, the stack's next timer or the call's timeout), never spins; with O_NONBLOCK it
//! returns [`Errno::WouldBlock`] instead. (Pings are the machine's: strayd answers them.)

use crate::netdev::{HostConfig, IpDevice, now};
use crate::wait::Waiter;
use core::net::SocketAddrV4;
use smoltcp::time::{Duration, Instant};

pub use crate::tcpip::{Errno, Fd, How, Kind, Options, Ready, SockOpt, Stats};

/// Ring entries of the process's stack.
const RING_ENTRIES: usize = 512;
/// Ring entries for its listens' connection requests (those that arrive at once wait here).
const REQUEST_ENTRIES: usize = 512;
/// The longest sleep between polls (packets waiting for an ARP answer are retried or dropped).
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// The process's network.
struct Net {
    stack: crate::tcpip::Stack<IpDevice>,
    waiter: Waiter,
    /// The counters [`report_drops`] printed last, and when it may print next (ticks).
    reported: Stats,
    /// The ring drops [`report_drops`] printed last.
    reported_ring_drops: usize,
    next_report: u64,
}

/// The network, once [`open`] has run (the process is single-threaded: the lock is never
/// contended, it only makes the global sound).
static NET: spin::Mutex<Option<Net>> = spin::Mutex::new(None);

/// Opens the process's network as `host` (its address, NIC and gateway; needs arpd's table).
pub fn open(host: HostConfig) -> Result<(), Errno> {
    let device = host.device(RING_ENTRIES, REQUEST_ENTRIES).map_err(Errno::from_kernel)?;
    let mut waiter = Waiter::new().ok_or(Errno::Invalid)?;
    device.watch(&mut waiter);
    let stack = crate::tcpip::Stack::new(device, host.stack_config(crate::sys::time()), now());
    *NET.lock() = Some(Net { stack, waiter, reported: Stats::default(), reported_ring_drops: 0, next_report: 0 });
    Ok(())
}

/// Runs `f` on the open network.
fn with_net<R>(f: impl FnOnce(&mut Net) -> R) -> Result<R, Errno> {
    NET.lock().as_mut().map(f).ok_or(Errno::NotConnected)
}

/// Runs `f` on the stack (after a poll) at the current time.
fn with_stack<R>(f: impl FnOnce(&mut crate::tcpip::Stack<IpDevice>, Instant) -> Result<R, Errno>) -> Result<R, Errno> {
    with_net(|net| {
        let now = now();
        net.stack.poll(now);
        f(&mut net.stack, now)
    })?
}

impl Net {
    /// Sleeps until something may have changed: at most until the stack's next timer,
    /// `deadline` and [`MAX_SLEEP`].
    fn wait(&mut self, deadline: Option<Instant>) {
        let now = now();
        let until = [self.stack.poll_at(), deadline, Some(now + MAX_SLEEP)].into_iter().flatten().min().unwrap_or(now);
        let ms = if until > now { (until - now).total_millis() } else { 0 };
        if ms > 0 {
            let _ = self.waiter.sleep_ms(ms);
        }
    }
}

/// Which timeout bounds a blocking call.
#[derive(Clone, Copy)]
enum Direction {
    Receive,
    Send,
}

/// Tries `attempt` until it stops saying [`Errno::WouldBlock`]: once for a non-blocking
/// socket, until the socket's timeout (then `WouldBlock`) for a blocking one.
fn blocking<T>(
    fd: Fd,
    direction: Direction,
    mut attempt: impl FnMut(&mut crate::tcpip::Stack<IpDevice>, Instant) -> Result<T, Errno>,
) -> Result<T, Errno> {
    let options: Options = with_net(|net| net.stack.options(fd))??;
    let timeout = match direction {
        Direction::Receive => options.recv_timeout,
        Direction::Send => options.send_timeout,
    };
    let deadline = timeout.map(|timeout| now() + timeout);
    loop {
        let answer = with_net(|net| {
            let now = now();
            net.stack.poll(now);
            match attempt(&mut net.stack, now) {
                Err(Errno::WouldBlock) if !options.nonblocking && deadline.is_none_or(|deadline| now < deadline) => {
                    net.wait(deadline);
                    None
                }
                answer => Some(answer),
            }
        })?;
        if let Some(answer) = answer {
            return answer;
        }
    }
}

/// A new TCP (`Kind::Stream`) or UDP (`Kind::Datagram`) socket.
pub fn socket(kind: Kind) -> Result<Fd, Errno> {
    with_stack(|stack, _| stack.socket(kind))
}

/// Binds the socket to local `port` (0: any).
pub fn bind(fd: Fd, port: u16) -> Result<(), Errno> {
    with_stack(|stack, _| stack.bind(fd, port))
}

/// Listens with room for `backlog` connections waiting to be accepted.
pub fn listen(fd: Fd, backlog: usize) -> Result<(), Errno> {
    with_stack(|stack, _| stack.listen(fd, backlog))
}

/// The next connection and its peer (waiting for one; SO_RCVTIMEO bounds the wait).
pub fn accept(fd: Fd) -> Result<(Fd, SocketAddrV4), Errno> {
    blocking(fd, Direction::Receive, |stack, _| stack.accept(fd))
}

/// Connects to `to` (waiting for the handshake, bounded by SO_SNDTIMEO and the stack's
/// connection timeout; [`Errno::InProgress`] at once for a non-blocking socket).
pub fn connect(fd: Fd, to: SocketAddrV4) -> Result<(), Errno> {
    let started = with_stack(|stack, now| stack.connect(fd, to, now));
    if started != Err(Errno::InProgress) || with_net(|net| net.stack.options(fd))??.nonblocking {
        return started;
    }
    blocking(fd, Direction::Send, |stack, now| match stack.connect(fd, to, now) {
        Err(Errno::Already) => Err(Errno::WouldBlock),
        other => other,
    })
}

/// Sends what the send buffer takes of `data` (waiting for room).
pub fn send(fd: Fd, data: &[u8]) -> Result<usize, Errno> {
    blocking(fd, Direction::Send, |stack, now| stack.send(fd, data, now))
}

/// Sends what the send buffer takes of `parts`, in order, in one call (waiting for room).
pub fn send_vectored(fd: Fd, parts: &[&[u8]]) -> Result<usize, Errno> {
    blocking(fd, Direction::Send, |stack, now| stack.send_vectored(fd, parts, now))
}

/// Receives what has arrived (waiting for something); 0 at the end of the stream.
pub fn recv(fd: Fd, buffer: &mut [u8]) -> Result<usize, Errno> {
    blocking(fd, Direction::Receive, |stack, now| stack.recv(fd, buffer, now))
}

/// Sends one datagram to `to`.
pub fn send_to(fd: Fd, data: &[u8], to: SocketAddrV4) -> Result<usize, Errno> {
    blocking(fd, Direction::Send, |stack, now| stack.send_to(fd, data, to, now))
}

/// Receives one datagram and its sender (waiting for one).
pub fn recv_from(fd: Fd, buffer: &mut [u8]) -> Result<(usize, SocketAddrV4), Errno> {
    blocking(fd, Direction::Receive, |stack, _| stack.recv_from(fd, buffer))
}

/// Waits until the peer has acknowledged everything sent (SO_SNDTIMEO bounds the wait).
pub fn flush(fd: Fd) -> Result<(), Errno> {
    blocking(fd, Direction::Send, |stack, _| match stack.unacknowledged(fd)? {
        0 => Ok(()),
        _ => Err(Errno::WouldBlock),
    })
}

/// Closes one or both halves of a connection.
pub fn shutdown(fd: Fd, how: How) -> Result<(), Errno> {
    with_stack(|stack, now| stack.shutdown(fd, how, now))
}

/// Closes the descriptor (a connection finishes in the background).
pub fn close(fd: Fd) -> Result<(), Errno> {
    with_stack(|stack, now| stack.close(fd, now))
}

/// Sets an option (`setsockopt`; `SockOpt::NonBlocking` is `fcntl`'s O_NONBLOCK).
pub fn set_option(fd: Fd, option: SockOpt) -> Result<(), Errno> {
    with_stack(|stack, _| stack.set_option(fd, option))
}

/// The socket's options (`getsockopt`).
pub fn options(fd: Fd) -> Result<Options, Errno> {
    with_stack(|stack, _| stack.options(fd))
}

/// The error the connection ended with, once (SO_ERROR).
pub fn take_error(fd: Fd) -> Result<Option<Errno>, Errno> {
    with_stack(|stack, _| stack.take_error(fd))
}

/// The socket's local address.
pub fn local_addr(fd: Fd) -> Result<SocketAddrV4, Errno> {
    with_stack(|stack, _| stack.local_addr(fd))
}

/// A connection's peer.
pub fn peer_addr(fd: Fd) -> Result<SocketAddrV4, Errno> {
    with_stack(|stack, _| stack.peer_addr(fd))
}

/// The stack's counters.
pub fn stats() -> Result<Stats, Errno> {
    with_stack(|stack, _| Ok(stack.stats()))
}

/// How often [`report_drops`] may print (ticks).
const REPORT_TICKS: u64 = 10 * crate::abi::layout::TICK_HZ;

/// Prints what the stack dropped, as `name: dropped ...`, if it moved since the last report
/// and the last report is [`REPORT_TICKS`] old (`now`: whenever it moved). Programs call it
/// from their loops and at exit, so that drops are where a person reads the console.
pub fn report_drops(name: &str, now: bool) {
    let _ = with_net(|net| {
        let ticks = crate::sys::ticks();
        if !now && ticks < net.next_report {
            return;
        }
        let stats = net.stack.stats();
        let ring_drops = net.stack.link().ring_drops();
        let moved = |a: &Stats, b: &Stats| {
            (a.bad_checksums, a.syns_dropped, a.half_open_evicted, a.half_open_expired, a.fragments)
                != (b.bad_checksums, b.syns_dropped, b.half_open_evicted, b.half_open_expired, b.fragments)
        };
        if !moved(&stats, &net.reported) && ring_drops == net.reported_ring_drops {
            return;
        }
        let f = stats.fragments;
        crate::println!(
            "{name}: dropped {ring_drops} frames (ring full), {} packets with bad checksums, {} connection requests (backlog full), {} half-open connections ({} evicted, {} timed out); fragments {}: {} datagrams reassembled, dropped {} malformed, {} overlapping, {} timed out, {} evicted",
            stats.bad_checksums,
            stats.syns_dropped,
            stats.half_open_evicted + stats.half_open_expired,
            stats.half_open_evicted,
            stats.half_open_expired,
            f.fragments,
            f.reassembled,
            f.malformed,
            f.overlapping,
            f.timed_out,
            f.evicted
        );
        net.reported = stats;
        net.reported_ring_drops = ring_drops;
        net.next_report = ticks + REPORT_TICKS;
    });
}

/// `poll` interest and result bits.
pub mod events {
    /// Readable (POLLIN).
    pub const IN: u16 = 0x1;
    /// Writable (POLLOUT).
    pub const OUT: u16 = 0x4;
    /// The connection failed (POLLERR; reported whether asked for or not).
    pub const ERR: u16 = 0x8;
    /// The peer finished or the connection is over (POLLHUP; reported whether asked for or not).
    pub const HUP: u16 = 0x10;
    /// Not an open descriptor (POLLNVAL).
    pub const NVAL: u16 = 0x20;
}

/// One entry of [`poll`]: a descriptor, what to wait for, and what happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollFd {
    /// The descriptor.
    pub fd: Fd,
    /// [`events`] bits asked for.
    pub events: u16,
    /// [`events`] bits that hold (set by `poll`).
    pub revents: u16,
}

impl PollFd {
    /// Waits for `events` on `fd`.
    pub fn new(fd: Fd, events: u16) -> PollFd {
        PollFd { fd, events, revents: 0 }
    }
}

fn revents(ready: Result<Ready, Errno>, asked: u16) -> u16 {
    let Ok(ready) = ready else { return events::NVAL };
    let mut bits = 0;
    if ready.readable {
        bits |= events::IN;
    }
    if ready.writable {
        bits |= events::OUT;
    }
    (bits & asked) | if ready.error { events::ERR } else { 0 } | if ready.hangup { events::HUP } else { 0 }
}

/// Waits until one of `fds` is ready for what it asks (or fails), or `timeout` passes
/// (`None`: for ever; zero: just look). Returns how many entries have `revents` set.
pub fn poll(fds: &mut [PollFd], timeout: Option<Duration>) -> Result<usize, Errno> {
    let deadline = timeout.map(|timeout| now() + timeout);
    loop {
        let ready = with_net(|net| {
            let now = now();
            net.stack.poll(now);
            let mut count = 0;
            for entry in fds.iter_mut() {
                entry.revents = revents(net.stack.readiness(entry.fd), entry.events);
                count += usize::from(entry.revents != 0);
            }
            if count == 0 && deadline.is_none_or(|deadline| now < deadline) {
                net.wait(deadline);
                return None;
            }
            Some(count)
        })?;
        if let Some(count) = ready {
            return Ok(count);
        }
    }
}

/// A set of descriptors for [`select`].
#[derive(Clone, PartialEq, Eq)]
pub struct FdSet {
    bits: [u64; crate::tcpip::stack::MAX_DESCRIPTORS / 64],
}

impl Default for FdSet {
    fn default() -> Self {
        FdSet { bits: [0; crate::tcpip::stack::MAX_DESCRIPTORS / 64] }
    }
}

impl FdSet {
    /// Adds `fd` (FD_SET); descriptors past the table's size are ignored.
    pub fn insert(&mut self, fd: Fd) {
        if let Some(word) = self.bits.get_mut(fd / 64) {
            *word |= 1 << (fd % 64);
        }
    }

    /// Whether `fd` is in the set (FD_ISSET).
    pub fn contains(&self, fd: Fd) -> bool {
        self.bits.get(fd / 64).is_some_and(|word| word & (1 << (fd % 64)) != 0)
    }

    /// The descriptors in the set.
    pub fn iter(&self) -> impl Iterator<Item = Fd> + '_ {
        (0..self.bits.len() * 64).filter(|&fd| self.contains(fd))
    }
}

/// Waits until a descriptor of `read` is readable or one of `write` writable, or `timeout`
/// passes; leaves in each set the descriptors that are, and returns how many there are.
pub fn select(read: &mut FdSet, write: &mut FdSet, timeout: Option<Duration>) -> Result<usize, Errno> {
    let mut fds: alloc::vec::Vec<PollFd> = read.iter().map(|fd| PollFd::new(fd, events::IN)).collect();
    for fd in write.iter() {
        match fds.iter_mut().find(|entry| entry.fd == fd) {
            Some(entry) => entry.events |= events::OUT,
            None => fds.push(PollFd::new(fd, events::OUT)),
        }
    }
    if fds.iter().any(|entry| with_net(|net| net.stack.readiness(entry.fd)).ok().and_then(Result::ok).is_none()) {
        return Err(Errno::BadDescriptor);
    }
    poll(&mut fds, timeout)?;
    let (mut readable, mut writable) = (FdSet::default(), FdSet::default());
    for entry in &fds {
        if entry.events & events::IN != 0 && entry.revents & (events::IN | events::HUP | events::ERR) != 0 {
            readable.insert(entry.fd);
        }
        if entry.events & events::OUT != 0 && entry.revents & (events::OUT | events::ERR) != 0 {
            writable.insert(entry.fd);
        }
    }
    *read = readable;
    *write = writable;
    Ok(read.iter().count() + write.iter().count())
}

/// A listening TCP port.
pub struct TcpListener {
    fd: Fd,
}

impl TcpListener {
    /// Listens on `port` of the process's address with room for `backlog` connections that
    /// wait to be accepted ([`Errno::AddrInUse`] if another program holds it).
    pub fn bind(port: u16, backlog: usize) -> Result<TcpListener, Errno> {
        TcpListener::bind_with(port, backlog, &[])
    }

    /// [`TcpListener::bind`] with `options` set first (the connections it accepts inherit
    /// them: TCP_NODELAY, buffer sizes).
    pub fn bind_with(port: u16, backlog: usize, options: &[SockOpt]) -> Result<TcpListener, Errno> {
        let listener = TcpListener { fd: socket(Kind::Stream)? };
        for &option in options {
            set_option(listener.fd, option)?;
        }
        bind(listener.fd, port)?;
        listen(listener.fd, backlog)?;
        Ok(listener)
    }

    /// The next connection and its peer (waiting for one unless non-blocking).
    pub fn accept(&self) -> Result<(TcpStream, SocketAddrV4), Errno> {
        accept(self.fd).map(|(fd, peer)| (TcpStream { fd }, peer))
    }

    /// Makes `accept` return [`Errno::WouldBlock`] instead of waiting.
    pub fn set_nonblocking(&self, on: bool) -> Result<(), Errno> {
        set_option(self.fd, SockOpt::NonBlocking(on))
    }

    /// The descriptor (for [`poll`]).
    pub fn fd(&self) -> Fd {
        self.fd
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        let _ = close(self.fd);
    }
}

/// A TCP connection.
pub struct TcpStream {
    fd: Fd,
}

impl TcpStream {
    /// Connects to `to` from a random local port (re-picked when DPF refuses its filter).
    pub fn connect(to: SocketAddrV4) -> Result<TcpStream, Errno> {
        let stream = TcpStream { fd: socket(Kind::Stream)? };
        connect(stream.fd, to)?;
        Ok(stream)
    }

    /// Closes one or both halves.
    pub fn shutdown(&self, how: How) -> Result<(), Errno> {
        shutdown(self.fd, how)
    }

    /// TCP_NODELAY.
    pub fn set_nodelay(&self, on: bool) -> Result<(), Errno> {
        set_option(self.fd, SockOpt::NoDelay(on))
    }

    /// O_NONBLOCK.
    pub fn set_nonblocking(&self, on: bool) -> Result<(), Errno> {
        set_option(self.fd, SockOpt::NonBlocking(on))
    }

    /// SO_RCVTIMEO.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> Result<(), Errno> {
        set_option(self.fd, SockOpt::RecvTimeout(timeout))
    }

    /// SO_SNDTIMEO.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> Result<(), Errno> {
        set_option(self.fd, SockOpt::SendTimeout(timeout))
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Result<SocketAddrV4, Errno> {
        peer_addr(self.fd)
    }

    /// This end's address.
    pub fn local_addr(&self) -> Result<SocketAddrV4, Errno> {
        local_addr(self.fd)
    }

    /// Writes what the send buffer takes of `parts`, in order, in one call (`writev`).
    pub fn write_vectored(&mut self, parts: &[&[u8]]) -> Result<usize, Errno> {
        send_vectored(self.fd, parts)
    }

    /// The descriptor (for [`poll`]).
    pub fn fd(&self) -> Fd {
        self.fd
    }
}

impl embedded_io::ErrorType for TcpStream {
    type Error = Errno;
}

impl embedded_io::Read for TcpStream {
    /// Reads what has arrived (waiting for something); 0 once the peer has finished sending.
    fn read(&mut self, buffer: &mut [u8]) -> Result<usize, Errno> {
        if buffer.is_empty() {
            return Ok(0);
        }
        recv(self.fd, buffer)
    }
}

impl embedded_io::Write for TcpStream {
    /// Queues as much of `data` as the send buffer takes (waiting for room).
    fn write(&mut self, data: &[u8]) -> Result<usize, Errno> {
        send(self.fd, data)
    }

    /// Waits until the peer has acknowledged everything written.
    fn flush(&mut self) -> Result<(), Errno> {
        flush(self.fd)
    }
}

impl Drop for TcpStream {
    /// Closes the connection; it finishes in the background.
    fn drop(&mut self) {
        let _ = close(self.fd);
    }
}

/// A UDP socket.
pub struct UdpSocket {
    fd: Fd,
}

impl UdpSocket {
    /// A socket on local `port` (0: a random one).
    pub fn bind(port: u16) -> Result<UdpSocket, Errno> {
        let socket = UdpSocket { fd: socket(Kind::Datagram)? };
        bind(socket.fd, port)?;
        Ok(socket)
    }

    /// Sends one datagram to `to`.
    pub fn send_to(&self, data: &[u8], to: SocketAddrV4) -> Result<usize, Errno> {
        send_to(self.fd, data, to)
    }

    /// Receives one datagram and its sender (waiting for one unless non-blocking).
    pub fn recv_from(&self, buffer: &mut [u8]) -> Result<(usize, SocketAddrV4), Errno> {
        recv_from(self.fd, buffer)
    }

    /// O_NONBLOCK.
    pub fn set_nonblocking(&self, on: bool) -> Result<(), Errno> {
        set_option(self.fd, SockOpt::NonBlocking(on))
    }

    /// SO_RCVTIMEO.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> Result<(), Errno> {
        set_option(self.fd, SockOpt::RecvTimeout(timeout))
    }

    /// This end's address.
    pub fn local_addr(&self) -> Result<SocketAddrV4, Errno> {
        local_addr(self.fd)
    }

    /// The descriptor (for [`poll`]).
    pub fn fd(&self) -> Fd {
        self.fd
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        let _ = close(self.fd);
    }
}

/// Lets packets that wait for a neighbour's MAC go out (or time out) before the program
/// exits, for at most `limit`.
pub fn drain(limit: Duration) {
    let deadline = now() + limit;
    while let Ok(Some(())) = with_net(|net| {
        let now = now();
        net.stack.poll(now);
        (net.stack.link().has_pending() && now < deadline).then(|| net.wait(Some(deadline)))
    }) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_sets_hold_what_is_inserted_and_ignore_what_is_past_the_table() {
        let mut set = FdSet::default();
        for fd in [0, 63, 64, 4095, crate::tcpip::stack::MAX_DESCRIPTORS - 1, crate::tcpip::stack::MAX_DESCRIPTORS] {
            set.insert(fd);
        }
        assert!(set.contains(0) && set.contains(63) && set.contains(64) && set.contains(4095));
        assert!(!set.contains(1) && !set.contains(crate::tcpip::stack::MAX_DESCRIPTORS));
        assert_eq!(set.iter().collect::<alloc::vec::Vec<_>>(), [0, 63, 64, 4095, crate::tcpip::stack::MAX_DESCRIPTORS - 1]);
    }

    #[test]
    fn poll_reports_what_was_asked_and_always_errors_and_hangups() {
        let ready = Ready { readable: true, writable: true, error: false, hangup: false };
        assert_eq!(revents(Ok(ready), events::IN), events::IN);
        assert_eq!(revents(Ok(ready), events::OUT), events::OUT);
        assert_eq!(revents(Ok(ready), 0), 0);
        let over = Ready { readable: true, writable: true, error: true, hangup: true };
        assert_eq!(revents(Ok(over), 0), events::ERR | events::HUP);
        assert_eq!(revents(Err(Errno::BadDescriptor), events::IN), events::NVAL);
        assert_eq!(revents(Ok(Ready::default()), events::IN | events::OUT), 0);
    }
}
