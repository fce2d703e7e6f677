//! --stack: who in the sender's code sent a signal. The kernel side records the sender's
//! user and kernel stacks (instruction pointers, by frame-pointer unwinding) in the STACKS
//! map; here they are read and symbolized with blazesym: user addresses through the sender's
//! /proc/PID/maps and its ELF symbols, kernel ones through /proc/kallsyms.
//!
//! What the unwinding cannot give: frames of code built without frame pointers are skipped
//! or end the stack (most distributions' libraries; the direct caller of a libc syscall
//! wrapper such as kill(3) is skipped, as the wrapper keeps no frame), and a sender that
//! exited before its record was read (a `kill` command) has no maps left: its user stack is
//! shown as addresses.

use std::{collections::HashMap, sync::Arc};

use aya::maps::{MapData, StackTraceMap};
use blazesym::MaybeDefault;
use blazesym::symbolize::{
    Input, Symbolized, Symbolizer,
    source::{Kernel, Process, Source},
};
use sigtrace_common::NO_STACK;

/// Symbolized stacks kept: equal stacks (a storm from one call site) are symbolized once.
const CACHE_MAX: usize = 4096;

/// One frame: its address, and its function where known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub address: u64,
    pub symbol: Option<String>,
    /// Bytes into the function.
    pub offset: Option<u64>,
    /// The file it was found in (user frames).
    pub module: Option<String>,
}

/// One side of a sender's stack, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side {
    Frames(Arc<Vec<Frame>>),
    /// The kernel could not record it, or it could not be read back.
    Missing(&'static str),
}

/// A sender's stacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderStack {
    pub user: Side,
    pub kernel: Side,
}

/// The STACKS map and what was symbolized from it.
pub struct Stacks {
    map: StackTraceMap<MapData>,
    symbolizer: Symbolizer,
    /// Kernel stacks by id; user stacks by (tgid, id): the same addresses mean other code
    /// in another process. Ids are never reused: the map's entries are never deleted.
    kernel: HashMap<i32, Arc<Vec<Frame>>>,
    user: HashMap<(u32, i32), Arc<Vec<Frame>>>,
}

impl Stacks {
    pub fn new(map: StackTraceMap<MapData>) -> Self {
        Stacks {
            map,
            symbolizer: Symbolizer::new(),
            kernel: HashMap::new(),
            user: HashMap::new(),
        }
    }

    /// The stacks a generation names (`user_id`, `kernel_id` as the record has them), of
    /// sender process `tgid`; None when none was asked for (no sender).
    pub fn resolve(&mut self, tgid: u32, user_id: i32, kernel_id: i32) -> Option<SenderStack> {
        if user_id == NO_STACK && kernel_id == NO_STACK {
            return None;
        }
        let user = match self.user.get(&(tgid, user_id)) {
            Some(frames) => Side::Frames(frames.clone()),
            None => self.read(user_id, |symbolizer, addrs| {
                symbolize(
                    symbolizer,
                    &Source::Process(Process::new(tgid.into())),
                    addrs,
                )
            }),
        };
        if let Side::Frames(frames) = &user {
            remember(&mut self.user, (tgid, user_id), frames);
        }
        let kernel = match self.kernel.get(&kernel_id) {
            Some(frames) => Side::Frames(frames.clone()),
            None => self.read(kernel_id, |symbolizer, addrs| {
                let kernel = Kernel {
                    kallsyms: MaybeDefault::Default,
                    // /proc/kallsyms has every function: no search of /boot per stack.
                    vmlinux: MaybeDefault::None,
                    ..Kernel::default()
                };
                let mut frames = symbolize(symbolizer, &Source::Kernel(kernel), addrs);
                // The stack is taken inside sigtrace's own program: its frames come first.
                let ours = frames
                    .iter()
                    .take_while(|f| f.symbol.as_deref().is_some_and(is_tracing_frame))
                    .count();
                frames.drain(..ours);
                frames
            }),
        };
        if let Side::Frames(frames) = &kernel {
            remember(&mut self.kernel, kernel_id, frames);
        }
        Some(SenderStack { user, kernel })
    }

