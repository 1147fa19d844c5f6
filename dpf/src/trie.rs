//! The merged trie: nodes joined by hash-dispatch groups.
//!
//! A group at a node tests a set of atom keys (for example "protocol and destination
//! address", or the connection's "source address and source port") and maps the tuple of
//! masked values to a child node through a [`FlatTable`]. A filter is placed by walking down:
//! at each node the first group whose keys all appear among the filter's remaining atoms is
//! followed (the values pick the child, made on demand); when no group fits, a new group is
//! made from all remaining atoms. The filter ends at the node where no atom remains.
//!
//! A new child under an existing group is a table entry: data. Only a new group changes
//! the code structure, which bumps the structure generation.

use alloc::vec::Vec;

use crate::abi::{NodeInfo, TableDesc};
use crate::filter::{Atom, AtomKey, Base, MAX_ATOMS, ipv4_payload_start};
use crate::table::FlatTable;

/// Index of the root node.
pub const ROOT: u32 = 0;

/// Interior groups (some child tests more) with at most this many entries are compiled
/// inline: their keys become immediates and their children's code is reached by a direct
/// jump, with no hashing or probing. Their entries are then part of the structure: adding or
/// removing one needs new code. The groups that change all the time, connections under a
/// listen, are leaves (their children test nothing more), and stay hash tables.
pub const INLINE_MAX: usize = 4;

/// A trie node.
#[derive(Clone, Debug, Default)]
pub struct Node {
    /// The group this node hangs under (none for the root).
    pub parent: Option<u32>,
    /// The values under which the parent group stores this node.
    pub key: NodeKey,
    /// Groups tested at this node, in order.
    pub groups: Vec<u32>,
    /// Whether the node is in use.
    pub live: bool,
}

/// The values under which a parent group stores a node, held inline: a node is made for
/// every connection, and a key of its own allocation would cost each insert and delete a
/// trip through the allocator.
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeKey {
    words: [u32; MAX_ATOMS],
    len: u8,
}

impl NodeKey {
    fn new(values: &[u32]) -> NodeKey {
        let mut key = NodeKey::default();
        let len = values.len().min(MAX_ATOMS);
        key.words[..len].copy_from_slice(&values[..len]);
        key.len = len as u8;
        key
    }

    /// The values.
    pub fn values(&self) -> &[u32] {
        &self.words[..usize::from(self.len)]
    }
}

/// A hash-dispatch group.
#[derive(Clone, Debug)]
pub struct Group {
    /// The node that tests this group.
    pub node: u32,
    /// The keys, sorted.
    pub atoms: Vec<AtomKey>,
    /// Values → child node.
    pub table: FlatTable,
    /// Children that have groups of their own: `coded[i]` has code `i + 1`.
    pub coded: Vec<Option<u32>>,
    /// Whether the group is in use.
    pub live: bool,
    /// One past the last absolute byte read.
    pub absolute_end: u64,
    /// One past the last byte read relative to the IPv4 payload (0 = none).
    pub relative_end: u64,
}

impl Group {
    fn new(node: u32, atoms: Vec<AtomKey>, seed: u64) -> Group {
        let absolute_end = atoms.iter().filter(|a| a.base == Base::Frame).map(|a| a.end()).max().unwrap_or(0);
        let relative_end = atoms.iter().filter(|a| a.base == Base::Ipv4Payload).map(|a| a.end()).max().unwrap_or(0);
        let table = FlatTable::new(atoms.len(), seed);
        Group { node, atoms, table, coded: Vec::new(), live: true, absolute_end, relative_end }
    }

    /// Loads the key tuple from `frame` into `out`; `false` if a byte lies outside it.
    pub fn load(&self, frame: &[u8], l4: Option<u64>, out: &mut [u32; MAX_ATOMS]) -> bool {
        for (slot, key) in out.iter_mut().zip(&self.atoms) {
            match key.load(frame, l4) {
                Some(v) => *slot = v,
                None => return false,
            }
        }
        true
    }
}

