//! Host only (feature `jit`): maps compiled code bytes executable in this process with
//! cranelift-jit.

#![allow(unsafe_code)] // reason: freeing the mapped memory is unsafe; it happens only in `drop`

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use cranelift_codegen::ir::Signature;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module, default_libcall_names};

use crate::{OptLevel, target_isa};

/// Why compiled code could not be mapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JitError(pub String);

impl core::fmt::Display for JitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "cannot map code: {}", self.0)
    }
}

impl std::error::Error for JitError {}

fn jit_error(e: impl core::fmt::Display) -> JitError {
    JitError(format!("{e}"))
}

/// Code bytes mapped executable, one after the other, in one region that lives as long as
/// this value.
pub struct Mapped {
    /// Always `Some` until `drop`.
    module: Option<JITModule>,
    ids: Vec<FuncId>,
}

impl Mapped {
    /// Copies each of `codes` (position-independent, without relocations, entry at offset 0,
    /// all of `signature`) into executable memory, each aligned to `align` bytes.
    pub fn map<'c>(
        codes: impl IntoIterator<Item = &'c [u8]>,
        signature: &Signature,
        align: u64,
    ) -> Result<Mapped, JitError> {
        let isa = target_isa(OptLevel::Speed).map_err(jit_error)?;
        let mut module = JITModule::new(JITBuilder::with_isa(isa, default_libcall_names()));
        let mut ids = Vec::new();
        for (i, code) in codes.into_iter().enumerate() {
            let id = module.declare_function(&format!("code_{i}"), Linkage::Local, signature).map_err(jit_error)?;
            module.define_function_bytes(id, align, code, &[]).map_err(jit_error)?;
            ids.push(id);
        }
        module.finalize_definitions().map_err(jit_error)?;
        Ok(Mapped { module: Some(module), ids })
    }

    /// The executable copy of code `index` (in the order given to [`Mapped::map`]), mapped
    /// until `self` is dropped.
    ///
    /// # Panics
    /// If `index` is out of range.
    pub fn entry(&self, index: usize) -> *const u8 {
        let module = self.module.as_ref().expect("mapped until drop");
        module.get_finalized_function(self.ids[index])
    }

    /// How many codes are mapped.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no code is mapped.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        if let Some(module) = self.module.take() {
            // SAFETY: the only pointers into the module's memory are those `Mapped::entry`
            // handed out, which by its contract are used only while `self` lives.
            unsafe { module.free_memory() };
        }
    }
}
