//! Reading the guest's profile (the lines of the `profile` program, `xok_abi::profile`) and
//! naming where the CPU went: idle, the kernel by cause of entry, and each program's functions
//! (its samples named with the program's symbols, read by binutils' `nm`).

use anyhow::{Context, Result, bail};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;

/// One profile window, as the `profile` program printed it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Profile {
    /// Length of the window, in nanoseconds.
    pub window_ns: u64,
    /// Time halted with nothing to run.
    pub idle_ns: u64,
    /// Timer ticks in the window: one sample could have been taken at each.
    pub ticks: u64,
    /// Time in the kernel per cause: (cause name, nanoseconds).
    pub causes: Vec<(String, u64)>,
    /// Timer samples of programs: (environment id, instruction pointer, count).
    pub samples: Vec<(u32, u64, u32)>,
}

impl Profile {
    /// Reads the first complete profile (from `profile: window` to `profile: done`) in the
    /// guest's console output.
    pub fn parse(console: &str) -> Result<Profile> {
        let start = console.find("profile: window ").context("no `profile: window` line")?;
        let mut profile = Profile::default();
        for line in console[start..].lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["profile:", "done"] => return Ok(profile),
                ["profile:", "window", window, "idle", idle, "ticks", ticks, "samples", _] => {
                    profile.window_ns = window.parse()?;
                    profile.idle_ns = idle.parse()?;
                    profile.ticks = ticks.parse()?;
                }
                ["profile", "cause", _, ns, name] => profile.causes.push((name.to_string(), ns.parse()?)),
                ["profile", "sample", env, rip, count] => {
                    profile.samples.push((u32::from_str_radix(env, 16)?, u64::from_str_radix(rip, 16)?, count.parse()?));
                }
                _ => {}
            }
        }
        bail!("the profile did not end (no `profile: done`)")
    }

    /// Time in the kernel, all causes.
    pub fn kernel_ns(&self) -> u64 {
        self.causes.iter().map(|(_, ns)| ns).sum()
    }

    /// Time outside the kernel's timed stays and idle: programs, and the way into and out of
    /// the kernel (the entry and return paths, where interrupts are off but no cause is timed).
    pub fn user_ns(&self) -> u64 {
        self.window_ns.saturating_sub(self.idle_ns + self.kernel_ns())
    }

    /// Samples taken in all.
    pub fn sample_count(&self) -> u64 {
        self.samples.iter().map(|s| u64::from(s.2)).sum()
    }
}

/// The environment id of each program init started (its `init: started <name> as env <id>`
/// lines), by id.
pub fn programs(console: &str) -> HashMap<u32, String> {
    console
        .lines()
        .filter_map(|line| {
            let rest = line.split("init: started ").nth(1)?;
            let (name, id) = rest.split_once(" as env ")?;
            Some((u32::from_str_radix(id.trim(), 16).ok()?, name.trim_start_matches('!').to_string()))
        })
        .collect()
}

/// A program's functions by address, for naming instruction pointers.
#[derive(Clone, Debug, Default)]
pub struct Symbols {
    /// (start, size, demangled name), by start.
    functions: Vec<(u64, u64, String)>,
}

impl Symbols {
    /// The text symbols of the ELF file at `path` (`nm -C -S`: demangled, with sizes).
    pub fn load(path: &Path) -> Result<Symbols> {
        let out = Command::new("nm")
            .args(["-C", "-S", "--defined-only"])
            .arg(path)
            .output()
            .context("running nm (binutils; make setup installs it)")?;
        if !out.status.success() {
            bail!("nm {} failed: {}", path.display(), String::from_utf8_lossy(&out.stderr));
        }
        Ok(Symbols::from_nm(&String::from_utf8_lossy(&out.stdout)))
    }

    /// Reads `nm -C -S` output: `<address> <size> <type> <name>`, text symbols only.
    pub fn from_nm(listing: &str) -> Symbols {
        let mut functions: Vec<(u64, u64, String)> = listing
            .lines()
            .filter_map(|line| {
                let mut words = line.splitn(4, ' ');
                let start = u64::from_str_radix(words.next()?, 16).ok()?;
                let size = u64::from_str_radix(words.next()?, 16).ok()?;
                let kind = words.next()?;
                let name = words.next()?;
                matches!(kind, "t" | "T" | "W" | "w").then(|| (start, size, name.to_string()))
            })
            .collect();
        functions.sort();
        Symbols { functions }
    }

    /// The function holding address `rip`, if any.
    pub fn name(&self, rip: u64) -> Option<&str> {
        let at = self.functions.partition_point(|(start, _, _)| *start <= rip).checked_sub(1)?;
        let (start, size, name) = &self.functions[at];
        (rip < start + size).then_some(name.as_str())
    }
}

