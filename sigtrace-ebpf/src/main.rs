//! sigtrace's kernel half: raw tracepoints (no tracefs, no kprobes needed) on the signal and
//! process paths. Each program is a thin wrapper over a `try_*` function; records go to one
//! ring buffer, woken in batches; reserve failures are counted per CPU so loss is exact.
//!
//! Kernel struct offsets come from userspace (resolved from the running kernel's BTF) through
//! the `CONFIG` global, so nothing here depends on a header of another kernel.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task,
        bpf_get_current_uid_gid, bpf_ktime_get_ns, bpf_probe_read_kernel,
        bpf_probe_read_kernel_buf,
    },
    macros::{map, raw_tracepoint},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::RawTracePointContext,
};
use sigtrace_common::{
    COMM_LEN, Config, DeliverEvent, ExitEvent, ForkEvent, GenerateEvent, Header, K_SIGACTION_SIZE,
    KEPT_GATE_BYTES, KEPT_GATE_ENTRIES, KSA_FLAGS, KSA_HANDLER, MAX_CHILDREN, PID_SIDE_WORDS,
    PendingKey, REGS_WINDOW, Recipient, SIGNAL_WINDOW, SigactionEvent, TASK_IDS_WINDOW,
    TASK_WINDOW, TTY_NAME_LEN, TaskIds, carries_sender, flag, kernel_origin, kind, pid_side_slot,
    result, si, side, via,
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

/// --pid, --sender, --target: the side bits (sigtrace_common::side) of every tgid,
/// PID_SIDE_BITS each, written by userspace before attaching. An array rather than a hash
/// map because the JIT inlines array lookups: a pid filter that matches nothing costs no
/// helper call. Userspace sizes it to one word when no pid is traced.
#[map]
static PID_SIDES: Array<u64> = Array::with_max_entries(PID_SIDE_WORDS, 0);

/// Followed descendants (--follow, launch mode): tgid → side bits inherited from the parent.
/// A hash map: the kernel writes it, and BPF has no atomic OR for a shared bitmap word.
#[map]
static FOLLOWED: HashMap<u32, u8> = HashMap::with_max_entries(16384, 0);
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

/// A cheap gate: one byte per 8 tgids, set to 0xff when a generation to any of them is
/// kept (and, without filters, when one of them takes a delivery). Byte stores need no
/// atomics and never undo each other, so a clear byte proves that none of those tgids was
/// ever named by a kept record. With filters that need generations, it stands in front of
/// DELIVERABLE (the delivery of an unrelated process costs an inlined array load instead of
/// a hash lookup) and of SIGNALLED; without, in front of the exit record (userspace shows
/// only signalled processes' exits, unless --all-exits). Never cleared; userspace sizes it
/// to one element when neither use applies.
#[map]
static KEPT_GATE: Array<[u8; KEPT_GATE_BYTES]> = Array::with_max_entries(KEPT_GATE_ENTRIES, 0);

#[inline(always)]
fn kept_gate_slot(tgid: u32) -> (u32, usize) {
    let octet = tgid / 8;
    (
        octet / KEPT_GATE_BYTES as u32,
        (octet % KEPT_GATE_BYTES as u32) as usize,
    )
}

#[inline(always)]
fn open_kept_gate(tgid: u32) {
    let (entry, byte) = kept_gate_slot(tgid);
    if let Some(bytes) = KEPT_GATE.get_ptr_mut(entry) {
        // SAFETY: a map value of KEPT_GATE_BYTES bytes; `byte` is below that.
        unsafe { (*bytes)[byte] = 0xff };
    }
}

#[inline(always)]
fn kept_gate_open(tgid: u32) -> bool {
    let (entry, byte) = kept_gate_slot(tgid);
    KEPT_GATE.get(entry).is_some_and(|bytes| bytes[byte] != 0)
}

/// Targets of kept generations: their exits pass the filters too (the story's "kill the
/// wrapper" needs the wrapper's exit even with --sender).
#[map]
static SIGNALLED: LruHashMap<u32, u8> = LruHashMap::with_max_entries(16384, 0);

/// Per-CPU scratch for the signal programs: struct windows (too large for the stack) and
/// counters. The signal programs run with the siglock held and interrupts off, so nothing
/// nests on this CPU.
#[repr(C)]
pub struct Scratch {
    windows: Windows,
    /// Records since the last wake-up, on this CPU.
    since_wakeup: u32,
}

/// Struct windows (one read each instead of one per field) and the 64 k_sigactions of a
/// recipient.
#[repr(C)]
pub struct Windows {
    actions: Actions,
    target: [u8; TASK_WINDOW],
    signal: [u8; SIGNAL_WINDOW],
    target_ids: [u8; TASK_IDS_WINDOW],
    regs: [u8; REGS_WINDOW],
    tty: [u8; TTY_WINDOW],
    /// The last sender seen on this CPU (task address and pid_tgid, together never reused
    /// while both match) and its kernel stack: saves a read per signal of a repeating sender.
    sender_task: u64,
    sender_id: u64,
    sender_stack: u64,
}
/// A sighand's 64 k_sigactions, as words.
type Actions = [[u64; (K_SIGACTION_SIZE / 8) as usize]; 64];
const TTY_WINDOW: usize = 128;
const HANDLER_WORD: usize = (KSA_HANDLER / 8) as usize;
const FLAGS_WORD: usize = (KSA_FLAGS / 8) as usize;
#[map]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// rt_sigaction in flight, by tid: the signal and its action at syscall entry.
#[map]
static SIGACTION_ENTRY: HashMap<u32, SigactionEvent> = HashMap::with_max_entries(4096, 0);

const SIGKILL: i32 = 9;
/// enum pid_type
const PIDTYPE_TGID: u32 = 1;
const PIDTYPE_PGID: u32 = 2;
const PIDTYPE_SID: u32 = 3;
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

/// Copies `len` bytes at `base + start` into `window` (one helper call); false when
/// unreadable. The window is then read with [`at`].
#[inline(always)]
fn load(window: &mut [u8], base: u64, start: u32, len: u32) -> bool {
    if base == 0 {
        return false;
    }
    let len = (len as usize).min(window.len());
    // SAFETY: bpf_probe_read_kernel checks the source; the destination is our scratch.
    unsafe { bpf_probe_read_kernel_buf((base + start as u64) as *const u8, &mut window[..len]) }
        .is_ok()
}

/// A task_struct's signal-state window (real_cred, comm, signal, sighand, blocked,
/// pending), in one read.
#[inline(always)]
fn load_task(window: &mut [u8], task: u64) -> bool {
    load(
        window,
        task,
        conf!(offsets.task_window_start),
        conf!(offsets.task_window_len),
    )
}

/// A task_struct's ids window (pid, tgid, real_parent), in one read.
#[inline(always)]
fn load_task_ids(window: &mut [u8], task: u64) -> bool {
    load(
        window,
        task,
        conf!(offsets.task_ids_window_start),
        conf!(offsets.task_ids_window_len),
    )
}

/// This CPU's scratch.
#[inline(always)]
fn scratch() -> Option<&'static mut Scratch> {
    // SAFETY: the per-CPU slot is ours while this program runs (see Scratch); programs
    // never keep the reference beyond their run.
    SCRATCH.get_ptr_mut(0).map(|slot| unsafe { &mut *slot })
}

