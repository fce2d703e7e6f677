//! One line per event for people: who sent which signal to whom, what the recipient had
//! installed for it, what happened next; fan-outs as one block with a line per member.

use std::{
    io::{self, Write},
    ops::Range,
};

use sigtrace_common::{TaskIds, via};

use super::{Stamp, TimeMode};
use crate::{
    correlate::{
        CgroupName, DeliverReport, ExitReport, Fanout, FanoutSource, GenerateReport, Outcome,
        Report,
    },
    enrich::tty_display,
    escape,
    handler_runs::{HandlerEnd, HandlerReport},
    signals::{
        Disposition, SigSet, Signal, code_name,
        interrupted::{Fate, Interrupted, interrupted},
        result_name,
        sender::interrupt_sender,
    },
    stacks::Side,
};

/// What the text shows beyond the defaults.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextOptions {
    /// The recipient's caught, ignored and blocked sets on each generation line (--masks).
    pub masks: bool,
}

/// What was written for one report, besides its bytes.
pub struct Written {
    /// The report's time (monotonic ns).
    pub ts_ns: u64,
    /// The bytes every identical event writes alike: all but the timestamp in front and,
    /// within them, `skip` (a delivery's latency). What folding compares: [`Written::key`].
    pub stable: Range<usize>,
    pub skip: Range<usize>,
}

impl Written {
    /// The bytes of `line` (what was written) that identical events share, in two parts
    /// (before and after `skip`): compared in place, with no copy per line.
    pub fn key<'l>(&self, line: &'l [u8]) -> Key<'l> {
        if self.skip.is_empty() {
            return Key(&line[self.stable.clone()], &[]);
        }
        Key(
            &line[self.stable.start..self.skip.start],
            &line[self.skip.end..self.stable.end],
        )
    }
}

/// A line's [`Written::key`]: its two parts, as one byte string.
#[derive(Clone, Copy)]
pub struct Key<'l>(&'l [u8], &'l [u8]);

impl Key<'_> {
    /// Whether `bytes` (a key kept as one string) is this key.
    pub fn is(self, bytes: &[u8]) -> bool {
        bytes.len() == self.0.len() + self.1.len()
            && bytes.starts_with(self.0)
            && bytes.ends_with(self.1)
    }

    /// Appends the key to `out`.
    pub fn extend(self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.0);
        out.extend_from_slice(self.1);
    }
}

pub(super) fn write_time(w: &mut Vec<u8>, ts: u64, stamp: &Stamp) -> io::Result<()> {
    match stamp.mode {
        TimeMode::Wall => {
            let (h, m, s, us) = stamp.clock.local_time_of_day(ts, stamp.utc_offset_s);
            write!(w, "{h:02}:{m:02}:{s:02}.{us:06} ")
        }
        TimeMode::Relative => {
            let rel = ts.saturating_sub(stamp.clock.start_mono_ns);
            write!(
                w,
                "{:>4}.{:06} ",
                rel / 1_000_000_000,
                rel % 1_000_000_000 / 1000
            )
        }
        TimeMode::None => Ok(()),
    }
}

/// `comm[pid]`, or `comm[pid/tid]` for a thread other than the main one.
struct Task<'a>(&'a TaskIds);

impl std::fmt::Display for Task<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.0;
        let comm = escape::kernel_name(&t.comm);
        if t.tid == t.tgid || t.tid == 0 {
            write!(f, "{comm}[{}]", t.tgid)
        } else {
            write!(f, "{comm}[{}/{}]", t.tgid, t.tid)
        }
    }
}

/// A traced disposition as people read it: `handler 0x…`, `SIG_IGN`, `SIG_DFL (Term)`.
fn action(sig: i32, handler: u64) -> impl std::fmt::Display {
    Disposition::from_sa_handler(handler).sigaction(Signal(sig))
}

/// si_code by name, or its number: written straight out, no String per event.
fn write_code(w: &mut Vec<u8>, sig: i32, code: i32) -> io::Result<()> {
    match code_name(sig, code) {
        Some(name) => w.write_all(name.as_bytes()),
        None => write!(w, "code {code}"),
    }
}

/// " via kill(-4120)", " via tgkill", or nothing for kernel-originated signals.
fn write_via(w: &mut Vec<u8>, how: u32, arg: i64) -> io::Result<()> {
    let Some(name) = via::name(how) else {
        return Ok(());
    };
    write!(w, " via {name}")?;
    if how == via::KILL && arg <= 0 {
        write!(w, "({arg})")?;
    }
    Ok(())
}

