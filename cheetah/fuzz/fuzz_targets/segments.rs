//! Fuzz target: Cheetah's TCP input. The input is a command stream for
//! `cheetah::fuzz_input::run` (raw packets, well-formed segments with hostile fields, time
//! passing); the server must never panic and every segment it sends must parse. On the stable
//! toolchain run it from `cheetah/` with `cargo fuzz run --sanitizer none segments`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cheetah::fuzz_input::run(data));
