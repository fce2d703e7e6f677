//! Text that other processes or the kernel chose (comms, thread and tty names, paths, error
//! details) made safe for a terminal. sigtrace runs as root and prints names that any
//! unprivileged process can set with `prctl(PR_SET_NAME)`: written raw, an ESC or a newline
//! would let it clear root's screen, retitle the window or forge a whole line of the audit.
//!
//! Escaping follows strace's C-like style, so a line reads back unambiguously and every event
//! stays one line: `\\` for a backslash, `\n` `\r` `\t` by name, every other ASCII control
//! byte and DEL as `\x1b` (always two hex digits), each byte of invalid UTF-8 as `\xff`, and
//! the Unicode characters a terminal acts on or that reorder or hide text (C1 controls,
//! bidirectional overrides, zero-width characters) as `\u{202e}`. Everything else — letters
//! of any script, spaces, punctuation — is written as it is. JSON output escapes on its own.

use std::fmt;

/// Bytes displayed with control bytes and invalid UTF-8 escaped.
#[derive(Clone, Copy)]
pub struct Escaped<'a>(&'a [u8]);

/// Escapes arbitrary bytes (a kernel comm, a raw /proc field).
pub fn bytes(raw: &[u8]) -> Escaped<'_> {
    Escaped(raw)
}

/// Escapes a string (its control characters; it is valid UTF-8 already).
pub fn text(raw: &str) -> Escaped<'_> {
    Escaped(raw.as_bytes())
}

/// Escapes a kernel name field (comm, tty name): NUL-padded, cut at the first NUL.
pub(crate) fn kernel_name(field: &[u8]) -> Escaped<'_> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    Escaped(&field[..end])
}

/// Whether `c` must not reach a terminal as it is: it moves the cursor, starts a control
/// sequence, or reorders or hides the text around it.
fn is_unsafe_char(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'          // DEL and C1 controls (U+009B is a CSI on some terminals)
        | '\u{061c}'                   // Arabic letter mark
        | '\u{200b}'..='\u{200f}'      // zero-width characters, LRM, RLM
        | '\u{2028}'..='\u{202e}'      // line/paragraph separators, bidi embeddings/overrides
        | '\u{2060}'..='\u{2069}'      // word joiner, invisible operators, bidi isolates
        | '\u{feff}'                   // zero-width no-break space
    )
}

impl Escaped<'_> {
    /// Whether the bytes can be written unchanged: printable ASCII without a backslash — the
    /// common case, checked first so that ordinary names cost nothing extra.
    fn is_plain(&self) -> bool {
        self.0
            .iter()
            .all(|&b| (0x20..0x7f).contains(&b) && b != b'\\')
    }

    fn write_to(&self, out: &mut impl fmt::Write) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                match c {
                    '\\' => out.write_str("\\\\")?,
                    '\n' => out.write_str("\\n")?,
                    '\r' => out.write_str("\\r")?,
                    '\t' => out.write_str("\\t")?,
                    c if c.is_ascii() && is_unsafe_char(c) => write!(out, "\\x{:02x}", c as u32)?,
                    c if is_unsafe_char(c) => write!(out, "\\u{{{:x}}}", c as u32)?,
                    c => out.write_char(c)?,
                }
            }
            for byte in chunk.invalid() {
                write!(out, "\\x{byte:02x}")?;
            }
        }
        Ok(())
    }

    /// The escaped text's width in characters, for aligning columns.
    pub fn width(&self) -> usize {
        if self.is_plain() {
            return self.0.len();
        }
        let mut counter = CharCounter(0);
        // Counting cannot fail.
        let _ = self.write_to(&mut counter);
        counter.0
    }
}

struct CharCounter(usize);

impl fmt::Write for CharCounter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.chars().count();
        Ok(())
    }
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_plain() {
            // Printable ASCII is valid UTF-8: this cannot fail.
            let plain = std::str::from_utf8(self.0).map_err(|_| fmt::Error)?;
            return f.pad(plain);
        }
        if f.width().is_some() {
            // Padding counts characters of the escaped form, so build it first.
            let mut escaped = String::with_capacity(self.0.len() * 2);
            self.write_to(&mut escaped)?;
            return f.pad(&escaped);
        }
        self.write_to(f)
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(raw: &[u8]) -> String {
        bytes(raw).to_string()
    }

    #[test]
    fn ordinary_names_are_unchanged() {
        assert_eq!(esc(b"bash"), "bash");
        assert_eq!(esc(b"kworker/u8:3"), "kworker/u8:3");
        assert_eq!(esc(b"Web Content"), "Web Content");
        assert_eq!(text("café ☕ 日本").to_string(), "café ☕ 日本");
    }

    #[test]
    fn the_issue_s_hostile_name_stays_on_one_inert_line() {
        let hostile = b"\x1b[2J\x1b]0;pwn\x07\nFAKE";
        let shown = esc(hostile);
        assert_eq!(shown, "\\x1b[2J\\x1b]0;pwn\\x07\\nFAKE");
        assert!(shown.bytes().all(|b| (0x20..0x7f).contains(&b)));
    }

    #[test]
    fn controls_backslash_and_invalid_utf8() {
        assert_eq!(esc(b"a\rb\tc"), "a\\rb\\tc");
        assert_eq!(esc(b"a\\x1b"), "a\\\\x1b");
        assert_eq!(esc(b"\x7f\x01"), "\\x7f\\x01");
        assert_eq!(esc(b"ok\xff\xfe"), "ok\\xff\\xfe");
        // A truncated multi-byte character (comm cuts at 15 bytes): its bytes, escaped.
        assert_eq!(esc("é".as_bytes().split_at(1).0), "\\xc3");
    }

    #[test]
    fn terminal_acting_unicode_is_escaped() {
        assert_eq!(text("a\u{9b}31m").to_string(), "a\\u{9b}31m");
        assert_eq!(text("evil\u{202e}txt").to_string(), "evil\\u{202e}txt");
        assert_eq!(text("zero\u{200b}width").to_string(), "zero\\u{200b}width");
    }

    #[test]
    fn kernel_names_end_at_the_first_nul() {
        assert_eq!(kernel_name(b"perl\0\0\0junk").to_string(), "perl");
        assert_eq!(
            kernel_name(b"0123456789abcdef").to_string(),
            "0123456789abcdef"
        );
    }

    #[test]
    fn padding_counts_escaped_characters() {
        assert_eq!(format!("[{:<6}]", bytes(b"a\x1b")), "[a\\x1b ]");
        assert_eq!(format!("[{:<6}]", bytes(b"ab")), "[ab    ]");
        assert_eq!(bytes(b"a\x1b").width(), 5);
        assert_eq!(bytes(b"ab").width(), 2);
        assert_eq!(text("日本").width(), 2);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_escape_to_inert_single_line_text(raw: Vec<u8>) {
            let shown = esc(&raw);
            proptest::prop_assert!(!shown.chars().any(is_unsafe_char), "{:?}", shown);
            proptest::prop_assert_eq!(shown.chars().count(), bytes(&raw).width());
        }
    }
}
