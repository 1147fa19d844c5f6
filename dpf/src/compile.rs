//! The Cranelift backend: the whole trie becomes one function (signature in [`crate::abi`]).
//!
//! Code is made per group, not per filter: load the group's fields (after one bounds check
//! that covers them all), hash them, probe the group's table (data reached through the
//! context), and on a hit apply the child's [`NodeInfo`](crate::abi::NodeInfo) and jump to
//! the child's code, if it has groups. So the code's size follows the number of filter
//! shapes, not the number of filters, and adding a connection needs no new code.
//!
//! Builds without std, for the kernel. The output is position-independent bytes without
//! relocations.

use alloc::vec::Vec;

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{AbiParam, Block, BlockArg, InstBuilder, JumpTableData, MemFlagsData, Signature, Value, types};
use cranelift_codegen::isa::CallConv;
use cranelift_frontend::{FunctionBuilder, Variable};
pub use xok_codegen::{CompileError, OptLevel, target_isa};

use crate::abi::{HASH_MULTIPLIER, RawOutput, context_field, entry_field, node_field, table_field};
use crate::filter::{AtomKey, Base, Filter, Width};
use crate::set::Dpf;
use crate::trie::Trie;

/// Machine code for one structure generation of a [`Dpf`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledCode {
    /// x86-64 machine code, position-independent, entry at offset 0, System V ABI.
    pub bytes: Vec<u8>,
    /// The structure generation it was compiled for ([`Dpf::generation`]).
    pub generation: u64,
}

/// The signature `fn(ctx, frame, len) -> (owner, copies)` in the System V convention.
pub fn signature() -> Signature {
    let mut sig = Signature::new(CallConv::SystemV);
    for _ in 0..3 {
        sig.params.push(AbiParam::new(types::I64));
    }
    sig.returns.push(AbiParam::new(types::I64));
    sig.returns.push(AbiParam::new(types::I64));
    sig
}

impl Dpf {
    /// Compiles the trie at [`OptLevel::Speed`].
    pub fn compile(&self) -> Result<CompiledCode, CompileError> {
        compile(self, OptLevel::Speed)
    }
}

/// Compiles the whole trie of `dpf` into one function.
pub fn compile(dpf: &Dpf, opt: OptLevel) -> Result<CompiledCode, CompileError> {
    let bytes = xok_codegen::compile(opt, signature(), |builder, config| Emitter::emit(builder, dpf, config))?;
    Ok(CompiledCode { bytes, generation: dpf.generation() })
}

/// Values that every block can use.
struct Common {
    frame: Value,
    len: Value,
    /// `nodes` minus one record: a table's tag (`node + 1`) times 24 added to it is the node's.
    nodes_before: Value,
    /// The context, for the table array's address: loaded at the first node on a path that
    /// has a hashed group, so frames that end before one never load it.
    ctx: Value,
}

struct Emitter<'a> {
    b: FunctionBuilder<'a>,
    trie: &'a Trie,
    /// The best owner so far, packed as `depth << 32 | slot` (the first 8 bytes of a
    /// `NodeInfo`), so that the deeper filter is simply the larger word.
    best: Variable,
    copies: Variable,
    /// Whether any copy filter is installed: without one every record's `copies` is 0, and
    /// the code keeps no register for them (installing the first is structural).
    track_copies: bool,
    /// Blocks that return the result, filled at the end ([`Emitter::to`]).
    returns: Vec<Block>,
}

/// Where code goes after a group: on to a block, or out of the function. Paths that end
/// return where they end, with the result they have, rather than all meeting in one exit
/// block: values known on a path (the owner so far is often a constant) then stay in that
/// path, and no register holds them for the whole function.
#[derive(Clone, Copy)]
enum Next {
    Block(Block),
    Return,
}

fn trusted() -> MemFlagsData {
    MemFlagsData::trusted()
}

fn frame_flags() -> MemFlagsData {
    // Bounds-checked before the load, so it cannot fault; frames are not aligned.
    MemFlagsData::new().with_notrap()
}

