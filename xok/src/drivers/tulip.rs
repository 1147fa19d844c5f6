//! DEC 21143 (QEMU `tulip`): ring-mode descriptors, registers through the I/O BAR, the MAC
//! read from the serial ROM by bit-banging CSR9.
//!
//! QEMU's emulation (hw/net/tulip.c) shapes the choices here: every receive descriptor holds a
//! whole frame (2 KiB as two 1 KiB buffers), because a frame split across descriptors when the
//! next is not ready wedges receive for good; transmit runs synchronously on the CSR1 poll
//! demand, at most 128 descriptors per kick; frames are padded by the kernel, not the device.

use super::pci::PciDevice;
use super::dma_page;
use crate::net::nic::{NicDriver, PhysSegment};
use crate::ownership::PageOwnership;
use alloc::vec::Vec;
use x86_64::instructions::port::Port;
use xok_abi::net::{NicInfo, NicModel};

/// PCI vendor and device id of the 21143.
pub const PCI_ID: (u16, u16) = (0x1011, 0x0019);

/// Register offsets (CSRn at n * 8).
mod csr {
    pub const BUS_MODE: u16 = 0x00;
    pub const TX_POLL: u16 = 0x08;
    pub const RX_POLL: u16 = 0x10;
    pub const RX_LIST: u16 = 0x18;
    pub const TX_LIST: u16 = 0x20;
    pub const STATUS: u16 = 0x28;
    pub const MODE: u16 = 0x30;
    pub const INTERRUPTS: u16 = 0x38;
    pub const ROM: u16 = 0x48;
    pub const SIA_STATUS: u16 = 0x60;
}

const BUS_MODE_RESET: u32 = 1;
const STATUS_WRITE_ONE_TO_CLEAR: u32 = 0x0c01_ffff;
const STATUS_SUMMARY: u32 = (1 << 15) | (1 << 16);
const MODE_START_RX: u32 = 1 << 1;
const MODE_PROMISCUOUS: u32 = 1 << 6;
const MODE_START_TX: u32 = 1 << 13;
/// Normal and abnormal summaries, receive, receive unavailable, transmit.
const INTERRUPT_ENABLE: u32 = (1 << 16) | (1 << 15) | (1 << 7) | (1 << 6) | 1;
const SIA_LINK_FAIL: u32 = (1 << 1) | (1 << 2);
const ROM_SELECT: u32 = (1 << 11) | (1 << 14);
const ROM_CHIP_SELECT: u32 = 1;
const ROM_CLOCK: u32 = 1 << 1;
const ROM_DATA_IN: u32 = 1 << 2;
const ROM_DATA_OUT: u32 = 1 << 3;
const OWN: u32 = 1 << 31;
const RX_FIRST: u32 = 1 << 9;
const RX_LAST: u32 = 1 << 8;
const RX_END_OF_RING: u32 = 1 << 25;
const TX_INTERRUPT: u32 = 1 << 31;
const TX_LAST: u32 = 1 << 30;
const TX_FIRST: u32 = 1 << 29;
const TX_END_OF_RING: u32 = 1 << 25;

const RX_RING: usize = 64;
const TX_RING: usize = 128;
const RX_BUFFER: usize = 2048;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Descriptor {
    status: u32,
    control: u32,
    buffer1: u32,
    buffer2: u32,
}

const _: () = assert!(core::mem::size_of::<Descriptor>() == 16);

/// One 21143.
pub struct Tulip {
    io: u16,
    irq: u8,
    mac: [u8; 6],
    rx: *mut Descriptor,
    rx_buffers: Vec<u32>,
    rx_next: usize,
    tx: *mut Descriptor,
    tx_tokens: Vec<Option<u64>>,
    tx_tail: usize,
    tx_clean: usize,
    tx_in_use: usize,
    /// Index of the first descriptor of frames pushed since the last flush, whose OWN bit is
    /// set last.
    tx_pending_first: Vec<usize>,
}

// SAFETY: used only under the kernel lock on one CPU; the raw pointers name this driver's own
// DMA pages.
unsafe impl Send for Tulip {}

impl Tulip {
    fn read(&self, register: u16) -> u32 {
        // SAFETY: `io` is the device's I/O BAR; reading a CSR has no memory effects.
        unsafe { Port::<u32>::new(self.io + register).read() }
    }

