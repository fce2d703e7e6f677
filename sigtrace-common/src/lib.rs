//! The ABI between sigtrace's eBPF programs and its userspace: the records sent through the
//! ring buffer, the configuration handed to the programs as a global at load time, and the
//! kernel struct offsets resolved from BTF. Every struct is `#[repr(C)]`, uses no `bool`
//! (so no implicit padding hides in it) and has its size pinned by a const assertion.
#![no_std]

use core::mem::size_of;

/// Record kinds, the first field of every record.
pub mod kind {
    pub const GENERATE: u32 = 1;
    pub const DELIVER: u32 = 2;
    pub const EXIT: u32 = 3;
    pub const FORK: u32 = 4;
    pub const SIGACTION: u32 = 5;
    pub const SIGRETURN: u32 = 6;
}

pub const COMM_LEN: usize = 16;
pub const TTY_NAME_LEN: usize = 16;

/// Every record starts with this header; the decoder dispatches on `kind`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Header {
    pub kind: u32,
    pub _pad: u32,
    /// CLOCK_MONOTONIC (bpf_ktime_get_ns), nanoseconds.
    pub ts_ns: u64,
}
const _: () = assert!(size_of::<Header>() == 16);

impl Header {
    pub const fn new(kind: u32, ts_ns: u64) -> Self {
        Header {
            kind,
            _pad: 0,
            ts_ns,
        }
    }
}

/// A task as seen by the kernel: global ids and its comm.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TaskIds {
    pub tgid: u32,
    pub tid: u32,
    pub uid: u32,
    pub _pad: u32,
    pub comm: [u8; COMM_LEN],
}
const _: () = assert!(size_of::<TaskIds>() == 32);

/// The recipient's state at generation time, read in the kernel because a process killed
/// by the signal is gone before userspace could read /proc.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Recipient {
    pub pgid: u32,
    pub sid: u32,
    /// Ids in the recipient's own pid namespace (equal to the global ones at level 0).
    pub ns_tgid: u32,
    pub ns_pgid: u32,
    pub ns_sid: u32,
    /// Pid namespace level of the recipient (0 = initial namespace).
    pub ns_level: u32,
    pub blocked: u64,
    pub caught: u64,
    pub ignored: u64,
    /// Thread-pending | shared-pending, read after this signal was queued (so it includes
    /// this signal, and SIGKILL when the signal is fatal).
    pub pending: u64,
    /// The action installed for this very signal: 0 SIG_DFL, 1 SIG_IGN, else a handler.
    pub handler: u64,
    pub sa_flags: u64,
    /// Controlling tty: name as the kernel spells it (e.g. "pts3"), empty when none.
    pub tty: [u8; TTY_NAME_LEN],
    /// Foreground process group of the controlling tty (0 when none).
    pub tty_fg_pgid: u32,
    pub parent_tgid: u32,
}
const _: () = assert!(size_of::<Recipient>() == 96);

/// How the sender reached the target, read from the sender's syscall registers.
pub mod via {
    /// Not from a signal syscall (kernel, tty, timer, fault, exit...).
    pub const OTHER: u32 = 0;
    pub const KILL: u32 = 1;
    pub const TKILL: u32 = 2;
    pub const TGKILL: u32 = 3;
    pub const SIGQUEUE: u32 = 4;
    pub const PIDFD: u32 = 5;

    /// The syscall's name, or None for [`OTHER`].
    pub fn name(how: u32) -> Option<&'static str> {
        Some(match how {
            KILL => "kill",
            TKILL => "tkill",
            TGKILL => "tgkill",
            SIGQUEUE => "sigqueue",
            PIDFD => "pidfd_send_signal",
            _ => return None,
        })
    }
}

