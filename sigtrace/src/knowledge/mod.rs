//! The signal-knowledge subcommands — `sigtrace mask`, `sigtrace show PID` and
//! `sigtrace diff PID PID` — which answer "what does this process do with each signal?"
//! from /proc alone: no BPF, no privileges beyond reading the process's /proc files.
//!
//! Each `run_*` function parses nothing itself (clap did that), reads what it needs, and
//! writes text for people or JSON for programs to `out`. Errors are one line each; bad input
//! (a malformed mask, a pid that does not exist or cannot be read) has exit status 2.

mod diff;
mod mask;
mod process;
mod show;
mod style;

// The /proc text parsers, public so that the fuzz targets (fuzz/) reach them.
pub use process::{parse_stat, parse_status};

use crate::signals::ParseMaskError;
use clap::{Args, ValueEnum};
use std::io;

/// Output format shared by the three subcommands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// For people: aligned columns, colour on a terminal.
    #[default]
    Text,
    /// For programs: JSON (`mask`: one object per line, one line per mask).
    Json,
}

/// When to colour text output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// When standard output is a terminal and NO_COLOR is unset or empty.
    #[default]
    Auto,
    Always,
    Never,
}

/// Arguments of `sigtrace mask`.
#[derive(Debug, Args)]
pub struct MaskArgs {
    /// Signal masks: 0x4b813efb, ps's 16-digit column (000000004b813efb), a pasted
    /// /proc/PID/status line ("SigCgt: 0000000000014002"), binary (0b...) or decimal.
    /// Bare digits are hex when they contain a-f, start with 0 or are 16 digits long (the
    /// ps form), decimal otherwise; the output shows how each was read.
    #[arg(required = true, value_name = "MASK")]
    pub masks: Vec<String>,
    /// Also show alias names (SIGIOT, SIGCLD, SIGPOLL, SIGUNUSED).
    #[arg(long)]
    pub aliases: bool,
    /// One row per signal with its bit, default action and description, instead of names.
    #[arg(long)]
    pub table: bool,
    /// Also print the mask as a bit string (signal 64 first).
    #[arg(long)]
    pub bits: bool,
    /// Read every MASK as a decimal number, even with leading zeros.
    #[arg(long)]
    pub decimal: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Arguments of `sigtrace show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The process to show.
    #[arg(value_name = "PID")]
    pub pid: i32,
    /// Also show each thread's blocked and pending signals.
    #[arg(long)]
    pub threads: bool,
    /// List only signals that are caught, ignored, blocked or pending (the rest are at
    /// their default and neither blocked nor pending).
    #[arg(long)]
    pub changed: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Arguments of `sigtrace diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The two processes to compare, e.g. a wrapper script and the program it started.
    #[arg(num_args = 2, required = true, value_name = "PID")]
    pub pids: Vec<i32>,
    /// Also compare each thread's blocked and pending signals (listed, not matched up).
    #[arg(long)]
    pub threads: bool,
    /// List only the signals that differ.
    #[arg(long)]
    pub changed: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Output options common to the three subcommands.
#[derive(Debug, Args, Clone, Copy)]
pub struct OutputArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Colour the text output.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,
}

/// Why a subcommand failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A mask argument is not a mask.
    #[error(transparent)]
    Mask(#[from] ParseMaskError),
    /// A pid argument that cannot name a process.
    #[error("invalid pid {pid}: a process id is a positive number, as ps prints it")]
    InvalidPid { pid: i32 },
    /// `diff` was given other than two pids.
    #[error("diff compares exactly two processes, but {count} pids were given")]
    DiffNeedsTwoPids { count: usize },
    /// The process does not exist (or exited while we read it).
    #[error("no process with pid {pid}: it does not exist or has exited")]
    NoSuchProcess { pid: i32 },
    /// The process exists but its /proc files cannot be read.
    #[error("cannot read /proc/{pid}: {reason}")]
    Unreadable { pid: i32, reason: String },
    /// Writing the output failed (other than the reader going away, which is not an error).
    #[error("cannot write the output: {0}")]
    Output(#[source] io::Error),
}

impl Error {
    /// Exit status: 2 for bad input (a malformed mask, a missing or unreadable pid), 1 for
    /// anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Mask(_)
            | Error::InvalidPid { .. }
            | Error::DiffNeedsTwoPids { .. }
            | Error::NoSuchProcess { .. }
            | Error::Unreadable { .. } => 2,
            Error::Output(_) => 1,
        }
    }
}

impl From<io::Error> for Error {
    fn from(error: io::Error) -> Self {
        Error::Output(error)
    }
}

/// `sigtrace mask MASK...`: decode masks into signal names.
pub fn run_mask(args: &MaskArgs, out: &mut dyn io::Write) -> Result<(), Error> {
    finish(mask::run(args, out), out)
}

/// `sigtrace show PID`: a process's dispositions, blocked and pending signals, and its
/// place among processes (parent, pgrp, session, tty).
pub(crate) fn run_show(args: &ShowArgs, out: &mut dyn io::Write) -> Result<(), Error> {
    finish(show::run(args, out), out)
}

/// `sigtrace diff PID PID`: two processes side by side, differing signals highlighted.
pub(crate) fn run_diff(args: &DiffArgs, out: &mut dyn io::Write) -> Result<(), Error> {
    finish(diff::run(args, out), out)
}

/// Flushes, and treats a reader that went away (`sigtrace show 1 | head`) as success, the
/// way ripgrep does: the output was wanted only up to that point.
fn finish(result: Result<(), Error>, out: &mut dyn io::Write) -> Result<(), Error> {
    let result = result.and_then(|()| out.flush().map_err(Error::Output));
    match result {
        Err(Error::Output(error)) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose reader has gone away.
    struct ClosedPipe;

    impl io::Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
    }

    fn text_output() -> OutputArgs {
        OutputArgs {
            format: OutputFormat::Text,
            color: ColorChoice::Never,
        }
    }

    #[test]
    fn a_closed_pipe_is_not_an_error() {
        let args = MaskArgs {
            masks: vec!["0x4b813eff".into()],
            aliases: false,
            table: false,
            bits: false,
            decimal: false,
            output: text_output(),
        };
        assert!(run_mask(&args, &mut ClosedPipe).is_ok());
    }

    #[test]
    fn exit_codes_separate_bad_input_from_failures() {
        let bad_mask = Error::from(ParseMaskError::Empty);
        assert_eq!(bad_mask.exit_code(), 2);
        assert_eq!(Error::NoSuchProcess { pid: 7 }.exit_code(), 2);
        assert_eq!(Error::InvalidPid { pid: 0 }.exit_code(), 2);
        let unreadable = Error::Unreadable {
            pid: 1,
            reason: "permission denied".into(),
        };
        assert_eq!(unreadable.exit_code(), 2);
        assert_eq!(Error::Output(io::ErrorKind::Other.into()).exit_code(), 1);
    }

    #[test]
    fn bad_mask_stops_before_any_output() {
        let args = MaskArgs {
            masks: vec!["0x1".into(), "0xzz".into()],
            aliases: false,
            table: false,
            bits: false,
            decimal: false,
            output: text_output(),
        };
        let mut out = Vec::new();
        let result = run_mask(&args, &mut out);
        assert!(matches!(result, Err(Error::Mask(_))));
        assert!(out.is_empty());
    }
}
