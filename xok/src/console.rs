//! The shared console, made unforgeable: kernel lines start with `xok:` at the start of a line,
//! and no program can produce such a line.
//!
//! Program output passes through [`ProgramText`]: at the start of a line it holds back bytes
//! while they could still become `xok:` (across `console_write` calls too), and writes a line
//! that would begin with `xok:` as `!xok:`. A kernel line starts on a fresh line: anything held
//! is written first, and a newline if a program left its line unfinished. So a reader that
//! trusts exactly the lines beginning with `xok:` (the tests' `lines_with`) reads only the
//! kernel.

use alloc::vec::Vec;

/// How kernel lines begin.
pub const KERNEL_PREFIX: &[u8] = b"xok:";

/// What a program line that would read as the kernel's is given in front.
pub const ESCAPE: &[u8] = b"!";

/// The state of program text between writes.
#[derive(Debug, Default)]
pub struct ProgramText {
    /// Bytes at the start of a line that are a proper prefix of [`KERNEL_PREFIX`], not yet
    /// written.
    held: Vec<u8>,
}

impl ProgramText {
    /// Turns program bytes into console bytes; `at_line_start` says whether the console is at
    /// the start of a line before them.
    pub fn filter(&mut self, bytes: &[u8], at_line_start: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len() + KERNEL_PREFIX.len() + ESCAPE.len());
        let mut line_start = at_line_start || !self.held.is_empty();
        for &byte in bytes {
            if line_start {
                self.held.push(byte);
                if self.held == KERNEL_PREFIX {
                    out.extend_from_slice(ESCAPE);
                } else if KERNEL_PREFIX.starts_with(&self.held) {
                    continue;
                }
                out.append(&mut self.held);
                line_start = byte == b'\n';
            } else {
                out.push(byte);
                line_start = byte == b'\n';
            }
        }
        out
    }

    /// Before a kernel line: the held bytes (an unfinished program line), if any.
    pub fn flush(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(writes: &[&[u8]]) -> Vec<u8> {
        let mut text = ProgramText::default();
        let mut console = Vec::new();
        for bytes in writes {
            let at_line_start = console.last().is_none_or(|b| *b == b'\n');
            console.extend(text.filter(bytes, at_line_start));
        }
        console.extend(text.flush());
        console
    }

    #[test]
    fn lines_that_would_read_as_the_kernels_are_marked() {
        assert_eq!(run(&[b"xok: env 401 exited\n"]), b"!xok: env 401 exited\n");
        assert_eq!(run(&[b"hello\nxok: forged\nbye\n"]), b"hello\n!xok: forged\nbye\n");
        assert_eq!(run(&[b"xo", b"k", b": split across writes\n"]), b"!xok: split across writes\n");
        assert_eq!(run(&[b"partial ", b"xok: mid-line is not a line start\n"]), b"partial xok: mid-line is not a line start\n");
    }

    #[test]
    fn other_text_passes_unchanged() {
        for text in [&b"worker: done\n"[..], b"x marks\nxo\nxok\nxokay\n", b"", b"\n\n", b"ends without newline x"] {
            assert_eq!(run(&[text]), text, "{:?}", core::str::from_utf8(text));
        }
    }
}
