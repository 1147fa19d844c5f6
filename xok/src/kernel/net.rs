//! The network syscalls: NIC information, packet rings, filters, transmission.

use super::{Kernel, Machine};
use crate::net::ring::PacketRing;
use alloc::collections::BTreeMap;
use xok_abi::net::RINGS_PER_ENV;
use xok_abi::{EnvId, Error};

/// The kernel's network state.
#[derive(Debug, Default)]
pub struct Network {
    /// Registered packet rings by id.
    pub rings: BTreeMap<u32, PacketRing>,
    next_ring: u32,
    /// Frames that matched no filter.
    pub unmatched: u64,
}

impl Network {
    /// Drops everything `env` held: its rings (unpinning their pages).
    pub fn release_env(&mut self, env: EnvId, pages: &mut crate::ownership::PageOwnership) {
        let ids: alloc::vec::Vec<u32> = self.rings.iter().filter(|(_, r)| r.owner == env).map(|(id, _)| *id).collect();
        for id in ids {
            if let Some(ring) = self.rings.remove(&id) {
                ring.release(pages);
            }
        }
    }

    fn ring_of(&self, env: EnvId, ring: usize) -> Result<u32, Error> {
        let id = u32::try_from(ring).map_err(|_| Error::NoSuchRing)?;
        match self.rings.get(&id) {
            Some(r) if r.owner == env => Ok(id),
            _ => Err(Error::NoSuchRing),
        }
    }
}

impl<M: Machine> Kernel<M> {
    pub(super) fn sys_nic_info(&self, nic: usize) -> Result<usize, Error> {
        self.machine.nic_info(nic).map(|info| info.to_word()).ok_or(Error::NoSuchNic)
    }

    fn register_ring(&mut self, caller: EnvId, va: usize, count: usize, size: usize) -> Result<PacketRing, Error> {
        let env = self.envs.get(caller).ok_or(Error::NoSuchEnv)?;
        PacketRing::register(caller, &env.space, &mut self.pages, &self.machine, va, count, size)
    }

    pub(super) fn sys_pktring_setring(&mut self, caller: EnvId, va: usize, count: usize, size: usize) -> Result<usize, Error> {
        if self.net.rings.values().filter(|r| r.owner == caller).count() >= RINGS_PER_ENV {
            return Err(Error::TooMany);
        }
        let ring = self.register_ring(caller, va, count, size)?;
        let id = self.net.next_ring;
        self.net.next_ring = self.net.next_ring.wrapping_add(1) & 0x7fff_ffff;
        self.net.rings.insert(id, ring);
        Ok(id as usize)
    }

    pub(super) fn sys_pktring_modring(&mut self, caller: EnvId, ring: usize, va: usize, count: usize, size: usize) -> Result<usize, Error> {
        let id = self.net.ring_of(caller, ring)?;
        let fresh = self.register_ring(caller, va, count, size)?;
        let old = self.net.rings.insert(id, fresh).expect("ring_of found it");
        old.release(&mut self.pages);
        Ok(0)
    }

    pub(super) fn sys_pktring_delring(&mut self, caller: EnvId, ring: usize) -> Result<usize, Error> {
        let id = self.net.ring_of(caller, ring)?;
        let old = self.net.rings.remove(&id).expect("ring_of found it");
        old.release(&mut self.pages);
        Ok(0)
    }

    pub(super) fn sys_pktring_stats(&self, caller: EnvId, ring: usize) -> Result<usize, Error> {
        if ring == usize::MAX {
            return Ok(self.net.unmatched as usize);
        }
        let id = self.net.ring_of(caller, ring)?;
        Ok(self.net.rings[&id].drops as usize)
    }
}
