//! Loads sigtrace's eBPF programs with this kernel's offsets and the user's filters as
//! globals, fills the filter maps, and attaches them. Everything attached lives in the
//! returned [`Probes`]: dropping it detaches all of them.
//!
//! The programs come as two objects with the same programs, maps, globals and records: the
//! btf probes (BTF tracepoints, reading kernel fields with plain loads: faster, Linux 5.5+)
//! and the raw probes (raw tracepoints, reading through bpf_probe_read_kernel: every kernel
//! sigtrace supports). One code path loads either; only the object and how each program
//! is loaded and attached differ ([`Probing`]). `--probe-mode` picks ([`ProbeMode`]).

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    os::fd::{AsRawFd, OwnedFd},
    time::Duration,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap as BpfHashMap, Map, MapData, PerCpuArray, RingBuf, StackTraceMap},
    programs::{BtfTracePoint, RawTracePoint},
    sys::{Stats, enable_stats},
};
use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit, setrlimit};
use sigtrace_common::{
    COMM_LEN, Config, KEPT_GATE_ENTRIES, PID_SIDE_WORDS, drop_reason, flag, pid_side_slot, side,
};

use crate::{
    btf::{Btf, BtfError, attach::AttachIds, resolve_offsets},
    kernel_log::{self, KernelLog},
};

/// Which probes to attach, as asked for with --probe-mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbeMode {
    /// btf where the kernel runs them, otherwise raw.
    #[default]
    Auto,
    /// BTF tracepoints that read kernel fields with plain loads (faster); they need
    /// BPF_PROG_TYPE_TRACING and BTF tracepoints: Linux 5.5 or later, as distribution
    /// kernels are.
    Btf,
    /// Raw tracepoints that read kernel fields through bpf_probe_read_kernel; they work on
    /// every kernel sigtrace supports.
    Raw,
}

/// The probes actually attached (see [`ProbeMode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeKind {
    Btf,
    Raw,
}

impl ProbeKind {
    /// As the ready line and the cost line name it: "btf" or "raw".
    pub(crate) fn name(self) -> &'static str {
        match self {
            ProbeKind::Btf => "btf",
            ProbeKind::Raw => "raw",
        }
    }

    fn object(self) -> &'static [u8] {
        match self {
            ProbeKind::Btf => BTF_OBJECT,
            ProbeKind::Raw => RAW_OBJECT,
        }
    }
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Btf(#[from] BtfError),
    #[error(
        "not permitted to load eBPF programs ({0}); run as root or with CAP_BPF and CAP_PERFMON (e.g. `sudo sigtrace ...`)"
    )]
    NotPermitted(String),
    #[error(
        "this kernel cannot run sigtrace: it has {0}; sigtrace needs Linux 5.8 or later with BTF (see docs/kernels.md)"
    )]
    Unsupported(String),
    #[error("loading the eBPF programs failed: {0}")]
    Load(String),
    #[error("attaching to the {tracepoint} tracepoint failed: {reason}")]
    Attach { tracepoint: String, reason: String },
    #[error("filling the {map} filter map failed: {reason}")]
    Map { map: &'static str, reason: String },
    #[error(
        "--cost: the kernel refused to keep BPF run-time statistics ({0}); that needs Linux 5.8 or later and CAP_SYS_ADMIN — run without --cost"
    )]
    Stats(String),
    /// The btf probes cannot be used: an error with --probe-mode btf, the reason raw probes
    /// are used with auto. `unsupported`: the kernel lacks what they need (rather than, say,
    /// the verifier refusing them).
    #[error("--probe-mode btf: {reason}; use --probe-mode raw")]
    BtfProbes { reason: String, unsupported: bool },
}

impl LoadError {
    /// Permission and missing-BTF problems, a kernel that will not keep statistics for
    /// --cost or run the btf probes, are the user's to fix (exit 2); the rest are tracer
    /// failures.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            LoadError::Btf(_)
                | LoadError::NotPermitted(_)
                | LoadError::Stats(_)
                | LoadError::Unsupported(_)
                | LoadError::BtfProbes {
                    unsupported: true,
                    ..
                }
        )
    }
}

