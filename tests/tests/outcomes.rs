//! End-to-end: recipient annotation, outcomes and fan-outs — the story sigtrace exists for.
//! (a) kill the wrapper, orphan the binary; (b) ^C on a pty fans out to both; (c) SIGKILL
//! still carries the recipient's pgrp, session and masks; (d) blocked, pending, delivered;
//! and a recipient in its own pid namespace.

use std::{
    io::{Read, Write},
    os::unix::process::CommandExt,
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::util::*;

const WAIT: Duration = Duration::from_secs(10);

/// The story's pair: a wrapper shell that ignores INT and waits for a binary that catches
/// INT and exits cleanly on it. The binary prints "ready <pid>".
const WRAPPER: &str = r#"trap '' INT; perl -e '$| = 1; $SIG{INT} = sub { exit 0 }; print "ready $$\n"; sleep 1 while 1'; echo wrapper-done"#;

fn binary_pid(ready_line: &str) -> i32 {
    ready_line
        .split_whitespace()
        .last()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {ready_line:?}"))
}

fn hex(v: &Value) -> u64 {
    let s = v.as_str().expect("mask string");
    u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex")
}

#[test]
fn a_killing_the_wrapper_orphans_the_binary() {
    if !bpf_allowed("a_killing_the_wrapper_orphans_the_binary") {
        return;
    }
    let _beside = beside_others();
    let mut wrapper = Command::new("bash");
    wrapper.args(["-c", WRAPPER]).process_group(0);
    let mut wrapper = spawn_ready(&mut wrapper);
    let binary = binary_pid(&wrapper.ready);
    // The binary is ours too (our child's child): end it by pid when the test is done.
    let _binary_guard = PidGuard::new(binary);
    let mut trace = Trace::start(&["--format", "json", "--pid", &wrapper.pid().to_string()]);
    let mut seen = Vec::new();
    wrapper.signal(Signal::SIGTERM);
    wrapper.wait_exit(WAIT);
    trace.wait_for(&mut seen, WAIT, |r| {
        r["type"] == "exit" && r["task"]["pid"] == wrapper.pid()
    });
    let records = trace.stop_json(seen);

    let exit = of_type(&records, "exit")
        .into_iter()
        .find(|r| r["task"]["pid"] == wrapper.pid())
        .expect("wrapper exit");
    assert_eq!(exit["status"]["kind"], "killed", "{exit}");
    assert_eq!(exit["status"]["signal"]["name"], "SIGTERM");
    let child = exit["children"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["pid"] == binary))
        .unwrap_or_else(|| panic!("binary not among the children left behind: {exit}"));
    let new_parent = child["new_parent"].as_u64().expect("the binary still runs");
    assert_ne!(
        new_parent as i32,
        wrapper.pid(),
        "re-parented away from the dead wrapper"
    );
    // And it does still run, orphaned.
    assert!(std::path::Path::new(&format!("/proc/{binary}")).exists());
}

/// Kills (SIGKILL) a process the test started indirectly (a child of its child) when the
/// test ends. Through a pidfd taken while the process surely runs: once it has exited and
/// been reaped, its pid may belong to anyone, and the pidfd still names only our process.
struct PidGuard(Option<std::os::fd::OwnedFd>);

impl PidGuard {
    fn new(pid: i32) -> PidGuard {
        use std::os::fd::FromRawFd;
        // SAFETY: pidfd_open takes a pid and flags; the fd it returns is ours to own.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        PidGuard((fd >= 0).then(|| {
            // SAFETY: a new fd of our own (above), owned by nothing else.
            unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) }
        }))
    }
}

impl Drop for PidGuard {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        if let Some(fd) = &self.0 {
            // SAFETY: signals only the process the pidfd names (ESRCH once it is gone).
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
        }
    }
}

