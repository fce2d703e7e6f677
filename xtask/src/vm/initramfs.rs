//! The guest's initramfs, a gzip'd newc cpio: static busybox, the init's two stages, and the
//! modules that 9p over virtio and overlayfs need (in the order `modprobe --show-depends`
//! gives, xz-decompressed here since busybox's insmod reads plain .ko files). Cached per
//! kernel release under a name that hashes everything it is made of, so a changed init
//! script or a new busybox makes a new one.

use std::{
    fs,
    io::{BufReader, Write as _},
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use flate2::{Compression, write::GzEncoder};

use super::{guest, host::Tools};
use crate::exec::stdout_of;

/// What the guest needs to reach the host's files: 9p over virtio-pci, and overlayfs.
const MODULES: [&str; 4] = ["9p", "9pnet_virtio", "virtio_pci", "overlay"];

/// Bump when the archive's layout changes in a way the hash below does not see.
const LAYOUT: u32 = 1;

/// Builds (or finds) the initramfs of the kernel unpacked at `root`.
pub fn build(tools: &Tools, root: &Path, release: &str, dir: &Path) -> anyhow::Result<PathBuf> {
    let modules = module_files(tools, root, release)?;
    let names: Vec<String> = modules
        .iter()
        .map(|m| module_name(m))
        .collect::<anyhow::Result<_>>()?;
    let stage1 = guest::stage1(&names);
    let stage2 = guest::stage2();
    let busybox_meta = fs::metadata(&tools.busybox)
        .with_context(|| format!("cannot stat {}", tools.busybox.display()))?;
    let mtime = busybox_meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let mut hash = Fnv::new();
    hash.add(&LAYOUT.to_le_bytes());
    hash.add(stage1.as_bytes());
    hash.add(stage2.as_bytes());
    hash.add(tools.busybox.as_os_str().as_encoded_bytes());
    hash.add(&busybox_meta.len().to_le_bytes());
    hash.add(&mtime.to_le_bytes());
    for m in &modules {
        hash.add(m.as_os_str().as_encoded_bytes());
    }
    let path = dir.join(format!("{release}-{:016x}.cpio.gz", hash.0));
    if path.is_file() {
        return Ok(path);
    }
    eprintln!(
        "xtask vm: building the initramfs for {release} ({} modules)",
        modules.len()
    );
    let mut archive = Archive::default();
    for d in ["bin", "dev", "proc", "sys", "mnt", "newroot", "modules"] {
        archive.dir(d);
    }
    // The kernel opens /dev/console for init's stdio before anything is mounted.
    archive.char_device("dev/console", 0o600, 5, 1);
    archive.file("init", 0o755, stage1.as_bytes());
    archive.file("stage2", 0o644, stage2.as_bytes());
    let busybox = fs::read(&tools.busybox)
        .with_context(|| format!("cannot read {}", tools.busybox.display()))?;
    archive.file("bin/busybox", 0o755, &busybox);
    for (module, name) in modules.iter().zip(&names) {
        let plain = read_module(module)?;
        archive.file(&format!("modules/{name}"), 0o644, &plain);
    }
    let cpio = archive.finish()?;

    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // Older initramfs of this release are stale now.
    if let Ok(entries) = fs::read_dir(dir) {
        let prefix = format!("{release}-");
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    let tmp = dir.join(format!(".{release}.{}.tmp", std::process::id()));
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&cpio)?;
    fs::write(&tmp, gz.finish()?).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, &path).with_context(|| format!("cannot rename to {}", path.display()))?;
    Ok(path)
}

/// The module files to insmod, dependencies first, each once.
fn module_files(tools: &Tools, root: &Path, release: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = Vec::new();
    for module in MODULES {
        let out = stdout_of(Command::new(&tools.modprobe).arg("-d").arg(root).args([
            "-S",
            release,
            "--show-depends",
            module,
        ]))?;
        for file in insmod_paths(&out) {
            if !files.contains(&file) {
                files.push(file);
            }
        }
    }
    Ok(files)
}

/// The files of the `insmod FILE [OPTIONS]` lines of `modprobe --show-depends` output, in
/// order; `builtin NAME` lines need nothing.
fn insmod_paths(show_depends: &str) -> Vec<PathBuf> {
    show_depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("insmod "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(PathBuf::from)
        .collect()
}

/// `9p.ko` for `…/9p.ko.xz`.
fn module_name(path: &Path) -> anyhow::Result<String> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("odd module path {}", path.display()))?;
    let name = name.strip_suffix(".xz").unwrap_or(name);
    if !name.ends_with(".ko") {
        bail!(
            "{}: only .ko and .ko.xz modules are supported",
            path.display()
        );
    }
    Ok(name.to_owned())
}

