//! Shared helpers: memory as one page per location, and running a predicate through the
//! interpreter and the compiled code on the same memory.
#![allow(dead_code)] // reason: each test file uses a different part of these helpers

use wkpred::exec::JitPredicate;
use wkpred::page::offset_in_page;
use wkpred::{Page, Predicate, Width, Word, compile, evaluate_pages, parse};

/// One page per location of a predicate.
pub struct Memory {
    pub pages: Vec<Page>,
}

impl Memory {
    pub fn new(locations: usize) -> Memory {
        Memory { pages: vec![Page::default(); locations] }
    }

    pub fn refs(&self) -> Vec<&Page> {
        self.pages.iter().collect()
    }

    /// Stores `value` in `word` of `predicate`.
    pub fn set(&mut self, predicate: &Predicate, word: Word, value: u64) {
        let offset = offset_in_page(predicate, word);
        self.pages[word.location as usize].write(offset, word.width, value);
    }

    pub fn get(&self, predicate: &Predicate, word: Word) -> u64 {
        self.pages[word.location as usize].read(offset_in_page(predicate, word), word.width)
    }
}

/// Both engines on `memory`; panics if they disagree.
pub fn both(predicate: &Predicate, jit: &JitPredicate, memory: &Memory) -> bool {
    let interpreted = evaluate_pages(predicate, &memory.refs());
    let compiled = jit.evaluate(&memory.refs());
    assert_eq!(compiled, interpreted, "compiled and interpreted differ on `{predicate}`");
    interpreted
}

/// Compiles `predicate` and maps it.
pub fn jit(predicate: &Predicate) -> JitPredicate {
    JitPredicate::load(&compile(predicate).expect("compiles")).expect("maps")
}

/// Parses `text`, sets each `(word, value)`, and evaluates with both engines.
pub fn check(text: &str, values: &[(Word, u64)]) -> bool {
    let predicate = parse(text).unwrap_or_else(|e| panic!("`{text}`: {e}"));
    let mut memory = Memory::new(predicate.locations.len());
    for &(word, value) in values {
        memory.set(&predicate, word, value);
    }
    both(&predicate, &jit(&predicate), &memory)
}

/// Word `location` of `width` at offset 0.
pub fn w(location: u32, width: Width) -> Word {
    Word::at(location, width)
}
