//! Physical page ownership vectors.
//!
//! Every physical page records which environments hold which rights on it (read, write), how
//! many of each holder's mappings point at it, and how many kernel pins it carries. A page is
//! free exactly when nobody holds a right and no pin remains; only then does it return to the
//! free list. Pages the kernel uses for itself (its image, heap, page tables) are never held by
//! any environment, so no environment can map or grant them.
//!
//! Quotas: a page is charged to the environment that allocated it until the page is free again,
//! whoever holds it by then. Grants therefore cost the receiver nothing (nobody can fill another
//! environment's quota), and giving pages away does not let the allocator exceed its own. A
//! holder entry made by a grant is kernel memory too: it is counted against the granter
//! ([`PageOwnership::holders_paid_by`]) until the entry goes. Both counts outlive the
//! environment (its account stays open until they reach zero: `account.rs`).

use alloc::vec::Vec;
use hashbrown::{HashMap, HashSet};
use xok_abi::{EnvId, Error, Rights};

/// A physical page number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Page(pub usize);

impl Page {
    /// The page's physical address.
    pub fn address(self) -> usize {
        self.0 * xok_abi::layout::PAGE_SIZE
    }
}

/// One environment's hold on a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Holder {
    env: EnvId,
    rights: Rights,
    /// How many of this environment's page-table entries map the page.
    mappings: u32,
    /// Who pays for this entry: the granter that made it (`None` for the allocator's own
    /// entry, which the page's charge covers).
    payer: Option<EnvId>,
}

/// What a physical page is used for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum PageState {
    /// Not RAM the kernel manages (firmware, holes, the kernel image, the kernel heap).
    Reserved,
    /// The kernel uses it (page tables); never held by an environment.
    Kernel,
    /// On the free list.
    Free,
    /// Every environment may read it and map it read-only; nobody may write it, grant it or
    /// free it (the initrd's pages: the machine's file store).
    Public,
    /// Held by environments or pinned; charged to the environment that allocated it.
    InUse { holders: Vec<Holder>, pins: u32, charged_to: EnvId },
}

/// The ownership vectors of all physical pages and the free list.
pub struct PageOwnership {
    pages: Vec<PageState>,
    free: Vec<Page>,
    /// Pages in use charged to each environment (for quotas).
    charged: HashMap<EnvId, usize>,
    /// Holder entries made by each environment's grants (for quotas).
    holders_paid: HashMap<EnvId, usize>,
    /// The pages each environment holds a right on, so that its exit touches only those
    /// (not every page of the machine).
    held: HashMap<EnvId, HashSet<Page>>,
}

impl PageOwnership {
    /// A table for `count` physical pages, all reserved until [`PageOwnership::add_free`].
    pub fn new(count: usize) -> Self {
        let mut pages = Vec::with_capacity(count);
        pages.resize(count, PageState::Reserved);
        PageOwnership { pages, free: Vec::new(), charged: HashMap::new(), holders_paid: HashMap::new(), held: HashMap::new() }
    }

    /// Hands a reserved page to the allocator (boot-time only).
    pub fn add_free(&mut self, page: Page) {
        if let Some(state @ PageState::Reserved) = self.pages.get_mut(page.0) {
            *state = PageState::Free;
            self.free.push(page);
        }
    }

    /// Makes a reserved page public: readable by every environment, writable by none (boot
    /// time only; the page stays public for good).
    pub fn add_public(&mut self, page: Page) {
        if let Some(state @ PageState::Reserved) = self.pages.get_mut(page.0) {
            *state = PageState::Public;
        }
    }

    /// Number of free pages.
    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    /// Number of pages in use that `env` allocated.
    pub fn charged_to(&self, env: EnvId) -> usize {
        self.charged.get(&env).copied().unwrap_or(0)
    }

    /// Number of holder entries that `env`'s grants made and that still exist.
    pub fn holders_paid_by(&self, env: EnvId) -> usize {
        self.holders_paid.get(&env).copied().unwrap_or(0)
    }

    /// Whether `env` holds any right on `page`.
    pub fn holds(&self, env: EnvId, page: Page) -> bool {
        !self.rights(env, page).is_empty()
    }

