//! `cargo xtask bench`: what tracing costs a process that does nothing but signal itself
//! (`storm`, a SIGUSR1 handler installed). Modes run interleaved, several rounds, so that
//! machine noise hits them alike. Every traced storm is paired with an untraced storm run
//! just before it: on a VM whose speed drifts by ±20 % from one second to the next, the
//! ratio within a pair is far steadier than a ratio of medians taken minutes apart. The
//! table shows medians of ns/signal and the median of the paired ratios.
//!
//! Modes: untraced; sigtrace system-wide, text to /dev/null; the same with JSON; sigtrace
//! filtered to an unrelated pid; sigtrace keeping nothing (--signal 63: the programs run
//! and return at once, the floor of any filter); bpftrace printing the same two tracepoints (tracefs mounted
//! in a private mount namespace). For sigtrace it also measures the time from start to
//! "ready", the RSS sampled during the storm and the peak RSS, and events received and lost.
//!
//! `--baseline REV` adds a second sigtrace under test: the one at git revision REV, built
//! in a worktree of its own (`<target dir>/bench-baseline/<short sha>`, reused by later
//! runs). Every round then runs each sigtrace mode under both builds, in an order that
//! alternates from round to round, each traced storm paired with its own untraced storm;
//! the table adds the baseline's rows and, per mode, the median over rounds of this tree's
//! paired ratio over the baseline's paired ratio of the same round.

use std::{
    collections::HashSet,
    fs,
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{exec::stdout_of, run, test::is_root};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Signals per storm.
    #[arg(long, default_value_t = 400_000)]
    signals: u64,
    /// Signals per storm under bpftrace (it is an order of magnitude slower).
    #[arg(long, default_value_t = 100_000)]
    bpftrace_signals: u64,
    /// Rounds; each runs every mode once.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Skip bpftrace even when it is installed.
    #[arg(long)]
    no_bpftrace: bool,
    /// Also run every sigtrace mode under the sigtrace of git revision REV (built in a
    /// worktree under <target dir>/bench-baseline/), and compare round by round.
    #[arg(long, value_name = "REV")]
    baseline: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Untraced,
    Text,
    Json,
    Filtered,
    /// The programs attached but keeping nothing: the floor any filter can reach.
    NothingKept,
    Bpftrace,
}

/// The modes that run sigtrace, under each build under test.
const SIGTRACE_MODES: [Mode; 4] = [Mode::Text, Mode::Json, Mode::Filtered, Mode::NothingKept];

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Untraced => "untraced",
            Mode::Text => "sigtrace (text > /dev/null)",
            Mode::Json => "sigtrace --format json > /dev/null",
            Mode::Filtered => "sigtrace --pid <unrelated>",
            Mode::NothingKept => "sigtrace --signal 63 (keeps nothing)",
            Mode::Bpftrace => "bpftrace (printf per event)",
        }
    }

    fn is_sigtrace(self) -> bool {
        SIGTRACE_MODES.contains(&self)
    }

    /// sigtrace's arguments in this mode (none for the modes that do not run it).
    fn sigtrace_args(self, unrelated: u32) -> Vec<String> {
        let args: &[&str] = match self {
            Mode::Json => &["--format", "json"],
            Mode::Filtered => return vec!["--pid".into(), unrelated.to_string()],
            // SIGRTMIN+29: nothing on these machines sends it.
            Mode::NothingKept => &["--signal", "63"],
            Mode::Untraced | Mode::Text | Mode::Bpftrace => &[],
        };
        args.iter().map(|a| a.to_string()).collect()
    }
}

/// Which sigtrace a run used: this tree's, or the one built at --baseline REV. Runs that
/// use no sigtrace (untraced, bpftrace) count as this tree's.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Build {
    Current,
    Baseline,
}

/// The sigtrace built at --baseline REV.
struct Baseline {
    /// REV as given.
    rev: String,
    short_sha: String,
    binary: PathBuf,
}

/// What the runs need: the executables under test and the unrelated process.
struct Bench {
    storm: PathBuf,
    sigtrace: PathBuf,
    baseline: Option<Baseline>,
    /// Our own `sleep`, the unrelated pid of the filtered mode; killed when dropped.
    unrelated: Child,
}

