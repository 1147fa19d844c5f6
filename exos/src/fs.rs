//! Files from the image. The initrd (a cpio newc archive the kernel was booted with) is the
//! machine's file store: its pages are public, so exos maps them read-only, once, at
//! [`FILES_VA`] and reads the archive through `xok_abi::initrd`, which checks every header.
//! A [`File`] is a view of the mapped bytes: [`File::read`] copies, [`File::bytes`] does not
//! (what a server sends from without a copy).

use xok_abi::initrd::Initrd;
use xok_abi::layout::PAGE_SIZE;
use xok_abi::{Error, PteFlags, Stat};

/// Where exos maps the file store (an address of exos's choosing, not the kernel's).
pub const FILES_VA: usize = 0x60_0000_0000;

/// Why a file cannot be had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsError {
    /// No file has that path.
    NotFound,
    /// The kernel shares no file store, or mapping it failed (the kernel's error).
    NoStore(Error),
}

impl core::fmt::Display for FsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FsError::NotFound => f.write_str("no such file"),
            FsError::NoStore(error) => write!(f, "no file store ({error})"),
        }
    }
}

/// What `stat` tells about a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// Its length in bytes.
    pub len: usize,
}

/// A file store: a checked archive in memory.
#[derive(Clone, Copy, Debug)]
pub struct FileStore {
    archive: Initrd<'static>,
}

/// An open file: its bytes and a read position. Closing is dropping it.
#[derive(Clone, Debug)]
pub struct File {
    name: &'static str,
    data: &'static [u8],
    position: usize,
}

impl FileStore {
    /// A store over `bytes` (an archive that lives for the rest of the program).
    pub fn new(bytes: &'static [u8]) -> FileStore {
        FileStore { archive: Initrd::new(bytes) }
    }

    /// Opens the file at `path` (with or without a leading `/`).
    pub fn open(&self, path: &str) -> Result<File, FsError> {
        let file = self.archive.find(path).ok_or(FsError::NotFound)?;
        Ok(File { name: file.name, data: file.data, position: 0 })
    }

    /// The metadata of the file at `path`.
    pub fn stat(&self, path: &str) -> Result<Metadata, FsError> {
        self.open(path).map(|file| file.metadata())
    }

    /// Every file: its path and its length, in archive order (a malformed archive ends the
    /// list where it breaks).
    pub fn files(&self) -> impl Iterator<Item = (&'static str, Metadata)> + '_ {
        self.archive.files().map(|file| (file.name, Metadata { len: file.data.len() }))
    }
}

impl File {
    /// Its path in the store.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Copies the bytes after the read position into `buffer` and moves the position past
    /// them; 0 at the end of the file.
    pub fn read(&mut self, buffer: &mut [u8]) -> usize {
        let rest = self.data.get(self.position..).unwrap_or(&[]);
        let count = rest.len().min(buffer.len());
        buffer[..count].copy_from_slice(&rest[..count]);
        self.position += count;
        count
    }

    /// Moves the read position to `offset` (past the end: at the end).
    pub fn seek(&mut self, offset: usize) {
        self.position = offset.min(self.data.len());
    }

    /// The whole file, in place in the mapped store: no copy.
    pub fn bytes(&self) -> &'static [u8] {
        self.data
    }

    /// Its metadata.
    pub fn metadata(&self) -> Metadata {
        Metadata { len: self.data.len() }
    }
}

/// The machine's file store, mapped on first use.
pub fn store() -> Result<FileStore, FsError> {
    static STORE: spin::Once<Result<FileStore, Error>> = spin::Once::new();
    STORE.call_once(map_store).map_err(FsError::NoStore)
}

/// Opens `path` in the machine's file store.
pub fn open(path: &str) -> Result<File, FsError> {
    store()?.open(path)
}

/// The metadata of `path` in the machine's file store.
pub fn stat(path: &str) -> Result<Metadata, FsError> {
    store()?.stat(path)
}

/// Maps the kernel's public initrd pages read-only at [`FILES_VA`].
fn map_store() -> Result<FileStore, Error> {
    let (first, len) = (crate::sys::kernel_stat(Stat::InitrdPage), crate::sys::kernel_stat(Stat::InitrdBytes));
    if first == 0 || len == 0 {
        return Err(Error::NotFound);
    }
    for n in 0..len.div_ceil(PAGE_SIZE) {
        // SAFETY: nothing of this program lives at FILES_VA (exos keeps the range for the
        // store), and a read-only mapping cannot change any memory.
        unsafe { crate::sys::insert_pte(FILES_VA + n * PAGE_SIZE, first + n, PteFlags::empty())? };
    }
    // SAFETY: `len` bytes are mapped read-only at FILES_VA from here to the program's end, and
    // nobody can write public pages, so the bytes never change under the reference.
    let bytes = unsafe { core::slice::from_raw_parts(FILES_VA as *const u8, len) };
    Ok(FileStore::new(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn store() -> FileStore {
        let archive = xok_abi::initrd::write_archive([("hello", &b"\x7fELF"[..]), ("www/index.html", b"<h1>xok</h1>\n")]);
        FileStore::new(Vec::leak(archive))
    }

    #[test]
    fn files_open_read_and_stat() {
        let store = store();
        let mut file = store.open("/www/index.html").unwrap();
        assert_eq!(file.metadata(), Metadata { len: 13 });
        let mut buffer = [0u8; 5];
        assert_eq!(file.read(&mut buffer), 5);
        assert_eq!(&buffer, b"<h1>x");
        let mut rest = [0u8; 64];
        assert_eq!(file.read(&mut rest), 8);
        assert_eq!(&rest[..8], b"ok</h1>\n");
        assert_eq!(file.read(&mut rest), 0, "end of file");
        file.seek(1);
        assert_eq!(file.read(&mut buffer), 5);
        assert_eq!(&buffer, b"h1>xo");
        assert_eq!(file.bytes(), b"<h1>xok</h1>\n");
        assert_eq!(store.stat("hello"), Ok(Metadata { len: 4 }));
        assert_eq!(store.open("www/missing").err(), Some(FsError::NotFound));
        let names: Vec<&str> = store.files().map(|(name, _)| name).collect();
        assert_eq!(names, ["hello", "www/index.html"]);
    }
}
