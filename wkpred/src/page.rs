//! [`Page`]: a page-sized, page-aligned buffer standing for one pinned page, so host tests,
//! tools and benchmarks can run the interpreter and the compiled code on the same memory.

use crate::predicate::{PAGE_SIZE, Predicate, Width, Word};

/// One page of memory, aligned like a real page.
#[derive(Clone, Debug, PartialEq, Eq)]
#[repr(C, align(4096))]
pub struct Page(pub [u8; PAGE_SIZE as usize]);

impl Default for Page {
    fn default() -> Page {
        Page([0; PAGE_SIZE as usize])
    }
}

impl Page {
    /// The little-endian word of `width` at byte `offset`; bytes past the page read as 0.
    pub fn read(&self, offset: usize, width: Width) -> u64 {
        let mut bytes = [0u8; 8];
        let n = width.bytes() as usize;
        for (i, byte) in bytes.iter_mut().take(n).enumerate() {
            *byte = offset.checked_add(i).and_then(|o| self.0.get(o)).copied().unwrap_or(0);
        }
        u64::from_le_bytes(bytes)
    }

    /// Stores the low `width` bytes of `value` little-endian at byte `offset`; bytes past
    /// the page are dropped.
    pub fn write(&mut self, offset: usize, width: Width, value: u64) {
        for (i, byte) in value.to_le_bytes().iter().take(width.bytes() as usize).enumerate() {
            if let Some(slot) = offset.checked_add(i).and_then(|o| self.0.get_mut(o)) {
                *slot = *byte;
            }
        }
    }
}

/// Where `word` of `predicate` lies inside the page given for its location:
/// the location's address modulo [`PAGE_SIZE`] plus the word's offset.
pub fn offset_in_page(predicate: &Predicate, word: Word) -> usize {
    let base = predicate.locations.get(word.location as usize).copied().unwrap_or(0);
    (base % PAGE_SIZE) as usize + usize::from(word.offset)
}

/// Evaluates `predicate` with the interpreter, location `l` being in `pages[l]` (at its
/// address modulo the page size). Missing pages read as zero.
pub fn evaluate_pages(predicate: &Predicate, pages: &[&Page]) -> bool {
    crate::interpret::evaluate(predicate, |word| match pages.get(word.location as usize) {
        Some(page) => page.read(offset_in_page(predicate, word), word.width),
        None => 0,
    })
}
