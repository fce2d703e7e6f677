//! Everything that reads text a user typed: signal names and numbers (`--signal INT,TERM`),
//! masks in every spelling (`sigtrace mask 0x4b813efb`, a pasted `SigCgt:` line), signal
//! lists, the `--ring-size` parser, and the whole command line through clap, the tracing
//! filter built from it and `sigtrace mask`'s output.
//!
//! The input, read as UTF-8 (lossily), goes to every parser whole and line by line; its
//! lines are also the arguments of a command line. What must hold:
//! - a parsed signal is 1..=64 and its name and number parse back to it;
//! - a parsed mask (any parser) formats back in every format and parses to the same value;
//! - a parsed size is a power of two in 4K..=1G and parses back from its digits;
//! - a command line clap accepts yields a filter whose signal bits are exactly the ones the
//!   lists name, or an error; `sigtrace mask` on accepted masks writes valid JSON.
//!
//! The filter is built without --pid/--sender/--target and with a non-numeric --uid dropped:
//! those look processes and users up on this machine, which is not the parser's business.

#![no_main]

use std::cell::RefCell;

use clap::{CommandFactory as _, FromArgMatches as _};
use libfuzzer_sys::fuzz_target;
use sigtrace::{
    cli::{Cli, Command, parse_size},
    knowledge::{OutputFormat, run_mask},
    signals::{MaskFormat, SigSet, Signal},
    trace::build_filter,
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    check_all_parsers(&text);
    if text.contains('\n') {
        for line in text.lines() {
            check_all_parsers(line);
        }
    }
    check_command_line(&text);
});

fn check_all_parsers(text: &str) {
    check_signal(text);
    // The masks the parsers read, each value round-tripped once (most texts that parse give
    // every parser the same value, and a round trip is most of an input's time).
    let mut sets: Vec<SigSet> = MaskFormat::ALL
        .into_iter()
        .filter_map(|format| SigSet::parse_as(text, format).ok())
        .collect();
    sets.extend(SigSet::parse(text).ok());
    if let Ok(set) = SigSet::parse_names(text) {
        assert_eq!(SigSet::parse_names(&set.names().join(",")), Ok(set));
        sets.push(set);
    }
    sets.sort_unstable_by_key(|set| set.0);
    sets.dedup();
    for set in sets {
        check_round_trip(set, text);
    }
    // Errors must format (they are what the user sees).
    if let Err(error) = SigSet::parse(text) {
        assert!(!error.to_string().is_empty());
    }
    check_size(text);
}

fn check_signal(text: &str) {
    match Signal::parse(text) {
        Ok(signal) => {
            assert!(signal.is_valid(), "{text:?} parsed as {signal:?}");
            assert_eq!(Signal::parse(&signal.name()), Ok(signal), "{text:?}");
            assert_eq!(Signal::parse(&signal.0.to_string()), Ok(signal), "{text:?}");
            for alias in signal.aliases() {
                assert_eq!(Signal::parse(alias), Ok(signal), "{text:?}");
            }
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
}

/// Every format of `set` reads back as `set`.
fn check_round_trip(set: SigSet, text: &str) {
    for format in MaskFormat::ALL {
        let written = set.format(format);
        assert_eq!(
            SigSet::parse_as(&written, format),
            Ok(set),
            "{text:?} → {written:?} ({format:?})"
        );
    }
    for written in [
        set.hex(),
        set.ps(),
        set.bits(),
        format!("SigCgt:\t{}", set.ps()),
    ] {
        assert_eq!(SigSet::parse(&written), Ok(set), "{text:?} → {written:?}");
    }
    assert_eq!(
        SigSet::from_signals(set.iter()),
        SigSet(set.0),
        "{text:?}: iteration loses signals"
    );
}

fn check_size(text: &str) {
    if let Ok(bytes) = parse_size(text) {
        assert!(
            bytes.is_power_of_two() && (4096..=1 << 30).contains(&bytes),
            "{text:?} → {bytes}"
        );
        assert_eq!(parse_size(&bytes.to_string()), Ok(bytes), "{text:?}");
    }
}

thread_local! {
    /// The command definition, built once: building it runs clap's debug assertions (the
    /// fuzz build has debug assertions on), which cost milliseconds — most of an input's time
    /// when `Cli::try_parse_from` built it for every input.
    static COMMAND: RefCell<clap::Command> = RefCell::new(Cli::command());
}

/// The lines as a command line (after the program name).
fn check_command_line(text: &str) {
    let args = std::iter::once("sigtrace").chain(text.lines());
    let Ok(matches) = COMMAND.with_borrow_mut(|command| command.try_get_matches_from_mut(args))
    else {
        return;
    };
    let Ok(cli) = Cli::from_arg_matches(&matches) else {
        return;
    };
    match cli.command {
        None => {
            let mut trace = cli.trace;
            trace.pids.clear();
            trace.senders.clear();
            trace.targets.clear();
            if trace
                .uid
                .as_deref()
                .is_some_and(|uid| uid.parse::<u32>().is_err())
            {
                trace.uid = None;
            }
            let Ok(filter) = build_filter(&trace) else {
                return;
            };
            let bits = |list: &[String]| -> u64 {
                list.iter()
                    .filter(|item| !item.trim().is_empty())
                    .map(|item| match Signal::parse(item.trim()) {
                        Ok(signal) => 1u64 << (signal.0 - 1),
                        Err(error) => panic!("the filter took {item:?}: {error}"),
                    })
                    .fold(0, |all, bit| all | bit)
            };
            let wanted = if trace.signals.is_empty() {
                u64::MAX
            } else {
                bits(&trace.signals)
            };
            assert_eq!(
                filter.signals,
                wanted & !bits(&trace.exclude_signals),
                "{trace:?}"
            );
            assert_ne!(filter.signals, 0);
            for key in filter.comms.keys() {
                assert_eq!(key.last(), Some(&0), "a comm filter without its NUL");
            }
        }
        Some(Command::Mask(args)) => {
            let mut out = Vec::new();
            if run_mask(&args, &mut out).is_ok() && args.output.format == OutputFormat::Json {
                for line in out.split(|&b| b == b'\n').filter(|line| !line.is_empty()) {
                    if let Err(error) = serde_json::from_slice::<serde_json::Value>(line) {
                        panic!(
                            "mask JSON does not parse ({error}): {}",
                            String::from_utf8_lossy(line)
                        );
                    }
                }
            }
        }
        // show and diff read /proc for real pids: not parsers. completions and man-pages
        // render the clap definition, whatever the input (docs' unit tests cover them).
        Some(
            Command::Show(_) | Command::Diff(_) | Command::Completions(_) | Command::ManPages(_),
        ) => {}
    }
}
