//! The tracing daemon: turns the command line into kernel filters, attaches, and drives the
//! one-way flow ring buffer → decode → correlate → enrich → sink on a single-threaded tokio
//! runtime, until a signal, the launched command's end, or a closed output ends it.

use std::{
    io::{self, BufWriter, IsTerminal, Write},
    os::fd::{AsFd, FromRawFd, OwnedFd},
    time::Duration,
};

use sigtrace_common::{COMM_LEN, side};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};

use crate::{
    cli::TraceArgs,
    correlate::{Correlator, Report},
    enrich::{self, Clock},
    error::Error,
    events::{self, Event},
    launch::{self, Held},
    loader::{self, KernelFilter, LoadOptions, Probes},
    output::{Output, OutputOptions, TimeMode, Totals},
    signals::Signal,
};

/// Exit status when events were lost (and nothing else went wrong).
pub const EXIT_LOST: u8 = 3;
/// How often the reader polls the ring buffer besides wake-ups (the kernel side wakes us
/// only once a batch of records has accumulated): the longest a record waits in the ring.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

fn bad(msg: String) -> Error {
    Error::BadInput(msg)
}

/// Whether `pid` is a running process's id. /proc also lists threads by their ids; those
/// are not processes (the kernel filter keys on the thread group id).
fn check_process(pid: i32, flag: &str) -> Result<(), Error> {
    let status = (pid > 0)
        .then(|| {
            procfs::process::Process::new(pid)
                .and_then(|p| p.status())
                .ok()
        })
        .flatten();
    match status {
        None => Err(bad(format!(
            "{flag} {pid}: no such process (check the pid with `ps -p {pid}`)"
        ))),
        Some(status) if status.tgid != pid => Err(bad(format!(
            "{flag} {pid}: that is a thread of process {}; give {flag} {} or --tid {pid}",
            status.tgid, status.tgid
        ))),
        Some(_) => Ok(()),
    }
}

fn signal_bits(list: &[String]) -> Result<u64, Error> {
    let mut bits = 0u64;
    for text in list.iter().filter(|t| !t.trim().is_empty()) {
        let sig = Signal::parse(text.trim()).map_err(|e| bad(e.to_string()))?;
        bits |= 1u64 << (sig.0 - 1);
    }
    Ok(bits)
}

fn resolve_uid(text: &str) -> Result<u32, Error> {
    if let Ok(uid) = text.parse::<u32>() {
        return Ok(uid);
    }
    match nix::unistd::User::from_name(text) {
        Ok(Some(user)) => Ok(user.uid.as_raw()),
        _ => Err(bad(format!(
            "--uid {text}: no such user; give a user name or a numeric uid"
        ))),
    }
}

/// Command line → what the kernel side keeps. Checks that named processes exist.
pub fn build_filter(args: &TraceArgs) -> Result<KernelFilter, Error> {
    let mut filter = KernelFilter::all();
    let mut add_pid = |pid: i32, sides: u8, flag: &str| -> Result<(), Error> {
        check_process(pid, flag)?;
        *filter.pids.entry(pid as u32).or_default() |= sides;
        Ok(())
    };
    for &pid in &args.pids {
        add_pid(pid, side::EITHER, "--pid")?;
    }
    for &pid in &args.senders {
        add_pid(pid, side::SENDER, "--sender")?;
    }
    for &pid in &args.targets {
        add_pid(pid, side::TARGET, "--target")?;
    }
    for &tid in &args.tids {
        if tid <= 0 {
            return Err(bad(format!("--tid {tid}: thread ids are positive")));
        }
        filter.tids.insert(tid as u32, side::EITHER);
    }
    for &pgid in &args.pgrps {
        if pgid <= 0 {
            return Err(bad(format!(
                "--pgrp {pgid}: process group ids are positive"
            )));
        }
        filter.pgrps.insert(pgid as u32, side::EITHER);
    }
    for comm in &args.comms {
        let bytes = comm.as_bytes();
        if bytes.is_empty() {
            return Err(bad("--comm needs a process name".into()));
        }
        // The kernel keeps 15 bytes of the name; compare what it keeps.
        let mut key = [0u8; COMM_LEN];
        let len = bytes.len().min(COMM_LEN - 1);
        key[..len].copy_from_slice(&bytes[..len]);
        filter.comms.insert(key, side::EITHER);
    }
    if !args.signals.is_empty() {
        filter.signals = signal_bits(&args.signals)?;
    }
    filter.signals &= !signal_bits(&args.exclude_signals)?;
    if filter.signals == 0 {
        return Err(bad(
            "--signal/--exclude-signal leave no signal to trace".into()
        ));
    }
    filter.failed_only = args.failed;
    filter.kernel_only = args.kernel_only;
    filter.user_only = args.user_only;
    filter.uid = args.uid.as_deref().map(resolve_uid).transpose()?;
    let launching = !args.command.is_empty();
    if args.follow && filter.pids.is_empty() && !launching {
        return Err(bad(
            "--follow follows the processes given with --pid, --sender or --target; add one".into(),
        ));
    }
    filter.follow_forks = args.follow || launching;
    filter.sigaction = args.sigaction || launching;
    filter.pid_filter = launching;
    filter.all_exits = args.all_exits;
    Ok(filter)
}