    fn write(&self, register: u16, value: u32) {
        // SAFETY: as for read; the values written are the documented CSR settings.
        unsafe { Port::<u32>::new(self.io + register).write(value) }
    }

    /// Reads 16-bit word `address` of the 93C46 serial ROM.
    fn rom_word(&self, address: u8) -> u16 {
        let clock_bit = |bit: u32| {
            self.write(csr::ROM, ROM_SELECT | ROM_CHIP_SELECT | bit);
            self.write(csr::ROM, ROM_SELECT | ROM_CHIP_SELECT | ROM_CLOCK | bit);
        };
        self.write(csr::ROM, ROM_SELECT);
        self.write(csr::ROM, ROM_SELECT | ROM_CHIP_SELECT);
        // Start bit, read opcode (10), six address bits, most significant first.
        let command = (0b110 << 6) | u32::from(address & 0x3f);
        for i in (0..9).rev() {
            clock_bit(if command >> i & 1 == 1 { ROM_DATA_IN } else { 0 });
        }
        // Clock low again, so that the first data read below is a rising edge.
        self.write(csr::ROM, ROM_SELECT | ROM_CHIP_SELECT);
        let mut word = 0u16;
        for _ in 0..16 {
            self.write(csr::ROM, ROM_SELECT | ROM_CHIP_SELECT | ROM_CLOCK);
            word = (word << 1) | u16::from(self.read(csr::ROM) & ROM_DATA_OUT != 0);
            self.write(csr::ROM, ROM_SELECT | ROM_CHIP_SELECT);
        }
        self.write(csr::ROM, ROM_SELECT);
        word
    }

    fn descriptor(ring: *mut Descriptor, index: usize) -> *mut Descriptor {
        // SAFETY: callers pass indexes below the ring's length; the ring is one DMA page.
        unsafe { ring.add(index) }
    }

    /// Resets and starts the device.
    pub fn new(device: &PciDevice, pages: &mut PageOwnership) -> Tulip {
        device.enable();
        let rx_page = dma_page(pages);
        let tx_page = dma_page(pages);
        let mut rx_buffers = Vec::with_capacity(RX_RING);
        for _ in 0..RX_RING / 2 {
            let page = dma_page(pages).address() as u32;
            rx_buffers.extend([page, page + RX_BUFFER as u32]);
        }
        let mut nic = Tulip {
            io: device.bar(0) as u16,
            irq: device.interrupt_line(),
            mac: [0; 6],
            rx: rx_page.address() as *mut Descriptor,
            rx_buffers,
            rx_next: 0,
            tx: tx_page.address() as *mut Descriptor,
            tx_tokens: alloc::vec![None; TX_RING],
            tx_tail: 0,
            tx_clean: 0,
            tx_in_use: 0,
            tx_pending_first: Vec::new(),
        };
        nic.write(csr::BUS_MODE, BUS_MODE_RESET);
        nic.write(csr::BUS_MODE, 0);
        nic.write(csr::INTERRUPTS, 0);
        nic.write(csr::STATUS, u32::MAX);
        let words = [nic.rom_word(10), nic.rom_word(11), nic.rom_word(12)];
        for (i, word) in words.iter().enumerate() {
            nic.mac[2 * i] = *word as u8;
            nic.mac[2 * i + 1] = (*word >> 8) as u8;
        }
        for i in 0..RX_RING {
            nic.give_rx(i);
        }
        for i in 0..TX_RING {
            let control = if i == TX_RING - 1 { TX_END_OF_RING } else { 0 };
            // SAFETY: i < TX_RING, inside this driver's descriptor page.
            unsafe { Self::descriptor(nic.tx, i).write_volatile(Descriptor { control, ..Descriptor::default() }) };
        }
        nic.write(csr::RX_LIST, rx_page.address() as u32);
        nic.write(csr::TX_LIST, tx_page.address() as u32);
        nic.write(csr::MODE, MODE_START_RX | MODE_START_TX | MODE_PROMISCUOUS);
        nic.write(csr::STATUS, u32::MAX);
        nic.write(csr::INTERRUPTS, INTERRUPT_ENABLE);
        nic
    }

