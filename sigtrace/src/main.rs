//! The sigtrace binary: parse the command line, run, report an error once as
//! `sigtrace: {err}` with an exit status that means something (see `--help`).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = sigtrace::cli::Cli::parse();
    match sigtrace::run(cli) {
        Ok(status) => ExitCode::from(status),
        Err(sigtrace::Error::Io { source, .. })
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            ExitCode::SUCCESS
        }
        Err(err) => {
            // Errors can carry names other processes chose: escaped like every output.
            eprintln!("sigtrace: {}", sigtrace::escape::text(&err.to_string()));
            ExitCode::from(err.exit_code())
        }
    }
}
