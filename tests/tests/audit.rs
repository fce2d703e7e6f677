//! End-to-end: the system-wide audit — every filter (one event that must pass it, one that
//! must not), launch-and-follow, --follow, summary counts, exact loss accounting, sigaction
//! history and the output options.

use std::{
    io::Write,
    os::unix::process::CommandExt,
    process::{Command, Stdio},
    time::Duration,
};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::util::*;

const WAIT: Duration = Duration::from_secs(10);

/// A scriptable process: catches USR1 and ALRM, ignores USR2, renames itself (comm) to its
/// first argument, and on stdin obeys `kill SIG PID`, `alarm` (a kernel SIGALRM in 10 ms),
/// `fork` (a child that sends itself USR2), `storm N` (N × USR1 to itself).
const AGENT: &str = r#"
use Time::HiRes qw(ualarm);
$| = 1; $0 = $ARGV[0] if @ARGV;
my $alarmed;
$SIG{USR1} = sub { }; $SIG{USR2} = 'IGNORE'; $SIG{ALRM} = sub { $alarmed = 1; print "got ALRM\n" };
print "ready $$\n";
while (my $line = <STDIN>) {
    my ($cmd, @args) = split ' ', $line;
    if ($cmd eq 'kill') { kill $args[0], $args[1]; print "sent\n" }
    elsif ($cmd eq 'alarm') {
        # Waits for it here, in short sleeps: perl runs a handler between ops, so an alarm
        # landing just before the next blocking read of STDIN would wait there for ever.
        $alarmed = 0; ualarm(10_000);
        select(undef, undef, undef, 0.01) until $alarmed;
    }
    elsif ($cmd eq 'fork') {
        my $child = fork;
        if (!$child) { kill 'USR2', $$; print "child $$\n"; exit 0 }
        waitpid($child, 0); print "forked $child\n";
    }
    elsif ($cmd eq 'storm') { kill 'USR1', $$ for 1 .. $args[0]; print "stormed\n" }
}
"#;

struct Agent {
    proc: Owned,
}

impl Agent {
    fn start(comm: &str) -> Agent {
        Self::start_with(perl(AGENT).arg(comm))
    }

    fn start_with(cmd: &mut Command) -> Agent {
        cmd.stdin(Stdio::piped()).process_group(0);
        Agent {
            proc: spawn_ready_keep_stdin(cmd),
        }
    }

    fn pid(&self) -> i32 {
        self.proc.pid()
    }

    fn say(&mut self, line: &str, answer: &str) -> String {
        let stdin = self.proc.child.stdin.as_mut().expect("agent stdin");
        writeln!(stdin, "{line}").expect("talk to agent");
        self.proc.wait_line(answer, WAIT)
    }

    /// The agent sends `sig` to `pid`.
    fn kill(&mut self, sig: &str, pid: i32) {
        self.say(&format!("kill {sig} {pid}"), "sent");
    }
}

/// Runs a trace with `filter`, performs `miss` (must not be reported) then `hit` (must
/// be), waits for the hit and checks the miss is absent. `is_hit`/`is_miss` identify them.
fn filter_case(
    filter: &[&str],
    miss: impl FnOnce(),
    hit: impl FnOnce(),
    is_miss: impl Fn(&Value) -> bool,
    is_hit: impl Fn(&Value) -> bool,
) {
    let mut args = vec!["--format", "json"];
    args.extend_from_slice(filter);
    let mut trace = Trace::start(&args);
    let mut seen = Vec::new();
    miss();
    hit();
    trace.wait_for(&mut seen, WAIT, |r| r["type"] == "generate" && is_hit(r));
    // Records are ordered; the miss came first, so it would be here by now.
    let records = trace.stop_json(seen);
    let generates = of_type(&records, "generate");
    assert!(
        !generates.iter().any(|r| is_miss(r)),
        "filter {filter:?} let the miss through: {generates:#?}"
    );
}

fn sent(sig: &'static str, to: i32) -> impl Fn(&Value) -> bool {
    move |r: &Value| signal_name(r) == sig && r["target"]["pid"] == to
}

