//! Facts the kernel records do not carry, added in userspace: wall-clock time for the
//! kernel's monotonic timestamps, where the children of a dead process went, and who holds
//! the master side of a pty (the likely writer of a ^C). Only exit and fan-out reports read
//! /proc — never the per-event path.

use std::time::{Duration, SystemTime};

use nix::time::{ClockId, clock_gettime};

/// Converts bpf_ktime_get_ns (CLOCK_MONOTONIC) timestamps to wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Wall-clock time at monotonic zero, in ns since the epoch.
    wall_at_zero_ns: i128,
    /// The tracer's start, for relative timestamps.
    pub start_mono_ns: u64,
}

fn ns(ts: nix::sys::time::TimeSpec) -> i128 {
    ts.tv_sec() as i128 * 1_000_000_000 + ts.tv_nsec() as i128
}

impl Clock {
    pub fn now() -> Self {
        let mono = clock_gettime(ClockId::CLOCK_MONOTONIC).map(ns).unwrap_or(0);
        let wall = clock_gettime(ClockId::CLOCK_REALTIME).map(ns).unwrap_or(0);
        Clock {
            wall_at_zero_ns: wall - mono,
            start_mono_ns: mono.max(0) as u64,
        }
    }

    /// A fixed clock for tests.
    pub fn fixed(wall_at_zero_ns: i128, start_mono_ns: u64) -> Self {
        Clock {
            wall_at_zero_ns,
            start_mono_ns,
        }
    }

    pub(crate) fn mono_now() -> u64 {
        clock_gettime(ClockId::CLOCK_MONOTONIC)
            .map(ns)
            .unwrap_or(0)
            .max(0) as u64
    }

    pub fn wall(&self, mono_ns: u64) -> SystemTime {
        let wall = (self.wall_at_zero_ns + mono_ns as i128).max(0) as u128;
        SystemTime::UNIX_EPOCH
            + Duration::new((wall / 1_000_000_000) as u64, (wall % 1_000_000_000) as u32)
    }

    /// Seconds and microseconds of the local time of day, for text output.
    pub(crate) fn local_time_of_day(
        &self,
        mono_ns: u64,
        utc_offset_s: i64,
    ) -> (u32, u32, u32, u32) {
        let wall = self.wall_at_zero_ns + mono_ns as i128 + utc_offset_s as i128 * 1_000_000_000;
        let secs_of_day = (wall.div_euclid(1_000_000_000)).rem_euclid(86_400) as u32;
        let micros = (wall.rem_euclid(1_000_000_000) / 1000) as u32;
        (
            secs_of_day / 3600,
            secs_of_day / 60 % 60,
            secs_of_day % 60,
            micros,
        )
    }
}

/// The local time zone's offset from UTC now, in seconds (0 when unknown).
pub(crate) fn local_utc_offset() -> i64 {
    // SAFETY: localtime_r writes only into the tm we pass; time(NULL) has no preconditions.
    unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            return 0;
        }
        tm.tm_gmtoff
    }
}

/// A child left behind by a process that exited, and where it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub pid: u32,
    pub comm: String,
    /// Its parent now (the subreaper or init), when it still runs.
    pub new_parent: Option<u32>,
}

/// Reads where each of `children` went after their parent `dead` exited. A child that is
/// gone by now has `new_parent: None`. The kernel re-parents them just after the exit
/// event, so a child still showing `dead` as its parent is read again, briefly.
pub fn orphans(dead: u32, children: &[u32]) -> Vec<Orphan> {
    let mut found: Vec<Orphan> = children.iter().map(|&pid| read_orphan(pid)).collect();
    for _ in 0..50 {
        let mut waiting = found
            .iter_mut()
            .filter(|o| o.new_parent == Some(dead))
            .peekable();
        if waiting.peek().is_none() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
        // Only the children not re-parented yet are read again.
        for orphan in waiting {
            *orphan = read_orphan(orphan.pid);
        }
    }
    found
}

fn read_orphan(pid: u32) -> Orphan {
    match procfs::process::Process::new(pid as i32).and_then(|p| p.stat()) {
        Ok(stat) => Orphan {
            pid,
            comm: stat.comm,
            new_parent: Some(stat.ppid as u32),
        },
        Err(_) => Orphan {
            pid,
            comm: String::new(),
            new_parent: None,
        },
    }
}

