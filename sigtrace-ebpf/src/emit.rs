//! The one way a record reaches userspace: reserve a slot in EVENTS (or count it in LOST),
//! zero it so no stale bytes leave the kernel, stamp its header, let the program fill it,
//! and submit it with the wake-up policy of its kind.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::bpf_ktime_get_ns,
};
use sigtrace_common::{
    DeliverEvent, ExitEvent, ForkEvent, GenerateEvent, Header, SigactionEvent, SigreturnEvent, kind,
};

use crate::maps::{EVENTS, LOST, conf};

/// A record type: its kind and where its header is.
pub trait Record: 'static {
    const KIND: u32;
    fn header_mut(&mut self) -> &mut Header;
}

macro_rules! record {
    ($($ty:ty => $kind:expr),+ $(,)?) => {$(
        impl Record for $ty {
            const KIND: u32 = $kind;
            #[inline(always)]
            fn header_mut(&mut self) -> &mut Header {
                &mut self.header
            }
        }
    )+};
}
record! {
    GenerateEvent => kind::GENERATE,
    DeliverEvent => kind::DELIVER,
    ExitEvent => kind::EXIT,
    ForkEvent => kind::FORK,
    SigactionEvent => kind::SIGACTION,
    SigreturnEvent => kind::SIGRETURN,
}

/// When userspace is woken for a record.
pub enum Wakeup<'a> {
    /// A signal record: once per batch of this CPU's records (the counter is in SCRATCH).
    Batch(&'a mut u32),
    /// A rare record (exit, fork, sigaction): see [`rare_wakeup`].
    Rare,
}

/// Sends one `T`, filled by `fill` after it is zeroed and its header stamped; a full ring
/// counts in LOST and `fill` does not run. `fill` runs before the record is visible, so
/// it may also record what must be in place by then.
#[inline(always)]
pub fn emit<T: Record>(wakeup: Wakeup, fill: impl FnOnce(&mut T)) {
    let Some(mut entry) = EVENTS.reserve::<T>(0) else {
        count_lost();
        return;
    };
    let event = entry.as_mut_ptr();
    // SAFETY: `event` points at a reserved, exclusively ours ring buffer slot; every field
    // is written before submit (zeroing first keeps stale bytes out).
    unsafe {
        core::ptr::write_bytes(event, 0, 1);
        let event = &mut *event;
        // SAFETY: a helper without arguments.
        *event.header_mut() = Header::new(T::KIND, bpf_ktime_get_ns());
        fill(event);
    }
    let flags = match wakeup {
        Wakeup::Batch(since_wakeup) => wakeup_flags(since_wakeup),
        Wakeup::Rare => rare_wakeup(core::mem::size_of::<T>()),
    };
    entry.submit(flags);
}

/// Counts a record (or a FOLLOWED entry) that found no room.
#[inline(always)]
pub fn count_lost() {
    if let Some(lost) = LOST.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while we run.
        unsafe { *lost += 1 };
    }
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