fn send(pid: i32, sig: Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).expect("signal our child");
}

#[test]
fn filter_pid_tid_pgrp_target_sender() {
    if !bpf_allowed("filter_pid_tid_pgrp_target_sender") {
        return;
    }
    let _beside = beside_others();
    let a = Agent::start("sigt-a");
    let b = Agent::start("sigt-b");
    let (pa, pb) = (a.pid(), b.pid());
    for flag in ["--pid", "--tid", "--pgrp", "--target"] {
        filter_case(
            &[flag, &pa.to_string()],
            || send(pb, Signal::SIGUSR2),
            || send(pa, Signal::SIGUSR2),
            sent("SIGUSR2", pb),
            sent("SIGUSR2", pa),
        );
    }
    // --sender is one-sided: signals *to* the sender do not pass.
    let mut s = Agent::start("sigt-s");
    let ps = s.pid();
    let sender = std::cell::RefCell::new(&mut s);
    filter_case(
        &["--sender", &ps.to_string()],
        || send(ps, Signal::SIGUSR2),
        || sender.borrow_mut().kill("USR2", pa),
        sent("SIGUSR2", ps),
        |r| sent("SIGUSR2", pa)(r) && r["sender"]["pid"] == ps,
    );
    // --target is one-sided too: the target's own sending does not pass.
    filter_case(
        &["--target", &ps.to_string()],
        || sender.borrow_mut().kill("USR2", pa),
        || send(ps, Signal::SIGUSR2),
        sent("SIGUSR2", pa),
        sent("SIGUSR2", ps),
    );
}

#[test]
fn filter_comm_signal_exclude_failed() {
    if !bpf_allowed("filter_comm_signal_exclude_failed") {
        return;
    }
    let _beside = beside_others();
    let a = Agent::start("sigt-alpha");
    let b = Agent::start("sigt-beta");
    let (pa, pb) = (a.pid(), b.pid());
    filter_case(
        &["--comm", "sigt-alpha"],
        || send(pb, Signal::SIGUSR2),
        || send(pa, Signal::SIGUSR2),
        sent("SIGUSR2", pb),
        sent("SIGUSR2", pa),
    );
    filter_case(
        &["--pid", &pa.to_string(), "--signal", "USR1,RTMIN+1"],
        || send(pa, Signal::SIGUSR2),
        || send(pa, Signal::SIGUSR1),
        sent("SIGUSR2", pa),
        sent("SIGUSR1", pa),
    );
    filter_case(
        &["--pid", &pa.to_string(), "--exclude-signal", "SIGUSR2"],
        || send(pa, Signal::SIGUSR2),
        || send(pa, Signal::SIGUSR1),
        sent("SIGUSR2", pa),
        sent("SIGUSR1", pa),
    );
    // --failed keeps what was not queued: the ignored USR2, not the queued USR1.
    filter_case(
        &["--pid", &pa.to_string(), "--failed"],
        || send(pa, Signal::SIGUSR1),
        || send(pa, Signal::SIGUSR2),
        sent("SIGUSR1", pa),
        sent("SIGUSR2", pa),
    );
}

#[test]
fn filter_kernel_user_uid() {
    if !bpf_allowed("filter_kernel_user_uid") {
        return;
    }
    let _beside = beside_others();
    let mut a = Agent::start("sigt-k");
    let pa = a.pid();
    let agent = std::cell::RefCell::new(&mut a);
    // The SIGALRM of ualarm() comes from the kernel; our kill(2) from a process.
    filter_case(
        &["--pid", &pa.to_string(), "--kernel-only"],
        || send(pa, Signal::SIGUSR1),
        || {
            agent.borrow_mut().say("alarm", "got ALRM");
        },
        sent("SIGUSR1", pa),
        |r| sent("SIGALRM", pa)(r) && r["origin"] == "kernel",
    );
    filter_case(
        &["--pid", &pa.to_string(), "--user-only"],
        || {
            agent.borrow_mut().say("alarm", "got ALRM");
        },
        || send(pa, Signal::SIGUSR1),
        sent("SIGALRM", pa),
        |r| sent("SIGUSR1", pa)(r) && r["origin"] == "user",
    );
    // --uid: the sender's uid. An agent running as nobody signals itself.
    let mut nobody = Agent::start_with(
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "perl",
                "-e",
                AGENT,
            ])
            .arg("sigt-nobody"),
    );
    let pn = nobody.pid();
    let nobody = std::cell::RefCell::new(&mut nobody);
    filter_case(
        &["--uid", "65534"],
        || send(pn, Signal::SIGUSR2),
        || nobody.borrow_mut().kill("USR2", pn),
        |r| sent("SIGUSR2", pn)(r) && r["sender"]["uid"] == 0,
        |r| sent("SIGUSR2", pn)(r) && r["sender"]["uid"] == 65534,
    );
}

