//! Facts about one process, read from /proc with the procfs crate: its signal masks (from
//! /proc/PID/status), its place among processes (parent, process group, session,
//! controlling tty and the tty's foreground group, from /proc/PID/stat), and optionally
//! each thread's blocked and pending signals (/proc/PID/task/TID/status).
//!
//! A process that vanishes between two reads is reported as gone (exit status 2), a thread
//! that vanishes is simply left out: threads come and go, and the listing is a snapshot.

use super::Error;
use crate::escape;
use crate::signals::{Disposition, SigSet, Signal};
use procfs::process::{Process, Stat, Status};
use procfs::{FromBufRead, FromRead, ProcError};
use std::path::Path;

/// A process's signal state and relations, as read at one moment.
#[derive(Debug, Clone)]
pub(super) struct ProcessFacts {
    /// The pid asked for (a thread id shows that thread's blocked and pending signals).
    pub pid: i32,
    /// The thread group (process) it belongs to; equals `pid` for a process.
    pub tgid: i32,
    /// The command name as the kernel holds it: any bytes the process chose.
    pub comm: Vec<u8>,
    /// The real uid.
    pub uid: u32,
    /// State letter as in ps (R, S, D, Z, T, ...).
    pub state: char,
    pub parent: Relative,
    pub pgrp: i32,
    pub session: i32,
    /// The controlling terminal, if any.
    pub tty: Option<Tty>,
    /// The foreground process group of the controlling terminal (tpgid), if there is one.
    pub tty_foreground_pgrp: Option<i32>,
    pub masks: Masks,
    /// Each thread's own masks; empty unless asked for.
    pub threads: Vec<ThreadFacts>,
}

/// Another process named by pid, with its command name when it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Relative {
    pub pid: i32,
    pub comm: Option<Vec<u8>>,
}

/// The five masks of /proc/PID/status. Caught and ignored are per process (shared by all
/// threads); blocked and thread-pending belong to the thread `pid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Masks {
    pub caught: SigSet,
    pub ignored: SigSet,
    pub blocked: SigSet,
    pub pending_thread: SigSet,
    pub pending_shared: SigSet,
}

/// A terminal device, named the way ps names it ("pts/3", "tty1", "ttyS0").
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Tty {
    pub name: String,
    pub major: u32,
    pub minor: u32,
}

/// One thread's blocked and (thread-directed) pending signals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ThreadFacts {
    pub tid: i32,
    pub comm: Vec<u8>,
    pub blocked: SigSet,
    pub pending: SigSet,
}

/// One signal's state in one process: a row of the psig-like table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SignalState {
    pub signal: Signal,
    pub disposition: Disposition,
    pub blocked: bool,
    pub pending_thread: bool,
    pub pending_shared: bool,
}

impl SignalState {
    /// Whether anything about the signal is not the plain default.
    pub(super) fn is_notable(&self) -> bool {
        self.disposition != Disposition::Default
            || self.blocked
            || self.pending_thread
            || self.pending_shared
    }

    /// "caught", "ignored", "default: Term".
    pub(super) fn describe(&self) -> String {
        self.disposition.describe(self.signal)
    }

    /// "thread", "shared", "thread+shared", or "" when not pending.
    pub(super) fn pending_text(&self) -> &'static str {
        match (self.pending_thread, self.pending_shared) {
            (true, true) => "thread+shared",
            (true, false) => "thread",
            (false, true) => "shared",
            (false, false) => "",
        }
    }
}

impl Masks {
    /// The state of every signal 1..=64, in number order.
    pub(super) fn signal_states(&self) -> Vec<SignalState> {
        Signal::all()
            .map(|signal| SignalState {
                signal,
                disposition: Disposition::from_masks(signal.0, self.caught, self.ignored),
                blocked: self.blocked.contains(signal.0),
                pending_thread: self.pending_thread.contains(signal.0),
                pending_shared: self.pending_shared.contains(signal.0),
            })
            .collect()
    }
}

