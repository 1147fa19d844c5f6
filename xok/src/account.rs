//! Resource accounts: the quota tree.
//!
//! Every environment has an account with a limit for each kind of resource (physical pages,
//! kernel heap bytes, environments, DPF shapes, DPF filters) and a share of the CPU
//! (tickets). A child's limits are carved out of its parent's available resources when it is
//! spawned and stay lent to it until the child's account closes, so a process tree can never
//! hold more than its root was given, and spawning buys nothing.
//!
//! An account closes only when its environment has ended **and** nothing it caused still
//! costs anything: pages it allocated that others still hold, holder entries it created with
//! grants, filters others still reference, frames still on a NIC, and the accounts of its own
//! descendants. Until then it stays as a *zombie*: its charges keep counting against its
//! parent's lent resources. So memory cannot be laundered by granting it to someone and
//! exiting: the parent only gets its lent quota back once the granted pages are free.
//!
//! The tree also answers who may end whom: any ancestor (through zombie accounts too) may
//! kill any descendant, so no environment can outlive everyone able to end it.
//!
//! What an account has used is computed by the kernel from the objects themselves (pages
//! charged in the ownership vectors, page tables, heap charges recorded here); this module
//! holds the limits, the lent amounts and the heap/shape/filter charges.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;
use xok_abi::{EnvId, Error, SPAWN_DEFAULT_SHARE, SPAWN_SHARE_WHOLE};

/// Amounts of each accounted resource.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// Physical pages (allocated pages and page tables).
    pub pages: usize,
    /// Kernel heap bytes (environment records, ring page lists, filters, shapes, predicates
    /// and their code, queued frames, page holder entries).
    pub heap: usize,
    /// Environments (each live or zombie account counts one against its parent).
    pub envs: usize,
    /// DPF dispatch groups (filter shapes) created.
    pub shapes: usize,
    /// DPF filters installed.
    pub filters: usize,
}

impl Resources {
    /// Nothing.
    pub const ZERO: Resources = Resources { pages: 0, heap: 0, envs: 0, shapes: 0, filters: 0 };

    /// Heap bytes only.
    pub const fn heap(bytes: usize) -> Resources {
        Resources { heap: bytes, ..Resources::ZERO }
    }

    /// The sum of two amounts.
    pub fn plus(self, o: Resources) -> Resources {
        Resources {
            pages: self.pages + o.pages,
            heap: self.heap + o.heap,
            envs: self.envs + o.envs,
            shapes: self.shapes + o.shapes,
            filters: self.filters + o.filters,
        }
    }

    fn saturating_sub(self, o: Resources) -> Resources {
        Resources {
            pages: self.pages.saturating_sub(o.pages),
            heap: self.heap.saturating_sub(o.heap),
            envs: self.envs.saturating_sub(o.envs),
            shapes: self.shapes.saturating_sub(o.shapes),
            filters: self.filters.saturating_sub(o.filters),
        }
    }

    /// Whether every amount of `self` is at most that of `o`.
    pub fn fits_in(self, o: Resources) -> bool {
        self.pages <= o.pages && self.heap <= o.heap && self.envs <= o.envs && self.shapes <= o.shapes && self.filters <= o.filters
    }

    fn scaled(self, share: usize) -> Resources {
        let part = |amount: usize| ((amount as u128 * share as u128) / SPAWN_SHARE_WHOLE as u128) as usize;
        Resources {
            pages: part(self.pages),
            heap: part(self.heap),
            envs: part(self.envs),
            shapes: part(self.shapes),
            filters: part(self.filters),
        }
    }

    /// Whether every amount is zero.
    pub fn is_zero(self) -> bool {
        self == Resources::ZERO
    }
}

