//! What sigtrace knows about Linux signals: names and numbers (with the aliases and the
//! real-time names `kill -l` uses), default actions, one-line descriptions, dispositions,
//! signal masks (`mask`) and si_code / signal_generate result names (`codes`).
//!
//! A signal number that arrives from the kernel is an open set, so `Signal` is a newtype
//! over `i32` (as in rustix), not an enum: an unknown number prints as `SIG<n>` instead of
//! panicking or being squeezed into a variant.
//!
//! Real-time signals: the kernel's range is 32..=64, but glibc reserves 32 and 33 for its
//! thread implementation (32 cancels threads, 33 broadcasts set*id() to all threads), so its
//! SIGRTMIN is 34. Like `kill -l`, we name 34..=64 relative to glibc's SIGRTMIN/SIGRTMAX and
//! call 32 and 33 plainly `SIG32` and `SIG33` (bash's `kill -l` prints nothing for them).

mod codes;
pub mod interrupted;
mod mask;
pub mod sender;

// The numbering of the running architecture. x86_64 (and arm64, riscv, ...) use the
// asm-generic numbers; an architecture with its own (alpha, mips, sparc, parisc) gets a
// sibling file with the same items and a line here.
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "riscv64",
    target_arch = "loongarch64",
    target_arch = "s390x",
    target_arch = "powerpc64"
))]
#[path = "asm_generic.rs"]
mod arch;
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "riscv64",
    target_arch = "loongarch64",
    target_arch = "s390x",
    target_arch = "powerpc64"
)))]
compile_error!("no signal numbering for this architecture: add one next to signals/asm_generic.rs");

pub(crate) use arch::NSIG;
pub use arch::num;
pub(crate) use codes::{code_name, result_label, result_name};
pub use mask::{MaskFormat, ParseMaskError, SigSet};

use std::fmt;
use std::{borrow::Cow, sync::OnceLock};

/// What the kernel does with a signal whose disposition is SIG_DFL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DefaultAction {
    /// Terminate the process.
    Term,
    /// Terminate the process and dump core.
    Core,
    /// Stop the process.
    Stop,
    /// Continue the process if it is stopped.
    Cont,
    /// Ignore the signal.
    Ign,
}

impl DefaultAction {
    /// The name signal(7) uses in its table.
    pub fn as_str(self) -> &'static str {
        match self {
            DefaultAction::Term => "Term",
            DefaultAction::Core => "Core",
            DefaultAction::Stop => "Stop",
            DefaultAction::Cont => "Cont",
            DefaultAction::Ign => "Ign",
        }
    }
}

impl fmt::Display for DefaultAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A signal number as the kernel reports it. Any `i32` is representable; only 1..=64 are
/// real signals on this architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signal(pub i32);

/// The text given to `Signal::parse` names no signal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid signal {text:?}: expected a name like TERM or SIGRTMIN+3, or a number 1-{max}",
    max = NSIG
)]
pub struct ParseSignalError {
    /// The text as given.
    pub text: String,
}

impl Signal {
    /// All real signals, 1..=64, in number order.
    pub fn all() -> impl Iterator<Item = Signal> {
        (1..=NSIG).map(Signal)
    }

    /// Whether this is a signal that exists on this architecture (1..=64).
    pub fn is_valid(self) -> bool {
        (1..=NSIG).contains(&self.0)
    }

    /// Whether this is a real-time signal in the kernel's sense (32..=64, including the
    /// two glibc keeps for itself).
    pub(crate) fn is_realtime(self) -> bool {
        (num::KERNEL_SIGRTMIN..=num::SIGRTMAX).contains(&self.0)
    }

