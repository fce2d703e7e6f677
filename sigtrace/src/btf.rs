//! Kernel struct offsets from the running kernel's BTF (/sys/kernel/btf/vmlinux): CO-RE done
//! at load time. The eBPF programs read task_struct, signal_struct, sighand_struct, pid, tty
//! and pt_regs fields at the offsets found here, handed to them as a global. The btf probes
//! also need the ids of the tracepoints' `btf_trace_*` typedefs, which [`attach`] hands aya.
//!
//! A small reader rather than a BTF crate: we need about forty lookups once at start-up,
//! and a full type tree (btf-rs) cost ~25 MiB of peak memory for them.

pub(crate) mod attach;

use std::{cell::OnceCell, collections::HashMap, fs, path::Path};

use sigtrace_common::Offsets;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error(
        "cannot read kernel BTF from {path}: {source} (sigtrace needs a kernel built with CONFIG_DEBUG_INFO_BTF=y)"
    )]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("kernel BTF is malformed: {0}")]
    Malformed(&'static str),
    #[error("kernel BTF has no {0}; this kernel's layout is not supported")]
    Missing(String),
}

const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// A parsed view over raw BTF bytes: the start of each type record, by type id.
pub(crate) struct Btf {
    data: Vec<u8>,
    types_start: usize,
    strings_start: usize,
    strings_end: usize,
    /// Byte offset (from `types_start`) of type id `i + 1`.
    type_offsets: Vec<u32>,
    /// Struct name → id, built on the first lookup (one pass instead of one per lookup).
    structs: OnceCell<HashMap<Box<[u8]>, u32>>,
}

struct TypeRecord {
    name_off: u32,
    kind: u32,
    kind_flag: bool,
    vlen: usize,
    size_or_type: u32,
    /// Start of the kind-specific data after the 12-byte common header.
    extra: usize,
}

impl Btf {
    pub(crate) fn from_sys_fs() -> Result<Self, BtfError> {
        Self::from_file(Path::new("/sys/kernel/btf/vmlinux"))
    }

    pub(crate) fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = fs::read(path).map_err(|source| BtfError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(data)
    }

