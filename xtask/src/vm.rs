//! `cargo xtask vm --kernel K -- CMD ARGS...`: runs CMD as root inside one of Debian 12's
//! stock kernels under QEMU, seeing this machine's files at the same paths (the host's root
//! over 9p, read-only, under an in-memory overlay), and exits with CMD's exit status. The
//! kernels come from apt (`apt-get download`, never installed into /boot), the initramfs is
//! built here (static busybox plus the 9p, virtio and overlay modules); both are cached
//! under the target directory, so a second run fetches and builds nothing.
//!
//! Other tasks use [`prepare`] (fetch once, up front) and [`run_in_vm`].

mod guest;
mod host;
mod initramfs;
mod kernel;
mod qemu;

use std::{
    ffi::{OsStr, OsString},
    fmt,
    os::unix::ffi::OsStrExt as _,
    path::PathBuf,
    process::ExitCode,
    str::FromStr,
    time::Duration,
};

use anyhow::bail;

pub use host::target_dir;
pub use kernel::{PreparedKernel, prepare};
pub use qemu::run_in_vm;

/// The kernels we test on: Debian 12's generic amd64 builds (the -cloud ones lack 9p).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// linux-image-6.1.*-amd64-unsigned
    V6_1,
    /// linux-image-6.12.*+deb12-amd64-unsigned
    V6_12,
    /// linux-image-6.12.*+deb12-rt-amd64-unsigned (PREEMPT_RT)
    V6_12Rt,
}

impl Kernel {
    pub const ALL: [Kernel; 3] = [Kernel::V6_1, Kernel::V6_12, Kernel::V6_12Rt];
}

impl FromStr for Kernel {
    type Err = String;

    /// For clap's `value_parser` too (with `value_delimiter = ','` for a list): the error
    /// is one line, naming the choices.
    fn from_str(name: &str) -> Result<Self, String> {
        Kernel::ALL
            .into_iter()
            .find(|k| k.to_string() == name)
            .ok_or_else(|| {
                format!("unknown kernel `{name}`; the choices are 6.1, 6.12 and 6.12-rt")
            })
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kernel::V6_1 => "6.1",
            Kernel::V6_12 => "6.12",
            Kernel::V6_12Rt => "6.12-rt",
        })
    }
}

/// How QEMU runs the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    /// KVM when the CPU has VMX/SVM and /dev/kvm is a plain KVM, TCG otherwise.
    Auto,
    Kvm,
    Tcg,
}

/// How to run one command in a guest.
#[derive(Clone, Debug)]
pub struct VmOptions {
    /// Kill the guest after this long.
    pub timeout: Duration,
    pub mem_mb: u32,
    pub cpus: u32,
    /// Environment of the command (besides PATH, HOME, USER, and CI when the host has it).
    pub env: Vec<(String, OsString)>,
    pub accel: Accel,
    /// The command's working directory; the host's current directory when `None`.
    pub cwd: Option<PathBuf>,
    /// Print the console from the start, not only the command's output.
    pub show_boot: bool,
    /// Also return CMD's output lines in [`VmOutcome::output`].
    pub keep_output: bool,
}

impl Default for VmOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(1800),
            mem_mb: 2048,
            cpus: 2,
            env: Vec::new(),
            accel: Accel::Auto,
            cwd: None,
            show_boot: false,
            keep_output: false,
        }
    }
}

/// What a run in a guest gave.
#[derive(Clone, Debug)]
pub struct VmOutcome {
    /// CMD's exit status as its shell saw it (128+N when killed by signal N).
    pub status: u8,
    /// Wall time from starting QEMU to starting CMD.
    pub boot: Duration,
    /// The guest kernel's own uptime when CMD started.
    pub guest_boot: Option<Duration>,
    /// Wall time of CMD.
    pub command: Duration,
    /// Wall time of the whole run, QEMU start to QEMU exit.
    pub total: Duration,
    /// CMD's output lines (printed as they came), when asked for.
    pub output: Vec<String>,
}

#[derive(clap::Args)]
pub struct VmArgs {
    /// Debian 12 stock kernel to boot: 6.1, 6.12 or 6.12-rt.
    #[arg(long, value_parser = Kernel::from_str)]
    kernel: Kernel,
    /// Seconds before the guest is killed.
    #[arg(long, default_value_t = 1800)]
    timeout: u64,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 2048)]
    mem: u32,
    /// Guest CPUs.
    #[arg(long, default_value_t = 2)]
    cpus: u32,
    /// Environment for CMD: NAME=VALUE, or NAME alone for the host's value (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    env: Vec<OsString>,
    #[arg(long, value_enum, default_value_t = Accel::Auto)]
    accel: Accel,
    /// Print the guest's console from the start, not only CMD's output.
    #[arg(long)]
    show_boot: bool,
    /// The command to run in the guest, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    cmd: Vec<OsString>,
}

/// The task's entry: exits with CMD's status, or prints the error and fails.
pub fn main(args: &VmArgs) -> ExitCode {
    match run(args) {
        Ok(status) => ExitCode::from(status),
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &VmArgs) -> anyhow::Result<u8> {
    let mut env = Vec::new();
    for item in &args.env {
        env.push(parse_env(item)?);
    }
    let opts = VmOptions {
        timeout: Duration::from_secs(args.timeout),
        mem_mb: args.mem,
        cpus: args.cpus,
        env,
        accel: args.accel,
        cwd: None,
        show_boot: args.show_boot,
        keep_output: false,
    };
    let kernel: PreparedKernel = prepare(args.kernel)?;
    eprintln!(
        "xtask vm: kernel {} is {} ({})",
        kernel.kernel, kernel.package, kernel.release
    );
    Ok(run_in_vm(&kernel, &args.cmd, &opts)?.status)
}

/// `NAME=VALUE`, or `NAME` for the host's value.
fn parse_env(item: &OsStr) -> anyhow::Result<(String, OsString)> {
    let bytes = item.as_bytes();
    let (name, value) = match bytes.iter().position(|&b| b == b'=') {
        Some(i) => (&bytes[..i], Some(OsStr::from_bytes(&bytes[i + 1..]))),
        None => (bytes, None),
    };
    let name = std::str::from_utf8(name)
        .ok()
        .filter(|n| guest::is_env_name(n))
        .map(str::to_owned);
    let Some(name) = name else {
        bail!(
            "--env {}: not NAME=VALUE with NAME a shell variable name",
            item.to_string_lossy()
        );
    };
    let value = match value {
        Some(v) => v.to_owned(),
        None => match std::env::var_os(&name) {
            Some(v) => v,
            None => bail!("--env {name}: {name} is not set here"),
        },
    };
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_items() {
        let (n, v) = parse_env(OsStr::new("A_1=x=y z")).unwrap();
        assert_eq!((n.as_str(), v.as_os_str()), ("A_1", OsStr::new("x=y z")));
        let (n, v) = parse_env(OsStr::new("E=")).unwrap();
        assert_eq!((n.as_str(), v.as_os_str()), ("E", OsStr::new("")));
        assert!(parse_env(OsStr::new("1A=x")).is_err());
        assert!(parse_env(OsStr::new("A B=x")).is_err());
        assert!(parse_env(OsStr::new("=x")).is_err());
        assert!(parse_env(OsStr::new("XTASK_VM_SURELY_UNSET_VARIABLE")).is_err());
    }

    #[test]
    fn kernel_names() {
        for k in Kernel::ALL {
            assert_eq!(k.to_string().parse(), Ok(k));
        }
        assert!("6.1-cloud".parse::<Kernel>().is_err());
        assert!("".parse::<Kernel>().is_err());
    }
}
