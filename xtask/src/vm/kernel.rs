//! Debian's kernel packages for the VM task: the newest version apt knows of each flavour
//! (resolved with `apt-cache` every run, so that a newer point release is picked up, never
//! pinned here), downloaded with `apt-get download`, unpacked with `dpkg-deb -x` into the
//! cache and given a modules.dep with `depmod -b`. Nothing is installed on the host.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use super::{
    Kernel,
    host::{self, Tools},
    initramfs,
};
use crate::exec::{exec, stdout_of};

/// A kernel ready to boot: everything on disk, in the cache.
#[derive(Clone, Debug)]
pub struct PreparedKernel {
    pub kernel: Kernel,
    /// The Debian package, e.g. `linux-image-6.1.0-48-amd64-unsigned`.
    pub package: String,
    /// Its `uname -r`, e.g. `6.1.0-48-amd64`.
    pub release: String,
    pub vmlinuz: PathBuf,
    pub initramfs: PathBuf,
    /// The unpacked modules tree, `…/lib/modules/RELEASE`.
    pub modules: PathBuf,
    pub tools: Tools,
}

/// Fetches (or finds in the cache) the kernel and builds (or finds) its initramfs.
pub fn prepare(kernel: Kernel) -> anyhow::Result<PreparedKernel> {
    let tools = host::tools()?;
    let cache = host::target_dir()?.join("xtask-vm");
    let package = resolve(kernel)?;
    let root = fetch(&package, &cache, &tools)?;
    let release = release_of(&root)?;
    let vmlinuz = root.join("boot").join(format!("vmlinuz-{release}"));
    if !vmlinuz.is_file() {
        bail!(
            "{} is missing; remove {} to fetch {package} again",
            vmlinuz.display(),
            root.display()
        );
    }
    let modules = root.join("lib/modules").join(&release);
    let initramfs = initramfs::build(&tools, &root, &release, &cache.join("initramfs"))?;
    Ok(PreparedKernel {
        kernel,
        package,
        release,
        vmlinuz,
        initramfs,
        modules,
        tools,
    })
}

impl Kernel {
    /// Package names of this flavour are `PREFIX<digits and dashes>SUFFIX`.
    fn package_pattern(self) -> (&'static str, &'static str) {
        match self {
            Kernel::V6_1 => ("linux-image-6.1.", "-amd64-unsigned"),
            Kernel::V6_12 => ("linux-image-6.12.", "+deb12-amd64-unsigned"),
            Kernel::V6_12Rt => ("linux-image-6.12.", "+deb12-rt-amd64-unsigned"),
        }
    }
}

/// The version of `package` if it is of `kernel`'s flavour: the numbers between the
/// pattern's prefix and suffix. Digits and dashes only there, which leaves out the -rt and
/// -cloud builds (their flavour sits between the ABI number and `-amd64`).
fn version_of(kernel: Kernel, package: &str) -> Option<Vec<u64>> {
    let (prefix, suffix) = kernel.package_pattern();
    let middle = package.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if middle.is_empty() || !middle.chars().all(|c| c.is_ascii_digit() || c == '-') {
        return None;
    }
    middle.split('-').map(|n| n.parse().ok()).collect()
}

/// The newest package of `kernel`'s flavour in `apt-cache search` output ("NAME - TEXT").
pub fn newest(kernel: Kernel, apt_cache_output: &str) -> Option<String> {
    apt_cache_output
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|name| version_of(kernel, name).map(|v| (v, name)))
        .max()
        .map(|(_, name)| name.to_owned())
}

fn resolve(kernel: Kernel) -> anyhow::Result<String> {
    let (prefix, suffix) = kernel.package_pattern();
    let regex = format!("^{}", prefix.replace('.', "\\."));
    let search = || {
        stdout_of(Command::new("apt-cache").args(["search", "--names-only", &regex]))
            .context("cannot ask apt-cache for kernel packages; is this a Debian machine?")
    };
    if let Some(package) = newest(kernel, &search()?) {
        return Ok(package);
    }
    if host::apt_update(&format!("apt knows no {prefix}*{suffix}"))?
        && let Some(package) = newest(kernel, &search()?)
    {
        return Ok(package);
    }
    bail!(
        "no package {prefix}*{suffix} in apt's lists; kernel {kernel} needs Debian 12's (bookworm and bookworm-security) sources"
    )
}

