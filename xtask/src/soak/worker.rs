//! The soak's processes: the xtask binary run again as `soak-worker ROLE ...`. Each names
//! itself (PR_SET_NAME) after its role, so that sigtrace's summary rows (by sender comm)
//! tell its signals from the rest of the machine's, and dies with the driver
//! (PR_SET_PDEATHSIG). Sources send for a fixed time, then print how many signals they
//! generated — every kill/sigqueue that reached `signal_generate` — as `sent N [overflow M]`.

use std::{
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

#[derive(clap::Args)]
pub struct WorkerArgs {
    /// sink | storm | pgkill | member | rtsink | rt | churn | victim
    role: String,
    /// The target pid (or process group for pgkill).
    #[arg(long, default_value_t = 0)]
    target: i32,
    /// How long a source sends.
    #[arg(long, default_value_t = 0)]
    seconds: u64,
    /// pgkill: members in the group (each kill(-pgid) generates one event per member).
    #[arg(long, default_value_t = 0)]
    members: u64,
}

fn name_self(name: &str) -> anyhow::Result<()> {
    let name = std::ffi::CString::new(name).context("role name")?;
    // SAFETY: PR_SET_NAME reads a NUL-terminated string; PR_SET_PDEATHSIG takes a signal.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, name.as_ptr());
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    Ok(())
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// Installs a do-nothing handler (a caught signal, so deliveries are "handled").
fn catch(sig: libc::c_int) {
    // SAFETY: a handler that does nothing is async-signal-safe; SA_RESTART keeps pause loops simple.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = ignore_signal as *const () as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigaction(sig, &action, std::ptr::null_mut());
    }
}

fn pause_forever() -> ! {
    loop {
        // SAFETY: pause has no preconditions.
        unsafe { libc::pause() };
    }
}

/// kill(2), counting the calls the kernel's signal_generate saw: success only (ESRCH and
/// EPERM fail before it).
fn kill(pid: i32, sig: libc::c_int) -> bool {
    // SAFETY: kill has no memory preconditions; the soak only signals its own processes.
    unsafe { libc::kill(pid, sig) == 0 }
}

pub fn run(args: &WorkerArgs) -> anyhow::Result<()> {
    name_self(&format!("soak-{}", args.role))?;
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    match args.role.as_str() {
        "sink" => {
            catch(libc::SIGUSR1);
            println!("ready");
            pause_forever()
        }
        "member" => {
            // SAFETY: SIG_IGN for USR2: the pgrp kill is "ignored" at generation.
            unsafe { libc::signal(libc::SIGUSR2, libc::SIG_IGN) };
            println!("ready");
            pause_forever()
        }
        "victim" => {
            catch(libc::SIGUSR1);
            pause_forever()
        }
        "rtsink" => rtsink(),
        "storm" => {
            // Bursts of 50 every 10 ms (~5,000/s each): heavy, steady, and sustainable.
            let mut sent = 0u64;
            while Instant::now() < deadline {
                for _ in 0..50 {
                    sent += u64::from(kill(args.target, libc::SIGUSR1));
                }
                thread::sleep(Duration::from_millis(10));
            }
            println!("sent {sent}");
            Ok(())
        }
        "pgkill" => {
            let mut sent = 0u64;
            while Instant::now() < deadline {
                if kill(-args.target, libc::SIGUSR2) {
                    sent += args.members;
                }
                thread::sleep(Duration::from_millis(20));
            }
            println!("sent {sent}");
            Ok(())
        }
        "rt" => rt_source(args.target, deadline),
        "churn" => churn(deadline),
        other => bail!("unknown soak role {other}"),
    }
}

/// Blocks SIGRTMIN with a small RLIMIT_SIGPENDING, so that the rt source's queue overflows
/// (EAGAIN, result "overflow"); drains the queue now and then with sigtimedwait (consumed).
fn rtsink() -> anyhow::Result<()> {
    let rtmin = libc::SIGRTMIN();
    // SAFETY: plain libc calls on this process's own signal state and limits.
    unsafe {
        // Lowering the soft limit needs no privilege (raising the hard one would).
        let mut limit: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_SIGPENDING, &mut limit);
        limit.rlim_cur = 64;
        if libc::setrlimit(libc::RLIMIT_SIGPENDING, &limit) != 0 {
            bail!("setrlimit: {}", std::io::Error::last_os_error());
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, rtmin);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        println!("ready");
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        loop {
            thread::sleep(Duration::from_millis(50));
            while libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) == rtmin {}
        }
    }
}

fn rt_source(target: i32, deadline: Instant) -> anyhow::Result<()> {
    let rtmin = libc::SIGRTMIN();
    let (mut queued, mut overflow) = (0u64, 0u64);
    while Instant::now() < deadline {
        for n in 0..20 {
            let value = libc::sigval {
                sival_ptr: n as *mut libc::c_void,
            };
            // SAFETY: sigqueue to our own rtsink.
            let ret = unsafe { libc::sigqueue(target, rtmin, value) };
            if ret == 0 {
                queued += 1;
            } else if std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) {
                overflow += 1;
            }
        }
        thread::sleep(Duration::from_millis(10));
    }
    println!("sent {} overflow {overflow}", queued + overflow);
    Ok(())
}

/// fork/exec/exit churn: starts victims (this binary again, exec'd), signals each with
/// SIGUSR1 and then SIGTERM, and reaps it; with pid_max at 32768 here, pids come round
/// again within minutes.
fn churn(deadline: Instant) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("own executable")?;
    let mut sent = 0u64;
    while Instant::now() < deadline {
        let mut child = std::process::Command::new(&exe)
            .args(["soak-worker", "victim"])
            .spawn()
            .context("start a victim")?;
        let pid = child.id() as i32;
        thread::sleep(Duration::from_millis(3));
        sent += u64::from(kill(pid, libc::SIGUSR1));
        sent += u64::from(kill(pid, libc::SIGTERM));
        child.wait().context("reap a victim")?;
    }
    println!("sent {sent}");
    Ok(())
}
