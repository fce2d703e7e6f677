//! The JSON output against its published schema, docs/sigtrace.schema.json.
//!
//! Without root: the schema is a valid draft 2020-12 schema, every example in docs/json.md
//! validates, docs/json.md mentions every field the schema defines, and malformed records (an extra field anywhere, a missing field anywhere, any
//! value of the wrong type, broken masks, mismatched result names...) are rejected — so the
//! schema is closed and the end-to-end check below cannot pass vacuously.
//!
//! With root: the real tracer runs in scenarios that between them produce every record type
//! (a launched `sh` that handles, ignores and dies of signals, forks and changes its signal
//! actions; a kill(-PGID) fan-out over a process group this test created; a signal storm into
//! a 4K ring buffer for `loss`; `--summary`), in all three time modes, and every line it
//! prints must validate.

use std::{
    collections::BTreeSet,
    io::Read,
    os::unix::process::CommandExt,
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use jsonschema::Validator;
use nix::{
    sys::{
        signal::{Signal, killpg},
        wait::{Id, WaitPidFlag, WaitStatus, waitid},
    },
    unistd::{Pid, getpgrp},
};
use serde_json::{Value, json};

use crate::util::*;

const SCHEMA_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/sigtrace.schema.json");
const DOC_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/json.md");
const RECORD_TYPES: [&str; 9] = [
    "generate",
    "deliver",
    "exit",
    "fork",
    "sigaction",
    "handler",
    "fanout",
    "loss",
    "summary",
];
const WAIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------
// The schema and how to check records against it

fn schema() -> Value {
    let text = std::fs::read_to_string(SCHEMA_PATH)
        .unwrap_or_else(|e| panic!("reading {SCHEMA_PATH}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{SCHEMA_PATH} is not JSON: {e}"))
}

fn validator() -> Validator {
    let schema = schema();
    if let Err(e) = jsonschema::draft202012::meta::validate(&schema) {
        panic!("{SCHEMA_PATH} is not a valid draft 2020-12 schema: {e}");
    }
    jsonschema::draft202012::new(&schema)
        .unwrap_or_else(|e| panic!("{SCHEMA_PATH} does not compile: {e}"))
}

fn errors(validator: &Validator, record: &Value) -> Vec<String> {
    validator
        .iter_errors(record)
        .map(|e| format!("at {:?}: {e}", e.instance_path.as_str()))
        .collect()
}

/// The errors of `record` against its own type's definition alone: more telling than the
/// top-level `oneOf`, which only says that no record type matched.
fn errors_for_its_type(record: &Value) -> Vec<String> {
    let Some(kind) = record["type"].as_str().filter(|k| RECORD_TYPES.contains(k)) else {
        return vec![format!(
            "type {} is not one of {RECORD_TYPES:?}",
            record["type"]
        )];
    };
    let mut schema = schema();
    let defs = schema["$defs"].take();
    let single = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": format!("#/$defs/{kind}"),
        "$defs": defs,
    });
    let validator = jsonschema::draft202012::new(&single).expect("sub-schema compiles");
    errors(&validator, record)
}

fn assert_valid(validator: &Validator, record: &Value, context: &str) {
    if validator.is_valid(record) {
        return;
    }
    let mut errors = errors_for_its_type(record);
    if errors.is_empty() {
        errors = self::errors(validator, record);
    }
    panic!(
        "{context}: record does not match the schema:\n  {}\nrecord: {record}",
        errors.join("\n  ")
    );
}

fn assert_invalid(validator: &Validator, record: &Value, what: &str) {
    assert!(
        !validator.is_valid(record),
        "the schema accepts a record with {what}: {record}"
    );
}

/// Parses output lines, failing on anything that is not one JSON object per line.
fn parse_lines(lines: &[String], context: &str) -> Vec<Value> {
    lines
        .iter()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{context}: not a JSON line ({e}): {line:?}"));
            assert!(value.is_object(), "{context}: not an object: {line}");
            value
        })
        .collect()
}

fn validate_all(validator: &Validator, records: &[Value], context: &str) {
    for (i, record) in records.iter().enumerate() {
        assert_valid(validator, record, &format!("{context}, line {}", i + 1));
    }
}

// ---------------------------------------------------------------------------------------
// Mutations: every object in the schema is closed and every field is required, and no field
// accepts values of two JSON types that could be confused — so each of these must fail.