    /// Whether an environment other than `env` may write `page` (holds the write right).
    pub fn other_writer(&self, env: EnvId, page: Page) -> bool {
        match self.pages.get(page.0) {
            Some(PageState::InUse { holders, .. }) => holders.iter().any(|h| h.env != env && h.rights.contains(Rights::WRITE)),
            _ => false,
        }
    }

    /// Allocates a page for `env` with read and write rights, unless `env` already has `quota`
    /// pages charged to it.
    pub fn alloc(&mut self, env: EnvId, quota: usize) -> Result<Page, Error> {
        if self.charged_to(env) >= quota {
            return Err(Error::QuotaExceeded);
        }
        let page = self.free.pop().ok_or(Error::NoMemory)?;
        let holder = Holder { env, rights: Rights::READ | Rights::WRITE, mappings: 0, payer: None };
        self.pages[page.0] = PageState::InUse { holders: alloc::vec![holder], pins: 0, charged_to: env };
        self.held.entry(env).or_default().insert(page);
        *self.charged.entry(env).or_insert(0) += 1;
        Ok(page)
    }

    /// Allocates a page for the kernel's own use (page tables).
    pub fn alloc_kernel(&mut self) -> Result<Page, Error> {
        let page = self.free.pop().ok_or(Error::NoMemory)?;
        self.pages[page.0] = PageState::Kernel;
        Ok(page)
    }

    /// Returns a page taken with [`PageOwnership::alloc_kernel`].
    pub fn free_kernel(&mut self, page: Page) {
        match self.pages.get_mut(page.0) {
            Some(state @ PageState::Kernel) => {
                *state = PageState::Free;
                self.free.push(page);
            }
            _ => panic!("free_kernel of {page:?}, which the kernel does not hold"),
        }
    }

    /// The rights `env` holds on `page` (empty if none or no such page; read on a public page).
    pub fn rights(&self, env: EnvId, page: Page) -> Rights {
        match self.pages.get(page.0) {
            Some(PageState::InUse { holders, .. }) => {
                holders.iter().find(|h| h.env == env).map_or(Rights::empty(), |h| h.rights)
            }
            Some(PageState::Public) => Rights::READ,
            _ => Rights::empty(),
        }
    }

    fn is_public(&self, page: Page) -> bool {
        matches!(self.pages.get(page.0), Some(PageState::Public))
    }

    /// Gives `to` the rights `rights` on `page`, which `from` must hold (all of them). A new
    /// holder entry is counted against `from` (see [`PageOwnership::holders_paid_by`]).
    pub fn grant(&mut self, from: EnvId, page: Page, to: EnvId, rights: Rights) -> Result<(), Error> {
        if rights.is_empty() {
            return Err(Error::BadFlags);
        }
        if self.is_public(page) {
            // Everyone reads it already; nobody may give more.
            return if rights == Rights::READ { Ok(()) } else { Err(Error::NoRights) };
        }
        let holders = self.holders_mut(page)?;
        let granter = holders.iter().find(|h| h.env == from).ok_or(Error::NoRights)?;
        if !granter.rights.contains(rights) {
            return Err(Error::NoRights);
        }
        match holders.iter_mut().find(|h| h.env == to) {
            Some(existing) => existing.rights |= rights,
            None => {
                holders.try_reserve(1).map_err(|_| Error::NoMemory)?;
                holders.push(Holder { env: to, rights, mappings: 0, payer: Some(from) });
                *self.holders_paid.entry(from).or_insert(0) += 1;
                self.held.entry(to).or_default().insert(page);
            }
        }
        Ok(())
    }

