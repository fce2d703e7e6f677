//! How the BTF-tracepoint object (`sigtrace-btf`) reads the kernel: a BTF tracepoint's
//! arguments are typed pointers, and so is every pointer field loaded from them, so the
//! verifier lets a program read their fields with plain loads (a fault reads as zero), at
//! offsets it knows as constants because CONFIG is frozen at load. No helper call, no copy:
//! a view is the pointer itself. Needs BPF_PROG_TYPE_TRACING (5.5; every distribution
//! kernel has it). An address computed with a variable or negative offset is no typed
//! pointer: those few reads go through `crate::kernel::probe`.

use aya_ebpf::{helpers::bpf_get_current_task_btf, programs::BtfTracePointContext};
use sigtrace_common::{K_SIGACTION_SIZE, KSA_HANDLER, TTY_NAME_LEN};

use crate::kernel::{FLAGS_WORD, HANDLER_WORD, Pid, Sighand, Signal, Task, Tty, probe};
use crate::maps::{Windows, conf};

/// What the programs receive.
pub type Ctx = BtfTracePointContext;

/// Defines the program `$name` on the tracepoint of that name, a BTF tracepoint whose body
/// is `$body(&ctx)`, its outcome counted by `finish`.
macro_rules! hook {
    ($name:ident, $tracepoint:literal, $body:ident) => {
        #[aya_ebpf::macros::btf_tracepoint(function = $tracepoint)]
        pub fn $name(ctx: aya_ebpf::programs::BtfTracePointContext) -> i32 {
            $crate::programs::finish(&ctx, $tracepoint, $body(&ctx))
        }
    };
}
pub(crate) use hook;

/// `$body` 64 times, with `$i` the constant 0, 1, ... 63 (a u64) in each copy.
macro_rules! each_of_64 {
    ($i:ident, $body:block) => {
        each_of_64!(@16 $i, $body, 0);
        each_of_64!(@16 $i, $body, 16);
        each_of_64!(@16 $i, $body, 32);
        each_of_64!(@16 $i, $body, 48);
    };
    (@16 $i:ident, $body:block, $base:expr) => {
        each_of_64!(@4 $i, $body, $base);
        each_of_64!(@4 $i, $body, $base + 4);
        each_of_64!(@4 $i, $body, $base + 8);
        each_of_64!(@4 $i, $body, $base + 12);
    };
    (@4 $i:ident, $body:block, $base:expr) => {
        {
            let $i: u64 = $base;
            $body
        }
        {
            let $i: u64 = $base + 1;
            $body
        }
        {
            let $i: u64 = $base + 2;
            $body
        }
        {
            let $i: u64 = $base + 3;
            $body
        }
    };
}

/// Reads a `T` at `base + off` with a plain load; zero for a null `base`.
#[inline(always)]
pub fn read<T: Default>(base: u64, off: u32) -> T {
    if base == 0 {
        return T::default();
    }
    // SAFETY: `base` is a typed kernel pointer (a BTF tracepoint argument or a pointer field
    // loaded from one) and `off` a field of its type: the verifier checks the access
    // against the kernel's BTF and turns a fault into a zero read.
    unsafe { core::ptr::read_volatile((base + u64::from(off)) as *const T) }
}

/// `N` consecutive `T`s at `base + off`; only those in `wanted` (a bit per word) are read,
/// each with its own load: the verifier takes no load across two fields, nor of padding.
#[inline(always)]
pub fn words<T: Copy + Default, const N: usize>(base: u64, off: u32, wanted: u32) -> [T; N] {
    let mut out = [T::default(); N];
    let mut i = 0;
    while i < N {
        if wanted & (1 << i) != 0 {
            out[i] = read(base, off + (i * core::mem::size_of::<T>()) as u32);
        }
        i += 1;
    }
    out
}

/// The current task, as a typed pointer.
#[inline(always)]
pub fn current_task() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { bpf_get_current_task_btf() as u64 }
}

/// The kernel stack of the current task: one load, nothing worth caching.
#[inline(always)]
pub fn current_stack(_windows: &mut Windows, _pid_tgid: u64) -> u64 {
    Task::current().stack()
}