/// JSON-pointer-ish paths of every object and every leaf in `value`.
fn walk(value: &Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, Value)>) {
    out.push((path.clone(), value.clone()));
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                path.push(key.clone());
                walk(child, path, out);
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                path.push(i.to_string());
                walk(child, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn at_mut<'a>(value: &'a mut Value, path: &[String]) -> &'a mut Value {
    path.iter().fold(value, |v, key| match v {
        Value::Object(map) => map.get_mut(key).expect("path from walk"),
        Value::Array(items) => {
            let i: usize = key.parse().expect("index");
            &mut items[i]
        }
        _ => panic!("path from walk goes through a leaf"),
    })
}

/// A value of another JSON type than `v`, that no field of that kind accepts.
fn wrong_type(v: &Value) -> Value {
    match v {
        Value::Null => json!(true),
        Value::Bool(_) => json!("true"),
        Value::Number(_) => json!("7"),
        Value::String(_) => json!(7),
        Value::Array(_) => json!({}),
        Value::Object(_) => json!([]),
    }
}

/// Every structural mutation of `record`: an unknown field added to each object, each field
/// of each object removed, each value replaced by one of another type. Returns how many were
/// checked.
fn assert_mutations_rejected(validator: &Validator, record: &Value) -> usize {
    assert_valid(validator, record, "mutation base");
    let mut nodes = Vec::new();
    walk(record, &mut Vec::new(), &mut nodes);
    let mut checked = 0;
    for (path, node) in &nodes {
        let shown = format!("/{}", path.join("/"));
        if let Value::Object(map) = node {
            let mut extra = record.clone();
            at_mut(&mut extra, path)
                .as_object_mut()
                .expect("object")
                .insert("unexpected".into(), json!(1));
            assert_invalid(validator, &extra, &format!("an extra field in {shown}"));
            checked += 1;
            for key in map.keys() {
                let mut missing = record.clone();
                at_mut(&mut missing, path)
                    .as_object_mut()
                    .expect("object")
                    .remove(key);
                assert_invalid(validator, &missing, &format!("no field {key:?} in {shown}"));
                checked += 1;
            }
        }
        if !path.is_empty() {
            let mut wrong = record.clone();
            *at_mut(&mut wrong, path) = wrong_type(node);
            assert_invalid(validator, &wrong, &format!("a wrongly typed {shown}"));
            checked += 1;
        }
    }
    checked
}

/// Returns a copy of `record` with the value at `pointer` (RFC 6901) replaced.
fn with(record: &Value, pointer: &str, value: Value) -> Value {
    let mut copy = record.clone();
    *copy
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer} in {record}")) = value;
    copy
}