/// signal_generate(int sig, struct kernel_siginfo *info, struct task_struct *task,
/// int group, int result)
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GenerateEvent {
    pub header: Header,
    pub sender: TaskIds,
    pub target: TaskIds,
    pub sig: i32,
    pub code: i32,
    pub errno: i32,
    /// Queued on the shared (process-wide) pending set, not the process group.
    pub group: u32,
    pub result: u32,
    /// One of [`via`].
    pub via: u32,
    /// The first argument of the sender's syscall (kill's pid: ≤ 0 means a group kill).
    pub via_arg: i64,
    /// The sender as claimed in the siginfo (si_pid / si_uid), when the code carries one.
    pub si_pid: u32,
    pub si_uid: u32,
    /// 1 when the kernel passed SEND_SIG_PRIV or SEND_SIG_NOINFO instead of a siginfo.
    pub info_kind: u32,
    /// [`sender`] bits: whether `sender` really sent it (see there).
    pub sender_flags: u32,
    /// Cgroup v2 ids (kernfs node ids: the inode of the cgroup's directory) of the sender's
    /// and the target's default-hierarchy cgroup; 0 when unknown (an interrupt has no
    /// sender's cgroup).
    pub sender_cgroup: u64,
    pub target_cgroup: u64,
    /// --stack: the sender's user and kernel stacks, ids in the STACKS map; negative when
    /// not taken (no sender, --stack off: [`NO_STACK`]) or when the kernel could not
    /// (-errno: EFAULT for no user stack, ENOMEM/EEXIST for a full table).
    pub user_stack: i32,
    pub kernel_stack: i32,
    pub recipient: Recipient,
}
const _: () = assert!(size_of::<GenerateEvent>() == 248);

/// [`GenerateEvent::user_stack`] and `kernel_stack` when no stack was asked for.
pub const NO_STACK: i32 = i32::MIN;

/// [`GenerateEvent::sender_flags`]: when the signal was raised by an interrupt (a timer's,
/// or a softirq run at its end), `current` is only the task that interrupt happened to
/// stop, not a sender.
pub mod sender {
    /// Raised off the task's kernel stack: in an interrupt (hardirq or softirq; x86_64 runs
    /// both on the per-CPU irq stack). The sender fields name the interrupted task.
    pub const INTERRUPT: u32 = 1 << 0;
    /// `current` is a kernel thread (a kworker, ksoftirqd, a PREEMPT_RT timer thread...).
    pub const KTHREAD: u32 = 1 << 1;
    /// A timer's signal: an interval timer's (SIGALRM, SIGVTALRM, SIGPROF, SIGXCPU without
    /// siginfo) or a POSIX timer's (SI_TIMER), raised by its interrupt or by the tick,
    /// whatever the stack (an interrupt of user code runs on the task's own stack).
    pub const TIMER: u32 = 1 << 2;
}

/// signal_deliver(int sig, struct kernel_siginfo *info, struct k_sigaction *ka) — fires in
/// the recipient when it dequeues the signal to act on it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DeliverEvent {
    pub header: Header,
    pub task: TaskIds,
    pub sig: i32,
    pub code: i32,
    pub errno: i32,
    /// The group exit code when the thread group is already dying (the real cause of a
    /// delivered SIGKILL), else 0.
    pub group_exit_code: i32,
    pub handler: u64,
    pub sa_flags: u64,
    pub blocked: u64,
    /// The syscall the recipient was in when the signal came (its saved user registers:
    /// orig_ax), -1 when none (an interrupt's return to user mode).
    pub syscall_nr: i32,
    /// Which syscall table `syscall_nr` indexes: [`abi`].
    pub abi: u32,
    /// The syscall's return value so far (ax): one of the kernel's -ERESTART* codes when
    /// the signal interrupted it, -EINTR when it gave up by itself.
    pub syscall_ret: i64,
    /// The recipient's cgroup v2 id (see [`GenerateEvent::sender_cgroup`]).
    pub cgroup: u64,
    /// Its user stack pointer when the signal came (a handler's frame goes below it).
    pub user_sp: u64,
}
const _: () = assert!(size_of::<DeliverEvent>() == 120);

/// rt_sigreturn(2) entered by a 64-bit thread that ran a reported handler (--handler-time):
/// the end of the handler whose delivery saved `user_sp`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SigreturnEvent {
    pub header: Header,
    pub task: TaskIds,
    /// The user stack pointer the signal frame restores: the one its delivery saved
    /// ([`DeliverEvent::user_sp`]); 0 when the frame could not be read.
    pub user_sp: u64,
}
const _: () = assert!(size_of::<SigreturnEvent>() == 56);

