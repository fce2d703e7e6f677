//! `cargo xtask fuzz [--seconds N] [TARGET...]`: runs the cargo-fuzz (libFuzzer) targets of
//! fuzz/ for N seconds each and reports, per target, how many inputs it ran and what it
//! found. A crash (or a timeout, out-of-memory or leak) fails the task, naming the input
//! libFuzzer saved for it under fuzz/artifacts/.
//!
//! cargo-fuzz is installed when missing (pinned, as setup pins bpf-linker). The targets build
//! with the nightly toolchain and without the eBPF programs (AYA_BUILD_SKIP=1; they never load
//! BPF, and building the programs again for fuzz/target takes minutes). What libFuzzer adds to
//! the corpus goes to fuzz/target/corpus/TARGET (git-ignored, kept between runs so that later
//! runs start from what earlier ones found); the committed seeds in fuzz/corpus/TARGET are
//! only read.

use std::{
    fmt,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{
    exec::{capture, exec},
    setup,
};

/// The cargo-fuzz release installed when there is none; pinned so that a fresh machine runs
/// what was tested (0.13.2 builds with stable 1.95).
const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// Seconds per target unless --seconds says otherwise.
const DEFAULT_SECONDS: u64 = 60;
/// libFuzzer's limit for one input, in seconds (its default is 20 minutes): an input this
/// slow is a hang, even on a loaded 2-core VM where inputs take microseconds.
const UNIT_TIMEOUT_SECONDS: u64 = 25;
/// Lines of a failing target's output shown: the panic and its stack.
const TAIL_LINES: usize = 60;

#[derive(clap::Args)]
pub struct FuzzArgs {
    /// Seconds to run each target.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SECONDS)]
    seconds: u64,
    /// Targets to run (the file names in fuzz/fuzz_targets); all of them when none is given.
    #[arg(value_name = "TARGET")]
    targets: Vec<String>,
}

pub fn run(args: &FuzzArgs) -> anyhow::Result<()> {
    let outcomes = run_targets(&args.targets, Duration::from_secs(args.seconds), false)?;
    for outcome in &outcomes {
        eprintln!("xtask fuzz: {outcome}");
    }
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|outcome| !outcome.passed())
        .map(|outcome| outcome.failure())
        .collect();
    if !failed.is_empty() {
        bail!("fuzzing found problems:\n  {}", failed.join("\n  "));
    }
    Ok(())
}

/// What one target's run came to.
#[derive(Debug)]
pub struct Outcome {
    pub target: String,
    pub report: Report,
    /// cargo fuzz's exit status was success.
    pub exited_ok: bool,
    pub time: Duration,
}

impl Outcome {
    /// No crash, hang, out-of-memory or leak, and libFuzzer ended normally.
    pub fn passed(&self) -> bool {
        self.exited_ok && self.report.failures().next().is_none()
    }

    /// One line saying what went wrong and where the input is.
    pub fn failure(&self) -> String {
        let artifacts: Vec<&Artifact> = self.report.failures().collect();
        match artifacts.first() {
            None => format!(
                "{}: libFuzzer failed without saving an input (see its output above)",
                self.target
            ),
            Some(first) => {
                let paths: Vec<String> = artifacts
                    .iter()
                    .map(|artifact| artifact.path.display().to_string())
                    .collect();
                format!(
                    "{}: {} — reproduce with `cd fuzz && AYA_BUILD_SKIP=1 rustup run nightly cargo fuzz run {} {}`",
                    self.target,
                    paths.join(", "),
                    self.target,
                    first.path.display()
                )
            }
        }
    }
}

impl fmt::Display for Outcome {
    /// `decode_record 1.2M execs in 60 s, 0 crashes`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let execs = self
            .report
            .executions
            .map_or("? execs".to_owned(), |n| format!("{} execs", count(n)));
        let crashes = self.report.failures().count();
        write!(
            f,
            "{} {execs} in {:.0} s, {crashes} crash{}",
            self.target,
            self.time.as_secs_f64(),
            if crashes == 1 { "" } else { "es" }
        )?;
        if !self.exited_ok && crashes == 0 {
            f.write_str(" (libFuzzer failed)")?;
        }
        Ok(())
    }
}

