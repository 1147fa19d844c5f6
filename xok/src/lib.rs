//! xok, an x86-64 exokernel.
//!
//! The kernel only multiplexes and protects hardware. The mechanisms (page ownership vectors,
//! address spaces, environments, syscall dispatch, the ELF loader over the initrd) are plain Rust with
//! host unit tests; `arch` and the boot path run only on the bare metal.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod account;
pub mod console;
pub mod ownership;
pub mod vm;
pub mod wk;
pub mod env;
pub mod kernel;
pub mod net;
pub mod program;
pub mod trapframe;

#[cfg(target_os = "none")]
pub mod arch;
#[cfg(target_os = "none")]
pub mod drivers;
#[cfg(target_os = "none")]
pub mod heap;