/// Where a filter leaves the trie as it is: the last existing node on its way down, the
/// atoms not yet consumed there (a bit set over the filter's atoms; none: the filter ends at
/// `node`), and the group at `node` that tests exactly those atoms, if there is one (else
/// placing the filter makes a group).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Path {
    node: u32,
    left: u32,
    group: Option<u32>,
}

impl Path {
    /// Whether placing the filter makes a dispatch group.
    pub fn makes_group(&self) -> bool {
        self.left != 0 && self.group.is_none()
    }
}

/// Where the trie found or made the end node of a filter.
pub struct Placed {
    /// The node where the filter ends.
    pub node: u32,
    /// Whether a group was made (the compiled code must be rebuilt).
    pub structural: bool,
}

/// The trie and the data arrays the compiled code reads.
#[derive(Clone, Debug)]
pub struct Trie {
    /// Nodes by number.
    pub nodes: Vec<Node>,
    /// What the compiled code reads per node.
    pub info: Vec<NodeInfo>,
    free_nodes: Vec<u32>,
    /// Groups by number.
    pub groups: Vec<Group>,
    /// What the compiled code reads per group.
    pub descs: Vec<TableDesc>,
    free_groups: Vec<u32>,
    seed: u64,
}

impl Trie {
    /// A trie holding only the root.
    pub fn new(seed: u64) -> Trie {
        Trie {
            nodes: alloc::vec![Node { live: true, ..Node::default() }],
            info: alloc::vec![NodeInfo::default()],
            free_nodes: Vec::new(),
            groups: Vec::new(),
            descs: Vec::new(),
            free_groups: Vec::new(),
            seed,
        }
    }

    /// Whether group `g` is compiled inline (see [`INLINE_MAX`]).
    pub fn inlined(&self, g: u32) -> bool {
        let group = &self.groups[g as usize];
        group.live && group.table.len() <= INLINE_MAX && group.coded.iter().any(Option::is_some)
    }

    /// Changes node `node`'s record and keeps its owner and depth in the node's entry of its
    /// parent group's table equal (compiled code reads them there).
    pub fn set_record(&mut self, node: u32, change: impl FnOnce(&mut NodeInfo)) {
        change(&mut self.info[node as usize]);
        self.sync_record(node);
    }

    /// Copies node `node`'s owner and depth into its entry of its parent group's table (after
    /// a change made through `info` directly).
    pub fn sync_record(&mut self, node: u32) {
        let NodeInfo { owner, depth, .. } = self.info[node as usize];
        let n = &self.nodes[node as usize];
        if let Some(g) = n.parent {
            let synced = self.groups[g as usize].table.set_record(n.key.values(), owner, depth);
            debug_assert!(synced, "node {node} has an entry in its parent group");
        }
    }

    /// Whether the compiled code holds node `node`'s record as immediates: the root's and
    /// those of inline groups' children (see [`INLINE_MAX`]), which a frame reaches without
    /// a table lookup. Changing such a record changes the code's structure.
    pub fn record_compiled_in(&self, node: u32) -> bool {
        node == ROOT || self.nodes[node as usize].parent.is_some_and(|g| self.inlined(g))
    }

    /// Number of live groups.
    pub fn group_count(&self) -> usize {
        self.groups.iter().filter(|g| g.live).count()
    }

    fn new_node(&mut self, parent: u32, key: NodeKey) -> u32 {
        let node = Node { parent: Some(parent), key, groups: Vec::new(), live: true };
        match self.free_nodes.pop() {
            Some(n) => {
                self.nodes[n as usize] = node;
                self.info[n as usize] = NodeInfo::default();
                n
            }
            None => {
                self.nodes.push(node);
                self.info.push(NodeInfo::default());
                (self.nodes.len() - 1) as u32
            }
        }
    }

