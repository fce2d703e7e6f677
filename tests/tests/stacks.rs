//! End-to-end: --stack. A small C program, built here with frame pointers, sends SIGTERM
//! from a named function; sigtrace must name that code in the sender's user stack, and the
//! kill(2) path in its kernel stack, without its own probe's frames.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use serde_json::Value;

use crate::util::*;

const WAIT: Duration = Duration::from_secs(10);

/// Sends SIGTERM to argv[1] from deliver_the_news (through send_term, which a frame-pointer
/// unwinder cannot see: kill(3) keeps no frame of its own), then stays alive a while so
/// that its maps can still be read.
const SENDER_C: &str = r#"
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
__attribute__((noinline)) static void send_term(pid_t target) { kill(target, SIGTERM); }
__attribute__((noinline)) void deliver_the_news(pid_t target) { send_term(target); sleep(3); }
int main(int argc, char **argv) { deliver_the_news((pid_t)atoi(argv[1])); return 0; }
"#;

/// The sender, compiled into `dir`; None (said loudly) without a C compiler, except under
/// CI=true where that is a failure.
fn build_sender(dir: &Path) -> Option<PathBuf> {
    let source = dir.join("sender.c");
    let binary = dir.join("sender");
    std::fs::write(&source, SENDER_C).expect("write sender.c");
    let built = Command::new("cc")
        .args(["-O0", "-fno-omit-frame-pointer", "-o"])
        .arg(&binary)
        .arg(&source)
        .status();
    match built {
        Ok(status) if status.success() => Some(binary),
        other => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "no C compiler to build the stack test's sender: {other:?}"
            );
            eprintln!("\n*** SKIPPING the --stack test: cc failed ({other:?}) ***\n");
            None
        }
    }
}

fn symbols(side: &Value) -> Vec<&str> {
    side.as_array()
        .map(|frames| frames.iter().filter_map(|f| f["symbol"].as_str()).collect())
        .unwrap_or_default()
}

#[test]
fn the_senders_functions_are_named() {
    if !bpf_allowed("the_senders_functions_are_named") {
        return;
    }
    let _beside = beside_others();
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(sender) = build_sender(dir.path()) else {
        return;
    };
    let mut target = spawn_ready(&mut perl(
        r#"$| = 1; $SIG{TERM} = sub { print "got TERM\n" }; print "ready\n"; sleep 1 while 1;"#,
    ));
    let pid = target.pid().to_string();
    let mut json = Trace::start(&["--format", "json", "--stack", "--target", &pid]);
    let text = Trace::start(&["--no-time", "--stack", "--target", &pid]);
    let mut seen = Vec::new();
    let mut run = Command::new(&sender)
        .arg(&pid)
        .spawn()
        .expect("start the sender");
    target.wait_line("got TERM", WAIT);
    json.wait_for(&mut seen, WAIT, |r| {
        r["type"] == "generate" && signal_name(r) == "SIGTERM"
    });
    std::thread::sleep(scaled(Duration::from_millis(300)));
    let records = json.stop_json(seen);
    let (status, lines, err) = text.stop_with(nix::sys::signal::Signal::SIGINT);
    let _ = run.wait();
    assert!(status.success(), "{err:?}");

    let term = of_type(&records, "generate")
        .into_iter()
        .find(|g| signal_name(g) == "SIGTERM")
        .expect("the SIGTERM");
    let stack = &term["sender_stack"];
    let user = symbols(&stack["user"]);
    // Innermost first: kill, then (send_term unseen) deliver_the_news, then main.
    let at = |name: &str| user.iter().position(|s| *s == name);
    assert!(
        matches!((at("deliver_the_news"), at("main")), (Some(a), Some(b)) if a < b),
        "{stack:#}"
    );
    assert_eq!(stack["user_missing"], Value::Null);
    assert!(
        stack["user"][0]["module"]
            .as_str()
            .is_some_and(|m| m.contains("libc")),
        "kill(3) is libc's: {stack:#}"
    );
    let kernel = symbols(&stack["kernel"]);
    assert!(kernel.iter().any(|s| s.contains("sys_kill")), "{kernel:?}");
    assert!(
        !kernel[0].starts_with("bpf_"),
        "the probe's frames are left out: {kernel:?}"
    );

    let user_line = lines
        .iter()
        .find(|l| l.starts_with("    user   "))
        .unwrap_or_else(|| panic!("no user stack line in {lines:#?}"));
    assert!(user_line.contains("deliver_the_news ← main"), "{user_line}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("    kernel ") && l.contains("sys_kill")),
        "{lines:#?}"
    );
}
