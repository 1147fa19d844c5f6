//! The kernel proper: environments, memory and the syscall dispatcher, over a [`Machine`].
//!
//! Everything here is plain Rust. The bare-metal glue (`arch`) saves an environment's registers
//! into its [`Env::frame`], calls [`Kernel::syscall`] or one of the event handlers, and then runs
//! whichever environment [`Kernel::pick_next`] names. Host tests drive the same code with a
//! fake machine.

use crate::env::{Env, EnvTable};
use crate::initrd::Initrd;
use crate::net::ring::RingGeometry;
use crate::ownership::{Page, PageOwnership};
use crate::program;
use crate::trapframe::TrapFrame;
use crate::vm::{AddressSpace, KernelMappings, PhysMem};
use alloc::string::{String, ToString};
use core::fmt::Write;
use xok_abi::layout::{ARGS_VA, PAGE_SIZE, STACK_PAGES, STACK_TOP, TICKS_VA};
use xok_abi::{
    ARGS_MAX, CONSOLE_WRITE_MAX, EnvId, EnvStatus, Error, KILLED_BY_PARENT, PATH_MAX, PteFlags, Rights,
    SPAWN_PRIVILEGED, Syscall,
};

/// What the kernel needs from the hardware besides physical memory.
pub trait Machine: PhysMem {
    /// Writes bytes to the console.
    fn console_write(&mut self, bytes: &[u8]);
    /// Nanoseconds since boot.
    fn now_ns(&self) -> u64;
    /// Loads the kernel's own page table, so an environment's tables can be freed safely.
    fn use_kernel_page_table(&mut self);
    /// Evaluates an installed wakeup predicate (native code on the bare metal, loaded on first
    /// use and remembered in `wakeup.code`; the interpreter in host tests).
    fn wake_check(&mut self, wakeup: &mut crate::wk::Wakeup) -> bool;
    /// Frees the native code of a wakeup predicate that is going away.
    fn release_code(&mut self, handle: u64);
    /// Classifies a frame against the installed filters (compiled code on the bare metal,
    /// recompiled when the filter set's structure changed; the interpreter in host tests).
    fn classify(&mut self, dpf: &dpf::Dpf, frame: &[u8]) -> dpf::Classification;
}

/// The holder of kernel-provided pages that every environment may read (the tick counter);
/// never the id of an environment (their generations start at 1).
pub const KERNEL_HOLDER: EnvId = EnvId(0);

/// What to do after a syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Return to the caller.
    Resume,
    /// The caller yielded or ended: run whoever is next.
    Schedule,
}

/// The whole kernel state.
pub struct Kernel<M: Machine> {
    /// Physical page ownership.
    pub pages: PageOwnership,
    /// The hardware.
    pub machine: M,
    /// All environments.
    pub envs: EnvTable,
    /// The environment on the CPU (or last on it).
    pub current: Option<EnvId>,
    /// Pages each new environment may hold.
    pub default_quota: usize,
    /// Free pages before the first environment started.
    pub boot_free_pages: usize,
    /// Rings, filters and send queues.
    pub net: net::Network,
    /// The tick-counter page, held read-only by every environment.
    ticks_page: Page,
    kernel_mappings: KernelMappings,
    initrd: Initrd<'static>,
}

/// Formats a log line to the console without allocating.
struct Console<'a, M: Machine>(&'a mut M);

impl<M: Machine> Write for Console<'_, M> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0.console_write(s.as_bytes());
        Ok(())
    }
}

impl<M: Machine> Kernel<M> {
    /// A kernel with no environments yet.
    pub fn new(
        machine: M,
        pages: PageOwnership,
        kernel_mappings: KernelMappings,
        initrd: Initrd<'static>,
    ) -> Self {
        let mut pages = pages;
        let ticks_page = pages.alloc(KERNEL_HOLDER, usize::MAX).expect("a page for the tick counter");
        let mut machine = machine;
        machine.zero(ticks_page);
        let mut net = net::Network::default();
        net.zero_page = Some(pages.alloc_kernel().expect("a page for padding short frames"));
        machine.zero(net.zero_page.expect("just set"));
        let free = pages.free_count();
        Kernel {
            pages,
            machine,
            envs: EnvTable::new(),
            current: None,
            default_quota: free / 4,
            boot_free_pages: free,
            net,
            ticks_page,
            kernel_mappings,
            initrd,
        }
    }

