//! The kernel proper: environments, memory and the syscall dispatcher, over a [`Machine`].
//!
//! Everything here is plain Rust. The bare-metal glue (`arch`) saves an environment's registers
//! into its [`Env::frame`], calls [`Kernel::syscall`] or one of the event handlers, and then runs
//! whichever environment [`Kernel::pick_next`] names. Host tests drive the same code with a
//! fake machine.

use crate::account::{Accounts, Resources, cost};
use crate::env::{Env, EnvTable, MAX_ENVS};
use xok_abi::initrd::Initrd;
use crate::net::ring::RingGeometry;
use crate::ownership::{Page, PageOwnership};
use crate::program;
use crate::trapframe::TrapFrame;
use crate::vm::{AddressSpace, KernelMappings, PhysMem};
use alloc::string::{String, ToString};
use core::fmt::Write;
use xok_abi::layout::{ARGS_VA, PAGE_SIZE, STACK_PAGES, STACK_TOP, TICKS_VA};
use xok_abi::{
    ARGS_MAX, CONSOLE_WRITE_MAX, EnvId, EnvStatus, Error, KILLED_BY_PARENT, PATH_MAX, PteFlags, Rights, Stat,
    Syscall, parse_spawn_flags,
};

/// How the kernel heap is used (the bare metal's allocator; a fixed size in host tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapUse {
    /// Bytes in use.
    pub used: usize,
    /// Most bytes ever in use at once.
    pub peak: usize,
    /// Size of the heap.
    pub size: usize,
}

/// How long interrupts were held off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InterruptStats {
    /// Timer ticks missed since boot (the clock says more ticks were due than arrived).
    pub lost_ticks: u64,
    /// The longest stretch with interrupts off, in nanoseconds.
    pub max_off_ns: u64,
    /// What the kernel was doing then: `0x100 + n` for syscall `n`, an interrupt or exception
    /// vector below `0x100`, 0 for its own work (scheduling, installing compiled code).
    pub max_off_cause: u64,
    /// Stretches with interrupts off for at least 1 ms.
    pub off_over_1ms: u64,
    /// Stretches with interrupts off for at least 10 ms (a timer tick or more).
    pub off_over_10ms: u64,
    /// Time the CPU spent halted with nothing to run, in nanoseconds since boot.
    pub idle_ns: u64,
}

/// What the kernel needs from the hardware besides physical memory.
pub trait Machine: PhysMem {
    /// Writes bytes to the console.
    fn console_write(&mut self, bytes: &[u8]);
    /// Whether the console is at the start of a line (the last byte written was a newline,
    /// or nothing was written).
    fn console_at_line_start(&self) -> bool;
    /// Nanoseconds since boot.
    fn now_ns(&self) -> u64;
    /// Loads the kernel's own page table, so an environment's tables can be freed safely.
    fn use_kernel_page_table(&mut self);
    /// Evaluates an installed wakeup predicate: its native code once compiled (loaded with
    /// [`Machine::load_code`] on first use and remembered in `wakeup.code`), the interpreter
    /// until then. (The predicate reads user memory through the kernel's physical map, so
    /// only the machine can run its code.)
    fn wake_check(&mut self, wakeup: &mut crate::wk::Wakeup) -> bool;
    /// Copies `bytes` (position-independent code without relocations, entry at offset 0)
    /// into executable memory. `None` if there is no room.
    ///
    /// Contract (callers rely on it for soundness): the returned `entry` points to an
    /// executable copy of `bytes` that stays mapped and unchanged until the same
    /// [`LoadedCode`] is passed to [`Machine::release_code`].
    fn load_code(&mut self, bytes: &[u8]) -> Option<LoadedCode>;
    /// Frees code loaded by [`Machine::load_code`].
    fn release_code(&mut self, code: LoadedCode);
    /// The kernel heap's use.
    fn heap_use(&self) -> HeapUse;
    /// Lost ticks and the longest interrupts-off stretch.
    fn interrupt_stats(&self) -> InterruptStats;
    /// Starts the profile over (`Syscall::KernelProfile`): zeroes the time per cause and the
    /// samples, and samples from now on.
    fn profile_start(&mut self);
    /// Nanoseconds spent in the kernel for cause number `cause` (`xok_abi::profile::Cause`)
    /// since [`Machine::profile_start`].
    fn profile_cause_ns(&self, cause: usize) -> u64;
    /// Sample number `n` since [`Machine::profile_start`] (the environment the timer found
    /// running and its instruction pointer), if kept.
    fn profile_sample(&self, n: usize) -> Option<(EnvId, u64)>;
    /// A timestamp for [`Machine::profile_part`] (0 where nothing is timed).
    fn profile_mark(&self) -> u64;
    /// Counts the time since `mark` as cause number `part` (`xok_abi::profile`), taking it out
    /// of the cause the kernel was entered for.
    fn profile_part(&mut self, part: u64, mark: u64);
}

