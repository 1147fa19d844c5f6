//! exos's TCP/IP: smoltcp behind a demultiplexer, as POSIX-shaped calls on descriptors
//! ([`Stack`]). It is plain Rust over a [`Link`] with the time passed in, so host tests run it
//! on a simulated wire with a virtual clock ([`sim`] in tests); programs reach it through
//! [`crate::socket`], which adds blocking on the process's waiter.

pub mod errno;
pub mod fuzz_input;
pub mod link;
pub mod segment;
pub mod stack;
pub mod time_wait;
#[cfg(test)]
pub(crate) mod sim;

pub use errno::Errno;
pub use link::Link;
pub use stack::{Fd, How, Kind, Options, Ready, SockOpt, Stack, StackConfig, Stats};
