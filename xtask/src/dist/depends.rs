//! The Debian package's Depends, computed from the binary the way dpkg-shlibdeps does but
//! without a debian/ source tree: each shared library the dynamic loader resolves for it
//! (ldd) belongs to a package (dpkg -S), and where the binary needs a library's symbols at
//! a version (.gnu.version_r: GLIBC_2.34, GCC_4.2.0), it needs at least the release that
//! introduced that version. That holds for glibc and libgcc, whose symbol versions are
//! their release numbers; another library gets an unversioned dependency.

use std::{cmp::Ordering, collections::BTreeMap, fmt, path::Path, process::Command};

use anyhow::{Context as _, bail};
use object::read::elf::ElfFile64;

use crate::exec::stdout_of;

/// Packages whose symbol versions (PREFIX_x.y.z) are their upstream release numbers.
const VERSIONED_BY_SYMBOLS: [&str; 2] = ["libc6", "libgcc-s1"];

#[derive(Debug, PartialEq, Eq)]
pub struct Dependency {
    pub package: String,
    pub at_least: Option<Version>,
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.at_least {
            Some(version) => write!(f, "{} (>= {version})", self.package),
            None => f.write_str(&self.package),
        }
    }
}

/// A dotted release number, compared numerically (2.34 > 2.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version(Vec<u32>);

impl Version {
    /// "GLIBC_2.34" → 2.34; None for a name without a number (GLIBC_PRIVATE).
    fn of_symbol_version(name: &str) -> Option<Self> {
        let (_, number) = name.rsplit_once('_')?;
        number
            .split('.')
            .map(|part| part.parse().ok())
            .collect::<Option<Vec<u32>>>()
            .map(Version)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u32::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

/// The dependencies of the dynamically linked `binary`, by package name.
pub fn of_binary(binary: &Path) -> anyhow::Result<Vec<Dependency>> {
    let data =
        std::fs::read(binary).with_context(|| format!("cannot read {}", binary.display()))?;
    let needs = symbol_versions(&data)
        .with_context(|| format!("cannot read the ELF of {}", binary.display()))?;
    let ldd = stdout_of(Command::new("ldd").arg(binary))?;
    let mut by_package: BTreeMap<String, Option<Version>> = BTreeMap::new();
    for library in libraries(&ldd)? {
        let package = owner(&library)?;
        let name = file_name(&library);
        let wanted = VERSIONED_BY_SYMBOLS
            .contains(&package.as_str())
            .then(|| {
                needs
                    .iter()
                    .filter(|(file, _)| file == name)
                    .filter_map(|(_, version)| Version::of_symbol_version(version))
                    .max()
            })
            .flatten();
        let entry = by_package.entry(package).or_default();
        if wanted > *entry {
            *entry = wanted;
        }
    }
    Ok(by_package
        .into_iter()
        .map(|(package, at_least)| Dependency { package, at_least })
        .collect())
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// (library file, version name) for every version the binary needs (.gnu.version_r).
fn symbol_versions(data: &[u8]) -> anyhow::Result<Vec<(String, String)>> {
    let elf = ElfFile64::<object::Endianness>::parse(data)?;
    let endian = elf.endian();
    let sections = elf.elf_section_table();
    let mut found = Vec::new();
    let Some((mut needs, link)) = sections.gnu_verneed(endian, data)? else {
        return Ok(found);
    };
    let strings = sections.strings(endian, data, link)?;
    while let Some((need, mut versions)) = needs.next()? {
        let file = String::from_utf8_lossy(need.file(endian, strings)?).into_owned();
        while let Some(version) = versions.next()? {
            let name = String::from_utf8_lossy(version.name(endian, strings)?).into_owned();
            found.push((file.clone(), name));
        }
    }
    Ok(found)
}

/// The paths of the shared libraries in `ldd`'s output (the vDSO has none); a library the
/// loader cannot find is an error.
fn libraries(ldd: &str) -> anyhow::Result<Vec<String>> {
    let mut paths = Vec::new();
    for line in ldd.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains("not found") {
            bail!("ldd cannot resolve a library the binary needs: {line}");
        }
        if line.contains("statically linked") {
            continue;
        }
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux….so.2 (0x…)".
        let target = line.split_once("=>").map_or(line, |(_, path)| path).trim();
        let path = target.split(" (").next().unwrap_or(target).trim();
        if path.starts_with('/') {
            paths.push(path.to_owned());
        }
    }
    Ok(paths)
}

/// The package that installed `path` (dpkg -S), without its architecture qualifier.
fn owner(path: &str) -> anyhow::Result<String> {
    let out = stdout_of(Command::new("dpkg-query").args(["--search", path]))
        .with_context(|| format!("no Debian package owns {path}, a library the binary needs"))?;
    parse_owner(&out).with_context(|| format!("cannot read `dpkg-query --search {path}`: {out}"))
}

fn parse_owner(out: &str) -> Option<String> {
    // "libc6:amd64: /lib/x86_64-linux-gnu/libc.so.6" (or "pkg: path" without multiarch).
    let (packages, _) = out.lines().next()?.split_once(": ")?;
    let first = packages.split(", ").next()?;
    let name = first.split(':').next()?.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ldd_output() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffc2b7e2000)\n\
                   \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f1e2a0c0000)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f1e29e00000)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f1e2a0f0000)\n";
        assert_eq!(
            libraries(ldd).expect("parses"),
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
        assert!(libraries("\tlibfoo.so.1 => not found\n").is_err());
    }

    #[test]
    fn symbol_versions_are_release_numbers() {
        let v = |name: &str| Version::of_symbol_version(name);
        assert_eq!(v("GLIBC_2.34").map(|v| v.to_string()), Some("2.34".into()));
        assert_eq!(v("GCC_4.2.0").map(|v| v.to_string()), Some("4.2.0".into()));
        assert_eq!(v("GLIBC_PRIVATE"), None);
        assert!(v("GLIBC_2.34") > v("GLIBC_2.4"));
        assert!(v("GLIBC_2.3.4") > v("GLIBC_2.3"));
    }

    #[test]
    fn reads_dpkg_search() {
        assert_eq!(
            parse_owner("libc6:amd64: /lib/x86_64-linux-gnu/libc.so.6\n").as_deref(),
            Some("libc6")
        );
        assert_eq!(
            parse_owner("libfoo1: /usr/lib/libfoo.so.1\n").as_deref(),
            Some("libfoo1")
        );
        assert_eq!(parse_owner(""), None);
    }

    #[test]
    fn reads_this_binarys_glibc_versions() {
        let exe = std::env::current_exe().expect("current exe");
        let data = std::fs::read(exe).expect("read");
        let needs = symbol_versions(&data).expect("ELF");
        assert!(
            needs
                .iter()
                .any(|(file, version)| file == "libc.so.6" && version.starts_with("GLIBC_2.")),
            "{needs:?}"
        );
    }
}
