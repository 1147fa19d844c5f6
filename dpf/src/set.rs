//! The filter set: installing, deleting and sharing filters under the overlap rule, and
//! classifying frames with the interpreter (the reference) or the linear baseline.
//!
//! The overlap rule (also in `docs/dpf.md`): a non-copy filter N inserted by principal P is
//! refused if some installed non-copy filter E overlaps it (some frame matches both), unless
//! N is a strict subset of E and E is held by P or is a fallback filter, or E is a strict
//! subset of N and N is a fallback filter. Installed non-copy filters are therefore nested or
//! disjoint, the filters matching one frame form a chain, and the most specific (deepest)
//! one owns the frame. Copy filters skip the rule.

use alloc::vec::Vec;
use core::fmt;

use crate::abi::{Context, NodeInfo, RawOutput};
use crate::filter::Filter;
use crate::screen::Screen;
use crate::trie::{Path, ROOT, Trie};

/// Names an installed filter. Slot numbers are reused, generations are not, so an old id
/// never names a newer filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FilterId {
    slot: u32,
    generation: u32,
}

impl FilterId {
    /// The slot number (what the compiled code reports).
    pub const fn slot(self) -> u32 {
        self.slot
    }

    /// The id as one word, for crossing the system-call boundary.
    pub const fn to_u64(self) -> u64 {
        (self.generation as u64) << 32 | self.slot as u64
    }

    /// The id from [`FilterId::to_u64`].
    pub const fn from_u64(word: u64) -> FilterId {
        FilterId { slot: word as u32, generation: (word >> 32) as u32 }
    }
}

/// How a filter takes part in demultiplexing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterClass {
    /// Owns the frames it matches (unless a more specific filter matches too). Must not
    /// overlap other filters except as the overlap rule allows.
    Exclusive,
    /// Like `Exclusive`, but any principal may install strict subsets of it, and it may be
    /// installed over existing filters it strictly contains (strayd's catch-all).
    /// Privileged.
    Fallback,
    /// Sees every frame it matches, alongside the owner; may overlap anything (tcpdump).
    /// Privileged.
    Copy,
}

/// How to insert a filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InsertOptions {
    /// The class of the filter.
    pub class: FilterClass,
    /// Whether the caller may install privileged classes (decided by the kernel).
    pub privileged: bool,
}

impl Default for InsertOptions {
    fn default() -> InsertOptions {
        InsertOptions { class: FilterClass::Exclusive, privileged: false }
    }
}

/// The result of a successful insert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inserted {
    /// The new filter.
    pub id: FilterId,
    /// The trie's structure changed: compiled code must be rebuilt before use (it reports
    /// [`RawOutput::STALE`] until then). False when only table entries changed.
    pub needs_recompile: bool,
}

/// Why an insert was refused. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertError {
    /// The filter overlaps `with` and the overlap rule does not allow it.
    Overlap {
        /// An installed filter it overlaps.
        with: FilterId,
    },
    /// Copy and fallback filters need privilege.
    NotPrivileged,
    /// All [`MAX_COPY_FILTERS`] copy filters are in use.
    TooManyCopyFilters,
    /// The filter would need a new dispatch group and [`MAX_GROUPS`] exist.
    TooManyShapes,
    /// 2³² − 1 filters are installed.
    TooManyFilters,
}

/// Why a delete or reference was refused. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterAccessError {
    /// No such filter (never installed, or deleted).
    UnknownFilter,
    /// The principal does not hold the filter.
    NotHeld,
    /// The new principal already holds the filter.
    AlreadyHeld,
}

impl fmt::Display for InsertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InsertError::Overlap { with } => write!(f, "overlaps filter {}", with.to_u64()),
            InsertError::NotPrivileged => f.write_str("copy and fallback filters need privilege"),
            InsertError::TooManyCopyFilters => write!(f, "all {MAX_COPY_FILTERS} copy filters are in use"),
            InsertError::TooManyShapes => write!(f, "more than {MAX_GROUPS} dispatch groups"),
            InsertError::TooManyFilters => f.write_str("too many filters"),
        }
    }
}

