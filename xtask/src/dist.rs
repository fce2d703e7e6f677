//! `cargo xtask dist`: the release binary packaged for installation in target/dist/ — a
//! Debian package and a tarball — with the man pages and shell completions the binary
//! generates from its own clap definition (`sigtrace man-pages`, `sigtrace completions`),
//! and the systemd unit of dist/. `--test` then installs both into a fresh Debian 12 root
//! without any Rust toolchain and uses them there, a real trace included (`install_test`).

mod chroot;
mod depends;
mod install_test;
mod package;

use std::time::{Duration, Instant};

use anyhow::bail;

pub use package::{Artifacts, build};

use crate::test::is_root;

#[derive(clap::Args)]
pub struct DistArgs {
    /// Then install the package and the tarball into a fresh Debian 12 (bookworm) chroot
    /// and check them there: dpkg -i, man pages, completions, the unit, a real trace
    /// (needs root; the chroot is debootstrapped once and cached under target/).
    #[arg(long)]
    test: bool,
}

pub fn run(args: &DistArgs) -> anyhow::Result<()> {
    if args.test && !is_root() {
        bail!(
            "the install test needs root (debootstrap, chroot, mounts); run `sudo -E cargo xtask dist --test`"
        );
    }
    let artifacts = build()?;
    if args.test {
        install_test::run(&artifacts)?;
    }
    Ok(())
}

/// Builds the packages and runs the install test: `cargo xtask test`'s dist step. Returns
/// the number of checks that passed.
pub fn build_and_test() -> anyhow::Result<u64> {
    let artifacts = build()?;
    install_test::run(&artifacts)
}

/// Runs `step`, printing its name before and its outcome and duration after.
fn step<T>(name: &str, step: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    eprintln!("xtask dist: {name} ...");
    let started = Instant::now();
    let result = step();
    let took = seconds(started.elapsed());
    match &result {
        Ok(_) => eprintln!("xtask dist: {name}: ok ({took})"),
        Err(err) => eprintln!("xtask dist: {name}: FAILED ({took}): {err:#}"),
    }
    result
}

fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}
