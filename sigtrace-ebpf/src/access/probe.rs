//! How the raw-tracepoint object (`sigtrace`) reads the kernel: a raw tracepoint's
//! arguments are plain numbers to the verifier, so every field is read through
//! `bpf_probe_read_kernel`, and each helper call costs more than the bytes it copies. A
//! program therefore copies a struct's fields it needs in one read (a window, in the
//! per-CPU scratch) and picks them out afterwards; a view is that window. Runs on any
//! kernel with raw tracepoints (4.17).

use aya_ebpf::{
    helpers::{bpf_get_current_task, bpf_probe_read_kernel, bpf_probe_read_kernel_buf},
    programs::RawTracePointContext,
};
use sigtrace_common::{
    COMM_LEN, K_SIGACTION_SIZE, SIGNAL_WINDOW, TASK_IDS_WINDOW, TASK_WINDOW, TTY_NAME_LEN,
};

pub use crate::kernel::probe as read;
use crate::kernel::{
    FLAGS_WORD, HANDLER_WORD, Pid, Sighand, Signal, Task, Tty, at, load, task::Cred,
};
use crate::maps::{Windows, conf};

/// What the programs receive.
pub type Ctx = RawTracePointContext;

/// Defines the program `$name` on the tracepoint of that name, a raw tracepoint whose
/// body is `$body(&ctx)`, its outcome counted by `finish`.
macro_rules! hook {
    ($name:ident, $tracepoint:literal, $body:ident) => {
        #[aya_ebpf::macros::raw_tracepoint(tracepoint = $tracepoint)]
        pub fn $name(ctx: aya_ebpf::programs::RawTracePointContext) -> i32 {
            $crate::programs::finish(&ctx, $tracepoint, $body(&ctx))
        }
    };
}
pub(crate) use hook;

/// The current task's address.
#[inline(always)]
pub fn current_task() -> u64 {
    // SAFETY: a helper without arguments; the result is only used as an address to probe.
    unsafe { bpf_get_current_task() }
}

/// `N` consecutive `T`s at `base + off`, in one read (`wanted` matters to plain loads only).
#[inline(always)]
pub fn words<T: Copy + Default, const N: usize>(base: u64, off: u32, _wanted: u32) -> [T; N] {
    if base == 0 {
        return [T::default(); N];
    }
    // SAFETY: bpf_probe_read_kernel checks the address and fails instead of faulting.
    unsafe { bpf_probe_read_kernel((base + u64::from(off)) as *const [T; N]) }
        .unwrap_or([T::default(); N])
}

/// The kernel stack of the current task (`pid_tgid`), cached per CPU with the task's
/// address: a repeating sender costs no read.
#[inline(always)]
pub fn current_stack(windows: &mut Windows, pid_tgid: u64) -> u64 {
    // A stale entry needs this task's address and its pid/tid to be reused together (a pid
    // wrap-around landing on the same slab slot) before another sender passes here on this
    // CPU; even then the registers read must name the very signal sent to be believed.
    let task = Task::current();
    if windows.sender_task != task.0 || windows.sender_id != pid_tgid {
        windows.sender_task = task.0;
        windows.sender_id = pid_tgid;
        windows.sender_stack = task.stack();
    }
    windows.sender_stack
}

/// A view of a task's signal state: the window copied by [`Task::view`].
pub type TaskView<'a> = &'a TaskWindow;
/// A view of a task's ids: the window copied by [`Task::ids_view`].
pub type TaskIdsView<'a> = &'a TaskIdsWindow;
/// A view of a signal_struct: the window copied by [`Signal::view`].
pub type SignalView<'a> = &'a SignalWindow;
/// Bytes of a tty_struct copied to reach both its name and its foreground group.
pub type TtyWindow = [u8; 128];

impl Task {
    /// Its signal-state window (real_cred, comm, signal, sighand, blocked, pending), in one
    /// read; None when unreadable.
    #[inline(always)]
    pub fn view(self, window: &mut TaskWindow) -> Option<TaskView<'_>> {
        load(
            &mut window.0,
            self.0,
            conf!(offsets.task_window_start),
            conf!(offsets.task_window_len),
        )
        .then_some(window)
    }
    /// Its ids window (pid, tgid, real_parent), in one read.
    #[inline(always)]
    pub fn ids_view(self, window: &mut TaskIdsWindow) -> Option<TaskIdsView<'_>> {
        load(
            &mut window.0,
            self.0,
            conf!(offsets.task_ids_window_start),
            conf!(offsets.task_ids_window_len),
        )
        .then_some(window)
    }
}

