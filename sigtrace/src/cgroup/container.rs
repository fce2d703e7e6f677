//! Who a cgroup belongs to, read from its path alone: the container (runtime, 64-hex id,
//! Kubernetes pod) and the systemd unit. No runtime is asked: the names runtimes give their
//! cgroups are stable conventions, and asking a daemon per event would be slow and would
//! fail for containers that are already gone.
//!
//! Recognised (innermost match wins, so a container's own `init.scope` or `container`
//! child, or a container nested in another, is attributed to the innermost container):
//!
//! | cgroup directory                          | runtime    | driver          |
//! |-------------------------------------------|------------|-----------------|
//! | `docker-<id>.scope`                       | docker     | systemd         |
//! | `docker/<id>`                             | docker     | cgroupfs        |
//! | `cri-containerd-<id>.scope`               | containerd | systemd (CRI)   |
//! | `nerdctl-<id>.scope`                      | containerd | systemd         |
//! | `crio-<id>.scope`, `crio-<id>`            | cri-o      | systemd, cgroupfs |
//! | `libpod-<id>.scope`, `libpod-<id>`        | podman     | systemd, cgroupfs |
//! | `<id>` under any other parent             | unknown    | cgroupfs (kubelet: containerd or cri-dockerd, indistinguishable) |
//!
//! `<id>` is exactly 64 lowercase hex digits. The monitors `crio-conmon-<id>` and
//! `libpod-conmon-<id>.scope` hold conmon, not the container, and do not parse (their unit
//! name still says whose monitor they are).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

/// The container engine that named the cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Runtime {
    Docker,
    /// containerd through the CRI (`cri-containerd-`) or through nerdctl (`nerdctl-`).
    Containerd,
    CriO,
    Podman,
    /// A bare 64-hex directory outside `docker/`: kubelet's cgroupfs driver names containerd's
    /// and cri-dockerd's containers alike, and `--cgroup-parent` moves docker's anywhere.
    Unknown,
}

impl Runtime {
    /// The name for output: `docker`, `containerd`, `cri-o`, `podman`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Podman => "podman",
            Runtime::Unknown => "unknown",
        }
    }
}

/// A container, as its cgroup path names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Container {
    pub runtime: Runtime,
    /// The full container id: 64 lowercase hex digits.
    pub id: String,
    /// The Kubernetes pod's UID, dashed (`0a1b2c3d-…`), or the 32-hex hash kubelet gives a
    /// static pod; None outside Kubernetes.
    pub pod_uid: Option<String>,
}

/// Suffixes of the systemd units that hold processes (slices never do).
const UNIT_SUFFIXES: [&[u8]; 5] = [b".service", b".scope", b".socket", b".mount", b".swap"];

/// systemd's limit on a unit name (UNIT_NAME_MAX, with the NUL).
const UNIT_NAME_MAX: usize = 255;

/// The systemd-driver scopes: `<prefix><id>.scope`.
const SCOPE_PREFIXES: [(&[u8], Runtime); 5] = [
    (b"docker-", Runtime::Docker),
    (b"cri-containerd-", Runtime::Containerd),
    (b"nerdctl-", Runtime::Containerd),
    (b"crio-", Runtime::CriO),
    (b"libpod-", Runtime::Podman),
];

/// The cgroupfs-driver directories that keep a prefix: `<prefix><id>`.
const CGROUPFS_PREFIXES: [(&[u8], Runtime); 2] =
    [(b"crio-", Runtime::CriO), (b"libpod-", Runtime::Podman)];

/// The container a cgroup path (hierarchy-absolute, or any suffix of one) belongs to.
pub fn parse_container(path: &Path) -> Option<Container> {
    let names = names(path);
    (0..names.len()).rev().find_map(|at| {
        let parent = at.checked_sub(1).map(|p| names[p]);
        let (runtime, id) = container_dir(names[at], parent)?;
        Some(Container {
            runtime,
            id: id.to_owned(),
            pod_uid: pod_uid(&names[..at]),
        })
    })
}

/// The innermost systemd unit on a cgroup path (`sshd.service`, `session-3.scope`,
/// `docker-<id>.scope`), which is how a service that is no container is known. Only names in
/// systemd's unit alphabet count, so the result is plain ASCII.
pub fn systemd_unit(path: &Path) -> Option<&str> {
    names(path).into_iter().rev().find_map(|name| {
        let ok = name.len() <= UNIT_NAME_MAX
            && UNIT_SUFFIXES
                .iter()
                .any(|s| name.len() > s.len() && name.ends_with(s))
            && name
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b":-_.\\@".contains(&b));
        // The alphabet is ASCII, so the conversion cannot fail.
        ok.then(|| OsStr::from_bytes(name).to_str()).flatten()
    })
}

