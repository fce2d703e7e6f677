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
//! Every sigtrace mode runs under each *variant* of sigtrace under test: this tree's
//! sigtrace under each of `--probe-modes` (auto, btf, raw; auto passes no --probe-mode),
//! then, with `--baseline REV`, the sigtrace at git revision REV, built in a worktree of its
//! own (`<target dir>/bench-baseline/<short sha>`, reused by later runs). Each variant is
//! started once before the rounds: one that cannot start (btf probes where the kernel has
//! no BTF tracepoints) is reported with sigtrace's reason and left out, and the ready line
//! of one that does says which probes it uses ("auto → raw"). Every round runs each sigtrace
//! mode under every variant, in an order that alternates from round to round, each traced
//! storm paired with its own untraced storm; the table has a row per mode and variant and,
//! per mode, the median over rounds of the first variant's paired ratio over each other
//! variant's paired ratio of the same round.
//!
//! After the timed rounds, the in-kernel cost pass (`sigtrace --cost`, COST_RUNS per mode
//! and variant), and a STATIC report of each variant's signal programs from bpftool
//! (instructions, jited size and helper calls in the loaded programs; see
//! [`programs`]), taken while its first cost run is loaded.

mod programs;

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
    time::{Duration, Instant, SystemTime},
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
    /// This tree's sigtrace under each of these probe modes (comma-separated: auto, btf,
    /// raw; auto passes no --probe-mode), every sigtrace mode under each, compared round by
    /// round with the first.
    #[arg(long, value_name = "LIST", default_value = "auto", value_parser = parse_probe_modes)]
    probe_modes: ProbeModes,
    /// Also run every sigtrace mode under the sigtrace of git revision REV (built in a
    /// worktree under <target dir>/bench-baseline/), and compare round by round.
    #[arg(long, value_name = "REV")]
    baseline: Option<String>,
}

/// What `--probe-mode` this tree's sigtrace is given.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ProbeMode {
    /// No --probe-mode: sigtrace picks.
    Auto,
    Btf,
    Raw,
}

impl ProbeMode {
    fn name(self) -> &'static str {
        match self {
            ProbeMode::Auto => "auto",
            ProbeMode::Btf => "btf",
            ProbeMode::Raw => "raw",
        }
    }

    fn sigtrace_args(self) -> Vec<String> {
        match self {
            ProbeMode::Auto => Vec::new(),
            ProbeMode::Btf | ProbeMode::Raw => vec!["--probe-mode".into(), self.name().into()],
        }
    }
}

/// `--probe-modes`, in the order given.
#[derive(Clone, PartialEq, Eq, Debug)]
struct ProbeModes(Vec<ProbeMode>);

/// "btf,raw" → [Btf, Raw]: each of auto, btf and raw at most once, at least one.
fn parse_probe_modes(text: &str) -> Result<ProbeModes, String> {
    let mut modes = Vec::new();
    for word in text.split(',').map(str::trim) {
        let mode = match word.to_ascii_lowercase().as_str() {
            "auto" => ProbeMode::Auto,
            "btf" => ProbeMode::Btf,
            "raw" => ProbeMode::Raw,
            "" => return Err("an empty entry (a list such as auto,raw)".into()),
            _ => return Err(format!("{word:?} is none of auto, btf, raw")),
        };
        if modes.contains(&mode) {
            return Err(format!("{} is listed twice", mode.name()));
        }
        modes.push(mode);
    }
    Ok(ProbeModes(modes))
}

/// The probes a sigtrace said it uses (its ready line and its --cost line name them).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Probes {
    Btf,
    Raw,
}

impl Probes {
    fn name(self) -> &'static str {
        match self {
            Probes::Btf => "btf",
            Probes::Raw => "raw",
        }
    }
}

