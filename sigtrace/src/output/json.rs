//! JSON lines, schema version 3 (docs/sigtrace.schema.json, described in docs/json.md).
//! Every record has `v` and `type`; signals, codes and results carry both name and number;
//! masks are hex strings as /proc prints them (decode with `sigtrace mask`).
//!
//! The pieces every command's JSON shares — [`NamedSignal`], [`DispositionJson`], [`Mask`],
//! [`SCHEMA_VERSION`] — are defined here once; `show`, `diff` and `mask` (knowledge/) build
//! their records from them.

use std::{borrow::Cow, io, io::Write as _, os::unix::ffi::OsStrExt};

use serde::Serialize;
use sigtrace_common::{TaskIds, carries_sender, via};

use super::{Stamp, TimeMode};
use crate::{
    correlate::{CgroupName, DeliverReport, ExitStatus, FanoutSource, GenerateReport, Report},
    enrich::tty_display,
    events::{comm, comm_str},
    signals::{
        Disposition, Signal, code_name,
        interrupted::interrupted,
        result_name,
        sender::{Context, kernel_kind},
    },
    stacks::{SenderStack, Side},
};

pub(crate) const SCHEMA_VERSION: u32 = 3;

#[derive(Serialize)]
struct Named {
    number: i64,
    name: Cow<'static, str>,
}

/// A signal as `{"number": 15, "name": "SIGTERM"}`, for other records (the summary).
#[derive(Serialize)]
pub(crate) struct NamedSignal(Named);

impl NamedSignal {
    pub(crate) fn new(sig: i32) -> Self {
        NamedSignal(signal(sig))
    }
}

fn signal(sig: i32) -> Named {
    Named {
        number: sig as i64,
        name: Signal(sig).name(),
    }
}

#[derive(Serialize)]
struct Task<'a> {
    pid: u32,
    tid: u32,
    comm: Cow<'a, str>,
    uid: u32,
}

fn task(t: &TaskIds) -> Task<'_> {
    Task {
        pid: t.tgid,
        tid: t.tid,
        comm: comm(&t.comm),
        uid: t.uid,
    }
}

/// A disposition, the same object in trace records and in `show`/`diff`:
/// `{"action": "caught", "handler": "0x…", "default_action": "Term", "flags": 67108864}`.
#[derive(Serialize)]
pub(crate) struct DispositionJson {
    /// "caught", "ignored" or "default".
    action: &'static str,
    /// The handler's address, when caught and known (the tracer knows it, /proc does not).
    handler: Option<Hex>,
    default_action: &'static str,
    /// sa_flags, when known (the tracer knows them, /proc does not).
    flags: Option<u64>,
}

impl DispositionJson {
    pub(crate) fn new(signal: Signal, disposition: Disposition, flags: Option<u64>) -> Self {
        DispositionJson {
            action: disposition.as_str(),
            handler: disposition.handler().map(Hex),
            default_action: signal.default_action().as_str(),
            flags,
        }
    }
}

/// A traced disposition: the kernel's sa_handler and sa_flags.
fn disposition(sig: i32, handler: u64, flags: u64) -> DispositionJson {
    DispositionJson::new(
        Signal(sig),
        Disposition::from_sa_handler(handler),
        Some(flags),
    )
}

fn mask(bits: u64) -> Mask {
    Mask(bits)
}

/// `time`: RFC 3339 (UTC), seconds since start ("1.234567"), or null. Written straight
/// into the output, without an intermediate String.
enum TimeField {
    Wall(std::time::SystemTime),
    Relative(u64),
    None,
}

impl std::fmt::Display for TimeField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TimeField::Wall(t) => write!(f, "{}", humantime::format_rfc3339_micros(*t)),
            TimeField::Relative(ns) => {
                write!(f, "{}.{:06}", ns / 1_000_000_000, ns % 1_000_000_000 / 1000)
            }
            TimeField::None => Ok(()),
        }
    }
}

impl Serialize for TimeField {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TimeField::None => s.serialize_none(),
            time => s.collect_str(time),
        }
    }
}

