//! Intel 82540EM (QEMU `e1000`): legacy descriptors, one receive and one transmit ring of 256
//! entries, 2 KiB receive buffers, interrupt-driven and batched.
//!
//! Register writes are VM exits under QEMU, so the driver writes the receive tail once per
//! `rx_poll` and the transmit tail once per `tx_flush`, never per frame.

use super::pci::PciDevice;
use super::{DEVICE_WINDOW, dma_page};
use crate::net::nic::{NicDriver, PhysSegment};
use crate::ownership::PageOwnership;
use alloc::vec::Vec;
use xok_abi::net::{NicInfo, NicModel};

/// PCI vendor and device id of the 82540EM.
pub const PCI_ID: (u16, u16) = (0x8086, 0x100e);

/// Register offsets.
mod reg {
    pub const CTRL: usize = 0x0000;
    pub const STATUS: usize = 0x0008;
    pub const ICR: usize = 0x00c0;
    pub const IMS: usize = 0x00d0;
    pub const IMC: usize = 0x00d8;
    pub const RCTL: usize = 0x0100;
    pub const TCTL: usize = 0x0400;
    pub const TIPG: usize = 0x0410;
    pub const RDBAL: usize = 0x2800;
    pub const RDBAH: usize = 0x2804;
    pub const RDLEN: usize = 0x2808;
    pub const RDH: usize = 0x2810;
    pub const RDT: usize = 0x2818;
    pub const RDTR: usize = 0x2820;
    pub const TDBAL: usize = 0x3800;
    pub const TDBAH: usize = 0x3804;
    pub const TDLEN: usize = 0x3808;
    pub const TDH: usize = 0x3810;
    pub const TDT: usize = 0x3818;
    pub const MTA: usize = 0x5200;
    pub const RAL0: usize = 0x5400;
    pub const RAH0: usize = 0x5404;
}

const CTRL_SLU: u32 = 1 << 6;
const CTRL_ASDE: u32 = 1 << 5;
const CTRL_RST: u32 = 1 << 26;
const STATUS_LU: u32 = 1 << 1;
const RCTL_EN: u32 = 1 << 1;
const RCTL_UPE: u32 = 1 << 3;
const RCTL_MPE: u32 = 1 << 4;
const RCTL_BAM: u32 = 1 << 15;
const RCTL_SECRC: u32 = 1 << 26;
const TCTL_EN: u32 = 1 << 1;
const TCTL_PSP: u32 = 1 << 3;
const TCTL_CT: u32 = 0x0f << 4;
const TCTL_COLD: u32 = 0x40 << 12;
const INT_TXDW: u32 = 1 << 0;
const INT_LSC: u32 = 1 << 2;
const INT_RXDMT0: u32 = 1 << 4;
const INT_RXO: u32 = 1 << 6;
const INT_RXT0: u32 = 1 << 7;
const TX_CMD_EOP: u8 = 1 << 0;
const TX_CMD_IFCS: u8 = 1 << 1;
const TX_CMD_RS: u8 = 1 << 3;
const DESC_DD: u8 = 1 << 0;
const RX_EOP: u8 = 1 << 1;

/// Descriptors per ring (one page of 16-byte descriptors).
const RING_SIZE: usize = 256;
/// Receive buffer size (RCTL.BSIZE = 0).
const RX_BUFFER: usize = 2048;

