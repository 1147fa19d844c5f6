//! Fuzz target: exos's frame input through the socket layer. The input is a command stream
//! for `exos::tcpip::fuzz_input::run` (raw packets, TCP segments with hostile fields, time
//! passing, the program's calls); the stack must never panic, lose or leak a descriptor, or
//! send a malformed packet. From `exos/`: `cargo fuzz run --sanitizer none frames`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| exos::tcpip::fuzz_input::run(data));