/// [`DeliverEvent::abi`], from the user code segment the registers were saved with.
pub mod abi {
    pub const UNKNOWN: u32 = 0;
    /// x86_64's own syscall table.
    pub const X86_64: u32 = 1;
    /// A 32-bit (compat) process: i386's table.
    pub const I386: u32 = 2;
    /// x86_64's user code segments (__USER_CS, __USER32_CS).
    pub const USER_CS: u64 = 0x33;
    pub const USER32_CS: u64 = 0x23;
}

/// sched_process_exit(struct task_struct *p, ...) for the last thread of a group.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ExitEvent {
    pub header: Header,
    pub task: TaskIds,
    /// Wait status as waitpid reports it: `exit_code & 0x7f` the signal, `0x80` core.
    pub exit_code: i32,
    pub parent_tgid: u32,
    /// Its children (tgids) at exit, before the kernel re-parents them; `children_count` may
    /// exceed the array when there were more, and stops at 64 (the list walk's bound, for
    /// the verifier): 64 means 64 or more.
    pub children: [u32; MAX_CHILDREN],
    pub children_count: u32,
    pub _pad: u32,
}
pub const MAX_CHILDREN: usize = 16;
const _: () = assert!(size_of::<ExitEvent>() == 128);

/// sched_process_fork(struct task_struct *parent, struct task_struct *child), only for
/// followed processes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ForkEvent {
    pub header: Header,
    pub parent: TaskIds,
    pub child_tgid: u32,
    pub child_tid: u32,
}
const _: () = assert!(size_of::<ForkEvent>() == 56);

/// A change of signal action by rt_sigaction(2), seen at sys_enter (old action) and sys_exit
/// (new action, read back from the kernel).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SigactionEvent {
    pub header: Header,
    pub task: TaskIds,
    pub sig: i32,
    /// The syscall's return value (0 or -errno).
    pub ret: i32,
    pub old_handler: u64,
    pub old_flags: u64,
    pub new_handler: u64,
    pub new_flags: u64,
    pub new_mask: u64,
}
const _: () = assert!(size_of::<SigactionEvent>() == 96);

/// The `signal_generate` tracepoint's `result` (enum trace_signal_result in
/// include/trace/events/signal.h). DELIVERED means queued, not yet acted on.
pub mod result {
    pub const DELIVERED: u32 = 0;
    pub const IGNORED: u32 = 1;
    pub const ALREADY_PENDING: u32 = 2;
    pub const OVERFLOW_FAIL: u32 = 3;
    pub const LOSE_INFO: u32 = 4;

    /// The signal went into a queue, so a delivery (or a consumption) will follow.
    pub const fn queued(result: u32) -> bool {
        result == DELIVERED || result == LOSE_INFO
    }
}

/// Why the kernel side dropped a record it meant to send — never "filtered out", and never a
/// full ring buffer (that is the LOST count). Indexes of the per-CPU `DROPS` array, so the
/// values are dense from 0 and [`COUNT`] sizes it.
pub mod drop_reason {
    /// A kernel structure the record needs could not be read (bpf_probe_read_kernel failed).
    pub const READ_FAILED: u32 = 0;
    /// This CPU's scratch slot was missing (cannot happen with a loaded SCRATCH map).
    pub const SCRATCH_MISSING: u32 = 1;
    /// A map the record depends on was full (rt_sigaction's entry, kept until its exit).
    pub const TABLE_FULL: u32 = 2;
    /// Number of reasons: the length of the `DROPS` map.
    pub const COUNT: u32 = 3;

    /// The reason's name as userspace prints it, or None for a value it does not know.
    pub fn name(reason: u32) -> Option<&'static str> {
        Some(match reason {
            READ_FAILED => "read_failed",
            SCRATCH_MISSING => "scratch_missing",
            TABLE_FULL => "table_full",
            _ => return None,
        })
    }
}

