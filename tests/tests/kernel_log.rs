//! End-to-end: the kernel programs' own diagnostics (aya-log) reach sigtrace's stderr at
//! the level asked for, and not below it.

use serde_json::Value;

use crate::util::*;

/// A process whose exec ends a second thread: the kernel makes that thread dequeue a
/// SIGKILL nobody sent, which the deliver program leaves out and says so at debug level.
const EXEC_FROM_THREADS: &str = r#"use threads; threads->create(sub { sleep 30 })->detach; select(undef, undef, undef, 0.2); exec "/bin/true" or die "exec: $!";"#;

/// Launches the script under sigtrace with `verbosity`; returns the JSON records and the
/// stderr lines.
fn run_with(verbosity: &[&str]) -> (Vec<Value>, Vec<String>) {
    let args: Vec<&str> = verbosity
        .iter()
        .copied()
        .chain(["--", "perl", "-e", EXEC_FROM_THREADS])
        .collect();
    let (status, records, stderr) = launch(&args);
    let stderr: Vec<String> = stderr.lines().map(str::to_owned).collect();
    assert_eq!(status, Some(0), "{stderr:#?}");
    (records, stderr)
}

fn kernel_lines(stderr: &[String]) -> Vec<&String> {
    stderr
        .iter()
        .filter(|l| l.starts_with("sigtrace: kernel "))
        .collect()
}

#[test]
fn a_kernel_side_debug_message_reaches_stderr_with_vv() {
    if !bpf_allowed("a_kernel_side_debug_message_reaches_stderr_with_vv") {
        return;
    }
    let _beside = beside_others();
    let (records, stderr) = run_with(&["-vv"]);
    // The launched process exits as /bin/true, under the pid that ran perl.
    let exited = of_type(&records, "exit")
        .into_iter()
        .find(|r| r["task"]["comm"] == "true")
        .unwrap_or_else(|| panic!("no exit of the exec'd /bin/true: {records:#?}"));
    let pid = exited["task"]["pid"].as_i64().expect("exit pid");
    let wanted = format!("(tgid {pid}) is an exec ending its other threads");
    let line = stderr
        .iter()
        .find(|l| l.contains(&wanted))
        .unwrap_or_else(|| panic!("no kernel line with {wanted:?} in {stderr:#?}"));
    assert!(
        line.starts_with("sigtrace: kernel debug: signal_deliver: SIGKILL in tid "),
        "{line}"
    );
    let tid: i64 = line["sigtrace: kernel debug: signal_deliver: SIGKILL in tid ".len()..]
        .split(' ')
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no tid in {line}"));
    assert_ne!(
        tid, pid,
        "the killed thread is the second one, not the leader"
    );
    // Left out of the trace, as the message says.
    assert!(
        !of_type(&records, "deliver")
            .iter()
            .any(|r| signal_name(r) == "SIGKILL"),
        "{records:#?}"
    );
}

#[test]
fn below_the_level_asked_for_the_kernel_says_nothing() {
    if !bpf_allowed("below_the_level_asked_for_the_kernel_says_nothing") {
        return;
    }
    let _beside = beside_others();
    // -v is warn and info: the debug message is compiled out of the loaded program.
    for verbosity in [&[][..], &["-v"][..]] {
        let (records, stderr) = run_with(verbosity);
        assert!(
            of_type(&records, "exit")
                .iter()
                .any(|r| r["task"]["comm"] == "true"),
            "{verbosity:?}: the script did not run to its exec: {records:#?}"
        );
        assert_eq!(
            kernel_lines(&stderr),
            Vec::<&String>::new(),
            "{verbosity:?}"
        );
    }
}