fn write_generate(w: &mut Vec<u8>, g: &GenerateReport, options: TextOptions) -> io::Result<()> {
    let e = &g.event;
    let r = &e.recipient;
    write!(w, "{:<10} ", Signal(e.sig).name())?;
    match interrupt_sender(e) {
        Some(kernel) => w.write_all(kernel.as_bytes())?,
        None => write!(w, "{}", Task(&e.sender))?,
    }
    write!(w, " → {}  ", Task(&e.target))?;
    write_code(w, e.sig, e.code)?;
    write_via(w, e.via, e.via_arg)?;
    write!(
        w,
        "  {}  {}",
        result_name(e.result),
        action(e.sig, r.handler)
    )?;
    if g.outcome == Outcome::Blocked {
        w.write_all("  blocked → pending".as_bytes())?;
    }
    write!(w, "  pgrp {} sid {}", r.pgid, r.sid)?;
    if r.ns_level > 0 && r.ns_tgid != e.target.tgid {
        write!(w, " (ns pid {} pgrp {})", r.ns_tgid, r.ns_pgid)?;
    }
    if r.tty[0] != 0 {
        write!(w, " tty {}", tty_display(&r.tty).escaped())?;
    }
    write_container(w, "container", g.target_cgroup.as_ref())?;
    write_container(w, "from container", g.sender_cgroup.as_ref())?;
    if options.masks {
        write_sets(w, r.caught, r.ignored, r.blocked)?;
    }
    if let Some(id) = g.fanout {
        write!(w, "  [fan-out #{id}]")?;
    }
    writeln!(w)?;
    if let Some(stack) = &g.sender_stack {
        write_stack_side(w, "user  ", &stack.user)?;
        write_stack_side(w, "kernel", &stack.kernel)?;
    }
    Ok(())
}

/// `    user   kill ← deliver_the_news ← main ← …`: the innermost frame first, by function
/// (an address where none is known).
fn write_stack_side(w: &mut Vec<u8>, label: &str, side: &Side) -> io::Result<()> {
    write!(w, "    {label} ")?;
    match side {
        Side::Missing(why) => write!(w, "({why})")?,
        Side::Frames(frames) if frames.is_empty() => w.write_all(b"(empty)")?,
        Side::Frames(frames) => {
            for (i, frame) in frames.iter().enumerate() {
                if i > 0 {
                    w.write_all(" ← ".as_bytes())?;
                }
                match &frame.symbol {
                    Some(symbol) => write!(w, "{}", escape::text(symbol))?,
                    None => write!(w, "{:#x}", frame.address)?,
                }
            }
        }
    }
    writeln!(w)
}

/// `  container docker 4e1f0a2b3c4d`: a container's runtime and short id, when the cgroup is
/// one's (the JSON has the whole cgroup).
fn write_container(w: &mut Vec<u8>, what: &str, cgroup: Option<&CgroupName>) -> io::Result<()> {
    let Some(container) = cgroup
        .and_then(|c| c.resolved.as_deref())
        .and_then(|info| info.container.as_ref())
    else {
        return Ok(());
    };
    let short = container.id.get(..12).unwrap_or(&container.id);
    write!(
        w,
        "  {what} {} {}",
        container.runtime.as_str(),
        escape::text(short)
    )
}

/// `  caught USR1,TERM  ignored USR2  blocked -`: signal names without their SIG prefix, as
/// kill -l and the shells' trap print them; `-` for an empty set.
fn write_sets(w: &mut Vec<u8>, caught: u64, ignored: u64, blocked: u64) -> io::Result<()> {
    for (label, set) in [
        ("caught", caught),
        ("ignored", ignored),
        ("blocked", blocked),
    ] {
        write!(w, "  {label} ")?;
        let set = SigSet(set);
        if set.is_empty() {
            w.write_all(b"-")?;
        }
        for (i, signal) in set.iter().enumerate() {
            if i > 0 {
                w.write_all(b",")?;
            }
            let name = signal.name();
            // SIG32/SIG33 keep theirs: a bare number would read as a count.
            let short = match name.strip_prefix("SIG") {
                Some(rest) if !rest.starts_with(|c: char| c.is_ascii_digit()) => rest,
                _ => &name,
            };
            w.write_all(short.as_bytes())?;
        }
    }
    Ok(())
}

/// Returns where the latency is: the delivery's bytes around it are the same for every
/// identical delivery.
fn write_deliver(w: &mut Vec<u8>, d: &DeliverReport) -> io::Result<Range<usize>> {
    let e = &d.event;
    write!(w, "  ↳ {:<8} {}", Signal(e.sig).name(), Task(&e.task))?;
    if let Some(cause) = d.cause {
        write!(w, " (dying of {})", Signal(cause).name())?;
    }
    write!(w, "  {} → {}", action(e.sig, e.handler), d.outcome.as_str())?;
    let latency_at = w.len();
    if let Some((_, latency)) = d.generation {
        write!(w, " ({})", Duration(latency))?;
    }
    let latency = latency_at..w.len();
    if let Some(call) = interrupted(e) {
        write_interrupted(w, &call)?;
    }
    writeln!(w)?;
    Ok(latency)
}