impl Bench {
    fn sigtrace(&self, build: Build) -> &Path {
        match (build, &self.baseline) {
            (Build::Baseline, Some(baseline)) => &baseline.binary,
            _ => &self.sigtrace,
        }
    }

    /// The builds that run `mode`: both for sigtrace's modes when there is a baseline.
    fn builds(&self, mode: Mode) -> &'static [Build] {
        if mode.is_sigtrace() && self.baseline.is_some() {
            &[Build::Current, Build::Baseline]
        } else {
            &[Build::Current]
        }
    }

    /// `mode` run by `build`, for the progress lines and errors.
    fn label(&self, mode: Mode, build: Build) -> String {
        match (build, &self.baseline) {
            (Build::Baseline, Some(baseline)) => {
                format!("{} @ baseline {}", mode.label(), baseline.short_sha)
            }
            _ => mode.label().to_string(),
        }
    }

    fn unrelated(&self) -> u32 {
        self.unrelated.id()
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = self.unrelated.kill();
        let _ = self.unrelated.wait();
    }
}

#[derive(Default, Clone, Copy)]
struct Sample {
    ns_per_signal: f64,
    /// ns_per_signal over that of the untraced storm run just before (1 for untraced).
    paired_ratio: f64,
    events: u64,
    expected: u64,
    lost: u64,
    ready_ms: f64,
    rss_storm_kib: u64,
    hwm_kib: u64,
    /// With --cost: ns per run of signal_generate and of signal_deliver.
    cost_ns: Option<(u64, u64)>,
}

/// One timed storm: its mode, the build that traced it and its round.
struct Run {
    mode: Mode,
    build: Build,
    round: usize,
    sample: Sample,
}

/// Runs of the in-kernel cost pass (sigtrace --cost) per mode, after the timed rounds.
const COST_RUNS: usize = 2;

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the benchmark loads BPF programs: run it as root (sudo -E cargo xtask bench)");
    }
    // The baseline first: a REV that is no commit fails at once.
    let baseline = args.baseline.as_deref().map(build_baseline).transpose()?;
    let built = run::build_release(&["--bin", "sigtrace", "--example", "storm"])?;
    let mut modes = vec![Mode::Untraced];
    modes.extend(SIGTRACE_MODES);
    if !args.no_bpftrace {
        if ensure_bpftrace() {
            modes.push(Mode::Bpftrace);
        } else {
            eprintln!(
                "bench: bpftrace is not installed and could not be (apt-get install bpftrace); skipping it"
            );
        }
    }
    let bench = Bench {
        storm: run::find(&built, "storm")?,
        sigtrace: run::find(&built, "sigtrace")?,
        baseline,
        unrelated: Command::new("sleep")
            .arg("3600")
            .spawn()
            .context("spawn sleep")?,
    };
    // The progress lines' label column.
    let width = modes
        .iter()
        .flat_map(|&mode| bench.builds(mode).iter().map(move |&build| (mode, build)))
        .map(|(mode, build)| bench.label(mode, build).chars().count())
        .max()
        .unwrap_or(0);
    let started = Instant::now();
    let mut runs: Vec<Run> = Vec::new();
    for round in 1..=args.rounds {
        for &mode in modes.iter().filter(|&&m| m != Mode::Untraced) {
            let n = if mode == Mode::Bpftrace {
                args.bpftrace_signals
            } else {
                args.signals
            };
            let mut builds = bench.builds(mode).to_vec();
            // Neither build always runs first.
            if round % 2 == 0 {
                builds.reverse();
            }
            for build in builds {
                let label = bench.label(mode, build);
                let untraced = run_mode(&bench, Mode::Untraced, Build::Current, n)
                    .with_context(|| format!("round {round}, untraced"))?;
                let before = untraced.ns_per_signal;
                runs.push(Run {
                    mode: Mode::Untraced,
                    build: Build::Current,
                    round,
                    sample: untraced,
                });
                let mut sample = run_mode(&bench, mode, build, n)
                    .with_context(|| format!("round {round}, {label}"))?;
                sample.paired_ratio = sample.ns_per_signal / before;
                eprintln!(
                    "bench: round {round} {:<width$} {:>8.0} ns/signal (untraced just before: {:>5.0}, {:.2}×)  events {}/{}  lost {}",
                    label,
                    sample.ns_per_signal,
                    before,
                    sample.paired_ratio,
                    sample.events,
                    sample.expected,
                    sample.lost
                );
                runs.push(Run {
                    mode,
                    build,
                    round,
                    sample,
                });
            }
        }
    }
    // The kernel's own accounting of the programs, separately: its clock reads would
    // slow the timed storms above.
    let mut costs: Vec<(Mode, (u64, u64))> = Vec::new();
    for run in 1..=COST_RUNS {
        for mode in [Mode::Text, Mode::Filtered, Mode::NothingKept] {
            let sample = run_sigtrace(&bench, mode, Build::Current, args.signals, true)
                .with_context(|| format!("cost run {run}, {}", mode.label()))?;
            let cost = sample
                .cost_ns
                .context("sigtrace --cost printed no in-kernel cost")?;
            eprintln!(
                "bench: cost run {run} {:<38} generate {} ns/run, deliver {} ns/run  events {}/{}  lost {}",
                mode.label(),
                cost.0,
                cost.1,
                sample.events,
                sample.expected,
                sample.lost
            );
            costs.push((mode, cost));
        }
    }
    let took = started.elapsed();
    print_table(&bench, &modes, &runs, args, took);
    print_costs(&runs, &costs);
    Ok(())
}

