//! Against the real cgroup2 mount: cgroups named the way runtimes name them are created
//! (root only), looked up by path and by id, and removed again. Without root or without a
//! cgroup v2 mount the tests skip loudly, except under CI=true, where that fails. Names
//! carry the test process's pid, a counter and the time, so parallel tests and parallel
//! runs never share a cgroup.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::{CgroupResolver, Hierarchy, Runtime};

/// The hierarchy, when this test can create cgroups in it.
fn hierarchy_for(test: &str) -> Option<Hierarchy> {
    let why = if !nix::unistd::geteuid().is_root() {
        "needs root to create cgroups (run `sudo -E cargo test -p sigtrace`)".to_owned()
    } else {
        match Hierarchy::find() {
            Ok(h) => return Some(h),
            Err(e) => e.to_string(),
        }
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {why}, and CI=true does not allow skipping");
    }
    eprintln!("\n*** SKIPPING {test}: {why} ***\n");
    None
}

/// A name part no other test or test run uses.
fn unique() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{:08x}{:04x}{:08x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed) & 0xffff,
        nanos
    )
}

/// The cgroups a test created, removed deepest first when it ends, passing or failing.
struct Cgroups {
    hierarchy: Hierarchy,
    /// The test's own top cgroup, `<mount>/sigtrace-test-<unique>.slice`.
    top: PathBuf,
    created: Vec<PathBuf>,
}

impl Cgroups {
    fn new(hierarchy: Hierarchy) -> Self {
        let top = hierarchy
            .mount_point()
            .join(format!("sigtrace-test-{}.slice", unique()));
        let mut cgroups = Cgroups {
            hierarchy,
            top: top.clone(),
            created: Vec::new(),
        };
        cgroups.mkdir_at(top);
        cgroups
    }

    /// Creates `below` (one or more levels) under the test's top cgroup; its directory.
    fn mkdir(&mut self, below: &str) -> PathBuf {
        let mut dir = self.top.clone();
        for name in Path::new(below).iter() {
            dir.push(name);
            if !dir.exists() {
                self.mkdir_at(dir.clone());
            }
        }
        dir
    }

    fn mkdir_at(&mut self, dir: PathBuf) {
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        self.created.push(dir);
    }

    /// The hierarchy path of directory `dir`.
    fn path_of(&self, dir: &Path) -> PathBuf {
        self.hierarchy
            .path_of(dir)
            .expect("a directory under the mount")
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for dir in self.created.iter().rev() {
            if let Err(e) = fs::remove_dir(dir) {
                eprintln!("could not remove test cgroup {}: {e}", dir.display());
            }
        }
    }
}

fn ino(dir: &Path) -> u64 {
    fs::metadata(dir).expect("stat").ino()
}

fn depth(path: &Path) -> u32 {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count() as u32
}

/// A 64-hex container id no other test uses.
fn container_id() -> String {
    format!("{:0<64}", unique())
}

#[test]
fn a_docker_scope_by_path_by_id_and_its_init_scope() {
    let Some(h) = hierarchy_for("a_docker_scope_by_path_by_id_and_its_init_scope") else {
        return;
    };
    let top_level = depth(h.mount_root());
    let mut cgroups = Cgroups::new(h.clone());
    let id = container_id();
    let scope = cgroups.mkdir(&format!("docker-{id}.scope"));
    let path = cgroups.path_of(&scope);

    let by_dir = h.resolve_filter(&scope).expect("the scope by directory");
    let by_path = h
        .resolve_filter(&path)
        .expect("the scope by hierarchy path");
    assert_eq!(by_dir, by_path);
    assert_eq!(by_dir.id, ino(&scope));
    assert_eq!(by_dir.level, top_level + 2);
    assert_eq!(by_dir.path, path);

    let mut resolver = CgroupResolver::new(h.clone());
    let info = resolver.resolve(by_dir.id).expect("the scope by id");
    assert_eq!(info.path, path);
    let container = info.container.as_ref().expect("a container");
    assert_eq!((container.runtime, &container.id), (Runtime::Docker, &id));
    assert_eq!(container.pod_uid, None);
    assert_eq!(info.unit.as_deref(), Some(&*format!("docker-{id}.scope")));

    let init = cgroups.mkdir(&format!("docker-{id}.scope/init.scope"));
    let init_filter = h.resolve_filter(&init).expect("init.scope");
    assert_eq!(init_filter.level, top_level + 3);
    resolver.rescan();
    let info = resolver.resolve(init_filter.id).expect("init.scope by id");
    assert_eq!(info.container.as_ref().map(|c| &c.id), Some(&id));
    assert_eq!(info.unit.as_deref(), Some("init.scope"));
}