/// Heap bytes charged for each kind of kernel object: upper bounds of what the object and
/// its share of the containers holding it take, with room for container growth (capacity
/// doubling) and allocator overhead. `account::tests` and the kernel's heap tests hold the
/// real use under these.
pub mod cost {
    /// An environment: its record, name, account and table slot.
    pub const ENV: usize = 2048;
    /// A packet ring, besides [`RING_PAGE`] per page.
    pub const RING: usize = 512;
    /// Each page of a packet ring.
    pub const RING_PAGE: usize = 32;
    /// A DPF filter: its record, atoms, holders, trie node and table entry (measured at
    /// ~730 bytes with the tables at their largest: `kernel::quota_tests`).
    pub const FILTER: usize = 1024;
    /// A DPF dispatch group (shape): its record, table and generated code.
    pub const SHAPE: usize = 8192;
    /// Each extra holder of a filter (`dpf_ref`).
    pub const FILTER_REF: usize = 16;
    /// A wakeup predicate, besides its code and [`PREDICATE_WORD`] per term.
    pub const PREDICATE: usize = 1024;
    /// Each term of a wakeup predicate.
    pub const PREDICATE_WORD: usize = 64;
    /// A frame waiting for or on a NIC (with its copy of checked headers, and room in a queue
    /// that may double), besides [`FRAME_SEGMENT`] per segment.
    pub const FRAME: usize = 512;
    /// Each gathered segment of a queued frame (and its pin).
    pub const FRAME_SEGMENT: usize = 32;
    /// A page holder entry created by `page_grant`, and the receiver's index entry for it.
    pub const HOLDER: usize = 96;
}

/// How many tickets the root holds; every environment's CPU share is a fraction of it.
pub const ROOT_TICKETS: u64 = 1 << 24;

/// A parent keeps at least 1/`PARENT_KEEPS` of its tickets when it spawns.
const PARENT_KEEPS: u64 = 16;

/// One environment's account.
#[derive(Clone, Debug)]
pub struct Account {
    /// The parent's account (`None` for a child of the kernel, i.e. init).
    pub parent: Option<EnvId>,
    /// What it may use, own objects and lent to children together.
    pub limit: Resources,
    /// Heap, shape and filter charges of its own objects (pages are counted by the
    /// ownership vectors; `pages` here counts page tables and other kernel pages).
    pub charged: Resources,
    /// The sum of its child accounts' limits.
    pub lent: Resources,
    /// Child accounts, live or zombie.
    pub children: usize,
    /// Its CPU share (stride scheduling); carved from the parent's like the limits.
    pub tickets: u64,
    /// Whether its environment still runs.
    pub alive: bool,
}

/// All accounts, live and zombie.
#[derive(Debug)]
pub struct Accounts {
    accounts: BTreeMap<EnvId, Account>,
    /// What the kernel gives away in all: the root's limits.
    pub root: Resources,
    /// The sum of the top-level accounts' limits.
    root_lent: Resources,
    root_tickets: u64,
    /// Accounts of ended environments (only these can be reaped).
    zombies: BTreeSet<EnvId>,
}

/// The share of the parent's available resources a spawn flag word asks for, in
/// 1/[`SPAWN_SHARE_WHOLE`]ths.
pub fn share_of(flags_share: usize) -> usize {
    match flags_share {
        0 => SPAWN_DEFAULT_SHARE,
        share => share.min(SPAWN_SHARE_WHOLE),
    }
}

impl Accounts {
    /// No accounts yet; the kernel gives away at most `root` in all.
    pub fn new(root: Resources) -> Accounts {
        Accounts { accounts: BTreeMap::new(), root, root_lent: Resources::ZERO, root_tickets: ROOT_TICKETS, zombies: BTreeSet::new() }
    }

    /// The account of `id` (live or zombie).
    pub fn get(&self, id: EnvId) -> Option<&Account> {
        self.accounts.get(&id)
    }

    /// Number of accounts, live and zombie.
    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    /// Whether there are no accounts.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// What `parent` (or the root) has neither used nor lent; `external` is what its objects
    /// use that the kernel counts elsewhere (pages in the ownership vectors, page tables,
    /// holder entries).
    pub fn available(&self, parent: Option<EnvId>, external: Resources) -> Resources {
        match parent.and_then(|p| self.accounts.get(&p)) {
            Some(a) => a.limit.saturating_sub(a.lent).saturating_sub(a.charged).saturating_sub(external),
            None => self.root.saturating_sub(self.root_lent),
        }
    }