/// Builds sigtrace at git revision `rev` in a worktree of its own under the workspace's
/// target directory (reused when it is there already), with a target directory inside it,
/// and checks that it takes every flag the sigtrace modes give.
fn build_baseline(rev: &str) -> anyhow::Result<Baseline> {
    let metadata =
        stdout_of(Command::new("cargo").args(["metadata", "--format-version", "1", "--no-deps"]))?;
    let metadata: serde_json::Value =
        serde_json::from_str(&metadata).context("cargo metadata printed no JSON")?;
    let workspace = metadata["workspace_root"]
        .as_str()
        .context("cargo metadata names no workspace_root")?;
    let target = metadata["target_directory"]
        .as_str()
        .context("cargo metadata names no target_directory")?;
    let workspace = Path::new(workspace);
    let commit = format!("{rev}^{{commit}}");
    let Ok(sha) = git(workspace, &["rev-parse", "--verify", "--quiet", &commit]) else {
        bail!(
            "--baseline {rev}: no such commit in {}",
            workspace.display()
        );
    };
    let short_sha = git(workspace, &["rev-parse", "--short", &sha])?;
    let dir = Path::new(target).join("bench-baseline").join(&short_sha);
    let dir_text = dir.to_string_lossy().into_owned();
    if dir.exists() {
        // A worktree has a .git file; anything else would find the main checkout's HEAD.
        let head = git(&dir, &["rev-parse", "HEAD"]).ok();
        if !dir.join(".git").is_file() || head.as_ref() != Some(&sha) {
            bail!(
                "--baseline {rev}: {dir_text} is there but is not a worktree at {sha}; remove it (git worktree remove --force {dir_text})"
            );
        }
        eprintln!("bench: baseline {rev} ({short_sha}): reusing the worktree {dir_text}");
    } else {
        eprintln!("bench: baseline {rev} ({short_sha}): git worktree add {dir_text}");
        // --force: a worktree whose directory was deleted (cargo clean) is still registered.
        git(
            workspace,
            &["worktree", "add", "--force", "--detach", &dir_text, &sha],
        )?;
    }
    eprintln!(
        "bench: building sigtrace at {short_sha} in {dir_text} (release; a first build takes minutes)"
    );
    let building = Instant::now();
    let built = run::build_release_with(
        Command::new("cargo")
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", dir.join("target")),
        &["--bin", "sigtrace"],
    )
    .with_context(|| format!("--baseline {rev}: building sigtrace at {short_sha}"))?;
    let binary = run::find(&built, "sigtrace")?;
    eprintln!(
        "bench: baseline sigtrace {} ({:.0?})",
        binary.display(),
        building.elapsed()
    );
    let help = stdout_of(Command::new(&binary).arg("--help"))?;
    if let Some((mode, flag)) = missing_flag(&help) {
        bail!(
            "--baseline {rev}: sigtrace at {short_sha} has no {flag}, which the mode \"{}\" uses; pick a later revision",
            mode.label()
        );
    }
    Ok(Baseline {
        rev: rev.to_owned(),
        short_sha,
        binary,
    })
}

