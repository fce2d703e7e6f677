//! Fixtures for the end-to-end tests: the sigtrace binary under test, privilege checks that
//! skip loudly (never under CI=true), the locks by which tests share the machine, processes
//! the test owns (killed and reaped on drop), and a running tracer whose JSON output is
//! collected. Tests only ever signal processes they spawned.

use std::{
    io::{BufRead, BufReader, Read},
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, mpsc},
    thread,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::Value;

/// The sigtrace binary under test, found once per run: $SIGTRACE_BIN when set (`cargo xtask
/// test` sets it, on the host and in the guests, which have no cargo to ask), otherwise the
/// one `cargo build -p sigtrace --bin sigtrace` makes in this test binary's profile, at the
/// path cargo reports (so CARGO_TARGET_DIR and the like need nothing here). Every test that
/// needs it fails with the same message when it cannot be had.
pub fn sigtrace_bin() -> &'static Path {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BIN.get_or_init(find_sigtrace) {
        Ok(path) => path,
        Err(why) => panic!("{why}"),
    }
}

fn find_sigtrace() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("SIGTRACE_BIN") {
        // Absolute: tests also run it from shell scripts and as another user.
        return std::fs::canonicalize(&path)
            .map_err(|e| format!("SIGTRACE_BIN={}: {e}", path.display()));
    }
    // Cargo from $CARGO (the one running these tests), debug or release as this binary was
    // built; no --target, which would build everything again under target/TRIPLE/. Cargo
    // holds no lock while the tests run, so this does not wait on the `cargo test` above us.
    escargot::CargoBuild::new()
        .manifest_path(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml"))
        .package("sigtrace")
        .bin("sigtrace")
        .current_release()
        .run()
        .map(|built| built.path().to_owned())
        .map_err(|e| {
            format!(
                "cannot build the sigtrace binary (`cargo build -p sigtrace --bin sigtrace`; set SIGTRACE_BIN to use a built one): {}",
                e.to_string().trim_end()
            )
        })
}

/// How much longer than on real hardware a wait may take: `cargo xtask test` runs the suite
/// in emulated (TCG) guests too, where a signal costs ~20x more, and sets
/// SIGTRACE_TEST_TIME_SCALE there. Waits for something that must happen scale; nothing
/// that must *not* happen is timed.
pub fn scaled(timeout: Duration) -> Duration {
    let factor = std::env::var("SIGTRACE_TEST_TIME_SCALE")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(1)
        .max(1);
    timeout * factor
}

/// Every test that starts a process holds one of these two while it runs; all tests of the
/// suite share this process, and the machine.
static MACHINE: RwLock<()> = RwLock::new(());

/// Taken by a test that must have the machine to itself: one that counts every record its
/// tracer's kernel side lets through — even the exit of another test's process whose pid
/// shares a gate slot with its target's —, one that traces the whole machine, whose ring
/// another test's signal storm would overflow, or one that sets the machine's next pid,
/// which another test's new process or thread would take. Tests that take
/// [`beside_others`] wait.
pub fn alone() -> RwLockWriteGuard<'static, ()> {
    MACHINE.write().unwrap_or_else(PoisonError::into_inner)
}

/// Taken by every other test that starts a process: they run in parallel with each other,
/// never beside an [`alone`] one.
pub fn beside_others() -> RwLockReadGuard<'static, ()> {
    MACHINE.read().unwrap_or_else(PoisonError::into_inner)
}

/// True when BPF tests can run. Without root they skip with a loud message — except under
/// CI=true, where that is a failure.
pub fn bpf_allowed(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: needs root for BPF, and CI=true does not allow skipping");
    }
    eprintln!("\n*** SKIPPING {test}: needs root for BPF (run `sudo -E cargo xtask test`) ***\n");
    false
}

/// A child process this test started; killed (SIGKILL, by pid) and reaped on drop.
pub struct Owned {
    pub child: Child,
    lines: Option<mpsc::Receiver<String>>,
    /// The line that announced readiness.
    pub ready: String,
}

