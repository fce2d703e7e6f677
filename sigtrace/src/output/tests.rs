//! The sinks without root or BPF: reports built in memory (through the correlator, as the
//! tracer builds them), rendered as text and as JSON, and every JSON line validated against
//! docs/sigtrace.schema.json — the schema the docs publish, read from the repository.
//!
//! `show`, `diff` and `mask` validate their JSON with [`schema_valid_lines`] in their own
//! tests (knowledge/).

use std::sync::LazyLock;

use jsonschema::Validator;
use serde_json::{Value, json};
use sigtrace_common::{
    DeliverEvent, ExitEvent, ForkEvent, GenerateEvent, Header, SigactionEvent, TaskIds, abi, kind,
    result, sender, si, via,
};

use super::*;
use crate::{
    cgroup::CgroupInfo,
    correlate::{Correlator, Report},
    enrich::{Clock, Orphan},
    events::Event,
    signals::num,
};

const SCHEMA_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/sigtrace.schema.json");

static SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    let text = std::fs::read_to_string(SCHEMA_PATH)
        .unwrap_or_else(|e| panic!("reading {SCHEMA_PATH}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{SCHEMA_PATH} is not JSON: {e}"))
});

static VALIDATOR: LazyLock<Validator> = LazyLock::new(|| {
    jsonschema::draft202012::new(&SCHEMA)
        .unwrap_or_else(|e| panic!("{SCHEMA_PATH} does not compile: {e}"))
});

/// Why `record` does not match the definition of its own `type` (more telling than the
/// top-level oneOf, which only says that no type matched).
fn errors_for_its_type(record: &Value) -> Vec<String> {
    let kind = record["type"].as_str().unwrap_or("(no type)");
    if SCHEMA["$defs"].get(kind).is_none() {
        return vec![format!("no record type {kind:?} in the schema")];
    }
    let single = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": format!("#/$defs/{kind}"),
        "$defs": SCHEMA["$defs"].clone(),
    });
    let validator = jsonschema::draft202012::new(&single).expect("a sub-schema compiles");
    validator
        .iter_errors(record)
        .map(|e| format!("at {:?}: {e}", e.instance_path.as_str()))
        .collect()
}

/// Each line of `output` as JSON, each one checked against the schema: panics naming the
/// line and what is wrong with it.
pub(crate) fn schema_valid_lines(output: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(output).expect("JSON output is UTF-8");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "output does not end its last line: {text:?}"
    );
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let record: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("line {}: not JSON ({e}): {line}", i + 1));
            if !VALIDATOR.is_valid(&record) {
                panic!(
                    "line {} does not match {SCHEMA_PATH}:\n  {}\n{line}",
                    i + 1,
                    errors_for_its_type(&record).join("\n  ")
                );
            }
            record
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Events, as the kernel side would send them

/// Monotonic time at which the tracer started: the events below are 1.5 s later and on.
pub(super) const START_NS: u64 = 1_000_000_000_000;
/// The wall clock at monotonic zero, chosen so that the tracer started at
/// 2026-11-28T17:00:00Z.
pub(super) const WALL_AT_ZERO_NS: i128 = 1_795_885_200_000_000_000 - START_NS as i128;
pub(super) const HANDLER: u64 = 0x5581_fa6f_8dc0;
const SA_RESTORER: u64 = 0x0400_0000;

pub(crate) fn at(ms: u64) -> u64 {
    START_NS + 1_500_000_000 + ms * 1_000_000
}

fn comm_field(name: &[u8]) -> [u8; sigtrace_common::COMM_LEN] {
    let mut field = [0; sigtrace_common::COMM_LEN];
    field[..name.len()].copy_from_slice(name);
    field
}

pub(crate) fn task(pid: u32, comm: &[u8]) -> TaskIds {
    TaskIds {
        tgid: pid,
        tid: pid,
        uid: 1000,
        comm: comm_field(comm),
        ..TaskIds::default()
    }
}

fn bit(sig: i32) -> u64 {
    1 << (sig - 1)
}

