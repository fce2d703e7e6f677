//! --sigaction: rt_sigaction(2) seen from both ends of the syscall, so the record carries the
//! action before and after the change (sys_enter remembers, sys_exit reports).

use aya_ebpf::helpers::bpf_get_current_pid_tgid;
use sigtrace_common::{SigactionEvent, drop_reason};

use super::Outcome;
use crate::access::{Ctx, hook};
use crate::emit::{Wakeup, emit};
use crate::filters::sigaction_traced;
use crate::kernel::{Regs, Task, current_ids};
use crate::maps::SIGACTION_ENTRY;

const NR_RT_SIGACTION: u64 = 13;

/// The current task's handler, flags and mask for `sig` (zeros when out of range).
#[inline(always)]
fn current_action(sig: i32) -> (u64, u64, u64) {
    match Task::current().sighand().action(sig) {
        Some(action) => (action.handler(), action.flags(), action.mask()),
        None => (0, 0, 0),
    }
}

// sys_enter(struct pt_regs *regs, long id): remembers the action before rt_sigaction(2)
// changes it. Attached only with --sigaction.
hook!(sys_enter, "sys_enter", try_sys_enter);

fn try_sys_enter(ctx: &Ctx) -> Outcome {
    let id: u64 = ctx.arg(1);
    if id != NR_RT_SIGACTION {
        return Ok(());
    }
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
