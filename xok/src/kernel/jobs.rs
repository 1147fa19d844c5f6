//! Compiles run outside the kernel's critical section.
//!
//! Compiling a DPF trie or a wakeup predicate with Cranelift takes milliseconds natively and
//! up to a second under TCG. The kernel never does it with interrupts off or on the interrupt
//! path: a syscall that needs code queues a [`Job`]; the arch layer takes it after the syscall
//! (or at a scheduling decision), releases the kernel lock, enables interrupts, runs
//! [`Job::run`] -- a pure function of owned data -- and hands the result back to
//! [`Kernel::finish_job`]. Timer ticks and frames keep being handled meanwhile; frames are
//! classified by the interpreter until the new code is loaded, and a predicate is interpreted
//! until its code arrives. The time a compile takes is charged to the environment that caused
//! it.

use super::{Kernel, Machine};
use alloc::sync::Arc;
use alloc::vec::Vec;
use xok_abi::EnvId;

/// Shortest time between two classifier compiles; frames in between are interpreted, so a
/// program that changes the filter structure in a loop costs a compile per interval at most
/// (and pays for it).
pub const RECOMPILE_INTERVAL_NS: u64 = 200_000_000;

/// Work to do with interrupts enabled.
pub enum Job {
    /// Compile the classifier for this snapshot of the filter set.
    Classifier {
        /// The filter set as it was (its structure cannot change while the job runs: only
        /// syscalls change it, and none run meanwhile; a change would clone the set).
        dpf: Arc<dpf::Dpf>,
        /// Who made the structural change (charged for the compile).
        cause: Option<EnvId>,
    },
    /// Compile `env`'s newly installed predicate.
    Predicate {
        /// Whose.
        env: EnvId,
        /// Which install it was for (a newer install makes the result stale).
        serial: u64,
        /// The predicate.
        predicate: wkpred::Predicate,
    },
}

/// The result of [`Job::run`].
pub enum JobDone {
    /// Classifier code (or `None` if compiling failed: frames stay interpreted).
    Classifier {
        /// The code.
        code: Option<dpf::compile::CompiledCode>,
        /// Who is charged.
        cause: Option<EnvId>,
        /// The generation it was compiled for.
        generation: u64,
    },
    /// Predicate code.
    Predicate {
        /// Whose.
        env: EnvId,
        /// Which install.
        serial: u64,
        /// The code, or `None` if compiling failed (it stays interpreted).
        code: Option<wkpred::CompiledPredicate>,
    },
}

impl Job {
    /// Compiles. Touches no kernel state: safe to run with the kernel unlocked.
    pub fn run(self) -> JobDone {
        match self {
            Job::Classifier { dpf, cause } => JobDone::Classifier {
                code: dpf::compile(&dpf, dpf::compile::OptLevel::Speed).ok(),
                cause,
                generation: dpf.generation(),
            },
            Job::Predicate { env, serial, predicate } => {
                JobDone::Predicate { env, serial, code: wkpred::compile(&predicate).ok() }
            }
        }
    }
}

/// Jobs waiting, and the classifier's compile schedule.
#[derive(Default)]
pub struct JobQueue {
    predicates: Vec<(EnvId, u64, wkpred::Predicate)>,
    next_serial: u64,
    /// The env whose syscall last changed the filter structure.
    pub(super) classifier_cause: Option<EnvId>,
    /// When the last classifier compile ended (ns), and for which generation.
    last_classifier: Option<(u64, u64)>,
    /// Classifier compiles done (for tests and reports).
    pub classifier_compiles: u64,
}

impl JobQueue {
    /// Queues a compile of `env`'s new predicate; returns its serial.
    pub(super) fn push_predicate(&mut self, env: EnvId, predicate: wkpred::Predicate) -> u64 {
        self.next_serial += 1;
        self.predicates.retain(|(e, _, _)| *e != env);
        self.predicates.push((env, self.next_serial, predicate));
        self.next_serial
    }

