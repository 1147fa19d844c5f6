//! Rule tests: every operator at every width, masked equality, word-vs-word, timeouts,
//! short-circuit order, the address table, encoding round trips, the text form, and the
//! refusal of malformed predicates. Each evaluation runs the interpreter and the compiled
//! code and checks that they agree.

mod common;

use std::cell::RefCell;

use common::*;
use wkpred::Width::{W8, W16, W32, W64};
use wkpred::encoding::VERSION;
use wkpred::exec::JitPredicate;
use wkpred::{
    Clause, CompileError, DecodeError, Op, ParseError, Predicate, ResolveError, Term, TermIndex, ValidationError,
    Width, Word, compile, decode, encode, evaluate, parse, resolve, validate,
};

fn single(term: Term) -> Predicate {
    let locations = term.words_read().map(|w| w.location as usize + 1).max().unwrap();
    Predicate::new((0..locations as u64).map(|i| 0x1000 * (i + 1)).collect(), vec![Clause::new(vec![term])])
}

/// `[0] op c` with `[0] = value`, on both engines.
fn compare(width: Width, op: Op, value: u64, c: u64) -> bool {
    let predicate = single(Term::constant(w(0, width), op, c));
    let mut memory = Memory::new(1);
    memory.set(&predicate, w(0, width), value);
    both(&predicate, &jit(&predicate), &memory)
}

#[test]
fn unsigned_operators_at_every_width() {
    for width in Width::ALL {
        let max = width.max();
        for (value, c) in [(0, 0), (0, 1), (1, 0), (5, 5), (max, max), (max - 1, max), (max, 0), (0, max)] {
            assert_eq!(compare(width, Op::Eq, value, c), value == c, "{width:?} {value} == {c}");
            assert_eq!(compare(width, Op::Ne, value, c), value != c);
            assert_eq!(compare(width, Op::Lt, value, c), value < c);
            assert_eq!(compare(width, Op::Le, value, c), value <= c);
            assert_eq!(compare(width, Op::Gt, value, c), value > c);
            assert_eq!(compare(width, Op::Ge, value, c), value >= c);
        }
    }
}

#[test]
fn signed_operators_at_every_width() {
    for width in Width::ALL {
        let bits = |v: i64| (v as u64) & width.max();
        let min = width.sign_extend(1 << (width.bits() - 1));
        let max = -(min + 1);
        for (value, c) in [(-1, 0), (0, -1), (min, max), (max, min), (min, min), (-5, -4), (3, 3), (max, max - 1)] {
            let (v, k) = (bits(value), bits(c));
            assert_eq!(compare(width, Op::SignedLt, v, k), value < c, "{width:?} {value} <s {c}");
            assert_eq!(compare(width, Op::SignedLe, v, k), value <= c);
            assert_eq!(compare(width, Op::SignedGt, v, k), value > c);
            assert_eq!(compare(width, Op::SignedGe, v, k), value >= c);
            // The same bits compare differently unsigned when signs differ.
            assert_eq!(compare(width, Op::Lt, v, k), v < k);
        }
    }
}

#[test]
fn masked_equality() {
    for width in Width::ALL {
        let op = Op::MaskedEq { mask: 0x0f };
        assert!(compare(width, op, 0x03, 0x03));
        assert!(compare(width, op, 0xf3 & width.max(), 0x03));
        assert!(!compare(width, op, 0x04, 0x03));
        let high = Op::MaskedEq { mask: width.max() & !(width.max() >> 1) };
        assert!(compare(width, high, width.max(), width.max() & !(width.max() >> 1)));
        assert!(!compare(width, high, width.max() >> 1, width.max() & !(width.max() >> 1)));
    }
    assert!(check("[0]:u32 & 0xff == 3", &[(w(0, W32), 0x1234_5603)]));
    assert!(!check("[0]:u32 & 0xff == 3", &[(w(0, W32), 0x1234_5604)]));
    // Zero mask: always true.
    assert!(check("[0]:u8 & 0 == 0", &[(w(0, W8), 0x77)]));
}

