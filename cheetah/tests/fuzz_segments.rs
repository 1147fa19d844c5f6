//! A seeded run of the segment fuzzer (`cheetah::fuzz_input`, which the cargo-fuzz target in
//! `cheetah/fuzz` runs for as long as one likes): proptest feeds it arbitrary command streams,
//! and arbitrary bytes straight as packets. The server must never panic, must keep its tables
//! bounded, and every segment it sends must be one a peer can parse.

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn command_streams_never_break_the_server(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        cheetah::fuzz_input::run(&bytes);
    }

    #[test]
    fn raw_packets_never_break_the_server(packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 1..40)) {
        let stream: Vec<u8> = packets.iter().flat_map(|packet| [0, packet.len() as u8].into_iter().chain(packet.iter().copied())).collect();
        cheetah::fuzz_input::run(&stream);
    }
}
