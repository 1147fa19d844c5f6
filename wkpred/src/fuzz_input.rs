//! The fuzzer's input for the predicate decoder (a cargo-fuzz target in `wkpred/fuzz` and a
//! seeded run in `make test`): the kernel decodes whatever bytes a program passes to
//! `wk_install`. Decoding must never panic; a predicate that decodes and validates must
//! encode back to bytes that decode to the same predicate, and evaluating it must read only
//! words of its own locations.

use crate::{decode, encode, evaluate, validate};

/// Runs the decoder on `bytes` and checks what it returns.
pub fn decode_bytes(bytes: &[u8]) {
    let Ok(predicate) = decode(bytes) else { return };
    if validate(&predicate).is_err() {
        return;
    }
    let encoded = encode(&predicate).expect("a predicate that validates encodes");
    assert_eq!(decode(&encoded).as_ref(), Ok(&predicate), "the encoding does not round-trip");
    let words = bytes.len() as u64;
    let _ = evaluate(&predicate, |word| {
        assert!((word.location as usize) < predicate.locations.len(), "read outside the location table: {word:?}");
        words.wrapping_mul(u64::from(word.offset) + 1)
    });
}
