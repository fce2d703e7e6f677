//! `cargo xtask test`: formatting, lints (host crates and the eBPF crate for its own target),
//! every unit and end-to-end test on this machine, then the end-to-end suite again inside
//! each kernel of the matrix (QEMU guests, see `vm`), with a table of results at the end.
//! End-to-end tests need root for BPF: without it they skip loudly on the host, except
//! under CI=true, where a skip is a failure; in a guest they always run as root.
//!
//! The end-to-end suite is one test binary, `e2e` of the `tests` package. It runs the
//! sigtrace binary built here (debug, as `cargo test` builds everything), named by
//! SIGTRACE_BIN on the host and in the guests alike. It runs once per probe mode
//! (SIGTRACE_PROBE_MODE: the BTF-tracepoint object and the raw one) in each guest, and on
//! the host once in sigtrace's own choice (`auto`, with the unit tests) and once more in
//! each listed mode that choice was not.
//!
//! Between the host and the guests, the packaging test (`dist`): the release build
//! packaged, installed into a clean Debian 12 chroot and used there (`--no-dist` skips it).

use std::{
    ffi::OsString,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    str::FromStr,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{
    dist,
    exec::exec,
    fuzz, run,
    vm::{self, Kernel, VmOptions},
};

/// Seconds each fuzz target runs here, after the host's tests (`cargo xtask fuzz` runs
/// longer, optimized): enough to catch a parser that panics on simple input, little CI time.
const FUZZ_SECONDS: u64 = 20;

#[derive(clap::Args)]
pub struct TestArgs {
    /// Kernels to run the end-to-end suite in after the host: a comma-separated list of
    /// 6.1, 6.12 and 6.12-rt, `all` for the three, or `none` for the host only.
    #[arg(
        long = "kernel",
        visible_alias = "kernels",
        value_name = "LIST",
        default_value = "6.1,6.12",
        value_parser = parse_kernels
    )]
    kernels: KernelList,
    /// Probe modes to run the suite in, in each kernel: a comma-separated list of btf and
    /// raw (sigtrace --probe-mode).
    #[arg(
        long = "probe-modes",
        value_name = "LIST",
        default_value = "btf,raw",
        value_delimiter = ',',
        value_parser = ["btf", "raw"]
    )]
    probe_modes: Vec<String>,
    /// Skip the packaging test: the release build's .deb and tarball installed into a
    /// clean Debian 12 chroot and used there (minutes: a release build, and a debootstrap
    /// the first time).
    #[arg(long)]
    no_dist: bool,
}

#[derive(Clone, Debug)]
struct KernelList(Vec<Kernel>);

