//! End-to-end: the tracer under faults — killed, stopped, run twice at once, writing to a
//! full file system, a closed or read-only stdout or a pipe nobody reads, and stopped by
//! each of its signals while a storm of signals runs. Real BPF, real signals, only to
//! processes this test spawned (by pid, or a process group it created).
//!
//! Timing bounds are generous on purpose: the machine is small and noisy. A "within a
//! second" of the product is checked as "within 5 s", "it finished" as 10-30 s, and every
//! such wait is `scaled` (longer in the emulated guests of `cargo xtask test --kernel`,
//! where everything is about twenty times slower).

use std::{
    io::{BufRead, BufReader, Write},
    os::{
        fd::{AsRawFd, OwnedFd},
        unix::process::{CommandExt, ExitStatusExt},
    },
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::util::*;

const WAIT: Duration = Duration::from_secs(10);
/// For what the product does "at once" or "within a second" (see the module comment);
/// compared after `scaled`, see [`promptly`].
const PROMPTLY: Duration = Duration::from_secs(5);
/// For the kernel to free what a process held once it is gone (asynchronous, after an RCU
/// grace period; usually milliseconds).
const UNLOAD: Duration = Duration::from_secs(10);

/// A process that storms itself with SIGUSR1 on request (a handler installed, so each
/// signal is one generate and one deliver record) and reports how many it sent:
/// `storm N` sends N at once; `for S` sends bursts of 100 every 5 ms for S seconds (at most
/// ~20,000 a second: a storm that lasts without flooding the test with lines); `flat S` sends
/// flat out for S seconds (~100,000 a second, faster than a debug build of sigtrace decodes).
/// SIGUSR2 is ignored (one generate record, no delivery).
const STORM: &str = r#"
use Time::HiRes qw(time sleep);
$| = 1; $SIG{USR1} = sub { }; $SIG{USR2} = 'IGNORE';
print "ready $$\n";
while (my $line = <STDIN>) {
    my ($cmd, $arg) = split ' ', $line;
    my $sent = 0;
    if ($cmd eq 'storm') { $sent += kill 'USR1', $$ for 1 .. $arg }
    elsif ($cmd eq 'for') {
        my $end = time + $arg;
        while (time < $end) { $sent += kill 'USR1', $$ for 1 .. 100; sleep 0.005 }
    }
    elsif ($cmd eq 'flat') {
        my $end = time + $arg;
        while (time < $end) { $sent += kill 'USR1', $$ for 1 .. 1000 }
    }
    print "stormed $sent\n";
}
"#;

struct Storm {
    proc: Owned,
}

impl Storm {
    fn start() -> Storm {
        let mut cmd = perl(STORM);
        cmd.stdin(Stdio::piped());
        Storm {
            proc: spawn_ready_keep_stdin(&mut cmd),
        }
    }

    fn pid(&self) -> i32 {
        self.proc.pid()
    }

    fn pid_arg(&self) -> String {
        self.pid().to_string()
    }

    /// Starts a command without waiting for its end.
    fn begin(&mut self, command: &str) {
        let stdin = self.proc.child.stdin.as_mut().expect("storm stdin");
        writeln!(stdin, "{command}").expect("talk to the storm");
    }

    /// Waits for the end of the command begun last; returns the signals it sent.
    fn sent(&mut self, timeout: Duration) -> u64 {
        let line = self.proc.wait_line("stormed", timeout);
        line.split_whitespace()
            .last()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count in {line:?}"))
    }

    /// `storm N`: N signals, sent before this returns.
    fn storm(&mut self, n: u64) -> u64 {
        self.begin(&format!("storm {n}"));
        self.sent(WAIT)
    }
}

fn json(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Records of `kind` about process `pid`: as the target of a generation, or the task of a
/// delivery or exit.
fn about<'a>(records: &'a [Value], kind: &str, pid: i32) -> Vec<&'a Value> {
    of_type(records, kind)
        .into_iter()
        .filter(|r| r["target"]["pid"] == pid || r["task"]["pid"] == pid)
        .collect()
}

/// Whether `record` names process `pid` anywhere a process appears.
fn mentions(record: &Value, pid: i32) -> bool {
    ["sender", "target", "task", "parent"]
        .iter()
        .any(|side| record[side]["pid"] == pid)
        || record["child_pid"] == pid
}

/// The tracer's stderr besides its ready line and its totals: errors, warnings, panics.
fn complaints(stderr: &[String]) -> Vec<&String> {
    stderr
        .iter()
        .filter(|l| {
            !l.contains("sigtrace: ready") && event_totals(std::slice::from_ref(l)).is_none()
        })
        .collect()
}