/// `sender` calls kill(`pid_arg`, `sig`); the signal is generated for `target`, which has
/// `handler` installed for it and is in process group `pgid` of session 100.
pub(super) fn kill(
    ms: u64,
    sender: TaskIds,
    target: TaskIds,
    sig: i32,
    pid_arg: i64,
    handler: u64,
    pgid: u32,
) -> GenerateEvent {
    let mut e = GenerateEvent {
        header: Header::new(kind::GENERATE, at(ms)),
        sender,
        target,
        sig,
        code: si::USER,
        group: 1,
        result: if handler == 1 {
            result::IGNORED
        } else {
            result::DELIVERED
        },
        via: via::KILL,
        via_arg: pid_arg,
        si_pid: sender.tgid,
        si_uid: sender.uid,
        ..GenerateEvent::default()
    };
    let r = &mut e.recipient;
    r.pgid = pgid;
    r.sid = 100;
    r.parent_tgid = 100;
    r.handler = handler;
    r.sa_flags = SA_RESTORER;
    if handler == 1 {
        r.ignored = bit(sig);
    } else if handler > 1 {
        r.caught = bit(sig);
        r.pending = bit(sig);
    } else {
        r.pending = bit(sig) | bit(num::SIGKILL);
    }
    e
}

pub(crate) fn deliver(
    ms: u64,
    to: TaskIds,
    sig: i32,
    handler: u64,
    group_exit_code: i32,
) -> DeliverEvent {
    DeliverEvent {
        header: Header::new(kind::DELIVER, at(ms)),
        task: to,
        sig,
        handler,
        sa_flags: SA_RESTORER,
        group_exit_code,
        ..DeliverEvent::default()
    }
}

pub(crate) fn exit(ms: u64, who: TaskIds, wait_status: i32, children: &[u32]) -> ExitEvent {
    let mut e = ExitEvent {
        header: Header::new(kind::EXIT, at(ms)),
        task: who,
        exit_code: wait_status,
        parent_tgid: 100,
        children_count: children.len() as u32,
        ..ExitEvent::default()
    };
    e.children[..children.len()].copy_from_slice(children);
    e
}

pub(super) fn sigaction(
    ms: u64,
    who: TaskIds,
    sig: i32,
    old: u64,
    new: u64,
    ret: i32,
) -> SigactionEvent {
    SigactionEvent {
        header: Header::new(kind::SIGACTION, at(ms)),
        task: who,
        sig,
        ret,
        old_handler: old,
        old_flags: 0,
        new_handler: new,
        new_flags: SA_RESTORER,
        new_mask: bit(num::SIGINT),
    }
}

