//! The host's Debian packages: installing the ones that hold a missing tool (never
//! otherwise), with `apt-get update` at most once per process, only when apt's lists fall
//! short.

use std::{
    env,
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{Context as _, bail};

use crate::{exec::capture, test::is_root};

/// A program on PATH or in the sbin directories (which a non-root PATH may lack).
pub fn find(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

static UPDATED: AtomicBool = AtomicBool::new(false);

/// Installs the packages of the programs that are missing: (program, Debian package).
/// Returns the packages it installed.
pub fn ensure_programs<'a>(programs: &[(&str, &'a str)]) -> anyhow::Result<Vec<&'a str>> {
    let mut missing: Vec<&str> = programs
        .iter()
        .filter(|(program, _)| find(program).is_none())
        .map(|&(_, package)| package)
        .collect();
    missing.dedup();
    if !missing.is_empty() {
        install(&missing)?;
    }
    for (program, package) in programs {
        find(program).with_context(|| {
            format!("{program} is still missing after installing {package}; is it on PATH?")
        })?;
    }
    Ok(missing)
}

/// `apt-get update`, once per process; false when it already ran (nothing new to learn).
pub fn apt_update(why: &str) -> anyhow::Result<bool> {
    if UPDATED.swap(true, Ordering::SeqCst) {
        return Ok(false);
    }
    if !is_root() {
        bail!("{why}, and only root can run `apt-get update`; run it (as root) and try again");
    }
    eprintln!("xtask: apt-get update ({why})");
    quiet_apt(Command::new("apt-get").arg("update"))?;
    Ok(true)
}

/// `apt-get install`s `packages`, as root; otherwise fails saying what to run.
pub fn install(packages: &[&str]) -> anyhow::Result<()> {
    let list = packages.join(" ");
    if !is_root() {
        bail!(
            "missing host packages; run `sudo apt-get install -y --no-install-recommends {list}` and try again"
        );
    }
    eprintln!("xtask: installing {list} (apt-get install)");
    let mut cmd = Command::new("apt-get");
    cmd.args(["install", "-y", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive");
    if quiet_apt(&mut cmd).is_err() {
        // Stale or absent package lists are the usual cause on a fresh machine.
        apt_update("installing failed")?;
        quiet_apt(&mut cmd)?;
    }
    Ok(())
}

/// Runs an apt command, showing its output only when it fails.
pub fn quiet_apt(cmd: &mut Command) -> anyhow::Result<()> {
    let out = capture(cmd)?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "`{}` failed ({}):\n{}",
            describe(cmd),
            out.status,
            tail.join("\n")
        );
    }
    Ok(())
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}