    /// Drops every right `env` holds on `page`. Refused while `env` still maps the page, and
    /// while the kernel pins it (a packet ring, a wakeup predicate, a frame being sent) and
    /// `env` is its last holder: the page would be in use and held by nobody.
    pub fn free(&mut self, env: EnvId, page: Page) -> Result<(), Error> {
        if self.is_public(page) {
            return Err(Error::NoRights);
        }
        let Some(PageState::InUse { holders, pins, .. }) = self.pages.get_mut(page.0) else {
            return Err(Error::NoSuchPage);
        };
        let index = holders.iter().position(|h| h.env == env).ok_or(Error::NoRights)?;
        if holders[index].mappings > 0 {
            return Err(Error::PageMapped);
        }
        if *pins > 0 && holders.len() == 1 {
            return Err(Error::PagePinned);
        }
        let removed = holders.swap_remove(index);
        shrink_if_sparse(holders);
        self.unpay(removed.payer);
        self.unhold(env, page);
        self.release_if_unused(page);
        Ok(())
    }

    /// Records a new mapping of `page` by `env`, which must hold read (and, if `write`, write)
    /// rights.
    pub fn add_mapping(&mut self, env: EnvId, page: Page, write: bool) -> Result<(), Error> {
        let needed = if write { Rights::READ | Rights::WRITE } else { Rights::READ };
        if self.is_public(page) {
            // Read-only mappings of public pages need no record: the page never goes away.
            return if write { Err(Error::NoRights) } else { Ok(()) };
        }
        let holders = self.holders_mut(page)?;
        let holder = holders.iter_mut().find(|h| h.env == env).ok_or(Error::NoRights)?;
        if !holder.rights.contains(needed) {
            return Err(Error::NoRights);
        }
        holder.mappings += 1;
        Ok(())
    }

    /// Checks, without recording anything, that `env` could map `page` (see `add_mapping`).
    pub fn check_mapping(&self, env: EnvId, page: Page, write: bool) -> Result<(), Error> {
        let needed = if write { Rights::READ | Rights::WRITE } else { Rights::READ };
        match self.pages.get(page.0) {
            Some(PageState::InUse { .. } | PageState::Public) => {
                if self.rights(env, page).contains(needed) { Ok(()) } else { Err(Error::NoRights) }
            }
            _ => Err(Error::NoSuchPage),
        }
    }

    /// Forgets one mapping of `page` by `env` (the page-table entry is gone).
    pub fn remove_mapping(&mut self, env: EnvId, page: Page) {
        if self.is_public(page) {
            return;
        }
        let holder = self
            .holders_mut(page)
            .ok()
            .and_then(|holders| holders.iter_mut().find(|h| h.env == env))
            .filter(|h| h.mappings > 0);
        match holder {
            Some(holder) => holder.mappings -= 1,
            None => panic!("remove_mapping: {env:?} has no mapping of {page:?}"),
        }
    }

    /// Pins a page in use: it will not return to the free list until unpinned.
    pub fn pin(&mut self, page: Page) -> Result<(), Error> {
        match self.pages.get_mut(page.0) {
            Some(PageState::InUse { pins, .. }) => {
                *pins += 1;
                Ok(())
            }
            // Public pages never go away: a pin (a frame sent from a file) needs no count.
            Some(PageState::Public) => Ok(()),
            _ => Err(Error::NoSuchPage),
        }
    }

    /// Removes one pin; the page is freed if that was the last thing keeping it.
    pub fn unpin(&mut self, page: Page) {
        match self.pages.get_mut(page.0) {
            Some(PageState::InUse { pins, .. }) if *pins > 0 => *pins -= 1,
            Some(PageState::Public) => return,
            _ => panic!("unpin of {page:?}, which is not pinned"),
        }
        self.release_if_unused(page);
    }

    /// Drops every right `env` holds, on every page (the environment has ended and its page
    /// tables are already gone). Returns how many pages it held. Touches only those pages.
    pub fn release_env(&mut self, env: EnvId) -> usize {
        let held = self.held_count(env);
        while self.release_env_some(env, usize::MAX) > 0 {}
        held
    }

    /// How many pages `env` holds a right on.
    pub fn held_count(&self, env: EnvId) -> usize {
        self.held.get(&env).map_or(0, HashSet::len)
    }

