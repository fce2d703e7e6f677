//! The kernel programs' own diagnostics (aya-log): a dropped record and why, a signal the
//! programs deliberately leave out. Off unless asked for with `-v` (warn and info), `-vv`
//! (debug), `-vvv` (trace) or `RUST_LOG` (env_logger's syntax, which wins when set). The
//! level is a load-time constant of the programs: below it, the verifier removes the
//! logging code, so a trace without `-v` runs exactly the programs it ran before.
//!
//! Lines go to stderr as `sigtrace: kernel warn: ...`, escaped like every text output. The
//! same levels show sigtrace's own notes, logged with `log` (which probes the loader did not
//! use, and why), as `sigtrace: info: ...`.

use std::io::Write as _;

use aya::Ebpf;
use aya_log::EbpfLogger;
use log::LevelFilter;

/// The reader of the programs' log ring, turning its records into stderr lines.
pub(crate) type KernelLog = EbpfLogger<env_logger::Logger>;

/// The level asked for: `RUST_LOG` when set, otherwise one step per `-v`.
pub(crate) fn level(verbose: u8) -> LevelFilter {
    match std::env::var_os(env_logger::DEFAULT_FILTER_ENV) {
        Some(_) => filter_from_env().build().filter(),
        None => match verbose {
            0 => LevelFilter::Off,
            1 => LevelFilter::Info,
            2 => LevelFilter::Debug,
            _ => LevelFilter::Trace,
        },
    }
}

/// The programs' `AYA_LOG_LEVEL` for `level`: aya-log numbers its levels like `log` does
/// (error 1 … trace 5), and 0 turns every statement off.
pub(crate) fn program_level(level: LevelFilter) -> u8 {
    level as usize as u8
}

/// Starts reading the programs' log records, or None when logging is off (no reader, and
/// the loader gave the log ring its minimum size).
pub(crate) fn start(
    ebpf: &mut Ebpf,
    level: LevelFilter,
) -> Result<Option<KernelLog>, aya_log::Error> {
    if level == LevelFilter::Off {
        return Ok(None);
    }
    let mut builder = filter_from_env();
    if std::env::var_os(env_logger::DEFAULT_FILTER_ENV).is_none() {
        builder.filter_level(level);
    }
    format_lines(&mut builder, "sigtrace: kernel ");
    EbpfLogger::init_with_logger(ebpf, builder.build()).map(Some)
}

/// Shows sigtrace's own `log` records at `level` (from [`level`]); aya's, which it logs too,
/// only from warn up unless RUST_LOG asks for more. A second call (tests) changes nothing.
pub(crate) fn init_userspace(level: LevelFilter) {
    let mut builder = filter_from_env();
    if std::env::var_os(env_logger::DEFAULT_FILTER_ENV).is_none() {
        builder
            .filter_level(level.min(LevelFilter::Warn))
            .filter_module(env!("CARGO_CRATE_NAME"), level);
    }
    format_lines(&mut builder, "sigtrace: ");
    // Fails only when a logger is installed already.
    let _ = builder.try_init();
}

/// Lines `PREFIXlevel: message`, escaped like every text output.
fn format_lines(builder: &mut env_logger::Builder, prefix: &'static str) {
    builder.format(move |out, record| {
        writeln!(
            out,
            "{prefix}{}: {}",
            record.level().as_str().to_ascii_lowercase(),
            crate::escape::text(&record.args().to_string())
        )
    });
}

fn filter_from_env() -> env_logger::Builder {
    env_logger::Builder::from_env(env_logger::Env::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_v_turns_on_one_more_level() {
        // With RUST_LOG set the mapping is env_logger's, not ours.
        if std::env::var_os("RUST_LOG").is_some() {
            return;
        }
        assert_eq!(level(0), LevelFilter::Off);
        assert_eq!(level(1), LevelFilter::Info);
        assert_eq!(level(2), LevelFilter::Debug);
        assert_eq!(level(3), LevelFilter::Trace);
        assert_eq!(level(9), LevelFilter::Trace);
    }

    #[test]
    fn program_levels_match_aya_logs_numbering() {
        assert_eq!(program_level(LevelFilter::Off), 0);
        assert_eq!(program_level(LevelFilter::Warn), aya_log::Level::Warn as u8);
        assert_eq!(
            program_level(LevelFilter::Trace),
            aya_log::Level::Trace as u8
        );
    }
}