#[test]
fn kubepods_nestings_with_both_drivers() {
    let Some(h) = hierarchy_for("kubepods_nestings_with_both_drivers") else {
        return;
    };
    let top_level = depth(h.mount_root());
    let mut cgroups = Cgroups::new(h.clone());
    let uid = "0a1b2c3d-4e5f-6789-abcd-ef0123456789";
    let systemd_uid = uid.replace('-', "_");
    let (a, b) = (container_id(), container_id());
    let systemd = cgroups.mkdir(&format!(
        "kubepods-besteffort.slice/kubepods-besteffort-pod{systemd_uid}.slice/cri-containerd-{a}.scope"
    ));
    let cgroupfs = cgroups.mkdir(&format!("kubepods/burstable/pod{uid}/{b}"));

    let mut resolver = CgroupResolver::new(h.clone());
    for (dir, runtime, id, level) in [
        (&systemd, Runtime::Containerd, &a, top_level + 4),
        (&cgroupfs, Runtime::Unknown, &b, top_level + 5),
    ] {
        let filter = h.resolve_filter(dir).expect("the container's cgroup");
        assert_eq!(filter.id, ino(dir));
        assert_eq!(filter.level, level);
        let info = resolver.resolve(filter.id).expect("by id");
        assert_eq!(info.path, cgroups.path_of(dir));
        let container = info.container.as_ref().expect("a container");
        assert_eq!((container.runtime, &container.id), (runtime, id));
        assert_eq!(container.pod_uid.as_deref(), Some(uid));
    }
}

#[test]
fn a_cgroup_created_after_the_first_walk_is_found() {
    let Some(h) = hierarchy_for("a_cgroup_created_after_the_first_walk_is_found") else {
        return;
    };
    let mut cgroups = Cgroups::new(h.clone());
    let mut resolver = CgroupResolver::new(h.clone());
    let before = Instant::now();
    resolver.rescan();
    let id = container_id();
    let dir = cgroups.mkdir(&format!("crio-{id}.scope"));
    let new = ino(&dir);
    // Within the rate limit the walk just done is all there is.
    assert_eq!(resolver.resolve_miss(new, before), None);
    let wait = resolver.next_walk.map_or(Duration::ZERO, |at| {
        at.saturating_duration_since(Instant::now())
    });
    std::thread::sleep(wait);
    let info = resolver
        .resolve(new)
        .expect("found by the walk a miss triggers");
    assert_eq!(info.path, cgroups.path_of(&dir));
    assert_eq!(
        info.container.as_ref().map(|c| c.runtime),
        Some(Runtime::CriO)
    );
    assert_eq!(resolver.walks, 2);
}

#[test]
fn the_root_cgroup_is_id_1() {
    let Some(h) = hierarchy_for("the_root_cgroup_is_id_1") else {
        return;
    };
    // PROC_CGROUP_INIT_INO: the initial cgroup namespace, whose "/" is the real root.
    let init_ns = fs::metadata("/proc/self/ns/cgroup").is_ok_and(|m| m.ino() == 0xEFFF_FFFB);
    if h.mount_root() != Path::new("/") || !init_ns {
        eprintln!("the cgroup2 mount's top is not the root cgroup here: nothing to check");
        return;
    }
    let root = h.resolve_filter(Path::new("/")).expect("the root");
    assert_eq!((root.id, root.level), (1, 0));
    let info = CgroupResolver::new(h).resolve(1).expect("id 1");
    assert_eq!(info.path, PathBuf::from("/"));
}

#[test]
fn a_cgroup_v1_directory_is_refused_as_such() {
    let Some(h) = hierarchy_for("a_cgroup_v1_directory_is_refused_as_such") else {
        return;
    };
    // A hybrid system's v1 mount; a pure v2 one has none, and nothing to check.
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let Some(v1) = mountinfo.lines().find_map(|line| {
        let (fields, fstype) = line.split_once(" - ")?;
        fstype
            .starts_with("cgroup ")
            .then(|| fields.split(' ').nth(4).map(PathBuf::from))?
    }) else {
        eprintln!("no cgroup v1 mount here: nothing to check");
        return;
    };
    let err = h.resolve_filter(&v1).expect_err("a v1 directory");
    assert_eq!(
        err.to_string(),
        format!(
            "{v1} is a cgroup v1 directory; sigtrace filters on cgroup v2 (mounted at {m}): give a path under {m} or a path as /proc/PID/cgroup shows it on its 0:: line",
            v1 = v1.display(),
            m = h.mount_point().display()
        )
    );
    assert!(err.is_bad_input());
}
