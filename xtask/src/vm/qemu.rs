//! Booting a prepared kernel under QEMU and running one command in it. The console (the
//! guest's ttyS0, QEMU's stdout) is read line by line: before the init's begin marker it is
//! kept back (shown with --show-boot, or in an error's tail), between the begin and end
//! markers it is CMD's output and goes to our stdout. CMD's status comes from the file the
//! init writes into the `out` share, not from the console.

use std::{
    collections::VecDeque,
    env,
    ffi::OsString,
    fs,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};

use super::{Accel, VmOptions, VmOutcome, guest, kernel::PreparedKernel};

/// Lines of console shown with an error.
const TAIL: usize = 30;
/// How long QEMU may take to exit after a panic (panic=-1 and -no-reboot end it at once).
const PANIC_GRACE: Duration = Duration::from_secs(15);
/// How long QEMU may take to exit after CMD ended (the init powers off through sysrq).
const POWEROFF_GRACE: Duration = Duration::from_secs(60);

const CMDLINE: &str = "console=ttyS0 quiet panic=-1 sysrq_always_enabled";

/// Boots `kernel`, runs `cmd` in it as root, streams its output to stdout.
pub fn run_in_vm(
    kernel: &PreparedKernel,
    cmd: &[OsString],
    opts: &VmOptions,
) -> anyhow::Result<VmOutcome> {
    if cmd.is_empty() {
        bail!("no command to run in the VM");
    }
    let cwd = match &opts.cwd {
        Some(dir) => dir.clone(),
        None => env::current_dir().context("cannot read the current directory")?,
    };
    let out = tempfile::Builder::new()
        .prefix("xtask-vm-")
        .tempdir()
        .context("cannot create the out share's directory")?;
    fs::write(
        out.path().join("setup.sh"),
        guest::setup_script(&kernel.release, &kernel.modules),
    )?;
    fs::write(
        out.path().join("run.sh"),
        guest::run_script(cmd, &guest_env(opts), &cwd),
    )?;
    let accel = match opts.accel {
        Accel::Auto => auto_accel(),
        other => other,
    };
    let args = qemu_args(kernel, out.path(), opts, accel);
    eprintln!(
        "xtask vm: booting {} ({}, {} CPUs, {} MiB)",
        kernel.release,
        if accel == Accel::Kvm { "kvm" } else { "tcg" },
        opts.cpus,
        opts.mem_mb
    );
    let started = Instant::now();
    let child = Command::new(&kernel.tools.qemu)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("qemu failed to start ({})", kernel.tools.qemu.display()))?;
    let mut qemu = Qemu(child);
    let watch = watch(&mut qemu, opts, started)?;
    let exit = qemu.0.wait().context("cannot wait for qemu")?;
    let total = started.elapsed();
    let tail = || watch.tail.iter().cloned().collect::<Vec<_>>().join("\n");
    let fail = |what: String| {
        anyhow!(
            "{what}\n--- last {TAIL} lines of the serial console ---\n{}",
            tail()
        )
    };
    match watch.end {
        End::TimedOut => {
            return Err(fail(format!(
                "the guest ({}) was still running after {} s (--timeout); killed qemu",
                kernel.release,
                opts.timeout.as_secs()
            )));
        }
        End::Panic => {
            return Err(fail(format!(
                "kernel panic in the guest ({})",
                kernel.release
            )));
        }
        End::Eof => {}
    }
    let status_file = out.path().join("status");
    let Ok(text) = fs::read_to_string(&status_file) else {
        if watch.lines == 0 && !exit.success() {
            bail!("qemu failed to start ({exit}); its message is above");
        }
        let what = match (&watch.init_failure, watch.begun) {
            (Some(why), _) => format!("the guest's init failed ({}): {why}", kernel.release),
            (None, Some(_)) => format!(
                "the guest ({}) stopped before the command finished: no exit status (qemu: {exit})",
                kernel.release
            ),
            (None, None) => format!(
                "the guest ({}) stopped without running the command (qemu: {exit})",
                kernel.release
            ),
        };
        return Err(fail(what));
    };
    let status: u8 = text
        .trim()
        .parse()
        .with_context(|| format!("the guest wrote a status that is no number: {text:?}"))?;
    let begun = watch.begun.unwrap_or(started);
    let outcome = VmOutcome {
        status,
        boot: begun - started,
        guest_boot: watch.guest_boot,
        command: watch.ended.unwrap_or_else(Instant::now) - begun,
        total,
        output: watch.output,
    };
    eprintln!(
        "xtask vm: {}: exit status {status} (boot {:.1} s, guest uptime {}; command {:.1} s; total {:.1} s)",
        kernel.release,
        outcome.boot.as_secs_f64(),
        outcome
            .guest_boot
            .map_or("?".to_owned(), |d| format!("{:.1} s", d.as_secs_f64())),
        outcome.command.as_secs_f64(),
        outcome.total.as_secs_f64()
    );
    Ok(outcome)
}

