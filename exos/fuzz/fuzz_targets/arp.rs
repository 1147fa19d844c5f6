//! Fuzz target: arpd's table update (`exos::arp::fuzz_input`): frames, ARP packets with
//! chosen senders and time passing; the table must never hold junk or disagree with arpd's
//! bookkeeping. From `exos/`: `cargo fuzz run --sanitizer none arp`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| exos::arp::fuzz_input(data));