/// 1234 → "1234", 12345 → "12.3k", 1234567 → "1.2M".
fn count(n: u64) -> String {
    match n {
        0..10_000 => n.to_string(),
        10_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

/// Builds every target and runs `targets` (all when empty) for `seconds` each, one after
/// another. An error is a problem running the fuzzer; what the fuzzer finds is in the
/// outcomes. `quick` builds without optimization (`cargo fuzz --dev`, still with the
/// address sanitizer): minutes less to build from scratch, for short runs such as CI's.
pub fn run_targets(
    targets: &[String],
    seconds: Duration,
    quick: bool,
) -> anyhow::Result<Vec<Outcome>> {
    let profile: &[&str] = if quick { &["--dev"] } else { &[] };
    let fuzz_dir = fuzz_dir();
    let all = list_targets(&fuzz_dir)?;
    let chosen: Vec<String> = if targets.is_empty() {
        all.clone()
    } else {
        targets.to_vec()
    };
    if let Some(unknown) = chosen.iter().find(|t| !all.contains(t)) {
        bail!(
            "no fuzz target {unknown:?}; the targets are: {}",
            all.join(", ")
        );
    }
    setup::check_nightly()?;
    ensure_cargo_fuzz()?;
    let started = Instant::now();
    eprintln!("xtask fuzz: building the targets (nightly, address sanitizer)");
    exec(cargo_fuzz(&fuzz_dir).arg("build").args(profile))
        .context("building the fuzz targets failed; the compiler's errors are above")?;
    eprintln!(
        "xtask fuzz: built in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    chosen
        .iter()
        .map(|target| run_target(&fuzz_dir, target, seconds, profile))
        .collect()
}

/// fuzz/, next to this crate (without the `..`, when it resolves, for shorter paths in
/// messages).
fn fuzz_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    std::fs::canonicalize(&dir).unwrap_or(dir)
}

/// The targets: the file names in fuzz/fuzz_targets, sorted.
fn list_targets(fuzz_dir: &Path) -> anyhow::Result<Vec<String>> {
    let dir = fuzz_dir.join("fuzz_targets");
    let entries =
        std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut targets = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot list {}", dir.display()))?
            .path();
        if path.extension().is_some_and(|ext| ext == "rs")
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
        {
            targets.push(stem.to_owned());
        }
    }
    targets.sort();
    if targets.is_empty() {
        bail!("no fuzz targets in {}", dir.display());
    }
    Ok(targets)
}

/// `cargo fuzz` under the nightly toolchain (sanitizers need -Z flags), run in fuzz/.
fn cargo_fuzz(fuzz_dir: &Path) -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo", "fuzz"])
        .current_dir(fuzz_dir)
        // The targets never load BPF: sigtrace/build.rs then skips the eBPF programs.
        .env("AYA_BUILD_SKIP", "1")
        // `cargo xtask` itself runs under the stable toolchain, whose cargo sets these.
        .env_remove("RUSTC")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO_TARGET_DIR");
    cmd
}

fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let installed = capture(Command::new("cargo").args(["fuzz", "--version"]))
        .is_ok_and(|out| out.status.success());
    if installed {
        return Ok(());
    }
    eprintln!("xtask fuzz: installing cargo-fuzz {CARGO_FUZZ_VERSION} (a few minutes, once)");
    let started = Instant::now();
    exec(
        Command::new("cargo")
            .args([
                "install",
                "cargo-fuzz",
                "--version",
                CARGO_FUZZ_VERSION,
                "--locked",
            ])
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("CARGO_TARGET_DIR"),
    )
    .context("`cargo install cargo-fuzz` failed; it needs crates.io")?;
    let works = capture(Command::new("cargo").args(["fuzz", "--version"]))
        .is_ok_and(|out| out.status.success());
    if !works {
        bail!(
            "cargo-fuzz was installed but `cargo fuzz --version` does not run; is ~/.cargo/bin on PATH?"
        );
    }
    eprintln!(
        "xtask fuzz: cargo-fuzz installed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs one target for `seconds`, its new corpus entries in fuzz/target/corpus/TARGET and
/// the committed seeds read from fuzz/corpus/TARGET.
fn run_target(
    fuzz_dir: &Path,
    target: &str,
    seconds: Duration,
    profile: &[&str],
) -> anyhow::Result<Outcome> {
    let scratch = fuzz_dir.join("target/corpus").join(target);
    std::fs::create_dir_all(&scratch)
        .with_context(|| format!("cannot create {}", scratch.display()))?;
    let seeds = fuzz_dir.join("corpus").join(target);
    eprintln!("xtask fuzz: {target} for {} s", seconds.as_secs());
    let started = Instant::now();
    let mut cmd = cargo_fuzz(fuzz_dir);
    cmd.arg("run").args(profile).arg(target).arg(&scratch);
    // libFuzzer refuses a corpus directory that does not exist: a new target may have no
    // seeds yet.
    if seeds.is_dir() {
        cmd.arg(&seeds);
    }
    cmd.arg("--")
        .arg(format!("-max_total_time={}", seconds.as_secs()))
        .arg(format!("-timeout={UNIT_TIMEOUT_SECONDS}"))
        .arg("-print_final_stats=1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start cargo fuzz run {target}"))?;
    let stderr = child
        .stderr
        .take()
        .context("cargo fuzz's stderr was not captured")?;
    // libFuzzer reports on stderr; kept whole (a few thousand lines at most) and parsed at
    // the end, shown only when the target fails.
    // Read as bytes: a panic message may quote the input, which need not be UTF-8.
    let mut lines = Vec::new();
    for line in BufReader::new(stderr).split(b'\n') {
        let line = line.with_context(|| format!("reading cargo fuzz run {target}'s output"))?;
        lines.push(String::from_utf8_lossy(&line).into_owned());
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for cargo fuzz run {target}"))?;
    let outcome = Outcome {
        target: target.to_owned(),
        report: Report::parse(lines.iter().map(String::as_str)),
        exited_ok: status.success(),
        time: started.elapsed(),
    };
    if !outcome.passed() {
        let tail = lines.len().saturating_sub(TAIL_LINES);
        for line in &lines[tail..] {
            eprintln!("  | {line}");
        }
    }
    Ok(outcome)
}

/// What libFuzzer's output says about a run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Inputs run: `stat::number_of_executed_units`, else the last `#N` status line.
    pub executions: Option<u64>,
    /// Inputs it saved (`Test unit written to PATH`).
    pub artifacts: Vec<Artifact>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Artifact {
    pub kind: ArtifactKind,
    pub path: PathBuf,
}

/// libFuzzer's artifact file prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactKind {
    Crash,
    Timeout,
    OutOfMemory,
    Leak,
    /// An input slower than -report_slow_units (10 s): a warning on a loaded machine, not
    /// a failure (a real hang is a timeout).
    Slow,
    Other,
}

impl Report {
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Report {
        let mut report = Report::default();
        let mut stat = None;
        let mut last_status = None;
        for line in lines {
            let line = line.trim();
            if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
                stat = n.trim().parse().ok().or(stat);
            } else if let Some(rest) = line.strip_prefix('#') {
                // "#212393\tDONE   cov: ..." and the pulse/NEW/REDUCE lines before it.
                let digits = rest.split(|c: char| !c.is_ascii_digit()).next();
                if let Some(n) = digits.and_then(|d| d.parse().ok()) {
                    last_status = Some(n);
                }
            } else if let Some((_, path)) = line.split_once("Test unit written to ") {
                let path = PathBuf::from(path.trim());
                let kind = path
                    .file_name()
                    .and_then(|name| name.to_str())
                    .map_or(ArtifactKind::Other, ArtifactKind::of_file);
                report.artifacts.push(Artifact { kind, path });
            }
        }
        report.executions = stat.or(last_status);
        report
    }

    /// The artifacts that fail a run (all but slow units).
    pub fn failures(&self) -> impl Iterator<Item = &Artifact> {
        self.artifacts
            .iter()
            .filter(|artifact| artifact.kind != ArtifactKind::Slow)
    }
}