    fn standard(self) -> Option<&'static arch::Standard> {
        let index = usize::try_from(self.0.checked_sub(1)?).ok()?;
        arch::STANDARD.get(index)
    }

    /// The canonical name: "SIGTERM", "SIGRTMIN+3", "SIGRTMAX-1", "SIGRTMAX"; 32 and 33 are
    /// "SIG32"/"SIG33"; anything else (0, negative, above 64) is "SIG<n>".
    pub fn name(self) -> Cow<'static, str> {
        if let Some(standard) = self.standard() {
            return Cow::Borrowed(standard.name);
        }
        if self.is_realtime() {
            // Spelled once per run: names are written for every event of an RT signal.
            static REALTIME: OnceLock<Vec<Cow<'static, str>>> = OnceLock::new();
            let names = REALTIME.get_or_init(|| {
                (num::KERNEL_SIGRTMIN..=num::SIGRTMAX)
                    .map(|n| Signal(n).spelled())
                    .collect()
            });
            if let Some(name) = names.get((self.0 - num::KERNEL_SIGRTMIN) as usize) {
                return Cow::Borrowed(name);
            }
        }
        self.spelled()
    }

    /// The name of a signal without a standard one, spelled out.
    fn spelled(self) -> Cow<'static, str> {
        match rt_offset(self.0) {
            Some(RtName::Min(0)) => Cow::Borrowed("SIGRTMIN"),
            Some(RtName::Max(0)) => Cow::Borrowed("SIGRTMAX"),
            Some(RtName::Min(k)) => Cow::Owned(format!("SIGRTMIN+{k}")),
            Some(RtName::Max(k)) => Cow::Owned(format!("SIGRTMAX-{k}")),
            None => Cow::Owned(format!("SIG{}", self.0)),
        }
    }

    /// Other names for this signal (SIGIOT, SIGCLD, SIGPOLL, SIGUNUSED); empty for most.
    pub fn aliases(self) -> &'static [&'static str] {
        self.standard().map_or(&[], |standard| standard.aliases)
    }

    /// Parses a signal the way kill(1) and bash accept it, case-insensitively: "TERM",
    /// "sigterm", "SIGTERM", "15", "RTMIN+3", "SIGRTMAX-1", "SIG32", and the aliases
    /// SIGIOT, SIGPOLL, SIGCLD, SIGUNUSED. Numbers must be 1..=64.
    pub fn parse(text: &str) -> Result<Signal, ParseSignalError> {
        let error = || ParseSignalError {
            text: text.to_owned(),
        };
        let trimmed = text.trim();
        if trimmed.bytes().all(|b| b.is_ascii_digit()) && !trimmed.is_empty() {
            let number: i32 = trimmed.parse().map_err(|_| error())?;
            let signal = Signal(number);
            return if signal.is_valid() {
                Ok(signal)
            } else {
                Err(error())
            };
        }
        let upper = trimmed.to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        let wanted = format!("SIG{bare}");
        for standard in arch::STANDARD {
            if standard.name == wanted || standard.aliases.contains(&wanted.as_str()) {
                return Ok(Signal(standard.number));
            }
        }
        parse_realtime(bare).ok_or_else(error)
    }

    /// What SIG_DFL does with this signal. Real-time signals (and any number the kernel
    /// has no special case for) terminate the process, as in kernel/signal.c.
    pub fn default_action(self) -> DefaultAction {
        self.standard()
            .map_or(DefaultAction::Term, |standard| standard.action)
    }

    /// A one-line description of what the signal means.
    pub(crate) fn description(self) -> &'static str {
        if let Some(standard) = self.standard() {
            return standard.description;
        }
        match self.0 {
            num::SIGCANCEL => {
                "Reserved by glibc: thread cancellation (SIGCANCEL), not a SIGRTMIN signal"
            }
            num::SIGSETXID => {
                "Reserved by glibc: set*id() broadcast to threads (SIGSETXID), not a SIGRTMIN signal"
            }
            n if (num::SIGRTMIN..=num::SIGRTMAX).contains(&n) => {
                "Real-time signal (queued, meaning defined by the application)"
            }
            _ => "Not a signal on this architecture",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// How a real-time signal is named: relative to SIGRTMIN for the lower half of the range,
/// to SIGRTMAX for the upper half — the split glibc's and bash's `kill -l` use.
enum RtName {
    Min(i32),
    Max(i32),
}

fn rt_offset(number: i32) -> Option<RtName> {
    if !(num::SIGRTMIN..=num::SIGRTMAX).contains(&number) {
        return None;
    }
    let middle = num::SIGRTMIN + (num::SIGRTMAX - num::SIGRTMIN) / 2;
    if number <= middle {
        Some(RtName::Min(number - num::SIGRTMIN))
    } else {
        Some(RtName::Max(num::SIGRTMAX - number))
    }
}

/// "RTMIN", "RTMIN+3", "RTMAX-1", "32" (from "SIG32"): any offset that stays inside the
/// range is accepted, as kill(1) does, whichever half it names.
fn parse_realtime(bare: &str) -> Option<Signal> {
    let in_range = |n: i32| (num::SIGRTMIN..=num::SIGRTMAX).contains(&n);
    let offset = |digits: &str| -> Option<i32> {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    };
    let number = if let Some(rest) = bare.strip_prefix("RTMIN") {
        match rest.strip_prefix('+') {
            Some(digits) => num::SIGRTMIN.checked_add(offset(digits)?)?,
            None if rest.is_empty() => num::SIGRTMIN,
            None => return None,
        }
    } else if let Some(rest) = bare.strip_prefix("RTMAX") {
        match rest.strip_prefix('-') {
            Some(digits) => num::SIGRTMAX.checked_sub(offset(digits)?)?,
            None if rest.is_empty() => num::SIGRTMAX,
            None => return None,
        }
    } else {
        // "SIG32" / "SIG33" (and "SIG40" for symmetry with what `name` prints).
        let number = offset(bare)?;
        return Signal(number).is_realtime().then_some(Signal(number));
    };
    in_range(number).then_some(Signal(number))
}

/// What a process does with a signal when it arrives: the one model of a signal's action,
/// for the tracer (which reads the kernel's `sa_handler`) and for `show`/`diff` (which read
/// the SigCgt and SigIgn masks of /proc/PID/status). Named as /proc and `ps -o
/// caught,ignored` name it — caught, ignored, default — in the JSON of every command and in
/// the tables of `show` and `diff`; the trace's text lines spell it as sigaction(2) does
/// ([`Disposition::sigaction`]), next to results and outcomes that also say "ignored".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Disposition {
    /// SIG_DFL: the signal's default action applies.
    Default,
    /// SIG_IGN: the signal is discarded.
    Ignored,
    /// A handler is installed; its address in the process when known (the kernel's
    /// `sa_handler`; /proc tells only that there is one).
    Caught(Option<u64>),
}

