//! `cargo xtask bench` (written with issue 6).

#[derive(clap::Args)]
pub struct BenchArgs {}

pub fn run(_args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("the benchmark is not written yet")
}
