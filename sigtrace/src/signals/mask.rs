//! Signal masks (sigset_t): one 64-bit word on x86_64, bit n-1 standing for signal n.
//!
//! The same mask turns up in many spellings — `0x4b813efb` in code and bug reports, the
//! zero-padded 16 hex digits of `ps -o caught` and of `/proc/PID/status` lines (which people
//! paste with their label), occasionally decimal — and is wanted back as names, a bit string
//! or a table. `SigSet::parse` accepts all of those; `SigSet::format` writes each format so
//! that `parse_as(format(set, f), f) == set` (checked by property tests).

use super::{NSIG, ParseSignalError, Signal};
use std::fmt::Write as _;

/// A set of signals 1..=64: bit (n-1) is signal n, as in the kernel's sigset_t and in
/// /proc/PID/status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SigSet(pub u64);

/// The ways a mask is written out (and read back with [`SigSet::parse_as`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MaskFormat {
    /// `0x000000004b813eff`: 16 hex digits with a prefix.
    Hex,
    /// `000000004b813eff`: what `ps -o caught` and /proc/PID/status print.
    Ps,
    /// `1266761471`.
    Decimal,
    /// `0b00000000_..._11111111`: 64 binary digits, signal 64 first, grouped by 8.
    Bits,
    /// `SIGHUP SIGINT ...`: canonical names in number order, space-separated.
    Names,
    /// One row per signal in the set: bit, number, name, default action, description.
    Table,
}

impl MaskFormat {
    /// Every format, for callers (and tests) that want them all.
    pub const ALL: [MaskFormat; 6] = [
        MaskFormat::Hex,
        MaskFormat::Ps,
        MaskFormat::Decimal,
        MaskFormat::Bits,
        MaskFormat::Names,
        MaskFormat::Table,
    ];
}

const EXPECTED: &str = "expected hex like 0x4b813efb or 000000004b813efb, a decimal number, \
    or a /proc/PID/status line like \"SigCgt: 0000000000014002\"";

/// The text given as a mask is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseMaskError {
    /// Nothing to parse.
    #[error("empty mask: {EXPECTED}")]
    Empty,
    /// Not a number in any accepted form.
    #[error("invalid mask {text:?}: {EXPECTED}")]
    Invalid { text: String },
    /// A number, but wider than a signal mask.
    #[error(
        "mask {text:?} has more than 64 bits: a signal mask holds one bit for each signal 1-64"
    )]
    TooWide { text: String },
    /// A name list or table naming something that is not a signal.
    #[error("invalid mask {text:?}: {source}")]
    Signal {
        text: String,
        #[source]
        source: ParseSignalError,
    },
}

impl SigSet {
    /// The set with no signals.
    pub(crate) const EMPTY: SigSet = SigSet(0);

    /// The set of the given signals; numbers outside 1..=64 are left out, since a mask
    /// cannot hold them.
    pub fn from_signals(signals: impl IntoIterator<Item = Signal>) -> SigSet {
        let mut set = SigSet::EMPTY;
        for signal in signals {
            set.insert(signal.0);
        }
        set
    }

    fn bit(sig: i32) -> Option<u64> {
        (1..=NSIG).contains(&sig).then(|| 1u64 << (sig - 1))
    }

    /// Adds signal `sig`; a number outside 1..=64 is ignored (a mask cannot hold it).
    pub fn insert(&mut self, sig: i32) {
        if let Some(bit) = SigSet::bit(sig) {
            self.0 |= bit;
        }
    }

    /// Whether signal `sig` is in the set; false for numbers outside 1..=64.
    pub fn contains(self, sig: i32) -> bool {
        SigSet::bit(sig).is_some_and(|bit| self.0 & bit != 0)
    }

    /// The signals in the set, lowest number first.
    pub fn iter(self) -> impl Iterator<Item = Signal> {
        Signal::all().filter(move |signal| self.contains(signal.0))
    }

    /// Number of signals in the set.
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// Whether the set holds no signal.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Canonical names of the signals in the set, lowest number first.
    pub fn names(self) -> Vec<String> {
        self.iter()
            .map(|signal| signal.name().into_owned())
            .collect()
    }

    /// `0x` and 16 hex digits.
    pub fn hex(self) -> String {
        format!("{:#018x}", self.0)
    }

    /// 16 hex digits, as `ps -o caught` and /proc/PID/status print them.
    pub fn ps(self) -> String {
        format!("{:016x}", self.0)
    }

