//! Burst folding for the text output: a process spamming one signal would bury the rest of
//! a trace, so repeats of the last few lines are counted instead of printed.
//!
//! - The first lines of a burst are printed at once; a line equal to one of the last
//!   [`GROUP_MAX`] printed lines (all but its timestamp and latency, see
//!   [`text::Written::stable`]) starts a fold whose group is the printed lines from that one
//!   on — one line for a plain repeat, two for the generation/delivery pairs of a kill storm
//!   to a handler, three or four when merged generations or a handler re-installed in each
//!   call join in. Further lines equal to any line of the group are counted, in whatever order
//!   they come (the kernel interleaves a storm's generations and deliveries as it schedules).
//! - The fold ends, with one `×N more like the line above` line, when a line outside the group
//!   arrives, before a loss notice, at the end of the run, and when the stream goes idle: at
//!   a periodic flush with no line since the previous one. A burst that goes on therefore
//!   prints nothing more until it stops.
//! - A fold line stands in for the lines directly above it. It ends the burst: the next
//!   repeat has to show its group again before folding resumes. A fold that ends with no
//!   more lines than its group has prints them as they were instead (a fold line saves
//!   nothing there).
//!
//! Only the text output folds; JSON records every event.

use std::io::{self, Write};

use super::{
    Stamp,
    text::{self, Duration, Key, Written},
};
use crate::correlate::Report;

/// Most lines in a repeating group: a generation, its delivery, the merged generation of
/// the same signal, a sigaction.
const GROUP_MAX: usize = 4;

/// Whether a report's line may fold into a burst, or is one a reader must see whatever came
/// before it.
pub(super) fn folds(report: &Report) -> bool {
    match report {
        // The storm itself: the same sender, target, signal, code, result and outcome.
        Report::Generate(_) | Report::Deliver(_) => true,
        // A handler re-installed before each use (System V signal(), a library setting its
        // action every call) repeats with the storm it belongs to.
        Report::Sigaction(_) => true,
        // A storm's handler runs end alike (their durations are not compared).
        Report::Handler(_) => true,
        // A process's birth and death are news however alike (never identical anyway: the
        // child's pid, the exit's pid differ), and an exit or a fan-out spans several lines,
        // a fan-out with an id of its own. They end a burst.
        Report::Exit(_) | Report::Fork(_) | Report::Fanout(_) => false,
    }
}

/// One printed line a later one may repeat.
struct Shown {
    /// Its [`Written::stable`] bytes.
    key: Vec<u8>,
    ts_ns: u64,
}

/// A line counted into a fold, kept whole while the fold is still short enough to be
/// printed as it was.
struct Held {
    line: Vec<u8>,
    written: Written,
}

/// The fold under way.
struct Burst {
    /// The group is `Folder::recent[start..]`.
    start: usize,
    /// Lines folded, per line of the group.
    counts: [u64; GROUP_MAX],
    last_ts: u64,
    /// The folded lines, while there are no more than the group has.
    held: Vec<Held>,
}

impl Burst {
    fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

#[derive(Default)]
pub(super) struct Folder {
    /// The last lines printed whole since the last barrier, oldest first.
    recent: Vec<Shown>,
    burst: Option<Burst>,
    /// A line came (printed or folded) since the last [`Folder::idle`].
    active: bool,
}

impl Folder {
    /// `line` is one report's text, `written` where its parts are; `folds` whether it may
    /// join a burst (see [`folds`]).
    pub(super) fn line(
        &mut self,
        out: &mut impl Write,
        stamp: &Stamp,
        line: &[u8],
        written: Written,
        folds: bool,
    ) -> io::Result<()> {
        self.active = true;
        if !folds {
            self.interrupt(out, stamp)?;
            return out.write_all(line);
        }
        let key = written.key(line);
        if let Some(burst) = &mut self.burst {
            if let Some(i) = self.recent[burst.start..]
                .iter()
                .position(|shown| key.is(&shown.key))
            {
                burst.counts[i] += 1;
                burst.last_ts = written.ts_ns;
                if burst.total() as usize <= self.recent.len() - burst.start {
                    burst.held.push(Held {
                        line: line.to_vec(),
                        written,
                    });
                } else {
                    burst.held.clear();
                }
                return Ok(());
            }
            self.end(out, stamp)?;
        }
        if let Some(start) = self.group_starting_with(key) {
            let mut counts = [0; GROUP_MAX];
            counts[0] = 1;
            self.burst = Some(Burst {
                start,
                counts,
                last_ts: written.ts_ns,
                held: vec![Held {
                    line: line.to_vec(),
                    written,
                }],
            });
            return Ok(());
        }
        self.print(out, line, &written)
    }

