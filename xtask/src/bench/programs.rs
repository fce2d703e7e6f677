//! The bench's static program report: the programs a running sigtrace loaded, as bpftool
//! shows them. `bpftool prog show --json` finds them (by sigtrace's pid, where bpftool
//! lists the processes holding each program; else by the program ids in sigtrace's own
//! fdinfo; else by name and load time) and gives their sizes and, with the kernel's BPF
//! statistics on, run time and run count; `bpftool prog dump xlated` gives the instructions
//! as the verifier left them, whose calls are counted. These are STATIC counts: what is in
//! a program, not what one run executes.

use std::{collections::HashSet, fs, process::Command, time::SystemTime};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::exec::stdout_of;

/// The programs the report shows, in this order.
pub const REPORTED: [&str; 2] = ["signal_generate", "signal_deliver"];

/// Every program sigtrace loads, for finding them by name.
const SIGTRACE_PROGRAMS: [&str; 4] = [
    "signal_generate",
    "signal_deliver",
    "sched_process_exit",
    "sched_process_fork",
];

/// The kernel keeps BPF_OBJ_NAME_LEN - 1 = 15 bytes of a program's name.
const KERNEL_NAME_LEN: usize = 15;

/// One reported program.
#[derive(Debug)]
pub struct Program {
    pub name: String,
    pub id: u64,
    pub xlated: Xlated,
    pub bytes_jited: Option<u64>,
    /// Present when the kernel's BPF statistics were on (sigtrace --cost turns them on).
    pub run_time_ns: Option<u64>,
    pub run_cnt: Option<u64>,
}

impl Program {
    pub fn ns_per_run(&self) -> Option<f64> {
        match (self.run_time_ns, self.run_cnt) {
            (Some(ns), Some(runs)) if runs > 0 => Some(ns as f64 / runs as f64),
            _ => None,
        }
    }
}

/// What `bpftool prog dump xlated` lists.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Xlated {
    /// Instruction slots, as the kernel counts them (bytes_xlated / 8): a 64-bit immediate
    /// load (opcode 0x18) takes two.
    pub insns: usize,
    /// `call` instructions to helpers (and kfuncs), of which `probe_reads` call the
    /// bpf_probe_read family (bpf_probe_read_kernel, _user, _str...).
    pub helper_calls: usize,
    pub probe_reads: usize,
    /// bpf-to-bpf calls of the program's own functions (`call pc+N`).
    pub subprog_calls: usize,
}

/// bpftool's version line, or None when it cannot be run.
pub fn bpftool_version() -> Option<String> {
    let out = Command::new("bpftool").arg("version").output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.lines().next().unwrap_or("bpftool").trim().to_owned())
}

/// The reported programs of the sigtrace running as `pid`, started at `since`.
pub fn inspect(pid: u32, since: SystemTime) -> anyhow::Result<Vec<Program>> {
    let listed = stdout_of(Command::new("bpftool").args(["prog", "show", "--json"]))?;
    let listed: Vec<Value> =
        serde_json::from_str(&listed).context("bpftool prog show --json printed no JSON list")?;
    let since = since
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let ours = pick(&listed, pid, &fd_prog_ids(pid), since)?;
    REPORTED
        .iter()
        .filter_map(|&name| ours.iter().find(|p| p["name"] == name))
        .map(|p| {
            let id = p["id"].as_u64().context("a program without an id")?;
            let dump = stdout_of(Command::new("bpftool").args([
                "prog",
                "dump",
                "xlated",
                "id",
                &id.to_string(),
            ]))?;
            Ok(Program {
                name: p["name"].as_str().unwrap_or("?").to_owned(),
                id,
                xlated: count_xlated(&dump),
                bytes_jited: p["bytes_jited"].as_u64(),
                run_time_ns: p["run_time_ns"].as_u64(),
                run_cnt: p["run_cnt"].as_u64(),
            })
        })
        .collect()
}

/// The ids of the programs `pid` holds a descriptor of (its program and link fds' fdinfo
/// name them: `prog_id:`).
fn fd_prog_ids(pid: u32) -> HashSet<u64> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return HashSet::new();
    };
    dir.flatten()
        .filter_map(|entry| fs::read_to_string(entry.path()).ok())
        .flat_map(|info| {
            info.lines()
                .filter_map(|l| l.strip_prefix("prog_id:")?.trim().parse().ok())
                .collect::<Vec<u64>>()
        })
        .collect()
}

/// sigtrace's programs among `listed` (bpftool prog show --json): those bpftool says `pid`
/// holds, when it lists holders at all; else those whose ids `pid`'s descriptors name
/// (`fd_ids`); else sigtrace's program names loaded at or after `since` (Unix seconds),
/// each of which must then be there once.
fn pick<'a>(
    listed: &'a [Value],
    pid: u32,
    fd_ids: &HashSet<u64>,
    since: u64,
) -> anyhow::Result<Vec<&'a Value>> {
    if listed.iter().any(|p| p.get("pids").is_some()) {
        let held: Vec<&Value> = listed
            .iter()
            .filter(|p| {
                p["pids"]
                    .as_array()
                    .is_some_and(|pids| pids.iter().any(|h| h["pid"].as_u64() == Some(pid.into())))
            })
            .collect();
        if !held.is_empty() {
            return Ok(held);
        }
    }
    if !fd_ids.is_empty() {
        let held: Vec<&Value> = listed
            .iter()
            .filter(|p| p["id"].as_u64().is_some_and(|id| fd_ids.contains(&id)))
            .collect();
        if !held.is_empty() {
            return Ok(held);
        }
    }
    let named: Vec<&Value> = listed
        .iter()
        .filter(|p| {
            SIGTRACE_PROGRAMS
                .iter()
                .any(|name| p["name"] == name[..name.len().min(KERNEL_NAME_LEN)])
                && p["loaded_at"].as_u64().is_some_and(|at| at >= since)
        })
        .collect();
    if named.is_empty() {
        bail!("bpftool lists no program of sigtrace (pid {pid})");
    }
    for name in REPORTED {
        if named.iter().filter(|p| p["name"] == name).count() > 1 {
            bail!(
                "bpftool lists several {name} programs loaded since sigtrace (pid {pid}) started, and does not say which is its"
            );
        }
    }
    Ok(named)
}

