//! What the programs keep: the command line's filters (pid sides, tids, process groups,
//! comms, uid, signals) and the state that lets a kept generation carry its delivery and
//! the target's exit through filters they cannot judge themselves (KEPT_GATE, DELIVERABLE,
//! SIGNALLED).

use aya_ebpf::maps::HashMap;
use sigtrace_common::{COMM_LEN, KEPT_GATE_BYTES, PendingKey, flag, pid_side_slot, side};

use crate::maps::{COMMS, DELIVERABLE, FOLLOWED, KEPT_GATE, PID_SIDES, SIGNALLED, conf};

/// Any filter that the delivery cannot check by itself (it carries no sender).
#[inline(always)]
pub fn filtered(flags: u32) -> bool {
    flags & flag::NEEDS_GENERATION != 0
}

#[inline(always)]
pub fn wanted_signal(sig: i32) -> bool {
    (1..=64).contains(&sig) && conf!(signals) & (1u64 << ((sig - 1) as u64 & 63)) != 0
}

/// The side bits of a tgid (0 when not traced): given on the command line, or inherited
/// from a followed parent.
#[inline(always)]
pub fn pid_side(tgid: u32) -> u8 {
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

/// The side bits of `key` in one of the by-id filter maps (TIDS, PGRPS).
#[inline(always)]
pub fn side_of(map: &HashMap<u32, u8>, key: u32) -> u8 {
    // SAFETY: the value is a plain u8 copied out at once.
    unsafe { map.get(key) }.copied().unwrap_or(0)
}

#[inline(always)]
pub fn comm_side(comm: &[u8; COMM_LEN]) -> u8 {
    // SAFETY: as above.
    unsafe { COMMS.get(comm) }.copied().unwrap_or(0)
}

/// Whether rt_sigaction(2) calls of this process are traced (--sigaction, and its pid when
/// pids are filtered).
#[inline(always)]
pub fn sigaction_traced(tgid: u32) -> bool {
    let flags = conf!(flags);
    flags & flag::SIGACTION != 0
        && tgid != conf!(self_tgid)
        && (flags & flag::PID_FILTER == 0 || pid_side(tgid) != 0)
}

#[inline(always)]
fn kept_gate_slot(tgid: u32) -> (u32, usize) {
    let octet = tgid / 8;
    (
        octet / KEPT_GATE_BYTES as u32,
        (octet % KEPT_GATE_BYTES as u32) as usize,
    )
}

/// Marks `tgid` as named by a kept record (see KEPT_GATE).
#[inline(always)]
pub fn open_kept_gate(tgid: u32) {
    let (entry, byte) = kept_gate_slot(tgid);
    if let Some(bytes) = KEPT_GATE.get_ptr_mut(entry) {
        // SAFETY: a map value of KEPT_GATE_BYTES bytes; `byte` is below that.
        unsafe { (*bytes)[byte] = 0xff };
    }
}

/// False only when `tgid` (nor any of its 7 neighbours) was ever named by a kept record.
#[inline(always)]
pub fn kept_gate_open(tgid: u32) -> bool {
    let (entry, byte) = kept_gate_slot(tgid);
    KEPT_GATE.get(entry).is_some_and(|bytes| bytes[byte] != 0)
}

/// A generation was kept and queued: its delivery and the target's exit pass the filters.
#[inline(always)]
pub fn remember_kept(target_tgid: u32, sig: i32) {
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

/// Whether a delivery of `sig` (caused by `cause`) to `tgid` follows a kept generation;
/// takes one off the count unless every thread of a dying group is dequeuing its SIGKILL.
#[inline(always)]
pub fn take_deliverable(tgid: u32, sig: i32, cause: i32) -> bool {
    let key = PendingKey {
        tgid,
        sig: cause as u32,
    };
    let waiting = if kept_gate_open(tgid) {
        DELIVERABLE.get_ptr_mut(key)
    } else {
        None
    };
    match waiting {
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
    }
}

/// A process dying of `group_exit_code`'s signal: forget that signal's count of kept
/// generations. The kernel turns a fatal signal into a SIGKILL for every thread
/// (complete_signal), so no delivery of the signal itself took it, and a later process given
/// the same pid would inherit it.
#[inline(always)]
pub fn forget_fatal_deliverable(tgid: u32, group_exit_code: i32) {
    let sig = group_exit_code & 0x7f;
    if sig != 0 {
        let _ = DELIVERABLE.remove(PendingKey {
            tgid,
            sig: sig as u32,
        });
    }
}

/// Whether `tgid` was the target of a kept generation (its gate open and in SIGNALLED);
/// forgets it, since a process exits once.
#[inline(always)]
pub fn take_signalled(tgid: u32, gate_open: bool) -> bool {
    // SAFETY: the value is a plain u8 copied out at once.
    let signalled = gate_open && unsafe { SIGNALLED.get(tgid) }.is_some();
    if signalled {
        let _ = SIGNALLED.remove(tgid);
    }
    signalled
}