fn parse_kernels(list: &str) -> Result<KernelList, String> {
    match list {
        "all" => Ok(KernelList(Kernel::ALL.to_vec())),
        "none" | "" => Ok(KernelList(Vec::new())),
        _ => list
            .split(',')
            .map(|name| Kernel::from_str(name.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map(KernelList),
    }
}

pub fn run(args: &TestArgs) -> anyhow::Result<()> {
    lint()?;
    // Fetch every kernel first: a download problem shows before the long runs.
    let kernels = args
        .kernels
        .0
        .iter()
        .map(|&kernel| vm::prepare(kernel))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if !is_root() {
        eprintln!(
            "xtask test: WARNING: not root — the end-to-end tests that load BPF will skip (they fail instead when CI=true); run `sudo -E cargo xtask test` to run them"
        );
    }
    // The metrics tests run a real Prometheus (here and, through the host's files, in the
    // guests).
    match crate::apt::ensure_programs(&[("prometheus", "prometheus"), ("promtool", "prometheus")]) {
        // Debian's package enables its own server (on :9090, every address) and starts it
        // where systemd runs: the tests run theirs, so the one installed here goes.
        Ok(installed) if installed.contains(&"prometheus") => {
            if Path::new("/run/systemd/system").exists() {
                let _ = Command::new("systemctl")
                    .args(["disable", "--now", "prometheus"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        Ok(_) => {}
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => return Err(e),
        Err(e) => eprintln!("xtask test: WARNING: {e:#} — the metrics tests will skip"),
    }
    let sigtrace = sigtrace_debug_binary()?;
    // What sigtrace picks by itself here: the host's first run is in it, the others not.
    let auto = auto_probe_mode(&sigtrace);
    let mut rows = Vec::new();
    eprintln!("xtask test: cargo test (host: unit and end-to-end tests)");
    let started = Instant::now();
    let mut host = Command::new("cargo");
    host.args(["test", "--no-fail-fast"])
        .env("SIGTRACE_BIN", &sigtrace);
    let (tally, ok) = run_counting(&mut host)?;
    rows.push(Row {
        place: format!(
            "host ({}) {}",
            host_release(),
            auto.as_deref()
                .map_or("auto".to_owned(), |mode| format!("auto: {mode}"))
        ),
        tally,
        outcome: if ok { Ok(()) } else { Err("failed".into()) },
        time: started.elapsed(),
        boot: None,
    });
    let suite = end_to_end_binary()?;
    for mode in args
        .probe_modes
        .iter()
        .filter(|&mode| Some(mode) != auto.as_ref())
    {
        rows.push(run_on_host(mode, &suite, &sigtrace)?);
    }
    if !args.no_dist {
        rows.push(run_dist());
    }
    let (fuzz_row, fuzz_lines) = run_fuzz();
    rows.push(fuzz_row);
    // The kernels side by side, each running its probe modes in turn: a guest is one
    // single-threaded TCG process, so two of them take the two CPUs of this project's
    // machines and halve the matrix's wall-clock time.
    let guest_rows: Vec<Vec<Row>> = std::thread::scope(|scope| {
        let runs: Vec<_> = kernels
            .iter()
            .map(|kernel| {
                let (suite, sigtrace) = (&suite, &sigtrace);
                let modes = &args.probe_modes;
                let place = kernel.kernel.to_string();
                let run = scope.spawn(move || {
                    modes
                        .iter()
                        .map(|mode| run_in_kernel(kernel, mode, suite, sigtrace))
                        .collect::<Vec<Row>>()
                });
                (place, run)
            })
            .collect();
        runs.into_iter()
            .map(|(place, run)| {
                run.join().unwrap_or_else(|_| {
                    vec![Row {
                        place,
                        tally: Tally::default(),
                        outcome: Err("the guest runner panicked".into()),
                        time: Duration::ZERO,
                        boot: None,
                    }]
                })
            })
            .collect()
    });
    rows.extend(guest_rows.into_iter().flatten());
    print_table(&rows);
    for line in &fuzz_lines {
        println!("  {line}");
    }
    let failed: Vec<&str> = rows
        .iter()
        .filter(|row| row.outcome.is_err() || row.tally.failed > 0)
        .map(|row| row.place.as_str())
        .collect();
    if !failed.is_empty() {
        bail!("tests failed on: {}", failed.join(", "));
    }
    Ok(())
}

fn lint() -> anyhow::Result<()> {
    eprintln!("xtask test: cargo fmt --check");
    exec(Command::new("cargo").args(["fmt", "--all", "--", "--check"]))
        .context("formatting differs; run `cargo fmt --all`")?;
    eprintln!("xtask test: clippy (host crates)");
    // The eBPF programs are linted on their own below: the host crates' lint needs no
    // object built (sigtrace/build.rs embeds an empty one), which saves a build of them.
    exec(
        Command::new("cargo")
            .args(["clippy", "--all-targets", "--", "-D", "warnings"])
            .env("AYA_BUILD_SKIP", "1"),
    )?;
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
    )
}

/// The debug `sigtrace` binary, built if needed: what the end-to-end suite runs, here and in
/// the guests (SIGTRACE_BIN), at the path cargo reports.
fn sigtrace_debug_binary() -> anyhow::Result<PathBuf> {
    let built = run::executables(Command::new("cargo").args([
        "build",
        "--package",
        "sigtrace",
        "--bin",
        "sigtrace",
    ]))?;
    run::find(&run::by_name(&built), "sigtrace")
}

/// The end-to-end suite's one test binary (the `e2e` test target of the `tests` package),
/// as the host's `cargo test` built it (the same command, so nothing is built again).
fn end_to_end_binary() -> anyhow::Result<OsString> {
    let built = run::executables(Command::new("cargo").args(["test", "--no-run"]))?;
    let mut binaries: Vec<OsString> = built
        .iter()
        .filter(|m| {
            m["profile"]["test"] == true
                && m["target"]["name"] == "e2e"
                && m["target"]["kind"]
                    .as_array()
                    .is_some_and(|kinds| kinds.iter().any(|k| k == "test"))
        })
        .filter_map(|m| m["executable"].as_str().map(OsString::from))
        .collect();
    match binaries.len() {
        1 => Ok(binaries.remove(0)),
        0 => bail!("cargo built no end-to-end test binary"),
        _ => bail!("cargo built more than one end-to-end test binary: {binaries:?}"),
    }
}

/// Runs the end-to-end suite (`suite`, the test binary) on `sigtrace` in one guest of
/// The probe mode sigtrace picks by itself here (`auto`), from its ready line; None when it
/// cannot start (not root: the suite then skips anyway).
fn auto_probe_mode(sigtrace: &Path) -> Option<String> {
    let output = Command::new(sigtrace)
        // Launch mode: it ends with `true`.
        .args(["--signal", "63", "--", "true"])
        .env_remove("SIGTRACE_PROBE_MODE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .ok()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let ready = stderr.lines().find(|l| l.starts_with("sigtrace: ready"))?;
    ["btf", "raw"]
        .into_iter()
        .find(|mode| ready.contains(&format!("{mode} probes")))
        .map(str::to_owned)
}

/// The end-to-end suite on this machine with sigtrace's probes in `mode`.
fn run_on_host(mode: &str, suite: &OsString, sigtrace: &Path) -> anyhow::Result<Row> {
    eprintln!("xtask test: end-to-end suite on the host, {mode} probes");
    let started = Instant::now();
    let mut cmd = Command::new(suite);
    cmd.env("SIGTRACE_BIN", sigtrace)
        .env("SIGTRACE_PROBE_MODE", mode);
    let (tally, ok) = run_counting(&mut cmd)?;
    Ok(Row {
        place: format!("host ({}) {mode}", host_release()),
        tally,
        outcome: if ok { Ok(()) } else { Err("failed".into()) },
        time: started.elapsed(),
        boot: None,
    })
}

/// `kernel` (it sees this machine's files at the same paths), with sigtrace's probes in
/// `mode`; a guest that fails is a row with its error, and the other kernels still run.
fn run_in_kernel(
    kernel: &vm::PreparedKernel,
    mode: &str,
    suite: &OsString,
    sigtrace: &Path,
) -> Row {
    eprintln!(
        "xtask test: end-to-end suite in {} ({}), {mode} probes",
        kernel.kernel, kernel.release
    );
    let cmd = vec![suite.clone()];
    let opts = VmOptions {
        // The 6.1 guest's suite took 945 s with the BTF object here (its verifier is slow
        // under emulation): room for a slower machine.
        timeout: Duration::from_secs(2400),
        // Root in the guest: nothing may skip there. Under emulation a signal costs ~20x
        // what it does on hardware: the tests' waits stretch by this much.
        env: vec![
            ("CI".into(), "true".into()),
            ("RUST_BACKTRACE".into(), "1".into()),
            ("SIGTRACE_TEST_TIME_SCALE".into(), "10".into()),
            ("SIGTRACE_BIN".into(), sigtrace.into()),
            ("SIGTRACE_PROBE_MODE".into(), mode.into()),
        ],
        keep_output: true,
        ..VmOptions::default()
    };
    let place = format!("{} ({}) {mode}", kernel.kernel, kernel.release);
    let started = Instant::now();
    let mut result = vm::run_in_vm(kernel, &cmd, &opts);
    let mut place = place;
    if let Err(err) = &result
        && format!("{err}").contains("kernel panic in the guest")
    {
        // Seen once in ~10 guest runs: an int3 Oops in get_signal while the kernel
        // live-patches a tracepoint's static branch (attach/detach) — QEMU's multi-threaded
        // TCG and cross-modifying code, not something a BPF program can cause. The suite
        // runs once more, and the table says so.
        eprintln!(
            "xtask test: WARNING: {} panicked (above); running its suite once more",
            kernel.kernel
        );
        place.push_str(", rerun after a guest kernel panic");
        result = vm::run_in_vm(kernel, &cmd, &opts);
    }
    match result {
        Ok(outcome) => {
            let mut tally = Tally::default();
            for line in &outcome.output {
                tally.add_line(line);
            }
            Row {
                place,
                tally,
                outcome: if outcome.status == 0 {
                    Ok(())
                } else {
                    Err(format!("exit status {}", outcome.status))
                },
                time: outcome.command,
                boot: Some(outcome.boot),
            }
        }
        Err(err) => {
            eprintln!("xtask test: {}: {err:#}", kernel.kernel);
            Row {
                place,
                tally: Tally::default(),
                outcome: Err(format!("{err}")),
                time: started.elapsed(),
                boot: None,
            }
        }
    }
}

/// `cargo xtask dist --test`, as one row (PASSED counts its checks). Without root only the
/// packages are built (the install test needs chroot and mounts), which fails under CI.
fn run_dist() -> Row {
    eprintln!("xtask test: dist: the packages, installed into a clean Debian 12 chroot");
    let started = Instant::now();
    let mut tally = Tally::default();
    let outcome = if is_root() {
        match dist::build_and_test() {
            Ok(passed) => {
                tally.passed = passed;
                Ok(())
            }
            Err(err) => {
                eprintln!("xtask test: dist: {err:#}");
                tally.failed = 1;
                Err(format!("{err}"))
            }
        }
    } else {
        let built = dist::build();
        tally.ignored = 1;
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            Err("the install test needs root (CI=true)".into())
        } else {
            eprintln!(
                "xtask test: WARNING: not root — the packages are built but not installed and tested; run `sudo -E cargo xtask test` for that"
            );
            built.map(drop).map_err(|err| format!("{err}"))
        }
    };
    eprintln!(
        "xtask test: dist took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Row {
        place: "dist (.deb and tarball in a Debian 12 chroot)".into(),
        tally,
        outcome,
        time: started.elapsed(),
        boot: None,
    }
}

/// Every fuzz target for FUZZ_SECONDS: one row (PASSED and FAILED count targets), and a
/// line per target for under the table (executions, crashes, the saved inputs).
fn run_fuzz() -> (Row, Vec<String>) {
    eprintln!("xtask test: fuzz targets, {FUZZ_SECONDS} s each");
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut lines = Vec::new();
    let outcome = match fuzz::run_targets(&[], Duration::from_secs(FUZZ_SECONDS), true) {
        Ok(outcomes) => {
            for target in &outcomes {
                lines.push(format!("fuzz: {target}"));
                if target.passed() {
                    tally.passed += 1;
                } else {
                    tally.failed += 1;
                    lines.push(format!("fuzz: FAILED {}", target.failure()));
                }
            }
            Ok(())
        }
        Err(err) => {
            eprintln!("xtask test: fuzz: {err:#}");
            Err(format!("{err}"))
        }
    };
    let row = Row {
        place: "fuzz (libFuzzer targets)".into(),
        tally,
        outcome,
        time: started.elapsed(),
        boot: None,
    };
    (row, lines)
}

/// Runs `cmd` with its output passed through, counting the test results it reports.
fn run_counting(cmd: &mut Command) -> anyhow::Result<(Tally, bool)> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start cargo test")?;
    let stdout = child.stdout.take().context("cargo test's stdout")?;
    let mut tally = Tally::default();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test's output")?;
        println!("{line}");
        tally.add_line(&line);
    }
    let status = child.wait().context("waiting for cargo test")?;
    Ok((tally, status.success()))
}

/// Test counts summed over libtest's `test result:` lines.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    passed: u64,
    failed: u64,
    ignored: u64,
    /// Test binaries that reported.
    binaries: u64,
}

impl Tally {
    /// Adds `test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; ...`.
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        self.binaries += 1;
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(count)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(count) = count.parse::<u64>() else {
                continue;
            };
            match what {
                "passed" => self.passed += count,
                "failed" => self.failed += count,
                "ignored" => self.ignored += count,
                _ => {}
            }
        }
    }
}