impl ProcessFacts {
    /// Reads process `pid`; with `threads`, each thread's masks too.
    pub(super) fn read(pid: i32, threads: bool) -> Result<ProcessFacts, Error> {
        if pid <= 0 {
            return Err(Error::InvalidPid { pid });
        }
        let fail = |error: ProcError| proc_error(pid, error);
        let process = Process::new(pid).map_err(fail)?;
        let dir = format!("/proc/{pid}");
        let status = read_status(&dir).map_err(fail)?;
        let comm = read_comm(&dir).map_err(fail)?;
        let stat = read_stat(&dir).map_err(fail)?;
        let tty = (stat.tty_nr != 0).then(|| {
            let (major, minor) = stat.tty_nr();
            // tty_nr() splits the kernel's encoding; both halves are non-negative.
            let (major, minor) = (major.unsigned_abs(), minor.unsigned_abs());
            Tty {
                name: tty_name(major, minor),
                major,
                minor,
            }
        });
        let tty_foreground_pgrp = (tty.is_some() && stat.tpgid > 0).then_some(stat.tpgid);
        let threads = if threads {
            read_threads(&process).map_err(fail)?
        } else {
            Vec::new()
        };
        Ok(ProcessFacts {
            pid,
            tgid: status.tgid,
            comm,
            uid: status.ruid,
            state: stat.state,
            parent: relative(stat.ppid),
            pgrp: stat.pgrp,
            session: stat.session,
            tty,
            tty_foreground_pgrp,
            masks: Masks {
                caught: SigSet(status.sigcgt),
                ignored: SigSet(status.sigign),
                blocked: SigSet(status.sigblk),
                pending_thread: SigSet(status.sigpnd),
                pending_shared: SigSet(status.shdpnd),
            },
            threads,
        })
    }

    /// Whether the process's group is the terminal's foreground group.
    pub(super) fn in_foreground(&self) -> Option<bool> {
        self.tty_foreground_pgrp.map(|pgrp| pgrp == self.pgrp)
    }

    /// "4242 (bash)", the name escaped for a terminal.
    pub(super) fn label(&self) -> String {
        format!("{} ({})", self.pid, escape::bytes(&self.comm))
    }
}

impl Relative {
    /// "4200 (cargo)"; "0 (the kernel)" for the parent of init and kthreadd.
    pub(super) fn label(&self) -> String {
        match &self.comm {
            Some(comm) => format!("{} ({})", self.pid, escape::bytes(comm)),
            None if self.pid == 0 => "0 (the kernel)".to_owned(),
            None => self.pid.to_string(),
        }
    }
}

/// The parent, with its name if it can still be read (it may have exited meanwhile).
fn relative(pid: i32) -> Relative {
    let comm = (pid > 0)
        .then(|| read_comm(&format!("/proc/{pid}")).ok())
        .flatten();
    Relative { pid, comm }
}

/// /proc/…/comm as raw bytes: procfs's stat() would replace invalid UTF-8, and the text
/// output shows a hostile name's bytes exactly (escaped).
fn read_comm(dir: &str) -> Result<Vec<u8>, ProcError> {
    let path = format!("{dir}/comm");
    let mut comm = std::fs::read(&path).map_err(|error| io_error(error, path))?;
    if comm.last() == Some(&b'\n') {
        comm.pop();
    }
    Ok(comm)
}

/// /proc/…/status, parsed by [`parse_status`].
fn read_status(dir: &str) -> Result<Status, ProcError> {
    let path = format!("{dir}/status");
    let raw = std::fs::read(&path).map_err(|error| io_error(error, path))?;
    parse_status(&raw)
}

/// /proc/…/stat, parsed by [`parse_stat`].
fn read_stat(dir: &str) -> Result<Stat, ProcError> {
    let path = format!("{dir}/stat");
    let raw = std::fs::read(&path).map_err(|error| io_error(error, path))?;
    parse_stat(&raw)
}

/// The text of /proc/PID/status through procfs's parser, read lossily first: procfs reads it
/// line by line as UTF-8 and fails on a process whose name is not (any process can choose
/// such a name). Pure, so that it can be tested and fuzzed without /proc.
pub fn parse_status(raw: &[u8]) -> Result<Status, ProcError> {
    Status::from_buf_read(String::from_utf8_lossy(raw).as_bytes())
}

