//! End-to-end: `-o FILE` as a log file — `--rotate-size`/`--rotate-keep` rotation, and
//! SIGHUP reopening FILE after logrotate moved it. Real BPF, real signals, only to a process
//! this test spawned (by pid).
//!
//! That SIGHUP still stops a trace without `-o` is checked by `trace::stop_detaches_everything`
//! and `faults::int_term_hup_stop_promptly_during_a_storm`.

use std::{
    os::unix::{fs::MetadataExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::util::*;

const WAIT: Duration = Duration::from_secs(10);
/// The real-time signals glibc leaves to programs, SIGRTMIN (34) to SIGRTMAX (64).
const RT: std::ops::RangeInclusive<i32> = 34..=64;

/// `sleep` with SIGUSR1, SIGUSR2 and the real-time signals ignored (dispositions an exec
/// keeps): each signal sent to it is one generate record and nothing else.
fn ignoring_helper() -> Owned {
    let mut cmd = Command::new("sleep");
    cmd.arg("1000").stdin(Stdio::null()).stdout(Stdio::null());
    // SAFETY: only signal(2), async-signal-safe, between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            for sig in RT.chain([libc::SIGUSR1, libc::SIGUSR2]) {
                if libc::signal(sig, libc::SIG_IGN) == libc::SIG_ERR {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    // spawn() returns once the exec succeeded: the dispositions are in place.
    Owned::from_child(cmd.spawn().expect("spawn sleep"))
}

fn send(pid: i32, sig: i32) {
    // SAFETY: plain kill(2) to our own child, by pid.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        rc,
        0,
        "kill {pid} {sig}: {}",
        std::io::Error::last_os_error()
    );
}

/// A tracer writing JSON for `pid` into `-o path` with `extra` options; stdout unused.
fn trace_to(path: &Path, pid: i32, extra: &[&str]) -> Trace {
    Trace::start_uncollected(
        Command::new(sigtrace_bin())
            .args(["--format", "json", "--pid", &pid.to_string(), "-o"])
            .arg(path)
            .args(extra)
            .stdout(Stdio::null()),
    )
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    PathBuf::from(format!("{}.{n}", path.display()))
}

/// Every line of `path` as JSON (panics on one that is not, or on an unended last line);
/// none while it does not exist.
fn records(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{}: ends mid-line",
        path.display()
    );
    parse(path, &text)
}

/// [`records`] of a file being written: a read may see a write's first part only, so an
/// unended last line is left for the next look. None while it does not exist (between a
/// rotation's rename and its open).
fn records_so_far(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let ended = text.rfind('\n').map_or(0, |i| i + 1);
    parse(path, &text[..ended])
}

fn parse(path: &Path, text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {l}", path.display()))
        })
        .collect()
}

/// The generate records of signal `sig` to `target` among `records`.
fn generations(records: &[Value], target: i32, sig: i32) -> usize {
    records
        .iter()
        .filter(|r| r["type"] == "generate" && r["target"]["pid"] == target)
        .filter(|r| r["signal"]["number"] == sig)
        .count()
}

/// Polls `done` until it holds, for at most `timeout` (scaled).
fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let timeout = scaled(timeout);
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Stops the tracer with SIGINT: exit 0, nothing on stderr but its ready line and totals;
/// returns the events it counted.
fn stop_cleanly(trace: Trace) -> u64 {
    trace.signal(Signal::SIGINT);
    let (status, _, _, err) = trace.wait_end(WAIT);
    assert!(
        status.success(),
        "sigtrace exited {status:?}; stderr: {err:?}"
    );
    let (events, lost) = event_totals(&err).unwrap_or_else(|| panic!("no totals in {err:?}"));
    assert_eq!(lost, 0, "{err:?}");
    assert!(
        err.iter()
            .all(|l| l.contains("sigtrace: ready")
                || event_totals(std::slice::from_ref(l)).is_some()),
        "a complaint: {err:?}"
    );
    events
}

