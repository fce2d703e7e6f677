//! Every piece of state the programs share: the `CONFIG` global and the maps, each with who
//! writes it and who reads it. Names are UPPER_SNAKE and must not change: userspace finds
//! them by name in the object (sigtrace/src/loader.rs).

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf, StackTrace},
};
use sigtrace_common::{
    COMM_LEN, Config, KEPT_GATE_BYTES, KEPT_GATE_ENTRIES, PID_SIDE_WORDS, PendingKey,
    SigactionEvent, drop_reason,
};

use crate::kernel::{
    ActionsWindow, RegsWindow, SignalWindow, TaskIdsWindow, TaskWindow, TtyWindow,
};

/// Written by userspace at load time (EbpfLoader::set_global); read-only afterwards, so the
/// verifier prunes the branches of filters that are off. Read through [`conf!`].
#[unsafe(no_mangle)]
pub static CONFIG: Config = Config::ZEROED;

/// Reads a field of [`CONFIG`]: `conf!(offsets.task_tgid)`.
macro_rules! conf {
    ($($field:tt)+) => {
        $crate::maps::current_config(&$crate::maps::CONFIG.$($field)+)
    };
}
pub(crate) use conf;

/// Reads a field of CONFIG. Volatile keeps the compiler from folding the zeroed
/// initializer, since the real value is written by the loader.
#[inline(always)]
pub fn current_config<T: Copy>(field: &T) -> T {
    // SAFETY: `field` is a valid reference into a plain static.
    unsafe { core::ptr::read_volatile(field) }
}

/// Every record. Written by every program through `emit`; read by userspace
/// (events.rs decodes, trace.rs polls).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 22, 0);

/// Records that could not be reserved (ring buffer full), per CPU — and a child of a
/// followed process that FOLLOWED had no room for. Written by `emit` (and sched_process_fork);
/// read by userspace (`Probes::lost`).
#[map]
pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Records dropped for a reason other than a filter or a full ring, per CPU, indexed by
/// sigtrace_common::drop_reason. Written by the programs' wrappers (`programs::finish`);
/// read by userspace (`Probes::drops`).
#[map]
pub static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(drop_reason::COUNT, 0);

/// --pid, --sender, --target: the side bits (sigtrace_common::side) of every tgid,
/// PID_SIDE_BITS each. Written by userspace before attaching (and when a given pid exits);
/// read by the filters. An array rather than a hash map because the JIT inlines array
/// lookups: a pid filter that matches nothing costs no helper call. Userspace sizes it to
/// one word when no pid is traced.
#[map]
pub static PID_SIDES: Array<u64> = Array::with_max_entries(PID_SIDE_WORDS, 0);

/// Followed descendants (--follow, launch mode): tgid → side bits inherited from the parent.
/// Written by sched_process_fork (insert) and sched_process_exit (remove); read by the
/// filters. A hash map: the kernel writes it, and BPF has no atomic OR for a shared bitmap
/// word.
#[map]
pub static FOLLOWED: HashMap<u32, u8> = HashMap::with_max_entries(16384, 0);

/// --tid: tid → side bits. Written by userspace before attaching; read by signal_generate.
#[map]
pub static TIDS: HashMap<u32, u8> = HashMap::with_max_entries(1024, 0);

/// --pgrp: process group id → side bits. Written by userspace before attaching; read by
/// signal_generate.
#[map]
pub static PGRPS: HashMap<u32, u8> = HashMap::with_max_entries(1024, 0);

/// --comm: comm → side bits. Written by userspace before attaching; read by
/// signal_generate.
#[map]
pub static COMMS: HashMap<[u8; COMM_LEN], u8> = HashMap::with_max_entries(1024, 0);

/// Generated signals that passed the filters, by (target tgid, signal), counted, so that
/// their deliveries (which carry no sender) pass too. Written by signal_generate
/// (increment) and signal_deliver (decrement); read by signal_deliver.
#[map]
pub static DELIVERABLE: LruHashMap<PendingKey, u32> = LruHashMap::with_max_entries(16384, 0);

