//! `sigtrace show PID`: a psig-like table of all 64 signals — disposition (caught, ignored,
//! or default with what the default does), blocked, pending on the thread or the whole
//! process — below the process's parent, process group, session, controlling tty and the
//! tty's foreground group: what decides who a Ctrl-C or a `kill` reaches and what it does.
//!
//! The JSON and the fact lines are shared with `diff`, which puts two of these side by side.

use super::process::{ProcessFacts, SignalState, ThreadFacts};
use super::style::{Paint, Style};
use super::{Error, OutputFormat, ShowArgs};
use crate::escape;
use crate::output::json::{DispositionJson, Mask, NamedSignal, SCHEMA_VERSION};
use crate::signals::{Disposition, SigSet};
use serde::Serialize;
use std::io::Write;

/// `show --format json`: the process, with `v` and `type` like every sigtrace record.
#[derive(Serialize)]
struct ShowRecord {
    v: u32,
    r#type: &'static str,
    #[serde(flatten)]
    process: ProcessJson,
}

/// A process as JSON: the same object in `show` and in each half of `diff`. Its ids are
/// named as in trace records (`pid`, `tid`, `comm`, `uid`, `ppid`, `pgid`, `sid`, `tty`,
/// `tty_fg_pgid`), its dispositions and signals are the trace's objects too.
#[derive(Serialize)]
pub(super) struct ProcessJson {
    /// The process (thread group).
    pid: i32,
    /// The thread asked for: `pid` unless the pid given was another thread's id.
    tid: i32,
    comm: String,
    uid: u32,
    state: String,
    ppid: i32,
    parent_comm: Option<String>,
    pgid: i32,
    sid: i32,
    tty: Option<String>,
    tty_device: Option<TtyDeviceJson>,
    tty_fg_pgid: Option<i32>,
    in_foreground: Option<bool>,
    masks: MasksJson,
    signals: Vec<SignalJson>,
    /// Null unless asked for (`--threads`).
    threads: Option<Vec<ThreadJson>>,
}

#[derive(Serialize)]
struct TtyDeviceJson {
    major: u32,
    minor: u32,
}

/// The masks of /proc/PID/status.
#[derive(Serialize)]
struct MasksJson {
    caught: Mask,
    ignored: Mask,
    blocked: Mask,
    pending_thread: Mask,
    pending_shared: Mask,
}

/// One signal's state.
#[derive(Serialize)]
pub(super) struct SignalJson {
    signal: NamedSignal,
    disposition: DispositionJson,
    blocked: bool,
    pending_thread: bool,
    pending_shared: bool,
}

#[derive(Serialize)]
struct ThreadJson {
    tid: i32,
    comm: String,
    blocked: Mask,
    pending: Mask,
    blocked_signals: Vec<String>,
    pending_signals: Vec<String>,
}

