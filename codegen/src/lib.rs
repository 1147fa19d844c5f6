//! Cranelift plumbing shared by `dpf` and `wkpred`.
//!
//! - [`target_isa`]: the x86-64 target both compile for, at an [`OptLevel`].
//! - [`compile`]: builds one Cranelift function and returns it as position-independent
//!   bytes without relocations (entry at offset 0), or a [`CompileError`]; a function that
//!   keeps nothing on the stack loses the frame Cranelift sets up in every function.
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
use cranelift_codegen::ir::{AbiParam, ArgumentPurpose, Function, Opcode, Signature, SourceLoc, UserFuncName};
use cranelift_codegen::isa::{self, CallConv, OwnedTargetIsa, TargetFrontendConfig};
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
    let returns = mark_returns(&mut func).filter(|_| passes_in_registers(&func.signature));
    let mut context = cranelift_codegen::Context::for_function(func);
    let compiled = context
        .compile(&*isa, &mut ControlPlane::default())
        .map_err(|e| CompileError::Codegen(format!("{:?}", e.inner)))?;
    if !compiled.buffer.relocs().is_empty() {
        return Err(CompileError::Relocations);
    }
    let mut code = compiled.code_buffer().to_vec();
    if let Some(returns) = returns {
        drop_empty_frame(&mut code, compiled, returns);
    }
    Ok(code)
}

/// `push rbp; mov rbp, rsp`: the frame set-up Cranelift's x64 backend puts at the entry of
/// every function.
const FRAME_SETUP: [u8; 4] = [0x55, 0x48, 0x89, 0xe5];
/// `mov rsp, rbp; pop rbp; ret`: the epilogue of a function whose frame holds nothing else.
const FRAME_RETURN: [u8; 5] = [0x48, 0x89, 0xec, 0x5d, 0xc3];
/// A 4-byte no-op (`nop dword [rax]`), in place of the set-up.
const NOP4: [u8; 4] = [0x0f, 0x1f, 0x40, 0x00];
/// `ret` and four `int3` that are never reached, in place of an epilogue.
const BARE_RETURN: [u8; 5] = [0xc3, 0xcc, 0xcc, 0xcc, 0xcc];

/// Gives every `return` instruction its own source location (1, 2, ...), so that the compiled
/// buffer says where each one's epilogue lies; returns how many there are, or `None` if the
/// function calls anything (a tail call leaves through an epilogue of its own) or reads the
/// stack or frame pointer (their values would change).
fn mark_returns(func: &mut Function) -> Option<u32> {
    let mut returns = Vec::new();
    for block in func.layout.blocks() {
        for inst in func.layout.block_insts(block) {
            match func.dfg.insts[inst].opcode() {
                Opcode::Return => returns.push(inst),
                // Calls, and instructions that read or switch the stack or the frame.
                Opcode::GetStackPointer | Opcode::GetFramePointer | Opcode::GetReturnAddress | Opcode::StackSwitch => return None,
                opcode if opcode.is_call() => return None,
                _ => {}
            }
        }
    }
    for (n, inst) in returns.iter().enumerate() {
        func.set_srcloc(*inst, SourceLoc::new(n as u32 + 1));
    }
    Some(returns.len() as u32)
}

/// Whether every argument and result of `signature` travels in a register (System V: at
/// most six integer arguments, two integer results), so that the body never reads the
/// caller's frame.
fn passes_in_registers(signature: &Signature) -> bool {
    let integers = |params: &[AbiParam]| params.iter().all(|p| p.value_type.is_int() && p.value_type.bits() <= 64 && p.purpose == ArgumentPurpose::Normal);
    signature.call_conv == CallConv::SystemV
        && signature.params.len() <= 6
        && signature.returns.len() <= 2
        && integers(&signature.params)
        && integers(&signature.returns)
}