/// The probes a line of sigtrace's ("sigtrace: ready (pid 42, btf probes); stop with
/// Ctrl-C") names, read loosely: the word btf or raw, not both. None for a sigtrace that
/// names none (one from before the btf probes).
fn probes_named(line: &str) -> Option<Probes> {
    let line = line.to_ascii_lowercase();
    let words: HashSet<&str> = line.split(|c: char| !c.is_ascii_alphanumeric()).collect();
    match (words.contains("btf"), words.contains("raw")) {
        (true, false) => Some(Probes::Btf),
        (false, true) => Some(Probes::Raw),
        _ => None,
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Untraced,
    Text,
    Json,
    Filtered,
    /// The programs attached but keeping nothing: the floor any filter can reach.
    NothingKept,
    /// Text with --handler-time: sys_enter on every syscall, a record per handler run.
    HandlerTime,
    /// Text with --stack: two stacks per generation, symbolized.
    Stack,
    /// A metrics daemon: --quiet --metrics, labelled by comm (every report counted).
    Metrics,
    Bpftrace,
}

/// The modes that run sigtrace, under each variant under test.
const SIGTRACE_MODES: [Mode; 4] = [Mode::Text, Mode::Json, Mode::Filtered, Mode::NothingKept];
/// What the options that cost more add: run by this tree's sigtrace only (a baseline may
/// not have them).
const OPTION_MODES: [Mode; 3] = [Mode::HandlerTime, Mode::Stack, Mode::Metrics];

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Untraced => "untraced",
            Mode::Text => "sigtrace (text > /dev/null)",
            Mode::Json => "sigtrace --format json > /dev/null",
            Mode::Filtered => "sigtrace --pid <unrelated>",
            Mode::NothingKept => "sigtrace --signal 63 (keeps nothing)",
            Mode::HandlerTime => "sigtrace --handler-time (text)",
            Mode::Stack => "sigtrace --stack (text)",
            Mode::Metrics => "sigtrace --quiet --metrics (by comm)",
            Mode::Bpftrace => "bpftrace (printf per event)",
        }
    }

    fn is_sigtrace(self) -> bool {
        SIGTRACE_MODES.contains(&self) || OPTION_MODES.contains(&self)
    }

    /// sigtrace's arguments in this mode (none for the modes that do not run it).
    fn sigtrace_args(self, unrelated: u32) -> Vec<String> {
        let args: &[&str] = match self {
            Mode::Json => &["--format", "json"],
            Mode::Filtered => return vec!["--pid".into(), unrelated.to_string()],
            // SIGRTMIN+29: nothing on these machines sends it.
            Mode::NothingKept => &["--signal", "63"],
            Mode::HandlerTime => &["--handler-time"],
            Mode::Stack => &["--stack"],
            // Port 0: any free one; nothing scrapes it, the cost is the counting.
            Mode::Metrics => &[
                "--quiet",
                "--metrics",
                "127.0.0.1:0",
                "--metrics-labels",
                "comm",
            ],
            Mode::Untraced | Mode::Text | Mode::Bpftrace => &[],
        };
        args.iter().map(|a| a.to_string()).collect()
    }
}

/// Which sigtrace a variant runs.
#[derive(Clone, Debug)]
enum Source {
    /// This tree's, with this --probe-mode.
    Tree(ProbeMode),
    /// The one built at --baseline REV, given no --probe-mode.
    Baseline { short_sha: String },
}

/// One sigtrace under test.
struct Variant {
    source: Source,
    binary: PathBuf,
    /// The probes its ready line named when it was checked before the rounds.
    probes: Option<Probes>,
    /// It takes --cost.
    cost: bool,
}

impl Variant {
    /// The sigtrace command of this variant, before the mode's arguments. The probe mode is
    /// always the variant's: SIGTRACE_PROBE_MODE is not passed on.
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.env_remove("SIGTRACE_PROBE_MODE");
        if let Source::Tree(mode) = self.source {
            cmd.args(mode.sigtrace_args());
        }
        cmd
    }

    /// What was asked for.
    fn name(&self) -> String {
        match &self.source {
            Source::Tree(mode) => mode.name().to_owned(),
            Source::Baseline { short_sha } => format!("baseline {short_sha}"),
        }
    }

    /// What was asked for and, where it differs or sigtrace chose, what it used: "raw",
    /// "auto → btf", "baseline 1a2b3c4 → raw".
    fn label(&self) -> String {
        let name = self.name();
        match (&self.source, self.probes) {
            (Source::Tree(mode), Some(probes)) if mode.name() == probes.name() => name,
            (_, Some(probes)) => format!("{name} → {}", probes.name()),
            (Source::Tree(ProbeMode::Auto), None) => format!("{name} → ?"),
            (_, None) => name,
        }
    }
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
    /// The sigtraces under test that started, the first the one the others are compared to.
    variants: Vec<Variant>,
    /// Those that did not: name and sigtrace's reason.
    unavailable: Vec<(String, String)>,
    baseline: Option<Baseline>,
    /// bpftool's version line; None without bpftool (no program report then).
    bpftool: Option<String>,
    /// Our own `sleep`, the unrelated pid of the filtered mode; killed when dropped.
    unrelated: Child,
}

impl Bench {
    /// `mode` run under `variant` (None: the modes that run no sigtrace), for the progress
    /// lines and errors.
    fn label(&self, mode: Mode, variant: Option<usize>) -> String {
        match variant {
            Some(i) => format!("{} [{}]", mode.label(), self.variants[i].label()),
            None => mode.label().to_string(),
        }
    }