    /// Where in `recent` a group that `key` repeats begins: the latest line equal to it,
    /// when the lines from there on are all different (each folded line counts for exactly
    /// one line of the group).
    fn group_starting_with(&self, key: Key<'_>) -> Option<usize> {
        let start = self.recent.iter().rposition(|shown| key.is(&shown.key))?;
        let group = &self.recent[start..];
        group
            .iter()
            .enumerate()
            .all(|(i, a)| group[i + 1..].iter().all(|b| a.key != b.key))
            .then_some(start)
    }

    fn print(&mut self, out: &mut impl Write, line: &[u8], written: &Written) -> io::Result<()> {
        out.write_all(line)?;
        let mut shown = if self.recent.len() == GROUP_MAX {
            self.recent.remove(0)
        } else {
            Shown {
                key: Vec::new(),
                ts_ns: 0,
            }
        };
        shown.key.clear();
        written.key(line).extend(&mut shown.key);
        shown.ts_ns = written.ts_ns;
        self.recent.push(shown);
        Ok(())
    }

    /// Ends the fold under way, if any: prints its count (or its few lines). Called before
    /// anything that is not a repeat, a loss notice included, and at the end of the run.
    pub(super) fn end(&mut self, out: &mut impl Write, stamp: &Stamp) -> io::Result<()> {
        let Some(burst) = self.burst.take() else {
            return Ok(());
        };
        let total = burst.total();
        if total as usize == burst.held.len() {
            for held in burst.held {
                self.print(out, &held.line, &held.written)?;
            }
            return Ok(());
        }
        let group = self.recent.len() - burst.start;
        let since = self.recent[burst.start].ts_ns;
        let mut line = Vec::with_capacity(128);
        text::write_time(&mut line, burst.last_ts, stamp)?;
        write!(line, "  ×{total} more like ")?;
        if group == 1 {
            write!(line, "the line above")?;
        } else {
            write!(line, "the {group} lines above (")?;
            for (i, count) in burst.counts[..group].iter().enumerate() {
                let sep = if i > 0 { " + " } else { "" };
                write!(line, "{sep}{count}")?;
            }
            write!(line, ")")?;
        }
        writeln!(
            line,
            ", over {}",
            Duration(burst.last_ts.saturating_sub(since))
        )?;
        out.write_all(&line)?;
        // The fold line now stands between the group and whatever comes next.
        self.recent.clear();
        Ok(())
    }

    /// Ends the fold and forgets what was printed: after a loss notice or a line that never
    /// folds, what comes next is not "like the lines above".
    pub(super) fn interrupt(&mut self, out: &mut impl Write, stamp: &Stamp) -> io::Result<()> {
        self.end(out, stamp)?;
        self.recent.clear();
        Ok(())
    }

