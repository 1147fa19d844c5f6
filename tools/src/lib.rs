//! Host tools for xok: building the boot image (kernel + initrd) and starting QEMU.

pub mod hostile;
pub mod image;
pub mod netns;
pub mod pcap;
pub mod plot;
pub mod profile;
pub mod qemu;
pub mod relay;