/// A run with every kind of report: a handled SIGUSR1, an ignored SIGUSR2, a kill(-10)
/// fan-out whose members ignore, handle and die of SIGTERM (one leaving a child behind), a
/// ^C from a tty to a containerised group, a fork and two sigaction calls (one refused).
pub(crate) fn scenario() -> Vec<Report> {
    let sh = task(1044, b"sh");
    let bash = task(10, b"bash");
    let perl = task(11, b"perl");
    let sleep = task(12, b"sleep");
    let kworker = task(77, b"kworker/u8:3");
    let mut events = vec![
        Event::Sigaction(sigaction(0, sh, num::SIGUSR1, 0, HANDLER, 0)),
        Event::Fork(ForkEvent {
            header: Header::new(kind::FORK, at(1)),
            parent: sh,
            child_tgid: 1045,
            child_tid: 1045,
        }),
        Event::Generate(kill(2, sh, sh, num::SIGUSR1, 1044, HANDLER, 1043)),
        Event::Deliver(deliver(3, sh, num::SIGUSR1, HANDLER, 0)),
        Event::Generate(kill(4, sh, sh, num::SIGUSR2, 1044, 1, 1043)),
        // Refused (SIGKILL's action cannot change): the action read after the call is the old.
        Event::Sigaction(sigaction(5, sh, num::SIGKILL, 0, 0, -22)),
    ];
    for (i, (member, handler)) in [(bash, 1), (perl, HANDLER), (sleep, 0)]
        .into_iter()
        .enumerate()
    {
        let e = kill(10 + i as u64, sh, member, num::SIGTERM, -10, handler, 10);
        events.push(Event::Generate(e));
    }
    // perl was blocked in read(2), and its handler has no SA_RESTART: the read fails.
    let mut in_read = deliver(20, perl, num::SIGTERM, HANDLER, 0);
    (in_read.syscall_nr, in_read.syscall_ret, in_read.abi) = (0, -512, abi::X86_64);
    events.extend([
        Event::Deliver(in_read),
        // SIGTERM's default action: the kernel delivers SIGKILL, the group exit code says why.
        Event::Deliver(deliver(21, sleep, num::SIGKILL, 0, num::SIGTERM)),
        Event::Exit(exit(22, sleep, num::SIGTERM, &[])),
        Event::Exit(exit(23, perl, 3 << 8, &[13])),
    ]);
    // ^C on pts/3 to the foreground group 200, inside a pid namespace.
    let mut ctrl_c = GenerateEvent {
        header: Header::new(kind::GENERATE, at(30)),
        sender: kworker,
        target: task(200, b"python3"),
        sig: num::SIGINT,
        code: si::KERNEL,
        group: 1,
        info_kind: 1,
        ..GenerateEvent::default()
    };
    let r = &mut ctrl_c.recipient;
    (r.pgid, r.sid, r.parent_tgid) = (200, 200, 199);
    (r.ns_level, r.ns_tgid, r.ns_pgid, r.ns_sid) = (1, 1, 1, 1);
    r.tty[..4].copy_from_slice(b"pts3");
    r.tty_fg_pgid = 200;
    r.handler = HANDLER;
    r.sa_flags = SA_RESTORER | 0x1000_0000;
    // The mask of a real shell (SIGINT among them): hex digits above 9 too.
    r.caught = 0x4b81_3efb;
    r.blocked = bit(num::SIGINT);
    ctrl_c.sender_flags = sender::KTHREAD;
    events.push(Event::Generate(ctrl_c));
    // sh's alarm fires while qemu runs on that CPU, and interrupts sh's nanosleep.
    let mut alarm = GenerateEvent {
        header: Header::new(kind::GENERATE, at(40)),
        sender: task(4242, b"qemu-system-x86"),
        target: sh,
        sig: num::SIGALRM,
        code: si::KERNEL,
        group: 1,
        info_kind: 1,
        sender_flags: sender::INTERRUPT | sender::TIMER,
        target_cgroup: 7,
        ..GenerateEvent::default()
    };
    (alarm.recipient.pgid, alarm.recipient.sid) = (1043, 100);
    alarm.recipient.handler = HANDLER;
    alarm.recipient.caught = bit(num::SIGALRM);
    events.push(Event::Generate(alarm));
    let mut woken = deliver(41, sh, num::SIGALRM, HANDLER, 0);
    (woken.syscall_nr, woken.syscall_ret, woken.abi) = (35, -516, abi::X86_64);
    woken.cgroup = 7;
    events.push(Event::Deliver(woken));

    let mut correlator = Correlator::new();
    let mut reports = Vec::new();
    for event in events {
        correlator.push(event, &mut reports);
    }
    correlator.flush(&mut reports);
    // What enrichment adds from /proc.
    for report in &mut reports {
        match report {
            Report::Exit(x) if x.event.task.tgid == 11 => {
                x.orphans = vec![Orphan {
                    pid: 13,
                    comm: "worker".into(),
                    new_parent: Some(1),
                }];
            }
            Report::Fanout(f) => {
                if let crate::correlate::FanoutSource::Tty { writers, .. } = &mut f.source {
                    writers.push((300, "tmux: server".into()));
                }
            }
            Report::Generate(g) => {
                if let Some(cgroup) = &mut g.target_cgroup {
                    let path = format!("/system.slice/docker-{}.scope", "4e1f".repeat(16));
                    cgroup.resolved =
                        Some(std::sync::Arc::new(CgroupInfo::new(cgroup.id, path.into())));
                }
            }
            _ => {}
        }
    }
    reports
}

fn options(format: Format, time: TimeMode) -> OutputOptions {
    OutputOptions {
        format,
        time,
        summary: true,
        summary_only: false,
        quiet: false,
        all_exits: false,
        fold: true,
        masks: false,
    }
}

/// Everything `Output` writes for `reports` and the summary; with `loss_after`, a loss
/// notice after that many reports.
fn render(reports: &[Report], options: OutputOptions, loss_after: Option<usize>) -> Vec<u8> {
    let mut written = Vec::new();
    let mut output = Output::new(
        &mut written,
        options,
        Clock::fixed(WALL_AT_ZERO_NS, START_NS),
        false,
    );
    output.stamp.utc_offset_s = 0;
    for (i, report) in reports.iter().enumerate() {
        output.report(report).expect("writing to memory");
        if loss_after == Some(i + 1) {
            output.loss(5, 5).expect("writing to memory");
        }
    }
    output
        .finish(Totals {
            events: 42,
            lost: 0,
        })
        .expect("writing to memory");
    drop(output);
    written
}

