//! The one place with `unsafe`: turning compiled code bytes into a callable function, and
//! (feature `jit`) mapping them executable on the host with cranelift-jit.

#![allow(unsafe_code)] // reason: this module is the crate's single unsafe boundary

use crate::abi::{Context, RawOutput};
use crate::set::{Classification, Dpf};

/// The compiled function: `classify(ctx, frame, len) -> RawOutput`.
pub type RawClassifyFn = unsafe extern "sysv64" fn(*const Context, *const u8, u64) -> RawOutput;

/// Views `entry` as the compiled function.
///
/// # Safety
/// `entry` must point to an executable copy of [`crate::CompiledCode::bytes`] (entry at
/// offset 0) that stays mapped for as long as the returned function is called.
#[inline]
pub unsafe fn entry_point(entry: *const u8) -> RawClassifyFn {
    // SAFETY: the caller guarantees `entry` is the start of code with exactly this signature
    // (the code generator emits it with `compile::signature()`).
    unsafe { core::mem::transmute::<*const u8, RawClassifyFn>(entry) }
}

/// Runs the compiled function on `frame` with `ctx`.
///
/// # Safety
/// `function` must come from [`entry_point`] under its conditions, and `ctx` must be the
/// current [`Dpf::context`] of a set, not modified since. (The code itself returns
/// [`RawOutput::STALE`] when `ctx.generation` is not the one it was compiled for, and
/// generations are unique across sets, so a stale or foreign set is refused; what it cannot
/// check is that the addresses in `ctx` are still valid.)
#[inline]
pub unsafe fn call(function: RawClassifyFn, ctx: &Context, frame: &[u8]) -> RawOutput {
    // SAFETY: the code reads `ctx` and the arrays it points to (valid per the caller), reads
    // `frame` only below `len` (every load is bounds-checked), and writes no memory.
    unsafe { function(ctx, frame.as_ptr(), frame.len() as u64) }
}

#[cfg(feature = "jit")]
pub use jit::{JitCode, JitError, JitSet};

#[cfg(feature = "jit")]
mod jit {
    pub use xok_codegen::jit::JitError;
    use xok_codegen::jit::Mapped;

    use super::{RawClassifyFn, call, entry_point};
    use crate::abi::{Context, RawOutput};
    use crate::compile::{CompiledCode, signature};
    use crate::set::{Classification, Dpf};

    /// Compiled code mapped executable in this process (host only).
    pub struct JitCode {
        /// Owns the memory `function` points into (freed when `self` drops).
        _mapped: Mapped,
        function: RawClassifyFn,
        generation: u64,
    }

    impl JitCode {
        /// Copies `code` into executable memory.
        pub fn load(code: &CompiledCode) -> Result<JitCode, JitError> {
            let mapped = Mapped::map([code.bytes.as_slice()], &signature(), 64)?;
            // SAFETY: the entry is the executable copy of `code.bytes` (made with
            // `signature()`), owned by `mapped`, which lives as long as `self`.
            let function = unsafe { entry_point(mapped.entry(0)) };
            Ok(JitCode { _mapped: mapped, function, generation: code.generation })
        }

        /// The structure generation the code was compiled for.
        pub fn generation(&self) -> u64 {
            self.generation
        }

        /// Classifies `frame` against the current tables of `dpf`: [`RawOutput::NO_MATCH`]
        /// if the set's screen rejects it ([`Dpf::screen`]), else what the code returns (so
        /// only a frame the screen passes can come back stale).
        #[inline]
        pub fn classify_raw(&self, dpf: &Dpf, frame: &[u8]) -> RawOutput {
            if dpf.screen().rejects(frame) {
                return RawOutput::NO_MATCH;
            }
            self.run_code(dpf, frame)
        }

        /// Runs the code on `frame` against the current tables of `dpf`, whatever the
        /// screen says (the tests hold the code itself equal to the interpreter).
        #[inline]
        pub fn run_code(&self, dpf: &Dpf, frame: &[u8]) -> RawOutput {
            let ctx = dpf.context();
            // SAFETY: `function` is mapped while `self` lives. `ctx` is the current context of
            // `dpf`, which is borrowed (so unmodified) during the call. The code reads the
            // tables only if `ctx.generation` is the one it was compiled for (it returns
            // STALE otherwise, the check compiled in); generations are unique across sets
            // (see `Dpf::generation`), so then the tables have exactly the layout it expects.
            unsafe { call(self.function, ctx, frame) }
        }

