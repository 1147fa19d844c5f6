//! Scheduling: stride scheduling over CPU tickets, and sleepers woken by events.
//!
//! CPU: every environment has tickets carved from its parent's (`account.rs`), so a process
//! tree never gets more CPU than its root's share, however many children it spawns. Each
//! environment has a *pass*; running for `t` nanoseconds advances it by `t × ROOT_TICKETS /
//! tickets`, and the runnable environment with the lowest pass runs next. Newcomers and
//! sleepers that wake start at the current virtual time, so sleeping earns no credit.
//!
//! Sleepers: a sleeping environment is not scanned at each decision. Its predicate is
//! re-evaluated only when something it reads may have changed: the kernel stored a frame in
//! one of its rings or completed one of its sends, its deadline came (the tick at which its
//! clock terms hold, kept in a timer set), or -- for a predicate that reads a page another
//! environment may write, or the clock in a way that is not a deadline -- at every tick
//! ([`crate::wk::WakePlan`]). Each evaluation is timed and charged to the sleeper's pass.

use super::{Kernel, Machine};
use crate::account::ROOT_TICKETS;
use crate::wk::WakePlan;
use alloc::collections::BTreeSet;
use alloc::vec::Vec;
use xok_abi::EnvId;

/// The scheduler's state; per-environment parts (pass, sleeping) live in [`crate::env::Env`].
#[derive(Debug, Default)]
pub struct Scheduler {
    /// Environments that may run (not sleeping).
    runnable: Vec<EnvId>,
    /// Sleepers to re-evaluate before the next decision.
    to_check: Vec<EnvId>,
    /// Sleepers re-evaluated at every tick (see [`WakePlan::EveryTick`]).
    tick_watchers: BTreeSet<EnvId>,
    /// Sleepers' deadlines: (tick, sleeper), evaluated once the tick counter reaches them.
    timers: BTreeSet<(u64, EnvId)>,
    /// The pass of the environment picked last: where newcomers and wakers start.
    virtual_time: u64,
    /// The environment on the CPU and when it got it (ns).
    slice: Option<(EnvId, u64)>,
    /// Predicate evaluations done (for tests and reports).
    pub evaluations: u64,
}

impl Scheduler {
    /// Number of runnable environments.
    pub fn runnable(&self) -> usize {
        self.runnable.len()
    }
}

/// How much `ns` of CPU advances the pass of an environment with `tickets`.
fn stride(ns: u64, tickets: u64) -> u64 {
    ((u128::from(ns) * u128::from(ROOT_TICKETS)) / u128::from(tickets.max(1))).min(u128::from(u64::MAX / 4)) as u64
}

impl<M: Machine> Kernel<M> {
    /// A new environment joins the runnable set at the current virtual time, or at its
    /// parent's pass (`parent_pass`, taken before the spawn) if that is later: a child never
    /// starts ahead of the program that made it (else spawning would buy CPU, and a parent
    /// charged for a long compile would hand its children a head start over everyone).
    pub(super) fn sched_add(&mut self, id: EnvId, parent_pass: u64) {
        let start = self.sched.virtual_time.max(parent_pass);
        if let Some(env) = self.envs.get_mut(id) {
            env.pass = start;
        }
        self.sched.runnable.push(id);
    }

    /// An environment leaves for good.
    pub(super) fn sched_remove(&mut self, id: EnvId) {
        self.sched.runnable.retain(|e| *e != id);
        self.sched.to_check.retain(|e| *e != id);
        self.sched.tick_watchers.remove(&id);
        self.sched.timers.retain(|(_, e)| *e != id);
        if self.sched.slice.is_some_and(|(e, _)| e == id) {
            self.sched.slice = None;
        }
    }

    /// `id`'s tickets changed from `before` (it gave some to a child, or got a dead one's
    /// back): its distance from the virtual time is rescaled, so that time it ran with few
    /// tickets is not held against it for ever once it has many (stride scheduling's rule for
    /// ticket changes).
    pub(crate) fn retune(&mut self, id: EnvId, before: u64) {
        let after = self.accounts.tickets(id).max(1);
        let virtual_time = self.sched.virtual_time;
        if let Some(env) = self.envs.get_mut(id) {
            let scale = |distance: u64| ((u128::from(distance) * u128::from(before.max(1))) / u128::from(after)).min(u128::from(u64::MAX / 4)) as u64;
            env.pass = match env.pass.checked_sub(virtual_time) {
                Some(ahead) => virtual_time + scale(ahead),
                None => virtual_time - scale(virtual_time - env.pass).min(virtual_time),
            };
        }
    }

    /// Charges `ns` of CPU (running, or work done for it) to `id`'s pass.
    pub(crate) fn charge_cpu(&mut self, id: EnvId, ns: u64) {
        let tickets = self.accounts.tickets(id);
        if let Some(env) = self.envs.get_mut(id) {
            env.pass = env.pass.saturating_add(stride(ns, tickets));
        }
    }

    /// `wk_sleep`: the caller sleeps until its predicate holds. Evaluated once now (charged
    /// to the caller); false makes it a sleeper that only events re-evaluate.
    pub(super) fn sleep(&mut self, caller: EnvId) {
        if self.envs.get(caller).is_none_or(|env| env.wakeup.is_none()) || self.evaluate(caller) {
            return;
        }
        let Some(env) = self.envs.get_mut(caller) else { return };
        env.sleeping = true;
        self.sched.runnable.retain(|e| *e != caller);
        self.arm(caller);
    }

