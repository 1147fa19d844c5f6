//! ELF programs: checks every header of an initrd file and produces a load plan.
//!
//! A program for xok is a static, non-PIE x86-64 ELF executable whose loadable segments lie in
//! user space, do not overlap, and whose entry point is inside an executable segment.

use alloc::vec::Vec;
use core::ops::Range;
use goblin::elf::{Elf, header, program_header};
use xok_abi::layout::{PAGE_SIZE, is_user_range};

/// Most loadable segments a program may have.
pub const MAX_SEGMENTS: usize = 16;
/// Largest memory image a program may ask for (256 MiB).
pub const MAX_IMAGE: usize = 256 << 20;

/// Why a file is not a program xok will run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgramError {
    /// goblin could not parse the headers.
    Malformed,
    /// Not a 64-bit little-endian x86-64 file.
    WrongMachine,
    /// Not `ET_EXEC` (xok does not relocate programs).
    NotExecutable,
    /// No loadable segment, or more than [`MAX_SEGMENTS`].
    SegmentCount,
    /// A segment reaches outside user space or wraps.
    SegmentOutsideUserSpace,
    /// A segment's file bytes lie outside the file, or exceed its memory size.
    SegmentFileRange,
    /// Two segments share a page.
    SegmentsOverlap,
    /// The segments ask for more than [`MAX_IMAGE`] bytes.
    TooLarge,
    /// The entry point is not inside an executable segment.
    BadEntry,
    /// A segment is both writable and executable.
    WritableAndExecutable,
}

/// One loadable segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Virtual address of its first byte.
    pub va: usize,
    /// Size in memory (bytes past the file bytes are zero).
    pub mem_size: usize,
    /// Its bytes in the file.
    pub file: Range<usize>,
    /// Mapped writable.
    pub writable: bool,
    /// Mapped executable.
    pub executable: bool,
}

impl Segment {
    /// The page-aligned virtual range it occupies.
    pub fn pages(&self) -> Range<usize> {
        let start = self.va & !(PAGE_SIZE - 1);
        let end = (self.va + self.mem_size).next_multiple_of(PAGE_SIZE);
        start..end
    }
}

/// A checked program, ready to load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// Entry point.
    pub entry: usize,
    /// Loadable segments, sorted by address.
    pub segments: Vec<Segment>,
}

/// Checks `bytes` and returns its load plan.
pub fn parse(bytes: &[u8]) -> Result<Program, ProgramError> {
    let elf = Elf::parse(bytes).map_err(|_| ProgramError::Malformed)?;
    if !elf.is_64 || !elf.little_endian || elf.header.e_machine != header::EM_X86_64 {
        return Err(ProgramError::WrongMachine);
    }
    if elf.header.e_type != header::ET_EXEC {
        return Err(ProgramError::NotExecutable);
    }
    let mut segments = Vec::new();
    let mut total = 0usize;
    for ph in elf.program_headers.iter().filter(|ph| ph.p_type == program_header::PT_LOAD) {
        if segments.len() == MAX_SEGMENTS {
            return Err(ProgramError::SegmentCount);
        }
        let va = ph.p_vaddr as usize;
        let mem_size = ph.p_memsz as usize;
        let file_size = ph.p_filesz as usize;
        // Round the end up to a page as well, so `pages()` cannot leave user space.
        let span = (va % PAGE_SIZE).checked_add(mem_size).map(|s| s.next_multiple_of(PAGE_SIZE));
        match span {
            Some(span) if is_user_range(va & !(PAGE_SIZE - 1), span) => {}
            _ => return Err(ProgramError::SegmentOutsideUserSpace),
        }
        let offset = ph.p_offset as usize;
        let file_end = offset.checked_add(file_size).ok_or(ProgramError::SegmentFileRange)?;
        if file_size > mem_size || file_end > bytes.len() {
            return Err(ProgramError::SegmentFileRange);
        }
        if ph.is_write() && ph.is_executable() {
            return Err(ProgramError::WritableAndExecutable);
        }
        total = total.saturating_add(mem_size);
        if total > MAX_IMAGE {
            return Err(ProgramError::TooLarge);
        }
        segments.push(Segment {
            va,
            mem_size,
            file: offset..file_end,
            writable: ph.is_write(),
            executable: ph.is_executable(),
        });
    }
    if segments.is_empty() {
        return Err(ProgramError::SegmentCount);
    }
    segments.sort_by_key(|s| s.va);
    if segments.windows(2).any(|pair| pair[0].pages().end > pair[1].pages().start) {
        return Err(ProgramError::SegmentsOverlap);
    }
    let entry = elf.entry as usize;
    if !segments.iter().any(|s| s.executable && (s.va..s.va + s.mem_size).contains(&entry)) {
        return Err(ProgramError::BadEntry);
    }
    Ok(Program { entry, segments })
}

#[cfg(test)]
/// Tests, and an ELF writer other modules' tests use.
pub mod tests {
    use super::*;
    use alloc::vec;
    use xok_abi::layout::USER_BASE;