/// `  ↯ EINTR read`: what the process sees of the system call the signal interrupted.
fn write_interrupted(w: &mut Vec<u8>, call: &Interrupted) -> io::Result<()> {
    let fate = match call.fate {
        // Its death is the exit line's.
        Fate::NeverReturns => return Ok(()),
        Fate::Eintr => "EINTR",
        Fate::Restarted => "restarted",
        Fate::RestartSyscall => "restart_syscall",
    };
    write!(w, "  ↯ {fate} ")?;
    match call.name {
        Some(name) => w.write_all(name.as_bytes()),
        None => write!(w, "syscall {}", call.nr),
    }
}

fn write_exit(w: &mut Vec<u8>, x: &ExitReport) -> io::Result<()> {
    write!(w, "  ✝ {} {}", Task(&x.event.task), x.status)?;
    if !x.pending.is_empty() {
        write!(w, " with {} signal(s) still pending", x.pending.len())?;
    }
    if x.event.children_count > 0 {
        write!(w, "; left {} child(ren):", x.event.children_count)?;
        for o in &x.orphans {
            match o.new_parent {
                Some(parent) => write!(
                    w,
                    " {} {} (now child of {parent})",
                    o.pid,
                    escape::text(&o.comm)
                )?,
                None => write!(w, " {} (gone)", o.pid)?,
            }
        }
    }
    writeln!(w)
}

/// Compact human durations: 850 ns, 45 µs, 12 ms, 3.2 s.
pub struct Duration(pub u64);

impl std::fmt::Display for Duration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ns = self.0;
        if ns < 1_000 {
            write!(f, "{ns} ns")
        } else if ns < 1_000_000 {
            write!(f, "{} µs", ns / 1_000)
        } else if ns < 1_000_000_000 {
            write!(f, "{} ms", ns / 1_000_000)
        } else {
            write!(f, "{:.1} s", ns as f64 / 1e9)
        }
    }
}

fn control_char(sig: i32) -> &'static str {
    use crate::signals::num;
    match sig {
        num::SIGINT => "^C",
        num::SIGQUIT => "^\\",
        num::SIGTSTP => "^Z",
        num::SIGWINCH => "resize",
        num::SIGHUP => "hang-up",
        _ => "",
    }
}

fn write_fanout(w: &mut Vec<u8>, f: &Fanout, options: TextOptions) -> io::Result<()> {
    write!(w, "{:<10} ", Signal(f.sig).name())?;
    match &f.source {
        FanoutSource::Tty { tty, writers } => {
            write!(w, "{} {}", tty_display(tty).escaped(), control_char(f.sig))?;
            if !writers.is_empty() {
                w.write_all(b" (pty master held by ")?;
                for (i, (pid, comm)) in writers.iter().enumerate() {
                    let sep = if i > 0 { ", " } else { "" };
                    write!(w, "{sep}{}[{pid}]", escape::text(comm))?;
                }
                w.write_all(b")")?;
            }
        }
        FanoutSource::Kill {
            tgid,
            comm,
            pid_arg,
            ..
        } => write!(w, "{}[{tgid}] kill({pid_arg})", escape::kernel_name(comm))?,
    }
    writeln!(
        w,
        " → pgrp {} ({} member{})  [fan-out #{}]",
        f.pgid,
        f.members.len(),
        if f.members.len() == 1 { "" } else { "s" },
        f.id
    )?;
    let comm_width = f
        .members
        .iter()
        .map(|m| escape::kernel_name(&m.comm).width())
        .max()
        .unwrap_or(0);
    for (i, m) in f.members.iter().enumerate() {
        let branch = if i + 1 == f.members.len() {
            "└─"
        } else {
            "├─"
        };
        let disposition = action(f.sig, m.handler).to_string();
        write!(
            w,
            "    {branch} {:<7} {:<comm_width$}  {:<24} → {}",
            m.tgid,
            escape::kernel_name(&m.comm),
            disposition,
            m.outcome.as_str()
        )?;
        if let Some((status, after)) = m.exit {
            write!(w, ", {status} after {}", Duration(after))?;
        }
        if options.masks {
            write_sets(w, m.caught, m.ignored, m.blocked)?;
        }
        writeln!(w)?;
    }
    Ok(())
}

/// One report as text, the way it looks without options (what the fuzzer renders).
pub fn write_report(w: &mut Vec<u8>, report: &Report, stamp: &Stamp) -> io::Result<()> {
    write_report_as(w, report, stamp, TextOptions::default()).map(|_| ())
}