#[test]
fn b_ctrl_c_on_a_pty_fans_out_to_the_foreground_group() {
    if !bpf_allowed("b_ctrl_c_on_a_pty_fans_out_to_the_foreground_group") {
        return;
    }
    let _beside = beside_others();
    let pty = open_pty();
    let mut cmd = Command::new("bash");
    cmd.args(["-c", WRAPPER])
        .stdin(Stdio::from(pty.slave.try_clone().expect("dup")))
        .stdout(Stdio::from(pty.slave.try_clone().expect("dup")))
        .stderr(Stdio::from(pty.slave.try_clone().expect("dup")));
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid()?;
            if nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut wrapper = cmd.spawn().expect("spawn on pty");
    drop(pty.slave);
    let wrapper_pid = wrapper.id() as i32;
    let mut master = std::fs::File::from(pty.master);
    let (tx, rx) = mpsc::channel::<String>();
    let mut reader = master.try_clone().expect("dup master");
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        let mut text = String::new();
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            while let Some(end) = text.find('\n') {
                let line: String = text.drain(..=end).collect();
                if tx.send(line).is_err() {
                    return;
                }
            }
        }
    });
    let ready = loop {
        let line = rx.recv_timeout(WAIT).expect("binary ready on the pty");
        if line.contains("ready") {
            break line;
        }
    };
    let binary = binary_pid(ready.trim());
    let _guards = (PidGuard::new(binary), PidGuard::new(wrapper_pid));

    let mut trace = Trace::start(&["--format", "json", "--pgrp", &wrapper_pid.to_string()]);
    let mut seen = Vec::new();
    master.write_all(b"\x03").expect("type ^C");
    trace.wait_for(&mut seen, WAIT, |r| r["type"] == "fanout");
    let _ = wrapper.wait();
    let records = trace.stop_json(seen);

    // (The shell's exit then hangs up its session: a SIGHUP fan-out of its own.)
    let fanouts: Vec<_> = of_type(&records, "fanout")
        .into_iter()
        .filter(|f| signal_name(f) == "SIGINT")
        .collect();
    assert_eq!(fanouts.len(), 1, "{fanouts:#?}");
    let f = fanouts[0];
    assert_eq!(f["signal"]["name"], "SIGINT");
    assert_eq!(f["source"]["kind"], "tty");
    assert!(
        f["source"]["tty"]
            .as_str()
            .is_some_and(|t| t.starts_with("pts/")),
        "{f}"
    );
    // We hold the master, alone: we are the one who typed it.
    let me = std::process::id();
    let writers = f["source"]["writers"].as_array().expect("writers");
    assert_eq!(writers.len(), 1, "{f}");
    assert_eq!(writers[0]["pid"], me);
    assert_eq!(f["pgid"], wrapper_pid);
    let members = f["members"].as_array().expect("members");
    assert_eq!(members.len(), 2, "{f}");
    let member = |pid: i32| {
        members
            .iter()
            .find(|m| m["pid"] == pid)
            .unwrap_or_else(|| panic!("{pid} not in {f}"))
    };
    assert_eq!(member(wrapper_pid)["disposition"]["action"], "ignored");
    assert_eq!(member(wrapper_pid)["outcome"], "ignored");
    assert_eq!(member(binary)["disposition"]["action"], "caught");
    assert_eq!(member(binary)["outcome"], "handled");
    for pid in [wrapper_pid, binary] {
        assert_eq!(member(pid)["exit"]["status"]["kind"], "exited", "{f}");
        assert_eq!(member(pid)["exit"]["status"]["code"], 0, "{f}");
    }
    // Each member's generate record carries the fan-out's id.
    let id = &f["id"];
    let tagged = of_type(&records, "generate")
        .into_iter()
        .filter(|g| &g["fanout"] == id)
        .count();
    assert_eq!(tagged, 2);
}

#[test]
fn c_sigkill_event_still_has_pgrp_session_and_masks() {
    if !bpf_allowed("c_sigkill_event_still_has_pgrp_session_and_masks") {
        return;
    }
    let _beside = beside_others();
    let mut cmd = perl(TRAP_PERL);
    cmd.process_group(0);
    let mut helper = spawn_ready(&mut cmd);
    let pid = helper.pid();
    let caught = proc_status_mask(pid, "SigCgt");
    let ignored = proc_status_mask(pid, "SigIgn");
    let mut trace = Trace::start(&["--format", "json", "--target", &pid.to_string()]);
    let mut seen = Vec::new();
    helper.signal(Signal::SIGKILL);
    helper.wait_exit(WAIT);
    trace.wait_for(&mut seen, WAIT, |r| r["type"] == "exit");
    let records = trace.stop_json(seen);
    let g = of_type(&records, "generate")
        .into_iter()
        .find(|g| signal_name(g) == "SIGKILL")
        .expect("SIGKILL generate");
    assert_eq!(g["target"]["pgid"], pid, "own process group");
    let sid = nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(0)))
        .expect("sid")
        .as_raw();
    assert_eq!(g["target"]["sid"], sid);
    assert_eq!(hex(&g["masks"]["caught"]), caught);
    assert_eq!(hex(&g["masks"]["ignored"]), ignored);
    assert!(
        caught & (1 << 9) != 0 && ignored & (1 << 11) != 0,
        "USR1 caught, USR2 ignored"
    );
    let exit = of_type(&records, "exit")[0];
    assert_eq!(exit["status"]["signal"]["name"], "SIGKILL");
}