/// Where the window went: shares of the whole window, biggest first.
#[derive(Clone, Debug, PartialEq)]
pub struct Breakdown {
    /// (what, share of the window in percent): idle, each kernel cause, each program.
    pub parts: Vec<(String, f64)>,
    /// (program, function, share of the window in percent, samples): the program time split
    /// by the samples.
    pub functions: Vec<(String, String, f64, u32)>,
}

/// Splits `profile` into idle, kernel causes and programs. Ticks are even in time and a tick
/// that comes while the kernel runs is no sample, so a program's share of the window is its
/// share of the ticks; what is left of the time outside the kernel's timed stays is the way in
/// and out of the kernel ("kernel entry and exit").
pub fn breakdown(profile: &Profile, programs: &HashMap<u32, String>, symbols: &HashMap<String, Symbols>) -> Breakdown {
    let window = profile.window_ns.max(1) as f64;
    let percent = |ns: f64| ns * 100.0 / window;
    let mut parts = vec![("idle".to_string(), percent(profile.idle_ns as f64))];
    parts.extend(profile.causes.iter().map(|(name, ns)| (format!("kernel: {name}"), percent(*ns as f64))));
    let per_sample = window / profile.ticks.max(1) as f64;
    let sampled = per_sample * profile.sample_count() as f64;
    parts.push(("kernel entry and exit (not timed)".to_string(), percent((profile.user_ns() as f64 - sampled).max(0.0))));
    let mut by_program: BTreeMap<String, u32> = BTreeMap::new();
    let mut by_function: BTreeMap<(String, String), u32> = BTreeMap::new();
    for &(env, rip, count) in &profile.samples {
        let program = programs.get(&env).cloned().unwrap_or_else(|| format!("env {env:08x}"));
        let function = symbols.get(&program).and_then(|s| s.name(rip)).map_or_else(|| format!("{rip:#x}"), str::to_string);
        *by_program.entry(program.clone()).or_default() += count;
        *by_function.entry((program, function)).or_default() += count;
    }
    parts.extend(by_program.into_iter().map(|(program, count)| (format!("user: {program}"), percent(per_sample * f64::from(count)))));
    parts.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut functions: Vec<_> = by_function
        .into_iter()
        .map(|((program, function), count)| (program, function, percent(per_sample * f64::from(count)), count))
        .collect();
    functions.sort_by_key(|f| std::cmp::Reverse(f.3));
    Breakdown { parts, functions }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_splits_into_idle_kernel_causes_and_named_functions() {
        let console = "init: started cheetah as env 00001003\n\
                       init: started !profile as env 00002004\n\
                       profile: window 1000000 idle 100000 ticks 10 samples 3\n\
                       profile cause 277 400000 NetXmit\n\
                       profile cause 43 100000 vector43\n\
                       profile sample 00001003 401010 2\n\
                       profile sample 00001003 409000 1\n\
                       profile: done\n";
        let profile = Profile::parse(console).unwrap();
        assert_eq!((profile.window_ns, profile.idle_ns, profile.kernel_ns(), profile.user_ns()), (1_000_000, 100_000, 500_000, 400_000));
        let programs = programs(console);
        assert_eq!(programs[&0x2004], "profile");
        let symbols = Symbols::from_nm(
            "0000000000401000 0000000000000100 t cheetah::tcp::Server::receive\n\
             0000000000402000 0000000000000010 T exos_main\n\
             0000000000500000 0000000000000008 D DATA\n",
        );
        assert_eq!(symbols.name(0x401010), Some("cheetah::tcp::Server::receive"));
        assert_eq!(symbols.name(0x401100), None, "past the end of the function");
        assert_eq!(symbols.name(0x500000), None, "data is not a function");
        let all = HashMap::from([("cheetah".to_string(), symbols)]);
        let breakdown = breakdown(&profile, &programs, &all);
        let share = |what: &str| breakdown.parts.iter().find(|p| p.0 == what).unwrap().1;
        assert!((share("kernel: NetXmit") - 40.0).abs() < 1e-9);
        assert!((share("user: cheetah") - 30.0).abs() < 1e-9, "3 of 10 ticks");
        assert!((share("kernel entry and exit (not timed)") - 10.0).abs() < 1e-9, "the rest of the 40 %");
        assert!((share("idle") - 10.0).abs() < 1e-9);
        assert_eq!(breakdown.functions[0].1, "cheetah::tcp::Server::receive");
        assert!((breakdown.functions[0].2 - 20.0).abs() < 1e-9);
        assert_eq!(breakdown.functions[1].1, "0x409000", "unnamed addresses are kept");
        assert!(Profile::parse("profile: window 1 idle 0 ticks 0 samples 0\n").is_err(), "unfinished");
    }
}
