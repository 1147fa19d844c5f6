//! Page runs: the heap's large blocks, each on pages of its own in a region of its own, given
//! back to the kernel once the program stops using them.
//!
//! A block of [`RUN_MIN`] bytes or more gets a run of whole pages, so big buffers (a
//! connection's socket buffers, rings, big tables) neither fragment the small-object heap nor
//! keep their pages after a burst. A freed run stays mapped in a small cache for the next block
//! of its page count (under load a closed connection's buffers are the next connection's, so the
//! common case costs no system call); once no run has gone into or out of the cache for
//! [`IDLE_TICKS`], the cache is emptied and its pages go back to the kernel. Freed address
//! ranges are kept as holes and reused, merged with their neighbours.
//!
//! This is plain bookkeeping over a [`Pages`] source (the kernel on the target, a fake in the
//! host tests); it never touches the memory of a run.

use xok_abi::layout::{PAGE_SIZE, TICK_HZ};

/// Blocks of this many bytes or more (and page alignment or less) are page runs.
pub const RUN_MIN: usize = 16 * 1024;
/// How long the cache may sit unused before its pages go back (ticks).
pub const IDLE_TICKS: u64 = TICK_HZ;
/// Freed runs kept mapped at most.
const CACHED_MAX: usize = 64;
/// Pages the cache holds at most; a run that would pass it goes back at once.
const CACHED_PAGES_MAX: usize = 1024;
/// Free address ranges remembered for reuse at most (past it a range is forgotten: address
/// space, not memory, is what is lost).
const HOLES_MAX: usize = 256;
/// Pages the kernel would not take back yet (a send still reading them), retried later.
const UNFREED_MAX: usize = 64;

/// Where runs get their pages.
pub trait Pages {
    /// Maps a fresh zeroed page at `va`; false if none could be had.
    fn map_fresh(&mut self, va: usize) -> bool;
    /// Unmaps the page at `va`; the page's number, or `None` if nothing was mapped there.
    fn unmap(&mut self, va: usize) -> Option<usize>;
    /// Gives page `page` back; false if the kernel refused (it is still in use by it).
    fn free(&mut self, page: usize) -> bool;
}

/// A range of whole pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Run {
    va: usize,
    pages: usize,
}

impl Run {
    fn end(&self) -> usize {
        self.va + self.pages * PAGE_SIZE
    }
}

/// The runs' counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Pages mapped for runs now (in use or cached).
    pub mapped: usize,
    /// Of those, pages in the cache.
    pub cached: usize,
    /// Pages given back to the kernel so far.
    pub released: u64,
    /// Pages the kernel never took back (the retry list was full), and address ranges
    /// forgotten (the hole list was full), in pages.
    pub lost: u64,
}

/// The page-run allocator of one address range.
pub struct Runs {
    base: usize,
    limit: usize,
    /// Below it every address is a run or a hole; above it nothing is mapped.
    top: usize,
    cached: [Run; CACHED_MAX],
    cached_len: usize,
    holes: [Run; HOLES_MAX],
    holes_len: usize,
    unfreed: [usize; UNFREED_MAX],
    unfreed_len: usize,
    /// When a run last went into or out of the cache.
    last_use: u64,
    stats: RunStats,
}

impl Runs {
    /// Runs in `[base, limit)` (page-aligned).
    pub const fn new(base: usize, limit: usize) -> Runs {
        Runs {
            base,
            limit,
            top: base,
            cached: [Run { va: 0, pages: 0 }; CACHED_MAX],
            cached_len: 0,
            holes: [Run { va: 0, pages: 0 }; HOLES_MAX],
            holes_len: 0,
            unfreed: [0; UNFREED_MAX],
            unfreed_len: 0,
            last_use: 0,
            stats: RunStats { mapped: 0, cached: 0, released: 0, lost: 0 },
        }
    }

    /// Whether `va` lies in the runs' range.
    pub fn owns(&self, va: usize) -> bool {
        (self.base..self.limit).contains(&va)
    }

    /// The counters.
    pub fn stats(&self) -> RunStats {
        self.stats
    }

