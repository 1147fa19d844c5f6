//! Seeded runs of Cheetah's fuzzers (`cheetah::fuzz_input`, which the cargo-fuzz targets in
//! `cheetah/fuzz` run for as long as one likes): arbitrary command streams and raw packets into
//! the TCP (it must never panic, keep its tables bounded and send only segments a peer can
//! parse), and arbitrary requests into the HTTP parser (pipelined, never past the input).

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn command_streams_never_break_the_server(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        cheetah::fuzz_input::run(&bytes);
    }

    #[test]
    fn arbitrary_requests_never_break_the_parser(bytes in proptest::collection::vec(any::<u8>(), 0..1024), head in proptest::sample::select(vec![&b"GET / HTTP/1.1\r\n"[..], b"HEAD /a/b.txt HTTP/1.0\r\n", b"GET /../x HTTP/1.1\r\nConnection: close\r\n", b""])) {
        cheetah::fuzz_input::http(&[head, &bytes].concat());
    }

    #[test]
    fn raw_packets_never_break_the_server(packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 1..40)) {
        let stream: Vec<u8> = packets.iter().flat_map(|packet| [0, packet.len() as u8].into_iter().chain(packet.iter().copied())).collect();
        cheetah::fuzz_input::run(&stream);
    }
}