/// The text of /proc/PID/stat through procfs's parser (which reads it lossily). Pure, so
/// that it can be tested and fuzzed without /proc.
///
/// procfs 0.17 slices the line around the name's parentheses without checking them, and
/// panics (found by fuzzing) unless a space precedes the first `(` and follows the last `)`,
/// as in every line the kernel writes (`4242 (a name) S 1 ...`): other text is refused here.
pub fn parse_stat(raw: &[u8]) -> Result<Stat, ProcError> {
    // As procfs reads it: lossily, trimmed.
    let text = String::from_utf8_lossy(raw);
    let line = text.trim().as_bytes();
    let shaped = match (
        line.iter().position(|&b| b == b'('),
        line.iter().rposition(|&b| b == b')'),
    ) {
        (Some(open), Some(close)) => {
            open < close
                && open.checked_sub(1).map(|before| line[before]) == Some(b' ')
                && line.get(close + 1) == Some(&b' ')
        }
        _ => false,
    };
    if !shaped {
        return Err(ProcError::Other(
            "stat is not \"PID (NAME) STATE ...\"".to_owned(),
        ));
    }
    Stat::from_read(raw)
}

/// An I/O error as procfs reports it, so that `proc_error` treats both alike.
fn io_error(error: std::io::Error, path: String) -> ProcError {
    match error.kind() {
        std::io::ErrorKind::NotFound => ProcError::NotFound(Some(path.into())),
        std::io::ErrorKind::PermissionDenied => ProcError::PermissionDenied(Some(path.into())),
        _ => ProcError::Io(error, Some(path.into())),
    }
}

fn read_threads(process: &Process) -> Result<Vec<ThreadFacts>, ProcError> {
    let mut threads = Vec::new();
    for task in process.tasks()? {
        // A thread that exits while we list is not an error: skip it.
        let Ok(task) = task else { continue };
        let dir = format!("/proc/{}/task/{}", task.pid, task.tid);
        let (status, comm) = match read_status(&dir).and_then(|s| Ok((s, read_comm(&dir)?))) {
            Ok(read) => read,
            Err(ProcError::NotFound(_)) => continue,
            Err(error) => return Err(error),
        };
        threads.push(ThreadFacts {
            tid: task.tid,
            comm,
            blocked: SigSet(status.sigblk),
            pending: SigSet(status.sigpnd),
        });
    }
    threads.sort_by_key(|thread| thread.tid);
    Ok(threads)
}

/// Turns a procfs error into the one-line error the user sees.
fn proc_error(pid: i32, error: ProcError) -> Error {
    match error {
        ProcError::NotFound(_) => Error::NoSuchProcess { pid },
        ProcError::PermissionDenied(path) => Error::Unreadable {
            pid,
            reason: format!(
                "permission denied reading {}; run as the process's owner or as root",
                path.as_deref()
                    .map_or("it".into(), |p| p.display().to_string())
            ),
        },
        // The process exited between opening its directory and reading a file.
        ProcError::Io(error, _) if error.raw_os_error() == Some(libc::ESRCH) => {
            Error::NoSuchProcess { pid }
        }
        other => Error::Unreadable {
            pid,
            reason: other.to_string(),
        },
    }
}

/// What a path in /dev is, for naming a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// A character device with this (major, minor).
    CharDevice(u32, u32),
    Directory,
    /// Missing, or something else.
    Other,
}

fn probe(path: &Path) -> Probe {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    match std::fs::metadata(path) {
        Ok(meta) if meta.file_type().is_char_device() => {
            let dev = meta.rdev();
            // The kernel's dev_t encoding (glibc's gnu_dev_major/minor).
            let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
            let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
            Probe::CharDevice(
                u32::try_from(major).unwrap_or(u32::MAX),
                u32::try_from(minor).unwrap_or(u32::MAX),
            )
        }
        Ok(meta) if meta.is_dir() => Probe::Directory,
        _ => Probe::Other,
    }
}

/// Names terminal (major, minor) the way ps does, from /proc/tty/drivers.
fn tty_name(major: u32, minor: u32) -> String {
    let drivers = std::fs::read_to_string("/proc/tty/drivers").unwrap_or_default();
    resolve_tty_name(&drivers, major, minor, &probe)
}

