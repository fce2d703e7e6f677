//! The two packages of `cargo xtask dist`, staged from one set of files: the stripped
//! release binary, what it generates about itself (man pages, completions), the unit and
//! its files from dist/, the docs.
//!
//! The .deb is built with dpkg-deb, Debian's own tool, from a staged tree and a control
//! file written here: cargo-deb would do the same but is one more crate to compile in CI,
//! and the parts it would infer (Depends, conffiles) are computed or listed here anyway.

use std::{
    fs,
    io::Write as _,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use flate2::{Compression, write::GzEncoder};

use super::{depends, step};
use crate::{
    exec::{capture, exec, stdout_of},
    run,
    vm::target_dir,
};

/// Shown in the control file unless DEBFULLNAME and DEBEMAIL (Debian's convention) say
/// who builds this package.
const MAINTAINER: &str = "sigtrace maintainers <maintainers@users.noreply.r-seed-5086ceab.example>";

/// Beyond the shared libraries: the unit's ExecReload runs /bin/kill (procps).
const OTHER_DEPENDS: [&str; 1] = ["procps"];

const SYNOPSIS: &str = "trace Linux signals: sender, recipient's disposition and outcome";
const DESCRIPTION: &str = "\
sigtrace shows who sent which signal to whom, what the recipient had installed
for it (handler, ignored, blocked) and what happened next, from eBPF tracepoints
on the kernel's signal paths (Linux 5.8 or later, as root or with CAP_BPF and
CAP_PERFMON). It follows each signal to its outcome and the process's exit,
shows a process-group fan-out such as Ctrl-C as one block, folds bursts, and
writes text or JSON lines. sigtrace show, mask and diff decode the signal
state of running processes from /proc.
.
A hardened systemd service (not enabled on installation) records every signal
on the machine as JSON lines under /var/log/sigtrace.";

/// The built packages.
pub struct Artifacts {
    pub version: String,
    pub deb: PathBuf,
    pub tarball: PathBuf,
    /// The tarball's top directory, sigtrace-VERSION-ARCH-linux-gnu.
    pub tarball_top: String,
}

/// A file of the packages: its contents and permissions.
struct File {
    contents: Vec<u8>,
    mode: u32,
}

impl File {
    fn data(contents: Vec<u8>) -> Self {
        File {
            contents,
            mode: 0o644,
        }
    }

    fn program(contents: Vec<u8>) -> Self {
        File {
            contents,
            mode: 0o755,
        }
    }

    fn gzipped(contents: &[u8]) -> anyhow::Result<Self> {
        Ok(File::data(gzip(contents)?))
    }
}

/// Everything both packages hold, before it is placed.
struct Contents {
    binary: File,
    /// (file name, gzipped page): sigtrace.1.gz, sigtrace-mask.1.gz...
    man_pages: Vec<(String, File)>,
    bash: File,
    zsh: File,
    fish: File,
    unit: File,
    defaults: File,
    logrotate: File,
    /// The example scrape configuration and alert rules (dist/prometheus).
    prometheus: File,
    alerts: File,
    readme: Vec<u8>,
    json_doc: Vec<u8>,
    schema: Vec<u8>,
    copyright: File,
}