#[test]
fn word_against_word() {
    let both_words = |text: &str, a: u64, b: u64, width| check(text, &[(w(0, width), a), (w(1, width), b)]);
    assert!(both_words("[0]:u8 == [1]:u8", 7, 7, W8));
    assert!(!both_words("[0]:u8 != [1]:u8", 7, 7, W8));
    assert!(both_words("[0]:u16 < [1]:u16", 0xfffe, 0xffff, W16));
    assert!(both_words("[0]:i16 < [1]:i16", 0xfffe, 0, W16));
    assert!(both_words("[0]:i32 < [1]:i32", 0xffff_fffe, 0, W32));
    assert!(!both_words("[0]:u32 < [1]:u32", 0xffff_fffe, 0, W32));
    assert!(both_words("[0]:u64 >= [1]:u64", u64::MAX, u64::MAX, W64));
    assert!(both_words("[0]:u64 & 0xff00 == [1]:u64", 0x1234, 0xff12ff, W64));
    assert!(!both_words("[0]:u64 & 0xff00 == [1]:u64", 0x1234, 0xff13ff, W64));
    // The same location, two fields.
    let predicate = parse("[0]:u32 == [0+4]:u32").unwrap();
    let mut memory = Memory::new(1);
    memory.set(&predicate, Word::new(0, 0, W32), 9);
    memory.set(&predicate, Word::new(0, 4, W32), 9);
    assert!(both(&predicate, &jit(&predicate), &memory));
    memory.set(&predicate, Word::new(0, 4, W32), 10);
    assert!(!both(&predicate, &jit(&predicate), &memory));
}

#[test]
fn timeout_is_a_term_on_the_tick_page() {
    // Location 0: the read-only tick counter; location 1: a flag the process waits on.
    let text = "locations 0xffff0000, 0x7000_0040; [1]:u32 != 0 || [0]:u64 >= 12345";
    let text = text.replace('_', "");
    let predicate = parse(&text).unwrap();
    let jit = jit(&predicate);
    let mut memory = Memory::new(2);
    let ticks = Word::at(0, W64);
    let flag = Word::at(1, W32);
    for (now, flag_value, expected) in [(0, 0, false), (12344, 0, false), (12345, 0, true), (99999, 0, true), (5, 1, true)]
    {
        memory.set(&predicate, ticks, now);
        memory.set(&predicate, flag, flag_value);
        assert_eq!(both(&predicate, &jit, &memory), expected, "ticks {now}, flag {flag_value}");
    }
}

#[test]
fn empty_sum_is_false() {
    let predicate = parse("false").unwrap();
    assert!(predicate.clauses.is_empty());
    assert!(!evaluate(&predicate, |_| 0));
    let jit = jit(&predicate);
    assert!(!jit.evaluate(&[]));
}

#[test]
fn interpreter_short_circuits_in_order() {
    let predicate = parse("[0]:u8 == 1 && [1]:u8 == 1 || [2]:u8 == 1 && [3]:u8 == 1 || [4]:u8 == 1").unwrap();
    let run = |values: [u64; 5]| {
        let reads = RefCell::new(Vec::new());
        let result = evaluate(&predicate, |word| {
            reads.borrow_mut().push(word.location);
            values[word.location as usize]
        });
        (result, reads.into_inner())
    };
    assert_eq!(run([1, 1, 0, 0, 0]), (true, vec![0, 1]));
    assert_eq!(run([0, 1, 1, 1, 0]), (true, vec![0, 2, 3]));
    assert_eq!(run([1, 0, 1, 0, 0]), (false, vec![0, 1, 2, 3, 4]));
    assert_eq!(run([0, 0, 0, 0, 1]), (true, vec![0, 2, 4]));
}

