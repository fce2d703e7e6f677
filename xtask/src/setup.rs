//! `cargo xtask setup`: what building the eBPF side needs on a fresh machine, installed
//! idempotently, each step saying what it does and, when it fails, how to fix it.
//!
//! 1. the nightly toolchain's rust-src (for `-Z build-std=core`);
//! 2. bpf-linker, built from crates.io against the nightly's own libLLVM (there is no
//!    prebuilt one for it and no system LLVM of that version): a directory holding
//!    `libLLVM.so` and the library's own file name as symlinks to the nightly's library
//!    serves as LLVM_PREFIX for the link step and as the binary's run path. It goes into a
//!    directory of its own (`$CARGO_HOME/sigtrace-tools/bin`, put first on PATH for every
//!    task), never over a bpf-linker the user installed; one of theirs that is linked to
//!    the nightly's LLVM is used as it is.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, bail};

use crate::exec::{capture, exec, stdout_of};

/// The bpf-linker release we build; pinned so a fresh machine builds what we tested.
const BPF_LINKER_VERSION: &str = "0.13.0";
const NIGHTLY: &str = "nightly";

pub fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    put_tools_on_path()?;
    check_nightly()?;
    ensure_rust_src()?;
    ensure_bpf_linker()?;
    let took = started.elapsed();
    if took.as_secs() >= 2 {
        eprintln!("xtask setup: ready ({:.0?})", took);
    }
    Ok(())
}

pub fn check_nightly() -> anyhow::Result<()> {
    let out = capture(Command::new("rustup").args(["toolchain", "list"]))
        .context("step 'find rustup' failed: sigtrace builds its eBPF side with rustup's nightly toolchain; install rustup")?;
    let list = String::from_utf8_lossy(&out.stdout);
    if !list.lines().any(|l| l.starts_with("nightly")) {
        bail!(
            "step 'nightly toolchain' failed: no nightly toolchain is installed; run `rustup toolchain install nightly` (RUSTUP_AUTO_INSTALL=0 keeps rustup from doing it by itself)"
        );
    }
    Ok(())
}

fn ensure_rust_src() -> anyhow::Result<()> {
    let installed = stdout_of(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        NIGHTLY,
        "--installed",
    ]))
    .context("step 'rust-src' failed: cannot list the nightly's components")?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    eprintln!(
        "xtask setup: adding rust-src to the nightly toolchain (needed for -Z build-std=core)"
    );
    exec(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))
        .context("step 'rust-src' failed; run `rustup component add rust-src --toolchain nightly` by hand to see why")
}

/// The nightly's LLVM: its version (from `rustc -vV`) and its shared library.
struct NightlyLlvm {
    major: u32,
    library: PathBuf,
}

fn nightly_llvm() -> anyhow::Result<NightlyLlvm> {
    let version = stdout_of(Command::new("rustc").args([&format!("+{NIGHTLY}"), "-vV"]))
        .context("step 'nightly LLVM' failed: `rustc +nightly -vV` did not run")?;
    let llvm = version
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .context("step 'nightly LLVM' failed: `rustc +nightly -vV` names no LLVM version")?;
    let major: u32 = llvm
        .split('.')
        .next()
        .and_then(|m| m.trim().parse().ok())
        .with_context(|| {
            format!("step 'nightly LLVM' failed: cannot read LLVM version {llvm:?}")
        })?;
    let sysroot =
        stdout_of(Command::new("rustc").args([&format!("+{NIGHTLY}"), "--print", "sysroot"]))?;
    let lib_dir = Path::new(sysroot.trim()).join("lib");
    // The versioned library (libLLVM.so.22.1-rust-…), not the libLLVM-22-rust-… link name.
    let prefix = format!("libLLVM.so.{major}");
    let library = std::fs::read_dir(&lib_dir)
        .with_context(|| format!("step 'nightly LLVM' failed: cannot list {}", lib_dir.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .with_context(|| {
            format!(
                "step 'nightly LLVM' failed: no {prefix}* in {}; is the nightly toolchain complete?",
                lib_dir.display()
            )
        })?;
    Ok(NightlyLlvm { major, library })
}

/// Where setup installs its tools (bin/ below it).
fn tools_root() -> PathBuf {
    cargo_home().join("sigtrace-tools")
}

/// Puts our tool directory first on this process's PATH, so that cargo and rustc (which run
/// bpf-linker by name) find ours before any other.
fn put_tools_on_path() -> anyhow::Result<()> {
    let bin = tools_root().join("bin");
    let path = env::var_os("PATH").unwrap_or_default();
    if env::split_paths(&path).next().as_deref() == Some(bin.as_path()) {
        return Ok(());
    }
    let joined = env::join_paths(std::iter::once(bin).chain(env::split_paths(&path)))
        .context("cannot put the tool directory on PATH")?;
    // SAFETY: called at the start of a task, before xtask starts any thread.
    unsafe { env::set_var("PATH", joined) };
    Ok(())
}

fn cargo_home() -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from(".cargo"))
}

/// Whether `bpf-linker` runs and is linked to exactly this libLLVM.
fn linker_matches(llvm: &NightlyLlvm) -> bool {
    let Ok(out) = capture(Command::new("bpf-linker").arg("--version")) else {
        return false;
    };
    if !out.status.success() {
        return false;
    }
    let Ok(path) = which("bpf-linker") else {
        return false;
    };
    let Some(name) = llvm.library.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    capture(Command::new("ldd").arg(&path)).is_ok_and(|o| {
        let text = String::from_utf8_lossy(&o.stdout);
        text.lines()
            .any(|l| l.trim_start().starts_with(name) && !l.contains("not found"))
    })
}

fn which(program: &str) -> anyhow::Result<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .with_context(|| format!("{program} not on PATH"))
}

fn ensure_bpf_linker() -> anyhow::Result<()> {
    let llvm = nightly_llvm()?;
    if linker_matches(&llvm) {
        return Ok(());
    }
    let prefix = cargo_home().join("sigtrace-llvm");
    let lib = prefix.join("lib");
    eprintln!(
        "xtask setup: building bpf-linker {BPF_LINKER_VERSION} against the nightly's LLVM {} ({}); this takes a few minutes",
        llvm.major,
        llvm.library.display()
    );
    std::fs::create_dir_all(&lib)
        .with_context(|| format!("step 'bpf-linker' failed: cannot create {}", lib.display()))?;
    let file_name = llvm
        .library
        .file_name()
        .context("step 'bpf-linker' failed: the LLVM library has no file name")?;
    for link in [lib.join("libLLVM.so"), lib.join(file_name)] {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&llvm.library, &link).with_context(|| {
            format!(
                "step 'bpf-linker' failed: cannot link {} → {}",
                link.display(),
                llvm.library.display()
            )
        })?;
    }
    exec(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
                "--force",
                "--root",
            ])
            .arg(tools_root())
            .args([
                "--no-default-features",
                "--features",
                &format!("llvm-{}", llvm.major),
            ])
            .env("LLVM_PREFIX", &prefix)
            // The xtask itself may run under a different toolchain; build the linker with
            // the default one, as a user would.
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("CARGO_TARGET_DIR"),
    )
    .context(
        "step 'bpf-linker' failed: `cargo install bpf-linker` did not build; it needs crates.io, a C++ toolchain (g++) and the nightly's libLLVM",
    )?;
    if !linker_matches(&llvm) {
        bail!(
            "step 'bpf-linker' failed: bpf-linker was installed in {} but does not run linked to {}",
            tools_root().join("bin").display(),
            llvm.library.display()
        );
    }
    eprintln!("xtask setup: bpf-linker ready");
    Ok(())
}
