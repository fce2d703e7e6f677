use which::which;

/// Rebuild the eBPF programs when bpf-linker changes (a new linker means new code).
/// aya-build does not track the linker itself.
fn main() {
    if let Ok(linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