/// What the kernel side should keep, already resolved to numbers.
#[derive(Debug, Default, Clone)]
pub struct KernelFilter {
    /// tgid → side bits.
    pub pids: BTreeMap<u32, u8>,
    pub tids: BTreeMap<u32, u8>,
    pub pgrps: BTreeMap<u32, u8>,
    pub comms: BTreeMap<[u8; COMM_LEN], u8>,
    pub uid: Option<u32>,
    /// Bit (sig-1) per wanted signal; `u64::MAX` for all.
    pub signals: u64,
    pub failed_only: bool,
    pub kernel_only: bool,
    pub user_only: bool,
    /// Children of traced pids are traced from their fork (FOLLOWED).
    pub follow_forks: bool,
    /// Report rt_sigaction changes (attaches sys_enter/sys_exit).
    pub sigaction: bool,
    /// Force PID filtering even when `pids` is empty (launch mode).
    pub pid_filter: bool,
    /// Every exit, not only those of signalled processes (--all-exits).
    pub all_exits: bool,
    /// --cgroup: (level, id) of the cgroup v2 subtree a sender or target must be in.
    pub cgroup: Option<(u32, u64)>,
    /// Report the end of every reported handler run (attaches sys_enter).
    pub handler_time: bool,
    /// Record the sender's stacks of each kept generation (--stack).
    pub stacks: bool,
}

impl KernelFilter {
    pub fn all() -> Self {
        KernelFilter {
            signals: u64::MAX,
            ..Default::default()
        }
    }

    fn flags(&self) -> u32 {
        let mut flags = 0;
        let mut set = |cond: bool, bit: u32| {
            if cond {
                flags |= bit;
            }
        };
        set(self.failed_only, flag::FAILED_ONLY);
        set(self.kernel_only, flag::KERNEL_ONLY);
        set(self.user_only, flag::USER_ONLY);
        set(self.pid_filter || !self.pids.is_empty(), flag::PID_FILTER);
        set(!self.tids.is_empty(), flag::TID_FILTER);
        set(!self.pgrps.is_empty(), flag::PGRP_FILTER);
        set(!self.comms.is_empty(), flag::COMM_FILTER);
        set(self.uid.is_some(), flag::UID_FILTER);
        set(self.follow_forks, flag::FOLLOW_FORKS);
        set(self.sigaction, flag::SIGACTION);
        set(self.all_exits, flag::ALL_EXITS);
        set(self.cgroup.is_some(), flag::CGROUP_FILTER);
        set(self.handler_time, flag::HANDLER_TIME);
        set(self.stacks, flag::STACK);
        flags
    }
}

/// Load-time settings that are not filters.
#[derive(Debug, Clone)]
pub(crate) struct LoadOptions {
    /// Ring buffer size in bytes (a power of two, at least one page).
    pub ring_bytes: u32,
    /// Keep the kernel's BPF run-time statistics on while tracing (see [`Probes::costs`]).
    pub measure_cost: bool,
    /// The programs' own diagnostics at this level and above (see [`crate::kernel_log`]).
    pub kernel_log: log::LevelFilter,
    pub probe_mode: ProbeMode,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            ring_bytes: 4 << 20,
            measure_cost: false,
            kernel_log: log::LevelFilter::Off,
            probe_mode: ProbeMode::Auto,
        }
    }
}

/// The loaded and attached programs, and the maps userspace reads.
pub(crate) struct Probes {
    pub ebpf: Ebpf,
    /// Which probes these are.
    pub kind: ProbeKind,
    pub events: RingBuf<MapData>,
    pub lost: PerCpuArray<MapData, u64>,
    pub drops: PerCpuArray<MapData, u64>,
    /// The senders' stacks (--stack).
    pub stacks: Option<StackTraceMap<MapData>>,
    /// The pids given on the command line that are still alive (their PID_SIDES bits set).
    given_pids: BTreeSet<u32>,
    /// Keeps the kernel's run-time statistics on while held (--cost).
    _run_time_stats: Option<OwnedFd>,
    /// The reader of the programs' diagnostics, when asked for (`-v`, `RUST_LOG`).
    pub kernel_log: Option<KernelLog>,
}

/// What one attached program has cost so far, by the kernel's own accounting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProgramCost {
    pub program: String,
    pub runs: u64,
    pub run_time: Duration,
}

/// Records the kernel side dropped, over all CPUs, indexed by sigtrace_common::drop_reason:
/// not filtered out, not lost to a full ring, but given up for the reason named.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Drops(pub [u64; drop_reason::COUNT as usize]);

impl Drops {
    /// The non-zero counts, by reason name.
    pub(crate) fn nonzero(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        (0..drop_reason::COUNT).filter_map(|reason| {
            let count = self.0[reason as usize];
            (count > 0).then(|| (drop_reason::name(reason).unwrap_or("unknown"), count))
        })
    }

    /// For the final line after "N events, M lost": "; dropped: read_failed 3, table_full 1",
    /// or nothing when no record was dropped.
    pub(crate) fn suffix(&self) -> String {
        let listed: Vec<String> = self
            .nonzero()
            .map(|(name, count)| format!("{name} {count}"))
            .collect();
        if listed.is_empty() {
            String::new()
        } else {
            format!("; dropped: {}", listed.join(", "))
        }
    }