impl Owned {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid()), sig).expect("signal our own child");
    }

    /// Waits for a line on the child's stdout that contains `needle`.
    pub fn wait_line(&mut self, needle: &str, timeout: Duration) -> String {
        let timeout = scaled(timeout);
        let rx = self.lines.as_ref().expect("stdout captured");
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no line containing {needle:?} within {timeout:?}"),
            }
        }
    }

    /// Waits for the child to exit (bounded).
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let timeout = scaled(timeout);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "child {} did not exit within {timeout:?}",
                self.pid()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(Pid::from_raw(self.pid()), Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// Lines of `stream`, each sent as soon as it is complete. Invalid UTF-8 arrives as U+FFFD
/// rather than ending the stream, so a test sees it (sigtrace must never print any).
fn line_channel(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            if tx
                .send(String::from_utf8_lossy(&line).into_owned())
                .is_err()
            {
                break;
            }
        }
    });
    rx
}

impl Owned {
    /// Owns an already spawned child (no output captured).
    pub fn from_child(child: Child) -> Owned {
        Owned {
            child,
            lines: None,
            ready: String::new(),
        }
    }
}

/// A pseudo-terminal the test opened: its master and its slave side.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
    /// The slave's path, e.g. /dev/pts/3.
    pub path: String,
}

/// A pty whose fds are close-on-exec from the start (processes other tests spawn in parallel
/// must not inherit the master: they would count as its writers) and that never becomes
/// the test's controlling terminal.
pub fn open_pty() -> Pty {
    use nix::{fcntl::OFlag, pty};
    let master = pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .expect("posix_openpt");
    pty::grantpt(&master).expect("grantpt");
    pty::unlockpt(&master).expect("unlockpt");
    let path = pty::ptsname_r(&master).expect("ptsname");
    let slave = nix::fcntl::open(
        path.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap_or_else(|e| panic!("{path}: {e}"));
    Pty {
        master: OwnedFd::from(master),
        slave,
        path,
    }
}

/// One mask line of /proc/PID/status ("SigCgt", "SigIgn", "ShdPnd", ...), as bits.
pub fn proc_status_mask(pid: i32, field: &str) -> u64 {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {field} in {path}"));
    u64::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("{path} {field}: {e}"))
}

/// Spawns `cmd` with stdout captured, and waits for it to print `ready`.
pub fn spawn_ready(cmd: &mut Command) -> Owned {
    spawn_ready_keep_stdin(cmd.stdin(Stdio::null()))
}

/// As [`spawn_ready`], leaving stdin as the caller set it.
pub fn spawn_ready_keep_stdin(cmd: &mut Command) -> Owned {
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("spawn helper");
    let lines = line_channel(child.stdout.take().expect("stdout"));
    let mut owned = Owned {
        child,
        lines: Some(lines),
        ready: String::new(),
    };
    owned.ready = owned.wait_line("ready", Duration::from_secs(10));
    owned
}

/// perl: catches USR1 (prints "got USR1"), ignores USR2, prints "ready", then waits.
pub const TRAP_PERL: &str = r#"$| = 1; $SIG{USR1} = sub { print "got USR1\n" }; $SIG{USR2} = 'IGNORE'; print "ready\n"; sleep 1 while 1;"#;

pub fn perl(script: &str) -> Command {
    let mut cmd = Command::new("perl");
    cmd.args(["-e", script]);
    cmd
}

/// A running sigtrace; its stdout lines are collected until it is stopped.
pub struct Trace {
    proc: Owned,
    stderr: mpsc::Receiver<String>,
}

impl Trace {
    pub fn start(args: &[&str]) -> Trace {
        Self::start_with(Command::new(sigtrace_bin()).args(args))
    }

    /// Starts a prepared command line (e.g. wrapped in `unshare`) and waits for "ready".
    pub fn start_with(cmd: &mut Command) -> Trace {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sigtrace");
        let stdout = child.stdout.take().expect("stdout");
        Self::ready(child, stdout)
    }

