//! Follows each signal from generation to effect: pairs deliveries with the generations they
//! dequeue, exits with the signals that caused them, and groups the per-member generations of
//! one process-group signal (kill(-pgid), killpg, the tty's ^C) into one fan-out.
//!
//! Pure: events in, reports out, time only from the events' own timestamps — so it is unit
//! tested without root or a kernel.

use std::collections::{HashMap, VecDeque};

use sigtrace_common::{
    COMM_LEN, DeliverEvent, ExitEvent, ForkEvent, GenerateEvent, SigactionEvent, TTY_NAME_LEN,
    result, si, via,
};

use crate::{
    events::Event,
    handler_runs::{HandlerReport, HandlerRuns},
    signals::{DefaultAction, Disposition, SigSet, Signal, num},
};

/// A fan-out is settled (reported) once every member has exited, or this long after the
/// last thing that happened to it.
pub(crate) const FANOUT_SETTLE_NS: u64 = 500_000_000;
/// Generations of one kill(-pgid) or tty signal arrive microseconds apart; a gap this long
/// starts a new fan-out.
const FANOUT_GAP_NS: u64 = 50_000_000;
/// A signalled process has its exit reported whenever it exits; only when more than 4096
/// signalled processes are still alive are those last signalled longer ago than this
/// forgotten (bounded memory).
const INTEREST_NS: u64 = 60_000_000_000;

/// What happened to a signal, as far as sigtrace could follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Queued; not yet dequeued (or blocked).
    Pending,
    /// Queued while the recipient blocks it.
    Blocked,
    /// Ignored at generation (SIG_IGN, default-ignore, dying target).
    IgnoredAtGeneration,
    /// Coalesced with the same standard signal already pending.
    Merged,
    /// Real-time queue full: dropped.
    Dropped,
    /// Queued without its siginfo.
    LostInfo,
    Handled,
    /// Dequeued and ignored (SIG_IGN or a default-ignore signal).
    Ignored,
    Terminated {
        core: bool,
    },
    Stopped,
    Continued,
    /// The process exited while the signal was still pending.
    PendingAtExit,
    /// Gone from the queue without a delivery: taken by sigwaitinfo/sigtimedwait/signalfd,
    /// or flushed (a SIGCONT discards pending stop signals and vice versa).
    Consumed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pending => "pending",
            Outcome::Blocked => "blocked",
            Outcome::IgnoredAtGeneration | Outcome::Ignored => "ignored",
            Outcome::Merged => "merged",
            Outcome::Dropped => "dropped",
            Outcome::LostInfo => "queued without info",
            Outcome::Handled => "handled",
            Outcome::Terminated { core: false } => "terminated",
            Outcome::Terminated { core: true } => "core dumped",
            Outcome::Stopped => "stopped",
            Outcome::Continued => "continued",
            Outcome::PendingAtExit => "pending at exit",
            Outcome::Consumed => "consumed",
        }
    }

    /// Nothing more will happen to the signal itself.
    pub(crate) fn is_final(self) -> bool {
        !matches!(
            self,
            Outcome::Pending | Outcome::Blocked | Outcome::LostInfo
        )
    }
}

/// How a process ended, from the wait status at its exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    Killed { signal: i32, core: bool },
}

impl ExitStatus {
    pub(crate) fn from_wait_status(code: i32) -> Self {
        if code & 0x7f != 0 {
            ExitStatus::Killed {
                signal: code & 0x7f,
                core: code & 0x80 != 0,
            }
        } else {
            ExitStatus::Exited((code >> 8) & 0xff)
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Exited(code) => write!(f, "exited {code}"),
            ExitStatus::Killed { signal, core } => {
                write!(f, "killed by {}", Signal(*signal))?;
                if *core {
                    f.write_str(" (core dumped)")?;
                }
                Ok(())
            }
        }
    }
}

/// Who caused a fan-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FanoutSource {
    /// kill(-pgid) / killpg: the sender's tgid, tid and comm, and kill's pid argument.
    Kill {
        tgid: u32,
        tid: u32,
        comm: [u8; COMM_LEN],
        pid_arg: i64,
    },
    /// The tty driver: ^C, ^\, ^Z, window change or hang-up on `tty`. `writers` are the
    /// processes holding the tty's master side (filled in by enrichment).
    Tty {
        tty: [u8; TTY_NAME_LEN],
        writers: Vec<(u32, String)>,
    },
}