    /// Writes a kernel log line (`xok: ...`).
    pub fn log(&mut self, args: core::fmt::Arguments<'_>) {
        let mut console = Console(&mut self.machine);
        let _ = console.write_str("xok: ");
        let _ = console.write_fmt(args);
        let _ = console.write_str("\n");
    }

    /// Starts `path` with the NUL-separated words `args` as a child of `parent`.
    pub fn spawn(&mut self, parent: Option<EnvId>, path: &str, args: &[u8], privileged: bool) -> Result<EnvId, Error> {
        if args.len() > ARGS_MAX {
            return Err(Error::BadLength);
        }
        let file = self.initrd.find(path).ok_or(Error::NotFound)?;
        let program = match program::parse(file.data) {
            Ok(program) => program,
            Err(reason) => {
                self.log(format_args!("refused to start {path}: {reason:?}"));
                return Err(Error::BadProgram);
            }
        };
        let id = self.envs.reserve_id().ok_or(Error::TooManyEnvs)?;
        let mut space = AddressSpace::new(&mut self.pages, &mut self.machine, &self.kernel_mappings)?;
        let quota = self.default_quota;
        if let Err(error) = self.load(id, &mut space, &program, file.data, args, quota) {
            space.destroy(&mut self.pages, &mut self.machine, id);
            self.pages.release_env(id);
            return Err(error);
        }
        let name: String = path.trim_start_matches('/').chars().take(32).collect();
        self.log(format_args!("env {:08x} ({name}) started", id.0));
        let frame = TrapFrame::new_user(program.entry, STACK_TOP, ARGS_VA);
        self.envs.insert(Env {
            id,
            parent,
            name,
            space,
            frame,
            quota,
            privileged,
            wakeup: None,
            sleeping: false,
            cpu_ticks: 0,
            runs: 0,
        });
        Ok(id)
    }

    /// What `id` may still take of its `quota`: pages charged to it and its page tables count.
    fn budget(&self, id: EnvId, space: &AddressSpace, quota: usize) -> usize {
        quota.saturating_sub(self.pages.charged_to(id) + space.tables())
    }

    /// Maps a fresh zeroed page of `id`'s at `va` and returns it.
    fn map_fresh(&mut self, id: EnvId, space: &mut AddressSpace, va: usize, flags: PteFlags, quota: usize) -> Result<Page, Error> {
        let page = self.pages.alloc(id, quota.saturating_sub(space.tables()))?;
        self.machine.zero(page);
        let budget = self.budget(id, space, quota);
        space.insert_pte(&mut self.pages, &mut self.machine, id, va, page, flags, budget)?;
        Ok(page)
    }

    fn load(
        &mut self,
        id: EnvId,
        space: &mut AddressSpace,
        program: &program::Program,
        file: &[u8],
        args: &[u8],
        quota: usize,
    ) -> Result<(), Error> {
        for segment in &program.segments {
            let mut flags = PteFlags::empty();
            if segment.writable {
                flags |= PteFlags::WRITE;
            }
            if segment.executable {
                flags |= PteFlags::EXECUTE;
            }
            let file_start = segment.va;
            let file_end = segment.va + segment.file.len();
            for va in segment.pages().step_by(PAGE_SIZE) {
                let page = self.map_fresh(id, space, va, flags, quota)?;
                let from = va.max(file_start);
                let to = (va + PAGE_SIZE).min(file_end);
                if from < to {
                    let offset = segment.file.start + (from - segment.va);
                    self.machine.write(page, from - va, &file[offset..offset + (to - from)]);
                }
            }
        }
        for n in 1..=STACK_PAGES {
            self.map_fresh(id, space, STACK_TOP - n * PAGE_SIZE, PteFlags::WRITE, quota)?;
        }
        let page = self.map_fresh(id, space, ARGS_VA, PteFlags::empty(), quota)?;
        self.machine.write(page, 0, &(args.len() as u64).to_le_bytes());
        self.machine.write(page, 8, args);
        self.pages.grant(KERNEL_HOLDER, self.ticks_page, id, Rights::READ)?;
        let budget = self.budget(id, space, quota);
        space.insert_pte(&mut self.pages, &mut self.machine, id, TICKS_VA, self.ticks_page, PteFlags::empty(), budget)?;
        Ok(())
    }

