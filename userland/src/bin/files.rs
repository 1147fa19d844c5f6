//! Reads the machine's file store through `exos::fs`, for the tests and for people:
//!
//! - `list`: every file with its length (`files: <path> <len> bytes`);
//! - `cat <path>...`: each file's length and FNV-1a hash (`files: <path> <len> bytes fnv1a
//!   <hex>`), read in 100-byte pieces through `File::read` and checked against the zero-copy
//!   view; a missing file prints `files: <path>: no such file`.
#![cfg_attr(target_os = "none", no_std, no_main)]

use exos::{fs, println};

exos::entry!(run);

/// The FNV-1a offset basis.
const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// 64-bit FNV-1a of `bytes`, continuing `hash`: enough to compare a file with the host's copy.
fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

fn run(args: exos::Args) -> i32 {
    let words = args.to_vec();
    let store = match fs::store() {
        Ok(store) => store,
        Err(error) => {
            println!("files: {error}");
            return 1;
        }
    };
    match words.first().copied() {
        Some("list") => {
            for (path, metadata) in store.files() {
                println!("files: {path} {} bytes", metadata.len);
            }
            0
        }
        Some("cat") => {
            let mut failures = 0;
            for path in &words[1..] {
                let mut file = match store.open(path) {
                    Ok(file) => file,
                    Err(error) => {
                        println!("files: {path}: {error}");
                        failures += 1;
                        continue;
                    }
                };
                let mut hash = FNV_START;
                let mut piece = [0u8; 100];
                loop {
                    let count = file.read(&mut piece);
                    if count == 0 {
                        break;
                    }
                    hash = fnv1a(hash, &piece[..count]);
                }
                if hash != fnv1a(FNV_START, file.bytes()) {
                    println!("files: {path}: read and the zero-copy view differ");
                    failures += 1;
                }
                println!("files: {path} {} bytes fnv1a {hash:016x}", file.metadata().len);
            }
            failures
        }
        other => {
            println!("files: unknown mode {other:?} (list, cat PATH...)");
            2
        }
    }
}
