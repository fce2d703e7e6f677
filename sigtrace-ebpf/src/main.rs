//! sigtrace's kernel half, as raw tracepoints (the `sigtrace` object): runs on any kernel
//! with raw tracepoints and reads every field through a helper. `btf.rs` is the same
//! programs as BTF tracepoints read with plain loads; only `access` differs between them.
//!
//! On the signal and process paths, no tracefs or kprobes needed. Each program is a thin
//! wrapper over a `try_*` function whose error names why a record was dropped; records go to
//! one ring buffer, woken in batches; reserve failures are counted per CPU so loss is exact.
//!
//! Kernel struct offsets come from userspace (resolved from the running kernel's BTF) through
//! the `CONFIG` global, so nothing here depends on a header of another kernel. The modules,
//! in reading order: `maps` (all shared state), `access` (how this object reads the
//! kernel), `kernel` (typed reads of kernel structures), `filters`, `snapshot` (the
//! recipient's state), `emit` (the one way a record is sent) and `programs` (one file per
//! group of hooks).
#![no_std]
#![no_main]

#[path = "access/probe.rs"]
mod access;
mod emit;
mod filters;
mod kernel;
mod maps;
mod programs;
mod snapshot;
