//! Cgroup ids to hierarchy paths. The kernel gives no way to ask "which cgroup has id N"
//! short of open_by_handle_at (which needs the mount's fd and CAP_DAC_READ_SEARCH and
//! returns an fd, not a path), so the resolver walks the cgroup2 mount once, mapping each
//! directory's inode number to its path, and walks again when an id it does not know shows
//! up: a cgroup created since the last walk.
//!
//! Bounds, because any user with a delegated subtree (a rootless container engine, a
//! systemd user session) can create cgroups by the thousand and send signals from them:
//! - a walk lists at most [`MAX_CGROUPS`] directories, breadth-first, and the cache holds
//!   at most that many; past it the deepest cgroups stay unnamed (shown as ids), and the
//!   resolver says so once;
//! - walks triggered by unknown ids are at least [`MIN_RESCAN_INTERVAL`] apart, and at least
//!   ten times as long apart as the last walk took, so walking costs at most about a tenth
//!   of the thread however large the tree; an id missed while walks wait is simply
//!   unresolved this time;
//! - an id that a walk did not find is not looked for again for [`UNKNOWN_TTL`]: a storm of
//!   events from one unknown cgroup costs one walk per TTL, not one per event.
//!
//! Entries of cgroups deleted since are kept while there is room: kernfs never reuses an id
//! (the upper 32 bits count wrap-arounds of the lower ones), and events read from the ring
//! may name a cgroup that was removed after the event.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io;
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Container, Hierarchy, parse_container, systemd_unit};

/// The most cgroups one walk lists and the cache holds. A busy Kubernetes node has a few
/// thousand; each entry costs a few hundred bytes, so the cap bounds the cache near 8 MB.
pub const MAX_CGROUPS: usize = 16_384;

/// The shortest time between two walks that unknown ids trigger.
pub const MIN_RESCAN_INTERVAL: Duration = Duration::from_millis(100);

/// The next walk waits at least this many times as long as the last one took.
const WALK_COST_FACTOR: u32 = 10;

/// How long an id that a walk did not find stays unknown without another walk.
pub const UNKNOWN_TTL: Duration = Duration::from_secs(5);

/// The most ids remembered as unknown; past it the expired ones are dropped, or all.
const MAX_UNKNOWN: usize = 4096;

/// A cgroup, named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupInfo {
    pub id: u64,
    /// The hierarchy path (`/system.slice/sshd.service`), as /proc/PID/cgroup shows it; the
    /// filesystem's bytes, for the output layer to escape.
    pub path: PathBuf,
    pub container: Option<Container>,
    /// The innermost systemd unit on the path (see [`systemd_unit`]).
    pub unit: Option<String>,
}

impl CgroupInfo {
    /// Reads the container and unit from `path`.
    pub fn new(id: u64, path: PathBuf) -> Self {
        CgroupInfo {
            id,
            container: parse_container(&path),
            unit: systemd_unit(&path).map(str::to_owned),
            path,
        }
    }
}

/// Cgroup ids to [`CgroupInfo`], cached; see the module's documentation for the bounds.
#[derive(Debug)]
pub struct CgroupResolver {
    hierarchy: Hierarchy,
    cap: usize,
    known: HashMap<u64, Arc<CgroupInfo>>,
    /// Ids a walk did not find, and until when not to look for them again.
    unknown: HashMap<u64, Instant>,
    /// When an unknown id may trigger a walk; None before the first.
    pub(super) next_walk: Option<Instant>,
    pub(super) walks: u64,
    warned: Warned,
    warnings: VecDeque<String>,
}

/// The conditions already reported, each once per resolver.
#[derive(Debug, Default)]
struct Warned {
    failed: bool,
    truncated: bool,
    unreadable: bool,
}

