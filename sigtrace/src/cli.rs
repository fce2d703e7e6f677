//! The command line, defined once: tracing options (the default command) and the signal
//! knowledge subcommands. `--help` is generated from these definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::{docs, knowledge, loader::ProbeMode, output::Format};

const ABOUT: &str = "Trace Linux signals: who sent which signal to whom, what the recipient had installed for it, and what happened next.";

const AFTER_HELP: &str = "\
Filters are applied in the kernel and combine with AND; a filter given several values (a comma
list or a repeated flag) matches any of them. Without filters every signal on the system is traced.

Examples:
  sudo sigtrace --pid 3508                 signals sent to or by process 3508
  sudo sigtrace --signal INT,TERM --failed signals that were ignored, merged or dropped
  sudo sigtrace --format json -- ./server  run ./server, trace it and its children
  sigtrace mask 0x4b813efb                 decode a signal mask (ps caught / SigCgt)
  sigtrace show 3508                       what 3508 catches, ignores, blocks, has pending
  sigtrace diff 3508 3511                  two processes side by side
  sigtrace completions bash                a bash completion script (also zsh, fish)

Signals: INT, TERM and HUP stop tracing (with -- COMMAND a first ^C goes to the command, a
second stops sigtrace), except that with --reopen-on-hup HUP reopens the -o FILE (logrotate:
move it, then HUP); USR1 prints a stats line on stderr (events, lost, table sizes).

Exit status: 0 done, 1 tracer failure, 2 bad input or missing privilege, 3 events were lost;
with -- COMMAND, the command's own exit status (128+N when killed by signal N).";

#[derive(Debug, Parser)]
#[command(
    name = "sigtrace",
    version,
    about = ABOUT,
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub trace: TraceArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Decode signal masks: hex (0x4b813efb), ps's 16-digit column, or a pasted /proc line.
    Mask(knowledge::MaskArgs),
    /// A process's signal dispositions, blocked and pending signals, pgrp, session and tty.
    Show(knowledge::ShowArgs),
    /// Two processes' signal state side by side, differences highlighted.
    Diff(knowledge::DiffArgs),
    /// Print the shell completion script for SHELL (bash, zsh, fish) on standard output.
    Completions(docs::CompletionsArgs),
    /// Write the man pages into DIR (for packaging).
    #[command(hide = true)]
    ManPages(docs::ManPagesArgs),
}