struct Row {
    place: String,
    tally: Tally,
    outcome: Result<(), String>,
    time: Duration,
    boot: Option<Duration>,
}

fn print_table(rows: &[Row]) {
    let width = rows.iter().map(|r| r.place.len()).max().unwrap_or(0);
    println!();
    println!("xtask test: results");
    println!(
        "  {:<width$}  {:>6}  {:>6}  {:>7}  {:>7}  {:>6}  RESULT",
        "WHERE", "PASSED", "FAILED", "IGNORED", "SUITE", "BOOT"
    );
    for row in rows {
        let result = match (&row.outcome, row.tally.failed) {
            (Ok(()), 0) => "pass".to_owned(),
            (Ok(()), _) => "FAIL".to_owned(),
            (Err(why), _) => format!("FAIL: {why}"),
        };
        let boot = row
            .boot
            .map_or("-".to_owned(), |b| format!("{:.0} s", b.as_secs_f64()));
        println!(
            "  {:<width$}  {:>6}  {:>6}  {:>7}  {:>5} s  {:>6}  {result}",
            row.place,
            row.tally.passed,
            row.tally.failed,
            row.tally.ignored,
            row.time.as_secs(),
            boot,
        );
    }
}

fn host_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_owned())
        .unwrap_or_else(|_| "unknown kernel".into())
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_libtest_result_lines() {
        let mut tally = Tally::default();
        tally.add_line("test result: ok. 68 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.20s");
        tally.add_line("running 4 tests");
        tally.add_line("test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.70s");
        assert_eq!(
            tally,
            Tally {
                passed: 71,
                failed: 1,
                ignored: 2,
                binaries: 2
            }
        );
    }

    #[test]
    fn kernel_lists() {
        assert_eq!(parse_kernels("all").map(|l| l.0.len()), Ok(3));
        assert_eq!(parse_kernels("none").map(|l| l.0.len()), Ok(0));
        assert_eq!(
            parse_kernels("6.1,6.12-rt").map(|l| l.0),
            Ok(vec![Kernel::V6_1, Kernel::V6_12Rt])
        );
        assert!(parse_kernels("6.1,5.4").is_err());
    }
}