impl CgroupResolver {
    /// A resolver over `hierarchy`; it walks the tree on the first lookup (or [`rescan`]).
    ///
    /// [`rescan`]: CgroupResolver::rescan
    pub fn new(hierarchy: Hierarchy) -> Self {
        Self::with_cap(hierarchy, MAX_CGROUPS)
    }

    fn with_cap(hierarchy: Hierarchy, cap: usize) -> Self {
        CgroupResolver {
            hierarchy,
            cap,
            known: HashMap::new(),
            unknown: HashMap::new(),
            next_walk: None,
            walks: 0,
            warned: Warned::default(),
            warnings: VecDeque::new(),
        }
    }

    pub fn hierarchy(&self) -> &Hierarchy {
        &self.hierarchy
    }

    /// The cgroup with kernel id `id`, or None when no walk found it (id 0 is none: the
    /// kernel side could not read one). A miss walks the tree again when the rate limit
    /// allows.
    pub fn resolve(&mut self, id: u64) -> Option<Arc<CgroupInfo>> {
        match self.known.get(&id) {
            Some(info) => Some(Arc::clone(info)),
            None => self.resolve_miss(id, Instant::now()),
        }
    }

    /// Walks the tree now, whatever the rate limit: before events flow, so that the first
    /// ones need no walk.
    pub fn rescan(&mut self) {
        self.walk_at(Instant::now());
    }

    /// A condition worth one line on stderr (the tree could not be read, or is larger than
    /// the cache), each reported once; None when there is nothing (new) to say.
    pub fn take_warning(&mut self) -> Option<String> {
        self.warnings.pop_front()
    }

    pub(super) fn resolve_miss(&mut self, id: u64, now: Instant) -> Option<Arc<CgroupInfo>> {
        if let Some(info) = self.known.get(&id) {
            return Some(Arc::clone(info));
        }
        if id == 0 {
            return None;
        }
        if let Some(&until) = self.unknown.get(&id) {
            if now < until {
                return None;
            }
            self.unknown.remove(&id);
        }
        // Too soon after the last walk: unresolved this time, and not remembered as unknown,
        // since no walk has looked for it.
        if self.next_walk.is_some_and(|at| now < at) {
            return None;
        }
        self.walk_at(now);
        if let Some(info) = self.known.get(&id) {
            return Some(Arc::clone(info));
        }
        self.remember_unknown(id, now);
        None
    }

    fn remember_unknown(&mut self, id: u64, now: Instant) {
        if self.unknown.len() >= MAX_UNKNOWN {
            self.unknown.retain(|_, until| *until > now);
            if self.unknown.len() >= MAX_UNKNOWN {
                // Forgetting costs at most a walk per rate-limit interval.
                self.unknown.clear();
            }
        }
        self.unknown.insert(id, now + UNKNOWN_TTL);
    }

    fn walk_at(&mut self, now: Instant) {
        let started = Instant::now();
        let result = walk(&self.hierarchy, self.cap);
        let took = started.elapsed();
        self.walks += 1;
        self.next_walk = Some(now + MIN_RESCAN_INTERVAL.max(took * WALK_COST_FACTOR));
        let mount = self.hierarchy.mount_point().display().to_string();
        let found = match result {
            Ok(found) => found,
            Err(e) => {
                if !std::mem::replace(&mut self.warned.failed, true) {
                    self.warnings.push_back(format!(
                        "reading the cgroup2 tree at {mount}: {e}; cgroups are shown as ids"
                    ));
                }
                return;
            }
        };
        log::debug!(
            "cgroup walk {}: {} cgroups in {took:?}",
            self.walks,
            found.cgroups.len()
        );
        if found.truncated && !std::mem::replace(&mut self.warned.truncated, true) {
            let cap = self.cap;
            self.warnings.push_back(format!(
                "more than {cap} cgroups under {mount}: the {cap} nearest the root are named, deeper ones are shown as ids"
            ));
        }
        if found.unreadable > 0 && !std::mem::replace(&mut self.warned.unreadable, true) {
            self.warnings.push_back(format!(
                "{} cgroup directories under {mount} could not be listed; cgroups below them are shown as ids",
                found.unreadable
            ));
        }
        let mut known = HashMap::with_capacity(found.cgroups.len());
        for (id, path) in found.cgroups {
            // Unchanged entries keep their parse.
            let info = match self.known.remove(&id) {
                Some(old) if old.path == path => old,
                _ => Arc::new(CgroupInfo::new(id, path)),
            };
            known.insert(id, info);
        }
        // What is left was deleted since the last walk: kept while there is room.
        for (id, info) in self.known.drain() {
            if known.len() >= self.cap {
                break;
            }
            known.insert(id, info);
        }
        self.known = known;
    }
}