    /// The variants that run `mode` (None for the modes that run no sigtrace), in the order
    /// of `round`: reversed every other round.
    fn order(&self, mode: Mode, round: usize) -> Vec<Option<usize>> {
        let mut order: Vec<Option<usize>> = if OPTION_MODES.contains(&mode) {
            (0..self.variants.len())
                .filter(|&i| matches!(self.variants[i].source, Source::Tree(_)))
                .map(Some)
                .collect()
        } else if mode.is_sigtrace() {
            (0..self.variants.len()).map(Some).collect()
        } else {
            vec![None]
        };
        if round.is_multiple_of(2) {
            order.reverse();
        }
        order
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
    /// The probes sigtrace's ready line named.
    probes: Option<Probes>,
}

/// One timed storm: its mode, the variant that traced it (None for the modes that run no
/// sigtrace) and its round.
struct Run {
    mode: Mode,
    variant: Option<usize>,
    round: usize,
    sample: Sample,
}

/// One run of the in-kernel cost pass.
struct Cost {
    mode: Mode,
    variant: usize,
    /// ns per run of signal_generate and of signal_deliver.
    ns: (u64, u64),
    probes: Option<Probes>,
}

/// A variant's static program report, or why there is none.
type Report = (usize, anyhow::Result<Vec<programs::Program>>);

/// Runs of the in-kernel cost pass (sigtrace --cost) per mode and variant, after the timed
/// rounds.
const COST_RUNS: usize = 2;

/// The sigtrace modes of the cost pass; the program report is taken in the first.
const COST_MODES: [Mode; 3] = [Mode::Text, Mode::Filtered, Mode::NothingKept];

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the benchmark loads BPF programs: run it as root (sudo -E cargo xtask bench)");
    }
    // The baseline first: a REV that is no commit fails at once.
    let baseline = args.baseline.as_deref().map(build_baseline).transpose()?;
    let built = run::build_release(&["--bin", "sigtrace", "--example", "storm"])?;
    let sigtrace = run::find(&built, "sigtrace")?;
    let mut modes = vec![Mode::Untraced];
    modes.extend(SIGTRACE_MODES);
    modes.extend(OPTION_MODES);
    if !args.no_bpftrace {
        if ensure_bpftrace() {
            modes.push(Mode::Bpftrace);
        } else {
            eprintln!(
                "bench: bpftrace is not installed and could not be (apt-get install bpftrace); skipping it"
            );
        }
    }
    let mut candidates: Vec<Variant> = args
        .probe_modes
        .0
        .iter()
        .map(|&mode| Variant {
            source: Source::Tree(mode),
            binary: sigtrace.clone(),
            probes: None,
            cost: false,
        })
        .collect();
    if let Some(baseline) = &baseline {
        candidates.push(Variant {
            source: Source::Baseline {
                short_sha: baseline.short_sha.clone(),
            },
            binary: baseline.binary.clone(),
            probes: None,
            cost: false,
        });
    }
    // Each variant started once, keeping nothing: does it load, and which probes does it use?
    let mut variants = Vec::new();
    let mut unavailable = Vec::new();
    for mut variant in candidates {
        let mut cmd = variant.command();
        cmd.args(Mode::NothingKept.sigtrace_args(0));
        match check_variant(&mut cmd)? {
            Ok(probes) => {
                variant.probes = probes;
                let help = stdout_of(Command::new(&variant.binary).arg("--help"))?;
                variant.cost = listed_flags(&help).contains("--cost");
                eprintln!(
                    "bench: sigtrace {}: {}",
                    variant.label(),
                    match probes {
                        Some(probes) => format!("ready with {} probes", probes.name()),
                        None => "ready (its ready line names no probes)".to_owned(),
                    }
                );
                variants.push(variant);
            }
            Err(reason) => {
                eprintln!(
                    "bench: sigtrace {} is unavailable, leaving it out: {reason}",
                    variant.name()
                );
                unavailable.push((variant.name(), reason));
            }
        }
    }
    if variants.is_empty() {
        bail!("no sigtrace under test could start (see above)");
    }
    let bpftool = programs::bpftool_version();
    if bpftool.is_none() {
        eprintln!("bench: bpftool is not installed; no static program report");
    }
    let bench = Bench {
        storm: run::find(&built, "storm")?,
        variants,
        unavailable,
        baseline,
        bpftool,
        unrelated: Command::new("sleep")
            .arg("3600")
            .spawn()
            .context("spawn sleep")?,
    };
    // The progress lines' label column.
    let width = modes
        .iter()
        .flat_map(|&mode| {
            let bench = &bench;
            bench
                .order(mode, 1)
                .into_iter()
                .map(move |variant| bench.label(mode, variant).chars().count())
        })
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
            // No variant always runs first.
            for variant in bench.order(mode, round) {
                let label = bench.label(mode, variant);
                let untraced = run_mode(&bench, Mode::Untraced, None, n)
                    .with_context(|| format!("round {round}, untraced"))?;
                let before = untraced.ns_per_signal;
                runs.push(Run {
                    mode: Mode::Untraced,
                    variant: None,
                    round,
                    sample: untraced,
                });
                let mut sample = run_mode(&bench, mode, variant, n)
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
                    variant,
                    round,
                    sample,
                });
            }
        }
    }
    // The kernel's own accounting of the programs, separately: its clock reads would
    // slow the timed storms above. The program report is read while the first runs are
    // loaded.
    let mut costs: Vec<Cost> = Vec::new();
    let mut reports: Vec<Report> = Vec::new();
    for run in 1..=COST_RUNS {
        for mode in COST_MODES {
            let order = bench.order(mode, run).into_iter().flatten();
            for variant in order.filter(|&i| bench.variants[i].cost) {
                let label = bench.label(mode, Some(variant));
                let inspect = bench.bpftool.is_some() && run == 1 && mode == COST_MODES[0];
                let traced = run_sigtrace(&bench, mode, variant, args.signals, true, inspect)
                    .with_context(|| format!("cost run {run}, {label}"))?;
                let sample = traced.sample;
                let cost = sample.cost_ns.with_context(|| {
                    format!("{label}: sigtrace --cost printed no in-kernel cost")
                })?;
                eprintln!(
                    "bench: cost run {run} {:<width$} generate {} ns/run, deliver {} ns/run  events {}/{}  lost {}",
                    label, cost.0, cost.1, sample.events, sample.expected, sample.lost
                );
                costs.push(Cost {
                    mode,
                    variant,
                    ns: cost,
                    probes: sample.probes,
                });
                if let Some(report) = traced.programs {
                    reports.push((variant, report));
                }
            }
        }
    }
    // A variant without --cost still gets its program report, from a run of its own.
    if bench.bpftool.is_some() {
        for variant in (0..bench.variants.len()).filter(|&i| !bench.variants[i].cost) {
            let label = bench.label(COST_MODES[0], Some(variant));
            let traced = run_sigtrace(&bench, COST_MODES[0], variant, args.signals, false, true)
                .with_context(|| format!("program report, {label}"))?;
            if let Some(report) = traced.programs {
                reports.push((variant, report));
            }
        }
    }
    reports.sort_by_key(|(variant, _)| *variant);
    let took = started.elapsed();
    print_table(&bench, &modes, &runs, &costs, args, took);
    print_costs(&bench, &runs, &costs);
    print_programs(&bench, &reports);
    Ok(())
}

