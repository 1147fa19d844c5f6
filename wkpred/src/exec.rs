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
    use alloc::format;
    use alloc::string::String;
    use cranelift_jit::{JITBuilder, JITModule};
    use cranelift_module::{Linkage, Module, default_libcall_names};

    use super::{RawPredicateFn, call, entry_point};
    use crate::compile::{CompiledPredicate, OptLevel, signature, target_isa};
    use crate::page::Page;
    use crate::predicate::MAX_LOCATIONS;

    /// Why compiled code could not be mapped.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct JitError(pub String);

    /// A compiled predicate mapped executable in this process (host only).
    pub struct JitPredicate {
        module: Option<JITModule>,
        function: RawPredicateFn,
        compiled: CompiledPredicate,
    }

    impl JitPredicate {
        /// Copies `compiled`'s code into executable memory.
        pub fn load(compiled: &CompiledPredicate) -> Result<JitPredicate, JitError> {
            let isa = target_isa(OptLevel::Speed).map_err(|e| JitError(format!("{e}")))?;
            let mut module = JITModule::new(JITBuilder::with_isa(isa, default_libcall_names()));
            let id = module
                .declare_function("wk_predicate", Linkage::Local, &signature())
                .map_err(|e| JitError(format!("{e}")))?;
            module.define_function_bytes(id, 16, compiled.code(), &[]).map_err(|e| JitError(format!("{e}")))?;
            module.finalize_definitions().map_err(|e| JitError(format!("{e}")))?;
            let entry = module.get_finalized_function(id);
            // SAFETY: `entry` is the executable copy of `compiled.code()`, owned by `module`,
            // which lives as long as `self` and is freed only in `drop`.
            let function = unsafe { entry_point(entry) };
            Ok(JitPredicate { module: Some(module), function, compiled: compiled.clone() })
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

    impl Drop for JitPredicate {
        fn drop(&mut self) {
            if let Some(module) = self.module.take() {
                // SAFETY: the only pointer into the module's memory is `self.function`, which
                // dies with `self`.
                unsafe { module.free_memory() };
            }
        }
    }
}