    /// A run of `pages` pages at tick `now`: its address, and whether its pages are fresh
    /// from the kernel (zeroed) rather than reused from the cache. `None` if neither address
    /// space nor pages could be had.
    pub fn alloc(&mut self, source: &mut impl Pages, pages: usize, now: u64) -> Option<(usize, bool)> {
        if let Some(index) = (0..self.cached_len).rev().find(|&i| self.cached[i].pages == pages) {
            let run = self.cached[index];
            self.cached.copy_within(index + 1..self.cached_len, index);
            self.cached_len -= 1;
            self.stats.cached -= pages;
            self.last_use = now;
            return Some((run.va, false));
        }
        let run = self.take_range(pages)?;
        for n in 0..pages {
            if !source.map_fresh(run.va + n * PAGE_SIZE) {
                self.give_back(source, Run { va: run.va, pages: n });
                self.add_hole(run);
                if self.cached_len == 0 {
                    return None;
                }
                // Memory is short: what the cache holds may be enough.
                self.release_cache(source);
                return self.alloc(source, pages, now);
            }
            self.stats.mapped += 1;
        }
        Some((run.va, true))
    }

    /// Takes back the run of `pages` pages at `va` (from [`Runs::alloc`]) at tick `now`. It
    /// goes into the cache, whose oldest runs go back to the kernel to make room: the cache
    /// holds the sizes freed last, which under churn are the sizes asked for next.
    pub fn free(&mut self, source: &mut impl Pages, va: usize, pages: usize, now: u64) {
        let run = Run { va, pages };
        if pages > CACHED_PAGES_MAX {
            self.give_back(source, run);
            self.add_hole(run);
            return;
        }
        while self.cached_len == CACHED_MAX || self.stats.cached + pages > CACHED_PAGES_MAX {
            let oldest = self.cached[0];
            self.cached.copy_within(1..self.cached_len, 0);
            self.cached_len -= 1;
            self.stats.cached -= oldest.pages;
            self.give_back(source, oldest);
            self.add_hole(oldest);
        }
        self.cached[self.cached_len] = run;
        self.cached_len += 1;
        self.stats.cached += pages;
        self.last_use = now;
    }

    /// When the cache's pages go back if nothing uses it before (`None`: it is empty).
    pub fn release_at(&self) -> Option<u64> {
        (self.cached_len > 0).then_some(self.last_use + IDLE_TICKS)
    }

    /// Gives the cache's pages back if it sat unused for [`IDLE_TICKS`] by tick `now`, and
    /// retries pages the kernel would not take before.
    pub fn release_idle(&mut self, source: &mut impl Pages, now: u64) {
        if self.release_at().is_some_and(|at| now >= at) {
            self.release_cache(source);
        }
    }

    fn release_cache(&mut self, source: &mut impl Pages) {
        for index in (0..self.cached_len).rev() {
            let run = self.cached[index];
            self.cached_len = index;
            self.stats.cached -= run.pages;
            self.give_back(source, run);
            self.add_hole(run);
        }
        let unfreed = self.unfreed_len;
        self.unfreed_len = 0;
        for index in 0..unfreed {
            let page = self.unfreed[index];
            if source.free(page) {
                self.stats.released += 1;
            } else {
                self.keep_unfreed(page);
            }
        }
    }

    /// Unmaps `run`'s pages and gives them to the kernel (the address range is the caller's).
    fn give_back(&mut self, source: &mut impl Pages, run: Run) {
        for n in 0..run.pages {
            let Some(page) = source.unmap(run.va + n * PAGE_SIZE) else { continue };
            self.stats.mapped -= 1;
            if source.free(page) {
                self.stats.released += 1;
            } else {
                self.keep_unfreed(page);
            }
        }
    }

    fn keep_unfreed(&mut self, page: usize) {
        if self.unfreed_len < UNFREED_MAX {
            self.unfreed[self.unfreed_len] = page;
            self.unfreed_len += 1;
        } else {
            self.stats.lost += 1;
        }
    }

    /// An address range of `pages` pages: the smallest hole that fits, else past `top`.
    fn take_range(&mut self, pages: usize) -> Option<Run> {
        let best = (0..self.holes_len).filter(|&i| self.holes[i].pages >= pages).min_by_key(|&i| self.holes[i].pages);
        if let Some(index) = best {
            let hole = &mut self.holes[index];
            let run = Run { va: hole.va, pages };
            hole.va += pages * PAGE_SIZE;
            hole.pages -= pages;
            if hole.pages == 0 {
                self.holes_len -= 1;
                self.holes[index] = self.holes[self.holes_len];
            }
            return Some(run);
        }
        let end = self.top.checked_add(pages.checked_mul(PAGE_SIZE)?)?;
        if end > self.limit {
            return None;
        }
        let run = Run { va: self.top, pages };
        self.top = end;
        Some(run)
    }

