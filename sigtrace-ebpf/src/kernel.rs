//! Typed reads of the kernel structures the programs walk. A `Task(u64)` is a
//! `struct task_struct *`, a `Signal` a `struct signal_struct *`, and so on: each method
//! reads one field at the offset the loader resolved from BTF (`conf!(offsets.x)`), so a
//! program reads like the structure it walks and the offsets live here only. A read that
//! fails gives zero, like an absent field. By structure: `task` (task_struct, cred),
//! `signal` (signal_struct, pid, sighand, k_sigaction, siginfo), `regs` (pt_regs,
//! tty_struct).
//!
//! *How* a field is read is the object's: [`read`] comes from `crate::access` (a helper
//! call in the raw-tracepoint object, a plain load in the BTF one), and so do the views a
//! program takes of a struct before picking fields out of it. [`probe`] is the helper in
//! both, for addresses a plain load may not take: one computed with a variable or a
//! negative offset, or read from a `void *`.

mod cgroup;
mod regs;
mod signal;
pub mod task;

use aya_ebpf::helpers::{
    bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
    bpf_get_current_uid_gid, bpf_probe_read_kernel, bpf_probe_read_kernel_buf,
};
pub use cgroup::Cgroup;
pub use regs::{Regs, RegsWindow, Tty};
pub use signal::{KSigaction, Pid, Sighand, Siginfo, Signal};
use sigtrace_common::{KSA_FLAGS, KSA_HANDLER, TaskIds};
pub use task::{Task, window_ids};

pub use crate::access::{
    ActionsWindow, SignalWindow, TaskIdsView, TaskIdsWindow, TaskView, TaskWindow, TtyWindow, read,
    words,
};

/// enum pid_type
pub const PIDTYPE_TGID: u32 = 1;
pub const PIDTYPE_PGID: u32 = 2;
pub const PIDTYPE_SID: u32 = 3;
/// Words of a k_sigaction (fixed layout, checked by the loader).
pub const HANDLER_WORD: usize = (KSA_HANDLER / 8) as usize;
pub const FLAGS_WORD: usize = (KSA_FLAGS / 8) as usize;

/// Reads a `T` at `base + off` in kernel memory through the helper; zero when unreadable.
#[inline(always)]
pub fn probe<T: Default>(base: u64, off: u32) -> T {
    if base == 0 {
        return T::default();
    }
    // SAFETY: bpf_probe_read_kernel checks the address and fails instead of faulting.
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T) }.unwrap_or_default()
}

/// Copies `len` bytes at `base + start` into `window` (one helper call); false when
/// unreadable. The window is then read with [`at`].
#[inline(always)]
pub(crate) fn load(window: &mut [u8], base: u64, start: u32, len: u32) -> bool {
    if base == 0 {
        return false;
    }
    let len = (len as usize).min(window.len());
    // SAFETY: bpf_probe_read_kernel checks the source; the destination is our scratch.
    unsafe { bpf_probe_read_kernel_buf((base + start as u64) as *const u8, &mut window[..len]) }
        .is_ok()
}

/// The `T` at struct offset `off` of a window that starts at struct offset `start`.
#[inline(always)]
pub(crate) fn at<T: Copy + Default>(window: &[u8], start: u32, off: u32) -> T {
    let rel = off.wrapping_sub(start) as usize;
    if rel >= window.len() || window.len() - rel < core::mem::size_of::<T>() {
        return T::default();
    }
    // SAFETY: bounds checked above; any bit pattern is a valid integer.
    unsafe { core::ptr::read_unaligned(window.as_ptr().add(rel) as *const T) }
}

/// The current task's cgroup v2 id (what [`Cgroup::id`] reads, through one helper).
#[inline(always)]
pub fn current_cgroup_id() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { bpf_get_current_cgroup_id() }
}

/// The current task's ids, from helpers (no struct read).
#[inline(always)]
pub fn current_ids(out: &mut TaskIds) {
    let pid_tgid = bpf_get_current_pid_tgid();
    out.tgid = (pid_tgid >> 32) as u32;
    out.tid = pid_tgid as u32;
    out.uid = bpf_get_current_uid_gid() as u32;
    out.comm = bpf_get_current_comm().unwrap_or_default();
}
