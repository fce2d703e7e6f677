//! `cargo xtask soak --minutes N`: sigtrace traces the whole machine for N minutes while the
//! soak drives signal storms from several processes, process-group kills, a real-time queue
//! that overflows (EAGAIN, "dropped"), and fork/exec/exit churn that brings pids round
//! again. At the end it checks that every signal the soak generated was received or counted
//! lost, that the overflows were reported as such one for one, and reports sigtrace's RSS
//! (start, peak, end) and its correlator's table sizes over the run (from the stats line
//! sigtrace prints on stderr when sent SIGUSR1).

mod worker;

use std::{
    collections::BTreeMap,
    fs,
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::Value;

pub use worker::{WorkerArgs, run as run_worker};

use crate::test::is_root;

#[derive(clap::Args)]
pub struct SoakArgs {
    /// How long to soak.
    #[arg(long, default_value_t = 5)]
    minutes: u64,
    /// Storm processes (each bursts SIGUSR1 at one sink).
    #[arg(long, default_value_t = 4)]
    storms: u32,
}

/// One of our processes, killed (by pid) and reaped when dropped.
struct Proc {
    child: Child,
    role: &'static str,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn worker(role: &'static str, extra: &[String]) -> anyhow::Result<Proc> {
    worker_in_group(role, extra, None)
}

/// A worker in process group `pgid` (0: a new one it leads), set before it runs.
fn worker_in_group(
    role: &'static str,
    extra: &[String],
    pgid: Option<i32>,
) -> anyhow::Result<Proc> {
    use std::os::unix::process::CommandExt as _;
    let mut cmd = Command::new(worker_exe()?);
    if let Some(pgid) = pgid {
        cmd.process_group(pgid);
    }
    let child = cmd
        .args(["soak-worker", role])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("start soak {role}"))?;
    Ok(Proc { child, role })
}

/// The workers run from a copy of this binary: the churn execs it for the whole soak, and
/// a rebuild of xtask meanwhile (any `cargo xtask`) would replace the original.
fn worker_exe() -> anyhow::Result<PathBuf> {
    static COPY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    if let Some(path) = COPY.get() {
        return Ok(path.clone());
    }
    let exe = std::env::current_exe().context("xtask's own executable")?;
    let copy = std::env::temp_dir().join(format!("xtask-soak-{}", std::process::id()));
    fs::copy(&exe, &copy).with_context(|| format!("copy {} for the soak", exe.display()))?;
    Ok(COPY.get_or_init(|| copy).clone())
}

/// A sink: started, and waited for until it said "ready".
fn sink(role: &'static str, extra: &[String]) -> anyhow::Result<Proc> {
    sink_in_group(role, extra, None)
}

fn sink_in_group(role: &'static str, extra: &[String], pgid: Option<i32>) -> anyhow::Result<Proc> {
    let mut proc = worker_in_group(role, extra, pgid)?;
    let stdout = proc.child.stdout.take().context("sink stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .context("sink's ready line")?;
    if line.trim() != "ready" {
        bail!("soak {role} did not get ready: {line:?}");
    }
    Ok(proc)
}

/// A source's final `sent N [overflow M]`.
fn finish_source(mut proc: Proc) -> anyhow::Result<(u64, u64)> {
    let mut out = String::new();
    std::io::Read::read_to_string(
        proc.child.stdout.as_mut().context("source stdout")?,
        &mut out,
    )?;
    let status = proc.child.wait()?;
    if !status.success() {
        bail!("soak {} failed: {status}", proc.role);
    }
    let words: Vec<&str> = out.split_whitespace().collect();
    let number = |key: &str| {
        words
            .iter()
            .position(|w| *w == key)
            .and_then(|i| words.get(i + 1))
            .and_then(|n| n.parse::<u64>().ok())
    };
    let sent = number("sent").with_context(|| format!("soak {}: {out:?}", proc.role))?;
    Ok((sent, number("overflow").unwrap_or(0)))
}

/// Samples of sigtrace's state over the run.
#[derive(Default)]
struct Samples {
    rss_kib: Vec<u64>,
    /// Stats lines: table name → size, per sample.
    tables: Vec<BTreeMap<String, u64>>,
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `sigtrace: stats: events 123 lost 0 tables generations=5 fanouts=0 ...` → the tables.
fn parse_tables(line: &str) -> Option<BTreeMap<String, u64>> {
    let rest = line.split_once("tables ")?.1;
    Some(
        rest.split_whitespace()
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                Some((k.to_owned(), v.parse().ok()?))
            })
            .collect(),
    )
}

