//! Bare-metal code: everything that touches the CPU or devices directly. Built only for
//! `x86_64-unknown-none`.

pub mod x86_64;
