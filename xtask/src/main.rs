//! sigtrace's developer tasks. `setup` makes a fresh machine able to build the eBPF side
//! (nightly rust-src, a bpf-linker built against the nightly's own LLVM); every other task
//! runs it first. Cargo itself builds (sigtrace/build.rs builds the eBPF programs).

mod apt;
mod bench;
mod btf_fixtures;
mod dist;
mod exec;
mod fuzz;
mod run;
mod setup;
mod soak;
mod test;
mod vm;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "sigtrace developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building needs: rust-src for nightly, bpf-linker against nightly's LLVM.
    Setup,
    /// Build sigtrace (release).
    Build,
    /// Build and run sigtrace with ARGS (directly as root, through sudo otherwise).
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Formatting, lints, every unit and end-to-end test here, then the end-to-end suite in
    /// each kernel of the matrix (QEMU guests).
    Test(test::TestArgs),
    /// Overhead on a signal storm: untraced vs sigtrace (text, JSON, filtered) vs bpftrace.
    Bench(bench::BenchArgs),
    /// Run the cargo-fuzz (libFuzzer) targets of fuzz/ for --seconds each; a crash fails.
    Fuzz(fuzz::FuzzArgs),
    /// Write each matrix kernel's (and this kernel's) BTF to sigtrace/tests/data/btf.
    BtfFixtures,
    /// Trace the whole machine for --minutes under signal storms, pgrp kills, RT queue
    /// overflows and fork/exec/exit churn; check nothing is lost unaccounted and memory
    /// stays flat.
    Soak(soak::SoakArgs),
    /// One process of the soak (internal).
    #[command(hide = true)]
    SoakWorker(soak::WorkerArgs),
    /// Run CMD as root in a QEMU guest booting a Debian 12 stock kernel (6.1, 6.12, 6.12-rt).
    Vm(vm::VmArgs),
    /// Build the release packages into target/dist/: a Debian package and a tarball, with
    /// man pages, shell completions and the systemd unit; --test installs them into a
    /// clean Debian 12 chroot and uses them there.
    Dist(dist::DistArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::run(),
        Task::Build => setup::run().and_then(|()| run::build()),
        Task::Run { args } => setup::run().and_then(|()| run::run(&args)),
        Task::Test(args) => setup::run().and_then(|()| test::run(&args)),
        Task::Bench(args) => setup::run().and_then(|()| bench::run(&args)),
        // Needs nightly and cargo-fuzz, not bpf-linker: the targets build without eBPF.
        Task::Fuzz(args) => fuzz::run(&args),
        Task::BtfFixtures => btf_fixtures::run(),
        Task::Soak(args) => setup::run().and_then(|()| soak::run(&args)),
        Task::SoakWorker(args) => soak::run_worker(&args),
        Task::Dist(args) => setup::run().and_then(|()| dist::run(&args)),
        // Needs no eBPF toolchain; exits with the guest command's status.
        Task::Vm(args) => return vm::main(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}