pub fn run(args: &SoakArgs) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the soak traces the whole machine: run it as root");
    }
    let sigtrace = crate::run::sigtrace_binary()?;
    let seconds = args.minutes * 60;
    eprintln!(
        "xtask soak: {} minutes, sigtrace {}",
        args.minutes,
        sigtrace.display()
    );
    let mut tracer = Command::new(&sigtrace)
        .args(["--format", "json", "--summary-only", "--ring-size", "16M"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("start sigtrace")?;
    let tracer_pid = tracer.id();
    let stderr = tracer.stderr.take().context("sigtrace stderr")?;
    let (tx, rx) = mpsc::channel::<String>();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let ready_by = Instant::now() + Duration::from_secs(30);
    loop {
        let line = rx
            .recv_timeout(ready_by.saturating_duration_since(Instant::now()))
            .context("sigtrace did not get ready")?;
        if line.contains("sigtrace: ready") {
            break;
        }
        eprintln!("{line}");
    }
    let mut samples = Samples::default();
    samples.rss_kib.extend(rss_kib(tracer_pid));

    let sink_proc = sink("sink", &[])?;
    let rtsink = sink("rtsink", &[])?;
    // The group's leader is its first member; the others join it.
    const MEMBERS: u64 = 8;
    let mut members = vec![sink_in_group("member", &[], Some(0))?];
    let pgid = members[0].child.id() as i32;
    for _ in 1..MEMBERS {
        members.push(sink_in_group("member", &[], Some(pgid))?);
    }

    let secs = seconds.to_string();
    let target = |proc: &Proc| proc.child.id().to_string();
    let mut sources = Vec::new();
    for _ in 0..args.storms {
        sources.push(worker(
            "storm",
            &[
                "--target".into(),
                target(&sink_proc),
                "--seconds".into(),
                secs.clone(),
            ],
        )?);
    }
    sources.push(worker(
        "pgkill",
        &[
            "--target".into(),
            pgid.to_string(),
            "--members".into(),
            MEMBERS.to_string(),
            "--seconds".into(),
            secs.clone(),
        ],
    )?);
    sources.push(worker(
        "rt",
        &[
            "--target".into(),
            target(&rtsink),
            "--seconds".into(),
            secs.clone(),
        ],
    )?);
    sources.push(worker("churn", &["--seconds".into(), secs.clone()])?);

    // Sample every 10 s while the sources run.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        thread::sleep(Duration::from_secs(10));
        samples.rss_kib.extend(rss_kib(tracer_pid));
        // SAFETY: our own sigtrace; SIGUSR1 asks it for a stats line.
        unsafe { libc::kill(tracer_pid as i32, libc::SIGUSR1) };
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            match parse_tables(&line) {
                Some(tables) => samples.tables.push(tables),
                None => eprintln!("{line}"),
            }
        }
        let minute = started.elapsed().as_secs();
        if minute % 60 < 10 {
            eprintln!(
                "xtask soak: {} min, sigtrace RSS {} KiB",
                minute / 60,
                samples.rss_kib.last().copied().unwrap_or(0)
            );
        }
    }
    let mut generated: BTreeMap<&str, u64> = BTreeMap::new();
    let mut overflows = 0;
    for source in sources {
        let role = source.role;
        let (sent, overflow) = finish_source(source)?;
        *generated.entry(role).or_default() += sent;
        overflows += overflow;
    }
    // Let the last records reach sigtrace before it stops.
    thread::sleep(Duration::from_secs(2));
    samples.rss_kib.extend(rss_kib(tracer_pid));
    // SAFETY: our own sigtrace; SIGINT stops it with its summary.
    unsafe { libc::kill(tracer_pid as i32, libc::SIGINT) };
    let mut summary = String::new();
    std::io::Read::read_to_string(
        tracer.stdout.as_mut().context("sigtrace stdout")?,
        &mut summary,
    )?;
    let status = tracer.wait()?;
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
        eprintln!("{line}");
    }
    drop((sink_proc, rtsink, members));
    if let Ok(copy) = worker_exe() {
        let _ = fs::remove_file(copy);
    }
    let peak = peak_rss_kib(&samples);
    report(
        &summary,
        &generated,
        overflows,
        &samples,
        peak,
        status.code(),
    )
}

