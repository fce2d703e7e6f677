//! The syscall hooks. --sigaction: rt_sigaction(2) seen from both ends of the syscall, so
//! the record carries the action before and after the change (sys_enter remembers,
//! sys_exit reports). --handler-time: the rt_sigreturn(2) that ends a handler (sys_enter).

use aya_ebpf::helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user};
use sigtrace_common::{SigactionEvent, SigreturnEvent, abi, drop_reason, flag};

use super::Outcome;
use crate::access::{Ctx, hook};
use crate::emit::{Wakeup, emit};
use crate::filters::sigaction_traced;
use crate::kernel::{Regs, Task, current_ids};
use crate::maps::{HANDLING, SIGACTION_ENTRY, conf};

const NR_RT_SIGACTION: u64 = 13;
const NR_RT_SIGRETURN: u64 = 15;
/// x86_64's struct rt_sigframe: pretcode (8), then struct ucontext, whose uc_mcontext (at 40:
/// uc_flags, uc_link, uc_stack before it) holds the interrupted sp at 120 (r8..r15, di, si,
/// bp, bx, dx, ax, cx, then sp). A uapi layout: it cannot change.
const RT_SIGFRAME_SP: u64 = 8 + 40 + 120;

/// The current task's handler, flags and mask for `sig` (zeros when out of range).
#[inline(always)]
fn current_action(sig: i32) -> (u64, u64, u64) {
    match Task::current().sighand().action(sig) {
        Some(action) => (action.handler(), action.flags(), action.mask()),
        None => (0, 0, 0),
    }
}

// sys_enter(struct pt_regs *regs, long id): remembers the action before rt_sigaction(2)
// changes it, reports rt_sigreturn(2) of a thread running a reported handler. Attached only
// with --sigaction or --handler-time: it runs for every syscall of the machine.
hook!(sys_enter, "sys_enter", try_sys_enter);

fn try_sys_enter(ctx: &Ctx) -> Outcome {
    let id: u64 = ctx.arg(1);
    match id {
        NR_RT_SIGACTION => rt_sigaction_enter(ctx),
        NR_RT_SIGRETURN if conf!(flags) & flag::HANDLER_TIME != 0 => rt_sigreturn_enter(ctx),
        _ => Ok(()),
    }
}

/// A handler may end: a rt_sigreturn of a 64-bit thread that ran a reported handler. The
/// record carries the stack pointer the signal frame restores, which is the one the handler's
/// delivery saved: userspace pairs the two exactly (another handler's return, or one of a
/// handler left by longjmp, matches no reported run).
#[inline(always)]
fn rt_sigreturn_enter(ctx: &Ctx) -> Outcome {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: only the presence is read.
    if unsafe { HANDLING.get(pid_tgid as u32) }.is_none() {
        return Ok(());
    }
    let regs = Regs(ctx.arg(0));
    // A 32-bit process's 15 is another syscall.
    if regs.cs() & 0xffff != abi::USER_CS {
        return Ok(());
    }
    // The handler's `ret` popped the restorer's address: the frame (struct rt_sigframe:
    // pretcode, then the ucontext, whose mcontext holds sp at 120) starts 8 bytes below.
    let frame = regs.sp().wrapping_sub(8);
    // SAFETY: bpf_probe_read_user checks the address; the page was just used by the
    // handler's return.
    let restored_sp =
        unsafe { bpf_probe_read_user((frame + RT_SIGFRAME_SP) as *const u64) }.unwrap_or(0);
    emit(Wakeup::Rare, |event: &mut SigreturnEvent| {
        current_ids(&mut event.task);
        event.user_sp = restored_sp;
    });
    Ok(())
}

#[inline(always)]
fn rt_sigaction_enter(ctx: &Ctx) -> Outcome {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !sigaction_traced((pid_tgid >> 32) as u32) {
        return Ok(());
    }
    let regs = Regs(ctx.arg(0));
    let sig = regs.di();
    let new_act = regs.si();
    if new_act == 0 {
        return Ok(()); // only a query
    }
    let sig = sig as i32;
    let (handler, sa_flags, _) = current_action(sig);
    let mut event = SigactionEvent {
        sig,
        old_handler: handler,
        old_flags: sa_flags,
        ..Default::default()
    };
    current_ids(&mut event.task);
    // Without its entry, sys_exit has nothing to report: the change is dropped.
    SIGACTION_ENTRY
        .insert(pid_tgid as u32, event, 0)
        .map_err(|_| drop_reason::TABLE_FULL)
}

// sys_exit(struct pt_regs *regs, long ret): reports the change with the new action as the
// kernel now holds it.
hook!(sys_exit, "sys_exit", try_sys_exit);

fn try_sys_exit(ctx: &Ctx) -> Outcome {
    let regs = Regs(ctx.arg(0));
    if regs.orig_ax() != NR_RT_SIGACTION {
        return Ok(());
    }
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: copied out before the entry is removed.
    let Some(pending) = (unsafe { SIGACTION_ENTRY.get(tid) }).copied() else {
        return Ok(());
    };
    let _ = SIGACTION_ENTRY.remove(tid);
    let ret: u64 = ctx.arg(1);
    emit(Wakeup::Rare, |event: &mut SigactionEvent| {
        let (handler, sa_flags, mask) = current_action(pending.sig);
        *event = SigactionEvent {
            header: event.header,
            ret: ret as i32,
            new_handler: handler,
            new_flags: sa_flags,
            new_mask: mask,
            ..pending
        };
    });
    Ok(())
}