#[test]
fn follow_includes_children_created_after_start() {
    if !bpf_allowed("follow_includes_children_created_after_start") {
        return;
    }
    let _beside = beside_others();
    let mut a = Agent::start("sigt-parent");
    let mut trace = Trace::start(&[
        "--format",
        "json",
        "--pid",
        &a.pid().to_string(),
        "--follow",
    ]);
    let mut seen = Vec::new();
    let line = a.say("fork", "forked");
    let child: i32 = line
        .split_whitespace()
        .last()
        .and_then(|p| p.parse().ok())
        .expect("child pid");
    trace.wait_for(&mut seen, WAIT, sent("SIGUSR2", child));
    let records = trace.stop_json(seen);
    assert!(
        of_type(&records, "fork")
            .iter()
            .any(|f| f["child_pid"] == child && f["parent"]["pid"] == a.pid()),
        "{records:#?}"
    );

    // Without --follow the child's self-signal is not the parent's business.
    let trace = Trace::start(&["--format", "json", "--pid", &a.pid().to_string()]);
    let line = a.say("fork", "forked");
    let child2: i32 = line
        .split_whitespace()
        .last()
        .and_then(|p| p.parse().ok())
        .expect("child pid");
    // Its exit sends the parent a SIGCHLD, which does concern the parent: wait for that.
    std::thread::sleep(Duration::from_millis(300));
    let records = trace.stop_json(Vec::new());
    assert!(
        !of_type(&records, "generate")
            .iter()
            .any(|r| sent("SIGUSR2", child2)(r))
    );
    assert!(
        of_type(&records, "generate")
            .iter()
            .any(|r| signal_name(r) == "SIGCHLD")
    );
}

#[test]
fn launch_exits_with_the_commands_status() {
    if !bpf_allowed("launch_exits_with_the_commands_status") {
        return;
    }
    let _beside = beside_others();
    // Handled: the shell goes on to exit 7.
    let (status, records, err) = launch(&["--", "sh", "-c", "trap : USR1; kill -USR1 $$; exit 7"]);
    assert_eq!(status, Some(7), "{err}");
    let g = of_type(&records, "generate");
    assert!(
        g.iter()
            .any(|r| signal_name(r) == "SIGUSR1" && r["sender"]["pid"] == r["target"]["pid"])
    );
    assert!(
        of_type(&records, "deliver")
            .iter()
            .any(|r| signal_name(r) == "SIGUSR1" && r["outcome"] == "handled")
    );
    // Not handled: SIGUSR1 kills the shell, and sigtrace exits as a shell would: 128 + 10.
    let (status, records, err) = launch(&["--", "sh", "-c", "kill -USR1 $$; exit 7"]);
    assert_eq!(status, Some(138), "{err}");
    assert!(
        of_type(&records, "generate")
            .iter()
            .any(|r| signal_name(r) == "SIGUSR1")
    );
    let exit = of_type(&records, "exit");
    assert!(
        exit.iter()
            .any(|x| x["status"]["signal"]["name"] == "SIGUSR1"),
        "{records:#?}"
    );
    // A real-time signal: 128 + 36.
    let (status, _, err) = launch(&["--", "perl", "-e", "kill 36, $$; sleep 1"]);
    assert_eq!(status, Some(164), "{err}");
    // A command that cannot run.
    let (status, _, err) = launch(&["--", "/nonexistent/command"]);
    assert_eq!(status, Some(127), "{err}");
}