#[test]
fn compiled_code_short_circuits_too() {
    // Location 1's table entry points at an unmapped address: reading it would fault, so
    // the compiled code must never get there when an earlier term decides.
    let predicate = parse("[0]:u64 == 1 || [1]:u64 == 1").unwrap();
    let jit = jit(&predicate);
    let mut page = wkpred::Page::default();
    page.write(0, W64, 1);
    let table = [page.0.as_ptr() as u64, 0x8];
    // SAFETY: location 0 points at a live page; location 1 is never read because clause 0
    // is true (that is what this test checks).
    assert!(unsafe { jit.evaluate_raw(&table) });

    let predicate = parse("[0]:u64 == 1 && [1]:u64 == 1").unwrap();
    let jit = common::jit(&predicate);
    page.write(0, W64, 0);
    let table = [page.0.as_ptr() as u64, 0x8];
    // SAFETY: as above; clause 0 stops at its first (false) term.
    assert!(!unsafe { jit.evaluate_raw(&table) });
}

#[test]
fn resolve_translates_each_location_once_keeping_the_offset() {
    let predicate = parse("locations 0x7000_0010, 0x5008; [0+8]:u64 == 1 && [1]:u32 == [0]:u32".replace('_', "").as_str())
        .unwrap();
    let mut asked = Vec::new();
    let table = resolve(&predicate, |page| {
        asked.push(page);
        Ok::<u64, ()>(0xffff_8000_0000_0000 + page)
    })
    .unwrap();
    assert_eq!(asked, vec![0x7000_0000, 0x5000]);
    assert_eq!(table, vec![0xffff_8000_7000_0010, 0xffff_8000_0000_5008]);
    let refused = resolve(&predicate, |page| if page == 0x5000 { Err("no read right") } else { Ok(page) });
    assert_eq!(refused, Err(ResolveError::Translate { location: 1, error: "no read right" }));
    let invalid = parse("[0]:u8 == 1").map(|mut p| {
        p.locations[0] = 0xfff;
        p.clauses[0].terms[0].left.offset = 1;
        p
    });
    let invalid = invalid.unwrap();
    assert!(matches!(resolve(&invalid, Ok::<u64, ()>), Err(ResolveError::Invalid(ValidationError::OutsidePage { .. }))));
    assert_eq!(wkpred::pages(&predicate), vec![0x7000_0000, 0x5000]);
}

