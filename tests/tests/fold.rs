//! End-to-end: the text output's burst folding and `--masks`, against a real signal storm.
//! Three tracers watch the same storm — folded text, `--no-fold` text and JSON — and must
//! account for exactly the same events.

use std::{
    collections::BTreeMap,
    os::unix::process::CommandExt,
    process::{Command, Stdio},
    time::Duration,
};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::util::*;

const WAIT: Duration = Duration::from_secs(10);

/// Signals sent by the storm: this many SIGUSR1, one SIGUSR2 after the first half, then a
/// SIGTERM that tells the target the storm is over.
const STORM: u32 = 2000;

/// `cmd`, started with every disposition at its default and nothing blocked, whatever the
/// test run inherited (a run started in the background of a shell inherits SIGINT and SIGQUIT
/// ignored). Raw system calls: glibc refuses to touch signals 32 and 33, which a run may also
/// inherit ignored.
fn from_defaults(mut cmd: Command) -> Command {
    // SAFETY: between fork and exec the closure only makes system calls, which are
    // async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            // The kernel's struct sigaction zeroed: SIG_DFL, no flags, an empty mask.
            let default = [0u64; 4];
            let empty = 0u64;
            for sig in 1..=64 {
                if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                    continue;
                }
                let rc = libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    default.as_ptr(),
                    0usize,
                    8usize,
                );
                if rc != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            let rc = libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_SETMASK,
                &raw const empty,
                0usize,
                8usize,
            );
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// The storm's target, in bash: perl would die under it ("Maximal count of pending signals
/// (120) exceeded": it runs handlers between its ops, and counts the deliveries waiting).
/// Catches USR1 and USR2, and TERM, which comes last: delivered after every SIGUSR1 still
/// pending (the kernel takes the lowest pending signal first), so once it says "done" every
/// event of the storm is in the tracers' rings. Its stdin is a pipe nobody writes to.
fn storm_target() -> Owned {
    let mut cmd = Command::new("bash");
    cmd.args([
        "-c",
        r#"trap : USR1 USR2; trap "echo done" TERM; echo ready; while :; do read -r _; done"#,
    ]);
    spawn_ready_keep_stdin(from_defaults(cmd).stdin(Stdio::piped()))
}

/// The storm: from another process, as fast as perl can call kill(2).
const SENDER: &str = r#"my ($t, $n) = @ARGV;
kill 'USR1', $t for 1 .. $n / 2; kill 'USR2', $t; kill 'USR1', $t for 1 .. $n / 2;
kill 'TERM', $t;"#;

/// What a text line or a JSON record is, for counting: "generate SIGUSR1", "generate
/// SIGUSR1 already pending" (merged with the one pending), "deliver SIGUSR1"; anything else
/// is named by the whole line or record, so that it shows in a failed comparison.
fn text_kind(line: &str) -> String {
    if let Some(rest) = line.strip_prefix("  ↳ ") {
        let sig = rest.split_whitespace().next().unwrap_or_default();
        return format!("deliver {sig}");
    }
    if line.starts_with("SIG") {
        let sig = line.split_whitespace().next().unwrap_or_default();
        let merged = if line.contains("  already pending  ") {
            " already pending"
        } else {
            ""
        };
        return format!("generate {sig}{merged}");
    }
    format!("other: {line}")
}

fn json_kind(record: &Value) -> String {
    let sig = signal_name(record);
    match record["type"].as_str() {
        Some("deliver") => format!("deliver {sig}"),
        Some("generate") if record["result"]["name"] == "already pending" => {
            format!("generate {sig} already pending")
        }
        Some("generate") => format!("generate {sig}"),
        _ => format!("other: {record}"),
    }
}

/// A fold line's total and its count for each line of its group (the lines directly
/// above it): "  ×N more like the line above, over 3 ms", "  ×N more like the 2 lines above
/// (a + b), over 3 ms".
fn fold_counts(line: &str) -> Option<(u64, Vec<u64>)> {
    let rest = line.strip_prefix("  ×")?;
    let (total, rest) = rest.split_once(" more like the ")?;
    let total: u64 = total.parse().ok()?;
    if rest.starts_with("line above, over ") {
        return Some((total, vec![total]));
    }
    let (_, counts) = rest.split_once(" lines above (")?;
    let (counts, _) = counts.split_once("), over ")?;
    let counts = counts
        .split(" + ")
        .map(|n| n.parse().ok())
        .collect::<Option<Vec<u64>>>()?;
    Some((total, counts))
}

