//! `--summary`: counts of signals by sender comm → target comm, signal and final outcome,
//! following the correlator (a generation's row moves when its delivery or exit settles it).

use std::{
    borrow::Cow,
    collections::{BTreeMap, HashMap},
    io::{self, Write},
};

use serde::Serialize;
use sigtrace_common::COMM_LEN;

use super::Totals;
use crate::{
    correlate::{Outcome, Report},
    escape,
    events::comm,
    signals::{Signal, sender::interrupt_sender},
};

/// Who sent a row's signals: a task's comm, or the kernel when an interrupt raised them
/// (`kernel (timer)`: the task it interrupted is no sender).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SenderKey {
    Comm([u8; COMM_LEN]),
    Kernel(&'static str),
}

impl SenderKey {
    fn name(&self) -> Cow<'_, str> {
        match self {
            SenderKey::Comm(c) => comm(c),
            SenderKey::Kernel(label) => Cow::Borrowed(label),
        }
    }
}

/// The comms stay raw bytes (Copy, no allocation per generation); decoded when printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RowKey {
    pub sender: SenderKey,
    pub target: [u8; COMM_LEN],
    pub sig: i32,
    pub outcome: &'static str,
}

#[derive(Debug, Default)]
pub struct Summary {
    rows: BTreeMap<RowKey, u64>,
    /// Generations whose outcome may still change, by id.
    open: HashMap<u64, RowKey>,
    generations: u64,
}

impl Summary {
    fn bump(&mut self, key: &RowKey, up: bool) {
        if up {
            *self.rows.entry(*key).or_default() += 1;
        } else if let Some(count) = self.rows.get_mut(key) {
            *count -= 1;
            if *count == 0 {
                self.rows.remove(key);
            }
        }
    }

    fn settle(&mut self, id: u64, outcome: Outcome) {
        if let Some(mut key) = self.open.remove(&id) {
            self.bump(&key, false);
            key.outcome = outcome.as_str();
            self.bump(&key, true);
        }
    }

    pub fn add(&mut self, report: &Report) {
        match report {
            Report::Generate(g) => {
                self.generations += 1;
                let sender = match interrupt_sender(&g.event) {
                    Some(label) => SenderKey::Kernel(label),
                    None => SenderKey::Comm(g.event.sender.comm),
                };
                let key = RowKey {
                    sender,
                    target: g.event.target.comm,
                    sig: g.event.sig,
                    outcome: g.outcome.as_str(),
                };
                self.bump(&key, true);
                if !g.outcome.is_final() {
                    self.open.insert(g.id, key);
                }
                for &id in &g.consumed {
                    self.settle(id, Outcome::Consumed);
                }
            }
            Report::Deliver(d) => {
                if let Some((id, _)) = d.generation {
                    self.settle(id, d.outcome);
                }
            }
            Report::Exit(x) => {
                for &id in &x.pending {
                    self.settle(id, Outcome::PendingAtExit);
                }
            }
            _ => {}
        }
    }

    /// (key, count) rows, most frequent first.
    pub fn rows(&self) -> Vec<(&RowKey, u64)> {
        let mut rows: Vec<_> = self.rows.iter().map(|(k, &n)| (k, n)).collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        rows
    }

    /// Rows, and generations still waiting for their outcome (the stats line).
    pub(crate) fn table_sizes(&self) -> [(&'static str, usize); 2] {
        [
            ("summary_rows", self.rows.len()),
            ("summary_open", self.open.len()),
        ]
    }

    /// Total generations counted (equals the number of generate records).
    pub fn generations(&self) -> u64 {
        self.generations
    }

    pub fn write_text(&self, w: &mut dyn Write, totals: Totals) -> io::Result<()> {
        writeln!(
            w,
            "\n{:>8}  {:<16} {:<16} {:<12} OUTCOME",
            "COUNT", "SENDER", "TARGET", "SIGNAL"
        )?;
        for (key, count) in self.rows() {
            writeln!(
                w,
                "{count:>8}  {:<16} {:<16} {:<12} {}",
                escape::text(&key.sender.name()),
                escape::kernel_name(&key.target),
                Signal(key.sig).name(),
                key.outcome
            )?;
        }
        writeln!(
            w,
            "{} signals, {} events, {} lost",
            self.generations, totals.events, totals.lost
        )
    }

    pub fn write_json(&self, w: &mut dyn Write, totals: Totals) -> io::Result<()> {
        #[derive(Serialize)]
        struct Row<'a> {
            sender: Cow<'a, str>,
            target: Cow<'a, str>,
            signal: super::json::NamedSignal,
            outcome: &'static str,
            count: u64,
        }
        #[derive(Serialize)]
        struct SummaryRecord<'a> {
            v: u32,
            r#type: &'static str,
            signals: u64,
            events: u64,
            lost: u64,
            rows: Vec<Row<'a>>,
        }
        let record = SummaryRecord {
            v: super::json::SCHEMA_VERSION,
            r#type: "summary",
            signals: self.generations,
            events: totals.events,
            lost: totals.lost,
            rows: self
                .rows()
                .into_iter()
                .map(|(k, count)| Row {
                    sender: k.sender.name(),
                    target: comm(&k.target),
                    signal: super::json::NamedSignal::new(k.sig),
                    outcome: k.outcome,
                    count,
                })
                .collect(),
        };
        serde_json::to_writer(&mut *w, &record).map_err(io::Error::other)?;
        w.write_all(b"\n")
    }
}
