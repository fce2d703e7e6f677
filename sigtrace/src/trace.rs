//! The tracing daemon: turns the command line into kernel filters, attaches, and drives the
//! one-way flow ring buffer → decode → correlate → enrich → sink on a single-threaded tokio
//! runtime, until a signal, the launched command's end, or a closed output ends it.

use std::{
    io::{self, BufWriter, IsTerminal, Write},
    os::{
        fd::{AsFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
    time::Duration,
};

use sigtrace_common::{COMM_LEN, side};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};

use crate::{
    cgroup::{CgroupError, CgroupResolver, Hierarchy},
    cli::TraceArgs,
    correlate::{CgroupName, Correlator, Report},
    enrich::{self, Clock},
    error::Error,
    escape,
    events::{self, Event},
    kernel_log,
    launch::{self, Held},
    loader::{self, KernelFilter, LoadOptions, ProbeKind, Probes, ProgramCost},
    metrics::{Metrics, MetricsOptions, http, ring::RingPositions},
    output::{
        Output, OutputOptions, Reopen, TimeMode, Totals,
        rotate::{LogFile, Rotation},
    },
    signals::Signal,
    stacks::Stacks,
};

/// Exit status when events were lost (and nothing else went wrong).
pub(crate) const EXIT_LOST: u8 = 3;
/// How often the reader polls the ring buffer besides wake-ups (the kernel side wakes us
/// only once a batch of records has accumulated): the longest a record waits in the ring.
const POLL_INTERVAL: Duration = Duration::from_millis(25);
/// Records one step of the loop takes from the ring at most: under a storm the ring refills
/// as fast as it is read, and the loop must get back to its signals and its clock.
const DRAIN_BATCH: usize = 1024;

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

/// --cgroup PATH → the (level, id) the kernel side compares a task's ancestor with.
fn cgroup_filter(path: &Path) -> Result<(u32, u64), Error> {
    let failed = |e: CgroupError| {
        let text = format!(
            "--cgroup {}: {e}",
            escape::bytes(path.as_os_str().as_bytes())
        );
        if e.is_bad_input() {
            bad(text)
        } else {
            Error::Failed(text)
        }
    };
    let hierarchy = Hierarchy::find().map_err(failed)?;
    if hierarchy.namespace_relative() {
        // Its depth in the kernel's hierarchy, which the kernel side compares, is unknown.
        return Err(bad(format!(
            "--cgroup {}: sigtrace runs in a cgroup namespace, where a cgroup's depth in the whole hierarchy is unknown; run it from the host's cgroup namespace",
            escape::bytes(path.as_os_str().as_bytes())
        )));
    }
    let found = hierarchy.resolve_filter(path).map_err(failed)?;
    Ok((found.level, found.id))
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
    filter.handler_time = args.handler_time;
    filter.stacks = args.stack;
    if let Some(path) = &args.cgroup {
        filter.cgroup = Some(cgroup_filter(path)?);
    }
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
        quiet: args.quiet,
        // With --pid/--sender/--target every exit the kernel sends concerns a chosen or a
        // signalled process.
        all_exits: args.all_exits
            || !args.pids.is_empty()
            || !args.senders.is_empty()
            || !args.targets.is_empty()
            || !args.command.is_empty(),
        fold: !args.no_fold,
        masks: args.masks,
    }
}

/// Where the output goes: stdout (flushed per line when someone reads it live) or a file.
/// Either is written through [`stopping::Watched`], so that a stop request can end a write that
/// blocks.
fn open_writer(args: &TraceArgs) -> Result<(Sink, bool), Error> {
    match &args.output {
        Some(path) => {
            let rotation = args.rotate_size.map(|size| Rotation {
                size,
                keep: args.rotate_keep,
            });
            let file =
                LogFile::open(path, rotation, stopping::Watched).map_err(|e| bad(e.to_string()))?;
            Ok((Sink::File(file), false))
        }
        None => {
            let stdout = io::stdout();
            // A terminal or a pipe is read live; a file or /dev/null is not.
            let live = stdout.is_terminal() || is_pipe(&stdout);
            // A duplicate of fd 1 rather than `Stdout`, whose inner line buffer retries an
            // interrupted write on its own (and which would hide EBADF, a stdout opened
            // read-only, by discarding everything).
            let fd = stdout
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| Error::io("standard output", e))?;
            let watched = stopping::Watched(std::fs::File::from(fd));
            Ok((
                Sink::Stdout(BufWriter::with_capacity(64 * 1024, watched)),
                live,
            ))
        }
    }
}