    /// Drops up to `budget` of the rights `env` holds (see [`PageOwnership::release_env`]),
    /// so that a large environment's teardown can be spread over steps. Returns how many
    /// pages it still holds.
    pub fn release_env_some(&mut self, env: EnvId, budget: usize) -> usize {
        let Some(set) = self.held.get_mut(&env) else { return 0 };
        let batch: Vec<Page> = set.iter().take(budget).copied().collect();
        for page in &batch {
            set.remove(page);
        }
        let left = set.len();
        if left == 0 {
            self.held.remove(&env);
        }
        for page in batch {
            if let PageState::InUse { holders, .. } = &mut self.pages[page.0]
                && let Some(at) = holders.iter().position(|h| h.env == env)
            {
                debug_assert_eq!(holders[at].mappings, 0, "released page still mapped");
                let removed = holders.swap_remove(at);
                shrink_if_sparse(holders);
                self.unpay(removed.payer);
                self.release_if_unused(page);
            }
        }
        left
    }

    /// `env` no longer holds `page`.
    fn unhold(&mut self, env: EnvId, page: Page) {
        if let Some(set) = self.held.get_mut(&env) {
            set.remove(&page);
            if set.is_empty() {
                self.held.remove(&env);
            }
        }
    }

    fn unpay(&mut self, payer: Option<EnvId>) {
        if let Some(payer) = payer
            && let Some(count) = self.holders_paid.get_mut(&payer)
        {
            *count -= 1;
            if *count == 0 {
                self.holders_paid.remove(&payer);
            }
        }
    }

    fn holders_mut(&mut self, page: Page) -> Result<&mut Vec<Holder>, Error> {
        match self.pages.get_mut(page.0) {
            Some(PageState::InUse { holders, .. }) => Ok(holders),
            _ => Err(Error::NoSuchPage),
        }
    }

    fn release_if_unused(&mut self, page: Page) {
        let state = &mut self.pages[page.0];
        if let PageState::InUse { holders, pins: 0, charged_to } = state
            && holders.is_empty()
        {
            let owner = *charged_to;
            *state = PageState::Free;
            self.free.push(page);
            if let Some(count) = self.charged.get_mut(&owner) {
                *count -= 1;
                if *count == 0 {
                    self.charged.remove(&owner);
                }
            }
        }
    }
}