impl ArtifactKind {
    fn of_file(name: &str) -> ArtifactKind {
        let prefixes = [
            ("crash-", ArtifactKind::Crash),
            ("timeout-", ArtifactKind::Timeout),
            ("oom-", ArtifactKind::OutOfMemory),
            ("leak-", ArtifactKind::Leak),
            ("slow-unit-", ArtifactKind::Slow),
        ];
        prefixes
            .into_iter()
            .find(|(prefix, _)| name.starts_with(prefix))
            .map_or(ArtifactKind::Other, |(_, kind)| kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_run_counts_its_executions() {
        // The end of a real run (decode_record, 180 s).
        let output = "\
INFO: Seed: 1234
#2\tINITED cov: 2383 ft: 4471 corp: 5/2507b exec/s: 0 rss: 49Mb
#1024\tpulse  cov: 2833 ft: 7441 corp: 146/88Kb lim: 1031 exec/s: 512 rss: 83Mb
#212393\tDONE   cov: 3638 ft: 13002 corp: 1032/592Kb lim: 1091 exec/s: 1173 rss: 469Mb
###### Recommended dictionary. ######
\"h\\000\" # Uses: 467
###### End of recommended dictionary. ######
Done 212393 runs in 181 second(s)
stat::number_of_executed_units: 212393
stat::average_exec_per_sec:     1173
stat::new_units_added:          1280
stat::slowest_unit_time_sec:    0
stat::peak_rss_mb:              469";
        let report = Report::parse(output.lines());
        assert_eq!(
            report,
            Report {
                executions: Some(212_393),
                artifacts: Vec::new()
            }
        );
        assert_eq!(report.failures().count(), 0);
    }

    #[test]
    fn a_crash_names_its_artifact() {
        // A real crash (parse_proc, before procfs's stat parser was guarded).
        let output = "\
#1664\tREDUCE cov: 1682 ft: 3601 corp: 285/231Kb lim: 1434 exec/s: 0 rss: 87Mb L: 106/1434 MS: 3 InsertRepeatedBytes-CMP-EraseBytes-
thread '<unnamed>' (5074) panicked at procfs-core-0.17.0/src/process/stat.rs:244:24:
==5074== ERROR: libFuzzer: deadly signal
SUMMARY: libFuzzer: deadly signal
MS: 2 CrossOver-CopyPart-; base unit: e17c587085876f57013ffe402a4c09e907bf4462
artifact_prefix='/work/main/fuzz/artifacts/parse_proc/'; Test unit written to /work/main/fuzz/artifacts/parse_proc/crash-c67db33db69ff1eb4b7b912755b621c69eed967c
Base64: TmFtZToJbWFrZQ==
stat::number_of_executed_units: 1675
stat::average_exec_per_sec:     0";
        let report = Report::parse(output.lines());
        assert_eq!(report.executions, Some(1675));
        assert_eq!(
            report.artifacts,
            [Artifact {
                kind: ArtifactKind::Crash,
                path: PathBuf::from(
                    "/work/main/fuzz/artifacts/parse_proc/crash-c67db33db69ff1eb4b7b912755b621c69eed967c"
                ),
            }]
        );
        let outcome = Outcome {
            target: "parse_proc".into(),
            report,
            exited_ok: false,
            time: Duration::from_secs(20),
        };
        assert!(!outcome.passed());
        assert_eq!(
            outcome.to_string(),
            "parse_proc 1675 execs in 20 s, 1 crash"
        );
        assert!(
            outcome
                .failure()
                .contains("crash-c67db33db69ff1eb4b7b912755b621c69eed967c")
        );
    }

    #[test]
    fn without_final_stats_the_last_status_line_counts() {
        let report = Report::parse([
            "#4096\tpulse  cov: 3098 ft: 8688",
            "#8192\tpulse  cov: 3210",
        ]);
        assert_eq!(report.executions, Some(8192));
        assert_eq!(Report::parse(["cargo: no output"]).executions, None);
    }

    #[test]
    fn slow_units_warn_and_timeouts_fail() {
        let report = Report::parse([
            "Test unit written to fuzz/artifacts/t/slow-unit-0123",
            "artifact_prefix='fuzz/artifacts/t/'; Test unit written to fuzz/artifacts/t/timeout-4567",
        ]);
        let kinds: Vec<ArtifactKind> = report.artifacts.iter().map(|a| a.kind).collect();
        assert_eq!(kinds, [ArtifactKind::Slow, ArtifactKind::Timeout]);
        assert_eq!(report.failures().count(), 1);
        let slow_only = Report::parse(["Test unit written to fuzz/artifacts/t/slow-unit-0123"]);
        let outcome = Outcome {
            target: "t".into(),
            report: slow_only,
            exited_ok: true,
            time: Duration::from_secs(1),
        };
        assert!(outcome.passed());
    }

    #[test]
    fn counts_read_at_a_glance() {
        assert_eq!(count(1234), "1234");
        assert_eq!(count(12_345), "12.3k");
        assert_eq!(count(1_234_567), "1.2M");
    }
}
