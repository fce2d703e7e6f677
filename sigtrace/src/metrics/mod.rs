//! `--metrics ADDR`: Prometheus counters of what the trace sees, served over HTTP from the
//! trace's own runtime (see [`http`]). They count the correlator's reports — every record,
//! whatever the output shows — so a metrics-only daemon (`--quiet`) counts as much as a
//! terminal run.
//!
//! Label sets stay bounded: signals (64), codes, results and outcomes are fixed sets, there is
//! never a pid, and the recipient's comm, systemd unit or cgroup is a label only when asked for
//! (`--metrics-labels`), each capped at `--metrics-label-limit` distinct values, past which a
//! new value counts under [`OVERFLOW`].

pub(crate) mod http;
pub(crate) mod ring;

use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
    sync::Arc,
};

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, LabelSetEncoder, LabelValueEncoder},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use sigtrace_common::{COMM_LEN, drop_reason};

use crate::{
    correlate::{CgroupName, ExitStatus, FanoutSource, Outcome, Report},
    events::comm,
    signals::{Signal, code_name, num, result_label},
};

/// The value a capped label takes once its limit of distinct values is reached.
pub const OVERFLOW: &str = "_overflow";

/// How long the labels of a process a delivery is killing wait for its exit record: an exit
/// lost with a full ring must not keep them (nor a later process with the same pid find
/// them). A core dump that takes longer counts its death with the comm label only.
const DYING_KEEP_NS: u64 = 60_000_000_000;

/// A label `--metrics-labels` can add: what names the recipient of a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum RecipientLabel {
    /// The recipient process's comm.
    Comm,
    /// The innermost systemd unit of its cgroup (nginx.service, session-3.scope).
    Unit,
    /// Its cgroup v2 path (/system.slice/nginx.service).
    Cgroup,
}

/// What the command line asked of the metrics.
#[derive(Debug, Clone)]
pub struct MetricsOptions {
    pub labels: Vec<RecipientLabel>,
    pub label_limit: usize,
}

/// A signal as its label: the name ("SIGTERM", "SIGRTMIN+3"), kept as the number so that a
/// label set is Copy-cheap to hash and build per event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SignalName(i32);

impl EncodeLabelValue for SignalName {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(&Signal(self.0).name())
    }
}

/// The asked-for labels naming the recipient; absent ones are left out of the label set
/// (not written as empty labels).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
struct Recipient {
    comm: Option<Arc<str>>,
    unit: Option<Arc<str>>,
    cgroup: Option<Arc<str>>,
}