/// PATH, HOME, USER, cargo's and rustup's homes (the guest runs as root, maybe not the
/// host's user), CI when set here, then the caller's.
fn guest_env(opts: &VmOptions) -> Vec<(String, OsString)> {
    let home = env::var_os("HOME").map(PathBuf::from);
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".cargo")));
    let rustup_home = env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".rustup")));
    let mut path: Vec<PathBuf> = Vec::new();
    if let Some(c) = &cargo_home {
        path.push(c.join("bin"));
    }
    path.extend(env::split_paths(&env::var_os("PATH").unwrap_or_default()));
    for dir in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        path.push(dir.into());
    }
    let mut seen = Vec::new();
    path.retain(|p| {
        !p.as_os_str().is_empty() && !seen.contains(p) && {
            seen.push(p.clone());
            true
        }
    });
    let mut vars = vec![
        (
            "PATH".to_owned(),
            env::join_paths(&path).unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
        ),
        ("HOME".to_owned(), "/root".into()),
        ("USER".to_owned(), "root".into()),
        ("LOGNAME".to_owned(), "root".into()),
    ];
    for (name, dir) in [("CARGO_HOME", cargo_home), ("RUSTUP_HOME", rustup_home)] {
        if let Some(dir) = dir.filter(|d| d.is_dir()) {
            vars.push((name.to_owned(), dir.into_os_string()));
        }
    }
    if let Some(ci) = env::var_os("CI") {
        vars.push(("CI".to_owned(), ci));
    }
    for (name, value) in &opts.env {
        vars.retain(|(n, _)| n != name);
        vars.push((name.clone(), value.clone()));
    }
    vars
}

/// TCG unless the CPU has VMX/SVM and /dev/kvm is a plain KVM: a PVM host's KVM (the
/// kvm_pvm module) runs only PVM guest kernels, and Debian's stock kernels are not.
fn auto_accel() -> Accel {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    choose_accel(
        &cpuinfo,
        Path::new("/sys/module/kvm_pvm").exists(),
        Path::new("/dev/kvm").exists(),
    )
}

fn choose_accel(cpuinfo: &str, pvm: bool, dev_kvm: bool) -> Accel {
    let virt = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .flat_map(|l| l.split_whitespace())
        .any(|f| f == "vmx" || f == "svm");
    if virt && dev_kvm && !pvm {
        Accel::Kvm
    } else {
        Accel::Tcg
    }
}

fn qemu_args(kernel: &PreparedKernel, out: &Path, opts: &VmOptions, accel: Accel) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
    match accel {
        Accel::Kvm => push(&["-accel", "kvm", "-cpu", "host"]),
        _ => push(&["-accel", "tcg,thread=single", "-cpu", "max"]),
    }
    push(&[
        "-m",
        &opts.mem_mb.to_string(),
        "-smp",
        &opts.cpus.to_string(),
    ]);
    push(&["-nographic", "-no-reboot", "-nic", "none"]);
    push(&[
        "-virtfs",
        "local,path=/,mount_tag=root,security_model=none,readonly=on,multidevs=remap",
    ]);
    let mut out_fs = OsString::from("local,path=");
    out_fs.push(qemu_escape(&out.to_string_lossy()));
    out_fs.push(",mount_tag=out,security_model=none");
    args.push("-virtfs".into());
    args.push(out_fs);
    args.push("-kernel".into());
    args.push(kernel.vmlinuz.clone().into());
    args.push("-initrd".into());
    args.push(kernel.initramfs.clone().into());
    args.push("-append".into());
    args.push(CMDLINE.into());
    args
}

