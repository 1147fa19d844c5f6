//! The data layout shared by the compiled code and the Rust side: the context the compiled
//! function reads, the per-node records, the hash-table descriptors and the output record.
//!
//! The compiled function has the System V signature
//!
//! ```text
//! extern "sysv64" fn classify(ctx: *const Context, frame: *const u8, len: u64) -> RawOutput
//! ```
//!
//! Everything it reads besides the frame is reached through `ctx`, so the code bytes hold no
//! absolute address: the kernel may copy them anywhere, and tables may grow and move without
//! recompiling. Addresses are stored as `u64` so that these records are plain data.

/// What the compiled function reads besides the frame. Rebuilt by [`crate::Dpf::context`]
/// after every change; valid while the `Dpf` is not modified.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    /// The structure generation the tables follow; compiled code for another generation
    /// returns [`RawOutput::STALE`] without reading anything else.
    pub generation: u64,
    /// Address of the `[TableDesc]` array, indexed by group number.
    pub tables: u64,
    /// Address of the `[NodeInfo]` array, indexed by node number (tables only name nodes of
    /// the same set, so the code needs no length).
    pub nodes: u64,
}

/// Offsets of [`Context`] fields, used by the code generator.
pub(crate) mod context_field {
    pub const GENERATION: i32 = 0;
    pub const TABLES: i32 = 8;
    pub const NODES: i32 = 16;
}
const _: () = assert!(core::mem::size_of::<Context>() == 24);

/// One trie node as the compiled code sees it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// Slot of the exclusive filter that ends here (valid when `depth != 0`).
    pub owner: u32,
    /// 1 + the number of installed filters that strictly contain the owner; 0 = no owner.
    /// Among matching filters the deepest wins.
    pub depth: u32,
    /// Bit `i` set: copy filter number `i` ends here.
    pub copies: u64,
    /// Which compiled block continues below this node within its parent group's code
    /// (0 = the node has no groups).
    pub code: u32,
    /// Padding, always 0.
    pub reserved: u32,
}

pub(crate) mod node_field {
    pub const COPIES: i32 = 8;
    pub const CODE: i32 = 16;
}
const _: () = assert!(core::mem::size_of::<NodeInfo>() == 24);

/// A hash-dispatch table as the compiled code sees it. Entries are `3 + arity` 32-bit words:
/// word 0 is `node + 1` (0 = empty slot), words 1 and 2 the node's `owner` and `depth` (as in
/// its [`NodeInfo`], kept equal to it: one little-endian `depth << 32 | owner` word, so a hit
/// needs no second load for the owner), then one word per key atom (the masked loads).
/// Linear probing from `(hash >> shift) & mask`; at most an eighth of the slots of a small
/// table and half of a big one are used (short probe runs for misses; see
/// `table::LOAD_DIVISOR`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableDesc {
    /// Address of the entry words.
    pub entries: u64,
    /// Capacity − 1 (capacity is a power of two, at least 2).
    pub mask: u64,
    /// 64 − log2(capacity).
    pub shift: u64,
    /// Hash seed.
    pub seed: u64,
}

/// Byte offsets within a table entry (see [`TableDesc`]).
pub(crate) mod entry_field {
    pub const TAG: i32 = 0;
    pub const RECORD: i32 = 4;
    pub const KEY: i32 = 12;
}

pub(crate) mod table_field {
    pub const ENTRIES: i32 = 0;
    pub const MASK: i32 = 8;
    pub const SHIFT: i32 = 16;
    // The seed (at 24) is compiled in as an immediate: it is fixed for a table's life.
}
const _: () = assert!(core::mem::size_of::<TableDesc>() == 32);

/// The multiplier of the key hash.
pub const HASH_MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

/// The key hash shared by the Rust tables and the compiled code: key words are taken in
/// pairs `(w[2i] | w[2i+1] << 32)`, each pair xored into the state and multiplied.
pub fn hash_key(seed: u64, key: &[u32]) -> u64 {
    key.chunks(2).fold(seed, |h, pair| {
        let word = u64::from(pair[0]) | pair.get(1).map_or(0, |w| u64::from(*w) << 32);
        (h ^ word).wrapping_mul(HASH_MULTIPLIER)
    })
}

/// What the compiled function returns (in `rax`, `rdx`: a 16-byte `repr(C)` struct of two
/// integers is returned in registers by the System V ABI, as Cranelift returns two `i64`s).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawOutput {
    /// The winning exclusive filter as `depth << 32 | slot` (depth 0: none), or
    /// [`RawOutput::STALE`].
    pub owner: u64,
    /// Bit `i`: copy filter number `i` matched.
    pub copies: u64,
}
const _: () = assert!(core::mem::size_of::<RawOutput>() == 16);

impl RawOutput {
    /// `owner` when the code was compiled for another structure generation; nothing was
    /// classified.
    pub const STALE: u64 = u64::MAX;

    /// No filter owns the frame and none copies it: what the code returns for a frame its
    /// root rejects, and what a screen ([`crate::screen`]) answers without the code.
    pub const NO_MATCH: RawOutput = RawOutput { owner: 0, copies: 0 };

    /// Whether the code refused to run (stale).
    pub const fn is_stale(&self) -> bool {
        self.owner == RawOutput::STALE
    }

    /// The slot of the owning filter, if any (and not stale).
    pub const fn owner_slot(&self) -> Option<u32> {
        if self.is_stale() || self.owner >> 32 == 0 { None } else { Some(self.owner as u32) }
    }
}
