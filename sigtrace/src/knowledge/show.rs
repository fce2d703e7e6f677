//! `sigtrace show PID`: a psig-like table of all 64 signals — disposition (caught, ignored,
//! or default with what the default does), blocked, pending on the thread or the whole
//! process — below the process's parent, process group, session, controlling tty and the
//! tty's foreground group: what decides who a Ctrl-C or a `kill` reaches and what it does.
//!
//! The JSON and the fact lines are shared with `diff`, which puts two of these side by side.

use super::process::{Disposition, ProcessFacts, SignalState, ThreadFacts};
use super::style::{Paint, Style};
use super::{Error, OutputFormat, ShowArgs};
use crate::escape;
use crate::signals::SigSet;
use serde::Serialize;
use std::io::Write;

/// A process as JSON: the same object in `show` and in each half of `diff`.
#[derive(Serialize)]
pub(super) struct ProcessJson {
    pid: i32,
    tgid: i32,
    comm: String,
    state: String,
    parent: RelativeJson,
    pgrp: i32,
    session: i32,
    tty: Option<TtyJson>,
    tty_foreground_pgrp: Option<i32>,
    in_foreground: Option<bool>,
    masks: MasksJson,
    signals: Vec<SignalJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    threads: Option<Vec<ThreadJson>>,
}

#[derive(Serialize)]
struct RelativeJson {
    pid: i32,
    comm: Option<String>,
}

#[derive(Serialize)]
struct TtyJson {
    name: String,
    major: u32,
    minor: u32,
}

/// The masks as ps and /proc print them, with a 0x prefix.
#[derive(Serialize)]
struct MasksJson {
    caught: String,
    ignored: String,
    blocked: String,
    pending_thread: String,
    pending_shared: String,
}

/// One signal's state.
#[derive(Serialize)]
pub(super) struct SignalJson {
    number: i32,
    name: String,
    /// "caught", "ignored" or "default".
    disposition: &'static str,
    /// What SIG_DFL does (also for caught or ignored signals: what resetting would do).
    default_action: &'static str,
    blocked: bool,
    pending_thread: bool,
    pending_shared: bool,
}

#[derive(Serialize)]
struct ThreadJson {
    tid: i32,
    comm: String,
    blocked: String,
    pending: String,
    blocked_signals: Vec<String>,
    pending_signals: Vec<String>,
}

impl SignalJson {
    pub(super) fn new(state: &SignalState) -> SignalJson {
        SignalJson {
            number: state.signal.0,
            name: state.signal.name().into_owned(),
            disposition: state.disposition.kind(),
            default_action: state.signal.default_action().as_str(),
            blocked: state.blocked,
            pending_thread: state.pending_thread,
            pending_shared: state.pending_shared,
        }
    }
}

impl ProcessJson {
    /// `facts` as JSON, listing the signals `keep` accepts; threads only if they were read.
    pub(super) fn new(
        facts: &ProcessFacts,
        with_threads: bool,
        keep: impl Fn(&SignalState) -> bool,
    ) -> ProcessJson {
        ProcessJson {
            pid: facts.pid,
            tgid: facts.tgid,
            comm: String::from_utf8_lossy(&facts.comm).into_owned(),
            state: facts.state.to_string(),
            parent: RelativeJson {
                pid: facts.parent.pid,
                comm: facts
                    .parent
                    .comm
                    .as_deref()
                    .map(|comm| String::from_utf8_lossy(comm).into_owned()),
            },
            pgrp: facts.pgrp,
            session: facts.session,
            tty: facts.tty.as_ref().map(|tty| TtyJson {
                name: tty.name.clone(),
                major: tty.major,
                minor: tty.minor,
            }),
            tty_foreground_pgrp: facts.tty_foreground_pgrp,
            in_foreground: facts.in_foreground(),
            masks: MasksJson {
                caught: facts.masks.caught.hex(),
                ignored: facts.masks.ignored.hex(),
                blocked: facts.masks.blocked.hex(),
                pending_thread: facts.masks.pending_thread.hex(),
                pending_shared: facts.masks.pending_shared.hex(),
            },
            signals: facts
                .masks
                .signal_states()
                .iter()
                .filter(|state| keep(state))
                .map(SignalJson::new)
                .collect(),
            threads: with_threads.then(|| facts.threads.iter().map(thread_json).collect()),
        }
    }
}

fn thread_json(thread: &ThreadFacts) -> ThreadJson {
    ThreadJson {
        tid: thread.tid,
        comm: String::from_utf8_lossy(&thread.comm).into_owned(),
        blocked: thread.blocked.hex(),
        pending: thread.pending.hex(),
        blocked_signals: thread.blocked.names(),
        pending_signals: thread.pending.names(),
    }
}