/// QEMU's option syntax doubles a comma inside a value.
fn qemu_escape(value: &str) -> String {
    value.replace(',', ",,")
}

/// Kills QEMU (only this one, by its pid) when a run is abandoned.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

enum End {
    Eof,
    Panic,
    TimedOut,
}

struct Watch {
    end: End,
    tail: VecDeque<String>,
    lines: usize,
    begun: Option<Instant>,
    ended: Option<Instant>,
    guest_boot: Option<Duration>,
    /// What the init said when it gave up.
    init_failure: Option<String>,
    /// CMD's output lines, when `VmOptions::keep_output` asks for them.
    output: Vec<String>,
}

/// Reads the console until QEMU closes it, forwarding CMD's part; kills QEMU on timeout,
/// or when it lingers after a panic.
fn watch(qemu: &mut Qemu, opts: &VmOptions, started: Instant) -> anyhow::Result<Watch> {
    let stdout = qemu.0.stdout.take().context("qemu's stdout is not piped")?;
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    // A thread reads, so that this one can wait with a deadline.
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let deadline = started + opts.timeout;
    let mut w = Watch {
        end: End::Eof,
        tail: VecDeque::new(),
        lines: 0,
        begun: None,
        ended: None,
        guest_boot: None,
        init_failure: None,
        output: Vec::new(),
    };
    let mut panic_at: Option<Instant> = None;
    // Locked per line, never for the whole run: `cargo xtask test` watches two guests at
    // once, and a lock held here kept the other's watcher (and its next suite) waiting for
    // this whole guest.
    let stdout = std::io::stdout();
    loop {
        let limit = match (panic_at, w.ended) {
            (Some(p), _) => deadline.min(p + PANIC_GRACE),
            (None, Some(e)) => deadline.min(e + POWEROFF_GRACE),
            (None, None) => deadline,
        };
        let wait = limit.saturating_duration_since(Instant::now());
        let mut line = match rx.recv_timeout(wait) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = qemu.0.kill();
                if panic_at.is_some() {
                    w.end = End::Panic;
                } else if w.ended.is_none() {
                    w.end = End::TimedOut;
                }
                // Past the end marker, the status is written: a slow power-off is no error.
                break;
            }
        };
        w.lines += 1;
        while line.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
            line.pop();
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        // Markers are searched anywhere in a line: the firmware's terminal resets
        // (ESC c…) end without a newline and so open the init's first line.
        let begin = text
            .find(guest::BEGIN_MARKER)
            .map(|i| &text[i + guest::BEGIN_MARKER.len()..]);
        let marker = if let Some(rest) = begin.filter(|_| w.begun.is_none()) {
            w.begun = Some(Instant::now());
            w.guest_boot = rest
                .trim()
                .strip_prefix("uptime=")
                .and_then(|s| s.parse::<f64>().ok())
                .and_then(|s| Duration::try_from_secs_f64(s).ok());
            true
        } else if w.begun.is_some() && w.ended.is_none() && text.contains(guest::END_MARKER) {
            w.ended = Some(Instant::now());
            true
        } else {
            false
        };
        if w.begun.is_none()
            && let Some(i) = text.find(guest::FAIL_MARKER)
        {
            w.init_failure = Some(printable(text[i + guest::FAIL_MARKER.len()..].trim()));
        }
        if text.contains("Kernel panic - not syncing") && panic_at.is_none() {
            panic_at = Some(Instant::now());
        }
        let forward = if marker {
            opts.show_boot
        } else {
            opts.show_boot || (w.begun.is_some() && w.ended.is_none())
        };
        let command_part = !marker && w.begun.is_some() && w.ended.is_none();
        if command_part && opts.keep_output {
            w.output.push(text.clone());
        }
        if forward {
            // CMD's output goes through as it is (colours and all); the firmware's and
            // the kernel's lines are cleaned like the error's tail.
            if command_part {
                line.push(b'\n');
            } else {
                line = format!("{}\n", printable(&text)).into_bytes();
            }
            let mut stdout = stdout.lock();
            stdout.write_all(&line).context("cannot write to stdout")?;
            stdout.flush().context("cannot write to stdout")?;
        }
        if w.tail.len() == TAIL {
            w.tail.pop_front();
        }
        w.tail.push_back(printable(&text));
    }
    if panic_at.is_some() {
        w.end = End::Panic;
    }
    Ok(w)
}