#[derive(Debug, Clone)]
pub struct FanoutMember {
    pub tgid: u32,
    pub tid: u32,
    /// As the kernel gave it (NUL-padded, maybe not UTF-8): each output escapes its own way.
    pub comm: [u8; COMM_LEN],
    pub handler: u64,
    pub sa_flags: u64,
    /// Its signal sets when the signal was generated (the text shows them with --masks).
    pub caught: u64,
    pub ignored: u64,
    pub blocked: u64,
    pub generation: u64,
    pub outcome: Outcome,
    /// The exit and how long after the fan-out began.
    pub exit: Option<(ExitStatus, u64)>,
}

#[derive(Debug, Clone)]
pub struct Fanout {
    pub id: u64,
    pub ts_ns: u64,
    pub sig: i32,
    pub pgid: u32,
    pub source: FanoutSource,
    pub members: Vec<FanoutMember>,
    last_ts: u64,
}

impl Fanout {
    /// Every member has exited, or nothing has happened to the fan-out for a while (members
    /// that handled or ignored the signal and live on).
    fn settled(&self, now: u64) -> bool {
        self.members.iter().all(|m| m.exit.is_some())
            || now.saturating_sub(self.last_ts) >= FANOUT_SETTLE_NS
    }
}

#[derive(Debug, Clone)]
pub struct GenerateReport {
    pub id: u64,
    pub event: GenerateEvent,
    pub origin: Origin,
    pub fanout: Option<u64>,
    /// What is known at generation (ignored, merged, blocked...).
    pub outcome: Outcome,
    /// Earlier generations of the same standard signal this one proves gone without a
    /// delivery (it was queued, so they no longer were): consumed or flushed.
    pub consumed: Vec<u64>,
    /// The sender's (None without a sending task) and the target's cgroup.
    pub sender_cgroup: Option<CgroupName>,
    pub target_cgroup: Option<CgroupName>,
    /// The sender's stacks (--stack; filled in by enrichment).
    pub sender_stack: Option<crate::stacks::SenderStack>,
}

/// A cgroup as the sinks print it: the kernel's id, and what enrichment resolved it to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupName {
    pub id: u64,
    pub resolved: Option<std::sync::Arc<crate::cgroup::CgroupInfo>>,
}

impl CgroupName {
    /// The cgroup of id `id` (0: none known), not resolved yet.
    pub fn of(id: u64) -> Option<CgroupName> {
        (id != 0).then_some(CgroupName { id, resolved: None })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    User,
    Kernel,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::User => "user",
            Origin::Kernel => "kernel",
        }
    }
}

#[derive(Debug, Clone)]
pub struct DeliverReport {
    pub event: DeliverEvent,
    pub outcome: Outcome,
    /// The signal that really caused a delivered SIGKILL (the group exit code), when other.
    pub cause: Option<i32>,
    /// The generation this delivery dequeued, and the time since it.
    pub generation: Option<(u64, u64)>,
    pub fanout: Option<u64>,
    pub cgroup: Option<CgroupName>,
}

#[derive(Debug, Clone)]
pub struct ExitReport {
    pub event: ExitEvent,
    pub status: ExitStatus,
    /// Signals still pending when it exited (generation ids).
    pub pending: Vec<u64>,
    /// Whether it concerns a signal sigtrace reported (else a sink may skip it).
    pub relevant: bool,
    pub fanout: Option<u64>,
    /// The children it left behind and where they went (filled in by enrichment).
    pub orphans: Vec<crate::enrich::Orphan>,
}

#[derive(Debug, Clone)]
pub enum Report {
    Generate(GenerateReport),
    Deliver(DeliverReport),
    Exit(ExitReport),
    Fork(ForkEvent),
    Sigaction(SigactionEvent),
    Fanout(Fanout),
    /// The end of a handler run (--handler-time).
    Handler(HandlerReport),
}

struct PendingSignal {
    id: u64,
    ts_ns: u64,
    fanout: Option<u64>,
}

/// Key for grouping one fan-out's generations: who sent it, how, which signal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum FanoutKey {
    Kill {
        sender_tid: u32,
        pid_arg: i64,
        sig: i32,
    },
    Tty {
        tty: [u8; TTY_NAME_LEN],
        sig: i32,
    },
}

