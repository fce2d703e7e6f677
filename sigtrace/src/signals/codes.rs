//! Names for `si_code` values (who or what raised a signal) and for the result codes of the
//! `signal_generate` tracepoint.
//!
//! One table per concept, like strace's `src/xlat/siginfo_codes.in` and
//! `sig{ill,fpe,segv,bus,trap,chld,poll,sys}_codes.in`, and looked up the way strace's
//! `printsiginfo.c` does: the generic table first (codes ≤ 0 and SI_KERNEL mean the same for
//! every signal), then the signal's own table for positive codes. The caller prints the raw
//! number when neither names it.

use super::num;
use std::borrow::Cow;

/// A (value, name) pair of one code table.
type Table = &'static [(i32, &'static str)];

/// Codes meaning the same for every signal: include/uapi/asm-generic/siginfo.h
/// ("si_code values"). Non-positive codes come from user space, positive from the kernel.
const GENERIC: Table = &[
    (0, "SI_USER"),      // kill, sigsend, raise
    (0x80, "SI_KERNEL"), // sent by the kernel from somewhere
    (-1, "SI_QUEUE"),    // sigqueue
    (-2, "SI_TIMER"),    // POSIX timer expiration
    (-3, "SI_MESGQ"),    // POSIX message queue state change
    (-4, "SI_ASYNCIO"),  // AIO completion
    (-5, "SI_SIGIO"),    // queued SIGIO
    (-6, "SI_TKILL"),    // tkill / tgkill
    (-7, "SI_DETHREAD"), // execve() killing the other threads
    (-60, "SI_ASYNCNL"), // glibc asynchronous name lookup completion
];

// The per-signal tables below: include/uapi/asm-generic/siginfo.h, plus the codes added by
// later kernels (SEGV_MTEAERR/MTESERR 5.10, SYS_USER_DISPATCH 5.11, TRAP_PERF 5.13,
// SEGV_CPERR 6.6). The "__"-prefixed ia64-only codes are left out: x86_64 never sends them.

const ILL: Table = &[
    (1, "ILL_ILLOPC"),
    (2, "ILL_ILLOPN"),
    (3, "ILL_ILLADR"),
    (4, "ILL_ILLTRP"),
    (5, "ILL_PRVOPC"),
    (6, "ILL_PRVREG"),
    (7, "ILL_COPROC"),
    (8, "ILL_BADSTK"),
    (9, "ILL_BADIADDR"),
];

const FPE: Table = &[
    (1, "FPE_INTDIV"),
    (2, "FPE_INTOVF"),
    (3, "FPE_FLTDIV"),
    (4, "FPE_FLTOVF"),
    (5, "FPE_FLTUND"),
    (6, "FPE_FLTRES"),
    (7, "FPE_FLTINV"),
    (8, "FPE_FLTSUB"),
    (14, "FPE_FLTUNK"),
    (15, "FPE_CONDTRAP"),
];

const SEGV: Table = &[
    (1, "SEGV_MAPERR"),
    (2, "SEGV_ACCERR"),
    (3, "SEGV_BNDERR"),
    (4, "SEGV_PKUERR"),
    (5, "SEGV_ACCADI"),
    (6, "SEGV_ADIDERR"),
    (7, "SEGV_ADIPERR"),
    (8, "SEGV_MTEAERR"),
    (9, "SEGV_MTESERR"),
    (10, "SEGV_CPERR"),
];

const BUS: Table = &[
    (1, "BUS_ADRALN"),
    (2, "BUS_ADRERR"),
    (3, "BUS_OBJERR"),
    (4, "BUS_MCEERR_AR"),
    (5, "BUS_MCEERR_AO"),
];

const TRAP: Table = &[
    (1, "TRAP_BRKPT"),
    (2, "TRAP_TRACE"),
    (3, "TRAP_BRANCH"),
    (4, "TRAP_HWBKPT"),
    (5, "TRAP_UNK"),
    (6, "TRAP_PERF"),
];

const CHLD: Table = &[
    (1, "CLD_EXITED"),
    (2, "CLD_KILLED"),
    (3, "CLD_DUMPED"),
    (4, "CLD_TRAPPED"),
    (5, "CLD_STOPPED"),
    (6, "CLD_CONTINUED"),
];

const POLL: Table = &[
    (1, "POLL_IN"),
    (2, "POLL_OUT"),
    (3, "POLL_MSG"),
    (4, "POLL_ERR"),
    (5, "POLL_PRI"),
    (6, "POLL_HUP"),
];

const SYS: Table = &[(1, "SYS_SECCOMP"), (2, "SYS_USER_DISPATCH")];

fn lookup(table: Table, code: i32) -> Option<&'static str> {
    table
        .iter()
        .find(|(value, _)| *value == code)
        .map(|(_, name)| *name)
}