#[test]
fn validation_refuses_malformed_predicates() {
    let at = |clause, term| TermIndex { clause, term };
    let base = || parse("[0]:u32 == 1").unwrap();
    let with = |f: &dyn Fn(&mut Predicate)| {
        let mut p = base();
        f(&mut p);
        validate(&p)
    };
    assert_eq!(validate(&base()), Ok(()));
    let term = base().clauses[0].terms[0];
    assert_eq!(
        with(&|p| p.clauses = vec![Clause::new(vec![term]); 17]),
        Err(ValidationError::TooManyClauses { count: 17 })
    );
    assert_eq!(with(&|p| p.clauses.push(Clause::default())), Err(ValidationError::EmptyClause { clause: 1 }));
    assert_eq!(
        with(&|p| p.clauses[0].terms = vec![term; 17]),
        Err(ValidationError::TooManyTerms { clause: 0, count: 17 })
    );
    assert_eq!(
        with(&|p| p.locations = (0..33).map(|i| i * 4096).collect()),
        Err(ValidationError::TooManyLocations { count: 33 })
    );
    assert_eq!(
        with(&|p| p.clauses[0].terms[0].left.location = 1),
        Err(ValidationError::NoSuchLocation { at: at(0, 0), location: 1 })
    );
    assert_eq!(with(&|p| p.locations.push(0x9000)), Err(ValidationError::UnusedLocation { location: 1 }));
    assert_eq!(
        with(&|p| p.locations[0] = 0x1002),
        Err(ValidationError::Misaligned { at: at(0, 0), word: Word::at(0, W32), address: 0x1002 })
    );
    assert_eq!(
        with(&|p| p.clauses[0].terms[0].left.offset = 4096),
        Err(ValidationError::OutsidePage { at: at(0, 0), word: Word::new(0, 4096, W32) })
    );
    assert_eq!(
        with(&|p| {
            p.locations[0] = 0x1ffc;
            p.clauses[0].terms[0].left.offset = 4;
        }),
        Err(ValidationError::OutsidePage { at: at(0, 0), word: Word::new(0, 4, W32) })
    );
    assert_eq!(
        with(&|p| {
            p.locations[0] = u64::MAX - 3;
            p.clauses[0].terms[0].left.offset = 8;
        }),
        Err(ValidationError::OutsidePage { at: at(0, 0), word: Word::new(0, 8, W32) })
    );
    assert_eq!(
        with(&|p| p.clauses[0].terms[0] = Term::constant(Word::at(0, W8), Op::Eq, 256)),
        Err(ValidationError::ConstantTooWide { at: at(0, 0), value: 256, width: W8 })
    );
    assert_eq!(
        with(&|p| p.clauses[0].terms[0] = Term::constant(Word::at(0, W16), Op::MaskedEq { mask: 0x1_0000 }, 0)),
        Err(ValidationError::MaskTooWide { at: at(0, 0), mask: 0x1_0000, width: W16 })
    );
    assert_eq!(
        with(&|p| p.clauses[0].terms[0] = Term::constant(Word::at(0, W16), Op::MaskedEq { mask: 0xf0 }, 0x1f)),
        Err(ValidationError::ConstantOutsideMask { at: at(0, 0) })
    );
    assert_eq!(
        with(&|p| p.clauses[0].terms[0] = Term::words(Word::at(0, W16), Op::Eq, Word::new(0, 8, W32))),
        Err(ValidationError::WidthMismatch { at: at(0, 0) })
    );
    // Compilation and encoding validate too.
    let mut bad = base();
    bad.clauses[0].terms[0].left.location = 3;
    assert!(matches!(compile(&bad), Err(CompileError::Invalid(ValidationError::NoSuchLocation { .. }))));
    assert!(matches!(encode(&bad), Err(ValidationError::NoSuchLocation { .. })));
}

#[test]
fn limits_are_reachable() {
    // 16 clauses of 16 terms over 32 locations compiles and agrees.
    let mut clauses = Vec::new();
    for c in 0..16u32 {
        let terms = (0..16u32).map(|t| Term::constant(Word::at((c * 16 + t) % 32, W64), Op::Ne, u64::from(t))).collect();
        clauses.push(Clause::new(terms));
    }
    let predicate = Predicate::new((0..32).map(|i| 0x1000 * (i + 1)).collect(), clauses);
    validate(&predicate).unwrap();
    let jit = jit(&predicate);
    let mut memory = Memory::new(32);
    assert!(!both(&predicate, &jit, &memory)); // term 0 of each clause: 0 != 0 is false
    for l in 0..32 {
        memory.set(&predicate, Word::at(l, W64), 100);
    }
    assert!(both(&predicate, &jit, &memory));
    let bytes = encode(&predicate).unwrap();
    assert!(bytes.len() <= wkpred::MAX_ENCODED_LEN);
    assert_eq!(decode(&bytes).unwrap(), predicate);
}

