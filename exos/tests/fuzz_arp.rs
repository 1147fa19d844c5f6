//! A seeded run of arpd's table-update fuzzer (`exos::arp::fuzz_input`): frames, ARP packets
//! with chosen senders, and time passing must never leave junk in the table.

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_command_stream_poisons_the_table(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        exos::arp::fuzz_input(&bytes);
    }
}
