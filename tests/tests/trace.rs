//! End-to-end: the foundation. Real BPF, real processes this test spawned, real signals.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::util::*;

const WAIT: Duration = Duration::from_secs(10);

fn generate_for<'a>(records: &'a [Value], target: i32, sig: &str) -> Option<&'a Value> {
    of_type(records, "generate")
        .into_iter()
        .find(|r| r["target"]["pid"] == target && signal_name(r) == sig)
}

#[test]
fn usr1_usr2_term_to_a_helper() {
    if !bpf_allowed("usr1_usr2_term_to_a_helper") {
        return;
    }
    let _beside = beside_others();
    let mut helper = spawn_ready(&mut perl(TRAP_PERL));
    let pid = helper.pid();
    let mut trace = Trace::start(&["--format", "json", "--pid", &pid.to_string()]);
    let mut seen = Vec::new();

    helper.signal(Signal::SIGUSR1);
    helper.wait_line("got USR1", WAIT);
    helper.signal(Signal::SIGUSR2);
    trace.wait_for(&mut seen, WAIT, |r| {
        r["type"] == "generate" && signal_name(r) == "SIGUSR2"
    });
    helper.signal(Signal::SIGTERM);
    helper.wait_exit(WAIT);
    trace.wait_for(&mut seen, WAIT, |r| {
        r["type"] == "exit" && r["task"]["pid"] == pid
    });
    let records = trace.stop_json(seen);

    let me = std::process::id();
    for sig in ["SIGUSR1", "SIGUSR2", "SIGTERM"] {
        let g = generate_for(&records, pid, sig)
            .unwrap_or_else(|| panic!("no {sig} generate in {records:#?}"));
        assert_eq!(g["sender"]["pid"], me, "{sig} sender");
        assert_eq!(g["target"]["pid"], pid, "{sig} target");
        assert_eq!(g["code"]["name"], "SI_USER");
    }
    let usr2 = generate_for(&records, pid, "SIGUSR2").expect("usr2");
    assert_eq!(usr2["result"]["name"], "ignored");
    assert_eq!(usr2["result"]["number"], 1);
    assert_eq!(usr2["disposition"]["action"], "ignored");

    let deliveries = of_type(&records, "deliver");
    let usr1 = deliveries
        .iter()
        .find(|r| signal_name(r) == "SIGUSR1" && r["task"]["pid"] == pid)
        .expect("SIGUSR1 delivery");
    assert_eq!(usr1["disposition"]["action"], "caught");
    let address = usr1["disposition"]["handler"]
        .as_str()
        .expect("handler address");
    assert!(address.starts_with("0x") && address.len() > 3, "{address}");
    assert_eq!(usr1["outcome"], "handled");

    // A fatal default action is delivered as SIGKILL to every thread; the cause is SIGTERM.
    let term = deliveries
        .iter()
        .find(|r| {
            r["task"]["pid"] == pid
                && (signal_name(r) == "SIGTERM" || r["cause"]["name"] == "SIGTERM")
        })
        .expect("SIGTERM delivery");
    assert_eq!(term["disposition"]["action"], "default");
    assert_eq!(term["outcome"], "terminated");
    let exit = of_type(&records, "exit")
        .into_iter()
        .find(|r| r["task"]["pid"] == pid)
        .expect("exit");
    assert_eq!(exit["status"]["kind"], "killed");
    assert_eq!(exit["status"]["signal"]["name"], "SIGTERM");
}

/// aya's TracePoint needs tracefs; our raw tracepoints must not. In a private mount
/// namespace every tracefs is unmounted, and debugfs and the tracefs mount point are covered
/// with empty tmpfs: on systemd machines debugfs sits at /sys/kernel/debug, and merely
/// looking at its `tracing` directory automounts a fresh tracefs.
#[test]
fn works_without_tracefs() {
    if !bpf_allowed("works_without_tracefs") {
        return;
    }
    let _beside = beside_others();
    let helper = spawn_ready(&mut perl(TRAP_PERL));
    let pid = helper.pid().to_string();
    let script = format!(
        "for m in /sys/kernel/debug/tracing /sys/kernel/tracing; do umount -l $m 2>/dev/null; done; \
         mount -t tmpfs none /sys/kernel/debug && mount -t tmpfs none /sys/kernel/tracing || exit 98; \
         if grep -q ' - tracefs ' /proc/self/mountinfo; then echo 'tracefs still mounted' >&2; exit 99; fi; \
         exec {} --format json --pid {pid}",
        sigtrace_bin().display()
    );
    let mut trace = Trace::start_with(Command::new("unshare").args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
    ]));
    let mut seen = Vec::new();
    helper.signal(Signal::SIGUSR2);
    trace.wait_for(&mut seen, WAIT, |r| {
        r["type"] == "generate" && signal_name(r) == "SIGUSR2"
    });
    let records = trace.stop_json(seen);
    assert!(generate_for(&records, helper.pid(), "SIGUSR2").is_some());
}