/// A view of a task: the task itself.
pub type TaskView<'a> = Task;
/// A view of a task's ids: the task itself.
pub type TaskIdsView<'a> = Task;
/// A view of a signal_struct: the struct itself.
pub type SignalView<'a> = Signal;
/// Nothing is copied: the windows take no room in the scratch.
pub type TaskWindow = ();
pub type TaskIdsWindow = ();
pub type SignalWindow = ();
pub type TtyWindow = ();

/// Views and the fields only a view is asked for (a window has them in the other object).
impl Task {
    /// The task itself (None for a null one): its fields are loaded where they are.
    #[inline(always)]
    pub fn view(self, _window: &mut TaskWindow) -> Option<TaskView<'_>> {
        (self.0 != 0).then_some(self)
    }
    #[inline(always)]
    pub fn ids_view(self, _window: &mut TaskIdsWindow) -> Option<TaskIdsView<'_>> {
        (self.0 != 0).then_some(self)
    }
    #[inline(always)]
    pub fn blocked(self) -> u64 {
        read(self.0, conf!(offsets.task_blocked))
    }
    /// task->pending.signal: this thread's own pending set.
    #[inline(always)]
    pub fn pending_signal(self) -> u64 {
        read(self.0, conf!(offsets.task_pending_signal))
    }
}

impl Signal {
    #[inline(always)]
    pub fn view(self, _window: &mut SignalWindow) -> Option<SignalView<'_>> {
        (self.0 != 0).then_some(self)
    }
    /// signal->shared_pending.signal: the process-wide pending set.
    #[inline(always)]
    pub fn shared_pending(self) -> u64 {
        read(self.0, conf!(offsets.signal_shared_pending))
    }
    #[inline(always)]
    pub fn tty(self) -> Tty {
        Tty(read(self.0, conf!(offsets.signal_tty)))
    }
}

/// A view of a sighand's actions: the sighand itself.
pub type ActionsView<'a> = Sighand;
pub type ActionsWindow = ();

impl Sighand {
    /// The sighand itself (None for a null one): each action is loaded where it is.
    #[inline(always)]
    pub fn actions_view(self, _window: &mut ActionsWindow) -> Option<ActionsView<'_>> {
        (self.0 != 0).then_some(self)
    }
    /// The signals caught (a handler) and ignored (SIG_IGN), as masks (bit n-1: signal n):
    /// 64 plain loads, unrolled so that each is at a constant offset, as a plain load's
    /// must be.
    #[inline(always)]
    pub fn caught_and_ignored(self) -> (u64, u64) {
        let first = self.0 + u64::from(conf!(offsets.sighand_action) + KSA_HANDLER);
        // The masks go through volatile stack slots in each copy: otherwise the compiler
        // keeps all 64 handlers live at once and overflows the BPF stack.
        let mut caught = 0u64;
        let mut ignored = 0u64;
        each_of_64!(i, {
            // SAFETY: a typed pointer (not null: see actions_view) at a constant offset in
            // its `action` array: the verifier checks it, a fault reads as zero. The other
            // two are our own locals.
            unsafe {
                let handler = core::ptr::read_volatile(
                    (first + i * u64::from(K_SIGACTION_SIZE)) as *const u64,
                );
                let seen_ignored = core::ptr::read_volatile(&ignored);
                core::ptr::write_volatile(
                    &mut ignored,
                    seen_ignored | u64::from(handler == 1) << i,
                );
                let seen_caught = core::ptr::read_volatile(&caught);
                core::ptr::write_volatile(&mut caught, seen_caught | u64::from(handler > 1) << i);
            }
        });
        (caught, ignored)
    }
    /// Handler and flags of `sig`'s action (1..=64): a variable offset, so through the
    /// helper.
    #[inline(always)]
    pub fn own(self, sig: i32) -> (u64, u64) {
        self.action(sig).map_or((0, 0), |action| {
            let words: [u64; 2] = probe(action.0, 0);
            (words[HANDLER_WORD], words[FLAGS_WORD])
        })
    }
}

impl Tty {
    /// Copies its name into `name` and returns its foreground group's struct pid.
    #[inline(always)]
    pub fn name_and_pgrp(self, _window: &mut TtyWindow, name: &mut [u8; TTY_NAME_LEN]) -> Pid {
        *name = read(self.0, conf!(offsets.tty_name));
        Pid(read(self.0, conf!(offsets.tty_pgrp)))
    }
}
