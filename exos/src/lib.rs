//! exos, the library operating system programs on xok link against.
//!
//! The runtime: the `syscall` stubs ([`sys`]), the program entry and arguments ([`rt`]), a
//! heap built on `page_alloc` + `insert_pte` ([`heap`]) and console output ([`print!`],
//! [`println!`]). Kernel resources are owned handles that give themselves back on `Drop`:
//! packet rings ([`ring`]), filters ([`filter`]), transmit buffers ([`xmit`]) and the one
//! wakeup predicate ([`wait`]). Files come from the image ([`fs`]); smoltcp sees the NIC
//! through [`netdev`]; programs use TCP through [`socket`].
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod arp;
pub mod console;
pub mod dump;
pub mod echo;
pub mod filter;
pub mod fs;
pub mod heap;
pub mod ipv4;
pub mod reassembly;
pub mod netdev;
pub mod pcap;
pub mod ring;
pub mod rt;
pub mod socket;
pub mod stray;
pub mod sys;
pub mod tcpip;
pub mod wait;
pub mod xmit;

pub use rt::Args;
pub use xok_abi as abi;