    /// Opens the account of a new environment `child` under `parent` with `share`
    /// (1/[`SPAWN_SHARE_WHOLE`]ths) of the parent's available resources and tickets. The
    /// child is charged one environment for itself and [`cost::ENV`] heap bytes; any share
    /// covers that much if the parent has it (so a parent can start more than 256 children).
    /// Refused with `QuotaExceeded` when the parent cannot give that, or no page.
    pub fn open(&mut self, parent: Option<EnvId>, child: EnvId, share: usize, parent_external: Resources) -> Result<(), Error> {
        let available = self.available(parent, parent_external);
        let own = Resources { envs: 1, heap: cost::ENV, ..Resources::ZERO };
        let mut limit = available.scaled(share);
        limit.envs = limit.envs.max(own.envs);
        limit.heap = limit.heap.max(own.heap);
        // A whole share must not lose the last unit to rounding.
        if share >= SPAWN_SHARE_WHOLE {
            limit = available;
        }
        if !limit.fits_in(available) || limit.pages == 0 {
            return Err(Error::QuotaExceeded);
        }
        let parent_tickets = match parent.and_then(|p| self.accounts.get(&p)) {
            Some(a) => a.tickets,
            None => self.root_tickets,
        };
        // A parent keeps a sixteenth of its tickets whatever it gives: one that gave its whole
        // share away could never run again to end what it started.
        let tickets = (parent_tickets * share as u64 / SPAWN_SHARE_WHOLE as u64).min(parent_tickets - parent_tickets / PARENT_KEEPS).max(1);
        match parent.and_then(|p| self.accounts.get_mut(&p)) {
            Some(a) => {
                a.lent = a.lent.plus(limit);
                a.children += 1;
                a.tickets = a.tickets.saturating_sub(tickets).max(1);
            }
            None => {
                self.root_lent = self.root_lent.plus(limit);
                self.root_tickets = self.root_tickets.saturating_sub(tickets).max(1);
            }
        }
        let account = Account { parent, limit, charged: own, lent: Resources::ZERO, children: 0, tickets, alive: true };
        self.accounts.insert(child, account);
        Ok(())
    }

    /// Charges `amount` to `id` if it fits beside what it has used (`external` as in
    /// [`Accounts::available`]) and lent; otherwise `QuotaExceeded` and nothing changes.
    pub fn charge(&mut self, id: EnvId, amount: Resources, external: Resources) -> Result<(), Error> {
        let a = self.accounts.get_mut(&id).ok_or(Error::NoSuchEnv)?;
        let after = a.charged.plus(a.lent).plus(amount).plus(external);
        if !after.fits_in(a.limit) {
            return Err(Error::QuotaExceeded);
        }
        a.charged = a.charged.plus(amount);
        Ok(())
    }

    /// Returns a charge made with [`Accounts::charge`] (the object is gone).
    pub fn credit(&mut self, id: EnvId, amount: Resources) {
        if let Some(a) = self.accounts.get_mut(&id) {
            debug_assert!(amount.fits_in(a.charged), "credit of more than was charged");
            a.charged = a.charged.saturating_sub(amount);
        }
    }

    /// The environment has ended: its tickets go back to the nearest live ancestor, and its
    /// own record ([`cost::ENV`]) is credited. The account stays (a zombie) until
    /// [`Accounts::reap`] finds nothing left charged to it.
    pub fn close(&mut self, id: EnvId) {
        let Some(a) = self.accounts.get_mut(&id) else { return };
        if !a.alive {
            return;
        }
        a.alive = false;
        self.zombies.insert(id);
        a.charged = a.charged.saturating_sub(Resources::heap(cost::ENV));
        let tickets = core::mem::take(&mut a.tickets);
        match self.live_ancestor(id) {
            Some(up) => {
                if let Some(u) = self.accounts.get_mut(&up) {
                    u.tickets += tickets;
                }
            }
            None => self.root_tickets += tickets,
        }
    }

    /// The nearest live strict ancestor of `id`.
    pub fn live_ancestor(&self, id: EnvId) -> Option<EnvId> {
        let mut at = self.accounts.get(&id)?.parent;
        while let Some(p) = at {
            let a = self.accounts.get(&p)?;
            if a.alive {
                return Some(p);
            }
            at = a.parent;
        }
        None
    }

    /// The process tree `id` belongs to: its ancestor (or itself) just below the top-level
    /// account (init's children, and init itself). CPU and link shares are fair between
    /// trees.
    pub fn tree_of(&self, id: EnvId) -> EnvId {
        let mut at = id;
        while let Some(parent) = self.accounts.get(&at).and_then(|a| a.parent) {
            if self.accounts.get(&parent).is_none_or(|p| p.parent.is_none()) {
                return at;
            }
            at = parent;
        }
        at
    }