    pub(crate) fn parse(data: Vec<u8>) -> Result<Self, BtfError> {
        let u16_at = |at: usize| {
            data.get(at..at + 2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
        };
        let u32_at = |at: usize| {
            data.get(at..at + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        if u16_at(0) != Some(0xeb9f) {
            return Err(BtfError::Malformed("bad magic (not little-endian BTF)"));
        }
        let field = |at| u32_at(at).ok_or(BtfError::Malformed("truncated header"));
        let hdr_len = field(4)? as usize;
        let type_off = field(8)? as usize;
        let type_len = field(12)? as usize;
        let str_off = field(16)? as usize;
        let str_len = field(20)? as usize;
        let types_start = hdr_len + type_off;
        let strings_start = hdr_len + str_off;
        if types_start + type_len > data.len() || strings_start + str_len > data.len() {
            return Err(BtfError::Malformed("sections run past the end"));
        }
        let mut btf = Btf {
            types_start,
            strings_start,
            strings_end: strings_start + str_len,
            type_offsets: Vec::with_capacity(type_len / 16),
            structs: OnceCell::new(),
            data,
        };
        let mut at = 0usize;
        while at < type_len {
            btf.type_offsets.push(at as u32);
            let record = btf
                .record_at(at)
                .ok_or(BtfError::Malformed("truncated type"))?;
            at = record.extra - btf.types_start + extra_len(&record)?;
        }
        Ok(btf)
    }

    fn u32_at(&self, at: usize) -> Option<u32> {
        self.data
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn record_at(&self, rel: usize) -> Option<TypeRecord> {
        let at = self.types_start + rel;
        let name_off = self.u32_at(at)?;
        let info = self.u32_at(at + 4)?;
        let size_or_type = self.u32_at(at + 8)?;
        Some(TypeRecord {
            name_off,
            kind: (info >> 24) & 0x1f,
            kind_flag: info >> 31 == 1,
            vlen: (info & 0xffff) as usize,
            size_or_type,
            extra: at + 12,
        })
    }

    fn record(&self, id: u32) -> Option<TypeRecord> {
        let rel = *self.type_offsets.get((id as usize).checked_sub(1)?)?;
        self.record_at(rel as usize)
    }

    fn name(&self, name_off: u32) -> &[u8] {
        let start = self.strings_start + name_off as usize;
        if start >= self.strings_end {
            return b"";
        }
        let rest = &self.data[start..self.strings_end];
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        &rest[..end]
    }

    /// The id of the struct named `name`.
    pub(crate) fn struct_id(&self, name: &str) -> Result<u32, BtfError> {
        self.find(name, KIND_STRUCT)
            .ok_or_else(|| BtfError::Missing(format!("struct {name}")))
    }

    pub(crate) fn has_struct(&self, name: &str) -> bool {
        self.find(name, KIND_STRUCT).is_some()
    }

    fn find(&self, name: &str, kind: u32) -> Option<u32> {
        debug_assert_eq!(kind, KIND_STRUCT);
        let structs = self.structs.get_or_init(|| {
            let mut structs = HashMap::new();
            for id in 1..=self.type_offsets.len() as u32 {
                if let Some(r) = self.record(id)
                    && r.kind == KIND_STRUCT
                    && r.name_off != 0
                {
                    // The first definition wins, as with libbpf's lookups.
                    structs.entry(self.name(r.name_off).into()).or_insert(id);
                }
            }
            structs
        });
        structs.get(name.as_bytes()).copied()
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn resolve(&self, mut id: u32) -> Option<TypeRecord> {
        for _ in 0..32 {
            let record = self.record(id)?;
            match record.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = record.size_or_type
                }
                _ => return Some(record),
            }
        }
        None
    }

    /// The ids of the typedefs `names`, all found in one pass over the types; None for a
    /// name the kernel lacks. The first definition wins, as with the struct lookups.
    pub(crate) fn typedef_ids(&self, names: &[&str]) -> Vec<Option<u32>> {
        let mut ids = vec![None; names.len()];
        let mut left = names.len();
        for id in 1..=self.type_offsets.len() as u32 {
            if left == 0 {
                break;
            }
            let Some(record) = self.record(id).filter(|r| r.kind == KIND_TYPEDEF) else {
                continue;
            };
            let name = self.name(record.name_off);
            for (wanted, found) in names.iter().zip(ids.iter_mut()) {
                if found.is_none() && name == wanted.as_bytes() {
                    *found = Some(id);
                    left -= 1;
                }
            }
        }
        ids
    }

    /// The id of the typedef `name` (see [`Btf::typedef_ids`] for several).
    pub(crate) fn typedef_id(&self, name: &str) -> Option<u32> {
        self.typedef_ids(&[name]).pop().flatten()
    }

    /// Number of parameters of the function prototype behind the typedef `name` (a pointer
    /// to a FUNC_PROTO, as the kernel's `btf_trace_*` typedefs are); 0 when absent.
    pub(crate) fn func_proto_params(&self, name: &str) -> usize {
        self.typedef_id(name)
            .and_then(|id| self.record(id))
            .and_then(|r| self.record(r.size_or_type)) // the pointer
            .and_then(|ptr| self.record(ptr.size_or_type))
            .filter(|proto| proto.kind == KIND_FUNC_PROTO)
            .map_or(0, |proto| proto.vlen)
    }

    /// Size in bytes of a struct (by id).
    pub(crate) fn size_of(&self, id: u32) -> Result<u32, BtfError> {
        self.resolve(id)
            .filter(|r| r.kind == KIND_STRUCT || r.kind == KIND_UNION || r.kind == KIND_INT)
            .map(|r| r.size_or_type)
            .ok_or_else(|| BtfError::Missing(format!("size of type {id}")))
    }

    /// Byte offset and type id of `member` in the struct or union `id`, looking through
    /// anonymous struct and union members.
    fn member_in(&self, id: u32, member: &str) -> Option<(u32, u32)> {
        let record = self.resolve(id)?;
        if record.kind != KIND_STRUCT && record.kind != KIND_UNION {
            return None;
        }
        for i in 0..record.vlen {
            let at = record.extra + i * 12;
            let name_off = self.u32_at(at)?;
            let member_type = self.u32_at(at + 4)?;
            let raw_offset = self.u32_at(at + 8)?;
            let bits = if record.kind_flag {
                raw_offset & 0x00ff_ffff
            } else {
                raw_offset
            };
            let name = self.name(name_off);
            if name == member.as_bytes() {
                return Some((bits / 8, member_type));
            }
            if name.is_empty()
                && let Some((inner, ty)) = self.member_in(member_type, member)
            {
                return Some((bits / 8 + inner, ty));
            }
        }
        None
    }

    /// Byte offset of a dotted member path, e.g. `offset_of("task_struct", "pending.signal")`.
    pub(crate) fn offset_of(&self, strukt: &str, path: &str) -> Result<u32, BtfError> {
        let missing = || BtfError::Missing(format!("{strukt}.{path}"));
        let mut id = self.struct_id(strukt)?;
        let mut offset = 0;
        for part in path.split('.') {
            let (at, ty) = self.member_in(id, part).ok_or_else(missing)?;
            offset += at;
            id = ty;
        }
        Ok(offset)
    }
}

/// Length of the kind-specific data following a type's common header.
fn extra_len(record: &TypeRecord) -> Result<usize, BtfError> {
    Ok(match record.kind {
        KIND_INT => 4,
        KIND_ARRAY => 12,
        KIND_STRUCT | KIND_UNION => record.vlen * 12,
        KIND_ENUM => record.vlen * 8,
        KIND_FUNC_PROTO => record.vlen * 8,
        KIND_VAR => 4,
        KIND_DATASEC => record.vlen * 12,
        KIND_DECL_TAG => 4,
        KIND_ENUM64 => record.vlen * 12,
        // PTR, FWD, TYPEDEF, qualifiers, FUNC, FLOAT, TYPE_TAG carry nothing more.
        2 | 7..=12 | 16 | KIND_TYPE_TAG => 0,
        _ => return Err(BtfError::Malformed("unknown type kind")),
    })
}

/// x86_64 kernel stacks are 4 pages, doubled under KASAN (arch/x86/include/asm/page_64_types.h).
/// A kernel's types tell its configuration: `struct kasan_cache` exists only with KASAN.
fn thread_size(btf: &Btf) -> u32 {
    if btf.has_struct("kasan_cache") {
        32 * 1024
    } else {
        16 * 1024
    }
}

/// With FRED (6.9+, CONFIG_X86_FRED) the saved user registers sit 16 bytes below the stack
/// top (TOP_OF_KERNEL_STACK_PADDING); `struct fred_info` exists only in such kernels.
fn stack_top_padding(btf: &Btf) -> u32 {
    if btf.has_struct("fred_info") { 16 } else { 0 }
}

/// The programs copy all 64 actions in one 2 KiB read and pick the handlers and flags at
/// fixed offsets (so the loop unrolls into constant loads): x86_64's uapi layout, which
/// this kernel must have.
fn check_sigaction_layout(size: u32, handler: u32, flags: u32) -> Result<(), BtfError> {
    use sigtrace_common::{K_SIGACTION_SIZE, KSA_FLAGS, KSA_HANDLER};
    if (size, handler, flags) == (K_SIGACTION_SIZE, KSA_HANDLER, KSA_FLAGS) {
        return Ok(());
    }
    Err(BtfError::Missing(format!(
        "k_sigaction of {K_SIGACTION_SIZE} bytes with sa_handler at {KSA_HANDLER} and \
         sa_flags at {KSA_FLAGS} (this kernel's: {size} bytes, {handler} and {flags})"
    )))
}

/// `[start, end)` spanning fields given as (offset, size).
fn span(fields: &[(u32, u32)]) -> (u32, u32) {
    let start = fields.iter().map(|f| f.0).min().unwrap_or(0);
    let end = fields.iter().map(|f| f.0 + f.1).max().unwrap_or(0);
    (start, end - start)
}

/// Adds the read windows, refusing a layout whose windows exceed the programs' scratch.
fn with_windows(mut o: Offsets) -> Result<Offsets, BtfError> {
    use sigtrace_common::{REGS_WINDOW, SIGNAL_WINDOW, TASK_IDS_WINDOW, TASK_WINDOW};
    (o.task_ids_window_start, o.task_ids_window_len) =
        span(&[(o.task_pid, 4), (o.task_tgid, 4), (o.task_real_parent, 8)]);
    (o.task_window_start, o.task_window_len) = span(&[
        (o.task_real_cred, 8),
        (o.task_comm, 16),
        (o.task_signal, 8),
        (o.task_sighand, 8),
        (o.task_blocked, 8),
        (o.task_pending_signal, 8),
    ]);
    (o.signal_window_start, o.signal_window_len) = span(&[
        (o.signal_pids, 8 * 4),
        (o.signal_shared_pending, 8),
        (o.signal_tty, 8),
    ]);
    (o.regs_window_start, o.regs_window_len) = span(&[
        (o.regs_orig_ax, 8),
        (o.regs_di, 8),
        (o.regs_si, 8),
        (o.regs_dx, 8),
        (o.regs_ax, 8),
        (o.regs_cs, 8),
        (o.regs_sp, 8),
    ]);
    for (what, len, cap) in [
        ("task_struct (ids)", o.task_ids_window_len, TASK_IDS_WINDOW),
        ("task_struct", o.task_window_len, TASK_WINDOW),
        ("signal_struct", o.signal_window_len, SIGNAL_WINDOW),
        ("pt_regs", o.regs_window_len, REGS_WINDOW),
    ] {
        if len as usize > cap {
            return Err(BtfError::Missing(format!(
                "{what} layout whose signal fields span at most {cap} bytes (this one spans {len})"
            )));
        }
    }
    Ok(o)
}

/// Every offset the eBPF programs use, from this kernel's BTF.
pub(crate) fn resolve_offsets(btf: &Btf) -> Result<Offsets, BtfError> {
    let task = |path| btf.offset_of("task_struct", path);
    let signal = |path| btf.offset_of("signal_struct", path);
    let regs = |path| btf.offset_of("pt_regs", path);
    let pt_regs_size = btf.size_of(btf.struct_id("pt_regs")?)?;
    let k_sigaction_size = btf.size_of(btf.struct_id("k_sigaction")?)?;
    let sa = btf.offset_of("k_sigaction", "sa")?;
    let cgroup_ancestors = match btf.offset_of("cgroup", "ancestors") {
        Ok(off) => (off, 0),
        Err(_) => (btf.offset_of("cgroup", "ancestor_ids")?, 1),
    };
    let offsets = Offsets {
        task_pid: task("pid")?,
        task_tgid: task("tgid")?,
        task_comm: task("comm")?,
        task_real_cred: task("real_cred")?,
        task_real_parent: task("real_parent")?,
        task_signal: task("signal")?,
        task_sighand: task("sighand")?,
        task_blocked: task("blocked")?,
        task_pending_signal: task("pending.signal")?,
        task_exit_code: task("exit_code")?,
        cred_uid: btf.offset_of("cred", "uid")?,
        signal_pids: signal("pids")?,
        task_stack: task("stack")?,
        regs_from_stack: thread_size(btf) - stack_top_padding(btf) - pt_regs_size,
        signal_shared_pending: signal("shared_pending.signal")?,
        signal_tty: signal("tty")?,
        signal_group_exit_code: signal("group_exit_code")?,
        signal_live: signal("live")?,
        pid_level: btf.offset_of("pid", "level")?,
        pid_numbers: btf.offset_of("pid", "numbers")? + btf.offset_of("upid", "nr")?,
        upid_size: btf.size_of(btf.struct_id("upid")?)?,
        sighand_action: btf.offset_of("sighand_struct", "action")?,
        k_sigaction_size,
        ksa_handler: sa + btf.offset_of("sigaction", "sa_handler")?,
        ksa_flags: sa + btf.offset_of("sigaction", "sa_flags")?,
        ksa_mask: sa + btf.offset_of("sigaction", "sa_mask")?,
        tty_name: btf.offset_of("tty_struct", "name")?,
        // Moved into tty->ctrl in 5.16.
        tty_pgrp: btf
            .offset_of("tty_struct", "ctrl.pgrp")
            .or_else(|_| btf.offset_of("tty_struct", "pgrp"))?,
        regs_orig_ax: regs("orig_ax")?,
        regs_di: regs("di")?,
        regs_si: regs("si")?,
        regs_dx: regs("dx")?,
        signal_group_exec_task: signal("group_exec_task").or_else(|_| signal("group_exit_task"))?,
        exit_has_group_dead: u32::from(btf.func_proto_params("btf_trace_sched_process_exit") >= 3),
        task_children: task("children")?,
        task_sibling: task("sibling")?,
        // Filled by with_windows, from the offsets above. No `..Default::default()` here:
        // an offset added to Offsets but not resolved must not compile.
        task_ids_window_start: 0,
        task_ids_window_len: 0,
        task_window_start: 0,
        task_window_len: 0,
        signal_window_start: 0,
        signal_window_len: 0,
        regs_window_start: 0,
        regs_window_len: 0,
        regs_ax: regs("ax")?,
        regs_cs: regs("cs")?,
        regs_sp: regs("sp")?,
        thread_size: thread_size(btf),
        task_flags: task("flags")?,
        task_cgroups: task("cgroups")?,
        css_set_dfl_cgrp: btf.offset_of("css_set", "dfl_cgrp")?,
        cgroup_kn: btf.offset_of("cgroup", "kn")?,
        kernfs_node_id: btf.offset_of("kernfs_node", "id")?,
        cgroup_level: btf.offset_of("cgroup", "level")?,
        // ancestor_ids[] became ancestors[] in 6.0.
        cgroup_ancestors: cgroup_ancestors.0,
        cgroup_ancestor_ids: cgroup_ancestors.1,
    };
    let offsets = with_windows(offsets)?;
    check_sigaction_layout(k_sigaction_size, offsets.ksa_handler, offsets.ksa_flags)?;
    Ok(offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a tiny BTF blob: int, struct inner { int a; int b; }, struct outer { int x;
    /// union { struct inner in; }; }
    fn sample() -> Vec<u8> {
        let strings = b"\0int\0inner\0a\0b\0outer\0x\0in\0".to_vec();
        let off = |s: &str| {
            let needle = format!("\0{s}\0");
            strings
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .map(|p| p as u32 + 1)
                .unwrap_or(0)
        };
        let mut types = Vec::new();
        let mut push = |words: &[u32]| {
            for w in words {
                types.extend_from_slice(&w.to_le_bytes());
            }
        };
        // 1: int, 4 bytes
        push(&[off("int"), KIND_INT << 24, 4, 32]);
        // 2: struct inner { a @0, b @32 bits }
        push(&[off("inner"), (KIND_STRUCT << 24) | 2, 8]);
        push(&[off("a"), 1, 0, off("b"), 1, 32]);
        // 3: anonymous union { struct inner in; }
        push(&[0, (KIND_UNION << 24) | 1, 8]);
        push(&[off("in"), 2, 0]);
        // 4: struct outer { int x @0; union @64 bits }
        push(&[off("outer"), (KIND_STRUCT << 24) | 2, 16]);
        push(&[off("x"), 1, 0, 0, 3, 64]);
        let mut data = Vec::new();
        data.extend_from_slice(&0xeb9fu16.to_le_bytes());
        data.extend_from_slice(&[1, 0]);
        for w in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            data.extend_from_slice(&w.to_le_bytes());
        }
        data.extend_from_slice(&types);
        data.extend_from_slice(&strings);
        data
    }

    #[test]
    fn finds_members_through_anonymous_unions() {
        let btf = Btf::parse(sample()).expect("parse");
        assert_eq!(btf.offset_of("outer", "x").expect("x"), 0);
        assert_eq!(btf.offset_of("outer", "in.b").expect("in.b"), 12);
        assert_eq!(
            btf.size_of(btf.struct_id("outer").expect("id"))
                .expect("size"),
            16
        );
        assert!(matches!(
            btf.offset_of("outer", "nope"),
            Err(BtfError::Missing(_))
        ));
    }

    #[test]
    fn refuses_another_sigaction_layout() {
        assert!(check_sigaction_layout(32, 0, 8).is_ok());
        let err = check_sigaction_layout(24, 0, 8).expect_err("24-byte k_sigaction");
        assert!(err.to_string().contains("this kernel's: 24 bytes"), "{err}");
        assert!(check_sigaction_layout(32, 8, 0).is_err());
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(
            Btf::parse(vec![0; 8]),
            Err(BtfError::Malformed(_))
        ));
    }

    /// Field offsets of the kernel matrix's kernels, read independently of this module with
    /// `bpftool btf dump file F format raw` (bits_offset / 8). The BTF files beside the
    /// tests are each kernel's /sys/kernel/btf/vmlinux (the .BTF section of its vmlinux),
    /// gzip'd; `cargo xtask btf-fixtures` writes them again.
    struct Layout {
        file: &'static str,
        /// pid, tgid, comm, real_cred, real_parent, signal, sighand, blocked, exit_code,
        /// stack, children, sibling.
        task: [u32; 12],
        /// live, group_exit_code, group_exec_task, pids, tty.
        signal: [u32; 5],
        /// sched_process_exit has its group_dead argument (6.18 has it, 6.12 not).
        exit_has_group_dead: u32,
    }

    const MATRIX: [Layout; 4] = [
        Layout {
            file: "6.1.0-57-amd64",
            task: [
                2416, 2420, 2976, 2952, 2432, 3072, 3080, 3088, 2312, 32, 2448, 2464,
            ],
            signal: [4, 96, 104, 360, 416],
            exit_has_group_dead: 0,
        },
        Layout {
            file: "6.12.117+deb12-amd64",
            task: [
                2432, 2436, 2976, 2952, 2448, 3072, 3080, 3088, 2332, 32, 2464, 2480,
            ],
            signal: [4, 96, 104, 352, 408],
            exit_has_group_dead: 0,
        },
        // PREEMPT_RT: sleeping locks make task_struct and signal_struct larger.
        Layout {
            file: "6.12.117+deb12-rt-amd64",
            task: [
                2472, 2476, 3016, 2992, 2488, 3112, 3120, 3128, 2332, 32, 2504, 2520,
            ],
            signal: [4, 120, 128, 376, 432],
            exit_has_group_dead: 0,
        },
        Layout {
            file: "6.18.44-fc-v1045",
            task: [
                1264, 1268, 1752, 1728, 1280, 1848, 1856, 1864, 1164, 32, 1296, 1312,
            ],
            signal: [4, 96, 104, 360, 408],
            exit_has_group_dead: 1,
        },
    ];

    pub(super) fn fixture(name: &str) -> Btf {
        use std::io::Read as _;
        let path = format!(
            "{}/tests/data/btf/{name}.btf.gz",
            env!("CARGO_MANIFEST_DIR")
        );
        let file = fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut data = Vec::new();
        flate2::read::GzDecoder::new(file)
            .read_to_end(&mut data)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        Btf::parse(data).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn resolves_every_matrix_kernel_as_bpftool_reads_it() {
        for kernel in MATRIX {
            let o = resolve_offsets(&fixture(kernel.file))
                .unwrap_or_else(|e| panic!("{}: {e}", kernel.file));
            let task = [
                o.task_pid,
                o.task_tgid,
                o.task_comm,
                o.task_real_cred,
                o.task_real_parent,
                o.task_signal,
                o.task_sighand,
                o.task_blocked,
                o.task_exit_code,
                o.task_stack,
                o.task_children,
                o.task_sibling,
            ];
            assert_eq!(task, kernel.task, "{}: task_struct", kernel.file);
            let signal = [
                o.signal_live,
                o.signal_group_exit_code,
                o.signal_group_exec_task,
                o.signal_pids,
                o.signal_tty,
            ];
            assert_eq!(signal, kernel.signal, "{}: signal_struct", kernel.file);
            assert_eq!(
                o.exit_has_group_dead, kernel.exit_has_group_dead,
                "{}: sched_process_exit arguments",
                kernel.file
            );
            // The same on every x86_64 kernel.
            assert_eq!(
                (o.k_sigaction_size, o.ksa_handler, o.ksa_flags, o.ksa_mask),
                (32, 0, 8, 24),
                "{}: k_sigaction",
                kernel.file
            );
            assert_eq!(o.upid_size, 16, "{}: struct upid", kernel.file);
            assert!(
                o.task_window_start <= o.task_real_cred
                    && o.task_window_start + o.task_window_len >= o.task_pending_signal + 8,
                "{}: the task window covers its fields",
                kernel.file
            );
        }
    }

    #[test]
    fn resolves_the_running_kernel() {
        let Ok(btf) = Btf::from_sys_fs() else {
            eprintln!("skipping: no /sys/kernel/btf/vmlinux on this machine");
            return;
        };
        let offsets = resolve_offsets(&btf).expect("offsets");
        assert_eq!(offsets.k_sigaction_size, 32, "x86_64 k_sigaction");
        assert_eq!(offsets.ksa_handler, 0);
        assert!(offsets.task_tgid > offsets.task_pid - 8);
    }
}