    /// At each periodic flush: when no line came since the previous one the burst is over —
    /// its count is printed now, not when the next event arrives, and the next event starts
    /// afresh. A burst still going on prints nothing here.
    pub(super) fn idle(&mut self, out: &mut impl Write, stamp: &Stamp) -> io::Result<()> {
        if !std::mem::take(&mut self.active) {
            self.interrupt(out, stamp)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use sigtrace_common::GenerateEvent;

    use super::super::{
        Format, Output, OutputOptions, TimeMode, Totals,
        tests::{HANDLER, START_NS, WALL_AT_ZERO_NS, at, deliver, exit, kill, sigaction, task},
    };
    use crate::{
        correlate::{Correlator, Report},
        enrich::Clock,
        events::Event,
        signals::num,
    };

    fn options(fold: bool) -> OutputOptions {
        OutputOptions {
            format: Format::Text,
            time: TimeMode::Relative,
            summary: false,
            summary_only: false,
            quiet: false,
            all_exits: true,
            fold,
            masks: false,
        }
    }

    /// What the run prints, step by step.
    enum Step {
        Event(Box<Event>),
        Loss,
        /// A periodic flush.
        Flush,
    }

    fn run(steps: Vec<Step>, options: OutputOptions) -> String {
        let mut written = Vec::new();
        let mut output = Output::new(
            &mut written,
            options,
            Clock::fixed(WALL_AT_ZERO_NS, START_NS),
            false,
        );
        let mut correlator = Correlator::new();
        let mut reports = Vec::new();
        let report = |output: &mut Output<_>, reports: &mut Vec<Report>| {
            for report in reports.drain(..) {
                output.report(&report).expect("writing to memory");
            }
        };
        for step in steps {
            match step {
                Step::Event(event) => {
                    correlator.push(*event, &mut reports);
                    report(&mut output, &mut reports);
                }
                Step::Loss => output.loss(7, 7).expect("writing to memory"),
                Step::Flush => output.flush().expect("writing to memory"),
            }
        }
        correlator.flush(&mut reports);
        report(&mut output, &mut reports);
        output.finish(Totals::default()).expect("writing to memory");
        drop(output);
        String::from_utf8(written).expect("text is UTF-8")
    }

    const SENDER: u32 = 20;
    const TARGET: u32 = 30;

    fn event(event: Event) -> Step {
        Step::Event(Box::new(event))
    }

    fn generation(ms: u64, sig: i32) -> GenerateEvent {
        let (sender, target) = (task(SENDER, b"storm"), task(TARGET, b"victim"));
        kill(ms, sender, target, sig, TARGET as i64, HANDLER, TARGET)
    }

    fn usr(ms: u64, sig: i32) -> Step {
        event(Event::Generate(generation(ms, sig)))
    }

    /// A SIGUSR1 that found one pending.
    fn merged(ms: u64) -> Step {
        event(Event::Generate(GenerateEvent {
            result: sigtrace_common::result::ALREADY_PENDING,
            ..generation(ms, num::SIGUSR1)
        }))
    }

    fn delivered(ms: u64, sig: i32) -> Step {
        let victim = task(TARGET, b"victim");
        event(Event::Deliver(deliver(ms, victim, sig, HANDLER, 0)))
    }

    /// Generation and delivery of SIGUSR1, `n` times from `ms` on, a millisecond apart, the
    /// delivery 100 µs after (latencies vary: they are not part of what is compared).
    fn storm(ms: u64, n: u64) -> Vec<Step> {
        (0..n)
            .flat_map(|i| [usr(ms + i, num::SIGUSR1), delivered(ms + i, num::SIGUSR1)])
            .collect()
    }

    const GEN: &str = "SIGUSR1    storm[20] → victim[30]  SI_USER via kill  delivered  handler 0x5581fa6f8dc0  pgrp 30 sid 100\n";
    const GEN2: &str = "SIGUSR2    storm[20] → victim[30]  SI_USER via kill  delivered  handler 0x5581fa6f8dc0  pgrp 30 sid 100\n";
    const MERGED: &str = "SIGUSR1    storm[20] → victim[30]  SI_USER via kill  already pending  handler 0x5581fa6f8dc0  pgrp 30 sid 100\n";
    const DEL: &str = "  ↳ SIGUSR1  victim[30]  handler 0x5581fa6f8dc0 → handled (0 ns)\n";
    const DEL2: &str = "  ↳ SIGUSR2  victim[30]  handler 0x5581fa6f8dc0 → handled (0 ns)\n";

    /// The lines without their timestamps (checked on their own below).
    fn bodies(text: &str) -> Vec<String> {
        text.lines()
            .map(|line| format!("{}\n", line.get(12..).unwrap_or_default()))
            .collect()
    }

    #[test]
    fn a_storm_of_pairs_folds_into_one_line_after_its_first_pair() {
        let text = run(storm(0, 1000), options(true));
        assert_eq!(
            text,
            "   1.500000 SIGUSR1    storm[20] → victim[30]  SI_USER via kill  delivered  handler 0x5581fa6f8dc0  pgrp 30 sid 100\n   \
             1.500000   ↳ SIGUSR1  victim[30]  handler 0x5581fa6f8dc0 → handled (0 ns)\n   \
             2.499000   ×1998 more like the 2 lines above (999 + 999), over 999 ms\n"
        );
        let every = run(storm(0, 1000), options(false));
        assert_eq!(every.lines().count(), 2000);
    }

    #[test]
    fn an_odd_signal_stays_visible_between_two_folds() {
        let mut steps = storm(0, 100);
        steps.extend([usr(100, num::SIGUSR2), delivered(100, num::SIGUSR2)]);
        steps.extend(storm(101, 100));
        let text = run(steps, options(true));
        assert_eq!(
            bodies(&text),
            [
                GEN,
                DEL,
                "  ×198 more like the 2 lines above (99 + 99), over 99 ms\n",
                GEN2,
                DEL2,
                GEN,
                DEL,
                "  ×198 more like the 2 lines above (99 + 99), over 99 ms\n",
            ]
        );
    }

    /// A storm from another process: generations merged while one is pending, deliveries
    /// whenever the target runs. Every line still counts for exactly one event.
    #[test]
    fn interleaved_generations_and_deliveries_fold_as_one_group() {
        let mut steps = vec![usr(0, num::SIGUSR1), merged(0), delivered(0, num::SIGUSR1)];
        for i in 0..50 {
            steps.extend([usr(2 + i, num::SIGUSR1), merged(2 + i), merged(2 + i)]);
            steps.push(delivered(2 + i, num::SIGUSR1));
            if i % 3 == 0 {
                steps.push(merged(2 + i));
            }
        }
        let text = run(steps, options(true));
        assert_eq!(
            bodies(&text),
            [
                GEN,
                MERGED,
                DEL,
                "  ×217 more like the 3 lines above (50 + 117 + 50), over 51 ms\n",
            ]
        );
    }

    #[test]
    fn a_short_repeat_is_printed_as_it_was() {
        let steps = vec![
            usr(0, num::SIGUSR1),
            usr(1, num::SIGUSR1),
            usr(2, num::SIGUSR2),
        ];
        let text = run(steps, options(true));
        assert_eq!(
            text,
            format!("   1.500000 {GEN}   1.501000 {GEN}   1.502000 {GEN2}")
        );
    }

    #[test]
    fn losses_end_the_fold_in_order_and_are_never_folded() {
        let mut steps = storm(0, 10);
        steps.push(Step::Loss);
        steps.extend(storm(10, 10));
        steps.push(Step::Loss);
        steps.push(Step::Loss);
        let text = run(steps, options(true));
        let loss = "!! 7 events lost (ring buffer full; 7 in all) — try a larger --ring-size or narrower filters\n";
        let lines: Vec<String> = text.lines().map(|l| format!("{l}\n")).collect();
        assert_eq!(lines.len(), 9, "{text}");
        assert_eq!(
            lines[2],
            "   1.509000   ×18 more like the 2 lines above (9 + 9), over 9 ms\n"
        );
        assert_eq!(lines[3], loss);
        // After a loss the first lines are printed again: what came before may not be what
        // the lost events were.
        assert_eq!(
            bodies(&lines[4..7].concat()),
            [
                GEN,
                DEL,
                "  ×18 more like the 2 lines above (9 + 9), over 9 ms\n"
            ]
        );
        assert_eq!(lines[7..], [loss, loss]);
    }

    /// Files a test writer "reopens": each reopen starts a new one.
    #[derive(Default)]
    struct Files(Vec<Vec<u8>>);

    impl std::io::Write for Files {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                self.0.push(Vec::new());
            }
            self.0.last_mut().expect("a file").extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl super::super::Reopen for Files {
        fn reopen(&mut self) -> std::io::Result<()> {
            self.0.push(Vec::new());
            Ok(())
        }
    }

    /// SIGHUP with -o in the middle of a burst: its count ends the old file, and the new one
    /// starts with whole lines, not with "like the lines above" (which are in the old file).
    #[test]
    fn a_reopen_counts_the_burst_into_the_old_file() {
        let mut files = Files::default();
        let mut output = Output::new(
            &mut files,
            options(true),
            Clock::fixed(WALL_AT_ZERO_NS, START_NS),
            false,
        );
        let mut correlator = Correlator::new();
        let mut reports = Vec::new();
        let mut play = |output: &mut Output<&mut Files>, steps: Vec<Step>| {
            for step in steps {
                if let Step::Event(event) = step {
                    correlator.push(*event, &mut reports);
                }
                for report in reports.drain(..) {
                    output.report(&report).expect("writing to memory");
                }
            }
        };
        play(&mut output, storm(0, 10));
        output.reopen().expect("reopen");
        play(&mut output, storm(10, 10));
        output.finish(Totals::default()).expect("writing to memory");
        drop(output);
        let texts: Vec<String> = files
            .0
            .iter()
            .map(|f| String::from_utf8(f.clone()).expect("UTF-8"))
            .collect();
        assert_eq!(texts.len(), 2, "{texts:?}");
        assert_eq!(
            bodies(&texts[0]),
            [
                GEN,
                DEL,
                "  ×18 more like the 2 lines above (9 + 9), over 9 ms\n"
            ]
        );
        assert_eq!(bodies(&texts[1])[..2], [GEN, DEL]);
    }

    #[test]
    fn an_idle_flush_prints_the_count_but_not_while_the_burst_goes_on() {
        let mut steps = storm(0, 5);
        // Repeats came since the last flush: the burst goes on, nothing printed.
        steps.push(Step::Flush);
        steps.extend(storm(5, 5));
        steps.push(Step::Flush);
        // Nothing since: the count comes out now.
        steps.push(Step::Flush);
        // The same lines again after the pause: a new burst, printed first.
        steps.extend(storm(100, 3));
        steps.push(Step::Flush);
        let text = run(steps, options(true));
        assert_eq!(
            bodies(&text),
            [
                GEN,
                DEL,
                "  ×18 more like the 2 lines above (9 + 9), over 9 ms\n",
                GEN,
                DEL,
                "  ×4 more like the 2 lines above (2 + 2), over 2 ms\n",
            ]
        );
    }

    /// Exits, forks and fan-outs end a burst and are never folded; a sigaction re-installing
    /// the handler before each signal folds with the storm.
    #[test]
    fn what_folds_and_what_ends_a_fold() {
        let victim = task(TARGET, b"victim");
        let reinstall = |ms| {
            let reinstalled = sigaction(ms, victim, num::SIGUSR1, 0, HANDLER, 0);
            event(Event::Sigaction(reinstalled))
        };
        let mut steps = Vec::new();
        for i in 0..5 {
            steps.extend([
                reinstall(i),
                usr(i, num::SIGUSR1),
                delivered(i, num::SIGUSR1),
            ]);
        }
        steps.push(event(Event::Fork(sigtrace_common::ForkEvent {
            header: sigtrace_common::Header::new(sigtrace_common::kind::FORK, at(10)),
            parent: victim,
            child_tgid: 31,
            child_tid: 31,
        })));
        steps.extend(storm(11, 2));
        for ms in [20, 21] {
            steps.push(event(Event::Exit(exit(ms, victim, 0, &[]))));
        }
        let text = run(steps, options(true));
        let sigaction_line = "  sigaction victim[30] SIGUSR1: SIG_DFL (Term) → handler 0x5581fa6f8dc0 (flags 0x4000000)\n";
        assert_eq!(
            bodies(&text),
            [
                sigaction_line,
                GEN,
                DEL,
                "  ×12 more like the 3 lines above (4 + 4 + 4), over 4 ms\n",
                "  fork victim[30] → child 31\n",
                GEN,
                DEL,
                GEN,
                DEL,
                "  ✝ victim[30] exited 0\n",
                "  ✝ victim[30] exited 0\n",
            ]
        );
    }

    #[test]
    fn the_summary_and_json_count_every_event() {
        let summary = OutputOptions {
            summary: true,
            ..options(true)
        };
        let text = run(storm(0, 100), summary);
        assert!(text.contains("×198 more"), "{text}");
        assert!(text.contains("100 signals"), "{text}");
        let json = OutputOptions {
            format: Format::Json,
            ..options(true)
        };
        let text = run(storm(0, 100), json);
        assert_eq!(text.lines().count(), 200, "{text}");
        assert!(!text.contains('×'), "{text}");
    }
}