/// si_code values (include/uapi/asm-generic/siginfo.h) that the kernel side and the user side
/// both interpret.
pub mod si {
    pub const USER: i32 = 0;
    pub const KERNEL: i32 = 0x80;
    pub const QUEUE: i32 = -1;
    pub const TIMER: i32 = -2;
    pub const MESGQ: i32 = -3;
    pub const ASYNCIO: i32 = -4;
    pub const SIGIO: i32 = -5;
    pub const TKILL: i32 = -6;
    pub const ASYNCNL: i32 = -60;
}

const SIGCHLD: i32 = 17;

/// Whether a signal came from the kernel (a fault, a timer, the tty, SIGCHLD, SIGPIPE…)
/// rather than from a process's kill/tkill/sigqueue/pidfd_send_signal. `no_siginfo`: the
/// kernel passed SEND_SIG_NOINFO or SEND_SIG_PRIV, which kill(2) never does.
#[inline(always)]
pub fn kernel_origin(no_siginfo: bool, code: i32) -> bool {
    no_siginfo
        || code > 0
        || matches!(
            code,
            si::KERNEL | si::TIMER | si::MESGQ | si::ASYNCIO | si::SIGIO | si::ASYNCNL
        )
}

/// Whether the siginfo's si_pid/si_uid name a sender: kill, sigqueue, tkill, mq_notify,
/// and SIGCHLD's child. For timers, SIGIO and the rest that union holds other data.
#[inline(always)]
pub fn carries_sender(sig: i32, code: i32) -> bool {
    matches!(code, si::USER | si::QUEUE | si::MESGQ | si::TKILL) || sig == SIGCHLD
}

/// Filter flags in [`Config::flags`].
pub mod flag {
    /// Keep only generations whose result is not "delivered" (queued).
    pub const FAILED_ONLY: u32 = 1 << 0;
    /// Keep only signals that the kernel originated (si_code > 0 or SI_KERNEL, SIGPIPE...).
    pub const KERNEL_ONLY: u32 = 1 << 1;
    /// Keep only signals sent by a process (kill, tkill, sigqueue...).
    pub const USER_ONLY: u32 = 1 << 2;
    /// PID_SIDES is in use (sender or target must match).
    pub const PID_FILTER: u32 = 1 << 3;
    pub const PGRP_FILTER: u32 = 1 << 4;
    pub const COMM_FILTER: u32 = 1 << 5;
    pub const UID_FILTER: u32 = 1 << 6;
    pub const TID_FILTER: u32 = 1 << 7;
    /// Children of a traced process are traced too (FOLLOWED) from their fork.
    pub const FOLLOW_FORKS: u32 = 1 << 8;
    /// Report rt_sigaction changes of processes that pass the filters.
    pub const SIGACTION: u32 = 1 << 9;
    /// --cgroup: the sender or the target must be in `Config::cgroup_id` or below it.
    pub const CGROUP_FILTER: u32 = 1 << 11;
    /// --handler-time: report the rt_sigreturn(2) that ends each reported handler run.
    pub const HANDLER_TIME: u32 = 1 << 12;
    /// --stack: record the sender's user and kernel stacks of each kept generation.
    pub const STACK: u32 = 1 << 13;
    /// Without a filter that needs generations: report every process's exit, not only
    /// those of processes some kept generation targeted (--all-exits).
    pub const ALL_EXITS: u32 = 1 << 10;
    /// Filters a delivery cannot judge by itself (it carries no sender): with any of them,
    /// deliveries pass only for generations that were kept.
    pub const NEEDS_GENERATION: u32 = PID_FILTER
        | TID_FILTER
        | PGRP_FILTER
        | COMM_FILTER
        | UID_FILTER
        | KERNEL_ONLY
        | USER_ONLY
        | CGROUP_FILTER;
}

/// Which side a PID_SIDES/FOLLOWED/TIDS/PGRPS/COMMS entry applies to.
pub mod side {
    pub const SENDER: u8 = 1;
    pub const TARGET: u8 = 2;
    pub const EITHER: u8 = SENDER | TARGET;
}

