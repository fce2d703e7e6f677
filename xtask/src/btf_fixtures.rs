//! `cargo xtask btf-fixtures`: writes the vmlinux BTF of each matrix kernel, and of this
//! machine's kernel, to `sigtrace/tests/data/btf/RELEASE.btf.gz`, where the offset unit
//! tests read them (no root, no VM). A kernel's BTF is the `.BTF` section of its vmlinux —
//! the same bytes its /sys/kernel/btf/vmlinux serves — taken here from the compressed
//! vmlinux inside the package's bzImage (xz for 6.1, zstd for 6.12).

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};
use object::{Object as _, ObjectSection as _};

use crate::vm::{self, Kernel};

const XZ_MAGIC: &[u8] = b"\xfd7zXZ\x00";
const ZSTD_MAGIC: &[u8] = b"\x28\xb5\x2f\xfd";

pub fn run() -> anyhow::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sigtrace/tests/data/btf");
    for kernel in Kernel::ALL {
        let prepared = vm::prepare(kernel)?;
        let vmlinux = decompress_vmlinux(&prepared.vmlinuz)?;
        let btf = btf_section(&vmlinux)
            .with_context(|| format!("{}: no BTF in its vmlinux", prepared.release))?;
        write_gz(&dir.join(format!("{}.btf.gz", prepared.release)), &btf)?;
    }
    let release = fs::read_to_string("/proc/sys/kernel/osrelease")
        .context("cannot read this kernel's release")?;
    let btf = fs::read("/sys/kernel/btf/vmlinux").context("this kernel has no BTF")?;
    write_gz(&dir.join(format!("{}.btf.gz", release.trim())), &btf)?;
    eprintln!(
        "xtask btf-fixtures: update the expected layouts in sigtrace/src/btf.rs from `bpftool btf dump file F format raw` for any new file"
    );
    Ok(())
}

/// The vmlinux ELF inside a bzImage: its payload is the first xz or zstd stream.
fn decompress_vmlinux(vmlinuz: &Path) -> anyhow::Result<Vec<u8>> {
    let image = fs::read(vmlinuz).with_context(|| format!("cannot read {}", vmlinuz.display()))?;
    let find = |magic: &[u8]| image.windows(magic.len()).position(|w| w == magic);
    let elf = match (find(XZ_MAGIC), find(ZSTD_MAGIC)) {
        // The kernel's xz uses the x86 BCJ filter, which lzma-rs lacks: Debian's own tools.
        (Some(at), _) => decompress_with("xz", &image[at..])?,
        (None, Some(at)) => decompress_with("zstd", &image[at..])?,
        (None, None) => bail!("{}: no xz or zstd payload", vmlinuz.display()),
    };
    if !elf.starts_with(b"\x7fELF") {
        bail!("{}: its payload is not an ELF vmlinux", vmlinuz.display());
    }
    Ok(elf)
}

/// Through `xz` or `zstd` (both in Debian's base system). The bzImage's trailer follows the
/// stream, so the tool complains after writing the whole payload: its status is not used.
fn decompress_with(tool: &str, data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut child = Command::new(tool)
        .args(["-dc", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {tool} (apt-get install {tool})"))?;
    let mut stdin = child.stdin.take().context("the decompressor's stdin")?;
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child
        .wait_with_output()
        .with_context(|| format!("{tool} failed"))?;
    // It may stop reading at the stream's end: the broken pipe that follows is expected.
    let _ = writer.join();
    if out.stdout.is_empty() {
        bail!("{tool} produced nothing");
    }
    Ok(out.stdout)
}

fn btf_section(elf: &[u8]) -> anyhow::Result<Vec<u8>> {
    let file = object::File::parse(elf).context("not an ELF file")?;
    let section = file.section_by_name(".BTF").context("no .BTF section")?;
    Ok(section.data().context(".BTF section")?.to_vec())
}

fn write_gz(path: &PathBuf, data: &[u8]) -> anyhow::Result<()> {
    let file =
        fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::best());
    gz.write_all(data)?;
    gz.finish()?;
    eprintln!(
        "xtask btf-fixtures: wrote {} ({} bytes of BTF)",
        path.display(),
        data.len()
    );
    Ok(())
}
