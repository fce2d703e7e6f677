//! The benchmark's workload: a process that sends itself N SIGUSR1 (a handler installed, so
//! each is generated, delivered and handled) and prints the nanoseconds per signal.
//! `storm [N]`, N defaults to 1,000,000.

use std::time::Instant;

extern "C" fn on_usr1(_: libc::c_int) {}

fn main() {
    let n: u64 = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 1_000_000,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("storm: usage: storm [N]  (N > 0 signals)");
            std::process::exit(2);
        }
    };
    // SAFETY: installing a handler that does nothing; sigaction with a zeroed struct.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_usr1 as *const () as usize;
        if libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()) != 0 {
            eprintln!("storm: sigaction failed");
            std::process::exit(1);
        }
    }
    let pid = std::process::id() as libc::pid_t;
    let start = Instant::now();
    for _ in 0..n {
        // SAFETY: signalling ourselves, with a handler installed.
        unsafe { libc::kill(pid, libc::SIGUSR1) };
    }
    let elapsed = start.elapsed();
    println!("{:.1}", elapsed.as_nanos() as f64 / n as f64);
}