fn records(options: OutputOptions) -> Vec<Value> {
    schema_valid_lines(&render(&scenario(), options, Some(14)))
}

fn of_type<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["type"] == kind).collect()
}

fn text(options: OutputOptions) -> String {
    String::from_utf8(render(&scenario(), options, Some(14))).expect("text output is UTF-8")
}

#[test]
fn every_json_line_matches_the_schema_in_every_time_mode() {
    for (mode, first_time) in [
        (TimeMode::Wall, json!("2026-11-28T17:00:01.500000Z")),
        (TimeMode::Relative, json!("1.500000")),
        (TimeMode::None, Value::Null),
    ] {
        let records = records(options(Format::Json, mode));
        let kinds: Vec<&str> = records.iter().filter_map(|r| r["type"].as_str()).collect();
        assert_eq!(
            kinds,
            [
                "sigaction",
                "fork",
                "generate",
                "deliver",
                "generate",
                "sigaction",
                "generate",
                "generate",
                "generate",
                "deliver",
                "deliver",
                "exit",
                "exit",
                "generate",
                "loss",
                "generate",
                "deliver",
                "fanout",
                "fanout",
                "summary"
            ],
            "{mode:?}"
        );
        assert_eq!(records[0]["time"], first_time, "{mode:?}");
        for record in &records {
            assert_eq!(record["v"], 3, "{record}");
        }
    }
}

/// The hot records are written by hand: the whole of one of each, field by field.
#[test]
fn generate_and_deliver_records_carry_the_whole_event() {
    let records = records(options(Format::Json, TimeMode::Wall));
    let disposition = json!({
        "action": "caught", "handler": "0x5581fa6f8dc0", "default_action": "Term", "flags": 67108864
    });
    let sh = json!({"pid": 1044, "tid": 1044, "comm": "sh", "uid": 1000});
    assert_eq!(
        *of_type(&records, "generate")[0],
        json!({
            "v": 3, "type": "generate", "id": 1,
            "time": "2026-11-28T17:00:01.502000Z", "mono_ns": 1_001_502_000_000u64,
            "signal": {"number": 10, "name": "SIGUSR1"},
            "code": {"number": 0, "name": "SI_USER"},
            "errno": 0,
            "result": {"number": 0, "name": "delivered"},
            "shared": true, "origin": "user", "via": "kill", "via_arg": 1044,
            "si_pid": 1044, "si_uid": 1000,
            "sender": sh, "sender_context": "task", "kernel_source": null,
            "interrupted": null, "sender_cgroup": null, "sender_stack": null,
            "target": {
                "pid": 1044, "tid": 1044, "comm": "sh", "uid": 1000, "ppid": 100,
                "pgid": 1043, "sid": 100, "ns": null, "tty": null, "tty_fg_pgid": null,
                "cgroup": null
            },
            "disposition": disposition,
            "masks": {
                "blocked": "0x0000000000000000", "caught": "0x0000000000000200",
                "ignored": "0x0000000000000000", "pending": "0x0000000000000200"
            },
            "outcome": "pending", "fanout": null, "consumed": []
        })
    );
    assert_eq!(
        *of_type(&records, "deliver")[0],
        json!({
            "v": 3, "type": "deliver",
            "time": "2026-11-28T17:00:01.503000Z", "mono_ns": 1_001_503_000_000u64,
            "signal": {"number": 10, "name": "SIGUSR1"},
            "code": {"number": 0, "name": "SI_USER"},
            "errno": 0,
            "task": sh,
            "disposition": disposition,
            "blocked": "0x0000000000000000",
            "outcome": "handled", "cause": null,
            "generation": 1, "latency_ns": 1_000_000, "fanout": null,
            "syscall": null, "cgroup": null
        })
    );
    // The alarm: raised by an interrupt, so no sender; the task it stopped as a detail.
    let alarm = of_type(&records, "generate")[6];
    assert_eq!(
        [
            &alarm["sender"],
            &alarm["sender_context"],
            &alarm["kernel_source"],
            &alarm["interrupted"]["comm"],
            &alarm["sender_cgroup"],
        ],
        [
            &Value::Null,
            &json!("interrupt"),
            &json!("timer"),
            &json!("qemu-system-x86"),
            &Value::Null
        ]
    );
    assert_eq!(
        alarm["target"]["cgroup"],
        json!({
            "id": 7,
            "path": format!("/system.slice/docker-{}.scope", "4e1f".repeat(16)),
            "unit": format!("docker-{}.scope", "4e1f".repeat(16)),
            "container": {"runtime": "docker", "id": "4e1f".repeat(16), "pod_uid": null}
        })
    );
    let woken = of_type(&records, "deliver")[3];
    assert_eq!(
        (&woken["syscall"], &woken["cgroup"]),
        (
            &json!({
                "number": 35, "name": "nanosleep", "abi": "x86_64",
                "code": "ERESTART_RESTARTBLOCK", "result": "EINTR"
            }),
            &json!({"id": 7, "path": null, "unit": null, "container": null})
        )
    );
    let ctrl_c = of_type(&records, "generate")[5];
    assert_eq!(ctrl_c["sender_context"], "kernel_thread");
    assert_eq!(ctrl_c["kernel_source"], "tty");
    assert_eq!(ctrl_c["sender"]["comm"], "kworker/u8:3");
    // The tty ^C: kernel origin, no sender in the siginfo, a namespace and a terminal.
    let ctrl_c = of_type(&records, "generate")[5];
    assert_eq!(ctrl_c["origin"], "kernel");
    assert_eq!(ctrl_c["code"], json!({"number": 128, "name": "SI_KERNEL"}));
    assert_eq!(
        [
            &ctrl_c["via"],
            &ctrl_c["via_arg"],
            &ctrl_c["si_pid"],
            &ctrl_c["si_uid"]
        ],
        [&Value::Null; 4]
    );
    assert_eq!(
        ctrl_c["target"]["ns"],
        json!({"level": 1, "pid": 1, "pgid": 1, "sid": 1})
    );
    assert_eq!(ctrl_c["target"]["tty"], "pts/3");
    assert_eq!(ctrl_c["target"]["tty_fg_pgid"], 200);
    assert_eq!(
        ctrl_c["masks"],
        json!({
            "blocked": "0x0000000000000002", "caught": "0x000000004b813efb",
            "ignored": "0x0000000000000000", "pending": "0x0000000000000000"
        })
    );
    assert_eq!(ctrl_c["outcome"], "blocked");
    assert_eq!(ctrl_c["fanout"], 6);
    // The fatal SIGTERM: delivered as SIGKILL, with its cause.
    let killed = of_type(&records, "deliver")[2];
    assert_eq!(killed["signal"]["name"], "SIGKILL");
    assert_eq!(killed["cause"], json!({"number": 15, "name": "SIGTERM"}));
    assert_eq!(killed["outcome"], "terminated");
}