/// The facts above the table, as (label, value) lines; `diff` compares them line by line.
pub(super) fn fact_lines(facts: &ProcessFacts) -> Vec<(&'static str, String)> {
    let mut process = format!("{}, state {}", facts.label(), facts.state);
    if facts.tgid != facts.pid {
        process.push_str(&format!(", a thread of process {}", facts.tgid));
    }
    let tty = match (&facts.tty, facts.tty_foreground_pgrp) {
        (None, _) => "none".to_owned(),
        (Some(tty), None) => escape::text(&tty.name).to_string(),
        (Some(tty), Some(foreground)) => {
            format!("{}, foreground pgrp {foreground}", escape::text(&tty.name))
        }
    };
    let pgrp = match facts.in_foreground() {
        Some(true) => format!("{} (the tty's foreground group)", facts.pgrp),
        Some(false) => format!("{} (in the background)", facts.pgrp),
        None => facts.pgrp.to_string(),
    };
    let masks = &facts.masks;
    vec![
        ("process", process),
        ("parent", facts.parent.label()),
        ("pgrp", pgrp),
        ("session", facts.session.to_string()),
        ("tty", tty),
        ("caught", masks.caught.hex()),
        ("ignored", masks.ignored.hex()),
        ("blocked", masks.blocked.hex()),
        ("pending thread", masks.pending_thread.hex()),
        ("pending shared", masks.pending_shared.hex()),
    ]
}

/// Width of the label column of the fact lines.
pub(super) const LABEL_WIDTH: usize = 14;
/// Widths of the signal table's columns.
pub(super) const NAME_WIDTH: usize = 11;
const DISPOSITION_WIDTH: usize = 13;
const BLOCKED_WIDTH: usize = 7;

/// A state's disposition cell, padded to `width` and coloured.
pub(super) fn disposition_cell(state: &SignalState, width: usize, style: Style) -> String {
    let text = format!("{:<width$}", state.disposition.describe());
    match state.disposition {
        Disposition::Caught => style.paint(Paint::Caught, &text),
        Disposition::Ignored => style.paint(Paint::Ignored, &text),
        Disposition::Default(_) => text,
    }
}

