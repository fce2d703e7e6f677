//! sigtrace's kernel half: raw tracepoints (no tracefs, no kprobes needed) on the signal and
//! process paths. Each program is a thin wrapper over a `try_*` function; records go to one
//! ring buffer, woken in batches; reserve failures are counted per CPU so loss is exact.
//!
//! Kernel struct offsets come from userspace (resolved from the running kernel's BTF) through
//! the `CONFIG` global, so nothing here depends on a header of another kernel.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task,
        bpf_get_current_uid_gid, bpf_get_smp_processor_id, bpf_ktime_get_ns, bpf_probe_read_kernel,
        bpf_probe_read_kernel_buf, bpf_ringbuf_query,
    },
    macros::{map, raw_tracepoint},
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::RawTracePointContext,
};
use sigtrace_common::{
    COMM_LEN, Config, DeliverEvent, ExitEvent, ForkEvent, GenerateEvent, Header, MAX_CHILDREN,
    PendingKey, Recipient, SigactionEvent, TaskIds, flag, kind, side, via,
};

/// Set by userspace at load time (EbpfLoader::set_global); read-only afterwards, so the
/// verifier prunes the branches of filters that are off.
#[unsafe(no_mangle)]
static CONFIG: Config = Config::ZEROED;

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 22, 0);

/// Records that could not be reserved (ring buffer full), per CPU.
#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// tgid → side bits (sigtrace_common::side): --pid, --sender, --target, followed children.
#[map]
static PIDS: HashMap<u32, u8> = HashMap::with_max_entries(16384, 0);
#[map]
static TIDS: HashMap<u32, u8> = HashMap::with_max_entries(1024, 0);
#[map]
static PGRPS: HashMap<u32, u8> = HashMap::with_max_entries(1024, 0);
#[map]
static COMMS: HashMap<[u8; COMM_LEN], u8> = HashMap::with_max_entries(1024, 0);

/// Generated signals that passed the filters, by (target tgid, signal), counted, so that
/// their deliveries (which carry no sender) pass too.
#[map]
static DELIVERABLE: LruHashMap<PendingKey, u32> = LruHashMap::with_max_entries(16384, 0);

/// The 64 k_sigactions of a recipient, copied in one read (too large for the stack).
const ACTIONS_WORDS: usize = 256;
#[map]
static ACTIONS: PerCpuArray<[u64; ACTIONS_WORDS]> = PerCpuArray::with_max_entries(1, 0);

/// rt_sigaction in flight, by tid: the signal and its action at syscall entry.
#[map]
static SIGACTION_ENTRY: HashMap<u32, SigactionEvent> = HashMap::with_max_entries(4096, 0);

const SIGKILL: i32 = 9;
const SI_KERNEL: i32 = 0x80;
const SI_TIMER: i32 = -2;
const SI_MESGQ: i32 = -3;
const SI_ASYNCIO: i32 = -4;
const SI_SIGIO: i32 = -5;
const SI_ASYNCNL: i32 = -60;
/// enum pid_type
const PIDTYPE_TGID: usize = 1;
const PIDTYPE_PGID: usize = 2;
const PIDTYPE_SID: usize = 3;
/// x86_64 syscall numbers whose registers tell how a signal was sent.
const NR_RT_SIGACTION: u64 = 13;
const NR_KILL: u64 = 62;
const NR_TKILL: u64 = 200;
const NR_TGKILL: u64 = 234;
const NR_RT_SIGQUEUEINFO: u64 = 129;
const NR_RT_TGSIGQUEUEINFO: u64 = 297;
const NR_PIDFD_SEND_SIGNAL: u64 = 424;
/// info arguments that are not pointers (include/linux/sched/signal.h).
const SEND_SIG_NOINFO: u64 = 0;
const SEND_SIG_PRIV: u64 = 1;

macro_rules! conf {
    ($($field:tt)+) => {
        current_config(&CONFIG.$($field)+)
    };
}

/// Reads a field of CONFIG. Volatile keeps the compiler from folding the zeroed
/// initializer, since the real value is written by the loader.
#[inline(always)]
fn current_config<T: Copy>(field: &T) -> T {
    // SAFETY: `field` is a valid reference into a plain static.
    unsafe { core::ptr::read_volatile(field) }
}

#[inline(always)]
fn current_task() -> u64 {
    // SAFETY: a helper without arguments; the result is only used as an address to probe.
    unsafe { bpf_get_current_task() }
}