/// The `T` at struct offset `off` of a window that starts at struct offset `start`.
#[inline(always)]
fn at<T: Copy + Default>(window: &[u8], start: u32, off: u32) -> T {
    let rel = off.wrapping_sub(start) as usize;
    if rel >= window.len() || window.len() - rel < core::mem::size_of::<T>() {
        return T::default();
    }
    // SAFETY: bounds checked above; any bit pattern is a valid integer.
    unsafe { core::ptr::read_unaligned(window.as_ptr().add(rel) as *const T) }
}

/// The global number of a `struct pid *` (numbers[0].nr).
#[inline(always)]
fn pid_global(pid: u64) -> u32 {
    read(pid, conf!(offsets.pid_numbers))
}

/// The number of a `struct pid *` in the pid namespace at `level` (0 when it is not
/// visible there); `global` is its number at level 0, `own_level` its own level if known.
#[inline(always)]
fn pid_at_level(pid: u64, global: u32, level: u32, own_level: Option<u32>) -> u32 {
    if level == 0 {
        return global;
    }
    let own_level: u32 = own_level.unwrap_or_else(|| read(pid, conf!(offsets.pid_level)));
    if level > own_level || level > 31 {
        return 0;
    }
    read(
        pid,
        conf!(offsets.pid_numbers) + level * conf!(offsets.upid_size),
    )
}

