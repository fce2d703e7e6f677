//! Who really sent a signal. The kernel's `current` at signal_generate is the sender only
//! when a task raised it: a timer's interrupt (or a softirq run at its end) raises signals
//! while whatever task it stopped is current — `qemu → timeout SIGALRM` was an alarm that
//! happened to fire while qemu ran. The kernel side tells an interrupt of kernel code by the
//! stack the program runs on (the irq stack: `Task::on_own_stack` in sigtrace-ebpf); an
//! interrupt of user code runs on the task's own stack, where only the signal tells: the
//! interval timers' signals (no siginfo) and POSIX timers' (SI_TIMER) are always a timer's.

use sigtrace_common::{GenerateEvent, sender, si};

use super::num;

/// In which context the signal was raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// A task (the sender), in a syscall or in the kernel on its behalf (a fault, its exit).
    Task,
    /// An interrupt: no sending task; `current` only names the task it interrupted.
    Interrupt,
    /// A kernel thread (a kworker for a tty, ksoftirqd, a PREEMPT_RT timer thread).
    KernelThread,
}

impl Context {
    pub fn of(e: &GenerateEvent) -> Context {
        if e.sender_flags & (sender::INTERRUPT | sender::TIMER) != 0 {
            Context::Interrupt
        } else if e.sender_flags & sender::KTHREAD != 0 {
            Context::KernelThread
        } else {
            Context::Task
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Context::Task => "task",
            Context::Interrupt => "interrupt",
            Context::KernelThread => "kernel_thread",
        }
    }
}

/// What in the kernel raised a signal no task sent, where the signal and its code tell; None
/// for a task's own signals and for what they do not tell.
pub fn kernel_kind(e: &GenerateEvent) -> Option<&'static str> {
    if Context::of(e) == Context::Task {
        return None;
    }
    let kernel_code = e.info_kind != 0 || e.code == si::KERNEL;
    Some(match e.sig {
        _ if e.code == si::TIMER => "posix timer",
        num::SIGALRM if kernel_code => "timer",
        num::SIGVTALRM | num::SIGPROF | num::SIGXCPU if kernel_code => "cpu timer",
        num::SIGINT
        | num::SIGQUIT
        | num::SIGTSTP
        | num::SIGWINCH
        | num::SIGHUP
        | num::SIGTTIN
        | num::SIGTTOU
            if kernel_code =>
        {
            "tty"
        }
        _ if e.code == si::SIGIO || (e.code > 0 && matches!(e.sig, num::SIGIO | num::SIGURG)) => {
            "I/O"
        }
        _ => return None,
    })
}

/// How sigtrace names the sender of a signal an interrupt raised (there is no task to name):
/// `kernel (timer)`, or `kernel (interrupt)` when nothing tells more; None for a task's.
pub fn interrupt_sender(e: &GenerateEvent) -> Option<&'static str> {
    if Context::of(e) != Context::Interrupt {
        return None;
    }
    Some(match kernel_kind(e) {
        Some("timer") => "kernel (timer)",
        Some("posix timer") => "kernel (posix timer)",
        Some("cpu timer") => "kernel (cpu timer)",
        Some("tty") => "kernel (tty)",
        Some("I/O") => "kernel (I/O)",
        _ => "kernel (interrupt)",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raised(sig: i32, code: i32, info_kind: u32, flags: u32) -> GenerateEvent {
        GenerateEvent {
            sig,
            code,
            info_kind,
            sender_flags: flags,
            ..GenerateEvent::default()
        }
    }

    #[test]
    fn an_interrupts_timer_signals_name_the_timer() {
        let alarm = raised(num::SIGALRM, si::KERNEL, 1, sender::INTERRUPT);
        assert_eq!(Context::of(&alarm), Context::Interrupt);
        assert_eq!(kernel_kind(&alarm), Some("timer"));
        assert_eq!(interrupt_sender(&alarm), Some("kernel (timer)"));
        let posix = raised(num::SIGRTMIN, si::TIMER, 0, sender::TIMER);
        assert_eq!(kernel_kind(&posix), Some("posix timer"));
        let prof = raised(
            num::SIGPROF,
            si::KERNEL,
            1,
            sender::INTERRUPT | sender::KTHREAD,
        );
        assert_eq!(Context::of(&prof), Context::Interrupt);
        assert_eq!(kernel_kind(&prof), Some("cpu timer"));
    }

    #[test]
    fn a_kernel_threads_tty_signal_is_the_ttys() {
        let ctrl_c = raised(num::SIGINT, si::KERNEL, 1, sender::KTHREAD);
        assert_eq!(Context::of(&ctrl_c), Context::KernelThread);
        assert_eq!(kernel_kind(&ctrl_c), Some("tty"));
        assert_eq!(
            interrupt_sender(&ctrl_c),
            None,
            "a kernel thread is a task to name"
        );
    }

    #[test]
    fn a_tasks_own_signals_have_no_kernel_kind() {
        // kill -ALRM from a shell, and an alarm a task's own syscall raised.
        assert_eq!(kernel_kind(&raised(num::SIGALRM, si::USER, 0, 0)), None);
        assert_eq!(kernel_kind(&raised(num::SIGALRM, si::KERNEL, 1, 0)), None);
        // An interrupt's signal that tells nothing more.
        assert_eq!(
            kernel_kind(&raised(num::SIGUSR1, si::KERNEL, 1, sender::INTERRUPT)),
            None
        );
    }
}
