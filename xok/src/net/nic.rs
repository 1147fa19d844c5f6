//! The seam between the kernel's network mechanisms and the NIC drivers.

use xok_abi::net::NicInfo;

/// A piece of a frame to send, by physical address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhysSegment {
    /// Physical address of the first byte.
    pub address: u64,
    /// Number of bytes (never crosses a page).
    pub len: u16,
}

/// What the kernel needs from a NIC driver. Drivers batch: `tx_push` only fills descriptors,
/// `tx_flush` tells the device with one register write, and `rx_poll` recycles all the buffers
/// it consumed with one register write.
pub trait NicDriver {
    /// MAC address, link state and model.
    fn info(&self) -> NicInfo;
    /// The interrupt line (PIC IRQ number).
    fn irq(&self) -> u8;
    /// How many more segments `tx_push` can take now.
    fn tx_room(&self) -> usize;
    /// Queues one frame made of `segments` (at most `tx_room()` of them); `token` comes back
    /// from `tx_reclaim` once the NIC has sent the frame.
    fn tx_push(&mut self, segments: &[PhysSegment], token: u64);
    /// Makes the device start on the queued frames.
    fn tx_flush(&mut self);
    /// Calls `done` with the token of every frame the device has finished with.
    fn tx_reclaim(&mut self, done: &mut dyn FnMut(u64));
    /// Calls `deliver` with every received frame and gives the buffers back to the device.
    fn rx_poll(&mut self, deliver: &mut dyn FnMut(&[u8]));
    /// Reads and clears the device's interrupt cause; false if it had none.
    fn ack_interrupt(&mut self) -> bool;
}