/// Reads a `T` at `base + off` in kernel memory; zero when unreadable.
#[inline(always)]
fn read<T: Default>(base: u64, off: u32) -> T {
    if base == 0 {
        return T::default();
    }
    // SAFETY: bpf_probe_read_kernel checks the address and fails instead of faulting.
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T) }.unwrap_or_default()
}

/// The global number of a `struct pid *` (numbers[0].nr), and its number in the namespace at
/// `level` (0 when the pid is not visible there), and the pid's own level.
#[inline(always)]
fn pid_numbers(pid: u64, level: Option<u32>) -> (u32, u32, u32) {
    if pid == 0 {
        return (0, 0, 0);
    }
    let numbers = conf!(offsets.pid_numbers);
    let global: u32 = read(pid, numbers);
    let own_level: u32 = read(pid, conf!(offsets.pid_level));
    let level = level.unwrap_or(own_level);
    if level == 0 {
        return (global, global, own_level);
    }
    if level > own_level || level > 31 {
        return (global, 0, own_level);
    }
    let in_ns: u32 = read(pid, numbers + level * conf!(offsets.upid_size));
    (global, in_ns, own_level)
}

#[inline(always)]
fn signal_pid(signal: u64, pid_type: usize) -> u64 {
    read(signal, conf!(offsets.signal_pids) + (pid_type as u32) * 8)
}

#[inline(always)]
fn task_ids(task: u64, out: &mut TaskIds) {
    out.tgid = read(task, conf!(offsets.task_tgid));
    out.tid = read(task, conf!(offsets.task_pid));
    let cred: u64 = read(task, conf!(offsets.task_real_cred));
    out.uid = read(cred, conf!(offsets.cred_uid));
    // SAFETY: reads into our own buffer; failure leaves it zeroed.
    let _ = unsafe {
        bpf_probe_read_kernel_buf(
            (task + conf!(offsets.task_comm) as u64) as *const u8,
            &mut out.comm,
        )
    };
}

#[inline(always)]
fn current_ids(out: &mut TaskIds) {
    let pid_tgid = bpf_get_current_pid_tgid();
    out.tgid = (pid_tgid >> 32) as u32;
    out.tid = pid_tgid as u32;
    out.uid = bpf_get_current_uid_gid() as u32;
    out.comm = bpf_get_current_comm().unwrap_or_default();
}

#[inline(always)]
fn header(kind: u32) -> Header {
    Header {
        kind,
        // SAFETY: plain helper calls without arguments.
        cpu: unsafe { bpf_get_smp_processor_id() },
        ts_ns: unsafe { bpf_ktime_get_ns() },
    }
}

