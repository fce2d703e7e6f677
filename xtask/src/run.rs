//! `cargo xtask build` and `cargo xtask run -- ARGS`, and where cargo put what it built: the
//! paths come from cargo's own build messages, so CARGO_TARGET_DIR, a workspace-level
//! target directory or a run from a subdirectory all work.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::Context as _;

use crate::{exec::stdout_of, test::is_root};

/// Builds `targets` (cargo's target-selection flags, e.g. `--bin sigtrace`) of the sigtrace
/// package in release mode; returns each built executable by target name.
pub fn build_release(targets: &[&str]) -> anyhow::Result<Vec<(String, PathBuf)>> {
    build_release_with(&mut Command::new("cargo"), targets)
}

/// `build_release` through `cargo`, a `cargo` command set up by the caller: e.g. run in
/// another checkout (`current_dir`) with a target directory of its own.
pub fn build_release_with(
    cargo: &mut Command,
    targets: &[&str],
) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let built = executables(
        cargo
            .args(["build", "--release", "--package", "sigtrace"])
            .args(targets),
    )?;
    Ok(by_name(&built))
}

/// The compiler-artifact messages with an executable that `cargo` (a build or `test
/// --no-run` command; the JSON message format is added here) printed; its diagnostics go
/// to stderr.
pub fn executables(cargo: &mut Command) -> anyhow::Result<Vec<serde_json::Value>> {
    let messages = stdout_of(
        cargo
            .arg("--message-format=json-render-diagnostics")
            .stderr(Stdio::inherit()),
    )?;
    Ok(messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["executable"].is_string())
        .collect())
}

/// Each executable among `built` (see [`executables`]) by target name.
pub fn by_name(built: &[serde_json::Value]) -> Vec<(String, PathBuf)> {
    built
        .iter()
        .filter_map(|m| {
            let name = m["target"]["name"].as_str()?.to_owned();
            Some((name, PathBuf::from(m["executable"].as_str()?)))
        })
        .collect()
}

/// The release `sigtrace` binary, built if needed.
pub fn sigtrace_binary() -> anyhow::Result<PathBuf> {
    find(&build_release(&["--bin", "sigtrace"])?, "sigtrace")
}

/// The executable of target `name` among `built`.
pub fn find(built: &[(String, PathBuf)], name: &str) -> anyhow::Result<PathBuf> {
    built
        .iter()
        .find(|(target, _)| target == name)
        .map(|(_, path)| path.clone())
        .with_context(|| format!("cargo built no {name} executable"))
}

pub fn build() -> anyhow::Result<()> {
    let binary = sigtrace_binary()?;
    eprintln!("xtask build: {}", binary.display());
    Ok(())
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let binary = sigtrace_binary()?;
    let mut cmd = if is_root() {
        Command::new(&binary)
    } else {
        let mut sudo = Command::new("sudo");
        sudo.arg(&binary);
        sudo
    };
    let status = cmd.args(args).status()?;
    // Pass sigtrace's own exit status through (2 bad input, 3 lost events...).
    std::process::exit(status.code().unwrap_or(1));
}
