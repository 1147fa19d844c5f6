//! Fuzz target: the HTTP parser shared by Cheetah and httpd, on requests arriving pipelined on
//! one connection (`cheetah::fuzz_input::http`). From `cheetah/`:
//! `cargo fuzz run --sanitizer none http`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cheetah::fuzz_input::http(data));