fn time(ts: u64, stamp: &Stamp) -> TimeField {
    match stamp.mode {
        TimeMode::None => TimeField::None,
        TimeMode::Relative => TimeField::Relative(ts.saturating_sub(stamp.clock.start_mono_ns)),
        TimeMode::Wall => TimeField::Wall(stamp.clock.wall(ts)),
    }
}

/// A signal mask as /proc prints it, "0x" and 16 hex digits.
pub struct Mask(pub u64);

impl Serialize for Mask {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:#018x}", self.0))
    }
}

/// A handler address, "0x…".
struct Hex(u64);

impl std::fmt::Display for Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl Serialize for Hex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Serialize)]
struct Status {
    /// "exited" or "killed".
    kind: &'static str,
    code: Option<i32>,
    signal: Option<Named>,
    core: bool,
}

fn status(s: ExitStatus) -> Status {
    match s {
        ExitStatus::Exited(code) => Status {
            kind: "exited",
            code: Some(code),
            signal: None,
            core: false,
        },
        ExitStatus::Killed { signal: sig, core } => Status {
            kind: "killed",
            code: None,
            signal: Some(signal(sig)),
            core,
        },
    }
}

#[derive(Serialize)]
struct Child {
    pid: u32,
    comm: Option<String>,
    new_parent: Option<u32>,
}

#[derive(Serialize)]
struct Exit<'a> {
    v: u32,
    r#type: &'static str,
    time: TimeField,
    mono_ns: u64,
    task: Task<'a>,
    ppid: u32,
    status: Status,
    wait_status: i32,
    pending: Vec<u64>,
    children_count: u32,
    children: Vec<Child>,
    fanout: Option<u64>,
}

#[derive(Serialize)]
struct Writer {
    pid: u32,
    comm: String,
}

#[derive(Serialize)]
struct Source {
    /// "kill" or "tty".
    kind: &'static str,
    pid: Option<u32>,
    tid: Option<u32>,
    comm: Option<String>,
    pid_arg: Option<i64>,
    tty: Option<String>,
    writers: Option<Vec<Writer>>,
}

#[derive(Serialize)]
struct MemberExit {
    status: Status,
    after_ns: u64,
}

#[derive(Serialize)]
struct Member {
    pid: u32,
    tid: u32,
    comm: String,
    disposition: DispositionJson,
    generation: u64,
    outcome: &'static str,
    exit: Option<MemberExit>,
}

#[derive(Serialize)]
struct Fanout {
    v: u32,
    r#type: &'static str,
    id: u64,
    time: TimeField,
    mono_ns: u64,
    signal: Named,
    pgid: u32,
    source: Source,
    members: Vec<Member>,
}

#[derive(Serialize)]
struct Handler<'a> {
    v: u32,
    r#type: &'static str,
    time: TimeField,
    mono_ns: u64,
    task: Task<'a>,
    signal: NamedSignal,
    generation: Option<u64>,
    delivered_mono_ns: u64,
    end: &'static str,
    duration_ns: Option<u64>,
}

#[derive(Serialize)]
struct Fork<'a> {
    v: u32,
    r#type: &'static str,
    time: TimeField,
    mono_ns: u64,
    parent: Task<'a>,
    child_pid: u32,
    child_tid: u32,
}

#[derive(Serialize)]
struct Sigaction<'a> {
    v: u32,
    r#type: &'static str,
    time: TimeField,
    mono_ns: u64,
    task: Task<'a>,
    signal: Named,
    old: DispositionJson,
    new: DispositionJson,
    new_mask: Mask,
    ret: i32,
}

#[derive(Serialize)]
struct Loss {
    v: u32,
    r#type: &'static str,
    time: TimeField,
    mono_ns: u64,
    lost: u64,
    total_lost: u64,
}

fn line<T: Serialize>(w: &mut Vec<u8>, value: &T) -> io::Result<()> {
    serde_json::to_writer(&mut *w, value).map_err(io::Error::other)?;
    w.push(b'\n');
    Ok(())
}

