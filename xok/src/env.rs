//! Environments (xok's processes) and the table that holds them. Who spawned whom lives in
//! the quota tree (`account.rs`); who runs next in `kernel::sched`.

use crate::trapframe::TrapFrame;
use crate::vm::AddressSpace;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use xok_abi::{EnvId, EnvStatus};

/// Most environments alive or remembered at once (the slot bits of [`EnvId`]).
pub const MAX_ENVS: usize = 1 << EnvId::SLOT_BITS;

/// The generation after `generation`: 1 ..= 2^22 - 1, wrapping around and never 0, so no id
/// is ever 0 (the kernel's own holder id).
fn next_generation(generation: u32) -> u32 {
    generation % ((1 << (32 - EnvId::SLOT_BITS)) - 1) + 1
}

/// A running program.
#[derive(Debug)]
pub struct Env {
    /// Its id.
    pub id: EnvId,
    /// The program's path, for logs.
    pub name: String,
    /// Its page table.
    pub space: AddressSpace,
    /// Its registers while it is not running.
    pub frame: TrapFrame,
    /// May install copy and fallback filters and spawn privileged children.
    pub privileged: bool,
    /// Its wakeup predicate, if installed.
    pub wakeup: Option<crate::wk::Wakeup>,
    /// Waiting in `wk_sleep` for its predicate.
    pub sleeping: bool,
    /// Its stride-scheduling pass (`kernel::sched`).
    pub pass: u64,
    /// Queued for a predicate check.
    pub checking: bool,
    /// The tick at which its sleeping predicate is due for a check (`kernel::sched`).
    pub timer: Option<u64>,
    /// Killed and waiting to be torn down: never runs again.
    pub dying: bool,
    /// Timer ticks that found it running.
    pub cpu_ticks: u64,
    /// Times it was given the CPU.
    pub runs: u64,
}

#[derive(Debug)]
enum Slot {
    /// Alive.
    Alive(Box<Env>),
    /// Ended; the status stays readable until the slot is reused.
    Dead { id: EnvId, status: EnvStatus },
}

/// All environments, indexed by slot.
#[derive(Debug, Default)]
pub struct EnvTable {
    slots: Vec<Slot>,
    /// Where the round-robin search for the next slot to reuse starts.
    reuse_cursor: usize,
}

