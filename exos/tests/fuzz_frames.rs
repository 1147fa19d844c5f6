//! A seeded run of the socket layer's frame fuzzer (`exos::tcpip::fuzz_input`): arbitrary
//! command streams of raw packets, TCP segments with hostile fields, time passing and the
//! program's own calls. The stack must never panic, lose or leak a descriptor, or send a
//! malformed packet.

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn command_streams_never_break_the_stack(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        exos::tcpip::fuzz_input::run(&bytes);
    }

    #[test]
    fn raw_packets_never_break_the_stack(packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 1..40)) {
        let stream: Vec<u8> = packets.iter().flat_map(|packet| [0, packet.len() as u8].into_iter().chain(packet.iter().copied())).collect();
        exos::tcpip::fuzz_input::run(&stream);
    }
}