#[test]
fn launch_follows_grandchildren() {
    if !bpf_allowed("launch_follows_grandchildren") {
        return;
    }
    let _beside = beside_others();
    let script =
        r#"system("perl", "-e", q{system("perl", "-e", q(kill "USR2", $$)); exit 0}); exit 3"#;
    let (status, records, err) = launch(&["--", "perl", "-e", script]);
    assert_eq!(status, Some(3), "{err}");
    let usr2 = of_type(&records, "generate")
        .into_iter()
        .find(|r| signal_name(r) == "SIGUSR2")
        .unwrap_or_else(|| panic!("grandchild's SIGUSR2 missing: {records:#?}"));
    let grandchild = &usr2["target"]["pid"];
    let forks = of_type(&records, "fork");
    let parent_of = |pid: &Value| {
        forks
            .iter()
            .find(|f| &f["child_pid"] == pid)
            .map(|f| f["parent"]["pid"].clone())
    };
    let child = parent_of(grandchild).expect("grandchild was forked by a traced process");
    assert!(
        parent_of(&child).is_some(),
        "its parent was itself forked under trace: {forks:#?}"
    );
}

#[test]
fn summary_counts_equal_the_events() {
    if !bpf_allowed("summary_counts_equal_the_events") {
        return;
    }
    let _beside = beside_others();
    let (status, records, err) = launch(&[
        "--summary",
        "--",
        "sh",
        "-c",
        "trap : USR1; trap '' USR2; kill -USR1 $$; kill -USR1 $$; kill -USR2 $$; kill -USR2 $$; kill -USR2 $$",
    ]);
    assert_eq!(status, Some(0), "{err}");
    let generates = of_type(&records, "generate");
    let summary = of_type(&records, "summary");
    assert_eq!(summary.len(), 1);
    let summary = summary[0];
    assert_eq!(summary["signals"].as_u64(), Some(generates.len() as u64));
    let rows = summary["rows"].as_array().expect("rows");
    let total: u64 = rows.iter().map(|r| r["count"].as_u64().unwrap_or(0)).sum();
    assert_eq!(total, generates.len() as u64);
    let count = |sig: &str, outcome: &str| {
        rows.iter()
            .filter(|r| r["signal"]["name"] == sig && r["outcome"] == outcome)
            .map(|r| r["count"].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    assert_eq!(count("SIGUSR1", "handled"), 2, "{summary}");
    assert_eq!(count("SIGUSR2", "ignored"), 3, "{summary}");
    // The text table too.
    let out = Command::new(sigtrace_bin())
        .args([
            "--summary-only",
            "--",
            "sh",
            "-c",
            "trap '' USR2; kill -USR2 $$",
        ])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.contains("SIGUSR2")
            && l.contains("ignored")
            && l.trim_start().starts_with('1')),
        "{text}"
    );
    assert!(
        !text.contains("SI_USER"),
        "no per-event lines with --summary-only: {text}"
    );
}

#[test]
fn losses_are_counted_exactly() {
    if !bpf_allowed("losses_are_counted_exactly") {
        return;
    }
    // Exits of other tests' processes can pass its kernel-side gate and count as lost.
    let _alone = alone();
    const N: u64 = 20_000;
    let mut a = Agent::start("sigt-storm");
    let trace = Trace::start(&[
        "--format",
        "json",
        "--ring-size",
        "4K",
        "--pid",
        &a.pid().to_string(),
    ]);
    a.say(&format!("storm {N}"), "stormed");
    std::thread::sleep(Duration::from_millis(300));
    let (status, out, err) = trace.stop_with(Signal::SIGINT);
    assert_eq!(
        status.code(),
        Some(3),
        "lost events → exit 3; stderr {err:?}"
    );
    let records: Vec<Value> = out
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let received = records
        .iter()
        .filter(|r| {
            (r["type"] == "generate" || r["type"] == "deliver") && signal_name(r) == "SIGUSR1"
        })
        .count() as u64;
    let losses = of_type(&records, "loss");
    assert!(!losses.is_empty(), "a loss record in the stream");
    let total_lost = losses
        .last()
        .and_then(|l| l["total_lost"].as_u64())
        .expect("total");
    let sum_lost: u64 = losses.iter().filter_map(|l| l["lost"].as_u64()).sum();
    assert_eq!(sum_lost, total_lost);
    assert!(total_lost > 0);
    // Each kill(2) to itself is one generate and one deliver record: nothing unaccounted.
    assert_eq!(
        received + total_lost,
        2 * N,
        "received {received} + lost {total_lost}"
    );
    let summary_line = err
        .iter()
        .find(|l| l.contains(" lost"))
        .expect("totals on stderr");
    assert!(
        summary_line.contains(&format!("{total_lost} lost")),
        "{summary_line}"
    );
}