/// Most generations of one real-time signal kept waiting for their delivery in one queue.
/// The kernel's own bound (RLIMIT_SIGPENDING, per user) is often ~100,000; a program that
/// really leaves a thousand of one signal pending without taking any is rare, one that takes
/// them with sigtimedwait or a signalfd (no delivery event) is not.
const RT_QUEUE_CAP: usize = 1024;

#[derive(Default)]
pub struct Correlator {
    /// --handler-time: the handler runs still open.
    handler_runs: Option<HandlerRuns>,
    /// Their ends, moved into the reports.
    handler_ends: Vec<HandlerReport>,
    next_id: u64,
    /// Queued signals by (tgid, tid — 0 for the process-wide queue —, signal).
    pending: HashMap<(u32, u32, i32), VecDeque<PendingSignal>>,
    open_fanouts: Vec<(FanoutKey, Fanout)>,
    /// tgid → fan-out it is a member of (while the fan-out is open).
    fanout_of: HashMap<u32, u64>,
    /// tgid → last time a reported signal concerned it.
    interest: HashMap<u32, u64>,
    /// tgids whose group is dying of a signal: further SIGKILL deliveries to their other
    /// threads add nothing.
    dying: HashMap<u32, i32>,
    last_ts: u64,
    /// Size of `pending` at which empty queues are pruned next (grows with live ones).
    prune_at: usize,
}

impl Correlator {
    /// Entries in each internal table, for `sigtrace`'s stats line (SIGUSR1): all must stay
    /// bounded however long a trace runs.
    pub(crate) fn table_sizes(&self) -> [(&'static str, usize); 6] {
        [
            (
                "handler_runs",
                self.handler_runs.as_ref().map_or(0, HandlerRuns::open_runs),
            ),
            ("pending", self.pending.values().map(VecDeque::len).sum()),
            ("open_fanouts", self.open_fanouts.len()),
            ("fanout_of", self.fanout_of.len()),
            ("interest", self.interest.len()),
            ("dying", self.dying.len()),
        ]
    }
}

/// Who originated a signal: the kernel (faults, timers, tty, SIGCHLD, SIGPIPE) or a process.
pub fn origin(event: &GenerateEvent) -> Origin {
    if sigtrace_common::kernel_origin(event.info_kind != 0, event.code) {
        Origin::Kernel
    } else {
        Origin::User
    }
}

/// The queue a generation waits in: the thread's own (tkill, tgkill, faults) or the
/// process-wide one (kill, the tty, most kernel senders).
fn queue_key(e: &GenerateEvent) -> (u32, u32, i32) {
    let tid = if e.group != 0 { 0 } else { e.target.tid };
    (e.target.tgid, tid, e.sig)
}

/// Signals the tty driver sends to a whole group.
fn is_tty_group_signal(sig: i32) -> bool {
    matches!(
        sig,
        num::SIGINT | num::SIGQUIT | num::SIGTSTP | num::SIGWINCH | num::SIGHUP | num::SIGCONT
    )
}

fn fanout_key(event: &GenerateEvent) -> Option<FanoutKey> {
    if event.via == via::KILL && event.via_arg <= 0 && event.via_arg != -1 {
        return Some(FanoutKey::Kill {
            sender_tid: event.sender.tid,
            pid_arg: event.via_arg,
            sig: event.sig,
        });
    }
    let r = &event.recipient;
    // The tty driver sends privately (SEND_SIG_PRIV → SI_KERNEL) to its foreground group.
    if event.info_kind != 0
        && event.code == si::KERNEL
        && is_tty_group_signal(event.sig)
        && r.tty[0] != 0
        && r.tty_fg_pgid != 0
        // To the foreground group, or (hang-up) the session leader. The SIGHUP/SIGCONT
        // pair the kernel sends an orphaned stopped group also comes privately, but not to
        // the foreground.
        && (r.tty_fg_pgid == r.pgid
            || (event.sig == num::SIGHUP && r.sid == event.target.tgid))
    {
        return Some(FanoutKey::Tty {
            tty: r.tty,
            sig: event.sig,
        });
    }
    None
}

/// The outcome of a dequeued signal, from the action the recipient had for it.
pub(crate) fn delivery_outcome(
    sig: i32,
    handler: u64,
    group_exit_code: i32,
) -> (Outcome, Option<i32>) {
    if sig == num::SIGKILL {
        // The group exit code is a wait status: the signal the group dies of, and the core flag.
        return match ExitStatus::from_wait_status(group_exit_code) {
            ExitStatus::Killed { signal, core } => (
                Outcome::Terminated { core },
                (signal != num::SIGKILL).then_some(signal),
            ),
            ExitStatus::Exited(_) => (Outcome::Terminated { core: false }, None),
        };
    }
    let outcome = match Disposition::from_sa_handler(handler) {
        Disposition::Caught(_) => Outcome::Handled,
        Disposition::Ignored => Outcome::Ignored,
        Disposition::Default => match Signal(sig).default_action() {
            DefaultAction::Ign => Outcome::Ignored,
            DefaultAction::Stop => Outcome::Stopped,
            DefaultAction::Cont => Outcome::Continued,
            // Whether a core was really dumped (ulimit -c, core_pattern) only the exit says.
            DefaultAction::Term | DefaultAction::Core => Outcome::Terminated { core: false },
        },
    };
    (outcome, None)
}

impl Correlator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Also follows every reported handler to its end (--handler-time).
    pub fn with_handler_time(mut self) -> Self {
        self.handler_runs = Some(HandlerRuns::default());
        self
    }