fn read_module(path: &Path) -> anyhow::Result<Vec<u8>> {
    let file = fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = BufReader::new(file);
    if path.extension().is_some_and(|e| e == "xz") {
        let mut plain = Vec::new();
        lzma_rs::xz_decompress(&mut reader, &mut plain)
            .map_err(|e| anyhow::anyhow!("cannot decompress {}: {e}", path.display()))?;
        Ok(plain)
    } else {
        fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

/// A newc cpio being written, entries numbered from 1.
#[derive(Default)]
struct Archive {
    out: Vec<u8>,
    error: Option<std::io::Error>,
    next_ino: u32,
}

impl Archive {
    fn dir(&mut self, name: &str) {
        self.entry(cpio::NewcBuilder::new(name).mode(0o040_755).nlink(2), &[]);
    }

    fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(cpio::NewcBuilder::new(name).mode(0o100_000 | perm), data);
    }

    fn char_device(&mut self, name: &str, perm: u32, major: u32, minor: u32) {
        let b = cpio::NewcBuilder::new(name)
            .mode(0o020_000 | perm)
            .rdev_major(major)
            .rdev_minor(minor);
        self.entry(b, &[]);
    }

    fn entry(&mut self, builder: cpio::NewcBuilder, data: &[u8]) {
        if self.error.is_some() {
            return;
        }
        let Ok(size) = u32::try_from(data.len()) else {
            self.error = Some(std::io::Error::other("file over 4 GiB"));
            return;
        };
        self.next_ino += 1;
        let out = std::mem::take(&mut self.out);
        let mut w = builder.ino(self.next_ino).write(out, size);
        let done = w.write_all(data).and_then(|()| w.finish());
        match done {
            Ok(out) => self.out = out,
            Err(e) => self.error = Some(e),
        }
    }

    fn finish(self) -> anyhow::Result<Vec<u8>> {
        if let Some(e) = self.error {
            return Err(e).context("cannot write the initramfs");
        }
        cpio::newc::trailer(self.out).context("cannot write the initramfs")
    }
}

/// FNV-1a, 64 bits: a cache key that stays the same across Rust releases (unlike
/// `DefaultHasher`), for no dependency.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        // A separator, so that ("ab", "c") and ("a", "bc") differ.
        self.0 = (self.0 ^ 0xff).wrapping_mul(0x0100_0000_01b3);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_depends_parsing() {
        let out = "\
insmod /k/lib/modules/6.1.0-48-amd64/kernel/fs/netfs/netfs.ko.xz 
insmod /k/lib/modules/6.1.0-48-amd64/kernel/net/9p/9pnet.ko.xz 
builtin virtio
insmod /k/lib/modules/6.1.0-48-amd64/kernel/fs/9p/9p.ko.xz opt=1
";
        let files = insmod_paths(out);
        assert_eq!(files.len(), 3);
        assert!(files[0].ends_with("netfs.ko.xz"));
        assert!(files[2].ends_with("9p.ko.xz"));
        assert_eq!(module_name(&files[2]).unwrap(), "9p.ko");
        assert!(module_name(Path::new("/x/a.ko.zst")).is_err());
    }

    #[test]
    fn archive_lists_with_cpio() {
        let mut a = Archive::default();
        a.dir("bin");
        a.char_device("dev/console", 0o600, 5, 1);
        a.file("bin/hello", 0o755, b"hi\n");
        let bytes = a.finish().unwrap();
        assert_eq!(&bytes[..6], b"070701");
        assert_eq!(bytes.len() % 4, 0);
        let mut names = Vec::new();
        let mut rest = &bytes[..];
        loop {
            let reader = cpio::NewcReader::new(rest).unwrap();
            if reader.entry().is_trailer() {
                break;
            }
            let e = reader.entry();
            names.push((e.name().to_owned(), e.mode(), e.file_size()));
            rest = reader.finish().unwrap();
        }
        assert_eq!(
            names,
            [
                ("bin".to_owned(), 0o040_755, 0),
                ("dev/console".to_owned(), 0o020_600, 0),
                ("bin/hello".to_owned(), 0o100_755, 3),
            ]
        );
    }

    #[test]
    fn fnv_separates_fields() {
        let mut a = Fnv::new();
        a.add(b"ab");
        a.add(b"c");
        let mut b = Fnv::new();
        b.add(b"a");
        b.add(b"bc");
        assert_ne!(a.0, b.0);
    }
}