/// Code the machine copied into executable memory ([`Machine::load_code`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadedCode {
    /// The machine's name for it.
    pub handle: u64,
    /// Where it starts.
    pub entry: usize,
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
    /// The quota tree.
    pub accounts: Accounts,
    /// Free pages before the first environment started.
    pub boot_free_pages: usize,
    /// Rings, filters and send queues.
    pub net: net::Network,
    /// Who runs next.
    pub sched: sched::Scheduler,
    /// Program text on its way to the console (see `crate::console`).
    console: crate::console::ProgramText,
    /// Compiles waiting to run outside the kernel's critical section.
    pub jobs: jobs::JobQueue,
    /// Environments an `env_kill` ended that are still to be torn down (one per teardown
    /// step), with the reason for the log. They never run again meanwhile.
    dying: alloc::collections::VecDeque<(EnvId, String)>,
    /// Ended environments whose page rights are still being dropped ([`RELEASE_BATCH`] per
    /// teardown step).
    releasing: alloc::collections::VecDeque<EnvId>,
    /// The tick-counter page, held read-only by every environment.
    ticks_page: Page,
    kernel_mappings: KernelMappings,
    initrd: Initrd<'static>,
    /// The initrd's first physical page, once its pages are public ([`Kernel::share_initrd`]).
    initrd_page: Option<Page>,
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
        let root = root_resources(free, machine.heap_use());
        Kernel {
            pages,
            machine,
            envs: EnvTable::new(),
            current: None,
            accounts: Accounts::new(root),
            boot_free_pages: free,
            net,
            sched: sched::Scheduler::default(),
            console: crate::console::ProgramText::default(),
            jobs: jobs::JobQueue::default(),
            dying: alloc::collections::VecDeque::new(),
            releasing: alloc::collections::VecDeque::new(),
            ticks_page,
            kernel_mappings,
            initrd,
            initrd_page: None,
        }
    }

    /// Boot is over (the drivers have taken their pages and heap): what is free now is what
    /// the root of the quota tree gives away.
    pub fn finish_boot(&mut self) {
        self.boot_free_pages = self.pages.free_count();
        self.accounts.root = root_resources(self.boot_free_pages, self.machine.heap_use());
    }

    /// Writes a kernel log line (`xok: ...`), on a line of its own.
    pub fn log(&mut self, args: core::fmt::Arguments<'_>) {
        let held = self.console.flush();
        self.machine.console_write(&held);
        if !self.machine.console_at_line_start() {
            self.machine.console_write(b"\n");
        }
        let mut console = Console(&mut self.machine);
        let _ = console.write_str("xok: ");
        let _ = console.write_fmt(args);
        let _ = console.write_str("\n");
    }

    /// Starts `path` with the NUL-separated words `args` as a child of `parent`, with `share`
    /// (1/`SPAWN_SHARE_WHOLE`ths, 0 for the default) of the parent's available resources.
    pub fn spawn(&mut self, parent: Option<EnvId>, path: &str, args: &[u8], privileged: bool, share: usize) -> Result<EnvId, Error> {
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
        let parent_external = parent.map_or(Resources::ZERO, |p| self.external(p, self.live_tables(p)));
        let parent_tickets = parent.map(|p| (p, self.accounts.tickets(p)));
        // Where the child starts: no earlier than its parent now (before the parent's pass is
        // rescaled for the tickets it gives away).
        let parent_pass = parent.and_then(|p| self.envs.get(p)).map_or(0, |env| env.pass);
        self.accounts.open(parent, id, crate::account::share_of(share), parent_external)?;
        if let Some((p, before)) = parent_tickets {
            self.retune(p, before);
        }
        let loaded = self.new_space(id).and_then(|mut space| match self.load(id, &mut space, &program, file.data, args) {
            Ok(()) => Ok(space),
            Err(error) => {
                space.destroy(&mut self.pages, &mut self.machine, id);
                Err(error)
            }
        });
        let space = match loaded {
            Ok(space) => space,
            Err(error) => {
                self.pages.release_env(id);
                self.close_account(id);
                return Err(error);
            }
        };
        let name: String = path.trim_start_matches('/').chars().take(32).collect();
        self.log(format_args!("env {:08x} ({name}) started", id.0));
        let frame = TrapFrame::new_user(program.entry, STACK_TOP, ARGS_VA);
        self.envs.insert(Env {
            id,
            name,
            space,
            frame,
            privileged,
            wakeup: None,
            sleeping: false,
            pass: 0,
            checking: false,
            timer: None,
            dying: false,
            cpu_ticks: 0,
            runs: 0,
        });
        self.sched_add(id, parent_pass);
        Ok(id)
    }

    /// A fresh address space for `id`, if its quota has room for the two top-level tables.
    fn new_space(&mut self, id: EnvId) -> Result<AddressSpace, Error> {
        if self.page_budget(id, 0) < SPACE_ROOT_PAGES {
            return Err(Error::QuotaExceeded);
        }
        AddressSpace::new(&mut self.pages, &mut self.machine, &self.kernel_mappings)
    }

    /// Page tables (with the two top-level ones) of live environment `id`; 0 once it ended.
    fn live_tables(&self, id: EnvId) -> usize {
        self.envs.get(id).map_or(0, |env| env.space.tables() + SPACE_ROOT_PAGES)
    }

    /// What `id`'s objects use that the accounts do not record themselves (see
    /// [`external_use`]), with `tables` page tables of its own.
    fn external(&self, id: EnvId, tables: usize) -> Resources {
        external_use(&self.pages, id, tables)
    }

    /// What `id` may still take, with `tables` page tables of its own.
    fn available(&self, id: EnvId, tables: usize) -> Resources {
        self.accounts.available(Some(id), self.external(id, tables))
    }

    /// Pages `id` may still take, with `tables` page tables of its own.
    fn page_budget(&self, id: EnvId, tables: usize) -> usize {
        self.available(id, tables).pages
    }

    /// Charges kernel objects to `id`'s account (`QuotaExceeded` if they do not fit).
    pub(crate) fn charge(&mut self, id: EnvId, amount: Resources) -> Result<(), Error> {
        let external = self.external(id, self.live_tables(id));
        self.accounts.charge(id, amount, external)
    }

    /// Returns a charge: the object is gone. Closes accounts this was the last charge of.
    pub(crate) fn credit(&mut self, id: EnvId, amount: Resources) {
        self.accounts.credit(id, amount);
        self.reap();
    }

    /// `id` has ended: its account closes (a zombie until nothing is charged to it) and its
    /// tickets go back to its nearest live ancestor.
    fn close_account(&mut self, id: EnvId) {
        let heir = self.accounts.live_ancestor(id).map(|up| (up, self.accounts.tickets(up)));
        self.accounts.close(id);
        if let Some((up, before)) = heir {
            self.retune(up, before);
        }
        self.reap();
    }

    /// Closes the accounts of ended environments that nothing is charged to any more.
    pub(crate) fn reap(&mut self) {
        let pages = &self.pages;
        self.accounts.reap(|id| external_use(pages, id, 0));
    }

    /// Maps a fresh zeroed page of `id`'s at `va` and returns it.
    fn map_fresh(&mut self, id: EnvId, space: &mut AddressSpace, va: usize, flags: PteFlags) -> Result<Page, Error> {
        if self.page_budget(id, space.tables() + SPACE_ROOT_PAGES) == 0 {
            return Err(Error::QuotaExceeded);
        }
        let page = self.pages.alloc(id, usize::MAX)?;
        self.machine.zero(page);
        let budget = self.page_budget(id, space.tables() + SPACE_ROOT_PAGES);
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
                let page = self.map_fresh(id, space, va, flags)?;
                let from = va.max(file_start);
                let to = (va + PAGE_SIZE).min(file_end);
                if from < to {
                    let offset = segment.file.start + (from - segment.va);
                    self.machine.write(page, from - va, &file[offset..offset + (to - from)]);
                }
            }
        }
        for n in 1..=STACK_PAGES {
            self.map_fresh(id, space, STACK_TOP - n * PAGE_SIZE, PteFlags::WRITE)?;
        }
        let page = self.map_fresh(id, space, ARGS_VA, PteFlags::empty())?;
        self.machine.write(page, 0, &(args.len() as u64).to_le_bytes());
        self.machine.write(page, 8, args);
        self.pages.grant(KERNEL_HOLDER, self.ticks_page, id, Rights::READ)?;
        let budget = self.page_budget(id, space.tables() + SPACE_ROOT_PAGES);
        space.insert_pte(&mut self.pages, &mut self.machine, id, TICKS_VA, self.ticks_page, PteFlags::empty(), budget)?;
        Ok(())
    }

    /// Ends environment `id`, releasing every page right and mapping it held. Its account
    /// stays open while something it caused still costs (see `account.rs`).
    pub fn destroy(&mut self, id: EnvId, status: EnvStatus, why: &str) {
        let Some(mut env) = self.envs.remove(id, status) else { return };
        self.sched_remove(id);
        self.jobs.forget_env(id);
        self.machine.use_kernel_page_table();
        self.drop_wakeup(id, env.wakeup.take());
        self.release_network(id);
        env.space.destroy(&mut self.pages, &mut self.machine, id);
        // The rights it held go now if they are few, else in teardown steps.
        if self.pages.release_env_some(id, RELEASE_BATCH) > 0 {
            self.releasing.push_back(id);
        }
        self.close_account(id);
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
        self.reap();
        let (free, boot) = (self.pages.free_count(), self.boot_free_pages);
        let (filters, rings, frames) = (self.net.dpf.len(), self.net.rings.len(), self.net.frames_pending());
        let (unmatched, shapes) = (self.net.unmatched, self.net.dpf.group_count());
        let (accounts, charged) = (self.accounts.len(), self.accounts.heap_charged());
        let heap = self.machine.heap_use();
        let irq = self.machine.interrupt_stats();
        self.log(format_args!(
            "all environments have ended; free pages {free} (at boot {boot}); filters {filters}, rings {rings}, frames pending {frames}, unmatched frames {unmatched}; shapes {shapes}, accounts {accounts}, heap charged {charged}"
        ));
        self.log(format_args!(
            "heap used {} of {} bytes (peak {}); interrupts off at most {} us (cause {:#x}), {} times for 1 ms or more, {} times for 10 ms or more; lost ticks {}",
            heap.used,
            heap.size,
            heap.peak,
            irq.max_off_ns / 1000,
            irq.max_off_cause,
            irq.off_over_1ms,
            irq.off_over_10ms,
            irq.lost_ticks
        ));
    }

    fn drop_wakeup(&mut self, owner: EnvId, wakeup: Option<crate::wk::Wakeup>) {
        if let Some(wakeup) = wakeup {
            if let Some(code) = wakeup.code {
                self.machine.release_code(code);
            }
            let charge = wakeup.charge();
            wakeup.release(&mut self.pages);
            self.credit(owner, Resources::heap(charge));
        }
    }

    /// Installs a predicate (interpreted at first) and queues its compile, which runs on the
    /// caller's time with interrupts enabled before the caller resumes.
    fn sys_wk_install(&mut self, caller: EnvId, ptr: usize, len: usize) -> Result<usize, Error> {
        let mut buffer = alloc::vec![0u8; wkpred::MAX_ENCODED_LEN];
        let len = self.copy_in(caller, ptr, len, &mut buffer)?.len();
        let fresh = if len == 0 {
            None
        } else {
            let env = self.envs.get(caller).ok_or(Error::NoSuchEnv)?;
            let wakeup = crate::wk::Wakeup::decode(&env.space, &self.machine, &buffer[..len])?;
            self.charge(caller, Resources::heap(wakeup.charge()))?;
            Some(wakeup.pin(&mut self.pages))
        };
        let env = self.envs.get_mut(caller).ok_or(Error::NoSuchEnv)?;
        let old = core::mem::replace(&mut env.wakeup, fresh);
        self.drop_wakeup(caller, old);
        if let Some(predicate) = self.envs.get(caller).and_then(|env| env.wakeup.as_ref()).map(|w| w.predicate.clone()) {
            let serial = self.jobs.push_predicate(caller, predicate);
            if let Some(wakeup) = self.envs.get_mut(caller).and_then(|env| env.wakeup.as_mut()) {
                wakeup.serial = serial;
            }
        }
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
            Some(call) => self.dispatch(caller, call, args),
        };
        // An environment that ended in its call (`env_exit`) gets no result.
        if let Some(env) = self.envs.get_mut(caller) {
            match result {
                Ok(value) => (env.frame.rax, env.frame.rdx) = (0, value as u64),
                Err(error) => (env.frame.rax, env.frame.rdx) = (error as u64, 0),
            }
        }
        next
    }

    /// The syscall table: each call's handler (`sys_<object>_<verb>`), the arguments it takes,
    /// and whether the caller resumes or the scheduler picks who runs next.
    fn dispatch(&mut self, caller: EnvId, call: Syscall, a: [usize; 5]) -> (Result<usize, Error>, Next) {
        use Next::{Resume, Schedule};
        match call {
            Syscall::ConsoleWrite => (self.sys_console_write(caller, a[0], a[1]), Resume),
            Syscall::Time => (self.sys_time_now(), Resume),
            Syscall::EnvId => (self.sys_env_id(caller), Resume),
            Syscall::EnvYield => (self.sys_env_yield(), Schedule),
            Syscall::EnvExit => (self.sys_env_exit(caller, a[0]), Schedule),
            Syscall::EnvSpawn => (self.sys_env_spawn(caller, a[0], a[1], a[2], a[3], a[4]), Resume),
            // The teardown runs before the caller does again, so it sees its victims gone.
            Syscall::EnvKill => (self.sys_env_kill(caller, a[0]), Schedule),
            Syscall::EnvStatus => (self.sys_env_status(a[0]), Resume),
            Syscall::PageAlloc => (self.sys_page_alloc(caller), Resume),
            Syscall::PageGrant => (self.sys_page_grant(caller, a[0], a[1], a[2]), Resume),
            Syscall::PageFree => (self.sys_page_free(caller, a[0]), Resume),
            Syscall::PageStats => (self.sys_page_stats(), Resume),
            Syscall::InsertPte => (self.sys_pte_insert(caller, a[0], a[1], a[2]), Resume),
            Syscall::RemovePte => (self.sys_pte_remove(caller, a[0]), Resume),
            Syscall::NicInfo => (self.sys_nic_info(a[0]), Resume),
            Syscall::PktringSetring => {
                let geometry = RingGeometry { va: a[0], entry_count: a[1], entry_size: a[2], counter: a[3] };
                (self.sys_pktring_setring(caller, geometry), Resume)
            }
            Syscall::PktringModring => {
                let geometry = RingGeometry { va: a[1], entry_count: a[2], entry_size: a[3], counter: a[4] };
                (self.sys_pktring_modring(caller, a[0], geometry), Resume)
            }
            Syscall::PktringDelring => (self.sys_pktring_delring(caller, a[0]), Resume),
            Syscall::PktringStats => (self.sys_pktring_stats(caller, a[0]), Resume),
            Syscall::DpfInsert => (self.sys_dpf_insert(caller, a[0], a[1], a[2], a[3]), Resume),
            Syscall::DpfDelete => (self.sys_dpf_delete(caller, a[0]), Resume),
            Syscall::DpfRef => (self.sys_dpf_ref(caller, a[0], a[1]), Resume),
            Syscall::NetXmit => (self.sys_net_xmit(caller, a[0], a[1], a[2], a[3], a[4]), Resume),
            Syscall::WkInstall => (self.sys_wk_install(caller, a[0], a[1]), Resume),
            Syscall::WkSleep => (self.sys_wk_sleep(caller), Schedule),
            Syscall::KernelStats => (self.sys_kernel_stats(caller, a[0]), Resume),
            Syscall::KernelProfile => (self.sys_kernel_profile(caller, a[0], a[1], a[2], a[3]), Resume),
        }
    }

    fn sys_time_now(&self) -> Result<usize, Error> {
        Ok(self.machine.now_ns() as usize)
    }

    fn sys_env_id(&self, caller: EnvId) -> Result<usize, Error> {
        Ok(caller.0 as usize)
    }

    /// Gives up the rest of the time slice: the table sends the caller to the scheduler.
    fn sys_env_yield(&self) -> Result<usize, Error> {
        Ok(0)
    }

    fn sys_page_stats(&self) -> Result<usize, Error> {
        Ok(self.pages.free_count())
    }

    fn sys_env_exit(&mut self, caller: EnvId, status: usize) -> Result<usize, Error> {
        self.destroy(caller, EnvStatus::Exited(status as u32), "");
        Ok(0)
    }

    fn sys_page_free(&mut self, caller: EnvId, page: usize) -> Result<usize, Error> {
        self.pages.free(caller, Page(page))?;
        self.reap();
        Ok(0)
    }

    fn sys_pte_remove(&mut self, caller: EnvId, va: usize) -> Result<usize, Error> {
        let env = self.envs.get(caller).ok_or(Error::NoSuchEnv)?;
        env.space.remove_pte(&mut self.pages, &mut self.machine, caller, va).map(|page| page.0)
    }

    fn sys_wk_sleep(&mut self, caller: EnvId) -> Result<usize, Error> {
        self.sleep(caller);
        Ok(0)
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
        let text = self.console.filter(&buffer[..len], self.machine.console_at_line_start());
        self.machine.console_write(&text);
        Ok(len)
    }

    fn sys_env_spawn(&mut self, caller: EnvId, path: usize, path_len: usize, args: usize, args_len: usize, flags: usize) -> Result<usize, Error> {
        let (privileged, share) = parse_spawn_flags(flags).ok_or(Error::BadFlags)?;
        if privileged && !self.envs.get(caller).is_some_and(|env| env.privileged) {
            return Err(Error::NotPermitted);
        }
        let mut path_buffer = [0u8; PATH_MAX];
        let path_len = self.copy_in(caller, path, path_len, &mut path_buffer)?.len();
        let mut args_buffer = [0u8; ARGS_MAX];
        let args_len = self.copy_in(caller, args, args_len, &mut args_buffer)?.len();
        let path = core::str::from_utf8(&path_buffer[..path_len]).map_err(|_| Error::NotFound)?.to_string();
        self.spawn(Some(caller), &path, &args_buffer[..args_len], privileged, share).map(|id| id.0 as usize)
    }

    /// Makes the initrd's pages, from `first` on, public (`PageOwnership::add_public`): every
    /// program may then map its files read-only (`Stat::InitrdPage`, `Stat::InitrdBytes`).
    /// The initrd must start at `first` and its last page must hold nothing else.
    pub fn share_initrd(&mut self, first: Page) {
        for n in 0..self.initrd.len().div_ceil(PAGE_SIZE) {
            self.pages.add_public(Page(first.0 + n));
        }
        self.initrd_page = Some(first);
    }

    /// Whether environments or filters of ended environments are still to be torn down.
    pub fn teardown_pending(&self) -> bool {
        !self.dying.is_empty() || !self.releasing.is_empty() || self.filter_teardown_pending()
    }

    /// One bounded piece of teardown: a batch of an ended environment's page rights, one
    /// killed environment, or a batch of filters of ended ones. The arch layer lets interrupts in between steps, so killing a tree of hundreds
    /// of environments never holds them off for long.
    pub fn teardown_step(&mut self) {
        if let Some(id) = self.releasing.pop_front() {
            if self.pages.release_env_some(id, RELEASE_BATCH) > 0 {
                self.releasing.push_front(id);
            } else {
                self.reap();
            }
            return;
        }
        match self.dying.pop_front() {
            Some((id, why)) => self.destroy(id, EnvStatus::Killed(KILLED_BY_PARENT), &why),
            None => self.filter_teardown_step(),
        }
    }

    /// Live environments that are not waiting to be torn down.
    pub fn envs_running(&self) -> usize {
        self.envs.alive() - self.dying.len()
    }

    /// Ends `target` and its live descendants, deepest first; the caller must be a strict
    /// ancestor (zombie accounts keep the line unbroken, so orphans stay reachable). They stop
    /// running at once and are torn down in teardown steps, before the caller runs again.
    fn sys_env_kill(&mut self, caller: EnvId, target: usize) -> Result<usize, Error> {
        let target = EnvId(u32::try_from(target).map_err(|_| Error::NoSuchEnv)?);
        if self.envs.get(target).is_none() && self.accounts.get(target).is_none() {
            return Err(Error::NoSuchEnv);
        }
        if !self.accounts.is_ancestor(caller, target) {
            return Err(Error::NotPermitted);
        }
        let mut victims = self.accounts.live_descendants(target);
        if self.envs.get(target).is_some() {
            victims.push(target);
        }
        let why = alloc::format!("by its ancestor {:08x}", caller.0);
        for &victim in &victims {
            if self.dying.iter().any(|(id, _)| *id == victim) {
                continue;
            }
            self.sched_remove(victim);
            if let Some(env) = self.envs.get_mut(victim) {
                env.dying = true;
            }
            self.dying.push_back((victim, why.clone()));
        }
        Ok(victims.len())
    }

    fn sys_page_alloc(&mut self, caller: EnvId) -> Result<usize, Error> {
        if self.page_budget(caller, self.live_tables(caller)) == 0 {
            return Err(Error::QuotaExceeded);
        }
        let page = self.pages.alloc(caller, usize::MAX)?;
        // Pages come back from other environments, page tables and rings: never hand out
        // old contents.
        self.machine.zero(page);
        Ok(page.0)
    }

    fn sys_kernel_stats(&self, caller: EnvId, stat: usize) -> Result<usize, Error> {
        let stat = Stat::from_number(stat).ok_or(Error::BadFlags)?;
        let mine = self.available(caller, self.live_tables(caller));
        let heap = self.machine.heap_use();
        let irq = self.machine.interrupt_stats();
        Ok(match stat {
            Stat::FreePages => self.pages.free_count(),
            Stat::HeapUsed => heap.used,
            Stat::HeapPeak => heap.peak,
            Stat::HeapSize => heap.size,
            Stat::HeapCharged => self.accounts.heap_charged(),
            Stat::Filters => self.net.dpf.len(),
            Stat::Shapes => self.net.dpf.group_count(),
            Stat::Envs => self.envs_running(),
            Stat::Zombies => self.accounts.zombies(),
            Stat::MyPages => mine.pages,
            Stat::MyHeap => mine.heap,
            Stat::MyEnvs => mine.envs,
            Stat::MyShapes => mine.shapes,
            Stat::MyFilters => mine.filters,
            Stat::MyTickets => self.accounts.tickets(caller) as usize,
            Stat::LostTicks => irq.lost_ticks as usize,
            Stat::MaxInterruptsOffNs => irq.max_off_ns as usize,
            Stat::MaxInterruptsOffCause => irq.max_off_cause as usize,
            Stat::InterruptsOffOver1ms => irq.off_over_1ms as usize,
            Stat::InterruptsOffOver10ms => irq.off_over_10ms as usize,
            Stat::DpfCodeStale => usize::from(self.net.classifier.generation() != Some(self.net.dpf.generation())),
            Stat::InitrdPage => self.initrd_page.map_or(0, |page| page.0),
            Stat::InitrdBytes => self.initrd_page.map_or(0, |_| self.initrd.len()),
            Stat::Rings => self.net.rings.len(),
            Stat::IdleNs => irq.idle_ns as usize,
            Stat::UnmatchedFrames => self.net.unmatched as usize,
            Stat::FragmentsRouted => self.net.fragments.counts.routed as usize,
            Stat::FragmentsHeld => self.net.fragments.counts.held as usize,
            Stat::FragmentsDropped => self.net.fragments.counts.dropped as usize,
        })
    }

    /// Starts the profile, or writes up to `len` of its records (time per cause, or samples from
    /// number `first` on) to the caller's memory at `ptr`, a batch at a time.
    fn sys_kernel_profile(&mut self, caller: EnvId, op: usize, ptr: usize, len: usize, first: usize) -> Result<usize, Error> {
        use xok_abi::profile::{MAX_SAMPLES, Op, RECORD_LEN};
        const BATCH: usize = 64;
        if !self.envs.get(caller).is_some_and(|env| env.privileged) {
            return Err(Error::NotPermitted);
        }
        let op = Op::from_number(op).ok_or(Error::BadFlags)?;
        if op == Op::Start {
            self.machine.profile_start();
            return Ok(0);
        }
        let mut position = if op == Op::Samples { first.min(MAX_SAMPLES) } else { 0 };
        let (mut buffer, mut written) = ([0u8; BATCH * RECORD_LEN], 0);
        loop {
            let mut batch = 0;
            while batch < BATCH && written + batch < len {
                let Some(record) = self.profile_record(op, &mut position) else { break };
                buffer[batch * RECORD_LEN..][..RECORD_LEN].copy_from_slice(&record.to_bytes());
                batch += 1;
            }
            if batch == 0 {
                return Ok(written);
            }
            let va = ptr.checked_add(written * RECORD_LEN).ok_or(Error::BadAddress)?;
            let env = self.envs.get(caller).ok_or(Error::NoSuchEnv)?;
            env.space.copy_to_user(&mut self.machine, va, &buffer[..batch * RECORD_LEN])?;
            written += batch;
        }
    }

    /// The profile's next record at `position` (a cause number or a sample number), moving
    /// `position` past it; causes the kernel never ran for are skipped.
    fn profile_record(&self, op: xok_abi::profile::Op, position: &mut usize) -> Option<xok_abi::profile::Record> {
        use xok_abi::profile::{CAUSE_COUNT, Op, Record};
        match op {
            Op::Start => None,
            Op::Causes => {
                while *position < CAUSE_COUNT {
                    let cause = *position;
                    *position += 1;
                    let ns = self.machine.profile_cause_ns(cause);
                    if ns > 0 {
                        return Some(Record { key: cause as u64, value: ns });
                    }
                }
                None
            }
            Op::Samples => {
                let (env, rip) = self.machine.profile_sample(*position)?;
                *position += 1;
                Some(Record { key: u64::from(env.0), value: rip })
            }
        }
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
        let page = Page(page);
        if !self.pages.holds(to, page) && self.available(caller, self.live_tables(caller)).heap < cost::HOLDER {
            return Err(Error::QuotaExceeded);
        }
        self.pages.grant(caller, page, to, rights).map(|()| 0)
    }

    fn sys_pte_insert(&mut self, caller: EnvId, va: usize, page: usize, flags: usize) -> Result<usize, Error> {
        let flags = PteFlags::from_bits(flags as u64).ok_or(Error::BadFlags)?;
        let budget = self.page_budget(caller, self.live_tables(caller));
        let env = self.envs.get_mut(caller).ok_or(Error::NoSuchEnv)?;
        env.space.insert_pte(&mut self.pages, &mut self.machine, caller, va, Page(page), flags, budget).map(|()| 0)
    }
}