pub fn write_report(w: &mut Vec<u8>, report: &Report, stamp: &Stamp) -> io::Result<()> {
    match report {
        Report::Generate(g) => {
            write_generate(w, g, stamp);
            Ok(())
        }
        Report::Deliver(d) => {
            write_deliver(w, d, stamp);
            Ok(())
        }
        Report::Exit(x) => line(
            w,
            &Exit {
                v: SCHEMA_VERSION,
                r#type: "exit",
                time: time(x.event.header.ts_ns, stamp),
                mono_ns: x.event.header.ts_ns,
                task: task(&x.event.task),
                ppid: x.event.parent_tgid,
                status: status(x.status),
                wait_status: x.event.exit_code,
                pending: x.pending.clone(),
                children_count: x.event.children_count,
                children: x
                    .orphans
                    .iter()
                    .map(|o| Child {
                        pid: o.pid,
                        comm: o.new_parent.map(|_| o.comm.clone()),
                        new_parent: o.new_parent,
                    })
                    .collect(),
                fanout: x.fanout,
            },
        ),
        Report::Handler(h) => line(
            w,
            &Handler {
                v: SCHEMA_VERSION,
                r#type: "handler",
                time: time(h.end_ns, stamp),
                mono_ns: h.end_ns,
                task: task(&h.task),
                signal: NamedSignal::new(h.sig),
                generation: h.generation,
                delivered_mono_ns: h.delivered_ns,
                end: h.end.as_str(),
                duration_ns: h.duration_ns,
            },
        ),
        Report::Fork(f) => line(
            w,
            &Fork {
                v: SCHEMA_VERSION,
                r#type: "fork",
                time: time(f.header.ts_ns, stamp),
                mono_ns: f.header.ts_ns,
                parent: task(&f.parent),
                child_pid: f.child_tgid,
                child_tid: f.child_tid,
            },
        ),
        Report::Sigaction(s) => line(
            w,
            &Sigaction {
                v: SCHEMA_VERSION,
                r#type: "sigaction",
                time: time(s.header.ts_ns, stamp),
                mono_ns: s.header.ts_ns,
                task: task(&s.task),
                signal: signal(s.sig),
                old: disposition(s.sig, s.old_handler, s.old_flags),
                new: disposition(s.sig, s.new_handler, s.new_flags),
                new_mask: mask(s.new_mask),
                ret: s.ret,
            },
        ),
        Report::Fanout(f) => {
            let source = match &f.source {
                FanoutSource::Kill {
                    tgid,
                    tid,
                    comm,
                    pid_arg,
                } => Source {
                    kind: "kill",
                    pid: Some(*tgid),
                    tid: Some(*tid),
                    comm: Some(comm_str(comm)),
                    pid_arg: Some(*pid_arg),
                    tty: None,
                    writers: None,
                },
                FanoutSource::Tty { tty, writers } => Source {
                    kind: "tty",
                    pid: None,
                    tid: None,
                    comm: None,
                    pid_arg: None,
                    tty: Some(tty_display(tty).to_string()),
                    writers: Some(
                        writers
                            .iter()
                            .map(|(pid, comm)| Writer {
                                pid: *pid,
                                comm: comm.clone(),
                            })
                            .collect(),
                    ),
                },
            };
            line(
                w,
                &Fanout {
                    v: SCHEMA_VERSION,
                    r#type: "fanout",
                    id: f.id,
                    time: time(f.ts_ns, stamp),
                    mono_ns: f.ts_ns,
                    signal: signal(f.sig),
                    pgid: f.pgid,
                    source,
                    members: f
                        .members
                        .iter()
                        .map(|m| Member {
                            pid: m.tgid,
                            tid: m.tid,
                            comm: comm_str(&m.comm),
                            disposition: disposition(f.sig, m.handler, m.sa_flags),
                            generation: m.generation,
                            outcome: m.outcome.as_str(),
                            exit: m.exit.map(|(s, after)| MemberExit {
                                status: status(s),
                                after_ns: after,
                            }),
                        })
                        .collect(),
                },
            )
        }
    }
}