impl Disposition {
    /// Decodes a raw `sa_handler` value: 0 is SIG_DFL, 1 SIG_IGN, anything else the address
    /// of a handler.
    pub(crate) fn from_sa_handler(raw: u64) -> Disposition {
        match raw {
            0 => Disposition::Default,
            1 => Disposition::Ignored,
            address => Disposition::Caught(Some(address)),
        }
    }

    /// From /proc/PID/status: caught if the signal is in SigCgt, ignored if in SigIgn.
    pub(crate) fn from_masks(sig: i32, caught: SigSet, ignored: SigSet) -> Disposition {
        if caught.contains(sig) {
            Disposition::Caught(None)
        } else if ignored.contains(sig) {
            Disposition::Ignored
        } else {
            Disposition::Default
        }
    }

    /// "caught", "ignored" or "default": the JSON `action` and the `show` table's word.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Disposition::Caught(_) => "caught",
            Disposition::Ignored => "ignored",
            Disposition::Default => "default",
        }
    }

    /// The handler's address, when a handler is installed and its address known.
    pub(crate) fn handler(self) -> Option<u64> {
        match self {
            Disposition::Caught(address) => address,
            _ => None,
        }
    }

    /// "caught", "ignored", "default: Term" — `show` and `diff`.
    pub(crate) fn describe(self, signal: Signal) -> String {
        match self {
            Disposition::Default => format!("default: {}", signal.default_action()),
            other => other.as_str().to_owned(),
        }
    }

    /// As sigaction(2) spells it, for the trace's text lines: "handler 0x55d1c2a3b4c0",
    /// "SIG_IGN", "SIG_DFL (Term)".
    pub(crate) fn sigaction(self, signal: Signal) -> impl fmt::Display {
        SigactionForm(self, signal)
    }
}

