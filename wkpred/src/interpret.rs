//! The interpreter: the reference semantics that compiled code is tested against.

use crate::predicate::{Operand, Predicate, Term, Word};

/// Evaluates `predicate`, reading each word with `read` (which returns the word's value;
/// bits above its width are ignored).
///
/// Clauses are tried in order and terms in order inside a clause; the first false term ends
/// its clause and the first true clause ends the evaluation, so `read` is called only for
/// the words the compiled code would load too. No clauses: false. The predicate should be
/// valid ([`crate::validate()`]); the interpreter itself never fails.
pub fn evaluate(predicate: &Predicate, mut read: impl FnMut(Word) -> u64) -> bool {
    predicate.clauses.iter().any(|clause| clause.terms.iter().all(|term| evaluate_term(term, &mut read)))
}

/// Evaluates one term.
pub fn evaluate_term(term: &Term, mut read: impl FnMut(Word) -> u64) -> bool {
    let left = read(term.left);
    let right = match term.right {
        Operand::Constant(value) => value,
        Operand::Word(word) => read(word),
    };
    term.op.apply(term.left.width, left, right)
}