/// Global and namespace numbers of a struct pid, reusing `known` (pointer, global, in ns)
/// when it is the same struct: group and session leaders share one.
#[inline(always)]
fn pid_pair(pid: u64, level: u32, known: &[(u64, u32, u32); 2]) -> (u32, u32) {
    for &(ptr, global, in_ns) in known {
        if ptr == pid && ptr != 0 {
            return (global, in_ns);
        }
    }
    let global = pid_global(pid);
    (global, pid_at_level(pid, global, level, None))
}

#[inline(always)]
fn task_at<T: Copy + Default>(window: &[u8], off: u32) -> T {
    at(window, conf!(offsets.task_window_start), off)
}

#[inline(always)]
fn task_ids_at<T: Copy + Default>(window: &[u8], off: u32) -> T {
    at(window, conf!(offsets.task_ids_window_start), off)
}

#[inline(always)]
fn signal_at<T: Copy + Default>(window: &[u8], off: u32) -> T {
    at(window, conf!(offsets.signal_window_start), off)
}

#[inline(always)]
fn signal_pid(window: &[u8], pid_type: u32) -> u64 {
    signal_at(window, conf!(offsets.signal_pids) + pid_type * 8)
}

/// A task's ids from its two windows; uid through its credentials (one more read).
#[inline(always)]
fn task_ids(ids: &[u8], window: &[u8], out: &mut TaskIds) {
    out.tgid = task_ids_at(ids, conf!(offsets.task_tgid));
    out.tid = task_ids_at(ids, conf!(offsets.task_pid));
    let cred: u64 = task_at(window, conf!(offsets.task_real_cred));
    out.uid = read(cred, conf!(offsets.cred_uid));
    out.comm = task_at(window, conf!(offsets.task_comm));
}

/// A task's ids read field by field, for the rare records (exit, fork) that have no window.
#[inline(always)]
fn read_task_ids(task: u64, out: &mut TaskIds) {
    out.tgid = read(task, conf!(offsets.task_tgid));
    out.tid = read(task, conf!(offsets.task_pid));
    let cred: u64 = read(task, conf!(offsets.task_real_cred));
    out.uid = read(cred, conf!(offsets.cred_uid));
    out.comm = read(task, conf!(offsets.task_comm));
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
    // SAFETY: a helper without arguments.
    Header::new(kind, unsafe { bpf_ktime_get_ns() })
}