/// PROMPTLY, scaled.
fn promptly() -> Duration {
    scaled(PROMPTLY)
}

/// A deadline `timeout` (scaled) from now.
fn deadline(timeout: Duration) -> Instant {
    Instant::now() + scaled(timeout)
}

/// The documented status of a run that was stopped: 0, or 3 when events were lost.
fn stopped_status(stderr: &[String]) -> i32 {
    let (_, lost) = event_totals(stderr).unwrap_or_else(|| panic!("no totals in {stderr:?}"));
    if lost > 0 { 3 } else { 0 }
}

/// The state letter of /proc/PID/stat (R, S, T...).
fn proc_state(pid: i32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // The comm is in parentheses and may contain anything: the state follows the last ')'.
    let after = &stat[stat.rfind(')').expect("comm") + 1..];
    after.trim_start().chars().next().expect("state")
}

fn wait_state(pid: i32, want: impl Fn(char) -> bool, what: &str) {
    let deadline = deadline(WAIT);
    while !want(proc_state(pid)) {
        assert!(Instant::now() < deadline, "{pid} never became {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Starts a JSON tracer of `storm` and waits until it shows the storm's first records.
fn trace_storm(storm: &mut Storm, seconds: u64) -> (Trace, Vec<Value>) {
    let pid = storm.pid_arg();
    let args = ["--format", "json", "--pid", &pid];
    let mut trace = Trace::start(&args);
    storm.begin(&format!("for {seconds}"));
    let mut seen = Vec::new();
    let target = storm.pid();
    trace.wait_for(&mut seen, WAIT, |r| {
        r["type"] == "generate" && r["target"]["pid"] == target
    });
    (trace, seen)
}

// ---------------------------------------------------------------------------------------
// 1. SIGKILL

/// `kill -9` of the tracer in the middle of a storm: the kernel takes down its programs,
/// links and maps with its file descriptors (nothing is pinned, nothing left attached), and a
/// new tracer starts at once and works.
#[test]
fn sigkill_during_a_storm_leaves_nothing_loaded() {
    if !bpf_allowed("sigkill_during_a_storm_leaves_nothing_loaded") {
        return;
    }
    let _beside = beside_others();
    let mut storm = Storm::start();
    let (trace, _) = trace_storm(&mut storm, 3);
    let ids = bpf_ids(trace.pid());
    assert!(ids.progs.len() >= 4, "its programs: {ids:?}");
    assert!(ids.links.len() >= 4, "its links: {ids:?}");
    assert!(ids.maps.len() >= 5, "its maps: {ids:?}");
    assert_eq!(
        still_loaded(&ids).progs,
        ids.progs,
        "loaded_programs() lists what fdinfo names"
    );
    trace.signal(Signal::SIGKILL);
    let (status, _, _, _) = trace.wait_end(WAIT);
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    wait_unloaded(&ids, UNLOAD);

    // A new tracer: no leftover state in its way.
    let helper = spawn_ready(&mut perl(TRAP_PERL));
    let start = Instant::now();
    let mut trace = Trace::start(&["--format", "json", "--pid", &helper.pid().to_string()]);
    let took = start.elapsed();
    // Ready in ~0.2 s here: no leftover of the killed one in its way.
    eprintln!("a new tracer was ready after {took:?}");
    assert!(took < promptly(), "ready after {took:?}");
    helper.signal(Signal::SIGUSR2);
    let mut seen = Vec::new();
    trace.wait_for(&mut seen, WAIT, |r| {
        r["type"] == "generate" && signal_name(r) == "SIGUSR2" && r["target"]["pid"] == helper.pid()
    });
    trace.stop_json(seen);
}

// ---------------------------------------------------------------------------------------
// 2. Two tracers

/// Two tracers at once, each filtering on its own process: each gets exactly its own
/// process's signals (different counts, sent at the same time) and nothing of the other's.
#[test]
fn two_tracers_each_get_exactly_their_own_events() {
    if !bpf_allowed("two_tracers_each_get_exactly_their_own_events") {
        return;
    }
    let _beside = beside_others();
    let mut a = Storm::start();
    let mut b = Storm::start();
    let trace_a = Trace::start(&["--format", "json", "--pid", &a.pid_arg()]);
    let trace_b = Trace::start(&["--format", "json", "--pid", &b.pid_arg()]);
    // Both storms at once; 2 × 3000 records fit the default 4 MiB ring many times over, so
    // none may be lost even if a tracer does not run meanwhile.
    const N_A: u64 = 3000;
    const N_B: u64 = 2000;
    a.begin(&format!("storm {N_A}"));
    b.begin(&format!("storm {N_B}"));
    assert_eq!(a.sent(WAIT), N_A);
    assert_eq!(b.sent(WAIT), N_B);
    // Plus SIGUSR2s from this test (ignored: a generation each), 3 to A and 5 to B.
    for _ in 0..3 {
        a.proc.signal(Signal::SIGUSR2);
    }
    for _ in 0..5 {
        b.proc.signal(Signal::SIGUSR2);
    }
    // Each kill(2) has written its records before it returned: stopping now drains them all.
    for (trace, own, other, n, usr2) in [
        (trace_a, a.pid(), b.pid(), N_A, 3),
        (trace_b, b.pid(), a.pid(), N_B, 5),
    ] {
        let (status, _, out, err) = {
            trace.signal(Signal::SIGINT);
            trace.wait_end(Duration::from_secs(20))
        };
        assert_eq!(status.code(), Some(0), "{own}'s tracer: {err:?}");
        let records = json(&out);
        let count = |kind: &str, sig: &str| {
            about(&records, kind, own)
                .iter()
                .filter(|r| signal_name(r) == sig)
                .count() as u64
        };
        assert_eq!(
            count("generate", "SIGUSR1"),
            n,
            "{own}'s SIGUSR1 generations"
        );
        assert_eq!(count("deliver", "SIGUSR1"), n, "{own}'s SIGUSR1 deliveries");
        assert_eq!(
            count("generate", "SIGUSR2"),
            usr2,
            "{own}'s SIGUSR2 generations"
        );
        let foreign: Vec<&Value> = records.iter().filter(|r| mentions(r, other)).collect();
        assert!(
            foreign.is_empty(),
            "{own}'s tracer got {} records of {other}: {:#?}",
            foreign.len(),
            &foreign[..foreign.len().min(3)]
        );
        // Nothing lost, and every event decoded was written (the counts above are exact;
        // this also holds should something outside the test signal the storm meanwhile).
        let (events, lost) = event_totals(&err).expect("totals");
        assert_eq!((events, lost), (records.len() as u64, 0), "{err:?}");
    }
}

// ---------------------------------------------------------------------------------------
// 3. SIGSTOP

/// Stopped (SIGSTOP) for 3 s while a storm overflows its 4 KiB ring, then continued: the
/// tracer goes on tracing, and every signal is accounted for — what arrived plus what the
/// kernel counted as lost is exactly what the storm sent — with exit status 3.
#[test]
fn sigstop_during_a_storm_then_sigcont_accounts_for_every_event() {
    if !bpf_allowed("sigstop_during_a_storm_then_sigcont_accounts_for_every_event") {
        return;
    }
    // Exits of other tests' processes can pass its kernel-side gate and count as lost.
    let _alone = alone();
    const N: u64 = 20_000;
    let mut storm = Storm::start();
    let target = storm.pid();
    let mut trace = Trace::start(&[
        "--format",
        "json",
        "--ring-size",
        "4K",
        "--pid",
        &storm.pid_arg(),
    ]);
    trace.signal(Signal::SIGSTOP);
    let stopped = Instant::now();
    wait_state(trace.pid(), |s| s == 'T', "stopped");
    let sent = storm.storm(N);
    assert_eq!(sent, N);
    thread::sleep(Duration::from_secs(3).saturating_sub(stopped.elapsed()));
    assert_eq!(
        proc_state(trace.pid()),
        'T',
        "still stopped after the storm"
    );
    trace.signal(Signal::SIGCONT);
    wait_state(trace.pid(), |s| s != 'T', "continued");
    assert!(trace.running());
    // Back at work: it drains the full ring and reports the loss in the stream...
    let mut seen = Vec::new();
    trace.wait_for(&mut seen, WAIT, |r| r["type"] == "loss");
    // ...and goes on tracing: a signal sent now (to a ring with room again) comes through.
    storm.proc.signal(Signal::SIGUSR2);
    trace.wait_for(&mut seen, WAIT, |r| {
        r["type"] == "generate" && signal_name(r) == "SIGUSR2" && r["target"]["pid"] == target
    });
    let (status, out, err) = trace.stop_with(Signal::SIGINT);
    assert_eq!(
        status.code(),
        Some(3),
        "lost events → exit 3; stderr {err:?}"
    );
    let mut records = seen;
    records.extend(json(&out));
    let received = (about(&records, "generate", target).len()
        + about(&records, "deliver", target).len()) as u64;
    let (events, lost) = event_totals(&err).unwrap_or_else(|| panic!("totals in {err:?}"));
    assert!(lost > 0, "a 4 KiB ring cannot hold {N} signals' records");
    // Each SIGUSR1: a generation and a delivery; the SIGUSR2: a generation.
    assert_eq!(
        received + lost,
        2 * sent + 1,
        "received {received} + lost {lost}, sent {sent}"
    );
    assert_eq!(events, received, "every event decoded was written");
    let losses = of_type(&records, "loss");
    let reported: u64 = losses.iter().filter_map(|l| l["lost"].as_u64()).sum();
    assert_eq!(
        reported, lost,
        "loss records in the stream add up to the total"
    );
}

// ---------------------------------------------------------------------------------------
// 4. Output that fails

/// A tmpfs of `size` mounted on `dir` for this test; unmounted on drop (also when the test
/// fails).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
        let target = c(dir.to_str().expect("utf-8 path"));
        let data = c(&format!("size={size},mode=0700"));
        // SAFETY: mount(2) with NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                c"none".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                data.as_ptr().cast(),
            )
        };
        assert_eq!(
            rc,
            0,
            "mount tmpfs on {dir:?}: {}",
            std::io::Error::last_os_error()
        );
        Tmpfs {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let target =
            std::ffi::CString::new(self.dir.to_str().unwrap_or_default()).unwrap_or_default();
        // SAFETY: umount2(2) with a NUL-terminated string; lazily, should anything still
        // have a file open there.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

/// `-o FILE` on a file system that fills up: the write fails with ENOSPC and the tracer
/// ends at once with status 1 and one line naming the problem, its programs unloaded.
#[test]
fn full_file_system_ends_with_one_clear_line() {
    if !bpf_allowed("full_file_system_ends_with_one_clear_line") {
        return;
    }
    let _beside = beside_others();
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = Tmpfs::mount(dir.path(), "64k");
    let path = fs.dir.join("trace.jsonl");
    let mut storm = Storm::start();
    let mut trace = Trace::start_uncollected(
        Command::new(sigtrace_bin())
            .args(["--format", "json", "--pid", &storm.pid_arg(), "-o"])
            .arg(&path)
            .stdout(Stdio::null()),
    );
    let ids = bpf_ids(trace.pid());
    storm.begin("for 3");
    // The file fills within milliseconds of the storm's start; from then on the tracer must
    // end by itself, promptly.
    let deadline = deadline(Duration::from_secs(20));
    let mut full_since = None;
    while trace.running() {
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if size >= 60 * 1024 && full_since.is_none() {
            full_since = Some(Instant::now());
        }
        assert!(
            Instant::now() < deadline,
            "still running, the file at {size} bytes"
        );
        thread::sleep(Duration::from_millis(10));
    }
    let ended = Instant::now();
    let (status, _, _, err) = trace.wait_end(WAIT);
    if let Some(full) = full_since {
        let took = ended - full;
        eprintln!("ended {took:?} after the file system was full");
        assert!(
            took < promptly(),
            "ended {took:?} after the file system was full"
        );
    }
    assert_eq!(status.code(), Some(1), "{err:?}");
    let problems = complaints(&err);
    assert_eq!(problems.len(), 1, "one line: {err:?}");
    assert!(
        problems[0].starts_with("sigtrace: ") && problems[0].contains("No space left on device"),
        "{problems:?}"
    );
    assert!(
        std::fs::metadata(&path).expect("file").len() > 0,
        "it wrote what fitted"
    );
    wait_unloaded(&ids, UNLOAD);
    drop(fs);
}

/// Spawns sigtrace on `storm` with `fd 1` prepared by `setup` in the child (after the
/// standard streams are set, before exec).
fn trace_with_fd1(storm: &Storm, setup: fn() -> std::io::Result<()>) -> Trace {
    let mut cmd = Command::new(sigtrace_bin());
    cmd.args(["--format", "json", "--pid", &storm.pid_arg()]);
    // SAFETY: `setup` only makes async-signal-safe system calls.
    unsafe { cmd.pre_exec(setup) };
    Trace::start_uncollected(&mut cmd)
}

/// A closed stdout: the Rust runtime puts /dev/null there before main (a closed fd 1 must not
/// become the next file opened), so the run is clean; stopping it works as usual.
#[test]
fn closed_stdout_runs_cleanly() {
    if !bpf_allowed("closed_stdout_runs_cleanly") {
        return;
    }
    let _beside = beside_others();
    let mut storm = Storm::start();
    let trace = trace_with_fd1(&storm, || {
        // SAFETY: close(2) on the child's own fd 1.
        unsafe { libc::close(1) };
        Ok(())
    });
    let ids = bpf_ids(trace.pid());
    storm.begin("for 2");
    thread::sleep(Duration::from_millis(500));
    trace.signal(Signal::SIGINT);
    let (status, took, _, err) = trace.wait_end(Duration::from_secs(30));
    eprintln!("SIGINT with stdout closed: ended after {took:?}");
    assert!(took < promptly(), "SIGINT took {took:?}");
    assert_eq!(complaints(&err), Vec::<&String>::new(), "a clean run");
    assert_eq!(status.code(), Some(stopped_status(&err)), "{err:?}");
    wait_unloaded(&ids, UNLOAD);
}

/// A stdout opened read-only: writing fails with EBADF, and the tracer ends at once with
/// status 1 and one line naming the problem (not silently tracing into nothing).
#[test]
fn read_only_stdout_ends_with_one_clear_line() {
    if !bpf_allowed("read_only_stdout_ends_with_one_clear_line") {
        return;
    }
    let _beside = beside_others();
    let mut storm = Storm::start();
    let mut trace = trace_with_fd1(&storm, || {
        // SAFETY: open(2) and dup2(2) in the child, a static NUL-terminated path.
        unsafe {
            let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
            if fd < 0 || libc::dup2(fd, 1) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
        }
        Ok(())
    });
    let ids = bpf_ids(trace.pid());
    storm.begin("for 3");
    let start = Instant::now();
    while trace.running() {
        assert!(
            start.elapsed() < scaled(Duration::from_secs(20)),
            "still running with an unwritable stdout"
        );
        thread::sleep(Duration::from_millis(10));
    }
    // Its first flush (25 ms after the first records) fails.
    eprintln!("ended {:?} after the storm began", start.elapsed());
    assert!(
        start.elapsed() < promptly(),
        "ended after {:?}",
        start.elapsed()
    );
    let (status, _, _, err) = trace.wait_end(WAIT);
    assert_eq!(status.code(), Some(1), "{err:?}");
    let problems = complaints(&err);
    assert_eq!(problems.len(), 1, "one line: {err:?}");
    assert!(problems[0].contains("Bad file descriptor"), "{problems:?}");
    wait_unloaded(&ids, UNLOAD);
}

/// A pipe of this test's, its buffer shrunk to one page so that a storm fills it at once.
fn small_pipe() -> (OwnedFd, OwnedFd) {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
    // SAFETY: fcntl(2) on our own pipe.
    let size = unsafe { libc::fcntl(read.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    assert!(
        size > 0,
        "F_SETPIPE_SZ: {}",
        std::io::Error::last_os_error()
    );
    (read, write)
}

/// Bytes waiting in a pipe (FIONREAD).
fn pipe_fill(read: &OwnedFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD into a local int.
    let rc = unsafe { libc::ioctl(read.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(rc, 0, "FIONREAD: {}", std::io::Error::last_os_error());
    n as usize
}

/// Waits (bounded) until the pipe is full: nothing but a partial line's room left.
fn wait_full(read: &OwnedFd) {
    // SAFETY: fcntl(2) on our own pipe.
    let capacity = unsafe { libc::fcntl(read.as_raw_fd(), libc::F_GETPIPE_SZ) } as usize;
    let deadline = deadline(Duration::from_secs(20));
    while pipe_fill(read) + 1024 < capacity {
        assert!(
            Instant::now() < deadline,
            "the pipe never filled: {} of {capacity} bytes",
            pipe_fill(read)
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `sig` to a tracer whose output pipe is full and nobody reads (a storm keeps it
/// blocked in write); returns its status, how long it took to end, and stderr.
fn stop_blocked(trace: Trace, sig: Signal) -> (ExitStatus, Duration, Vec<String>) {
    // Blocked in write(2) on the pipe by now (wchan anon_pipe_write / pipe_write).
    thread::sleep(Duration::from_millis(200));
    trace.signal(sig);
    let (status, took, _, err) = trace.wait_end(Duration::from_secs(30));
    (status, took, err)
}

/// stdout into a pipe whose reader stops reading: while the pipe is full the tracer waits
/// for it (the kernel counts what the ring cannot take), but once asked to stop it waits at
/// most about a second more, then gives the output up, says so on stderr with its totals,
/// and exits with status 3 (the events it could not write are lost to the reader) — Ctrl-C
/// always works.
#[test]
fn stop_works_while_the_output_pipe_is_full() {
    if !bpf_allowed("stop_works_while_the_output_pipe_is_full") {
        return;
    }
    let _beside = beside_others();
    let mut storm = Storm::start();
    let (read, write) = small_pipe();
    // --no-fold: a line per event, so that the storm fills the pipe.
    let trace = Trace::start_uncollected(
        Command::new(sigtrace_bin())
            .args(["--no-fold", "--pid", &storm.pid_arg()])
            .stdout(Stdio::from(write)),
    );
    let ids = bpf_ids(trace.pid());
    storm.begin("for 5");
    wait_full(&read);
    let (status, took, err) = stop_blocked(trace, Signal::SIGINT);
    eprintln!("SIGINT with the output blocked: ended after {took:?}");
    // The product gives up 0.5 to 1 s after the stop request.
    assert!(took < promptly(), "SIGINT took {took:?}: {err:?}");
    assert_eq!(status.code(), Some(3), "{err:?}");
    assert!(
        err.iter()
            .any(|l| l.starts_with("sigtrace: gave up on the output")),
        "{err:?}"
    );
    assert!(event_totals(&err).is_some(), "totals: {err:?}");
    assert!(
        complaints(&err).len() == 1,
        "only the give-up line: {err:?}"
    );
    wait_unloaded(&ids, UNLOAD);
    drop(read);
}

/// The same with stderr into the same full pipe (`2>&1 | stuck`): even its last words
/// cannot be written, and SIGTERM still ends it promptly (the watchdog exits with status 3).
#[test]
fn stop_works_while_stdout_and_stderr_pipe_is_full() {
    if !bpf_allowed("stop_works_while_stdout_and_stderr_pipe_is_full") {
        return;
    }
    let _beside = beside_others();
    let mut storm = Storm::start();
    let (read, write) = small_pipe();
    let write2 = write.try_clone().expect("dup");
    // Owned: killed and reaped on drop, should an assertion fail.
    let mut trace = Owned::from_child(
        Command::new(sigtrace_bin())
            // --no-fold: a line per event, so that the storm fills the pipe.
            .args(["--no-fold", "--pid", &storm.pid_arg()])
            .stdin(Stdio::null())
            .stdout(Stdio::from(write))
            .stderr(Stdio::from(write2))
            .spawn()
            .expect("spawn sigtrace"),
    );
    // Its ready line comes first through the pipe; after that, nobody reads.
    let mut reader = BufReader::new(std::fs::File::from(read.try_clone().expect("dup")));
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        // Dropping `reader` closes only this duplicate: `read` stays open, unread.
    });
    let line = rx
        .recv_timeout(scaled(Duration::from_secs(20)))
        .expect("ready line");
    assert!(line.contains("sigtrace: ready"), "{line:?}");
    let ids = bpf_ids(trace.pid());
    storm.begin("for 6");
    wait_full(&read);
    thread::sleep(Duration::from_millis(200));
    trace.signal(Signal::SIGTERM);
    let start = Instant::now();
    let status = trace.wait_exit(Duration::from_secs(30));
    let took = start.elapsed();
    eprintln!("SIGTERM with stdout and stderr blocked: ended after {took:?}");
    // The output is given up after 0.5-1 s; its stderr then gets 2 s before the exit.
    assert!(
        took < promptly() + scaled(Duration::from_secs(3)),
        "SIGTERM took {took:?}"
    );
    assert_eq!(status.code(), Some(3), "{status:?}");
    wait_unloaded(&ids, UNLOAD);
    drop(read);
}

// ---------------------------------------------------------------------------------------
// 5. The tracer's own signals

/// A tracer kept busy by a storm that sends flat out, faster than a debug build decodes,
/// so that its ring never runs dry. Its output goes to /dev/null and its ring is 1 MiB:
/// what the ring holds at a stop is still decoded and written before the exit (about a
/// second for a full 4 MiB one, in a debug build on two busy cores), and that is not what
/// these tests time.
fn busy_tracer(cmd: &mut Command) -> Trace {
    Trace::start_uncollected(
        cmd.args(["--format", "json", "--ring-size", "1M"])
            .stdout(Stdio::null()),
    )
}

/// How long a flat-out storm lasts: past PROMPTLY, so that a tracer that looked at its
/// signals only once the storm ended would fail. The test stops it (by dropping it) long
/// before.
fn flat_out_seconds() -> u64 {
    promptly().as_secs() + 5
}

/// SIGINT, SIGTERM and SIGHUP each stop the tracer promptly while a storm keeps it busy
/// (once, it drained as long as the ring refilled and looked at its signals only when the
/// storm ended), cleanly: no complaint, its totals, the documented status (0, or 3 when
/// events were lost).
#[test]
fn int_term_hup_stop_promptly_during_a_storm() {
    if !bpf_allowed("int_term_hup_stop_promptly_during_a_storm") {
        return;
    }
    let _beside = beside_others();
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        let mut storm = Storm::start();
        let trace = busy_tracer(Command::new(sigtrace_bin()).args(["--pid", &storm.pid_arg()]));
        storm.begin(&format!("flat {}", flat_out_seconds()));
        thread::sleep(scaled(Duration::from_millis(500))); // well into the storm
        trace.signal(sig);
        let (status, took, _, err) = trace.wait_end(Duration::from_secs(30));
        eprintln!(
            "{sig} during the storm: ended after {took:?}, {:?}",
            event_totals(&err)
        );
        assert!(took < promptly(), "{sig}: took {took:?}");
        assert_eq!(complaints(&err), Vec::<&String>::new(), "{sig}: {err:?}");
        assert_eq!(status.code(), Some(stopped_status(&err)), "{sig}: {err:?}");
        let (events, _) = event_totals(&err).expect("totals");
        assert!(events > 1000, "{sig}: it was busy ({events} events)");
        // Dropping the storm kills it.
    }
}

/// stdout into a pipe whose reader goes away (`| head`): SIGPIPE is ignored, the write fails
/// with EPIPE, and the tracer ends by itself with status 0, quietly (like ripgrep): nothing
/// on stderr but its ready line and its totals.
#[test]
fn a_reader_that_goes_away_ends_it_quietly_with_zero() {
    if !bpf_allowed("a_reader_that_goes_away_ends_it_quietly_with_zero") {
        return;
    }
    let _beside = beside_others();
    let mut storm = Storm::start();
    // --no-fold: the storm's lines keep coming, so that the write after the reader went away
    // comes at once.
    let mut trace = Trace::start_uncollected(
        Command::new(sigtrace_bin())
            .args(["--no-fold", "--pid", &storm.pid_arg()])
            .stdout(Stdio::piped()),
    );
    let stdout = trace.take_stdout().expect("stdout");
    storm.begin("for 3");
    // Read ten lines, then close the pipe.
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let lines: Vec<String> = BufReader::new(stdout).lines().take(10).flatten().collect();
        let _ = tx.send(lines);
    });
    let lines = rx
        .recv_timeout(scaled(Duration::from_secs(20)))
        .expect("ten lines");
    assert_eq!(lines.len(), 10, "{lines:?}");
    assert!(lines.iter().all(|l| l.contains("SIGUSR1")), "{lines:?}");
    let closed = Instant::now();
    let mut status = None;
    while closed.elapsed() < scaled(Duration::from_secs(20)) {
        if !trace.running() {
            status = Some(closed.elapsed());
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    let took = status.expect("still running 20 s after its reader went away");
    eprintln!("ended {took:?} after its reader went away");
    // The storm writes at once; the tracer ends at its next write.
    assert!(
        took < promptly(),
        "ended {took:?} after the reader went away"
    );
    let (status, _, _, err) = trace.wait_end(WAIT);
    assert_eq!(status.code(), Some(0), "{err:?}");
    assert_eq!(complaints(&err), Vec::<&String>::new(), "quietly: {err:?}");
    storm.sent(WAIT);
}

/// What launch mode runs: notes each SIGINT it catches (a ^C at a terminal reaches it too)
/// in the file ARGV[1], and storms itself with SIGUSR1 flat out (as `flat` does) for ARGV[0]
/// seconds at most — and only as long as the tracer that started it runs (sigtrace does not end its
/// command when it stops, and this one is no child of the test's, to be killed on drop).
const LAUNCHED: &str = r#"
use Time::HiRes qw(time);
my ($end, $tracer) = (time + $ARGV[0], getppid());
$SIG{INT} = sub { open my $f, '>>', $ARGV[1]; print $f "INT\n"; close $f };
$SIG{USR1} = sub { };
{ open my $f, '>>', $ARGV[1]; print $f "ready\n"; close $f }
while (time < $end && getppid() == $tracer) { kill 'USR1', $$ for 1 .. 1000 }
"#;

/// Launch mode (`sigtrace -- COMMAND`), the tracer and the command in a process group of
/// the test's own, signalled as a terminal's ^C signals its foreground group, while the
/// command storms: the first SIGINT reaches the command and the tracer goes on tracing (to
/// show what the command does with it); the second stops the tracer promptly, with the
/// documented status.
#[test]
fn launch_mode_second_sigint_stops_promptly() {
    if !bpf_allowed("launch_mode_second_sigint_stops_promptly") {
        return;
    }
    let _beside = beside_others();
    let dir = tempfile::tempdir().expect("tempdir");
    let caught = dir.path().join("caught");
    let lifetime = flat_out_seconds().to_string();
    let mut trace = busy_tracer(
        Command::new(sigtrace_bin())
            .args(["--", "perl", "-e", LAUNCHED, &lifetime])
            .arg(&caught)
            .process_group(0),
    );
    let pid = trace.pid();
    let group = nix::unistd::Pid::from_raw(pid);
    let lines = || std::fs::read_to_string(&caught).unwrap_or_default();
    let count = || lines().lines().filter(|l| *l == "INT").count();
    // Its handler installed (perl starts slowly in an emulated guest), then well into the
    // storm.
    let ready = deadline(WAIT);
    while !lines().contains("ready") {
        assert!(Instant::now() < ready, "the command did not start");
        thread::sleep(Duration::from_millis(10));
    }
    thread::sleep(scaled(Duration::from_millis(500)));

    nix::sys::signal::killpg(group, Signal::SIGINT).expect("^C to our group");
    // Taken (its handler ran, no longer pending) before the second is sent: the kernel
    // would merge a second one into a SIGINT still pending.
    wait_taken(pid, Signal::SIGINT);
    let first = deadline(WAIT);
    while count() < 1 {
        assert!(Instant::now() < first, "the command never got the SIGINT");
        thread::sleep(Duration::from_millis(10));
    }
    thread::sleep(Duration::from_secs(1));
    assert!(
        trace.running(),
        "the first SIGINT must not stop it in launch mode"
    );

    nix::sys::signal::killpg(group, Signal::SIGINT).expect("^C to our group");
    let (status, took, _, err) = trace.wait_end(Duration::from_secs(30));
    eprintln!(
        "the second SIGINT: ended after {took:?}, {:?}",
        event_totals(&err)
    );
    assert!(took < promptly(), "the second SIGINT took {took:?}");
    assert_eq!(complaints(&err), Vec::<&String>::new(), "{err:?}");
    assert_eq!(status.code(), Some(stopped_status(&err)), "{err:?}");
    let (events, _) = event_totals(&err).expect("totals");
    assert!(events > 1000, "it was busy ({events} events)");
    let second = deadline(WAIT);
    while count() < 2 {
        assert!(
            Instant::now() < second,
            "the command got {} SIGINTs",
            count()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (bounded) until `sig` is no longer pending for process `pid` (its handler took it).
fn wait_taken(pid: i32, sig: Signal) {
    let bit = 1u64 << (sig as i32 - 1);
    let deadline = deadline(WAIT);
    while proc_status_mask(pid, "ShdPnd") & bit != 0 || proc_status_mask(pid, "SigPnd") & bit != 0 {
        assert!(Instant::now() < deadline, "{sig} stays pending for {pid}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// SIGUSR1 asks a running sigtrace for a stats line (events, lost, internal table sizes) on
/// stderr, and tracing goes on.
#[test]
fn sigusr1_prints_stats_and_tracing_goes_on() {
    if !bpf_allowed("sigusr1_prints_stats_and_tracing_goes_on") {
        return;
    }
    let _beside = beside_others();
    let helper = spawn_ready(&mut perl(TRAP_PERL));
    let pid = helper.pid();
    let mut trace = Trace::start(&["--format", "json", "--pid", &pid.to_string()]);
    let mut seen = Vec::new();
    helper.signal(Signal::SIGUSR2);
    trace.wait_for(&mut seen, Duration::from_secs(10), |r| {
        r["type"] == "generate" && signal_name(r) == "SIGUSR2"
    });
    trace.signal(Signal::SIGUSR1);
    let line = trace.wait_stderr("sigtrace: stats:", Duration::from_secs(10));
    assert!(line.contains(" lost 0 "), "{line}");
    for table in ["pending=", "interest=", "summary_open="] {
        assert!(line.contains(table), "no {table} in {line}");
    }
    let events: u64 = line
        .split_whitespace()
        .skip_while(|w| *w != "events")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no event count in {line}"));
    assert!(events >= 1, "{line}");
    helper.signal(Signal::SIGUSR1);
    trace.wait_for(&mut seen, Duration::from_secs(10), |r| {
        r["type"] == "generate" && signal_name(r) == "SIGUSR1"
    });
    trace.stop_json(seen);
}