/// Submits without waking the reader until a batch has accumulated; the reader also polls
/// on a timer, so a lone record is never stuck.
#[inline(always)]
fn wakeup_flags() -> u64 {
    let threshold = conf!(wakeup_bytes) as u64;
    if threshold == 0 {
        return 0;
    }
    // SAFETY: EVENTS is a ring buffer map; BPF_RB_AVAIL_DATA = 0.
    let waiting = unsafe { bpf_ringbuf_query(&EVENTS as *const RingBuf as *mut _, 0) };
    if waiting >= threshold {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

#[inline(always)]
fn count_lost() {
    if let Some(lost) = LOST.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while we run.
        unsafe { *lost += 1 };
    }
}

#[inline(always)]
fn side_of(map: &HashMap<u32, u8>, key: u32) -> u8 {
    // SAFETY: the value is a plain u8 copied out at once.
    unsafe { map.get(&key) }.copied().unwrap_or(0)
}

#[inline(always)]
fn comm_side(comm: &[u8; COMM_LEN]) -> u8 {
    // SAFETY: as above.
    unsafe { COMMS.get(comm) }.copied().unwrap_or(0)
}

/// True when a signal came from the kernel rather than from a process's kill/tkill/sigqueue.
#[inline(always)]
fn kernel_origin(info: u64, code: i32) -> bool {
    if info == SEND_SIG_PRIV {
        return true;
    }
    if info == SEND_SIG_NOINFO {
        // kill(2) always passes a siginfo; SEND_SIG_NOINFO comes from in-kernel senders
        // such as send_sig(SIGPIPE, current, 0).
        return true;
    }
    code > 0
        || code == SI_KERNEL
        || code == SI_TIMER
        || code == SI_MESGQ
        || code == SI_ASYNCIO
        || code == SI_SIGIO
        || code == SI_ASYNCNL
}

/// The current syscall and its first argument, from the sender's saved user registers:
/// tells kill(-pgid) from kill(pid), and both from kernel-originated signals. Only a syscall
/// that sends this very signal counts: a process dying inside kill(2) sends its parent a
/// SIGCHLD from the same syscall.
#[inline(always)]
fn sender_syscall(current: u64, sig: i32) -> (u32, i64) {
    let stack: u64 = read(current, conf!(offsets.task_stack));
    if stack == 0 {
        return (via::OTHER, 0);
    }
    let regs = stack + conf!(offsets.regs_from_stack) as u64;
    let nr: u64 = read(regs, conf!(offsets.regs_orig_ax));
    let (how, sig_reg) = match nr {
        NR_KILL => (via::KILL, conf!(offsets.regs_si)),
        NR_TKILL => (via::TKILL, conf!(offsets.regs_si)),
        NR_TGKILL => (via::TGKILL, conf!(offsets.regs_dx)),
        NR_RT_SIGQUEUEINFO => (via::SIGQUEUE, conf!(offsets.regs_si)),
        NR_RT_TGSIGQUEUEINFO => (via::SIGQUEUE, conf!(offsets.regs_dx)),
        NR_PIDFD_SEND_SIGNAL => (via::PIDFD, conf!(offsets.regs_si)),
        _ => return (via::OTHER, 0),
    };
    let sent: u64 = read(regs, sig_reg);
    if sent as u32 as i32 != sig {
        return (via::OTHER, 0);
    }
    let arg: u64 = read(regs, conf!(offsets.regs_di));
    // kill's pid is an int: sign-extend the low half.
    (how, arg as u32 as i32 as i64)
}

#[inline(always)]
fn snapshot_recipient(task: u64, sig: i32, out: &mut Recipient) {
    let signal: u64 = read(task, conf!(offsets.task_signal));
    // Numbers as the recipient sees them: in the namespace of its own (tgid) level.
    let (_, ns_tgid, level) = pid_numbers(signal_pid(signal, PIDTYPE_TGID), None);
    let (pgid, ns_pgid, _) = pid_numbers(signal_pid(signal, PIDTYPE_PGID), Some(level));
    let (sid, ns_sid, _) = pid_numbers(signal_pid(signal, PIDTYPE_SID), Some(level));
    out.pgid = pgid;
    out.sid = sid;
    out.ns_tgid = ns_tgid;
    out.ns_pgid = ns_pgid;
    out.ns_sid = ns_sid;
    out.ns_level = level;
    out.blocked = read(task, conf!(offsets.task_blocked));
    let thread_pending: u64 = read(task, conf!(offsets.task_pending_signal));
    let shared_pending: u64 = read(signal, conf!(offsets.signal_shared_pending));
    out.pending = thread_pending | shared_pending;
    let parent: u64 = read(task, conf!(offsets.task_real_parent));
    out.parent_tgid = read(parent, conf!(offsets.task_tgid));
    let tty: u64 = read(signal, conf!(offsets.signal_tty));
    if tty != 0 {
        // SAFETY: reads into our own buffer; failure leaves it zeroed.
        let _ = unsafe {
            bpf_probe_read_kernel_buf(
                (tty + conf!(offsets.tty_name) as u64) as *const u8,
                &mut out.tty,
            )
        };
        out.tty_fg_pgid = pid_numbers(read(tty, conf!(offsets.tty_pgrp)), Some(0)).0;
    }
    let sighand: u64 = read(task, conf!(offsets.task_sighand));
    let Some(actions) = ACTIONS.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the per-CPU scratch slot is ours while this program runs.
    let actions = unsafe { &mut *actions };
    if sighand == 0
        || unsafe {
            bpf_probe_read_kernel_buf(
                (sighand + conf!(offsets.sighand_action) as u64) as *const u8,
                core::slice::from_raw_parts_mut(actions.as_mut_ptr() as *mut u8, ACTIONS_WORDS * 8),
            )
        }
        .is_err()
    {
        return;
    }
    let stride = (conf!(offsets.k_sigaction_size) / 8) as usize;
    let handler_word = (conf!(offsets.ksa_handler) / 8) as usize;
    let flags_word = (conf!(offsets.ksa_flags) / 8) as usize;
    let mut caught = 0u64;
    let mut ignored = 0u64;
    let mut i = 0usize;
    while i < 64 {
        let at = i * stride + handler_word;
        if at >= ACTIONS_WORDS {
            break;
        }
        let handler = actions[at];
        if handler == 1 {
            ignored |= 1 << i;
        } else if handler > 1 {
            caught |= 1 << i;
        }
        i += 1;
    }
    out.caught = caught;
    out.ignored = ignored;
    let own = (sig as usize).wrapping_sub(1) & 63;
    let at = own * stride + handler_word;
    if at < ACTIONS_WORDS {
        out.handler = actions[at];
    }
    let at = own * stride + flags_word;
    if at < ACTIONS_WORDS {
        out.sa_flags = actions[at];
    }
}

#[inline(always)]
fn wanted_signal(sig: i32) -> bool {
    sig >= 1 && sig <= 64 && conf!(signals) & (1u64 << ((sig - 1) as u64 & 63)) != 0
}

/// signal_generate(int sig, struct kernel_siginfo *info, struct task_struct *task,
///                 int group, int result)
#[raw_tracepoint(tracepoint = "signal_generate")]
pub fn signal_generate(ctx: RawTracePointContext) -> i32 {
    try_signal_generate(&ctx).unwrap_or(0)
}

fn try_signal_generate(ctx: &RawTracePointContext) -> Result<i32, i32> {
    let sig: i32 = ctx.arg::<u64>(0) as i32;
    let info: u64 = ctx.arg(1);
    let task: u64 = ctx.arg(2);
    let group: u64 = ctx.arg(3);
    let result: u64 = ctx.arg(4);
    let flags = conf!(flags);

    let pid_tgid = bpf_get_current_pid_tgid();
    let sender_tgid = (pid_tgid >> 32) as u32;
    let target_tgid: u32 = read(task, conf!(offsets.task_tgid));
    let self_tgid = conf!(self_tgid);
    if target_tgid == self_tgid || (sender_tgid == self_tgid && self_tgid != 0) {
        return Ok(0);
    }
    if !wanted_signal(sig) {
        return Ok(0);
    }
    if flags & flag::FAILED_ONLY != 0 && result == 0 {
        return Ok(0);
    }
    let (code, errno, si_pid, si_uid, info_kind) = if info <= SEND_SIG_PRIV {
        // What the tracepoint itself reports for these (TP_STORE_SIGINFO).
        let code = if info == SEND_SIG_NOINFO {
            0
        } else {
            SI_KERNEL
        };
        (code, 0, 0, 0, 1)
    } else {
        let errno: i32 = read(info, 4);
        let code: i32 = read(info, 8);
        // uapi siginfo: _sifields at 16; _kill/_rt/_sigchld start with si_pid, si_uid.
        let (si_pid, si_uid) = if code <= 0 || sig == 17 {
            (read::<u32>(info, 16), read::<u32>(info, 20))
        } else {
            (0, 0)
        };
        (code, errno, si_pid, si_uid, 0)
    };
    if flags & (flag::KERNEL_ONLY | flag::USER_ONLY) != 0 {
        let from_kernel = kernel_origin(info, code);
        if flags & flag::KERNEL_ONLY != 0 && !from_kernel {
            return Ok(0);
        }
        if flags & flag::USER_ONLY != 0 && from_kernel {
            return Ok(0);
        }
    }
    if flags & flag::UID_FILTER != 0 && bpf_get_current_uid_gid() as u32 != conf!(uid) {
        return Ok(0);
    }
    if flags & flag::PID_FILTER != 0
        && side_of(&PIDS, sender_tgid) & side::SENDER == 0
        && side_of(&PIDS, target_tgid) & side::TARGET == 0
    {
        return Ok(0);
    }
    if flags & flag::TID_FILTER != 0 {
        let target_tid: u32 = read(task, conf!(offsets.task_pid));
        if side_of(&TIDS, pid_tgid as u32) & side::SENDER == 0
            && side_of(&TIDS, target_tid) & side::TARGET == 0
        {
            return Ok(0);
        }
    }
    let current = current_task();
    if flags & flag::PGRP_FILTER != 0 {
        let sender_signal: u64 = read(current, conf!(offsets.task_signal));
        let target_signal: u64 = read(task, conf!(offsets.task_signal));
        let sender_pgid = pid_numbers(signal_pid(sender_signal, PIDTYPE_PGID), Some(0)).0;
        let target_pgid = pid_numbers(signal_pid(target_signal, PIDTYPE_PGID), Some(0)).0;
        if side_of(&PGRPS, sender_pgid) & side::SENDER == 0
            && side_of(&PGRPS, target_pgid) & side::TARGET == 0
        {
            return Ok(0);
        }
    }

    let Some(mut entry) = EVENTS.reserve::<GenerateEvent>(0) else {
        count_lost();
        return Ok(0);
    };
    let event = entry.as_mut_ptr();
    // SAFETY: `event` points at a reserved, exclusively ours ring buffer slot; every field
    // is written before submit (zeroing first keeps stale bytes out).
    unsafe {
        core::ptr::write_bytes(event, 0, 1);
        let event = &mut *event;
        event.header = header(kind::GENERATE);
        current_ids(&mut event.sender);
        task_ids(task, &mut event.target);
        event.sig = sig;
        event.code = code;
        event.errno = errno;
        event.group = group as u32;
        event.result = result as u32;
        event.si_pid = si_pid;
        event.si_uid = si_uid;
        event.info_kind = info_kind;
        let (how, arg) = sender_syscall(current, sig);
        event.via = how;
        event.via_arg = arg;
        snapshot_recipient(task, sig, &mut event.recipient);
    }
    if flags & flag::COMM_FILTER != 0 {
        // SAFETY: still our reserved slot.
        let event = unsafe { &*event };
        if comm_side(&event.sender.comm) & side::SENDER == 0
            && comm_side(&event.target.comm) & side::TARGET == 0
        {
            entry.discard(0);
            return Ok(0);
        }
    }
    let filtered = flags
        & (flag::PID_FILTER
            | flag::TID_FILTER
            | flag::PGRP_FILTER
            | flag::COMM_FILTER
            | flag::UID_FILTER
            | flag::KERNEL_ONLY
            | flag::USER_ONLY)
        != 0;
    if filtered && result == 0 {
        let key = PendingKey {
            tgid: target_tgid,
            sig: sig as u32,
        };
        // SAFETY: the value is a plain counter.
        match DELIVERABLE.get_ptr_mut(&key) {
            Some(count) => unsafe { *count += 1 },
            None => {
                let _ = DELIVERABLE.insert(&key, &1, 0);
            }
        }
    }
    entry.submit(wakeup_flags());
    Ok(0)
}

/// signal_deliver(int sig, struct kernel_siginfo *info, struct k_sigaction *ka), in the
/// recipient, when it dequeues the signal to act on it.
#[raw_tracepoint(tracepoint = "signal_deliver")]
pub fn signal_deliver(ctx: RawTracePointContext) -> i32 {
    try_signal_deliver(&ctx).unwrap_or(0)
}

fn try_signal_deliver(ctx: &RawTracePointContext) -> Result<i32, i32> {
    let sig: i32 = ctx.arg::<u64>(0) as i32;
    let info: u64 = ctx.arg(1);
    let ka: u64 = ctx.arg(2);
    let flags = conf!(flags);
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if tgid == conf!(self_tgid) || flags & flag::FAILED_ONLY != 0 {
        return Ok(0);
    }
    let current = current_task();
    let signal: u64 = read(current, conf!(offsets.task_signal));
    let group_exit_code: i32 = if sig == SIGKILL {
        read(signal, conf!(offsets.signal_group_exit_code))
    } else {
        0
    };
    let cause = if group_exit_code & 0x7f != 0 {
        group_exit_code & 0x7f
    } else {
        sig
    };
    if !wanted_signal(sig) && !wanted_signal(cause) {
        return Ok(0);
    }
    let filtered = flags
        & (flag::PID_FILTER
            | flag::TID_FILTER
            | flag::PGRP_FILTER
            | flag::COMM_FILTER
            | flag::UID_FILTER
            | flag::KERNEL_ONLY
            | flag::USER_ONLY)
        != 0;
    if filtered {
        let key = PendingKey {
            tgid,
            sig: cause as u32,
        };
        match DELIVERABLE.get_ptr_mut(&key) {
            // SAFETY: the value is a plain counter.
            Some(count) => unsafe {
                // Every thread of a dying group dequeues the SIGKILL: keep the count.
                if cause == sig && *count > 0 {
                    *count -= 1;
                }
            },
            None => {
                // A followed process's own deliveries pass even without a kept generation
                // (e.g. a signal generated before tracing started).
                if flags & flag::PID_FILTER == 0 || side_of(&PIDS, tgid) & side::TARGET == 0 {
                    return Ok(0);
                }
            }
        }
    }
    let Some(mut entry) = EVENTS.reserve::<DeliverEvent>(0) else {
        count_lost();
        return Ok(0);
    };
    let event = entry.as_mut_ptr();
    // SAFETY: our reserved slot, fully written before submit.
    unsafe {
        core::ptr::write_bytes(event, 0, 1);
        let event = &mut *event;
        event.header = header(kind::DELIVER);
        current_ids(&mut event.task);
        event.sig = sig;
        event.errno = read(info, 4);
        event.code = read(info, 8);
        if event.code <= 0 || sig == 17 {
            event.si_pid = read(info, 16);
            event.si_uid = read(info, 20);
        }
        event.group_exit_code = group_exit_code;
        event.handler = read(ka, conf!(offsets.ksa_handler));
        event.sa_flags = read(ka, conf!(offsets.ksa_flags));
        event.blocked = read(current, conf!(offsets.task_blocked));
    }
    entry.submit(wakeup_flags());
    Ok(0)
}

/// sched_process_exit(struct task_struct *p, bool group_dead): reported once per process,
/// for its last thread.
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn sched_process_exit(ctx: RawTracePointContext) -> i32 {
    try_sched_process_exit(&ctx).unwrap_or(0)
}

fn try_sched_process_exit(ctx: &RawTracePointContext) -> Result<i32, i32> {
    let task: u64 = ctx.arg(0);
    let flags = conf!(flags);
    let signal: u64 = read(task, conf!(offsets.task_signal));
    let live: i32 = read(signal, conf!(offsets.signal_live));
    if live != 0 {
        return Ok(0);
    }
    let tgid: u32 = read(task, conf!(offsets.task_tgid));
    if tgid == conf!(self_tgid) {
        return Ok(0);
    }
    let followed = side_of(&PIDS, tgid);
    if flags & flag::PID_FILTER != 0 && followed == 0 {
        return Ok(0);
    }
    let Some(mut entry) = EVENTS.reserve::<ExitEvent>(0) else {
        count_lost();
        return Ok(0);
    };
    let event = entry.as_mut_ptr();
    // SAFETY: our reserved slot, fully written before submit.
    unsafe {
        core::ptr::write_bytes(event, 0, 1);
        let event = &mut *event;
        event.header = header(kind::EXIT);
        task_ids(task, &mut event.task);
        let mut code: i32 = read(task, conf!(offsets.task_exit_code));
        if code == 0 {
            code = read(signal, conf!(offsets.signal_group_exit_code));
        }
        event.exit_code = code;
        let parent: u64 = read(task, conf!(offsets.task_real_parent));
        event.parent_tgid = read(parent, conf!(offsets.task_tgid));
        list_children(task, event);
    }
    // An exit ends a story: hand it over promptly.
    entry.submit(BPF_RB_FORCE_WAKEUP as u64);
    if flags & flag::FOLLOW_FORKS != 0 && followed != 0 {
        let _ = PIDS.remove(&tgid);
    }
    Ok(0)
}

/// Walks task->children (linked through each child's `sibling`) before the kernel
/// re-parents them, so "the children it left behind" are known even once they move.
#[inline(always)]
fn list_children(task: u64, event: &mut ExitEvent) {
    let head = task + conf!(offsets.task_children) as u64;
    let sibling = conf!(offsets.task_sibling) as u64;
    let mut node: u64 = read(head, 0);
    let mut count = 0u32;
    let mut i = 0usize;
    while i < 64 {
        if node == head || node == 0 {
            break;
        }
        let child = node - sibling;
        if (count as usize) < MAX_CHILDREN {
            event.children[count as usize] = read(child, conf!(offsets.task_tgid));
        }
        count += 1;
        node = read(node, 0);
        i += 1;
    }
    event.children_count = count;
}

/// sched_process_fork(struct task_struct *parent, struct task_struct *child): children of
/// followed processes are followed too, decided here so none slips through a /proc poll.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> i32 {
    try_sched_process_fork(&ctx).unwrap_or(0)
}

