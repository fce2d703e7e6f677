//! A task_struct: its fields read one by one, and its two windows (signal state, ids)
//! copied in one read each for the signal programs.

use aya_ebpf::helpers::bpf_get_current_task;
use sigtrace_common::{COMM_LEN, TASK_IDS_WINDOW, TASK_WINDOW, TaskIds};

use super::{RegsWindow, Sighand, Signal, at, load, read};
use crate::maps::conf;

/// A `struct task_struct *`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Task(pub u64);

impl Task {
    #[inline(always)]
    pub fn current() -> Task {
        // SAFETY: a helper without arguments; the result is only used as an address to probe.
        Task(unsafe { bpf_get_current_task() })
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
    #[inline(always)]
    pub fn exit_code(self) -> i32 {
        read(self.0, conf!(offsets.task_exit_code))
    }
    /// task->stack: the base of its kernel stack.
    #[inline(always)]
    pub fn stack(self) -> u64 {
        read(self.0, conf!(offsets.task_stack))
    }
    /// The address of task->children (a list_head linking the children's `sibling`).
    #[inline(always)]
    pub fn children_head(self) -> u64 {
        self.0 + conf!(offsets.task_children) as u64
    }
    /// The task whose `sibling` list_head is at `node`.
    #[inline(always)]
    pub fn from_sibling(node: u64) -> Task {
        Task(node - conf!(offsets.task_sibling) as u64)
    }
    /// Its ids read field by field, for the rare records (exit, fork) that have no window.
    #[inline(always)]
    pub fn ids(self, out: &mut TaskIds) {
        out.tgid = self.tgid();
        out.tid = self.pid();
        out.uid = self.real_cred().uid();
        out.comm = self.comm();
    }
    /// Its signal-state window (real_cred, comm, signal, sighand, blocked, pending), in one
    /// read.
    #[inline(always)]
    pub fn load_window(self, window: &mut TaskWindow) -> bool {
        load(
            &mut window.0,
            self.0,
            conf!(offsets.task_window_start),
            conf!(offsets.task_window_len),
        )
    }
    /// Its ids window (pid, tgid, real_parent), in one read.
    #[inline(always)]
    pub fn load_ids_window(self, window: &mut TaskIdsWindow) -> bool {
        load(
            &mut window.0,
            self.0,
            conf!(offsets.task_ids_window_start),
            conf!(offsets.task_ids_window_len),
        )
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

/// A task's ids from its two windows; uid through its credentials (one more read).
#[inline(always)]
pub fn window_ids(ids: &TaskIdsWindow, window: &TaskWindow, out: &mut TaskIds) {
    out.tgid = ids.tgid();
    out.tid = ids.pid();
    out.uid = window.real_cred().uid();
    out.comm = window.comm();
}

/// A task_struct's signal state, copied by [`Task::load_window`].
#[repr(transparent)]
pub struct TaskWindow([u8; TASK_WINDOW]);

impl TaskWindow {
    #[inline(always)]
    fn field<T: Copy + Default>(&self, off: u32) -> T {
        at(&self.0, conf!(offsets.task_window_start), off)
    }
    #[inline(always)]
    pub fn comm(&self) -> [u8; COMM_LEN] {
        self.field(conf!(offsets.task_comm))
    }
    #[inline(always)]
    pub fn real_cred(&self) -> Cred {
        Cred(self.field(conf!(offsets.task_real_cred)))
    }
    #[inline(always)]
    pub fn signal(&self) -> Signal {
        Signal(self.field(conf!(offsets.task_signal)))
    }
    #[inline(always)]
    pub fn sighand(&self) -> Sighand {
        Sighand(self.field(conf!(offsets.task_sighand)))
    }
    #[inline(always)]
    pub fn blocked(&self) -> u64 {
        self.field(conf!(offsets.task_blocked))
    }
    /// task->pending.signal: this thread's own pending set.
    #[inline(always)]
    pub fn pending_signal(&self) -> u64 {
        self.field(conf!(offsets.task_pending_signal))
    }
}

/// A task_struct's ids, copied by [`Task::load_ids_window`].
#[repr(transparent)]
pub struct TaskIdsWindow([u8; TASK_IDS_WINDOW]);

impl TaskIdsWindow {
    #[inline(always)]
    fn field<T: Copy + Default>(&self, off: u32) -> T {
        at(&self.0, conf!(offsets.task_ids_window_start), off)
    }
    #[inline(always)]
    pub fn tgid(&self) -> u32 {
        self.field(conf!(offsets.task_tgid))
    }
    #[inline(always)]
    pub fn pid(&self) -> u32 {
        self.field(conf!(offsets.task_pid))
    }
    #[inline(always)]
    pub fn real_parent(&self) -> Task {
        Task(self.field(conf!(offsets.task_real_parent)))
    }
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
