//! The kernel's classifier: the installed filters' compiled trie while it matches their
//! structure, the interpreter otherwise. This is the whole compile-cache policy; the machine
//! only provides executable memory ([`crate::kernel::Machine::load_code`]). Compiles run as
//! jobs outside the kernel's critical section (`kernel::jobs`) and land here through
//! [`Classifier::install`].

use crate::kernel::{LoadedCode, Machine};
use dpf::compile::CompiledCode;
use dpf::{Classification, Dpf};

/// The loaded classifier code, if any, and the structure generation it was compiled for.
#[derive(Debug, Default)]
pub struct Classifier {
    loaded: Option<(u64, LoadedCode)>,
}

impl Classifier {
    /// Classifies `frame` against `dpf`: with the loaded code if it was compiled for the
    /// set's current structure, with the interpreter otherwise. Never compiles.
    pub fn classify(&self, dpf: &Dpf, frame: &[u8]) -> Classification {
        match self.loaded {
            Some((generation, code)) if generation == dpf.generation() => {
                // SAFETY: `code` was loaded by `Machine::load_code`, whose contract is that
                // `code.entry` is an executable copy of the bytes given (here the
                // `CompiledCode` of generation `generation`, entry at offset 0), mapped until
                // `release_code`, which only `install` calls after dropping it from `loaded`.
                // `dpf` is borrowed, so its context is unmodified during the call.
                let compiled = unsafe { dpf::exec::classify(dpf::exec::entry_point(code.entry as *const u8), dpf, frame) };
                compiled.unwrap_or_else(|| dpf.classify_interpreted(frame))
            }
            _ => dpf.classify_interpreted(frame),
        }
    }

    /// Replaces the loaded code with `code`, freeing the old. Returns whether it was loaded
    /// (the code window may be full: frames are then interpreted).
    pub fn install(&mut self, machine: &mut impl Machine, code: &CompiledCode) -> bool {
        if let Some((_, old)) = self.loaded.take() {
            machine.release_code(old);
        }
        self.loaded = machine.load_code(&code.bytes).map(|loaded| (code.generation, loaded));
        self.loaded.is_some()
    }

    /// The structure generation the loaded code was compiled for.
    pub fn generation(&self) -> Option<u64> {
        self.loaded.map(|(generation, _)| generation)
    }
}
