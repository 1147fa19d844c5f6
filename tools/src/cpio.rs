//! Writes cpio "newc" archives, the initrd format xok reads (`xok::initrd`).

use xok::initrd::{MAGIC, TRAILER};

/// An archive being built in memory.
#[derive(Default)]
pub struct CpioWriter {
    bytes: Vec<u8>,
    next_inode: u32,
}

impl CpioWriter {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.next_inode += 1;
        let fields = [self.next_inode, mode, 0, 0, 1, 0, data.len() as u32, 0, 0, 0, 0, name.len() as u32 + 1, 0];
        self.bytes.extend_from_slice(MAGIC);
        for field in fields {
            self.bytes.extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.bytes.resize(self.bytes.len().next_multiple_of(4), 0);
        self.bytes.extend_from_slice(data);
        self.bytes.resize(self.bytes.len().next_multiple_of(4), 0);
    }

    /// Adds a regular file.
    pub fn add_file(&mut self, name: &str, data: &[u8]) {
        self.entry(name, 0o100_644, data);
    }

    /// Ends the archive and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry(TRAILER, 0, &[]);
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xok::initrd::Initrd;

    #[test]
    fn the_kernel_reads_what_the_writer_writes() {
        let mut writer = CpioWriter::new();
        writer.add_file("init", b"\x7fELF");
        writer.add_file("www/a.html", &[7; 1001]);
        let bytes = writer.finish();
        let initrd = Initrd::new(&bytes);
        assert_eq!(initrd.validate(), Ok(2));
        assert_eq!(initrd.find("www/a.html").unwrap().data, &[7; 1001]);
        assert_eq!(initrd.find("init").unwrap().data, b"\x7fELF");
    }
}
