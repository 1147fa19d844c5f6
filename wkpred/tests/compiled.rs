//! Property tests: on random predicates and random memory contents (biased to the
//! boundaries that matter: equal, ±1, zero, the largest and the signed extremes), the
//! compiled code and the interpreter agree. Each generated predicate is compiled once and
//! run against many memories; the counts are printed.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use wkpred::{Clause, Op, Operand, PAGE_SIZE, Predicate, Term, Width, Word, compile, decode, encode, parse, validate};

/// Memories each compiled predicate is run against.
const MEMORIES: usize = 24;

/// A small deterministic generator for the memory contents (seeded by proptest).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn width() -> impl Strategy<Value = Width> {
    prop_oneof![Just(Width::W8), Just(Width::W16), Just(Width::W32), Just(Width::W64)]
}

/// Values that sit on the edges of each comparison, or anywhere.
fn interesting(width: Width, seed: u64) -> u64 {
    let max = width.max();
    let sign = 1u64 << (width.bits() - 1);
    let candidates = [0, 1, 2, max, max - 1, sign, sign - 1, sign + 1, 1000, 12345, seed];
    candidates[(seed % candidates.len() as u64) as usize] & max
}

fn op(width: Width) -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Eq),
        Just(Op::Ne),
        Just(Op::Lt),
        Just(Op::Le),
        Just(Op::Gt),
        Just(Op::Ge),
        Just(Op::SignedLt),
        Just(Op::SignedLe),
        Just(Op::SignedGt),
        Just(Op::SignedGe),
        any::<u64>().prop_map(move |m| Op::MaskedEq {
            mask: [0xff, 0x0f, 0x80, width.max(), m][(m % 5) as usize] & width.max()
        }),
    ]
}

/// A word of `width` at one of `locations` locations, within the first 64 bytes.
fn word(width: Width, locations: u32) -> impl Strategy<Value = Word> {
    (0..locations, 0..64u16 / width.bytes() as u16)
        .prop_map(move |(location, slot)| Word::new(location, slot * width.bytes() as u16, width))
}

fn term(locations: u32) -> impl Strategy<Value = Term> {
    width().prop_flat_map(move |width| {
        let right = prop_oneof![
            3 => any::<u64>().prop_map(move |s| Operand::Constant(interesting(width, s))),
            2 => word(width, locations).prop_map(Operand::Word),
        ];
        (word(width, locations), op(width), right).prop_map(|(left, op, right)| {
            let right = match (op, right) {
                // A masked constant must lie inside the mask.
                (Op::MaskedEq { mask }, Operand::Constant(c)) => Operand::Constant(c & mask),
                (_, r) => r,
            };
            Term { left, op, right }
        })
    })
}

/// A valid predicate: up to `max_clauses` clauses of up to `max_terms` terms over at most
/// `max_locations` locations (unused ones dropped, indices renumbered).
fn predicate(max_clauses: usize, max_terms: usize, max_locations: u32) -> impl Strategy<Value = Predicate> {
    (1..=max_locations).prop_flat_map(move |n| {
        let clause = prop::collection::vec(term(n), 1..=max_terms).prop_map(Clause::new);
        let clauses = prop::collection::vec(clause, 0..=max_clauses);
        let addresses = prop::collection::vec((1u64..1 << 35, 0..(PAGE_SIZE - 64) / 8), n as usize);
        (clauses, addresses).prop_map(|(mut clauses, addresses)| {
            let mut renumber = vec![None; addresses.len()];
            let mut locations = Vec::new();
            for clause in &mut clauses {
                for term in &mut clause.terms {
                    let mut fix = |w: &mut Word| {
                        let l = w.location as usize;
                        let new = *renumber[l].get_or_insert_with(|| {
                            let (page, slot) = addresses[l];
                            locations.push(page * PAGE_SIZE + slot * 8);
                            locations.len() as u32 - 1
                        });
                        w.location = new;
                    };
                    fix(&mut term.left);
                    if let Operand::Word(w) = &mut term.right {
                        fix(w);
                    }
                }
            }
            let p = Predicate::new(locations, clauses);
            debug_assert_eq!(validate(&p), Ok(()));
            p
        })
    })
}

