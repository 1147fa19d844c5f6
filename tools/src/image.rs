//! Builds the boot image: the kernel ELF and an initrd holding every userland program and,
//! under `www/`, the files of a document root (`XOK_DOCROOT`, default `site/` in the
//! repository; `make run DOCROOT=dir` sets it), which programs read through `exos::fs`.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target xok and its programs are built for.
pub const TARGET: &str = "x86_64-unknown-none";

/// Where the image's parts are.
#[derive(Clone, Debug)]
pub struct Image {
    /// The kernel ELF.
    pub kernel: PathBuf,
    /// The initrd archive.
    pub initrd: PathBuf,
}

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tools/ lies in the workspace").to_path_buf()
}

/// The names of the userland programs (`userland/src/bin/*.rs`, and
/// `userland/src/bin/<name>/main.rs` for programs of several modules).
pub fn program_names(root: &Path) -> Result<Vec<String>> {
    let dir = root.join("userland/src/bin");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "rs") {
            names.push(path.file_stem().expect("a .rs file has a stem").to_string_lossy().into_owned());
        } else if path.join("main.rs").is_file() {
            names.push(path.file_name().expect("a directory has a name").to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Compiles the kernel and the programs in release mode for [`TARGET`], packs the initrd (with
/// the document root `XOK_DOCROOT`, default `site/`), and writes both into `out`.
pub fn build(out: &Path) -> Result<Image> {
    let root = workspace_root();
    let docroot = std::env::var_os("XOK_DOCROOT").map_or_else(|| root.join("site"), PathBuf::from);
    build_with_docroot(out, &docroot)
}

/// [`build`] with the files of `docroot` under `www/`.
pub fn build_with_docroot(out: &Path, docroot: &Path) -> Result<Image> {
    let root = workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--release", "--target", TARGET, "-p", "xok", "-p", "userland"])
        .status()
        .context("running cargo build for the kernel and programs")?;
    if !status.success() {
        bail!("building the kernel and programs failed ({status})");
    }
    let binaries = target_dir(&root).join(TARGET).join("release");
    let mut files = Vec::new();
    for name in program_names(&root)? {
        files.push((name.clone(), stripped(&binaries.join(&name))?));
    }
    let served = docroot_files(docroot)?;
    files.extend(cheetah_records(&served));
    files.extend(served);
    let archive = xok_abi::initrd::write_archive(files.iter().map(|(name, bytes)| (name.as_str(), bytes.as_slice())));
    std::fs::create_dir_all(out)?;
    let image = Image { kernel: out.join("xok"), initrd: out.join("initrd.cpio") };
    write_atomically(&image.initrd, &archive)?;
    write_atomically(&image.kernel, &std::fs::read(binaries.join("xok"))?)?;
    Ok(image)
}

/// The program without its debug sections (xok never reads them; they are most of the file).
fn stripped(program: &Path) -> Result<Vec<u8>> {
    let out = program.with_extension("stripped");
    let status = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&out)
        .arg(program)
        .status()
        .context("running strip (binutils; make setup installs it)")?;
    if !status.success() {
        bail!("strip {} failed ({status})", program.display());
    }
    std::fs::read(&out).with_context(|| format!("reading {}", out.display()))
}

/// Every regular file under `docroot`, named `www/<path relative to docroot>`, in path order.
pub fn docroot_files(docroot: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::new();
    let mut directories = vec![docroot.to_path_buf()];
    while let Some(directory) = directories.pop() {
        for entry in std::fs::read_dir(&directory).with_context(|| format!("reading the document root {}", directory.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                directories.push(path);
                continue;
            }
            let relative = path.strip_prefix(docroot).expect("found under the document root");
            let Some(name) = relative.to_str() else { bail!("{} is not a UTF-8 path", path.display()) };
            let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            files.push((format!("www/{name}"), bytes));
        }
    }
    files.sort();
    Ok(files)
}

/// The maintenance tool's work for Cheetah: for each served file `www/<path>`, a record
/// `cache/<path>` with its response heads and the sums of its segments (`cheetah::cache`).
pub fn cheetah_records(served: &[(String, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    served
        .iter()
        .filter_map(|(name, body)| {
            let path = name.strip_prefix("www/")?;
            let head = cheetah::http::Head::new(200, "OK", cheetah::http::content_type(path), body.len());
            Some((format!("cache/{path}"), cheetah::cache::encode(body, &head)))
        })
        .collect()
}

/// Where [`build`] leaves program `name` (or the kernel, `xok`) with its symbols, before
/// stripping.
pub fn built_program(name: &str) -> PathBuf {
    target_dir(&workspace_root()).join(TARGET).join("release").join(name)
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

/// Writes through a temporary file and a rename, so a concurrent reader never sees half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&temporary, bytes).with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}