#[test]
fn d_blocked_signal_is_pending_then_delivered() {
    if !bpf_allowed("d_blocked_signal_is_pending_then_delivered") {
        return;
    }
    let _beside = beside_others();
    let script = r#"use POSIX; $| = 1;
        my $set = POSIX::SigSet->new(SIGUSR1);
        sigprocmask(SIG_BLOCK, $set);
        $SIG{USR1} = sub { print "got USR1\n" };
        print "ready\n"; my $go = <STDIN>;
        sigprocmask(SIG_UNBLOCK, $set);
        sleep 1 while 1;"#;
    let mut cmd = perl(script);
    cmd.stdin(Stdio::piped());
    let mut helper = spawn_ready_keep_stdin(&mut cmd);
    let mut trace = Trace::start(&["--format", "json", "--pid", &helper.pid().to_string()]);
    let mut seen = Vec::new();
    helper.signal(Signal::SIGUSR1);
    trace.wait_for(&mut seen, WAIT, |r| r["type"] == "generate");
    let g = of_type(&seen, "generate")[0].clone();
    assert_eq!(g["outcome"], "blocked", "{g}");
    assert!(hex(&g["masks"]["blocked"]) & (1 << 9) != 0);
    // Still pending a while later: no delivery yet.
    std::thread::sleep(Duration::from_millis(300));
    let status = std::fs::read_to_string(format!("/proc/{}/status", helper.pid())).expect("status");
    assert!(status.contains("SigBlk:\t0000000000000200"), "{status}");
    helper
        .child
        .stdin
        .as_mut()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("unblock");
    helper.wait_line("got USR1", WAIT);
    trace.wait_for(&mut seen, WAIT, |r| r["type"] == "deliver");
    let records = trace.stop_json(seen);
    let d = of_type(&records, "deliver")[0];
    assert_eq!(d["signal"]["name"], "SIGUSR1");
    assert_eq!(d["outcome"], "handled");
    assert_eq!(
        d["generation"], g["id"],
        "the delivery is the blocked generation's"
    );
    assert!(d["latency_ns"].as_u64().expect("latency") >= 300_000_000);
}

/// The only child of `parent` (ours), from /proc.
fn only_child(parent: i32) -> i32 {
    let path = format!("/proc/{parent}/task/{parent}/children");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let children: Vec<i32> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(children.len(), 1, "children of {parent}: {text:?}");
    children[0]
}

/// A recipient in its own pid namespace (`unshare --pid --fork`, where it is pid 1): the
/// event carries its numbers as it sees them, and 0 for a group or session it cannot see.
#[test]
fn pid_namespace_numbers_are_shown_as_the_recipient_sees_them() {
    if !bpf_allowed("pid_namespace_numbers_are_shown_as_the_recipient_sees_them") {
        return;
    }
    let _beside = beside_others();
    let our_sid = nix::unistd::getsid(None).expect("sid").as_raw();
    // (how the recipient is started, expected pgid/sid in its namespace: the first stays in
    // unshare's group and our session, both outside; the second leads its own)
    for (setsid, in_ns) in [(false, (0, 0)), (true, (1, 1))] {
        let mut cmd = Command::new("unshare");
        cmd.args(["--pid", "--fork", "--kill-child"]);
        if setsid {
            cmd.arg("setsid");
        }
        cmd.args(["perl", "-e", TRAP_PERL]).process_group(0);
        let unshare = spawn_ready(&mut cmd);
        let recipient = only_child(unshare.pid());
        let mut trace = Trace::start(&["--format", "json", "--target", &recipient.to_string()]);
        let mut seen = Vec::new();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(recipient), Signal::SIGUSR2)
            .expect("signal our own grandchild");
        trace.wait_for(&mut seen, WAIT, |r| r["type"] == "generate");
        let records = trace.stop_json(seen);
        let g = of_type(&records, "generate")
            .into_iter()
            .find(|g| g["target"]["pid"] == recipient)
            .unwrap_or_else(|| panic!("no generate for {recipient}: {records:#?}"));
        let target = &g["target"];
        let (pgid, sid) = if setsid {
            (recipient, recipient)
        } else {
            (unshare.pid(), our_sid)
        };
        assert_eq!(
            (&target["pgid"], &target["sid"]),
            (&pgid.into(), &sid.into())
        );
        let ns = &target["ns"];
        assert_eq!(ns["level"], 1, "{target}");
        assert_eq!(ns["pid"], 1, "{target}");
        assert_eq!(
            (&ns["pgid"], &ns["sid"]),
            (&in_ns.0.into(), &in_ns.1.into()),
            "{target}"
        );
    }
}