    /// Reads stack `id` and symbolizes its addresses with `symbolize`.
    fn read(&self, id: i32, symbolize: impl FnOnce(&Symbolizer, &[u64]) -> Vec<Frame>) -> Side {
        let Ok(key) = u32::try_from(id) else {
            return Side::Missing(why_missing(id));
        };
        match self.map.get(&key, 0) {
            Ok(trace) => {
                let addrs: Vec<u64> = trace.frames().iter().map(|f| f.ip).collect();
                Side::Frames(Arc::new(symbolize(&self.symbolizer, &addrs)))
            }
            Err(_) => Side::Missing("not in the stack table"),
        }
    }
}

fn remember<K: std::hash::Hash + Eq>(
    cache: &mut HashMap<K, Arc<Vec<Frame>>>,
    key: K,
    frames: &Arc<Vec<Frame>>,
) {
    if cache.len() >= CACHE_MAX {
        cache.clear();
    }
    cache.entry(key).or_insert_with(|| frames.clone());
}

/// A frame of the BPF program or of the tracepoint machinery that ran it.
fn is_tracing_frame(symbol: &str) -> bool {
    symbol.starts_with("bpf_") || symbol.starts_with("__bpf_") || symbol.starts_with("__traceiter_")
}

/// What a negative stack id (bpf_get_stackid's -errno) means.
fn why_missing(id: i32) -> &'static str {
    // NO_STACK is i32::MIN, which has no negation: any value may come from a record.
    match id.checked_neg() {
        None => "not recorded",
        Some(libc::EFAULT) => "no user stack (a kernel thread, or none could be read)",
        // No BPF_F_REUSE_STACKID: a stack whose hash bucket another holds is refused, so
        // that an id never names two stacks.
        Some(libc::EEXIST) => "its slot in the stack table is taken by another stack",
        Some(libc::ENOMEM) => "the stack table is full",
        Some(_) => "not recorded by the kernel",
    }
}

/// Every address with its symbol where one is found; a failure leaves the addresses bare
/// (a process gone, a kallsyms without symbols).
fn symbolize(symbolizer: &Symbolizer, source: &Source, addrs: &[u64]) -> Vec<Frame> {
    let found = symbolizer
        .symbolize(source, Input::AbsAddr(addrs))
        .unwrap_or_default();
    addrs
        .iter()
        .enumerate()
        .map(|(i, &address)| match found.get(i) {
            Some(Symbolized::Sym(sym)) => Frame {
                address,
                symbol: Some(sym.name.to_string()),
                offset: Some(sym.offset as u64),
                module: sym
                    .module
                    .as_ref()
                    .map(|m| m.to_string_lossy().into_owned()),
            },
            _ => Frame {
                address,
                symbol: None,
                offset: None,
                module: None,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probes_own_frames_are_told_apart() {
        for ours in [
            "bpf_prog_8f6568e8b36872ac_signal_generate",
            "bpf_trace_run5",
            "__bpf_trace_signal_generate",
            "__traceiter_signal_generate",
        ] {
            assert!(is_tracing_frame(ours), "{ours}");
        }
        assert!(!is_tracing_frame("__send_signal_locked"));
    }

    #[test]
    fn missing_stacks_say_why() {
        assert_eq!(why_missing(-libc::EFAULT), why_missing(-14));
        assert!(why_missing(-libc::ENOMEM).contains("full"));
        assert!(why_missing(-libc::EEXIST).contains("taken"));
        assert_eq!(why_missing(NO_STACK), "not recorded");
    }

    /// Our own process, symbolized as a sender would be: this very function is found.
    #[test]
    fn symbolizes_a_live_process() {
        let here = symbolizes_a_live_process as *const () as u64;
        let frames = symbolize(
            &Symbolizer::new(),
            &Source::Process(Process::new(std::process::id().into())),
            &[here, 0x10],
        );
        assert_eq!(frames.len(), 2);
        let name = frames[0].symbol.as_deref().unwrap_or("");
        assert!(name.contains("symbolizes_a_live_process"), "{frames:?}");
        assert_eq!(frames[1].symbol, None, "{frames:?}");
    }
}