/// `--rotate-size 4K --rotate-keep 2`: FILE, FILE.1 and FILE.2 and no more; every line of
/// every file a whole JSON record; no file past 4 KiB (but by a single record); a file
/// rotated only when the next record would not have fit; and the kept records exactly the
/// newest ones, in order, none missing or repeated.
#[test]
fn rotates_at_the_size_and_keeps_the_newest_files() {
    if !bpf_allowed("rotates_at_the_size_and_keeps_the_newest_files") {
        return;
    }
    let _beside = beside_others();
    const LIMIT: usize = 4096;
    let helper = ignoring_helper();
    let pid = helper.pid();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("trace.jsonl");
    let trace = trace_to(&path, pid, &["--rotate-size", "4K", "--rotate-keep", "2"]);
    // The real-time signals in turn (each record names which one), SIGUSR2 last: a marker
    // to wait for.
    let cycle: Vec<i32> = RT.collect();
    let mut sent: Vec<i32> = (0..150).map(|i| cycle[i % cycle.len()]).collect();
    sent.push(libc::SIGUSR2);
    for &sig in &sent {
        send(pid, sig);
    }
    wait_until("the marker's record in FILE", WAIT, || {
        generations(&records_so_far(&path), pid, libc::SIGUSR2) == 1
    });
    // One event a signal: the tracer saw them all, and the files keep the newest.
    assert_eq!(stop_cleanly(trace), sent.len() as u64);

    assert!(!numbered(&path, 3).exists(), "FILE.3 was kept");
    let files = [numbered(&path, 2), numbered(&path, 1), path.clone()];
    let texts: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())))
        .collect();
    for (file, text) in files.iter().zip(&texts) {
        let lines = text.lines().count();
        assert!(lines >= 1, "{} is empty", file.display());
        assert!(
            text.len() <= LIMIT || lines == 1,
            "{}: {} bytes in {lines} records",
            file.display(),
            text.len()
        );
        assert_eq!(
            std::fs::metadata(file).expect("stat").mode() & 0o777,
            0o600,
            "{}",
            file.display()
        );
    }
    // Rotated only when needed: the newer file's first record did not fit in the older.
    for pair in texts.windows(2) {
        let first = pair[1].split_inclusive('\n').next().expect("a line");
        assert!(
            pair[0].len() + first.len() > LIMIT,
            "rotated at {} bytes before a {}-byte record",
            pair[0].len(),
            first.len()
        );
    }
    let kept: Vec<Value> = files.iter().flat_map(|f| records(f)).collect();
    assert!(
        kept.iter().all(|r| r["type"] == "generate"),
        "only generations: {kept:#?}"
    );
    // Generations are numbered 1, 2, 3 ... in a run (`id`), and these are the run's only
    // ones: the kept records are exactly the last ids, each the signal sent as that one.
    let ids: Vec<u64> = kept.iter().map(|r| r["id"].as_u64().expect("id")).collect();
    let newest = sent.len() as u64;
    assert_eq!(
        ids,
        (newest + 1 - ids.len() as u64..=newest).collect::<Vec<_>>(),
        "the newest records, each once, in order"
    );
    for (record, id) in kept.iter().zip(&ids) {
        assert_eq!(
            record["signal"]["number"],
            sent[*id as usize - 1],
            "record {id}"
        );
    }
    let times: Vec<u64> = kept
        .iter()
        .map(|r| r["mono_ns"].as_u64().expect("mono_ns"))
        .collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "in order: {times:?}");
    assert!(kept.iter().all(|r| r["target"]["pid"] == pid));
}

