//! Ring-buffer records from arbitrary bytes, through everything that reads them: the
//! decoder, the correlator, the text and JSON lines and the summary.
//!
//! The input is a flags byte followed by records, each framed as a length byte and that many
//! bytes (the last one cut short by the end of the input): records shorter than their kind,
//! longer (the ring pads to 8 bytes), or of unknown kinds all occur. What must hold:
//! - the decoder returns the error the bytes call for, never panics or reads out of bounds,
//!   and a decoded event is the record's kind with exactly the record's bytes;
//! - every report prints as valid UTF-8 text without a terminal control character — one
//!   line, except a fan-out's block — and as one line of JSON holding one object;
//! - the summary prints, and its JSON parses.
//!
//! Flags: bits 0-1 the time mode (wall, relative, none); bit 2 settles open fan-outs at the
//! end of time before flushing, as the tracer's timer does; bit 3 follows handler runs
//! (--handler-time).

#![no_main]

use std::mem::size_of;

use libfuzzer_sys::fuzz_target;
use sigtrace::{
    correlate::{Correlator, Report},
    enrich::Clock,
    events::{DecodeError, Event, decode},
    output::{Stamp, TimeMode, Totals, json, summary::Summary, text},
};
use sigtrace_common::{
    DeliverEvent, ExitEvent, ForkEvent, GenerateEvent, Header, SigactionEvent, SigreturnEvent, kind,
};

/// 2023-11-14T22:13:20Z at monotonic zero: a realistic clock (the tracer's comes from the
/// system, not from the records).
const WALL_AT_ZERO_NS: i128 = 1_700_000_000_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let mut events = Vec::new();
    while let Some((&len, tail)) = rest.split_first() {
        let (record, next) = tail.split_at(usize::from(len).min(tail.len()));
        if let Some(event) = check_decode(record) {
            events.push(event);
        }
        rest = next;
    }
    report_all(flags, &events);
});

/// Decodes one record and checks the answer against what its bytes say; the event, if any.
fn check_decode(record: &[u8]) -> Option<Event> {
    let result = decode(record);
    if record.len() < size_of::<Header>() {
        assert_eq!(result.err(), Some(DecodeError::Short(record.len())));
        return None;
    }
    let word = |at: usize| {
        u32::from_ne_bytes([record[at], record[at + 1], record[at + 2], record[at + 3]])
    };
    let record_kind = word(0);
    let expected = match record_kind {
        kind::GENERATE => size_of::<GenerateEvent>(),
        kind::DELIVER => size_of::<DeliverEvent>(),
        kind::EXIT => size_of::<ExitEvent>(),
        kind::FORK => size_of::<ForkEvent>(),
        kind::SIGACTION => size_of::<SigactionEvent>(),
        kind::SIGRETURN => size_of::<SigreturnEvent>(),
        other => {
            assert_eq!(result.err(), Some(DecodeError::UnknownKind(other)));
            return None;
        }
    };
    if record.len() < expected {
        assert_eq!(
            result.err(),
            Some(DecodeError::Length {
                kind: record_kind,
                len: record.len(),
                expected,
            })
        );
        return None;
    }
    let event = match result {
        Ok(event) => event,
        Err(error) => panic!(
            "a {expected}-byte record of kind {record_kind} in {} bytes: {error}",
            record.len()
        ),
    };
    let (header, bytes) = match &event {
        Event::Generate(e) => (e.header, bytes_of(e)),
        Event::Deliver(e) => (e.header, bytes_of(e)),
        Event::Exit(e) => (e.header, bytes_of(e)),
        Event::Fork(e) => (e.header, bytes_of(e)),
        Event::Sigaction(e) => (e.header, bytes_of(e)),
        Event::Sigreturn(e) => (e.header, bytes_of(e)),
    };
    assert_eq!(header.kind, record_kind, "decoded as another kind");
    assert_eq!(bytes.len(), expected);
    assert_eq!(
        bytes,
        &record[..expected],
        "the event is not the record's bytes"
    );
    let mut ts = [0; 8];
    ts.copy_from_slice(&record[8..16]);
    assert_eq!(event.ts_ns(), u64::from_ne_bytes(ts));
    Some(event)
}

