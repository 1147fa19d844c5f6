//! PCI configuration space through the legacy I/O ports (0xcf8/0xcfc), and enumeration of
//! bus 0, which is where QEMU's `pc` machine puts its devices.

use x86_64::instructions::port::Port;

/// A function on the PCI bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciDevice {
    /// Bus number.
    pub bus: u8,
    /// Device number.
    pub device: u8,
    /// Function number.
    pub function: u8,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device_id: u16,
}

fn address(bus: u8, device: u8, function: u8, offset: u8) -> u32 {
    0x8000_0000 | u32::from(bus) << 16 | u32::from(device) << 11 | u32::from(function) << 8 | u32::from(offset & 0xfc)
}

impl PciDevice {
    /// Reads a configuration dword.
    pub fn read(&self, offset: u8) -> u32 {
        // SAFETY: the configuration ports only address PCI configuration space; reading it has
        // no memory effects.
        unsafe {
            Port::new(0xcf8).write(address(self.bus, self.device, self.function, offset));
            Port::new(0xcfc).read()
        }
    }

    /// Writes a configuration dword.
    pub fn write(&self, offset: u8, value: u32) {
        // SAFETY: only used on devices this kernel drives, for their BARs' command bits.
        unsafe {
            Port::new(0xcf8).write(address(self.bus, self.device, self.function, offset));
            Port::new(0xcfc).write(value);
        }
    }

    /// Base address register `n`: the memory address (flag bits cleared) or I/O port.
    pub fn bar(&self, n: u8) -> u32 {
        let raw = self.read(0x10 + 4 * n);
        if raw & 1 == 1 { raw & !3 } else { raw & !0xf }
    }

    /// The legacy interrupt line the firmware routed this device to.
    pub fn interrupt_line(&self) -> u8 {
        self.read(0x3c) as u8
    }

    /// Turns on I/O and memory decoding and bus mastering (DMA).
    pub fn enable(&self) {
        let command = self.read(0x04);
        self.write(0x04, (command & 0xffff_0000) | (command & 0xffff) | 0x7);
    }
}

/// Every function on bus 0.
pub fn devices() -> impl Iterator<Item = PciDevice> {
    (0..32u8).flat_map(|device| (0..8u8).map(move |function| (device, function))).filter_map(|(device, function)| {
        let probe = PciDevice { bus: 0, device, function, vendor: 0, device_id: 0 };
        let id = probe.read(0);
        let vendor = id as u16;
        (vendor != 0xffff).then_some(PciDevice { vendor, device_id: (id >> 16) as u16, ..probe })
    })
}