    fn new_group(&mut self, node: u32, atoms: Vec<AtomKey>) -> u32 {
        // A node that gets its first group needs a code number in its parent group.
        if self.nodes[node as usize].groups.is_empty()
            && let Some(parent) = self.nodes[node as usize].parent
        {
            let coded = &mut self.groups[parent as usize].coded;
            let code = match coded.iter().position(Option::is_none) {
                Some(i) => {
                    coded[i] = Some(node);
                    i
                }
                None => {
                    coded.push(Some(node));
                    coded.len() - 1
                }
            };
            self.info[node as usize].code = code as u32 + 1;
        }
        let group = Group::new(node, atoms, self.seed);
        let desc = group.table.desc();
        let g = match self.free_groups.pop() {
            Some(g) => {
                self.groups[g as usize] = group;
                self.descs[g as usize] = desc;
                g
            }
            None => {
                self.groups.push(group);
                self.descs.push(desc);
                (self.groups.len() - 1) as u32
            }
        };
        self.nodes[node as usize].groups.push(g);
        g
    }

    /// Where a filter with these (sorted) atoms leaves the trie as it is (see [`Path`]).
    pub fn locate(&self, atoms: &[Atom]) -> Path {
        let mut node = ROOT;
        let mut remaining = Remaining::all(atoms);
        while !remaining.is_empty() {
            match self.choose_group(node, &remaining) {
                Some((g, Some(child))) => {
                    remaining.take(&self.groups[g as usize].atoms, &mut [0; MAX_ATOMS]);
                    node = child;
                }
                group => return Path { node, left: remaining.left, group: group.map(|(g, _)| g) },
            }
        }
        Path { node, left: 0, group: None }
    }

    /// Makes the node where a filter with these (sorted) atoms ends, from where it leaves the
    /// trie (`path`, from [`Trie::locate`] or [`Trie::candidates`] with no change since).
    pub fn place(&mut self, atoms: &[Atom], path: Path) -> Placed {
        debug_assert_eq!(path, self.locate(atoms), "the path is where the atoms leave this trie");
        let mut remaining = Remaining { atoms, left: path.left };
        if remaining.is_empty() {
            return Placed { node: path.node, structural: false };
        }
        let (g, structural) = match path.group {
            Some(g) => (g, false),
            None => {
                let keys = remaining.atoms().map(|a| a.key).collect();
                (self.new_group(path.node, keys), true)
            }
        };
        // The group tests every atom left (it was made from them, or is the one that tests
        // exactly them): the new child ends the filter.
        let mut values = [0u32; MAX_ATOMS];
        let arity = self.groups[g as usize].atoms.len();
        remaining.take(&self.groups[g as usize].atoms, &mut values);
        debug_assert!(remaining.is_empty());
        let values = &values[..arity];
        let inlined = self.inlined(g);
        let child = self.new_node(g, NodeKey::new(values));
        self.groups[g as usize].table.insert(values, child);
        self.descs[g as usize] = self.groups[g as usize].table.desc();
        Placed { node: child, structural: structural || inlined || self.inlined(g) }
    }

    /// The group at `node` that a filter with `remaining` atoms follows, with the child it
    /// leads to if there is one: a group that already has a child for the filter's values
    /// (sharing a subtree), else one that tests exactly the remaining atoms (the filter ends
    /// in it, at a child to be made). `None`: a new group is needed. So each shape gets one
    /// group per node, and a filter is tested in as few levels as sharing allows.
    fn choose_group(&self, node: u32, remaining: &Remaining<'_>) -> Option<(u32, Option<u32>)> {
        let groups = &self.nodes[node as usize].groups;
        let mut exact = None;
        for g in groups.iter().copied() {
            let group = &self.groups[g as usize];
            let mut values = [0u32; MAX_ATOMS];
            if !remaining.values(&group.atoms, &mut values) {
                continue;
            }
            if let Some(child) = group.table.get(&values[..group.atoms.len()]) {
                return Some((g, Some(child)));
            }
            if group.atoms.len() == remaining.len() {
                exact = Some((g, None));
            }
        }
        exact
    }