#[test]
fn sigaction_history_in_order() {
    if !bpf_allowed("sigaction_history_in_order") {
        return;
    }
    let _beside = beside_others();
    let (status, records, err) =
        launch(&["--", "sh", "-c", "trap : USR1; trap - USR1; trap '' USR1"]);
    assert_eq!(status, Some(0), "{err}");
    let changes: Vec<(&str, &str)> = of_type(&records, "sigaction")
        .into_iter()
        .filter(|r| signal_name(r) == "SIGUSR1")
        .map(|r| {
            (
                r["old"]["action"].as_str().unwrap_or(""),
                r["new"]["action"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("default", "caught"),
            ("caught", "default"),
            ("default", "ignored")
        ],
        "{records:#?}"
    );
}

#[test]
fn output_file_appends_and_time_modes() {
    if !bpf_allowed("output_file_appends_and_time_modes") {
        return;
    }
    let _beside = beside_others();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("trace.jsonl");
    std::fs::write(&path, "previous line\n").expect("seed");
    let status = Command::new(sigtrace_bin())
        .args(["--format", "json", "-o"])
        .arg(&path)
        .args(["--", "sh", "-c", "trap '' USR2; kill -USR2 $$"])
        .stderr(Stdio::null())
        .status()
        .expect("run");
    assert!(status.success());
    let text = std::fs::read_to_string(&path).expect("read");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("previous line"));
    let rest: Vec<Value> = lines
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let g = of_type(&rest, "generate");
    assert!(g.iter().any(|r| signal_name(r) == "SIGUSR2"));
    let time = g[0]["time"].as_str().expect("time");
    assert!(
        time.ends_with('Z') && time.contains('T'),
        "RFC 3339: {time}"
    );
    assert!(g[0]["mono_ns"].as_u64().is_some());

    let text_of = |flag: &str| {
        let out = Command::new(sigtrace_bin())
            .args([flag, "--", "sh", "-c", "trap '' USR2; kill -USR2 $$"])
            .output()
            .expect("run");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.contains("SIGUSR2") && l.contains("SI_USER"))
            .map(str::to_string)
            .expect("event line")
    };
    let relative = text_of("-r");
    assert!(relative.trim_start().starts_with("0."), "{relative}");
    let none = text_of("--no-time");
    assert!(none.starts_with("SIGUSR2"), "{none}");
}

/// Regression: with --sender, another sender's signal to the same target must not let its
/// delivery through, and the victim's exit must still be reported (the story's wrapper).
/// `-o` creates the file 0600 (events name every user's processes) and, in a directory
/// anyone can write to, refuses a symbolic link someone planted there — before loading
/// anything.
#[test]
fn output_file_is_private_and_planted_links_are_refused() {
    if !bpf_allowed("output_file_is_private_and_planted_links_are_refused") {
        return;
    }
    let _beside = beside_others();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("new.jsonl");
    let status = Command::new(sigtrace_bin())
        .args(["--format", "json", "-o"])
        .arg(&path)
        .args(["--", "true"])
        .stderr(Stdio::null())
        .status()
        .expect("run");
    assert!(status.success());
    let mode = std::fs::metadata(&path).expect("stat").mode() & 0o777;
    assert_eq!(mode, 0o600, "mode {mode:o}");

    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "untouched\n").expect("victim");
    let link = dir.path().join("planted.jsonl");
    std::os::unix::fs::symlink(&victim, &link).expect("symlink");
    let out = Command::new(sigtrace_bin())
        .args(["--format", "json", "-o"])
        .arg(&link)
        .args(["--", "true"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("refusing to follow it"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&victim).expect("read"),
        "untouched\n"
    );
}