impl fmt::Display for FilterAccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FilterAccessError::UnknownFilter => "no such filter",
            FilterAccessError::NotHeld => "the principal does not hold the filter",
            FilterAccessError::AlreadyHeld => "the principal already holds the filter",
        })
    }
}

/// At most this many copy filters (each is one bit of a 64-bit mask).
pub const MAX_COPY_FILTERS: usize = 64;
/// At most this many dispatch groups. Groups make code, and every group at a node a frame
/// reaches costs a probe, so their number bounds both compile time and per-frame time against
/// principals installing filters of many different shapes. The standard filters need a
/// handful.
pub const MAX_GROUPS: usize = 256;

/// The copy filters that matched a frame, as a set of copy numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopySet(pub u64);

impl CopySet {
    /// Whether no copy filter matched.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The copy numbers, ascending (see [`Dpf::copy_filter`]).
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..MAX_COPY_FILTERS).filter(move |i| self.0 >> i & 1 == 1)
    }
}

/// Who receives a frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Classification {
    /// The most specific matching exclusive or fallback filter.
    pub owner: Option<FilterId>,
    /// The matching copy filters.
    pub copies: CopySet,
}

#[derive(Clone, Debug)]
struct Live {
    filter: Filter,
    class: FilterClass,
    holders: Holders,
    payload: u32,
    node: u32,
    /// 1 + number of installed non-copy filters strictly containing this one (non-copy).
    depth: u32,
    /// Copy number (copy filters).
    copy: u8,
    /// Whether a filter was ever installed inside this one (not cleared when it goes): the
    /// delete of a filter without one has no inner filters to move up and skips the search.
    has_inner: bool,
}

/// The principals holding a filter: almost always one, kept inline (no allocation).
#[derive(Clone, Debug)]
struct Holders {
    first: u32,
    more: Vec<u32>,
}

impl Holders {
    fn one(principal: u32) -> Holders {
        Holders { first: principal, more: Vec::new() }
    }

    fn contains(&self, principal: u32) -> bool {
        self.first == principal || self.more.contains(&principal)
    }

    fn add(&mut self, principal: u32) {
        self.more.push(principal);
    }

    /// Drops `principal` (a holder); returns whether anybody still holds the filter.
    fn release(&mut self, principal: u32) -> bool {
        if self.first != principal {
            self.more.retain(|p| *p != principal);
            return true;
        }
        match self.more.pop() {
            Some(next) => {
                self.first = next;
                true
            }
            None => false,
        }
    }
}

#[derive(Clone, Debug)]
struct Slot {
    generation: u32,
    live: Option<Live>,
}

/// The set of installed filters, merged into one trie.
#[derive(Debug)]
pub struct Dpf {
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    trie: Trie,
    copy_slots: [Option<u32>; MAX_COPY_FILTERS],
    generation: u64,
    len: usize,
    /// Scratch for overlap searches, kept between calls (no allocation per insert).
    found: Vec<(u32, bool)>,
    /// What the compiled code reads, rebuilt after every change ([`Dpf::refresh_context`]),
    /// so that a classification passes it as it is.
    context: Context,
    /// The root's test for callers, with the generation it was made for (rebuilt only when
    /// the structure changes: see [`Dpf::refresh_context`]).
    screen: (Screen, u64),
}

impl Clone for Dpf {
    fn clone(&self) -> Dpf {
        let mut clone = Dpf {
            slots: self.slots.clone(),
            free_slots: self.free_slots.clone(),
            trie: self.trie.clone(),
            copy_slots: self.copy_slots,
            generation: self.generation,
            len: self.len,
            found: Vec::new(),
            context: self.context,
            screen: self.screen,
        };
        // The copy's tables live elsewhere.
        clone.refresh_context();
        clone
    }
}

/// Another name for [`Dpf`].
pub type FilterSet = Dpf;

impl Default for Dpf {
    fn default() -> Dpf {
        Dpf::new()
    }
}

