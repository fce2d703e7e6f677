//! End-to-end: who really sent a signal. A timer's signal is raised by an interrupt while
//! whatever task happened to run is `current`; sigtrace must name the kernel (and the kind
//! of timer), never that task, even on a machine busy with other processes.

use std::{process::Command, time::Duration};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::util::*;

const WAIT: Duration = Duration::from_secs(10);

/// perl: once sent SIGUSR2, arms an interval timer (ualarm: SIGALRM) and a POSIX timer
/// (timer_create(CLOCK_MONOTONIC) with SIGEV_SIGNAL, SIGUSR1; by syscall number, as perl
/// has no binding), waits for both and prints "fired".
const TIMERS_PERL: &str = r#"
use Time::HiRes qw(ualarm); $| = 1;
my ($go, $alrm, $usr1) = (0, 0, 0);
$SIG{USR2} = sub { $go = 1 }; $SIG{ALRM} = sub { $alrm++ }; $SIG{USR1} = sub { $usr1++ };
print "ready\n";
select(undef, undef, undef, 0.02) until $go;
ualarm(200_000);
my $event = pack("Q i i x48", 0, 10, 0);
my $timer = pack("i", 0);
syscall(222, 1, $event, $timer) == 0 or die "timer_create: $!";
my ($id, $when, $none) = (unpack("i", $timer), pack("q4", 0, 0, 0, 300_000_000), 0);
syscall(223, $id, $none, $when, $none) == 0 or die "timer_settime: $!";
select(undef, undef, undef, 0.02) until $alrm && $usr1;
print "fired\n";
sleep 60;
"#;

/// Two processes that keep both CPUs of a small machine busy in user code, so that a
/// timer interrupt mostly stops one of them.
fn busy_loops() -> Vec<Owned> {
    (0..2)
        .map(|_| spawn_ready(&mut perl(r#"$| = 1; print "ready\n"; 1 while 1;"#)))
        .collect()
}

fn generation<'a>(records: &'a [Value], pid: i32, sig: &str) -> &'a Value {
    of_type(records, "generate")
        .into_iter()
        .find(|r| r["target"]["pid"] == pid && signal_name(r) == sig)
        .unwrap_or_else(|| panic!("no {sig} to {pid} in {records:#?}"))
}

#[test]
fn timers_are_sent_by_the_kernel_not_by_the_task_they_interrupt() {
    if !bpf_allowed("timers_are_sent_by_the_kernel_not_by_the_task_they_interrupt") {
        return;
    }
    // Two busy loops would slow every other test down.
    let _alone = alone();
    let busy = busy_loops();
    let mut target = spawn_ready(&mut perl(TIMERS_PERL));
    let pid = target.pid();
    let mut trace = Trace::start(&["--format", "json", "--summary", "--pid", &pid.to_string()]);
    // A second trace of the busy loops as senders: a timer that interrupts one of them is
    // none of theirs.
    let busy_pids: Vec<String> = busy.iter().map(|b| b.pid().to_string()).collect();
    let mut by_busy = Command::new(sigtrace_bin());
    by_busy.args(["--format", "json"]);
    for p in &busy_pids {
        by_busy.args(["--sender", p]);
    }
    let busy_trace = Trace::start_with(&mut by_busy);
    let mut seen = Vec::new();

    target.signal(Signal::SIGUSR2);
    target.wait_line("fired", WAIT);
    trace.wait_for(&mut seen, WAIT, |r| {
        r["type"] == "deliver" && r["task"]["pid"] == pid && signal_name(r) == "SIGUSR1"
    });
    trace.wait_for(&mut seen, WAIT, |r| {
        r["type"] == "deliver" && r["task"]["pid"] == pid && signal_name(r) == "SIGALRM"
    });
    let records = trace.stop_json(seen);
    let from_busy = busy_trace.stop_json(Vec::new());
    drop(busy);

    // The test's own kill: a task sent it.
    let usr2 = generation(&records, pid, "SIGUSR2");
    assert_eq!(usr2["sender_context"], "task");
    assert_eq!(usr2["sender"]["pid"], std::process::id());
    assert_eq!(usr2["interrupted"], Value::Null);

    let alarm = generation(&records, pid, "SIGALRM");
    let posix = generation(&records, pid, "SIGUSR1");
    assert_eq!(posix["code"]["name"], "SI_TIMER");
    for (timer, kind) in [(alarm, "timer"), (posix, "posix timer")] {
        assert_eq!(timer["sender"], Value::Null, "{timer:#}");
        assert_eq!(timer["sender_context"], "interrupt", "{timer:#}");
        assert_eq!(timer["kernel_source"], kind, "{timer:#}");
        assert!(timer["interrupted"]["pid"].is_u64(), "{timer:#}");
        assert_eq!(timer["sender_cgroup"], Value::Null, "{timer:#}");
    }
    let summary = records.last().expect("a summary");
    let rows = summary["rows"].as_array().expect("rows");
    for (sender, sig) in [
        ("kernel (timer)", "SIGALRM"),
        ("kernel (posix timer)", "SIGUSR1"),
    ] {
        assert!(
            rows.iter()
                .any(|r| r["sender"] == sender && r["signal"]["name"] == sig),
            "{sender} {sig} in {rows:#?}"
        );
    }
    let timers_from_busy: Vec<&Value> = of_type(&from_busy, "generate")
        .into_iter()
        .filter(|r| r["target"]["pid"] == pid)
        .collect();
    assert!(timers_from_busy.is_empty(), "{timers_from_busy:#?}");
}

#[test]
fn text_names_the_kernel_as_a_timers_sender() {
    if !bpf_allowed("text_names_the_kernel_as_a_timers_sender") {
        return;
    }
    let _beside = beside_others();
    let mut target = spawn_ready(&mut perl(TIMERS_PERL));
    let pid = target.pid();
    let trace = Trace::start(&["--no-time", "--pid", &pid.to_string()]);
    target.signal(Signal::SIGUSR2);
    target.wait_line("fired", WAIT);
    std::thread::sleep(scaled(Duration::from_millis(300)));
    let (status, lines, err) = trace.stop_with(Signal::SIGINT);
    assert!(status.success(), "{err:?}");
    for expected in [
        format!("SIGALRM    kernel (timer) → perl[{pid}]  SI_KERNEL  delivered"),
        format!("SIGUSR1    kernel (posix timer) → perl[{pid}]  SI_TIMER  delivered"),
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(&expected)),
            "{expected:?} in {lines:#?}"
        );
    }
}

