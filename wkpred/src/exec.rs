//! The one place with `unsafe`: turning compiled code bytes into a callable function and
//! calling it, and (feature `jit`) mapping the bytes executable on the host.

#![allow(unsafe_code)] // reason: this module is the crate's single unsafe boundary

/// The compiled function: `evaluate(addresses) -> 1 or 0`.
pub type RawPredicateFn = unsafe extern "sysv64" fn(addresses: *const u64) -> u32;

/// Views `entry` as a compiled predicate.
///
/// # Safety
/// `entry` must point to an executable copy of [`crate::CompiledPredicate::code`] (entry at
/// offset 0) that stays mapped for as long as the returned function is called.
pub unsafe fn entry_point(entry: *const u8) -> RawPredicateFn {
    // SAFETY: the caller guarantees `entry` is the start of code with exactly this signature
    // (the code generator emits it with `compile::signature()`).
    unsafe { core::mem::transmute::<*const u8, RawPredicateFn>(entry) }
}

/// Runs a compiled predicate on the address table `addresses`.
///
/// Returns `false` without calling when `addresses` is shorter than the code needs.
///
/// # Safety
/// `function` must come from [`entry_point`] for the code of `compiled`, and `addresses`
/// must be the table [`crate::resolve`] made for the predicate `compiled` was compiled from,
/// each translated page readable (mapped and pinned) during the call. The code reads, for
/// each location `l`, only inside the page that holds `addresses[l]` and writes nothing.
pub unsafe fn call(function: RawPredicateFn, compiled: &crate::CompiledPredicate, addresses: &[u64]) -> bool {
    if addresses.len() < compiled.location_count() {
        return false;
    }
    // SAFETY: the code reads `addresses[..location_count]` (checked above) and words inside
    // the pages they point into (valid per the caller); it writes nothing.
    unsafe { function(addresses.as_ptr()) == 1 }
}

#[cfg(feature = "jit")]
pub use jit::{JitError, JitPredicate};

#[cfg(feature = "jit")]
mod jit {
    pub use xok_codegen::jit::JitError;
    use xok_codegen::jit::Mapped;

    use super::{RawPredicateFn, call, entry_point};
    use crate::compile::{CompiledPredicate, signature};
    use crate::page::Page;
    use crate::predicate::MAX_LOCATIONS;

    /// A compiled predicate mapped executable in this process (host only).
    pub struct JitPredicate {
        /// Owns the memory `function` points into (freed when `self` drops).
        _mapped: Mapped,
        function: RawPredicateFn,
        compiled: CompiledPredicate,
    }

    impl JitPredicate {
        /// Copies `compiled`'s code into executable memory.
        pub fn load(compiled: &CompiledPredicate) -> Result<JitPredicate, JitError> {
            let mapped = Mapped::map([compiled.code()], &signature(), 16)?;
            // SAFETY: the entry is the executable copy of `compiled.code()` (made with
            // `signature()`), owned by `mapped`, which lives as long as `self`.
            let function = unsafe { entry_point(mapped.entry(0)) };
            Ok(JitPredicate { _mapped: mapped, function, compiled: compiled.clone() })
        }

        /// Evaluates the predicate with location `l` in `pages[l]` (at the location's
        /// address modulo the page size, as [`crate::page::evaluate_pages`] reads it).
        ///
        /// # Panics
        /// If `pages` does not have one page per location.
        pub fn evaluate(&self, pages: &[&Page]) -> bool {
            assert_eq!(pages.len(), self.compiled.location_count(), "one page per location");
            let mut table = [0u64; MAX_LOCATIONS];
            for ((slot, page), &offset) in table.iter_mut().zip(pages).zip(self.compiled.page_offsets()) {
                *slot = page.0.as_ptr() as u64 + u64::from(offset);
            }
            // SAFETY: `function` is mapped while `self` lives and is the code of
            // `self.compiled`. `CompiledPredicate` is only made by `compile`, from a valid
            // predicate, so every word of location `l` lies in `[offset_l, 4096)` of its
            // page and `table[l]` points at `offset_l` of the borrowed `pages[l]`: every load
            // stays inside a live `Page`.
            unsafe { call(self.function, &self.compiled, &table[..pages.len()]) }
        }

        /// Evaluates on a raw address table (what the kernel does).
        ///
        /// # Safety
        /// As for [`call`]: `addresses` is a resolved table for this predicate whose pages
        /// are readable during the call.
        pub unsafe fn evaluate_raw(&self, addresses: &[u64]) -> bool {
            // SAFETY: forwarded to the caller.
            unsafe { call(self.function, &self.compiled, addresses) }
        }

        /// The code this runs.
        pub fn compiled(&self) -> &CompiledPredicate {
            &self.compiled
        }
    }
}
