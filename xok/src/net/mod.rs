//! The network mechanisms: packet rings, the fair transmit queues, and the demultiplexing
//! glue. All plain Rust over [`crate::vm::PhysMem`]; the drivers live in `arch`.

pub mod nic;
pub mod ring;
pub mod xmit;