    /// Whether `ancestor` is a strict ancestor of `id` (through zombie accounts too).
    pub fn is_ancestor(&self, ancestor: EnvId, id: EnvId) -> bool {
        let mut at = self.accounts.get(&id).and_then(|a| a.parent);
        while let Some(p) = at {
            if p == ancestor {
                return true;
            }
            at = self.accounts.get(&p).and_then(|a| a.parent);
        }
        false
    }

    /// The live strict descendants of `id`, deepest first.
    pub fn live_descendants(&self, id: EnvId) -> Vec<EnvId> {
        let mut found: Vec<(usize, EnvId)> = Vec::new();
        for (&d, a) in &self.accounts {
            if !a.alive {
                continue;
            }
            let mut depth = 0;
            let mut at = a.parent;
            while let Some(p) = at {
                depth += 1;
                if p == id {
                    found.push((depth, d));
                    break;
                }
                at = self.accounts.get(&p).and_then(|x| x.parent);
            }
        }
        found.sort_by_key(|f| core::cmp::Reverse(f.0));
        found.into_iter().map(|(_, d)| d).collect()
    }

    /// Closes every zombie account that nothing is charged to any more (`external_of` says
    /// what the kernel still counts elsewhere for an account, as in [`Accounts::available`]),
    /// giving its limits back to its parent, and so on up the tree. Returns how many were
    /// closed.
    pub fn reap(&mut self, external_of: impl Fn(EnvId) -> Resources) -> usize {
        let mut closed = 0;
        loop {
            let ready: Vec<EnvId> = self
                .zombies
                .iter()
                .filter(|id| {
                    self.accounts.get(id).is_some_and(|a| {
                        a.children == 0
                            && a.lent.is_zero()
                            && a.charged.saturating_sub(Resources { envs: 1, ..Resources::ZERO }).is_zero()
                    }) && external_of(**id).is_zero()
                })
                .copied()
                .collect();
            if ready.is_empty() {
                return closed;
            }
            for id in ready {
                self.zombies.remove(&id);
                let Some(a) = self.accounts.remove(&id) else { continue };
                closed += 1;
                match a.parent.and_then(|p| self.accounts.get_mut(&p)) {
                    Some(p) => {
                        p.lent = p.lent.saturating_sub(a.limit);
                        p.children -= 1;
                    }
                    None => self.root_lent = self.root_lent.saturating_sub(a.limit),
                }
            }
        }
    }

    /// Zombie accounts (ended environments something still charges).
    pub fn zombies(&self) -> usize {
        self.zombies.len()
    }

    /// The heap bytes charged to all accounts together (the kernel holds its heap use under
    /// this plus its own base).
    pub fn heap_charged(&self) -> usize {
        self.accounts.values().map(|a| a.charged.heap).sum()
    }