/// A signal the kernel raises while sigtrace happens to be the current task (a timer
/// interrupt, or here SIGIO for a pipe's owner, sent in the writer's context as sigtrace
/// writes its own output) is not sigtrace's own and must be kept. Once, such signals were
/// dropped as "sent by sigtrace", and `--kernel-only` lost a timer's SIGALRM now and then
/// in slow guests.
#[test]
fn kernel_signals_raised_in_sigtraces_context_are_kept() {
    if !bpf_allowed("kernel_signals_raised_in_sigtraces_context_are_kept") {
        return;
    }
    let _beside = beside_others();
    use std::os::fd::AsRawFd;
    let helper = spawn_ready(&mut perl(
        r#"$| = 1; $SIG{IO} = sub { }; $SIG{USR1} = sub { }; print "ready\n"; sleep 1 while 1;"#,
    ));
    let pid = helper.pid();
    let (read_end, write_end) = std::io::pipe().expect("pipe");
    let fd = read_end.as_raw_fd();
    // SAFETY: plain fcntl calls on a pipe this test owns.
    unsafe {
        assert_eq!(libc::fcntl(fd, libc::F_SETOWN, pid), 0, "F_SETOWN");
        let flags = libc::fcntl(fd, libc::F_GETFL);
        assert_eq!(libc::fcntl(fd, libc::F_SETFL, flags | libc::O_ASYNC), 0);
    }
    let mut trace = Trace::start_writing_to(
        Command::new(sigtrace_bin()).args(["--format", "json", "--pid", &pid.to_string()]),
        write_end,
        read_end,
    );
    let mut seen = Vec::new();
    // Its record is sigtrace's first write to the pipe: SIGIO to the helper follows.
    helper.signal(Signal::SIGUSR1);
    trace.wait_for(&mut seen, WAIT, |r| {
        r["type"] == "generate" && signal_name(r) == "SIGIO" && r["target"]["pid"] == pid
    });
    let sigio = generate_for(&seen, pid, "SIGIO").expect("SIGIO record");
    assert_eq!(sigio["sender"]["pid"], trace.pid(), "{sigio}");
    drop(helper);
    trace.stop_json(seen);
}

#[test]
fn text_output_names_signal_result_and_disposition() {
    if !bpf_allowed("text_output_names_signal_result_and_disposition") {
        return;
    }
    let _beside = beside_others();
    let mut helper = spawn_ready(&mut perl(TRAP_PERL));
    let trace = Trace::start(&["--no-time", "--pid", &helper.pid().to_string()]);
    helper.signal(Signal::SIGUSR1);
    helper.wait_line("got USR1", WAIT);
    helper.signal(Signal::SIGUSR2);
    std::thread::sleep(Duration::from_millis(300));
    let (status, out, err) = trace.stop_with(Signal::SIGTERM);
    assert!(status.success(), "{err:?}");
    let text = out.join("\n");
    assert!(
        out.iter().any(|l| l.starts_with("SIGUSR1 ")
            && l.contains("delivered")
            && l.contains("handler 0x")),
        "{text}"
    );
    assert!(
        out.iter()
            .any(|l| l.starts_with("SIGUSR2 ") && l.contains("ignored") && l.contains("SIG_IGN")),
        "{text}"
    );
    assert!(
        out.iter()
            .any(|l| l.contains("↳ SIGUSR1") && l.contains("handled")),
        "{text}"
    );
    // Detaching reports what was seen and lost.
    assert!(err.iter().any(|l| l.contains("events, 0 lost")), "{err:?}");
}

