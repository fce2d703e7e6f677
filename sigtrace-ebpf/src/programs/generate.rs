//! signal_generate: a signal is sent (queued, ignored or refused). The filters are judged
//! here, where the sender is known; a kept generation carries the recipient's snapshot and
//! lets its delivery and the target's exit through.

use aya_ebpf::helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid};
use aya_ebpf::{bindings::BPF_F_USER_STACK, programs::tracing::StackIdContext};
use sigtrace_common::{
    COMM_LEN, GenerateEvent, NO_STACK, PF_KTHREAD, carries_sender, drop_reason, flag,
    kernel_origin, result, sender, si, side,
};

use super::Outcome;
use crate::access::{self, Ctx, hook};
use crate::emit::{Wakeup, emit};
use crate::filters::{
    comm_side, filtered, open_kept_gate, pid_side, remember_kept, side_of, wanted_signal,
};
use crate::kernel::{PIDTYPE_PGID, Siginfo, Task, current_cgroup_id, window_ids};
use crate::maps::{PGRPS, STACKS, Scratch, TIDS, conf, scratch};
use crate::snapshot::{in_sigqueue_syscall, sender_syscall, snapshot_recipient};

/// info arguments that are not pointers (include/linux/sched/signal.h).
const SEND_SIG_NOINFO: u64 = 0;
const SEND_SIG_PRIV: u64 = 1;
const SIGALRM: i32 = 14;
const SIGXCPU: i32 = 24;
const SIGVTALRM: i32 = 26;
const SIGPROF: i32 = 27;

// signal_generate(int sig, struct kernel_siginfo *info, struct task_struct *task,
//                 int group, int result)
hook!(signal_generate, "signal_generate", try_signal_generate);

