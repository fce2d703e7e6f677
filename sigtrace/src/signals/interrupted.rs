//! What a delivered signal did to the system call its recipient was blocked in: whether the
//! call fails with EINTR, is restarted transparently, or is restarted through
//! restart_syscall(2). The kernel decides it from the call's return value so far (one of its
//! internal -ERESTART* codes, still in the saved `ax` register when `signal_deliver` fires)
//! and the action taken (x86's handle_signal and arch_do_signal_or_restart):
//!
//! | return so far | handler, SA_RESTART | handler, no SA_RESTART | no handler (stop, ignore) |
//! |---|---|---|---|
//! | -ERESTARTSYS (read, write, wait, futex…) | restarted | EINTR | restarted |
//! | -ERESTARTNOINTR (fork, setup calls) | restarted | restarted | restarted |
//! | -ERESTARTNOHAND (pause, sigsuspend, select, poll) | EINTR | EINTR | restarted |
//! | -ERESTART_RESTARTBLOCK (nanosleep, clock_nanosleep) | EINTR | EINTR | restart_syscall |
//! | -EINTR (epoll_wait, and others that give up by themselves) | EINTR | EINTR | EINTR |

use sigtrace_common::{DeliverEvent, abi};

use super::{DefaultAction, Disposition, Signal};

/// The kernel's internal restart codes (include/linux/errno.h), never seen by a process.
const ERESTARTSYS: i64 = 512;
const ERESTARTNOINTR: i64 = 513;
const ERESTARTNOHAND: i64 = 514;
const ERESTART_RESTARTBLOCK: i64 = 516;
const EINTR: i64 = 4;
/// sa_flags: restart system calls interrupted by this handler.
const SA_RESTART: u64 = 0x1000_0000;

/// What the process sees of the interrupted call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// The call fails with EINTR once the handler returns.
    Eintr,
    /// The call is made again, as if nothing happened.
    Restarted,
    /// The call resumes through restart_syscall(2) (a sleep continues for the time left).
    RestartSyscall,
    /// The process dies of the signal: the call never returns.
    NeverReturns,
}

impl Fate {
    pub fn as_str(self) -> &'static str {
        match self {
            Fate::Eintr => "EINTR",
            Fate::Restarted => "restarted",
            Fate::RestartSyscall => "restart_syscall",
            Fate::NeverReturns => "never returns",
        }
    }
}

/// A system call a delivery interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted {
    pub nr: i32,
    /// Its name in the table of the process's ABI; None when unknown.
    pub name: Option<&'static str>,
    pub abi: &'static str,
    /// The kernel's code for it ("ERESTARTSYS", ... or "EINTR").
    pub code: &'static str,
    pub fate: Fate,
}

/// The system call `e`'s signal interrupted, or None when the recipient was not blocked in
/// one (running user code, or a call that had already finished and returns normally).
pub fn interrupted(e: &DeliverEvent) -> Option<Interrupted> {
    if e.syscall_nr < 0 {
        return None;
    }
    // Any value may come from a record (a ptracer can set the register): no negation.
    let (code, restart) = match e.syscall_ret {
        r if r == -ERESTARTSYS => ("ERESTARTSYS", RestartRule::UnlessHandlerLacksSaRestart),
        r if r == -ERESTARTNOINTR => ("ERESTARTNOINTR", RestartRule::Always),
        r if r == -ERESTARTNOHAND => ("ERESTARTNOHAND", RestartRule::WithoutHandler),
        r if r == -ERESTART_RESTARTBLOCK => {
            ("ERESTART_RESTARTBLOCK", RestartRule::BlockWithoutHandler)
        }
        r if r == -EINTR => ("EINTR", RestartRule::Never),
        _ => return None,
    };
    let (abi, name) = match e.abi {
        abi::X86_64 => ("x86_64", syscall_name_x86_64(e.syscall_nr)),
        abi::I386 => ("i386", syscall_name_i386(e.syscall_nr)),
        _ => ("unknown", None),
    };
    let handled = matches!(
        Disposition::from_sa_handler(e.handler),
        Disposition::Caught(_)
    );
    let fatal = !handled
        && e.handler == 0
        && matches!(
            Signal(e.sig).default_action(),
            DefaultAction::Term | DefaultAction::Core
        );
    let fate = if fatal || e.group_exit_code != 0 {
        Fate::NeverReturns
    } else {
        restart.fate(handled, e.sa_flags & SA_RESTART != 0)
    };
    Some(Interrupted {
        nr: e.syscall_nr,
        name,
        abi,
        code,
        fate,
    })
}

/// How each restart code is resolved.
#[derive(Clone, Copy)]
enum RestartRule {
    UnlessHandlerLacksSaRestart,
    Always,
    WithoutHandler,
    BlockWithoutHandler,
    Never,
}