/// The hot records (generate, deliver: nearly all of a busy trace) are written by hand:
/// static keys need no escaping and land with one copy each, which serde cannot know. Measured
/// against borrowed structs with derived `Serialize` (byte-identical output): serde took
/// 1.2-1.9x as long per record. The values come from the same helpers as the serde records
/// ([`DispositionJson`], `time`, `comm`), and the unit tests (output/tests.rs) validate
/// these records against docs/sigtrace.schema.json and compare their shared objects with the
/// serde-written ones.
const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

struct Obj<'a> {
    w: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Obj<'a> {
    fn open(w: &'a mut Vec<u8>) -> Self {
        w.push(b'{');
        Obj { w, first: true }
    }

    fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.first {
            self.w.push(b',');
        }
        self.first = false;
        self.w.push(b'"');
        self.w.extend_from_slice(key.as_bytes());
        self.w.extend_from_slice(b"\":");
        self.w
    }

    fn num(&mut self, key: &str, value: impl itoa::Integer) -> &mut Self {
        let mut buf = itoa::Buffer::new();
        let text = buf.format(value);
        self.key(key).extend_from_slice(text.as_bytes());
        self
    }

    fn opt_num(&mut self, key: &str, value: Option<impl itoa::Integer>) -> &mut Self {
        match value {
            Some(v) => self.num(key, v),
            None => self.raw(key, "null"),
        }
    }

    fn raw(&mut self, key: &str, json: &str) -> &mut Self {
        self.key(key).extend_from_slice(json.as_bytes());
        self
    }

    /// A string known to need no escaping (names from our tables, hex, times).
    fn plain(&mut self, key: &str, value: impl std::fmt::Display) -> &mut Self {
        let w = self.key(key);
        w.push(b'"');
        let _ = write!(w, "{value}");
        w.push(b'"');
        self
    }

    /// A mask, "0x" and 16 hex digits (core::fmt's zero padding goes a char at a time).
    fn mask(&mut self, key: &str, bits: u64) -> &mut Self {
        let w = self.key(key);
        w.extend_from_slice(b"\"0x");
        for shift in (0..16).rev() {
            w.push(HEX_DIGITS[(bits >> (shift * 4)) as usize & 0xf]);
        }
        w.push(b'"');
        self
    }

    /// Any string (a comm may hold quotes, backslashes, control bytes), escaped as it is
    /// written: no temporary String for a value that formats itself.
    fn string(&mut self, key: &str, value: impl std::fmt::Display) -> &mut Self {
        let w = self.key(key);
        // serde_json escapes exactly as JSON requires.
        let _ = serde::Serializer::collect_str(&mut serde_json::Serializer::new(&mut *w), &value);
        self
    }

    fn nested(&mut self, key: &str, fill: impl FnOnce(&mut Obj)) -> &mut Self {
        let w = self.key(key);
        let mut inner = Obj::open(w);
        fill(&mut inner);
        inner.w.push(b'}');
        self
    }

    fn close(self) {
        self.w.extend_from_slice(b"}\n");
    }
}

fn named(o: &mut Obj, key: &str, number: i64, name: &str) {
    o.nested(key, |n| {
        n.num("number", number).plain("name", name);
    });
}

fn time_fields(o: &mut Obj, ts: u64, stamp: &Stamp) {
    match time(ts, stamp) {
        TimeField::None => o.raw("time", "null"),
        time => o.plain("time", time),
    };
    o.num("mono_ns", ts);
}

fn code_fields(o: &mut Obj, sig: i32, code: i32) {
    let mut buf = itoa::Buffer::new();
    let name = code_name(sig, code).unwrap_or_else(|| buf.format(code));
    named(o, "code", code as i64, name);
}

fn task_fields(o: &mut Obj, key: &str, t: &TaskIds) {
    o.nested(key, |n| {
        n.num("pid", t.tgid)
            .num("tid", t.tid)
            .string("comm", comm(&t.comm))
            .num("uid", t.uid);
    });
}