#[derive(Debug, Args, Default)]
pub struct TraceArgs {
    /// Signals sent to or by any thread of PID (repeatable, or comma-separated). A process
    /// leaves the filter when it exits, so a later process given the same number is not
    /// traced.
    #[arg(
        short,
        long = "pid",
        value_name = "PID",
        value_delimiter = ',',
        help_heading = "Filters"
    )]
    pub pids: Vec<i32>,
    /// Signals sent by PID only.
    #[arg(
        long = "sender",
        value_name = "PID",
        value_delimiter = ',',
        help_heading = "Filters"
    )]
    pub senders: Vec<i32>,
    /// Signals sent to PID only.
    #[arg(
        long = "target",
        value_name = "PID",
        value_delimiter = ',',
        help_heading = "Filters"
    )]
    pub targets: Vec<i32>,
    /// Signals sent to or by this thread id.
    #[arg(
        long = "tid",
        value_name = "TID",
        value_delimiter = ',',
        help_heading = "Filters"
    )]
    pub tids: Vec<i32>,
    /// Signals sent to or by a member of process group PGID.
    #[arg(
        long = "pgrp",
        value_name = "PGID",
        value_delimiter = ',',
        help_heading = "Filters"
    )]
    pub pgrps: Vec<i32>,
    /// Signals sent to or by a process whose comm (first 15 bytes of its name) is COMM.
    #[arg(
        long = "comm",
        value_name = "COMM",
        value_delimiter = ',',
        help_heading = "Filters"
    )]
    pub comms: Vec<String>,
    /// Only these signals: names or numbers, real-time ones included (TERM,SIGUSR1,10,RTMIN+3).
    #[arg(
        short,
        long = "signal",
        value_name = "SIGNALS",
        value_delimiter = ',',
        help_heading = "Filters"
    )]
    pub signals: Vec<String>,
    /// All signals but these.
    #[arg(
        long = "exclude-signal",
        value_name = "SIGNALS",
        value_delimiter = ',',
        help_heading = "Filters"
    )]
    pub exclude_signals: Vec<String>,
    /// Only signals that were not simply queued: ignored, merged with a pending one, dropped
    /// (real-time queue full), or queued without their siginfo.
    #[arg(long, help_heading = "Filters")]
    pub failed: bool,
    /// Only signals the kernel sent (faults, tty, timers, SIGCHLD, SIGPIPE, OOM...).
    #[arg(long, conflicts_with = "user_only", help_heading = "Filters")]
    pub kernel_only: bool,
    /// Only signals a process sent with kill, tkill, tgkill, sigqueue or pidfd_send_signal.
    #[arg(long, help_heading = "Filters")]
    pub user_only: bool,
    /// Only signals sent by processes running as UID (a number or a user name).
    #[arg(long, value_name = "UID", help_heading = "Filters")]
    pub uid: Option<String>,
    /// With --pid, --sender or --target: also trace the descendants those processes create
    /// from now on (on the same side).
    #[arg(short, long, help_heading = "Filters")]
    pub follow: bool,

    /// Also report every change a process makes to its signal actions (rt_sigaction): the
    /// processes of --pid/--sender/--target (and their followed children), or every process.
    /// On in launch mode.
    #[arg(long, help_heading = "Filters")]
    pub sigaction: bool,
    /// Signals sent from or to a process in this cgroup v2 or below it: a directory of the
    /// cgroup2 mount (/sys/fs/cgroup/system.slice/nginx.service) or a path as
    /// /proc/PID/cgroup shows it (/system.slice/nginx.service). Judged in the kernel.
    #[arg(long, value_name = "PATH", help_heading = "Filters")]
    pub cgroup: Option<std::path::PathBuf>,
    /// Also report how long each signal handler ran: from its delivery to the rt_sigreturn
    /// that ends it, or that it never returned (longjmp, exit in the handler). Hooks the
    /// entry of every system call on the machine while on: each pays for a BPF program run
    /// (`cargo xtask bench` measures it; docs/performance.md).
    #[arg(long, help_heading = "Output")]
    pub handler_time: bool,
    /// Also show the sender's user and kernel stacks for each signal a process sent, by
    /// function (frame-pointer unwinding: code built without frame pointers is skipped).
    #[arg(long, help_heading = "Output")]
    pub stack: bool,
    /// Output format: one line per event for people, or one JSON object per line.
    #[arg(long, value_enum, default_value = "text", help_heading = "Output")]
    pub format: Format,
    /// On exit, print counts by sender, target, signal and outcome.
    #[arg(long, help_heading = "Output")]
    pub summary: bool,
    /// Print only the summary.
    #[arg(long, help_heading = "Output")]
    pub summary_only: bool,
    /// Append the output to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE", help_heading = "Output")]
    pub output: Option<PathBuf>,
    /// For a service: SIGHUP reopens the -o FILE (after logrotate moved it) instead of
    /// stopping the trace, and does nothing without -o. Without this flag a hang-up (a
    /// closed terminal or ssh session) stops the trace. A reopen that fails ends the trace
    /// with status 1.
    #[arg(long, help_heading = "Output")]
    pub reopen_on_hup: bool,
    /// Print no events: with --metrics, a metrics-only daemon; with --summary, the summary
    /// alone. The end-of-run line still goes to stderr.
    #[arg(short, long, help_heading = "Output")]
    pub quiet: bool,
    /// With -o: before a record would take FILE past BYTES (e.g. 100M, 512K; at least 4K),
    /// rename it to FILE.1 (FILE.1 to FILE.2, ...) and start a new FILE. Records are never
    /// split; one larger than BYTES fills a file alone. A rotation that fails ends the trace
    /// with status 1.
    #[arg(
        long,
        value_name = "BYTES",
        requires = "output",
        value_parser = parse_rotate_size,
        help_heading = "Output"
    )]
    pub rotate_size: Option<u64>,
    /// With --rotate-size: how many rotated files to keep (0 to 1000), FILE.1 (newest) to
    /// FILE.N; the one older is deleted. 0 keeps none: a full FILE is deleted and started
    /// afresh.
    #[arg(
        long,
        value_name = "N",
        default_value_t = ROTATE_KEEP_DEFAULT,
        requires = "rotate_size",
        value_parser = clap::value_parser!(u32).range(0..=ROTATE_KEEP_MAX as i64),
        help_heading = "Output"
    )]
    pub rotate_keep: u32,
    /// Timestamps relative to the start of tracing.
    #[arg(short, long, conflicts_with = "no_time", help_heading = "Output")]
    pub relative: bool,
    /// No timestamps.
    #[arg(long, help_heading = "Output")]
    pub no_time: bool,
    /// Show the exit of every process the filters let through, not only signalled ones.
    #[arg(long, help_heading = "Output")]
    pub all_exits: bool,
    /// Text: print every event of a burst instead of folding its repeats into a count.
    ///
    /// By default the first lines of a burst print at once and repeats of the last few lines
    /// (alike but for their time and latency: a kill storm's generations and deliveries, say)
    /// are counted into one line, "×N more like the 2 lines above (n + n), over 1.2 s",
    /// printed when something else comes or the burst stops. JSON and the summary always
    /// have every event.
    #[arg(long, help_heading = "Output")]
    pub no_fold: bool,
    /// Text: show the recipient's caught, ignored and blocked signals on each generation
    /// line, e.g. "caught INT,TERM,CHLD  ignored QUIT  blocked -".
    #[arg(long, help_heading = "Output")]
    pub masks: bool,
    /// On exit, report what sigtrace's kernel programs cost: runs and nanoseconds per run of
    /// each, from the kernel's BPF run-time statistics (kept on while tracing; they add
    /// two clock reads to every run of every BPF program on the system).
    #[arg(long, help_heading = "Output")]
    pub cost: bool,
    /// Show the kernel programs' own diagnostics on stderr: -v records dropped and why, -vv
    /// also signals deliberately left out (e.g. the SIGKILL an exec sends its other
    /// threads), -vvv everything. RUST_LOG (env_logger syntax) overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, help_heading = "Output")]
    pub verbose: u8,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464): signals
    /// generated, delivered (by outcome), processes killed, fan-outs, records lost and
    /// dropped, the ring buffer's fill. Counts every event the filters keep, whatever the
    /// output shows. No pid labels; see --metrics-labels.
    #[arg(long, value_name = "ADDR", help_heading = "Metrics")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Also label the signal, delivery and death counters with the recipient's comm, systemd
    /// unit or cgroup path (comma-separated). Each label takes at most --metrics-label-limit
    /// distinct values; later ones count under "_overflow".
    #[arg(
        long,
        value_name = "LABELS",
        value_enum,
        value_delimiter = ',',
        requires = "metrics",
        help_heading = "Metrics"
    )]
    pub metrics_labels: Vec<crate::metrics::RecipientLabel>,
    /// Distinct values each --metrics-labels label may take.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 100,
        requires = "metrics_labels",
        help_heading = "Metrics"
    )]
    pub metrics_label_limit: usize,
    /// Kernel ring buffer size, e.g. 4M or 256K (a power of two, at least 4K).
    #[arg(long, value_name = "BYTES", default_value = "4M", value_parser = parse_size)]
    pub ring_size: u32,
    /// Which kernel probes to use: btf (faster) where the kernel runs them, or raw. auto
    /// falls back to raw when the btf probes cannot load (-v says why).
    #[arg(
        long,
        value_enum,
        value_name = "MODE",
        default_value = "auto",
        env = "SIGTRACE_PROBE_MODE"
    )]
    pub probe_mode: ProbeMode,

    /// Start COMMAND and trace it and all its descendants; exit with its exit status.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// --rotate-keep when not given.
