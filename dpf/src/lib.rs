//! DPF: packet filters merged into one trie and compiled to native code (issue 3).
//!
//! - [`filter`]: the language (atoms, [`Filter`], [`FilterBuilder`]); [`text`]: its text form.
//! - [`Dpf`]: installs filters under the overlap rule into one merged trie whose
//!   hash-dispatch tables are plain data, and classifies frames with the interpreter;
//!   [`screen`] is the root's test a caller makes before it calls the compiled code.
//! - [`mod@compile`]: the Cranelift backend (no_std) producing position-independent code bytes
//!   with the signature documented in [`abi`]; [`exec`] is the one place that turns such
//!   bytes into a callable function; `exec::JitCode` (feature `jit`) maps them on the host.
//!
//! The language, the overlap rule and the code layout are described in `docs/dpf.md`.
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod abi;
pub mod compile;
pub mod exec;
pub mod filter;
mod model;
pub mod screen;
mod set;
mod table;
pub mod text;
pub mod wire;
mod trie;

pub use abi::{Context, RawOutput};
pub use compile::{CompileError, CompiledCode, compile};
pub use filter::{Atom, AtomKey, Base, Filter, FilterBuilder, FilterError, Width};
pub use set::{
    Classification, CopySet, Dpf, FilterAccessError, FilterClass, FilterId, FilterSet, InsertError, InsertOptions,
    Inserted, MAX_COPY_FILTERS, MAX_GROUPS,
};
pub use text::ParseError;
pub use trie::INLINE_MAX;
