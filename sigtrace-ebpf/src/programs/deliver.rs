//! signal_deliver: the recipient dequeues a signal to act on it. The delivery carries no
//! sender, so with filters it passes only after a kept generation (or for a traced target).

use aya_ebpf::helpers::{bpf_get_current_pid_tgid, bpf_get_current_uid_gid};
use aya_log_ebpf::debug;
use sigtrace_common::{DeliverEvent, abi, drop_reason, flag, side};

use super::Outcome;
use crate::access::{self, Ctx, hook};
use crate::emit::{Wakeup, emit};
use crate::filters::{filtered, open_kept_gate, pid_side, take_deliverable, wanted_signal};
use crate::kernel::{KSigaction, Siginfo, Task, current_cgroup_id};
use crate::maps::{HANDLING, Scratch, conf, scratch};

const SIGKILL: i32 = 9;

// signal_deliver(int sig, struct kernel_siginfo *info, struct k_sigaction *ka), in the
// recipient, when it dequeues the signal to act on it.
hook!(signal_deliver, "signal_deliver", try_signal_deliver);

fn try_signal_deliver(ctx: &Ctx) -> Outcome {
    let sig: i32 = ctx.arg::<u64>(0) as i32;
    let info = Siginfo(ctx.arg(1));
    let ka = KSigaction(ctx.arg(2));
    let flags = conf!(flags);
    if flags & flag::FAILED_ONLY != 0 {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if tgid == conf!(self_tgid) {
        return Ok(());
    }
    let group_exit_code: i32 = if sig == SIGKILL {
        let signal = Task::current().signal();
        // An exec in another thread kills this one with a SIGKILL nobody sent
        // (de_thread): not a signal delivery.
        if signal.group_exec_task() != 0 {
            debug!(
                ctx,
                "signal_deliver: SIGKILL in tid {} (tgid {}) is an exec ending its other threads, not a signal: not shown",
                pid_tgid as u32,
                tgid
            );
            return Ok(());
        }
        signal.group_exit_code()
    } else {
        0
    };
    let cause = if group_exit_code & 0x7f != 0 {
        group_exit_code & 0x7f
    } else {
        sig
    };
    if !wanted_signal(sig) && !wanted_signal(cause) {
        return Ok(());
    }
    if filtered(flags) {
        let kept = take_deliverable(tgid, sig, cause);
        // A traced target's own deliveries pass without a kept generation (one generated
        // before tracing started) when the pid is the only filter: no other filter can be
        // judged without the sender.
        let only_pids = flags & flag::NEEDS_GENERATION & !flag::PID_FILTER == 0;
        if !kept && !(only_pids && pid_side(tgid) & side::TARGET != 0) {
            return Ok(());
        }
    } else {
        // Userspace takes a delivery, like a generation, as a reason to show the exit.
        open_kept_gate(tgid);
    }
    let Some(scratch) = scratch() else {
        return Err(drop_reason::SCRATCH_MISSING);
    };
    // The recipient is the current task: one read gives its comm and blocked mask (helper
    // calls, not bytes copied, are what costs here).
    let Scratch {
        target,
        windows,
        since_wakeup,
        ..
    } = scratch;
    let Some(task) = Task::current().view(target) else {
        return Err(drop_reason::READ_FAILED);
    };
    // The syscall the signal lands in, and how far it got: its return value is still the
    // kernel's -ERESTART* code here, before the arch code turns it into EINTR or a restart.
    let stack = access::current_stack(windows, pid_tgid);
    let regs = &mut windows.regs;
    let (syscall_nr, syscall_ret, user_abi, user_sp) = if Task::load_user_regs(stack, regs) {
        // Low 16 bits: FRED kernels keep more state in the word.
        let user_abi = match regs.cs() & 0xffff {
            abi::USER_CS => abi::X86_64,
            abi::USER32_CS => abi::I386,
            _ => abi::UNKNOWN,
        };
        (regs.orig_ax() as i32, regs.ax() as i64, user_abi, regs.sp())
    } else {
        (-1, 0, abi::UNKNOWN, 0)
    };
    // k_sigaction's handler and flags, in one read (fixed layout, checked by the loader).
    let (handler, sa_flags) = ka.handler_and_flags();
    if flags & flag::HANDLER_TIME != 0 && handler > 1 && user_abi == abi::X86_64 {
        mark_handling(pid_tgid as u32);
    }
    emit(Wakeup::Batch(since_wakeup), |event: &mut DeliverEvent| {
        event.task.tgid = tgid;
        event.task.tid = pid_tgid as u32;
        event.task.comm = task.comm();
        event.task.uid = bpf_get_current_uid_gid() as u32;
        event.sig = sig;
        // uapi siginfo head: signo, errno, code.
        let head: [i32; 3] = info.head();
        event.errno = head[1];
        event.code = head[2];
        event.group_exit_code = group_exit_code;
        (event.handler, event.sa_flags) = (handler, sa_flags);
        event.blocked = task.blocked();
        event.syscall_nr = syscall_nr;
        event.syscall_ret = syscall_ret;
        event.abi = user_abi;
        event.cgroup = current_cgroup_id();
        event.user_sp = user_sp;
    });
    Ok(())
}

/// Thread `tid` runs a reported handler: its rt_sigreturns are reported from now on.
#[inline(always)]
fn mark_handling(tid: u32) {
    let _ = HANDLING.insert(tid, 1, 0);
}