#[test]
fn sender_filter_keeps_its_victims_deliveries_and_exit_only() {
    if !bpf_allowed("sender_filter_keeps_its_victims_deliveries_and_exit_only") {
        return;
    }
    let _beside = beside_others();
    let mut a = Agent::start("sigt-sender");
    let mut victim = perl(TRAP_PERL);
    victim.process_group(0);
    let mut victim = spawn_ready(&mut victim);
    let pv = victim.pid();
    let mut trace = Trace::start(&["--format", "json", "--sender", &a.pid().to_string()]);
    let mut seen = Vec::new();
    a.kill("USR1", pv);
    victim.wait_line("got USR1", WAIT);
    send(pv, Signal::SIGUSR1); // not from the sender: neither it nor its delivery
    victim.wait_line("got USR1", WAIT);
    a.kill("TERM", pv);
    victim.wait_exit(WAIT);
    trace.wait_for(&mut seen, WAIT, |r| {
        r["type"] == "exit" && r["task"]["pid"] == pv
    });
    let records = trace.stop_json(seen);
    let usr1_deliveries = of_type(&records, "deliver")
        .into_iter()
        .filter(|r| signal_name(r) == "SIGUSR1" && r["task"]["pid"] == pv)
        .count();
    assert_eq!(usr1_deliveries, 1, "{records:#?}");
    assert_eq!(
        of_type(&records, "generate")
            .iter()
            .filter(|r| r["target"]["pid"] == pv)
            .count(),
        2,
        "USR1 and TERM from the sender"
    );
    let exit = of_type(&records, "exit")
        .into_iter()
        .find(|r| r["task"]["pid"] == pv)
        .expect("exit");
    assert_eq!(exit["status"]["signal"]["name"], "SIGTERM");
}

#[test]
fn sender_filter_shows_the_senders_own_exit() {
    if !bpf_allowed("sender_filter_shows_the_senders_own_exit") {
        return;
    }
    let _beside = beside_others();
    let mut a = Agent::start("sigt-sendexit");
    let pa = a.pid();
    let mut victim = spawn_ready(&mut perl(TRAP_PERL));
    let mut trace = Trace::start(&["--format", "json", "--sender", &pa.to_string()]);
    let mut seen = Vec::new();
    a.kill("USR1", victim.pid());
    victim.wait_line("got USR1", WAIT);
    // Nobody signals the sender: it ends on its own when its stdin closes.
    drop(a.proc.child.stdin.take());
    assert!(a.proc.wait_exit(WAIT).success());
    trace.wait_for(&mut seen, WAIT, |r| {
        r["type"] == "exit" && r["task"]["pid"] == pa
    });
    let records = trace.stop_json(seen);
    let exit = of_type(&records, "exit")
        .into_iter()
        .find(|r| r["task"]["pid"] == pa)
        .expect("exit");
    assert_eq!(exit["status"]["kind"], "exited", "{exit}");
}

/// Spawns a helper (`spawn`) with pid `pid`, pointing the kernel's next pid there through
/// /proc/sys/kernel/ns_last_pid (root); retries while other processes take it first.
fn spawn_with_pid(pid: i32, spawn: impl Fn() -> Owned) -> Owned {
    for _ in 0..100 {
        set_last_pid(pid - 1);
        let helper = spawn();
        if helper.pid() == pid {
            return helper;
        }
    }
    panic!("could not start a process with pid {pid}");
}

/// Spawns a helper (`spawn`) with the first pid of a block of its own ([`free_pid_block`]),
/// as [`spawn_with_pid`] does; when something else takes that pid first (any process or
/// thread started meanwhile, which may well live on), it tries another free block.
fn spawn_in_free_block(spawn: impl Fn() -> Owned) -> Owned {
    for _ in 0..100 {
        let block = free_pid_block();
        set_last_pid(block - 1);
        let helper = spawn();
        if helper.pid() == block {
            return helper;
        }
    }
    panic!("could not start a process at the start of a free block of pids");
}

