//! --handler-time: how long each signal handler ran, from its delivery to the
//! rt_sigreturn(2) that ends it, per thread. Handlers nest (a signal arriving while another's
//! handler runs), and some never return: one may longjmp out (siglongjmp, a C++ exception),
//! or the process may exit in it. The user stack pointer pairs them: a delivery records the
//! stack pointer it interrupted, and the rt_sigreturn record the one its signal frame
//! restores, which is that same value — so a return ends exactly its own handler's run (one
//! of an unreported handler matches none), and the runs opened after it were left. A
//! delivery whose stack pointer is at or above an open run's also proves that run left (its
//! frame is gone), unless that run is on an alternate signal stack (SA_ONSTACK), which has
//! no such order with the thread's stack.

use std::collections::HashMap;

use sigtrace_common::{DeliverEvent, SigreturnEvent, TaskIds};

/// sa_flags: the handler runs on the alternate signal stack.
const SA_ONSTACK: u64 = 0x0800_0000;
/// Open handlers kept per thread; deeper nesting drops the outermost (reported as left).
const MAX_DEPTH: usize = 64;
/// Threads with open handlers; past it, a new thread's handlers are not followed.
const MAX_THREADS: usize = 16_384;

/// How a handler run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlerEnd {
    /// Its rt_sigreturn: the run took `duration_ns`.
    Returned,
    /// It never returned: its frame was abandoned (longjmp, an exception), as a later
    /// delivery or return of the same thread showed.
    Left,
    /// The process exited while it ran (exit in the handler, or killed in it).
    Exited,
}

impl HandlerEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            HandlerEnd::Returned => "returned",
            HandlerEnd::Left => "left",
            HandlerEnd::Exited => "exited",
        }
    }
}

/// The end of one handler run.
#[derive(Debug, Clone)]
pub struct HandlerReport {
    pub task: TaskIds,
    pub sig: i32,
    /// The generation its delivery dequeued, when known.
    pub generation: Option<u64>,
    pub delivered_ns: u64,
    /// When the end was seen: the rt_sigreturn, or the event that showed it left or ended.
    pub end_ns: u64,
    pub end: HandlerEnd,
    /// Delivery to rt_sigreturn; None unless it returned.
    pub duration_ns: Option<u64>,
}

#[derive(Debug, Clone)]
struct Open {
    task: TaskIds,
    sig: i32,
    generation: Option<u64>,
    delivered_ns: u64,
    sp: u64,
    on_alt_stack: bool,
}

impl Open {
    fn end(self, end_ns: u64, end: HandlerEnd) -> HandlerReport {
        let duration_ns =
            (end == HandlerEnd::Returned).then(|| end_ns.saturating_sub(self.delivered_ns));
        HandlerReport {
            task: self.task,
            sig: self.sig,
            generation: self.generation,
            delivered_ns: self.delivered_ns,
            end_ns,
            end,
            duration_ns,
        }
    }
}

/// Open handler runs by thread.
#[derive(Debug, Default)]
pub struct HandlerRuns {
    open: HashMap<u32, Vec<Open>>,
}

impl HandlerRuns {
    /// Open runs, for the stats line.
    pub fn open_runs(&self) -> usize {
        self.open.values().map(Vec::len).sum()
    }

    /// A delivery that runs a handler (the caller checked): opens a run, after ending the
    /// runs of this thread whose frames it proves gone.
    pub fn delivered(
        &mut self,
        e: &DeliverEvent,
        generation: Option<u64>,
        out: &mut Vec<HandlerReport>,
    ) {
        let ts = e.header.ts_ns;
        let tid = e.task.tid;
        if !self.open.contains_key(&tid) && self.open.len() >= MAX_THREADS {
            return;
        }
        let runs = self.open.entry(tid).or_default();
        // The outermost run the stack pointer has climbed back over, and all inside it.
        if let Some(gone) = runs
            .iter()
            .position(|run| !run.on_alt_stack && run.sp <= e.user_sp)
        {
            out.extend(runs.drain(gone..).map(|run| run.end(ts, HandlerEnd::Left)));
        }
        if runs.len() == MAX_DEPTH {
            out.push(runs.remove(0).end(ts, HandlerEnd::Left));
        }
        runs.push(Open {
            task: e.task,
            sig: e.sig,
            generation,
            delivered_ns: ts,
            sp: e.user_sp,
            on_alt_stack: e.sa_flags & SA_ONSTACK != 0,
        });
    }