/// Submit flags: no wake-up until this CPU has written a batch; the reader also polls on a
/// timer, so a lone record is never stuck.
#[inline(always)]
fn wakeup_flags(since_wakeup: &mut u32) -> u64 {
    *since_wakeup += 1;
    if *since_wakeup >= conf!(wakeup_records) {
        *since_wakeup = 0;
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// Submit flags for a rare record (exit, fork, sigaction) of `size` bytes, already reserved:
/// a wake-up only from the record that brings the waiting data past an eighth of the ring
/// (a burst of exits), never one per record, nor one per record while the reader is behind.
/// A wake-up is a self-IPI, on a VM an exit to the hypervisor: measured ~15 µs per process
/// exit when every exit woke the reader. Otherwise the reader's 25 ms poll picks them up.
#[inline(always)]
fn rare_wakeup(size: usize) -> u64 {
    // Counts reserved records too, this one included, each with the ring's 8-byte header
    // and rounded up to 8 bytes.
    let waiting = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    let threshold = u64::from(conf!(wakeup_bytes));
    let this_record = ((size + 8 + 7) & !7) as u64;
    if waiting >= threshold && waiting.saturating_sub(this_record) < threshold {
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

/// The side bits of a tgid (0 when not traced): given on the command line, or inherited
/// from a followed parent.
#[inline(always)]
fn pid_side(tgid: u32) -> u8 {
    let (word, shift) = pid_side_slot(tgid);
    let given = match PID_SIDES.get(word) {
        Some(bits) => ((*bits >> shift) & side::EITHER as u64) as u8,
        None => 0,
    };
    if conf!(flags) & flag::FOLLOW_FORKS != 0 {
        given | side_of(&FOLLOWED, tgid)
    } else {
        given
    }
}

#[inline(always)]
fn side_of(map: &HashMap<u32, u8>, key: u32) -> u8 {
    // SAFETY: the value is a plain u8 copied out at once.
    unsafe { map.get(key) }.copied().unwrap_or(0)
}

#[inline(always)]
fn comm_side(comm: &[u8; COMM_LEN]) -> u8 {
    // SAFETY: as above.
    unsafe { COMMS.get(comm) }.copied().unwrap_or(0)
}

/// The current syscall and its first argument, from the sender's saved user registers:
/// tells kill(-pgid) from kill(pid), and both from kernel-originated signals. Only a syscall
/// that sends this very signal counts: a process dying inside kill(2) sends its parent a
/// SIGCHLD from the same syscall.
#[inline(always)]
fn sender_syscall(windows: &mut Windows, pid_tgid: u64, sig: i32) -> (u32, i64) {
    // A stale entry needs this task's address and its pid/tid to be reused together (a pid
    // wrap-around landing on the same slab slot) before another sender passes here on this
    // CPU; even then the registers read must name this very signal to be believed.
    let task = current_task();
    if windows.sender_task != task || windows.sender_id != pid_tgid {
        windows.sender_task = task;
        windows.sender_id = pid_tgid;
        windows.sender_stack = read(task, conf!(offsets.task_stack));
    }
    let stack = windows.sender_stack;
    let start = conf!(offsets.regs_window_start);
    let window = &mut windows.regs;
    if !load(
        window,
        stack + conf!(offsets.regs_from_stack) as u64,
        start,
        conf!(offsets.regs_window_len),
    ) {
        return (via::OTHER, 0);
    }
    let nr: u64 = at(window, start, conf!(offsets.regs_orig_ax));
    let (how, sig_reg) = match nr {
        NR_KILL => (via::KILL, conf!(offsets.regs_si)),
        NR_TKILL => (via::TKILL, conf!(offsets.regs_si)),
        NR_TGKILL => (via::TGKILL, conf!(offsets.regs_dx)),
        NR_RT_SIGQUEUEINFO => (via::SIGQUEUE, conf!(offsets.regs_si)),
        NR_RT_TGSIGQUEUEINFO => (via::SIGQUEUE, conf!(offsets.regs_dx)),
        NR_PIDFD_SEND_SIGNAL => (via::PIDFD, conf!(offsets.regs_si)),
        _ => return (via::OTHER, 0),
    };
    let sent: u64 = at(window, start, sig_reg);
    if sent as u32 as i32 != sig {
        return (via::OTHER, 0);
    }
    let arg: u64 = at(window, start, conf!(offsets.regs_di));
    // kill's pid is an int: sign-extend the low half.
    (how, arg as u32 as i32 as i64)
}

/// Copies a tty's name into `name` and returns its foreground group's struct pid: one read
/// when both fields fit in the tty window (they sit 96 bytes apart on x86_64), two otherwise.
#[inline(always)]
fn tty_name_and_pgrp(
    window: &mut [u8; TTY_WINDOW],
    tty: u64,
    name: &mut [u8; TTY_NAME_LEN],
) -> u64 {
    let name_at = conf!(offsets.tty_name);
    let pgrp_at = conf!(offsets.tty_pgrp);
    if name_at < pgrp_at && pgrp_at + 8 - name_at <= TTY_WINDOW as u32 {
        if !load(window, tty, name_at, pgrp_at + 8 - name_at) {
            return 0;
        }
        *name = at(window, name_at, name_at);
        return at(window, name_at, pgrp_at);
    }
    *name = read(tty, name_at);
    read(tty, pgrp_at)
}

/// The recipient's process-wide state, from its task windows (already loaded) and its
/// signal_struct, pids, tty and sighand.
#[inline(always)]
fn snapshot_recipient(windows: &mut Windows, sig: i32, out: &mut Recipient) {
    let task = &windows.target;
    let tgid: u32 = task_ids_at(&windows.target_ids, conf!(offsets.task_tgid));
    let parent: u64 = task_ids_at(&windows.target_ids, conf!(offsets.task_real_parent));
    let signal: u64 = task_at(task, conf!(offsets.task_signal));
    out.blocked = task_at(task, conf!(offsets.task_blocked));
    let thread_pending: u64 = task_at(task, conf!(offsets.task_pending_signal));
    let sighand: u64 = task_at(task, conf!(offsets.task_sighand));
    out.parent_tgid = read(parent, conf!(offsets.task_tgid));
    if load(
        &mut windows.signal,
        signal,
        conf!(offsets.signal_window_start),
        conf!(offsets.signal_window_len),
    ) {
        let sw = &windows.signal;
        let shared_pending: u64 = signal_at(sw, conf!(offsets.signal_shared_pending));
        out.pending = thread_pending | shared_pending;
        let (tgid_pid, pgid_pid, sid_pid) = (
            signal_pid(sw, PIDTYPE_TGID),
            signal_pid(sw, PIDTYPE_PGID),
            signal_pid(sw, PIDTYPE_SID),
        );
        let tty: u64 = signal_at(sw, conf!(offsets.signal_tty));
        // Numbers as the recipient sees them: in the namespace of its own (tgid) level.
        // Group and session leaders share their struct pid: no read for those.
        let level: u32 = read(tgid_pid, conf!(offsets.pid_level));
        let ns_tgid = pid_at_level(tgid_pid, tgid, level, Some(level));
        let (pgid, ns_pgid) = pid_pair(pgid_pid, level, &[(tgid_pid, tgid, ns_tgid), (0, 0, 0)]);
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
        if tty != 0 {
            let fg = tty_name_and_pgrp(&mut windows.tty, tty, &mut out.tty);
            out.tty_fg_pgid = if fg == pgid_pid { pgid } else { pid_global(fg) };
        }
    }
    let actions = &mut windows.actions;
    if sighand == 0
        // SAFETY: reads into our own scratch; the source is checked by the helper.
        || unsafe {
            bpf_probe_read_kernel_buf(
                (sighand + conf!(offsets.sighand_action) as u64) as *const u8,
                core::slice::from_raw_parts_mut(
                    actions.as_mut_ptr() as *mut u8,
                    core::mem::size_of::<Actions>(),
                ),
            )
        }
        .is_err()
    {
        return;
    }
    // Fixed layout (checked by the loader): the loop unrolls into constant-offset loads.
    let mut caught = 0u64;
    let mut ignored = 0u64;
    for (i, action) in actions.iter().enumerate() {
        let handler = action[HANDLER_WORD];
        ignored |= u64::from(handler == 1) << i;
        caught |= u64::from(handler > 1) << i;
    }
    out.caught = caught;
    out.ignored = ignored;
    let own = &actions[(sig as usize).wrapping_sub(1) & 63];
    out.handler = own[HANDLER_WORD];
    out.sa_flags = own[FLAGS_WORD];
}

#[inline(always)]
fn wanted_signal(sig: i32) -> bool {
    (1..=64).contains(&sig) && conf!(signals) & (1u64 << ((sig - 1) as u64 & 63)) != 0
}

/// Any filter that the delivery cannot check by itself (it carries no sender).
#[inline(always)]
fn filtered(flags: u32) -> bool {
    flags & flag::NEEDS_GENERATION != 0
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
    let result = ctx.arg::<u64>(4) as u32;
    let flags = conf!(flags);
    if !wanted_signal(sig) || (flags & flag::FAILED_ONLY != 0 && result == result::DELIVERED) {
        return Ok(0);
    }
    let Some(scratch) = scratch() else {
        return Ok(0);
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    let sender_tgid = (pid_tgid >> 32) as u32;
    // The target's ids (a small window) decide the filters; the rest is read once kept.
    if !load_task_ids(&mut scratch.windows.target_ids, task) {
        return Ok(0);
    }
    let target_tgid: u32 = task_ids_at(&scratch.windows.target_ids, conf!(offsets.task_tgid));
    let self_tgid = conf!(self_tgid);
    if target_tgid == self_tgid {
        return Ok(0);
    }
    // A timer or another interrupt can raise a signal while sigtrace happens to be current:
    // only what sigtrace itself sends (through a syscall, so not of kernel origin) is ours
    // to hide. Judged once the siginfo is read, below.
    let maybe_own = sender_tgid == self_tgid;
    if flags & flag::PID_FILTER != 0
        && pid_side(sender_tgid) & side::SENDER == 0
        && pid_side(target_tgid) & side::TARGET == 0
    {
        return Ok(0);
    }
    // Filters that need no siginfo first: a rejected signal costs no read of it.
    if flags & flag::UID_FILTER != 0 && bpf_get_current_uid_gid() as u32 != conf!(uid) {
        return Ok(0);
    }
    if flags & flag::TID_FILTER != 0 {
        let target_tid: u32 = task_ids_at(&scratch.windows.target_ids, conf!(offsets.task_pid));
        if side_of(&TIDS, pid_tgid as u32) & side::SENDER == 0
            && side_of(&TIDS, target_tid) & side::TARGET == 0
        {
            return Ok(0);
        }
    }
    if flags & flag::PGRP_FILTER != 0 {
        let sender_signal: u64 = read(current_task(), conf!(offsets.task_signal));
        let target_signal: u64 = read(task, conf!(offsets.task_signal));
        let pgid_of =
            |signal: u64| pid_global(read(signal, conf!(offsets.signal_pids) + PIDTYPE_PGID * 8));
        let sender_pgid = pgid_of(sender_signal);
        let target_pgid = pgid_of(target_signal);
        if side_of(&PGRPS, sender_pgid) & side::SENDER == 0
            && side_of(&PGRPS, target_pgid) & side::TARGET == 0
        {
            return Ok(0);
        }
    }
    if flags & flag::COMM_FILTER != 0 {
        let target_comm: [u8; COMM_LEN] = read(task, conf!(offsets.task_comm));
        let sender_comm = bpf_get_current_comm().unwrap_or_default();
        if comm_side(&sender_comm) & side::SENDER == 0
            && comm_side(&target_comm) & side::TARGET == 0
        {
            return Ok(0);
        }
    }
    let (code, errno, si_pid, si_uid, info_kind) = if info <= SEND_SIG_PRIV {
        // What the tracepoint itself reports for these (TP_STORE_SIGINFO).
        let code = if info == SEND_SIG_NOINFO {
            si::USER
        } else {
            si::KERNEL
        };
        (code, 0, 0, 0, 1)
    } else {
        // uapi siginfo: errno at 4, code at 8, _sifields at 16 (si_pid, si_uid first for
        // kill, rt and sigchld). One read of the head.
        let head: [u32; 6] = read(info, 0);
        let code = head[2] as i32;
        let (si_pid, si_uid) = if carries_sender(sig, code) {
            (head[4], head[5])
        } else {
            (0, 0)
        };
        (code, head[1] as i32, si_pid, si_uid, 0)
    };
    if maybe_own && !kernel_origin(info <= SEND_SIG_PRIV, code) {
        return Ok(0);
    }
    if flags & (flag::KERNEL_ONLY | flag::USER_ONLY) != 0 {
        let from_kernel = kernel_origin(info <= SEND_SIG_PRIV, code);
        if (flags & flag::KERNEL_ONLY != 0 && !from_kernel)
            || (flags & flag::USER_ONLY != 0 && from_kernel)
        {
            return Ok(0);
        }
    }

    // Kept: open the target's gate before anything else, so that an exit racing this
    // generation on another CPU finds it open (an extra open gate only lets an exit through).
    if !filtered(flags) || result::queued(result) {
        open_kept_gate(target_tgid);
    }
    if !load_task(&mut scratch.windows.target, task) {
        return Ok(0);
    }
    let Some(mut entry) = EVENTS.reserve::<GenerateEvent>(0) else {
        count_lost();
        return Ok(0);
    };
    let Scratch {
        windows,
        since_wakeup,
        ..
    } = scratch;
    let event = entry.as_mut_ptr();
    // SAFETY: `event` points at a reserved, exclusively ours ring buffer slot; every field
    // is written before submit (zeroing first keeps stale bytes out).
    unsafe {
        core::ptr::write_bytes(event, 0, 1);
        let event = &mut *event;
        event.header = header(kind::GENERATE);
        event.sender.tgid = sender_tgid;
        event.sender.tid = pid_tgid as u32;
        event.sender.uid = bpf_get_current_uid_gid() as u32;
        event.sender.comm = bpf_get_current_comm().unwrap_or_default();
        task_ids(&windows.target_ids, &windows.target, &mut event.target);
        event.sig = sig;
        event.code = code;
        event.errno = errno;
        event.group = group as u32;
        event.result = result;
        event.si_pid = si_pid;
        event.si_uid = si_uid;
        event.info_kind = info_kind;
        if info_kind == 0 && code <= 0 {
            let (how, arg) = sender_syscall(windows, pid_tgid, sig);
            event.via = how;
            event.via_arg = arg;
        }
        snapshot_recipient(windows, sig, &mut event.recipient);
    }
    if filtered(flags) && result::queued(result) {
        let _ = SIGNALLED.insert(target_tgid, 1, 0);
        let key = PendingKey {
            tgid: target_tgid,
            sig: sig as u32,
        };
        match DELIVERABLE.get_ptr_mut(key) {
            // SAFETY: the value is a plain counter.
            Some(count) => unsafe { *count += 1 },
            None => {
                let _ = DELIVERABLE.insert(key, 1, 0);
            }
        }
    }
    entry.submit(wakeup_flags(since_wakeup));
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
    if flags & flag::FAILED_ONLY != 0 {
        return Ok(0);
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if tgid == conf!(self_tgid) {
        return Ok(0);
    }
    let group_exit_code: i32 = if sig == SIGKILL {
        let signal: u64 = read(current_task(), conf!(offsets.task_signal));
        // An exec in another thread kills this one with a SIGKILL nobody sent
        // (de_thread): not a signal delivery.
        let exec_task: u64 = read(signal, conf!(offsets.signal_group_exec_task));
        if exec_task != 0 {
            return Ok(0);
        }
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
    if filtered(flags) {
        let key = PendingKey {
            tgid,
            sig: cause as u32,
        };
        let waiting = if kept_gate_open(tgid) {
            DELIVERABLE.get_ptr_mut(key)
        } else {
            None
        };
        let kept = match waiting {
            // SAFETY: the value is a plain counter.
            Some(count) if unsafe { *count } > 0 => {
                // Every thread of a dying group dequeues the SIGKILL: keep the count then.
                if cause == sig {
                    // SAFETY: as above.
                    unsafe { *count -= 1 };
                }
                true
            }
            _ => false,
        };
        // A traced target's own deliveries pass without a kept generation (one generated
        // before tracing started) when the pid is the only filter: no other filter can be
        // judged without the sender.
        let only_pids = flags & flag::NEEDS_GENERATION & !flag::PID_FILTER == 0;
        if !kept && !(only_pids && pid_side(tgid) & side::TARGET != 0) {
            return Ok(0);
        }
    } else {
        // Userspace takes a delivery, like a generation, as a reason to show the exit.
        open_kept_gate(tgid);
    }
    let Some(scratch) = scratch() else {
        return Ok(0);
    };
    // The recipient is the current task: one read gives its comm and blocked mask (helper
    // calls, not bytes copied, are what costs here).
    if !load_task(&mut scratch.windows.target, current_task()) {
        return Ok(0);
    }
    let Some(mut entry) = EVENTS.reserve::<DeliverEvent>(0) else {
        count_lost();
        return Ok(0);
    };
    let Scratch {
        windows,
        since_wakeup,
        ..
    } = scratch;
    let event = entry.as_mut_ptr();
    // SAFETY: our reserved slot, fully written before submit.
    unsafe {
        core::ptr::write_bytes(event, 0, 1);
        let event = &mut *event;
        event.header = header(kind::DELIVER);
        event.task.tgid = tgid;
        event.task.tid = pid_tgid as u32;
        event.task.comm = task_at(&windows.target, conf!(offsets.task_comm));
        event.task.uid = bpf_get_current_uid_gid() as u32;
        event.sig = sig;
        // uapi siginfo head: signo, errno, code.
        let head: [i32; 3] = read(info, 0);
        event.errno = head[1];
        event.code = head[2];
        event.group_exit_code = group_exit_code;
        // k_sigaction's handler and flags, in one read (fixed layout, checked by the loader).
        let action: [u64; 2] = read(ka, 0);
        event.handler = action[HANDLER_WORD];
        event.sa_flags = action[FLAGS_WORD];
        event.blocked = task_at(&windows.target, conf!(offsets.task_blocked));
    }
    entry.submit(wakeup_flags(since_wakeup));
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
    // The last thread: the kernel says so where it passes group_dead; before 6.16 the
    // live count is all there is (racy only between threads exiting at once).
    let group_dead = if conf!(offsets.exit_has_group_dead) != 0 {
        ctx.arg::<u64>(1) & 0xff != 0
    } else {
        let signal: u64 = read(task, conf!(offsets.task_signal));
        read::<i32>(signal, conf!(offsets.signal_live)) == 0
    };
    if !group_dead {
        return Ok(0);
    }
    let tgid: u32 = read(task, conf!(offsets.task_tgid));
    if tgid == conf!(self_tgid) {
        return Ok(0);
    }
    let followed = pid_side(tgid);
    // A closed gate: never the target of a kept generation (nor, unfiltered, of a
    // delivery), so neither in SIGNALLED nor an exit userspace would show.
    let gate_open = kept_gate_open(tgid);
    if filtered(flags) {
        // SAFETY: the value is a plain u8 copied out at once.
        let signalled = gate_open && unsafe { SIGNALLED.get(tgid) }.is_some();
        if followed == 0 && !signalled {
            return Ok(0);
        }
        if signalled {
            let _ = SIGNALLED.remove(tgid);
        }
    } else if flags & flag::ALL_EXITS == 0 && !gate_open {
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
        read_task_ids(task, &mut event.task);
        let mut code: i32 = read(task, conf!(offsets.task_exit_code));
        if code == 0 {
            let signal: u64 = read(task, conf!(offsets.task_signal));
            code = read(signal, conf!(offsets.signal_group_exit_code));
        }
        event.exit_code = code;
        let parent: u64 = read(task, conf!(offsets.task_real_parent));
        event.parent_tgid = read(parent, conf!(offsets.task_tgid));
        list_children(task, event);
    }
    entry.submit(rare_wakeup(core::mem::size_of::<ExitEvent>()));
    if flags & flag::FOLLOW_FORKS != 0 && followed != 0 {
        let _ = FOLLOWED.remove(tgid);
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
    let parent_side = pid_side(parent_tgid);
    if conf!(flags) & flag::FOLLOW_FORKS == 0 || parent_side == 0 {
        return Ok(0);
    }
    // The child is followed on the same side(s) as its parent (--sender P --follow keeps
    // what P's descendants send, not what they receive).
    if FOLLOWED.insert(child_tgid, parent_side, 0).is_err() {
        count_lost();
    }
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
        read_task_ids(parent, &mut event.parent);
        event.child_tgid = child_tgid;
        event.child_tid = read(child, conf!(offsets.task_pid));
    }
    entry.submit(rare_wakeup(core::mem::size_of::<ForkEvent>()));
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
        && (flags & flag::PID_FILTER == 0 || pid_side(tgid) != 0)
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
    let _ = SIGACTION_ENTRY.insert(pid_tgid as u32, event, 0);
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
    let Some(pending) = (unsafe { SIGACTION_ENTRY.get(tid) }).copied() else {
        return Ok(0);
    };
    let _ = SIGACTION_ENTRY.remove(tid);
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
    entry.submit(rare_wakeup(core::mem::size_of::<SigactionEvent>()));
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