    fn push_handler_ends(&mut self, out: &mut Vec<Report>) {
        out.extend(self.handler_ends.drain(..).map(Report::Handler));
    }

    /// Feeds one event; returns the reports it completes, in order.
    pub fn push(&mut self, event: Event, out: &mut Vec<Report>) {
        let ts = event.ts_ns();
        self.last_ts = self.last_ts.max(ts);
        match event {
            Event::Generate(e) => self.generate(e, out),
            Event::Deliver(e) => self.deliver(e, out),
            Event::Exit(e) => self.exit(e, out),
            Event::Fork(e) => out.push(Report::Fork(e)),
            Event::Sigaction(e) => out.push(Report::Sigaction(e)),
            Event::Sigreturn(e) => {
                if let Some(runs) = &mut self.handler_runs {
                    runs.returned(&e, &mut self.handler_ends);
                    self.push_handler_ends(out);
                }
            }
        }
        self.settle(self.last_ts, out);
    }

    /// Reports fan-outs that have settled by `now` (monotonic ns); call on a timer so a
    /// quiet system still gets its fan-out blocks.
    pub fn settle(&mut self, now: u64, out: &mut Vec<Report>) {
        let mut i = 0;
        while i < self.open_fanouts.len() {
            if self.open_fanouts[i].1.settled(now) {
                let (_, fanout) = self.open_fanouts.remove(i);
                self.close_fanout(fanout, out);
            } else {
                i += 1;
            }
        }
        // Bounded memory: drop emptied queues and processes not heard of for a long time.
        if self.pending.len() > self.prune_at {
            self.pending.retain(|_, queue| !queue.is_empty());
            self.prune_at = (self.pending.len() * 2).max(4096);
        }
        if self.interest.len() > 4096 {
            self.interest
                .retain(|_, seen| now.saturating_sub(*seen) < INTEREST_NS);
        }
    }

    /// Reports every open fan-out (at exit).
    pub fn flush(&mut self, out: &mut Vec<Report>) {
        for (_, fanout) in std::mem::take(&mut self.open_fanouts) {
            self.close_fanout(fanout, out);
        }
    }

    fn close_fanout(&mut self, fanout: Fanout, out: &mut Vec<Report>) {
        for member in &fanout.members {
            if self.fanout_of.get(&member.tgid) == Some(&fanout.id) {
                self.fanout_of.remove(&member.tgid);
            }
        }
        out.push(Report::Fanout(fanout));
    }

    fn fanout_mut(&mut self, id: u64) -> Option<&mut Fanout> {
        self.open_fanouts
            .iter_mut()
            .map(|(_, f)| f)
            .find(|f| f.id == id)
    }

