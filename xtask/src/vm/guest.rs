//! What the guest runs, as shell text: the two init stages baked into the initramfs, and the
//! per-run files the host writes into the `out` share (setup.sh, sourced by the init as
//! root; run.sh, CMD with its environment and working directory). CMD and its arguments
//! reach the guest only through run.sh, single-quoted byte for byte, so any argument
//! survives; nothing of them goes on the kernel command line.

use std::{
    ffi::{OsStr, OsString},
    os::unix::ffi::OsStrExt as _,
    path::Path,
};

/// Where the init mounts the `out` share, before switch_root so that it stays visible.
pub const OUT_MOUNT: &str = "/run/xtask-out";
/// Printed by the init right before CMD starts; followed by ` uptime=SECONDS`.
pub const BEGIN_MARKER: &str = "xtask-vm-guest: begin";
/// Printed by the init right after CMD ends; followed by ` status=N`.
pub const END_MARKER: &str = "xtask-vm-guest: end";
/// Printed by the init when it cannot set the guest up, before powering off.
pub const FAIL_MARKER: &str = "xtask-vm-guest: init failed:";

/// Stage 1, /init in the initramfs: load the modules (`insmod` lines in dependency order),
/// build the root (host's / read-only over 9p under a tmpfs overlay), mount the out share
/// inside it, then switch_root into stage 2 with a copy of busybox that lives in /run.
pub fn stage1(modules: &[String]) -> String {
    let mut insmods = String::new();
    for m in modules {
        let q = quote_str(m);
        insmods.push_str(&format!("insmod /modules/{q} || fail insmod {q}\n"));
    }
    format!(
        r#"#!/bin/busybox sh
# Stage 1 of `cargo xtask vm`'s guest init (PID 1 in the initramfs).
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
export PATH=/bin
fail() {{
    echo "{FAIL_MARKER} $*"
    echo o > /proc/sysrq-trigger
    while :; do sleep 60; done
}}
{insmods}opts=trans=virtio,version=9p2000.L,msize=512000
mkdir -p /mnt/host /mnt/rw /newroot
mount -t 9p -o ro,$opts,cache=loose root /mnt/host || fail "mount the host's root (9p tag root)"
mount -t tmpfs -o mode=0755 rw /mnt/rw || fail "mount the overlay's tmpfs"
mkdir -p /mnt/rw/upper /mnt/rw/work
mount -t overlay -o lowerdir=/mnt/host,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work overlay /newroot || fail "mount the overlay root"
# /run is mounted here, not in stage 2, so that the out share below it survives switch_root.
mkdir -p /newroot/run
mount -t tmpfs -o mode=0755,nosuid,nodev run /newroot/run || fail "mount /run"
mkdir -p /newroot/run/xtask/bin /newroot{OUT_MOUNT}
cp /bin/busybox /newroot/run/xtask/bin/busybox || fail "copy busybox"
cp /stage2 /newroot/run/xtask/stage2 || fail "copy stage 2"
mount -t 9p -o $opts out /newroot{OUT_MOUNT} || fail "mount the out share (9p tag out)"
umount /proc
exec switch_root /newroot /run/xtask/bin/busybox sh /run/xtask/stage2
"#
    )
}

/// Stage 2, PID 1 in the new root: the mounts a systemd machine has (debugfs included, on
/// purpose: the tests must cope with its tracefs automount), then setup.sh, then run.sh
/// by the host's /bin/sh with an empty environment, its status into the out share, and
/// power off.
pub fn stage2() -> String {
    format!(
        r#"# Stage 2 of `cargo xtask vm`'s guest init (PID 1 after switch_root).
bb=/run/xtask/bin/busybox
$bb mount -t proc proc /proc
$bb --install -s /run/xtask/bin
export PATH=/run/xtask/bin
fail() {{
    echo "{FAIL_MARKER} $*"
    echo o > /proc/sysrq-trigger
    while :; do sleep 60; done
}}
want() {{
    mount "$@" || echo "xtask-vm-guest: warning: mount $* failed"
}}
mount -t sysfs sysfs /sys || fail "mount /sys"
mount -t devtmpfs devtmpfs /dev || fail "mount /dev"
mkdir -p /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts /dev/pts || fail "mount /dev/pts"
mount --bind /dev/pts/ptmx /dev/ptmx || fail "bind /dev/ptmx"
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
mount -t tmpfs -o mode=1777,nosuid,nodev shm /dev/shm || fail "mount /dev/shm"
# /tmp stays the host's, under the overlay: a clone (and its target/) there must be seen.
want -t bpf -o mode=0700 bpf /sys/fs/bpf
want -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
want -t debugfs -o mode=0700 debugfs /sys/kernel/debug
want -t tracefs -o mode=0700 tracefs /sys/kernel/tracing
hostname sigtrace-vm
ip link set lo up || echo "xtask-vm-guest: warning: no loopback"
[ -f {OUT_MOUNT}/setup.sh ] && . {OUT_MOUNT}/setup.sh
read up idle < /proc/uptime
echo "{BEGIN_MARKER} uptime=$up"
# The host's sh, not busybox's: Debian's static busybox runs its own applets before PATH,
# so CMD's `ls` or `sh` would not be this machine's.
env -i /bin/sh {OUT_MOUNT}/run.sh < /dev/null
status=$?
echo "$status" > {OUT_MOUNT}/status
echo "{END_MARKER} status=$status"
echo o > /proc/sysrq-trigger
while :; do sleep 60; done
"#
    )
}