/// Gives back a holder list's spare capacity once it is mostly empty, so entries that were
/// paid for and removed leave no memory behind.
fn shrink_if_sparse(holders: &mut Vec<Holder>) {
    if holders.capacity() > 4 && holders.len() * 4 <= holders.capacity() {
        holders.shrink_to(holders.len() * 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: EnvId = EnvId(1);
    const B: EnvId = EnvId(2);
    const C: EnvId = EnvId(3);
    const RW: Rights = Rights::READ.union(Rights::WRITE);

    fn table(free: usize) -> PageOwnership {
        let mut pages = PageOwnership::new(free + 16);
        for n in 16..16 + free {
            pages.add_free(Page(n));
        }
        pages
    }

    #[test]
    fn alloc_gives_read_write_and_free_returns_the_page() {
        let mut pages = table(4);
        let page = pages.alloc(A, 100).unwrap();
        assert_eq!(pages.rights(A, page), RW);
        assert_eq!(pages.free_count(), 3);
        pages.free(A, page).unwrap();
        assert_eq!(pages.free_count(), 4);
        assert_eq!(pages.rights(A, page), Rights::empty());
    }

    #[test]
    fn reserved_and_kernel_pages_cannot_be_held() {
        let mut pages = table(2);
        let kernel = pages.alloc_kernel().unwrap();
        for page in [Page(0), kernel, Page(1 << 40)] {
            assert_eq!(pages.grant(A, page, B, Rights::READ), Err(Error::NoSuchPage));
            assert_eq!(pages.add_mapping(A, page, false), Err(Error::NoSuchPage));
            assert_eq!(pages.free(A, page), Err(Error::NoSuchPage));
        }
        pages.free_kernel(kernel);
        assert_eq!(pages.free_count(), 2);
    }

    #[test]
    fn grant_chain_allows_only_same_or_lesser_rights() {
        let mut pages = table(1);
        let page = pages.alloc(A, 100).unwrap();
        pages.grant(A, page, B, Rights::READ).unwrap();
        assert_eq!(pages.grant(B, page, C, RW), Err(Error::NoRights));
        assert_eq!(pages.grant(B, page, C, Rights::WRITE), Err(Error::NoRights));
        pages.grant(B, page, C, Rights::READ).unwrap();
        assert_eq!(pages.rights(C, page), Rights::READ);
        assert_eq!(pages.grant(C, page, A, Rights::empty()), Err(Error::BadFlags));
        // A stranger holds nothing and can give nothing.
        assert_eq!(pages.grant(EnvId(9), page, C, Rights::READ), Err(Error::NoRights));
    }

    #[test]
    fn free_with_other_holders_keeps_the_page() {
        let mut pages = table(1);
        let page = pages.alloc(A, 100).unwrap();
        pages.grant(A, page, B, RW).unwrap();
        pages.free(A, page).unwrap();
        assert_eq!(pages.free_count(), 0);
        assert_eq!(pages.rights(B, page), RW);
        pages.free(B, page).unwrap();
        assert_eq!(pages.free_count(), 1);
    }

    #[test]
    fn double_free_is_refused() {
        let mut pages = table(2);
        let page = pages.alloc(A, 100).unwrap();
        pages.free(A, page).unwrap();
        assert_eq!(pages.free(A, page), Err(Error::NoSuchPage));
        // Once the page is reused by someone else, the old owner's free is refused too.
        let again = pages.alloc(B, 100).unwrap();
        assert_eq!(again, page, "the free list is last-in, first-out");
        assert_eq!(pages.free(A, again), Err(Error::NoRights));
        assert_eq!(pages.rights(B, again), Rights::READ | Rights::WRITE);
    }

    #[test]
    fn pins_keep_a_page_off_the_free_list() {
        let mut pages = table(1);
        let page = pages.alloc(A, 100).unwrap();
        pages.grant(A, page, B, Rights::READ).unwrap();
        pages.pin(page).unwrap();
        pages.pin(page).unwrap();
        pages.free(A, page).unwrap();
        pages.release_env(B);
        assert_eq!(pages.free_count(), 0);
        pages.unpin(page);
        assert_eq!(pages.free_count(), 0);
        pages.unpin(page);
        assert_eq!(pages.free_count(), 1);
    }

    #[test]
    fn mapped_pages_need_rights_and_cannot_be_freed() {
        let mut pages = table(1);
        let page = pages.alloc(A, 100).unwrap();
        pages.grant(A, page, B, Rights::READ).unwrap();
        assert_eq!(pages.add_mapping(B, page, true), Err(Error::NoRights));
        pages.add_mapping(B, page, false).unwrap();
        assert_eq!(pages.free(B, page), Err(Error::PageMapped));
        pages.remove_mapping(B, page);
        pages.free(B, page).unwrap();
        assert_eq!(pages.add_mapping(C, page, false), Err(Error::NoRights));
    }

    #[test]
    fn exhaustion_and_quota() {
        let mut pages = table(3);
        assert_eq!(pages.alloc(A, 1).map(|_| ()), Ok(()));
        assert_eq!(pages.alloc(A, 1), Err(Error::QuotaExceeded));
        pages.alloc(B, 100).unwrap();
        pages.alloc(B, 100).unwrap();
        assert_eq!(pages.alloc(B, 100), Err(Error::NoMemory));
        assert_eq!(pages.alloc_kernel(), Err(Error::NoMemory));
        assert_eq!(pages.charged_to(B), 2);
    }

    #[test]
    fn release_env_frees_everything_it_alone_held() {
        let mut pages = table(4);
        let mine = pages.alloc(A, 100).unwrap();
        let shared = pages.alloc(A, 100).unwrap();
        let pinned = pages.alloc(A, 100).unwrap();
        pages.grant(A, shared, B, Rights::READ).unwrap();
        pages.pin(pinned).unwrap();
        assert_eq!(pages.release_env(A), 3);
        assert_eq!(pages.rights(A, mine), Rights::empty());
        assert_eq!(pages.rights(B, shared), Rights::READ);
        assert_eq!(pages.free_count(), 2);
        assert_eq!(pages.charged_to(A), 2, "pages still in use stay charged to their allocator");
        pages.unpin(pinned);
        pages.free(B, shared).unwrap();
        assert_eq!(pages.free_count(), 4);
        assert_eq!(pages.charged_to(A), 0);
    }

    #[test]
    fn grants_are_charged_to_the_allocator_not_the_receiver() {
        let mut pages = table(8);
        let page = pages.alloc(A, 2).unwrap();
        pages.alloc(A, 2).unwrap();
        pages.grant(A, page, B, RW).unwrap();
        pages.free(A, page).unwrap();
        assert_eq!(pages.alloc(A, 2), Err(Error::QuotaExceeded), "a page given away still counts");
        assert_eq!(pages.charged_to(B), 0);
        pages.alloc(B, 1).unwrap();
        pages.free(B, page).unwrap();
        assert_eq!(pages.alloc(A, 2).map(|_| ()), Ok(()), "freed at last: the charge is gone");
    }

    #[test]
    fn an_environment_releases_its_pages_a_batch_at_a_time() {
        let mut pages = table(100);
        for _ in 0..10 {
            let page = pages.alloc(A, 100).unwrap();
            pages.grant(A, page, B, Rights::READ).unwrap();
        }
        for _ in 0..25 {
            pages.alloc(A, 100).unwrap();
        }
        assert_eq!(pages.held_count(A), 35);
        assert_eq!(pages.release_env_some(A, 16), 19);
        assert_eq!(pages.release_env_some(A, 16), 3);
        assert_eq!(pages.release_env_some(A, 16), 0);
        assert_eq!(pages.free_count(), 100 - 10, "the pages B still holds stay");
        assert_eq!(pages.held_count(B), 10);
    }

    #[test]
    fn holder_entries_are_paid_by_the_granter_until_they_go() {
        let mut pages = table(2);
        let page = pages.alloc(A, 100).unwrap();
        pages.grant(A, page, B, Rights::READ).unwrap();
        pages.grant(B, page, C, Rights::READ).unwrap();
        pages.grant(A, page, C, Rights::READ).unwrap();
        assert_eq!((pages.holders_paid_by(A), pages.holders_paid_by(B)), (1, 1), "a repeated grant makes no entry");
        assert!(pages.other_writer(B, page));
        assert!(!pages.other_writer(A, page));
        pages.free(C, page).unwrap();
        assert_eq!(pages.holders_paid_by(B), 0);
        pages.release_env(B);
        assert_eq!(pages.holders_paid_by(A), 0);
    }

    #[test]
    fn public_pages_are_readable_by_all_and_writable_by_none() {
        let mut pages = PageOwnership::new(64);
        pages.add_public(Page(40));
        assert_eq!(pages.rights(A, Page(40)), Rights::READ);
        assert_eq!(pages.rights(B, Page(40)), Rights::READ);
        assert_eq!(pages.add_mapping(A, Page(40), true), Err(Error::NoRights));
        assert_eq!(pages.check_mapping(A, Page(40), true), Err(Error::NoRights));
        pages.add_mapping(A, Page(40), false).unwrap();
        pages.remove_mapping(A, Page(40));
        assert_eq!(pages.grant(A, Page(40), B, Rights::READ | Rights::WRITE), Err(Error::NoRights));
        assert_eq!(pages.grant(A, Page(40), B, Rights::READ), Ok(()));
        assert_eq!(pages.free(A, Page(40)), Err(Error::NoRights));
        pages.pin(Page(40)).unwrap();
        pages.unpin(Page(40));
        assert_eq!(pages.free_count(), 0, "a public page never reaches the free list");
        assert_eq!(pages.holders_paid_by(A), 0);
    }

    #[test]
    fn the_last_holder_cannot_free_a_pinned_page() {
        let mut pages = table(2);
        let page = pages.alloc(A, 100).unwrap();
        pages.grant(A, page, B, Rights::READ).unwrap();
        pages.pin(page).unwrap();
        pages.free(A, page).unwrap();
        assert_eq!(pages.free(B, page), Err(Error::PagePinned));
        pages.unpin(page);
        pages.free(B, page).unwrap();
        assert_eq!(pages.free_count(), 2);
    }
}