    /// Returns an unmapped range: merged with the holes beside it, lowering `top` if it ends
    /// there.
    fn add_hole(&mut self, mut run: Run) {
        if run.pages == 0 {
            return;
        }
        let mut index = 0;
        while index < self.holes_len {
            let hole = self.holes[index];
            if hole.end() == run.va || run.end() == hole.va {
                run = Run { va: hole.va.min(run.va), pages: hole.pages + run.pages };
                self.holes_len -= 1;
                self.holes[index] = self.holes[self.holes_len];
            } else {
                index += 1;
            }
        }
        if run.end() == self.top {
            self.top = run.va;
        } else if self.holes_len < HOLES_MAX {
            self.holes[self.holes_len] = run;
            self.holes_len += 1;
        } else {
            self.stats.lost += run.pages as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};
    use std::vec::Vec;

    const BASE: usize = 0x40_0000_0000;

    /// The kernel as runs see it: which page is mapped where, which are held, and a limit.
    #[derive(Default)]
    struct FakeKernel {
        mapped: BTreeMap<usize, usize>,
        held: BTreeSet<usize>,
        pinned: BTreeSet<usize>,
        next: usize,
        quota: usize,
        calls: usize,
    }

    impl Pages for FakeKernel {
        fn map_fresh(&mut self, va: usize) -> bool {
            self.calls += 1;
            if self.held.len() >= self.quota {
                return false;
            }
            assert!(self.mapped.insert(va, self.next).is_none(), "{va:#x} mapped twice");
            self.held.insert(self.next);
            self.next += 1;
            true
        }
        fn unmap(&mut self, va: usize) -> Option<usize> {
            self.calls += 1;
            self.mapped.remove(&va)
        }
        fn free(&mut self, page: usize) -> bool {
            self.calls += 1;
            !self.pinned.contains(&page) && self.held.remove(&page)
        }
    }

    fn kernel(quota: usize) -> FakeKernel {
        FakeKernel { quota, ..FakeKernel::default() }
    }

    #[test]
    fn a_freed_run_is_reused_without_system_calls_and_goes_back_when_idle() {
        let (mut k, mut runs) = (kernel(1000), Runs::new(BASE, BASE + (1 << 30)));
        let (va, fresh) = runs.alloc(&mut k, 20, 0).unwrap();
        assert!(fresh && k.held.len() == 20);
        runs.free(&mut k, va, 20, 5);
        let calls = k.calls;
        assert_eq!(runs.alloc(&mut k, 20, 6), Some((va, false)), "the cached run, not fresh pages");
        assert_eq!(k.calls, calls);
        runs.free(&mut k, va, 20, 7);
        assert_eq!(runs.release_at(), Some(7 + IDLE_TICKS));
        runs.release_idle(&mut k, 7 + IDLE_TICKS - 1);
        assert_eq!(k.held.len(), 20, "not idle long enough");
        runs.release_idle(&mut k, 7 + IDLE_TICKS);
        assert!(k.held.is_empty() && k.mapped.is_empty() && runs.release_at().is_none());
        assert_eq!(runs.stats(), RunStats { mapped: 0, cached: 0, released: 20, lost: 0 });
        assert_eq!(runs.top, BASE, "the range went back too");
    }

    #[test]
    fn a_full_cache_gives_back_its_oldest_runs_not_the_newest() {
        let (mut k, mut runs) = (kernel(10_000), Runs::new(BASE, BASE + (1 << 30)));
        let old: Vec<usize> = (0..CACHED_MAX).map(|_| runs.alloc(&mut k, 5, 0).unwrap().0).collect();
        let (big, _) = runs.alloc(&mut k, 16, 0).unwrap();
        for &va in &old {
            runs.free(&mut k, va, 5, 1);
        }
        runs.free(&mut k, big, 16, 2);
        assert_eq!(runs.stats().cached, 5 * (CACHED_MAX - 1) + 16, "the oldest 5-page run made room");
        let calls = k.calls;
        assert_eq!(runs.alloc(&mut k, 16, 3), Some((big, false)));
        assert_eq!(k.calls, calls, "the newest run came from the cache");
    }

    #[test]
    fn short_memory_empties_the_cache_first_and_failure_leaves_nothing_mapped() {
        let (mut k, mut runs) = (kernel(24), Runs::new(BASE, BASE + (1 << 30)));
        let (a, _) = runs.alloc(&mut k, 16, 0).unwrap();
        runs.free(&mut k, a, 16, 1);
        let (b, fresh) = runs.alloc(&mut k, 20, 2).expect("the cached 16 pages went back to make room");
        assert!(fresh && k.held.len() == 20);
        assert_eq!(runs.alloc(&mut k, 8, 3), None, "4 pages left");
        assert_eq!(k.held.len(), 20, "the 4 mapped on the way were given back");
        runs.free(&mut k, b, 20, 4);
        runs.release_idle(&mut k, 4 + IDLE_TICKS);
        assert!(k.held.is_empty() && runs.top == BASE);
    }

    #[test]
    fn pages_the_kernel_keeps_are_retried_at_the_next_release() {
        let (mut k, mut runs) = (kernel(100), Runs::new(BASE, BASE + (1 << 30)));
        let (va, _) = runs.alloc(&mut k, 4, 0).unwrap();
        k.pinned.insert(*k.mapped.get(&va).unwrap());
        runs.free(&mut k, va, 4, 0);
        runs.release_idle(&mut k, IDLE_TICKS);
        assert_eq!(k.held.len(), 1, "the pinned page is still held");
        k.pinned.clear();
        let (other, _) = runs.alloc(&mut k, 4, 10).unwrap();
        runs.free(&mut k, other, 4, 10);
        runs.release_idle(&mut k, 10 + IDLE_TICKS);
        assert!(k.held.is_empty() && runs.stats().lost == 0);
    }

    #[test]
    fn the_range_is_bounded() {
        let (mut k, mut runs) = (kernel(usize::MAX), Runs::new(BASE, BASE + 8 * PAGE_SIZE));
        assert!(runs.alloc(&mut k, 8, 0).is_some());
        assert_eq!(runs.alloc(&mut k, 1, 0), None);
        assert_eq!(Runs::new(BASE, usize::MAX).alloc(&mut k, usize::MAX / 2, 0), None, "no overflow");
    }

    proptest! {
        /// Any sequence of allocations and frees: runs never overlap, everything mapped is a
        /// live or cached run, and once idle every page and the whole range are back.
        #[test]
        fn runs_never_overlap_and_all_goes_back(ops in proptest::collection::vec((0u8..3, 1usize..40, any::<usize>()), 1..300)) {
            let (mut k, mut runs) = (kernel(2_000), Runs::new(BASE, BASE + (1 << 30)));
            let mut live: Vec<(usize, usize)> = Vec::new();
            for (step, (op, pages, pick)) in ops.into_iter().enumerate() {
                let now = step as u64;
                match op {
                    0 | 1 => {
                        if let Some((va, _)) = runs.alloc(&mut k, pages, now) {
                            for &(other, n) in &live {
                                prop_assert!(va + pages * PAGE_SIZE <= other || other + n * PAGE_SIZE <= va, "overlap");
                            }
                            for p in 0..pages {
                                prop_assert!(k.mapped.contains_key(&(va + p * PAGE_SIZE)), "a run page is not mapped");
                            }
                            live.push((va, pages));
                        }
                    }
                    _ if !live.is_empty() => {
                        let (va, n) = live.swap_remove(pick % live.len());
                        runs.free(&mut k, va, n, now);
                    }
                    _ => {}
                }
                let in_use: usize = live.iter().map(|&(_, n)| n).sum();
                prop_assert_eq!(runs.stats().mapped, in_use + runs.stats().cached);
                prop_assert_eq!(k.held.len(), runs.stats().mapped);
            }
            for (va, n) in live.drain(..) {
                runs.free(&mut k, va, n, 10_000);
            }
            runs.release_idle(&mut k, 10_000 + IDLE_TICKS);
            prop_assert!(k.held.is_empty() && k.mapped.is_empty());
            prop_assert_eq!(runs.top, BASE);
            prop_assert_eq!(runs.holes_len, 0);
        }
    }
}
