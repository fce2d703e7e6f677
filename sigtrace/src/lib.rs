//! sigtrace: who sent which signal to whom, what the recipient had installed for it, and
//! what happened next. All logic lives in this library so that it is testable without root;
//! `main.rs` only parses the command line and reports errors.
//!
//! Public are the modules `main.rs`, the fuzz targets and the end-to-end tests use; the
//! rest is `pub(crate)`, so that the compiler sees what nothing uses.
#![warn(unreachable_pub)]

mod btf;
pub mod cgroup;
pub mod cli;
pub mod correlate;
pub mod docs;
pub mod enrich;
mod error;
pub mod escape;
pub mod events;
pub mod handler_runs;
mod kernel_log;
pub mod knowledge;
mod launch;
mod loader;
pub mod metrics;
pub mod output;
pub mod signals;
pub mod stacks;
pub mod trace;

use std::io::Write as _;

pub use error::Error;

/// Runs the command line; returns the exit status.
pub fn run(cli: cli::Cli) -> Result<u8, Error> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match &cli.command {
        Some(cli::Command::Mask(args)) => knowledge::run_mask(args, &mut out)?,
        Some(cli::Command::Show(args)) => knowledge::run_show(args, &mut out)?,
        Some(cli::Command::Diff(args)) => knowledge::run_diff(args, &mut out)?,
        Some(cli::Command::Completions(args)) => docs::write_completions(args.shell, &mut out)?,
        Some(cli::Command::ManPages(args)) => {
            for page in docs::write_man_pages(args)? {
                writeln!(out, "{}", page.display())
                    .map_err(|e| Error::io("cannot write the output", e))?;
            }
        }
        None => {
            drop(out);
            return trace::run(&cli.trace);
        }
    }
    Ok(0)
}
