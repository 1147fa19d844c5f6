//! Fuzz target: the wakeup-predicate decoder the kernel runs on every `wk_install`
//! (`wkpred::fuzz_input::decode_bytes`): no panic, and what decodes and validates round-trips
//! through the encoder. From `wkpred/`: `cargo fuzz run --sanitizer none decode`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wkpred::fuzz_input::decode_bytes(data));