    /// For the SIGUSR1 stats line, in its key=value style: " dropped read_failed=3", or
    /// nothing.
    pub(crate) fn stats(&self) -> String {
        let listed: String = self
            .nonzero()
            .map(|(name, count)| format!(" {name}={count}"))
            .collect();
        if listed.is_empty() {
            String::new()
        } else {
            format!(" dropped{listed}")
        }
    }
}

impl ProgramCost {
    pub(crate) fn ns_per_run(&self) -> u64 {
        (self.run_time.as_nanos() / u128::from(self.runs.max(1))) as u64
    }
}

impl fmt::Display for ProgramCost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} runs, {} ns/run",
            self.program,
            self.runs,
            self.ns_per_run()
        )
    }
}

impl Probes {
    /// A pid given on the command line has exited: stop matching its number, which the
    /// kernel may later give to an unrelated process. Userspace is PID_SIDES' only writer,
    /// so the read-modify-write cannot race.
    pub(crate) fn forget_pid(&mut self, tgid: u32) -> Result<(), LoadError> {
        if !self.given_pids.remove(&tgid) {
            return Ok(());
        }
        let mut map: Array<_, u64> = typed_map(&mut self.ebpf, "PID_SIDES")?;
        let (word, _) = pid_side_slot(tgid);
        let bits = map.get(&word, 0).map_err(map_error("PID_SIDES"))?;
        map.set(word, without_pid(bits, tgid), 0)
            .map_err(map_error("PID_SIDES"))
    }

    /// Run counts and run time of every attached program since the statistics were turned
    /// on: only meaningful with `measure_cost` (otherwise the kernel may not be counting).
    /// The kernel's clock reads around each run are included, ~2 per run.
    pub(crate) fn costs(&self) -> Vec<ProgramCost> {
        let mut costs: Vec<ProgramCost> = self
            .ebpf
            .programs()
            .filter_map(|(name, program)| {
                let info = program.info().ok()?;
                Some(ProgramCost {
                    program: name.to_string(),
                    runs: info.run_count(),
                    run_time: info.run_time(),
                })
            })
            .collect();
        costs.sort_by(|a, b| b.runs.cmp(&a.runs).then_with(|| a.program.cmp(&b.program)));
        costs
    }

    /// Total records the kernel could not reserve, over all CPUs.
    pub(crate) fn lost(&self) -> u64 {
        self.lost
            .get(&0, 0)
            .map(|values| values.iter().sum())
            .unwrap_or(0)
    }

    /// Records the kernel side dropped for a reason (see [`Drops`]), over all CPUs; a count
    /// that cannot be read shows as 0, like [`Probes::lost`].
    pub(crate) fn drops(&self) -> Drops {
        let mut drops = Drops::default();
        for (reason, total) in (0..drop_reason::COUNT).zip(drops.0.iter_mut()) {
            *total = self
                .drops
                .get(&reason, 0)
                .map(|values| values.iter().sum())
                .unwrap_or(0);
        }
        drops
    }
}

fn possible_cpus() -> u32 {
    aya::util::nr_cpus().map_or(1, |n| n.max(1) as u32)
}

/// The eBPF objects built by build.rs (aya-build) from sigtrace-ebpf: the raw probes, and
/// the btf probes (empty in a build that has none: loading it then fails).
static RAW_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sigtrace"));
static BTF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sigtrace-btf"));

fn is_permission(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        let text = e.to_string();
        if text.contains("Operation not permitted") || text.contains("Permission denied") {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(io.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
        {
            return true;
        }
        cur = e.source();
    }
    false
}

/// The OS error at the root of `err`, if any.
fn os_error(err: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(code) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.raw_os_error())
        {
            return Some(code);
        }
        cur = e.source();
    }
    None
}

/// Why loading failed, in the user's terms: a kernel without what sigtrace is built on is
/// named as such (probed only after a failure, so start-up pays nothing for it).
fn explain_load_failure(err: impl std::error::Error + 'static) -> LoadError {
    use aya::{maps::MapType, programs::ProgramType};
    if is_permission(&err) {
        return LoadError::NotPermitted(err.to_string());
    }
    if aya::sys::is_map_supported(MapType::RingBuf).is_ok_and(|supported| !supported) {
        return LoadError::Unsupported("no BPF ring buffer (added in Linux 5.8)".into());
    }
    if aya::sys::is_program_supported(ProgramType::RawTracePoint).is_ok_and(|supported| !supported)
    {
        return LoadError::Unsupported("no raw tracepoint programs (added in Linux 4.17)".into());
    }
    LoadError::Load(err.to_string())
}

/// An attach failure: ENOENT means the kernel has no such tracepoint.
fn attach_error(hook: &str, err: impl std::error::Error + 'static) -> LoadError {
    if is_permission(&err) {
        LoadError::NotPermitted(err.to_string())
    } else if os_error(&err) == Some(libc::ENOENT) {
        LoadError::Unsupported(format!("no {hook} tracepoint"))
    } else {
        LoadError::Attach {
            tracepoint: hook.to_string(),
            reason: err.to_string(),
        }
    }
}

