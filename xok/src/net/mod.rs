//! The network mechanisms: packet rings, the classifier's compiled code, the transmit header
//! check and the fair transmit queues. All plain Rust over [`crate::vm::PhysMem`]; the
//! drivers live in `drivers`, the syscalls and the interrupt path in `kernel/net.rs`.

pub mod classifier;
pub mod fragments;
pub mod nic;
pub mod ring;
pub mod transmit_check;
pub mod xmit;
