//! End-to-end: `--metrics`. A real Prometheus (Debian's package; `cargo xtask test` installs
//! it when missing) scrapes sigtrace on loopback while known signals are sent; its HTTP API
//! must give the exact counts, and the example alert rules must fire on a SIGKILL. promtool
//! checks the exposition, the rules and the sample configuration.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::util::*;

/// The example rules and scrape configuration the README shows.
fn dist_prometheus(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../dist/prometheus")
        .join(file)
}

/// Whether Prometheus and promtool are here; without them the test skips loudly, except
/// under CI=true.
fn prometheus_installed(test: &str) -> bool {
    let found = ["prometheus", "promtool"].iter().all(|tool| {
        Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if found {
        return true;
    }
    let why = format!(
        "{test}: needs prometheus and promtool (Debian's `prometheus` package; `cargo xtask test` installs it)"
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why}, and CI=true does not allow skipping");
    }
    eprintln!("\n*** SKIPPING {why} ***\n");
    false
}

/// A port nothing listens on now (the OS's choice; taken again by the caller at once).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// GET `url`, the body as text; None while the server is not answering (yet).
fn get(url: &str, accept: Option<&str>) -> Option<String> {
    let mut request = ureq::get(url);
    if let Some(accept) = accept {
        request = request.header("Accept", accept);
    }
    request.call().ok()?.body_mut().read_to_string().ok()
}

/// One sample's value from Prometheus's text format: the line that starts with `series`.
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// Polls until `check` gives Some, or fails with the last thing seen.
fn poll<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let timeout = scaled(timeout);
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what}: not within {timeout:?}; last seen: {last}")
            }
            Err(_) => thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// An instant query's single value, from Prometheus's HTTP API.
fn query(prometheus: &str, promql: &str) -> Result<f64, String> {
    let url = format!("{prometheus}/api/v1/query");
    let body = ureq::get(&url)
        .query("query", promql)
        .call()
        .map_err(|e| e.to_string())?
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    let reply: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    let results = reply["data"]["result"]
        .as_array()
        .ok_or_else(|| body.clone())?;
    match results.as_slice() {
        [one] => one["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| body.clone()),
        _ => Err(format!("{} series for {promql}: {body}", results.len())),
    }
}

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write as _;
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin.unwrap_or("").as_bytes());
    }
    let out = child.wait_with_output().expect("promtool's output");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn prometheus_scrapes_the_exact_counts_and_the_sigkill_alert_fires() {
    let test = "prometheus_scrapes_the_exact_counts_and_the_sigkill_alert_fires";
    if !bpf_allowed(test) || !prometheus_installed(test) {
        return;
    }
    let _beside = beside_others();
    let mut trap = spawn_ready(&mut perl(TRAP_PERL));
    let mut sleeper = spawn_ready(Command::new("sh").args(["-c", "echo ready; exec sleep 600"]));
    let metrics_port = free_port();
    let metrics = format!("127.0.0.1:{metrics_port}");
    let pids = format!("{},{}", trap.pid(), sleeper.pid());
    let trace = Trace::start(&[
        "--quiet",
        "--metrics",
        &metrics,
        "--metrics-labels",
        "comm",
        "--pid",
        &pids,
    ]);

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: sigtrace\n    static_configs:\n      - targets: [\"{metrics}\"]\n",
            dist_prometheus("alerts.yml").display()
        ),
    )
    .expect("write the configuration");
    let web = format!("127.0.0.1:{}", free_port());
    let prometheus_url = format!("http://{web}");
    let _prometheus = Owned::from_child(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    // Scraping: the target is up (sigtrace answers) before any signal is sent, so the
    // counters' first samples are seen.
    poll(
        "prometheus scraping sigtrace",
        Duration::from_secs(60),
        || {
            query(&prometheus_url, "up{job=\"sigtrace\"}").and_then(|up| {
                if up == 1.0 {
                    Ok(())
                } else {
                    Err(format!("up = {up}"))
                }
            })
        },
    );

    // Five SIGUSR1s, each handled before the next (so none merges), three SIGUSR2s (ignored
    // at generation), then SIGTERM (perl's default: death); SIGKILL for the sleeper.
    for _ in 0..5 {
        trap.signal(Signal::SIGUSR1);
        trap.wait_line("got USR1", Duration::from_secs(10));
    }
    for _ in 0..3 {
        trap.signal(Signal::SIGUSR2);
    }
    trap.signal(Signal::SIGTERM);
    let status = trap.wait_exit(Duration::from_secs(10));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(15)
    );
    sleeper.signal(Signal::SIGKILL);
    sleeper.wait_exit(Duration::from_secs(10));

    let expected: [(&str, f64); 8] = [
        (
            r#"sigtrace_signals_generated_total{signal="SIGUSR1",origin="user",code="SI_USER",result="delivered",comm="perl"}"#,
            5.0,
        ),
        (
            r#"sigtrace_signals_generated_total{signal="SIGUSR2",origin="user",code="SI_USER",result="ignored",comm="perl"}"#,
            3.0,
        ),
        (
            r#"sigtrace_signals_delivered_total{signal="SIGUSR1",outcome="handled",comm="perl"}"#,
            5.0,
        ),
        (
            r#"sigtrace_signals_delivered_total{signal="SIGTERM",outcome="terminated",comm="perl"}"#,
            1.0,
        ),
        (
            r#"sigtrace_process_deaths_total{signal="SIGTERM",core_dumped="false",comm="perl"}"#,
            1.0,
        ),
        (
            r#"sigtrace_process_deaths_total{signal="SIGKILL",core_dumped="false",comm="sleep"}"#,
            1.0,
        ),
        ("sigtrace_events_lost_total", 0.0),
        (
            r#"sigtrace_records_dropped_total{reason="table_full"}"#,
            0.0,
        ),
    ];
    // First from sigtrace itself (the classic text format, as curl or promtool get it)...
    let endpoint = format!("http://{metrics}/metrics");
    let exposition = poll("sigtrace's own counts", Duration::from_secs(20), || {
        let text = get(&endpoint, None).ok_or("no answer")?;
        let wrong: Vec<String> = expected
            .iter()
            .filter(|(series, want)| sample(&text, series) != Some(*want))
            .map(|(series, want)| format!("{series} = {:?}, want {want}", sample(&text, series)))
            .collect();
        if wrong.is_empty() {
            Ok(text)
        } else {
            Err(format!("{wrong:?}\n{text}"))
        }
    });
    let (valid, report) = promtool(&["check", "metrics"], Some(&exposition));
    assert!(valid, "promtool check metrics: {report}\n{exposition}");
    let openmetrics = get(
        &endpoint,
        Some("application/openmetrics-text;version=1.0.0"),
    )
    .expect("the OpenMetrics exposition");
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");

    // ...then from Prometheus, which scraped the OpenMetrics form.
    for (series, want) in expected {
        poll(
            &format!("prometheus: {series}"),
            Duration::from_secs(30),
            || {
                query(&prometheus_url, series).and_then(|got| {
                    if got == want {
                        Ok(())
                    } else {
                        Err(format!("{got}, want {want}"))
                    }
                })
            },
        );
    }
    // The example rule fires for the SIGKILLed sleeper, and only for it.
    poll(
        "the ProcessSIGKILLed alert",
        Duration::from_secs(30),
        || {
            let body = get(&format!("{prometheus_url}/api/v1/alerts"), None).ok_or("no answer")?;
            let reply: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
            let firing: Vec<&Value> = reply["data"]["alerts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|a| {
                    a["labels"]["alertname"] == "ProcessSIGKILLed" && a["state"] == "firing"
                })
                .collect();
            match firing.as_slice() {
                [one] if one["labels"]["comm"] == "sleep" => Ok(()),
                _ => Err(body),
            }
        },
    );

    let (status, _, stderr) = trace.stop_with(Signal::SIGINT);
    assert!(status.success(), "sigtrace exited {status:?}; {stderr:?}");
    assert!(
        stderr.iter().any(|l| l.contains(" 0 lost")),
        "the end-of-run line: {stderr:?}"
    );
}