/// Starts `cmd` (a sigtrace) with no stdin or stdout, and its stderr to read.
fn spawn_quiet_sigtrace(
    cmd: &mut Command,
) -> anyhow::Result<(Child, BufReader<std::process::ChildStderr>)> {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .context("spawn sigtrace")?;
    let stderr = BufReader::new(child.stderr.take().context("stderr")?);
    Ok((child, stderr))
}

/// Starts `cmd` (a sigtrace) and waits for its ready line: Ok(the probes it names), then
/// stops it; or, when it ends before it is ready, Err(why, from its last lines on stderr).
fn check_variant(cmd: &mut Command) -> anyhow::Result<Result<Option<Probes>, String>> {
    let (mut child, mut stderr) = spawn_quiet_sigtrace(cmd)?;
    let mut said: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if stderr.read_line(&mut line)? == 0 {
            let status = child.wait()?;
            let tail = said[said.len().saturating_sub(3)..].join(" / ");
            return Ok(Err(if tail.is_empty() {
                format!("it ended before it was ready ({status}) and said nothing")
            } else {
                format!("{tail} ({status})")
            }));
        }
        if line.contains("sigtrace: ready") {
            break;
        }
        if !line.trim().is_empty() {
            said.push(line.trim().to_owned());
        }
    }
    let probes = probes_named(&line);
    // Read its last words while it stops (it must not write to a closed pipe), and do not
    // wait for ever for one that ignores SIGINT.
    let reader = thread::spawn(move || {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest);
    });
    interrupt(&child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            child.wait()?;
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = reader.join();
    Ok(Ok(probes))
}

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

/// The words of `help` (`sigtrace --help`), among them every flag it lists.
fn listed_flags(help: &str) -> HashSet<&str> {
    help.split(|c: char| c.is_whitespace() || matches!(c, ',' | '[' | ']' | '=' | '<'))
        .collect()
}