/// `"sender_stack": {"user": [frames], "user_missing": null, "kernel": …}`, or null.
fn stack_fields(o: &mut Obj, stack: Option<&SenderStack>) {
    let Some(stack) = stack else {
        o.raw("sender_stack", "null");
        return;
    };
    o.nested("sender_stack", |s| {
        for (key, missing_key, side) in [
            ("user", "user_missing", &stack.user),
            ("kernel", "kernel_missing", &stack.kernel),
        ] {
            match side {
                Side::Frames(frames) => {
                    let w = s.key(key);
                    w.push(b'[');
                    for (i, frame) in frames.iter().enumerate() {
                        if i > 0 {
                            w.push(b',');
                        }
                        let mut f = Obj::open(w);
                        f.plain("address", format_args!("{:#x}", frame.address));
                        match &frame.symbol {
                            Some(symbol) => f.string("symbol", symbol),
                            None => f.raw("symbol", "null"),
                        };
                        f.opt_num("offset", frame.offset);
                        match &frame.module {
                            Some(module) => f.string("module", module),
                            None => f.raw("module", "null"),
                        };
                        f.w.push(b'}');
                    }
                    w.push(b']');
                    s.raw(missing_key, "null");
                }
                Side::Missing(why) => {
                    s.raw(key, "null").plain(missing_key, why);
                }
            }
        }
    });
}

/// `{"id", "path", "unit", "container"}`, or null.
fn cgroup_fields(o: &mut Obj, key: &str, cgroup: Option<&CgroupName>) {
    let Some(cgroup) = cgroup else {
        o.raw(key, "null");
        return;
    };
    o.nested(key, |c| {
        c.num("id", cgroup.id);
        let Some(resolved) = cgroup.resolved.as_deref() else {
            c.raw("path", "null")
                .raw("unit", "null")
                .raw("container", "null");
            return;
        };
        c.string(
            "path",
            String::from_utf8_lossy(resolved.path.as_os_str().as_bytes()),
        );
        match &resolved.unit {
            Some(unit) => c.string("unit", unit),
            None => c.raw("unit", "null"),
        };
        match &resolved.container {
            Some(container) => c.nested("container", |k| {
                k.plain("runtime", container.runtime.as_str())
                    .string("id", &container.id);
                match &container.pod_uid {
                    Some(uid) => k.string("pod_uid", uid),
                    None => k.raw("pod_uid", "null"),
                };
            }),
            None => c.raw("container", "null"),
        };
    });
}

fn disposition_fields(o: &mut Obj, sig: i32, handler: u64, flags: u64) {
    let d = disposition(sig, handler, flags);
    o.nested("disposition", |n| {
        n.plain("action", d.action);
        match d.handler {
            Some(address) => n.plain("handler", address),
            None => n.raw("handler", "null"),
        };
        n.plain("default_action", d.default_action)
            .opt_num("flags", d.flags);
    });
}