/// One disposition object, one vocabulary (caught, ignored, default), whichever writer
/// produced the record: the hand-written generate/deliver and the serde-written rest agree.
#[test]
fn dispositions_are_one_object_in_every_record() {
    let records = records(options(Format::Json, TimeMode::None));
    let mut dispositions = Vec::new();
    for record in &records {
        match record["type"].as_str() {
            Some("generate" | "deliver") => dispositions.push(&record["disposition"]),
            Some("sigaction") => dispositions.extend([&record["old"], &record["new"]]),
            Some("fanout") => dispositions.extend(
                record["members"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|m| &m["disposition"]),
            ),
            _ => {}
        }
    }
    assert_eq!(dispositions.len(), 19);
    let mut actions: Vec<&str> = dispositions
        .iter()
        .filter_map(|d| d["action"].as_str())
        .collect();
    actions.sort_unstable();
    actions.dedup();
    assert_eq!(actions, ["caught", "default", "ignored"]);
    for d in &dispositions {
        let expected = if d["action"] == "caught" {
            json!("0x5581fa6f8dc0")
        } else {
            Value::Null
        };
        assert_eq!(d["handler"], expected, "{d}");
    }
    // Same handler and flags: the sigaction record (serde) and the generate (by hand).
    let installed = &of_type(&records, "sigaction")[0]["new"];
    assert_eq!(*installed, of_type(&records, "generate")[0]["disposition"]);
    // Same task: the fork record's parent (serde) and the generate's sender (by hand).
    assert_eq!(
        of_type(&records, "fork")[0]["parent"],
        of_type(&records, "generate")[0]["sender"]
    );
    let refused = of_type(&records, "sigaction")[1];
    assert_eq!(refused["ret"], -22);
    assert_eq!(refused["new"]["action"], "default");
}

