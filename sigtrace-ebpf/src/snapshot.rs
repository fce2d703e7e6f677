//! The recipient's state at the moment a signal is generated (masks, actions, process group,
//! session, tty), read in the kernel because a process the signal kills is gone before
//! userspace could read /proc; and how the sender sent it (its syscall registers).

use sigtrace_common::{Recipient, via};

use crate::kernel::{
    PIDTYPE_PGID, PIDTYPE_SID, PIDTYPE_TGID, Pid, RegsWindow, Task, TaskIdsView, TaskView,
};
use crate::maps::Windows;

/// x86_64 syscall numbers whose registers tell how a signal was sent.
const NR_KILL: u64 = 62;
const NR_TKILL: u64 = 200;
const NR_TGKILL: u64 = 234;
const NR_RT_SIGQUEUEINFO: u64 = 129;
const NR_RT_TGSIGQUEUEINFO: u64 = 297;
const NR_PIDFD_SEND_SIGNAL: u64 = 424;

/// The current syscall and its first argument, from the sender's saved user registers
/// (behind its kernel stack `stack`):
/// tells kill(-pgid) from kill(pid), and both from kernel-originated signals. Only a syscall
/// that sends this very signal counts: a process dying inside kill(2) sends its parent a
/// SIGCHLD from the same syscall.
#[inline(always)]
pub fn sender_syscall(stack: u64, regs: &mut RegsWindow, sig: i32) -> (u32, i64) {
    if !Task::load_user_regs(stack, regs) {
        return (via::OTHER, 0);
    }
    let (how, sent) = match regs.orig_ax() {
        NR_KILL => (via::KILL, regs.si()),
        NR_TKILL => (via::TKILL, regs.si()),
        NR_TGKILL => (via::TGKILL, regs.dx()),
        NR_RT_SIGQUEUEINFO => (via::SIGQUEUE, regs.si()),
        NR_RT_TGSIGQUEUEINFO => (via::SIGQUEUE, regs.dx()),
        NR_PIDFD_SEND_SIGNAL => (via::PIDFD, regs.si()),
        _ => return (via::OTHER, 0),
    };
    if sent as u32 as i32 != sig {
        return (via::OTHER, 0);
    }
    // kill's pid is an int: sign-extend the low half.
    (how, regs.di() as u32 as i32 as i64)
}

/// Whether the current task (its kernel stack `stack`) is in one of the syscalls that queue
/// a siginfo of the caller's choosing.
#[inline(always)]
pub fn in_sigqueue_syscall(stack: u64, regs: &mut RegsWindow) -> bool {
    Task::load_user_regs(stack, regs)
        && matches!(
            regs.orig_ax(),
            NR_RT_SIGQUEUEINFO | NR_RT_TGSIGQUEUEINFO | NR_PIDFD_SEND_SIGNAL
        )
}

/// Global and namespace numbers of a struct pid, reusing `known` (pointer, global, in ns)
/// when it is the same struct: group and session leaders share one.
#[inline(always)]
fn pid_pair(pid: Pid, level: u32, known: &[(Pid, u32, u32); 2]) -> (u32, u32) {
    for &(ptr, global, in_ns) in known {
        if ptr == pid && ptr.0 != 0 {
            return (global, in_ns);
        }
    }
    let global = pid.global();
    (global, pid.at_level(global, level, None))
}

/// The recipient's process-wide state, from its task views and its signal_struct, pids, tty
/// and sighand.
#[inline(always)]
pub fn snapshot_recipient(
    ids: TaskIdsView<'_>,
    task: TaskView<'_>,
    windows: &mut Windows,
    sig: i32,
    out: &mut Recipient,
) {
    let tgid = ids.tgid();
    let parent = ids.real_parent();
    let signal = task.signal();
    out.blocked = task.blocked();
    let thread_pending = task.pending_signal();
    let sighand = task.sighand();
    out.parent_tgid = parent.tgid();
    if let Some(sw) = signal.view(&mut windows.signal) {
        out.pending = thread_pending | sw.shared_pending();
        let (tgid_pid, pgid_pid, sid_pid) = (
            sw.pid(PIDTYPE_TGID),
            sw.pid(PIDTYPE_PGID),
            sw.pid(PIDTYPE_SID),
        );
        let tty = sw.tty();
        // Numbers as the recipient sees them: in the namespace of its own (tgid) level.
        // Group and session leaders share their struct pid: no read for those.
        let level = tgid_pid.level();
        let ns_tgid = tgid_pid.at_level(tgid, level, Some(level));
        let none = (Pid(0), 0, 0);
        let (pgid, ns_pgid) = pid_pair(pgid_pid, level, &[(tgid_pid, tgid, ns_tgid), none]);
        let (sid, ns_sid) = pid_pair(
            sid_pid,
            level,
            &[(tgid_pid, tgid, ns_tgid), (pgid_pid, pgid, ns_pgid)],
        );
        out.pgid = pgid;
        out.sid = sid;
        out.ns_tgid = ns_tgid;
        out.ns_pgid = ns_pgid;
        out.ns_sid = ns_sid;
        out.ns_level = level;
        if tty.0 != 0 {
            let fg = tty.name_and_pgrp(&mut windows.tty, &mut out.tty);
            out.tty_fg_pgid = if fg == pgid_pid { pgid } else { fg.global() };
        }
    }
    let Some(actions) = sighand.actions_view(&mut windows.actions) else {
        return;
    };
    (out.caught, out.ignored) = actions.caught_and_ignored();
    (out.handler, out.sa_flags) = actions.own(sig);
}