fn load_error(err: impl std::error::Error + 'static) -> LoadError {
    if is_permission(&err) {
        LoadError::NotPermitted(format!("{err}"))
    } else {
        LoadError::Load(error_chain(&err))
    }
}

/// `err` and its sources, "outer: inner: root".
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cur = e.source();
    }
    text
}

fn fill<K: aya::Pod + Ord>(
    ebpf: &mut Ebpf,
    name: &'static str,
    entries: &BTreeMap<K, u8>,
) -> Result<(), LoadError> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut map: BpfHashMap<_, K, u8> = typed_map(ebpf, name)?;
    for (key, sides) in entries {
        map.insert(key, sides, 0).map_err(map_error(name))?;
    }
    Ok(())
}

fn map_error(map: &'static str) -> impl Fn(aya::maps::MapError) -> LoadError {
    move |e| LoadError::Map {
        map,
        reason: e.to_string(),
    }
}

/// The map `name` as a typed map (Array, HashMap...) to fill or update from userspace.
fn typed_map<'a, M>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<M, LoadError>
where
    M: TryFrom<&'a mut Map, Error = aya::maps::MapError>,
{
    ebpf.map_mut(name)
        .ok_or_else(|| LoadError::Load(format!("map {name} missing")))?
        .try_into()
        .map_err(map_error(name))
}

/// `bits` (a PID_SIDES word) with `tgid`'s side bits cleared.
fn without_pid(bits: u64, tgid: u32) -> u64 {
    let (_, shift) = pid_side_slot(tgid);
    bits & !(u64::from(side::EITHER) << shift)
}

/// The PID_SIDES words (two bits per tgid) for the traced tgids and their sides.
fn pid_side_words(pids: &BTreeMap<u32, u8>) -> BTreeMap<u32, u64> {
    let mut words: BTreeMap<u32, u64> = BTreeMap::new();
    for (&tgid, &sides) in pids {
        let (word, shift) = pid_side_slot(tgid);
        *words.entry(word).or_default() |= u64::from(sides) << shift;
    }
    words
}

/// Writes the traced tgids' side bits into the PID_SIDES array.
fn fill_pid_sides(ebpf: &mut Ebpf, pids: &BTreeMap<u32, u8>) -> Result<(), LoadError> {
    let mut map: Array<_, u64> = typed_map(ebpf, "PID_SIDES")?;
    for (word, bits) in pid_side_words(pids) {
        map.set(word, bits, 0).map_err(map_error("PID_SIDES"))?;
    }
    Ok(())
}

/// An `EbpfLoader` built without reading the kernel's BTF. aya 0.14's `EbpfLoader::new()`
/// always reads and parses /sys/kernel/btf/vmlinux — 5.5 MB read into ~19 MB of heap, most
/// of sigtrace's peak memory — although we pass `.btf(None)` right after (upstream made it
/// lazy in aya-rs/aya#1639, in releases that need a newer Rust than ours). While the
/// open-file limit sits at the lowest free descriptor, that read fails with EMFILE, which
/// aya takes as "no BTF". Only while this process has a single thread: another thread's
/// open() would fail meanwhile (otherwise aya gets to parse).
fn loader_without_kernel_btf<'a>() -> Result<EbpfLoader<'a>, LoadError> {
    let single_threaded =
        std::fs::read_dir("/proc/self/task").is_ok_and(|tasks| tasks.count() == 1);
    if !single_threaded {
        return Ok(EbpfLoader::new());
    }
    // The loader's hash maps need random keys; std may read them from /dev/urandom (where
    // the getrandom syscall is filtered): have them drawn while files can still be opened.
    let _ = std::collections::hash_map::RandomState::new();
    let (Ok((soft, hard)), Ok(lowest_free)) = (
        getrlimit(Resource::RLIMIT_NOFILE),
        // open() returns the lowest free descriptor; this one is closed again at once.
        std::fs::File::open("/dev/null").map(|file| file.as_raw_fd()),
    ) else {
        return Ok(EbpfLoader::new());
    };
    if setrlimit(Resource::RLIMIT_NOFILE, lowest_free as u64, hard).is_err() {
        return Ok(EbpfLoader::new());
    }
    let loader = EbpfLoader::new();
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard)
        .map_err(|e| LoadError::Load(format!("restoring the open-file limit failed: {e}")))?;
    Ok(loader)
}

/// Tracepoints attached always; the programs are named after them (one string for both).
/// Neither kind of probe needs tracefs or kprobes.
const ALWAYS: [&str; 4] = [
    "signal_generate",
    "signal_deliver",
    "sched_process_exit",
    "sched_process_fork",
];
/// Entries of the STACKS map with --stack: distinct sender stacks a run can name.
pub(crate) const STACK_TABLE_ENTRIES: u32 = 4096;