    /// `0b` and 64 binary digits, signal 64 first, in groups of 8 separated by `_`.
    pub fn bits(self) -> String {
        let digits = format!("{:064b}", self.0);
        let groups: Vec<&str> = (0..8).map(|i| &digits[i * 8..(i + 1) * 8]).collect();
        format!("0b{}", groups.join("_"))
    }

    /// A table of the signals in the set: bit, number, name, default action, description.
    /// An empty set is the header alone.
    pub fn table(self) -> String {
        let mut text = format!(
            "{:>3}  {:>3}  {:<12} {:<6} {}\n",
            "BIT", "NUM", "NAME", "ACTION", "DESCRIPTION"
        );
        for signal in self.iter() {
            // Writing to a String cannot fail.
            let _ = writeln!(
                text,
                "{:>3}  {:>3}  {:<12} {:<6} {}",
                signal.0 - 1,
                signal.0,
                signal.name(),
                signal.default_action().as_str(),
                signal.description()
            );
        }
        text
    }

    /// The set written in `format`.
    pub fn format(self, format: MaskFormat) -> String {
        match format {
            MaskFormat::Hex => self.hex(),
            MaskFormat::Ps => self.ps(),
            MaskFormat::Decimal => self.0.to_string(),
            MaskFormat::Bits => self.bits(),
            MaskFormat::Names => self.names().join(" "),
            MaskFormat::Table => self.table(),
        }
    }

    /// Parses a mask in any numeric spelling:
    /// - exactly 16 hex digits is the zero-padded form of `ps` and /proc: hex;
    /// - `0x4b813efb` (hex; `_` separators allowed), `0b1010` (binary, as [`SigSet::bits`]);
    /// - a pasted /proc line, `SigCgt:\t0000000000014002`: the value after the label is hex;
    /// - digits containing a-f, or starting with `0` (the zero-padded form of `ps` and
    ///   /proc, `000000004b813efb`), are hex;
    /// - other digits are decimal (`1266761471`): decimal numbers never start with 0. A
    ///   16-digit decimal number reads as hex (the ps form wins); `parse_as` with
    ///   `MaskFormat::Decimal` reads it as decimal.
    ///
    /// A value wider than 64 bits is an error, not a truncation.
    pub fn parse(text: &str) -> Result<SigSet, ParseMaskError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(ParseMaskError::Empty);
        }
        if let Some((label, value)) = trimmed.rsplit_once(':') {
            let label_ok = !label.trim().is_empty()
                && label
                    .trim()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !label_ok {
                return Err(invalid(text));
            }
            let value = value.trim();
            let digits = strip_prefix_ci(value, "0x").unwrap_or(value);
            return parse_radix(digits, 16, text);
        }
        // Exactly 16 hex digits is the zero-padded form of ps and /proc, even when it starts
        // with "0b" (as 0b00000000000001 does): checked before the binary prefix.
        if trimmed.len() == 16 && trimmed.chars().all(|c| c.is_ascii_hexdigit()) {
            return parse_radix(trimmed, 16, text);
        }
        if let Some(digits) = strip_prefix_ci(trimmed, "0x") {
            return parse_radix(digits, 16, text);
        }
        if let Some(digits) = strip_prefix_ci(trimmed, "0b") {
            return parse_radix(digits, 2, text);
        }
        if trimmed.len() > 1 && trimmed.starts_with('0')
            || trimmed
                .chars()
                .any(|c| c.is_ascii_hexdigit() && !c.is_ascii_digit())
        {
            return parse_radix(trimmed, 16, text);
        }
        parse_radix(trimmed, 10, text)
    }

    /// Parses text written by [`SigSet::format`] in `format`. The numeric formats go
    /// through [`SigSet::parse`], except that `Decimal` is always decimal and `Ps` always hex.
    pub fn parse_as(text: &str, format: MaskFormat) -> Result<SigSet, ParseMaskError> {
        match format {
            MaskFormat::Hex | MaskFormat::Bits => SigSet::parse(text),
            MaskFormat::Ps => {
                let trimmed = text.trim();
                let digits = strip_prefix_ci(trimmed, "0x").unwrap_or(trimmed);
                parse_radix(digits, 16, text)
            }
            MaskFormat::Decimal => parse_radix(text.trim(), 10, text),
            MaskFormat::Names => SigSet::parse_names(text),
            MaskFormat::Table => {
                // The second column of every row after the header is the signal number.
                let mut set = SigSet::EMPTY;
                for line in text.lines().skip(1).filter(|line| !line.trim().is_empty()) {
                    let number = line.split_whitespace().nth(1).unwrap_or_default();
                    set.insert(parse_signal(number, text)?.0);
                }
                Ok(set)
            }
        }
    }

    /// Parses a list of signals separated by spaces, commas or `|`: "SIGHUP SIGINT",
    /// "hup,int,usr1", "9". Names are as [`Signal::parse`] accepts them. An empty list is
    /// the empty set.
    pub fn parse_names(text: &str) -> Result<SigSet, ParseMaskError> {
        let mut set = SigSet::EMPTY;
        for word in text
            .split(|c: char| c.is_whitespace() || c == ',' || c == '|')
            .filter(|word| !word.is_empty())
        {
            set.insert(parse_signal(word, text)?.0);
        }
        Ok(set)
    }
}