#[repr(C)]
#[derive(Clone, Copy)]
struct RxDescriptor {
    address: u64,
    length: u16,
    checksum: u16,
    status: u8,
    errors: u8,
    special: u16,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct TxDescriptor {
    address: u64,
    length: u16,
    cso: u8,
    command: u8,
    status: u8,
    css: u8,
    special: u16,
}

const _: () = assert!(core::mem::size_of::<RxDescriptor>() == 16);
const _: () = assert!(core::mem::size_of::<TxDescriptor>() == 16);

/// One e1000.
pub struct E1000 {
    registers: *mut u32,
    irq: u8,
    mac: [u8; 6],
    rx: *mut RxDescriptor,
    rx_buffers: Vec<u64>,
    rx_next: usize,
    tx: *mut TxDescriptor,
    /// The token of the frame whose last descriptor is at each index.
    tx_tokens: Vec<Option<u64>>,
    tx_tail: usize,
    tx_clean: usize,
    tx_in_use: usize,
}

// SAFETY: the driver is only used under the kernel lock on one CPU; its raw pointers name
// device registers and DMA pages that belong to it alone.
unsafe impl Send for E1000 {}

impl E1000 {
    fn read(&self, offset: usize) -> u32 {
        // SAFETY: `registers` is the device's BAR0 (128 KiB) through the device window, and
        // every offset used is a register of the 82540EM.
        unsafe { self.registers.byte_add(offset).read_volatile() }
    }

    fn write(&self, offset: usize, value: u32) {
        // SAFETY: as for read.
        unsafe { self.registers.byte_add(offset).write_volatile(value) }
    }

    /// Resets and starts the device: rings, buffers, MAC, interrupts.
    pub fn new(device: &PciDevice, pages: &mut PageOwnership) -> E1000 {
        device.enable();
        let registers = (DEVICE_WINDOW + u64::from(device.bar(0))) as *mut u32;
        let rx_page = dma_page(pages);
        let tx_page = dma_page(pages);
        let mut rx_buffers = Vec::with_capacity(RING_SIZE);
        for _ in 0..RING_SIZE / 2 {
            let page = dma_page(pages).address() as u64;
            rx_buffers.extend([page, page + RX_BUFFER as u64]);
        }
        let mut nic = E1000 {
            registers,
            irq: device.interrupt_line(),
            mac: [0; 6],
            rx: rx_page.address() as *mut RxDescriptor,
            rx_buffers,
            rx_next: 0,
            tx: tx_page.address() as *mut TxDescriptor,
            tx_tokens: alloc::vec![None; RING_SIZE],
            tx_tail: 0,
            tx_clean: 0,
            tx_in_use: 0,
        };
        nic.write(reg::IMC, u32::MAX);
        nic.write(reg::CTRL, nic.read(reg::CTRL) | CTRL_RST);
        while nic.read(reg::CTRL) & CTRL_RST != 0 {
            core::hint::spin_loop();
        }
        nic.write(reg::IMC, u32::MAX);
        nic.write(reg::CTRL, nic.read(reg::CTRL) | CTRL_SLU | CTRL_ASDE);
        let (low, high) = (nic.read(reg::RAL0), nic.read(reg::RAH0));
        nic.mac = [low as u8, (low >> 8) as u8, (low >> 16) as u8, (low >> 24) as u8, high as u8, (high >> 8) as u8];
        for i in 0..128 {
            nic.write(reg::MTA + 4 * i, 0);
        }
        for (i, buffer) in nic.rx_buffers.iter().enumerate() {
            let descriptor = RxDescriptor { address: *buffer, length: 0, checksum: 0, status: 0, errors: 0, special: 0 };
            // SAFETY: `rx` is a DMA page of RING_SIZE descriptors owned by this driver.
            unsafe { nic.rx.add(i).write_volatile(descriptor) };
        }
        let rx_base = rx_page.address() as u64;
        nic.write(reg::RDBAL, rx_base as u32);
        nic.write(reg::RDBAH, (rx_base >> 32) as u32);
        nic.write(reg::RDLEN, (RING_SIZE * 16) as u32);
        nic.write(reg::RDH, 0);
        nic.write(reg::RDT, (RING_SIZE - 1) as u32);
        nic.write(reg::RDTR, 0);
        nic.write(reg::RCTL, RCTL_EN | RCTL_UPE | RCTL_MPE | RCTL_BAM | RCTL_SECRC);
        let tx_base = tx_page.address() as u64;
        nic.write(reg::TDBAL, tx_base as u32);
        nic.write(reg::TDBAH, (tx_base >> 32) as u32);
        nic.write(reg::TDLEN, (RING_SIZE * 16) as u32);
        nic.write(reg::TDH, 0);
        nic.write(reg::TDT, 0);
        nic.write(reg::TCTL, TCTL_EN | TCTL_PSP | TCTL_CT | TCTL_COLD);
        nic.write(reg::TIPG, 10 | (8 << 10) | (6 << 20));
        nic.read(reg::ICR);
        nic.write(reg::IMS, INT_RXT0 | INT_TXDW | INT_LSC | INT_RXO | INT_RXDMT0);
        nic
    }
}

impl NicDriver for E1000 {
    fn info(&self) -> NicInfo {
        NicInfo { mac: self.mac, link_up: self.read(reg::STATUS) & STATUS_LU != 0, model: NicModel::E1000 }
    }