fn write_generate(w: &mut Vec<u8>, g: &GenerateReport, stamp: &Stamp) {
    let e = &g.event;
    let r = &e.recipient;
    let has_sender_info = e.info_kind == 0 && carries_sender(e.sig, e.code);
    let mut o = Obj::open(w);
    o.num("v", SCHEMA_VERSION)
        .plain("type", "generate")
        .num("id", g.id);
    time_fields(&mut o, e.header.ts_ns, stamp);
    named(&mut o, "signal", e.sig as i64, &Signal(e.sig).name());
    code_fields(&mut o, e.sig, e.code);
    o.num("errno", e.errno);
    named(&mut o, "result", e.result as i64, &result_name(e.result));
    o.raw("shared", if e.group != 0 { "true" } else { "false" })
        .plain("origin", g.origin.as_str());
    match via::name(e.via) {
        Some(how) => o.plain("via", how).num("via_arg", e.via_arg),
        None => o.raw("via", "null").raw("via_arg", "null"),
    };
    o.opt_num("si_pid", has_sender_info.then_some(e.si_pid))
        .opt_num("si_uid", has_sender_info.then_some(e.si_uid));
    let context = Context::of(e);
    if context == Context::Interrupt {
        o.raw("sender", "null");
    } else {
        task_fields(&mut o, "sender", &e.sender);
    }
    o.plain("sender_context", context.as_str());
    match kernel_kind(e) {
        Some(kind) => o.plain("kernel_source", kind),
        None => o.raw("kernel_source", "null"),
    };
    if context == Context::Interrupt {
        task_fields(&mut o, "interrupted", &e.sender);
    } else {
        o.raw("interrupted", "null");
    }
    cgroup_fields(&mut o, "sender_cgroup", g.sender_cgroup.as_ref());
    stack_fields(&mut o, g.sender_stack.as_ref());
    o.nested("target", |t| {
        t.num("pid", e.target.tgid)
            .num("tid", e.target.tid)
            .string("comm", comm(&e.target.comm))
            .num("uid", e.target.uid)
            .num("ppid", r.parent_tgid)
            .num("pgid", r.pgid)
            .num("sid", r.sid);
        if r.ns_level > 0 {
            t.nested("ns", |n| {
                n.num("level", r.ns_level)
                    .num("pid", r.ns_tgid)
                    .num("pgid", r.ns_pgid)
                    .num("sid", r.ns_sid);
            });
        } else {
            t.raw("ns", "null");
        }
        if r.tty[0] != 0 {
            t.string("tty", tty_display(&r.tty));
            t.opt_num("tty_fg_pgid", (r.tty_fg_pgid != 0).then_some(r.tty_fg_pgid));
        } else {
            t.raw("tty", "null").raw("tty_fg_pgid", "null");
        }
        cgroup_fields(t, "cgroup", g.target_cgroup.as_ref());
    });
    disposition_fields(&mut o, e.sig, r.handler, r.sa_flags);
    o.nested("masks", |m| {
        m.mask("blocked", r.blocked)
            .mask("caught", r.caught)
            .mask("ignored", r.ignored)
            .mask("pending", r.pending);
    });
    o.plain("outcome", g.outcome.as_str())
        .opt_num("fanout", g.fanout);
    let w = o.key("consumed");
    w.push(b'[');
    for (i, id) in g.consumed.iter().enumerate() {
        if i > 0 {
            w.push(b',');
        }
        w.extend_from_slice(itoa::Buffer::new().format(*id).as_bytes());
    }
    w.push(b']');
    o.close();
}

fn write_deliver(w: &mut Vec<u8>, d: &DeliverReport, stamp: &Stamp) {
    let e = &d.event;
    let mut o = Obj::open(w);
    o.num("v", SCHEMA_VERSION).plain("type", "deliver");
    time_fields(&mut o, e.header.ts_ns, stamp);
    named(&mut o, "signal", e.sig as i64, &Signal(e.sig).name());
    code_fields(&mut o, e.sig, e.code);
    o.num("errno", e.errno);
    task_fields(&mut o, "task", &e.task);
    disposition_fields(&mut o, e.sig, e.handler, e.sa_flags);
    o.mask("blocked", e.blocked)
        .plain("outcome", d.outcome.as_str());
    match d.cause {
        Some(cause) => named(&mut o, "cause", cause as i64, &Signal(cause).name()),
        None => {
            o.raw("cause", "null");
        }
    }
    o.opt_num("generation", d.generation.map(|g| g.0))
        .opt_num("latency_ns", d.generation.map(|g| g.1))
        .opt_num("fanout", d.fanout);
    match interrupted(e) {
        Some(call) => {
            o.nested("syscall", |c| {
                c.num("number", call.nr);
                match call.name {
                    Some(name) => c.plain("name", name),
                    None => c.raw("name", "null"),
                };
                c.plain("abi", call.abi)
                    .plain("code", call.code)
                    .plain("result", call.fate.as_str());
            });
        }
        None => {
            o.raw("syscall", "null");
        }
    }
    cgroup_fields(&mut o, "cgroup", d.cgroup.as_ref());
    o.close();
}

pub(crate) fn write_loss(
    w: &mut Vec<u8>,
    stamp: &Stamp,
    now_ns: u64,
    lost: u64,
    total_lost: u64,
) -> io::Result<()> {
    line(
        w,
        &Loss {
            v: SCHEMA_VERSION,
            r#type: "loss",
            time: time(now_ns, stamp),
            mono_ns: now_ns,
            lost,
            total_lost,
        },
    )
}