/// The trimmed stdout of `git -C dir ARGS`, which must succeed.
fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    Ok(
        stdout_of(Command::new("git").arg("-C").arg(dir).args(args))?
            .trim()
            .to_owned(),
    )
}

/// The first flag of the sigtrace modes that `help` (`sigtrace --help`) does not list.
fn missing_flag(help: &str) -> Option<(Mode, String)> {
    let listed: HashSet<&str> = help
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | '[' | ']' | '=' | '<'))
        .collect();
    SIGTRACE_MODES.into_iter().find_map(|mode| {
        mode.sigtrace_args(0)
            .into_iter()
            .find(|arg| arg.starts_with("--") && !listed.contains(arg.as_str()))
            .map(|flag| (mode, flag))
    })
}

/// The in-kernel cost per signal (one generate and one deliver run) against the budget
/// that the 1.25× and 1.05× targets leave.
fn print_costs(runs: &[Run], costs: &[(Mode, (u64, u64))]) {
    let untraced = median(
        runs.iter()
            .filter(|r| r.mode == Mode::Untraced)
            .map(|r| r.sample.ns_per_signal)
            .collect(),
    );
    println!(
        "\nIn-kernel cost (sigtrace --cost: the kernel's BPF run-time statistics, {COST_RUNS} runs each, medians; \
         they include ~2 clock reads per run). Untraced storm: {untraced:.0} ns/signal.\n"
    );
    println!(
        "| {:<36} | {:>15} | {:>14} | {:>16} | {:>25} |",
        "mode", "generate ns/run", "deliver ns/run", "both, per signal", "as a share of untraced"
    );
    println!(
        "|{:-<38}|{:->17}|{:->16}|{:->18}|{:->27}|",
        "", "", "", "", ""
    );
    for (mode, target) in [
        (Mode::Text, Some(1.25)),
        (Mode::Filtered, Some(1.05)),
        (Mode::NothingKept, None),
    ] {
        let of = |pick: fn(&(u64, u64)) -> u64| {
            median(
                costs
                    .iter()
                    .filter(|(m, _)| *m == mode)
                    .map(|(_, c)| pick(c) as f64)
                    .collect(),
            )
        };
        let generate = of(|c| c.0);
        let deliver = of(|c| c.1);
        let share = 100.0 * (generate + deliver) / untraced;
        let share = match target {
            Some(target) => format!("{share:.1} % (target ≤ {:.0} %)", 100.0 * (target - 1.0)),
            None => format!("{share:.1} %"),
        };
        println!(
            "| {:<36} | {:>15.0} | {:>14.0} | {:>16.0} | {:>25} |",
            mode.label(),
            generate,
            deliver,
            generate + deliver,
            share
        );
    }
}