/// Events by kind, from folded text: each line printed counts for one, each fold line for
/// the counts it gives its group's lines.
fn folded_kinds(lines: &[String]) -> BTreeMap<String, u64> {
    let mut kinds = BTreeMap::new();
    let mut printed: Vec<String> = Vec::new();
    for line in lines {
        match fold_counts(line) {
            Some((total, counts)) => {
                assert_eq!(counts.iter().sum::<u64>(), total, "{line}");
                assert!(
                    counts.len() <= printed.len(),
                    "a fold line with no group above it: {line}"
                );
                let group = &printed[printed.len() - counts.len()..];
                for (kind, count) in group.iter().zip(&counts) {
                    *kinds.entry(kind.clone()).or_default() += count;
                }
            }
            None => {
                let kind = text_kind(line);
                *kinds.entry(kind.clone()).or_default() += 1;
                printed.push(kind);
            }
        }
    }
    kinds
}

fn counted(kinds: impl IntoIterator<Item = String>) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for kind in kinds {
        *counts.entry(kind).or_default() += 1;
    }
    counts
}

/// The tracer's "N events, 0 lost" on stderr: every event was read.
fn events_read(err: &[String]) -> u64 {
    let (events, lost) = event_totals(err).unwrap_or_else(|| panic!("no totals in {err:?}"));
    assert_eq!(lost, 0, "the kernel lost events: {err:?}");
    events
}

#[test]
fn a_storm_folds_around_an_odd_signal_and_every_event_is_counted() {
    if !bpf_allowed("a_storm_folds_around_an_odd_signal_and_every_event_is_counted") {
        return;
    }
    let _beside = beside_others();
    let mut target = storm_target();
    let pid = target.pid().to_string();
    let folded = Trace::start(&["--no-time", "--pid", &pid]);
    let every = Trace::start(&["--no-time", "--no-fold", "--pid", &pid]);
    let json = Trace::start(&["--format", "json", "--pid", &pid]);
    let sender = Command::new("perl")
        .args(["-e", SENDER, &pid, &STORM.to_string()])
        .spawn()
        .expect("spawn the sender");
    let status = Owned::from_child(sender).wait_exit(WAIT);
    assert!(status.success(), "sender: {status:?}");
    target.wait_line("done", WAIT);

    let (status, folded, folded_err) = folded.stop_with(Signal::SIGINT);
    assert!(status.success(), "{status:?} {folded_err:?}");
    let (status, every, every_err) = every.stop_with(Signal::SIGINT);
    assert!(status.success(), "{status:?} {every_err:?}");
    let (status, json, json_err) = json.stop_with(Signal::SIGINT);
    assert!(status.success(), "{status:?} {json_err:?}");
    let records: Vec<Value> = json
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();

    // JSON has every event, --no-fold a line for each, and the folded text accounts for
    // each of them in a line or a count: all three the same.
    let by_json = counted(records.iter().map(json_kind));
    let by_line = counted(every.iter().map(|l| text_kind(l)));
    let by_fold = folded_kinds(&folded);
    assert_eq!(by_line, by_json, "--no-fold text against JSON");
    assert_eq!(by_fold, by_json, "folded text against JSON:\n{folded:#?}");
    let count = |kind: &str| by_json.get(kind).copied().unwrap_or(0);
    assert_eq!(
        count("generate SIGUSR1") + count("generate SIGUSR1 already pending"),
        u64::from(STORM),
        "{by_json:?}"
    );
    // Each SIGUSR1 queued (not merged with a pending one) was delivered once.
    assert_eq!(count("deliver SIGUSR1"), count("generate SIGUSR1"));
    for kind in ["generate SIGUSR2", "deliver SIGUSR2", "generate SIGTERM"] {
        assert_eq!(count(kind), 1, "{kind}: {by_json:?}");
    }
    // Nothing was lost, and each tracer read exactly the events it accounts for.
    for (err, kinds) in [
        (&folded_err, &by_fold),
        (&every_err, &by_line),
        (&json_err, &by_json),
    ] {
        assert_eq!(events_read(err), kinds.values().sum::<u64>());
    }

    // The odd signal stands out: printed once, between fold lines.
    let is_fold = |line: &String| fold_counts(line).is_some();
    let odd: Vec<usize> = (0..folded.len())
        .filter(|&i| text_kind(&folded[i]) == "generate SIGUSR2")
        .collect();
    assert_eq!(odd.len(), 1, "{folded:#?}");
    assert!(
        folded[..odd[0]].iter().any(is_fold) && folded[odd[0]..].iter().any(is_fold),
        "the SIGUSR2 line is not between fold lines: {folded:#?}"
    );
    // Folding is what made the output short (about 10× here, 9.9× in an emulated 6.12
    // guest, where deliveries interleave more); --no-fold shows no fold line.
    assert!(
        folded.len() * 5 < every.len(),
        "{} folded lines for {} events: {folded:#?}",
        folded.len(),
        every.len()
    );
    assert!(!every.iter().any(is_fold), "a fold line with --no-fold");
    assert!(!json.iter().any(|l| l.contains('×')), "a fold in JSON");
}