/// One report as text (a line, or a block of lines for a fan-out), appended to `w`.
pub fn write_report_as(
    w: &mut Vec<u8>,
    report: &Report,
    stamp: &Stamp,
    options: TextOptions,
) -> io::Result<Written> {
    let start = w.len();
    let ts_ns = report_ts(report);
    write_time(w, ts_ns, stamp)?;
    let body = w.len();
    let mut skip = 0..0;
    match report {
        Report::Generate(g) => write_generate(w, g, options)?,
        Report::Deliver(d) => {
            let latency = write_deliver(w, d)?;
            skip = latency.start - start..latency.end - start;
        }
        Report::Exit(x) => write_exit(w, x)?,
        Report::Fork(f) => writeln!(w, "  fork {} → child {}", Task(&f.parent), f.child_tgid)?,
        Report::Sigaction(s) if s.ret != 0 => writeln!(
            w,
            "  sigaction {} {}: failed (error {}), still {}",
            Task(&s.task),
            Signal(s.sig).name(),
            // -errno; unsigned_abs, as -i32::MIN overflows (a corrupt record).
            s.ret.unsigned_abs(),
            action(s.sig, s.new_handler)
        )?,
        Report::Sigaction(s) => writeln!(
            w,
            "  sigaction {} {}: {} → {} (flags {:#x})",
            Task(&s.task),
            Signal(s.sig).name(),
            action(s.sig, s.old_handler),
            action(s.sig, s.new_handler),
            s.new_flags
        )?,
        Report::Fanout(f) => write_fanout(w, f, options)?,
        Report::Handler(h) => {
            let duration = write_handler_end(w, h)?;
            skip = duration.start - start..duration.end - start;
        }
    }
    Ok(Written {
        ts_ns,
        stable: body - start..w.len() - start,
        skip,
    })
}

/// `  ⤶ SIGUSR1  perl[42]  handler returned after 100 ms`. Returns where the duration is
/// (it differs between identical runs).
fn write_handler_end(w: &mut Vec<u8>, h: &HandlerReport) -> io::Result<Range<usize>> {
    write!(
        w,
        "  ⤶ {:<8} {}  handler ",
        Signal(h.sig).name(),
        Task(&h.task)
    )?;
    let ran = Duration(h.end_ns.saturating_sub(h.delivered_ns));
    let what = match (h.end, h.duration_ns) {
        (HandlerEnd::Returned, _) => "returned after ",
        (HandlerEnd::Left, _) => "left without returning (longjmp or exception), within ",
        (HandlerEnd::Exited, _) => "never returned: the process exited in it after ",
    };
    w.write_all(what.as_bytes())?;
    let at = w.len();
    write!(w, "{}", Duration(h.duration_ns.unwrap_or(ran.0)))?;
    let duration = at..w.len();
    writeln!(w)?;
    Ok(duration)
}

fn report_ts(report: &Report) -> u64 {
    match report {
        Report::Generate(g) => g.event.header.ts_ns,
        Report::Deliver(d) => d.event.header.ts_ns,
        Report::Exit(x) => x.event.header.ts_ns,
        Report::Fork(f) => f.header.ts_ns,
        Report::Sigaction(s) => s.header.ts_ns,
        Report::Fanout(f) => f.ts_ns,
        Report::Handler(h) => h.end_ns,
    }
}

#[cfg(test)]
mod tests {
    use sigtrace_common::{Header, SigactionEvent, kind};

    use super::*;
    use crate::enrich::Clock;

    /// Found by fuzzing: a refused sigaction printed `-ret`, which overflows (a panic in
    /// debug builds) for a record whose ret is i32::MIN.
    #[test]
    fn refused_sigaction_prints_the_errno_of_any_ret() {
        let stamp = Stamp {
            clock: Clock::fixed(0, 0),
            mode: TimeMode::None,
            utc_offset_s: 0,
        };
        for (ret, errno) in [(-22, "error 22"), (i32::MIN, "error 2147483648")] {
            let mut event = SigactionEvent {
                header: Header::new(kind::SIGACTION, 1),
                sig: 9,
                ret,
                ..SigactionEvent::default()
            };
            event.task.tgid = 42;
            let mut line = Vec::new();
            let written = write_report(&mut line, &Report::Sigaction(event), &stamp);
            assert!(written.is_ok());
            let line = String::from_utf8_lossy(&line);
            assert!(line.contains(errno), "{line}");
        }
    }

    /// Real-time signals by their kill -l names; 32 and 33 (glibc's own) keep their SIG.
    #[test]
    fn sets_name_real_time_signals_too() {
        let mut line = Vec::new();
        let bits = |sigs: &[u32]| sigs.iter().map(|s| 1u64 << (s - 1)).sum();
        let written = write_sets(&mut line, bits(&[32, 33, 34, 37, 63, 64]), 0, bits(&[1]));
        assert!(written.is_ok());
        assert_eq!(
            String::from_utf8_lossy(&line),
            "  caught SIG32,SIG33,RTMIN,RTMIN+3,RTMAX-1,RTMAX  ignored -  blocked HUP"
        );
    }
}