fn ensure_bpftrace() -> bool {
    let works = || {
        Command::new("bpftrace")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works() {
        return true;
    }
    eprintln!("bench: installing bpftrace (apt-get install -y bpftrace) to compare against");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "bpftrace"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    // A fresh machine may have no package lists yet.
    if !install() {
        let _ = Command::new("apt-get")
            .args(["update", "-q"])
            .stdout(Stdio::null())
            .status();
        install();
    }
    works()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn print_table(bench: &Bench, modes: &[Mode], runs: &[Run], args: &BenchArgs, took: Duration) {
    let baseline = bench.baseline.as_ref();
    println!(
        "\n{} rounds, {} signals per storm ({} under bpftrace); medians, and the median of each \
         traced storm's ratio to the untraced storm run just before it; took {:.0?}",
        args.rounds, args.signals, args.bpftrace_signals, took
    );
    if let Some(baseline) = baseline {
        println!(
            "baseline: {} = {} ({}); every round ran each sigtrace mode under both builds, \
             in alternating order, each traced storm paired with its own untraced storm",
            baseline.rev,
            baseline.short_sha,
            baseline.binary.display()
        );
    }
    println!();
    let mut headers = vec!["mode", "ns/signal", "ratio"];
    if baseline.is_some() {
        headers.push("vs baseline (same round)");
    }
    headers.extend([
        "events (got/expected)",
        "lost",
        "ready ms",
        "RSS storm",
        "peak RSS",
    ]);
    let mut rows = Vec::new();
    let mut versus = Vec::new();
    for &mode in modes {
        for &build in bench.builds(mode) {
            let s: Vec<Sample> = runs
                .iter()
                .filter(|r| r.mode == mode && r.build == build)
                .map(|r| r.sample)
                .collect();
            let ns = median(s.iter().map(|x| x.ns_per_signal).collect());
            let ratio = median(s.iter().map(|x| x.paired_ratio).collect());
            let events = median(s.iter().map(|x| x.events as f64).collect());
            let expected = median(s.iter().map(|x| x.expected as f64).collect());
            let lost: u64 = s.iter().map(|x| x.lost).sum();
            let ready = median(s.iter().map(|x| x.ready_ms).collect());
            let rss = s.iter().map(|x| x.rss_storm_kib).max().unwrap_or(0);
            let hwm = s.iter().map(|x| x.hwm_kib).max().unwrap_or(0);
            let dash = |shown: bool, v: String| if shown { v } else { "-".to_string() };
            let traced = mode != Mode::Untraced;
            let label = match (build, baseline) {
                // Under the same mode's row.
                (Build::Baseline, Some(baseline)) => format!("  ↳ baseline {}", baseline.short_sha),
                _ => mode.label().to_string(),
            };
            let mut row = vec![label, format!("{ns:.0}"), format!("{ratio:.2}×")];
            if baseline.is_some() {
                let cell = match build {
                    Build::Current if mode.is_sigtrace() => {
                        let (value, pairs) = versus_baseline(runs, mode);
                        versus.push((mode, value));
                        format!("{value:.2}× (median of {pairs} paired)")
                    }
                    _ => "-".to_string(),
                };
                row.push(cell);
            }
            row.extend([
                dash(traced, format!("{events:.0}/{expected:.0}")),
                dash(traced, format!("{lost} (sum)")),
                dash(mode.is_sigtrace(), format!("{ready:.0}")),
                dash(mode.is_sigtrace(), mib(rss)),
                dash(mode.is_sigtrace(), mib(hwm)),
            ]);
            rows.push(row);
        }
    }
    print_markdown(&headers, &rows);
    println!(
        "\nexpected: the storm's generate + deliver records; the system-wide modes also count other processes' signals.\n\
         lost: records the kernel could not reserve (sigtrace: its exact per-CPU counter; bpftrace: its 'Lost N events' lines)."
    );
    if let Some(baseline) = baseline {
        println!(
            "vs baseline (same round): in each round, this tree's paired ratio over the baseline's paired ratio; \
             the median over the rounds. Below 1.00×, this tree costs less than {}.",
            baseline.rev
        );
        if let Some((mode, worst)) = versus.iter().max_by(|a, b| a.1.total_cmp(&b.1)) {
            println!(
                "vs baseline {} ({}): the highest is {worst:.2}× ({}).",
                baseline.rev,
                baseline.short_sha,
                mode.label()
            );
        }
    }
}

/// The median over rounds of `mode`'s paired ratio under this tree's sigtrace over its
/// paired ratio under the baseline's in the same round, and how many rounds had both.
fn versus_baseline(runs: &[Run], mode: Mode) -> (f64, usize) {
    let ratio = |build: Build, round: usize| {
        runs.iter()
            .find(|r| r.mode == mode && r.build == build && r.round == round)
            .map(|r| r.sample.paired_ratio)
    };
    let per_round: Vec<f64> = runs
        .iter()
        .filter(|r| r.mode == mode && r.build == Build::Current)
        .filter_map(|r| Some(r.sample.paired_ratio / ratio(Build::Baseline, r.round)?))
        .collect();
    let pairs = per_round.len();
    (median(per_round), pairs)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// A Markdown table: the first column left-aligned, the others right-aligned.
fn print_markdown(headers: &[&str], rows: &[Vec<String>]) {
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(i, header)| {
            rows.iter()
                .map(|row| row[i].chars().count())
                .chain([header.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[&str]| {
        let cells: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, &w))| {
                if i == 0 {
                    format!(" {cell:<w$} ")
                } else {
                    format!(" {cell:>w$} ")
                }
            })
            .collect();
        println!("|{}|", cells.join("|"));
    };
    line(headers);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
    println!("|{}|", rule.join("|"));
    for row in rows {
        line(&row.iter().map(String::as_str).collect::<Vec<_>>());
    }
}

fn storm(bench: &Bench, n: u64) -> anyhow::Result<f64> {
    let out = Command::new(&bench.storm)
        .arg(n.to_string())
        .output()
        .context("run storm")?;
    if !out.status.success() {
        bail!("storm failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("storm printed no number")
}

fn status_kib(pid: u32, field: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Samples VmRSS of `pid` until stopped; returns the maximum seen.
fn rss_sampler(pid: u32) -> (Arc<AtomicBool>, thread::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = thread::spawn(move || {
        let mut max = 0;
        while !flag.load(Ordering::Relaxed) {
            max = max.max(status_kib(pid, "VmRSS:"));
            thread::sleep(Duration::from_millis(10));
        }
        max
    });
    (stop, handle)
}

fn run_mode(bench: &Bench, mode: Mode, build: Build, n: u64) -> anyhow::Result<Sample> {
    match mode {
        Mode::Untraced => Ok(Sample {
            ns_per_signal: storm(bench, n)?,
            paired_ratio: 1.0,
            ..Default::default()
        }),
        Mode::Bpftrace => run_bpftrace(bench, n),
        Mode::Text | Mode::Json | Mode::Filtered | Mode::NothingKept => {
            run_sigtrace(bench, mode, build, n, false)
        }
    }
}

fn interrupt(child: &Child) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
}

fn run_sigtrace(
    bench: &Bench,
    mode: Mode,
    build: Build,
    n: u64,
    cost: bool,
) -> anyhow::Result<Sample> {
    let mut cmd = Command::new(bench.sigtrace(build));
    if cost {
        cmd.arg("--cost");
    }
    cmd.args(mode.sigtrace_args(bench.unrelated()));
    let spawned = Instant::now();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .context("spawn sigtrace")?;
    let mut stderr = BufReader::new(child.stderr.take().context("stderr")?);
    let mut line = String::new();
    loop {
        line.clear();
        if stderr.read_line(&mut line)? == 0 {
            let _ = child.wait();
            bail!("sigtrace ended before it was ready");
        }
        if line.contains("sigtrace: ready") {
            break;
        }
    }
    let ready_ms = spawned.elapsed().as_secs_f64() * 1e3;
    let (stop, sampler) = rss_sampler(child.id());
    let ns = storm(bench, n);
    // Let it drain what the storm left in the ring before stopping it.
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let rss_storm_kib = sampler.join().unwrap_or(0);
    let hwm_kib = status_kib(child.id(), "VmHWM:");
    interrupt(&child);
    let mut rest = String::new();
    stderr.read_to_string(&mut rest)?;
    let status = child.wait()?;
    let ns = ns?;
    // "sigtrace: N events, M lost"
    let totals = rest
        .lines()
        .find(|l| l.contains(" events, "))
        .with_context(|| format!("no totals from sigtrace ({status}): {rest}"))?;
    let numbers: Vec<u64> = totals
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let (events, lost) = match numbers.as_slice() {
        [events, lost, ..] => (*events, *lost),
        _ => bail!("cannot read totals: {totals}"),
    };
    let cost_ns = rest
        .lines()
        .find_map(|l| l.strip_prefix("sigtrace: in-kernel cost: "))
        .and_then(|list| {
            Some((
                ns_per_run(list, "signal_generate")?,
                ns_per_run(list, "signal_deliver")?,
            ))
        });
    Ok(Sample {
        ns_per_signal: ns,
        events,
        expected: if matches!(mode, Mode::Filtered | Mode::NothingKept) {
            0
        } else {
            2 * n
        },
        lost,
        ready_ms,
        rss_storm_kib,
        hwm_kib,
        cost_ns,
        ..Default::default()
    })
}

/// "signal_generate 500003 runs, 1624 ns/run; signal_deliver ..." → 1624 for
/// signal_generate.
fn ns_per_run(list: &str, program: &str) -> Option<u64> {
    list.split("; ").find_map(|entry| {
        let rest = entry.strip_prefix(program)?.strip_prefix(' ')?;
        let (_, ns) = rest.split_once(", ")?;
        ns.strip_suffix(" ns/run")?.parse().ok()
    })
}

fn program_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .map(|dir| {
            dir.flatten()
                .filter(|e| fs::read_to_string(e.path()).is_ok_and(|s| s.contains("prog_id:")))
                .count()
        })
        .unwrap_or(0)
}

fn run_bpftrace(bench: &Bench, n: u64) -> anyhow::Result<Sample> {
    const SCRIPT: &str = r#"tracepoint:signal:signal_generate { printf("%d %s -> %d sig %d res %d\n", pid, comm, args->pid, args->sig, args->result); }
tracepoint:signal:signal_deliver { printf("%d %s deliver sig %d handler %lx\n", pid, comm, args->sig, args->sa_handler); }"#;
    // tracefs is not mounted on these machines: mount it in a private namespace.
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null; exec bpftrace -e '{SCRIPT}'"
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .context("spawn bpftrace")?;
    let lines = Arc::new(AtomicU64::new(0));
    let counter = lines.clone();
    let stdout = child.stdout.take().context("stdout")?;
    let reader = thread::spawn(move || {
        let mut reader = BufReader::with_capacity(1 << 16, stdout);
        let mut buf = Vec::new();
        while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
            if buf.windows(4).any(|w| w == b"sig ") {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            buf.clear();
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while program_count(child.id()) < 2 {
        if Instant::now() > deadline || child.try_wait()?.is_some() {
            let _ = child.kill();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            bail!("bpftrace did not attach: {err}");
        }
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(200));
    let ns = storm(bench, n);
    thread::sleep(Duration::from_millis(500));
    interrupt(&child);
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err)?;
    }
    child.wait()?;
    let _ = reader.join();
    let lost = err
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("Lost ")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum();
    Ok(Sample {
        ns_per_signal: ns?,
        events: lines.load(Ordering::Relaxed),
        expected: 2 * n,
        lost,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::{Mode, missing_flag, ns_per_run};

    #[test]
    fn reads_sigtraces_cost_line() {
        let list = "signal_deliver 500003 runs, 557 ns/run; signal_generate 500003 runs, 1752 ns/run; sched_process_exit 2 runs, 2400 ns/run";
        assert_eq!(ns_per_run(list, "signal_generate"), Some(1752));
        assert_eq!(ns_per_run(list, "signal_deliver"), Some(557));
        assert_eq!(ns_per_run(list, "sys_exit"), None);
        assert_eq!(ns_per_run("signal_generate oops", "signal_generate"), None);
    }

    #[test]
    fn finds_a_flag_the_help_does_not_list() {
        let help = "Options:\n  -p, --pid <PID>\n  -s, --signal <SIGNAL>\n      --format <FORMAT>  [default: text] [possible values: text, json]\n";
        assert_eq!(missing_flag(help), None);
        let old = "Options:\n  -p, --pid <PID>\n  -s, --signal <SIGNAL>\n      --json\n      --formatting\n";
        assert_eq!(
            missing_flag(old),
            Some((Mode::Json, "--format".to_string()))
        );
    }
}
