//! The man pages and shell completion scripts, generated from the clap definition in
//! `cli` so that they never disagree with `--help`: `sigtrace completions SHELL` prints a
//! script (for users without the package), and the hidden `sigtrace man-pages DIR` writes
//! sigtrace.1 and a page per visible subcommand (what `cargo xtask dist` packages).

use std::{io::Write, path::PathBuf};

use clap::{Args, CommandFactory, ValueEnum};

use crate::{Error, cli::Cli};

/// The shells the package installs completions for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

impl From<Shell> for clap_complete::Shell {
    fn from(shell: Shell) -> Self {
        match shell {
            Shell::Bash => clap_complete::Shell::Bash,
            Shell::Zsh => clap_complete::Shell::Zsh,
            Shell::Fish => clap_complete::Shell::Fish,
        }
    }
}

/// Arguments of `sigtrace completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for. Load it with e.g. `source <(sigtrace completions bash)`,
    /// or save it where the shell looks: bash
    /// ~/.local/share/bash-completion/completions/sigtrace, zsh a file _sigtrace in a
    /// directory of $fpath, fish ~/.config/fish/completions/sigtrace.fish.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: Shell,
}

/// Arguments of `sigtrace man-pages`.
#[derive(Debug, Args)]
pub struct ManPagesArgs {
    /// The directory to write sigtrace.1 and sigtrace-SUBCOMMAND.1 into (created if missing).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// The command line as completion scripts should offer it: clap_complete lists hidden
/// subcommands too, and `man-pages` is for packaging only. clap cannot remove a subcommand,
/// so the command is rebuilt from the visible parts.
fn completion_command() -> clap::Command {
    let full = Cli::command();
    // `version` as the derive sets it (clap's Str takes static strings only).
    let mut cmd = clap::Command::new("sigtrace")
        .version(env!("CARGO_PKG_VERSION"))
        .args(full.get_arguments().cloned())
        .groups(full.get_groups().cloned())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
        .args_conflicts_with_subcommands(true);
    if let Some(about) = full.get_about() {
        cmd = cmd.about(about.clone());
    }
    cmd
}

/// The completion script for `shell`, written to `out`.
pub fn write_completions(shell: Shell, out: &mut dyn Write) -> Result<(), Error> {
    let mut cmd = completion_command();
    let name = cmd.get_name().to_owned();
    // clap_complete writes with no way to report an error; render into memory first, so
    // that a failed write (a closed pipe) is reported like every other output's.
    let mut script = Vec::new();
    clap_complete::generate(
        clap_complete::Shell::from(shell),
        &mut cmd,
        name,
        &mut script,
    );
    out.write_all(&script)
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("cannot write the completion script", e))
}

/// Writes the man pages into `args.dir`; returns their paths.
pub fn write_man_pages(args: &ManPagesArgs) -> Result<Vec<PathBuf>, Error> {
    let dir = &args.dir;
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    clap_mangen::generate_to(Cli::command(), dir).map_err(|e| {
        Error::io(
            format!("cannot write the man pages into {}", dir.display()),
            e,
        )
    })?;
    let mut pages: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("cannot list {}", dir.display()), e))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension().is_some_and(|ext| ext == "1")
                && path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("sigtrace"))
        })
        .collect();
    pages.sort();
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The man page of the main command, as roff.
    fn main_man_page() -> Result<Vec<u8>, Error> {
        let mut page = Vec::new();
        clap_mangen::Man::new(Cli::command())
            .render(&mut page)
            .map_err(|e| Error::io("cannot render the man page", e))?;
        Ok(page)
    }

    #[test]
    fn the_man_page_renders_with_the_main_flags() {
        let page = String::from_utf8(main_man_page().expect("renders")).expect("UTF-8");
        assert!(page.contains(".TH sigtrace 1"), "{page}");
        // roff escapes each '-' of an option as "\-".
        for flag in [
            r"\-\-pid",
            r"\-\-signal",
            r"\-\-format",
            r"\-\-output",
            r"\-\-cgroup",
        ] {
            assert!(page.contains(flag), "{flag} missing from:\n{page}");
        }
        assert!(page.contains("SIGTRACE_PROBE_MODE"), "{page}");
        // The hidden subcommand is for packaging only.
        assert!(!page.contains("man\\-pages"), "{page}");
    }

    #[test]
    fn man_pages_are_one_per_visible_command() {
        let dir = tempfile::tempdir().expect("tempdir");
        let args = ManPagesArgs {
            dir: dir.path().join("man1"),
        };
        let pages = write_man_pages(&args).expect("writes");
        let names: Vec<_> = pages
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect();
        assert_eq!(
            names,
            [
                "sigtrace-completions.1",
                "sigtrace-diff.1",
                "sigtrace-mask.1",
                "sigtrace-show.1",
                "sigtrace.1"
            ]
        );
        let mask = std::fs::read_to_string(args.dir.join("sigtrace-mask.1")).expect("read");
        assert!(mask.contains(".TH sigtrace-mask 1"), "{mask}");
    }

    #[test]
    fn the_completion_command_is_the_visible_command_line() {
        let cmd = completion_command();
        cmd.clone().debug_assert();
        let full = Cli::command();
        assert_eq!(cmd.get_name(), full.get_name());
        assert_eq!(cmd.get_version(), full.get_version());
        let names = |c: &clap::Command| {
            c.get_arguments()
                .map(|a| a.get_id().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&cmd), names(&full));
        let subcommands: Vec<_> = cmd.get_subcommands().map(|s| s.get_name()).collect();
        assert_eq!(subcommands, ["mask", "show", "diff", "completions"]);
    }

    #[test]
    fn each_completion_script_names_the_flags() {
        for shell in Shell::value_variants() {
            let mut script = Vec::new();
            write_completions(*shell, &mut script).expect("generates");
            let script = String::from_utf8(script).expect("UTF-8");
            // zsh and bash name the long flag in full, fish as `-l pid`.
            let names_pid = script.contains("--pid") || script.contains("-l pid");
            assert!(names_pid, "{shell:?}:\n{script}");
            assert!(script.contains("mask"), "{shell:?}:\n{script}");
            assert!(!script.contains("man-pages"), "{shell:?}:\n{script}");
        }
    }
}