impl EncodeLabelSet for Recipient {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeLabel;
        for (key, value) in [
            ("comm", &self.comm),
            ("unit", &self.unit),
            ("cgroup", &self.cgroup),
        ] {
            if let Some(value) = value {
                (key, value.as_ref()).encode(encoder.encode_label())?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct GenerateLabels {
    signal: SignalName,
    origin: &'static str,
    code: &'static str,
    result: &'static str,
    #[prometheus(flatten)]
    recipient: Recipient,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DeliverLabels {
    signal: SignalName,
    outcome: &'static str,
    #[prometheus(flatten)]
    recipient: Recipient,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DeathLabels {
    signal: SignalName,
    core_dumped: bool,
    #[prometheus(flatten)]
    recipient: Recipient,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FanoutLabels {
    signal: SignalName,
    source: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DropLabels {
    reason: &'static str,
}

/// The counters and gauges, updated by the trace loop; the registry that encodes them goes
/// to the HTTP server.
pub(crate) struct Metrics {
    generated: Family<GenerateLabels, Counter>,
    delivered: Family<DeliverLabels, Counter>,
    deaths: Family<DeathLabels, Counter>,
    fanouts: Family<FanoutLabels, Counter>,
    records: Counter,
    lost: Counter,
    dropped: Family<DropLabels, Counter>,
    ring_size: Gauge,
    ring_used: Gauge,
    ring_used_max: Gauge,
    labeler: Labeler,
    /// The recipient labels of a process a delivery is terminating (and when), until its
    /// exit, whose record names no cgroup: its death counts under the same labels. Also
    /// how the process's other terminating deliveries are known, which are not counted.
    dying: HashMap<u32, (Recipient, u64)>,
}

impl Metrics {
    /// The metrics and the registry that serves them.
    pub(crate) fn new(options: &MetricsOptions, ring_bytes: u32) -> (Self, Registry) {
        let mut registry = Registry::with_prefix("sigtrace");
        let metrics = Metrics {
            generated: Family::default(),
            delivered: Family::default(),
            deaths: Family::default(),
            fanouts: Family::default(),
            records: Counter::default(),
            lost: Counter::default(),
            dropped: Family::default(),
            ring_size: Gauge::default(),
            ring_used: Gauge::default(),
            ring_used_max: Gauge::default(),
            labeler: Labeler::new(options),
            dying: HashMap::new(),
        };
        registry.register(
            "signals_generated",
            "Signals generated (signal_generate), by signal, origin (user: a task sent it; kernel), si_code and the kernel's result (delivered = queued)",
            metrics.generated.clone(),
        );
        registry.register(
            "signals_delivered",
            "Signals delivered (dequeued and acted on), by signal and outcome; a process a signal kills counts once, under that signal, whatever its threads dequeued",
            metrics.delivered.clone(),
        );
        registry.register(
            "process_deaths",
            "Processes killed by a signal, by the signal (of the processes the trace saw signalled)",
            metrics.deaths.clone(),
        );
        registry.register(
            "fanouts",
            "Signals sent to a whole process group (kill(-PGID), a terminal's interrupt, quit or suspend key), by signal and source",
            metrics.fanouts.clone(),
        );
        registry.register(
            "records",
            "Records read from the kernel's ring buffer",
            metrics.records.clone(),
        );
        registry.register(
            "events_lost",
            "Records lost because the ring buffer was full",
            metrics.lost.clone(),
        );
        registry.register(
            "records_dropped",
            "Records the kernel programs gave up, by reason",
            metrics.dropped.clone(),
        );
        registry.register(
            "ring_buffer_size_bytes",
            "Size of the kernel's ring buffer (--ring-size)",
            metrics.ring_size.clone(),
        );
        registry.register(
            "ring_buffer_used_bytes",
            "Bytes waiting in the ring buffer when the reader last took from it",
            metrics.ring_used.clone(),
        );
        registry.register(
            "ring_buffer_used_max_bytes",
            "The most bytes seen waiting in the ring buffer since the start",
            metrics.ring_used_max.clone(),
        );
        metrics.ring_size.set(i64::from(ring_bytes));
        for reason in 0..drop_reason::COUNT {
            let reason = drop_reason::name(reason).unwrap_or("unknown");
            // Zero from the start, so that rate() and alerts see the series before its first.
            let _ = metrics.dropped.get_or_create(&DropLabels { reason });
        }
        (metrics, registry)
    }

    /// Whether the reports need their cgroups resolved for the labels.
    pub(crate) fn wants_cgroups(&self) -> bool {
        self.labeler.unit || self.labeler.cgroup
    }

    /// Counts one report (call it for every report, before it goes to the output).
    pub(crate) fn observe(&mut self, report: &Report) {
        match report {
            Report::Generate(g) => {
                let e = &g.event;
                let labels = GenerateLabels {
                    signal: SignalName(e.sig),
                    origin: g.origin.as_str(),
                    code: code_name(e.sig, e.code).unwrap_or("other"),
                    result: result_label(e.result),
                    recipient: self
                        .labeler
                        .recipient(&e.target.comm, g.target_cgroup.as_ref()),
                };
                self.generated.get_or_create(&labels).inc();
            }
            Report::Deliver(d) => {
                let Some(outcome) = delivery_outcome(d.outcome) else {
                    return;
                };
                let terminated = matches!(d.outcome, Outcome::Terminated { .. });
                if terminated {
                    // The SIGKILL exit_group() leaves each other thread of a process that
                    // exits by itself: no signal is killing it.
                    let group_exit = ExitStatus::from_wait_status(d.event.group_exit_code);
                    if d.event.sig == num::SIGKILL && matches!(group_exit, ExitStatus::Exited(_)) {
                        return;
                    }
                    // A fatal signal reaches every thread of the process (as SIGKILL to the
                    // others, and a core dump's too): the process counts once.
                    if self.dying.contains_key(&d.event.task.tgid) {
                        return;
                    }
                }
                let recipient = self
                    .labeler
                    .recipient(&d.event.task.comm, d.cgroup.as_ref());
                if terminated {
                    self.dying
                        .insert(d.event.task.tgid, (recipient.clone(), d.event.header.ts_ns));
                }
                let labels = DeliverLabels {
                    signal: SignalName(d.cause.unwrap_or(d.event.sig)),
                    outcome,
                    recipient,
                };
                self.delivered.get_or_create(&labels).inc();
            }
            Report::Exit(x) => {
                let dying = self.dying.remove(&x.event.task.tgid);
                if let ExitStatus::Killed { signal, core } = x.status {
                    let recipient = match dying {
                        Some((recipient, _)) => recipient,
                        None => self.labeler.recipient(&x.event.task.comm, None),
                    };
                    let labels = DeathLabels {
                        signal: SignalName(signal),
                        core_dumped: core,
                        recipient,
                    };
                    self.deaths.get_or_create(&labels).inc();
                }
            }
            Report::Fanout(f) => {
                let source = match f.source {
                    FanoutSource::Kill { .. } => "kill",
                    FanoutSource::Tty { .. } => "tty",
                };
                let labels = FanoutLabels {
                    signal: SignalName(f.sig),
                    source,
                };
                self.fanouts.get_or_create(&labels).inc();
            }
            Report::Fork(_) | Report::Sigaction(_) | Report::Handler(_) => {}
        }
    }

    /// Records read, and the kernel's own totals (which only grow), each tick; forgets the
    /// dying processes whose exit did not come in time (`now_ns`: monotonic).
    pub(crate) fn set_totals(&mut self, records: u64, lost: u64, drops: &[u64], now_ns: u64) {
        self.dying
            .retain(|_, (_, since)| now_ns.saturating_sub(*since) < DYING_KEEP_NS);
        raise_to(&self.records, records);
        raise_to(&self.lost, lost);
        for (reason, &total) in (0..drop_reason::COUNT).zip(drops) {
            let reason = drop_reason::name(reason).unwrap_or("unknown");
            raise_to(&self.dropped.get_or_create(&DropLabels { reason }), total);
        }
    }

    /// Its tables' sizes, for the SIGUSR1 stats line.
    pub(crate) fn table_sizes(&self) -> [(&'static str, usize); 1] {
        [("metrics_dying", self.dying.len())]
    }

    /// The ring's fill, read just before the reader takes from it.
    pub(crate) fn set_ring_used(&self, bytes: u64) {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        self.ring_used.set(bytes);
        if bytes > self.ring_used_max.get() {
            self.ring_used_max.set(bytes);
        }
    }
}

/// Counters only go up: add what a total has grown by since the last call.
fn raise_to(counter: &Counter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

/// A delivery's outcome as a label; None for outcomes a delivery never has.
fn delivery_outcome(outcome: Outcome) -> Option<&'static str> {
    Some(match outcome {
        Outcome::Handled => "handled",
        Outcome::Ignored | Outcome::IgnoredAtGeneration => "ignored",
        Outcome::Terminated { core: false } => "terminated",
        Outcome::Terminated { core: true } => "core_dumped",
        Outcome::Stopped => "stopped",
        Outcome::Continued => "continued",
        Outcome::Pending
        | Outcome::Blocked
        | Outcome::Merged
        | Outcome::Dropped
        | Outcome::LostInfo
        | Outcome::PendingAtExit
        | Outcome::Consumed => return None,
    })
}

/// Turns a recipient into its asked-for labels, each capped at `limit` distinct values.
struct Labeler {
    comm: bool,
    unit: bool,
    cgroup: bool,
    limit: usize,
    comms: Capped,
    units: Capped,
    cgroups: Capped,
}

impl Labeler {
    fn new(options: &MetricsOptions) -> Self {
        let has = |label| options.labels.contains(&label);
        Labeler {
            comm: has(RecipientLabel::Comm),
            unit: has(RecipientLabel::Unit),
            cgroup: has(RecipientLabel::Cgroup),
            limit: options.label_limit,
            comms: Capped::default(),
            units: Capped::default(),
            cgroups: Capped::default(),
        }
    }

    fn recipient(&mut self, task_comm: &[u8; COMM_LEN], cgroup: Option<&CgroupName>) -> Recipient {
        let mut recipient = Recipient::default();
        if self.comm {
            recipient.comm = Some(self.comms.value(&comm(task_comm), self.limit));
        }
        let resolved = cgroup.and_then(|c| c.resolved.as_deref());
        if self.unit
            && let Some(unit) = resolved.and_then(|info| info.unit.as_deref())
        {
            recipient.unit = Some(self.units.value(unit, self.limit));
        }
        if self.cgroup
            && let Some(info) = resolved
        {
            let path = info.path.to_string_lossy();
            recipient.cgroup = Some(self.cgroups.value(&path, self.limit));
        }
        recipient
    }
}

/// One label's values so far; shared strings, so that a known value allocates nothing.
#[derive(Default)]
struct Capped {
    seen: HashSet<Arc<str>>,
    overflow: Option<Arc<str>>,
}

impl Capped {
    fn value(&mut self, value: &str, limit: usize) -> Arc<str> {
        if let Some(known) = self.seen.get(value) {
            return known.clone();
        }
        if self.seen.len() < limit {
            let value: Arc<str> = Arc::from(value);
            self.seen.insert(value.clone());
            return value;
        }
        self.overflow
            .get_or_insert_with(|| Arc::from(OVERFLOW))
            .clone()
    }
}

/// The exposition formats a scraper can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exposition {
    /// OpenMetrics 1.0 text, what Prometheus asks for first.
    OpenMetrics,
    /// Prometheus's classic text format (0.0.4), for everything else (curl, promtool).
    PrometheusText,
}

/// The registry in `format`.
pub(crate) fn encode(registry: &Registry, format: Exposition) -> Result<String, std::fmt::Error> {
    let mut text = String::with_capacity(4096);
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(match format {
        Exposition::OpenMetrics => text,
        Exposition::PrometheusText => openmetrics_to_prometheus(&text),
    })
}

/// OpenMetrics text → Prometheus text 0.0.4. prometheus-client writes only OpenMetrics, and
/// the two differ where a counter is named: OpenMetrics names the family `x` (samples
/// `x_total`), the classic format names it by its sample, `x_total`, as promtool checks.
/// The classic format has no `# UNIT` and no `# EOF`; samples and escaping are the same.
fn openmetrics_to_prometheus(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // A family's HELP line waits for its TYPE, which says whether it is renamed.
    let mut help: Option<&str> = None;
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if line.starts_with("# HELP ") {
            if let Some(previous) = help.replace(line) {
                out.push_str(previous);
                out.push('\n');
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let renamed = kind == "counter";
            if let Some(help_line) = help.take() {
                match help_line
                    .strip_prefix("# HELP ")
                    .and_then(|h| h.strip_prefix(name))
                {
                    Some(text) if renamed => {
                        let _ = writeln!(out, "# HELP {name}_total{text}");
                    }
                    _ => {
                        out.push_str(help_line);
                        out.push('\n');
                    }
                }
            }
            if renamed {
                let _ = writeln!(out, "# TYPE {name}_total counter");
            } else {
                out.push_str(line);
                out.push('\n');
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if let Some(help_line) = help {
        out.push_str(help_line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