/// setup.sh: per-run root setup. The guest's /lib/modules is the host's (another kernel),
/// so bind the guest kernel's own modules tree there for modprobe inside the guest.
pub fn setup_script(release: &str, modules_dir: &Path) -> Vec<u8> {
    let target = format!("/lib/modules/{release}");
    let mut s = b"# Written by `cargo xtask vm`; sourced by the guest's init as root.\n".to_vec();
    s.extend_from_slice(b"mkdir -p ");
    s.extend_from_slice(&quote_str(&target).into_bytes());
    s.extend_from_slice(b" && mount --bind ");
    s.extend_from_slice(&quote(modules_dir.as_os_str()));
    s.push(b' ');
    s.extend_from_slice(&quote_str(&target).into_bytes());
    s.extend_from_slice(b" || echo \"xtask-vm-guest: warning: no modules at ");
    s.extend_from_slice(target.as_bytes());
    s.extend_from_slice(b"\"\n");
    s
}

/// run.sh: exports, `cd`, then `exec` of CMD, every word quoted.
pub fn run_script(cmd: &[OsString], env: &[(String, OsString)], cwd: &Path) -> Vec<u8> {
    let mut s =
        b"# Written by `cargo xtask vm`; run by the guest's init with an empty environment.\n"
            .to_vec();
    for (name, value) in env {
        s.extend_from_slice(b"export ");
        s.extend_from_slice(name.as_bytes());
        s.push(b'=');
        s.extend_from_slice(&quote(value));
        s.push(b'\n');
    }
    let dir = quote(cwd.as_os_str());
    s.extend_from_slice(b"cd ");
    s.extend_from_slice(&dir);
    s.extend_from_slice(b" || { echo \"xtask-vm-guest: cannot cd to \"");
    s.extend_from_slice(&dir);
    s.extend_from_slice(b" >&2; exit 125; }\nexec");
    for word in cmd {
        s.push(b' ');
        s.extend_from_slice(&quote(word));
    }
    s.push(b'\n');
    s
}

/// A shell word that stands for exactly `word`: single quotes keep every byte but the
/// single quote itself, which is closed, escaped and reopened.
pub fn quote(word: &OsStr) -> Vec<u8> {
    let mut q = Vec::with_capacity(word.len() + 2);
    q.push(b'\'');
    for &b in word.as_bytes() {
        if b == b'\'' {
            q.extend_from_slice(b"'\\''");
        } else {
            q.push(b);
        }
    }
    q.push(b'\'');
    q
}

fn quote_str(word: &str) -> String {
    // quote() only adds ASCII to the bytes of a str, so the result is UTF-8 again.
    String::from_utf8_lossy(&quote(OsStr::new(word))).into_owned()
}

/// A name the shell accepts after `export`.
pub fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote(OsStr::new("")), b"''");
        assert_eq!(quote(OsStr::new("a b")), b"'a b'");
        assert_eq!(quote(OsStr::new("it's")), b"'it'\\''s'");
        assert_eq!(quote(OsStr::new("$x `y` \\ \"")), b"'$x `y` \\ \"'");
    }

    /// The host's sh reads back exactly the words we quoted, odd bytes included.
    #[test]
    fn quoting_round_trips_through_sh() {
        let words: Vec<OsString> = [
            &b"plain"[..],
            b"",
            b"two words",
            b"'",
            b"a'b''c",
            b"$HOME `id` $(id) \\n \" * ?",
            b"line\nbreak",
            b"-e",
            b"\xff\xfe not utf-8",
        ]
        .iter()
        .map(|b| OsStr::from_bytes(b).to_owned())
        .collect();
        let mut script = b"for w in".to_vec();
        for w in &words {
            script.push(b' ');
            script.extend_from_slice(&quote(w));
        }
        script.extend_from_slice(b"; do printf '%s\\0' \"$w\"; done");
        let out = Command::new("sh")
            .arg("-c")
            .arg(OsStr::from_bytes(&script))
            .output()
            .unwrap();
        let got: Vec<&[u8]> = out.stdout.split(|&b| b == 0).collect();
        let want: Vec<&[u8]> = words
            .iter()
            .map(|w| w.as_bytes())
            .chain([&b""[..]])
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn run_script_text() {
        let cmd = [OsString::from("sh"), "-c".into(), "exit 7".into()];
        let env = [("CI".to_owned(), OsString::from("true"))];
        let text = run_script(&cmd, &env, Path::new("/work/it's"));
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "# Written by `cargo xtask vm`; run by the guest's init with an empty environment.\n\
             export CI='true'\n\
             cd '/work/it'\\''s' || { echo \"xtask-vm-guest: cannot cd to \"'/work/it'\\''s' >&2; exit 125; }\n\
             exec 'sh' '-c' 'exit 7'\n"
        );
    }

    #[test]
    fn run_script_runs() {
        let dir = tempfile::tempdir().unwrap();
        let cmd = [
            OsString::from("sh"),
            "-c".into(),
            "echo \"$A|$PWD\"; exit 7".into(),
        ];
        let env = [("A".to_owned(), OsString::from("x 'y'"))];
        let script = run_script(&cmd, &env, dir.path());
        let out = Command::new("sh")
            .arg("-c")
            .arg(OsStr::from_bytes(&script))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(7));
        let want = format!("x 'y'|{}\n", dir.path().display());
        assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    }

    #[test]
    fn env_names() {
        assert!(is_env_name("CI"));
        assert!(is_env_name("_a1"));
        assert!(!is_env_name(""));
        assert!(!is_env_name("1a"));
        assert!(!is_env_name("a-b"));
    }

    #[test]
    fn stage1_loads_modules_in_order() {
        let text = stage1(&["a.ko".into(), "b.ko".into()]);
        let a = text.find("insmod /modules/'a.ko'").unwrap();
        let b = text.find("insmod /modules/'b.ko'").unwrap();
        let mount = text.find("mount -t 9p").unwrap();
        assert!(a < b && b < mount);
    }
}
