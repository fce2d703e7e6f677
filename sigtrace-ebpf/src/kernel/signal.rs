//! A process's signal state: its signal_struct, struct pids, sighand and k_sigactions, and
//! the siginfo a signal carries.

use sigtrace_common::K_SIGACTION_SIZE;

use super::{FLAGS_WORD, HANDLER_WORD, probe, read, words};
use crate::maps::conf;

/// A `struct signal_struct *`: the process-wide signal state.
#[derive(Clone, Copy)]
pub struct Signal(pub u64);

impl Signal {
    /// signal->group_exec_task: set while an exec kills the other threads.
    #[inline(always)]
    pub fn group_exec_task(self) -> u64 {
        read(self.0, conf!(offsets.signal_group_exec_task))
    }
    #[inline(always)]
    pub fn group_exit_code(self) -> i32 {
        read(self.0, conf!(offsets.signal_group_exit_code))
    }
    /// signal->live: threads not yet exited.
    #[inline(always)]
    pub fn live(self) -> i32 {
        read(self.0, conf!(offsets.signal_live))
    }
    /// signal->pids[pid_type].
    #[inline(always)]
    pub fn pid(self, pid_type: u32) -> Pid {
        Pid(read(self.0, conf!(offsets.signal_pids) + pid_type * 8))
    }
}

/// A `struct pid *`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Pid(pub u64);

impl Pid {
    /// Its global number (numbers[0].nr).
    #[inline(always)]
    pub fn global(self) -> u32 {
        read(self.0, conf!(offsets.pid_numbers))
    }
    /// The level of the pid namespace it was allocated in.
    #[inline(always)]
    pub fn level(self) -> u32 {
        read(self.0, conf!(offsets.pid_level))
    }
    /// Its number in the pid namespace at `level` (0 when it is not visible there);
    /// `global` is its number at level 0, `own_level` its own level if known.
    #[inline(always)]
    pub fn at_level(self, global: u32, level: u32, own_level: Option<u32>) -> u32 {
        if level == 0 {
            return global;
        }
        let own_level: u32 = own_level.unwrap_or_else(|| self.level());
        if level > own_level || level > 31 {
            return 0;
        }
        // A variable offset: through the helper.
        probe(
            self.0,
            conf!(offsets.pid_numbers) + level * conf!(offsets.upid_size),
        )
    }
}

/// A `struct sighand_struct *`: the process's 64 actions.
#[derive(Clone, Copy)]
pub struct Sighand(pub u64);

impl Sighand {
    /// The k_sigaction of `sig`, or None without a sighand or for a signal out of range.
    #[inline(always)]
    pub fn action(self, sig: i32) -> Option<KSigaction> {
        if self.0 == 0 || !(1..=64).contains(&sig) {
            return None;
        }
        // The mask changes nothing (1..=64 above), and the size is the fixed one the loader
        // checked: both keep the bound the verifier needs to let a variable offset onto a
        // typed pointer.
        let index = (sig as u64 - 1) & 63;
        Some(KSigaction(
            self.0 + conf!(offsets.sighand_action) as u64 + index * K_SIGACTION_SIZE as u64,
        ))
    }
    // All 64 actions at once: `actions_view`, in `crate::access` (one read into a window,
    // or plain loads).
}

/// A `struct k_sigaction *`: one the kernel passes, or one picked by signal number from a
/// sighand ([`Sighand::action`]), whose variable offset plain loads cannot take: its fields
/// are read through the helper.
#[derive(Clone, Copy)]
pub struct KSigaction(pub u64);

impl KSigaction {
    #[inline(always)]
    pub fn handler(self) -> u64 {
        probe(self.0, conf!(offsets.ksa_handler))
    }
    #[inline(always)]
    pub fn flags(self) -> u64 {
        probe(self.0, conf!(offsets.ksa_flags))
    }
    #[inline(always)]
    pub fn mask(self) -> u64 {
        probe(self.0, conf!(offsets.ksa_mask))
    }
    /// Handler and flags of an action the kernel passes, at their fixed offsets (checked
    /// by the loader), in one read.
    #[inline(always)]
    pub fn handler_and_flags(self) -> (u64, u64) {
        let action: [u64; 2] = words(self.0, 0, 0b11);
        (action[HANDLER_WORD], action[FLAGS_WORD])
    }
}

/// A `struct kernel_siginfo *` (uapi layout: signo, errno, code, then _sifields).
#[derive(Clone, Copy)]
pub struct Siginfo(pub u64);

impl Siginfo {
    /// The first `size_of::<T>()` bytes, in one read through the helper: the tracepoints'
    /// `info` may be SEND_SIG_NOINFO or SEND_SIG_PRIV rather than a pointer, so the verifier
    /// types it as a number, even where the kernel passes a real one.
    #[inline(always)]
    pub fn head<T: Default>(self) -> T {
        probe(self.0, 0)
    }
}