impl<'a> Emitter<'a> {
    fn emit(mut b: FunctionBuilder<'a>, dpf: &'a Dpf, config: cranelift_codegen::isa::TargetFrontendConfig) {
        let trie = dpf.trie();
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let params = b.block_params(entry).to_vec();
        let (ctx, frame, len) = (params[0], params[1], params[2]);
        let best = b.declare_var(types::I64);
        let copies = b.declare_var(types::I64);
        let zero64 = b.ins().iconst(types::I64, 0);
        b.def_var(best, zero64);
        b.def_var(copies, zero64);

        // Code for another structure generation must not read the tables.
        let generation = b.ins().load(types::I64, trusted(), ctx, context_field::GENERATION);
        let current = b.ins().icmp_imm_u(IntCC::Equal, generation, dpf.generation() as i64);
        let body = b.create_block();
        let stale = b.create_block();
        // Cold blocks go to the end of the function: the paths frames take fall through, with
        // no taken branch (and no branch-target entry) for a check that passes.
        b.set_cold_block(stale);
        b.ins().brif(current, body, &[], stale, &[]);

        b.switch_to_block(stale);
        let stale_owner = b.ins().iconst(types::I64, RawOutput::STALE as i64);
        let no_copies = b.ins().iconst(types::I64, 0);
        b.ins().return_(&[stale_owner, no_copies]);

        b.switch_to_block(body);
        // Node records are read only for copies and for the code of a hashed group's child.
        let reads_nodes = dpf.has_copy_filters() || (0..trie.groups.len() as u32).any(|g| !trie.inlined(g) && trie.groups[g as usize].coded.iter().any(Option::is_some));
        let nodes_before = if reads_nodes {
            let nodes = b.ins().load(types::I64, trusted(), ctx, context_field::NODES);
            b.ins().iadd_imm_s(nodes, -24)
        } else {
            b.ins().iconst(types::I64, 0)
        };
        let common = Common { frame, len, nodes_before, ctx };
        let mut emitter = Emitter { b, trie, best, copies, track_copies: dpf.has_copy_filters(), returns: Vec::new() };
        let root = dpf.root();
        emitter.apply_compiled_in(root);
        emitter.node(root, Next::Return, &common, None, None);
        for block in core::mem::take(&mut emitter.returns) {
            emitter.b.switch_to_block(block);
            emitter.emit_return();
        }
        emitter.b.seal_all_blocks();
        emitter.b.finalize(config);
    }

    /// Returns the owner and copies found so far (from the current block).
    fn emit_return(&mut self) {
        let best = self.b.use_var(self.best);
        let copies = if self.track_copies { self.b.use_var(self.copies) } else { self.b.ins().iconst(types::I64, 0) };
        self.b.ins().return_(&[best, copies]);
    }

    /// Ends the current block by going on to `next`.
    fn go(&mut self, next: Next) {
        match next {
            Next::Block(block) => {
                self.b.ins().jump(block, &[]);
            }
            Next::Return => self.emit_return(),
        }
    }

    /// A block to branch to for `next`: its block, or a new one that returns (one per branch,
    /// so that it returns exactly what that branch's path found).
    fn to(&mut self, next: Next) -> Block {
        match next {
            Next::Block(block) => block,
            Next::Return => {
                let block = self.b.create_block();
                self.returns.push(block);
                block
            }
        }
    }

    /// Applies the record of `node`, which the code holds as immediates
    /// ([`Trie::record_compiled_in`]): nothing for a node without owner or copies, and the
    /// optimizer folds it into the constants known on the way.
    fn apply_compiled_in(&mut self, node: u32) {
        let info = self.trie.info[node as usize];
        let b = &mut self.b;
        if info.depth != 0 {
            let packed = b.ins().iconst(types::I64, (u64::from(info.depth) << 32 | u64::from(info.owner)) as i64);
            let best = b.use_var(self.best);
            let best = b.ins().umax(best, packed);
            b.def_var(self.best, best);
        }
        if info.copies != 0 {
            let copies = b.use_var(self.copies);
            let copies = b.ins().bor_imm_u(copies, info.copies as i64);
            b.def_var(self.copies, copies);
        }
    }

