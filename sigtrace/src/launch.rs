//! `sigtrace -- COMMAND`: start the command held at the door until the probes are attached
//! (so not even its first signal is missed), then release it and wait for its end.

use std::{ffi::CString, os::fd::OwnedFd};

use nix::{
    fcntl::OFlag,
    sys::{
        signal::{Signal as NixSignal, kill},
        wait::waitpid,
    },
    unistd::{ForkResult, Pid, fork, pipe2, read, write},
};

use crate::error::Error;

/// A forked command waiting for [`Held::release`].
pub(crate) struct Held {
    pub pid: Pid,
    gate: Option<OwnedFd>,
}

/// Exit status of the command as a shell reports it from a raw wait status: the code, or
/// 128 + the signal (real-time signals included).
pub(crate) fn shell_status(raw: i32) -> u8 {
    if libc::WIFSIGNALED(raw) {
        128u8.wrapping_add(libc::WTERMSIG(raw) as u8)
    } else {
        libc::WEXITSTATUS(raw) as u8
    }
}

/// Forks `command`; the child waits for a byte on a pipe before it execs. Must be called
/// while the process is still single-threaded (before the async runtime starts).
pub(crate) fn spawn_held(command: &[String]) -> Result<Held, Error> {
    let argv: Vec<CString> = command
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| Error::BadInput("the command contains a NUL byte".into()))?;
    if argv.is_empty() {
        return Err(Error::BadInput("no command given after --".into()));
    }
    // Close-on-exec: the command must not inherit the gate.
    let (gate_read, gate_write) =
        pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::io("pipe", e.into()))?;
    // We wait for the command ourselves: an inherited SIGCHLD = SIG_IGN would have the
    // kernel reap it and take its exit status away.
    // SAFETY: single-threaded; plain signal(2).
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
    // Rust ignores SIGPIPE in its own process; the command must inherit the default, as from
    // any shell. Restored around the fork rather than in the child, where the change would be
    // a traced rt_sigaction of our own.
    // SAFETY: single-threaded; plain signal(2) calls.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    // SAFETY: called before any other thread exists (the runtime starts later), so the
    // child may also allocate (the error message) before it execs or exits.
    let forked = unsafe { fork() };
    if !matches!(forked, Ok(ForkResult::Child)) {
        // SAFETY: as above; the parent ignores SIGPIPE again (EPIPE ends output quietly).
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    }
    match forked.map_err(|e| Error::io("fork", e.into()))? {
        ForkResult::Child => {
            drop(gate_write);
            // While held, die with the tracer; the real command must outlive it, like any
            // child would, so this is undone before exec.
            // SAFETY: prctl with plain integer arguments.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            let mut byte = [0u8; 1];
            let released = matches!(read(&gate_read, &mut byte), Ok(1));
            if !released {
                // SAFETY: _exit is async-signal-safe.
                unsafe { libc::_exit(127) };
            }
            // SAFETY: as above.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0) };
            let err = nix::unistd::execvp(&argv[0], &argv).err();
            let msg = format!(
                "sigtrace: cannot run {}: {}\n",
                command[0],
                err.map(|e| e.desc()).unwrap_or("unknown error")
            );
            let _ = write(std::io::stderr(), msg.as_bytes());
            // SAFETY: as above.
            unsafe { libc::_exit(127) };
        }
        ForkResult::Parent { child } => {
            drop(gate_read);
            Ok(Held {
                pid: child,
                gate: Some(gate_write),
            })
        }
    }
}

impl Held {
    /// Lets the command exec.
    pub(crate) fn release(&mut self) -> Result<(), Error> {
        if let Some(gate) = self.gate.take() {
            write(&gate, b"g").map_err(|e| Error::io("releasing the command", e.into()))?;
        }
        Ok(())
    }

    /// The command's raw wait status if it has ended (reaps it). Raw, because nix's
    /// WaitStatus cannot represent a death by a real-time signal.
    pub(crate) fn try_wait(&self) -> Result<Option<i32>, Error> {
        let mut status = 0;
        // SAFETY: waitpid on our own child, writing into a local.
        let got = unsafe { libc::waitpid(self.pid.as_raw(), &mut status, libc::WNOHANG) };
        match got {
            0 => Ok(None),
            pid if pid == self.pid.as_raw() => {
                Ok((libc::WIFEXITED(status) || libc::WIFSIGNALED(status)).then_some(status))
            }
            _ => Err(Error::io(
                "waiting for the command (its exit status is unknown)",
                std::io::Error::last_os_error(),
            )),
        }
    }
}

impl Drop for Held {
    /// A command never released (the tracer failed to attach) is ended, not left waiting.
    fn drop(&mut self) {
        if self.gate.take().is_some() {
            let _ = kill(self.pid, NixSignal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}
