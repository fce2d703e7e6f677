//! Signal numbers, names and default actions for x86_64, whose numbering
//! (arch/x86/include/uapi/asm/signal.h) is the asm-generic one
//! (include/uapi/asm-generic/signal.h) that arm64, riscv and loongarch use too.
//!
//! Another architecture with its own numbering (alpha, mips, sparc, parisc) gets a sibling
//! file exporting the same items (`num`, `STANDARD`, `NSIG`), selected in `signals/mod.rs`.

use super::DefaultAction::{self, Cont, Core, Ign, Stop, Term};

/// Named signal numbers, so that no other module hard-codes a number.
pub mod num {
    pub const SIGHUP: i32 = 1;
    pub const SIGINT: i32 = 2;
    pub const SIGQUIT: i32 = 3;
    pub const SIGILL: i32 = 4;
    pub const SIGTRAP: i32 = 5;
    pub const SIGABRT: i32 = 6;
    /// Alias of SIGABRT.
    pub const SIGIOT: i32 = 6;
    pub const SIGBUS: i32 = 7;
    pub const SIGFPE: i32 = 8;
    pub const SIGKILL: i32 = 9;
    pub const SIGUSR1: i32 = 10;
    pub const SIGSEGV: i32 = 11;
    pub const SIGUSR2: i32 = 12;
    pub const SIGPIPE: i32 = 13;
    pub const SIGALRM: i32 = 14;
    pub const SIGTERM: i32 = 15;
    pub const SIGSTKFLT: i32 = 16;
    pub const SIGCHLD: i32 = 17;
    /// Alias of SIGCHLD (System V name).
    pub const SIGCLD: i32 = 17;
    pub const SIGCONT: i32 = 18;
    pub const SIGSTOP: i32 = 19;
    pub const SIGTSTP: i32 = 20;
    pub const SIGTTIN: i32 = 21;
    pub const SIGTTOU: i32 = 22;
    pub const SIGURG: i32 = 23;
    pub const SIGXCPU: i32 = 24;
    pub const SIGXFSZ: i32 = 25;
    pub const SIGVTALRM: i32 = 26;
    pub const SIGPROF: i32 = 27;
    pub const SIGWINCH: i32 = 28;
    pub const SIGIO: i32 = 29;
    /// Alias of SIGIO (System V name).
    pub const SIGPOLL: i32 = 29;
    pub const SIGPWR: i32 = 30;
    pub const SIGSYS: i32 = 31;
    /// Alias of SIGSYS, kept by the kernel headers for old programs.
    pub const SIGUNUSED: i32 = 31;
    /// The kernel's first real-time signal. glibc keeps 32 and 33 for itself (see
    /// `SIGRTMIN`), so programs never see these two as "real-time signals".
    pub const KERNEL_SIGRTMIN: i32 = 32;
    /// glibc's internal name for 32: cancels a thread (pthread_cancel).
    pub const SIGCANCEL: i32 = 32;
    /// glibc's internal name for 33: makes every thread apply a set*id() call.
    pub const SIGSETXID: i32 = 33;
    /// glibc's SIGRTMIN, the one `kill -l` and programs see: 32 is NPTL's SIGCANCEL
    /// (thread cancellation) and 33 its SIGSETXID (setuid & co. broadcast to all threads).
    pub const SIGRTMIN: i32 = 34;
    /// The last signal: the kernel's _NSIG.
    pub const SIGRTMAX: i32 = 64;
}

/// Number of signals (the kernel's _NSIG): signals are 1..=NSIG and a mask is one word.
pub(crate) const NSIG: i32 = 64;

/// One standard (non-real-time) signal.
pub(super) struct Standard {
    pub number: i32,
    /// Canonical name, as `kill -l` prints it with "SIG" in front.
    pub name: &'static str,
    /// Other names for the same number, accepted when parsing, shown only on request.
    pub aliases: &'static [&'static str],
    pub action: DefaultAction,
    pub description: &'static str,
}

const fn std_sig(
    number: i32,
    name: &'static str,
    aliases: &'static [&'static str],
    action: DefaultAction,
    description: &'static str,
) -> Standard {
    Standard {
        number,
        name,
        aliases,
        action,
        description,
    }
}