/// Value-level mistakes the schema must catch, given one valid record of each type.
fn assert_semantic_mistakes_rejected(validator: &Validator, by_type: &[(&str, &Value)]) {
    let get = |kind: &str| {
        by_type
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, r)| *r)
            .unwrap_or_else(|| panic!("no {kind} record to mutate"))
    };
    let generate = get("generate");
    let deliver = get("deliver");
    let exit = get("exit");
    let fanout = get("fanout");
    let cases = [
        (with(generate, "/v", json!(1)), "schema version 1"),
        (with(generate, "/type", json!("bogus")), "an unknown type"),
        (
            with(deliver, "/type", json!("generate")),
            "the wrong type tag",
        ),
        (
            with(generate, "/masks/blocked", json!("0x200")),
            "a short mask",
        ),
        (
            with(generate, "/masks/caught", json!("0x000000000000020A")),
            "an upper-case mask",
        ),
        (
            with(generate, "/masks/pending", json!(512)),
            "a mask as a number",
        ),
        (
            with(generate, "/time", json!("Tuesday")),
            "a time that is neither RFC 3339 nor relative",
        ),
        (
            with(generate, "/time", json!("2026-11-28 17:40:01")),
            "a time without T, fraction and zone",
        ),
        (
            with(generate, "/result", json!({"number": 0, "name": "ignored"})),
            "a result whose name and number disagree",
        ),
        (
            with(generate, "/outcome", json!("handled")),
            "a delivery outcome on a generate record",
        ),
        (with(generate, "/origin", json!("tty")), "an unknown origin"),
        (with(generate, "/via", json!("ioctl")), "an unknown via"),
        (
            with(generate, "/signal/number", json!(65)),
            "signal 65 from the kernel",
        ),
        (
            with(generate, "/signal/name", json!("TERM")),
            "a signal name without SIG",
        ),
        (
            with(generate, "/disposition/action", json!("catch")),
            "an unknown disposition action",
        ),
        (
            with(
                generate,
                "/disposition",
                json!({"action": "caught", "handler": null, "default_action": "Term", "flags": 0}),
            ),
            "a handler action without its address",
        ),
        (
            with(
                generate,
                "/disposition",
                json!({"action": "default", "handler": "0x5555deadbeef", "default_action": "Term", "flags": 0}),
            ),
            "an address for SIG_DFL",
        ),
        (
            with(
                generate,
                "/disposition",
                json!({"action": "caught", "handler": "5555deadbeef", "default_action": "Term", "flags": 0}),
            ),
            "a handler address without 0x",
        ),
        (
            with(generate, "/disposition/default_action", json!("term")),
            "an unknown default action",
        ),
        (with(generate, "/id", json!(0)), "generation id 0"),
        (with(generate, "/target/pid", json!(-1)), "a negative pid"),
        (
            with(deliver, "/outcome", json!("pending")),
            "a generation outcome on a deliver record",
        ),
        (
            with(
                exit,
                "/status",
                json!({"kind": "exited", "code": null, "signal": null, "core": false}),
            ),
            "an exited status without code",
        ),
        (
            with(
                exit,
                "/status",
                json!({"kind": "killed", "code": 0, "signal": {"number": 9, "name": "SIGKILL"}, "core": false}),
            ),
            "a killed status with an exit code",
        ),
        (
            with(exit, "/status/kind", json!("stopped")),
            "an unknown status kind",
        ),
        (
            with(fanout, "/source/kind", json!("timer")),
            "an unknown fan-out source",
        ),
        (
            with(fanout, "/members", json!([])),
            "a fan-out without members",
        ),
        (
            with(get("loss"), "/lost", json!(0)),
            "a loss record that lost nothing",
        ),
        (
            with(
                get("summary"),
                "/rows",
                json!([{"sender": "sh", "target": "sh", "signal": {"number": 15, "name": "SIGTERM"}, "outcome": "vanished", "count": 1}]),
            ),
            "an unknown outcome in the summary",
        ),
    ];
    for (record, what) in &cases {
        assert_invalid(validator, record, what);
    }
}

// ---------------------------------------------------------------------------------------
// docs/json.md

