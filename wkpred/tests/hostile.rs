//! Hostile input: random bytes, and valid encodings with bytes flipped, cut or added, never
//! make `decode`, `validate` or `compile` panic; whatever decodes and validates re-encodes
//! to the same bytes (the encoding is canonical) and compiles. Random text never makes
//! `parse` panic.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use wkpred::{compile, decode, encode, parse, validate};

fn config(cases: u32) -> Config {
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// Decodes `bytes`; if they form a valid predicate, checks it is canonical and compiles.
fn check(bytes: &[u8], compile_it: bool) -> Result<(), TestCaseError> {
    if let Ok(p) = decode(bytes)
        && validate(&p).is_ok()
    {
        prop_assert_eq!(encode(&p).unwrap(), bytes.to_vec());
        if compile_it {
            prop_assert!(compile(&p).is_ok());
        }
    }
    Ok(())
}

#[test]
fn random_bytes_never_panic() {
    let bytes = prop::collection::vec(any::<u8>(), 0..200);
    TestRunner::new(config(20_000)).run(&bytes, |b| check(&b, true)).unwrap();
    // With a valid header, so the parser gets further.
    let tails = (0u8..4, 0u8..4, prop::collection::vec(any::<u8>(), 0..120));
    TestRunner::new(config(20_000))
        .run(&tails, |(l, c, tail)| {
            let mut b = vec![1, l, c, 0];
            b.extend(tail);
            check(&b, true)
        })
        .unwrap();
}

#[test]
fn mutated_encodings_never_panic() {
    let good = encode(
        &parse("[0]:u64 >= 1000 && [1+4]:u32 & 0xff == 3 || [2]:i8 < [3]:i8 || [0+8]:u16 != [1]:u16").unwrap(),
    )
    .unwrap();
    let len = good.len();
    let edits = prop::collection::vec((0..len, any::<u8>()), 1..4);
    let mut decoded_valid = 0u32;
    TestRunner::new(config(20_000))
        .run(&(edits, 0..len + 3), |(edits, cut)| {
            let mut b = good.clone();
            for (i, v) in edits {
                b[i] = v;
            }
            b.resize(cut, 0);
            check(&b, false)
        })
        .unwrap();
    for i in 0..len {
        for v in [0u8, 1, 2, 3, 4, 7, 8, 10, 11, 0x80, 0xff] {
            let mut b = good.clone();
            b[i] = v;
            if decode(&b).is_ok_and(|p| validate(&p).is_ok()) {
                decoded_valid += 1;
            }
            check(&b, false).unwrap();
        }
    }
    assert!(decoded_valid > 0);
}

#[test]
fn random_text_never_panics() {
    let pieces = prop::sample::select(vec![
        "[", "]", "0", "1", "+", "4", ":", "u8", "u16", "u32", "u64", "i8", "i64", "==", "!=", "<", "<=", ">", ">=",
        "&", "&&", "||", " ", "-", "0x", "ff", "false", "locations", ",", ";", "99999999999999999999", "x", "é",
    ]);
    TestRunner::new(config(20_000))
        .run(&prop::collection::vec(pieces, 0..24), |pieces| {
            let text: String = pieces.concat();
            if let Ok(p) = parse(&text) {
                prop_assert_eq!(parse(&p.to_string()), Ok(p.clone()));
            }
            Ok(())
        })
        .unwrap();
    TestRunner::new(config(5_000)).run(&".{0,40}", |text| {
        let _ = parse(&text);
        Ok(())
    })
    .unwrap();
}