        /// Classifies `frame`; `None` if the code is stale for `dpf`.
        pub fn classify(&self, dpf: &Dpf, frame: &[u8]) -> Option<Classification> {
            dpf.resolve(&self.classify_raw(dpf, frame))
        }
    }

    /// Several compiled functions mapped together in one region (host only): the
    /// benchmark's linear baseline runs one small program per filter, packed like a BPF JIT
    /// packs its programs.
    pub struct JitSet {
        /// Owns the memory `functions` point into (freed when `self` drops).
        _mapped: Mapped,
        functions: alloc::vec::Vec<(RawClassifyFn, u64)>,
    }

    impl JitSet {
        /// Copies every code into executable memory, one after the other.
        pub fn load(codes: &[CompiledCode]) -> Result<JitSet, JitError> {
            let mapped = Mapped::map(codes.iter().map(|code| code.bytes.as_slice()), &signature(), 16)?;
            let functions = codes
                .iter()
                .enumerate()
                .map(|(i, code)| {
                    // SAFETY: the entry is the executable copy of `codes[i]` (made with
                    // `signature()`), owned by `mapped`, which lives as long as `self`.
                    (unsafe { entry_point(mapped.entry(i)) }, code.generation)
                })
                .collect();
            Ok(JitSet { _mapped: mapped, functions })
        }

        /// Number of functions.
        pub fn len(&self) -> usize {
            self.functions.len()
        }

        /// Whether the set holds no function.
        pub fn is_empty(&self) -> bool {
            self.functions.is_empty()
        }

        /// Runs function `index`, which must come from [`crate::compile::compile_alone`]
        /// (generation 0; stale otherwise), on `frame`.
        #[inline]
        pub fn run_alone(&self, index: usize, frame: &[u8]) -> RawOutput {
            let stale = RawOutput { owner: RawOutput::STALE, copies: 0 };
            match self.functions.get(index) {
                Some((function, 0)) => {
                    let ctx = Context { generation: 0, tables: 0, nodes: 0 };
                    // SAFETY: the function is mapped while `self` lives; code from
                    // `compile_alone` reads only `frame` below `len` and never `ctx`.
                    unsafe { call(*function, &ctx, frame) }
                }
                _ => stale,
            }
        }

        /// Runs function `index` on `frame` against the tables of `dpf` (stale if `index` is
        /// out of range or `dpf` is not the set that function was compiled for).
        #[inline]
        pub fn classify_raw(&self, index: usize, dpf: &Dpf, frame: &[u8]) -> RawOutput {
            let stale = RawOutput { owner: RawOutput::STALE, copies: 0 };
            let Some((function, generation)) = self.functions.get(index) else { return stale };
            if dpf.generation() != *generation {
                return stale;
            }
            let ctx = dpf.context();
            // SAFETY: as in `JitCode::run_code`: the function is mapped while `self`
            // lives, and `ctx` is the unmodified current context of a set of its generation.
            unsafe { call(*function, ctx, frame) }
        }
    }
}

/// Classifies `frame` with a function from [`entry_point`] (kernel-style use): a frame the
/// set's screen rejects ([`Dpf::screen`]) matches nothing, answered without the call; `None`
/// if the code is stale for `dpf` (and the frame passed the screen).
///
/// # Safety
/// As for [`call`], with `ctx = dpf.context()`.
#[inline]
pub unsafe fn classify(function: RawClassifyFn, dpf: &Dpf, frame: &[u8]) -> Option<Classification> {
    if dpf.screen().rejects(frame) {
        return dpf.resolve(&RawOutput::NO_MATCH);
    }
    // SAFETY: forwarded to the caller.
    let raw = unsafe { call(function, dpf.context(), frame) };
    dpf.resolve(&raw)
}