/// The unpacked package in the cache: `<cache>/kernels/<package>/`.
fn fetch(package: &str, cache: &Path, tools: &Tools) -> anyhow::Result<PathBuf> {
    let kernels = cache.join("kernels");
    let dir = kernels.join(package);
    if dir.is_dir() {
        return Ok(dir);
    }
    let debs = cache.join("debs");
    fs::create_dir_all(&debs).with_context(|| format!("cannot create {}", debs.display()))?;
    eprintln!("xtask vm: downloading {package}");
    let deb = match download(package, &debs) {
        Ok(deb) => deb,
        // The lists may name a version the mirror has dropped since: update and retry,
        // else report the download's own error.
        Err(err) => match host::apt_update(&format!("downloading {package} failed")) {
            Ok(true) => download(package, &debs)?,
            Ok(false) | Err(_) => return Err(err),
        },
    };
    // Unpack beside the final place and rename, so that an interrupted run leaves no
    // half-made kernel that a later run would take as cached.
    let tmp = kernels.join(format!(".{package}.{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    exec(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp))?;
    let release = release_of(&tmp)?;
    exec(
        Command::new(&tools.depmod)
            .arg("-b")
            .arg(&tmp)
            .arg(&release),
    )?;
    if let Err(err) = fs::rename(&tmp, &dir) {
        let _ = fs::remove_dir_all(&tmp);
        // Another run may have unpacked the same package meanwhile.
        if !dir.is_dir() {
            return Err(err).with_context(|| format!("cannot rename to {}", dir.display()));
        }
    }
    let _ = fs::remove_file(&deb);
    Ok(dir)
}

/// `apt-get download` into `debs`; the path of the .deb.
fn download(package: &str, debs: &Path) -> anyhow::Result<PathBuf> {
    host::quiet_apt(
        Command::new("apt-get")
            .arg("download")
            .arg(package)
            .current_dir(debs),
    )?;
    let prefix = format!("{package}_");
    fs::read_dir(debs)
        .with_context(|| format!("cannot list {}", debs.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
        .with_context(|| {
            format!(
                "apt-get download left no {prefix}*.deb in {}",
                debs.display()
            )
        })
}

/// The one release under `root/lib/modules`.
fn release_of(root: &Path) -> anyhow::Result<String> {
    let modules = root.join("lib/modules");
    let mut releases: Vec<String> = fs::read_dir(&modules)
        .with_context(|| format!("cannot list {}", modules.display()))?
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    match releases.len() {
        1 => Ok(releases.remove(0)),
        n => bail!(
            "{} holds {n} kernel releases, expected one",
            modules.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEARCH: &str = "\
linux-image-6.1.0-9-amd64-unsigned - Linux 6.1 for 64-bit PCs
linux-image-6.1.0-48-amd64-unsigned - Linux 6.1 for 64-bit PCs
linux-image-6.1.0-48-cloud-amd64-unsigned - Linux 6.1 for x86-64 cloud
linux-image-6.1.0-57-rt-amd64-unsigned - Linux 6.1 for 64-bit PCs, PREEMPT_RT
linux-image-6.1.0-48-amd64 - Linux 6.1 for 64-bit PCs (signed)
linux-image-6.1.0-48-amd64-dbg - Debug symbols for linux-image-6.1.0-48-amd64
linux-image-6.12.9+deb12-amd64-unsigned - Linux 6.12 for 64-bit PCs
linux-image-6.12.117+deb12-amd64-unsigned - Linux 6.12 for 64-bit PCs
linux-image-6.12.48+deb12-amd64-unsigned - Linux 6.12 for 64-bit PCs
linux-image-6.12.117+deb12-cloud-amd64-unsigned - Linux 6.12 for x86-64 cloud
linux-image-6.12.43+deb12-rt-amd64-unsigned - Linux 6.12 for 64-bit PCs, PREEMPT_RT
linux-image-6.12.117+deb12-rt-amd64-unsigned - Linux 6.12 for 64-bit PCs, PREEMPT_RT
linux-image-6.12.200+deb13-amd64-unsigned - Linux 6.12 for 64-bit PCs
";

    #[test]
    fn newest_of_each_flavour() {
        assert_eq!(
            newest(Kernel::V6_1, SEARCH).as_deref(),
            Some("linux-image-6.1.0-48-amd64-unsigned")
        );
        assert_eq!(
            newest(Kernel::V6_12, SEARCH).as_deref(),
            Some("linux-image-6.12.117+deb12-amd64-unsigned")
        );
        assert_eq!(
            newest(Kernel::V6_12Rt, SEARCH).as_deref(),
            Some("linux-image-6.12.117+deb12-rt-amd64-unsigned")
        );
    }

    #[test]
    fn nothing_found() {
        assert_eq!(newest(Kernel::V6_12, ""), None);
        let only_cloud = "linux-image-6.12.1+deb12-cloud-amd64-unsigned - cloud\n";
        assert_eq!(newest(Kernel::V6_12, only_cloud), None);
        assert_eq!(newest(Kernel::V6_1, only_cloud), None);
    }

    #[test]
    fn versions_compare_as_numbers() {
        assert_eq!(
            version_of(Kernel::V6_1, "linux-image-6.1.0-48-amd64-unsigned"),
            Some(vec![0, 48])
        );
        assert!(
            version_of(Kernel::V6_12, "linux-image-6.12.117+deb12-amd64-unsigned")
                > version_of(Kernel::V6_12, "linux-image-6.12.48+deb12-amd64-unsigned")
        );
        assert_eq!(
            version_of(Kernel::V6_1, "linux-image-6.12.1+deb12-amd64-unsigned"),
            None
        );
    }
}