/// Kernel struct offsets (bytes), resolved from the running kernel's BTF at start-up.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Offsets {
    pub task_pid: u32,
    pub task_tgid: u32,
    pub task_comm: u32,
    pub task_real_cred: u32,
    pub task_real_parent: u32,
    pub task_signal: u32,
    pub task_sighand: u32,
    pub task_blocked: u32,
    /// task->pending.signal
    pub task_pending_signal: u32,
    pub task_exit_code: u32,
    pub cred_uid: u32,
    /// signal->pids[], indexed by enum pid_type
    pub signal_pids: u32,
    /// task->stack, and the distance from it to the task's saved user registers
    /// (THREAD_SIZE - sizeof(struct pt_regs) on x86_64).
    pub task_stack: u32,
    pub regs_from_stack: u32,
    /// signal->shared_pending.signal
    pub signal_shared_pending: u32,
    pub signal_tty: u32,
    pub signal_group_exit_code: u32,
    pub signal_live: u32,
    pub pid_level: u32,
    pub pid_numbers: u32,
    pub upid_size: u32,
    pub sighand_action: u32,
    pub k_sigaction_size: u32,
    /// k_sigaction->sa.sa_handler, ->sa.sa_flags, ->sa.sa_mask
    pub ksa_handler: u32,
    pub ksa_flags: u32,
    pub ksa_mask: u32,
    pub tty_name: u32,
    pub tty_pgrp: u32,
    /// pt_regs->orig_ax, ->di, ->si (x86_64), for the sys_enter/sys_exit hooks.
    pub regs_orig_ax: u32,
    pub regs_di: u32,
    pub regs_si: u32,
    pub regs_dx: u32,
    /// signal->group_exec_task: set while an exec kills the other threads.
    pub signal_group_exec_task: u32,
    /// 1 when this kernel's sched_process_exit passes `group_dead` (6.16+), else 0.
    pub exit_has_group_dead: u32,
    /// task->children and task->sibling (list_head), to list a dying process's children.
    pub task_children: u32,
    pub task_sibling: u32,
    /// Windows: the fields a program needs from one struct are copied with one read of
    /// `[start, start + len)`, then picked out by offset. Each helper call costs, and so
    /// does each byte copied (probe reads copy a word at a time): a task_struct is read as
    /// two windows, its ids (pid, tgid, real_parent) and its signal state (real_cred, comm,
    /// signal, sighand, blocked, pending), since the two sit far apart.
    pub task_ids_window_start: u32,
    pub task_ids_window_len: u32,
    pub task_window_start: u32,
    pub task_window_len: u32,
    /// signal_struct's shared_pending, pids and tty.
    pub signal_window_start: u32,
    pub signal_window_len: u32,
    /// `[start, start + len)` of pt_regs covers dx, si, di and orig_ax.
    pub regs_window_start: u32,
    pub regs_window_len: u32,
    /// pt_regs->ax (a syscall's return value), ->cs (the user code segment: 64- or 32-bit)
    /// and ->sp (the user stack pointer), read at delivery.
    pub regs_ax: u32,
    pub regs_cs: u32,
    pub regs_sp: u32,
    /// The size of a task's kernel stack (THREAD_SIZE).
    pub thread_size: u32,
    /// task->flags (PF_KTHREAD).
    pub task_flags: u32,
    /// task->cgroups (css_set) → dfl_cgrp (cgroup) → kn (kernfs_node) → id: a task's
    /// cgroup v2 id.
    pub task_cgroups: u32,
    pub css_set_dfl_cgrp: u32,
    pub cgroup_kn: u32,
    pub kernfs_node_id: u32,
    /// cgroup->level, and cgroup->ancestors[] (6.0+: pointers) or ->ancestor_ids[] (ids):
    /// `cgroup_ancestor_ids` is 1 for the latter.
    pub cgroup_level: u32,
    pub cgroup_ancestors: u32,
    pub cgroup_ancestor_ids: u32,
}
const _: () = assert!(size_of::<Offsets>() == 224);

