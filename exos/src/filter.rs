//! Installed DPF filters as owned handles: dropping one drops the program's reference to the
//! filter (`dpf_delete`), so a filter lives exactly as long as the value that stands for it.

use xok_abi::{EnvId, Error};

/// A filter this program holds (see [`crate::ring::PacketRing::install`]).
#[derive(Debug)]
pub struct InstalledFilter {
    id: u64,
}

impl InstalledFilter {
    /// Installs `filter` with `flags` (0, `DPF_COPY` or `DPF_FALLBACK`), delivering into ring
    /// `ring` (the caller's).
    pub(crate) fn install(filter: &dpf::Filter, ring: usize, flags: usize) -> Result<InstalledFilter, Error> {
        crate::sys::dpf_insert(&filter.to_bytes(), ring, flags).map(|id| InstalledFilter { id })
    }

    /// Gives `env` a reference of its own to this filter (it then holds it until it deletes
    /// its reference or ends, whatever this program does).
    pub fn share_with(&self, env: EnvId) -> Result<(), Error> {
        crate::sys::dpf_ref(self.id, env)
    }

    /// The kernel's id for the filter (for raw syscalls).
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for InstalledFilter {
    fn drop(&mut self) {
        // The only failure is a filter the kernel no longer knows, which is what we want.
        let _ = crate::sys::dpf_delete(self.id);
    }
}
