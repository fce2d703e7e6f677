//! End-to-end: a signal landing in a blocked system call. Each delivery names the call and
//! what the process sees of it: EINTR, a transparent restart, or restart_syscall.

use std::{
    thread,
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::util::*;

const WAIT: Duration = Duration::from_secs(10);

/// Waits until process `pid` is blocked in syscall `nr` (x86_64 numbers), as
/// /proc/PID/syscall shows: a signal sent earlier would find it elsewhere.
fn wait_blocked_in(pid: i32, nr: u32) {
    let deadline = Instant::now() + scaled(WAIT);
    let path = format!("/proc/{pid}/syscall");
    loop {
        let now = std::fs::read_to_string(&path).unwrap_or_default();
        if now.split_whitespace().next() == Some(&nr.to_string()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{pid} not blocked in syscall {nr}: {now:?}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// The `syscall` object of the delivery of `sig` to `pid` (the nth such delivery).
fn syscall_of<'a>(records: &'a [Value], pid: i32, sig: &str, nth: usize) -> &'a Value {
    let deliveries: Vec<&Value> = of_type(records, "deliver")
        .into_iter()
        .filter(|r| r["task"]["pid"] == pid && signal_name(r) == sig)
        .collect();
    let d = deliveries
        .get(nth)
        .unwrap_or_else(|| panic!("no delivery #{nth} of {sig} to {pid} in {records:#?}"));
    &d["syscall"]
}

const NR_READ: u32 = 0;
const NR_PAUSE: u32 = 34;
const NR_RT_SIGSUSPEND: u32 = 130;
const NR_CLOCK_NANOSLEEP: u32 = 230;

/// perl, blocked in read(2) on a pipe nobody writes to: first with a SIGUSR1 handler
/// without SA_RESTART (the read fails: it prints the error), then with SA_RESTART (the read
/// goes on), then killed by SIGTERM in that read.
const READ_PERL: &str = r#"
use POSIX; $| = 1;
pipe(my $r, my $w);
sub catch { POSIX::sigaction(SIGUSR1, POSIX::SigAction->new(sub { print "got\n" }, POSIX::SigSet->new, $_[0])) }
catch(0);
print "ready\n";
my $n = sysread($r, my $buf, 1);
print defined $n ? "read $n\n" : "read failed: $!\n";
catch(SA_RESTART);
print "again\n";
$n = sysread($r, $buf, 1);
print "read returned\n";
"#;

#[test]
fn a_read_fails_with_eintr_without_sa_restart_and_goes_on_with_it() {
    if !bpf_allowed("a_read_fails_with_eintr_without_sa_restart_and_goes_on_with_it") {
        return;
    }
    let _beside = beside_others();
    let mut reader = spawn_ready(&mut perl(READ_PERL));
    let pid = reader.pid();
    let mut trace = Trace::start(&["--format", "json", "--pid", &pid.to_string()]);
    let mut seen = Vec::new();

    wait_blocked_in(pid, NR_READ);
    reader.signal(Signal::SIGUSR1);
    reader.wait_line("read failed: Interrupted system call", WAIT);
    reader.wait_line("again", WAIT);
    wait_blocked_in(pid, NR_READ);
    reader.signal(Signal::SIGUSR1);
    reader.wait_line("got", WAIT);
    // Still in the same read, restarted.
    wait_blocked_in(pid, NR_READ);
    reader.signal(Signal::SIGTERM);
    reader.wait_exit(WAIT);
    trace.wait_for(&mut seen, WAIT, |r| {
        r["type"] == "exit" && r["task"]["pid"] == pid
    });
    let records = trace.stop_json(seen);

    let read = |code: &str, result: &str| {
        serde_json::json!({
            "number": NR_READ, "name": "read", "abi": "x86_64", "code": code, "result": result
        })
    };
    assert_eq!(
        *syscall_of(&records, pid, "SIGUSR1", 0),
        read("ERESTARTSYS", "EINTR")
    );
    assert_eq!(
        *syscall_of(&records, pid, "SIGUSR1", 1),
        read("ERESTARTSYS", "restarted")
    );
    // SIGTERM's default action: the kernel delivers SIGKILL, and the read never returns.
    assert_eq!(
        *syscall_of(&records, pid, "SIGKILL", 0),
        read("ERESTARTSYS", "never returns")
    );
}

#[test]
fn text_marks_the_interrupted_call() {
    if !bpf_allowed("text_marks_the_interrupted_call") {
        return;
    }
    let _beside = beside_others();
    let mut reader = spawn_ready(&mut perl(READ_PERL));
    let pid = reader.pid();
    let trace = Trace::start(&["--no-time", "--pid", &pid.to_string()]);
    wait_blocked_in(pid, NR_READ);
    reader.signal(Signal::SIGUSR1);
    reader.wait_line("again", WAIT);
    wait_blocked_in(pid, NR_READ);
    reader.signal(Signal::SIGUSR1);
    reader.wait_line("got", WAIT);
    // Its delivery is the last record: give it time to be read before stopping.
    thread::sleep(scaled(Duration::from_millis(300)));
    let (status, lines, err) = trace.stop_with(Signal::SIGINT);
    assert!(status.success(), "{err:?}");
    let eintr = lines.iter().filter(|l| l.contains("↯ EINTR read")).count();
    assert_eq!(eintr, 1, "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("  ↳ SIGUSR1") && l.ends_with("↯ restarted read")),
        "{lines:#?}"
    );
}

/// perl with a SIGUSR1 handler, blocked in turn in clock_nanosleep (sleep), pause and
/// sigsuspend: each call fails with EINTR whatever SA_RESTART says.
const SLEEPS_PERL: &str = r#"
use POSIX; $| = 1;
POSIX::sigaction(SIGUSR1, POSIX::SigAction->new(sub { print "got\n" }, POSIX::SigSet->new, SA_RESTART));
print "ready\n";
sleep 60;
print "slept\n";
POSIX::pause();
print "paused\n";
POSIX::sigsuspend(POSIX::SigSet->new);
print "suspended\n";
sleep 60;
"#;

#[test]
fn sleeps_pause_and_sigsuspend_end_with_eintr_and_a_stop_restarts_them() {
    if !bpf_allowed("sleeps_pause_and_sigsuspend_end_with_eintr_and_a_stop_restarts_them") {
        return;
    }
    let _beside = beside_others();
    let mut sleeper = spawn_ready(&mut perl(SLEEPS_PERL));
    let pid = sleeper.pid();
    let mut trace = Trace::start(&["--format", "json", "--pid", &pid.to_string()]);
    let mut seen = Vec::new();

    for (nr, next) in [
        (NR_CLOCK_NANOSLEEP, "slept"),
        (NR_PAUSE, "paused"),
        (NR_RT_SIGSUSPEND, "suspended"),
    ] {
        wait_blocked_in(pid, nr);
        sleeper.signal(Signal::SIGUSR1);
        sleeper.wait_line(next, WAIT);
    }
    // Stopped and continued in a sleep: no handler runs, the sleep resumes through
    // restart_syscall for the time left.
    wait_blocked_in(pid, NR_CLOCK_NANOSLEEP);
    sleeper.signal(Signal::SIGSTOP);
    trace.wait_for(&mut seen, WAIT, |r| {
        r["type"] == "deliver" && signal_name(r) == "SIGSTOP"
    });
    sleeper.signal(Signal::SIGCONT);
    sleeper.signal(Signal::SIGKILL);
    sleeper.wait_exit(WAIT);
    trace.wait_for(&mut seen, WAIT, |r| {
        r["type"] == "exit" && r["task"]["pid"] == pid
    });
    let records = trace.stop_json(seen);

    for (nth, (nr, name, code)) in [
        (
            NR_CLOCK_NANOSLEEP,
            "clock_nanosleep",
            "ERESTART_RESTARTBLOCK",
        ),
        (NR_PAUSE, "pause", "ERESTARTNOHAND"),
        (NR_RT_SIGSUSPEND, "rt_sigsuspend", "ERESTARTNOHAND"),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(
            *syscall_of(&records, pid, "SIGUSR1", nth),
            serde_json::json!({
                "number": nr, "name": name, "abi": "x86_64", "code": code, "result": "EINTR"
            }),
            "{name}"
        );
    }
    assert_eq!(
        *syscall_of(&records, pid, "SIGSTOP", 0),
        serde_json::json!({
            "number": NR_CLOCK_NANOSLEEP, "name": "clock_nanosleep", "abi": "x86_64",
            "code": "ERESTART_RESTARTBLOCK", "result": "restart_syscall"
        })
    );
}