impl Dpf {
    /// An empty set with a fixed hash seed.
    pub fn new() -> Dpf {
        Dpf::with_seed(0x5151_7a7a_0bad_cafe)
    }

    /// An empty set whose hash tables use `seed` (pass a random one to resist collisions
    /// chosen by an attacker).
    pub fn with_seed(seed: u64) -> Dpf {
        let mut dpf = Dpf {
            slots: Vec::new(),
            free_slots: Vec::new(),
            trie: Trie::new(seed),
            copy_slots: [None; MAX_COPY_FILTERS],
            generation: next_generation(),
            len: 0,
            found: Vec::new(),
            context: Context { generation: 0, tables: 0, nodes: 0 },
            screen: (Screen::NONE, 0),
        };
        dpf.refresh_context();
        dpf
    }

    /// Number of installed filters.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no filter is installed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The structure generation: it changes exactly when compiled code must be rebuilt.
    /// Generations come from one counter shared by all sets, so two sets with the same
    /// generation have the same structure (one is an unchanged clone of the other), and code
    /// compiled for one can only run against tables laid out for it.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of live dispatch groups (at most [`MAX_GROUPS`]).
    pub fn group_count(&self) -> usize {
        self.trie.group_count()
    }

    pub(crate) fn trie(&self) -> &Trie {
        &self.trie
    }

    fn live(&self, id: FilterId) -> Option<&Live> {
        self.slots.get(id.slot as usize).filter(|s| s.generation == id.generation)?.live.as_ref()
    }

    fn id_of(&self, slot: u32) -> Option<FilterId> {
        let s = self.slots.get(slot as usize)?;
        s.live.as_ref()?;
        Some(FilterId { slot, generation: s.generation })
    }

    /// The filter installed under `id`.
    pub fn filter(&self, id: FilterId) -> Option<&Filter> {
        self.live(id).map(|l| &l.filter)
    }

    /// The payload (packet ring) given at insert.
    pub fn payload(&self, id: FilterId) -> Option<u32> {
        self.live(id).map(|l| l.payload)
    }

    /// The class given at insert.
    pub fn class(&self, id: FilterId) -> Option<FilterClass> {
        self.live(id).map(|l| l.class)
    }

    /// 1 + the number of installed non-copy filters strictly containing `id` (non-copy
    /// filters; copy filters have no depth and give `None`).
    pub fn depth(&self, id: FilterId) -> Option<u32> {
        self.live(id).filter(|l| l.class != FilterClass::Copy).map(|l| l.depth)
    }

    /// Whether `principal` holds `id`.
    pub fn holds(&self, id: FilterId, principal: u32) -> bool {
        self.live(id).is_some_and(|l| l.holders.contains(principal))
    }

    /// Whether any copy filter is installed (a capture is running).
    pub fn has_copy_filters(&self) -> bool {
        self.copy_slots.iter().any(Option::is_some)
    }

    /// The copy filter with copy number `index`.
    pub fn copy_filter(&self, index: usize) -> Option<FilterId> {
        self.copy_slots.get(index).copied().flatten().and_then(|s| self.id_of(s))
    }