    /// Code for `node`'s groups, starting in the current block, going on to `next` (the last
    /// group's paths go there directly). `l4` is the IPv4 payload start if code on the way
    /// here computed it (it is computed where a group first needs it, so frames that end
    /// early never pay for it).
    /// `tables` is the table array's address if code on the way here loaded it.
    fn node(&mut self, node: u32, next: Next, common: &Common, l4: Option<Value>, tables: Option<Value>) {
        let groups = self.trie.nodes[node as usize].groups.clone();
        let Some((last, first)) = groups.split_last() else {
            self.go(next);
            return;
        };
        let tables = match tables {
            None if groups.iter().any(|g| !self.trie.inlined(*g)) => Some(self.b.ins().load(types::I64, trusted(), common.ctx, context_field::TABLES)),
            known => known,
        };
        for g in first {
            let after = self.b.create_block();
            self.group_and_children(*g, Next::Block(after), common, l4, tables);
            self.b.switch_to_block(after);
        }
        self.group_and_children(*last, next, common, l4, tables);
    }

    /// Code for group `g` and its children's, all going on to `after`.
    fn group_and_children(&mut self, g: u32, after: Next, common: &Common, l4: Option<Value>, tables: Option<Value>) {
        let (children, child_l4) = self.group(g, after, common, l4, tables);
        for (child, block) in children {
            self.b.switch_to_block(block);
            self.node(child, after, common, child_l4, tables);
        }
    }