/// logrotate's default: move FILE, then SIGHUP. What is written before the HUP — also
/// after the move — is in the moved file, what follows in a new FILE (0600); each event in
/// exactly one of them; the trace goes on, and ends with 0 on SIGINT.
#[test]
fn sighup_reopens_the_file_logrotate_moved() {
    if !bpf_allowed("sighup_reopens_the_file_logrotate_moved") {
        return;
    }
    let _beside = beside_others();
    let helper = ignoring_helper();
    let pid = helper.pid();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("trace.jsonl");
    let moved = dir.path().join("trace.jsonl.old");
    let mut trace = trace_to(&path, pid, &["--reopen-on-hup"]);
    const BEFORE: usize = 5;
    const AFTER: usize = 7;

    for _ in 0..BEFORE {
        send(pid, libc::SIGUSR1);
    }
    wait_until("the first records in FILE", WAIT, || {
        generations(&records_so_far(&path), pid, libc::SIGUSR1) == BEFORE
    });
    std::fs::rename(&path, &moved).expect("move FILE");
    // Until the HUP, sigtrace writes on into the moved file.
    for _ in 0..BEFORE {
        send(pid, libc::SIGUSR1);
    }
    wait_until("the records after the move in the moved file", WAIT, || {
        generations(&records_so_far(&moved), pid, libc::SIGUSR1) == 2 * BEFORE
    });
    assert!(!path.exists(), "FILE came back before the HUP");

    trace.signal(Signal::SIGHUP);
    // The reopen creates FILE: from then on records go there.
    wait_until("FILE created anew", WAIT, || path.exists());
    assert!(trace.running(), "SIGHUP stopped the trace");
    for _ in 0..AFTER {
        send(pid, libc::SIGUSR2);
    }
    wait_until("the records after the HUP in FILE", WAIT, || {
        generations(&records_so_far(&path), pid, libc::SIGUSR2) == AFTER
    });
    assert!(trace.running(), "the trace goes on");
    assert_eq!(stop_cleanly(trace), (2 * BEFORE + AFTER) as u64);

    let old = records(&moved);
    let new = records(&path);
    assert_eq!(
        generations(&old, pid, libc::SIGUSR1),
        2 * BEFORE,
        "{old:#?}"
    );
    assert_eq!(generations(&old, pid, libc::SIGUSR2), 0, "{old:#?}");
    assert_eq!(generations(&new, pid, libc::SIGUSR2), AFTER, "{new:#?}");
    assert_eq!(generations(&new, pid, libc::SIGUSR1), 0, "{new:#?}");
    assert_eq!(old.len() + new.len(), 2 * BEFORE + AFTER, "nothing else");
    assert_eq!(
        std::fs::metadata(&path).expect("stat").mode() & 0o777,
        0o600
    );
}

/// Without --reopen-on-hup a hang-up stops a trace to a file as any other (a closed
/// terminal must not leave a system-wide trace running), cleanly: status 0, all written.
#[test]
fn sighup_stops_a_trace_to_a_file_without_reopen_on_hup() {
    if !bpf_allowed("sighup_stops_a_trace_to_a_file_without_reopen_on_hup") {
        return;
    }
    let _beside = beside_others();
    let helper = ignoring_helper();
    let pid = helper.pid();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("trace.jsonl");
    let trace = trace_to(&path, pid, &[]);
    send(pid, libc::SIGUSR1);
    wait_until("the record in FILE", WAIT, || {
        generations(&records_so_far(&path), pid, libc::SIGUSR1) == 1
    });
    trace.signal(Signal::SIGHUP);
    let (status, _, _, stderr) = trace.wait_end(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{stderr:?}");
    assert_eq!(generations(&records(&path), pid, libc::SIGUSR1), 1);
}

/// The rotation options are refused without what they need, as bad input (status 2),
/// before anything is loaded.
#[test]
fn rotation_options_need_an_output_file() {
    let _beside = beside_others();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("t.jsonl");
    let file = file.to_str().expect("UTF-8 path");
    for (args, says) in [
        (&["--rotate-size", "1M"][..], "--output"),
        (&["-o", file, "--rotate-keep", "3"], "--rotate-size"),
        (&["-o", file, "--rotate-size", "1K"], "4K or more"),
        (&["-o", file, "--rotate-size", "1.5M"], "not a size"),
    ] {
        let out = Command::new(sigtrace_bin())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!Path::new(file).exists(), "{args:?} created the file");
    }
}
