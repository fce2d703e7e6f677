//! End-to-end: --handler-time. How long each handler ran, nested handlers ending innermost
//! first, and handlers that never return: left by a longjmp (perl's `die` out of a handler
//! unwinds with one) or ended by an exit inside them.

use std::time::Duration;

use serde_json::Value;

use crate::util::*;

/// perl with handlers run in the signal's own context (POSIX::sigaction's are not deferred
/// to perl's safe points), each doing what its comment says, one after the other.
const HANDLERS_PERL: &str = r#"
use POSIX; $| = 1;
sub on { my ($sig, $code) = @_; POSIX::sigaction($sig, POSIX::SigAction->new($code, POSIX::SigSet->new, 0)) }
sub nap { select(undef, undef, undef, $_[0]) }
# Runs 300 ms.
on(SIGUSR1, sub { nap(0.3) });
kill 'USR1', $$;
# SIGTERM's handler takes SIGUSR2 inside it (nested, 100 ms), then runs 200 ms more.
on(SIGUSR2, sub { nap(0.1) });
on(SIGTERM, sub { kill 'USR2', $$; nap(0.2) });
kill 'TERM', $$;
# Left by a longjmp: die unwinds out of the handler into the eval.
on(SIGALRM, sub { die "jumped\n" });
eval { kill 'ALRM', $$; nap(5) };
print STDERR "after $@";
# The next delivery shows that frame gone.
kill 'USR1', $$;
# Exits inside the handler.
on(SIGHUP, sub { POSIX::_exit(3) });
kill 'HUP', $$;
nap(5);
"#;

fn handler_ends(records: &[Value], pid: u32) -> Vec<&Value> {
    of_type(records, "handler")
        .into_iter()
        .filter(|h| h["task"]["pid"] == pid)
        .collect()
}

fn ms(record: &Value) -> u64 {
    record["duration_ns"].as_u64().unwrap_or(0) / 1_000_000
}

#[test]
fn handler_times_nesting_longjmp_and_exit() {
    if !bpf_allowed("handler_times_nesting_longjmp_and_exit") {
        return;
    }
    let _beside = beside_others();
    let (status, records, stderr) = launch(&["--handler-time", "--", "perl", "-e", HANDLERS_PERL]);
    assert_eq!(status, Some(3), "the command's status; stderr: {stderr}");
    let perl = of_type(&records, "exit")
        .into_iter()
        .find(|x| x["task"]["comm"] == "perl")
        .and_then(|x| x["task"]["pid"].as_u64())
        .unwrap_or_else(|| panic!("no exit of perl in {records:#?}")) as u32;
    let ends = handler_ends(&records, perl);
    let summary: Vec<(&str, &str)> = ends
        .iter()
        .map(|h| (signal_name(h), h["end"].as_str().unwrap_or("?")))
        .collect();
    assert_eq!(
        summary,
        [
            ("SIGUSR1", "returned"),
            ("SIGUSR2", "returned"),
            ("SIGTERM", "returned"),
            ("SIGALRM", "left"),
            ("SIGUSR1", "returned"),
            ("SIGHUP", "exited"),
        ],
        "{ends:#?}"
    );
    // Durations as slept, within what a slow machine adds.
    let slack = scaled(Duration::from_millis(400)).as_millis() as u64;
    for (i, slept) in [(0, 300), (1, 100), (2, 300), (4, 300)] {
        let took = ms(ends[i]);
        assert!(
            (slept..slept + slack).contains(&took),
            "{}: {took} ms for a {slept} ms handler",
            signal_name(ends[i])
        );
    }
    for never in [ends[3], ends[5]] {
        assert_eq!(never["duration_ns"], Value::Null, "{never}");
    }
    // Each handler end names the generation that started it.
    for h in &ends {
        let id = h["generation"].as_u64().unwrap_or(0);
        let g = of_type(&records, "generate")
            .into_iter()
            .find(|g| g["id"] == id)
            .unwrap_or_else(|| panic!("no generation {id} for {h}"));
        assert_eq!(g["signal"], h["signal"]);
    }
}

#[test]
fn without_the_option_no_handler_records() {
    if !bpf_allowed("without_the_option_no_handler_records") {
        return;
    }
    let _beside = beside_others();
    let (status, records, stderr) = launch(&[
        "--",
        "perl",
        "-e",
        "use POSIX; POSIX::sigaction(SIGUSR1, POSIX::SigAction->new(sub {}, POSIX::SigSet->new, 0)); kill 'USR1', $$;",
    ]);
    assert_eq!(status, Some(0), "{stderr}");
    assert!(of_type(&records, "handler").is_empty(), "{records:#?}");
    assert_eq!(
        of_type(&records, "deliver")
            .iter()
            .filter(|d| signal_name(d) == "SIGUSR1")
            .count(),
        1
    );
}

/// A handler the filters leave out, nested in a reported one, ends nothing: the reported
/// run ends at its own rt_sigreturn.
#[test]
fn an_unreported_handlers_return_ends_no_reported_run() {
    if !bpf_allowed("an_unreported_handlers_return_ends_no_reported_run") {
        return;
    }
    let _beside = beside_others();
    let (status, records, stderr) = launch(&[
        "--handler-time",
        "--signal",
        "USR1",
        "--",
        "perl",
        "-e",
        r#"use POSIX;
sub on { my ($sig, $code) = @_; POSIX::sigaction($sig, POSIX::SigAction->new($code, POSIX::SigSet->new, 0)) }
on(SIGALRM, sub {});
on(SIGUSR1, sub { kill 'ALRM', $$; select(undef, undef, undef, 0.3) });
kill 'USR1', $$;"#,
    ]);
    assert_eq!(status, Some(0), "{stderr}");
    let ends: Vec<&Value> = of_type(&records, "handler");
    assert_eq!(ends.len(), 1, "{ends:#?}");
    assert_eq!(signal_name(ends[0]), "SIGUSR1");
    assert_eq!(ends[0]["end"], "returned");
    let slack = scaled(Duration::from_millis(400)).as_millis() as u64;
    assert!(
        (300..300 + slack).contains(&ms(ends[0])),
        "{} ms: {:#}",
        ms(ends[0]),
        ends[0]
    );
}