    /// Ends environment `id`, releasing every page right and mapping it held.
    pub fn destroy(&mut self, id: EnvId, status: EnvStatus, why: &str) {
        let Some(mut env) = self.envs.remove(id, status) else { return };
        self.machine.use_kernel_page_table();
        self.drop_wakeup(env.wakeup.take());
        self.release_network(id);
        env.space.destroy(&mut self.pages, &mut self.machine, id);
        self.pages.release_env(id);
        let usage = (env.cpu_ticks, env.runs);
        match status {
            EnvStatus::Exited(code) => self.log(format_args!(
                "env {:08x} ({}) exited with status {code} (cpu ticks {}, runs {})",
                id.0, env.name, usage.0, usage.1
            )),
            _ => self.log(format_args!("env {:08x} ({}) killed: {why}", id.0, env.name)),
        }
    }

    /// When the last environment has ended: lets the NICs finish the frames they hold (so
    /// their pages come back), then logs what is left -- which should be nothing.
    pub fn final_report(&mut self) {
        for _ in 0..10_000 {
            if self.net.frames_pending() == 0 {
                break;
            }
            for nic in 0..self.net.nics.len() {
                self.poll_nic(nic);
            }
            core::hint::spin_loop();
        }
        let (free, boot) = (self.pages.free_count(), self.boot_free_pages);
        let (filters, rings, frames) = (self.net.dpf.len(), self.net.rings.len(), self.net.frames_pending());
        let unmatched = self.net.unmatched;
        self.log(format_args!(
            "all environments have ended; free pages {free} (at boot {boot}); filters {filters}, rings {rings}, frames pending {frames}, unmatched frames {unmatched}"
        ));
    }

    /// The environment to run next, round-robin after the current one. A sleeping
    /// environment is a candidate only once its wakeup predicate holds.
    pub fn pick_next(&mut self) -> Option<EnvId> {
        let candidates: alloc::vec::Vec<EnvId> = self.envs.round_robin(self.current).collect();
        for id in candidates {
            let env = self.envs.get_mut(id).expect("round_robin yields live environments");
            if env.sleeping {
                let awake = env.wakeup.as_mut().is_none_or(|wakeup| self.machine.wake_check(wakeup));
                if !awake {
                    continue;
                }
                env.sleeping = false;
            }
            env.runs += 1;
            self.current = Some(id);
            return Some(id);
        }
        None
    }

    /// A timer interrupt: advances the tick counter, charges the running environment, and
    /// polls every NIC (so a lost or unrouted NIC interrupt delays frames by one tick at most,
    /// instead of stranding them).
    pub fn timer_tick(&mut self, interrupted: Option<EnvId>) {
        let mut word = [0u8; 8];
        self.machine.read(self.ticks_page, 0, &mut word);
        let ticks = u64::from_le_bytes(word) + 1;
        self.machine.write(self.ticks_page, 0, &ticks.to_le_bytes());
        if let Some(env) = interrupted.and_then(|id| self.envs.get_mut(id)) {
            env.cpu_ticks += 1;
        }
        for nic in 0..self.net.nics.len() {
            self.poll_nic(nic);
        }
    }

    fn drop_wakeup(&mut self, wakeup: Option<crate::wk::Wakeup>) {
        if let Some(wakeup) = wakeup {
            if let Some(handle) = wakeup.code {
                self.machine.release_code(handle);
            }
            wakeup.release(&mut self.pages);
        }
    }

    fn sys_wk_install(&mut self, caller: EnvId, ptr: usize, len: usize) -> Result<usize, Error> {
        let mut buffer = alloc::vec![0u8; wkpred::MAX_ENCODED_LEN];
        let len = self.copy_in(caller, ptr, len, &mut buffer)?.len();
        let fresh = if len == 0 {
            None
        } else {
            let env = self.envs.get(caller).ok_or(Error::NoSuchEnv)?;
            Some(crate::wk::Wakeup::install(&env.space, &mut self.pages, &self.machine, &buffer[..len])?)
        };
        let env = self.envs.get_mut(caller).ok_or(Error::NoSuchEnv)?;
        let old = core::mem::replace(&mut env.wakeup, fresh);
        self.drop_wakeup(old);
        Ok(0)
    }