fn output_options(args: &TraceArgs) -> OutputOptions {
    OutputOptions {
        format: args.format,
        time: if args.no_time {
            TimeMode::None
        } else if args.relative {
            TimeMode::Relative
        } else {
            TimeMode::Wall
        },
        summary: args.summary,
        summary_only: args.summary_only,
        // With --pid/--sender/--target every exit the kernel sends concerns a chosen or a
        // signalled process.
        all_exits: args.all_exits || !args.pids.is_empty() || !args.command.is_empty(),
    }
}

/// Where the output goes: stdout (flushed per line when someone reads it live) or a file.
fn open_writer(args: &TraceArgs) -> Result<(Box<dyn Write>, bool), Error> {
    match &args.output {
        Some(path) => {
            let file = crate::output::file::open_append(path).map_err(|e| bad(e.to_string()))?;
            Ok((Box::new(BufWriter::with_capacity(64 * 1024, file)), false))
        }
        None => {
            let stdout = io::stdout();
            // A terminal or a pipe is read live; a file or /dev/null is not.
            let live = stdout.is_terminal() || is_pipe(&stdout);
            Ok((Box::new(BufWriter::with_capacity(64 * 1024, stdout)), live))
        }
    }
}

fn is_pipe(fd: impl std::os::fd::AsFd) -> bool {
    nix::sys::stat::fstat(fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFIFO)
}

/// What the run ended with, to become the exit status.
enum End {
    Stopped,
    CommandEnded(u8),
    OutputClosed,
}

/// Registers an fd we own (a dup of the ring buffer's, or a pidfd) for readiness.
fn watch(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: `fd` is owned by the AsyncFd for its whole life, so it stays open and unchanged.
    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: plain syscall; on success it returns a new fd that we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Runs a trace; returns the process exit status.
pub fn run(args: &TraceArgs) -> Result<u8, Error> {
    let filter = build_filter(args)?;
    let options = output_options(args);
    let (writer, live) = open_writer(args)?;
    // Fork before any thread exists (the runtime is started below).
    let mut held = if args.command.is_empty() {
        None
    } else {
        Some(launch::spawn_held(&args.command)?)
    };
    let mut filter = filter;
    if let Some(h) = &held {
        filter.pids.insert(h.pid.as_raw() as u32, side::EITHER);
    }
    let mut probes = loader::load(
        &filter,
        &LoadOptions {
            ring_bytes: args.ring_size,
            measure_cost: args.cost,
        },
    )?;
    let clock = Clock::now();
    let mut output = Output::new(writer, options, clock, live);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the runtime", e))?;
    let result = runtime.block_on(trace_loop(&mut probes, &mut output, held.as_mut()));
    // Detach before reporting, so nothing stays attached whatever happens next.
    let lost = probes.lost();
    let costs = args.cost.then(|| probes.costs());
    drop(probes);
    let (end, events) = result?;
    let totals = Totals { events, lost };
    let finished = output.finish(totals);
    if !matches!(end, End::OutputClosed)
        && let Err(e) = finished
        && e.kind() != io::ErrorKind::BrokenPipe
    {
        return Err(Error::io("writing the output", e));
    }
    eprintln!("sigtrace: {events} events, {lost} lost");
    if let Some(costs) = costs {
        let listed: Vec<String> = costs.iter().map(ToString::to_string).collect();
        eprintln!("sigtrace: in-kernel cost: {}", listed.join("; "));
    }
    Ok(match end {
        End::CommandEnded(status) => status,
        // Whoever closed the pipe took what they wanted: a quiet 0.
        End::OutputClosed => 0,
        _ if lost > 0 => EXIT_LOST,
        _ => 0,
    })
}

async fn trace_loop(
    probes: &mut Probes,
    output: &mut Output<Box<dyn Write>>,
    mut held: Option<&mut Held>,
) -> Result<(End, u64), Error> {
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| Error::io("SIGINT handler", e))?;
    let mut sigterm =
        signal(SignalKind::terminate()).map_err(|e| Error::io("SIGTERM handler", e))?;
    let mut sighup = signal(SignalKind::hangup()).map_err(|e| Error::io("SIGHUP handler", e))?;
    let ring_fd = probes.events.as_fd().try_clone_to_owned();
    let ring = watch(ring_fd.map_err(|e| Error::io("ring buffer fd", e))?)
        .map_err(|e| Error::io("watching the ring buffer", e))?;
    let child_fd = match held.as_deref() {
        Some(h) => Some(
            watch(pidfd_open(h.pid.as_raw()).ok_or_else(|| {
                Error::Failed("cannot watch the command (pidfd_open failed)".into())
            })?)
            .map_err(|e| Error::io("watching the command", e))?,
        ),
        None => None,
    };
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pump = Pump {
        correlator: Correlator::new(),
        reports: Vec::with_capacity(256),
        events: 0,
        lost_seen: 0,
    };
    eprintln!(
        "sigtrace: ready (pid {}); stop with Ctrl-C",
        std::process::id()
    );
    if let Some(h) = held.as_deref_mut() {
        h.release()?;
    }
    let mut interrupts = 0;
    let end = loop {
        let step: Result<Option<End>, Error> = tokio::select! {
            guard = ring.readable() => {
                if let Ok(mut guard) = guard {
                    guard.clear_ready();
                }
                pump.drain(probes, output).map(|_| None)
            }
            _ = tick.tick() => {
                pump.drain(probes, output)?;
                pump.settle(output).map(|_| None)
            }
            _ = async { match &child_fd { Some(fd) => { let _ = fd.readable().await; } None => std::future::pending().await } } => {
                match held.as_deref().map(|h| h.try_wait()).transpose() {
                    Ok(Some(Some(status))) => Ok(Some(End::CommandEnded(launch::shell_status(status)))),
                    Ok(_) => Ok(None),
                    Err(e) => Err(e),
                }
            }
            _ = sigint.recv() => { interrupts += 1; Ok(stop_now(held.is_some(), interrupts)) }
            _ = sigterm.recv() => Ok(Some(End::Stopped)),
            _ = sighup.recv() => Ok(Some(End::Stopped)),
        };
        match step {
            Ok(Some(end)) => break end,
            Ok(None) => {}
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::BrokenPipe => {
                break End::OutputClosed;
            }
            Err(e) => return Err(e),
        }
    };
    if !matches!(end, End::OutputClosed) {
        // The command's last events (its own exit) may still be in flight.
        let last = pump.finish(probes, output);
        match last {
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::BrokenPipe => {
                return Ok((End::OutputClosed, pump.events));
            }
            other => other?,
        }
    }
    Ok((end, pump.events))
}

