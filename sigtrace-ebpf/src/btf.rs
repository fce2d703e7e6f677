//! sigtrace's kernel half, as BTF tracepoints (the `sigtrace-btf` object): the same programs
//! as `main.rs` (see there), reading the kernel with plain loads where the kernel offers
//! BPF_PROG_TYPE_TRACING. Only `access` differs.
#![no_std]
#![no_main]

#[path = "access/plain.rs"]
mod access;
mod emit;
mod filters;
mod kernel;
mod maps;
mod programs;
mod snapshot;