#[test]
fn fanout_records_follow_every_member() {
    let records = records(options(Format::Json, TimeMode::None));
    let fanouts = of_type(&records, "fanout");
    assert_eq!(fanouts.len(), 2);
    let kill = fanouts[0];
    assert_eq!(kill["id"], 3);
    assert_eq!(kill["pgid"], 10);
    assert_eq!(
        kill["source"],
        json!({"kind": "kill", "pid": 1044, "tid": 1044, "comm": "sh", "pid_arg": -10, "tty": null, "writers": null})
    );
    let members = kill["members"].as_array().expect("members");
    let summary: Vec<(&Value, &Value, &Value, &Value)> = members
        .iter()
        .map(|m| {
            (
                &m["comm"],
                &m["disposition"]["action"],
                &m["outcome"],
                &m["exit"]["status"]["kind"],
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                &json!("bash"),
                &json!("ignored"),
                &json!("ignored"),
                &Value::Null
            ),
            (
                &json!("perl"),
                &json!("caught"),
                &json!("handled"),
                &json!("exited")
            ),
            (
                &json!("sleep"),
                &json!("default"),
                &json!("terminated"),
                &json!("killed")
            ),
        ]
    );
    assert_eq!(members[1]["exit"]["after_ns"], 13_000_000);
    let tty = fanouts[1];
    assert_eq!(tty["source"]["kind"], "tty");
    assert_eq!(tty["source"]["tty"], "pts/3");
    assert_eq!(
        tty["source"]["writers"],
        json!([{"pid": 300, "comm": "tmux: server"}])
    );
    // Every member's generation names its fan-out.
    for member in members {
        let generation = of_type(&records, "generate")
            .into_iter()
            .find(|g| g["id"] == member["generation"])
            .expect("the member's generate record");
        assert_eq!(generation["fanout"], kill["id"]);
    }
}

#[test]
fn exit_records_tell_how_and_what_was_left() {
    let records = records(options(Format::Json, TimeMode::None));
    let exits = of_type(&records, "exit");
    assert_eq!(exits.len(), 2, "the unsignalled are not shown");
    assert_eq!(
        exits[0]["status"],
        json!({"kind": "killed", "code": null, "signal": {"number": 15, "name": "SIGTERM"}, "core": false})
    );
    assert_eq!(exits[0]["wait_status"], 15);
    assert_eq!(
        exits[1]["status"],
        json!({"kind": "exited", "code": 3, "signal": null, "core": false})
    );
    assert_eq!(exits[1]["children_count"], 1);
    assert_eq!(
        exits[1]["children"],
        json!([{"pid": 13, "comm": "worker", "new_parent": 1}])
    );
    assert_eq!(exits[1]["fanout"], 3);
}

#[test]
fn summary_counts_each_signal_by_its_final_outcome() {
    let records = records(options(Format::Json, TimeMode::None));
    let summary = records.last().expect("records");
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["signals"], 7);
    assert_eq!(summary["events"], 42);
    assert_eq!(summary["lost"], 0);
    let rows: Vec<String> = summary["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {} {}",
                r["sender"].as_str().unwrap_or("?"),
                r["target"].as_str().unwrap_or("?"),
                r["signal"]["name"].as_str().unwrap_or("?"),
                r["outcome"].as_str().unwrap_or("?"),
                r["count"]
            )
        })
        .collect();
    // perl's SIGTERM was pending at generation: its row moved to "handled" on delivery.
    assert_eq!(
        rows,
        [
            "kworker/u8:3 python3 SIGINT blocked 1",
            "sh bash SIGTERM ignored 1",
            "sh perl SIGTERM handled 1",
            "sh sh SIGUSR1 handled 1",
            "sh sh SIGUSR2 ignored 1",
            "sh sleep SIGTERM terminated 1",
            "kernel (timer) sh SIGALRM handled 1",
        ]
    );
}