    /// A rt_sigreturn: ends the run whose delivery saved the stack pointer its frame
    /// restores; runs opened after it were left. One that matches no run (an unreported
    /// handler's, one begun before tracing) ends nothing.
    pub fn returned(&mut self, e: &SigreturnEvent, out: &mut Vec<HandlerReport>) {
        let ts = e.header.ts_ns;
        let tid = e.task.tid;
        let Some(runs) = self.open.get_mut(&tid) else {
            return;
        };
        let Some(ending) = runs.iter().rposition(|run| run.sp == e.user_sp) else {
            return;
        };
        let mut ended: Vec<Open> = runs.drain(ending..).collect();
        let empty = runs.is_empty();
        if !ended.is_empty() {
            let run = ended.remove(0);
            out.extend(ended.into_iter().map(|r| r.end(ts, HandlerEnd::Left)));
            out.push(run.end(ts, HandlerEnd::Returned));
        }
        if empty {
            self.open.remove(&tid);
        }
    }

    /// Process `tgid` exited: every run still open in its threads never returned.
    pub fn exited(&mut self, tgid: u32, ts: u64, out: &mut Vec<HandlerReport>) {
        let tids: Vec<u32> = self
            .open
            .iter()
            .filter(|(_, runs)| runs.first().is_some_and(|r| r.task.tgid == tgid))
            .map(|(&tid, _)| tid)
            .collect();
        for tid in tids {
            if let Some(runs) = self.open.remove(&tid) {
                // Innermost first, as they unwind.
                out.extend(
                    runs.into_iter()
                        .rev()
                        .map(|r| r.end(ts, HandlerEnd::Exited)),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use sigtrace_common::{Header, kind};

    use super::*;

    const TID: u32 = 40;

    fn delivery(ms: u64, sig: i32, sp: u64, flags: u64) -> DeliverEvent {
        let mut e = DeliverEvent {
            header: Header::new(kind::DELIVER, ms * 1_000_000),
            sig,
            handler: 0x4000,
            sa_flags: flags,
            user_sp: sp,
            ..DeliverEvent::default()
        };
        (e.task.tgid, e.task.tid) = (TID, TID);
        e
    }

    fn sigreturn(ms: u64, sp: u64) -> SigreturnEvent {
        let mut e = SigreturnEvent {
            header: Header::new(kind::SIGRETURN, ms * 1_000_000),
            user_sp: sp,
            ..SigreturnEvent::default()
        };
        (e.task.tgid, e.task.tid) = (TID, TID);
        e
    }

    fn ends(out: &[HandlerReport]) -> Vec<(i32, &'static str, Option<u64>)> {
        out.iter()
            .map(|r| {
                (
                    r.sig,
                    r.end.as_str(),
                    r.duration_ns.map(|ns| ns / 1_000_000),
                )
            })
            .collect()
    }

    #[test]
    fn a_handler_runs_until_its_sigreturn() {
        let mut runs = HandlerRuns::default();
        let mut out = Vec::new();
        runs.delivered(&delivery(10, 10, 0x7000, 0), Some(1), &mut out);
        runs.returned(&sigreturn(110, 0x7000), &mut out);
        assert_eq!(ends(&out), [(10, "returned", Some(100))]);
        assert_eq!(out[0].generation, Some(1));
        assert_eq!(runs.open_runs(), 0);
    }

    #[test]
    fn nested_handlers_end_innermost_first() {
        let mut runs = HandlerRuns::default();
        let mut out = Vec::new();
        runs.delivered(&delivery(0, 10, 0x7000, 0), None, &mut out);
        // SIGUSR2 arrives inside SIGUSR1's handler, lower on the stack.
        runs.delivered(&delivery(5, 12, 0x6000, 0), None, &mut out);
        runs.returned(&sigreturn(7, 0x6000), &mut out);
        runs.returned(&sigreturn(20, 0x7000), &mut out);
        assert_eq!(
            ends(&out),
            [(12, "returned", Some(2)), (10, "returned", Some(20))]
        );
    }

    #[test]
    fn a_longjmp_out_of_a_handler_is_seen_at_the_next_delivery() {
        let mut runs = HandlerRuns::default();
        let mut out = Vec::new();
        runs.delivered(&delivery(0, 10, 0x7000, 0), None, &mut out);
        // Back in the main loop at the same depth: the first handler's frame is gone.
        runs.delivered(&delivery(50, 10, 0x7000, 0), None, &mut out);
        assert_eq!(ends(&out), [(10, "left", None)]);
        runs.returned(&sigreturn(51, 0x7000), &mut out);
        assert_eq!(ends(&out)[1], (10, "returned", Some(1)));
    }

    #[test]
    fn a_longjmp_out_of_a_nested_handler_is_seen_at_the_outer_return() {
        let mut runs = HandlerRuns::default();
        let mut out = Vec::new();
        runs.delivered(&delivery(0, 10, 0x7000, 0), None, &mut out);
        runs.delivered(&delivery(1, 12, 0x6000, 0), None, &mut out);
        // The inner handler jumps back into the outer one, which then returns.
        runs.returned(&sigreturn(3, 0x7000), &mut out);
        assert_eq!(ends(&out), [(12, "left", None), (10, "returned", Some(3))]);
    }

    #[test]
    fn alternate_stack_handlers_end_by_return_or_exit_only() {
        let mut runs = HandlerRuns::default();
        let mut out = Vec::new();
        runs.delivered(&delivery(0, 11, 0x7000, SA_ONSTACK), None, &mut out);
        runs.delivered(&delivery(1, 10, 0x9000, 0), None, &mut out);
        assert!(out.is_empty(), "{out:?}");
        runs.exited(TID, 9, &mut out);
        assert_eq!(ends(&out), [(10, "exited", None), (11, "exited", None)]);
        assert_eq!(runs.open_runs(), 0);
    }

    #[test]
    fn a_sigreturn_of_no_known_handler_ends_nothing() {
        let mut runs = HandlerRuns::default();
        let mut out = Vec::new();
        runs.returned(&sigreturn(1, 0x6000), &mut out);
        runs.delivered(&delivery(2, 10, 0x5000, 0), None, &mut out);
        // An unreported handler nested in it returns first (to inside the reported one):
        // the reported run goes on.
        runs.returned(&sigreturn(3, 0x4800), &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(runs.open_runs(), 1);
        runs.returned(&sigreturn(4, 0x5000), &mut out);
        assert_eq!(ends(&out), [(10, "returned", Some(2))]);
    }

    #[test]
    fn an_alternate_stack_handler_ends_at_its_own_return() {
        let mut runs = HandlerRuns::default();
        let mut out = Vec::new();
        runs.delivered(&delivery(0, 10, 0x7000, 0), None, &mut out);
        // SIGSEGV on the alternate stack, nested, left by a longjmp back into the first
        // handler, which then returns.
        runs.delivered(&delivery(1, 11, 0x6000, SA_ONSTACK), None, &mut out);
        runs.returned(&sigreturn(5, 0x7000), &mut out);
        assert_eq!(ends(&out), [(11, "left", None), (10, "returned", Some(5))]);
    }
}