pub fn build() -> anyhow::Result<Artifacts> {
    let binary = step("cargo build --release -p sigtrace", run::sigtrace_binary)?;
    let out = target_dir()?.join("dist");
    let work = out.join("work");
    if work.exists() {
        fs::remove_dir_all(&work)
            .with_context(|| format!("cannot remove the last run's {}", work.display()))?;
    }
    fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let version = binary_version(&binary)?;
    let deb_arch = stdout_of(Command::new("dpkg").arg("--print-architecture"))
        .context("dpkg names the package architecture; is this a Debian system?")?
        .trim()
        .to_owned();
    let contents = step("man pages, completions, stripped binary", || {
        contents(&binary, &work)
    })?;
    let depends = step("Depends from the binary's libraries", || {
        let mut all: Vec<String> = depends::of_binary(&work.join("sigtrace"))?
            .iter()
            .map(ToString::to_string)
            .collect();
        all.extend(OTHER_DEPENDS.map(str::to_owned));
        Ok(all.join(", "))
    })?;
    let epoch = source_date_epoch();
    let deb = out.join(format!("sigtrace_{version}_{deb_arch}.deb"));
    step(&format!("dpkg-deb --build → {}", deb.display()), || {
        build_deb(
            &contents,
            &work.join("deb"),
            &deb,
            &version,
            &deb_arch,
            &depends,
            &epoch,
        )
    })?;
    let tarball_top = format!("sigtrace-{version}-{}-linux-gnu", std::env::consts::ARCH);
    let tarball = out.join(format!("{tarball_top}.tar.gz"));
    step(&format!("tarball → {}", tarball.display()), || {
        build_tarball(&contents, &work.join("tar"), &tarball_top, &tarball, &epoch)
    })?;
    for path in [&deb, &tarball] {
        let size = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        eprintln!(
            "xtask dist: {} ({:.1} MB)",
            path.display(),
            size as f64 / 1e6
        );
    }
    Ok(Artifacts {
        version,
        deb,
        tarball,
        tarball_top,
    })
}

/// The version the binary reports (`sigtrace 0.1.0`): the workspace's.
fn binary_version(binary: &Path) -> anyhow::Result<String> {
    let text = stdout_of(Command::new(binary).arg("--version"))?;
    text.trim()
        .strip_prefix("sigtrace ")
        .filter(|v| !v.is_empty() && !v.contains(char::is_whitespace))
        .map(str::to_owned)
        .with_context(|| format!("`sigtrace --version` printed {text:?}, not `sigtrace VERSION`"))
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Everything the packages hold. The binary is stripped here (what dh_strip does), and
/// asked for its man pages and completion scripts.
fn contents(binary: &Path, work: &Path) -> anyhow::Result<Contents> {
    let stripped = work.join("sigtrace");
    exec(
        Command::new("strip")
            .args([
                "--strip-unneeded",
                "--remove-section=.comment",
                "--remove-section=.note",
                "-o",
            ])
            .arg(&stripped)
            .arg(binary),
    )
    .context("stripping the binary failed; strip comes with binutils")?;
    let man_dir = work.join("man");
    // It lists the pages it wrote; the directory says as much.
    stdout_of(Command::new(&stripped).arg("man-pages").arg(&man_dir))?;
    let mut man_pages = Vec::new();
    for entry in fs::read_dir(&man_dir)
        .with_context(|| format!("cannot list {}", man_dir.display()))?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".1") {
            man_pages.push((format!("{name}.gz"), File::gzipped(&read(&entry.path())?)?));
        }
    }
    man_pages.sort_by(|a, b| a.0.cmp(&b.0));
    if !man_pages.iter().any(|(name, _)| name == "sigtrace.1.gz") {
        bail!("`sigtrace man-pages` wrote no sigtrace.1");
    }
    let completion = |shell: &str| -> anyhow::Result<File> {
        let script = capture(Command::new(&stripped).args(["completions", shell]))?;
        if !script.status.success() || script.stdout.is_empty() {
            bail!("`sigtrace completions {shell}` failed ({})", script.status);
        }
        Ok(File::data(script.stdout))
    };
    let dist = workspace().join("dist");
    Ok(Contents {
        binary: File::program(read(&stripped)?),
        man_pages,
        bash: completion("bash")?,
        zsh: completion("zsh")?,
        fish: completion("fish")?,
        unit: File::data(read(&dist.join("sigtrace.service"))?),
        defaults: File::data(read(&dist.join("sigtrace.default"))?),
        logrotate: File::data(read(&dist.join("logrotate"))?),
        prometheus: File::data(read(&dist.join("prometheus/prometheus.yml"))?),
        alerts: File::data(read(&dist.join("prometheus/alerts.yml"))?),
        readme: read(&workspace().join("README.md"))?,
        json_doc: read(&workspace().join("docs/json.md"))?,
        schema: read(&workspace().join("docs/sigtrace.schema.json"))?,
        copyright: File::data(copyright(&dist)?.into_bytes()),
    })
}