fn try_sched_process_fork(ctx: &RawTracePointContext) -> Result<i32, i32> {
    let parent: u64 = ctx.arg(0);
    let child: u64 = ctx.arg(1);
    let parent_tgid: u32 = read(parent, conf!(offsets.task_tgid));
    let child_tgid: u32 = read(child, conf!(offsets.task_tgid));
    if child_tgid == parent_tgid {
        return Ok(0); // a new thread, not a new process
    }
    if conf!(flags) & flag::FOLLOW_FORKS == 0 || side_of(&PIDS, parent_tgid) == 0 {
        return Ok(0);
    }
    let _ = PIDS.insert(&child_tgid, &side::EITHER, 0);
    let Some(mut entry) = EVENTS.reserve::<ForkEvent>(0) else {
        count_lost();
        return Ok(0);
    };
    let event = entry.as_mut_ptr();
    // SAFETY: our reserved slot, fully written before submit.
    unsafe {
        core::ptr::write_bytes(event, 0, 1);
        let event = &mut *event;
        event.header = header(kind::FORK);
        task_ids(parent, &mut event.parent);
        event.child_tgid = child_tgid;
        event.child_tid = read(child, conf!(offsets.task_pid));
    }
    entry.submit(wakeup_flags());
    Ok(0)
}