impl Signal {
    /// Its shared_pending, pids and tty, in one read.
    #[inline(always)]
    pub fn view(self, window: &mut SignalWindow) -> Option<SignalView<'_>> {
        load(
            &mut window.0,
            self.0,
            conf!(offsets.signal_window_start),
            conf!(offsets.signal_window_len),
        )
        .then_some(window)
    }
}

impl Sighand {
    /// All 64 actions in one read (2 KiB); None without a sighand or when unreadable.
    #[inline(always)]
    pub fn actions_view(self, window: &mut ActionsWindow) -> Option<ActionsView<'_>> {
        let bytes = core::mem::size_of::<ActionsWindow>();
        let copied = self.0 != 0
            // SAFETY: reads into our own scratch; the source is checked by the helper.
            && unsafe {
                bpf_probe_read_kernel_buf(
                    (self.0 + conf!(offsets.sighand_action) as u64) as *const u8,
                    core::slice::from_raw_parts_mut(window.0.as_mut_ptr() as *mut u8, bytes),
                )
            }
            .is_ok();
        copied.then_some(window)
    }
}

/// A view of a sighand's actions: the window copied by [`Sighand::actions_view`].
pub type ActionsView<'a> = &'a ActionsWindow;

/// A sighand's 64 k_sigactions, as words (fixed layout, checked by the loader).
#[repr(transparent)]
pub struct ActionsWindow([[u64; (K_SIGACTION_SIZE / 8) as usize]; 64]);

impl ActionsWindow {
    /// The signals caught (a handler) and ignored (SIG_IGN), as masks (bit n-1: signal n).
    #[inline(always)]
    pub fn caught_and_ignored(&self) -> (u64, u64) {
        let mut caught = 0u64;
        let mut ignored = 0u64;
        for (i, action) in self.0.iter().enumerate() {
            let handler = action[HANDLER_WORD];
            ignored |= u64::from(handler == 1) << i;
            caught |= u64::from(handler > 1) << i;
        }
        (caught, ignored)
    }
    /// Handler and flags of `sig`'s action (1..=64).
    #[inline(always)]
    pub fn own(&self, sig: i32) -> (u64, u64) {
        let action = &self.0[(sig as usize).wrapping_sub(1) & 63];
        (action[HANDLER_WORD], action[FLAGS_WORD])
    }
}

impl Tty {
    /// Copies its name into `name` and returns its foreground group's struct pid: one read
    /// when both fields fit in the window (they sit 96 bytes apart on x86_64), two
    /// otherwise.
    #[inline(always)]
    pub fn name_and_pgrp(self, window: &mut TtyWindow, name: &mut [u8; TTY_NAME_LEN]) -> Pid {
        let name_at = conf!(offsets.tty_name);
        let pgrp_at = conf!(offsets.tty_pgrp);
        if name_at < pgrp_at && pgrp_at + 8 - name_at <= window.len() as u32 {
            if !load(window, self.0, name_at, pgrp_at + 8 - name_at) {
                return Pid(0);
            }
            *name = at(window, name_at, name_at);
            return Pid(at(window, name_at, pgrp_at));
        }
        *name = read(self.0, name_at);
        Pid(read(self.0, pgrp_at))
    }
}

/// A task_struct's signal state, copied by [`Task::view`].
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

/// A task_struct's ids, copied by [`Task::ids_view`].
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

/// A signal_struct's shared_pending, pids and tty, copied by [`Signal::view`].
#[repr(transparent)]
pub struct SignalWindow([u8; SIGNAL_WINDOW]);

impl SignalWindow {
    #[inline(always)]
    fn field<T: Copy + Default>(&self, off: u32) -> T {
        at(&self.0, conf!(offsets.signal_window_start), off)
    }
    /// signal->shared_pending.signal: the process-wide pending set.
    #[inline(always)]
    pub fn shared_pending(&self) -> u64 {
        self.field(conf!(offsets.signal_shared_pending))
    }
    #[inline(always)]
    pub fn pid(&self, pid_type: u32) -> Pid {
        Pid(self.field(conf!(offsets.signal_pids) + pid_type * 8))
    }
    #[inline(always)]
    pub fn tty(&self) -> Tty {
        Tty(self.field(conf!(offsets.signal_tty)))
    }
}