/// A cheap gate: one byte per 8 tgids, set to 0xff when a generation to any of them is
/// kept (and, without filters, when one of them takes a delivery). Byte stores need no
/// atomics and never undo each other, so a clear byte proves that none of those tgids was
/// ever named by a kept record. With filters that need generations, it stands in front of
/// DELIVERABLE (the delivery of an unrelated process costs an inlined array load instead of
/// a hash lookup) and of SIGNALLED; without, in front of the exit record (userspace shows
/// only signalled processes' exits, unless --all-exits). Never cleared; userspace sizes it
/// to one element when neither use applies. Written by signal_generate and signal_deliver;
/// read by signal_deliver and sched_process_exit.
#[map]
pub static KEPT_GATE: Array<[u8; KEPT_GATE_BYTES]> = Array::with_max_entries(KEPT_GATE_ENTRIES, 0);

/// Targets of kept generations: their exits pass the filters too (the story's "kill the
/// wrapper" needs the wrapper's exit even with --sender). Written by signal_generate
/// (insert) and sched_process_exit (remove); read by sched_process_exit.
#[map]
pub static SIGNALLED: LruHashMap<u32, u8> = LruHashMap::with_max_entries(16384, 0);

/// Per-CPU scratch for the signal programs: struct windows (too large for the stack) and
/// counters. Written and read by signal_generate and signal_deliver only. The signal
/// programs run with the siglock held and interrupts off, so nothing nests on this CPU.
#[map]
pub static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// rt_sigaction in flight, by tid: the signal and its action at syscall entry. Written by
/// sys_enter (insert); read and removed by sys_exit.
#[map]
pub static SIGACTION_ENTRY: HashMap<u32, SigactionEvent> = HashMap::with_max_entries(4096, 0);

/// --handler-time: threads that ran a reported handler, by tid (the value is unused): only
/// their rt_sigreturns are reported. Written by signal_deliver; read by sys_enter. An LRU
/// map: entries of threads long gone make room.
#[map]
pub static HANDLING: LruHashMap<u32, u32> = LruHashMap::with_max_entries(16384, 0);

/// --stack: the senders' stacks, by id (equal stacks share one). Written by signal_generate
/// (bpf_get_stackid); read by userspace, which symbolizes them. Userspace sizes it to one
/// entry without --stack.
#[map]
pub static STACKS: StackTrace = StackTrace::with_max_entries(4096, 0);

/// The value of [`SCRATCH`].
#[repr(C)]
pub struct Scratch {
    /// The views of the signal's target (at delivery, the recipient).
    pub target: TaskWindow,
    pub target_ids: TaskIdsWindow,
    pub windows: Windows,
    /// Records since the last wake-up, on this CPU.
    pub since_wakeup: u32,
}

/// The other struct windows (one read each instead of one per field; empty where fields
/// are plain loads, see `crate::access`), the 64 k_sigactions of a recipient, and the
/// sender's registers.
#[repr(C)]
pub struct Windows {
    pub actions: ActionsWindow,
    pub signal: SignalWindow,
    pub regs: RegsWindow,
    pub tty: TtyWindow,
    /// The last sender seen on this CPU (task address and pid_tgid, together never reused
    /// while both match) and its kernel stack: saves a read per signal of a repeating sender
    /// where reads are helper calls.
    pub sender_task: u64,
    pub sender_id: u64,
    pub sender_stack: u64,
    /// Where `Task::on_own_stack` turns an address into a number.
    pub stack_probe: u64,
}

/// This CPU's scratch.
#[inline(always)]
pub fn scratch() -> Option<&'static mut Scratch> {
    // SAFETY: the per-CPU slot is ours while this program runs (see Scratch); programs
    // never keep the reference beyond their run.
    SCRATCH.get_ptr_mut(0).map(|slot| unsafe { &mut *slot })
}