#[test]
fn text_tells_the_story_line_by_line() {
    let text = text(options(Format::Text, TimeMode::Relative));
    let expected = "   1.500000   sigaction sh[1044] SIGUSR1: SIG_DFL (Term) → handler 0x5581fa6f8dc0 (flags 0x4000000)
   1.501000   fork sh[1044] → child 1045
   1.502000 SIGUSR1    sh[1044] → sh[1044]  SI_USER via kill  delivered  handler 0x5581fa6f8dc0  pgrp 1043 sid 100
   1.503000   ↳ SIGUSR1  sh[1044]  handler 0x5581fa6f8dc0 → handled (1 ms)
   1.504000 SIGUSR2    sh[1044] → sh[1044]  SI_USER via kill  ignored  SIG_IGN  pgrp 1043 sid 100
   1.505000   sigaction sh[1044] SIGKILL: failed (error 22), still SIG_DFL (Term)
   1.510000 SIGTERM    sh[1044] → bash[10]  SI_USER via kill(-10)  ignored  SIG_IGN  pgrp 10 sid 100  [fan-out #3]
   1.511000 SIGTERM    sh[1044] → perl[11]  SI_USER via kill(-10)  delivered  handler 0x5581fa6f8dc0  pgrp 10 sid 100  [fan-out #3]
   1.512000 SIGTERM    sh[1044] → sleep[12]  SI_USER via kill(-10)  delivered  SIG_DFL (Term)  pgrp 10 sid 100  [fan-out #3]
   1.520000   ↳ SIGTERM  perl[11]  handler 0x5581fa6f8dc0 → handled (9 ms)  ↯ EINTR read
   1.521000   ↳ SIGKILL  sleep[12] (dying of SIGTERM)  SIG_DFL (Term) → terminated (9 ms)
   1.522000   ✝ sleep[12] killed by SIGTERM
   1.523000   ✝ perl[11] exited 3; left 1 child(ren): 13 worker (now child of 1)
   1.530000 SIGINT     kworker/u8:3[77] → python3[200]  SI_KERNEL  delivered  handler 0x5581fa6f8dc0  blocked → pending  pgrp 200 sid 200 (ns pid 1 pgrp 1) tty pts/3  [fan-out #6]
!! 5 events lost (ring buffer full; 5 in all) — try a larger --ring-size or narrower filters
   1.540000 SIGALRM    kernel (timer) → sh[1044]  SI_KERNEL  delivered  handler 0x5581fa6f8dc0  pgrp 1043 sid 100  container docker 4e1f4e1f4e1f
   1.541000   ↳ SIGALRM  sh[1044]  handler 0x5581fa6f8dc0 → handled (1 ms)  ↯ EINTR nanosleep
   1.510000 SIGTERM    sh[1044] kill(-10) → pgrp 10 (3 members)  [fan-out #3]
    ├─ 10      bash   SIG_IGN                  → ignored
    ├─ 11      perl   handler 0x5581fa6f8dc0   → handled, exited 3 after 13 ms
    └─ 12      sleep  SIG_DFL (Term)           → terminated, killed by SIGTERM after 12 ms
   1.530000 SIGINT     pts/3 ^C (pty master held by tmux: server[300]) → pgrp 200 (1 member)  [fan-out #6]
    └─ 200     python3  handler 0x5581fa6f8dc0   → blocked

   COUNT  SENDER           TARGET           SIGNAL       OUTCOME
       1  kworker/u8:3     python3          SIGINT       blocked
       1  sh               bash             SIGTERM      ignored
       1  sh               perl             SIGTERM      handled
       1  sh               sh               SIGUSR1      handled
       1  sh               sh               SIGUSR2      ignored
       1  sh               sleep            SIGTERM      terminated
       1  kernel (timer)   sh               SIGALRM      handled
7 signals, 42 events, 0 lost
";
    assert_eq!(text, expected);
    // Without timestamps the lines start with the event itself.
    let bare = self::text(options(Format::Text, TimeMode::None));
    assert!(bare.starts_with("  sigaction sh[1044] SIGUSR1: "), "{bare}");
    assert!(
        bare.contains("\nSIGUSR1    sh[1044] → sh[1044]  SI_USER"),
        "{bare}"
    );
}

#[test]
fn summary_only_prints_the_summary_and_all_exits_shows_every_exit() {
    let quiet = OutputOptions {
        summary_only: true,
        quiet: false,
        ..options(Format::Json, TimeMode::None)
    };
    let records = records(quiet);
    let kinds: Vec<&str> = records.iter().filter_map(|r| r["type"].as_str()).collect();
    assert_eq!(kinds, ["loss", "summary"], "losses are news even then");

    // An exit no reported signal concerned: shown only with all_exits.
    let mut nobody = exit(50, task(4000, b"true"), 0, &[]);
    nobody.parent_tgid = 1;
    let mut reports = Vec::new();
    Correlator::new().push(Event::Exit(nobody), &mut reports);
    let shown = |all_exits| {
        let options = OutputOptions {
            all_exits,
            summary: false,
            ..options(Format::Json, TimeMode::None)
        };
        let lines = schema_valid_lines(&render(&reports, options, None));
        of_type(&lines, "exit").len()
    };
    assert_eq!((shown(false), shown(true)), (0, 1));
}

/// A comm is whatever bytes the process chose: quotes, backslashes, escape sequences,
/// invalid UTF-8. JSON stays one valid line; text shows them escaped, never raw.
#[test]
fn hostile_names_stay_valid_json_and_inert_text() {
    let name = b"a\"b\\c\n\x1b[31m\xff";
    let evil = task(66, name);
    let reports = {
        let mut reports = Vec::new();
        let mut correlator = Correlator::new();
        let e = kill(0, evil, evil, num::SIGUSR1, 66, HANDLER, 66);
        correlator.push(Event::Generate(e), &mut reports);
        correlator.push(
            Event::Deliver(deliver(1, evil, num::SIGUSR1, HANDLER, 0)),
            &mut reports,
        );
        reports
    };
    let json = render(&reports, options(Format::Json, TimeMode::None), None);
    let records = schema_valid_lines(&json);
    let decoded = String::from_utf8_lossy(name);
    assert_eq!(records[0]["sender"]["comm"], *decoded);
    assert_eq!(records[0]["target"]["comm"], *decoded);
    assert_eq!(records[1]["task"]["comm"], *decoded);
    assert_eq!(records[2]["rows"][0]["sender"], *decoded);
    let text = render(&reports, options(Format::Text, TimeMode::None), None);
    assert!(!text.contains(&0x1b), "a raw escape reached the terminal");
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "one line per event: {text}");
    assert!(lines[0].starts_with("SIGUSR1    "), "{text}");
    assert!(lines[1].starts_with("  ↳ SIGUSR1  "), "{text}");
    assert!(text.contains("\\x1b[31m"), "{text}");
}

/// --masks: each generation line ends with the recipient's sets by name (before a fan-out
/// tag); nothing else changes, and without the flag nothing does.
#[test]
fn masks_name_the_recipients_sets_on_generation_lines() {
    let plain = text(options(Format::Text, TimeMode::None));
    let masked = text(OutputOptions {
        masks: true,
        ..options(Format::Text, TimeMode::None)
    });
    assert!(!plain.contains("caught"), "{plain}");
    let (plain, masked): (Vec<&str>, Vec<&str>) =
        (plain.lines().collect(), masked.lines().collect());
    assert_eq!(plain.len(), masked.len());
    let changed: Vec<(&str, &str)> = plain
        .iter()
        .zip(&masked)
        .filter(|(p, m)| p != m)
        .map(|(p, m)| (*p, *m))
        .collect();
    // Every generation line and fan-out member, and only those.
    assert_eq!(changed.len(), 11, "{changed:#?}");
    assert!(
        masked.contains(&"    └─ 200     python3  handler 0x5581fa6f8dc0   → blocked  caught HUP,INT,ILL,TRAP,ABRT,BUS,FPE,USR1,SEGV,USR2,PIPE,ALRM,CHLD,XCPU,XFSZ,VTALRM,WINCH,SYS  ignored -  blocked INT"),
        "{masked:#?}"
    );
    for (p, m) in &changed {
        assert!(m.contains("  caught "), "{m}");
        let without = m
            .split_once("  caught ")
            .map(|(head, rest)| {
                let tail = rest.find("  [fan-out").map_or("", |at| &rest[at..]);
                format!("{head}{tail}")
            })
            .unwrap_or_default();
        assert_eq!(&without, p);
    }
    let sets = |pattern: &str| {
        masked
            .iter()
            .find(|line| line.contains(pattern))
            .and_then(|line| line.split_once("sid "))
            .map(|(_, rest)| rest.to_owned())
    };
    assert_eq!(
        sets("→ sh[1044]  SI_USER via kill  delivered").as_deref(),
        Some("100  caught USR1  ignored -  blocked -")
    );
    assert_eq!(
        sets("→ bash[10]").as_deref(),
        Some("100  caught -  ignored TERM  blocked -  [fan-out #3]")
    );
    assert_eq!(
        sets("SIGINT ").as_deref(),
        Some(
            "200 (ns pid 1 pgrp 1) tty pts/3  caught HUP,INT,ILL,TRAP,ABRT,BUS,FPE,USR1,SEGV,USR2,\
             PIPE,ALRM,CHLD,XCPU,XFSZ,VTALRM,WINCH,SYS  ignored -  blocked INT  [fan-out #6]"
        )
    );
}