pub const ROTATE_KEEP_DEFAULT: u32 = 5;
/// Each rotation renames every kept file: a bound on its work.
pub const ROTATE_KEEP_MAX: u32 = 1000;
/// The smallest --rotate-size: a few records a file (a JSON generate record is about 1 KiB,
/// more with --stack).
const ROTATE_SIZE_MIN: u64 = 4096;

/// "4M", "256K", "65536" → bytes; a power of two between 4 KiB and 1 GiB.
pub fn parse_size(text: &str) -> Result<u32, String> {
    let bytes = parse_bytes(text)?;
    if !bytes.is_power_of_two() || !(4096..=1 << 30).contains(&bytes) {
        return Err(format!(
            "{bytes} bytes: the ring buffer size must be a power of two between 4K and 1G"
        ));
    }
    Ok(bytes as u32)
}

/// --rotate-size: "100M", "512K", "65536" → bytes, at least 4 KiB.
pub fn parse_rotate_size(text: &str) -> Result<u64, String> {
    let bytes = parse_bytes(text)?;
    if bytes < ROTATE_SIZE_MIN {
        return Err(format!(
            "{bytes} bytes: rotate at 4K or more (a file should hold a few records)"
        ));
    }
    Ok(bytes)
}

/// Bytes, or a number with a K/M/G suffix (powers of 1024).
fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, factor) = match text.char_indices().last() {
        Some((i, 'k' | 'K')) => (&text[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&text[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&text[..i], 1 << 30),
        _ => (text, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| format!("\"{text}\" is not a size; use bytes or a K/M/G suffix, e.g. 4M"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("3000").is_err());
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn rotate_sizes() {
        assert_eq!(parse_rotate_size("100M"), Ok(100 << 20));
        assert_eq!(parse_rotate_size("512k"), Ok(512 << 10));
        assert_eq!(parse_rotate_size("4K"), Ok(4096));
        // Any size, not only powers of two.
        assert_eq!(parse_rotate_size("5000"), Ok(5000));
        assert_eq!(parse_rotate_size("3G"), Ok(3 << 30));
        let small = parse_rotate_size("4095").expect_err("below 4K");
        assert!(small.contains("4K or more"), "{small}");
        for bad in ["", "1.5M", "10X", "-4K", "99999999999G"] {
            assert!(parse_rotate_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rotation_needs_an_output_file_and_a_size() {
        let parse = |args: &[&str]| Cli::try_parse_from(args.iter().copied());
        let cli = parse(&["sigtrace", "-o", "f", "--rotate-size", "1M"]).expect("parses");
        assert_eq!(cli.trace.rotate_size, Some(1 << 20));
        assert_eq!(cli.trace.rotate_keep, ROTATE_KEEP_DEFAULT);
        let cli = parse(&[
            "sigtrace",
            "-o",
            "f",
            "--rotate-size",
            "1M",
            "--rotate-keep",
            "0",
        ])
        .expect("parses");
        assert_eq!(cli.trace.rotate_keep, 0);
        for args in [
            &["sigtrace", "--rotate-size", "1M"][..],
            &["sigtrace", "-o", "f", "--rotate-keep", "3"],
            &["sigtrace", "--rotate-size", "1M", "--rotate-keep", "3"],
            &["sigtrace", "-o", "f", "--rotate-size", "1K"],
            &[
                "sigtrace",
                "-o",
                "f",
                "--rotate-size",
                "1M",
                "--rotate-keep",
                "1001",
            ],
        ] {
            let err = parse(args).expect_err("refused");
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
    }

    #[test]
    fn command_after_double_dash_and_lists() {
        let cli = Cli::try_parse_from([
            "sigtrace", "--pid", "1,2", "-s", "INT,TERM", "--", "sh", "-c", "exit 3",
        ])
        .expect("parses");
        assert_eq!(cli.trace.pids, [1, 2]);
        assert_eq!(cli.trace.signals, ["INT", "TERM"]);
        assert_eq!(cli.trace.command, ["sh", "-c", "exit 3"]);
        assert!(Cli::try_parse_from(["sigtrace", "--kernel-only", "--user-only"]).is_err());
    }

    #[test]
    fn generation_subcommands_leave_tracing_alone() {
        let cli = Cli::try_parse_from(["sigtrace", "completions", "zsh"]).expect("parses");
        assert!(matches!(
            cli.command,
            Some(Command::Completions(docs::CompletionsArgs {
                shell: docs::Shell::Zsh
            }))
        ));
        let cli = Cli::try_parse_from(["sigtrace", "man-pages", "out"]).expect("parses");
        assert!(matches!(cli.command, Some(Command::ManPages(_))));
        // A command named like a subcommand, after --, is still a command to launch.
        let cli = Cli::try_parse_from(["sigtrace", "--", "completions", "bash"]).expect("parses");
        assert!(cli.command.is_none());
        assert_eq!(cli.trace.command, ["completions", "bash"]);
        let cli = Cli::try_parse_from(["sigtrace", "--pid", "1"]).expect("parses");
        assert!(cli.command.is_none());
        assert_eq!(cli.trace.pids, [1]);
        assert!(Cli::try_parse_from(["sigtrace", "completions", "tcsh"]).is_err());
        assert!(Cli::try_parse_from(["sigtrace", "--pid", "1", "completions", "bash"]).is_err());
        // The packaging subcommand stays out of --help.
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("completions"), "{help}");
        assert!(!help.contains("man-pages"), "{help}");
    }

    #[test]
    fn probe_modes() {
        let mode = |args: &[&str]| {
            Cli::try_parse_from(args.iter().copied()).map(|cli| cli.trace.probe_mode)
        };
        // The default only where SIGTRACE_PROBE_MODE is unset: clap reads it, and the tests
        // run in their caller's environment.
        if std::env::var_os("SIGTRACE_PROBE_MODE").is_none() {
            assert_eq!(mode(&["sigtrace"]).expect("parses"), ProbeMode::Auto);
        }
        for (text, want) in [
            ("auto", ProbeMode::Auto),
            ("btf", ProbeMode::Btf),
            ("raw", ProbeMode::Raw),
        ] {
            assert_eq!(mode(&["sigtrace", "--probe-mode", text]).expect(text), want);
        }
        assert!(mode(&["sigtrace", "--probe-mode", "kprobe"]).is_err());
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("SIGTRACE_PROBE_MODE"), "{help}");
        assert!(help.contains("BPF_PROG_TYPE_TRACING"), "{help}");
    }
}
