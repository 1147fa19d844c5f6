//! exos, the library operating system programs on xok link against.
//!
//! This part is the runtime: the `syscall` stubs ([`sys`]), the program entry and arguments
//! ([`rt`]), a heap built on `page_alloc` + `insert_pte` ([`heap`]) and console output
//! ([`print!`], [`println!`]). Networking comes in later layers.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod console;
pub mod echo;
pub mod heap;
pub mod netdev;
pub mod ring;
pub mod rt;
pub mod sys;
pub mod xmit;

pub use rt::Args;
pub use xok_abi as abi;
