//! How full the kernel's ring buffer is: its consumer and producer positions, read from the
//! ring's first two pages, which the kernel lets any holder of the map map read-only (the
//! data pages are mapped by aya's reader; this is a second, read-only view).

use std::{
    num::NonZeroUsize,
    os::fd::AsFd,
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};

/// The ring's position pages, mapped read-only.
pub(crate) struct RingPositions {
    base: NonNull<std::ffi::c_void>,
    page: usize,
}

impl RingPositions {
    /// Maps the position pages of the ring buffer map `fd`.
    pub(crate) fn map(fd: impl AsFd) -> std::io::Result<Self> {
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|size| usize::try_from(size).ok())
            .unwrap_or(4096);
        let length = NonZeroUsize::new(2 * page).ok_or(std::io::ErrorKind::InvalidInput)?;
        // SAFETY: a new shared read-only mapping of the map's fd at offset 0: the kernel maps
        // the consumer page then the producer page; nothing else is touched.
        let base = unsafe {
            mmap(
                None,
                length,
                ProtFlags::PROT_READ,
                MapFlags::MAP_SHARED,
                fd,
                0,
            )
        }?;
        Ok(RingPositions { base, page })
    }

    /// Bytes written by the kernel and not yet consumed by the reader.
    pub(crate) fn used(&self) -> u64 {
        let load = |offset: usize| {
            // SAFETY: both pages stay mapped while `self` lives; the kernel and aya's reader
            // update the positions as aligned u64s, read here atomically. Relaxed: the only
            // atomic load allowed on read-only memory; a gauge needs no ordering.
            let position = unsafe { &*self.base.as_ptr().byte_add(offset).cast::<AtomicU64>() };
            position.load(Ordering::Relaxed)
        };
        let consumer = load(0);
        let producer = load(self.page);
        producer.saturating_sub(consumer)
    }
}

impl Drop for RingPositions {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` mapped, once.
        let _ = unsafe { munmap(self.base, 2 * self.page) };
    }
}
