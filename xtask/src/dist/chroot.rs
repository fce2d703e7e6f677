//! A clean Debian 12 root for the install test. It is debootstrapped once (minbase, with
//! what every system that runs the service has: systemd for the unit, procps for its
//! ExecReload's /bin/kill, man-db for the man pages; no Rust toolchain), kept as a tarball
//! under target/, and unpacked anew for each test. [`Root`] mounts what a trace needs
//! inside it (/proc, /sys with the BTF and the cgroup tree, /dev) and undoes every mount
//! when dropped, whatever happened (Ctrl-C included: while a root exists, SIGINT, SIGTERM
//! and SIGHUP stop the running step instead of xtask); it deletes the root only when
//! nothing is mounted below it any more.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{apt, exec::exec};

const SUITE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";
/// Beyond minbase; the cache's file name lists them, so changing them bootstraps anew.
const INCLUDE: [&str; 3] = ["systemd", "procps", "man-db"];

/// The cached pristine root (a tar of it), debootstrapped when missing.
pub fn pristine(cache: &Path) -> anyhow::Result<PathBuf> {
    let tarball = cache.join(format!("{SUITE}-minbase-{}.tar", INCLUDE.join("-")));
    if tarball.is_file() {
        eprintln!("xtask dist: using the cached root {}", tarball.display());
        return Ok(tarball);
    }
    if apt::find("debootstrap").is_none() {
        apt::install(&["debootstrap"])?;
    }
    let dir = cache.join(format!("{SUITE}-bootstrap"));
    remove_unmounted(&dir)?;
    fs::create_dir_all(cache).with_context(|| format!("cannot create {}", cache.display()))?;
    eprintln!(
        "xtask dist: debootstrap --variant=minbase {SUITE} (with {}) from {MIRROR}; once, then cached",
        INCLUDE.join(", ")
    );
    let started = Instant::now();
    let bootstrapped = exec(
        Command::new("debootstrap")
            .args([
                "--variant=minbase",
                &format!("--include={}", INCLUDE.join(",")),
            ])
            .arg(SUITE)
            .arg(&dir)
            .arg(MIRROR)
            .stdout(Stdio::null()),
    );
    if let Err(err) = bootstrapped {
        let log = dir.join("debootstrap/debootstrap.log");
        bail!("{err:#}; see {} (kept for a look)", log.display());
    }
    // The downloaded .debs are installed already: not worth caching.
    if let Ok(archives) = fs::read_dir(dir.join("var/cache/apt/archives")) {
        for deb in archives.flatten().map(|e| e.path()) {
            if deb.extension().is_some_and(|ext| ext == "deb") {
                let _ = fs::remove_file(deb);
            }
        }
    }
    let partial = tarball.with_extension("tar.partial");
    exec(
        Command::new("tar")
            .args(["--create", "--numeric-owner", "--xattrs", "--file"])
            .arg(&partial)
            .arg("--directory")
            .arg(&dir)
            .arg("."),
    )?;
    fs::rename(&partial, &tarball).with_context(|| {
        format!(
            "cannot rename {} to {}",
            partial.display(),
            tarball.display()
        )
    })?;
    remove_unmounted(&dir)?;
    eprintln!(
        "xtask dist: bootstrapped and cached in {:.0} s: {}",
        started.elapsed().as_secs_f64(),
        tarball.display()
    );
    Ok(tarball)
}