/// Signals 1..=31 in number order (`STANDARD[n - 1].number == n`, checked by a test).
/// Default actions from signal(7) and the kernel's SIG_KERNEL_*_MASK (kernel/signal.c).
pub(super) const STANDARD: &[Standard] = &[
    std_sig(
        num::SIGHUP,
        "SIGHUP",
        &[],
        Term,
        "Hangup: controlling terminal closed or its session leader died",
    ),
    std_sig(
        num::SIGINT,
        "SIGINT",
        &[],
        Term,
        "Interrupt from keyboard (Ctrl-C)",
    ),
    std_sig(
        num::SIGQUIT,
        "SIGQUIT",
        &[],
        Core,
        "Quit from keyboard (Ctrl-\\)",
    ),
    std_sig(num::SIGILL, "SIGILL", &[], Core, "Illegal instruction"),
    std_sig(
        num::SIGTRAP,
        "SIGTRAP",
        &[],
        Core,
        "Trace or breakpoint trap",
    ),
    std_sig(
        num::SIGABRT,
        "SIGABRT",
        &["SIGIOT"],
        Core,
        "Abort, from abort(3)",
    ),
    std_sig(
        num::SIGBUS,
        "SIGBUS",
        &[],
        Core,
        "Bus error: bad memory access",
    ),
    std_sig(
        num::SIGFPE,
        "SIGFPE",
        &[],
        Core,
        "Arithmetic exception (e.g. integer division by zero)",
    ),
    std_sig(
        num::SIGKILL,
        "SIGKILL",
        &[],
        Term,
        "Kill: cannot be caught, blocked or ignored",
    ),
    std_sig(num::SIGUSR1, "SIGUSR1", &[], Term, "User-defined signal 1"),
    std_sig(
        num::SIGSEGV,
        "SIGSEGV",
        &[],
        Core,
        "Invalid memory reference (segmentation fault)",
    ),
    std_sig(num::SIGUSR2, "SIGUSR2", &[], Term, "User-defined signal 2"),
    std_sig(
        num::SIGPIPE,
        "SIGPIPE",
        &[],
        Term,
        "Broken pipe: write to a pipe or socket with no reader",
    ),
    std_sig(
        num::SIGALRM,
        "SIGALRM",
        &[],
        Term,
        "Timer signal from alarm(2)",
    ),
    std_sig(
        num::SIGTERM,
        "SIGTERM",
        &[],
        Term,
        "Termination request (kill's default)",
    ),
    std_sig(
        num::SIGSTKFLT,
        "SIGSTKFLT",
        &[],
        Term,
        "Stack fault on coprocessor (unused)",
    ),
    std_sig(
        num::SIGCHLD,
        "SIGCHLD",
        &["SIGCLD"],
        Ign,
        "Child stopped, continued or terminated",
    ),
    std_sig(num::SIGCONT, "SIGCONT", &[], Cont, "Continue if stopped"),
    std_sig(
        num::SIGSTOP,
        "SIGSTOP",
        &[],
        Stop,
        "Stop: cannot be caught, blocked or ignored",
    ),
    std_sig(
        num::SIGTSTP,
        "SIGTSTP",
        &[],
        Stop,
        "Stop typed at terminal (Ctrl-Z)",
    ),
    std_sig(
        num::SIGTTIN,
        "SIGTTIN",
        &[],
        Stop,
        "Terminal input for a background process",
    ),
    std_sig(
        num::SIGTTOU,
        "SIGTTOU",
        &[],
        Stop,
        "Terminal output for a background process",
    ),
    std_sig(
        num::SIGURG,
        "SIGURG",
        &[],
        Ign,
        "Urgent condition on socket",
    ),
    std_sig(
        num::SIGXCPU,
        "SIGXCPU",
        &[],
        Core,
        "CPU time limit exceeded (RLIMIT_CPU)",
    ),
    std_sig(
        num::SIGXFSZ,
        "SIGXFSZ",
        &[],
        Core,
        "File size limit exceeded (RLIMIT_FSIZE)",
    ),
    std_sig(
        num::SIGVTALRM,
        "SIGVTALRM",
        &[],
        Term,
        "Virtual alarm clock (ITIMER_VIRTUAL)",
    ),
    std_sig(
        num::SIGPROF,
        "SIGPROF",
        &[],
        Term,
        "Profiling timer expired (ITIMER_PROF)",
    ),
    std_sig(num::SIGWINCH, "SIGWINCH", &[], Ign, "Window resize"),
    std_sig(num::SIGIO, "SIGIO", &["SIGPOLL"], Term, "I/O now possible"),
    std_sig(num::SIGPWR, "SIGPWR", &[], Term, "Power failure"),
    std_sig(
        num::SIGSYS,
        "SIGSYS",
        &["SIGUNUSED"],
        Core,
        "Bad system call (e.g. seccomp)",
    ),
];