/// The path's directory names, outermost first.
fn names(path: &Path) -> Vec<&[u8]> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.as_bytes()),
            _ => None,
        })
        .collect()
}

/// The runtime and id when `name` is a container's own directory.
fn container_dir<'a>(name: &'a [u8], parent: Option<&[u8]>) -> Option<(Runtime, &'a str)> {
    if let Some(stem) = name.strip_suffix(b".scope") {
        for (prefix, runtime) in SCOPE_PREFIXES {
            if let Some(id) = stem.strip_prefix(prefix).and_then(container_id) {
                return Some((runtime, id));
            }
        }
        return None;
    }
    for (prefix, runtime) in CGROUPFS_PREFIXES {
        if let Some(id) = name.strip_prefix(prefix).and_then(container_id) {
            return Some((runtime, id));
        }
    }
    let id = container_id(name)?;
    let runtime = if parent == Some(b"docker") {
        Runtime::Docker
    } else {
        Runtime::Unknown
    };
    Some((runtime, id))
}

/// `raw` when it is a full container id: 64 lowercase hex digits. The exact length keeps out
/// short ids and the `conmon-<id>` of a monitor.
fn container_id(raw: &[u8]) -> Option<&str> {
    let ok = raw.len() == 64 && raw.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    ok.then(|| std::str::from_utf8(raw).ok()).flatten()
}

/// The pod UID from the pod's directory among `ancestors`: `kubepods[-qos]-pod<uid>.slice`
/// (systemd driver, `_` for `-`; kind prefixes `kubelet-`) or `pod<uid>` below a `kubepods`
/// directory (cgroupfs driver).
fn pod_uid(ancestors: &[&[u8]]) -> Option<String> {
    ancestors.iter().enumerate().rev().find_map(|(at, name)| {
        if let Some(stem) = name.strip_suffix(b".slice") {
            let dash = stem.iter().rposition(|&b| b == b'-')?;
            let (head, last) = (&stem[..dash], &stem[dash + 1..]);
            if !head.split(|&b| b == b'-').any(|part| part == b"kubepods") {
                return None;
            }
            return last
                .strip_prefix(b"pod")
                .and_then(|uid| pod_uid_text(uid, b'_'));
        }
        let uid = name.strip_prefix(b"pod")?;
        if !ancestors[..at].contains(&&b"kubepods"[..]) {
            return None;
        }
        pod_uid_text(uid, b'-')
    })
}

