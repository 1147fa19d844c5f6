//! Program entry: `_start` aligns the stack and calls into Rust, which reads the arguments the
//! kernel put at `ARGS_VA`, runs the program's `main` (named with [`crate::entry!`]), and exits
//! with its status. A panic prints its message and exits with status 101.
//!
//! Argument words of the form `exos.<name>=<value>` are settings for exos itself, like
//! environment variables (the ARP table's page: `exos.arp=<page>`); programs do not see them
//! among their arguments, and [`setting`] reads them.

use alloc::vec::Vec;

/// The words a program was started with (from `env_spawn` or, for init, the kernel command
/// line).
#[derive(Clone, Copy, Debug)]
pub struct Args {
    block: &'static [u8],
}

/// The prefix of argument words that are settings for exos (see [`setting`]).
pub const SETTING_PREFIX: &str = "exos.";

/// Every word of an argument block.
fn words(block: &'static [u8]) -> impl Iterator<Item = &'static str> {
    block.split(|&b| b == 0).filter(|word| !word.is_empty()).map(|word| core::str::from_utf8(word).unwrap_or(""))
}

/// The argument block this program was started with (set once at entry).
static BLOCK: spin::Once<&'static [u8]> = spin::Once::new();

/// The value of exos setting `name` (the word `exos.<name>=<value>`), if the program was
/// started with one.
pub fn setting(name: &str) -> Option<&'static str> {
    words(BLOCK.get()?).find_map(|word| word.strip_prefix(SETTING_PREFIX)?.strip_prefix(name)?.strip_prefix('='))
}

impl Args {
    /// The argument words (without exos settings).
    pub fn iter(&self) -> impl Iterator<Item = &'static str> + use<> {
        words(self.block).filter(|word| !word.starts_with(SETTING_PREFIX))
    }

    /// The value of the word `key=value`, if there is one.
    pub fn value(&self, key: &str) -> Option<&'static str> {
        self.iter().find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
    }

    /// The value of `key=value` parsed (`None` if absent or unparsable).
    pub fn parsed<T: core::str::FromStr>(&self, key: &str) -> Option<T> {
        self.value(key)?.parse().ok()
    }

    /// Whether the word `key` itself is among the arguments (a flag).
    pub fn flag(&self, key: &str) -> bool {
        self.iter().any(|word| word == key)
    }

    /// The argument words, collected.
    pub fn to_vec(&self) -> Vec<&'static str> {
        self.iter().collect()
    }

    /// Joins `words` into an argument block for `env_spawn`.
    pub fn encode(words: &[&str]) -> Vec<u8> {
        words.join("\0").into_bytes()
    }
}

/// Names the program's entry function, `fn(Args) -> i32` (conventionally `run`; it must not be
/// called `main`, which the macro defines on the host, where programs are only type-checked and
/// refuse to run).
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[cfg(target_os = "none")]
        #[unsafe(no_mangle)]
        fn exos_main(args: $crate::Args) -> i32 {
            $main(args)
        }

        #[cfg(not(target_os = "none"))]
        fn main() {
            let _: fn($crate::Args) -> i32 = $main;
            eprintln!("this program runs on xok; build it with --target x86_64-unknown-none");
            std::process::exit(2);
        }
    };
}

#[cfg(target_os = "none")]
mod bare {
    use super::*;
    use xok_abi::layout::ARGS_VA;

    unsafe extern "Rust" {
        fn exos_main(args: Args) -> i32;
    }

    core::arch::global_asm!(
        ".section .text._start, \"ax\"",
        ".global _start",
        "_start:",
        "    and rsp, -16",
        "    xor ebp, ebp",
        "    call exos_start",
        "    ud2",
    );

    #[unsafe(no_mangle)]
    extern "C" fn exos_start(args: *const u64) -> ! {
        assert_eq!(args as usize, ARGS_VA);
        // SAFETY: xok maps the argument page read-only at ARGS_VA before the program starts:
        // a u64 length (at most ARGS_MAX, which fits the page) followed by that many bytes. The
        // page is never unmapped by exos.
        let block = unsafe {
            let len = (*args as usize).min(xok_abi::ARGS_MAX);
            core::slice::from_raw_parts(args.add(1) as *const u8, len)
        };
        BLOCK.call_once(|| block);
        // SAFETY: the program defines exos_main through exos::entry!.
        let status = unsafe { exos_main(Args { block }) };
        crate::sys::env_exit(status as u32)
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        crate::println!("panic in env {:08x}: {info}", crate::sys::env_id().0);
        crate::sys::env_exit(101)
    }
}
