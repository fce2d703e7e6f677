use super::*;

/// The scenario's reports counted, encoded in `format`.
fn exposition(options: &MetricsOptions, format: Exposition) -> String {
    let (mut metrics, registry) = Metrics::new(options, 1 << 22);
    for report in crate::output::tests::scenario() {
        metrics.observe(&report);
    }
    metrics.set_totals(40, 2, &[0, 0, 5], 0);
    metrics.set_ring_used(4096);
    metrics.set_ring_used(1024);
    encode(&registry, format).expect("encodes")
}

fn plain() -> MetricsOptions {
    MetricsOptions {
        labels: Vec::new(),
        label_limit: 100,
    }
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn every_report_counts_once_under_bounded_labels() {
    let text = exposition(&plain(), Exposition::PrometheusText);
    let count = |series: &str| value(&text, series).unwrap_or_else(|| panic!("{series}\n{text}"));
    assert_eq!(
        count(
            r#"sigtrace_signals_generated_total{signal="SIGTERM",origin="user",code="SI_USER",result="delivered"}"#
        ),
        2.0
    );
    assert_eq!(
        count(
            r#"sigtrace_signals_generated_total{signal="SIGTERM",origin="user",code="SI_USER",result="ignored"}"#
        ),
        1.0
    );
    assert_eq!(
        count(r#"sigtrace_signals_delivered_total{signal="SIGUSR1",outcome="handled"}"#),
        1.0
    );
    // The SIGKILL a fatal SIGTERM became counts under SIGTERM, as the process's death does.
    assert_eq!(
        count(r#"sigtrace_signals_delivered_total{signal="SIGTERM",outcome="terminated"}"#),
        1.0
    );
    assert!(!text.contains(r#"signal="SIGKILL""#), "{text}");
    assert_eq!(
        count(r#"sigtrace_process_deaths_total{signal="SIGTERM",core_dumped="false"}"#),
        1.0
    );
    assert_eq!(
        count(r#"sigtrace_fanouts_total{signal="SIGTERM",source="kill"}"#),
        1.0
    );
    assert_eq!(count("sigtrace_records_total"), 40.0);
    assert_eq!(count("sigtrace_events_lost_total"), 2.0);
    assert_eq!(
        count(r#"sigtrace_records_dropped_total{reason="table_full"}"#),
        5.0
    );
    assert_eq!(
        count(r#"sigtrace_records_dropped_total{reason="read_failed"}"#),
        0.0
    );
    assert_eq!(count("sigtrace_ring_buffer_size_bytes"), 4194304.0);
    assert_eq!(count("sigtrace_ring_buffer_used_bytes"), 1024.0);
    assert_eq!(count("sigtrace_ring_buffer_used_max_bytes"), 4096.0);
    // Generations: one sample per signal of the scenario, adding up to its seven.
    let generated: f64 = text
        .lines()
        .filter(|l| l.starts_with("sigtrace_signals_generated_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(generated, 7.0, "{text}");
    assert!(!text.contains("pid"), "no pid label: {text}");
}

#[test]
fn totals_only_go_up() {
    let (mut metrics, registry) = Metrics::new(&plain(), 4096);
    metrics.set_totals(10, 1, &[0, 0, 0], 0);
    // A read that failed (0) must not lower a counter.
    metrics.set_totals(0, 0, &[0, 0, 0], 0);
    let text = encode(&registry, Exposition::PrometheusText).expect("encodes");
    assert_eq!(value(&text, "sigtrace_records_total"), Some(10.0));
    assert_eq!(value(&text, "sigtrace_events_lost_total"), Some(1.0));
}

#[test]
fn asked_for_labels_name_the_recipient_and_overflow_past_the_limit() {
    let options = MetricsOptions {
        labels: vec![RecipientLabel::Comm, RecipientLabel::Unit],
        label_limit: 2,
    };
    let text = exposition(&options, Exposition::PrometheusText);
    // sh, then bash: the limit; perl, sleep and python3 come later and overflow.
    assert!(
        text.contains(r#"sigtrace_signals_generated_total{signal="SIGUSR1",origin="user",code="SI_USER",result="delivered",comm="sh"}"#),
        "{text}"
    );
    assert!(text.contains(r#"comm="bash""#), "{text}");
    assert!(text.contains(r#"comm="_overflow""#), "{text}");
    assert!(!text.contains(r#"comm="perl""#), "{text}");
    // The docker scope of the scenario's SIGALRM, as its unit.
    assert!(text.contains(r#"unit="docker-4e1f"#), "{text}");
    // The death carries the labels of the delivery that killed it.
    assert!(
        text.contains(r#"sigtrace_process_deaths_total{signal="SIGTERM",core_dumped="false",comm="_overflow"}"#),
        "{text}"
    );
}

#[test]
fn the_two_formats_differ_only_where_they_must() {
    let openmetrics = exposition(&plain(), Exposition::OpenMetrics);
    let classic = exposition(&plain(), Exposition::PrometheusText);
    assert!(openmetrics.ends_with("# EOF\n"));
    assert!(openmetrics.contains("# TYPE sigtrace_signals_generated counter\n"));
    assert!(!classic.contains("# EOF"));
    assert!(classic.contains("# TYPE sigtrace_signals_generated_total counter\n"));
    assert!(classic.contains("# HELP sigtrace_signals_generated_total Signals generated"));
    // Gauges keep their names; samples are the same lines in both.
    assert!(classic.contains("# TYPE sigtrace_ring_buffer_size_bytes gauge\n"));
    // In any order: a family keeps its series in a hash map.
    let samples = |text: &str| -> Vec<String> {
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(samples(&openmetrics), samples(&classic));
}

#[test]
fn label_values_are_escaped() {
    let mut capped = Capped::default();
    let odd = capped.value("a\"b\\c\nd", 10);
    let (metrics, registry) = Metrics::new(&plain(), 4096);
    let labels = GenerateLabels {
        signal: SignalName(10),
        origin: "user",
        code: "SI_USER",
        result: "delivered",
        recipient: Recipient {
            comm: Some(odd),
            ..Recipient::default()
        },
    };
    metrics.generated.get_or_create(&labels).inc();
    let text = encode(&registry, Exposition::PrometheusText).expect("encodes");
    assert!(text.contains(r#"comm="a\"b\\c\nd""#), "{text}");
}

fn correlated(events: Vec<crate::events::Event>) -> Vec<Report> {
    let mut correlator = crate::correlate::Correlator::new();
    let mut reports = Vec::new();
    for event in events {
        correlator.push(event, &mut reports);
    }
    correlator.flush(&mut reports);
    reports
}

#[test]
fn a_process_a_signal_kills_counts_once_and_a_plain_exit_not_at_all() {
    use crate::{
        events::Event,
        output::tests::{deliver, exit, task},
    };
    let crasher = task(50, b"crasher");
    let crasher_thread = sigtrace_common::TaskIds { tid: 51, ..crasher };
    let quitter = task(60, b"quitter");
    let quitter_thread = sigtrace_common::TaskIds { tid: 61, ..quitter };
    let core_dumped = num::SIGSEGV | 0x80;
    let reports = correlated(vec![
        // One thread takes its SIGSEGV; the core dump sends the other SIGKILL.
        Event::Deliver(deliver(1, crasher, num::SIGSEGV, 0, 0)),
        Event::Deliver(deliver(2, crasher_thread, num::SIGKILL, 0, core_dumped)),
        Event::Exit(exit(3, crasher, core_dumped, &[])),
        // exit_group(0): the other thread's SIGKILL, no signal killing anything.
        Event::Deliver(deliver(4, quitter_thread, num::SIGKILL, 0, 0)),
        Event::Exit(exit(5, quitter, 0, &[])),
    ]);
    let (mut metrics, registry) = Metrics::new(&plain(), 4096);
    for report in &reports {
        metrics.observe(report);
    }
    let text = encode(&registry, Exposition::PrometheusText).expect("encodes");
    assert_eq!(
        value(
            &text,
            r#"sigtrace_signals_delivered_total{signal="SIGSEGV",outcome="terminated"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert!(!text.contains(r#"signal="SIGKILL""#), "{text}");
    assert_eq!(
        value(
            &text,
            r#"sigtrace_process_deaths_total{signal="SIGSEGV",core_dumped="true"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(metrics.table_sizes(), [("metrics_dying", 0)]);
}

#[test]
fn a_dying_process_whose_exit_never_comes_is_forgotten() {
    use crate::{
        events::Event,
        output::tests::{deliver, task},
    };
    let reports = correlated(vec![Event::Deliver(deliver(
        1,
        task(70, b"lost"),
        num::SIGTERM,
        0,
        0,
    ))]);
    let (mut metrics, _registry) = Metrics::new(&plain(), 4096);
    for report in &reports {
        metrics.observe(report);
    }
    let delivered_ns = crate::output::tests::at(1);
    metrics.set_totals(0, 1, &[0, 0, 0], delivered_ns + DYING_KEEP_NS - 1);
    assert_eq!(metrics.table_sizes(), [("metrics_dying", 1)]);
    metrics.set_totals(0, 1, &[0, 0, 0], delivered_ns + DYING_KEEP_NS);
    assert_eq!(metrics.table_sizes(), [("metrics_dying", 0)]);
}