/// dist/debian/copyright with the crates linked into the binary (the user side's and the
/// eBPF programs'; proc macros and build scripts run only at build time).
fn copyright(dist: &Path) -> anyhow::Result<String> {
    let template = String::from_utf8(read(&dist.join("debian/copyright"))?)
        .context("dist/debian/copyright is not UTF-8")?;
    let mut crates = Vec::new();
    for package in ["sigtrace", "sigtrace-ebpf"] {
        let tree = stdout_of(
            Command::new("cargo")
                .args([
                    "tree",
                    "--package",
                    package,
                    "--edges",
                    "normal,no-proc-macro",
                ])
                .args(["--prefix", "none", "--format", "{p}|{l}"])
                .current_dir(workspace()),
        )?;
        crates.extend(tree.lines().filter_map(crate_line));
    }
    crates.sort();
    crates.dedup();
    let list: Vec<String> = crates.iter().map(|c| format!(" {c}")).collect();
    Ok(template.replace("@CRATES@", &list.join("\n")))
}

/// "anyhow v1.0.105|MIT OR Apache-2.0" → "anyhow 1.0.105: MIT OR Apache-2.0"; the
/// workspace's own crates (with a path) are the package itself.
fn crate_line(line: &str) -> Option<String> {
    let (package, license) = line.split_once('|')?;
    let license = license.trim_end_matches(" (*)").trim();
    let mut words = package.split_whitespace();
    let (name, version) = (words.next()?, words.next()?);
    if words.next().is_some_and(|w| w.starts_with('(')) {
        return None;
    }
    let license = if license.is_empty() {
        "unknown"
    } else {
        license
    };
    Some(format!(
        "{name} {}: {license}",
        version.trim_start_matches('v')
    ))
}

fn gzip(data: &[u8]) -> anyhow::Result<Vec<u8>> {
    // No name and no time in the header (flate2 writes neither): the same input always
    // gives the same bytes. The default level: best takes seconds more on the tarball
    // for a few percent.
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data)?;
    Ok(encoder.finish()?)
}

/// SOURCE_DATE_EPOCH, or the last commit's time: files in both packages carry it, so that
/// the same commit gives the same packages.
fn source_date_epoch() -> String {
    if let Ok(epoch) = std::env::var("SOURCE_DATE_EPOCH") {
        return epoch;
    }
    stdout_of(
        Command::new("git")
            .args(["log", "-1", "--format=%ct"])
            .current_dir(workspace()),
    )
    .map(|t| t.trim().to_owned())
    .ok()
    .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
    .unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs().to_string())
            .unwrap_or_else(|_| "0".into())
    })
}

/// A directory tree being staged: files written with their modes, directories 0755
/// whatever the umask.
struct Stage {
    root: PathBuf,
}

impl Stage {
    fn new(root: &Path) -> anyhow::Result<Self> {
        if root.exists() {
            fs::remove_dir_all(root)
                .with_context(|| format!("cannot remove {}", root.display()))?;
        }
        let stage = Stage {
            root: root.to_owned(),
        };
        stage.dir(Path::new(""))?;
        Ok(stage)
    }

    fn dir(&self, relative: &Path) -> anyhow::Result<()> {
        let path = self.root.join(relative);
        fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        // create_dir_all's modes follow the umask: set each level's.
        for level in relative.ancestors() {
            set_mode(&self.root.join(level), 0o755)?;
        }
        Ok(())
    }

    fn put(&self, relative: &str, file: &File) -> anyhow::Result<()> {
        let relative = Path::new(relative);
        if let Some(parent) = relative.parent() {
            self.dir(parent)?;
        }
        let path = self.root.join(relative);
        fs::write(&path, &file.contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
        set_mode(&path, file.mode)
    }
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))
}

/// The files of `dir`, recursively, relative to it and sorted.
fn files_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    fn walk(root: &Path, dir: &Path, found: &mut Vec<PathBuf>) -> anyhow::Result<()> {
        for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                walk(root, &path, found)?;
            } else if let Ok(relative) = path.strip_prefix(root) {
                found.push(relative.to_owned());
            }
        }
        Ok(())
    }
    let mut found = Vec::new();
    walk(dir, dir, &mut found)?;
    found.sort();
    Ok(found)
}