fn peak_rss_kib(samples: &Samples) -> u64 {
    samples.rss_kib.iter().copied().max().unwrap_or(0)
}

/// Signals each source sends, as (role, sender comm, signal names). The churn's own
/// children can die in the instant before they exec (and still carry its name): their
/// SIGCHLD is not among its signals.
const COUNTED: [(&str, &str, &[&str]); 4] = [
    ("storm", "soak-storm", &["SIGUSR1"]),
    ("pgkill", "soak-pgkill", &["SIGUSR2"]),
    ("rt", "soak-rt", &["SIGRTMIN"]),
    ("churn", "soak-churn", &["SIGUSR1", "SIGTERM"]),
];

fn report(
    summary: &str,
    generated: &BTreeMap<&str, u64>,
    overflows: u64,
    samples: &Samples,
    peak: u64,
    exit: Option<i32>,
) -> anyhow::Result<()> {
    let record: Value = summary
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|r| r["type"] == "summary")
        .context("sigtrace printed no summary record")?;
    let rows = record["rows"].as_array().context("summary rows")?;
    let lost = record["lost"].as_u64().unwrap_or(0);
    let received = |sender: &str, signals: &[&str], outcome: Option<&str>| -> u64 {
        rows.iter()
            .filter(|r| r["sender"] == sender)
            .filter(|r| signals.iter().any(|s| r["signal"]["name"] == *s))
            .filter(|r| outcome.is_none_or(|o| r["outcome"] == o))
            .filter_map(|r| r["count"].as_u64())
            .sum()
    };
    println!("\nxtask soak: results");
    println!("  {:<8} {:>12} {:>12}", "SOURCE", "GENERATED", "RECEIVED");
    let mut ok = true;
    let (mut all_generated, mut all_received) = (0, 0);
    for (role, comm, signals) in COUNTED {
        let gen_count = generated.get(role).copied().unwrap_or(0);
        let got = received(comm, signals, None);
        all_generated += gen_count;
        all_received += got;
        println!("  {role:<8} {gen_count:>12} {got:>12}");
    }
    let dropped = received("soak-rt", &["SIGRTMIN"], Some("dropped"));
    println!("  total    {all_generated:>12} {all_received:>12}   lost (whole machine) {lost}");
    println!("  rt queue overflows: {overflows} sent, {dropped} reported dropped");
    if lost == 0 {
        if all_received != all_generated {
            ok = false;
            println!("  FAIL: received != generated with nothing lost");
        }
        if dropped != overflows {
            ok = false;
            println!("  FAIL: overflows reported {dropped}, sent {overflows}");
        }
    } else if all_received > all_generated || all_received + lost < all_generated {
        ok = false;
        println!("  FAIL: received + lost does not cover what was generated");
    }
    let first = samples.rss_kib.first().copied().unwrap_or(0);
    let last = samples.rss_kib.last().copied().unwrap_or(0);
    println!(
        "  sigtrace RSS: start {} KiB, peak {peak} KiB, end {last} KiB ({} samples)",
        first,
        samples.rss_kib.len()
    );
    let mut names: Vec<&String> = samples.tables.iter().flat_map(|t| t.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let sizes: Vec<u64> = samples
            .tables
            .iter()
            .filter_map(|t| t.get(name).copied())
            .collect();
        let max = sizes.iter().copied().max().unwrap_or(0);
        let end = sizes.last().copied().unwrap_or(0);
        println!(
            "  table {name:<14} max {max:>8}  end {end:>8}  ({} samples)",
            sizes.len()
        );
    }
    println!("  sigtrace exit status: {exit:?} (3 means events were lost)");
    if samples.tables.is_empty() {
        ok = false;
        println!("  FAIL: no stats line from sigtrace");
    }
    // Flat: the end within 8 MiB of the start (allocator noise), never double plus 8 MiB.
    if last > first + 8 * 1024 || peak > 2 * first + 8 * 1024 {
        ok = false;
        println!("  FAIL: RSS grew");
    }
    if !ok {
        bail!("the soak failed");
    }
    println!("  pass");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_stats_line() {
        let tables = parse_tables(
            "sigtrace: stats: events 10 lost 0 tables generations=5 fanouts=1 interest=7",
        )
        .expect("tables");
        assert_eq!(tables.get("generations"), Some(&5));
        assert_eq!(tables.get("interest"), Some(&7));
        assert_eq!(parse_tables("sigtrace: ready"), None);
    }
}