/// Fills `memory` for `predicate`: each word read gets a value near a constant it is
/// compared with, near another word, on an edge, or random.
fn fill(predicate: &Predicate, memory: &mut Memory, rng: &mut Rng) {
    let terms: Vec<&Term> = predicate.terms().map(|(_, t)| t).collect();
    for term in &terms {
        let width = term.left.width;
        let pick = rng.below(8);
        let base = match term.right {
            Operand::Constant(c) => c,
            Operand::Word(w) => memory.get(predicate, w),
        };
        let value = match pick {
            0 | 1 => base,
            2 => base.wrapping_add(1),
            3 => base.wrapping_sub(1),
            4 => interesting(width, rng.next()),
            5 => rng.next(),
            6 => base ^ (1 << rng.below(u64::from(width.bits()))),
            _ => memory.get(predicate, term.left), // leave as is
        };
        memory.set(predicate, term.left, value & width.max());
    }
}

/// Runs `cases` random predicates against [`MEMORIES`] memories each; prints the counts.
fn run(name: &str, cases: u32, strategy: impl Strategy<Value = Predicate>) {
    let predicates = AtomicU64::new(0);
    let evaluations = AtomicU64::new(0);
    let true_results = AtomicU64::new(0);
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    runner
        .run(&(strategy, any::<u64>()), |(predicate, seed)| {
            let jit = jit(&predicate);
            let mut rng = Rng(seed | 1);
            let mut memory = Memory::new(predicate.locations.len());
            for _ in 0..MEMORIES {
                fill(&predicate, &mut memory, &mut rng);
                let interpreted = wkpred::evaluate_pages(&predicate, &memory.refs());
                let compiled = jit.evaluate(&memory.refs());
                prop_assert_eq!(compiled, interpreted, "on `{}`", predicate);
                true_results.fetch_add(u64::from(compiled), Ordering::Relaxed);
            }
            predicates.fetch_add(1, Ordering::Relaxed);
            evaluations.fetch_add(MEMORIES as u64, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    let (p, e, t) = (predicates.into_inner(), evaluations.into_inner(), true_results.into_inner());
    eprintln!("{name}: {p} predicates compiled, {e} evaluations compiled == interpreted, {t} of them true");
    // Both outcomes must be exercised, or the memories are not testing much.
    assert!(t > e / 10 && t < e - e / 10, "{t} of {e} true");
}

#[test]
fn compiled_equals_interpreted_small_predicates() {
    run("small", 8_000, predicate(4, 4, 4));
}

#[test]
fn compiled_equals_interpreted_large_predicates() {
    run("large", 800, predicate(16, 16, 32));
}

#[test]
fn encoding_and_text_round_trip() {
    let config = Config { cases: 20_000, failure_persistence: None, ..Config::default() };
    TestRunner::new(config)
        .run(&predicate(6, 6, 8), |p| {
            let bytes = encode(&p).unwrap();
            prop_assert!(bytes.len() <= wkpred::MAX_ENCODED_LEN);
            prop_assert_eq!(decode(&bytes), Ok(p.clone()));
            prop_assert_eq!(parse(&p.to_string()), Ok(p.clone()));
            Ok(())
        })
        .unwrap();
}

#[test]
fn compiles_at_both_optimization_levels_alike() {
    let config = Config { cases: 200, failure_persistence: None, ..Config::default() };
    TestRunner::new(config)
        .run(&(predicate(4, 4, 4), any::<u64>()), |(p, seed)| {
            let fast = wkpred::exec::JitPredicate::load(&wkpred::compile_with(&p, wkpred::OptLevel::None).unwrap()).unwrap();
            let speed = jit(&p);
            let mut rng = Rng(seed | 1);
            let mut memory = Memory::new(p.locations.len());
            for _ in 0..8 {
                fill(&p, &mut memory, &mut rng);
                prop_assert_eq!(fast.evaluate(&memory.refs()), speed.evaluate(&memory.refs()));
            }
            prop_assert!(compile(&p).is_ok());
            Ok(())
        })
        .unwrap();
}
