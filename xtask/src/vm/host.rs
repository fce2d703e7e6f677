//! The host side's tools: finding qemu, a static busybox, depmod and modprobe, installing
//! the Debian packages that hold them when they are missing (never otherwise; see `apt`).

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

pub use crate::apt::{apt_update, quiet_apt};
use crate::apt::{find, install};

/// Host programs the VM task runs.
#[derive(Clone, Debug)]
pub struct Tools {
    pub qemu: PathBuf,
    pub busybox: PathBuf,
    pub depmod: PathBuf,
    pub modprobe: PathBuf,
}

const QEMU: &str = "qemu-system-x86_64";

/// Finds the tools, installing the packages of the missing ones first.
pub fn tools() -> anyhow::Result<Tools> {
    let mut missing = Vec::new();
    if find(QEMU).is_none() {
        missing.push("qemu-system-x86");
    }
    if find_busybox().is_none() {
        missing.push("busybox-static");
    }
    if find("depmod").is_none() || find("modprobe").is_none() {
        missing.push("kmod");
    }
    if !missing.is_empty() {
        install(&missing)?;
    }
    let need = |name: &str, package: &str| {
        find(name).with_context(|| {
            format!("{name} is still missing after installing {package}; is it on PATH?")
        })
    };
    let busybox =
        find_busybox().context("busybox is still missing after installing busybox-static")?;
    let bytes = fs::read(&busybox).with_context(|| format!("cannot read {}", busybox.display()))?;
    if !is_static_elf(&bytes) {
        // The initramfs has no libc; a dynamic busybox would die as PID 1.
        bail!(
            "{} is not a static executable; the guest's initramfs needs one: `apt-get install busybox-static` (it replaces the busybox package)",
            busybox.display()
        );
    }
    Ok(Tools {
        qemu: need(QEMU, "qemu-system-x86")?,
        busybox,
        depmod: need("depmod", "kmod")?,
        modprobe: need("modprobe", "kmod")?,
    })
}

fn find_busybox() -> Option<PathBuf> {
    // busybox-static installs /bin/busybox; prefer it over whatever else is on PATH.
    ["/bin/busybox", "/usr/bin/busybox"]
        .map(PathBuf::from)
        .into_iter()
        .find(|p| p.is_file())
        .or_else(|| find("busybox"))
}

/// Whether `elf` is a 64-bit little-endian ELF without a program interpreter.
pub fn is_static_elf(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return false;
    }
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let phoff = elf
        .get(0x20..0x28)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
        .and_then(|o| usize::try_from(o).ok());
    let (Some(phoff), Some(phentsize), Some(phnum)) = (phoff, u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    (0..usize::from(phnum)).all(|i| {
        let at = phoff + i * usize::from(phentsize);
        u32_at(at).is_some_and(|t| t != PT_INTERP)
    })
}

/// The workspace's target directory, as cargo resolves it (CARGO_TARGET_DIR, config…).
pub fn target_dir() -> anyhow::Result<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = crate::exec::stdout_of(
        Command::new(cargo)
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--manifest-path",
            ])
            .arg(&manifest),
    )?;
    let meta: serde_json::Value =
        serde_json::from_str(&out).context("cannot parse `cargo metadata` output")?;
    let dir = meta
        .get("target_directory")
        .and_then(|d| d.as_str())
        .context("`cargo metadata` names no target_directory")?;
    Ok(PathBuf::from(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf_with(types: &[u32]) -> Vec<u8> {
        let mut elf = vec![0u8; 64 + 56 * types.len()];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&(types.len() as u16).to_le_bytes());
        for (i, t) in types.iter().enumerate() {
            elf[64 + 56 * i..][..4].copy_from_slice(&t.to_le_bytes());
        }
        elf
    }

    #[test]
    fn static_elf() {
        assert!(is_static_elf(&elf_with(&[6, 1, 1])));
        assert!(!is_static_elf(&elf_with(&[6, 3, 1])));
        assert!(!is_static_elf(b"#!/bin/sh\n"));
        let mut cut = elf_with(&[1, 1]);
        cut.truncate(100);
        assert!(!is_static_elf(&cut));
    }
}
