//! The kernel's profile (`Syscall::KernelProfile`): time spent in the kernel per cause of entry,
//! and samples of where programs were when the timer interrupted them.
//!
//! The kernel runs with interrupts off, so a timer sample can never land inside it; instead it
//! times every stay by its cause (the syscall or the interrupt that brought the CPU in). Time in
//! programs is sampled at the timer's rate ([`crate::layout::TICK_HZ`]). Idle time is
//! `Stat::IdleNs`.

use crate::Syscall;

/// What `kernel_profile` does.
#[repr(usize)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Zero the time per cause and the samples, and sample from now on.
    Start = 0,
    /// Write the time per cause since `Start`: one [`Record`] (cause, nanoseconds) per cause
    /// the kernel was entered for.
    Causes = 1,
    /// Write samples since `Start`, from sample number `first` on: one [`Record`] (environment
    /// id, user instruction pointer) per timer interrupt that found a program running.
    Samples = 2,
}

impl Op {
    /// The op with number `n`, if there is one.
    pub fn from_number(n: usize) -> Option<Op> {
        [Op::Start, Op::Causes, Op::Samples].get(n).copied()
    }
}

/// Most samples the kernel keeps after `Start` (later ones are counted, not kept).
pub const MAX_SAMPLES: usize = 16_384;

/// One record `kernel_profile` writes: two little-endian `u64`s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// The cause ([`Cause::from_number`]) or the environment id.
    pub key: u64,
    /// Nanoseconds, or the user instruction pointer.
    pub value: u64,
}

/// Size of an encoded [`Record`].
pub const RECORD_LEN: usize = 16;

impl Record {
    /// The record as the kernel writes it.
    pub fn to_bytes(self) -> [u8; RECORD_LEN] {
        let mut bytes = [0u8; RECORD_LEN];
        bytes[..8].copy_from_slice(&self.key.to_le_bytes());
        bytes[8..].copy_from_slice(&self.value.to_le_bytes());
        bytes
    }

    /// Reads a record the kernel wrote.
    pub fn from_bytes(bytes: [u8; RECORD_LEN]) -> Record {
        let (key, value) = bytes.split_at(8);
        let word = |half: &[u8]| u64::from_le_bytes(half.try_into().expect("8 bytes"));
        Record { key: word(key), value: word(value) }
    }
}

/// Why the CPU was in the kernel. Numbered as `Stat::MaxInterruptsOffCause` is: an interrupt
/// or exception vector below 0x100, [`SYSCALL_CAUSE_BASE`] plus the syscall number, and 0 for
/// the kernel's own work (scheduling, teardown, finishing a compile); besides, one part of the
/// kernel's work is timed apart, out of whichever cause it was done for:
/// [`NIC_DOORBELL_CAUSE`] and [`CLASSIFY_CAUSE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// Scheduling, teardown and other work not done for one entry.
    Kernel,
    /// Interrupt or exception vector (32 + n for PIC line n).
    Vector(u8),
    /// A syscall.
    Syscall(Syscall),
    /// The register write that tells a NIC to send what was queued (e1000 TDT, tulip transmit
    /// poll demand); under emulation, the device model sends the frames inside it.
    NicDoorbell,
    /// Classifying a received frame with the installed packet filters (DPF: the compiled
    /// trie, or the interpreter while the code is stale).
    Classify,
}

/// Causes at or above this number are syscalls.
pub const SYSCALL_CAUSE_BASE: u64 = 0x100;

/// The number of [`Cause::NicDoorbell`].
pub const NIC_DOORBELL_CAUSE: u64 = 0x200;

/// The number of [`Cause::Classify`].
pub const CLASSIFY_CAUSE: u64 = 0x201;

/// Cause numbers are below this.
pub const CAUSE_COUNT: usize = CLASSIFY_CAUSE as usize + 1;
const _: () = assert!(SYSCALL_CAUSE_BASE as usize + crate::SYSCALL_COUNT <= NIC_DOORBELL_CAUSE as usize);

impl Cause {
    /// The cause with number `n` (see [`Cause`]), if there is one.
    pub fn from_number(n: u64) -> Option<Cause> {
        match n {
            0 => Some(Cause::Kernel),
            1..SYSCALL_CAUSE_BASE => Some(Cause::Vector(n as u8)),
            NIC_DOORBELL_CAUSE => Some(Cause::NicDoorbell),
            CLASSIFY_CAUSE => Some(Cause::Classify),
            _ => Syscall::from_number((n - SYSCALL_CAUSE_BASE) as usize).map(Cause::Syscall),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_causes_decode() {
        let record = Record { key: 0x102, value: u64::MAX - 5 };
        assert_eq!(Record::from_bytes(record.to_bytes()), record);
        assert_eq!(Cause::from_number(0), Some(Cause::Kernel));
        assert_eq!(Cause::from_number(43), Some(Cause::Vector(43)));
        assert_eq!(Cause::from_number(SYSCALL_CAUSE_BASE + 21), Some(Cause::Syscall(Syscall::NetXmit)));
        assert_eq!(Cause::from_number(SYSCALL_CAUSE_BASE + crate::SYSCALL_COUNT as u64), None);
        assert_eq!(Cause::from_number(NIC_DOORBELL_CAUSE), Some(Cause::NicDoorbell));
        assert_eq!(Cause::from_number(CLASSIFY_CAUSE), Some(Cause::Classify));
        assert_eq!(Cause::from_number(CAUSE_COUNT as u64), None);
        assert_eq!(Op::from_number(2), Some(Op::Samples));
        assert_eq!(Op::from_number(3), None);
    }
}
