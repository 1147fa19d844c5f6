//! Cranelift plumbing shared by `dpf` and `wkpred`.
//!
//! - [`target_isa`]: the x86-64 target both compile for, at an [`OptLevel`].
//! - [`compile`]: builds one Cranelift function and returns it as position-independent
//!   bytes without relocations (entry at offset 0), or a [`CompileError`].
//! - [`text`]: the cursor the text-form parsers are built on.
//! - `jit` (feature `jit`, host only): maps such bytes executable in this process.
//! - `bench` (feature `std`): the timing loop of the benchmarks.
//!
//! Builds without std (for the kernel) unless a feature asks for it. Turning bytes into a
//! typed function pointer stays with each user, which knows the signature.
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "std")]
pub mod bench;
#[cfg(feature = "jit")]
pub mod jit;
pub mod text;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::{Function, Signature, UserFuncName};
use cranelift_codegen::isa::{self, OwnedTargetIsa, TargetFrontendConfig};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};

/// Why compilation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompileError {
    /// Cranelift has no x86-64 backend in this build, or refused a setting.
    Isa(String),
    /// Cranelift failed to verify or compile the function.
    Codegen(String),
    /// The code needs relocations, so it is not position-independent.
    Relocations,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompileError::Isa(e) => write!(f, "no usable x86-64 target: {e}"),
            CompileError::Codegen(e) => write!(f, "code generation failed: {e}"),
            CompileError::Relocations => f.write_str("the code needs relocations"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for CompileError {}

/// How hard Cranelift optimizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OptLevel {
    /// No optimization: fastest to compile (useful under emulation).
    None,
    /// Optimize for speed.
    #[default]
    Speed,
}

/// The x86-64 target the code is made for: baseline x86-64 (no CPU extensions), not PIC.
pub fn target_isa(opt: OptLevel) -> Result<OwnedTargetIsa, CompileError> {
    let isa_error = |e: &dyn fmt::Display| CompileError::Isa(format!("{e}"));
    let mut flags = settings::builder();
    let level = match opt {
        OptLevel::None => "none",
        OptLevel::Speed => "speed",
    };
    flags.set("opt_level", level).map_err(|e| isa_error(&e))?;
    flags.set("is_pic", "false").map_err(|e| isa_error(&e))?;
    let builder = isa::lookup_by_name("x86_64").map_err(|e| isa_error(&e))?;
    builder.finish(settings::Flags::new(flags)).map_err(|e| isa_error(&e))
}

/// Compiles one function of `signature` for [`target_isa`]`(opt)` into position-independent
/// machine code without relocations, entry at offset 0.
///
/// `emit` fills the function body through the builder it is given; it must seal its blocks
/// and call [`FunctionBuilder::finalize`] with the configuration it is given.
pub fn compile(
    opt: OptLevel,
    signature: Signature,
    emit: impl FnOnce(FunctionBuilder<'_>, TargetFrontendConfig),
) -> Result<Vec<u8>, CompileError> {
    let isa = target_isa(opt)?;
    let mut func = Function::with_name_signature(UserFuncName::user(0, 0), signature);
    let mut builder_context = FunctionBuilderContext::new();
    emit(FunctionBuilder::new(&mut func, &mut builder_context), isa.frontend_config());
    let mut context = cranelift_codegen::Context::for_function(func);
    let compiled = context
        .compile(&*isa, &mut ControlPlane::default())
        .map_err(|e| CompileError::Codegen(format!("{:?}", e.inner)))?;
    if !compiled.buffer.relocs().is_empty() {
        return Err(CompileError::Relocations);
    }
    Ok(compiled.code_buffer().to_vec())
}