const SIGACTION_HOOKS: [&str; 2] = ["sys_enter", "sys_exit"];
const HANDLER_TIME_HOOKS: [&str; 1] = ["sys_enter"];

/// The tracepoints `filter` needs, in the order they are loaded and attached.
fn hooks(filter: &KernelFilter) -> Vec<&'static str> {
    let syscalls: &[&'static str] = if filter.sigaction {
        &SIGACTION_HOOKS
    } else if filter.handler_time {
        &HANDLER_TIME_HOOKS
    } else {
        &[]
    };
    ALWAYS.iter().chain(syscalls).copied().collect()
}

/// Loads, configures and attaches the probes `options.probe_mode` asks for. On any error
/// nothing stays attached: the partially built `Ebpf` is dropped, which detaches and unloads
/// what was done so far — also before auto falls back from btf to raw probes.
pub(crate) fn load(filter: &KernelFilter, options: &LoadOptions) -> Result<Probes, LoadError> {
    let hooks = hooks(filter);
    // Our BTF reader (the 5.5 MB file) is freed at the end of this block, before any object
    // is loaded.
    let (offsets, attach_ids) = {
        let btf = Btf::from_sys_fs()?;
        // While the kernel's types are parsed anyway; raw probes need none.
        let attach_ids = (options.probe_mode != ProbeMode::Raw)
            .then(|| AttachIds::find(&btf, &hooks).map_err(no_btf_tracepoint));
        (resolve_offsets(&btf)?, attach_ids)
    };
    let config = Config {
        flags: filter.flags(),
        uid: filter.uid.unwrap_or(0),
        signals: filter.signals,
        self_tgid: std::process::id(),
        // Wake the reader about once an eighth of the ring is waiting (records average
        // ~160 bytes; each CPU counts its own); it also polls on a timer.
        wakeup_records: (options.ring_bytes / 8 / 160 / possible_cpus()).max(1),
        wakeup_bytes: options.ring_bytes / 8,
        cgroup_level: filter.cgroup.map_or(0, |(level, _)| level),
        cgroup_id: filter.cgroup.map_or(0, |(_, id)| id),
        offsets,
    };
    // Hold the raised limit only where the kernel still charges memlock (< 5.11); failure
    // is harmless on newer kernels.
    let _ = setrlimit(Resource::RLIMIT_MEMLOCK, RLIM_INFINITY, RLIM_INFINITY);
    let raw = || load_as(Probing::Raw, &hooks, &config, filter, options);
    let btf = |ids: Result<AttachIds, LoadError>| {
        load_as(Probing::Btf(&ids?), &hooks, &config, filter, options)
    };
    match (options.probe_mode, attach_ids) {
        (ProbeMode::Btf, Some(ids)) => btf(ids),
        // No feature probe first: aya's for BPF_PROG_TYPE_TRACING parses the whole kernel
        // BTF (~20 MiB more peak memory), while loading the first btf program answers the
        // same question for the price of a failed load on kernels without them.
        (ProbeMode::Auto, Some(ids)) => match btf(ids) {
            Err(LoadError::BtfProbes {
                reason,
                unsupported,
            }) => {
                if unsupported {
                    log::info!("using raw probes: the btf probes are unavailable: {reason}");
                } else {
                    log::warn!("using raw probes: the btf probes failed: {reason}");
                }
                raw()
            }
            other => other,
        },
        _ => raw(),
    }
}

/// A tracepoint whose `btf_trace_*` typedef this kernel's BTF lacks.
fn no_btf_tracepoint(tracepoint: &str) -> LoadError {
    LoadError::BtfProbes {
        reason: format!(
            "this kernel has no BTF tracepoint {tracepoint} (no btf_trace_{tracepoint} in its BTF)"
        ),
        unsupported: true,
    }
}

/// How the programs of one kind of probe are loaded and attached: everything else is shared.
#[derive(Clone, Copy)]
enum Probing<'a> {
    /// Raw tracepoints, attached by name.
    Raw,
    /// BTF tracepoints, loaded with the ids of their tracepoints' typedefs.
    Btf(&'a AttachIds),
}

