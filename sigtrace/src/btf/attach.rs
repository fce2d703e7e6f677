//! The BTF a BTF tracepoint program is loaded with. aya's `BtfTracePoint::load` wants an
//! `aya::Btf` only to look up the typedef `btf_trace_<tracepoint>` by name and give its
//! index to the kernel as the program's attach_btf_id, which must be that typedef's id in
//! the kernel's BTF. Parsing /sys/kernel/btf/vmlinux with aya for that costs ~27 MiB of
//! peak memory; instead our own reader finds the ids, and each program gets a synthetic BTF
//! in which its typedef sits at that id behind anonymous pointers (12 bytes each).

use super::Btf;

const KIND_PTR: u32 = 2;
const KIND_TYPEDEF: u32 = 8;
const HEADER_LEN: u32 = 24;
const TYPE_LEN: u32 = 12;

/// The kernel's typedef for a tracepoint's probe function, which a BTF tracepoint attaches by.
fn typedef_name(tracepoint: &str) -> String {
    format!("btf_trace_{tracepoint}")
}

/// The vmlinux ids of the `btf_trace_<tracepoint>` typedefs the programs attach to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AttachIds(Vec<(&'static str, u32)>);

impl AttachIds {
    /// The ids for all of `tracepoints`, in one pass over the kernel's types. Err names a
    /// tracepoint without its typedef: the kernel has no BTF tracepoint by that name.
    pub(crate) fn find(btf: &Btf, tracepoints: &[&'static str]) -> Result<Self, &'static str> {
        let names: Vec<String> = tracepoints.iter().map(|tp| typedef_name(tp)).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        tracepoints
            .iter()
            .zip(btf.typedef_ids(&names))
            .map(|(&tracepoint, id)| id.map(|id| (tracepoint, id)).ok_or(tracepoint))
            .collect::<Result<_, _>>()
            .map(AttachIds)
    }

    /// The vmlinux id of `tracepoint`'s typedef, when [`AttachIds::find`] was asked for it.
    pub(crate) fn id(&self, tracepoint: &str) -> Option<u32> {
        self.0
            .iter()
            .find_map(|&(tp, id)| (tp == tracepoint).then_some(id))
    }

    /// The BTF to load `tracepoint`'s program with; a few MiB for a high id, so drop it once
    /// the program is loaded (and before building the next).
    pub(crate) fn btf_for(&self, tracepoint: &str) -> Result<aya::Btf, String> {
        let id = self
            .id(tracepoint)
            .ok_or_else(|| format!("no BTF id looked up for the {tracepoint} tracepoint"))?;
        let blob = typedef_at(&typedef_name(tracepoint), id)
            .ok_or_else(|| format!("{tracepoint}: BTF id {id} is out of range"))?;
        aya::Btf::parse(&blob, aya::Endianness::Little)
            .map_err(|e| format!("{tracepoint}: the BTF built for it does not parse: {e}"))
    }
}

/// Little-endian BTF whose type `id` is the typedef `name` (of void: only its name and id
/// matter), types 1 to id-1 anonymous pointers to void. None when `id` is 0 (void) or the
/// types would not fit the header's 32-bit lengths.
fn typedef_at(name: &str, id: u32) -> Option<Vec<u8>> {
    if id == 0 {
        return None;
    }
    let type_len = id.checked_mul(TYPE_LEN)?;
    // The string section: the empty name (offset 0), then `name` (offset 1).
    let str_len = u32::try_from(name.len()).ok()?.checked_add(2)?;
    let total = HEADER_LEN.checked_add(type_len)?.checked_add(str_len)?;
    let mut blob = Vec::with_capacity(total as usize);
    blob.extend_from_slice(&0xeb9f_u16.to_le_bytes());
    blob.extend_from_slice(&[1, 0]); // version 1, no flags
    for word in [HEADER_LEN, 0, type_len, type_len, str_len] {
        blob.extend_from_slice(&word.to_le_bytes());
    }
    let mut push = |name_off: u32, kind: u32| {
        for word in [name_off, kind << 24, 0] {
            blob.extend_from_slice(&word.to_le_bytes());
        }
    };
    for _ in 1..id {
        push(0, KIND_PTR);
    }
    push(1, KIND_TYPEDEF);
    blob.push(0);
    blob.extend_from_slice(name.as_bytes());
    blob.push(0);
    Some(blob)
}

#[cfg(test)]
mod tests {
    use aya_obj::btf::BtfKind;

    use super::*;

    /// Where aya finds the typedef: what `BtfTracePoint::load` hands the kernel.
    fn resolved(btf: &aya::Btf, tracepoint: &str) -> u32 {
        btf.id_by_type_name_kind(&typedef_name(tracepoint), BtfKind::Typedef)
            .unwrap_or_else(|e| panic!("{tracepoint}: {e}"))
    }

    #[test]
    fn aya_finds_the_typedef_at_its_kernel_id() {
        for id in [1, 2, 9874, 66_198] {
            let ids = AttachIds(vec![("signal_generate", id)]);
            let btf = ids.btf_for("signal_generate").expect("parses");
            assert_eq!(resolved(&btf, "signal_generate"), id);
            assert!(
                btf.id_by_type_name_kind("btf_trace_signal_deliver", BtfKind::Typedef)
                    .is_err(),
                "only the one typedef"
            );
        }
    }

    #[test]
    fn the_blob_is_laid_out_as_btf_says() {
        let blob = typedef_at("btf_trace_x", 3).expect("blob");
        let word = |at: usize| u32::from_le_bytes(blob[at..at + 4].try_into().expect("4 bytes"));
        assert_eq!(&blob[..4], &[0x9f, 0xeb, 1, 0]);
        assert_eq!(
            [word(4), word(8), word(12), word(16), word(20)],
            [24, 0, 36, 36, 13]
        );
        // Two pointers to void, then the typedef named at string offset 1.
        assert_eq!(word(24 + 4), 2 << 24);
        assert_eq!([word(48), word(52), word(56)], [1, 8 << 24, 0]);
        assert_eq!(&blob[60..], b"\0btf_trace_x\0");
    }

    #[test]
    fn void_and_absurd_ids_are_refused() {
        assert!(typedef_at("btf_trace_x", 0).is_none());
        assert!(typedef_at("btf_trace_x", u32::MAX).is_none());
        assert!(AttachIds(vec![("x", 0)]).btf_for("x").is_err());
        assert!(AttachIds(vec![]).btf_for("x").is_err());
    }

    /// The matrix kernels' ids, read independently with `bpftool btf dump file F format raw`
    /// from the fixtures beside the tests (see `super::tests::MATRIX`).
    #[test]
    fn finds_every_hook_in_the_matrix_kernels_as_bpftool_reads_them() {
        const HOOKS: [&str; 6] = [
            "signal_generate",
            "signal_deliver",
            "sched_process_exit",
            "sched_process_fork",
            "sys_enter",
            "sys_exit",
        ];
        let kernels: [(&str, [u32; 6]); 4] = [
            ("6.1.0-57-amd64", [8703, 8708, 65475, 65483, 66194, 66198]),
            (
                "6.12.117+deb12-amd64",
                [16313, 16317, 18423, 18431, 23268, 23272],
            ),
            (
                "6.12.117+deb12-rt-amd64",
                [16304, 16308, 18408, 18416, 23145, 23149],
            ),
            ("6.18.44-fc-v1045", [9874, 9878, 10316, 10326, 11330, 11334]),
        ];
        for (file, expected) in kernels {
            let btf = crate::btf::tests::fixture(file);
            let ids = AttachIds::find(&btf, &HOOKS).unwrap_or_else(|tp| panic!("{file}: {tp}"));
            let found: Vec<u32> = HOOKS
                .iter()
                .map(|tp| ids.id(tp).expect("asked for"))
                .collect();
            assert_eq!(found, expected, "{file}");
            assert_eq!(
                btf.typedef_id("btf_trace_sys_exit"),
                Some(expected[5]),
                "{file}: one name alone"
            );
            let loadable = ids.btf_for("sched_process_fork").expect("parses");
            assert_eq!(resolved(&loadable, "sched_process_fork"), expected[3]);
            assert_eq!(
                AttachIds::find(&btf, &["signal_generate", "no_such_tracepoint"]),
                Err("no_such_tracepoint"),
                "{file}"
            );
        }
    }
}