    /// Drops the jobs of an environment that ended.
    pub(super) fn forget_env(&mut self, env: EnvId) {
        self.predicates.retain(|(e, _, _)| *e != env);
        if self.classifier_cause == Some(env) {
            self.classifier_cause = None;
        }
    }

    /// The serial of `env`'s pending predicate compile.
    pub fn pending_serial(&self, env: EnvId) -> Option<u64> {
        self.predicates.iter().find(|(e, _, _)| *e == env).map(|(_, s, _)| *s)
    }
}

impl<M: Machine> Kernel<M> {
    /// The next job to run, if any: predicate compiles first, then the classifier if its code
    /// is behind the filter set and the last compile is at least [`RECOMPILE_INTERVAL_NS`]
    /// old (or was for another generation that failed).
    pub fn take_job(&mut self) -> Option<Job> {
        if let Some((env, serial, predicate)) = self.jobs.predicates.pop() {
            return Some(Job::Predicate { env, serial, predicate });
        }
        let generation = self.net.dpf.generation();
        if self.net.dpf.is_empty() || self.net.classifier.generation() == Some(generation) {
            return None;
        }
        let now = self.machine.now_ns();
        match self.jobs.last_classifier {
            Some((_, tried)) if tried == generation => return None, // it failed; interpret
            Some((at, _)) if now.saturating_sub(at) < RECOMPILE_INTERVAL_NS => return None,
            _ => {}
        }
        // The quota tree keeps room for the largest compile; check anyway, so that a miscount
        // costs speed (frames stay interpreted), never the kernel.
        let heap = self.machine.heap_use();
        let need = self.net.dpf.group_count() * super::COMPILE_BYTES_PER_SHAPE + (1 << 20);
        if heap.size.saturating_sub(heap.used) < need {
            self.jobs.last_classifier = Some((now, generation));
            self.log(format_args!("dpf: not compiling {} groups: {need} heap bytes are not free; interpreting", self.net.dpf.group_count()));
            return None;
        }
        Some(Job::Classifier { dpf: Arc::clone(&self.net.dpf), cause: self.jobs.classifier_cause })
    }

    /// Installs what a job produced and charges its time (`spent_ns`) to whoever caused it.
    pub fn finish_job(&mut self, done: JobDone, spent_ns: u64) {
        match done {
            JobDone::Classifier { code, cause, generation } => {
                self.jobs.classifier_compiles += 1;
                self.jobs.last_classifier = Some((self.machine.now_ns(), generation));
                if let Some(cause) = cause {
                    self.charge_cpu(cause, spent_ns);
                }
                match code {
                    Some(code) if code.generation == self.net.dpf.generation() => {
                        let bytes = code.bytes.len();
                        if self.net.classifier.install(&mut self.machine, &code) {
                            self.log(format_args!(
                                "dpf: compiled {} filters into {bytes} bytes in {} us",
                                self.net.dpf.len(),
                                spent_ns / 1000
                            ));
                        }
                    }
                    Some(_) => {} // the set changed meanwhile; the next job compiles it
                    None => self.log(format_args!("dpf: compiling {} filters failed; interpreting", self.net.dpf.len())),
                }
            }
            JobDone::Predicate { env, serial, code } => {
                self.charge_cpu(env, spent_ns);
                if let Some(wakeup) = self.envs.get_mut(env).and_then(|e| e.wakeup.as_mut())
                    && wakeup.serial == serial
                {
                    wakeup.compiled = code;
                }
            }
        }
    }

    /// Finishes every teardown step and runs every pending job at once, in place (host tests;
    /// the bare metal lets interrupts in between steps and runs jobs with interrupts enabled).
    pub fn run_jobs_inline(&mut self) {
        while self.teardown_pending() {
            self.teardown_step();
        }
        while let Some(job) = self.take_job() {
            let done = job.run();
            self.finish_job(done, 0);
        }
    }
}
