//! A task_struct: its fields, one by one or through the views (signal state, ids) the
//! signal programs take of it.

use sigtrace_common::{COMM_LEN, TaskIds};

use super::{Cgroup, RegsWindow, Sighand, Signal, TaskIdsView, TaskView, load, probe, read};
use crate::{access, maps::conf};

/// A `struct task_struct *`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Task(pub u64);

impl Task {
    #[inline(always)]
    pub fn current() -> Task {
        Task(access::current_task())
    }
    #[inline(always)]
    pub fn tgid(self) -> u32 {
        read(self.0, conf!(offsets.task_tgid))
    }
    /// The thread id (task->pid).
    #[inline(always)]
    pub fn pid(self) -> u32 {
        read(self.0, conf!(offsets.task_pid))
    }
    #[inline(always)]
    pub fn comm(self) -> [u8; COMM_LEN] {
        read(self.0, conf!(offsets.task_comm))
    }
    #[inline(always)]
    pub fn real_cred(self) -> Cred {
        Cred(read(self.0, conf!(offsets.task_real_cred)))
    }
    #[inline(always)]
    pub fn real_parent(self) -> Task {
        Task(read(self.0, conf!(offsets.task_real_parent)))
    }
    #[inline(always)]
    pub fn signal(self) -> Signal {
        Signal(read(self.0, conf!(offsets.task_signal)))
    }
    #[inline(always)]
    pub fn sighand(self) -> Sighand {
        Sighand(read(self.0, conf!(offsets.task_sighand)))
    }
    /// task->flags (PF_*).
    #[inline(always)]
    pub fn flags(self) -> u32 {
        read(self.0, conf!(offsets.task_flags))
    }
    /// Its cgroup in the default (v2) hierarchy: task->cgroups->dfl_cgrp.
    #[inline(always)]
    pub fn cgroup(self) -> Cgroup {
        let css_set: u64 = read(self.0, conf!(offsets.task_cgroups));
        Cgroup(read(css_set, conf!(offsets.css_set_dfl_cgrp)))
    }
    /// Whether the program runs on this task's kernel stack, i.e. not in an interrupt
    /// (x86_64 runs hardirqs, and the softirqs run at their end, on a per-CPU irq stack,
    /// with `current` the task they interrupted). `stack` is [`Task::stack`]; `slot` is
    /// scratch memory.
    #[inline(always)]
    pub fn on_own_stack(stack: u64, slot: &mut u64) -> bool {
        stack_address(slot).wrapping_sub(stack) < u64::from(conf!(offsets.thread_size))
    }
    #[inline(always)]
    pub fn exit_code(self) -> i32 {
        read(self.0, conf!(offsets.task_exit_code))
    }
    /// task->stack: the base of its kernel stack (a `void *`: what lies there is read
    /// through the helper).
    #[inline(always)]
    pub fn stack(self) -> u64 {
        read(self.0, conf!(offsets.task_stack))
    }
    /// The address of task->children (a list_head linking the children's `sibling`).
    #[inline(always)]
    pub fn children_head(self) -> u64 {
        self.0 + conf!(offsets.task_children) as u64
    }
    /// The tgid of the task whose `sibling` list_head is at `node`: an address before the
    /// node, so through the helper.
    #[inline(always)]
    pub fn sibling_tgid(node: u64) -> u32 {
        probe(
            node - conf!(offsets.task_sibling) as u64,
            conf!(offsets.task_tgid),
        )
    }
    /// Its ids read field by field, for the rare records (exit, fork) that have no window.
    #[inline(always)]
    pub fn ids(self, out: &mut TaskIds) {
        out.tgid = self.tgid();
        out.tid = self.pid();
        out.uid = self.real_cred().uid();
        out.comm = self.comm();
    }
    /// Its saved user registers (the syscall it is in), from the kernel stack `stack`
    /// (see [`Task::stack`]), in one read.
    #[inline(always)]
    pub fn load_user_regs(stack: u64, window: &mut RegsWindow) -> bool {
        load(
            &mut window.0,
            stack + conf!(offsets.regs_from_stack) as u64,
            conf!(offsets.regs_window_start),
            conf!(offsets.regs_window_len),
        )
    }
}

/// A task's ids from its two views; uid through its credentials (one more read).
#[inline(always)]
pub fn window_ids(ids: TaskIdsView<'_>, task: TaskView<'_>, out: &mut TaskIds) {
    out.tgid = ids.tgid();
    out.tid = ids.pid();
    out.uid = task.real_cred().uid();
    out.comm = task.comm();
}

/// A `struct cred *`.
#[derive(Clone, Copy)]
pub struct Cred(pub u64);

impl Cred {
    #[inline(always)]
    pub fn uid(self) -> u32 {
        read(self.0, conf!(offsets.cred_uid))
    }
}

/// An address on the stack this code runs on. A BPF-to-BPF call of its own, with a small
/// frame: since 6.13 a program whose frame is 64 bytes or more runs on a per-CPU private
/// stack, a function with a smaller one on the real kernel stack. The address goes through
/// `slot` (a map value) to come back as a number the verifier lets us compare; storing it
/// needs CAP_PERFMON, which tracing needs anyway.
#[inline(never)]
fn stack_address(slot: &mut u64) -> u64 {
    let marker = 0u64;
    // SAFETY: `slot` is a valid reference; the marker's address is only compared.
    unsafe {
        core::ptr::write_volatile(slot, core::ptr::addr_of!(marker) as u64);
        core::ptr::read_volatile(slot)
    }
}