/// Removes the frame Cranelift's x64 backend sets up in every function, leaf or not (there is
/// no setting to omit it), from a function that keeps nothing on the stack: the code no
/// longer stores and reloads `rbp` on every call (measured in docs/dpf.md section 7: a call
/// that returned at once took 2.0 ns, or 2.25 ns in a third of the rounds; without the frame
/// in one round of fourteen). The set-up becomes a no-op and each epilogue a bare
/// `ret`, in place, so no offset moves. It is done only where Cranelift's own records show it
/// is sound: the frame holds no saved register, spill slot or outgoing argument (`rsp` and
/// `rbp` are then never used by the body; Cranelift never allocates `rbp`), the function
/// calls nothing (checked in the IR by [`mark_returns`] and in the code's call sites), and
/// every `return` (marked by [`mark_returns`]) starts with exactly the epilogue of such a
/// frame. Otherwise the code is left as it is.
///
/// Soundness rests on Cranelift's internals as of the version `Cargo.toml` pins exactly
/// (0.135.8; reviewed against its source: rbp and rsp are never allocated, spill and stack
/// slots and saved registers are all counted in `frame_to_fp_offset`, incoming stack
/// arguments are excluded by [`passes_in_registers`]); upgrading Cranelift needs that review
/// again. The unwind information Cranelift makes still describes the frame; nothing here
/// registers it.
fn drop_empty_frame(code: &mut [u8], compiled: &cranelift_codegen::CompiledCode, returns: u32) {
    let buffer = &compiled.buffer;
    let empty_frame = buffer.frame_layout().is_some_and(|layout| layout.frame_to_fp_offset == 0);
    if !empty_frame || buffer.call_sites().next().is_some() || !code.starts_with(&FRAME_SETUP) {
        return;
    }
    // Where each return's epilogue lies: its marked range, which must be the epilogue alone
    // (moves before a return are emitted under the instruction before it, and a return ends
    // its block, so the range closes with it; anything else, such as a constant island, or a
    // range in two pieces, leaves the frame in place).
    let mut epilogues = alloc::vec![None; returns as usize];
    for range in buffer.get_srclocs_sorted() {
        let Some(slot) = epilogues.get_mut((range.loc.bits() as usize).wrapping_sub(1)) else { continue };
        if (range.end - range.start) as usize != FRAME_RETURN.len() || slot.replace(range.start as usize).is_some() {
            return;
        }
    }
    let Some(epilogues) = epilogues.into_iter().collect::<Option<Vec<usize>>>() else { return };
    if !epilogues.iter().all(|at| code.get(*at..*at + FRAME_RETURN.len()) == Some(&FRAME_RETURN[..])) {
        return;
    }
    code[..FRAME_SETUP.len()].copy_from_slice(&NOP4);
    for at in epilogues {
        code[at..at + FRAME_RETURN.len()].copy_from_slice(&BARE_RETURN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cranelift_codegen::ir::condcodes::IntCC;
    use cranelift_codegen::ir::{InstBuilder, StackSlotData, StackSlotKind, types};

    fn signature(params: usize) -> Signature {
        let mut signature = Signature::new(CallConv::SystemV);
        signature.params.extend((0..params).map(|_| AbiParam::new(types::I64)));
        signature.returns.extend([AbiParam::new(types::I64), AbiParam::new(types::I64)]);
        signature
    }

    /// `f(a, b, ...) = if a == 7 { (b, a) } else { (a + b + last, 0) }`, with a stack slot the
    /// value goes through if `spill`.
    fn compile_test(params: usize, spill: bool) -> Vec<u8> {
        compile(OptLevel::Speed, signature(params), |mut b, config| {
            let entry = b.create_block();
            b.append_block_params_for_function_params(entry);
            b.switch_to_block(entry);
            let args = b.block_params(entry).to_vec();
            let (yes, no) = (b.create_block(), b.create_block());
            let seven = b.ins().icmp_imm_u(IntCC::Equal, args[0], 7);
            b.ins().brif(seven, yes, &[], no, &[]);
            b.switch_to_block(yes);
            b.ins().return_(&[args[1], args[0]]);
            b.switch_to_block(no);
            let mut sum = b.ins().iadd(args[0], args[1]);
            sum = b.ins().iadd(sum, args[params - 1]);
            if spill {
                let slot = b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, 8, 3));
                b.ins().stack_store(types::I64, sum, slot, 0);
                sum = b.ins().stack_load(types::I64, types::I64, slot, 0);
            }
            let zero = b.ins().iconst(types::I64, 0);
            b.ins().return_(&[sum, zero]);
            b.seal_all_blocks();
            b.finalize(config);
        })
        .unwrap()
    }

    fn count(code: &[u8], pattern: &[u8]) -> usize {
        code.windows(pattern.len()).filter(|w| *w == pattern).count()
    }

    #[test]
    fn a_function_that_keeps_nothing_on_the_stack_loses_its_frame() {
        let code = compile_test(3, false);
        assert!(code.starts_with(&NOP4), "{code:02x?}");
        assert_eq!(count(&code, &BARE_RETURN), 2, "both returns: {code:02x?}");
        assert_eq!(count(&code, &FRAME_RETURN), 0);
        assert!(!code.contains(&0x5d), "no pop rbp: {code:02x?}");
    }

    #[test]
    fn a_function_that_calls_keeps_its_frame() {
        let code = compile(OptLevel::Speed, signature(3), |mut b, config| {
            let entry = b.create_block();
            b.append_block_params_for_function_params(entry);
            b.switch_to_block(entry);
            let args = b.block_params(entry).to_vec();
            let callee = b.import_signature(signature(2));
            let call = b.ins().call_indirect(callee, args[0], &[args[1], args[2]]);
            let results = b.inst_results(call).to_vec();
            b.ins().return_(&results);
            b.seal_all_blocks();
            b.finalize(config);
        })
        .unwrap();
        assert!(code.starts_with(&FRAME_SETUP), "{code:02x?}");
        assert_eq!(count(&code, &BARE_RETURN), 0);
    }

    #[test]
    fn a_function_with_a_stack_slot_or_stack_arguments_keeps_its_frame() {
        for (params, spill) in [(3, true), (8, false)] {
            let code = compile_test(params, spill);
            assert!(code.starts_with(&FRAME_SETUP), "{params} arguments, spill {spill}: {code:02x?}");
            assert_eq!(count(&code, &BARE_RETURN), 0);
        }
    }
}
