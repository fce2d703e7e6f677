//! Process lifetime: sched_process_exit reports how a (signalled or followed) process ended
//! and the children it left; sched_process_fork extends --follow to new children.

use sigtrace_common::{ExitEvent, ForkEvent, MAX_CHILDREN, flag};

use super::Outcome;
use crate::access::{Ctx, hook};
use crate::emit::{Wakeup, count_lost, emit};
use crate::filters::{
    filtered, forget_fatal_deliverable, kept_gate_open, pid_side, take_signalled,
};
use crate::kernel::{Task, probe};
use crate::maps::{FOLLOWED, conf};

// sched_process_exit(struct task_struct *p, bool group_dead): reported once per process,
// for its last thread.
hook!(
    sched_process_exit,
    "sched_process_exit",
    try_sched_process_exit
);

fn try_sched_process_exit(ctx: &Ctx) -> Outcome {
    let task = Task(ctx.arg(0));
    let flags = conf!(flags);
    // The last thread: the kernel says so where it passes group_dead; before 6.16 the
    // live count is all there is (racy only between threads exiting at once).
    let group_dead = if conf!(offsets.exit_has_group_dead) != 0 {
        ctx.arg::<u64>(1) & 0xff != 0
    } else {
        task.signal().live() == 0
    };
    if !group_dead {
        return Ok(());
    }
    let tgid = task.tgid();
    if tgid == conf!(self_tgid) {
        return Ok(());
    }
    let followed = pid_side(tgid);
    // A closed gate: never the target of a kept generation (nor, unfiltered, of a
    // delivery), so neither in SIGNALLED nor an exit userspace would show.
    let gate_open = kept_gate_open(tgid);
    // Read at most once: the fatal signal's count goes with a signalled process, and the
    // record needs the code when the task's own exit code is 0.
    let mut group_exit_code = None;
    if filtered(flags) {
        let signalled = take_signalled(tgid, gate_open);
        if signalled {
            let code = task.signal().group_exit_code();
            forget_fatal_deliverable(tgid, code);
            group_exit_code = Some(code);
        }
        if !signalled && followed == 0 {
            return Ok(());
        }
    } else if flags & flag::ALL_EXITS == 0 && !gate_open {
        return Ok(());
    }
    emit(Wakeup::Rare, |event: &mut ExitEvent| {
        task.ids(&mut event.task);
        let mut code = task.exit_code();
        if code == 0 {
            code = group_exit_code.unwrap_or_else(|| task.signal().group_exit_code());
        }
        event.exit_code = code;
        event.parent_tgid = task.real_parent().tgid();
        list_children(task, event);
    });
    if flags & flag::FOLLOW_FORKS != 0 && followed != 0 {
        let _ = FOLLOWED.remove(tgid);
    }
    Ok(())
}

/// Walks task->children (linked through each child's `sibling`) before the kernel
/// re-parents them, so "the children it left behind" are known even once they move.
/// Through the helper in both objects: an exit is rare, and with typed pointers the
/// verifier takes ~8x as long over the 64 turns of the loop (start-up time).
#[inline(always)]
fn list_children(task: Task, event: &mut ExitEvent) {
    let head = task.children_head();
    let mut node: u64 = probe(head, 0);
    let mut count = 0u32;
    let mut i = 0usize;
    while i < 64 {
        if node == head || node == 0 {
            break;
        }
        if (count as usize) < MAX_CHILDREN {
            event.children[count as usize] = Task::sibling_tgid(node);
        }
        count += 1;
        node = probe(node, 0);
        i += 1;
    }
    event.children_count = count;
}

// sched_process_fork(struct task_struct *parent, struct task_struct *child): children of
// followed processes are followed too, decided here so none slips through a /proc poll.
hook!(
    sched_process_fork,
    "sched_process_fork",
    try_sched_process_fork
);

fn try_sched_process_fork(ctx: &Ctx) -> Outcome {
    let parent = Task(ctx.arg(0));
    let child = Task(ctx.arg(1));
    let parent_tgid = parent.tgid();
    let child_tgid = child.tgid();
    if child_tgid == parent_tgid {
        return Ok(()); // a new thread, not a new process
    }
    let parent_side = pid_side(parent_tgid);
    if conf!(flags) & flag::FOLLOW_FORKS == 0 || parent_side == 0 {
        return Ok(());
    }
    // The child is followed on the same side(s) as its parent (--sender P --follow keeps
    // what P's descendants send, not what they receive). A full FOLLOWED loses the child's
    // signals: counted as lost, as ever, so the run's exit status says so.
    if FOLLOWED.insert(child_tgid, parent_side, 0).is_err() {
        count_lost();
    }
    emit(Wakeup::Rare, |event: &mut ForkEvent| {
        parent.ids(&mut event.parent);
        event.child_tgid = child_tgid;
        event.child_tid = child.pid();
    });
    Ok(())
}