impl Probing<'_> {
    fn kind(self) -> ProbeKind {
        match self {
            Probing::Raw => ProbeKind::Raw,
            Probing::Btf(_) => ProbeKind::Btf,
        }
    }

    /// A fault of the object itself (a program missing or of the wrong type): for the btf
    /// probes a reason to fall back.
    fn broken(self, what: String) -> LoadError {
        match self {
            Probing::Raw => LoadError::Load(what),
            Probing::Btf(_) => LoadError::BtfProbes {
                reason: what,
                unsupported: false,
            },
        }
    }

    /// Parses the object and creates its maps (the globals and map sizes set on `loader`).
    fn open(self, loader: &mut EbpfLoader<'_>) -> Result<Ebpf, LoadError> {
        let object = self.kind().object();
        if object.is_empty() {
            return Err(self.broken(format!(
                "this sigtrace was built without its {} probes (an empty object stands in)",
                self.kind()
            )));
        }
        loader
            .load(object)
            .map_err(|e| match (self, explain_load_failure(e)) {
                // A kernel without ring buffers or the privilege: the raw probes fail alike.
                (Probing::Btf(_), LoadError::Load(text)) => {
                    self.broken(format!("the btf probes' object does not load: {text}"))
                }
                (_, err) => err,
            })
    }

    fn program<'e>(
        self,
        ebpf: &'e mut Ebpf,
        hook: &str,
    ) -> Result<&'e mut aya::programs::Program, LoadError> {
        ebpf.program_mut(hook)
            .ok_or_else(|| self.broken(format!("program {hook} missing from the object")))
    }

    fn load_program(self, ebpf: &mut Ebpf, hook: &str) -> Result<(), LoadError> {
        let program = self.program(ebpf, hook)?;
        match self {
            Probing::Raw => {
                let program: &mut RawTracePoint = program.try_into().map_err(load_error)?;
                program.load().map_err(explain_load_failure)
            }
            Probing::Btf(ids) => {
                let program: &mut BtfTracePoint = program
                    .try_into()
                    .map_err(|e| self.broken(format!("program {hook}: {e}")))?;
                let btf = ids.btf_for(hook).map_err(|e| self.broken(e))?;
                program
                    .load(hook, &btf)
                    .map_err(|e| btf_load_error(hook, e))
                // `btf` (a few MiB) goes before the next program's is built.
            }
        }
    }

    fn attach(self, ebpf: &mut Ebpf, hook: &str) -> Result<(), LoadError> {
        let program = self.program(ebpf, hook)?;
        match self {
            Probing::Raw => {
                let program: &mut RawTracePoint = program.try_into().map_err(load_error)?;
                program
                    .attach(hook)
                    .map(drop)
                    .map_err(|e| attach_error(hook, e))
            }
            Probing::Btf(_) => {
                let program: &mut BtfTracePoint = program
                    .try_into()
                    .map_err(|e| self.broken(format!("program {hook}: {e}")))?;
                program
                    .attach()
                    .map(drop)
                    .map_err(|e| btf_attach_error(hook, e))
            }
        }
    }
}

/// Why the kernel refused to load a btf program. An empty verifier log means it refused the
/// program type itself (no BPF_PROG_TYPE_TRACING, or not allowed here) before verifying:
/// the kernel's lack. Otherwise the verifier refused this program: ours; its log, often
/// long, is shown at -vv.
fn btf_load_error(hook: &str, err: aya::programs::ProgramError) -> LoadError {
    use aya::programs::ProgramError;
    match &err {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            if log.trim().is_empty() {
                LoadError::BtfProbes {
                    reason: format!(
                        "the kernel does not load BTF tracepoint programs (BPF_PROG_TYPE_TRACING, Linux 5.5 or later): loading {hook} failed: {io_error}"
                    ),
                    unsupported: true,
                }
            } else {
                log::debug!("the verifier's log for the btf program {hook}:");
                // A line each: the logger escapes control characters, newlines included.
                for line in log.lines() {
                    log::debug!("  {line}");
                }
                LoadError::BtfProbes {
                    reason: format!(
                        "the verifier refused the btf program {hook} ({io_error}; -vv shows its log)"
                    ),
                    unsupported: false,
                }
            }
        }
        _ => LoadError::BtfProbes {
            reason: format!(
                "loading the btf program {hook} failed: {}",
                error_chain(&err)
            ),
            unsupported: false,
        },
    }
}

/// Why a loaded btf program would not attach: the kernel's lack, whatever the error (no
/// such tracepoint, no BPF trampolines: ENOTSUPP, as on arm64 before 6.4).
fn btf_attach_error(hook: &str, err: aya::programs::ProgramError) -> LoadError {
    const ENOTSUPP: i32 = 524;
    let why = match os_error(&err) {
        Some(ENOTSUPP) => "this kernel cannot attach BPF trampolines".to_string(),
        _ => error_chain(&err),
    };
    LoadError::BtfProbes {
        reason: format!("attaching the BTF tracepoint {hook} failed: {why}"),
        unsupported: true,
    }
}