    fn irq(&self) -> u8 {
        self.irq
    }

    fn tx_room(&self) -> usize {
        // One descriptor stays empty so that a full ring is not mistaken for an empty one.
        RING_SIZE - 1 - self.tx_in_use
    }

    fn tx_push(&mut self, segments: &[PhysSegment], token: u64) {
        assert!(!segments.is_empty() && segments.len() <= self.tx_room());
        for (i, segment) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            let command = TX_CMD_IFCS | TX_CMD_RS | if last { TX_CMD_EOP } else { 0 };
            let descriptor = TxDescriptor { address: segment.address, length: segment.len, cso: 0, command, status: 0, css: 0, special: 0 };
            // SAFETY: `tx` is this driver's DMA page of RING_SIZE descriptors; tx_tail < RING_SIZE.
            unsafe { self.tx.add(self.tx_tail).write_volatile(descriptor) };
            self.tx_tokens[self.tx_tail] = last.then_some(token);
            self.tx_tail = (self.tx_tail + 1) % RING_SIZE;
            self.tx_in_use += 1;
        }
    }

    fn tx_flush(&mut self) {
        self.write(reg::TDT, self.tx_tail as u32);
    }

    fn tx_reclaim(&mut self, done: &mut dyn FnMut(u64)) {
        while self.tx_in_use > 0 {
            // SAFETY: tx_clean indexes this driver's descriptor page.
            let status = unsafe { core::ptr::addr_of!((*self.tx.add(self.tx_clean)).status).read_volatile() };
            if status & DESC_DD == 0 {
                break;
            }
            if let Some(token) = self.tx_tokens[self.tx_clean].take() {
                done(token);
            }
            self.tx_clean = (self.tx_clean + 1) % RING_SIZE;
            self.tx_in_use -= 1;
        }
    }

    fn rx_poll(&mut self, deliver: &mut dyn FnMut(&[u8])) {
        let mut last = None;
        loop {
            // SAFETY: rx_next indexes this driver's descriptor page.
            let descriptor = unsafe { self.rx.add(self.rx_next).read_volatile() };
            if descriptor.status & DESC_DD == 0 {
                break;
            }
            if descriptor.status & RX_EOP != 0 && descriptor.errors == 0 {
                let len = usize::from(descriptor.length).min(RX_BUFFER);
                // SAFETY: the device wrote `len` bytes into this driver's 2 KiB buffer.
                let frame = unsafe { core::slice::from_raw_parts(self.rx_buffers[self.rx_next] as *const u8, len) };
                deliver(frame);
            }
            let fresh = RxDescriptor { address: self.rx_buffers[self.rx_next], length: 0, checksum: 0, status: 0, errors: 0, special: 0 };
            // SAFETY: as above; the descriptor goes back to the device.
            unsafe { self.rx.add(self.rx_next).write_volatile(fresh) };
            last = Some(self.rx_next);
            self.rx_next = (self.rx_next + 1) % RING_SIZE;
        }
        if let Some(index) = last {
            self.write(reg::RDT, index as u32);
        }
    }

    fn ack_interrupt(&mut self) -> bool {
        self.read(reg::ICR) != 0
    }
}