/// Page rights an ended environment drops per teardown step.
pub const RELEASE_BATCH: usize = 2048;

/// The two top-level page-table pages every address space has (PML4 and PDPT), counted
/// against its page quota.
const SPACE_ROOT_PAGES: usize = 2;

/// Filter shapes (dispatch groups) the root gives away: the classifier's compile takes heap
/// in proportion to them (~65 KB each, measured in `kernel::quota_tests`), so this bounds the
/// largest compile.
pub const ROOT_SHAPES: usize = 96;

/// Heap bytes a classifier compile takes per dispatch group, at most (measured ~65 KB).
pub const COMPILE_BYTES_PER_SHAPE: usize = 80 << 10;

/// Heap bytes of per-page records (holder list, index entry) per physical page in use, at
/// most; they are not charged, so the heap keeps room for every page.
const PAGE_RECORD_BYTES: usize = 64;

/// Heap kept for the kernel's own transient use beyond compiles (a predicate compile takes up
/// to ~2 MB; container slack, fragmentation).
const HEAP_SLACK: usize = 6 << 20;

/// What the root of the quota tree gives away: every free page, and the heap left free minus
/// what the kernel must keep for itself -- a record for every page, the largest classifier
/// compile the shape limit allows, and slack.
fn root_resources(free_pages: usize, heap: HeapUse) -> Resources {
    let reserve = free_pages * PAGE_RECORD_BYTES + ROOT_SHAPES * COMPILE_BYTES_PER_SHAPE + HEAP_SLACK;
    Resources {
        pages: free_pages,
        heap: heap.size.saturating_sub(heap.used).saturating_sub(reserve),
        envs: MAX_ENVS - 1,
        shapes: ROOT_SHAPES,
        filters: net::MAX_FILTERS,
    }
}

/// What `id`'s objects use that the accounts do not record themselves: pages charged to it in
/// the ownership vectors plus `tables` page tables, and the holder entries of its grants.
fn external_use(pages: &PageOwnership, id: EnvId, tables: usize) -> Resources {
    Resources {
        pages: pages.charged_to(id) + tables,
        heap: pages.holders_paid_by(id) * cost::HOLDER,
        ..Resources::ZERO
    }
}

pub mod jobs;
mod net;
pub mod sched;
#[cfg(test)]
mod net_tests;
#[cfg(test)]
mod quota_tests;
#[cfg(test)]
mod tests;