#[inline(always)]
fn current_action(sig: i32) -> (u64, u64, u64) {
    let current = current_task();
    let sighand: u64 = read(current, conf!(offsets.task_sighand));
    if sighand == 0 || !(1..=64).contains(&sig) {
        return (0, 0, 0);
    }
    let action = sighand
        + conf!(offsets.sighand_action) as u64
        + (sig as u64 - 1) * conf!(offsets.k_sigaction_size) as u64;
    (
        read(action, conf!(offsets.ksa_handler)),
        read(action, conf!(offsets.ksa_flags)),
        read(action, conf!(offsets.ksa_mask)),
    )
}

#[inline(always)]
fn sigaction_traced(tgid: u32) -> bool {
    let flags = conf!(flags);
    flags & flag::SIGACTION != 0
        && tgid != conf!(self_tgid)
        && (flags & flag::PID_FILTER == 0 || side_of(&PIDS, tgid) != 0)
}

/// sys_enter(struct pt_regs *regs, long id): remembers the action before rt_sigaction(2)
/// changes it. Attached only with --sigaction.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn sys_enter(ctx: RawTracePointContext) -> i32 {
    try_sys_enter(&ctx).unwrap_or(0)
}

fn try_sys_enter(ctx: &RawTracePointContext) -> Result<i32, i32> {
    let id: u64 = ctx.arg(1);
    if id != NR_RT_SIGACTION {
        return Ok(0);
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if !sigaction_traced((pid_tgid >> 32) as u32) {
        return Ok(0);
    }
    let regs: u64 = ctx.arg(0);
    let sig: u64 = read(regs, conf!(offsets.regs_di));
    let new_act: u64 = read(regs, conf!(offsets.regs_si));
    if new_act == 0 {
        return Ok(0); // only a query
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
    let _ = SIGACTION_ENTRY.insert(&(pid_tgid as u32), &event, 0);
    Ok(0)
}

/// sys_exit(struct pt_regs *regs, long ret): reports the change with the new action as the
/// kernel now holds it.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit(ctx: RawTracePointContext) -> i32 {
    try_sys_exit(&ctx).unwrap_or(0)
}

fn try_sys_exit(ctx: &RawTracePointContext) -> Result<i32, i32> {
    let regs: u64 = ctx.arg(0);
    let nr: u64 = read(regs, conf!(offsets.regs_orig_ax));
    if nr != NR_RT_SIGACTION {
        return Ok(0);
    }
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: copied out before the entry is removed.
    let Some(pending) = (unsafe { SIGACTION_ENTRY.get(&tid) }).copied() else {
        return Ok(0);
    };
    let _ = SIGACTION_ENTRY.remove(&tid);
    let ret: u64 = ctx.arg(1);
    let Some(mut entry) = EVENTS.reserve::<SigactionEvent>(0) else {
        count_lost();
        return Ok(0);
    };
    let (handler, sa_flags, mask) = current_action(pending.sig);
    entry.write(SigactionEvent {
        header: header(kind::SIGACTION),
        ret: ret as i32,
        new_handler: handler,
        new_flags: sa_flags,
        new_mask: mask,
        ..pending
    });
    entry.submit(wakeup_flags());
    Ok(0)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
