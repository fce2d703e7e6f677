use std::{env, path::PathBuf};

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

/// Builds the eBPF programs (sigtrace-ebpf) for bpfel-unknown-none with the nightly
/// toolchain and bpf-linker, which `cargo xtask setup` installs.
fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("MetadataCommand::exec")?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "sigtrace-ebpf")
        .ok_or_else(|| anyhow!("sigtrace-ebpf package not found"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("sigtrace-ebpf manifest has no parent"))?;
    aya_build::build_ebpf(
        [Package {
            name: ebpf.name.as_str(),
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        Toolchain::default(),
    )?;
    placeholder_when_skipped()
}

/// The eBPF objects (sigtrace-ebpf's binaries): raw tracepoints read through helpers, and
/// BTF tracepoints read with plain loads.
const OBJECTS: [&str; 2] = ["sigtrace", "sigtrace-btf"];

/// With AYA_BUILD_SKIP=1, aya-build builds no eBPF programs: the fuzz targets (fuzz/) set it,
/// as they never load BPF and building the programs again for their target directory takes
/// minutes. An empty object then stands in so that the library compiles; loading it fails.
fn placeholder_when_skipped() -> anyhow::Result<()> {
    let skipped = env::var_os("AYA_BUILD_SKIP")
        .is_some_and(|value| value == "1" || value.eq_ignore_ascii_case("true"));
    if !skipped {
        return Ok(());
    }
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    for name in OBJECTS {
        let object = out_dir.join(name);
        if !object.exists() {
            std::fs::write(&object, []).with_context(|| format!("writing {}", object.display()))?;
        }
    }
    Ok(())
}