/// Records the kernel side drops for a reason (an unreadable struct, a full table) are
/// reported after the loss count, on the final line and in the SIGUSR1 stats line, and only
/// when there are some. A run through every program (generate, deliver, rt_sigaction, exit)
/// drops none: both lines keep their plain form.
#[test]
fn drop_counts_are_reported_only_when_records_were_dropped() {
    if !bpf_allowed("drop_counts_are_reported_only_when_records_were_dropped") {
        return;
    }
    let _beside = beside_others();
    let script = r#"$| = 1; $SIG{USR1} = sub { $SIG{HUP} = 'IGNORE'; print "got USR1\n" }; print "ready\n"; sleep 1 while 1;"#;
    let mut helper = spawn_ready(&mut perl(script));
    let pid = helper.pid();
    let mut trace = Trace::start(&["--format", "json", "--sigaction", "--pid", &pid.to_string()]);
    let mut seen = Vec::new();
    helper.signal(Signal::SIGUSR1);
    helper.wait_line("got USR1", WAIT);
    trace.wait_for(&mut seen, WAIT, |r| r["type"] == "sigaction");
    helper.signal(Signal::SIGTERM);
    helper.wait_exit(WAIT);
    trace.wait_for(&mut seen, WAIT, |r| r["type"] == "exit");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(trace.pid()), Signal::SIGUSR1)
        .expect("signal the tracer");
    let stats = trace.wait_stderr("sigtrace: stats: ", WAIT);
    assert!(
        stats.contains(" lost 0 tables") && !stats.contains("dropped"),
        "{stats}"
    );
    let (status, _, err) = trace.stop_with(Signal::SIGINT);
    assert!(status.success(), "{err:?}");
    // The final line is exactly "N events, M lost": a drop would add "; dropped: ...".
    assert!(event_totals(&err).is_some(), "{err:?}");
    assert!(!err.iter().any(|l| l.contains("dropped")), "{err:?}");
}

#[test]
fn real_time_signals_are_named_like_kill_l() {
    if !bpf_allowed("real_time_signals_are_named_like_kill_l") {
        return;
    }
    let _beside = beside_others();
    let helper = spawn_ready(&mut perl(TRAP_PERL));
    let mut trace = Trace::start(&["--format", "json", "--pid", &helper.pid().to_string()]);
    let mut seen = Vec::new();
    // SIGRTMIN+3 (37) — its default action is Term, so this ends the helper. nix's Signal
    // has no real-time variants: kill(2) through libc.
    // SAFETY: plain kill(2) to our own child.
    unsafe { libc::kill(helper.pid(), 37) };
    trace.wait_for(&mut seen, WAIT, |r| {
        r["type"] == "generate" && signal_name(r) == "SIGRTMIN+3"
    });
    let records = trace.stop_json(seen);
    let g = generate_for(&records, helper.pid(), "SIGRTMIN+3").expect("rt generate");
    assert_eq!(g["signal"]["number"], 37);
}