    /// Whether a node holds nothing: no owner, no copies, no groups.
    fn is_empty(&self, node: u32) -> bool {
        let info = &self.info[node as usize];
        info.depth == 0 && info.copies == 0 && self.nodes[node as usize].groups.is_empty()
    }

    /// Removes `node` from its parent group if it holds nothing. Groups are kept even when
    /// they become empty ([`Trie::compact`] removes them), so this changes the structure only
    /// when the parent group is compiled inline (before or after); returns whether it did.
    pub fn prune(&mut self, node: u32) -> bool {
        if node == ROOT || !self.is_empty(node) {
            return false;
        }
        let Some(parent) = self.nodes[node as usize].parent else { return false };
        let inlined = self.inlined(parent);
        let key = core::mem::take(&mut self.nodes[node as usize].key);
        let group = &mut self.groups[parent as usize];
        group.table.remove(key.values());
        self.descs[parent as usize] = group.table.desc();
        self.nodes[node as usize].live = false;
        self.info[node as usize] = NodeInfo::default();
        self.free_nodes.push(node);
        inlined || self.inlined(parent)
    }

    /// Removes empty groups and the nodes left empty by that. Returns whether anything
    /// changed (the structure did, and the code must be rebuilt).
    pub fn compact(&mut self) -> bool {
        let mut changed = false;
        while let Some(g) = (0..self.groups.len()).find(|g| self.groups[*g].live && self.groups[*g].table.is_empty()) {
            changed = true;
            let node = self.groups[g].node;
            self.groups[g].live = false;
            self.groups[g].table = FlatTable::new(0, self.seed);
            self.groups[g].coded.clear();
            self.descs[g] = self.groups[g].table.desc();
            self.free_groups.push(g as u32);
            let n = &mut self.nodes[node as usize];
            n.groups.retain(|x| *x as usize != g);
            if n.groups.is_empty()
                && let Some(parent) = n.parent
            {
                let code = self.info[node as usize].code;
                if let Some(slot) = self.groups[parent as usize].coded.get_mut((code as usize).wrapping_sub(1)) {
                    *slot = None;
                }
                self.info[node as usize].code = 0;
                self.prune(node);
            }
        }
        changed
    }

    /// Visits every node a frame reaches, in the order the compiled code does.
    pub fn walk(&self, frame: &[u8], mut visit: impl FnMut(&NodeInfo)) {
        let l4 = ipv4_payload_start(frame);
        self.walk_from(ROOT, frame, l4, &mut visit);
    }

    fn walk_from(&self, node: u32, frame: &[u8], l4: Option<u64>, visit: &mut impl FnMut(&NodeInfo)) {
        visit(&self.info[node as usize]);
        let mut values = [0u32; MAX_ATOMS];
        for g in &self.nodes[node as usize].groups {
            let group = &self.groups[*g as usize];
            if !group.load(frame, l4, &mut values) {
                continue;
            }
            if let Some(child) = group.table.get(&values[..group.atoms.len()]) {
                self.walk_from(child, frame, l4, visit);
            }
        }
    }

    /// Calls `found` on every node where a filter overlapping `atoms` might end. A superset
    /// of the true answer: the caller checks each candidate exactly. Returns where the
    /// filter leaves the trie, as [`Trie::locate`] does (the walk passes there).
    pub fn candidates(&self, atoms: &[Atom], found: &mut impl FnMut(u32)) -> Path {
        let mut path = Path { node: ROOT, left: 0, group: None };
        self.candidates_from(ROOT, atoms, found, Some(Remaining::all(atoms).left), &mut path);
        path
    }

