//! `sigtrace diff PID PID`: two processes side by side — typically a wrapper script and the
//! program it started, where one ignores SIGINT and the other catches it, or one is in the
//! tty's foreground group and the other is not. Rows that differ are marked with `*` (and
//! highlighted on a terminal), and a last line lists the differing signals.

use super::process::{ProcessFacts, SignalState};
use super::show::{self, Fact, LABEL_WIDTH, NAME_WIDTH, ProcessJson, SignalJson};
use super::style::{Paint, Style};
use super::{DiffArgs, Error, OutputFormat};
use crate::output::json::{NamedSignal, SCHEMA_VERSION};
use serde::Serialize;
use std::io::Write;

/// `diff --format json`: both processes as `show` prints them, and what differs.
#[derive(Serialize)]
struct DiffRecord {
    v: u32,
    r#type: &'static str,
    left: ProcessJson,
    right: ProcessJson,
    /// The process fields that differ: "ppid", "pgid", "sid", "tty", and the masks
    /// "caught", "ignored", "blocked", "pending_thread", "pending_shared".
    differing_facts: Vec<&'static str>,
    /// The signals whose state differs, in number order.
    differing: Vec<SignalDiffJson>,
}

#[derive(Serialize)]
struct SignalDiffJson {
    signal: NamedSignal,
    /// Which of "disposition", "blocked", "pending_thread", "pending_shared" differ.
    fields: Vec<&'static str>,
    left: SignalJson,
    right: SignalJson,
}

/// The fields of one signal's state that differ between the two processes.
fn differing_fields(left: &SignalState, right: &SignalState) -> Vec<&'static str> {
    let mut fields = Vec::new();
    if left.disposition != right.disposition {
        fields.push("disposition");
    }
    if left.blocked != right.blocked {
        fields.push("blocked");
    }
    if left.pending_thread != right.pending_thread {
        fields.push("pending_thread");
    }
    if left.pending_shared != right.pending_shared {
        fields.push("pending_shared");
    }
    fields
}

/// One fact line of both processes.
struct ComparedFact {
    label: &'static str,
    key: &'static str,
    left: String,
    right: String,
    differs: bool,
}

/// Fact lines compared line by line; the first ("process", the pids) always differs and is
/// not counted.
fn compared_facts(left: &ProcessFacts, right: &ProcessFacts) -> Vec<ComparedFact> {
    show::fact_lines(left)
        .into_iter()
        .zip(show::fact_lines(right))
        .map(
            |(
                Fact {
                    label,
                    key,
                    value: a,
                },
                Fact { value: b, .. },
            )| ComparedFact {
                label,
                key,
                differs: key != "pid" && a != b,
                left: a,
                right: b,
            },
        )
        .collect()
}

pub(super) fn run(args: &DiffArgs, out: &mut dyn Write) -> Result<(), Error> {
    let [left_pid, right_pid] = args.pids[..] else {
        // clap enforces two values; this is for callers that build DiffArgs themselves.
        return Err(Error::DiffNeedsTwoPids {
            count: args.pids.len(),
        });
    };
    let left = ProcessFacts::read(left_pid, args.threads)?;
    let right = ProcessFacts::read(right_pid, args.threads)?;
    write(out, args, &left, &right)
}

