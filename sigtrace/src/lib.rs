//! sigtrace: who sent which signal to whom, what the recipient had installed for it, and
//! what happened next. All logic lives in this library so that it is testable without root;
//! `main.rs` only parses the command line and reports errors.

pub mod btf;
pub mod cli;
pub mod correlate;
pub mod enrich;
pub mod error;
pub mod escape;
pub mod events;
pub mod knowledge;
pub mod launch;
pub mod loader;
pub mod output;
pub mod signals;
pub mod trace;

pub use error::Error;

/// Runs the command line; returns the exit status.
pub fn run(cli: cli::Cli) -> Result<u8, Error> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match &cli.command {
        Some(cli::Command::Mask(args)) => knowledge::run_mask(args, &mut out)?,
        Some(cli::Command::Show(args)) => knowledge::run_show(args, &mut out)?,
        Some(cli::Command::Diff(args)) => knowledge::run_diff(args, &mut out)?,
        None => {
            drop(out);
            return trace::run(&cli.trace);
        }
    }
    Ok(0)
}