#[test]
fn masks_show_the_recipients_sets_by_name() {
    if !bpf_allowed("masks_show_the_recipients_sets_by_name") {
        return;
    }
    let _beside = beside_others();
    // Perl ignores SIGFPE itself as it starts: the script puts that back.
    let mut target = spawn_ready(&mut from_defaults(perl(
        r#"use POSIX; $| = 1; $SIG{FPE} = 'DEFAULT';
$SIG{USR1} = sub { print "got USR1\n" }; $SIG{TERM} = sub { }; $SIG{USR2} = 'IGNORE';
sigprocmask(SIG_SETMASK, POSIX::SigSet->new(SIGHUP));
print "ready\n"; sleep 1 while 1;"#,
    )));
    let pid = target.pid();
    let bit = |sig: Signal| 1u64 << (sig as i32 - 1);
    // What the kernel has, to compare the line with.
    assert_eq!(
        [
            proc_status_mask(pid, "SigCgt"),
            proc_status_mask(pid, "SigIgn"),
            proc_status_mask(pid, "SigBlk"),
        ],
        [
            bit(Signal::SIGUSR1) | bit(Signal::SIGTERM),
            bit(Signal::SIGUSR2),
            bit(Signal::SIGHUP),
        ]
    );
    let masked = Trace::start(&["--no-time", "--masks", "--pid", &pid.to_string()]);
    let plain = Trace::start(&["--no-time", "--pid", &pid.to_string()]);
    target.signal(Signal::SIGUSR1);
    // Handled: its generation and delivery are in the rings.
    target.wait_line("got USR1", WAIT);
    let (status, masked, err) = masked.stop_with(Signal::SIGINT);
    assert!(status.success(), "{status:?} {err:?}");
    let (status, plain, err) = plain.stop_with(Signal::SIGINT);
    assert!(status.success(), "{status:?} {err:?}");

    let generation = |lines: &[String]| {
        let found: Vec<String> = lines
            .iter()
            .filter(|l| l.starts_with("SIGUSR1 "))
            .cloned()
            .collect();
        assert_eq!(found.len(), 1, "{lines:#?}");
        found[0].clone()
    };
    let with = generation(&masked);
    let without = generation(&plain);
    assert!(
        with.ends_with("  caught USR1,TERM  ignored USR2  blocked HUP"),
        "{with}"
    );
    assert_eq!(
        with.split_once("  caught ").map(|(head, _)| head),
        Some(without.as_str()),
        "--masks only adds the sets"
    );
    // The delivery line is the same either way.
    let delivery = |lines: &[String]| lines.iter().find(|l| l.starts_with("  ↳ SIGUSR1")).cloned();
    assert!(delivery(&masked).is_some(), "{masked:#?}");
    assert_eq!(
        delivery(&masked).map(|l| l.split(" (").next().map(str::to_owned)),
        delivery(&plain).map(|l| l.split(" (").next().map(str::to_owned))
    );
}