/// Loads the object `probing` names with `config`, loads its programs for `hooks`, fills the
/// filter maps, and attaches. The one path for both kinds of probes.
fn load_as(
    probing: Probing<'_>,
    hooks: &[&'static str],
    config: &Config,
    filter: &KernelFilter,
    options: &LoadOptions,
) -> Result<Probes, LoadError> {
    let log_level = kernel_log::program_level(options.kernel_log);
    let mut loader = loader_without_kernel_btf()?;
    // Our programs read fields at offsets we resolved ourselves: no CO-RE relocation.
    loader.btf(None);
    loader
        .override_global("CONFIG", config, true)
        // A constant to the verifier: below it, the logging code is removed.
        .override_global(aya_log::LEVEL, &log_level, true)
        // 128 KiB by default; one page when nothing is logged.
        .map_max_entries(
            "AYA_LOGS",
            if options.kernel_log == log::LevelFilter::Off {
                4096
            } else {
                1 << 17
            },
        )
        .map_max_entries("EVENTS", options.ring_bytes)
        // 4 MiB of kernel memory (a stack is 127 words), only with --stack.
        .map_max_entries(
            "STACKS",
            if config.flags & flag::STACK != 0 {
                STACK_TABLE_ENTRIES
            } else {
                1
            },
        )
        // 1 MiB of kernel memory, only when some pid is traced.
        .map_max_entries(
            "PID_SIDES",
            if config.flags & (flag::PID_FILTER | flag::FOLLOW_FORKS) != 0 {
                PID_SIDE_WORDS
            } else {
                1
            },
        )
        // 512 KiB, only when deliveries or exits pass by their kept generations.
        .map_max_entries(
            "KEPT_GATE",
            if config.flags & flag::NEEDS_GENERATION != 0 || config.flags & flag::ALL_EXITS == 0 {
                KEPT_GATE_ENTRIES
            } else {
                1
            },
        );
    let mut ebpf = probing.open(&mut loader)?;
    // Every program before any map is filled: a kernel that refuses the btf probes does so
    // at the first, and auto falls back having done little.
    for &hook in hooks {
        probing.load_program(&mut ebpf, hook)?;
    }
    // Our BTF parse, the object's parse and the btf probes' BTF freed several MiB that would
    // otherwise stay resident for the whole trace: give them back.
    // SAFETY: malloc_trim only releases memory that is already free.
    unsafe { libc::malloc_trim(0) };
    let kernel_log = kernel_log::start(&mut ebpf, options.kernel_log)
        .map_err(|e| LoadError::Load(format!("reading the programs' log: {e}")))?;
    fill_pid_sides(&mut ebpf, &filter.pids)?;
    fill(&mut ebpf, "TIDS", &filter.tids)?;
    fill(&mut ebpf, "PGRPS", &filter.pgrps)?;
    fill(&mut ebpf, "COMMS", &filter.comms)?;
    // On before attaching, so every run is counted.
    let run_time_stats = if options.measure_cost {
        Some(enable_stats(Stats::RunTime).map_err(|e| LoadError::Stats(e.io_error.to_string()))?)
    } else {
        None
    };
    for &hook in hooks {
        probing.attach(&mut ebpf, hook)?;
    }
    let events = RingBuf::try_from(
        ebpf.take_map("EVENTS")
            .ok_or_else(|| LoadError::Load("map EVENTS missing".into()))?,
    )
    .map_err(load_error)?;
    let lost = PerCpuArray::try_from(
        ebpf.take_map("LOST")
            .ok_or_else(|| LoadError::Load("map LOST missing".into()))?,
    )
    .map_err(load_error)?;
    let drops = PerCpuArray::try_from(
        ebpf.take_map("DROPS")
            .ok_or_else(|| LoadError::Load("map DROPS missing".into()))?,
    )
    .map_err(load_error)?;
    let stacks = if filter.stacks {
        let map = ebpf
            .take_map("STACKS")
            .ok_or_else(|| LoadError::Load("map STACKS missing".into()))?;
        Some(StackTraceMap::try_from(map).map_err(load_error)?)
    } else {
        None
    };
    Ok(Probes {
        ebpf,
        kind: probing.kind(),
        events,
        lost,
        drops,
        stacks,
        given_pids: filter.pids.keys().copied().collect(),
        _run_time_stats: run_time_stats,
        kernel_log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_read_as_named_nonzero_counts() {
        assert_eq!(Drops::default().suffix(), "");
        assert_eq!(Drops::default().stats(), "");
        let mut drops = Drops::default();
        drops.0[drop_reason::READ_FAILED as usize] = 3;
        assert_eq!(drops.suffix(), "; dropped: read_failed 3");
        assert_eq!(drops.stats(), " dropped read_failed=3");
        drops.0[drop_reason::TABLE_FULL as usize] = 1;
        assert_eq!(drops.suffix(), "; dropped: read_failed 3, table_full 1");
        assert_eq!(drops.stats(), " dropped read_failed=3 table_full=1");
    }

    #[test]
    fn every_drop_reason_has_a_name() {
        for reason in 0..drop_reason::COUNT {
            assert!(drop_reason::name(reason).is_some(), "reason {reason}");
        }
        assert_eq!(drop_reason::name(drop_reason::COUNT), None);
    }

    #[test]
    fn a_cost_reads_as_runs_and_ns_per_run() {
        let cost = ProgramCost {
            program: "signal_generate".into(),
            runs: 4,
            run_time: Duration::from_nanos(6_002),
        };
        assert_eq!(cost.ns_per_run(), 1_500);
        assert_eq!(cost.to_string(), "signal_generate 4 runs, 1500 ns/run");
        let never = ProgramCost {
            runs: 0,
            run_time: Duration::ZERO,
            ..cost
        };
        assert_eq!(never.to_string(), "signal_generate 0 runs, 0 ns/run");
    }

    #[test]
    fn a_missing_tracepoint_is_named_as_unsupported() {
        let missing = std::io::Error::from_raw_os_error(libc::ENOENT);
        let err = attach_error("signal_deliver", missing);
        assert!(err.is_bad_input());
        assert_eq!(
            err.to_string(),
            "this kernel cannot run sigtrace: it has no signal_deliver tracepoint; sigtrace needs Linux 5.8 or later with BTF (see docs/kernels.md)"
        );
        let other = attach_error(
            "signal_deliver",
            std::io::Error::from_raw_os_error(libc::EINVAL),
        );
        assert!(matches!(other, LoadError::Attach { .. }));
    }

    #[test]
    fn sigaction_adds_its_hooks_last() {
        let mut filter = KernelFilter::all();
        assert_eq!(hooks(&filter), ALWAYS);
        filter.sigaction = true;
        assert_eq!(hooks(&filter)[..4], ALWAYS);
        assert_eq!(hooks(&filter)[4..], SIGACTION_HOOKS);
        // --handler-time needs sys_enter only, and --sigaction has it already.
        filter.handler_time = true;
        assert_eq!(hooks(&filter)[4..], SIGACTION_HOOKS);
        filter.sigaction = false;
        assert_eq!(hooks(&filter)[4..], HANDLER_TIME_HOOKS);
    }

    #[test]
    fn btf_load_failures_tell_the_kernels_lack_from_a_refusal() {
        use aya::programs::ProgramError;
        let refused = |log: &str| ProgramError::LoadError {
            io_error: std::io::Error::from_raw_os_error(libc::EINVAL),
            verifier_log: aya_obj::VerifierLog::new(log.into()),
        };
        // Refused before any verification: the program type itself.
        let lacking = btf_load_error("signal_generate", refused(""));
        assert!(
            matches!(
                lacking,
                LoadError::BtfProbes {
                    unsupported: true,
                    ..
                }
            ),
            "{lacking:?}"
        );
        assert!(lacking.is_bad_input());
        let text = lacking.to_string();
        assert!(
            text.starts_with("--probe-mode btf: the kernel does not load BTF tracepoint programs")
                && text.ends_with("; use --probe-mode raw")
                && !text.contains('\n'),
            "{text}"
        );
        let verifier = btf_load_error(
            "signal_deliver",
            refused("attach_btf_id 9879 is not a typedef\nprocessed 0 insns\n"),
        );
        assert!(!verifier.is_bad_input(), "our fault: exit 1");
        let text = verifier.to_string();
        assert!(
            text.contains("the verifier refused the btf program signal_deliver")
                && !text.contains('\n'),
            "the log stays out of the one line: {text}"
        );
    }

    #[test]
    fn a_btf_attach_failure_is_the_kernels_lack() {
        let no_trampoline = aya::programs::ProgramError::SyscallError(aya::sys::SyscallError {
            call: "bpf_raw_tracepoint_open",
            io_error: std::io::Error::from_raw_os_error(524),
        });
        let err = btf_attach_error("sched_process_exit", no_trampoline);
        assert!(err.is_bad_input());
        assert_eq!(
            err.to_string(),
            "--probe-mode btf: attaching the BTF tracepoint sched_process_exit failed: this kernel cannot attach BPF trampolines; use --probe-mode raw"
        );
    }

    #[test]
    fn forgetting_a_pid_clears_only_its_bits() {
        // Two bits per tgid, 32 tgids per word: 33 is the second slot of word 1.
        let words = pid_side_words(&BTreeMap::from([
            (32u32, side::EITHER),
            (33, side::TARGET),
            (34, side::SENDER),
        ]));
        assert_eq!(words.keys().copied().collect::<Vec<_>>(), vec![1]);
        let word = words[&1];
        assert_eq!(word, 0b01_10_11);
        assert_eq!(without_pid(word, 33), 0b01_00_11);
        assert_eq!(without_pid(word, 32), 0b01_10_00);
        assert_eq!(
            without_pid(word, 35),
            word,
            "a tgid without bits changes nothing"
        );
    }
}