    /// One program header for [`elf`]: (vaddr, memsz, file bytes, flags).
    pub type TestSegment<'a> = (u64, u64, &'a [u8], u32);

    /// A minimal ELF64 executable with the given segments.
    pub fn elf(e_type: u16, entry: u64, segments: &[TestSegment]) -> Vec<u8> {
        let phoff = 64u64;
        let data_start = phoff + 56 * segments.len() as u64;
        let mut out = vec![0u8; data_start as usize];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = 2; // 64-bit
        out[5] = 1; // little-endian
        out[6] = 1; // version
        out[16..18].copy_from_slice(&e_type.to_le_bytes());
        out[18..20].copy_from_slice(&header::EM_X86_64.to_le_bytes());
        out[20..24].copy_from_slice(&1u32.to_le_bytes());
        out[24..32].copy_from_slice(&entry.to_le_bytes());
        out[32..40].copy_from_slice(&phoff.to_le_bytes());
        out[52..54].copy_from_slice(&64u16.to_le_bytes());
        out[54..56].copy_from_slice(&56u16.to_le_bytes());
        out[56..58].copy_from_slice(&(segments.len() as u16).to_le_bytes());
        for (i, (vaddr, memsz, bytes, flags)) in segments.iter().enumerate() {
            let offset = out.len() as u64;
            out.extend_from_slice(bytes);
            let ph = 64 + 56 * i;
            out[ph..ph + 4].copy_from_slice(&program_header::PT_LOAD.to_le_bytes());
            out[ph + 4..ph + 8].copy_from_slice(&flags.to_le_bytes());
            out[ph + 8..ph + 16].copy_from_slice(&offset.to_le_bytes());
            out[ph + 16..ph + 24].copy_from_slice(&vaddr.to_le_bytes());
            out[ph + 24..ph + 32].copy_from_slice(&vaddr.to_le_bytes());
            out[ph + 32..ph + 40].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
            out[ph + 40..ph + 48].copy_from_slice(&memsz.to_le_bytes());
            out[ph + 48..ph + 56].copy_from_slice(&4096u64.to_le_bytes());
        }
        out
    }

    const RX: u32 = program_header::PF_R | program_header::PF_X;
    const RW: u32 = program_header::PF_R | program_header::PF_W;
    const BASE: u64 = USER_BASE as u64;

    #[test]
    fn a_good_program_parses() {
        let bytes = elf(header::ET_EXEC, BASE + 4, &[(BASE, 100, &[0x90; 100], RX), (BASE + 0x1000, 0x3000, &[1; 10], RW)]);
        let program = parse(&bytes).unwrap();
        assert_eq!(program.entry, USER_BASE + 4);
        assert_eq!(program.segments.len(), 2);
        assert!(program.segments[1].writable && !program.segments[1].executable);
        assert_eq!(program.segments[1].pages(), USER_BASE + 0x1000..USER_BASE + 0x4000);
    }

    #[test]
    fn bad_programs_are_refused_precisely() {
        let code: &[u8] = &[0x90; 16];
        let cases: [(Vec<u8>, ProgramError); 9] = [
            (elf(header::ET_EXEC, BASE, &[(BASE, 16, code, RX | program_header::PF_W)]), ProgramError::WritableAndExecutable),
            (b"not an elf at all".to_vec(), ProgramError::Malformed),
            (elf(header::ET_DYN, BASE, &[(BASE, 16, code, RX)]), ProgramError::NotExecutable),
            (elf(header::ET_EXEC, 0x10_0000, &[(0x10_0000, 16, code, RX)]), ProgramError::SegmentOutsideUserSpace),
            (elf(header::ET_EXEC, BASE, &[(u64::MAX - 8, 16, code, RX)]), ProgramError::SegmentOutsideUserSpace),
            (elf(header::ET_EXEC, BASE, &[(BASE, 8, code, RX)]), ProgramError::SegmentFileRange),
            (elf(header::ET_EXEC, BASE, &[(BASE, 16, code, RX), (BASE + 8, 16, code, RW)]), ProgramError::SegmentsOverlap),
            (elf(header::ET_EXEC, BASE + 0x1000, &[(BASE, 16, code, RX), (BASE + 0x1000, 16, code, RW)]), ProgramError::BadEntry),
            (elf(header::ET_EXEC, BASE, &[(BASE, 300 << 20, code, RX)]), ProgramError::TooLarge),
        ];
        for (bytes, expected) in cases {
            assert_eq!(parse(&bytes), Err(expected));
        }
        let mut truncated = elf(header::ET_EXEC, BASE, &[(BASE, 16, code, RX)]);
        let len = truncated.len();
        truncated[64 + 8..64 + 16].copy_from_slice(&(len as u64).to_le_bytes());
        assert_eq!(parse(&truncated), Err(ProgramError::SegmentFileRange));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let good = elf(header::ET_EXEC, BASE, &[(BASE, 16, &[0x90; 16], RX)]);
        let mut seed = 0x1234_5678_u64;
        for _ in 0..2000 {
            let mut bytes = good.clone();
            for _ in 0..4 {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let at = (seed >> 33) as usize % bytes.len();
                bytes[at] = (seed >> 20) as u8;
            }
            let _ = parse(&bytes);
            let _ = parse(&bytes[..(seed as usize) % bytes.len()]);
        }
    }
}