    /// Handles the syscall in the current environment's saved frame, writing the result into
    /// its `rax` (0 or an error code) and `rdx` (the value).
    pub fn syscall(&mut self, caller: EnvId) -> Next {
        let Some(env) = self.envs.get(caller) else { return Next::Schedule };
        let f = env.frame;
        let (number, args) = (f.rax as usize, [f.rdi, f.rsi, f.rdx, f.r10, f.r8].map(|a| a as usize));
        let (result, next) = match Syscall::from_number(number) {
            None => (Err(Error::NoSuchCall), Next::Resume),
            Some(Syscall::EnvYield) => (Ok(0), Next::Schedule),
            Some(Syscall::WkSleep) => {
                let env = self.envs.get_mut(caller).expect("checked above");
                env.sleeping = env.wakeup.is_some();
                (Ok(0), Next::Schedule)
            }
            Some(Syscall::EnvExit) => {
                self.destroy(caller, EnvStatus::Exited(args[0] as u32), "");
                return Next::Schedule;
            }
            Some(call) => (self.dispatch(caller, call, args), Next::Resume),
        };
        if let Some(env) = self.envs.get_mut(caller) {
            match result {
                Ok(value) => (env.frame.rax, env.frame.rdx) = (0, value as u64),
                Err(error) => (env.frame.rax, env.frame.rdx) = (error as u64, 0),
            }
        }
        next
    }

    fn dispatch(&mut self, caller: EnvId, call: Syscall, a: [usize; 5]) -> Result<usize, Error> {
        match call {
            Syscall::ConsoleWrite => self.sys_console_write(caller, a[0], a[1]),
            Syscall::Time => Ok(self.machine.now_ns() as usize),
            Syscall::EnvId => Ok(caller.0 as usize),
            Syscall::EnvSpawn => self.sys_env_spawn(caller, a[0], a[1], a[2], a[3], a[4]),
            Syscall::EnvKill => self.sys_env_kill(caller, a[0]),
            Syscall::EnvStatus => self.sys_env_status(a[0]),
            Syscall::PageAlloc => {
                let env = self.envs.get(caller).ok_or(Error::NoSuchEnv)?;
                let page = self.pages.alloc(caller, env.quota.saturating_sub(env.space.tables()))?;
                // Pages come back from other environments, page tables and rings: never hand
                // out old contents.
                self.machine.zero(page);
                Ok(page.0)
            }
            Syscall::PageGrant => self.sys_page_grant(caller, a[0], a[1], a[2]),
            Syscall::PageFree => self.pages.free(caller, Page(a[0])).map(|()| 0),
            Syscall::InsertPte => self.sys_insert_pte(caller, a[0], a[1], a[2]),
            Syscall::RemovePte => {
                let env = self.envs.get(caller).ok_or(Error::NoSuchEnv)?;
                env.space.remove_pte(&mut self.pages, &mut self.machine, caller, a[0]).map(|()| 0)
            }
            Syscall::PageStats => Ok(self.pages.free_count()),
            Syscall::NicInfo => self.sys_nic_info(a[0]),
            Syscall::DpfInsert => self.sys_dpf_insert(caller, a[0], a[1], a[2], a[3]),
            Syscall::DpfDelete => self.sys_dpf_delete(caller, a[0]),
            Syscall::DpfRef => self.sys_dpf_ref(caller, a[0], a[1]),
            Syscall::NetXmit => self.sys_net_xmit(caller, a[0], a[1], a[2], a[3]),
            Syscall::PktringSetring => {
                let geometry = RingGeometry { va: a[0], entry_count: a[1], entry_size: a[2], counter: a[3] };
                self.sys_pktring_setring(caller, geometry)
            }
            Syscall::PktringModring => {
                let geometry = RingGeometry { va: a[1], entry_count: a[2], entry_size: a[3], counter: a[4] };
                self.sys_pktring_modring(caller, a[0], geometry)
            }
            Syscall::PktringDelring => self.sys_pktring_delring(caller, a[0]),
            Syscall::PktringStats => self.sys_pktring_stats(caller, a[0]),
            Syscall::WkInstall => self.sys_wk_install(caller, a[0], a[1]),
            Syscall::EnvYield | Syscall::EnvExit | Syscall::WkSleep => unreachable!("handled in syscall()"),
        }
    }