fn try_signal_generate(ctx: &Ctx) -> Outcome {
    let sig: i32 = ctx.arg::<u64>(0) as i32;
    let info: u64 = ctx.arg(1);
    let task = Task(ctx.arg(2));
    let group: u64 = ctx.arg(3);
    let result = ctx.arg::<u64>(4) as u32;
    let flags = conf!(flags);
    if !wanted_signal(sig) || (flags & flag::FAILED_ONLY != 0 && result == result::DELIVERED) {
        return Ok(());
    }
    let Some(scratch) = scratch() else {
        return Err(drop_reason::SCRATCH_MISSING);
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    let sender_tgid = (pid_tgid >> 32) as u32;
    let Scratch {
        target: target_window,
        target_ids,
        windows,
        since_wakeup,
    } = scratch;
    // The target's ids (a small window) decide the filters; the rest is read once kept.
    let Some(target_ids) = task.ids_view(target_ids) else {
        return Err(drop_reason::READ_FAILED);
    };
    let target_tgid = target_ids.tgid();
    let self_tgid = conf!(self_tgid);
    if target_tgid == self_tgid {
        return Ok(());
    }
    // Raised by an interrupt, the signal has no sending task: `current` is whatever that
    // interrupt stopped, so it matches no sender-side filter. An interrupt of kernel code
    // runs on the irq stack; one of user code runs on the task's own stack, where only
    // the signal tells: an interval timer's expiry (ITIMER_*, RLIMIT_CPU) sends without
    // siginfo.
    let sender_stack = access::current_stack(windows, pid_tgid);
    let interrupt = !Task::on_own_stack(sender_stack, &mut windows.stack_probe);
    let timer = info == SEND_SIG_PRIV && matches!(sig, SIGALRM | SIGVTALRM | SIGPROF | SIGXCPU);
    let no_sender = interrupt || timer;
    let sender_is = |matched: u8| !no_sender && matched & side::SENDER != 0;
    // A timer or another interrupt can raise a signal while sigtrace happens to be current:
    // only what sigtrace itself sends (through a syscall, so not of kernel origin) is ours
    // to hide. Judged once the siginfo is read, below.
    let maybe_own = sender_tgid == self_tgid;
    // Whether some filter passed for the sender alone: a POSIX timer's signal, known by its
    // code once the siginfo is read, then has no sender to pass for.
    let mut by_sender_only = false;
    if flags & flag::PID_FILTER != 0
        && !either_side(
            sender_is(pid_side(sender_tgid)),
            pid_side(target_tgid) & side::TARGET != 0,
            &mut by_sender_only,
        )
    {
        return Ok(());
    }
    // Filters that need no siginfo first: a rejected signal costs no read of it.
    if flags & flag::UID_FILTER != 0
        && !either_side(
            !no_sender && bpf_get_current_uid_gid() as u32 == conf!(uid),
            false,
            &mut by_sender_only,
        )
    {
        return Ok(());
    }
    if flags & flag::TID_FILTER != 0 {
        let target_tid = target_ids.pid();
        if !either_side(
            sender_is(side_of(&TIDS, pid_tgid as u32)),
            side_of(&TIDS, target_tid) & side::TARGET != 0,
            &mut by_sender_only,
        ) {
            return Ok(());
        }
    }
    if flags & flag::PGRP_FILTER != 0 {
        let sender_pgid = Task::current().signal().pid(PIDTYPE_PGID).global();
        let target_pgid = task.signal().pid(PIDTYPE_PGID).global();
        if !either_side(
            sender_is(side_of(&PGRPS, sender_pgid)),
            side_of(&PGRPS, target_pgid) & side::TARGET != 0,
            &mut by_sender_only,
        ) {
            return Ok(());
        }
    }
    if flags & flag::COMM_FILTER != 0 {
        let target_comm: [u8; COMM_LEN] = task.comm();
        let sender_comm = bpf_get_current_comm().unwrap_or_default();
        if !either_side(
            sender_is(comm_side(&sender_comm)),
            comm_side(&target_comm) & side::TARGET != 0,
            &mut by_sender_only,
        ) {
            return Ok(());
        }
    }
    if flags & flag::CGROUP_FILTER != 0 {
        let (level, id) = (conf!(cgroup_level), conf!(cgroup_id));
        if !either_side(
            !no_sender && Task::current().cgroup().within(level, id),
            task.cgroup().within(level, id),
            &mut by_sender_only,
        ) {
            return Ok(());
        }
    }
    let (code, errno, si_pid, si_uid, info_kind) = if info <= SEND_SIG_PRIV {
        // What the tracepoint itself reports for these (TP_STORE_SIGINFO).
        let code = if info == SEND_SIG_NOINFO {
            si::USER
        } else {
            si::KERNEL
        };
        (code, 0, 0, 0, 1)
    } else {
        // uapi siginfo: errno at 4, code at 8, _sifields at 16 (si_pid, si_uid first for
        // kill, rt and sigchld). One read of the head.
        let head: [u32; 6] = Siginfo(info).head();
        let code = head[2] as i32;
        let (si_pid, si_uid) = if carries_sender(sig, code) {
            (head[4], head[5])
        } else {
            (0, 0)
        };
        (code, head[1] as i32, si_pid, si_uid, 0)
    };
    if maybe_own && !kernel_origin(info <= SEND_SIG_PRIV, code) {
        return Ok(());
    }
    // A POSIX timer's expiry: its hrtimer's interrupt sent it, whoever runs. A process may
    // queue SI_TIMER itself (rt_sigqueueinfo, rt_tgsigqueueinfo, pidfd_send_signal): then it
    // is the sender, in that syscall.
    let timer = timer
        || (code == si::TIMER
            && (interrupt || !in_sigqueue_syscall(sender_stack, &mut windows.regs)));
    let no_sender = no_sender || timer;
    if timer && by_sender_only {
        return Ok(());
    }
    if flags & (flag::KERNEL_ONLY | flag::USER_ONLY) != 0 {
        let from_kernel = kernel_origin(info <= SEND_SIG_PRIV, code);
        if (flags & flag::KERNEL_ONLY != 0 && !from_kernel)
            || (flags & flag::USER_ONLY != 0 && from_kernel)
        {
            return Ok(());
        }
    }

    // Kept: open the target's gate before anything else, so that an exit racing this
    // generation on another CPU finds it open (an extra open gate only lets an exit through).
    if !filtered(flags) || result::queued(result) {
        open_kept_gate(target_tgid);
    }
    let Some(target) = task.view(target_window) else {
        return Err(drop_reason::READ_FAILED);
    };
    emit(Wakeup::Batch(since_wakeup), |event: &mut GenerateEvent| {
        event.sender.tgid = sender_tgid;
        event.sender.tid = pid_tgid as u32;
        event.sender.uid = bpf_get_current_uid_gid() as u32;
        event.sender.comm = bpf_get_current_comm().unwrap_or_default();
        window_ids(target_ids, target, &mut event.target);
        event.sig = sig;
        event.code = code;
        event.errno = errno;
        event.group = group as u32;
        event.result = result;
        event.si_pid = si_pid;
        event.si_uid = si_uid;
        event.info_kind = info_kind;
        if Task::current().flags() & PF_KTHREAD != 0 {
            event.sender_flags |= sender::KTHREAD;
        }
        if interrupt {
            event.sender_flags |= sender::INTERRUPT;
        }
        if timer {
            event.sender_flags |= sender::TIMER;
        }
        if !no_sender {
            event.sender_cgroup = current_cgroup_id();
        }
        event.target_cgroup = task.cgroup().id();
        (event.user_stack, event.kernel_stack) = if flags & flag::STACK != 0 && !no_sender {
            sender_stacks(ctx)
        } else {
            (NO_STACK, NO_STACK)
        };
        if !no_sender && info_kind == 0 && code <= 0 {
            let (how, arg) = sender_syscall(sender_stack, &mut windows.regs, sig);
            event.via = how;
            event.via_arg = arg;
        }
        snapshot_recipient(target_ids, target, windows, sig, &mut event.recipient);
        // Before submit, as the record always was: by the time userspace sees the
        // generation, its target is known as kept.
        if filtered(flags) && result::queued(result) {
            remember_kept(target_tgid, sig);
        }
    });
    Ok(())
}

/// The current task's user and kernel stacks, as STACKS ids (or -errno).
#[inline(always)]
fn sender_stacks(ctx: &Ctx) -> (i32, i32) {
    let id = |flags: u64| match ctx.get_stackid(&STACKS, flags) {
        Ok(id) => id as i32,
        Err(errno) => errno,
    };
    (id(u64::from(BPF_F_USER_STACK)), id(0))
}

/// One filter judged on both sides: whether the sender or the target passes it, noting in
/// `by_sender_only` when the sender alone did.
#[inline(always)]
fn either_side(sender: bool, target: bool, by_sender_only: &mut bool) -> bool {
    if target {
        return true;
    }
    *by_sender_only |= sender;
    sender
}
