//! `cargo xtask test`: formatting, lints (host crates and the eBPF crate for its own target),
//! then every unit and end-to-end test. End-to-end tests need root for BPF: without it they
//! skip loudly, except under CI=true, where a skip is a failure.

use std::process::Command;

use anyhow::Context as _;

use crate::exec::exec;

pub fn run() -> anyhow::Result<()> {
    eprintln!("xtask test: cargo fmt --check");
    exec(Command::new("cargo").args(["fmt", "--all", "--", "--check"]))
        .context("formatting differs; run `cargo fmt --all`")?;
    eprintln!("xtask test: clippy (host crates)");
    exec(Command::new("cargo").args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    eprintln!("xtask test: clippy (eBPF crate, bpfel-unknown-none)");
    exec(
        Command::new("rustup")
            .args([
                "run",
                "nightly",
                "cargo",
                "clippy",
                "--package",
                "sigtrace-ebpf",
            ])
            .args([
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
                "--release",
            ])
            .args(["--", "-D", "warnings"])
            .env_remove("RUSTC")
            .env_remove("RUSTUP_TOOLCHAIN")
            .env("CARGO_TARGET_DIR", "target/ebpf-clippy"),
    )?;
    if !is_root() {
        eprintln!(
            "xtask test: WARNING: not root — the end-to-end tests that load BPF will skip (they fail instead when CI=true); run `sudo -E cargo xtask test` to run them"
        );
    }
    eprintln!("xtask test: cargo test");
    exec(Command::new("cargo").args(["test", "--no-fail-fast"]))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