/// The two processes compared, as `args` asks: the text table or one JSON record.
fn write(
    out: &mut dyn Write,
    args: &DiffArgs,
    left: &ProcessFacts,
    right: &ProcessFacts,
) -> Result<(), Error> {
    let left_states = left.masks.signal_states();
    let right_states = right.masks.signal_states();
    let pairs: Vec<(&SignalState, &SignalState, Vec<&'static str>)> = left_states
        .iter()
        .zip(&right_states)
        .map(|(a, b)| (a, b, differing_fields(a, b)))
        .collect();
    match args.output.format {
        OutputFormat::Json => {
            let differs = |state: &SignalState| {
                let index = usize::try_from(state.signal.0 - 1).unwrap_or(usize::MAX);
                pairs
                    .get(index)
                    .is_some_and(|(_, _, fields)| !fields.is_empty())
            };
            let keep = |state: &SignalState| !args.changed || differs(state);
            let json = DiffRecord {
                v: SCHEMA_VERSION,
                r#type: "diff",
                left: ProcessJson::new(left, args.threads, keep),
                right: ProcessJson::new(right, args.threads, keep),
                differing_facts: compared_facts(left, right)
                    .into_iter()
                    .filter(|fact| fact.differs)
                    .map(|fact| fact.key)
                    .collect(),
                differing: pairs
                    .iter()
                    .filter(|(_, _, fields)| !fields.is_empty())
                    .map(|(a, b, fields)| SignalDiffJson {
                        signal: NamedSignal::new(a.signal.0),
                        fields: fields.clone(),
                        left: SignalJson::new(a),
                        right: SignalJson::new(b),
                    })
                    .collect(),
            };
            serde_json::to_writer(&mut *out, &json).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        OutputFormat::Text => {
            let style = Style::new(args.output.color);
            write_text(out, args, style, left, right, &pairs)?;
        }
    }
    Ok(())
}

/// A cell of the signal table: "caught, blocked, pending shared".
fn cell(state: &SignalState) -> String {
    let mut text = state.describe();
    if state.blocked {
        text.push_str(", blocked");
    }
    if !state.pending_text().is_empty() {
        text.push_str(", pending ");
        text.push_str(state.pending_text());
    }
    text
}

fn marker(differs: bool, style: Style) -> String {
    if differs {
        style.paint(Paint::Differs, "*")
    } else {
        " ".to_owned()
    }
}

fn write_text(
    out: &mut dyn Write,
    args: &DiffArgs,
    style: Style,
    left: &ProcessFacts,
    right: &ProcessFacts,
    pairs: &[(&SignalState, &SignalState, Vec<&'static str>)],
) -> Result<(), Error> {
    let facts = compared_facts(left, right);
    let fact_width = facts.iter().map(|fact| fact.left.len()).max().unwrap_or(0);
    for fact in &facts {
        let (label, differs) = (fact.label, fact.differs);
        let line = format!(
            "{} {label:<LABEL_WIDTH$} {}  {}",
            marker(differs, style),
            style.paint_if(
                differs,
                Paint::Differs,
                &format!("{:<fact_width$}", fact.left)
            ),
            style.paint_if(differs, Paint::Differs, &fact.right),
        );
        writeln!(out, "{}", line.trim_end())?;
    }
    writeln!(out)?;

    let left_label = left.label();
    let cell_width = pairs
        .iter()
        .map(|(a, ..)| cell(a).len())
        .chain([left_label.len()])
        .max()
        .unwrap_or(0);
    let heading = format!(
        "  {:>3}  {:<NAME_WIDTH$}  {left_label:<cell_width$}  {}",
        "NUM",
        "SIGNAL",
        right.label()
    );
    writeln!(out, "{}", style.paint(Paint::Heading, &heading))?;
    let mut differing = Vec::new();
    for (a, b, fields) in pairs {
        let differs = !fields.is_empty();
        if differs {
            differing.push(a.signal.name().into_owned());
        } else if args.changed {
            continue;
        }
        let name = format!("{:<NAME_WIDTH$}", a.signal.name());
        let line = format!(
            "{} {:>3}  {}  {:<cell_width$}  {}",
            marker(differs, style),
            a.signal.0,
            style.paint_if(differs, Paint::Differs, &name),
            cell(a),
            cell(b),
        );
        writeln!(out, "{}", line.trim_end())?;
    }
    if args.threads {
        for facts in [left, right] {
            writeln!(out)?;
            writeln!(out, "threads of {}", facts.label())?;
            show::write_threads(out, &facts.threads, style)?;
        }
    }
    writeln!(out)?;
    match differing.len() {
        0 => writeln!(out, "no signal differs")?,
        1 => writeln!(out, "1 signal differs: {}", differing.join(" "))?,
        n => writeln!(out, "{n} signals differ: {}", differing.join(" "))?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::process::{Masks, Relative};
    use super::super::{ColorChoice, OutputArgs};
    use super::*;
    use crate::signals::{SigSet, num};
    use serde_json::json;

    fn bit(sig: i32) -> u64 {
        1 << (sig - 1)
    }

    fn facts(pid: i32, pgrp: i32, caught: u64, ignored: u64) -> ProcessFacts {
        ProcessFacts {
            pid,
            tgid: pid,
            comm: "bash".into(),
            uid: 0,
            state: 'S',
            parent: Relative {
                pid: 1,
                comm: Some("init".into()),
            },
            pgrp,
            session: 1,
            tty: None,
            tty_foreground_pgrp: None,
            masks: Masks {
                caught: SigSet(caught),
                ignored: SigSet(ignored),
                blocked: SigSet::EMPTY,
                pending_thread: SigSet::EMPTY,
                pending_shared: SigSet::EMPTY,
            },
            threads: Vec::new(),
        }
    }

    #[test]
    fn text_marks_exactly_the_differing_rows() {
        let wrapper = facts(100, 100, bit(num::SIGCHLD), bit(num::SIGINT));
        let binary = facts(101, 100, bit(num::SIGINT) | bit(num::SIGTERM), 0);
        let a = wrapper.masks.signal_states();
        let b = binary.masks.signal_states();
        let pairs: Vec<_> = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x, y, differing_fields(x, y)))
            .collect();
        let args = DiffArgs {
            pids: vec![100, 101],
            threads: false,
            changed: false,
            output: OutputArgs {
                format: OutputFormat::Text,
                color: ColorChoice::Never,
            },
        };
        let mut out = Vec::new();
        let result = write_text(
            &mut out,
            &args,
            Style::new(ColorChoice::Never),
            &wrapper,
            &binary,
            &pairs,
        );
        assert!(result.is_ok(), "{result:?}");
        let text = String::from_utf8_lossy(&out);
        let marked: Vec<&str> = text.lines().filter(|line| line.starts_with('*')).collect();
        assert_eq!(marked.len(), 5, "{text}"); // caught, ignored, and three signals
        assert!(marked[0].starts_with("* caught "));
        assert!(
            marked[2].starts_with("*   2  SIGINT       ignored        caught"),
            "{text}"
        );
        assert!(
            text.ends_with("\n3 signals differ: SIGINT SIGTERM SIGCHLD\n"),
            "{text}"
        );
        assert!(!text.contains("* pgrp"));
    }

    #[test]
    fn json_is_a_diff_record_of_two_show_processes() {
        let wrapper = facts(100, 100, bit(num::SIGCHLD), bit(num::SIGINT));
        let mut binary = facts(101, 101, bit(num::SIGINT), 0);
        binary.masks.blocked = SigSet(bit(num::SIGTERM));
        let mut args = DiffArgs {
            pids: vec![100, 101],
            threads: false,
            changed: true,
            output: OutputArgs {
                format: OutputFormat::Json,
                color: ColorChoice::Never,
            },
        };
        let mut out = Vec::new();
        let result = write(&mut out, &args, &wrapper, &binary);
        assert!(result.is_ok(), "{result:?}");
        let records = crate::output::tests::schema_valid_lines(&out);
        assert_eq!(records.len(), 1);
        let diff = &records[0];
        assert_eq!((&diff["v"], &diff["type"]), (&json!(3), &json!("diff")));
        assert_eq!(
            (&diff["left"]["pid"], &diff["right"]["pid"]),
            (&json!(100), &json!(101))
        );
        assert!(diff["left"].get("v").is_none() && diff["left"].get("type").is_none());
        assert_eq!(
            diff["differing_facts"],
            json!(["pgid", "caught", "ignored", "blocked"])
        );
        let differing: Vec<(&serde_json::Value, &serde_json::Value)> = diff["differing"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| (&d["signal"]["name"], &d["fields"]))
            .collect();
        assert_eq!(
            differing,
            [
                (&json!("SIGINT"), &json!(["disposition"])),
                (&json!("SIGTERM"), &json!(["blocked"])),
                (&json!("SIGCHLD"), &json!(["disposition"])),
            ]
        );
        let int = &diff["differing"][0];
        assert_eq!(int["left"]["disposition"]["action"], "ignored");
        assert_eq!(int["right"]["disposition"]["action"], "caught");
        assert_eq!(
            int["left"]["signal"],
            json!({"number": 2, "name": "SIGINT"})
        );
        // --changed: each process lists only the differing signals.
        let listed = diff["left"]["signals"].as_array().map(Vec::len);
        assert_eq!(listed, Some(3));
        args.changed = false;
        out.clear();
        assert!(write(&mut out, &args, &wrapper, &wrapper).is_ok());
        let same = crate::output::tests::schema_valid_lines(&out);
        assert_eq!(same[0]["differing"], json!([]));
        assert_eq!(same[0]["differing_facts"], json!([]));
        assert_eq!(
            same[0]["right"]["signals"].as_array().map(Vec::len),
            Some(64)
        );
    }

    #[test]
    fn differing_fields_names_each_difference() {
        let a = facts(1, 1, 0, 0).masks.signal_states()[0];
        let mut b = a;
        b.blocked = true;
        b.pending_shared = true;
        assert_eq!(differing_fields(&a, &b), ["blocked", "pending_shared"]);
        assert!(differing_fields(&a, &a).is_empty());
    }
}