/// Counts the instructions and calls of `bpftool prog dump xlated` text: instruction lines
/// are "  11: (85) call bpf_get_current_pid_tgid#278592"; source lines (";") and function
/// headers are skipped.
pub fn count_xlated(text: &str) -> Xlated {
    let mut counts = Xlated::default();
    for line in text.lines() {
        let Some((index, rest)) = line.trim_start().split_once(": (") else {
            continue;
        };
        if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Some((opcode, insn)) = rest.split_once(") ") else {
            continue;
        };
        counts.insns += if opcode == "18" { 2 } else { 1 };
        let Some(target) = insn.strip_prefix("call ") else {
            continue;
        };
        if target.starts_with("pc") {
            counts.subprog_calls += 1;
        } else {
            counts.helper_calls += 1;
            let helper = target.split('#').next().unwrap_or(target);
            if helper.starts_with("bpf_probe_read") {
                counts.probe_reads += 1;
            }
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use serde_json::json;

    use super::{Xlated, count_xlated, pick};

    /// Cut from `bpftool prog dump xlated` of sigtrace's raw signal_deliver (kernel 6.18,
    /// bpftool 7.1), with a subprogram.
    const SAMPLE: &str = "\
i32 signal_deliver(enum c_void * ctx):
; T::from_register(unsafe { *ptr as u64 })
   0: (79) r2 = *(u64 *)(r1 +16)
; intrinsics::volatile_load(src)
   1: (18) r7 = map[id:67277][0]+0
   3: (61) r9 = *(u32 *)(r7 +0)
; if flags & flag::FAILED_ONLY != 0 {
   4: (55) if r1 != 0x0 goto pc+26
; fun()
   5: (85) call bpf_get_current_pid_tgid#278592
   6: (bf) r1 = r10
   7: (85) call bpf_probe_read_kernel#-71216
   8: (85) call bpf_probe_read_kernel_str#-71312
   9: (85) call pc+2#bpf_prog_4f9302ba65b90ccd_memset
  10: (85) call bpf_ringbuf_submit#395792
; }
  11: (95) exit
void memset(u8 * s, i32 c, usize n):
; if self.start < self.end {
  12: (15) if r3 == 0x0 goto pc+6
  13: (95) exit
";

    #[test]
    fn counts_xlated_instructions_and_calls() {
        assert_eq!(
            count_xlated(SAMPLE),
            Xlated {
                insns: 14,
                helper_calls: 4,
                probe_reads: 2,
                subprog_calls: 1,
            }
        );
        assert_eq!(count_xlated(""), Xlated::default());
        // A source line that looks like an instruction is not one.
        assert_eq!(count_xlated("; 5: (85) call foo").insns, 0);
    }

    #[test]
    fn picks_sigtraces_programs() {
        let listed = vec![
            json!({"id": 1, "name": "signal_generate", "loaded_at": 100}),
            json!({"id": 2, "name": "signal_deliver", "loaded_at": 100}),
            json!({"id": 3, "name": "signal_generate", "loaded_at": 200}),
            json!({"id": 4, "name": "signal_deliver", "loaded_at": 200}),
            json!({"id": 5, "name": "sched_process_e", "loaded_at": 200}),
            json!({"id": 6, "name": "other", "loaded_at": 300}),
        ];
        let ids = |picked: Vec<&serde_json::Value>| -> Vec<u64> {
            picked.iter().map(|p| p["id"].as_u64().unwrap()).collect()
        };
        // By the descriptors' ids first.
        let fds: HashSet<u64> = [1, 2].into();
        assert_eq!(ids(pick(&listed, 7, &fds, 150).unwrap()), [1, 2]);
        // Else by name, loaded since sigtrace started (the name cut at 15 bytes).
        assert_eq!(
            ids(pick(&listed, 7, &HashSet::new(), 150).unwrap()),
            [3, 4, 5]
        );
        // Two candidates for one name: no guess.
        assert!(pick(&listed, 7, &HashSet::new(), 50).is_err());
        assert!(pick(&listed, 7, &HashSet::new(), 400).is_err());
        // bpftool's pids win where it lists them.
        let mut with_pids = listed.clone();
        with_pids[0]["pids"] = json!([{"pid": 7, "comm": "sigtrace"}]);
        with_pids[2]["pids"] = json!([{"pid": 8, "comm": "sigtrace"}]);
        assert_eq!(ids(pick(&with_pids, 7, &fds, 0).unwrap()), [1]);
    }
}
