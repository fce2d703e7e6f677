//! The programs, one file per group of hooks. Each is a thin wrapper (`hook!`: a raw or a
//! BTF tracepoint, as the object reads the kernel, see `crate::access`) over a `try_*`
//! function that returns why it dropped a record, if it did; [`finish`] counts that reason
//! in DROPS and says so in the kernel log. A record left out by a filter is not dropped:
//! `Ok`.

mod deliver;
mod generate;
mod process;
mod sigaction;

use aya_ebpf::{EbpfContext, helpers::bpf_get_current_pid_tgid};
use aya_log_ebpf::warn;
use sigtrace_common::drop_reason;

use crate::maps::DROPS;

/// What a `try_*` function did: `Err` carries a sigtrace_common::drop_reason.
pub type Outcome = Result<(), u32>;

/// The program's return value (always 0: a tracepoint program's is ignored), after counting a
/// dropped record and logging it (at warn level: `sigtrace -v`; compiled out by the
/// verifier when the loader sets a lower level).
#[inline(always)]
pub fn finish<C: EbpfContext>(ctx: &C, program: &'static str, outcome: Outcome) -> i32 {
    let Err(reason) = outcome else {
        return 0;
    };
    if let Some(count) = DROPS.get_ptr_mut(reason) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while we run.
        unsafe { *count += 1 };
    }
    let tid = bpf_get_current_pid_tgid() as u32;
    match reason {
        drop_reason::READ_FAILED => warn!(
            ctx,
            "{}: record dropped: a kernel read failed (current tid {})", program, tid
        ),
        drop_reason::SCRATCH_MISSING => warn!(
            ctx,
            "{}: record dropped: no scratch slot for this CPU (current tid {})", program, tid
        ),
        drop_reason::TABLE_FULL => warn!(
            ctx,
            "{}: record dropped: a table was full (current tid {})", program, tid
        ),
        _ => warn!(
            ctx,
            "{}: record dropped: reason {} (current tid {})", program, reason, tid
        ),
    }
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