    /// `left`: the filter's atoms not consumed on the way here, if `node` is on the filter's
    /// own path (where [`Trie::choose_group`] leads); the walk records where that path ends.
    fn candidates_from(&self, node: u32, atoms: &[Atom], found: &mut impl FnMut(u32), left: Option<u32>, path: &mut Path) {
        found(node);
        // On the path, the group the filter follows (the first with a child for its values),
        // else the one that tests exactly the atoms left. The keys of the groups here are
        // never among those consumed on the way (every filter that reaches this node came the
        // same way), so "all keys among the atoms" is "among the atoms left".
        let mut followed = false;
        let mut exact = None;
        for g in &self.nodes[node as usize].groups {
            let group = &self.groups[*g as usize];
            // The values the new filter requires on this group's keys, the keys it lacks (a
            // bit per key: any value), and which of its atoms the keys are.
            let arity = group.atoms.len();
            let mut values = [0u32; MAX_ATOMS];
            let mut lacking = 0u32;
            let mut used = 0u32;
            for (i, (k, value)) in group.atoms.iter().zip(values.iter_mut()).enumerate() {
                match atoms.iter().enumerate().find(|(_, a)| a.key == *k) {
                    Some((j, a)) => {
                        *value = a.value;
                        used |= 1 << j;
                    }
                    None => lacking |= 1 << i,
                }
            }
            if lacking == 0 {
                match group.table.get(&values[..arity]) {
                    Some(child) => {
                        let child_left = left.filter(|_| !followed).map(|l| l & !used);
                        followed |= child_left.is_some();
                        self.candidates_from(child, atoms, found, child_left, path);
                    }
                    None if left.is_some_and(|l| l.count_ones() as usize == arity) => exact = Some(*g),
                    None => {}
                }
            } else {
                for (key, child) in group.table.iter() {
                    if key.iter().zip(&values).enumerate().all(|(i, (k, v))| lacking & (1 << i) != 0 || k == v) {
                        self.candidates_from(child, atoms, found, None, path);
                    }
                }
            }
        }
        if let Some(left) = left
            && !followed
        {
            *path = Path { node, left, group: if left == 0 { None } else { exact } };
        }
    }
}

/// The atoms of a filter not yet consumed on the way down the trie (a filter has at most
/// [`MAX_ATOMS`], so a bit set says which are left; no allocation).
struct Remaining<'a> {
    atoms: &'a [Atom],
    left: u32,
}

impl<'a> Remaining<'a> {
    fn all(atoms: &'a [Atom]) -> Remaining<'a> {
        Remaining { atoms, left: (1u32 << atoms.len()) - 1 }
    }

    fn is_empty(&self) -> bool {
        self.left == 0
    }

    fn len(&self) -> usize {
        self.left.count_ones() as usize
    }

    fn atoms(&self) -> impl Iterator<Item = &'a Atom> + '_ {
        self.atoms.iter().enumerate().filter(|(i, _)| self.left & (1 << i) != 0).map(|(_, a)| a)
    }

    fn find(&self, key: &AtomKey) -> Option<usize> {
        self.atoms.iter().enumerate().position(|(i, a)| self.left & (1 << i) != 0 && a.key == *key)
    }

    /// Writes the values of `keys` into `out`; `false` if some key is not among the atoms left.
    fn values(&self, keys: &[AtomKey], out: &mut [u32; MAX_ATOMS]) -> bool {
        for (slot, k) in out.iter_mut().zip(keys) {
            match self.find(k) {
                Some(i) => *slot = self.atoms[i].value,
                None => return false,
            }
        }
        true
    }

    /// Consumes the atoms of `keys`, writing their values into `out` (0 for a key the filter
    /// does not have, which [`Trie::place`] never asks for).
    fn take(&mut self, keys: &[AtomKey], out: &mut [u32; MAX_ATOMS]) {
        for (slot, k) in out.iter_mut().zip(keys) {
            *slot = match self.find(k) {
                Some(i) => {
                    self.left &= !(1 << i);
                    self.atoms[i].value
                }
                None => 0,
            };
        }
    }
}