/// The signal's own si_code table, if it has one.
fn signal_table(sig: i32) -> Option<Table> {
    Some(match sig {
        num::SIGILL => ILL,
        num::SIGFPE => FPE,
        num::SIGSEGV => SEGV,
        num::SIGBUS => BUS,
        num::SIGTRAP => TRAP,
        num::SIGCHLD => CHLD,
        num::SIGIO => POLL,
        num::SIGSYS => SYS,
        _ => return None,
    })
}

/// The name of `code` as an si_code of signal `sig` ("SI_TKILL", "SEGV_MAPERR",
/// "CLD_EXITED"), or `None` when no table names it (the caller prints the number).
pub(crate) fn code_name(sig: i32, code: i32) -> Option<&'static str> {
    if let Some(name) = lookup(GENERIC, code) {
        return Some(name);
    }
    if code > 0 {
        return lookup(signal_table(sig)?, code);
    }
    None
}

/// The `signal_generate` tracepoint's `res` values ([`sigtrace_common::result`], indexed by
/// them): the name the text and JSON show, and the same spelled as a metrics label.
const RESULTS: [(&str, &str); 5] = [
    ("delivered", "delivered"),
    ("ignored", "ignored"),
    ("already pending", "already_pending"),
    ("overflow", "overflow"),
    ("lose info", "lose_info"),
];

/// The name of the `signal_generate` tracepoint's `res` field ([`sigtrace_common::result`]).
/// "delivered" means queued, not yet handled.
pub(crate) fn result_name(result: u32) -> Cow<'static, str> {
    match RESULTS.get(result as usize) {
        Some((name, _)) => Cow::Borrowed(name),
        None => Cow::Owned(format!("result {result}")),
    }
}

/// [`result_name`] as a label value: no spaces, and one value for whatever is unknown.
pub(crate) fn result_label(result: u32) -> &'static str {
    RESULTS
        .get(result as usize)
        .map_or("other", |(_, label)| label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generic_codes_win_for_every_signal() {
        assert_eq!(code_name(num::SIGTERM, 0), Some("SI_USER"));
        assert_eq!(code_name(num::SIGSEGV, 0x80), Some("SI_KERNEL"));
        assert_eq!(code_name(num::SIGUSR1, -1), Some("SI_QUEUE"));
        assert_eq!(code_name(num::SIGALRM, -2), Some("SI_TIMER"));
        assert_eq!(code_name(num::SIGKILL, -6), Some("SI_TKILL"));
        assert_eq!(code_name(num::SIGKILL, -7), Some("SI_DETHREAD"));
        assert_eq!(code_name(num::SIGRTMIN, -60), Some("SI_ASYNCNL"));
    }

    #[test]
    fn positive_codes_use_the_signal_s_own_table() {
        assert_eq!(code_name(num::SIGSEGV, 1), Some("SEGV_MAPERR"));
        assert_eq!(code_name(num::SIGSEGV, 10), Some("SEGV_CPERR"));
        assert_eq!(code_name(num::SIGCHLD, 1), Some("CLD_EXITED"));
        assert_eq!(code_name(num::SIGCHLD, 6), Some("CLD_CONTINUED"));
        assert_eq!(code_name(num::SIGILL, 9), Some("ILL_BADIADDR"));
        assert_eq!(code_name(num::SIGFPE, 1), Some("FPE_INTDIV"));
        assert_eq!(code_name(num::SIGBUS, 5), Some("BUS_MCEERR_AO"));
        assert_eq!(code_name(num::SIGTRAP, 4), Some("TRAP_HWBKPT"));
        assert_eq!(code_name(num::SIGPOLL, 6), Some("POLL_HUP"));
        assert_eq!(code_name(num::SIGSYS, 1), Some("SYS_SECCOMP"));
    }

    #[test]
    fn unknown_codes_have_no_name() {
        assert_eq!(code_name(num::SIGTERM, 1), None);
        assert_eq!(code_name(num::SIGSEGV, 11), None);
        assert_eq!(code_name(num::SIGCHLD, -8), None);
        assert_eq!(code_name(0, 3), None);
        assert_eq!(code_name(i32::MAX, i32::MIN), None);
    }

    #[test]
    fn result_names() {
        assert_eq!(result_name(0), "delivered");
        assert_eq!(result_name(1), "ignored");
        assert_eq!(result_name(2), "already pending");
        assert_eq!(result_name(3), "overflow");
        assert_eq!(
            result_label(sigtrace_common::result::ALREADY_PENDING),
            "already_pending"
        );
        assert_eq!(
            result_label(sigtrace_common::result::LOSE_INFO),
            "lose_info"
        );
        assert_eq!(result_label(99), "other");
        assert_eq!(result_name(4), "lose info");
        assert_eq!(result_name(5), "result 5");
        assert_eq!(result_name(u32::MAX), format!("result {}", u32::MAX));
    }
}
