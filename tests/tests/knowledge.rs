//! End-to-end tests of `sigtrace mask`, `sigtrace show` and `sigtrace diff`: the real binary
//! against processes these tests spawn themselves (bash with traps set), compared with what
//! bash's `kill -l` and procps' `ps` say on this machine. No root needed.
//!
//! Safety: signals go only to children spawned here, by pid; every child is killed and
//! reaped by a guard when its test ends, also when an assertion fails.

use nix::sys::signal::{self as nix_signal, SigmaskHow};
use nix::unistd::Pid;
use serde_json::Value;
use sigtrace::signals::{Signal, num};
use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::{Owned, beside_others, open_pty, proc_status_mask, sigtrace_bin};

/// Runs sigtrace with `args`.
fn sigtrace(args: &[&str]) -> Output {
    Command::new(sigtrace_bin())
        .args(args)
        .env_remove("NO_COLOR")
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", sigtrace_bin().display()))
}

/// Runs sigtrace and returns its stdout, failing the test unless it exited 0.
fn sigtrace_ok(args: &[&str]) -> String {
    let output = sigtrace(args);
    assert!(
        output.status.success(),
        "sigtrace {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs sigtrace expecting JSON on stdout.
fn sigtrace_json(args: &[&str]) -> Value {
    let text = sigtrace_ok(args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("sigtrace {args:?}: {e}: {text}"))
}

/// Asserts the "bad input" contract: exit status 2, nothing on stdout, one line on stderr
/// containing `needle`.
fn assert_bad_input(args: &[&str], needle: &str) {
    let output = sigtrace(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "sigtrace {args:?}: {stderr}");
    assert!(
        output.stdout.is_empty(),
        "sigtrace {args:?} printed to stdout"
    );
    assert_eq!(stderr.lines().count(), 1, "sigtrace {args:?}: {stderr}");
    assert!(stderr.starts_with("sigtrace: "), "{stderr}");
    assert!(
        stderr.contains(needle),
        "sigtrace {args:?}: {stderr:?} lacks {needle:?}"
    );
}

/// Starts `bash -c SCRIPT; read` with stdin a pipe we hold, so it waits until killed.
/// `blocked` signals are blocked in the child before bash starts (bash keeps the mask).
fn spawn_bash(script: &str, blocked: &[nix_signal::Signal]) -> Owned {
    let mut command = Command::new("bash");
    command
        .arg("-c")
        // "ready" once the script (the traps) has run: until then bash is still changing
        // its dispositions and two reads of /proc may disagree.
        .arg(format!("{script}; echo ready; read -r _"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut mask = nix_signal::SigSet::empty();
    for signal in blocked {
        mask.add(*signal);
    }
    // SAFETY: between fork and exec the closure only calls sigaction and sigprocmask, which
    // are async-signal-safe, and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            // bash cannot trap a signal ignored on entry, and a test run started in the
            // background of a non-interactive shell inherits SIGINT and SIGQUIT ignored.
            for signal in nix_signal::Signal::iterator() {
                if !matches!(
                    signal,
                    nix_signal::Signal::SIGKILL | nix_signal::Signal::SIGSTOP
                ) {
                    nix_signal::signal(signal, nix_signal::SigHandler::SigDfl)
                        .map_err(std::io::Error::from)?;
                }
            }
            nix_signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("spawning bash: {e}"));
    let mut stdout = child.stdout.take().expect("bash stdout");
    let mut ready = [0u8; 6];
    stdout
        .read_exact(&mut ready)
        .unwrap_or_else(|e| panic!("bash did not get ready: {e}"));
    assert_eq!(&ready, b"ready\n");
    // The child keeps its stdin pipe open, so `read` waits until the child is killed.
    Owned::from_child(child)
}

/// Waits (up to 10 s) until `ready` holds for the child: bash sets its traps after it
/// starts, and a signal we send is pending only once the kernel has queued it.
fn wait_until(spawned: &Owned, what: &str, ready: impl Fn(i32) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready(spawned.pid()) {
        // A dead child reads as no traps at all: say so, with its state, rather than time out.
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", spawned.pid())).unwrap_or_default();
        let state = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.get(..1))
            .unwrap_or("?");
        assert!(
            Instant::now() < deadline && state != "Z",
            "child {} never got to: {what} (its state: {state}, {:?})",
            spawned.pid(),
            std::fs::read_to_string(format!("/proc/{}/status", spawned.pid()))
                .unwrap_or_default()
                .lines()
                .filter(|l| l.starts_with("Sig") || l.starts_with("State"))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn bit(sig: i32) -> u64 {
    1 << (sig - 1)
}

fn names_of(values: &Value) -> Vec<String> {
    values
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {values}"))
        .iter()
        .map(|value| value["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

const STORY_NAMES: &[&str] = &[
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGCHLD",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGWINCH",
    "SIGSYS",
];

#[test]
fn mask_from_the_story_lists_canonical_names() {
    let _beside = beside_others();
    let text = sigtrace_ok(&["mask", "0x000000004b813eff"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&"0x000000004b813eff (decimal 1266761471, 19 signals)")
    );
    let names: Vec<&str> = lines.get(1).map_or(vec![], |l| l.split(' ').collect());
    assert_eq!(names, STORY_NAMES);
    assert_eq!(lines.len(), 2);

    // The hand-made script named bits 6 and 17 SIGIOT and SIGCLD: only on request.
    let with_aliases = sigtrace_ok(&["mask", "--aliases", "0x000000004b813eff"]);
    assert!(with_aliases.contains(" SIGABRT/SIGIOT ") && with_aliases.contains(" SIGCHLD/SIGCLD "));
    assert!(!text.contains("SIGIOT") && !text.contains("SIGCLD"));

    let json = sigtrace_json(&["mask", "--format", "json", "000000004b813eff"]);
    assert_eq!(names_of(&json["signals"]), STORY_NAMES);
    assert_eq!(json["hex"], "0x000000004b813eff");
}

#[test]
fn mask_accepts_every_spelling_of_the_same_mask() {
    let _beside = beside_others();
    let expected = "0x000000004b813efb";
    for spelling in [
        "0x4b813efb",
        "000000004b813efb",
        "1266761467",
        "SigCgt:\t000000004b813efb",
        "0b01001011_10000001_00111110_11111011",
    ] {
        let json = sigtrace_json(&["mask", "--format", "json", spelling]);
        assert_eq!(json["hex"], expected, "{spelling:?}");
    }
}

#[test]
fn mask_json_is_one_object_per_line() {
    let _beside = beside_others();
    let text = sigtrace_ok(&["mask", "--format", "json", "0x1", "0x8000000000000000", "0"]);
    let objects: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert_eq!(objects.len(), 3);
    assert_eq!(names_of(&objects[0]["signals"]), ["SIGHUP"]);
    assert_eq!(names_of(&objects[1]["signals"]), ["SIGRTMAX"]);
    assert_eq!(objects[2]["count"], 0);
}

/// bash's `kill -l N` prints the signal's name without "SIG". For 32 and 33 it prints
/// nothing: they are below glibc's SIGRTMIN (34) because glibc keeps them for its threads,
/// and bash names only what libc calls signals; sigtrace calls them SIG32 and SIG33.
#[test]
fn names_agree_with_bash_kill_l() {
    let _beside = beside_others();
    let output = Command::new("bash")
        .arg("-c")
        .arg("for n in {1..64}; do echo \"$n:$(kill -l $n 2>/dev/null)\"; done")
        .output()
        .unwrap_or_else(|e| panic!("running bash: {e}"));
    assert!(output.status.success(), "bash failed: {output:?}");
    let bash = String::from_utf8_lossy(&output.stdout);
    let json = sigtrace_json(&["mask", "--format", "json", "0xffffffffffffffff"]);
    let ours = names_of(&json["signals"]);
    assert_eq!(ours.len(), 64);
    let mut compared = 0;
    for line in bash.lines() {
        let (number, name) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("bash printed {line:?}"));
        let number: usize = number.parse().unwrap_or_else(|e| panic!("{line:?}: {e}"));
        let ours = &ours[number - 1];
        if name.is_empty() {
            assert_eq!(
                *ours,
                format!("SIG{number}"),
                "bash has no name for {number}"
            );
            assert!(
                number == 32 || number == 33,
                "bash has no name for {number}"
            );
        } else {
            assert_eq!(*ours, format!("SIG{name}"), "signal {number}");
        }
        compared += 1;
    }
    assert_eq!(compared, 64);
}

#[test]
fn show_agrees_with_ps_for_bash_with_traps() {
    let _beside = beside_others();
    let child = spawn_bash("trap '' INT; trap : USR1", &[nix_signal::Signal::SIGUSR2]);
    wait_until(&child, "trap '' INT; trap : USR1", |pid| {
        proc_status_mask(pid, "SigIgn") & bit(num::SIGINT) != 0
            && proc_status_mask(pid, "SigCgt") & bit(num::SIGUSR1) != 0
    });
    // A blocked signal sent to the process stays pending on the process (shared).
    nix_signal::kill(Pid::from_raw(child.pid()), nix_signal::Signal::SIGUSR2)
        .unwrap_or_else(|e| panic!("kill -USR2 {}: {e}", child.pid()));
    wait_until(&child, "SIGUSR2 pending", |pid| {
        proc_status_mask(pid, "ShdPnd") & bit(num::SIGUSR2) != 0
    });

    let json = sigtrace_json(&["show", "--format", "json", &child.pid().to_string()]);
    let ps = Command::new("ps")
        .args([
            "-o",
            "caught=,blocked=,ignored=,pending=",
            "-p",
            &child.pid().to_string(),
        ])
        .output()
        .unwrap_or_else(|e| panic!("running ps: {e}"));
    assert!(ps.status.success(), "ps failed: {ps:?}");
    let ps = String::from_utf8_lossy(&ps.stdout);
    let columns: Vec<&str> = ps.split_whitespace().collect();
    // ps's "pending" is the process-wide (shared) set; thread sets need ps -m.
    let ours: Vec<String> = ["caught", "blocked", "ignored", "pending_shared"]
        .iter()
        .map(|field| {
            let hex = json["masks"][field].as_str().unwrap_or_default();
            hex.trim_start_matches("0x").to_owned()
        })
        .collect();
    assert_eq!(columns, ours, "ps: {ps}");

    let signals = json["signals"].as_array().map_or(&[][..], Vec::as_slice);
    assert_eq!(signals.len(), 64);
    let row = |sig: i32| &signals[usize::try_from(sig - 1).unwrap_or(usize::MAX)];
    assert_eq!(row(num::SIGINT)["disposition"]["action"], "ignored");
    assert_eq!(row(num::SIGUSR1)["disposition"]["action"], "caught");
    assert_eq!(row(num::SIGUSR2)["blocked"], true);
    assert_eq!(row(num::SIGUSR2)["pending_shared"], true);
    assert_eq!(row(num::SIGUSR2)["pending_thread"], false);
    assert_eq!(row(num::SIGTERM)["disposition"]["action"], "default");
    assert_eq!(row(num::SIGTERM)["disposition"]["default_action"], "Term");
    assert_eq!(row(num::SIGKILL)["disposition"]["action"], "default");

    // Relations: our child, in our process group and session.
    let me = nix::unistd::getpid().as_raw();
    assert_eq!(json["pid"], child.pid());
    assert_eq!(json["ppid"], me);
    assert_eq!(json["pgid"], nix::unistd::getpgrp().as_raw());
    assert_eq!(
        json["sid"],
        nix::unistd::getsid(None).map_or(0, Pid::as_raw)
    );
    assert_eq!(json.get("threads"), Some(&Value::Null));

    // The text table says the same.
    let text = sigtrace_ok(&["show", &child.pid().to_string()]);
    assert!(text.contains("\n  2  SIGINT       ignored\n"), "{text}");
    assert!(text.contains("\n 10  SIGUSR1      caught\n"), "{text}");
    assert!(
        text.contains("\n 12  SIGUSR2      default: Term  blocked  shared\n"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "colour on a pipe");
}

#[test]
fn show_threads_lists_each_thread_s_masks() {
    let _beside = beside_others();
    let child = spawn_bash(":", &[nix_signal::Signal::SIGUSR2]);
    let json = sigtrace_json(&[
        "show",
        "--threads",
        "--format",
        "json",
        &child.pid().to_string(),
    ]);
    let threads = json["threads"].as_array().map_or(&[][..], Vec::as_slice);
    assert_eq!(threads.len(), 1, "{json}");
    assert_eq!(threads[0]["tid"], child.pid());
    assert_eq!(
        threads[0]["blocked"],
        format!("{:#018x}", bit(num::SIGUSR2))
    );
    assert_eq!(threads[0]["blocked_signals"][0], "SIGUSR2");
    let text = sigtrace_ok(&["show", "--threads", &child.pid().to_string()]);
    assert!(text.contains("blocked: SIGUSR2\n"), "{text}");
}

/// A process in its own session with a pty as controlling terminal: show names the tty
/// like ps (pts/N) and finds the process's group in the foreground.
#[test]
fn show_names_the_controlling_tty_and_its_foreground_group() {
    let _beside = beside_others();
    let pty = open_pty();
    // setsid(1) does not fork when its caller is not a group leader (our child is not),
    // so the pid we hold is the new session's leader; --ctty takes stdin as its tty.
    let child = Command::new("setsid")
        .args(["--ctty", "bash", "-c", "read -r _"])
        .stdin(pty.slave)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning setsid: {e}"));
    let child = Owned::from_child(child);
    wait_until(&child, "own session with a controlling tty", |pid| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after "(comm)": state ppid pgrp session tty_nr tpgid ...
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
        fields.get(3) == Some(&pid.to_string().as_str())
            && fields.get(5) == Some(&pid.to_string().as_str())
    });
    let json = sigtrace_json(&["show", "--format", "json", &child.pid().to_string()]);
    let expected = pty.path.trim_start_matches("/dev/");
    assert_eq!(json["tty"], expected, "{json}");
    assert_eq!(json["sid"], child.pid());
    assert_eq!(json["pgid"], child.pid());
    assert_eq!(json["tty_fg_pgid"], child.pid());
    assert_eq!(json["in_foreground"], true);
    let text = sigtrace_ok(&["show", &child.pid().to_string()]);
    assert!(
        text.contains(&format!(
            "\ntty            {expected}, foreground pgrp {}\n",
            child.pid()
        )),
        "{text}"
    );
    drop(child);
    drop(pty.master);
}

#[test]
fn diff_sees_exactly_the_differing_signals() {
    let _beside = beside_others();
    let left = spawn_bash("trap '' INT; trap : USR1", &[]);
    let right = spawn_bash("trap : INT; trap '' TERM", &[]);
    wait_until(&left, "trap '' INT; trap : USR1", |pid| {
        proc_status_mask(pid, "SigIgn") & bit(num::SIGINT) != 0
            && proc_status_mask(pid, "SigCgt") & bit(num::SIGUSR1) != 0
    });
    wait_until(&right, "trap : INT; trap '' TERM", |pid| {
        proc_status_mask(pid, "SigCgt") & bit(num::SIGINT) != 0
            && proc_status_mask(pid, "SigIgn") & bit(num::SIGTERM) != 0
    });
    let json = sigtrace_json(&[
        "diff",
        "--format",
        "json",
        &left.pid().to_string(),
        &right.pid().to_string(),
    ]);
    let differing: BTreeSet<String> = json["differing"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter_map(|d| d["signal"]["name"].as_str().map(str::to_owned))
        .collect();
    let expected: BTreeSet<String> = [num::SIGINT, num::SIGUSR1, num::SIGTERM]
        .into_iter()
        .map(|sig| Signal(sig).name().into_owned())
        .collect();
    assert_eq!(differing, expected, "{json}");
    let int = &json["differing"][0];
    assert_eq!(int["fields"], serde_json::json!(["disposition"]));
    assert_eq!(int["left"]["disposition"]["action"], "ignored");
    assert_eq!(int["right"]["disposition"]["action"], "caught");
    assert_eq!(
        json["differing_facts"],
        serde_json::json!(["caught", "ignored"])
    );

    let text = sigtrace_ok(&["diff", &left.pid().to_string(), &right.pid().to_string()]);
    let marked: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with('*') && line.contains("SIG"))
        .collect();
    assert_eq!(marked.len(), 3, "{text}");
    assert!(
        marked[0].starts_with("*   2  SIGINT       ignored"),
        "{text}"
    );
    assert!(
        text.ends_with("3 signals differ: SIGINT SIGUSR1 SIGTERM\n"),
        "{text}"
    );
    assert_eq!(table_rows(&text), 64, "{text}");
    let only = sigtrace_ok(&[
        "diff",
        "--changed",
        &left.pid().to_string(),
        &right.pid().to_string(),
    ]);
    assert_eq!(table_rows(&only), 3, "{only}");
}

/// Rows of diff's signal table: after the two-character marker column comes a number.
fn table_rows(text: &str) -> usize {
    text.lines()
        .filter(|line| {
            line.get(2..)
                .is_some_and(|rest| rest.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        })
        .count()
}

#[test]
fn diff_of_a_process_with_itself_finds_nothing() {
    let _beside = beside_others();
    let child = spawn_bash("trap : USR1", &[]);
    let json = sigtrace_json(&[
        "diff",
        "--format",
        "json",
        &child.pid().to_string(),
        &child.pid().to_string(),
    ]);
    assert_eq!(json["differing"], serde_json::json!([]));
    assert_eq!(json["differing_facts"], serde_json::json!([]));
}

#[test]
fn bad_masks_are_one_line_and_exit_2() {
    let _beside = beside_others();
    assert_bad_input(&["mask", "0xzz"], "invalid mask \"0xzz\"");
    assert_bad_input(&["mask", "hello"], "expected hex like 0x4b813efb");
    assert_bad_input(&["mask", "0x1ffffffffffffffff"], "more than 64 bits");
    assert_bad_input(&["mask", "18446744073709551616"], "more than 64 bits");
    assert_bad_input(&["mask", "0x1", "0xzz"], "invalid mask");
}

#[test]
fn missing_and_invalid_pids_are_one_line_and_exit_2() {
    let _beside = beside_others();
    // No pid can exceed pid_max, so this one cannot exist.
    let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap_or_else(|e| panic!("/proc/sys/kernel/pid_max: {e}"));
    let missing = (pid_max.trim().parse::<i64>().unwrap_or(4_194_304) + 1).to_string();
    assert_bad_input(&["show", &missing], "no process with pid");
    assert_bad_input(&["show", "0"], "invalid pid 0");
    let child = spawn_bash(":", &[]);
    assert_bad_input(
        &["diff", &child.pid().to_string(), &missing],
        "no process with pid",
    );
}

/// Colour only on a terminal, never with NO_COLOR: run sigtrace with stdout on a pty.
#[test]
fn colour_only_on_a_terminal_without_no_color() {
    let _beside = beside_others();
    assert!(!sigtrace_ok(&["mask", "0x2"]).contains('\x1b'));
    assert!(sigtrace_ok(&["mask", "--color", "always", "0x2"]).contains('\x1b'));
    assert!(with_tty_stdout(&[]).contains('\x1b'));
    assert!(!with_tty_stdout(&[("NO_COLOR", "1")]).contains('\x1b'));
    assert!(!with_tty_stdout(&[]).is_empty());
}

/// `sigtrace mask 0x2` with stdout on a fresh pty; returns what it wrote.
fn with_tty_stdout(env: &[(&str, &str)]) -> String {
    let pty = open_pty();
    let mut command = Command::new(sigtrace_bin());
    command
        .args(["mask", "0x2"])
        .env_remove("NO_COLOR")
        .stdout(pty.slave);
    for (key, value) in env {
        command.env(key, value);
    }
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", sigtrace_bin().display()));
    let mut child = Owned::from_child(child);
    // Our copy of the slave went into `command`; drop it so the master sees EOF (EIO)
    // once sigtrace exits. Read before waiting, so a full pty buffer cannot block it.
    drop(command);
    let mut master = std::fs::File::from(pty.master);
    let mut output = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match master.read(&mut buffer) {
            Ok(0) | Err(_) => break, // EIO: no writer left on the slave side
            Ok(n) => output.extend_from_slice(&buffer[..n]),
        }
    }
    let status = child
        .child
        .wait()
        .unwrap_or_else(|e| panic!("waiting: {e}"));
    assert!(status.success(), "sigtrace mask on a tty: {status}");
    String::from_utf8_lossy(&output).into_owned()
}
