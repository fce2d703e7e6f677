//! End-to-end: names chosen by unprivileged processes never reach a terminal raw. Real
//! processes rename themselves (prctl PR_SET_NAME, through perl's `$0`) to escape sequences,
//! line breaks and invalid UTF-8; every text output — trace lines, the fan-out block,
//! `--summary`, `show`, `show --threads`, `diff` — must print them escaped, one line per
//! event, while JSON keeps the name itself.

use std::{
    os::unix::{ffi::OsStrExt, process::CommandExt},
    process::Command,
    time::Duration,
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::Value;

use crate::util::*;

/// Names as the kernel keeps them (at most 15 bytes), and how the text output must show them.
const HOSTILE: [(&[u8], &str); 3] = [
    // Clear the screen, retitle the window, then forge a new line starting "FA...".
    (b"\x1b[2J\x1b]0;pwn\x07\nFA", r"\x1b[2J\x1b]0;pwn\x07\nFA"),
    // Carriage return, DEL, invalid UTF-8, and U+009B (a one-character CSI).
    (b"a\rb\x7f\xff\xfe\xc2\x9bZ", r"a\rb\x7f\xff\xfe\u{9b}Z"),
    // Bytes next to NUL, a tab, and a backslash that must not read as an escape.
    (b"\x01\x02\t\\x41", r"\x01\x02\t\\x41"),
];

/// perl renaming itself to $HOSTILE_NAME; catches USR1, then waits.
const NAMED_PERL: &str =
    r#"$| = 1; $0 = $ENV{HOSTILE_NAME}; $SIG{USR1} = sub { }; print "ready\n"; sleep 1 while 1;"#;

/// The three hostile processes, all in one new process group led by the first.
fn hostile_group() -> Vec<Owned> {
    let mut group: Vec<Owned> = Vec::new();
    for (name, _) in HOSTILE {
        let mut cmd = perl(NAMED_PERL);
        cmd.env("HOSTILE_NAME", std::ffi::OsStr::from_bytes(name))
            .process_group(group.first().map_or(0, Owned::pid));
        let owned = spawn_ready(&mut cmd);
        let comm = std::fs::read(format!("/proc/{}/comm", owned.pid())).expect("comm");
        assert_eq!(
            &comm[..comm.len() - 1],
            name,
            "the process did not take its name"
        );
        group.push(owned);
    }
    group
}

/// Fails on any byte of `output` that a terminal would act on: every control byte but the
/// line ends, invalid UTF-8 (the line reader turns it into U+FFFD), C1 controls and
/// bidirectional overrides.
fn assert_inert(what: &str, output: &[u8]) {
    let text = std::str::from_utf8(output)
        .unwrap_or_else(|e| panic!("{what}: invalid UTF-8 reached the terminal ({e})"));
    for (n, line) in text.lines().enumerate() {
        let bad = line.chars().find(|&c| {
            c.is_control()
                || c == '\u{fffd}'
                || ('\u{200b}'..='\u{200f}').contains(&c)
                || ('\u{202a}'..='\u{202e}').contains(&c)
        });
        assert!(
            bad.is_none(),
            "{what}: line {n} carries {bad:?} raw: {line:?}"
        );
    }
}

/// Lines of `output` that mention `pid` as `[pid]`, for finding a process's lines.
fn lines_naming(output: &str, pid: i32) -> Vec<&str> {
    let tag = format!("[{pid}]");
    output.lines().filter(|l| l.contains(&tag)).collect()
}

fn run_sigtrace(args: &[&str]) -> Vec<u8> {
    let out = Command::new(sigtrace_bin())
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run sigtrace");
    assert!(
        out.status.success(),
        "sigtrace {args:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_inert(&format!("stderr of {args:?}"), &out.stderr);
    out.stdout
}

#[test]
fn trace_lines_and_fanout_block_escape_hostile_names() {
    if !bpf_allowed("trace_lines_and_fanout_block_escape_hostile_names") {
        return;
    }
    let _beside = beside_others();
    let group = hostile_group();
    let pgid = group[0].pid();
    let trace = Trace::start(&["--no-time", "--pgrp", &pgid.to_string()]);
    for member in &group {
        member.signal(Signal::SIGUSR1);
    }
    std::thread::sleep(Duration::from_millis(300));
    // A process-group kill of our own group: one fan-out block listing every member.
    kill(Pid::from_raw(-pgid), Signal::SIGUSR1).expect("signal our own process group");
    std::thread::sleep(Duration::from_millis(300));
    for member in &group {
        member.signal(Signal::SIGTERM);
    }
    std::thread::sleep(Duration::from_millis(500));
    let (status, out, err) = trace.stop_with(Signal::SIGINT);
    assert!(status.success(), "sigtrace: {status:?}; {err:?}");
    let out = out.join("\n");
    assert_inert("trace output", out.as_bytes());
    assert_inert("trace stderr", err.join("\n").as_bytes());
    for (member, (_, shown)) in group.iter().zip(HOSTILE) {
        let pid = member.pid();
        let lines = lines_naming(&out, pid);
        let named = format!("{shown}[{pid}]");
        // USR1 ×2 (own, group) and TERM: each generate, delivery and the exit name it.
        let kinds = [
            format!("→ {named}  SI_USER"),
            format!("↳ SIGUSR1  {named}"),
            format!("✝ {named} killed by SIGTERM"),
        ];
        for kind in &kinds {
            assert!(
                lines.iter().any(|l| l.contains(kind.as_str())),
                "no line with {kind:?} in:\n{out}"
            );
        }
        let member_row = format!("{pid:<7} {shown}");
        assert!(
            out.lines()
                .any(|l| l.contains("─ ") && l.contains(&member_row)),
            "fan-out block has no row {member_row:?}:\n{out}"
        );
    }
    assert!(
        !out.lines().any(|l| l.starts_with("FA")),
        "a forged line:\n{out}"
    );
    assert!(
        out.contains(&format!("→ pgrp {pgid} (3 members)")),
        "no fan-out block:\n{out}"
    );
}

#[test]
fn summary_escapes_hostile_names() {
    if !bpf_allowed("summary_escapes_hostile_names") {
        return;
    }
    let _beside = beside_others();
    let group = hostile_group();
    let pgid = group[0].pid();
    let trace = Trace::start(&["--summary-only", "--pgrp", &pgid.to_string()]);
    for member in &group {
        member.signal(Signal::SIGUSR1);
    }
    std::thread::sleep(Duration::from_millis(500));
    let (status, out, err) = trace.stop_with(Signal::SIGINT);
    assert!(status.success(), "sigtrace: {status:?}; {err:?}");
    let out = out.join("\n");
    assert_inert("--summary", out.as_bytes());
    for (_, shown) in HOSTILE {
        assert!(
            out.lines()
                .any(|l| l.contains(shown) && l.contains("SIGUSR1")),
            "no summary row for {shown}:\n{out}"
        );
    }
}

#[test]
fn json_keeps_the_names_themselves() {
    if !bpf_allowed("json_keeps_the_names_themselves") {
        return;
    }
    let _beside = beside_others();
    let group = hostile_group();
    let mut trace = Trace::start(&["--format", "json", "--pgrp", &group[0].pid().to_string()]);
    let mut seen = Vec::new();
    for (member, (name, _)) in group.iter().zip(HOSTILE) {
        member.signal(Signal::SIGUSR1);
        let pid = member.pid();
        trace.wait_for(&mut seen, Duration::from_secs(10), |r: &Value| {
            r["type"] == "generate" && r["target"]["pid"] == pid
        });
        let record = seen
            .iter()
            .find(|r| r["type"] == "generate" && r["target"]["pid"] == pid)
            .expect("generate record");
        assert_eq!(
            record["target"]["comm"],
            String::from_utf8_lossy(name).as_ref(),
            "JSON carries the name (invalid UTF-8 replaced), escaped by JSON itself"
        );
    }
    trace.stop_json(seen);
}

#[test]
fn show_and_diff_escape_hostile_names() {
    let _beside = beside_others();
    let group = hostile_group();
    for (member, (_, shown)) in group.iter().zip(HOSTILE) {
        let pid = member.pid().to_string();
        let out = run_sigtrace(&["show", "--threads", &pid]);
        assert_inert("show", &out);
        let out = String::from_utf8_lossy(&out);
        assert!(
            out.lines()
                .next()
                .is_some_and(|l| l.contains(&format!("{pid} ({shown})"))),
            "show's process line:\n{out}"
        );
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with(&format!("{pid}  {shown}"))),
            "show --threads row:\n{out}"
        );
    }
    let (a, b) = (group[0].pid().to_string(), group[1].pid().to_string());
    let out = run_sigtrace(&["diff", "--threads", &a, &b]);
    assert_inert("diff", &out);
    let out = String::from_utf8_lossy(&out);
    for (pid, shown) in [(&a, HOSTILE[0].1), (&b, HOSTILE[1].1)] {
        assert!(
            out.contains(&format!("{pid} ({shown})")),
            "diff names {pid} as {shown}:\n{out}"
        );
    }
}