    fn generate(&mut self, e: GenerateEvent, out: &mut Vec<Report>) {
        self.next_id += 1;
        let id = self.next_id;
        let ts = e.header.ts_ns;
        let target = e.target.tgid;
        self.interest.insert(target, ts);
        let outcome = match e.result {
            result::IGNORED => Outcome::IgnoredAtGeneration,
            result::ALREADY_PENDING => Outcome::Merged,
            result::OVERFLOW_FAIL => Outcome::Dropped,
            // A number outside 1..=64 is in no mask (and `sig - 1` would overflow at i32::MIN).
            _ if SigSet(e.recipient.blocked).contains(e.sig) => Outcome::Blocked,
            result::LOSE_INFO => Outcome::LostInfo,
            _ => Outcome::Pending,
        };
        let fanout = fanout_key(&e).map(|key| self.join_fanout(key, &e, id, outcome));
        if let Some(fanout_id) = fanout {
            self.fanout_of.insert(target, fanout_id);
        }
        let mut consumed = Vec::new();
        if result::queued(e.result) {
            let queue = self.pending.entry(queue_key(&e)).or_default();
            // A standard signal is queued only when it is not already pending: whatever is
            // still in our queue for it left without a delivery.
            if e.sig < num::KERNEL_SIGRTMIN {
                consumed.extend(queue.drain(..).map(|p| p.id));
            } else if queue.len() >= RT_QUEUE_CAP {
                // Real-time signals taken with sigtimedwait or a signalfd never reach
                // signal_deliver: a queue this long is being consumed that way, and its
                // oldest entries are retired so that memory stays bounded.
                let excess = queue.len() + 1 - RT_QUEUE_CAP;
                consumed.extend(queue.drain(..excess).map(|p| p.id));
            }
            queue.push_back(PendingSignal {
                id,
                ts_ns: ts,
                fanout,
            });
        }
        out.push(Report::Generate(GenerateReport {
            id,
            event: e,
            origin: origin(&e),
            fanout,
            outcome,
            consumed,
            sender_cgroup: CgroupName::of(e.sender_cgroup),
            target_cgroup: CgroupName::of(e.target_cgroup),
            sender_stack: None,
        }));
    }

    fn join_fanout(&mut self, key: FanoutKey, e: &GenerateEvent, id: u64, outcome: Outcome) -> u64 {
        let ts = e.header.ts_ns;
        let member = FanoutMember {
            tgid: e.target.tgid,
            tid: e.target.tid,
            comm: e.target.comm,
            handler: e.recipient.handler,
            sa_flags: e.recipient.sa_flags,
            caught: e.recipient.caught,
            ignored: e.recipient.ignored,
            blocked: e.recipient.blocked,
            generation: id,
            outcome,
            exit: None,
        };
        if let Some((_, fanout)) = self.open_fanouts.iter_mut().find(|(k, f)| {
            *k == key
                && ts.saturating_sub(f.last_ts) < FANOUT_GAP_NS
                && !f.members.iter().any(|m| m.tgid == e.target.tgid)
        }) {
            fanout.last_ts = ts;
            fanout.members.push(member);
            return fanout.id;
        }
        let source = match &key {
            FanoutKey::Kill { pid_arg, .. } => FanoutSource::Kill {
                tgid: e.sender.tgid,
                tid: e.sender.tid,
                comm: e.sender.comm,
                pid_arg: *pid_arg,
            },
            FanoutKey::Tty { tty, .. } => FanoutSource::Tty {
                tty: *tty,
                writers: Vec::new(),
            },
        };
        let pgid = match &key {
            // unsigned_abs: -i64::MIN overflows (the kernel side sends 32-bit values only).
            FanoutKey::Kill { pid_arg, .. } if *pid_arg < 0 => pid_arg.unsigned_abs() as u32,
            _ => e.recipient.pgid,
        };
        let fanout = Fanout {
            // Fan-outs share the generation numbering: the id of their first generation.
            id,
            ts_ns: ts,
            sig: e.sig,
            pgid,
            source,
            members: vec![member],
            last_ts: ts,
        };
        self.open_fanouts.push((key, fanout));
        id
    }

    fn deliver(&mut self, e: DeliverEvent, out: &mut Vec<Report>) {
        let tgid = e.task.tgid;
        let ts = e.header.ts_ns;
        let (outcome, cause) = delivery_outcome(e.sig, e.handler, e.group_exit_code);
        if e.sig == num::SIGKILL {
            let effective = cause.unwrap_or(num::SIGKILL);
            if self.dying.get(&tgid) == Some(&effective) {
                return; // another thread of a group already reported dying
            }
            self.dying.insert(tgid, effective);
        }
        // The thread's own queue is dequeued first, then the process-wide one (as the
        // kernel's dequeue_signal does). An emptied queue stays (a busy signaller would
        // otherwise allocate one per signal); exits and `settle` prune them.
        let sig = cause.unwrap_or(e.sig);
        let matched = [(tgid, e.task.tid, sig), (tgid, 0, sig)]
            .iter()
            .find_map(|key| self.pending.get_mut(key).and_then(|q| q.pop_front()));
        let generation = matched.as_ref().map(|p| (p.id, ts.saturating_sub(p.ts_ns)));
        let fanout = matched.as_ref().and_then(|p| p.fanout);
        if let Some(p) = &matched
            && let Some(fid) = p.fanout
            && let Some(fanout) = self.fanout_mut(fid)
        {
            fanout.last_ts = fanout.last_ts.max(ts);
            if let Some(m) = fanout.members.iter_mut().find(|m| m.generation == p.id) {
                m.outcome = outcome;
            }
        }
        self.interest.insert(tgid, ts);
        out.push(Report::Deliver(DeliverReport {
            event: e,
            outcome,
            cause,
            generation,
            fanout,
            cgroup: CgroupName::of(e.cgroup),
        }));
        if outcome == Outcome::Handled
            && let Some(runs) = &mut self.handler_runs
        {
            runs.delivered(&e, generation.map(|g| g.0), &mut self.handler_ends);
            self.push_handler_ends(out);
        }
    }