#[test]
fn the_endpoint_answers_only_for_metrics_and_a_taken_port_is_refused() {
    let test = "the_endpoint_answers_only_for_metrics_and_a_taken_port_is_refused";
    if !bpf_allowed(test) {
        return;
    }
    let _beside = beside_others();
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("address").to_string();
    let out = Command::new(sigtrace_bin())
        .args(["--quiet", "--metrics", &addr])
        .output()
        .expect("run sigtrace");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains(&format!("--metrics {addr}: cannot listen there")),
        "{stderr}"
    );
    drop(taken);

    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    // Signal 63 only: nothing here sends it, so the counts stay put.
    let trace = Trace::start(&["--quiet", "--metrics", &metrics, "--signal", "63"]);
    let base = format!("http://{metrics}");
    let status = |path: &str| match ureq::get(&format!("{base}{path}")).call() {
        Ok(response) => response.status().as_u16(),
        Err(ureq::Error::StatusCode(code)) => code,
        Err(e) => panic!("GET {path}: {e}"),
    };
    assert_eq!(status("/metrics"), 200);
    assert_eq!(status("/"), 200);
    assert_eq!(status("/nothing-here"), 404);
    let text = get(&format!("{base}/metrics"), None).expect("metrics");
    assert_eq!(
        sample(&text, "sigtrace_ring_buffer_size_bytes"),
        Some(4194304.0),
        "{text}"
    );
    assert!(
        !text.contains("# EOF"),
        "the classic format has no EOF: {text}"
    );
    let (status, _, stderr) = trace.stop_with(Signal::SIGINT);
    assert!(status.success(), "{stderr:?}");
}

#[test]
fn the_readme_shows_the_checked_rules_and_configuration() {
    let test = "the_readme_shows_the_checked_rules_and_configuration";
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    for file in ["alerts.yml", "prometheus.yml"] {
        let path = dist_prometheus(file);
        let text = std::fs::read_to_string(&path).expect("the example file");
        assert!(
            readme.contains(&text),
            "README.md must show dist/prometheus/{file} as it is"
        );
        if !prometheus_installed(test) {
            continue;
        }
        let check = if file == "alerts.yml" {
            "rules"
        } else {
            "config"
        };
        let shown = path.to_string_lossy();
        let (valid, report) = promtool(&["check", check, &shown], None);
        assert!(valid, "promtool check {check} {file}: {report}");
    }
}