impl std::fmt::Display for SigSet {
    /// The hex form, `0x000000004b813eff`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hex())
    }
}

fn invalid(text: &str) -> ParseMaskError {
    ParseMaskError::Invalid {
        text: text.to_owned(),
    }
}

fn parse_signal(word: &str, text: &str) -> Result<Signal, ParseMaskError> {
    Signal::parse(word).map_err(|source| ParseMaskError::Signal {
        text: text.to_owned(),
        source,
    })
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// Parses digits in `radix` (underscores allowed between digits for hex and binary),
/// telling "too wide" apart from "not a number".
fn parse_radix(digits: &str, radix: u32, text: &str) -> Result<SigSet, ParseMaskError> {
    let cleaned: String = if radix == 10 {
        digits.to_owned()
    } else {
        digits.chars().filter(|&c| c != '_').collect()
    };
    if cleaned.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || !cleaned.chars().all(|c| c.is_digit(radix))
    {
        return Err(invalid(text));
    }
    match u64::from_str_radix(&cleaned, radix) {
        Ok(value) => Ok(SigSet(value)),
        // All digits were valid, so the only way to fail is overflow.
        Err(_) => Err(ParseMaskError::TooWide {
            text: text.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::num;
    use super::*;
    use proptest::prelude::*;

    const STORY: &[&str] = &[
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGCHLD",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGWINCH",
        "SIGSYS",
    ];

    #[test]
    fn the_story_s_mask_names_canonically() {
        let set = SigSet::parse("0x000000004b813eff");
        assert_eq!(
            set.map(SigSet::names),
            Ok(STORY.iter().map(|s| s.to_string()).collect())
        );
    }

    #[test]
    fn every_input_spelling_gives_the_same_set() {
        let expected = Ok(SigSet(0x4b81_3efb));
        for text in [
            "0x4b813efb",
            "0X4B813EFB",
            "0x0000_0000_4b81_3efb",
            "000000004b813efb",
            "4b813efb",
            "1266761467",
            "SigCgt:\t000000004b813efb",
            "  ShdPnd:  000000004b813efb\n",
            "0b1001011100000010011111011111011",
        ] {
            assert_eq!(SigSet::parse(text), expected, "{text:?}");
        }
        assert_eq!(
            SigSet::parse("SigCgt:\t0000000000014002"),
            Ok(SigSet(0x14002))
        );
        assert_eq!(SigSet::parse("0"), Ok(SigSet::EMPTY));
        assert_eq!(SigSet::parse("0000000000000010"), Ok(SigSet(0x10)));
        assert_eq!(SigSet::parse("10"), Ok(SigSet(10)));
        // 16 digits is the ps/proc form, even when it could be decimal.
        assert_eq!(SigSet::parse("1000000000000000"), Ok(SigSet(1 << 60)));
        assert_eq!(
            SigSet::parse_as("1000000000000000", MaskFormat::Decimal),
            Ok(SigSet(1_000_000_000_000_000))
        );
        assert_eq!(
            SigSet::parse("0b00000000000001"),
            Ok(SigSet(0x0b00_0000_0000_0001))
        );
    }

    #[test]
    fn too_wide_and_garbage_are_errors_that_say_so() {
        for text in [
            "0x1ffffffffffffffff",
            "18446744073709551616",
            "SigCgt: 10000000000000000",
            "0b1_00000000_00000000_00000000_00000000_00000000_00000000_00000000_00000000",
        ] {
            assert_eq!(
                SigSet::parse(text),
                Err(ParseMaskError::TooWide {
                    text: text.to_owned()
                }),
                "{text:?}"
            );
        }
        // Leading zeros do not make a mask wide.
        assert_eq!(SigSet::parse("0x00000000000000000001"), Ok(SigSet(1)));
        for text in [
            "0xzz",
            "0x",
            "hello",
            "12g",
            "-1",
            "+1",
            ": 12",
            "Sig Cgt: 1",
            "0x_1",
            "0b2",
            "1.5",
        ] {
            assert_eq!(
                SigSet::parse(text),
                Err(ParseMaskError::Invalid {
                    text: text.to_owned()
                }),
                "{text:?}"
            );
        }
        assert_eq!(SigSet::parse("   "), Err(ParseMaskError::Empty));
        let message = SigSet::parse("0x1ffffffffffffffff").map_err(|e| e.to_string());
        assert_eq!(
            message,
            Err(
                "mask \"0x1ffffffffffffffff\" has more than 64 bits: a signal mask holds one bit \
                 for each signal 1-64"
                    .to_owned()
            )
        );
    }

    #[test]
    fn membership_and_iteration() {
        let set = SigSet::from_signals([
            Signal(num::SIGINT),
            Signal(num::SIGUSR1),
            Signal(64),
            Signal(0),
            Signal(65),
        ]);
        assert_eq!(set, SigSet(0x8000_0000_0000_0202));
        assert!(set.contains(num::SIGINT));
        assert!(set.contains(64));
        assert!(!set.contains(0));
        assert!(!set.contains(65));
        assert!(!set.contains(-1));
        assert_eq!(set.len(), 3);
        assert_eq!(set.names(), ["SIGINT", "SIGUSR1", "SIGRTMAX"]);
        assert_eq!(set.iter().map(|s| s.0).collect::<Vec<_>>(), [2, 10, 64]);
    }

    #[test]
    fn formats_look_as_documented() {
        let set = SigSet(0x14002);
        assert_eq!(set.hex(), "0x0000000000014002");
        assert_eq!(set.ps(), "0000000000014002");
        assert_eq!(set.format(MaskFormat::Decimal), "81922");
        assert_eq!(
            set.bits(),
            "0b00000000_00000000_00000000_00000000_00000000_00000001_01000000_00000010"
        );
        assert_eq!(set.format(MaskFormat::Names), "SIGINT SIGTERM SIGCHLD");
        let table = set.table();
        assert_eq!(table.lines().count(), 4);
        assert_eq!(
            table
                .lines()
                .nth(3)
                .map(|row| row.split_whitespace().take(4).collect::<Vec<_>>()),
            Some(vec!["16", "17", "SIGCHLD", "Ign"])
        );
    }

    #[test]
    fn names_list_parsing() {
        assert_eq!(
            SigSet::parse_names("hup,int | SIGUSR1 9"),
            Ok(SigSet(0x303))
        );
        assert_eq!(SigSet::parse_names(""), Ok(SigSet::EMPTY));
        assert!(matches!(
            SigSet::parse_names("INT FOO"),
            Err(ParseMaskError::Signal { .. })
        ));
    }

    proptest! {
        // No regression files: they would land outside this module's directory; a failure
        // prints the minimal input, which belongs in a named unit test above.
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]
        #[test]
        fn every_format_round_trips(raw in any::<u64>()) {
            round_trip(SigSet(raw))?;
        }

        /// Masks of a few signals: small numbers, where decimal and hex look alike.
        #[test]
        fn sparse_masks_round_trip(numbers in proptest::collection::vec(1..=NSIG, 0..5)) {
            round_trip(SigSet::from_signals(numbers.into_iter().map(Signal)))?;
        }
    }

    fn round_trip(set: SigSet) -> Result<(), TestCaseError> {
        let raw = set.0;
        for format in MaskFormat::ALL {
            prop_assert_eq!(
                SigSet::parse_as(&set.format(format), format),
                Ok(set),
                "{:?}",
                format
            );
        }
        // The auto-detecting parser reads every numeric format back too; decimal only
        // when it cannot be taken for the zero-padded hex of ps and /proc (a leading 0,
        // or exactly 16 digits — then --decimal / parse_as is what reads it).
        for format in [MaskFormat::Hex, MaskFormat::Ps, MaskFormat::Bits] {
            prop_assert_eq!(SigSet::parse(&set.format(format)), Ok(set), "{:?}", format);
        }
        prop_assert_eq!(SigSet::parse(&format!("SigBlk:\t{}", set.ps())), Ok(set));
        let decimal = set.format(MaskFormat::Decimal);
        if raw != 0 && decimal.len() != 16 {
            prop_assert_eq!(SigSet::parse(&decimal), Ok(set));
        }
        Ok(())
    }
}