/// The first flag of the sigtrace modes that `help` (`sigtrace --help`) does not list.
fn missing_flag(help: &str) -> Option<(Mode, String)> {
    let listed = listed_flags(help);
    SIGTRACE_MODES.into_iter().find_map(|mode| {
        mode.sigtrace_args(0)
            .into_iter()
            .find(|arg| arg.starts_with("--") && !listed.contains(arg.as_str()))
            .map(|flag| (mode, flag))
    })
}

/// The in-kernel cost per signal (one generate and one deliver run) against the budget
/// that the 1.25× and 1.05× targets leave, per mode and variant.
fn print_costs(bench: &Bench, runs: &[Run], costs: &[Cost]) {
    let untraced = median(
        runs.iter()
            .filter(|r| r.mode == Mode::Untraced)
            .map(|r| r.sample.ns_per_signal)
            .collect(),
    );
    let without: Vec<String> = bench
        .variants
        .iter()
        .filter(|v| !v.cost)
        .map(Variant::label)
        .collect();
    if costs.is_empty() {
        println!("\nIn-kernel cost: not measured (no sigtrace under test takes --cost).");
        return;
    }
    println!(
        "\nIn-kernel cost (sigtrace --cost: the kernel's BPF run-time statistics, {COST_RUNS} runs each, medians; \
         they include ~2 clock reads per run). Untraced storm: {untraced:.0} ns/signal.\n"
    );
    let headers = [
        "mode",
        "sigtrace",
        "generate ns/run",
        "deliver ns/run",
        "both, per signal",
        "as a share of untraced",
    ];
    let mut rows = Vec::new();
    for (mode, target) in [
        (Mode::Text, Some(1.25)),
        (Mode::Filtered, Some(1.05)),
        (Mode::NothingKept, None),
    ] {
        for (i, variant) in bench.variants.iter().enumerate() {
            if !variant.cost {
                continue;
            }
            let of = |pick: fn(&(u64, u64)) -> u64| {
                median(
                    costs
                        .iter()
                        .filter(|c| c.mode == mode && c.variant == i)
                        .map(|c| pick(&c.ns) as f64)
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
            rows.push(vec![
                mode.label().to_owned(),
                variant.label(),
                format!("{generate:.0}"),
                format!("{deliver:.0}"),
                format!("{:.0}", generate + deliver),
                share,
            ]);
        }
    }
    print_markdown(&headers, 2, &rows);
    if !without.is_empty() {
        println!(
            "\nNot measured (no --cost in that sigtrace): {}.",
            without.join(", ")
        );
    }
}

/// The static program report: each variant's signal programs as loaded.
fn print_programs(bench: &Bench, reports: &[Report]) {
    let Some(bpftool) = &bench.bpftool else {
        println!(
            "\nStatic program report: skipped, bpftool is not installed (apt-get install bpftool)."
        );
        return;
    };
    println!(
        "\nsigtrace's programs, STATIC counts: the instructions in each loaded program as the verifier left them \
         (`bpftool prog dump xlated`), not the instructions one run executes. Read while the first cost run \
         ({}) of each variant was loaded, after its storm; ns/run is bpftool's run_time_ns / run_cnt over that run \
         (- where the kernel's BPF statistics were off). {bpftool}.\n",
        COST_MODES[0].label()
    );
    let headers = [
        "sigtrace",
        "program",
        "xlated insns",
        "jited bytes",
        "helper calls (of which probe reads)",
        "ns/run",
    ];
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    let mut subprogs = false;
    for (variant, report) in reports {
        let label = bench.variants[*variant].label();
        let programs = match report {
            Ok(programs) => programs,
            Err(err) => {
                failed.push(format!("{label}: {err:#}"));
                continue;
            }
        };
        if programs.is_empty() {
            failed.push(format!("{label}: bpftool lists neither signal program"));
        }
        for program in programs {
            let x = &program.xlated;
            let mut calls = format!("{} ({})", x.helper_calls, x.probe_reads);
            if x.subprog_calls > 0 {
                subprogs = true;
                calls.push_str(&format!(" + {} bpf-to-bpf", x.subprog_calls));
            }
            rows.push(vec![
                label.clone(),
                format!("{} (id {})", program.name, program.id),
                x.insns.to_string(),
                program
                    .bytes_jited
                    .map_or_else(|| "-".to_owned(), |b| b.to_string()),
                calls,
                program
                    .ns_per_run()
                    .map_or_else(|| "-".to_owned(), |ns| format!("{ns:.0}")),
            ]);
        }
    }
    if !rows.is_empty() {
        print_markdown(&headers, 2, &rows);
        println!(
            "\nhelper calls: `call` instructions to kernel helpers; probe reads: those of the bpf_probe_read family. \
             The verifier has already inlined some helpers (array map lookups, bpf_get_smp_processor_id...), \
             which are no calls here."
        );
        if subprogs {
            println!(
                "bpf-to-bpf: calls of the program's own functions (e.g. memset), not helpers."
            );
        }
    }
    for failure in failed {
        println!("no program report for {failure}");
    }
}

fn print_table(
    bench: &Bench,
    modes: &[Mode],
    runs: &[Run],
    costs: &[Cost],
    args: &BenchArgs,
    took: Duration,
) {
    let compared = bench.variants.len() > 1;
    println!(
        "\n{} rounds, {} signals per storm ({} under bpftrace); medians, and the median of each \
         traced storm's ratio to the untraced storm run just before it; took {:.0?}",
        args.rounds, args.signals, args.bpftrace_signals, took
    );
    println!(
        "sigtrace under test{}:",
        if compared {
            " (every round ran each sigtrace mode under each, in alternating order, \
             each traced storm paired with its own untraced storm)"
        } else {
            ""
        }
    );
    for variant in &bench.variants {
        let source = match (&variant.source, &bench.baseline) {
            (Source::Tree(ProbeMode::Auto), _) => "this tree's, no --probe-mode".to_owned(),
            (Source::Tree(mode), _) => format!("this tree's, --probe-mode {}", mode.name()),
            (Source::Baseline { .. }, Some(baseline)) => format!(
                "git revision {} = {} ({})",
                baseline.rev,
                baseline.short_sha,
                baseline.binary.display()
            ),
            (Source::Baseline { short_sha }, None) => format!("baseline {short_sha}"),
        };
        let probes = match variant.probes {
            Some(probes) => format!("its ready line: {} probes", probes.name()),
            None => "its ready line names no probes".to_owned(),
        };
        println!("  {}: {source}; {probes}", variant.label());
    }
    for (name, reason) in &bench.unavailable {
        println!("  {name}: UNAVAILABLE, left out: {reason}");
    }
    println!();
    let mut headers = vec!["mode", "sigtrace", "ns/signal", "ratio"];
    if compared {
        headers.push("first ÷ this (same round)");
    }
    headers.extend([
        "events (got/expected)",
        "lost",
        "ready ms",
        "RSS storm",
        "peak RSS",
    ]);
    let mut rows = Vec::new();
    let mut versus: Vec<(usize, Mode, f64)> = Vec::new();
    for &mode in modes {
        for variant in bench.order(mode, 1) {
            let s: Vec<Sample> = runs
                .iter()
                .filter(|r| r.mode == mode && r.variant == variant)
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
            let sigtrace = variant.map_or_else(|| "-".to_owned(), |i| bench.variants[i].label());
            let mut row = vec![
                mode.label().to_owned(),
                sigtrace,
                format!("{ns:.0}"),
                format!("{ratio:.2}×"),
            ];
            if compared {
                row.push(match variant {
                    Some(0) => "(first)".to_owned(),
                    Some(other) => {
                        let (value, pairs) = versus_first(runs, mode, other);
                        versus.push((other, mode, value));
                        format!("{value:.2}× (median of {pairs} paired)")
                    }
                    None => "-".to_owned(),
                });
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
    print_markdown(&headers, 2, &rows);
    println!(
        "\nexpected: the storm's generate + deliver records (and a handler record each with --handler-time); the system-wide modes also count other processes' signals.\n\
         lost: records the kernel could not reserve (sigtrace: its exact per-CPU counter; bpftrace: its 'Lost N events' lines).\n\
         sigtrace: the --probe-mode asked for and, where sigtrace chose or its ready line says otherwise, the probes it used."
    );
    if compared {
        let first = bench.variants[0].label();
        println!(
            "first ÷ this (same round): in each round, the paired ratio under the first sigtrace ({first}) over this \
             row's paired ratio; the median over the rounds. Below 1.00×, {first} costs less than this row's sigtrace."
        );
        for (i, variant) in bench.variants.iter().enumerate().skip(1) {
            let of: Vec<&(usize, Mode, f64)> = versus.iter().filter(|v| v.0 == i).collect();
            let low = of.iter().map(|v| v.2).min_by(f64::total_cmp);
            let high = of.iter().max_by(|a, b| a.2.total_cmp(&b.2));
            if let (Some(low), Some((_, mode, high))) = (low, high) {
                println!(
                    "{first} ÷ {}: {low:.2}–{high:.2}× over the sigtrace modes; the highest in \"{}\".",
                    variant.label(),
                    mode.label()
                );
            }
        }
    }
    // A variant whose runs did not all use the probes of its check before the rounds.
    for (i, variant) in bench.variants.iter().enumerate() {
        let seen: HashSet<Option<Probes>> = runs
            .iter()
            .filter(|r| r.variant == Some(i))
            .map(|r| r.sample.probes)
            .chain(costs.iter().filter(|c| c.variant == i).map(|c| c.probes))
            .collect();
        if seen.iter().any(|&p| p != variant.probes) {
            let names: Vec<&str> = seen.iter().map(|p| p.map_or("no", Probes::name)).collect();
            println!(
                "WARNING: the runs of {} did not all use the same probes: their ready lines named {} probes.",
                variant.label(),
                names.join(", ")
            );
        }
    }
}

/// The median over rounds of the first variant's paired ratio in `mode` over variant
/// `other`'s in the same round, and how many rounds had both.
fn versus_first(runs: &[Run], mode: Mode, other: usize) -> (f64, usize) {
    let first = |round: usize| {
        runs.iter()
            .find(|r| r.mode == mode && r.variant == Some(0) && r.round == round)
            .map(|r| r.sample.paired_ratio)
    };
    let per_round: Vec<f64> = runs
        .iter()
        .filter(|r| r.mode == mode && r.variant == Some(other))
        .filter_map(|r| Some(first(r.round)? / r.sample.paired_ratio))
        .collect();
    let pairs = per_round.len();
    (median(per_round), pairs)
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

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// A Markdown table: the first `left` columns left-aligned, the others right-aligned.
fn print_markdown(headers: &[&str], left: usize, rows: &[Vec<String>]) {
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
                if i < left {
                    format!(" {cell:<w$} ")
                } else {
                    format!(" {cell:>w$} ")
                }
            })
            .collect();
        println!("|{}|", cells.join("|"));
    };
    line(headers);
    // "---:" right-aligns a column where the Markdown is rendered.
    let rule: Vec<String> = widths
        .iter()
        .enumerate()
        .map(|(i, w)| {
            if i < left {
                "-".repeat(w + 2)
            } else {
                format!("{}:", "-".repeat(w + 1))
            }
        })
        .collect();
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

fn run_mode(bench: &Bench, mode: Mode, variant: Option<usize>, n: u64) -> anyhow::Result<Sample> {
    match (mode, variant) {
        (Mode::Untraced, _) => Ok(Sample {
            ns_per_signal: storm(bench, n)?,
            paired_ratio: 1.0,
            ..Default::default()
        }),
        (Mode::Bpftrace, _) => run_bpftrace(bench, n),
        (
            Mode::Text
            | Mode::Json
            | Mode::Filtered
            | Mode::NothingKept
            | Mode::HandlerTime
            | Mode::Stack
            | Mode::Metrics,
            Some(variant),
        ) => Ok(run_sigtrace(bench, mode, variant, n, false, false)?.sample),
        (_, None) => bail!("{} needs a sigtrace", mode.label()),
    }
}

fn interrupt(child: &Child) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
}

/// A sigtrace run: its sample and, when asked for, its program report.
struct Traced {
    sample: Sample,
    programs: Option<anyhow::Result<Vec<programs::Program>>>,
}

/// One storm traced by `variant` in `mode`; with `cost`, under --cost; with `inspect`, its
/// programs are read with bpftool after the storm, while they are loaded.
fn run_sigtrace(
    bench: &Bench,
    mode: Mode,
    variant: usize,
    n: u64,
    cost: bool,
    inspect: bool,
) -> anyhow::Result<Traced> {
    let mut cmd = bench.variants[variant].command();
    if cost {
        cmd.arg("--cost");
    }
    cmd.args(mode.sigtrace_args(bench.unrelated()));
    let since = SystemTime::now();
    let spawned = Instant::now();
    let (mut child, mut stderr) = spawn_quiet_sigtrace(&mut cmd)?;
    let mut line = String::new();
    let mut said = String::new();
    loop {
        line.clear();
        if stderr.read_line(&mut line)? == 0 {
            let status = child.wait()?;
            bail!(
                "sigtrace ended before it was ready ({status}): {}",
                said.trim()
            );
        }
        if line.contains("sigtrace: ready") {
            break;
        }
        said.push_str(&line);
    }
    let ready_ms = spawned.elapsed().as_secs_f64() * 1e3;
    let probes = probes_named(&line);
    let (stop, sampler) = rss_sampler(child.id());
    let ns = storm(bench, n);
    // Let it drain what the storm left in the ring before stopping it.
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let rss_storm_kib = sampler.join().unwrap_or(0);
    let hwm_kib = status_kib(child.id(), "VmHWM:");
    let programs = inspect.then(|| programs::inspect(child.id(), since));
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
    let sample = Sample {
        ns_per_signal: ns,
        events,
        expected: match mode {
            Mode::Filtered | Mode::NothingKept => 0,
            // The storm's target handles every signal: a handler record each.
            Mode::HandlerTime => 3 * n,
            _ => 2 * n,
        },
        lost,
        ready_ms,
        rss_storm_kib,
        hwm_kib,
        cost_ns,
        probes,
        ..Default::default()
    };
    Ok(Traced { sample, programs })
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
    use std::process::Command;

    use super::{
        Mode, ProbeMode, ProbeModes, Probes, check_variant, missing_flag, ns_per_run,
        parse_probe_modes, probes_named,
    };

    #[test]
    fn reads_sigtraces_cost_line() {
        let list = "signal_deliver 500003 runs, 557 ns/run; signal_generate 500003 runs, 1752 ns/run; sched_process_exit 2 runs, 2400 ns/run";
        assert_eq!(ns_per_run(list, "signal_generate"), Some(1752));
        assert_eq!(ns_per_run(list, "signal_deliver"), Some(557));
        assert_eq!(ns_per_run(list, "sys_exit"), None);
        assert_eq!(ns_per_run("signal_generate oops", "signal_generate"), None);
        // Since the btf probes, the line names the probes first.
        let list =
            "btf probes; signal_generate 4 runs, 1500 ns/run; signal_deliver 2 runs, 400 ns/run";
        assert_eq!(ns_per_run(list, "signal_generate"), Some(1500));
        assert_eq!(ns_per_run(list, "signal_deliver"), Some(400));
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

    #[test]
    fn parses_probe_modes() {
        use ProbeMode::{Auto, Btf, Raw};
        let parse = |text| parse_probe_modes(text).map(|ProbeModes(modes)| modes);
        assert_eq!(parse("auto"), Ok(vec![Auto]));
        assert_eq!(parse("btf,raw"), Ok(vec![Btf, Raw]));
        assert_eq!(parse("raw, auto ,BTF"), Ok(vec![Raw, Auto, Btf]));
        assert!(parse("").is_err());
        assert!(parse("btf,").is_err());
        assert!(parse("raw,raw").is_err());
        assert!(parse("kprobe").is_err());
        assert_eq!(
            Btf.sigtrace_args(),
            ["--probe-mode".to_string(), "btf".to_string()]
        );
        assert!(Auto.sigtrace_args().is_empty());
    }

    #[test]
    fn reads_the_probes_of_the_ready_line() {
        assert_eq!(
            probes_named("sigtrace: ready (pid 42, btf probes); stop with Ctrl-C\n"),
            Some(Probes::Btf)
        );
        assert_eq!(
            probes_named("sigtrace: ready (pid 42, raw probes); stop with Ctrl-C"),
            Some(Probes::Raw)
        );
        assert_eq!(
            probes_named("sigtrace: ready, raw tracepoints"),
            Some(Probes::Raw)
        );
        // Before the btf probes, and a line that names both: none.
        assert_eq!(
            probes_named("sigtrace: ready (pid 42); stop with Ctrl-C"),
            None
        );
        assert_eq!(probes_named("sigtrace: ready (btf, else raw)"), None);
        // Words, not parts of words.
        assert_eq!(probes_named("sigtrace: ready (pid 42, drawn)"), None);
    }

    #[test]
    fn a_variant_that_cannot_start_says_why() {
        let mut failing = Command::new("sh");
        failing.args([
            "-c",
            "echo 'sigtrace: loading the programs' >&2; \
             echo 'sigtrace: error: --probe-mode btf: BPF_PROG_TYPE_TRACING is not permitted; use --probe-mode raw' >&2; \
             exit 1",
        ]);
        let reason = check_variant(&mut failing).unwrap().unwrap_err();
        assert!(reason.contains("is not permitted"), "{reason}");
        assert!(reason.contains("exit status: 1"), "{reason}");
        let mut ready = Command::new("sh");
        ready.args([
            "-c",
            "echo \"sigtrace: ready (pid $$, raw probes); stop with Ctrl-C\" >&2; exec sleep 30",
        ]);
        assert_eq!(check_variant(&mut ready).unwrap(), Ok(Some(Probes::Raw)));
        let mut silent = Command::new("sh");
        silent.args(["-c", "exit 3"]);
        let reason = check_variant(&mut silent).unwrap().unwrap_err();
        assert!(reason.contains("said nothing"), "{reason}");
    }
}