impl EnvTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Picks an id for a new environment: a never-used slot if any, else the next dead one.
    pub fn reserve_id(&self) -> Option<EnvId> {
        if self.slots.len() < MAX_ENVS {
            return Some(EnvId::new(self.slots.len(), 1));
        }
        (0..MAX_ENVS).map(|i| (self.reuse_cursor + i) % MAX_ENVS).find_map(|slot| match self.slots[slot] {
            Slot::Dead { id, .. } => Some(EnvId::new(slot, next_generation(id.generation()))),
            Slot::Alive(_) => None,
        })
    }

    /// Stores a new environment under the id [`EnvTable::reserve_id`] gave.
    pub fn insert(&mut self, env: Env) {
        let slot = env.id.slot();
        if slot == self.slots.len() {
            self.slots.push(Slot::Alive(Box::new(env)));
        } else {
            self.slots[slot] = Slot::Alive(Box::new(env));
            self.reuse_cursor = (slot + 1) % MAX_ENVS;
        }
    }

    /// The live environment `id`.
    pub fn get(&self, id: EnvId) -> Option<&Env> {
        match self.slots.get(id.slot()) {
            Some(Slot::Alive(env)) if env.id == id => Some(env),
            _ => None,
        }
    }

    /// The live environment `id`, mutably.
    pub fn get_mut(&mut self, id: EnvId) -> Option<&mut Env> {
        match self.slots.get_mut(id.slot()) {
            Some(Slot::Alive(env)) if env.id == id => Some(env),
            _ => None,
        }
    }

    /// Takes a live environment out, leaving `status` readable in its slot.
    pub fn remove(&mut self, id: EnvId, status: EnvStatus) -> Option<Env> {
        let slot = self.slots.get_mut(id.slot())?;
        match slot {
            Slot::Alive(env) if env.id == id => {}
            _ => return None,
        }
        match core::mem::replace(slot, Slot::Dead { id, status }) {
            Slot::Alive(env) => Some(*env),
            _ => None,
        }
    }

    /// What became of `id`, if the table still knows.
    pub fn status(&self, id: EnvId) -> Option<EnvStatus> {
        match self.slots.get(id.slot())? {
            Slot::Alive(env) if env.id == id => Some(EnvStatus::Alive),
            Slot::Dead { id: dead, status } if *dead == id => Some(*status),
            _ => None,
        }
    }

    /// Number of live environments.
    pub fn alive(&self) -> usize {
        self.slots.iter().filter(|slot| matches!(slot, Slot::Alive(_))).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ownership::{Page, PageOwnership};
    use crate::vm::{KernelMappings, fake::FakeMem};
    use alloc::string::ToString;

    fn env(table: &EnvTable, pages: &mut PageOwnership, mem: &mut FakeMem) -> Env {
        let kernel = KernelMappings { low_gigabyte: 0, upper_half: [0; 256] };
        Env {
            id: table.reserve_id().unwrap(),
            name: "t".to_string(),
            space: AddressSpace::new(pages, mem, &kernel).unwrap(),
            frame: TrapFrame::default(),
            privileged: false,
            wakeup: None,
            sleeping: false,
            pass: 0,
            checking: false,
            timer: None,
            dying: false,
            cpu_ticks: 0,
            runs: 0,
        }
    }

    fn memory() -> (PageOwnership, FakeMem) {
        let mut pages = PageOwnership::new(4096);
        for n in 16..4096 {
            pages.add_free(Page(n));
        }
        (pages, FakeMem::default())
    }

    #[test]
    fn removed_environments_leave_their_status() {
        let (mut pages, mut mem) = memory();
        let mut table = EnvTable::new();
        let mut ids = Vec::new();
        for _ in 0..3 {
            let e = env(&table, &mut pages, &mut mem);
            ids.push(e.id);
            table.insert(e);
        }
        assert_eq!(table.alive(), 3);
        table.remove(ids[1], EnvStatus::Exited(0)).unwrap();
        assert!(table.get(ids[1]).is_none());
        assert_eq!(table.status(ids[1]), Some(EnvStatus::Exited(0)));
        assert_eq!(table.alive(), 2);
        table.remove(ids[0], EnvStatus::Killed(14)).unwrap();
        assert_eq!(table.status(ids[0]), Some(EnvStatus::Killed(14)));
        assert!(table.remove(ids[0], EnvStatus::Exited(1)).is_none(), "removed once");
        assert_eq!(table.alive(), 1);
    }

    #[test]
    fn generations_wrap_without_reaching_zero() {
        let top = (1 << (32 - EnvId::SLOT_BITS)) - 1;
        assert_eq!(next_generation(1), 2);
        assert_eq!(next_generation(top - 1), top);
        assert_eq!(next_generation(top), 1);
        assert_ne!(EnvId::new(0, next_generation(top)).0, 0);
    }

    #[test]
    fn stale_ids_never_name_a_reused_slot() {
        let (mut pages, mut mem) = memory();
        let mut table = EnvTable::new();
        let mut first = None;
        for _ in 0..MAX_ENVS {
            let e = env(&table, &mut pages, &mut mem);
            first.get_or_insert(e.id);
            table.insert(e);
        }
        assert_eq!(table.reserve_id(), None);
        let first = first.unwrap();
        table.remove(first, EnvStatus::Exited(1)).unwrap();
        let reused = table.reserve_id().unwrap();
        assert_eq!(reused.slot(), first.slot());
        assert_ne!(reused, first);
        let e = Env { id: reused, ..env(&table, &mut pages, &mut mem) };
        table.insert(e);
        assert!(table.get(first).is_none());
        assert_eq!(table.status(first), None);
        assert_eq!(table.status(reused), Some(EnvStatus::Alive));
    }
}