    /// The tickets of `id` (0 if it has no account).
    pub fn tickets(&self, id: EnvId) -> u64 {
        self.accounts.get(&id).map_or(0, |a| a.tickets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> Resources {
        Resources { pages: 1000, heap: 1 << 20, envs: 100, shapes: 64, filters: 10_000 }
    }

    #[test]
    fn children_are_carved_from_their_parent() {
        let mut a = Accounts::new(root());
        let init = EnvId(1);
        a.open(None, init, SPAWN_SHARE_WHOLE, Resources::ZERO).unwrap();
        assert_eq!(a.available(None, Resources::ZERO), Resources::ZERO);
        let child = EnvId(2);
        a.open(Some(init), child, 128, Resources::ZERO).unwrap();
        let left = a.available(Some(init), Resources::ZERO);
        assert!(left.pages <= 500 && left.heap < (1 << 20) / 2);
        // The child can never get more than init had: a whole share of what is left.
        let grandchild = EnvId(3);
        a.open(Some(child), grandchild, SPAWN_SHARE_WHOLE, Resources::ZERO).unwrap();
        assert_eq!(a.available(Some(child), Resources::ZERO), Resources::ZERO);
        assert_eq!(a.charge(grandchild, Resources { pages: 501, ..Resources::ZERO }, Resources::ZERO), Err(Error::QuotaExceeded));
        a.charge(grandchild, Resources { pages: 100, ..Resources::ZERO }, Resources::ZERO).unwrap();
    }

    #[test]
    fn a_zombie_keeps_its_limit_lent_until_nothing_is_charged() {
        let mut a = Accounts::new(root());
        let (parent, child) = (EnvId(1), EnvId(2));
        a.open(None, parent, SPAWN_SHARE_WHOLE, Resources::ZERO).unwrap();
        let alone = a.available(Some(parent), Resources::ZERO);
        a.open(Some(parent), child, 128, Resources::ZERO).unwrap();
        let before = a.available(Some(parent), Resources::ZERO);
        a.charge(child, Resources::heap(4096), Resources::ZERO).unwrap();
        a.close(child);
        // Its pages (counted by the ownership vectors) and heap are still in use.
        assert_eq!(a.reap(|_| Resources { pages: 3, ..Resources::ZERO }), 0);
        a.credit(child, Resources::heap(4096));
        assert_eq!(a.reap(|_| Resources { pages: 3, ..Resources::ZERO }), 0, "pages granted away still count");
        assert_eq!(a.available(Some(parent), Resources::ZERO), before);
        assert_eq!(a.reap(|_| Resources::ZERO), 1);
        assert_eq!(a.available(Some(parent), Resources::ZERO), alone);
    }

    #[test]
    fn ancestry_survives_zombies_and_tickets_return() {
        let mut a = Accounts::new(root());
        let (top, middle, bottom) = (EnvId(1), EnvId(2), EnvId(3));
        a.open(None, top, SPAWN_SHARE_WHOLE, Resources::ZERO).unwrap();
        let t0 = a.tickets(top);
        a.open(Some(top), middle, 128, Resources::ZERO).unwrap();
        a.open(Some(middle), bottom, 128, Resources::ZERO).unwrap();
        assert!(a.tickets(top) + a.tickets(middle) + a.tickets(bottom) <= t0);
        a.close(middle);
        assert!(a.is_ancestor(top, bottom));
        assert!(!a.is_ancestor(bottom, top));
        assert_eq!(a.live_descendants(top), [bottom]);
        assert_eq!(a.live_ancestor(bottom), Some(top));
        assert!(a.tickets(top) + a.tickets(bottom) <= t0);
        a.close(bottom);
        assert_eq!(a.reap(|_| Resources::ZERO), 2, "the middle closes once its child has");
        assert_eq!(a.tickets(top), t0);
    }

    #[test]
    fn the_smallest_share_still_covers_the_childs_own_record() {
        let mut a = Accounts::new(Resources { pages: 100_000, heap: 1 << 26, envs: 1001, shapes: 8, filters: 8 });
        let parent = EnvId(1);
        a.open(None, parent, SPAWN_SHARE_WHOLE, Resources::ZERO).unwrap();
        let mut started = 0;
        while a.open(Some(parent), EnvId(100 + started), 1, Resources::ZERO).is_ok() {
            started += 1;
        }
        assert!(started > 600, "{started} children of 1000 environments (each takes 1/256 of what is left, at least one)");
        assert_eq!(a.available(Some(parent), Resources::ZERO).envs, 0, "then the environments ran out");
    }

    #[test]
    fn a_parent_keeps_some_tickets_whatever_it_gives() {
        let mut a = Accounts::new(root());
        let parent = EnvId(1);
        a.open(None, parent, SPAWN_SHARE_WHOLE, Resources::ZERO).unwrap();
        let before = a.tickets(parent);
        a.open(Some(parent), EnvId(2), SPAWN_SHARE_WHOLE, Resources::ZERO).unwrap();
        assert_eq!(a.tickets(parent), before / PARENT_KEEPS);
        assert_eq!(a.tickets(parent) + a.tickets(EnvId(2)), before);
    }

    #[test]
    fn spawning_gains_no_tickets() {
        let mut a = Accounts::new(root());
        let parent = EnvId(1);
        a.open(None, parent, SPAWN_SHARE_WHOLE, Resources::ZERO).unwrap();
        let total = a.tickets(parent);
        let mut ids = Vec::new();
        for n in 0..50 {
            let id = EnvId(10 + n);
            if a.open(Some(parent), id, 0, Resources::ZERO).is_ok() {
                ids.push(id);
            }
        }
        let sum: u64 = a.tickets(parent) + ids.iter().map(|id| a.tickets(*id)).sum::<u64>();
        assert!(sum <= total + ids.len() as u64, "{sum} > {total}");
    }
}
