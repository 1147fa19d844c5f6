//! The Cranelift backend: a predicate becomes one function
//! `extern "sysv64" fn(addresses: *const u64) -> u32` returning 1 (true) or 0 (false).
//!
//! `addresses` is the table from [`crate::resolve`]: entry `l` is where location `l` can be
//! read. A word is loaded from `addresses[location] + offset`; nothing else is read and
//! nothing is written. Each clause is a chain of compare-and-branch: a false term jumps to
//! the next clause (or to `return 0` after the last), the last true term of a clause jumps
//! to `return 1`. So evaluation short-circuits exactly like [`crate::evaluate`].
//!
//! Builds without std, for the kernel. The output is position-independent bytes without
//! relocations.

use alloc::vec::Vec;
use core::fmt;

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{AbiParam, InstBuilder, MemFlagsData, Signature, Type, Value, types};
use cranelift_codegen::isa::CallConv;
use cranelift_frontend::FunctionBuilder;
pub use xok_codegen::{OptLevel, target_isa};

use crate::predicate::{Op, Operand, PAGE_SIZE, Predicate, Width, Word};
use crate::validate::{ValidationError, validate};

/// Machine code for one predicate. Only [`compile`] makes it, so the code always belongs
/// to a valid predicate whose shape (location count, page offsets) it records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledPredicate {
    code: Vec<u8>,
    page_offsets: Vec<u16>,
}

impl CompiledPredicate {
    /// x86-64 machine code, position-independent, entry at offset 0, System V ABI.
    pub fn code(&self) -> &[u8] {
        &self.code
    }

    /// How many entries the address table passed to the code must have.
    pub fn location_count(&self) -> usize {
        self.page_offsets.len()
    }

    /// For each location, its address modulo [`PAGE_SIZE`]: where inside its page it lies.
    /// Every word the code reads for location `l` is inside
    /// `[page_offsets[l], PAGE_SIZE)` of that page.
    pub fn page_offsets(&self) -> &[u16] {
        &self.page_offsets
    }
}

/// Why compilation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompileError {
    /// The predicate breaks a rule.
    Invalid(ValidationError),
    /// Cranelift could not produce the code (see [`xok_codegen::CompileError`]).
    Backend(xok_codegen::CompileError),
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompileError::Invalid(e) => write!(f, "invalid predicate: {e}"),
            CompileError::Backend(e) => write!(f, "{e}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for CompileError {}

impl From<xok_codegen::CompileError> for CompileError {
    fn from(error: xok_codegen::CompileError) -> Self {
        CompileError::Backend(error)
    }
}

/// The signature `fn(addresses: *const u64) -> u32` in the System V convention.
pub fn signature() -> Signature {
    let mut sig = Signature::new(CallConv::SystemV);
    sig.params.push(AbiParam::new(types::I64));
    sig.returns.push(AbiParam::new(types::I32));
    sig
}

/// Compiles `predicate` at [`OptLevel::Speed`] (validating it first).
pub fn compile(predicate: &Predicate) -> Result<CompiledPredicate, CompileError> {
    compile_with(predicate, OptLevel::Speed)
}

/// Compiles `predicate` at `opt` (validating it first).
pub fn compile_with(predicate: &Predicate, opt: OptLevel) -> Result<CompiledPredicate, CompileError> {
    validate(predicate).map_err(CompileError::Invalid)?;
    let code = xok_codegen::compile(opt, signature(), |builder, config| emit(builder, predicate, config))?;
    let page_offsets = predicate.locations.iter().map(|a| (a % PAGE_SIZE) as u16).collect();
    Ok(CompiledPredicate { code, page_offsets })
}

fn ir_type(width: Width) -> Type {
    match width {
        Width::W8 => types::I8,
        Width::W16 => types::I16,
        Width::W32 => types::I32,
        Width::W64 => types::I64,
    }
}

/// Loads `word`: its location's entry of the address table, then the word itself.
fn load(b: &mut FunctionBuilder<'_>, addresses: Value, word: Word) -> Value {
    // The table is ours (built by `resolve`) and valid during the call.
    let base = b.ins().load(types::I64, MemFlagsData::trusted(), addresses, word.location as i32 * 8);
    // The word is in a page the kernel pinned, aligned (validated), and may change under
    // us (another CPU or a device writes it): not read-only, but it cannot trap.
    let flags = MemFlagsData::new().with_notrap().with_aligned();
    b.ins().load(ir_type(word.width), flags, base, i32::from(word.offset))
}

fn constant(b: &mut FunctionBuilder<'_>, width: Width, value: u64) -> Value {
    // Cranelift wants narrow constants zero-extended into the i64 immediate.
    b.ins().iconst(ir_type(width), (value & width.max()) as i64)
}

fn emit(mut b: FunctionBuilder<'_>, predicate: &Predicate, config: cranelift_codegen::isa::TargetFrontendConfig) {
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    let yes = b.create_block();
    let no = b.create_block();
    b.switch_to_block(entry);
    let addresses = b.block_params(entry)[0];

    for (c, clause) in predicate.clauses.iter().enumerate() {
        let next_clause = if c + 1 == predicate.clauses.len() { no } else { b.create_block() };
        for (t, term) in clause.terms.iter().enumerate() {
            let width = term.left.width;
            let left = load(&mut b, addresses, term.left);
            let right = match term.right {
                Operand::Constant(value) => constant(&mut b, width, value),
                Operand::Word(word) => load(&mut b, addresses, word),
            };
            let (left, right, cc) = match term.op {
                Op::MaskedEq { mask } => {
                    let mask = constant(&mut b, width, mask);
                    let l = b.ins().band(left, mask);
                    let r = match term.right {
                        // Validated: the constant has no bits outside the mask.
                        Operand::Constant(_) => right,
                        Operand::Word(_) => b.ins().band(right, mask),
                    };
                    (l, r, IntCC::Equal)
                }
                Op::Eq => (left, right, IntCC::Equal),
                Op::Ne => (left, right, IntCC::NotEqual),
                Op::Lt => (left, right, IntCC::UnsignedLessThan),
                Op::Le => (left, right, IntCC::UnsignedLessThanOrEqual),
                Op::Gt => (left, right, IntCC::UnsignedGreaterThan),
                Op::Ge => (left, right, IntCC::UnsignedGreaterThanOrEqual),
                Op::SignedLt => (left, right, IntCC::SignedLessThan),
                Op::SignedLe => (left, right, IntCC::SignedLessThanOrEqual),
                Op::SignedGt => (left, right, IntCC::SignedGreaterThan),
                Op::SignedGe => (left, right, IntCC::SignedGreaterThanOrEqual),
            };
            let condition = b.ins().icmp(cc, left, right);
            let next_term = if t + 1 == clause.terms.len() { yes } else { b.create_block() };
            b.ins().brif(condition, next_term, &[], next_clause, &[]);
            if next_term != yes {
                b.switch_to_block(next_term);
            }
        }
        if next_clause != no {
            b.switch_to_block(next_clause);
        }
    }
    if predicate.clauses.is_empty() {
        b.ins().jump(no, &[]);
    }

    b.switch_to_block(yes);
    let one = b.ins().iconst(types::I32, 1);
    b.ins().return_(&[one]);
    b.switch_to_block(no);
    let zero = b.ins().iconst(types::I32, 0);
    b.ins().return_(&[zero]);
    b.seal_all_blocks();
    b.finalize(config);
}