    /// Code for group `g`: on a miss jump to `after`; on a hit apply the child and dispatch
    /// to the returned blocks (one per child with code), or `after`.
    /// Also returns the IPv4 payload start for the children's code, if known there.
    /// `tables` is the table array's address, loaded by [`Emitter::node`] for its hashed groups.
    fn group(&mut self, g: u32, after: Next, common: &Common, l4: Option<Value>, tables: Option<Value>) -> (Vec<(u32, Block)>, Option<Value>) {
        let group = &self.trie.groups[g as usize];
        let atoms = group.atoms.clone();
        let stride = 4 * atoms.len() as i64 + i64::from(entry_field::KEY);

        // One bounds check for all fields: never read past `len`.
        let b = &mut self.b;
        let l4 = match l4 {
            None if group.relative_end > 0 => Some(emit_l4(b, common.frame, common.len)),
            known => known,
        };
        // The end of the last byte read: `max(absolute end, l4 + relative end) <= len`, one
        // compare (and, unlike two, none a sibling group shares: a shared flag would be kept
        // in a register across the sibling's code).
        let mut end: Option<Value> = None;
        if let (true, Some(l4)) = (group.relative_end > 0, l4) {
            end = Some(b.ins().iadd_imm_s(l4, group.relative_end as i64));
        }
        let in_bounds = match (end, group.absolute_end) {
            (Some(end), 0) => Some(b.ins().icmp(IntCC::UnsignedLessThanOrEqual, end, common.len)),
            (Some(end), absolute) => {
                let absolute = b.ins().iconst(types::I64, absolute as i64);
                let end = b.ins().umax(end, absolute);
                Some(b.ins().icmp(IntCC::UnsignedLessThanOrEqual, end, common.len))
            }
            (None, 0) => None,
            (None, absolute) => Some(b.ins().icmp_imm_u(IntCC::UnsignedGreaterThanOrEqual, common.len, absolute as i64)),
        };
        if let Some(ok) = in_bounds {
            // A frame too short for the group is rare: when it returns, its block is cold.
            let short = self.to(after);
            if matches!(after, Next::Return) {
                self.b.set_cold_block(short);
            }
            let b = &mut self.b;
            let load_block = b.create_block();
            b.ins().brif(ok, load_block, &[], short, &[]);
            b.switch_to_block(load_block);
        }
        // An inline group compares with immediates, which can be in the frame's byte order:
        // its loads skip the byte swap. A hashed group's keys are big-endian values.
        let order = if self.trie.inlined(g) { Order::Frame } else { Order::Big };
        let values: Vec<Value> = atoms.iter().map(|k| emit_load(&mut self.b, k, common.frame, l4, order)).collect();
        // Key words in pairs, `w[2i] | w[2i+1] << 32`: what the hash takes, and (little
        // endian) what an entry's two words read as one.
        let b = &mut self.b;
        let words: Vec<Value> = values
            .chunks(2)
            .map(|pair| match pair {
                [low, high] => {
                    let high = b.ins().ishl_imm_u(*high, 32);
                    b.ins().bor(*low, high)
                }
                _ => pair[0],
            })
            .collect();
        if self.trie.inlined(g) {
            return (self.inline_group(g, &words, after), l4);
        }

        let empty_slot = self.to(after);
        let b = &mut self.b;
        let group = &self.trie.groups[g as usize];
        // The node loads it for its hashed groups ([`Emitter::node`]); loading it here is the
        // fallback that keeps this function whole on its own.
        let tables = tables.unwrap_or_else(|| b.ins().load(types::I64, trusted(), common.ctx, context_field::TABLES));
        let desc = b.ins().iadd_imm_s(tables, i64::from(g) * 32);
        let entries = b.ins().load(types::I64, trusted(), desc, table_field::ENTRIES);
        let shift = b.ins().load(types::I64, trusted(), desc, table_field::SHIFT);
        // The seed is the table's for life: an immediate.
        let mut hash = b.ins().iconst(types::I64, group.table.seed() as i64);
        for word in &words {
            let mixed = b.ins().bxor(hash, *word);
            hash = b.ins().imul_imm_s(mixed, HASH_MULTIPLIER as i64);
        }
        // `hash >> shift` is below the capacity already; the mask is for the wrap only.
        let home = b.ins().ushr(hash, shift);

        let probe = b.create_block();
        let index = b.append_block_param(probe, types::I64);
        let compare = b.create_block();
        let hit = b.create_block();
        b.ins().jump(probe, &[BlockArg::Value(home)]);

        // probe(index): an empty slot ends the search.
        b.switch_to_block(probe);
        let offset = b.ins().imul_imm_s(index, stride);
        let entry = b.ins().iadd(entries, offset);
        let tag = b.ins().load(types::I32, trusted(), entry, entry_field::TAG);
        b.ins().brif(tag, compare, &[], empty_slot, &[]);

        // compare: all key words equal → hit, else the next slot. A pair of 32-bit words is
        // compared as one 64-bit load (entries are 4-byte aligned only).
        b.switch_to_block(compare);
        let mut equal: Option<Value> = None;
        for (i, (word, pair)) in words.iter().zip(values.chunks(2)).enumerate() {
            let at = entry_field::KEY + 8 * i as i32;
            let stored = match pair {
                [_, _] => b.ins().load(types::I64, MemFlagsData::new().with_notrap(), entry, at),
                _ => b.ins().uload32(trusted(), entry, at),
            };
            let same = b.ins().icmp(IntCC::Equal, stored, *word);
            equal = Some(match equal {
                Some(e) => b.ins().band(e, same),
                None => same,
            });
        }
        let next_block = b.create_block();
        match equal {
            Some(e) => b.ins().brif(e, hit, &[], next_block, &[]),
            None => b.ins().jump(hit, &[]),
        };
        b.switch_to_block(next_block);
        let mask = b.ins().load(types::I64, trusted(), desc, table_field::MASK);
        let next = b.ins().iadd_imm_s(index, 1);
        let next = b.ins().band(next, mask);
        b.ins().jump(probe, &[BlockArg::Value(next)]);

        // hit: the child's owner and depth are in the entry; its copies and code in its
        // record (tables hold only nodes of the same set), read only when needed.
        b.switch_to_block(hit);
        let packed = b.ins().load(types::I64, MemFlagsData::new().with_notrap(), entry, entry_field::RECORD);
        let best = b.use_var(self.best);
        let best = b.ins().umax(best, packed);
        b.def_var(self.best, best);
        let coded = self.trie.groups[g as usize].coded.clone();
        let needs_info = self.track_copies || coded.iter().any(Option::is_some);
        let info = needs_info.then(|| {
            let tag64 = b.ins().uextend(types::I64, tag);
            let info_offset = b.ins().imul_imm_s(tag64, 24);
            b.ins().iadd(common.nodes_before, info_offset)
        });
        if let (true, Some(info)) = (self.track_copies, info) {
            let copies = b.ins().load(types::I64, trusted(), info, node_field::COPIES);
            let all = b.use_var(self.copies);
            let all = b.ins().bor(all, copies);
            b.def_var(self.copies, all);
        }
        let Some(info) = info.filter(|_| coded.iter().any(Option::is_some)) else {
            self.go(after);
            return (Vec::new(), l4);
        };
        let code = b.ins().load(types::I32, trusted(), info, node_field::CODE);
        let none = self.to(after);
        let b = &mut self.b;
        if let [Some(node)] = coded.as_slice() {
            // One child with code: a branch instead of a jump table.
            let block = b.create_block();
            b.ins().brif(code, block, &[], none, &[]);
            return (alloc::vec![(*node, block)], l4);
        }
        let mut children = Vec::new();
        let mut targets = Vec::with_capacity(coded.len() + 1);
        // Each jump-table slot needs its own block call (the SSA builder appends arguments
        // to each one separately).
        targets.push(b.func.dfg.block_call(none, &[]));
        for child in coded {
            let block = match child {
                Some(node) => {
                    let block = b.create_block();
                    children.push((node, block));
                    block
                }
                None => none,
            };
            targets.push(b.func.dfg.block_call(block, &[]));
        }
        let default = b.func.dfg.block_call(none, &[]);
        let table = b.create_jump_table(JumpTableData::new(default, &targets));
        b.ins().br_table(code, table);
        (children, l4)
    }
}

