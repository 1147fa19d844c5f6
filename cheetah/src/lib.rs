//! Cheetah, the merged-cache HTTP server (its server and TCP arrive in a later issue), and the
//! HTTP code it shares with the baseline `httpd` ([`http`]).
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod http;