    /// Copies `len` (at most `max`) bytes of the caller's memory at `ptr` into `buffer`.
    fn copy_in<'b>(&self, caller: EnvId, ptr: usize, len: usize, buffer: &'b mut [u8]) -> Result<&'b [u8], Error> {
        let buffer = buffer.get_mut(..len).ok_or(Error::BadLength)?;
        let env = self.envs.get(caller).ok_or(Error::NoSuchEnv)?;
        env.space.copy_from_user(&self.machine, ptr, buffer)?;
        Ok(buffer)
    }

    fn sys_console_write(&mut self, caller: EnvId, ptr: usize, len: usize) -> Result<usize, Error> {
        let mut buffer = [0u8; CONSOLE_WRITE_MAX];
        let len = self.copy_in(caller, ptr, len, &mut buffer)?.len();
        self.machine.console_write(&buffer[..len]);
        Ok(len)
    }

    fn sys_env_spawn(&mut self, caller: EnvId, path: usize, path_len: usize, args: usize, args_len: usize, flags: usize) -> Result<usize, Error> {
        let privileged = match flags {
            0 => false,
            SPAWN_PRIVILEGED if self.envs.get(caller).is_some_and(|env| env.privileged) => true,
            SPAWN_PRIVILEGED => return Err(Error::NotPermitted),
            _ => return Err(Error::BadFlags),
        };
        let mut path_buffer = [0u8; PATH_MAX];
        let path_len = self.copy_in(caller, path, path_len, &mut path_buffer)?.len();
        let mut args_buffer = [0u8; ARGS_MAX];
        let args_len = self.copy_in(caller, args, args_len, &mut args_buffer)?.len();
        let path = core::str::from_utf8(&path_buffer[..path_len]).map_err(|_| Error::NotFound)?.to_string();
        self.spawn(Some(caller), &path, &args_buffer[..args_len], privileged).map(|id| id.0 as usize)
    }

    fn sys_env_kill(&mut self, caller: EnvId, target: usize) -> Result<usize, Error> {
        let target = EnvId(u32::try_from(target).map_err(|_| Error::NoSuchEnv)?);
        let env = self.envs.get(target).ok_or(Error::NoSuchEnv)?;
        if env.parent != Some(caller) {
            return Err(Error::NotPermitted);
        }
        let why = alloc::format!("by its parent {:08x}", caller.0);
        self.destroy(target, EnvStatus::Killed(KILLED_BY_PARENT), &why);
        Ok(0)
    }

    fn sys_env_status(&self, target: usize) -> Result<usize, Error> {
        let target = EnvId(u32::try_from(target).map_err(|_| Error::NoSuchEnv)?);
        self.envs.status(target).map(EnvStatus::to_word).ok_or(Error::NoSuchEnv)
    }

    fn sys_page_grant(&mut self, caller: EnvId, page: usize, to: usize, rights: usize) -> Result<usize, Error> {
        let rights = u8::try_from(rights).ok().and_then(Rights::from_bits).ok_or(Error::BadFlags)?;
        let to = EnvId(u32::try_from(to).map_err(|_| Error::NoSuchEnv)?);
        if self.envs.get(to).is_none() {
            return Err(Error::NoSuchEnv);
        }
        self.pages.grant(caller, Page(page), to, rights).map(|()| 0)
    }

    fn sys_insert_pte(&mut self, caller: EnvId, va: usize, page: usize, flags: usize) -> Result<usize, Error> {
        let flags = PteFlags::from_bits(flags as u64).ok_or(Error::BadFlags)?;
        let env = self.envs.get(caller).ok_or(Error::NoSuchEnv)?;
        let budget = self.budget(caller, &env.space, env.quota);
        let env = self.envs.get_mut(caller).ok_or(Error::NoSuchEnv)?;
        env.space.insert_pte(&mut self.pages, &mut self.machine, caller, va, Page(page), flags, budget).map(|()| 0)
    }
}

mod net;
#[cfg(test)]
mod net_tests;
#[cfg(test)]
mod tests;