/// A process may queue a signal with SI_TIMER itself (rt_sigqueueinfo): it is still the
/// sender, not a timer.
#[test]
fn a_queued_si_timer_names_its_sender() {
    if !bpf_allowed("a_queued_si_timer_names_its_sender") {
        return;
    }
    let _beside = beside_others();
    let mut target = spawn_ready(&mut perl(TRAP_PERL));
    let pid = target.pid();
    let mut trace = Trace::start(&["--format", "json", "--target", &pid.to_string()]);
    let mut seen = Vec::new();
    // siginfo: si_signo, si_errno, si_code = SI_TIMER (-2), zeros to its 128 bytes.
    let sender = spawn_ready(perl(
        r#"$| = 1; my $info = pack("l l l", 10, 0, -2) . ("\0" x 116); my ($target, $sig) = ($ARGV[0] + 0, 10); syscall(129, $target, $sig, $info) == 0 or die "rt_sigqueueinfo: $!"; print "ready\n"; sleep 60;"#,
    ).arg(pid.to_string()));
    target.wait_line("got USR1", WAIT);
    trace.wait_for(&mut seen, WAIT, |r| {
        r["type"] == "generate" && signal_name(r) == "SIGUSR1"
    });
    let records = trace.stop_json(seen);
    let queued = generation(&records, pid, "SIGUSR1");
    assert_eq!(queued["code"]["name"], "SI_TIMER");
    assert_eq!(queued["sender_context"], "task", "{queued:#}");
    assert_eq!(queued["sender"]["pid"], sender.pid(), "{queued:#}");
    assert_eq!(queued["via"], "sigqueue", "{queued:#}");
    assert_eq!(queued["kernel_source"], Value::Null, "{queued:#}");
}