fn build_deb(
    contents: &Contents,
    root: &Path,
    deb: &Path,
    version: &str,
    arch: &str,
    depends: &str,
    epoch: &str,
) -> anyhow::Result<()> {
    let stage = Stage::new(root)?;
    stage.put("usr/bin/sigtrace", &contents.binary)?;
    for (name, page) in &contents.man_pages {
        stage.put(&format!("usr/share/man/man1/{name}"), page)?;
    }
    stage.put(
        "usr/share/bash-completion/completions/sigtrace",
        &contents.bash,
    )?;
    stage.put("usr/share/zsh/vendor-completions/_sigtrace", &contents.zsh)?;
    stage.put(
        "usr/share/fish/vendor_completions.d/sigtrace.fish",
        &contents.fish,
    )?;
    stage.put("lib/systemd/system/sigtrace.service", &contents.unit)?;
    stage.put("etc/default/sigtrace", &contents.defaults)?;
    let doc = "usr/share/doc/sigtrace";
    stage.put(&format!("{doc}/copyright"), &contents.copyright)?;
    stage.put(
        &format!("{doc}/README.md.gz"),
        &File::gzipped(&contents.readme)?,
    )?;
    stage.put(
        &format!("{doc}/json.md.gz"),
        &File::gzipped(&contents.json_doc)?,
    )?;
    stage.put(
        &format!("{doc}/sigtrace.schema.json"),
        &File::data(contents.schema.clone()),
    )?;
    // An example, not a conffile in /etc/logrotate.d: the service rotates its file itself
    // (--rotate-size), and logrotate at once would rotate the same file under the same
    // names. /etc/default/sigtrace says how to switch.
    stage.put(&format!("{doc}/examples/logrotate"), &contents.logrotate)?;
    stage.put(
        &format!("{doc}/examples/prometheus/prometheus.yml"),
        &contents.prometheus,
    )?;
    stage.put(
        &format!("{doc}/examples/prometheus/alerts.yml"),
        &contents.alerts,
    )?;

    let installed_kib = installed_size_kib(root)?;
    let md5sums = stdout_of(
        Command::new("md5sum")
            .args(files_under(root)?)
            .current_dir(root),
    )?;
    let maintainer = match (std::env::var("DEBFULLNAME"), std::env::var("DEBEMAIL")) {
        (Ok(name), Ok(email)) if !name.is_empty() && !email.is_empty() => {
            format!("{name} <{email}>")
        }
        _ => MAINTAINER.to_owned(),
    };
    let description: Vec<String> = DESCRIPTION.lines().map(|l| format!(" {l}")).collect();
    let control = format!(
        "Package: sigtrace\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: {maintainer}\n\
         Installed-Size: {installed_kib}\n\
         Depends: {depends}\n\
         Section: admin\n\
         Priority: optional\n\
         Description: {SYNOPSIS}\n{}\n",
        description.join("\n")
    );
    stage.put("DEBIAN/control", &File::data(control.into_bytes()))?;
    stage.put(
        "DEBIAN/conffiles",
        &File::data(b"/etc/default/sigtrace\n".to_vec()),
    )?;
    stage.put("DEBIAN/md5sums", &File::data(md5sums.into_bytes()))?;
    let scripts = workspace().join("dist/debian");
    for script in ["postinst", "prerm", "postrm"] {
        stage.put(
            &format!("DEBIAN/{script}"),
            &File::program(read(&scripts.join(script))?),
        )?;
    }
    exec(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(root)
            .arg(deb)
            .env("SOURCE_DATE_EPOCH", epoch),
    )
    .context("dpkg-deb failed; it comes with dpkg")?;
    let info = stdout_of(Command::new("dpkg-deb").arg("--info").arg(deb))?;
    for line in info.lines().filter(|l| {
        let l = l.trim_start();
        l.starts_with("Depends:") || l.starts_with("Installed-Size:") || l.starts_with("Version:")
    }) {
        eprintln!("xtask dist:   {}", line.trim());
    }
    Ok(())
}

