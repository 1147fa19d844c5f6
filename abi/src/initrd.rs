//! The initrd: a cpio "newc" archive of programs and data files, read in place. It is part of
//! the interface: the kernel loads programs from it, and programs read their files from it
//! (exos maps its pages, which every environment may read: `Stat::InitrdPage`).
//!
//! Every header field is checked; a malformed archive yields an error, never a panic.
//! [`write_archive`] makes archives (the image builder in `tools` and the tests use it).

/// The newc magic number.
pub const MAGIC: &[u8; 6] = b"070701";
/// Length of a newc header.
pub const HEADER_LEN: usize = 110;
/// The name of the entry that ends an archive.
pub const TRAILER: &str = "TRAILER!!!";

/// Why an archive could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitrdError {
    /// The archive ends inside a header, a name or a file at this offset.
    Truncated(usize),
    /// The header at this offset does not start with the newc magic.
    BadMagic(usize),
    /// A header field at this offset is not hexadecimal.
    BadField(usize),
    /// The name at this offset is not NUL-terminated UTF-8.
    BadName(usize),
}

/// A file in the archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct File<'a> {
    /// Its path inside the archive (no leading `/`).
    pub name: &'a str,
    /// Its contents.
    pub data: &'a [u8],
}

/// A cpio newc archive in memory.
#[derive(Clone, Copy, Debug)]
pub struct Initrd<'a> {
    bytes: &'a [u8],
}

fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

fn hex_field(bytes: &[u8], at: usize) -> Result<usize, InitrdError> {
    let field = bytes.get(at..at + 8).ok_or(InitrdError::Truncated(at))?;
    let text = core::str::from_utf8(field).map_err(|_| InitrdError::BadField(at))?;
    usize::from_str_radix(text, 16).map_err(|_| InitrdError::BadField(at))
}

impl<'a> Initrd<'a> {
    /// Wraps archive bytes; [`Initrd::files`] checks them as it goes.
    pub fn new(bytes: &'a [u8]) -> Self {
        Initrd { bytes }
    }

    /// The entry at `offset` and the offset of the next one; `None` at the trailer.
    fn entry(&self, offset: usize) -> Result<Option<(File<'a>, usize)>, InitrdError> {
        let header = self
            .bytes
            .get(offset..offset + HEADER_LEN)
            .ok_or(InitrdError::Truncated(offset))?;
        if &header[..6] != MAGIC {
            return Err(InitrdError::BadMagic(offset));
        }
        let size = hex_field(header, 54)?;
        let name_size = hex_field(header, 94)?;
        let name_start = offset + HEADER_LEN;
        let name_end = name_start.checked_add(name_size).ok_or(InitrdError::Truncated(name_start))?;
        let name_bytes = self.bytes.get(name_start..name_end).ok_or(InitrdError::Truncated(name_start))?;
        let (nul, name) = name_bytes.split_last().ok_or(InitrdError::BadName(name_start))?;
        if *nul != 0 {
            return Err(InitrdError::BadName(name_start));
        }
        let name = core::str::from_utf8(name).map_err(|_| InitrdError::BadName(name_start))?;
        if name == TRAILER {
            return Ok(None);
        }
        let data_start = align4(name_end);
        let data_end = data_start.checked_add(size).ok_or(InitrdError::Truncated(data_start))?;
        let data = self.bytes.get(data_start..data_end).ok_or(InitrdError::Truncated(data_start))?;
        let name = name.trim_start_matches("./").trim_start_matches('/');
        Ok(Some((File { name, data }, align4(data_end))))
    }

    /// The archive's size in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the archive has no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Checks the whole archive and counts its files.
    pub fn validate(&self) -> Result<usize, InitrdError> {
        let mut count = 0;
        let mut offset = 0;
        while let Some((_, next)) = self.entry(offset)? {
            count += 1;
            offset = next;
        }
        Ok(count)
    }

    /// The files, in archive order; iteration stops at the trailer or the first error.
    pub fn files(&self) -> impl Iterator<Item = File<'a>> + '_ {
        let mut offset = Some(0);
        core::iter::from_fn(move || {
            let (file, next) = self.entry(offset?).ok().flatten()?;
            offset = Some(next);
            Some(file)
        })
    }

    /// The file named `name` (with or without a leading `/`).
    pub fn find(&self, name: &str) -> Option<File<'a>> {
        let name = name.trim_start_matches('/');
        self.files().find(|file| file.name == name)
    }
}

/// Writes a newc archive of regular files (mode 0644), ending with the trailer.
pub fn write_archive<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> alloc::vec::Vec<u8> {
    use core::fmt::Write;
    let mut out = alloc::vec::Vec::new();
    let trailer = core::iter::once((TRAILER, &[][..]));
    for (inode, (name, data)) in files.into_iter().chain(trailer).enumerate() {
        let mode = if name == TRAILER { 0 } else { 0o100_644 };
        let fields = [inode + 1, mode, 0, 0, 1, 0, data.len(), 0, 0, 0, 0, name.len() + 1, 0];
        let mut header = alloc::string::String::from("070701");
        for field in fields {
            let _ = write!(header, "{field:08x}");
        }
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.resize(out.len().next_multiple_of(4), 0);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn archive() -> Vec<u8> {
        write_archive([("hello", &b"\x7fELF..."[..]), ("www/index.html", b"<html>hi</html>")])
    }

    #[test]
    fn reads_files_in_order() {
        let bytes = archive();
        let initrd = Initrd::new(&bytes);
        assert_eq!(initrd.validate(), Ok(2));
        assert_eq!(initrd.find("/www/index.html").unwrap().data, b"<html>hi</html>");
        assert_eq!(initrd.find("hello").unwrap().data, b"\x7fELF...");
        assert!(initrd.find("missing").is_none());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = archive();
        let trailer = bytes.windows(TRAILER.len()).position(|w| w == TRAILER.as_bytes()).unwrap();
        // Anything cut before the trailer's name is complete must be refused.
        for len in 0..trailer + TRAILER.len() + 1 {
            let initrd = Initrd::new(&bytes[..len]);
            assert!(initrd.validate().is_err(), "truncated to {len} accepted");
            let _ = initrd.files().count();
        }
    }

    #[test]
    fn corrupt_headers_are_refused() {
        let mut bytes = archive();
        bytes[0] = b'1';
        assert_eq!(Initrd::new(&bytes).validate(), Err(InitrdError::BadMagic(0)));
        let mut bytes = archive();
        bytes[60] = b'z';
        assert_eq!(Initrd::new(&bytes).validate(), Err(InitrdError::BadField(54)));
        let mut bytes = archive();
        bytes[94..102].copy_from_slice(b"ffffffff");
        assert!(Initrd::new(&bytes).validate().is_err());
    }
}