struct SigactionForm(Disposition, Signal);

impl fmt::Display for SigactionForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Disposition::Default => write!(f, "SIG_DFL ({})", self.1.default_action()),
            Disposition::Ignored => f.write_str("SIG_IGN"),
            Disposition::Caught(Some(address)) => write!(f, "handler {address:#x}"),
            Disposition::Caught(None) => f.write_str("handler"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_table_is_in_number_order() {
        for (index, standard) in arch::STANDARD.iter().enumerate() {
            assert_eq!(
                usize::try_from(standard.number - 1),
                Ok(index),
                "{}",
                standard.name
            );
        }
        assert_eq!(arch::STANDARD.len(), 31);
    }

    #[test]
    fn names_of_standard_realtime_and_unknown_signals() {
        assert_eq!(Signal(num::SIGTERM).name(), "SIGTERM");
        assert_eq!(Signal(num::SIGABRT).name(), "SIGABRT");
        assert_eq!(Signal(32).name(), "SIG32");
        assert_eq!(Signal(33).name(), "SIG33");
        assert_eq!(Signal(34).name(), "SIGRTMIN");
        assert_eq!(Signal(37).name(), "SIGRTMIN+3");
        assert_eq!(Signal(49).name(), "SIGRTMIN+15");
        assert_eq!(Signal(50).name(), "SIGRTMAX-14");
        assert_eq!(Signal(63).name(), "SIGRTMAX-1");
        assert_eq!(Signal(64).name(), "SIGRTMAX");
        assert_eq!(Signal(0).name(), "SIG0");
        assert_eq!(Signal(65).name(), "SIG65");
        assert_eq!(Signal(-3).name(), "SIG-3");
        assert_eq!(Signal(i32::MIN).to_string(), format!("SIG{}", i32::MIN));
    }

    #[test]
    fn parse_accepts_kill_forms_and_aliases() {
        let cases = [
            ("TERM", num::SIGTERM),
            ("sigterm", num::SIGTERM),
            ("SIGTERM", num::SIGTERM),
            (" 15 ", num::SIGTERM),
            ("RTMIN+3", 37),
            ("SIGRTMAX-1", 63),
            ("rtmin", 34),
            ("SIGRTMAX", 64),
            ("SIGRTMIN+20", 54),
            ("SIG32", 32),
            ("SIGIOT", num::SIGABRT),
            ("POLL", num::SIGIO),
            ("SIGCLD", num::SIGCHLD),
            ("UNUSED", num::SIGSYS),
            ("64", 64),
            ("1", 1),
        ];
        for (text, number) in cases {
            assert_eq!(Signal::parse(text), Ok(Signal(number)), "{text}");
        }
    }

    #[test]
    fn parse_rejects_what_is_not_a_signal() {
        for text in [
            "",
            "0",
            "65",
            "-1",
            "FOO",
            "SIG",
            "RTMIN+31",
            "RTMAX-31",
            "RTMIN-1",
            "RTMAX+1",
            "RTMIN+",
            "RTMIN+x",
            "SIG0",
            "SIG31x",
            "99999999999999",
            "+5",
        ] {
            assert!(Signal::parse(text).is_err(), "{text:?} parsed");
        }
        let message = Signal::parse("FOO").map_err(|e| e.to_string());
        assert_eq!(
            message,
            Err(
                "invalid signal \"FOO\": expected a name like TERM or SIGRTMIN+3, or a number 1-64"
                    .to_owned()
            )
        );
    }

    #[test]
    fn every_valid_signal_round_trips_through_its_name_and_aliases() {
        for signal in Signal::all() {
            assert_eq!(Signal::parse(&signal.name()), Ok(signal));
            for alias in signal.aliases() {
                assert_eq!(Signal::parse(alias), Ok(signal));
            }
            assert_eq!(Signal::parse(&signal.0.to_string()), Ok(signal));
        }
    }

    #[test]
    fn default_actions_follow_signal_7() {
        use DefaultAction::*;
        let cases = [
            (num::SIGHUP, Term),
            (num::SIGQUIT, Core),
            (num::SIGKILL, Term),
            (num::SIGSEGV, Core),
            (num::SIGCHLD, Ign),
            (num::SIGCONT, Cont),
            (num::SIGSTOP, Stop),
            (num::SIGTTOU, Stop),
            (num::SIGURG, Ign),
            (num::SIGWINCH, Ign),
            (num::SIGSYS, Core),
            (num::SIGRTMIN, Term),
            (num::SIGRTMAX, Term),
            (32, Term),
        ];
        for (number, action) in cases {
            assert_eq!(Signal(number).default_action(), action, "{number}");
        }
        assert_eq!(DefaultAction::Core.as_str(), "Core");
    }

    #[test]
    fn every_signal_has_a_description() {
        for signal in Signal::all() {
            assert!(!signal.description().is_empty(), "{signal}");
        }
        assert_eq!(Signal(0).description(), "Not a signal on this architecture");
    }

    #[test]
    fn disposition_decodes_sa_handler_and_masks() {
        let handler = Disposition::from_sa_handler(0x55d1c2a3b4c0);
        assert_eq!(Disposition::from_sa_handler(0), Disposition::Default);
        assert_eq!(Disposition::from_sa_handler(1), Disposition::Ignored);
        assert_eq!(handler, Disposition::Caught(Some(0x55d1c2a3b4c0)));
        assert_eq!(handler.handler(), Some(0x55d1c2a3b4c0));
        let (caught, ignored) = (SigSet(1 << 9), SigSet(1 << 1));
        assert_eq!(
            Disposition::from_masks(num::SIGUSR1, caught, ignored),
            Disposition::Caught(None)
        );
        assert_eq!(
            Disposition::from_masks(num::SIGINT, caught, ignored),
            Disposition::Ignored
        );
        assert_eq!(
            Disposition::from_masks(num::SIGTERM, caught, ignored),
            Disposition::Default
        );
        let words: Vec<&str> = [handler, Disposition::Ignored, Disposition::Default]
            .iter()
            .map(|d| d.as_str())
            .collect();
        assert_eq!(words, ["caught", "ignored", "default"]);
    }

    #[test]
    fn disposition_reads_as_sigaction_or_as_ps() {
        let term = Signal(num::SIGTERM);
        let chld = Signal(num::SIGCHLD);
        let handler = Disposition::from_sa_handler(0x55d1c2a3b4c0);
        assert_eq!(
            Disposition::Default.sigaction(term).to_string(),
            "SIG_DFL (Term)"
        );
        assert_eq!(
            Disposition::Default.sigaction(chld).to_string(),
            "SIG_DFL (Ign)"
        );
        assert_eq!(Disposition::Ignored.sigaction(term).to_string(), "SIG_IGN");
        assert_eq!(
            handler.sigaction(term).to_string(),
            "handler 0x55d1c2a3b4c0"
        );
        assert_eq!(Disposition::Default.describe(term), "default: Term");
        assert_eq!(Disposition::Ignored.describe(term), "ignored");
        assert_eq!(Disposition::Caught(None).describe(term), "caught");
    }
}
