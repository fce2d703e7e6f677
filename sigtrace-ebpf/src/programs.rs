//! The programs, one file per group of hooks. Each is a thin `#[raw_tracepoint]` wrapper
//! over a `try_*` function that returns why it dropped a record, if it did; [`finish`]
//! counts that reason in DROPS. A record left out by a filter is not dropped: `Ok`.

mod deliver;
mod generate;
mod process;
mod sigaction;

use crate::maps::DROPS;

/// What a `try_*` function did: `Err` carries a sigtrace_common::drop_reason.
pub type Outcome = Result<(), u32>;

/// The program's return value (always 0: a raw tracepoint's is ignored), after counting a
/// dropped record.
#[inline(always)]
pub fn finish(outcome: Outcome) -> i32 {
    if let Err(reason) = outcome
        && let Some(count) = DROPS.get_ptr_mut(reason)
    {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while we run.
        unsafe { *count += 1 };
    }
    0
}