    fn exit(&mut self, e: ExitEvent, out: &mut Vec<Report>) {
        let tgid = e.task.tgid;
        let ts = e.header.ts_ns;
        let status = ExitStatus::from_wait_status(e.exit_code);
        self.dying.remove(&tgid);
        let mut pending = Vec::new();
        self.pending.retain(|(pid, _, _), queue| {
            if *pid == tgid {
                pending.extend(queue.iter().map(|p| p.id));
                false
            } else {
                true
            }
        });
        let relevant = self.interest.remove(&tgid).is_some();
        let fanout = self.fanout_of.remove(&tgid);
        if let Some(fid) = fanout
            && let Some(f) = self.fanout_mut(fid)
        {
            let since = ts.saturating_sub(f.ts_ns);
            f.last_ts = f.last_ts.max(ts);
            if let Some(m) = f.members.iter_mut().find(|m| m.tgid == tgid) {
                m.exit = Some((status, since));
                match (m.outcome, status) {
                    (Outcome::Terminated { .. }, ExitStatus::Killed { core, .. }) => {
                        m.outcome = Outcome::Terminated { core };
                    }
                    (outcome, _) if !outcome.is_final() => m.outcome = Outcome::PendingAtExit,
                    _ => {}
                }
            }
        }
        if let Some(runs) = &mut self.handler_runs {
            runs.exited(tgid, ts, &mut self.handler_ends);
            self.push_handler_ends(out);
        }
        out.push(Report::Exit(ExitReport {
            event: e,
            status,
            pending,
            relevant,
            fanout,
            orphans: Vec::new(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use sigtrace_common::{Header, kind};

    use super::*;

    fn gen_event(ts: u64, sender: u32, target: u32, sig: i32, res: u32) -> GenerateEvent {
        let mut e = GenerateEvent {
            header: Header::new(kind::GENERATE, ts),
            sig,
            result: res,
            ..Default::default()
        };
        e.sender.tgid = sender;
        e.sender.tid = sender;
        e.target.tgid = target;
        e.target.tid = target;
        e.recipient.pgid = target;
        e
    }

    fn deliver_event(ts: u64, tgid: u32, sig: i32, handler: u64, gec: i32) -> DeliverEvent {
        let mut e = DeliverEvent {
            header: Header::new(kind::DELIVER, ts),
            sig,
            handler,
            group_exit_code: gec,
            ..Default::default()
        };
        e.task.tgid = tgid;
        e.task.tid = tgid;
        e
    }

    fn exit_event(ts: u64, tgid: u32, code: i32) -> ExitEvent {
        let mut e = ExitEvent {
            header: Header::new(kind::EXIT, ts),
            exit_code: code,
            ..Default::default()
        };
        e.task.tgid = tgid;
        e
    }

    #[test]
    fn pairs_delivery_with_generation_and_latency() {
        let mut c = Correlator::new();
        let mut out = Vec::new();
        c.push(
            Event::Generate(gen_event(100, 1, 2, num::SIGUSR1, 0)),
            &mut out,
        );
        c.push(
            Event::Deliver(deliver_event(350, 2, num::SIGUSR1, 0x5555, 0)),
            &mut out,
        );
        let Report::Deliver(d) = &out[1] else {
            panic!("{out:?}")
        };
        assert_eq!(d.generation, Some((1, 250)));
        assert_eq!(d.outcome, Outcome::Handled);
    }

    #[test]
    fn fatal_sigkill_is_attributed_to_its_cause_once() {
        let mut c = Correlator::new();
        let mut out = Vec::new();
        c.push(
            Event::Generate(gen_event(1, 1, 7, num::SIGTERM, 0)),
            &mut out,
        );
        c.push(
            Event::Deliver(deliver_event(2, 7, num::SIGKILL, 0, num::SIGTERM)),
            &mut out,
        );
        // A second thread of the same dying group: nothing new.
        c.push(
            Event::Deliver(deliver_event(3, 7, num::SIGKILL, 0, num::SIGTERM)),
            &mut out,
        );
        assert_eq!(out.len(), 2);
        let Report::Deliver(d) = &out[1] else {
            panic!()
        };
        assert_eq!(d.cause, Some(num::SIGTERM));
        assert_eq!(d.generation.map(|g| g.0), Some(1));
        assert_eq!(d.outcome, Outcome::Terminated { core: false });
        c.push(Event::Exit(exit_event(4, 7, num::SIGTERM)), &mut out);
        let Report::Exit(x) = &out[2] else { panic!() };
        assert_eq!(
            x.status,
            ExitStatus::Killed {
                signal: num::SIGTERM,
                core: false
            }
        );
        assert!(x.relevant);
    }

    #[test]
    fn immediate_outcomes_at_generation() {
        let mut c = Correlator::new();
        let mut out = Vec::new();
        c.push(
            Event::Generate(gen_event(1, 1, 2, num::SIGUSR2, 1)),
            &mut out,
        );
        c.push(
            Event::Generate(gen_event(2, 1, 2, num::SIGUSR1, 2)),
            &mut out,
        );
        let mut blocked = gen_event(3, 1, 2, num::SIGUSR1, 0);
        blocked.recipient.blocked = 1 << (num::SIGUSR1 - 1);
        c.push(Event::Generate(blocked), &mut out);
        let outcomes: Vec<_> = out
            .iter()
            .filter_map(|r| match r {
                Report::Generate(g) => Some(g.outcome),
                _ => None,
            })
            .collect();
        assert_eq!(
            outcomes,
            [
                Outcome::IgnoredAtGeneration,
                Outcome::Merged,
                Outcome::Blocked
            ]
        );
    }

    /// Found by fuzzing: a record's signal number is whatever the bytes say, and `sig - 1`
    /// overflowed at i32::MIN (a panic in debug builds); a group kill's pid argument
    /// likewise at i64::MIN. Numbers outside 1..=64 are in no mask.
    #[test]
    fn out_of_range_numbers_from_a_record_are_not_arithmetic_errors() {
        let mut c = Correlator::new();
        let mut out = Vec::new();
        for (i, sig) in [i32::MIN, -1, 0, 65, i32::MAX].into_iter().enumerate() {
            let mut e = gen_event(i as u64, 1, 2, sig, 0);
            e.recipient.blocked = u64::MAX;
            e.via = via::KILL;
            e.via_arg = i64::MIN;
            c.push(Event::Generate(e), &mut out);
        }
        c.flush(&mut out);
        for report in &out {
            match report {
                Report::Generate(g) => assert_eq!(g.outcome, Outcome::Pending),
                Report::Fanout(f) => assert_eq!(f.pgid, 0),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn group_kill_becomes_one_fanout_with_member_outcomes() {
        let mut c = Correlator::new();
        let mut out = Vec::new();
        for (i, target) in [10u32, 11, 12].into_iter().enumerate() {
            let mut e = gen_event(100 + i as u64, 5, target, num::SIGINT, 0);
            e.via = via::KILL;
            e.via_arg = -10;
            if target == 10 {
                e.result = result::IGNORED;
            }
            c.push(Event::Generate(e), &mut out);
        }
        c.push(
            Event::Deliver(deliver_event(200, 11, num::SIGINT, 0x4000, 0)),
            &mut out,
        );
        c.push(
            Event::Deliver(deliver_event(210, 12, num::SIGINT, 0, 0)),
            &mut out,
        );
        c.push(Event::Exit(exit_event(300, 11, 0)), &mut out);
        c.push(Event::Exit(exit_event(310, 12, num::SIGINT)), &mut out);
        assert!(!out.iter().any(|r| matches!(r, Report::Fanout(_))));
        // The member that ignored it lives on: the block comes once things are quiet.
        c.settle(310 + FANOUT_SETTLE_NS, &mut out);
        let fanout = out
            .iter()
            .find_map(|r| match r {
                Report::Fanout(f) => Some(f),
                _ => None,
            })
            .expect("fan-out reported once all members are done");
        assert_eq!(fanout.pgid, 10);
        let outcomes: Vec<_> = fanout.members.iter().map(|m| m.outcome).collect();
        assert_eq!(
            outcomes,
            [
                Outcome::IgnoredAtGeneration,
                Outcome::Handled,
                Outcome::Terminated { core: false }
            ]
        );
        assert_eq!(fanout.members[1].exit, Some((ExitStatus::Exited(0), 200)));
    }

    #[test]
    fn separate_kills_are_separate_fanouts() {
        let mut c = Correlator::new();
        let mut out = Vec::new();
        for ts in [0u64, FANOUT_GAP_NS * 2] {
            let mut e = gen_event(ts, 5, 10, num::SIGHUP, 1);
            e.via = via::KILL;
            e.via_arg = -10;
            c.push(Event::Generate(e), &mut out);
        }
        c.flush(&mut out);
        assert_eq!(
            out.iter()
                .filter(|r| matches!(r, Report::Fanout(_)))
                .count(),
            2
        );
    }

    /// Regression: a signal taken by sigwaitinfo (no delivery) must not be paired with the
    /// next delivery of the same signal.
    #[test]
    fn a_real_time_queue_taken_without_deliveries_stays_bounded() {
        let mut c = Correlator::new();
        let mut out = Vec::new();
        let rt = num::KERNEL_SIGRTMIN + 2;
        for _ in 0..RT_QUEUE_CAP + 10 {
            let mut e = GenerateEvent::default();
            e.header.kind = sigtrace_common::kind::GENERATE;
            e.sig = rt;
            e.target.tgid = 42;
            e.target.tid = 42;
            e.group = 1;
            c.push(Event::Generate(e), &mut out);
        }
        let pending: usize = c.pending.values().map(VecDeque::len).sum();
        assert_eq!(pending, RT_QUEUE_CAP);
        let retired: Vec<u64> = out
            .iter()
            .filter_map(|r| match r {
                Report::Generate(g) => Some(g.consumed.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(
            retired,
            (1..=10).collect::<Vec<u64>>(),
            "the oldest, in order"
        );
    }

    #[test]
    fn consumed_standard_signal_is_retired_not_paired() {
        let mut c = Correlator::new();
        let mut out = Vec::new();
        c.push(
            Event::Generate(gen_event(100, 1, 2, num::SIGUSR1, 0)),
            &mut out,
        );
        c.push(
            Event::Generate(gen_event(500, 1, 2, num::SIGUSR1, 0)),
            &mut out,
        );
        c.push(
            Event::Deliver(deliver_event(600, 2, num::SIGUSR1, 0x5555, 0)),
            &mut out,
        );
        let Report::Generate(second) = &out[1] else {
            panic!()
        };
        assert_eq!(second.consumed, [1]);
        let Report::Deliver(d) = &out[2] else {
            panic!()
        };
        assert_eq!(d.generation, Some((2, 100)));
    }

    /// A tgkill'd signal waits in its thread's queue; another thread's delivery of the same
    /// signal is the process-wide one's.
    #[test]
    fn thread_directed_and_process_wide_queues_are_apart() {
        let mut c = Correlator::new();
        let mut out = Vec::new();
        let mut to_thread = gen_event(1, 1, 2, num::SIGRTMIN, 0);
        to_thread.target.tid = 3;
        let mut shared = gen_event(2, 1, 2, num::SIGRTMIN, 0);
        shared.group = 1;
        c.push(Event::Generate(to_thread), &mut out);
        c.push(Event::Generate(shared), &mut out);
        let mut on_main = deliver_event(5, 2, num::SIGRTMIN, 0x5555, 0);
        on_main.task.tid = 2;
        c.push(Event::Deliver(on_main), &mut out);
        let Report::Deliver(d) = &out[2] else {
            panic!()
        };
        assert_eq!(d.generation.map(|g| g.0), Some(2), "the process-wide one");
    }

    #[test]
    fn wait_status_decoding() {
        assert_eq!(ExitStatus::from_wait_status(7 << 8), ExitStatus::Exited(7));
        assert_eq!(
            ExitStatus::from_wait_status(0x80 | 11),
            ExitStatus::Killed {
                signal: 11,
                core: true
            }
        );
    }
}
