//! Cheetah, the merged-cache HTTP server: its own TCP ([`tcp`], with [`isn`]) serving from the
//! file cache with precomputed heads and segment checksums ([`cache`]), and the HTTP code it
//! shares with the baseline `httpd` ([`http`]).
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod cache;
pub mod fuzz_input;
pub mod http;
pub mod isn;
#[cfg(test)]
mod sim;
pub mod tcp;
