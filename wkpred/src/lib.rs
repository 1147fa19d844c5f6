//! Wakeup (WK) predicates (issue 4): the condition a sleeping environment waits for.
//!
//! A [`Predicate`] is a sum of products: an OR of [`Clause`]s, each an AND of [`Term`]s, each
//! comparing a word of memory (8 to 64 bits) with a constant or another word (`==`, `!=`,
//! unsigned or signed `<`, `<=`, `>`, `>=`, masked `==`). Words are named through a small
//! table of locations, so compiled code takes the resolved addresses as an argument and
//! never embeds one. A timeout is an ordinary term on the tick-counter page:
//! `[0]:u64 >= 12345`.
//!
//! - [`predicate`]: the types and limits; [`validate()`] the rules; [`resolve`] turns
//!   the location table into the address table the evaluator reads.
//! - [`encoding`]: the binary (syscall) form; [`text`]: the readable form.
//! - [`evaluate`]: the interpreter, the reference semantics.
//! - [`compile()`]: the Cranelift backend (no_std), position-independent code bytes;
//!   [`exec`] is the one place that turns them into a callable function; `exec::JitPredicate`
//!   (feature `jit`) maps them on the host.
//!
//! How the kernel uses it is described in `docs/wkpred.md`.
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod compile;
pub mod encoding;
pub mod exec;
pub mod fuzz_input;
pub mod interpret;
pub mod page;
pub mod predicate;
pub mod text;
pub mod validate;

pub use compile::{CompileError, CompiledPredicate, OptLevel, compile, compile_with};
pub use encoding::{DecodeError, MAX_ENCODED_LEN, decode, encode};
pub use interpret::evaluate;
pub use page::{Page, evaluate_pages};
pub use predicate::{
    Clause, MAX_CLAUSES, MAX_LOCATIONS, MAX_TERMS_PER_CLAUSE, Op, Operand, PAGE_SIZE, Predicate, Term, TermIndex,
    Width, Word,
};
pub use text::{ParseError, parse};
pub use validate::{ResolveError, ValidationError, pages, resolve, validate};