/// Processes holding the master side of the pty `tty` (kernel name such as "pts3") open:
/// the terminal emulator, tmux, ssh — whoever writes the keys into it. Scans /proc once per
/// tty fan-out, never per event.
pub(crate) fn pty_master_holders(tty: &str) -> Vec<(u32, String)> {
    let Some(index) = tty.strip_prefix("pts").and_then(|n| n.parse::<u32>().ok()) else {
        return Vec::new();
    };
    let mut holders = Vec::new();
    let Ok(all) = procfs::process::all_processes() else {
        return holders;
    };
    let me = std::process::id() as i32;
    for process in all.flatten() {
        if process.pid == me {
            continue; // a launched command's terminal may be ours too; we only read it
        }
        let Ok(fds) = process.fd() else { continue };
        let holds = fds.flatten().any(|fd| {
            matches!(&fd.target, procfs::process::FDTarget::Path(p) if p.as_os_str() == "/dev/ptmx")
                && std::fs::read_to_string(format!("/proc/{}/fdinfo/{}", process.pid, fd.fd))
                    .is_ok_and(|info| {
                        info.lines().any(|l| {
                            l.strip_prefix("tty-index:")
                                .is_some_and(|v| v.trim().parse() == Ok(index))
                        })
                    })
        });
        if holds {
            let comm = process.stat().map(|s| s.comm).unwrap_or_default();
            holders.push((process.pid as u32, comm));
        }
    }
    holders
}

/// "pts3" → "pts/3", "tty1" stays: the name users know from `ps` and `tty`. Displayed, not
/// allocated: output writes it straight into the line. `field` is the kernel's NUL-padded
/// name; its Display is the raw text (for JSON, which escapes), [`TtyName::escaped`] the
/// terminal-safe one.
pub(crate) fn tty_display(field: &[u8]) -> TtyName<'_> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    TtyName(&field[..end])
}

#[derive(Clone, Copy)]
pub(crate) struct TtyName<'a>(&'a [u8]);

impl<'a> TtyName<'a> {
    /// The pty number of a "ptsN" name.
    fn pty_index(self) -> Option<&'a str> {
        let n = self.0.strip_prefix(b"pts")?;
        (!n.is_empty() && n.iter().all(u8::is_ascii_digit))
            .then(|| std::str::from_utf8(n).ok())
            .flatten()
    }

    /// The kernel's name as text ("pts3"), for looking the tty up.
    pub(crate) fn kernel_name(self) -> std::borrow::Cow<'a, str> {
        String::from_utf8_lossy(self.0)
    }

    /// For terminals: like Display, with control bytes and invalid UTF-8 escaped.
    pub(crate) fn escaped(self) -> impl std::fmt::Display + 'a {
        EscapedTty(self)
    }
}

impl std::fmt::Display for TtyName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pty_index() {
            Some(n) => write!(f, "pts/{n}"),
            None => f.write_str(&self.kernel_name()),
        }
    }
}

struct EscapedTty<'a>(TtyName<'a>);

impl std::fmt::Display for EscapedTty<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.pty_index() {
            Some(n) => write!(f, "pts/{n}"),
            None => write!(f, "{}", crate::escape::bytes(self.0.0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_and_time_of_day() {
        // Monotonic 5 s ↔ 2026-11-28T00:00:05Z.
        let midnight: i128 = 1_795_824_000 * 1_000_000_000;
        let clock = Clock::fixed(midnight, 0);
        assert_eq!(
            humantime::format_rfc3339_micros(clock.wall(5_000_123_000)).to_string(),
            "2026-11-28T00:00:05.000123Z"
        );
        assert_eq!(clock.local_time_of_day(5_000_123_000, 3600), (1, 0, 5, 123));
    }

    #[test]
    fn tty_names() {
        assert_eq!(tty_display(b"pts3\0\0").to_string(), "pts/3");
        assert_eq!(tty_display(b"tty1").to_string(), "tty1");
        assert_eq!(tty_display(b"ptsx").to_string(), "ptsx");
        assert_eq!(tty_display(b"pts3").escaped().to_string(), "pts/3");
        assert_eq!(tty_display(b"t\x1b[2J").escaped().to_string(), "t\\x1b[2J");
        assert_eq!(tty_display(b"t\x1b[2J").to_string(), "t\x1b[2J");
    }

    #[test]
    fn orphans_of_a_missing_pid_have_no_parent() {
        let gone = orphans(1, &[u32::MAX - 1]);
        assert_eq!(gone[0].new_parent, None);
    }
}
