//! A pool of transmit buffers for `net_xmit`: each buffer is free while its completion counter
//! is 0; sending sets it to 1 and the kernel decrements it when the NIC is done. A frame is a
//! buffer, or a buffer (the headers) gathered with memory that never changes (file pages: the
//! zero-copy send). Dropping the pool waits until the NIC is done with every buffer.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use xok_abi::Error;
use xok_abi::net::{GatherSegment, XMIT_MAX_FRAME};

/// Frames a pool made with [`TxPool::new`] may have in flight at once.
pub const TX_BUFFERS: usize = 16;

/// Transmit buffers for one NIC.
pub struct TxPool {
    nic: usize,
    buffers: Vec<[u8; XMIT_MAX_FRAME]>,
    counters: Box<[AtomicU64]>,
    /// Where the search for a free buffer starts (the one after the last taken).
    next: usize,
}

impl TxPool {
    /// A pool of [`TX_BUFFERS`] buffers sending on `nic`.
    pub fn new(nic: usize) -> TxPool {
        TxPool::with_buffers(nic, TX_BUFFERS)
    }

    /// A pool of `count` buffers sending on `nic`.
    pub fn with_buffers(nic: usize, count: usize) -> TxPool {
        TxPool {
            nic,
            buffers: alloc::vec![[0; XMIT_MAX_FRAME]; count.max(1)],
            counters: (0..count.max(1)).map(|_| AtomicU64::new(0)).collect(),
            next: 0,
        }
    }

    /// A buffer the NIC is done with, if any.
    pub fn free_buffer(&self) -> Option<usize> {
        let count = self.counters.len();
        (0..count).map(|i| (self.next + i) % count).find(|&i| self.counters[i].load(Ordering::Acquire) == 0)
    }

    /// Lets `fill` write a frame of `len` bytes (at most 1 514) into free buffer `index`, then
    /// sends it. Returns what `fill` returned, and whether the kernel took the frame.
    pub fn send_with<R>(&mut self, index: usize, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> (R, Result<(), Error>) {
        let len = len.min(XMIT_MAX_FRAME);
        let result = fill(&mut self.buffers[index][..len]);
        (result, self.send_buffer(index, len))
    }

    /// Free buffer `index`, to fill before [`TxPool::send_buffer`].
    pub fn buffer(&mut self, index: usize) -> &mut [u8; XMIT_MAX_FRAME] {
        &mut self.buffers[index]
    }

    /// Sends the first `len` bytes of free buffer `index`.
    pub fn send_buffer(&mut self, index: usize, len: usize) -> Result<(), Error> {
        self.send_gathered(index, len, &[])
    }

    /// Sends the first `len` bytes of free buffer `index` followed by `tail`, gathered by the
    /// NIC: memory that stays as it is for the program's life (`'static`: file pages, prepared
    /// headers), so a retransmission may send it again. At most 1 514 bytes in all.
    pub fn send_gathered(&mut self, index: usize, len: usize, tail: &[&'static [u8]]) -> Result<(), Error> {
        let len = len.min(XMIT_MAX_FRAME);
        let mut segments = [GatherSegment { addr: 0, len: 0 }; 4];
        segments[0] = GatherSegment { addr: self.buffers[index].as_ptr() as u64, len: len as u64 };
        let mut count = 1;
        for part in tail.iter().filter(|part| !part.is_empty()) {
            if count == segments.len() {
                return Err(Error::BadLength);
            }
            segments[count] = GatherSegment { addr: part.as_ptr() as u64, len: part.len() as u64 };
            count += 1;
        }
        self.counters[index].store(1, Ordering::Release);
        let sent = crate::sys::net_xmit(self.nic, &segments[..count], &self.counters[index]);
        if sent.is_err() {
            self.counters[index].store(0, Ordering::Release);
        } else {
            self.next = (index + 1) % self.counters.len();
        }
        sent
    }

    /// Sends a copy of `frame`, waiting (yielding) for a free buffer; bounded.
    pub fn send(&mut self, frame: &[u8]) -> Result<(), Error> {
        for _ in 0..10_000 {
            if let Some(index) = self.free_buffer() {
                return self.send_with(index, frame.len(), |buffer| buffer.copy_from_slice(&frame[..buffer.len()])).1;
            }
            crate::sys::env_yield();
        }
        Err(Error::QueueFull)
    }
}

impl Drop for TxPool {
    fn drop(&mut self) {
        for _ in 0..100_000 {
            if self.counters.iter().all(|counter| counter.load(Ordering::Acquire) == 0) {
                return;
            }
            crate::sys::env_yield();
        }
        // The NIC never finished: leak the buffers and counters rather than hand memory the
        // kernel still reads and writes to the heap.
        core::mem::forget(core::mem::take(&mut self.buffers));
        core::mem::forget(core::mem::take(&mut self.counters));
    }
}