/// The output's writer: standard output, or `-o FILE`, which SIGHUP reopens and
/// `--rotate-size` rotates.
enum Sink {
    Stdout(BufWriter<stopping::Watched<std::fs::File>>),
    File(LogFile<stopping::Watched<std::fs::File>>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Stdout(w) => w.write(buf),
            Sink::File(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stdout(w) => w.write_all(buf),
            Sink::File(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stdout(w) => w.flush(),
            Sink::File(w) => w.flush(),
        }
    }
}

impl Reopen for Sink {
    fn reopen(&mut self) -> io::Result<()> {
        match self {
            // --reopen-on-hup without -o: nothing to reopen.
            Sink::Stdout(w) => w.flush(),
            Sink::File(w) => w.reopen(),
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
    /// Asked to stop while the output took nothing (see [`stopping`]): what was not yet
    /// written is given up.
    OutputBlocked,
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
    // SAFETY: a new fd, ours alone.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Runs a trace; returns the process exit status.
pub fn run(args: &TraceArgs) -> Result<u8, Error> {
    let filter = build_filter(args)?;
    let options = output_options(args);
    let (writer, live) = open_writer(args)?;
    // Bound before anything is attached: a taken port is bad input, with nothing to undo.
    let metrics_listener = args.metrics.map(http::bind).transpose()?;
    // Explicit, not implied by -o: a hand-run trace must still end with its terminal.
    let hup_reopens = args.reopen_on_hup;
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
    let verbosity = kernel_log::level(args.verbose);
    // The loader's own notes (which probes, and why not the others) at -v.
    kernel_log::init_userspace(verbosity);
    let mut probes = loader::load(
        &filter,
        &LoadOptions {
            ring_bytes: args.ring_size,
            measure_cost: args.cost,
            kernel_log: verbosity,
            probe_mode: args.probe_mode,
        },
    )?;
    let kind = probes.kind;
    let clock = Clock::now();
    let mut output = Output::new(writer, options, clock, live);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the runtime", e))?;
    let mut correlator = Correlator::new();
    if args.handler_time {
        correlator = correlator.with_handler_time();
    }
    let (metrics, registry) = match metrics_listener {
        Some(listener) => {
            let (metrics, registry) = Metrics::new(
                &MetricsOptions {
                    labels: args.metrics_labels.clone(),
                    label_limit: args.metrics_label_limit,
                },
                args.ring_size,
            );
            let ring = RingPositions::map(probes.events.as_fd())
                .map_err(|e| {
                    eprintln!("sigtrace: warning: the ring buffer's fill is not measured: {e}")
                })
                .ok();
            (
                Some(PumpMetrics { metrics, ring }),
                Some((listener, std::sync::Arc::new(registry))),
            )
        }
        None => (None, None),
    };
    let pump = Pump {
        correlator,
        metrics,
        cgroups: cgroup_resolver(args),
        stacks: probes.stacks.take().map(Stacks::new),
        reports: Vec::with_capacity(256),
        events: 0,
        lost_seen: 0,
    };
    let result = runtime.block_on(async {
        if let Some((listener, registry)) = registry {
            tokio::spawn(http::serve(listener, registry));
        }
        trace_loop(&mut probes, &mut output, held.as_mut(), pump, hup_reopens).await
    });
    // Detach before reporting, so nothing stays attached whatever happens next.
    let lost = probes.lost();
    let drops = probes.drops();
    let costs = args.cost.then(|| probes.costs());
    drop(probes);
    let (mut end, events) = result?;
    let totals = Totals { events, lost };
    let finished = output.finish(totals);
    if stopping::gave_up() {
        end = End::OutputBlocked;
    }
    if !matches!(end, End::OutputClosed | End::OutputBlocked)
        && let Err(e) = finished
        && e.kind() != io::ErrorKind::BrokenPipe
    {
        return Err(Error::io("writing the output", e));
    }
    if matches!(end, End::OutputBlocked) {
        // Its last line may be cut short; what was still buffered or in the ring is missing.
        eprintln!(
            "sigtrace: gave up on the output: it took nothing after the stop request (is anyone reading it?); the events not yet written are missing from it"
        );
    }
    eprintln!("sigtrace: {events} events, {lost} lost{}", drops.suffix());
    if let Some(costs) = costs {
        eprintln!("{}", cost_line(kind, &costs));
    }
    Ok(match end {
        End::CommandEnded(status) => status,
        // Whoever closed the pipe took what they wanted: a quiet 0.
        End::OutputClosed => 0,
        // The events that could not be written are lost to whoever reads the output.
        End::OutputBlocked => EXIT_LOST,
        _ if lost > 0 => EXIT_LOST,
        _ => 0,
    })
}

async fn trace_loop(
    probes: &mut Probes,
    output: &mut Output<Sink>,
    mut held: Option<&mut Held>,
    mut pump: Pump,
    hup_reopens: bool,
) -> Result<(End, u64), Error> {
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| Error::io("SIGINT handler", e))?;
    let mut sigterm =
        signal(SignalKind::terminate()).map_err(|e| Error::io("SIGTERM handler", e))?;
    let mut sighup = signal(SignalKind::hangup()).map_err(|e| Error::io("SIGHUP handler", e))?;
    let mut sigusr1 =
        signal(SignalKind::user_defined1()).map_err(|e| Error::io("SIGUSR1 handler", e))?;
    stopping::install(held.is_some(), !hup_reopens)
        .map_err(|e| Error::io("the stop signal handlers", e))?;
    let ring_fd = probes.events.as_fd().try_clone_to_owned();
    let ring = watch(ring_fd.map_err(|e| Error::io("ring buffer fd", e))?)
        .map_err(|e| Error::io("watching the ring buffer", e))?;
    let kernel_log_fd = match &probes.kernel_log {
        Some(log) => Some(
            log.as_fd()
                .try_clone_to_owned()
                .and_then(watch)
                .map_err(|e| Error::io("watching the programs' log", e))?,
        ),
        None => None,
    };
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
    eprintln!("{}", ready_line(std::process::id(), probes.kind));
    if let Some(h) = held.as_deref_mut() {
        h.release()?;
    }
    let mut interrupts = 0;
    let end = loop {
        // Let the runtime poll its driver (one epoll_wait without waiting) before each
        // step. Under a storm a step is always ready (the tick is due again by the time a
        // drain ends), and without this the driver, which turns a received signal into a
        // ready `recv()`, ran only once the coop budget ran out: after 128 ticks, tens of
        // seconds in a debug build, so Ctrl-C was ignored that long.
        tokio::task::yield_now().await;
        // Biased, in this order: a signal is acted on at the next step, however busy the
        // ring (random choice among ready arms left it waiting behind a few batches); the
        // tick before the ring, so that a ring that is always ready cannot starve `settle`.
        let step: Result<Option<End>, Error> = tokio::select! {
            biased;
            _ = sigint.recv() => {
                // tokio merges signals the loop has not seen yet; its handler counts each.
                interrupts = (interrupts + 1).max(stopping::interrupts());
                Ok(stop_now(held.is_some(), interrupts))
            }
            _ = sigterm.recv() => Ok(Some(End::Stopped)),
            _ = sighup.recv() => {
                if hup_reopens {
                    // logrotate moved the file: what came before the HUP is in the moved
                    // file, what comes after in a new one. A failure ends the trace (status 1)
                    // rather than writing on into a file that may be gone.
                    output
                        .reopen()
                        .map(|_| None)
                        .map_err(|e| Error::io("reopening the output on SIGHUP", e))
                } else {
                    Ok(Some(End::Stopped))
                }
            }
            _ = sigusr1.recv() => {
                pump.print_stats(probes, output);
                Ok(None)
            }
            _ = async { match &child_fd { Some(fd) => { let _ = fd.readable().await; } None => std::future::pending().await } } => {
                match held.as_deref().map(|h| h.try_wait()).transpose() {
                    Ok(Some(Some(status))) => Ok(Some(End::CommandEnded(launch::shell_status(status)))),
                    Ok(_) => Ok(None),
                    Err(e) => Err(e),
                }
            }
            guard = async { match &kernel_log_fd { Some(fd) => fd.readable().await, None => std::future::pending().await } } => {
                if let Ok(mut guard) = guard {
                    guard.clear_ready();
                }
                flush_kernel_log(probes);
                Ok(None)
            }
            _ = tick.tick() => {
                // Errors go to `step`, as the other arms': a closed or given-up output
                // ends the run below, not with `?` here.
                pump.drain(probes, output, None)
                    .and_then(|_| pump.settle(probes, output))
                    .map(|_| None)
            }
            guard = ring.readable() => {
                if let Ok(mut guard) = guard {
                    guard.clear_ready();
                }
                pump.drain(probes, output, None).map(|_| None)
            }
        };
        match step {
            Ok(Some(end)) => break end,
            Ok(None) => {}
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::BrokenPipe => {
                break End::OutputClosed;
            }
            Err(_) if stopping::gave_up() => break End::OutputBlocked,
            Err(e) => return Err(e),
        }
    };
    flush_kernel_log(probes);
    if !matches!(end, End::OutputClosed | End::OutputBlocked) {
        // The command's last events (its own exit) may still be in flight.
        let last = pump.finish(probes, output);
        match last {
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::BrokenPipe => {
                return Ok((End::OutputClosed, pump.events));
            }
            Err(_) if stopping::gave_up() => return Ok((End::OutputBlocked, pump.events)),
            other => other?,
        }
    }
    Ok((end, pump.events))
}

fn flush_kernel_log(probes: &mut Probes) {
    if let Some(log) = probes.kernel_log.as_mut() {
        log.flush();
    }
}

/// Tells people and scripts that tracing has begun (tests and benchmarks wait for
/// "sigtrace: ready"), and with which probes.
fn ready_line(pid: u32, kind: ProbeKind) -> String {
    format!("sigtrace: ready (pid {pid}, {kind} probes); stop with Ctrl-C")
}

/// --cost's line: the probes first, as an entry of its own, then "name N runs, M ns/run" per
/// program (the entries parsers pick by program name).
fn cost_line(kind: ProbeKind, costs: &[ProgramCost]) -> String {
    let mut line = format!("sigtrace: in-kernel cost: {kind} probes");
    for cost in costs {
        line.push_str("; ");
        line.push_str(&cost.to_string());
    }
    line
}

/// In launch mode the terminal's ^C also reaches the command: keep tracing to see what it
/// does with it, and stop only on a second ^C (or when it ends). SIGTERM and SIGHUP (but
/// with `-o` SIGHUP reopens the file), which only someone aiming at sigtrace sends, stop at
/// once.
fn stop_now(launching: bool, interrupts: u32) -> Option<End> {
    (!launching || interrupts >= 2).then_some(End::Stopped)
}

struct Pump {
    correlator: Correlator,
    /// --metrics: the counters, and the ring's positions for its fill.
    metrics: Option<PumpMetrics>,
    /// Names the cgroup ids of the records; None without a cgroup v2 mount.
    cgroups: Option<CgroupResolver>,
    /// Symbolizes the senders' stacks (--stack).
    stacks: Option<Stacks>,
    reports: Vec<Report>,
    events: u64,
    lost_seen: u64,
}

struct PumpMetrics {
    metrics: Metrics,
    ring: Option<RingPositions>,
}

impl Pump {
    /// Takes up to [`DRAIN_BATCH`] records from the ring; with `until` (monotonic ns), none
    /// after the first one written later than that. Returns whether it stopped for the
    /// batch's size (more may be waiting).
    fn drain(
        &mut self,
        probes: &mut Probes,
        output: &mut Output<Sink>,
        until: Option<u64>,
    ) -> Result<bool, Error> {
        if let Some(PumpMetrics {
            metrics,
            ring: Some(ring),
        }) = &self.metrics
        {
            metrics.set_ring_used(ring.used());
        }
        let mut exited = Vec::new();
        let mut taken = 0;
        let mut more = false;
        while let Some(item) = probes.events.next() {
            taken += 1;
            let mut past = false;
            match events::decode(&item) {
                Ok(event) => {
                    past = until.is_some_and(|until| event.ts_ns() > until);
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
            if past {
                break;
            }
            if taken == DRAIN_BATCH {
                more = true;
                break;
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
        Ok(more)
    }

    /// SIGUSR1 (like dd's): one line on stderr with the events so far, the kernel's loss
    /// count, the records it dropped by reason (only when some were) and the size of every
    /// internal table — what a long run watches for growth.
    fn print_stats(&self, probes: &Probes, output: &Output<Sink>) {
        let mut line = format!(
            "sigtrace: stats: events {} lost {}{} tables",
            self.events,
            probes.lost(),
            probes.drops().stats()
        );
        for (name, size) in self
            .correlator
            .table_sizes()
            .into_iter()
            .chain(output.table_sizes())
            .chain(self.metrics.iter().flat_map(|m| m.metrics.table_sizes()))
        {
            line.push_str(&format!(" {name}={size}"));
        }
        eprintln!("{line}");
    }

    fn settle(&mut self, probes: &Probes, output: &mut Output<Sink>) -> Result<(), Error> {
        self.correlator.settle(Clock::mono_now(), &mut self.reports);
        self.emit(output)?;
        if let Some(m) = &mut self.metrics {
            m.metrics.set_totals(
                self.events,
                probes.lost(),
                &probes.drops().0,
                Clock::mono_now(),
            );
        }
        output
            .flush()
            .map_err(|e| Error::io("writing the output", e))
    }

    /// The last drain: what the ring holds from before now (the launched command's exit may
    /// still be in flight), but not a storm that goes on after the stop.
    fn finish(&mut self, probes: &mut Probes, output: &mut Output<Sink>) -> Result<(), Error> {
        let stop = Clock::mono_now();
        while self.drain(probes, output, Some(stop))? {}
        self.correlator.flush(&mut self.reports);
        self.emit(output)
    }

    fn emit(&mut self, output: &mut Output<Sink>) -> Result<(), Error> {
        let metrics_cgroups = self
            .metrics
            .as_ref()
            .is_some_and(|m| m.metrics.wants_cgroups());
        for mut report in self.reports.drain(..) {
            let shown = output.shows(&report);
            if (shown || metrics_cgroups)
                && let Some(cgroups) = &mut self.cgroups
            {
                name_cgroups(cgroups, &mut report);
            }
            if let Some(m) = &mut self.metrics {
                m.metrics.observe(&report);
            }
            // The /proc reads are for the line only: none for a report nobody will see.
            if shown {
                enrich_report(&mut report);
                if let (Some(stacks), Report::Generate(g)) = (&mut self.stacks, &mut report) {
                    let e = &g.event;
                    g.sender_stack = stacks.resolve(e.sender.tgid, e.user_stack, e.kernel_stack);
                }
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

/// The cgroup resolver, or None (said once, where cgroups matter) without cgroup v2.
fn cgroup_resolver(args: &TraceArgs) -> Option<CgroupResolver> {
    match Hierarchy::find() {
        Ok(hierarchy) => Some(CgroupResolver::new(hierarchy)),
        Err(e) => {
            if args.format == crate::output::Format::Json {
                eprintln!("sigtrace: warning: {e}; cgroups are shown by id only");
            }
            None
        }
    }
}

/// Fills in the paths and containers of a record's cgroups (cached; a miss walks the
/// hierarchy again, rate-limited).
fn name_cgroups(cgroups: &mut CgroupResolver, report: &mut Report) {
    let mut name = |cgroup: &mut Option<CgroupName>| {
        if let Some(c) = cgroup {
            c.resolved = cgroups.resolve(c.id);
        }
    };
    match report {
        Report::Generate(g) => {
            name(&mut g.sender_cgroup);
            name(&mut g.target_cgroup);
        }
        Report::Deliver(d) => name(&mut d.cgroup),
        _ => {}
    }
    if let Some(warning) = cgroups.take_warning() {
        eprintln!("sigtrace: warning: {warning}");
    }
}

/// Ctrl-C must always work, also while the output blocks: a pipe nobody reads, a terminal
/// stopped with ^S, a hung network file system. The loop writes its output itself, on the
/// runtime's only thread, and while write(2) blocks it cannot see a signal (tokio's handler
/// only queues it, and restarts the write). Until a stop is asked for that is right: the loop
/// waits for its reader and the kernel counts what the ring cannot take. Once a stop is asked
/// for, waiting is bounded:
///
/// - `on_stop`, chained in front of tokio's handlers for SIGINT, SIGTERM and SIGHUP (not
///   with `-o`, where SIGHUP reopens the file and the trace goes on), counts
///   each SIGINT and, when the signal stops the run (the second ^C in launch mode, see
///   [`stop_now`]), installs `on_alarm` for SIGALRM — without SA_RESTART, so that it
///   interrupts a blocked write — and starts a half-second interval timer;
/// - `on_alarm` gives up the output when one write has taken nothing across a whole tick;
/// - [`Watched`] then fails that write and every later one, the loop ends with
///   [`End::OutputBlocked`] and reports on stderr; should even that block (stderr into the
///   same stuck pipe), `on_alarm` ends the process two seconds later.
///
/// The handlers only touch atomics and call tokio's handler, sigaction(2), setitimer(2) and
/// _exit(2): async-signal-safe. Until a stop, nothing changes but the SIGINT count.
mod stopping {
    use std::{
        io::{self, Write},
        sync::{
            OnceLock,
            atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst},
        },
    };

    use libc::{c_int, c_void, siginfo_t};

    /// The watchdog's period: a write that takes nothing from one tick to the next is given
    /// up, 0.5 to 1 s after the stop request.
    const TICK_US: libc::suseconds_t = 500_000;
    /// Ticks the run has to end after giving up the output before the process is ended.
    const LAST_TICKS: u32 = 4;
    const STOP_SIGNALS: [c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

    static LAUNCHING: AtomicBool = AtomicBool::new(false);
    /// SIGINTs received, each counted (tokio merges those its loop has not seen yet).
    static INTERRUPTS: AtomicU32 = AtomicU32::new(0);
    /// A signal has stopped the run: the watchdog runs.
    static STOPPING: AtomicBool = AtomicBool::new(false);
    /// Incremented on entering and on leaving [`Watched::write`]: odd while a write is under
    /// way, and a write that returns (having taken something) changes it.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    /// WRITES at the last tick.
    static SEEN: AtomicU64 = AtomicU64::new(u64::MAX);
    static GAVE_UP: AtomicBool = AtomicBool::new(false);
    static TICKS_AFTER: AtomicU32 = AtomicU32::new(0);
    /// The handlers tokio installed for STOP_SIGNALS, which ours call first.
    static CHAINED: OnceLock<[libc::sigaction; 3]> = OnceLock::new();

    /// SIGINTs received since [`install`].
    pub(super) fn interrupts() -> u32 {
        INTERRUPTS.load(SeqCst)
    }

    /// Whether the output was given up.
    pub(super) fn gave_up() -> bool {
        GAVE_UP.load(SeqCst)
    }

    /// Puts `on_stop` in front of tokio's handlers, which must be registered already; for
    /// SIGHUP only when `hup_stops`. Only once per process: a second call would chain to
    /// itself.
    pub(super) fn install(launching: bool, hup_stops: bool) -> io::Result<()> {
        LAUNCHING.store(launching, SeqCst);
        let check = |rc: c_int| {
            if rc == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        };
        // SAFETY: sigaction(2) reading the current actions into zeroed locals.
        let mut tokio: [libc::sigaction; 3] = unsafe { std::mem::zeroed() };
        for (sig, action) in STOP_SIGNALS.iter().zip(tokio.iter_mut()) {
            // SAFETY: as above.
            check(unsafe { libc::sigaction(*sig, std::ptr::null(), action) })?;
        }
        if CHAINED.set(tokio).is_err() {
            return Ok(());
        }
        for (sig, theirs) in STOP_SIGNALS.iter().zip(tokio.iter()) {
            if *sig == libc::SIGHUP && !hup_stops {
                // tokio's handler alone: no watchdog for a signal that does not stop.
                continue;
            }
            // Their mask and flags (SA_RESTART: the loop's own syscalls go on as before).
            let mut ours = *theirs;
            ours.sa_sigaction = on_stop as *const () as usize;
            ours.sa_flags |= libc::SA_SIGINFO;
            // SAFETY: installing a handler that is async-signal-safe.
            check(unsafe { libc::sigaction(*sig, &ours, std::ptr::null_mut()) })?;
        }
        Ok(())
    }

    extern "C" fn on_stop(sig: c_int, info: *mut siginfo_t, context: *mut c_void) {
        // SAFETY: errno is thread-local; restored below for the interrupted code.
        let errno = unsafe { *libc::__errno_location() };
        // Counted before tokio hears of it, so the loop never sees fewer than it did.
        let stops = sig != libc::SIGINT
            || super::stop_now(LAUNCHING.load(SeqCst), INTERRUPTS.fetch_add(1, SeqCst) + 1)
                .is_some();
        if let Some(index) = STOP_SIGNALS.iter().position(|&s| s == sig)
            && let Some(theirs) = CHAINED.get().map(|chained| chained[index])
        {
            let handler = theirs.sa_sigaction;
            if handler != libc::SIG_DFL && handler != libc::SIG_IGN {
                // SAFETY: calling the handler installed for this signal the way the kernel
                // would have, with its own kind of arguments.
                unsafe {
                    if theirs.sa_flags & libc::SA_SIGINFO != 0 {
                        let f: extern "C" fn(c_int, *mut siginfo_t, *mut c_void) =
                            std::mem::transmute(handler);
                        f(sig, info, context);
                    } else {
                        let f: extern "C" fn(c_int) = std::mem::transmute(handler);
                        f(sig);
                    }
                }
            }
        }
        if stops && !STOPPING.swap(true, SeqCst) {
            let tick = libc::timeval {
                tv_sec: 0,
                tv_usec: TICK_US,
            };
            let timer = libc::itimerval {
                it_interval: tick,
                it_value: tick,
            };
            // SAFETY: sigaction(2), sigemptyset(3) and setitimer(2) on locals, all
            // async-signal-safe; `on_alarm` is too.
            unsafe {
                let mut alarm: libc::sigaction = std::mem::zeroed();
                alarm.sa_sigaction = on_alarm as *const () as usize;
                libc::sigemptyset(&mut alarm.sa_mask);
                // No SA_RESTART: a write it interrupts returns (EINTR or what it took).
                if libc::sigaction(libc::SIGALRM, &alarm, std::ptr::null_mut()) == 0 {
                    libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut());
                }
            }
        }
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = errno };
    }

    extern "C" fn on_alarm(_: c_int) {
        if GAVE_UP.load(SeqCst) {
            if TICKS_AFTER.fetch_add(1, SeqCst) + 1 >= LAST_TICKS {
                // SAFETY: _exit(2) is async-signal-safe; the kernel detaches the programs.
                unsafe { libc::_exit(c_int::from(super::EXIT_LOST)) };
            }
            return;
        }
        let writes = WRITES.load(SeqCst);
        if writes % 2 == 1 && SEEN.swap(writes, SeqCst) == writes {
            GAVE_UP.store(true, SeqCst);
        } else {
            SEEN.store(writes, SeqCst);
        }
    }

    fn given_up() -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            "the output took nothing after the stop request; given up",
        )
    }

    /// The output's writer: a write interrupted by the watchdog is retried, unless the
    /// output was given up; then it and every later write fail at once.
    pub(super) struct Watched<W>(pub W);

    impl<W: Write> Write for Watched<W> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if gave_up() {
                return Err(given_up());
            }
            WRITES.fetch_add(1, SeqCst);
            let result = loop {
                match self.0.write(buf) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted && !gave_up() => {}
                    other => break other,
                }
            };
            WRITES.fetch_add(1, SeqCst);
            match result {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(given_up()),
                other => other,
            }
        }

        fn flush(&mut self) -> io::Result<()> {
            self.0.flush()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_line_names_the_probes() {
        assert_eq!(
            ready_line(42, ProbeKind::Btf),
            "sigtrace: ready (pid 42, btf probes); stop with Ctrl-C"
        );
        assert!(ready_line(42, ProbeKind::Raw).starts_with("sigtrace: ready (pid 42, raw probes)"));
    }

    #[test]
    fn the_cost_line_names_the_probes_before_the_programs() {
        let cost = |program: &str, runs, ns| ProgramCost {
            program: program.into(),
            runs,
            run_time: Duration::from_nanos(ns),
        };
        assert_eq!(
            cost_line(
                ProbeKind::Raw,
                &[
                    cost("signal_generate", 4, 6_000),
                    cost("signal_deliver", 2, 800)
                ]
            ),
            "sigtrace: in-kernel cost: raw probes; signal_generate 4 runs, 1500 ns/run; signal_deliver 2 runs, 400 ns/run"
        );
        assert_eq!(
            cost_line(ProbeKind::Btf, &[]),
            "sigtrace: in-kernel cost: btf probes"
        );
    }
}