/// Installed-Size as dpkg-gencontrol counts it: KiB per file, rounded up, and one per
/// directory.
fn installed_size_kib(root: &Path) -> anyhow::Result<u64> {
    let mut kib = 0;
    let mut dirs = std::collections::BTreeSet::new();
    for relative in files_under(root)? {
        let size = fs::metadata(root.join(&relative))?.len();
        kib += size.div_ceil(1024);
        dirs.extend(
            relative
                .ancestors()
                .skip(1)
                .filter(|dir| !dir.as_os_str().is_empty())
                .map(Path::to_owned),
        );
    }
    Ok(kib + dirs.len() as u64)
}

fn build_tarball(
    contents: &Contents,
    parent: &Path,
    top: &str,
    tarball: &Path,
    epoch: &str,
) -> anyhow::Result<()> {
    let stage = Stage::new(parent)?;
    let put = |relative: &str, file: &File| stage.put(&format!("{top}/{relative}"), file);
    put("bin/sigtrace", &contents.binary)?;
    for (name, page) in &contents.man_pages {
        put(&format!("share/man/man1/{name}"), page)?;
    }
    put("share/completions/bash/sigtrace", &contents.bash)?;
    put("share/completions/zsh/_sigtrace", &contents.zsh)?;
    put("share/completions/fish/sigtrace.fish", &contents.fish)?;
    put("systemd/sigtrace.service", &contents.unit)?;
    put("systemd/sigtrace.default", &contents.defaults)?;
    put("systemd/logrotate", &contents.logrotate)?;
    put("prometheus/prometheus.yml", &contents.prometheus)?;
    put("prometheus/alerts.yml", &contents.alerts)?;
    put("README.md", &File::data(contents.readme.clone()))?;
    put("docs/json.md", &File::data(contents.json_doc.clone()))?;
    put(
        "docs/sigtrace.schema.json",
        &File::data(contents.schema.clone()),
    )?;
    put("copyright", &contents.copyright)?;
    let tar = capture(
        Command::new("tar")
            .args(["--create", "--file=-", "--sort=name", "--numeric-owner"])
            .args(["--owner=0", "--group=0", &format!("--mtime=@{epoch}")])
            .arg("--directory")
            .arg(parent)
            .arg(top),
    )?;
    if !tar.status.success() {
        bail!(
            "tar failed ({}): {}",
            tar.status,
            String::from_utf8_lossy(&tar.stderr).trim()
        );
    }
    fs::write(tarball, gzip(&tar.stdout)?)
        .with_context(|| format!("cannot write {}", tarball.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_lines() {
        assert_eq!(
            crate_line("anyhow v1.0.105|MIT OR Apache-2.0").as_deref(),
            Some("anyhow 1.0.105: MIT OR Apache-2.0")
        );
        assert_eq!(
            crate_line("aya-ebpf v0.2.1|MIT OR Apache-2.0 (*)").as_deref(),
            Some("aya-ebpf 0.2.1: MIT OR Apache-2.0")
        );
        assert_eq!(
            crate_line("sigtrace-common v0.1.0 (/work/sigtrace-common)|MIT OR Apache-2.0"),
            None
        );
        assert_eq!(crate_line(""), None);
    }

    #[test]
    fn stages_with_modes_whatever_the_umask() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stage = Stage::new(&dir.path().join("root")).expect("stage");
        stage
            .put("usr/bin/tool", &File::program(b"#!/bin/sh\n".to_vec()))
            .expect("put");
        stage
            .put("usr/share/doc/tool/README", &File::data(b"hi".to_vec()))
            .expect("put");
        let mode = |p: &str| {
            fs::metadata(dir.path().join("root").join(p))
                .expect("stat")
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("usr/bin/tool"), 0o755);
        assert_eq!(mode("usr/share/doc/tool/README"), 0o644);
        assert_eq!(mode("usr/share/doc"), 0o755);
        assert_eq!(
            files_under(&dir.path().join("root")).expect("walk"),
            [
                PathBuf::from("usr/bin/tool"),
                PathBuf::from("usr/share/doc/tool/README")
            ]
        );
        // 1 KiB for each file, one per directory: usr, usr/bin, usr/share, …/doc, …/tool.
        assert_eq!(
            installed_size_kib(&dir.path().join("root")).expect("size"),
            2 + 5
        );
    }
}