impl SignalJson {
    pub(super) fn new(state: &SignalState) -> SignalJson {
        SignalJson {
            signal: NamedSignal::new(state.signal.0),
            // /proc tells neither the handler's address nor sa_flags.
            disposition: DispositionJson::new(state.signal, state.disposition, None),
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
        let masks = &facts.masks;
        ProcessJson {
            pid: facts.tgid,
            tid: facts.pid,
            comm: String::from_utf8_lossy(&facts.comm).into_owned(),
            uid: facts.uid,
            state: facts.state.to_string(),
            ppid: facts.parent.pid,
            parent_comm: facts
                .parent
                .comm
                .as_deref()
                .map(|comm| String::from_utf8_lossy(comm).into_owned()),
            pgid: facts.pgrp,
            sid: facts.session,
            tty: facts.tty.as_ref().map(|tty| tty.name.clone()),
            tty_device: facts.tty.as_ref().map(|tty| TtyDeviceJson {
                major: tty.major,
                minor: tty.minor,
            }),
            tty_fg_pgid: facts.tty_foreground_pgrp,
            in_foreground: facts.in_foreground(),
            masks: MasksJson {
                caught: Mask(masks.caught.0),
                ignored: Mask(masks.ignored.0),
                blocked: Mask(masks.blocked.0),
                pending_thread: Mask(masks.pending_thread.0),
                pending_shared: Mask(masks.pending_shared.0),
            },
            signals: masks
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
        blocked: Mask(thread.blocked.0),
        pending: Mask(thread.pending.0),
        blocked_signals: thread.blocked.names(),
        pending_signals: thread.pending.names(),
    }
}

/// One line above the table: its label in the text, the JSON field it stands for (the
/// name `diff` lists in `differing_facts`), and its text.
pub(super) struct Fact {
    pub label: &'static str,
    pub key: &'static str,
    pub value: String,
}

/// The facts above the table; `diff` compares them line by line.
pub(super) fn fact_lines(facts: &ProcessFacts) -> Vec<Fact> {
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
    [
        ("process", "pid", process),
        ("parent", "ppid", facts.parent.label()),
        ("pgrp", "pgid", pgrp),
        ("session", "sid", facts.session.to_string()),
        ("tty", "tty", tty),
        ("caught", "caught", masks.caught.hex()),
        ("ignored", "ignored", masks.ignored.hex()),
        ("blocked", "blocked", masks.blocked.hex()),
        (
            "pending thread",
            "pending_thread",
            masks.pending_thread.hex(),
        ),
        (
            "pending shared",
            "pending_shared",
            masks.pending_shared.hex(),
        ),
    ]
    .into_iter()
    .map(|(label, key, value)| Fact { label, key, value })
    .collect()
}

/// Width of the label column of the fact lines.
pub(super) const LABEL_WIDTH: usize = 14;
/// Widths of the signal table's columns.
pub(super) const NAME_WIDTH: usize = 11;
const DISPOSITION_WIDTH: usize = 13;
const BLOCKED_WIDTH: usize = 7;

/// A state's disposition cell, padded to `width` and coloured.
pub(super) fn disposition_cell(state: &SignalState, width: usize, style: Style) -> String {
    let text = format!("{:<width$}", state.describe());
    match state.disposition {
        Disposition::Caught(_) => style.paint(Paint::Caught, &text),
        Disposition::Ignored => style.paint(Paint::Ignored, &text),
        Disposition::Default => text,
    }
}

pub(super) fn run(args: &ShowArgs, out: &mut dyn Write) -> Result<(), Error> {
    let facts = ProcessFacts::read(args.pid, args.threads)?;
    write(out, &facts, args)
}

/// `facts` as `args` asks: the text table or one JSON record.
pub(super) fn write(
    out: &mut dyn Write,
    facts: &ProcessFacts,
    args: &ShowArgs,
) -> Result<(), Error> {
    let keep = |state: &SignalState| !args.changed || state.is_notable();
    match args.output.format {
        OutputFormat::Json => {
            let record = ShowRecord {
                v: SCHEMA_VERSION,
                r#type: "show",
                process: ProcessJson::new(facts, args.threads, keep),
            };
            serde_json::to_writer(&mut *out, &record).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        OutputFormat::Text => write_text(out, facts, args, Style::new(args.output.color))?,
    }
    Ok(())
}

fn write_text(
    out: &mut dyn Write,
    facts: &ProcessFacts,
    args: &ShowArgs,
    style: Style,
) -> Result<(), Error> {
    for Fact { label, value, .. } in fact_lines(facts) {
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
    use serde_json::json;

    fn bit(sig: i32) -> u64 {
        1 << (sig - 1)
    }

    fn sample() -> ProcessFacts {
        ProcessFacts {
            pid: 4242,
            tgid: 4242,
            comm: "bash".into(),
            uid: 1000,
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

    fn json(facts: &ProcessFacts, changed: bool, threads: bool) -> serde_json::Value {
        let mut args = args(changed, threads);
        args.output.format = OutputFormat::Json;
        let mut out = Vec::new();
        let result = write(&mut out, facts, &args);
        assert!(result.is_ok(), "{result:?}");
        let mut records = crate::output::tests::schema_valid_lines(&out);
        assert_eq!(records.len(), 1, "one record");
        records.remove(0)
    }

    #[test]
    fn json_is_a_show_record_named_like_the_trace() {
        let value = json(&sample(), false, true);
        assert_eq!((&value["v"], &value["type"]), (&json!(3), &json!("show")));
        // Ids, relations and the tty as trace records name them.
        let ids: Vec<&str> = [
            "pid",
            "tid",
            "uid",
            "ppid",
            "parent_comm",
            "pgid",
            "sid",
            "tty",
            "tty_fg_pgid",
            "in_foreground",
        ]
        .into_iter()
        .filter(|key| value.get(key).is_some())
        .collect();
        assert_eq!(ids.len(), 10, "{value}");
        assert_eq!(value["pid"], 4242);
        assert_eq!(value["tid"], 4242);
        assert_eq!(value["comm"], "bash");
        assert_eq!(value["uid"], 1000);
        assert_eq!(value["ppid"], 4200);
        assert_eq!(value["parent_comm"], "sshd");
        assert_eq!(
            (&value["pgid"], &value["sid"]),
            (&json!(4242), &json!(4200))
        );
        assert_eq!(value["tty"], "pts/3");
        assert_eq!(value["tty_device"], json!({"major": 136, "minor": 3}));
        assert_eq!(value["tty_fg_pgid"], 4250);
        assert_eq!(value["in_foreground"], false);
        assert_eq!(value["masks"]["caught"], "0x0000000000010200");
        assert_eq!(value["masks"]["pending_shared"], "0x0000000000000800");
        // Signals: the trace's signal and disposition objects.
        let signals = value["signals"].as_array().map_or(&[][..], Vec::as_slice);
        assert_eq!(signals.len(), 64);
        assert_eq!(
            signals[1],
            json!({
                "signal": {"number": 2, "name": "SIGINT"},
                "disposition": {"action": "ignored", "handler": null, "default_action": "Term", "flags": null},
                "blocked": false, "pending_thread": false, "pending_shared": false
            })
        );
        assert_eq!(signals[9]["disposition"]["action"], "caught");
        assert_eq!(signals[16]["disposition"]["default_action"], "Ign");
        assert_eq!(signals[11]["disposition"]["action"], "default");
        assert_eq!(signals[11]["pending_shared"], true);
        assert_eq!(signals[11]["blocked"], true);
        assert_eq!(value["threads"][0]["tid"], 4242);
        assert_eq!(value["threads"][0]["blocked"], "0x0000000000000800");
        assert_eq!(value["threads"][0]["blocked_signals"], json!(["SIGUSR2"]));
    }

    #[test]
    fn json_without_threads_or_tty_keeps_every_field() {
        let mut facts = sample();
        facts.tty = None;
        facts.tty_foreground_pgrp = None;
        facts.parent.comm = None;
        // Asked for by a thread's id: pid is still the process.
        facts.pid = 4243;
        let value = json(&facts, true, false);
        assert_eq!((&value["pid"], &value["tid"]), (&json!(4242), &json!(4243)));
        for key in [
            "threads",
            "tty",
            "tty_device",
            "tty_fg_pgid",
            "in_foreground",
            "parent_comm",
        ] {
            assert_eq!(value.get(key), Some(&serde_json::Value::Null), "{key}");
        }
        let names: Vec<&str> = value["signals"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["signal"]["name"].as_str())
            .collect();
        assert_eq!(names, ["SIGINT", "SIGUSR1", "SIGUSR2", "SIGCHLD"]);
    }
}