    /// The copy filters of a classification.
    pub fn copy_ids(&self, classification: &Classification) -> impl Iterator<Item = FilterId> + '_ {
        let copies = classification.copies;
        copies.iter().filter_map(|i| self.copy_filter(i))
    }

    /// Every installed filter.
    pub fn ids(&self) -> impl Iterator<Item = FilterId> + '_ {
        (0..self.slots.len() as u32).filter_map(|s| self.id_of(s))
    }

    /// Installs an exclusive filter for `principal`, delivering to `payload`.
    pub fn insert(&mut self, filter: &Filter, principal: u32, payload: u32) -> Result<Inserted, InsertError> {
        self.insert_with(filter, InsertOptions::default(), principal, payload)
    }

    /// Installs a filter of any class.
    pub fn insert_with(
        &mut self,
        filter: &Filter,
        options: InsertOptions,
        principal: u32,
        payload: u32,
    ) -> Result<Inserted, InsertError> {
        let class = options.class;
        if class != FilterClass::Exclusive && !options.privileged {
            return Err(InsertError::NotPrivileged);
        }
        let shape = filter.shape();
        let mut ancestors = 0u32;
        let mut descendants = Vec::new();
        let mut found = core::mem::take(&mut self.found);
        let path = if class == FilterClass::Copy {
            self.trie.locate(filter.atoms())
        } else {
            self.overlapping(filter, &mut found)
        };
        // A copy filter overlaps freely: nothing was found for it.
        for &(e, contains) in &found {
            let Some(other) = self.slots[e as usize].live.as_ref() else { continue };
            let id = FilterId { slot: e, generation: self.slots[e as usize].generation };
            // The byte model decides only what comparing atoms cannot: the same atoms
            // are the same filter, and atoms of `other` among the new one's make it inner.
            let same = other.filter.atoms() == filter.atoms();
            let inner = same || contains || shape.subset_of(other.filter.shape());
            let equal = same || (inner && other.filter.shape().subset_of(shape));
            if inner && !equal && (other.class == FilterClass::Fallback || other.holders.contains(principal)) {
                ancestors += 1;
                // Set before the insert is sure to succeed: a flag left by a failed
                // insert only costs that filter's delete a search.
                if let Some(other) = self.slots[e as usize].live.as_mut() {
                    other.has_inner = true;
                }
            } else if !inner && class == FilterClass::Fallback && other.filter.shape().subset_of(shape) {
                descendants.push(e);
            } else {
                return Err(InsertError::Overlap { with: id });
            }
        }
        found.clear();
        self.found = found;
        let copy = if class == FilterClass::Copy {
            match self.copy_slots.iter().position(Option::is_none) {
                Some(i) => i as u8,
                None => return Err(InsertError::TooManyCopyFilters),
            }
        } else {
            0
        };
        if path.makes_group() && self.trie.group_count() >= MAX_GROUPS {
            return Err(InsertError::TooManyShapes);
        }
        let slot = match self.free_slots.pop() {
            Some(s) => s,
            None => {
                let s = u32::try_from(self.slots.len()).ok().filter(|s| *s != u32::MAX);
                let Some(s) = s else { return Err(InsertError::TooManyFilters) };
                self.slots.push(Slot { generation: 0, live: None });
                s
            }
        };
        let placed = self.trie.place(filter.atoms(), path);
        let node = placed.node;
        let depth = ancestors + 1;
        // Records the code holds as immediates change the structure when they change.
        let mut structural = placed.structural || self.trie.record_compiled_in(node);
        if class == FilterClass::Copy {
            // The code tracks copies only while some copy filter is installed.
            structural |= !self.copy_slots.iter().any(Option::is_some);
            // Copies are not in table entries: no sync needed.
            self.trie.info[node as usize].copies |= 1u64 << copy;
            self.copy_slots[copy as usize] = Some(slot);
        } else {
            self.trie.set_record(node, |info| {
                info.owner = slot;
                info.depth = depth;
            });
        }
        let has_inner = !descendants.is_empty();
        for d in descendants {
            if let Some(l) = self.slots[d as usize].live.as_mut() {
                l.depth += 1;
                let (node, depth) = (l.node, l.depth);
                self.trie.set_record(node, |info| info.depth = depth);
                structural |= self.trie.record_compiled_in(node);
            }
        }
        let live = Live { filter: filter.clone(), class, holders: Holders::one(principal), payload, node, depth, copy, has_inner };
        let s = &mut self.slots[slot as usize];
        s.live = Some(live);
        self.len += 1;
        if structural {
            self.generation = next_generation();
        }
        let id = FilterId { slot, generation: s.generation };
        self.refresh_context();
        Ok(Inserted { id, needs_recompile: structural })
    }

    /// Whether inserting `filter` would make a new dispatch group (a new shape at some node;
    /// an insert makes at most one).
    pub fn needs_group(&self, filter: &Filter) -> bool {
        self.trie.locate(filter.atoms()).makes_group()
    }

    /// Slots of installed non-copy filters that overlap `filter`, each with whether its
    /// atoms are among `filter`'s (then it contains `filter`, and the byte model was not
    /// needed to see the overlap). Returns where `filter` leaves the trie.
    fn overlapping(&self, filter: &Filter, found: &mut Vec<(u32, bool)>) -> Path {
        self.trie.candidates(filter.atoms(), &mut |node| {
            let info = &self.trie.info[node as usize];
            if info.depth == 0 {
                return;
            }
            let Some(l) = self.slots.get(info.owner as usize).and_then(|s| s.live.as_ref()) else { return };
            let contains = syntactic_subset(l.filter.atoms(), filter.atoms());
            if contains || l.filter.shape().overlaps(filter.shape()) {
                found.push((info.owner, contains));
            }
        })
    }

    /// Drops `principal`'s hold on `id`; the filter is removed when nobody holds it.
    /// Returns whether it was removed. Empty groups stay until [`Dpf::compact`]; the code
    /// structure changes (the generation moves on) only when the filter's node leaves a small
    /// group compiled inline, such as a listen's, or its record is compiled in (connections
    /// never do).
    pub fn delete(&mut self, id: FilterId, principal: u32) -> Result<bool, FilterAccessError> {
        let live = self.live(id).ok_or(FilterAccessError::UnknownFilter)?;
        if !live.holders.contains(principal) {
            return Err(FilterAccessError::NotHeld);
        }
        let slot = id.slot as usize;
        let Some(live) = self.slots[slot].live.as_mut() else { return Err(FilterAccessError::UnknownFilter) };
        if live.holders.release(principal) {
            return Ok(false);
        }
        let Some(live) = self.slots[slot].live.take() else { return Err(FilterAccessError::UnknownFilter) };
        self.slots[slot].generation = self.slots[slot].generation.wrapping_add(1);
        self.free_slots.push(id.slot);
        self.len -= 1;
        // Records the code holds as immediates change the structure when they change.
        let mut structural = self.trie.record_compiled_in(live.node);
        if live.class == FilterClass::Copy {
            self.trie.info[live.node as usize].copies &= !(1u64 << live.copy);
            self.copy_slots[live.copy as usize] = None;
            // Without copy filters the code need not track copies.
            structural |= !self.copy_slots.iter().any(Option::is_some);
        } else {
            // Synced below if the node stays (a node left empty leaves its table).
            let info = &mut self.trie.info[live.node as usize];
            info.depth = 0;
            info.owner = 0;
            // Filters inside this one move up a level (overlapping filters are nested, so
            // the deeper ones are inside; a filter that never had one inside has none).
            let mut inside = core::mem::take(&mut self.found);
            if live.has_inner {
                self.overlapping(&live.filter, &mut inside);
            }
            for &(e, _) in &inside {
                if let Some(l) = self.slots[e as usize].live.as_mut()
                    && l.depth > live.depth
                {
                    l.depth -= 1;
                    let (node, depth) = (l.node, l.depth);
                    self.trie.set_record(node, |info| info.depth = depth);
                    structural |= self.trie.record_compiled_in(node);
                }
            }
            inside.clear();
            self.found = inside;
        }
        let pruned = self.trie.prune(live.node);
        if self.trie.nodes[live.node as usize].live {
            self.trie.sync_record(live.node);
        }
        if pruned || structural {
            self.generation = next_generation();
        }
        self.refresh_context();
        Ok(true)
    }

    /// Lets `new_principal` hold `id` too (the caller must hold it).
    pub fn reference(&mut self, id: FilterId, principal: u32, new_principal: u32) -> Result<(), FilterAccessError> {
        let live = self.live(id).ok_or(FilterAccessError::UnknownFilter)?;
        if !live.holders.contains(principal) {
            return Err(FilterAccessError::NotHeld);
        }
        if live.holders.contains(new_principal) {
            return Err(FilterAccessError::AlreadyHeld);
        }
        if let Some(l) = self.slots[id.slot as usize].live.as_mut() {
            l.holders.add(new_principal);
        }
        Ok(())
    }

    /// Drops every hold of `principal` (environment teardown). Returns how many filters
    /// were removed.
    pub fn release_principal(&mut self, principal: u32) -> usize {
        let held: Vec<FilterId> = self.ids().filter(|id| self.holds(*id, principal)).collect();
        held.into_iter().filter(|id| self.delete(*id, principal) == Ok(true)).count()
    }

    /// Removes dispatch groups left empty by deletes. Returns whether the structure changed
    /// (then the code must be rebuilt).
    pub fn compact(&mut self) -> bool {
        let changed = self.trie.compact();
        if changed {
            self.generation = next_generation();
        }
        self.refresh_context();
        changed
    }

    /// Classifies `frame` by walking the trie (the reference semantics).
    pub fn classify_interpreted(&self, frame: &[u8]) -> Classification {
        let mut best = NodeInfo::default();
        let mut copies = 0u64;
        self.trie.walk(frame, |info| {
            if info.depth > best.depth {
                best = *info;
            }
            copies |= info.copies;
        });
        self.resolve_parts(best.depth != 0, best.owner, copies)
    }

    /// Classifies `frame` by running every filter on its own, one after the other (the way
    /// BPF socket filters run). The baseline for benchmarks and a second reference.
    pub fn classify_linear(&self, frame: &[u8]) -> Classification {
        let mut best: Option<(u32, u32)> = None;
        let mut copies = 0u64;
        for (slot, s) in self.slots.iter().enumerate() {
            let Some(l) = &s.live else { continue };
            if !l.filter.matches(frame) {
                continue;
            }
            if l.class == FilterClass::Copy {
                copies |= 1u64 << l.copy;
            } else if best.is_none_or(|(d, _)| l.depth > d) {
                best = Some((l.depth, slot as u32));
            }
        }
        self.resolve_parts(best.is_some(), best.map_or(0, |b| b.1), copies)
    }

    fn resolve_parts(&self, has_owner: bool, owner: u32, copies: u64) -> Classification {
        Classification { owner: if has_owner { self.id_of(owner) } else { None }, copies: CopySet(copies) }
    }

    /// Turns the compiled code's output into a classification; `None` if the code was stale.
    pub fn resolve(&self, raw: &RawOutput) -> Option<Classification> {
        if raw.is_stale() {
            return None;
        }
        let slot = raw.owner_slot();
        Some(self.resolve_parts(slot.is_some(), slot.unwrap_or(0), raw.copies))
    }

    /// What the compiled code reads. Valid until the set is next modified.
    #[inline]
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// The root's test a caller makes before it calls the compiled code: a frame it rejects
    /// matches no filter (see [`crate::screen`]). Valid until the set is next modified.
    #[inline]
    pub fn screen(&self) -> &Screen {
        &self.screen.0
    }

    /// Rebuilds the context after a change (every `&mut self` method that changes the trie
    /// or the generation ends with this), and the screen if the structure changed: what the
    /// screen tests (the root's record and its one inline group) is part of the structure.
    fn refresh_context(&mut self) {
        self.context = Context {
            generation: self.generation,
            tables: self.trie.descs.as_ptr() as u64,
            nodes: self.trie.info.as_ptr() as u64,
        };
        if self.screen.1 != self.generation {
            self.screen = (Screen::of(&self.trie), self.generation);
        }
        debug_assert_eq!(self.screen.0, Screen::of(&self.trie), "the screen changes only with the structure");
    }

    /// The root's node record (for the code generator).
    pub(crate) fn root(&self) -> u32 {
        ROOT
    }
}

/// A structure generation no set has used yet.
fn next_generation() -> u64 {
    static NEXT: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, core::sync::atomic::Ordering::Relaxed)
}

/// Whether every atom of `outer` appears in `inner` (then `inner ⊆ outer`).
fn syntactic_subset(outer: &[crate::filter::Atom], inner: &[crate::filter::Atom]) -> bool {
    outer.iter().all(|a| inner.contains(a))
}
