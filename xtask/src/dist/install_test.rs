//! The install test: the packages used the way a user would, in a clean Debian 12 root
//! with no Rust toolchain (see `chroot`). `dpkg -i` must find every dependency there;
//! then the binary, its man pages, bash completion and systemd unit are checked, a real
//! trace runs (launch mode: sigtrace loads its probes, traces the command and exits with
//! its status, so nothing stays attached), the tarball's binary runs, and the package
//! purges cleanly. Each step prints its time; the first failure ends the test, and the
//! root then stays (unmounted) for a look.

use std::{
    fs,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{
    Artifacts,
    chroot::{self, Root},
    seconds, step,
};
use crate::vm::target_dir;

/// Limit for a step in the root; loading the probes takes well under a second here.
const LIMIT: Duration = Duration::from_secs(180);

type Check = fn(&Root, &Artifacts) -> anyhow::Result<()>;

const CHECKS: [(&str, Check); 10] = [
    ("dpkg -i the package (no missing dependencies)", install),
    ("sigtrace --version", version),
    ("sigtrace mask 0x2", mask),
    ("man pages render (man -l)", man_pages),
    ("bash completion completes --pid", bash_completion),
    ("systemd-analyze verify sigtrace.service", verify_unit),
    ("a real trace: SIGUSR1 generated and delivered", trace),
    (
        "the unit's ExecStart: metrics served, HUP reopens",
        service_arguments,
    ),
    ("the tarball's bin/sigtrace --version", tarball),
    ("dpkg --purge sigtrace", purge),
];

/// Runs the test; returns the number of checks that passed (all of them, or an error).
pub fn run(artifacts: &Artifacts) -> anyhow::Result<u64> {
    let started = Instant::now();
    let cache = target_dir()?.join("dist-test");
    let pristine = step(
        "a clean Debian 12 root (debootstrap once, then cached)",
        || chroot::pristine(&cache),
    )?;
    let mut root = step("unpack a fresh root", || {
        Root::unpack(&pristine, &cache.join("root"))
    })?;
    // Kept for a look unless every check passes.
    root.remove = false;
    step("mount /proc, /sys, /dev in it", || root.mount_system())?;
    let mut passed = 0;
    for (name, check) in CHECKS {
        step(name, || check(&root, artifacts))?;
        passed += 1;
    }
    root.remove = true;
    step("unmount and remove the root", || {
        root.unmount()?;
        drop(root);
        Ok(())
    })?;
    eprintln!(
        "xtask dist: install test passed: {passed} checks in {}",
        seconds(started.elapsed())
    );
    Ok(passed)
}

/// Copies `file` into the root's /tmp; returns its path there.
fn copy_in(root: &Root, file: &Path) -> anyhow::Result<String> {
    let name = file
        .file_name()
        .context("a package file without a name")?
        .to_string_lossy()
        .into_owned();
    let inside = root.path().join("tmp").join(&name);
    fs::copy(file, &inside)
        .with_context(|| format!("cannot copy {} into the root", file.display()))?;
    Ok(format!("/tmp/{name}"))
}

fn install(root: &Root, artifacts: &Artifacts) -> anyhow::Result<()> {
    let deb = copy_in(root, &artifacts.deb)?;
    root.sh(&format!("dpkg -i {deb}"), LIMIT)?.ok("dpkg -i")?;
    let status = root
        .sh("dpkg-query -W -f='${Status} ${Version}' sigtrace", LIMIT)?
        .ok("dpkg-query")?;
    let want = format!("install ok installed {}", artifacts.version);
    if status.stdout.trim() != want {
        bail!("dpkg says {:?}, not {want:?}", status.stdout.trim());
    }
    Ok(())
}

fn version(root: &Root, artifacts: &Artifacts) -> anyhow::Result<()> {
    let ran = root
        .sh("sigtrace --version", LIMIT)?
        .ok("sigtrace --version")?;
    let want = format!("sigtrace {}", artifacts.version);
    if ran.stdout.trim() != want {
        bail!("it printed {:?}, not {want:?}", ran.stdout.trim());
    }
    Ok(())
}

fn mask(root: &Root, _: &Artifacts) -> anyhow::Result<()> {
    let ran = root.sh("sigtrace mask 0x2", LIMIT)?.ok("sigtrace mask")?;
    if !ran.stdout.lines().any(|l| l.trim() == "SIGINT") {
        bail!("0x2 is SIGINT, but it printed:\n{}", ran.stdout);
    }
    Ok(())
}

fn man_pages(root: &Root, _: &Artifacts) -> anyhow::Result<()> {
    // Every page renders without a groff warning, and man finds the main one by name.
    let pages = root
        .sh("ls /usr/share/man/man1/ | grep '^sigtrace'", LIMIT)?
        .ok("listing the man pages")?;
    let pages: Vec<&str> = pages.stdout.lines().collect();
    for page in [
        "sigtrace.1.gz",
        "sigtrace-mask.1.gz",
        "sigtrace-completions.1.gz",
    ] {
        if !pages.contains(&page) {
            bail!("no {page} among the installed pages: {pages:?}");
        }
    }
    for page in &pages {
        let ran = root
            .sh(
                &format!("MANWIDTH=80 man -l -P cat /usr/share/man/man1/{page}"),
                LIMIT,
            )?
            .ok(&format!("man -l {page}"))?;
        if !ran.stderr.trim().is_empty() || ran.stdout.trim().is_empty() {
            bail!("man -l {page} rendered with complaints:\n{}", ran.stderr);
        }
        if *page == "sigtrace.1.gz"
            && !(ran.stdout.contains("--pid") && ran.stdout.contains("SYNOPSIS"))
        {
            bail!("sigtrace(1) has no SYNOPSIS or --pid:\n{}", ran.stdout);
        }
    }
    let found = root.sh("man -w sigtrace", LIMIT)?.ok("man -w sigtrace")?;
    if found.stdout.trim() != "/usr/share/man/man1/sigtrace.1.gz" {
        bail!("man -w sigtrace found {:?}", found.stdout.trim());
    }
    eprintln!("xtask dist:   {} pages: {}", pages.len(), pages.join(" "));
    Ok(())
}

fn bash_completion(root: &Root, _: &Artifacts) -> anyhow::Result<()> {
    // The function clap_complete generates is _sigtrace, called as bash calls it
    // (command, word, previous word).
    let script = r#"
. /usr/share/bash-completion/completions/sigtrace
complete_line() {
    COMP_WORDS=(sigtrace "$1"); COMP_CWORD=1; COMPREPLY=()
    _sigtrace sigtrace "$1" sigtrace
    printf '%s\n' "${COMPREPLY[@]}"
}
complete_line --pi
echo ---
complete_line m
"#;
    fs::write(root.path().join("tmp/complete.bash"), script)
        .context("cannot write the completion script into the root")?;
    let ran = root
        .sh("bash /tmp/complete.bash", LIMIT)?
        .ok("bash completion")?;
    let (flags, subcommands) = ran
        .stdout
        .split_once("---\n")
        .context("the completion script printed no separator")?;
    if flags.lines().collect::<Vec<_>>() != ["--pid"] {
        bail!("`sigtrace --pi<TAB>` completed to {flags:?}, not --pid");
    }
    // `man-pages` is hidden: only `mask` starts with m.
    if subcommands.lines().collect::<Vec<_>>() != ["mask"] {
        bail!("`sigtrace m<TAB>` completed to {subcommands:?}, not mask");
    }
    for file in [
        "/usr/share/zsh/vendor-completions/_sigtrace",
        "/usr/share/fish/vendor_completions.d/sigtrace.fish",
    ] {
        root.sh(&format!("test -s {file}"), LIMIT)?
            .ok(&format!("{file} is missing or empty; test -s"))?;
    }
    Ok(())
}

fn verify_unit(root: &Root, _: &Artifacts) -> anyhow::Result<()> {
    // verify checks the commands the unit runs, its documentation (man sigtrace) and every
    // setting; it warns on stderr and may still exit 0, so any output is a failure.
    let unit = "/lib/systemd/system/sigtrace.service";
    let ran = root.sh(&format!("systemd-analyze verify {unit}"), LIMIT)?;
    if !ran.status.success() || !ran.stderr.trim().is_empty() || !ran.stdout.trim().is_empty() {
        bail!(
            "systemd-analyze verify ({}):\n{}{}",
            ran.status,
            ran.stdout,
            ran.stderr
        );
    }
    // For the record: systemd's own rating of the sandbox (lower is better).
    let security = root.sh(
        &format!("systemd-analyze security --offline=true --no-pager {unit}"),
        LIMIT,
    )?;
    if let Some(line) = security
        .stdout
        .lines()
        .find(|l| l.contains("Overall exposure level"))
    {
        // "→ Overall exposure level for sigtrace.service: 1.7 OK" ("->" in the C locale).
        let line = line.trim().trim_start_matches("→").trim_start_matches("->");
        eprintln!("xtask dist:   {}", line.trim());
    }
    Ok(())
}

fn trace(root: &Root, _: &Artifacts) -> anyhow::Result<()> {
    // exec: the process the test stops on a timeout is sigtrace itself.
    let ran = root
        .sh(
            "exec sigtrace --format json -o /tmp/trace.jsonl -- \
             sh -c 'trap \"echo got USR1\" USR1; kill -USR1 $$; exit 0'",
            LIMIT,
        )?
        .ok("sigtrace -- sh -c 'kill -USR1 $$'")?;
    if !ran.stdout.contains("got USR1") {
        bail!("the traced command's handler did not run: {}", ran.stdout);
    }
    if let Some(ready) = ran
        .stderr
        .lines()
        .find(|l| l.starts_with("sigtrace: ready"))
    {
        eprintln!("xtask dist:   {ready}");
    }
    let path = root.path().join("tmp/trace.jsonl");
    let text =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("a line of the trace is not JSON")?;
    let is_usr1 =
        |r: &serde_json::Value, kind: &str| r["type"] == kind && r["signal"]["name"] == "SIGUSR1";
    let generated = records
        .iter()
        .find(|r| {
            is_usr1(r, "generate") && r["sender"]["comm"] == "sh" && r["target"]["comm"] == "sh"
        })
        .with_context(|| format!("no SIGUSR1 sent by sh to itself in the trace:\n{text}"))?;
    let delivered = records
        .iter()
        .find(|r| {
            is_usr1(r, "deliver") && r["outcome"] == "handled" && r["generation"] == generated["id"]
        })
        .with_context(|| format!("no handled delivery of that SIGUSR1 in the trace:\n{text}"))?;
    eprintln!(
        "xtask dist:   {} records; SIGUSR1 sh[{}] → sh: {}; handled {} ns later",
        records.len(),
        generated["sender"]["pid"],
        generated["result"]["name"].as_str().unwrap_or("?"),
        delivered["latency_ns"]
    );
    Ok(())
}

/// sigtrace run as the unit's ExecStart runs it, with /etc/default/sigtrace's arguments (as
/// root here: the unit's sandbox is systemd's, which a chroot has no PID 1 for): it must
/// start, serve its metrics, write its file, reopen it on the reload's SIGHUP after a
/// logrotate-style move, and stop cleanly on SIGINT.
fn service_arguments(root: &Root, _: &Artifacts) -> anyhow::Result<()> {
    // bash for /dev/tcp (the root has no HTTP client); every signal goes to sigtrace, our
    // own child, by pid, and the trap stops it whatever fails (its probes are the host's).
    let script = r#"exec bash -c '
        set -u
        . /etc/default/sigtrace
        log=$(printf "%s\n" $SIGTRACE_ARGS | grep -A1 -x -- -o | tail -1)
        mkdir -p "${log%/*}"
        start=$(sed -n "s/^ExecStart=//p" /lib/systemd/system/sigtrace.service)
        # exec: $! is sigtrace itself, which every signal below is for.
        (eval "exec $start") 2>/tmp/service.err &
        pid=$!
        trap "kill -INT $pid 2>/dev/null" EXIT
        for _ in $(seq 300); do grep -q "sigtrace: ready" /tmp/service.err && break; sleep 0.1; done
        grep -q "sigtrace: ready" /tmp/service.err || { echo "not ready"; exit 1; }
        addr=$(printf "%s\n" $SIGTRACE_ARGS | grep -A1 -x -- --metrics | tail -1)
        exec 3<>/dev/tcp/${addr%:*}/${addr##*:}
        printf "GET /metrics HTTP/1.0\r\n\r\n" >&3
        cat <&3 >/tmp/metrics.txt
        mv "$log" "$log.rotated"
        kill -HUP $pid
        for _ in $(seq 50); do [ -e "$log" ] && break; sleep 0.1; done
        [ -e "$log" ] || { echo "SIGHUP did not reopen $log"; exit 1; }
        kill -0 $pid || { echo "SIGHUP ended it"; exit 1; }
        kill -INT $pid; wait $pid; echo "sigtrace exited $?"
    '"#;
    let ran = root.sh(script, LIMIT)?.ok("sigtrace $SIGTRACE_ARGS")?;
    if !ran.stdout.contains("sigtrace exited 0") {
        bail!(
            "sigtrace with the service's arguments: {}{}",
            ran.stdout,
            ran.stderr
        );
    }
    let metrics = fs::read_to_string(root.path().join("tmp/metrics.txt"))
        .context("cannot read the scraped metrics")?;
    if !metrics
        .lines()
        .next()
        .is_some_and(|status| status.ends_with(" 200 OK"))
        || !metrics.contains("# TYPE sigtrace_records_total counter")
    {
        bail!("the metrics endpoint answered:\n{metrics}");
    }
    for file in ["signals.jsonl", "signals.jsonl.rotated"] {
        let log = root.path().join("var/log/sigtrace").join(file);
        fs::metadata(&log).with_context(|| format!("no {} after the run", log.display()))?;
    }
    Ok(())
}

fn tarball(root: &Root, artifacts: &Artifacts) -> anyhow::Result<()> {
    let tarball = copy_in(root, &artifacts.tarball)?;
    let top = &artifacts.tarball_top;
    let files = [
        "bin/sigtrace",
        "share/man/man1/sigtrace.1.gz",
        "share/completions/bash/sigtrace",
        "share/completions/zsh/_sigtrace",
        "share/completions/fish/sigtrace.fish",
        "systemd/sigtrace.service",
        "systemd/sigtrace.default",
        "systemd/logrotate",
        "README.md",
        "copyright",
    ];
    let tests: Vec<String> = files.iter().map(|f| format!("test -s {top}/{f}")).collect();
    let ran = root
        .sh(
            &format!(
                "set -e; cd /opt; tar -xzf {tarball}; {}; {top}/bin/sigtrace --version",
                tests.join("; ")
            ),
            LIMIT,
        )?
        .ok("unpacking the tarball and running its binary")?;
    let want = format!("sigtrace {}", artifacts.version);
    if ran.stdout.trim() != want {
        bail!("it printed {:?}, not {want:?}", ran.stdout.trim());
    }
    Ok(())
}

fn purge(root: &Root, _: &Artifacts) -> anyhow::Result<()> {
    root.sh("dpkg --purge sigtrace", LIMIT)?
        .ok("dpkg --purge")?;
    root.sh(
        "for f in /usr/bin/sigtrace /etc/default/sigtrace /lib/systemd/system/sigtrace.service; do \
         if [ -e $f ]; then echo \"$f is still there\"; exit 1; fi; done",
        LIMIT,
    )?
    .ok("after the purge")?;
    Ok(())
}