    /// Arranges the next check of sleeper `id` beyond events: at its deadline, or every tick
    /// ([`WakePlan`]).
    fn arm(&mut self, id: EnvId) {
        let mut word = [0u8; 8];
        self.machine.read(self.ticks_page, 0, &mut word);
        let now = u64::from_le_bytes(word);
        let Some(wakeup) = self.envs.get(id).and_then(|env| env.wakeup.as_ref()) else { return };
        match wakeup.wake_plan(&self.machine, self.ticks_page, now, |page| self.pages.other_writer(id, page)) {
            WakePlan::Events => {}
            WakePlan::At(tick) => {
                self.envs.get_mut(id).expect("has a wakeup").timer = Some(tick);
                self.sched.timers.insert((tick, id));
            }
            WakePlan::EveryTick => {
                self.sched.tick_watchers.insert(id);
            }
        }
    }

    /// Something `id` may be waiting for changed: re-evaluate its predicate before the next
    /// decision (if it sleeps).
    pub(crate) fn notify(&mut self, id: EnvId) {
        if let Some(env) = self.envs.get_mut(id)
            && env.sleeping
            && !env.checking
            && !env.dying
        {
            env.checking = true;
            self.sched.to_check.push(id);
        }
    }

    /// Evaluates `id`'s predicate, charging the time to it.
    fn evaluate(&mut self, id: EnvId) -> bool {
        let start = self.machine.now_ns();
        let Some(env) = self.envs.get_mut(id) else { return false };
        let holds = env.wakeup.as_mut().is_none_or(|wakeup| self.machine.wake_check(wakeup));
        self.sched.evaluations += 1;
        let spent = self.machine.now_ns().saturating_sub(start);
        self.charge_cpu(id, spent);
        holds
    }

    /// Wakes the sleepers whose predicates now hold (of those an event named).
    fn check_sleepers(&mut self) {
        let pending = core::mem::take(&mut self.sched.to_check);
        for id in pending {
            let Some(env) = self.envs.get_mut(id) else { continue };
            env.checking = false;
            if !env.sleeping {
                continue;
            }
            if !self.evaluate(id) {
                // Still false: if its deadline was what came, the next one (if any).
                let env = self.envs.get(id).expect("evaluated above");
                if env.timer.is_none() && !self.sched.tick_watchers.contains(&id) {
                    self.arm(id);
                }
                continue;
            }
            let virtual_time = self.sched.virtual_time;
            let env = self.envs.get_mut(id).expect("evaluated above");
            env.sleeping = false;
            env.pass = env.pass.max(virtual_time);
            if let Some(tick) = env.timer.take() {
                self.sched.timers.remove(&(tick, id));
            }
            self.sched.tick_watchers.remove(&id);
            self.sched.runnable.push(id);
        }
    }

    /// The environment to run next: the runnable one with the lowest pass (round-robin
    /// order after the current one breaks ties). Charges the one that ran until now.
    pub fn pick_next(&mut self) -> Option<EnvId> {
        let now = self.machine.now_ns();
        if let Some((id, since)) = self.sched.slice.take() {
            self.charge_cpu(id, now.saturating_sub(since));
        }
        self.check_sleepers();
        let after = self.current.map_or(0, |id| id.slot() + 1);
        let order = |id: &EnvId| (id.slot() + crate::env::MAX_ENVS - after) % crate::env::MAX_ENVS;
        let next = self
            .sched
            .runnable
            .iter()
            .filter_map(|id| self.envs.get(*id).map(|env| (env.pass, order(id), *id)))
            .min()
            .map(|(_, _, id)| id)?;
        let env = self.envs.get_mut(next).expect("runnable environments are live");
        env.runs += 1;
        self.sched.virtual_time = self.sched.virtual_time.max(env.pass);
        self.current = Some(next);
        self.sched.slice = Some((next, self.machine.now_ns()));
        Some(next)
    }

    /// A timer interrupt: advances the tick counter, counts the tick against the running
    /// environment, names for a check the sleepers whose deadline came and those that watch
    /// shared memory or the clock every tick, and polls every NIC (so a lost or unrouted NIC interrupt delays frames by one tick at
    /// most, instead of stranding them).
    pub fn timer_tick(&mut self, interrupted: Option<EnvId>) {
        let mut word = [0u8; 8];
        self.machine.read(self.ticks_page, 0, &mut word);
        let ticks = u64::from_le_bytes(word) + 1;
        self.machine.write(self.ticks_page, 0, &ticks.to_le_bytes());
        if let Some(env) = interrupted.and_then(|id| self.envs.get_mut(id)) {
            env.cpu_ticks += 1;
        }
        while let Some(&(tick, id)) = self.sched.timers.first()
            && tick <= ticks
        {
            self.sched.timers.pop_first();
            if let Some(env) = self.envs.get_mut(id) {
                env.timer = None;
            }
            self.notify(id);
        }
        let watchers: Vec<EnvId> = self.sched.tick_watchers.iter().copied().collect();
        for id in watchers {
            self.notify(id);
        }
        for nic in 0..self.net.nics.len() {
            self.poll_nic(nic);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::stride;

    #[test]
    fn fewer_tickets_advance_the_pass_faster() {
        assert_eq!(stride(1000, super::ROOT_TICKETS), 1000);
        assert_eq!(stride(1000, super::ROOT_TICKETS / 2), 2000);
        assert!(stride(u64::MAX, 1) <= u64::MAX / 4, "no overflow");
    }
}