    /// Hands receive descriptor `index` (and its 2 KiB buffer) to the device.
    fn give_rx(&mut self, index: usize) {
        let buffer = self.rx_buffers[index];
        let half = (RX_BUFFER / 2) as u32;
        let end = if index == RX_RING - 1 { RX_END_OF_RING } else { 0 };
        let descriptor = Descriptor { status: OWN, control: end | (half << 11) | half, buffer1: buffer, buffer2: buffer + half };
        // SAFETY: index < RX_RING, inside this driver's descriptor page.
        unsafe { Self::descriptor(self.rx, index).write_volatile(descriptor) };
    }
}

impl NicDriver for Tulip {
    fn info(&self) -> NicInfo {
        let link_up = self.read(csr::SIA_STATUS) & SIA_LINK_FAIL == 0;
        NicInfo { mac: self.mac, link_up, model: NicModel::Tulip }
    }

    fn irq(&self) -> u8 {
        self.irq
    }

    fn tx_room(&self) -> usize {
        TX_RING - 1 - self.tx_in_use
    }

    fn tx_push(&mut self, segments: &[PhysSegment], token: u64) {
        assert!(!segments.is_empty() && segments.len() <= self.tx_room());
        let first = self.tx_tail;
        for (i, segment) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            let mut control = u32::from(segment.len) & 0x7ff;
            if i == 0 {
                control |= TX_FIRST;
            }
            if last {
                control |= TX_LAST | TX_INTERRUPT;
            }
            if self.tx_tail == TX_RING - 1 {
                control |= TX_END_OF_RING;
            }
            // The first descriptor's OWN bit is set in tx_flush, after all the others.
            let status = if i == 0 { 0 } else { OWN };
            let descriptor = Descriptor { status, control, buffer1: segment.address as u32, buffer2: 0 };
            // SAFETY: tx_tail < TX_RING, inside this driver's descriptor page.
            unsafe { Self::descriptor(self.tx, self.tx_tail).write_volatile(descriptor) };
            self.tx_tokens[self.tx_tail] = last.then_some(token);
            self.tx_tail = (self.tx_tail + 1) % TX_RING;
            self.tx_in_use += 1;
        }
        self.tx_pending_first.push(first);
    }

    fn tx_flush(&mut self) {
        for first in core::mem::take(&mut self.tx_pending_first) {
            // SAFETY: `first` indexes this driver's descriptor page.
            unsafe { core::ptr::addr_of_mut!((*Self::descriptor(self.tx, first)).status).write_volatile(OWN) };
        }
        self.write(csr::TX_POLL, 0);
    }

    fn tx_reclaim(&mut self, done: &mut dyn FnMut(u64)) {
        while self.tx_in_use > 0 && !self.tx_pending_first.contains(&self.tx_clean) {
            // SAFETY: tx_clean indexes this driver's descriptor page.
            let status = unsafe { core::ptr::addr_of!((*Self::descriptor(self.tx, self.tx_clean)).status).read_volatile() };
            if status & OWN != 0 {
                break;
            }
            if let Some(token) = self.tx_tokens[self.tx_clean].take() {
                done(token);
            }
            self.tx_clean = (self.tx_clean + 1) % TX_RING;
            self.tx_in_use -= 1;
        }
    }

    fn rx_poll(&mut self, deliver: &mut dyn FnMut(&[u8])) {
        let mut consumed = false;
        loop {
            // SAFETY: rx_next indexes this driver's descriptor page.
            let status = unsafe { core::ptr::addr_of!((*Self::descriptor(self.rx, self.rx_next)).status).read_volatile() };
            if status & OWN != 0 {
                break;
            }
            if status & (RX_FIRST | RX_LAST) == RX_FIRST | RX_LAST {
                // The length field counts 4 bytes of (unwritten) FCS.
                let len = ((status >> 16) & 0x3fff).saturating_sub(4) as usize;
                let len = len.min(RX_BUFFER);
                // SAFETY: the device wrote `len` bytes into this descriptor's 2 KiB buffer.
                let frame = unsafe { core::slice::from_raw_parts(self.rx_buffers[self.rx_next] as usize as *const u8, len) };
                deliver(frame);
            }
            self.give_rx(self.rx_next);
            self.rx_next = (self.rx_next + 1) % RX_RING;
            consumed = true;
        }
        if consumed {
            self.write(csr::RX_POLL, 0);
        }
    }

    fn ack_interrupt(&mut self) -> bool {
        let status = self.read(csr::STATUS);
        self.write(csr::STATUS, status & STATUS_WRITE_ONE_TO_CLEAR);
        status & STATUS_SUMMARY != 0
    }
}
