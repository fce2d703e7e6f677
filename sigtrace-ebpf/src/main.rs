//! sigtrace's kernel half: raw tracepoints (no tracefs, no kprobes needed) on the signal and
//! process paths. Each program is a thin wrapper over a `try_*` function whose error names
//! why a record was dropped; records go to one ring buffer, woken in batches; reserve
//! failures are counted per CPU so loss is exact.
//!
//! Kernel struct offsets come from userspace (resolved from the running kernel's BTF) through
//! the `CONFIG` global, so nothing here depends on a header of another kernel. The modules,
//! in reading order: `maps` (all shared state), `kernel` (typed reads of kernel structures),
//! `filters`, `snapshot` (the recipient's state), `emit` (the one way a record is sent) and
//! `programs` (one file per group of hooks).
#![no_std]
#![no_main]

mod emit;
mod filters;
mod kernel;
mod maps;
mod programs;
mod snapshot;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