/// A pod UID written with `sep` between its groups, as the dashed UUID, or a static pod's
/// 32-hex hash as it is.
fn pod_uid_text(raw: &[u8], sep: u8) -> Option<String> {
    let hex = |b: &u8| matches!(b, b'0'..=b'9' | b'a'..=b'f');
    if raw.len() == 32 && raw.iter().all(hex) {
        return std::str::from_utf8(raw).ok().map(str::to_owned);
    }
    let uuid = raw.len() == 36
        && raw.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == sep,
            _ => hex(b),
        });
    uuid.then(|| {
        raw.iter()
            .map(|&b| if b == sep { '-' } else { char::from(b) })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f797c539e6c745de61a93ca3ff892358ecbcaccd8414d5db545c38428142970";
    const UID: &str = "0a1b2c3d-4e5f-6789-abcd-ef0123456789";

    fn parse(path: &str) -> Option<Container> {
        parse_container(Path::new(path))
    }

    fn container(runtime: Runtime, pod_uid: Option<&str>) -> Option<Container> {
        Some(Container {
            runtime,
            id: ID.to_owned(),
            pod_uid: pod_uid.map(str::to_owned),
        })
    }

    fn systemd_uid() -> String {
        UID.replace('-', "_")
    }

    #[test]
    fn docker_with_the_systemd_driver() {
        let path = format!("/system.slice/docker-{ID}.scope");
        assert_eq!(parse(&path), container(Runtime::Docker, None));
        assert_eq!(
            systemd_unit(Path::new(&path)),
            Some(&*format!("docker-{ID}.scope"))
        );
    }

    #[test]
    fn docker_with_the_cgroupfs_driver() {
        assert_eq!(
            parse(&format!("/docker/{ID}")),
            container(Runtime::Docker, None)
        );
        assert_eq!(systemd_unit(Path::new(&format!("/docker/{ID}"))), None);
    }

    #[test]
    fn a_containers_own_init_scope_belongs_to_the_container() {
        let path = format!("/system.slice/docker-{ID}.scope/init.scope");
        assert_eq!(parse(&path), container(Runtime::Docker, None));
        // The unit is the innermost one: the container's own systemd's init.scope.
        assert_eq!(systemd_unit(Path::new(&path)), Some("init.scope"));
    }

    #[test]
    fn the_innermost_of_nested_containers_wins() {
        let outer = "a".repeat(64);
        let path = format!("/system.slice/docker-{outer}.scope/docker/{ID}");
        assert_eq!(parse(&path), container(Runtime::Docker, None));
    }

    #[test]
    fn containerd_in_a_kubernetes_pod_with_the_systemd_driver() {
        let uid = systemd_uid();
        for qos in ["besteffort", "burstable"] {
            let path = format!(
                "/kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{uid}.slice/cri-containerd-{ID}.scope"
            );
            assert_eq!(
                parse(&path),
                container(Runtime::Containerd, Some(UID)),
                "{path}"
            );
        }
        // Guaranteed pods have no QoS slice.
        let path = format!("/kubepods.slice/kubepods-pod{uid}.slice/cri-containerd-{ID}.scope");
        assert_eq!(parse(&path), container(Runtime::Containerd, Some(UID)));
        // kind runs kubelet with --cgroup-root=/kubelet.
        let path = format!(
            "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{uid}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(parse(&path), container(Runtime::Containerd, Some(UID)));
    }

    #[test]
    fn kubernetes_pods_with_the_cgroupfs_driver() {
        for qos in ["besteffort/", "burstable/", ""] {
            let path = format!("/kubepods/{qos}pod{UID}/{ID}");
            assert_eq!(
                parse(&path),
                container(Runtime::Unknown, Some(UID)),
                "{path}"
            );
        }
        // CRI-O keeps its prefix under cgroupfs.
        let path = format!("/kubepods/burstable/pod{UID}/crio-{ID}");
        assert_eq!(parse(&path), container(Runtime::CriO, Some(UID)));
    }

    #[test]
    fn a_static_pods_uid_is_a_hash() {
        let hash = "3c5ab8f6e5e6a9d0c6d4b3b7c5b1a0f2";
        let path = format!("/kubepods.slice/kubepods-pod{hash}.slice/crio-{ID}.scope");
        assert_eq!(parse(&path), container(Runtime::CriO, Some(hash)));
        let path = format!("/kubepods/pod{hash}/{ID}");
        assert_eq!(parse(&path), container(Runtime::Unknown, Some(hash)));
    }

    #[test]
    fn cri_o_and_its_container_subcgroup() {
        let pod = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice",
            systemd_uid()
        );
        for path in [
            format!("{pod}/crio-{ID}.scope"),
            format!("{pod}/crio-{ID}.scope/container"),
        ] {
            assert_eq!(parse(&path), container(Runtime::CriO, Some(UID)), "{path}");
        }
    }

    #[test]
    fn podman_rootful_rootless_and_cgroupfs() {
        for path in [
            format!("/machine.slice/libpod-{ID}.scope"),
            format!("/machine.slice/libpod-{ID}.scope/container"),
            format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"),
            format!("/libpod_parent/libpod-{ID}"),
        ] {
            assert_eq!(parse(&path), container(Runtime::Podman, None), "{path}");
        }
    }

    #[test]
    fn nerdctl_is_containerd() {
        let path = format!("/system.slice/nerdctl-{ID}.scope");
        assert_eq!(parse(&path), container(Runtime::Containerd, None));
    }

    #[test]
    fn monitors_are_not_containers() {
        let pod = format!("/kubepods.slice/kubepods-pod{}.slice", systemd_uid());
        for path in [
            format!("{pod}/crio-conmon-{ID}.scope"),
            format!("/kubepods/pod{UID}/crio-conmon-{ID}"),
            format!("/machine.slice/libpod-conmon-{ID}.scope"),
            "/libpod_parent/conmon".to_owned(),
        ] {
            assert_eq!(parse(&path), None, "{path}");
        }
        // The unit still names whose monitor it is.
        let path = format!("/machine.slice/libpod-conmon-{ID}.scope");
        assert_eq!(
            systemd_unit(Path::new(&path)),
            Some(&*format!("libpod-conmon-{ID}.scope"))
        );
    }

    #[test]
    fn near_misses_do_not_parse() {
        let short = &ID[..63];
        let upper = ID.to_uppercase();
        let non_hex = format!("{}g", &ID[..63]);
        for path in [
            format!("/system.slice/docker-{short}.scope"),
            format!("/system.slice/docker-{ID}0.scope"),
            format!("/system.slice/docker-{upper}.scope"),
            format!("/system.slice/docker-{non_hex}.scope"),
            format!("/docker/{short}"),
            format!("/docker/{non_hex}"),
            format!("/system.slice/docker-{ID}.service"),
            format!("/system.slice/docker-{ID}"),
            format!("/system.slice/cri-containerd-{ID}"),
            format!("/system.slice/podman-{ID}.scope"),
            format!("/system.slice/docker-{ID}.scope.bak"),
            "/".to_owned(),
            "/init.scope".to_owned(),
            "/system.slice/docker.service".to_owned(),
            "/user.slice/user-1000.slice/session-3.scope".to_owned(),
            "/machine.slice/machine-qemu\\x2d1\\x2dvm.scope".to_owned(),
        ] {
            assert_eq!(parse(&path), None, "{path}");
        }
    }

    #[test]
    fn pod_uids_must_be_well_formed() {
        let bad_uids = [
            UID[..35].to_owned(),       // short
            UID.replace('-', ""),       // 32 hex is a hash, 36 is not
            UID.replacen('a', "A", 1),  // upper case
            format!("{}x", &UID[..35]), // not hex
            UID.replace('-', "_"),      // cgroupfs keeps the dashes
        ];
        for uid in &bad_uids[..4] {
            let path = format!("/kubepods/pod{uid}/{ID}");
            let want = (uid.len() == 32).then(|| uid.clone());
            assert_eq!(parse(&path).and_then(|c| c.pod_uid), want, "{path}");
        }
        let path = format!("/kubepods/pod{}/{ID}", bad_uids[4]);
        assert_eq!(parse(&path).and_then(|c| c.pod_uid), None);
        // systemd slices use `_`: a dashed uid would have been split by systemd.
        let path = format!("/kubepods.slice/kubepods-pod{UID}.slice/crio-{ID}.scope");
        assert_eq!(parse(&path).and_then(|c| c.pod_uid), None);
        // A pod directory outside kubepods is not a Kubernetes pod.
        let path = format!("/other/pod{UID}/{ID}");
        assert_eq!(parse(&path), container(Runtime::Unknown, None));
        let path = format!(
            "/machine.slice/machine-pod{}.slice/libpod-{ID}.scope",
            systemd_uid()
        );
        assert_eq!(parse(&path), container(Runtime::Podman, None));
    }

    #[test]
    fn the_pod_must_be_above_the_container() {
        let path = format!("/kubepods/{ID}/pod{UID}");
        assert_eq!(parse(&path), container(Runtime::Unknown, None));
    }

    #[test]
    fn units_of_plain_services() {
        for (path, unit) in [
            ("/system.slice/sshd.service", Some("sshd.service")),
            (
                "/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service",
                Some("foo.service"),
            ),
            (
                "/user.slice/user-1000.slice/session-3.scope",
                Some("session-3.scope"),
            ),
            (
                "/system.slice/getty@tty1.service",
                Some("getty@tty1.service"),
            ),
            (
                "/system.slice/dev-hugepages.mount",
                Some("dev-hugepages.mount"),
            ),
            ("/system.slice", None),
            ("/", None),
            // Not systemd's alphabet: a name some user chose, not a unit.
            ("/user.slice/evil\x1b[31m.service", None),
            ("/user.slice/a b.service", None),
            ("/system.slice/.service", None),
        ] {
            assert_eq!(systemd_unit(Path::new(path)), unit, "{path:?}");
        }
    }

    #[test]
    fn non_utf8_names_are_neither_containers_nor_units() {
        use std::ffi::OsStr;
        let mut raw = format!("/docker/{ID}").into_bytes();
        raw.push(0xff);
        assert_eq!(parse_container(Path::new(OsStr::from_bytes(&raw))), None);
        let raw = b"/system.slice/\xffx.service";
        assert_eq!(systemd_unit(Path::new(OsStr::from_bytes(raw))), None);
    }
}