impl Emitter<'_> {
    /// Code for an inline group (see [`crate::trie::INLINE_MAX`]): its key `words` compared
    /// with each entry's as immediates; a match applies the child's record and jumps to its
    /// code (returned, to be emitted) or to `after`; no match goes to `after`.
    fn inline_group(&mut self, g: u32, words: &[Value], after: Next) -> Vec<(u32, Block)> {
        let group = &self.trie.groups[g as usize];
        // The loads are in the frame's byte order ([`Order::Frame`]): so are the immediates.
        let entries: Vec<(Vec<u32>, u32)> = group
            .table
            .iter()
            .map(|(key, child)| (key.iter().zip(&group.atoms).map(|(value, atom)| Order::Frame.of(*value, atom.width)).collect(), child))
            .collect();
        let mut children = Vec::new();
        for (key, child) in entries {
            let b = &mut self.b;
            let mut equal: Option<Value> = None;
            for (word, pair) in words.iter().zip(key.chunks(2)) {
                let immediate = u64::from(pair[0]) | pair.get(1).map_or(0, |high| u64::from(*high) << 32);
                let same = b.ins().icmp_imm_u(IntCC::Equal, *word, immediate as i64);
                equal = Some(match equal {
                    Some(e) => b.ins().band(e, same),
                    None => same,
                });
            }
            let hit = b.create_block();
            let next = b.create_block();
            match equal {
                Some(e) => b.ins().brif(e, hit, &[], next, &[]),
                None => b.ins().jump(hit, &[]),
            };
            b.switch_to_block(hit);
            self.apply_compiled_in(child);
            if self.trie.nodes[child as usize].groups.is_empty() {
                self.go(after);
            } else {
                let code = self.b.create_block();
                self.b.ins().jump(code, &[]);
                children.push((child, code));
            }
            self.b.switch_to_block(next);
        }
        self.go(after);
        children
    }
}

/// Emits the start of the IPv4 payload: `14 + 4 * (frame[14] & 0x0f)` if `len >= 15`, else a
/// huge value that fails every bounds check. Leaves the builder in the join block.
fn emit_l4(b: &mut FunctionBuilder<'_>, frame: Value, len: Value) -> Value {
    let has_ihl = b.create_block();
    let join = b.create_block();
    let l4 = b.append_block_param(join, types::I64);
    let huge = b.ins().iconst(types::I64, 1 << 40);
    let long_enough = b.ins().icmp_imm_u(IntCC::UnsignedGreaterThanOrEqual, len, 15);
    b.ins().brif(long_enough, has_ihl, &[], join, &[BlockArg::Value(huge)]);
    b.switch_to_block(has_ihl);
    let byte = b.ins().uload8(types::I64, frame_flags(), frame, 14);
    let ihl = b.ins().band_imm_u(byte, 0x0f);
    let words = b.ins().ishl_imm_u(ihl, 2);
    let start = b.ins().iadd_imm_s(words, 14);
    b.ins().jump(join, &[BlockArg::Value(start)]);
    b.switch_to_block(join);
    l4
}