    /// Starts sigtrace writing into a pipe the test made (`cmd`'s stdout is its write
    /// end), reading the output from `read_end`.
    pub fn start_writing_to(
        cmd: &mut Command,
        write_end: std::io::PipeWriter,
        read_end: std::io::PipeReader,
    ) -> Trace {
        let child = cmd
            .stdout(write_end)
            .stderr(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sigtrace");
        Self::ready(child, read_end)
    }

    fn ready(child: Child, stdout: impl Read + Send + 'static) -> Trace {
        Self::ready_with(child, Some(line_channel(stdout)))
    }

    /// Waits for "ready" on the tracer's stderr; `lines` are its stdout's, when collected.
    fn ready_with(mut child: Child, lines: Option<mpsc::Receiver<String>>) -> Trace {
        let stderr = line_channel(child.stderr.take().expect("stderr"));
        let mut trace = Trace {
            proc: Owned {
                child,
                lines,
                ready: String::new(),
            },
            stderr,
        };
        let deadline = Instant::now() + scaled(Duration::from_secs(20));
        loop {
            match trace
                .stderr
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) if line.contains("sigtrace: ready") => break,
                Ok(line) => eprintln!("sigtrace stderr: {line}"),
                Err(_) => {
                    let status = trace.proc.child.try_wait();
                    panic!("sigtrace did not get ready (status {status:?})");
                }
            }
        }
        trace
    }

    pub fn pid(&self) -> i32 {
        self.proc.pid()
    }

    /// Waits for a line on sigtrace's stderr containing `needle`.
    pub fn wait_stderr(&mut self, needle: &str, timeout: Duration) -> String {
        let timeout = scaled(timeout);
        let deadline = Instant::now() + timeout;
        loop {
            match self
                .stderr
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no stderr line containing {needle:?} within {timeout:?}"),
            }
        }
    }

    /// Waits until a JSON record satisfying `pred` arrives; returns every record so far.
    pub fn wait_for(
        &mut self,
        seen: &mut Vec<Value>,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) {
        if seen.iter().any(&pred) {
            return;
        }
        let timeout = scaled(timeout);
        let rx = self.proc.lines.as_ref().expect("stdout");
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let value: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                    let hit = pred(&value);
                    seen.push(value);
                    if hit {
                        return;
                    }
                }
                Err(_) => {
                    panic!("expected record did not arrive within {timeout:?}; got {seen:#?}")
                }
            }
        }
    }

    /// Stops the tracer with `sig` (SIGINT by default) and returns its exit status, the
    /// remaining stdout lines and stderr.
    pub fn stop_with(
        mut self,
        sig: Signal,
    ) -> (std::process::ExitStatus, Vec<String>, Vec<String>) {
        self.proc.signal(sig);
        let status = self.proc.wait_exit(Duration::from_secs(20));
        let rx = self.proc.lines.take().expect("stdout");
        // The reader thread ends at EOF; give it a moment to deliver the tail.
        let mut out = Vec::new();
        while let Ok(line) = rx.recv_timeout(scaled(Duration::from_millis(500))) {
            out.push(line);
        }
        let mut err = Vec::new();
        while let Ok(line) = self.stderr.recv_timeout(scaled(Duration::from_millis(200))) {
            err.push(line);
        }
        (status, out, err)
    }

    /// Stops with SIGINT, checks a clean exit, returns all JSON records (with `seen`).
    pub fn stop_json(self, mut seen: Vec<Value>) -> Vec<Value> {
        let (status, out, err) = self.stop_with(Signal::SIGINT);
        assert!(
            status.success(),
            "sigtrace exited {status:?}; stderr: {err:?}"
        );
        for line in out {
            seen.push(
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")),
            );
        }
        seen
    }
}

/// Records of `kind` ("generate", "deliver", ...).
pub fn of_type<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["type"] == kind).collect()
}

pub fn signal_name(record: &Value) -> &str {
    record["signal"]["name"].as_str().unwrap_or("")
}

impl Trace {
    /// As [`Trace::start_with`], but stdout stays as the caller set it up (a file, a pipe of
    /// the test's own, a closed fd...) and is not collected.
    pub fn start_uncollected(cmd: &mut Command) -> Trace {
        let child = cmd
            .stderr(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sigtrace");
        Self::ready_with(child, None)
    }

    /// Sends `sig` to the tracer (our own child, by pid).
    pub fn signal(&self, sig: Signal) {
        self.proc.signal(sig);
    }

    /// Whether the tracer is still running (reaps it if not).
    pub fn running(&mut self) -> bool {
        matches!(self.proc.child.try_wait(), Ok(None))
    }

    /// Its stdout, when the caller asked for a pipe (`Stdio::piped()`) and
    /// [`Trace::start_uncollected`] left it alone.
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.proc.child.stdout.take()
    }