impl RestartRule {
    fn fate(self, handled: bool, sa_restart: bool) -> Fate {
        match (self, handled) {
            (RestartRule::Never, _) => Fate::Eintr,
            (RestartRule::Always, _) => Fate::Restarted,
            (RestartRule::UnlessHandlerLacksSaRestart, true) if !sa_restart => Fate::Eintr,
            (RestartRule::WithoutHandler | RestartRule::BlockWithoutHandler, true) => Fate::Eintr,
            (RestartRule::BlockWithoutHandler, false) => Fate::RestartSyscall,
            _ => Fate::Restarted,
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn syscall_name_x86_64(nr: i32) -> Option<&'static str> {
    syscalls::x86_64::Sysno::new(usize::try_from(nr).ok()?).map(|s| s.name())
}

fn syscall_name_i386(nr: i32) -> Option<&'static str> {
    syscalls::x86::Sysno::new(usize::try_from(nr).ok()?).map(|s| s.name())
}

#[cfg(not(target_arch = "x86_64"))]
fn syscall_name_x86_64(nr: i32) -> Option<&'static str> {
    syscalls::x86_64::Sysno::new(usize::try_from(nr).ok()?).map(|s| s.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NR_READ: i32 = 0;
    const NR_NANOSLEEP: i32 = 35;
    const NR_RT_SIGSUSPEND: i32 = 130;
    const SIGUSR1: i32 = 10;
    const SIGTSTP: i32 = 20;
    const SIGTERM: i32 = 15;

    fn delivery(sig: i32, handler: u64, sa_flags: u64, nr: i32, ret: i64) -> DeliverEvent {
        DeliverEvent {
            sig,
            handler,
            sa_flags,
            syscall_nr: nr,
            syscall_ret: ret,
            abi: abi::X86_64,
            ..DeliverEvent::default()
        }
    }

    fn fate(sig: i32, handler: u64, sa_flags: u64, nr: i32, ret: i64) -> Option<Fate> {
        interrupted(&delivery(sig, handler, sa_flags, nr, ret)).map(|i| i.fate)
    }

    #[test]
    fn a_handler_without_sa_restart_makes_read_fail_with_eintr() {
        let i = interrupted(&delivery(SIGUSR1, 0x4000, 0, NR_READ, -ERESTARTSYS));
        assert_eq!(
            i,
            Some(Interrupted {
                nr: NR_READ,
                name: Some("read"),
                abi: "x86_64",
                code: "ERESTARTSYS",
                fate: Fate::Eintr
            })
        );
        let restart = SA_RESTART;
        assert_eq!(
            fate(SIGUSR1, 0x4000, restart, NR_READ, -ERESTARTSYS),
            Some(Fate::Restarted)
        );
    }

    #[test]
    fn sleeps_and_sigsuspend_fail_with_eintr_whatever_the_flags() {
        for flags in [0, SA_RESTART] {
            assert_eq!(
                fate(SIGUSR1, 0x4000, flags, NR_NANOSLEEP, -ERESTART_RESTARTBLOCK),
                Some(Fate::Eintr)
            );
            assert_eq!(
                fate(SIGUSR1, 0x4000, flags, NR_RT_SIGSUSPEND, -ERESTARTNOHAND),
                Some(Fate::Eintr)
            );
        }
    }

    #[test]
    fn a_stop_restarts_the_call_and_a_sleep_through_restart_syscall() {
        assert_eq!(
            fate(SIGTSTP, 0, 0, NR_READ, -ERESTARTSYS),
            Some(Fate::Restarted)
        );
        assert_eq!(
            fate(SIGTSTP, 0, 0, NR_NANOSLEEP, -ERESTART_RESTARTBLOCK),
            Some(Fate::RestartSyscall)
        );
        // Ignored (SIG_IGN) the same way.
        assert_eq!(
            fate(SIGUSR1, 1, 0, NR_READ, -ERESTARTNOHAND),
            Some(Fate::Restarted)
        );
    }

    #[test]
    fn a_fatal_signal_ends_the_call_for_good() {
        assert_eq!(
            fate(SIGTERM, 0, 0, NR_READ, -ERESTARTSYS),
            Some(Fate::NeverReturns)
        );
    }

    #[test]
    fn no_syscall_or_a_finished_one_is_not_interrupted() {
        assert_eq!(fate(SIGUSR1, 0x4000, 0, NR_READ, i64::MIN), None);
        assert_eq!(fate(SIGUSR1, 0x4000, 0, -1, -ERESTARTSYS), None);
        assert_eq!(fate(SIGUSR1, 0x4000, 0, NR_READ, 12), None);
        assert_eq!(fate(SIGUSR1, 0x4000, 0, NR_READ, -11), None);
    }

    #[test]
    fn a_32_bit_process_is_named_from_i386s_table() {
        let mut e = delivery(SIGUSR1, 0x4000, 0, 3, -ERESTARTSYS);
        e.abi = abi::I386;
        let i = interrupted(&e);
        assert_eq!(i.map(|i| (i.name, i.abi)), Some((Some("read"), "i386")));
    }
}
