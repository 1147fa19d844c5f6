//! Errors of the socket calls, errno-style (Linux numbers, so that they read as usual).

use xok_abi::Error;

/// What a socket call can fail with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Errno {
    /// Not a socket descriptor of this process (EBADF).
    BadDescriptor = 9,
    /// Nothing to do yet; a non-blocking call would have waited, or a timeout passed (EAGAIN).
    WouldBlock = 11,
    /// Out of memory for buffers (ENOMEM).
    NoMemory = 12,
    /// An argument does not fit the call or the socket's state (EINVAL).
    Invalid = 22,
    /// Too many descriptors open (EMFILE).
    TooManyOpen = 24,
    /// The connection can send no more (EPIPE).
    BrokenPipe = 32,
    /// The call needs a destination (EDESTADDRREQ).
    DestinationRequired = 89,
    /// A datagram too long (EMSGSIZE).
    MessageTooLong = 90,
    /// The socket kind does not do this (EOPNOTSUPP).
    NotSupported = 95,
    /// Another program (or socket) holds the address and port (EADDRINUSE).
    AddrInUse = 98,
    /// No local port was free (EADDRNOTAVAIL).
    AddrNotAvailable = 99,
    /// The peer reset the connection (ECONNRESET).
    ConnectionReset = 104,
    /// No room for another packet or filter (ENOBUFS).
    NoBuffers = 105,
    /// Already connected (EISCONN).
    AlreadyConnected = 106,
    /// Not connected (ENOTCONN).
    NotConnected = 107,
    /// The peer did not answer in time (ETIMEDOUT).
    TimedOut = 110,
    /// The peer refused the connection (ECONNREFUSED).
    ConnectionRefused = 111,
    /// A connection attempt is already under way (EALREADY).
    Already = 114,
    /// The connection is being made; wait for the socket to become writable (EINPROGRESS).
    InProgress = 115,
    /// The kernel refused a network resource (an xok error, not a POSIX one).
    Kernel = 1000,
}

impl Errno {
    /// The POSIX number.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The errno a kernel refusal stands for.
    pub fn from_kernel(error: Error) -> Errno {
        match error {
            Error::FilterOverlap => Errno::AddrInUse,
            Error::NoMemory | Error::QuotaExceeded => Errno::NoMemory,
            Error::TooMany => Errno::NoBuffers,
            _ => Errno::Kernel,
        }
    }
}

impl core::fmt::Display for Errno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Errno::BadDescriptor => "bad socket descriptor",
            Errno::WouldBlock => "would block",
            Errno::NoMemory => "out of memory",
            Errno::Invalid => "invalid argument",
            Errno::TooManyOpen => "too many open sockets",
            Errno::BrokenPipe => "broken pipe",
            Errno::DestinationRequired => "destination address required",
            Errno::MessageTooLong => "message too long",
            Errno::NotSupported => "operation not supported",
            Errno::AddrInUse => "address in use",
            Errno::AddrNotAvailable => "no local port free",
            Errno::ConnectionReset => "connection reset",
            Errno::NoBuffers => "no buffer space",
            Errno::AlreadyConnected => "already connected",
            Errno::NotConnected => "not connected",
            Errno::TimedOut => "timed out",
            Errno::ConnectionRefused => "connection refused",
            Errno::Already => "connection already in progress",
            Errno::InProgress => "connection in progress",
            Errno::Kernel => "the kernel refused a network resource",
        })?;
        write!(f, " (errno {})", self.code())
    }
}

impl core::error::Error for Errno {}

impl embedded_io::Error for Errno {
    fn kind(&self) -> embedded_io::ErrorKind {
        use embedded_io::ErrorKind;
        match self {
            Errno::WouldBlock => ErrorKind::Other,
            Errno::NoMemory | Errno::NoBuffers => ErrorKind::OutOfMemory,
            Errno::Invalid | Errno::BadDescriptor | Errno::DestinationRequired | Errno::MessageTooLong => ErrorKind::InvalidInput,
            Errno::NotSupported => ErrorKind::Unsupported,
            Errno::AddrInUse => ErrorKind::AddrInUse,
            Errno::AddrNotAvailable => ErrorKind::AddrNotAvailable,
            Errno::ConnectionReset => ErrorKind::ConnectionReset,
            Errno::BrokenPipe => ErrorKind::BrokenPipe,
            Errno::NotConnected => ErrorKind::NotConnected,
            Errno::TimedOut => ErrorKind::TimedOut,
            Errno::ConnectionRefused => ErrorKind::ConnectionRefused,
            Errno::AlreadyConnected | Errno::Already | Errno::InProgress | Errno::TooManyOpen | Errno::Kernel => ErrorKind::Other,
        }
    }
}