/// The ```json blocks of docs/json.md, each one JSON record.
fn doc_examples() -> Vec<Value> {
    let text =
        std::fs::read_to_string(DOC_PATH).unwrap_or_else(|e| panic!("reading {DOC_PATH}: {e}"));
    let mut examples = Vec::new();
    let mut block: Option<String> = None;
    for line in text.lines() {
        match &mut block {
            None if line.trim_start() == "```json" => block = Some(String::new()),
            Some(body) if line.trim_start() == "```" => {
                let value: Value = serde_json::from_str(body).unwrap_or_else(|e| {
                    panic!("{DOC_PATH}: a ```json block is not one JSON value ({e}):\n{body}")
                });
                examples.push(value);
                block = None;
            }
            Some(body) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    assert!(block.is_none(), "{DOC_PATH}: unterminated ```json block");
    examples
}

fn first_of_each_type(records: &[Value]) -> Vec<(&'static str, &Value)> {
    RECORD_TYPES
        .iter()
        .filter_map(|&kind| {
            records
                .iter()
                .find(|r| r["type"] == kind)
                .map(|r| (kind, r))
        })
        .collect()
}

#[test]
fn schema_is_draft_2020_12_and_docs_examples_match_it() {
    let validator = validator();
    let examples = doc_examples();
    validate_all(&validator, &examples, "docs/json.md example");
    let types: BTreeSet<&str> = examples.iter().filter_map(|e| e["type"].as_str()).collect();
    for kind in RECORD_TYPES {
        assert!(
            types.contains(kind),
            "docs/json.md has no example of a {kind} record"
        );
    }
}

/// Every property name the schema defines, at any depth.
fn property_names(schema: &Value, out: &mut BTreeSet<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Object(properties)) = map.get("properties") {
                out.extend(properties.keys().cloned());
            }
            map.values().for_each(|v| property_names(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| property_names(v, out)),
        _ => {}
    }
}

#[test]
fn docs_describe_every_field() {
    let doc =
        std::fs::read_to_string(DOC_PATH).unwrap_or_else(|e| panic!("reading {DOC_PATH}: {e}"));
    let mut names = BTreeSet::new();
    property_names(&schema(), &mut names);
    assert!(names.len() > 50, "{names:?}");
    let undocumented: Vec<_> = names
        .iter()
        .filter(|name| !doc.contains(&format!("`{name}`")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "{DOC_PATH} never mentions these fields of the schema: {undocumented:?}"
    );
}

#[test]
fn schema_rejects_malformed_records() {
    let validator = validator();
    let examples = doc_examples();
    let mut checked = 0;
    for example in &examples {
        checked += assert_mutations_rejected(&validator, example);
    }
    let by_type = first_of_each_type(&examples);
    assert_eq!(by_type.len(), RECORD_TYPES.len(), "an example of each type");
    assert_semantic_mistakes_rejected(&validator, &by_type);
    // Not JSON objects at all.
    for not_a_record in [json!(null), json!([]), json!("generate"), json!({})] {
        assert_invalid(&validator, &not_a_record, "no record at all");
    }
    assert!(checked > 300, "only {checked} mutations checked");
}

// ---------------------------------------------------------------------------------------
// The real tracer

/// A process group this test created (its leader spawned with `process_group(0)`): killed
/// as a whole on drop, while the leader is still unreaped (so the group id cannot have been
/// reused by anyone else).
struct OwnGroup {
    leader: Owned,
}

impl OwnGroup {
    fn new(leader: Owned) -> Self {
        let pgid = leader.pid();
        assert!(pgid > 1, "a real group id");
        assert_ne!(
            Pid::from_raw(pgid),
            getpgrp(),
            "never the test runner's own group"
        );
        OwnGroup { leader }
    }

    fn pgid(&self) -> i32 {
        self.leader.pid()
    }

    fn signal_group(&self, sig: Signal) {
        killpg(Pid::from_raw(self.pgid()), sig).expect("signal our own process group");
    }
}

impl Drop for OwnGroup {
    fn drop(&mut self) {
        // `Owned` reaps the leader only after this (fields drop after `drop`).
        let _ = killpg(Pid::from_raw(self.pgid()), Signal::SIGKILL);
    }
}

/// A `sigtrace ... -- COMMAND` run in a process group of its own (the launched command
/// inherits it): everything left of it is killed by group on drop, before the leader is
/// reaped.
struct Launched {
    child: Child,
    reaped: bool,
}

impl Launched {
    fn pgid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Waits (bounded) until the tracer has exited, without reaping it.
    fn wait_exited(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + scaled(timeout);
        loop {
            let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT | WaitPidFlag::WNOHANG;
            match waitid(Id::Pid(self.pgid()), flags) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(_) => return true,
                Err(e) => panic!("waitid on the tracer: {e}"),
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill_group_and_reap(&mut self) -> ExitStatus {
        let _ = killpg(self.pgid(), Signal::SIGKILL);
        self.reaped = true;
        self.child.wait().expect("reap the tracer")
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill_group_and_reap();
        }
    }
}

struct Run {
    status: ExitStatus,
    records: Vec<Value>,
    stderr: String,
}

fn reader(mut stream: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Runs `sigtrace ARGS` to its end (launch mode ends with the command) and returns its exit
/// status and its output records.
fn run_to_end(args: &[&str], timeout: Duration) -> Run {
    let context = format!("sigtrace {}", args.join(" "));
    let mut child = Command::new(sigtrace_bin())
        .args(args)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sigtrace");
    let stdout = reader(child.stdout.take().expect("stdout"));
    let stderr = reader(child.stderr.take().expect("stderr"));
    let mut run = Launched {
        child,
        reaped: false,
    };
    let exited = run.wait_exited(timeout);
    let status = run.kill_group_and_reap();
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    assert!(
        exited,
        "{context} did not end within {timeout:?}; stderr:\n{stderr}"
    );
    let lines: Vec<String> = stdout.lines().map(str::to_owned).collect();
    Run {
        status,
        records: parse_lines(&lines, &context),
        stderr,
    }
}

fn times_match(records: &[Value], context: &str, ok: impl Fn(&Value) -> bool) {
    for r in records.iter().filter(|r| r.get("mono_ns").is_some()) {
        assert!(ok(&r["time"]), "{context}: unexpected time in {r}");
    }
}

fn is_relative(t: &Value) -> bool {
    t.as_str().is_some_and(|s| {
        s.split_once('.').is_some_and(|(secs, frac)| {
            !secs.is_empty()
                && secs.bytes().all(|b| b.is_ascii_digit())
                && frac.len() == 6
                && frac.bytes().all(|b| b.is_ascii_digit())
        })
    })
}

fn is_rfc3339_utc(t: &Value) -> bool {
    t.as_str()
        .is_some_and(|s| s.len() == 27 && s.as_bytes()[10] == b'T' && s.ends_with('Z'))
}

/// Launch mode: handled, ignored and fatal signals, stop/continue, forks, sigaction changes,
/// an orphan left behind, and the summary; relative timestamps.
fn launch_scenario(validator: &Validator) -> Vec<Value> {
    // Background children write nowhere near our pipes, so the run ends with the command.
    let script = "trap : USR1; kill -USR1 $$; \
                  trap '' USR2; kill -USR2 $$; \
                  trap - USR1; \
                  sleep 5 >/dev/null 2>&1 & p=$!; kill -STOP $p; kill -CONT $p; kill -TERM $p; wait $p; \
                  sh -c 'sleep 3 >/dev/null 2>&1 & kill -TERM $$'; \
                  kill -TERM $$";
    let run = run_to_end(
        &[
            "--format",
            "json",
            "-r",
            "--summary",
            "--handler-time",
            "--",
            "sh",
            "-c",
            script,
        ],
        WAIT,
    );
    let context = "launch scenario";
    assert_eq!(
        run.status.code(),
        Some(128 + 15),
        "{context}: sigtrace exits with the command's status (killed by SIGTERM); stderr:\n{}",
        run.stderr
    );
    let records = &run.records;
    validate_all(validator, records, context);
    times_match(records, context, is_relative);

    let usr1_changes: Vec<&str> = of_type(records, "sigaction")
        .into_iter()
        .filter(|s| signal_name(s) == "SIGUSR1")
        .filter_map(|s| s["new"]["action"].as_str())
        .collect();
    assert_eq!(
        usr1_changes,
        ["caught", "default"],
        "{context}: trap, trap -"
    );
    assert!(
        of_type(records, "fork").len() >= 3,
        "{context}: sleep, sh and the inner sleep are forks: {records:#?}"
    );
    let handled = of_type(records, "deliver")
        .into_iter()
        .find(|d| signal_name(d) == "SIGUSR1")
        .unwrap_or_else(|| panic!("{context}: no SIGUSR1 delivery"));
    assert_eq!(handled["outcome"], "handled");
    let ignored = of_type(records, "generate")
        .into_iter()
        .find(|g| signal_name(g) == "SIGUSR2")
        .unwrap_or_else(|| panic!("{context}: no SIGUSR2"));
    assert_eq!(ignored["result"]["name"], "ignored");
    assert_eq!(ignored["outcome"], "ignored");
    // A fatal default action is delivered as SIGKILL, with the real cause.
    assert!(
        of_type(records, "deliver")
            .iter()
            .any(|d| signal_name(d) == "SIGKILL" && d["cause"]["name"] == "SIGTERM"),
        "{context}: no SIGKILL delivery caused by SIGTERM"
    );
    assert!(
        of_type(records, "exit")
            .iter()
            .any(|x| x["children_count"].as_u64() > Some(0)
                && !x["children"].as_array().is_none_or(Vec::is_empty)),
        "{context}: the inner sh's exit lists the sleep it left behind"
    );
    let summary = records.last().expect("records");
    assert_eq!(summary["type"], "summary", "{context}: summary comes last");
    assert_eq!(
        summary["signals"].as_u64(),
        Some(of_type(records, "generate").len() as u64),
        "{context}: summary counts every generation"
    );
    run.records
}

/// A kill(-PGID) over a process group this test created: the members ignore, handle and
/// then die of the signals; wall-clock timestamps.
fn fanout_scenario(validator: &Validator) -> Vec<Value> {
    // sleep first: by the time perl says "ready", every member exists.
    let group_script = r#"trap '' TERM
sleep 30 &
perl -e '$| = 1; $SIG{TERM} = sub { exit 3 }; print "ready\n"; sleep 1 while 1' &
wait"#;
    let mut leader = Command::new("bash");
    leader.args(["-c", group_script]).process_group(0);
    let group = OwnGroup::new(spawn_ready(&mut leader));
    let pgid = group.pgid();
    let mut trace = Trace::start(&["--format", "json", "--pgrp", &pgid.to_string()]);
    let mut seen = Vec::new();
    group.signal_group(Signal::SIGTERM);
    trace.wait_for(&mut seen, WAIT, |r| {
        r["type"] == "fanout" && signal_name(r) == "SIGTERM"
    });
    group.signal_group(Signal::SIGKILL);
    trace.wait_for(&mut seen, WAIT, |r| {
        r["type"] == "fanout" && signal_name(r) == "SIGKILL"
    });
    let records = trace.stop_json(seen);
    drop(group);
    let context = "fan-out scenario";
    validate_all(validator, &records, context);
    times_match(&records, context, is_rfc3339_utc);

    let term = of_type(&records, "fanout")
        .into_iter()
        .find(|f| signal_name(f) == "SIGTERM")
        .expect("SIGTERM fan-out");
    assert_eq!(term["pgid"], pgid, "{context}: {term}");
    assert_eq!(term["source"]["kind"], "kill");
    assert_eq!(term["source"]["pid_arg"], -i64::from(pgid));
    assert_eq!(term["source"]["pid"], std::process::id());
    let members = term["members"].as_array().expect("members");
    assert!(members.len() >= 3, "{context}: bash, perl, sleep: {term}");
    assert!(
        members.iter().any(|m| m["outcome"] == "handled"),
        "{context}: perl handles TERM: {term}"
    );
    assert!(
        members.iter().any(|m| m["outcome"] == "ignored"),
        "{context}: bash ignores TERM: {term}"
    );
    // Each member's generation carries the fan-out's id.
    for m in members {
        let g = of_type(&records, "generate")
            .into_iter()
            .find(|g| g["id"] == m["generation"])
            .unwrap_or_else(|| panic!("{context}: no generation for member {m}"));
        assert_eq!(g["fanout"], term["id"], "{context}: {g}");
        assert_eq!(g["via"], "kill");
        assert_eq!(g["via_arg"], -i64::from(pgid));
    }
    records
}

/// A signal storm into a 4K ring buffer: events are lost and said so; no timestamps.
fn loss_scenario(validator: &Validator) -> Vec<Value> {
    let run = run_to_end(
        &[
            "--format",
            "json",
            "--no-time",
            "--summary",
            "--ring-size",
            "4K",
            "--",
            "perl",
            "-e",
            "$SIG{USR1} = sub {}; kill USR1 => $$ for 1..20000",
        ],
        Duration::from_secs(60),
    );
    let context = "loss scenario";
    assert_eq!(
        run.status.code(),
        Some(0),
        "{context}: the command's status, even with losses; stderr:\n{}",
        run.stderr
    );
    let records = &run.records;
    validate_all(validator, records, context);
    times_match(records, context, Value::is_null);
    let losses = of_type(records, "loss");
    assert!(
        !losses.is_empty(),
        "{context}: a 4K ring cannot hold 20000 signals; stderr:\n{}",
        run.stderr
    );
    let mut total = 0;
    for loss in &losses {
        let lost = loss["lost"].as_u64().expect("lost");
        total += lost;
        assert_eq!(
            loss["total_lost"].as_u64(),
            Some(total),
            "{context}: {loss}"
        );
    }
    let summary = records.last().expect("records");
    assert_eq!(summary["type"], "summary", "{context}");
    assert!(
        summary["lost"].as_u64() >= Some(total),
        "{context}: summary {summary} vs {total} reported lost"
    );
    run.records
}

#[test]
fn real_output_matches_the_schema() {
    if !bpf_allowed("real_output_matches_the_schema") {
        return;
    }
    let _beside = beside_others();
    let validator = validator();
    let mut all = Vec::new();
    all.extend(launch_scenario(&validator));
    all.extend(fanout_scenario(&validator));
    all.extend(loss_scenario(&validator));

    let types: BTreeSet<&str> = all.iter().filter_map(|r| r["type"].as_str()).collect();
    for kind in RECORD_TYPES {
        assert!(types.contains(kind), "no {kind} record in any scenario");
    }
    // The schema is not vacuous on real records either.
    let by_type = first_of_each_type(&all);
    let mut checked = 0;
    for (_, record) in &by_type {
        checked += assert_mutations_rejected(&validator, record);
    }
    assert_semantic_mistakes_rejected(&validator, &by_type);
    assert!(checked > 300, "only {checked} mutations checked");
}