/// Capacities of the programs' per-CPU scratch windows; a kernel whose windows do not fit
/// is refused at load time.
pub const TASK_IDS_WINDOW: usize = 128;
pub const TASK_WINDOW: usize = 1024;
pub const SIGNAL_WINDOW: usize = 512;
pub const REGS_WINDOW: usize = 96;

/// The kernel's PID_MAX_LIMIT: no tgid is larger.
pub const PID_MAX_LIMIT: u32 = 1 << 22;
/// Side bits (module `side`) per tgid in the PID_SIDES array, and its size in words.
pub const PID_SIDE_BITS: u32 = 2;
pub const PID_SIDE_WORDS: u32 = PID_MAX_LIMIT / (64 / PID_SIDE_BITS);

/// KEPT_GATE: one byte per 8 tgids, in values of KEPT_GATE_BYTES.
pub const KEPT_GATE_BYTES: usize = 64;
pub const KEPT_GATE_ENTRIES: u32 = PID_MAX_LIMIT / 8 / KEPT_GATE_BYTES as u32;

/// A tgid's word in PID_SIDES and the shift of its side bits in that word.
#[inline(always)]
pub const fn pid_side_slot(tgid: u32) -> (u32, u32) {
    let per_word = 64 / PID_SIDE_BITS;
    (tgid / per_word, (tgid % per_word) * PID_SIDE_BITS)
}

/// task->flags: a kernel thread (include/linux/sched.h).
pub const PF_KTHREAD: u32 = 0x0020_0000;

/// x86_64's k_sigaction (uapi struct sigaction: handler, flags, restorer, mask), which the
/// programs index at fixed offsets; the loader checks the kernel's BTF agrees.
pub const K_SIGACTION_SIZE: u32 = 32;
pub const KSA_HANDLER: u32 = 0;
pub const KSA_FLAGS: u32 = 8;

/// Handed to the programs through the `CONFIG` global at load time.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub flags: u32,
    pub uid: u32,
    /// Bit (sig-1) set: signal wanted; all ones when no --signal was given.
    pub signals: u64,
    /// The tracer's own tgid, whose signals are never reported (its own ring buffer polling
    /// must not feed itself).
    pub self_tgid: u32,
    /// Wake userspace once per this many records per CPU (batching; the reader also polls
    /// on a timer); 0 or 1 = every record.
    pub wakeup_records: u32,
    /// Rare records (exit, fork, sigaction) wake userspace only when this many bytes are
    /// waiting in the ring.
    pub wakeup_bytes: u32,
    /// --cgroup: the level (depth, root 0) and the id of the cgroup whose subtree passes.
    pub cgroup_level: u32,
    pub cgroup_id: u64,
    pub offsets: Offsets,
}
const _: () = assert!(size_of::<Config>() == 264);
// No implicit padding (it would be uninitialized bytes in the copied global): the offsets
// end the struct, and they are an even number of u32s.
const _: () = assert!(
    core::mem::offset_of!(Config, offsets) + size_of::<Offsets>() == size_of::<Config>(),
    "Config has implicit padding: an odd number of offsets; add an explicit u32 after them"
);

impl Config {
    pub const ZEROED: Config = Config {
        flags: 0,
        uid: 0,
        signals: u64::MAX,
        self_tgid: 0,
        wakeup_records: 0,
        wakeup_bytes: 0,
        cgroup_level: 0,
        cgroup_id: 0,
        // SAFETY: Offsets is #[repr(C)] u32s only, for which all-zero bytes are valid; zeroed
        // here so that adding an offset does not mean listing it again.
        offsets: unsafe { core::mem::zeroed() },
    };
}

/// Key of the DELIVERABLE map: a generated signal that passed the filters, waiting for its
/// delivery (which carries no sender, so cannot be filtered on its own).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PendingKey {
    pub tgid: u32,
    pub sig: u32,
}
const _: () = assert!(size_of::<PendingKey>() == 8);

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: #[repr(C)] plain integers and arrays with no padding (size asserted above).
    unsafe impl aya::Pod for Config {}
    // SAFETY: #[repr(C)], two u32s, no padding (size asserted above).
    unsafe impl aya::Pod for PendingKey {}
}