/// The bytes of a record.
fn bytes_of<T: Copy>(record: &T) -> &[u8] {
    // SAFETY: the records of sigtrace-common are #[repr(C)] integer structs without implicit
    // padding (their sizes are pinned there), so every byte is initialized.
    unsafe { std::slice::from_raw_parts(std::ptr::from_ref(record).cast::<u8>(), size_of::<T>()) }
}

/// Correlates the events and writes every report in both formats, as the tracer would.
fn report_all(flags: u8, events: &[Event]) {
    let mode = match flags & 3 {
        0 => TimeMode::Wall,
        1 => TimeMode::Relative,
        _ => TimeMode::None,
    };
    let start = events.first().map_or(0, Event::ts_ns);
    let stamp = Stamp {
        clock: Clock::fixed(WALL_AT_ZERO_NS, start),
        mode,
        utc_offset_s: 3600,
    };
    let mut correlator = Correlator::new();
    if flags & 8 != 0 {
        correlator = correlator.with_handler_time();
    }
    let mut reports = Vec::new();
    for &event in events {
        correlator.push(event, &mut reports);
    }
    if flags & 4 != 0 {
        correlator.settle(u64::MAX, &mut reports);
    }
    correlator.flush(&mut reports);
    let mut summary = Summary::default();
    for report in &reports {
        summary.add(report);
        check_text(report, &stamp);
        check_json(report, &stamp);
    }
    let totals = Totals {
        events: events.len() as u64,
        lost: 0,
    };
    let mut out = Vec::new();
    summary
        .write_text(&mut out, totals)
        .expect("writing to a Vec");
    check_terminal_safe(&out, "the text summary");
    out.clear();
    summary
        .write_json(&mut out, totals)
        .expect("writing to a Vec");
    for line in out.split(|&b| b == b'\n').filter(|line| !line.is_empty()) {
        if let Err(error) = serde_json::from_slice::<serde_json::Value>(line) {
            panic!(
                "summary JSON does not parse ({error}): {}",
                String::from_utf8_lossy(line)
            );
        }
    }
}

fn check_text(report: &Report, stamp: &Stamp) {
    let mut out = Vec::new();
    text::write_report(&mut out, report, stamp).expect("writing to a Vec");
    let text = check_terminal_safe(&out, "a text report");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "unterminated line {text:?}"
    );
    if !matches!(report, Report::Fanout(_)) {
        assert!(
            text.matches('\n').count() <= 1,
            "one event, several lines: {text:?}"
        );
    }
}

/// Output for root's terminal: valid UTF-8 (invalid bytes are escaped), and no character a
/// terminal acts on but the newline ending a line — the set `escape` escapes.
fn check_terminal_safe<'a>(out: &'a [u8], what: &str) -> &'a str {
    let text = match std::str::from_utf8(out) {
        Ok(text) => text,
        Err(error) => panic!(
            "{what} is not UTF-8 ({error}): {:?}",
            String::from_utf8_lossy(out)
        ),
    };
    if let Some(c) = text.chars().find(|&c| c != '\n' && is_unsafe_char(c)) {
        panic!("{what} holds {c:?} unescaped: {text:?}");
    }
    text
}

/// A copy of `escape::is_unsafe_char` (private there): what must not reach a terminal raw.
fn is_unsafe_char(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{061c}'
        | '\u{200b}'..='\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{2069}'
        | '\u{feff}'
    )
}

fn check_json(report: &Report, stamp: &Stamp) {
    let mut out = Vec::new();
    json::write_report(&mut out, report, stamp).expect("writing to a Vec");
    if out.is_empty() {
        return;
    }
    assert_eq!(out.last(), Some(&b'\n'), "unterminated JSON line");
    let line = &out[..out.len() - 1];
    assert!(!line.contains(&b'\n'), "one report, several JSON lines");
    match serde_json::from_slice::<serde_json::Value>(line) {
        Ok(value) => assert!(
            value.get("type").is_some_and(serde_json::Value::is_string),
            "a JSON record without a type: {value}"
        ),
        Err(error) => panic!(
            "JSON does not parse ({error}): {}",
            String::from_utf8_lossy(line)
        ),
    }
}