#[test]
fn closed_pipe_ends_quietly_with_zero() {
    if !bpf_allowed("closed_pipe_ends_quietly_with_zero") {
        return;
    }
    let _beside = beside_others();
    let helper = spawn_ready(&mut perl(TRAP_PERL));
    // `head -1` closes the pipe after one line; sigtrace must then end with 0, quietly.
    let mut pipeline = Command::new("bash")
        .args([
            "-c",
            &format!(
                "set -o pipefail; {} --pid {} 2>/tmp/sigtrace-epipe.err | head -1; echo \"status=$?\"",
                sigtrace_bin().display(),
                helper.pid()
            ),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("pipeline");
    // Keep signalling (USR2 is ignored) until the pipeline ends.
    let deadline = std::time::Instant::now() + scaled(Duration::from_secs(20));
    while pipeline.try_wait().expect("try_wait").is_none() {
        assert!(std::time::Instant::now() < deadline, "pipeline did not end");
        helper.signal(Signal::SIGUSR2);
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut out = String::new();
    std::io::Read::read_to_string(pipeline.stdout.as_mut().expect("stdout"), &mut out).ok();
    assert!(out.contains("SIGUSR2"), "{out}");
    assert!(out.trim_end().ends_with("status=0"), "{out}");
    let err = std::fs::read_to_string("/tmp/sigtrace-epipe.err").unwrap_or_default();
    assert!(
        !err.contains("panicked") && !err.to_lowercase().contains("broken pipe"),
        "{err}"
    );
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let _beside = beside_others();
    // A pid that cannot exist (above pid_max).
    let out = Command::new(sigtrace_bin())
        .args(["--pid", "2147483000"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no such process"), "{err}");

    for args in [
        &["--signal", "FOO"][..],
        &["--ring-size", "3000"],
        &["--uid", "no-such-user-x"],
    ] {
        let out = Command::new(sigtrace_bin())
            .args(args)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn unprivileged_is_refused_clearly() {
    let _beside = beside_others();
    if !nix::unistd::geteuid().is_root() {
        // Already unprivileged: the refusal is what we get.
        let out = Command::new(sigtrace_bin()).output().expect("run");
        assert_eq!(out.status.code(), Some(2));
        return;
    }
    // Drop to nobody with no capabilities.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(sigtrace_bin())
        .output()
        .expect("setpriv");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("root") && err.contains("CAP_BPF"), "{err}");
}

/// Stopping the tracer leaves none of its programs loaded.
#[test]
fn stop_detaches_everything() {
    if !bpf_allowed("stop_detaches_everything") {
        return;
    }
    let _beside = beside_others();
    let trace = Trace::start(&["--pid", "1", "--signal", "USR1"]);
    // Our tracer's programs, from the prog_id of its BPF fds (other tests trace in parallel).
    let mut ids: Vec<u32> = std::fs::read_dir(format!("/proc/{}/fdinfo", trace.pid()))
        .expect("fdinfo")
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("prog_id:")
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert!(ids.len() >= 4, "expected our programs loaded, got {ids:?}");
    let (status, _, _) = trace.stop_with(Signal::SIGHUP);
    assert!(status.success());
    // The kernel frees programs after an RCU grace period: allow it a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let loaded: Vec<u32> = aya::programs::loaded_programs()
            .flatten()
            .map(|p| p.id())
            .collect();
        let left: Vec<_> = ids.iter().filter(|id| loaded.contains(id)).collect();
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still loaded after stop: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `name R runs, N ns/run` entries of the `--cost` line.
fn cost_entries(line: &str) -> Vec<(String, u64, u64)> {
    line.split_once("in-kernel cost: ")
        .map(|(_, list)| list)
        .unwrap_or_default()
        .split("; ")
        .filter_map(|entry| {
            let words: Vec<&str> = entry.split_whitespace().collect();
            match words.as_slice() {
                [name, runs, "runs,", ns, "ns/run"] => {
                    Some((name.to_string(), runs.parse().ok()?, ns.parse().ok()?))
                }
                _ => None,
            }
        })
        .collect()
}

#[test]
fn cost_counts_the_runs_of_each_program() {
    if !bpf_allowed("cost_counts_the_runs_of_each_program") {
        return;
    }
    let _beside = beside_others();
    let mut helper = spawn_ready(&mut perl(TRAP_PERL));
    // One line per event, as counted below: --no-fold.
    let trace = Trace::start(&["--cost", "--no-fold", "--pid", &helper.pid().to_string()]);
    const SENT: u64 = 5;
    for _ in 0..SENT {
        helper.signal(Signal::SIGUSR1);
        helper.wait_line("got USR1", WAIT);
    }
    let (status, out, err) = trace.stop_with(Signal::SIGINT);
    assert!(
        status.success(),
        "sigtrace exited {status:?}; stderr: {err:?}"
    );
    let generated = format!("→ perl[{}]", helper.pid());
    assert_eq!(
        out.iter()
            .filter(|l| l.contains("SIGUSR1") && l.contains(&generated))
            .count() as u64,
        SENT,
        "one generate line per USR1: {out:#?}"
    );
    let line = err
        .iter()
        .find(|l| l.starts_with("sigtrace: in-kernel cost: "))
        .unwrap_or_else(|| panic!("no cost line in {err:?}"));
    let entries = cost_entries(line);
    for program in ["signal_generate", "signal_deliver"] {
        let (_, runs, ns) = entries
            .iter()
            .find(|(name, _, _)| name == program)
            .unwrap_or_else(|| panic!("{program} missing from {line}"));
        // The programs run for every signal on the machine, not only the filtered ones.
        assert!(
            *runs >= SENT,
            "{program}: {runs} runs for {SENT} signals: {line}"
        );
        assert!(*ns > 0, "{program}: no run time in {line}");
    }
    // Not attached without --sigaction: no statistics for them.
    assert!(
        !entries.iter().any(|(name, _, _)| name.starts_with("sys_")),
        "{line}"
    );
}