fn set_last_pid(pid: i32) {
    std::fs::write("/proc/sys/kernel/ns_last_pid", pid.to_string())
        .expect("write /proc/sys/kernel/ns_last_pid (needs root)");
}

/// The first of 8 consecutive free pids, 8-aligned, well above the ones in use: a block of
/// its own in the kernel side's one-byte-per-8-tgids gate.
fn free_pid_block() -> i32 {
    let read = |path: &str| -> i32 {
        std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let pid_max = read("/proc/sys/kernel/pid_max");
    let mut block = (read("/proc/sys/kernel/ns_last_pid") + 4096) & !7;
    for _ in 0..10_000 {
        // The test moves the next pid to block + 64 afterwards: that must exist too.
        if block + 72 >= pid_max {
            block = 4096;
        }
        if (block..block + 8).all(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()) {
            return block;
        }
        block += 8;
    }
    panic!("no free block of 8 pids below {pid_max}");
}

/// A --pid process that exits leaves the filter: a later process that gets the same pid is
/// not traced.
#[test]
fn an_exited_pid_leaves_the_filter() {
    if !bpf_allowed("an_exited_pid_leaves_the_filter") {
        return;
    }
    // It points the machine's next pid at the one it needs: a process, or a thread of this
    // test binary, that another test started meanwhile could take it.
    let _alone = alone();
    let mut first = spawn_ready(&mut perl(TRAP_PERL));
    let pid = first.pid();
    let mut trace = Trace::start(&["--format", "json", "--pid", &pid.to_string()]);
    let mut seen = Vec::new();
    first.signal(Signal::SIGUSR1);
    first.wait_line("got USR1", WAIT);
    first.signal(Signal::SIGTERM);
    first.wait_exit(WAIT);
    trace.wait_for(&mut seen, WAIT, |r| {
        r["type"] == "exit" && r["task"]["pid"] == pid
    });
    // The filter is updated right after the exit record is written.
    std::thread::sleep(Duration::from_millis(100));
    let mut successor = spawn_with_pid(pid, || spawn_ready(&mut perl(TRAP_PERL)));
    successor.signal(Signal::SIGUSR1);
    successor.wait_line("got USR1", WAIT);
    // Long enough for a record to come through the 25 ms poll had it been kept.
    std::thread::sleep(Duration::from_millis(300));
    let records = trace.stop_json(seen);
    let usr1_generates = of_type(&records, "generate")
        .into_iter()
        .filter(|g| g["target"]["pid"] == pid && signal_name(g) == "SIGUSR1")
        .count();
    assert_eq!(
        usr1_generates, 1,
        "only the first process's SIGUSR1: {records:#?}"
    );
}

/// A fatal signal reaches every thread as SIGKILL, so no delivery of the signal itself takes
/// the kept generation's count: the exit must, or a later process given the same pid lets
/// a delivery through whose generation no filter kept.
#[test]
fn a_fatal_signals_pass_dies_with_its_target() {
    if !bpf_allowed("a_fatal_signals_pass_dies_with_its_target") {
        return;
    }
    // It points the machine's next pid at the one it needs (see an_exited_pid_leaves_the_filter).
    let _alone = alone();
    let mut sender = Agent::start("sigt-fatal");
    let mut first = spawn_ready(&mut perl("$| = 1; print \"ready\\n\"; sleep 1 while 1;"));
    let pid = first.pid();
    let mut trace = Trace::start(&[
        "--format",
        "json",
        "--sender",
        &sender.pid().to_string(),
        "--signal",
        "TERM",
    ]);
    let mut seen = Vec::new();
    sender.kill("TERM", pid);
    first.wait_exit(WAIT);
    trace.wait_for(&mut seen, WAIT, |r| {
        r["type"] == "exit" && r["task"]["pid"] == pid
    });
    // Another process with the same pid (and so the same open gate byte) catches a SIGTERM
    // that this test, not the sender, sends: neither its generation nor its delivery passes.
    let mut successor = spawn_with_pid(pid, || {
        spawn_ready(&mut perl(
            "$| = 1; $SIG{TERM} = sub { print \"got TERM\\n\" }; print \"ready\\n\"; sleep 1 while 1;",
        ))
    });
    successor.signal(Signal::SIGTERM);
    successor.wait_line("got TERM", WAIT);
    // Long enough for a record to come through the 25 ms poll had it been kept.
    std::thread::sleep(Duration::from_millis(300));
    let records = trace.stop_json(seen);
    let term_deliveries = of_type(&records, "deliver")
        .into_iter()
        .filter(|d| d["task"]["pid"] == pid && signal_name(d) == "SIGTERM")
        .count();
    assert_eq!(term_deliveries, 0, "{records:#?}");
}

/// perl: USR1 blocked and caught; after "ready", a line on stdin unblocks it and exits 0.
const BLOCKS_USR1: &str = r#"use POSIX; $| = 1; $SIG{USR1} = sub { print "got USR1\n" };
my $set = POSIX::SigSet->new(SIGUSR1); sigprocmask(SIG_BLOCK, $set);
print "ready\n"; my $line = <STDIN>; sigprocmask(SIG_UNBLOCK, $set); exit 0;"#;

/// A `sleep SECONDS` of ours.
fn sleep(seconds: &str) -> Owned {
    Owned::from_child(
        Command::new("sleep")
            .arg(seconds)
            .spawn()
            .expect("spawn sleep"),
    )
}

fn exit_of(records: &[Value], pid: i32) -> Option<&Value> {
    of_type(records, "exit")
        .into_iter()
        .find(|r| r["task"]["pid"] == pid)
}

/// Without filters, the exits shown are those of processes that were signalled — also when
/// all sigtrace saw was the delivery of a signal sent before it started — and with
/// --all-exits every exit. (The kernel side drops the others before they reach the ring.)
#[test]
fn system_wide_exits_are_the_signalled_ones_unless_all_exits() {
    if !bpf_allowed("system_wide_exits_are_the_signalled_ones_unless_all_exits") {
        return;
    }
    // It traces the whole machine: another test's storm would overflow its ring.
    let _alone = alone();
    // Alone in its gate block, so only its own delivery can open the gate for its exit.
    let mut late =
        spawn_in_free_block(|| spawn_ready_keep_stdin(perl(BLOCKS_USR1).stdin(Stdio::piped())));
    set_last_pid(late.pid() + 64);
    late.signal(Signal::SIGUSR1); // pending: generated before the trace starts
    let mut trace = Trace::start(&["--format", "json"]);
    let mut seen = Vec::new();

    let mut quiet = sleep("0.05");
    assert!(quiet.wait_exit(WAIT).success());
    writeln!(late.child.stdin.as_mut().expect("stdin"), "go").expect("write");
    late.wait_line("got USR1", WAIT);
    assert!(late.wait_exit(WAIT).success());
    let mut killed = sleep("30");
    killed.signal(Signal::SIGTERM);
    killed.wait_exit(WAIT);
    // Records come out in the order they were written: the killed one's exit is last.
    trace.wait_for(&mut seen, WAIT, |r| {
        r["type"] == "exit" && r["task"]["pid"] == killed.pid()
    });
    let records = trace.stop_json(seen);
    assert!(
        exit_of(&records, late.pid()).is_some(),
        "the exit of a process whose delivery was traced: {records:#?}"
    );
    assert!(
        exit_of(&records, quiet.pid()).is_none(),
        "an unsignalled process's exit is not shown without --all-exits"
    );

    let mut trace = Trace::start(&["--format", "json", "--all-exits"]);
    let mut seen = Vec::new();
    let mut quiet = sleep("0.05");
    assert!(quiet.wait_exit(WAIT).success());
    trace.wait_for(&mut seen, WAIT, |r| {
        r["type"] == "exit" && r["task"]["pid"] == quiet.pid()
    });
    let records = trace.stop_json(seen);
    assert_eq!(
        exit_of(&records, quiet.pid()).expect("exit")["status"]["code"],
        0
    );
}
