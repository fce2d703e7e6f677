//! The text of /proc/PID/status and /proc/PID/stat, as `sigtrace show` and `diff` read it:
//! any process chooses its own name, which both files contain, so their bytes are partly
//! untrusted. The whole input goes to both parsers. What must hold:
//! - neither panics: an error or a value;
//! - a status line in the kernel's own shape (`SigCgt:\t` and at most 16 hex digits) reads
//!   as the same mask through procfs (what `show` uses) and through `SigSet::parse` (what
//!   `sigtrace mask` uses on a pasted line);
//! - a parsed stat's terminal number splits into a major and a minor as `show` does it,
//!   and its name is text of the line.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sigtrace::{
    knowledge::{parse_stat, parse_status},
    signals::SigSet,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(status) = parse_status(data) {
        let fields = [
            ("SigPnd", status.sigpnd),
            ("ShdPnd", status.shdpnd),
            ("SigBlk", status.sigblk),
            ("SigIgn", status.sigign),
            ("SigCgt", status.sigcgt),
        ];
        for (label, value) in fields {
            if let Some(text) = last_value(data, label) {
                let kernel_shaped =
                    (1..=16).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_hexdigit());
                if kernel_shaped {
                    let pasted = format!("{label}:\t{text}");
                    assert_eq!(SigSet::parse(&pasted), Ok(SigSet(value)), "{pasted:?}");
                }
            }
        }
    }
    if let Ok(stat) = parse_stat(data) {
        if stat.tty_nr != 0 {
            let (major, minor) = stat.tty_nr();
            let _ = (major.unsigned_abs(), minor.unsigned_abs());
        }
        // The name is the text between the first `(` and the last `)`.
        assert!(String::from_utf8_lossy(data).contains(&stat.comm));
    }
});

/// The value procfs takes for `label`: the last line whose text before the first `:` is
/// exactly the label, up to the next `:`, trimmed (procfs keeps the last of repeated keys).
fn last_value(data: &[u8], label: &str) -> Option<String> {
    let text = String::from_utf8_lossy(data);
    text.lines().rev().find_map(|line| {
        let mut parts = line.split(':');
        (parts.next() == Some(label)).then(|| parts.next().unwrap_or("").trim().to_owned())
    })
}