/// What one walk of the tree found.
struct Walk {
    /// Each cgroup's id and hierarchy path, breadth-first from the mount's top.
    cgroups: Vec<(u64, PathBuf)>,
    /// The cap stopped the walk before the tree's end.
    truncated: bool,
    /// Directories that could not be listed (other than ones deleted meanwhile).
    unreadable: usize,
}

/// Lists the cgroup directories under the mount, breadth-first, at most `cap`. Fails only
/// when the mount's top cannot be read.
fn walk(hierarchy: &Hierarchy, cap: usize) -> io::Result<Walk> {
    let top = fs::metadata(hierarchy.mount_point())?;
    let mut found = Walk {
        cgroups: vec![(top.ino(), hierarchy.mount_root().to_owned())],
        truncated: false,
        unreadable: 0,
    };
    // Each directory still to list, with its index in `found.cgroups`.
    let mut queue = VecDeque::from([(hierarchy.mount_point().to_owned(), 0)]);
    while let Some((dir, at)) = queue.pop_front() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if at == 0 => return Err(e),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(_) => {
                found.unreadable += 1;
                continue;
            }
        };
        for entry in entries {
            let Ok(entry) = entry else {
                found.unreadable += 1;
                break;
            };
            // kernfs fills in d_type, so this costs no stat.
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if found.cgroups.len() >= cap {
                found.truncated = true;
                return Ok(found);
            }
            // readdir's d_ino is kernfs_ino(kn), the same number stat gives.
            let path = found.cgroups[at].1.join(entry.file_name());
            found.cgroups.push((entry.ino(), path));
            queue.push_back((entry.path(), found.cgroups.len() - 1));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    use super::*;
    use crate::cgroup::Runtime;

    const ID: &str = "4f797c539e6c745de61a93ca3ff892358ecbcaccd8414d5db545c38428142970";

    /// A tree shaped like a cgroup2 mount, in a temporary directory: the walk reads any
    /// directory tree, and inode numbers stand in for cgroup ids.
    struct Tree {
        dir: tempfile::TempDir,
    }

    impl Tree {
        fn new(dirs: &[&str]) -> Self {
            let tree = Tree {
                dir: tempfile::tempdir().expect("a temporary directory"),
            };
            for dir in dirs {
                tree.mkdir(dir);
            }
            fs::write(tree.dir.path().join("cgroup.procs"), b"").expect("a file");
            tree
        }

        fn mkdir(&self, dir: impl AsRef<OsStr>) -> u64 {
            let path = self.dir.path().join(dir.as_ref());
            fs::create_dir_all(&path).expect("mkdir");
            fs::metadata(&path).expect("stat").ino()
        }

        fn id(&self, dir: &str) -> u64 {
            fs::metadata(self.dir.path().join(dir)).expect("stat").ino()
        }

        fn resolver(&self, root: &str, cap: usize) -> CgroupResolver {
            let h = Hierarchy::new(self.dir.path().to_owned(), root.into());
            CgroupResolver::with_cap(h, cap)
        }
    }

    /// An id no directory of the tree has.
    fn absent(tree: &Tree) -> u64 {
        tree.id("") + 1_000_000_007
    }

    #[test]
    fn names_cgroups_and_reads_their_containers() {
        let docker = format!("system.slice/docker-{ID}.scope");
        let tree = Tree::new(&["system.slice/sshd.service", &docker]);
        let mut r = tree.resolver("/", MAX_CGROUPS);
        let root = r.resolve(tree.id("")).expect("the root");
        assert_eq!(root.path, PathBuf::from("/"));
        let sshd = r
            .resolve(tree.id("system.slice/sshd.service"))
            .expect("sshd");
        assert_eq!(sshd.path, PathBuf::from("/system.slice/sshd.service"));
        assert_eq!(sshd.unit.as_deref(), Some("sshd.service"));
        assert_eq!(sshd.container, None);
        let c = r.resolve(tree.id(&docker)).expect("the container");
        assert_eq!(c.path, Path::new("/").join(&docker));
        let container = c.container.as_ref().expect("a container");
        assert_eq!((container.runtime, &*container.id), (Runtime::Docker, ID));
        // One walk named them all; files are not cgroups.
        assert_eq!(r.walks, 1);
        assert_eq!(r.known.len(), 4);
        assert_eq!(r.take_warning(), None);
    }

    #[test]
    fn paths_are_hierarchy_paths_under_a_bind_mounted_subtree() {
        let tree = Tree::new(&["a/b"]);
        let mut r = tree.resolver("/user.slice", MAX_CGROUPS);
        let b = r.resolve(tree.id("a/b")).expect("b");
        assert_eq!(b.path, PathBuf::from("/user.slice/a/b"));
        let top = r.resolve(tree.id("")).expect("the top");
        assert_eq!(top.path, PathBuf::from("/user.slice"));
    }

    #[test]
    fn a_cgroup_created_after_the_walk_is_found_by_the_next() {
        let tree = Tree::new(&["a"]);
        let mut r = tree.resolver("/", MAX_CGROUPS);
        let t0 = Instant::now();
        assert!(r.resolve_miss(tree.id("a"), t0).is_some());
        let new = tree.mkdir("a/new");
        // Right after a walk the rate limit holds, and the miss is not remembered...
        assert_eq!(r.resolve_miss(new, t0), None);
        assert_eq!(r.walks, 1);
        assert!(r.unknown.is_empty());
        // ...and once it has passed, the miss walks again and finds it.
        let later = t0 + Duration::from_secs(1);
        let found = r.resolve_miss(new, later).expect("the new cgroup");
        assert_eq!(found.path, PathBuf::from("/a/new"));
        assert_eq!(r.walks, 2);
    }

    #[test]
    fn a_storm_of_unknown_ids_costs_one_walk_per_interval() {
        let tree = Tree::new(&["a"]);
        let mut r = tree.resolver("/", MAX_CGROUPS);
        let t0 = Instant::now();
        let (x, y) = (absent(&tree), absent(&tree) + 1);
        assert_eq!(r.resolve_miss(x, t0), None);
        assert_eq!(r.walks, 1);
        for ms in 0..100 {
            let now = t0 + Duration::from_millis(ms);
            assert_eq!(r.resolve_miss(x, now), None);
            assert_eq!(r.resolve_miss(y, now), None);
        }
        assert_eq!(r.walks, 1, "no walk within the interval");
        // After the interval, a new unknown id walks; the remembered one does not.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(r.resolve_miss(x, t1), None);
        assert_eq!(r.walks, 1, "x is remembered as unknown");
        assert_eq!(r.resolve_miss(y, t1), None);
        assert_eq!(r.walks, 2, "y had not been looked for");
        // Once the TTL has passed, x is looked for again.
        let t2 = t0 + UNKNOWN_TTL + Duration::from_secs(1);
        assert_eq!(r.resolve_miss(x, t2), None);
        assert_eq!(r.walks, 3);
    }

    #[test]
    fn id_zero_never_walks() {
        let tree = Tree::new(&[]);
        let mut r = tree.resolver("/", MAX_CGROUPS);
        assert_eq!(r.resolve(0), None);
        assert_eq!(r.walks, 0);
    }

    #[test]
    fn deleted_cgroups_stay_named() {
        let tree = Tree::new(&["a", "gone"]);
        let mut r = tree.resolver("/", MAX_CGROUPS);
        let gone = tree.id("gone");
        r.rescan();
        fs::remove_dir(tree.dir.path().join("gone")).expect("rmdir");
        r.rescan();
        assert_eq!(r.walks, 2);
        let info = r.resolve(gone).expect("kept from the first walk");
        assert_eq!(info.path, PathBuf::from("/gone"));
    }

    #[test]
    fn the_cap_keeps_the_cgroups_nearest_the_root_and_says_so_once() {
        let tree = Tree::new(&["a/deep/deeper", "b", "c"]);
        // The top, a, b, c fit; a/deep and below do not.
        let mut r = tree.resolver("/", 4);
        r.rescan();
        assert_eq!(r.known.len(), 4);
        for dir in ["", "a", "b", "c"] {
            assert!(r.known.contains_key(&tree.id(dir)), "{dir:?}");
        }
        let deep = tree.id("a/deep");
        assert_eq!(r.resolve_miss(deep, Instant::now() + UNKNOWN_TTL), None);
        let warning = r.take_warning().expect("a warning");
        assert!(
            warning.starts_with("more than 4 cgroups under "),
            "{warning}"
        );
        assert_eq!(r.take_warning(), None, "once");
        // Deleted entries do not push the cache past the cap either.
        fs::remove_dir(tree.dir.path().join("c")).expect("rmdir");
        r.rescan();
        assert_eq!(r.known.len(), 4);
        assert_eq!(r.take_warning(), None, "still once");
    }

    #[test]
    fn an_unreadable_mount_is_reported_once() {
        let tree = Tree::new(&[]);
        let h = Hierarchy::new(tree.dir.path().join("missing"), "/".into());
        let mut r = CgroupResolver::new(h);
        let t0 = Instant::now();
        assert_eq!(r.resolve_miss(5, t0), None);
        assert_eq!(r.resolve_miss(6, t0 + Duration::from_secs(1)), None);
        assert_eq!(r.walks, 2);
        let warning = r.take_warning().expect("a warning");
        assert!(
            warning.starts_with("reading the cgroup2 tree at "),
            "{warning}"
        );
        assert!(warning.ends_with("; cgroups are shown as ids"), "{warning}");
        assert_eq!(r.take_warning(), None);
    }

    #[test]
    fn odd_bytes_in_names_come_back_as_they_are_for_escaping() {
        let tree = Tree::new(&[]);
        let name = OsStr::from_bytes(b"bad\xff\x1b[31m\nname.service");
        let id = tree.mkdir(name);
        let mut r = tree.resolver("/", MAX_CGROUPS);
        let info = r.resolve(id).expect("the odd cgroup");
        assert_eq!(info.path, Path::new("/").join(name));
        assert_eq!(info.unit, None);
        let shown = crate::escape::bytes(info.path.as_os_str().as_bytes()).to_string();
        assert_eq!(shown, "/bad\\xff\\x1b[31m\\nname.service");
    }

    #[test]
    fn the_unknown_set_is_bounded() {
        let tree = Tree::new(&[]);
        let mut r = tree.resolver("/", MAX_CGROUPS);
        let t0 = Instant::now();
        let base = absent(&tree);
        for i in 0..(MAX_UNKNOWN as u64 + 10) {
            r.remember_unknown(base + i, t0);
        }
        assert!(r.unknown.len() <= MAX_UNKNOWN);
        assert!(r.unknown.contains_key(&(base + MAX_UNKNOWN as u64 + 9)));
    }
}
