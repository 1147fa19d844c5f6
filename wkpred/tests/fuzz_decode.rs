//! A seeded run of the decoder fuzzer (`wkpred::fuzz_input::decode_bytes`): random bytes, and
//! valid encodings with bytes changed, never panic the decoder or break the round trip.

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_break_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        wkpred::fuzz_input::decode_bytes(&bytes);
    }

    #[test]
    fn changed_encodings_never_break_the_decoder(changes in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6), cut in any::<usize>()) {
        let predicate = wkpred::parse("[0]:u64 >= 12345 || [1+8]:u32 & 0xff == 7 && [0+16]:i16 < [1]:i16").unwrap();
        let mut bytes = wkpred::encode(&predicate).unwrap();
        wkpred::fuzz_input::decode_bytes(&bytes);
        for (at, value) in changes {
            let len = bytes.len();
            bytes[at % len] = value;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        wkpred::fuzz_input::decode_bytes(&bytes);
    }
}