/// The driver table says which device path a (major, minor range) belongs to; the device
/// node's own number then picks between the spellings drivers use: `/dev/pts` + `/3`,
/// `/dev/tty` + `1` (minor itself), `/dev/ttyS` + `0` (minor minus the range start).
/// Without a usable /dev (some containers) the most likely spelling is taken unverified;
/// a device no driver claims is shown as "major:minor".
fn resolve_tty_name(
    drivers: &str,
    major: u32,
    minor: u32,
    probe: &dyn Fn(&Path) -> Probe,
) -> String {
    for line in drivers.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_name, path, driver_major, minors, ..] = fields[..] else {
            continue;
        };
        if driver_major.parse::<u32>() != Ok(major) {
            continue;
        }
        let (first, last) = match minors.split_once('-') {
            Some((first, last)) => (first.parse::<u32>(), last.parse::<u32>()),
            None => (minors.parse::<u32>(), minors.parse::<u32>()),
        };
        let (Ok(first), Ok(last)) = (first, last) else {
            continue;
        };
        if !(first..=last).contains(&minor) {
            continue;
        }
        let short = |full: &str| full.strip_prefix("/dev/").unwrap_or(full).to_owned();
        if first == last {
            return short(path);
        }
        let is_dir = probe(Path::new(path)) == Probe::Directory;
        let mut candidates = Vec::new();
        if is_dir {
            candidates.push(format!("{path}/{minor}"));
        }
        candidates.push(format!("{path}{minor}"));
        candidates.push(format!("{path}{}", minor - first));
        if let Some(found) = candidates
            .iter()
            .find(|candidate| probe(Path::new(candidate)) == Probe::CharDevice(major, minor))
        {
            return short(found);
        }
        return short(&candidates[0]);
    }
    format!("{major}:{minor}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signals::num;

    // /proc/tty/drivers of the Debian VM this was written on.
    const DRIVERS: &str = "\
/dev/tty             /dev/tty        5       0 system:/dev/tty
/dev/console         /dev/console    5       1 system:console
/dev/ptmx            /dev/ptmx       5       2 system
/dev/vc/0            /dev/vc/0       4       0 system:vtmaster
serial               /dev/ttyS       4      64-111 serial
pty_slave            /dev/pts      136 0-1048575 pty:slave
pty_master           /dev/ptm      128 0-1048575 pty:master
unknown              /dev/tty        4 1-63 console
";

    fn fake_dev(path: &Path) -> Probe {
        match path.to_str().unwrap_or_default() {
            "/dev/pts" => Probe::Directory,
            "/dev/pts/3" => Probe::CharDevice(136, 3),
            "/dev/pts/300" => Probe::CharDevice(136, 300),
            "/dev/tty1" => Probe::CharDevice(4, 1),
            "/dev/ttyS0" => Probe::CharDevice(4, 64),
            _ => Probe::Other,
        }
    }

    #[test]
    fn terminals_are_named_like_ps() {
        let name = |major, minor| resolve_tty_name(DRIVERS, major, minor, &fake_dev);
        assert_eq!(name(136, 3), "pts/3");
        assert_eq!(name(136, 300), "pts/300");
        assert_eq!(name(4, 1), "tty1");
        assert_eq!(name(4, 64), "ttyS0");
        assert_eq!(name(5, 1), "console");
        assert_eq!(name(200, 7), "200:7");
    }

    #[test]
    fn without_dev_the_likely_name_is_taken() {
        let dir_only = |path: &Path| {
            if path == Path::new("/dev/pts") {
                Probe::Directory
            } else {
                Probe::Other
            }
        };
        assert_eq!(resolve_tty_name(DRIVERS, 136, 9, &dir_only), "pts/9");
        assert_eq!(resolve_tty_name("", 136, 9, &dir_only), "136:9");
    }

    #[test]
    fn dispositions_follow_the_masks() {
        let masks = Masks {
            caught: SigSet(1 << (num::SIGUSR1 - 1)),
            ignored: SigSet(1 << (num::SIGINT - 1)),
            blocked: SigSet(1 << (num::SIGUSR2 - 1)),
            pending_thread: SigSet::EMPTY,
            pending_shared: SigSet(1 << (num::SIGUSR2 - 1)),
        };
        let states = masks.signal_states();
        assert_eq!(states.len(), 64);
        let state = |sig: i32| states[usize::try_from(sig - 1).unwrap_or(0)];
        assert_eq!(state(num::SIGUSR1).disposition, Disposition::Caught(None));
        assert_eq!(state(num::SIGINT).disposition, Disposition::Ignored);
        assert_eq!(state(num::SIGCHLD).disposition, Disposition::Default);
        assert!(state(num::SIGUSR2).blocked);
        assert_eq!(state(num::SIGUSR2).pending_text(), "shared");
        assert_eq!(states.iter().filter(|s| s.is_notable()).count(), 3);
        assert_eq!(state(num::SIGTERM).describe(), "default: Term");
    }

    #[test]
    fn reads_its_own_process() {
        let me = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
        let facts = ProcessFacts::read(me, true);
        let facts = facts.unwrap_or_else(|e| panic!("reading /proc/{me}: {e}"));
        assert_eq!(facts.tgid, me);
        // Compared with the kernel's own answer, not with "> 0": a process started by a
        // service manager or CI runner can sit in session 0 / pgrp 0.
        let pgrp = nix::unistd::getpgrp().as_raw();
        let session = nix::unistd::getsid(None).map(|s| s.as_raw()).unwrap_or(-1);
        assert_eq!((facts.pgrp, facts.session), (pgrp, session));
        assert!(facts.threads.iter().any(|thread| thread.tid == me));
    }

    #[test]
    fn parses_status_and_stat_text() {
        let status = "Name:\tsleep\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\nNgid:\t0\nPid:\t4242\nPPid:\t1\nTracerPid:\t0\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nFDSize:\t64\nGroups:\t\nThreads:\t1\nSigQ:\t0/31335\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000100\nSigBlk:\t0000000000010000\nSigIgn:\t0000000000000004\nSigCgt:\t0000000000004a02\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n";
        let status = parse_status(status.as_bytes()).map_err(|e| e.to_string());
        let status = status.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (status.tgid, status.sigcgt, status.shdpnd),
            (4242, 0x4a02, 0x100)
        );
        // A name with parentheses and spaces, and one that is not UTF-8.
        for name in [&b"a) (b c"[..], b"\xff\xfe)"] {
            let mut stat = b"4242 (".to_vec();
            stat.extend_from_slice(name);
            stat.extend_from_slice(b") S 1 4242 4242 34816 4242 4194560 0 0 0 0 0 0 0 0 20 0 1 0 100 1000 10 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n");
            let parsed = parse_stat(&stat).map_err(|e| e.to_string());
            let parsed = parsed.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((parsed.pid, parsed.state, parsed.pgrp), (4242, 'S', 4242));
            assert_eq!(parsed.tty_nr(), (136, 0));
        }
    }

    /// Lines the kernel never writes made procfs's stat parser panic (found by fuzzing):
    /// no space after the last `)` (here before a multi-byte character), `)` before `(`, no
    /// space before `(`.
    #[test]
    fn malformed_stat_is_an_error_not_a_panic() {
        for text in [
            &b"1 (a)\xff S 0"[..],
            b"1 (a)\xc3\xa9 S 0",
            b"1 (a)",
            b"1 ) (",
            b"(a) S 0",
            b"\xff(a) S 0",
            b")(",
            b"",
        ] {
            assert!(parse_stat(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn missing_and_invalid_pids_are_bad_input() {
        assert!(matches!(
            ProcessFacts::read(0, false),
            Err(Error::InvalidPid { pid: 0 })
        ));
        assert!(matches!(
            ProcessFacts::read(-4, false),
            Err(Error::InvalidPid { pid: -4 })
        ));
        // Above the kernel's PID_MAX_LIMIT (4194304): never a process.
        assert!(matches!(
            ProcessFacts::read(4_194_305, false),
            Err(Error::NoSuchProcess { pid: 4_194_305 })
        ));
    }
}