#[test]
fn encoding_round_trips_and_has_the_documented_layout() {
    let predicate = parse("[0]:u64 >= 1000 && [1+4]:u32 & 0xff == 3 || [2]:i8 < [3]:i8").unwrap();
    let bytes = encode(&predicate).unwrap();
    assert_eq!(&bytes[..4], &[VERSION, 4, 2, 0]);
    assert_eq!(&bytes[4..12], &0x1000u64.to_le_bytes());
    // Clause 0: two terms; term 0 is `>=` (5), width 64 (3), constant, location 0.
    assert_eq!(&bytes[36..45], &[2, 5, 3, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&bytes[45..53], &1000u64.to_le_bytes());
    // Term 1: masked (10), width 32 (2), location 1, offset 4, mask, constant.
    assert_eq!(&bytes[53..61], &[10, 2, 1, 0, 4, 0, 0, 0]);
    assert_eq!(&bytes[61..69], &0xffu64.to_le_bytes());
    assert_eq!(&bytes[69..77], &3u64.to_le_bytes());
    // Clause 1: one term, signed `<` (6), width 8 (0) | word (4), locations 2 and 3.
    assert_eq!(&bytes[77..], &[1, 6, 4, 2, 3, 0, 0, 0, 0]);
    assert_eq!(decode(&bytes), Ok(predicate));
    assert_eq!(decode(&encode(&parse("false").unwrap()).unwrap()), Ok(Predicate::default()));
}

#[test]
fn decoding_refuses_malformed_bytes_precisely() {
    let good = encode(&parse("[0]:u16 == 7").unwrap()).unwrap();
    let edit = |i: usize, v: u8| {
        let mut b = good.clone();
        b[i] = v;
        decode(&b)
    };
    assert_eq!(decode(&[]), Err(DecodeError::Truncated { offset: 0 }));
    assert_eq!(decode(&good[..good.len() - 1]), Err(DecodeError::Truncated { offset: 21 }));
    assert_eq!(edit(0, 2), Err(DecodeError::UnsupportedVersion { version: 2 }));
    assert_eq!(edit(3, 1), Err(DecodeError::NonZeroReserved { offset: 3 }));
    assert_eq!(edit(13, 11), Err(DecodeError::UnknownOp { offset: 13, code: 11 }));
    assert_eq!(edit(14, 0x09), Err(DecodeError::UnknownFlags { offset: 14, flags: 0x09 }));
    assert_eq!(edit(16, 1), Err(DecodeError::NonZeroReserved { offset: 16 }));
    assert_eq!(edit(19, 1), Err(DecodeError::NonZeroReserved { offset: 19 }));
    let mut long = good.clone();
    long.push(0);
    assert_eq!(decode(&long), Err(DecodeError::TrailingBytes { offset: good.len() }));
    assert_eq!(
        decode(&vec![0; wkpred::MAX_ENCODED_LEN + 1]),
        Err(DecodeError::TooLong { len: wkpred::MAX_ENCODED_LEN + 1 })
    );
    // Well-formed but invalid: decoding succeeds, validation refuses.
    let mut bad_location = good.clone();
    bad_location[15] = 9;
    let p = decode(&bad_location).unwrap();
    assert_eq!(validate(&p), Err(ValidationError::NoSuchLocation { at: TermIndex { clause: 0, term: 0 }, location: 9 }));
}

#[test]
fn text_round_trips_and_reports_errors_precisely() {
    for text in [
        "false",
        "[0]:u64 >= 1000 && [1+4]:u32 & 0xff == 3 || [2]:u8 != [3]:u8",
        "[0]:i32 < -5 || [0]:i8 >= -128 && [0+1]:i8 <= 127",
        "locations 0x7000, 0xffff0000; [1]:u64 >= 0x3039 || [0]:u16 > [0+2]:u16",
        "[0]:u64 == 0xffffffffffffffff",
    ] {
        let p = parse(text).unwrap_or_else(|e| panic!("`{text}`: {e}"));
        let shown = p.to_string();
        assert_eq!(parse(&shown), Ok(p.clone()), "`{text}` shown as `{shown}`");
    }
    assert_eq!(parse("[0]:i8 == -1").unwrap().to_string(), "[0]:u8 == 255");
    let syntax = |text: &str| match parse(text) {
        Err(ParseError::Syntax { position, .. }) => position,
        other => panic!("`{text}`: {other:?}"),
    };
    assert_eq!(syntax(""), 0);
    assert_eq!(syntax("[0]:u8"), 6);
    assert_eq!(syntax("[0]:u9 == 1"), 4);
    assert_eq!(syntax("[0]:u8 == 1 &&"), 14);
    assert_eq!(syntax("[0]:u8 == 1 junk"), 12);
    assert_eq!(syntax("[0]:u8 & 1 < 1"), 11);
    assert_eq!(syntax("[0]:u8 < [1]:i8"), 9);
    let range = |text: &str| match parse(text) {
        Err(ParseError::OutOfRange { position }) => position,
        other => panic!("`{text}`: {other:?}"),
    };
    assert_eq!(range("[0]:u8 == 256"), 10);
    assert_eq!(range("[0]:u8 == -1"), 10);
    assert_eq!(range("[0]:i8 < -129"), 9);
    assert_eq!(range("[0+65536]:u8 == 1"), 3);
    assert_eq!(range("[0]:u64 == 18446744073709551616"), 11);
    assert_eq!(
        parse("[0]:u16 == [1]:u16 && [3]:u8 == 0"),
        Err(ParseError::Invalid(ValidationError::UnusedLocation { location: 2 }))
    );
    assert!(matches!(parse("[1]:u16 == 0"), Err(ParseError::Invalid(ValidationError::UnusedLocation { .. }))));
    assert!(matches!(parse("[0+1]:u16 == 0"), Err(ParseError::Invalid(ValidationError::Misaligned { .. }))));
    assert!(matches!(parse("[40]:u8 == 0"), Err(ParseError::Invalid(ValidationError::TooManyLocations { .. }))));
}

#[test]
fn compiled_code_is_position_independent_and_small() {
    let p = parse("[0]:u64 >= 1000 && [1+4]:u32 & 0xff == 3 || [2]:u8 != [3]:u8").unwrap();
    let compiled = compile(&p).unwrap();
    assert_eq!(compiled.location_count(), 4);
    assert!(compiled.code().len() < 200, "{} bytes", compiled.code().len());
    // Two copies at different addresses behave the same.
    let a = common::jit(&p);
    let b = common::jit(&p);
    let mut memory = Memory::new(4);
    memory.set(&p, Word::at(2, W8), 1);
    assert!(both(&p, &a, &memory) && both(&p, &b, &memory));
}

#[test]
fn kernel_install_path_end_to_end() {
    // The user's predicate: a flag word in its page at 0x7000_0040, or tick >= 500 on the
    // tick page at 0xffff_0000.
    let user = parse("locations 0xffff0000, 0x70000040; [1]:u32 != 0 || [0]:u64 >= 500").unwrap();
    let bytes = encode(&user).unwrap();

    // wk_install: decode, validate, resolve (translate + pin), compile.
    let predicate = decode(&bytes).unwrap();
    validate(&predicate).unwrap();
    let mut tick_page = wkpred::Page::default();
    let mut user_page = wkpred::Page::default();
    // Translation: the tick page and the user's page map to the two buffers. The table is
    // rebuilt after each write here so the pointers are never older than the last `&mut`.
    let resolved = |tick: &wkpred::Page, user: &wkpred::Page| {
        let (tick_address, user_address) = (tick.0.as_ptr() as u64, user.0.as_ptr() as u64);
        let table = resolve(&predicate, |page| match page {
            0xffff_0000 => Ok(tick_address),
            0x7000_0000 => Ok(user_address),
            _ => Err(()),
        })
        .unwrap();
        assert_eq!(table, vec![tick_address, user_address + 0x40]);
        table
    };
    let jit = JitPredicate::load(&compile(&predicate).unwrap()).unwrap();
    let evaluate = |jit: &JitPredicate, table: &[u64]| {
        // SAFETY: `table` came from `resolve` for this predicate and points into the two
        // pages, which are alive and not written during the call.
        unsafe { jit.evaluate_raw(table) }
    };
    assert!(!evaluate(&jit, &resolved(&tick_page, &user_page)));
    tick_page.write(0, W64, 500);
    assert!(evaluate(&jit, &resolved(&tick_page, &user_page)));
    tick_page.write(0, W64, 10);
    user_page.write(0x40, W32, 1);
    let table = resolved(&tick_page, &user_page);
    assert!(evaluate(&jit, &table));
    // A table too short for the code is refused without running it.
    assert!(!evaluate(&jit, &table[..1]));
}
