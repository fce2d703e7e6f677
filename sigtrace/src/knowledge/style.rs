//! Colour for the text output: on only when asked for, or when standard output is a
//! terminal and NO_COLOR is unset or empty (https://no-color.org). Every coloured cell is
//! padded before it is painted, so escape codes never break column alignment, and nothing
//! is conveyed by colour alone (differences are also marked with `*`).

use super::ColorChoice;
use std::io::IsTerminal;

/// Whether to colour, decided once per command.
#[derive(Clone, Copy, Debug)]
pub(super) struct Style {
    enabled: bool,
}

/// The few colours the commands use, named for what they mean.
#[derive(Clone, Copy, Debug)]
pub(super) enum Paint {
    /// A handler is installed.
    Caught,
    /// SIG_IGN.
    Ignored,
    /// Blocked by the thread's mask.
    Blocked,
    /// Pending: something the process has not taken yet.
    Pending,
    /// A difference between two processes.
    Differs,
    /// Headings.
    Heading,
}

impl Paint {
    fn code(self) -> &'static str {
        match self {
            Paint::Caught => "32",    // green
            Paint::Ignored => "33",   // yellow
            Paint::Blocked => "36",   // cyan
            Paint::Pending => "1;31", // bold red
            Paint::Differs => "1;7",  // bold reverse video: visible on any theme
            Paint::Heading => "1",    // bold
        }
    }
}

impl Style {
    /// Decides from the user's choice, whether stdout is a terminal, and NO_COLOR.
    pub(super) fn new(choice: ColorChoice) -> Style {
        let enabled = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
                !no_color && std::io::stdout().is_terminal()
            }
        };
        Style { enabled }
    }

    /// `text` (already padded) in `paint`, or unchanged when colour is off.
    pub(super) fn paint(self, paint: Paint, text: &str) -> String {
        if self.enabled {
            format!("\x1b[{}m{text}\x1b[0m", paint.code())
        } else {
            text.to_owned()
        }
    }

    /// Like `paint`, but only when `on`.
    pub(super) fn paint_if(self, on: bool, paint: Paint, text: &str) -> String {
        if on {
            self.paint(paint, text)
        } else {
            text.to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_means_plain_and_always_means_escapes() {
        assert_eq!(
            Style::new(ColorChoice::Never).paint(Paint::Caught, "x"),
            "x"
        );
        assert_eq!(
            Style::new(ColorChoice::Always).paint(Paint::Caught, "x"),
            "\x1b[32mx\x1b[0m"
        );
        assert_eq!(
            Style::new(ColorChoice::Always).paint_if(false, Paint::Caught, "x"),
            "x"
        );
    }
}