pub(super) fn run(args: &ShowArgs, out: &mut dyn Write) -> Result<(), Error> {
    let facts = ProcessFacts::read(args.pid, args.threads)?;
    let keep = |state: &SignalState| !args.changed || state.is_notable();
    match args.output.format {
        OutputFormat::Json => {
            let json = ProcessJson::new(&facts, args.threads, keep);
            serde_json::to_writer(&mut *out, &json).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        OutputFormat::Text => write_text(out, &facts, args, Style::new(args.output.color))?,
    }
    Ok(())
}

fn write_text(
    out: &mut dyn Write,
    facts: &ProcessFacts,
    args: &ShowArgs,
    style: Style,
) -> Result<(), Error> {
    for (label, value) in fact_lines(facts) {
        writeln!(out, "{label:<LABEL_WIDTH$} {value}")?;
    }
    writeln!(out)?;
    let heading = format!(
        "{:>3}  {:<NAME_WIDTH$}  {:<DISPOSITION_WIDTH$}  {:<BLOCKED_WIDTH$}  PENDING",
        "NUM", "SIGNAL", "DISPOSITION", "BLOCKED"
    );
    writeln!(out, "{}", style.paint(Paint::Heading, heading.trim_end()))?;
    for state in facts.masks.signal_states() {
        if args.changed && !state.is_notable() {
            continue;
        }
        let blocked = format!(
            "{:<BLOCKED_WIDTH$}",
            if state.blocked { "blocked" } else { "" }
        );
        let line = format!(
            "{:>3}  {:<NAME_WIDTH$}  {}  {}  {}",
            state.signal.0,
            state.signal.name(),
            disposition_cell(&state, DISPOSITION_WIDTH, style),
            style.paint_if(state.blocked, Paint::Blocked, &blocked),
            style.paint(Paint::Pending, state.pending_text()),
        );
        writeln!(out, "{}", line.trim_end())?;
    }
    if args.threads {
        writeln!(out)?;
        write_threads(out, &facts.threads, style)?;
    }
    Ok(())
}

/// Each thread's blocked and pending signals (caught/ignored are per process).
pub(super) fn write_threads(
    out: &mut dyn Write,
    threads: &[ThreadFacts],
    style: Style,
) -> Result<(), Error> {
    let heading = format!("{:>7}  {:<15}  {:<18}  PENDING", "TID", "COMM", "BLOCKED");
    writeln!(out, "{}", style.paint(Paint::Heading, &heading))?;
    for thread in threads {
        writeln!(
            out,
            "{:>7}  {:<15}  {}  {}",
            thread.tid,
            escape::bytes(&thread.comm),
            thread.blocked.hex(),
            thread.pending.hex()
        )?;
        let names = |set: SigSet| match set.names() {
            names if names.is_empty() => "-".to_owned(),
            names => names.join(" "),
        };
        if !thread.blocked.is_empty() || !thread.pending.is_empty() {
            writeln!(out, "{:>26}blocked: {}", "", names(thread.blocked))?;
            writeln!(
                out,
                "{:>26}pending: {}",
                "",
                style.paint_if(
                    !thread.pending.is_empty(),
                    Paint::Pending,
                    &names(thread.pending)
                )
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::process::{Masks, Relative, Tty};
    use super::super::{ColorChoice, OutputArgs};
    use super::*;
    use crate::signals::num;

    fn bit(sig: i32) -> u64 {
        1 << (sig - 1)
    }

    fn sample() -> ProcessFacts {
        ProcessFacts {
            pid: 4242,
            tgid: 4242,
            comm: "bash".into(),
            state: 'S',
            parent: Relative {
                pid: 4200,
                comm: Some("sshd".into()),
            },
            pgrp: 4242,
            session: 4200,
            tty: Some(Tty {
                name: "pts/3".into(),
                major: 136,
                minor: 3,
            }),
            tty_foreground_pgrp: Some(4250),
            masks: Masks {
                caught: SigSet(bit(num::SIGUSR1) | bit(num::SIGCHLD)),
                ignored: SigSet(bit(num::SIGINT)),
                blocked: SigSet(bit(num::SIGUSR2)),
                pending_thread: SigSet::EMPTY,
                pending_shared: SigSet(bit(num::SIGUSR2)),
            },
            threads: vec![ThreadFacts {
                tid: 4242,
                comm: "bash".into(),
                blocked: SigSet(bit(num::SIGUSR2)),
                pending: SigSet::EMPTY,
            }],
        }
    }

    fn args(changed: bool, threads: bool) -> ShowArgs {
        ShowArgs {
            pid: 4242,
            threads,
            changed,
            output: OutputArgs {
                format: OutputFormat::Text,
                color: ColorChoice::Never,
            },
        }
    }

    fn render(facts: &ProcessFacts, args: &ShowArgs) -> String {
        let mut out = Vec::new();
        let result = write_text(&mut out, facts, args, Style::new(ColorChoice::Never));
        assert!(result.is_ok(), "{result:?}");
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn text_lists_all_64_signals_under_the_facts() {
        let text = render(&sample(), &args(false, false));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "process        4242 (bash), state S");
        assert_eq!(lines[1], "parent         4200 (sshd)");
        assert_eq!(lines[2], "pgrp           4242 (in the background)");
        assert_eq!(lines[4], "tty            pts/3, foreground pgrp 4250");
        assert_eq!(lines[9], "pending shared 0x0000000000000800");
        let table: Vec<&str> = lines
            .iter()
            .skip_while(|l| !l.starts_with("NUM"))
            .copied()
            .collect();
        assert_eq!(table.len(), 65);
        assert_eq!(table[1], "  1  SIGHUP       default: Term");
        assert_eq!(table[2], "  2  SIGINT       ignored");
        assert_eq!(table[10], " 10  SIGUSR1      caught");
        assert_eq!(
            table[12],
            " 12  SIGUSR2      default: Term  blocked  shared"
        );
        assert_eq!(table[64], " 64  SIGRTMAX     default: Term");
    }

    #[test]
    fn changed_keeps_only_notable_signals_and_threads_are_listed() {
        let text = render(&sample(), &args(true, true));
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(' ') && l.contains("SIG") && !l.contains(':'))
            .collect();
        assert_eq!(rows.len(), 3, "{text}");
        assert!(
            text.contains("\n   4242  bash             0x0000000000000800  0x0000000000000000\n")
        );
        assert!(text.contains("blocked: SIGUSR2\n"));
    }

    #[test]
    fn json_carries_masks_signals_and_relations() {
        let json = ProcessJson::new(&sample(), true, |_| true);
        let value = serde_json::to_value(&json).unwrap_or_default();
        assert_eq!(value["masks"]["caught"], "0x0000000000010200");
        assert_eq!(value["tty"]["name"], "pts/3");
        assert_eq!(value["in_foreground"], false);
        assert_eq!(value["parent"]["comm"], "sshd");
        assert_eq!(value["signals"].as_array().map(Vec::len), Some(64));
        assert_eq!(value["signals"][1]["disposition"], "ignored");
        assert_eq!(value["signals"][11]["pending_shared"], true);
        assert_eq!(value["threads"][0]["blocked_signals"][0], "SIGUSR2");
        let without = serde_json::to_value(ProcessJson::new(&sample(), false, |_| true));
        assert!(without.is_ok_and(|v| v.get("threads").is_none()));
    }
}
