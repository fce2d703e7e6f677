//! `cargo xtask build` and `cargo xtask run -- ARGS`.

use std::process::Command;

use crate::{exec::exec, test::is_root};

pub const BINARY: &str = "target/release/sigtrace";

pub fn build() -> anyhow::Result<()> {
    exec(Command::new("cargo").args(["build", "--release", "--package", "sigtrace"]))
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    build()?;
    let mut cmd = if is_root() {
        Command::new(BINARY)
    } else {
        let mut sudo = Command::new("sudo");
        sudo.arg(BINARY);
        sudo
    };
    let status = cmd.args(args).status()?;
    // Pass sigtrace's own exit status through (2 bad input, 3 lost events...).
    std::process::exit(status.code().unwrap_or(1));
}