/// The byte order a field is loaded in.
#[derive(Clone, Copy)]
enum Order {
    /// Big-endian: the value the filter names (what hashed tables hold).
    Big,
    /// As the bytes lie in the frame, read by this little-endian machine: no byte swap, for
    /// values compared with immediates that are swapped instead ([`Order::of`]).
    Frame,
}

impl Order {
    /// A big-endian `value` of `width` bytes, as a load in this order reads it.
    fn of(self, value: u32, width: Width) -> u32 {
        match (self, width) {
            (Order::Big, _) | (Order::Frame, Width::W1) => value,
            (Order::Frame, Width::W2) => u32::from((value as u16).swap_bytes()),
            (Order::Frame, Width::W4) => value.swap_bytes(),
        }
    }
}

/// Emits a masked load of `key` as an `i64` in `order` (bounds checked by the caller).
fn emit_load(b: &mut FunctionBuilder<'_>, key: &AtomKey, frame: Value, l4: Option<Value>, order: Order) -> Value {
    let address = match (key.base, l4) {
        (Base::Ipv4Payload, Some(l4)) => b.ins().iadd(frame, l4),
        _ => frame,
    };
    let offset = i32::from(key.offset);
    let value = match key.width {
        Width::W1 => b.ins().uload8(types::I64, frame_flags(), address, offset),
        Width::W2 if matches!(order, Order::Frame) => b.ins().uload16(types::I64, frame_flags(), address, offset),
        Width::W4 if matches!(order, Order::Frame) => b.ins().uload32(frame_flags(), address, offset),
        Width::W2 => {
            let v = b.ins().load(types::I16, frame_flags(), address, offset);
            let v = b.ins().bswap(v);
            b.ins().uextend(types::I64, v)
        }
        Width::W4 => {
            let v = b.ins().load(types::I32, frame_flags(), address, offset);
            let v = b.ins().bswap(v);
            b.ins().uextend(types::I64, v)
        }
    };
    if key.mask == key.width.full_mask() { value } else { b.ins().band_imm_u(value, i64::from(order.of(key.mask, key.width))) }
}

/// Compiles one filter on its own, with its values as immediates, into a function of the
/// same signature that ignores `ctx` and returns `owner = 1 << 32` (depth 1, slot 0) when the
/// filter matches, else 0. This is the per-filter program of the benchmark's BPF-JIT-style
/// linear baseline, not part of the demultiplexer. Its `generation` is 0, which no set has.
pub fn compile_alone(filter: &Filter, opt: OptLevel) -> Result<CompiledCode, CompileError> {
    let bytes = xok_codegen::compile(opt, signature(), |mut b, config| {
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let params = b.block_params(entry).to_vec();
        let (frame, len) = (params[1], params[2]);
        let fail = b.create_block();
        let l4 = filter.reads_ihl().then(|| emit_l4(&mut b, frame, len));
        for atom in filter.atoms() {
            let key = &atom.key;
            let in_bounds = match (key.base, l4) {
                (Base::Ipv4Payload, Some(l4)) => {
                    let end = b.ins().iadd_imm_s(l4, key.end() as i64);
                    b.ins().icmp(IntCC::UnsignedLessThanOrEqual, end, len)
                }
                _ => b.ins().icmp_imm_u(IntCC::UnsignedGreaterThanOrEqual, len, key.end() as i64),
            };
            let load_block = b.create_block();
            b.ins().brif(in_bounds, load_block, &[], fail, &[]);
            b.switch_to_block(load_block);
            let value = emit_load(&mut b, key, frame, l4, Order::Big);
            let equal = b.ins().icmp_imm_u(IntCC::Equal, value, i64::from(atom.value));
            let next = b.create_block();
            b.ins().brif(equal, next, &[], fail, &[]);
            b.switch_to_block(next);
        }
        let matched = b.ins().iconst(types::I64, 1 << 32);
        let zero = b.ins().iconst(types::I64, 0);
        b.ins().return_(&[matched, zero]);
        b.switch_to_block(fail);
        let zero = b.ins().iconst(types::I64, 0);
        b.ins().return_(&[zero, zero]);
        b.seal_all_blocks();
        b.finalize(config);
    })?;
    Ok(CompiledCode { bytes, generation: 0 })
}