/// `line` without terminal escapes and control characters: SeaBIOS opens the console
/// with ESC c (a terminal reset) and turns line wrapping off, which must not reach the
/// user's terminal with an error's tail.
fn printable(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.next_if_eq(&'[').is_some() {
                // CSI: parameters and intermediates, up to a final byte in @..~.
                while chars.next().is_some_and(|c| !('@'..='~').contains(&c)) {}
            } else {
                chars.next();
            }
        } else if c == '\t' || !c.is_control() {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::{Kernel, host::Tools};

    fn prepared() -> PreparedKernel {
        PreparedKernel {
            kernel: Kernel::V6_1,
            package: "linux-image-6.1.0-48-amd64-unsigned".into(),
            release: "6.1.0-48-amd64".into(),
            vmlinuz: "/c/k/boot/vmlinuz-6.1.0-48-amd64".into(),
            initramfs: "/c/i.cpio.gz".into(),
            modules: "/c/k/lib/modules/6.1.0-48-amd64".into(),
            tools: Tools {
                qemu: "qemu-system-x86_64".into(),
                busybox: "/bin/busybox".into(),
                depmod: "depmod".into(),
                modprobe: "modprobe".into(),
            },
        }
    }

    #[test]
    fn command_line() {
        let opts = VmOptions::default();
        let args = qemu_args(&prepared(), Path::new("/tmp/o,ut"), &opts, Accel::Tcg);
        let text: Vec<String> = args.iter().map(|a| a.to_string_lossy().into()).collect();
        assert_eq!(
            text.join(" "),
            "-accel tcg,thread=single -cpu max -m 2048 -smp 2 -nographic -no-reboot -nic none \
             -virtfs local,path=/,mount_tag=root,security_model=none,readonly=on,multidevs=remap \
             -virtfs local,path=/tmp/o,,ut,mount_tag=out,security_model=none \
             -kernel /c/k/boot/vmlinuz-6.1.0-48-amd64 -initrd /c/i.cpio.gz \
             -append console=ttyS0 quiet panic=-1 sysrq_always_enabled"
        );
        let kvm = qemu_args(&prepared(), Path::new("/o"), &opts, Accel::Kvm);
        assert_eq!(
            kvm[..4],
            ["-accel", "kvm", "-cpu", "host"].map(OsString::from)
        );
    }

    #[test]
    fn escapes_are_dropped() {
        let seabios = "\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16.2)\r";
        assert_eq!(printable(seabios), "SeaBIOS (version 1.16.2)");
        assert_eq!(printable("a\tb\x07c\x1b[1;31mred\x1b[m"), "a\tbcred");
        assert_eq!(printable("cut \x1b["), "cut ");
    }

    #[test]
    fn accel_choice() {
        let vmx = "processor\t: 0\nflags\t\t: fpu vme vmx sse\n";
        let plain = "processor\t: 0\nflags\t\t: fpu vme sse\n";
        assert_eq!(choose_accel(vmx, false, true), Accel::Kvm);
        assert_eq!(choose_accel(vmx, true, true), Accel::Tcg);
        assert_eq!(choose_accel(vmx, false, false), Accel::Tcg);
        assert_eq!(choose_accel(plain, false, true), Accel::Tcg);
        assert_eq!(choose_accel("flags : svm\n", false, true), Accel::Kvm);
    }

    #[test]
    fn guest_environment() {
        let opts = VmOptions {
            env: vec![("HOME".into(), "/h".into()), ("X".into(), "1".into())],
            ..VmOptions::default()
        };
        let vars = guest_env(&opts);
        let get = |n: &str| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(get("HOME"), Some("/h".into()));
        assert_eq!(get("X"), Some("1".into()));
        let path = get("PATH").unwrap();
        let path = path.to_string_lossy();
        assert!(path.contains("/usr/local/bin") && path.contains("/usr/bin"));
        assert_eq!(vars.iter().filter(|(k, _)| k == "HOME").count(), 1);
    }
}