    /// Waits (bounded by `timeout`, scaled) for the tracer to end by itself or after a signal
    /// sent before; returns its status, how long it took to end from this call, the stdout
    /// lines collected (none when not collected) and stderr.
    pub fn wait_end(
        mut self,
        timeout: Duration,
    ) -> (std::process::ExitStatus, Duration, Vec<String>, Vec<String>) {
        let start = Instant::now();
        let status = self.proc.wait_exit(timeout);
        let took = start.elapsed();
        let mut out = Vec::new();
        if let Some(rx) = self.proc.lines.take() {
            while let Ok(line) = rx.recv_timeout(scaled(Duration::from_millis(500))) {
                out.push(line);
            }
        }
        let mut err = Vec::new();
        while let Ok(line) = self.stderr.recv_timeout(scaled(Duration::from_millis(200))) {
            err.push(line);
        }
        (status, took, out, err)
    }
}

/// The ids of the BPF programs, maps and links a process holds, from the `prog_id:`,
/// `map_id:` and `link_id:` lines of its /proc/PID/fdinfo (other tests load their own).
#[derive(Debug, Default, Clone)]
pub struct BpfIds {
    pub progs: Vec<u32>,
    pub maps: Vec<u32>,
    pub links: Vec<u32>,
}

pub fn bpf_ids(pid: i32) -> BpfIds {
    let mut ids = BpfIds::default();
    let dir = format!("/proc/{pid}/fdinfo");
    for entry in std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .flatten()
    {
        let Ok(info) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        for line in info.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let Ok(id) = value.trim().parse::<u32>() else {
                continue;
            };
            match key {
                "prog_id" => ids.progs.push(id),
                "map_id" => ids.maps.push(id),
                "link_id" => ids.links.push(id),
                _ => {}
            }
        }
    }
    for list in [&mut ids.progs, &mut ids.maps, &mut ids.links] {
        list.sort_unstable();
        list.dedup();
    }
    ids
}

/// Which of `ids` the kernel still has loaded.
pub fn still_loaded(ids: &BpfIds) -> BpfIds {
    let progs: Vec<u32> = aya::programs::loaded_programs()
        .flatten()
        .map(|p| p.id())
        .collect();
    let maps: Vec<u32> = aya::maps::loaded_maps().flatten().map(|m| m.id()).collect();
    let links: Vec<u32> = aya::programs::loaded_links()
        .flatten()
        .map(|l| l.id())
        .collect();
    let keep = |ours: &[u32], loaded: &[u32]| -> Vec<u32> {
        ours.iter()
            .copied()
            .filter(|id| loaded.contains(id))
            .collect()
    };
    BpfIds {
        progs: keep(&ids.progs, &progs),
        maps: keep(&ids.maps, &maps),
        links: keep(&ids.links, &links),
    }
}

/// Waits until none of `ids` is loaded (the kernel frees programs and maps after an RCU
/// grace period, asynchronously); panics naming what is left after `timeout` (scaled).
pub fn wait_unloaded(ids: &BpfIds, timeout: Duration) {
    let timeout = scaled(timeout);
    let deadline = Instant::now() + timeout;
    loop {
        let left = still_loaded(ids);
        if left.progs.is_empty() && left.maps.is_empty() && left.links.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still loaded {timeout:?} after the tracer ended: {left:?} (of {ids:?})"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// The `events` and `lost` of the tracer's last words on stderr, "sigtrace: N events, M lost".
pub fn event_totals(stderr: &[String]) -> Option<(u64, u64)> {
    stderr.iter().rev().find_map(|line| {
        let rest = line.strip_prefix("sigtrace: ")?;
        let (events, rest) = rest.split_once(" events, ")?;
        // "N lost", or "N lost; dropped: …" when the kernel side dropped records.
        let lost = rest.split(';').next()?.strip_suffix(" lost")?;
        Some((events.parse().ok()?, lost.parse().ok()?))
    })
}

/// Runs `sigtrace --format json ARGS` to its end (RUST_LOG removed: `-v` decides the
/// kernel log level); returns its exit status, its records and its stderr.
pub fn launch(args: &[&str]) -> (Option<i32>, Vec<Value>, String) {
    let out = Command::new(sigtrace_bin())
        .args(["--format", "json"])
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run sigtrace");
    let records = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (
        out.status.code(),
        records,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