/// In launch mode the terminal's ^C also reaches the command: keep tracing to see what it
/// does with it, and stop only on a second ^C (or when it ends). SIGTERM and SIGHUP, which
/// only someone aiming at sigtrace sends, stop at once.
fn stop_now(launching: bool, interrupts: u32) -> Option<End> {
    (!launching || interrupts >= 2).then_some(End::Stopped)
}

struct Pump {
    correlator: Correlator,
    reports: Vec<Report>,
    events: u64,
    lost_seen: u64,
}

impl Pump {
    fn drain(
        &mut self,
        probes: &mut Probes,
        output: &mut Output<Box<dyn Write>>,
    ) -> Result<(), Error> {
        let mut exited = Vec::new();
        while let Some(item) = probes.events.next() {
            match events::decode(&item) {
                Ok(event) => {
                    if let Event::Exit(exit) = &event {
                        exited.push(exit.task.tgid);
                    }
                    self.events += 1;
                    self.correlator.push(event, &mut self.reports);
                }
                Err(e) => eprintln!("sigtrace: skipping a malformed record: {e}"),
            }
            drop(item);
            if self.reports.len() >= 128 {
                self.emit(output)?;
            }
        }
        self.emit(output)?;
        for tgid in exited {
            if let Err(e) = probes.forget_pid(tgid) {
                eprintln!("sigtrace: warning: {e} (pid {tgid} stays in the filter)");
            }
        }
        let lost = probes.lost();
        if lost > self.lost_seen {
            output
                .loss(lost - self.lost_seen, lost)
                .map_err(|e| Error::io("writing the output", e))?;
            self.lost_seen = lost;
        }
        Ok(())
    }

    fn settle(&mut self, output: &mut Output<Box<dyn Write>>) -> Result<(), Error> {
        self.correlator.settle(Clock::mono_now(), &mut self.reports);
        self.emit(output)?;
        output
            .flush()
            .map_err(|e| Error::io("writing the output", e))
    }

    fn finish(
        &mut self,
        probes: &mut Probes,
        output: &mut Output<Box<dyn Write>>,
    ) -> Result<(), Error> {
        self.drain(probes, output)?;
        self.correlator.flush(&mut self.reports);
        self.emit(output)
    }

    fn emit(&mut self, output: &mut Output<Box<dyn Write>>) -> Result<(), Error> {
        for mut report in self.reports.drain(..) {
            // The /proc reads are for the line only: none for a report nobody will see.
            if output.shows(&report) {
                enrich_report(&mut report);
            }
            output
                .report(&report)
                .map_err(|e| Error::io("writing the output", e))?;
        }
        Ok(())
    }
}

/// The /proc reads a few reports need; never done for generate/deliver records.
fn enrich_report(report: &mut Report) {
    match report {
        Report::Exit(x) if x.event.children_count > 0 => {
            let n = (x.event.children_count as usize).min(x.event.children.len());
            x.orphans = enrich::orphans(x.event.task.tgid, &x.event.children[..n]);
        }
        Report::Fanout(f) => {
            if let crate::correlate::FanoutSource::Tty { tty, writers } = &mut f.source {
                *writers = enrich::pty_master_holders(&enrich::tty_display(tty).kernel_name());
            }
        }
        _ => {}
    }
}