/// The mount points at or below `dir`, from /proc/self/mountinfo.
fn mounted_below(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let info =
        fs::read_to_string("/proc/self/mountinfo").context("cannot read /proc/self/mountinfo")?;
    let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    Ok(info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(unescape_mountinfo(point)))
        .filter(|point| point.starts_with(&dir))
        .collect())
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape_mountinfo(field: &str) -> String {
    let mut out = Vec::with_capacity(field.len());
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(code) = bytes
                .get(i + 1..i + 4)
                .and_then(|o| std::str::from_utf8(o).ok())
                .and_then(|o| u8::from_str_radix(o, 8).ok())
        {
            out.push(code);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Removes `dir` if it exists and nothing is mounted below it: removing a root with /dev or
/// /sys still bound into it would delete the host's.
fn remove_unmounted(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let mounted = mounted_below(dir)?;
    if !mounted.is_empty() {
        bail!(
            "{} still has mounts below it ({}); unmount them (umount -R) before it can be removed",
            dir.display(),
            mounted
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn note_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

const INTERRUPTS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Catches the interrupting signals; returns the actions they had.
fn catch_interrupts() -> Vec<(libc::c_int, libc::sigaction)> {
    INTERRUPTED.store(false, Ordering::SeqCst);
    INTERRUPTS
        .iter()
        .map(|&sig| {
            // SAFETY: the handler only stores to an atomic (async-signal-safe); both
            // structures are fully initialised (zeroed, then the handler set).
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = note_interrupt as *const () as usize;
                action.sa_flags = libc::SA_RESTART;
                let mut old: libc::sigaction = std::mem::zeroed();
                libc::sigaction(sig, &action, &mut old);
                (sig, old)
            }
        })
        .collect()
}

fn restore(actions: &[(libc::c_int, libc::sigaction)]) {
    for (sig, old) in actions {
        // SAFETY: `old` is the action sigaction returned for this signal.
        unsafe { libc::sigaction(*sig, old, std::ptr::null_mut()) };
    }
}

/// A fresh root unpacked from the pristine tarball, with the mounts made in it.
pub struct Root {
    path: PathBuf,
    /// Mount points, in the order they were made.
    mounts: Vec<PathBuf>,
    /// Whether to delete the root when dropped (kept after a failure, for a look).
    pub remove: bool,
    /// The signal actions to put back when dropped.
    interrupts: Vec<(libc::c_int, libc::sigaction)>,
}

/// What a command run in the root did.
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// Fails with the command's output unless it exited 0.
    pub fn ok(self, what: &str) -> anyhow::Result<Self> {
        if !self.status.success() {
            bail!(
                "{what} failed ({}):\n{}{}",
                self.status,
                self.stdout,
                self.stderr
            );
        }
        Ok(self)
    }
}

impl Root {
    /// Unpacks `tarball` into `path`, replacing an earlier root there.
    pub fn unpack(tarball: &Path, path: &Path) -> anyhow::Result<Self> {
        remove_unmounted(path)?;
        fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
        // Nothing is mounted yet: an interrupted unpack leaves files only, removed next time.
        exec(
            Command::new("tar")
                .args([
                    "--extract",
                    "--numeric-owner",
                    "--xattrs",
                    "--same-permissions",
                ])
                .arg("--file")
                .arg(tarball)
                .arg("--directory")
                .arg(path),
        )?;
        Ok(Root {
            path: path.to_owned(),
            mounts: Vec::new(),
            remove: true,
            interrupts: catch_interrupts(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// /proc, /sys (recursively: /sys/fs/cgroup is a mount of its own; the BTF is in
    /// sysfs) and /dev. The binds are made slaves of the host's mounts, so that unmounting
    /// them here cannot propagate back to the host.
    pub fn mount_system(&mut self) -> anyhow::Result<()> {
        self.mount(&["-t", "proc", "proc"], "proc")?;
        self.mount(&["--rbind", "/sys"], "sys")?;
        self.mount(&["--bind", "/dev"], "dev")
    }

    fn mount(&mut self, how: &[&str], at: &str) -> anyhow::Result<()> {
        let point = self.path.join(at);
        exec(Command::new("mount").args(how).arg(&point))?;
        self.mounts.push(point.clone());
        if how[0].ends_with("bind") {
            exec(Command::new("mount").arg("--make-rslave").arg(&point))?;
        }
        Ok(())
    }

    /// Undoes the mounts, newest first; lists what could not be unmounted.
    pub fn unmount(&mut self) -> anyhow::Result<()> {
        let mut stuck = Vec::new();
        while let Some(point) = self.mounts.pop() {
            let quiet = |lazy: bool| {
                let mut cmd = Command::new("umount");
                cmd.arg("--recursive");
                if lazy {
                    cmd.arg("--lazy");
                }
                cmd.arg(&point)
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            };
            // A process of the test still using it would make it busy: detach it then.
            if !quiet(false) && !quiet(true) {
                stuck.push(point.display().to_string());
            }
        }
        if !stuck.is_empty() {
            bail!("could not unmount {}", stuck.join(", "));
        }
        let left = mounted_below(&self.path)?;
        if !left.is_empty() {
            bail!(
                "mounts left below {}: {}",
                self.path.display(),
                left.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(())
    }

    /// Runs `script` with /bin/sh inside the root, in a clean environment, for at most
    /// `limit`: then it is stopped (SIGTERM, SIGKILL 5 s later) and the run fails.
    pub fn sh(&self, script: &str, limit: Duration) -> anyhow::Result<Ran> {
        if INTERRUPTED.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        let logs = self.path.with_extension("logs");
        fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
        let (out_path, err_path) = (logs.join("stdout"), logs.join("stderr"));
        let out = fs::File::create(&out_path)?;
        let err = fs::File::create(&err_path)?;
        let mut child = Command::new("chroot")
            .arg(&self.path)
            .args(["/bin/sh", "-c", script])
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", "/root")
            .env("LC_ALL", "C")
            .env("TERM", "dumb")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("cannot start chroot")?;
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if INTERRUPTED.load(Ordering::SeqCst) {
                stop(&mut child);
                bail!("interrupted");
            }
            if Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let status = match status {
            Some(status) => status,
            None => {
                stop(&mut child);
                bail!(
                    "`{script}` did not finish within {} s; stopped it",
                    limit.as_secs()
                );
            }
        };
        let read =
            |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
        Ok(Ran {
            status,
            stdout: read(&out_path),
            stderr: read(&err_path),
        })
    }
}

/// Stops a child of ours that overran: SIGTERM (sigtrace detaches its probes and exits),
/// then SIGKILL. Only this child's pid is signalled.
fn stop(child: &mut std::process::Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill has no memory-safety preconditions; pid is our own live child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Root {
    fn drop(&mut self) {
        let unmounted = self.unmount();
        restore(&self.interrupts);
        if let Err(err) = unmounted {
            eprintln!(
                "xtask dist: WARNING: {err:#}; the root stays at {}",
                self.path.display()
            );
            return;
        }
        if self.remove {
            if let Err(err) = remove_unmounted(&self.path) {
                eprintln!("xtask dist: WARNING: {err:#}");
            }
        } else {
            eprintln!(
                "xtask dist: the test's root stays at {} for a look",
                self.path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_mountinfo(r"/x\134y"), r"/x\y");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }
}
