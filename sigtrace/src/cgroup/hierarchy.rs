//! Where the cgroup v2 hierarchy is mounted, and turning what a user types for `--cgroup`
//! into the id and level the kernel side compares with.
//!
//! /proc/self/mountinfo is parsed here rather than with procfs: procfs reads the file as
//! UTF-8 lines (one mount point with other bytes anywhere fails the whole file) and leaves
//! the kernel's octal escapes (`\040` for a space) in the root and mount point.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use nix::sys::statfs::{CGROUP_SUPER_MAGIC, statfs};

use super::CgroupError;

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// PROC_CGROUP_INIT_INO: the inode of the initial cgroup namespace in /proc/PID/ns.
const INITIAL_CGROUP_NS: u64 = 0xEFFF_FFFB;

/// A mount of the cgroup v2 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where it is mounted (`/sys/fs/cgroup`, `/sys/fs/cgroup/unified`).
    mount_point: PathBuf,
    /// The hierarchy path of the mount's top directory: `/`, unless the mount is a bind
    /// mount of a subtree.
    mount_root: PathBuf,
    /// Paths count from the root of the cgroup namespace sigtrace runs in, not from the
    /// hierarchy's root.
    namespace_relative: bool,
}

/// What a `--cgroup` path names: the cgroup's id (the inode of its directory, which the
/// kernel side reads as `kn->id`) and its level (root 0, `/a` 1, `/a/b` 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupFilter {
    pub id: u64,
    /// The depth below the hierarchy's root — or below the cgroup namespace's root when
    /// [`Hierarchy::namespace_relative`], which the kernel's level is not.
    pub level: u32,
    /// The hierarchy path (`/a/b`), for messages.
    pub path: PathBuf,
}

impl Hierarchy {
    /// The cgroup v2 mount of this process's mount namespace, from /proc/self/mountinfo.
    pub fn find() -> Result<Self, CgroupError> {
        let text = fs::read(MOUNTINFO).map_err(|source| CgroupError::Mountinfo { source })?;
        // Without cgroup namespaces (before 4.6) there is no such file: the initial one.
        let in_namespace =
            fs::metadata("/proc/self/ns/cgroup").is_ok_and(|m| m.ino() != INITIAL_CGROUP_NS);
        Self::from_mountinfo(&text, in_namespace).ok_or(CgroupError::NoV2Mount)
    }

    /// A hierarchy mounted at `mount_point` whose top directory is `mount_root`, seen from
    /// the initial cgroup namespace.
    pub fn new(mount_point: PathBuf, mount_root: PathBuf) -> Self {
        Hierarchy {
            mount_point,
            mount_root,
            namespace_relative: false,
        }
    }

    pub fn mount_point(&self) -> &Path {
        &self.mount_point
    }

    pub fn mount_root(&self) -> &Path {
        &self.mount_root
    }

    /// Whether paths and levels count from the root of the cgroup namespace sigtrace runs
    /// in (a container with its own cgroup namespace and its own cgroup2 mount) rather than
    /// from the hierarchy's root. Ids are still right; a filter's level then differs from
    /// the kernel's by the namespace root's depth, which nothing in /proc tells.
    pub fn namespace_relative(&self) -> bool {
        self.namespace_relative
    }

    /// The cgroup2 mount in mountinfo text. Of several, the one showing the most of the
    /// hierarchy, the first listed among equals; a mount with another mounted over the same
    /// point later in the list is hidden and left out.
    ///
    /// Inside a cgroup namespace (`in_namespace`) the kernel writes a mount's root relative
    /// to the namespace's root: `/` for a mount made inside it, `/..` (one `..` per level)
    /// for the whole hierarchy mounted outside it. The leading `..` are dropped: such a
    /// mount's paths then count from its top, the hierarchy's root when it is all of it.
    pub(crate) fn from_mountinfo(text: &[u8], in_namespace: bool) -> Option<Self> {
        let mounts: Vec<Mount> = text.split(|&b| b == b'\n').filter_map(parse_line).collect();
        let visible = |at: usize| {
            !mounts[at + 1..]
                .iter()
                .any(|later| later.point == mounts[at].point)
        };
        let shows = |root: &Path| {
            let count = |want: fn(&Component) -> bool| root.components().filter(want).count();
            let up = count(|c| *c == Component::ParentDir);
            let down = count(|c| matches!(c, Component::Normal(_)));
            (std::cmp::Reverse(up), down)
        };
        let best = (0..mounts.len())
            .filter(|&at| mounts[at].fstype == b"cgroup2" && visible(at))
            .min_by_key(|&at| shows(&mounts[at].root))?;
        let mount = &mounts[best];
        let climbs = mount.root.components().any(|c| c == Component::ParentDir);
        Some(Hierarchy {
            mount_point: mount.point.clone(),
            mount_root: join_clean(Path::new("/"), &mount.root),
            namespace_relative: in_namespace && !climbs,
        })
    }

    /// The directory of the cgroup at hierarchy path `path`, if the mount shows it.
    fn dir_of(&self, path: &Path) -> Option<PathBuf> {
        let below = path.strip_prefix(&self.mount_root).ok()?;
        Some(self.mount_point.join(below))
    }

    /// The hierarchy path of directory `dir`, if it is under the mount point.
    pub(crate) fn path_of(&self, dir: &Path) -> Option<PathBuf> {
        let below = dir.strip_prefix(&self.mount_point).ok()?;
        Some(join_clean(&self.mount_root, below))
    }

    /// The id and level of the cgroup `given` names: a directory under the mount point
    /// (`/sys/fs/cgroup/unified/foo`, or a symlink to one) or a hierarchy path as
    /// /proc/PID/cgroup shows it (`/foo`). A path under the mount point is read as a
    /// directory, so a cgroup whose hierarchy path starts like the mount point's own path
    /// must be given through the mount.
    pub fn resolve_filter(&self, given: &Path) -> Result<CgroupFilter, CgroupError> {
        let bad = |problem| self.bad_filter(given, problem);
        if !given.is_absolute() {
            return Err(bad(FilterProblem::Relative));
        }
        // Refused rather than resolved: a hierarchy path has no parent to go up to.
        if given.components().any(|c| c == Component::ParentDir) {
            return Err(bad(FilterProblem::DotDot));
        }
        let clean = join_clean(Path::new("/"), given);
        if let Some(path) = self.path_of(&clean) {
            return self.filter_at(given, &clean, path);
        }
        if let Some(dir) = self.dir_of(&clean)
            && fs::symlink_metadata(&dir).is_ok()
        {
            return self.filter_at(given, &dir, clean);
        }
        // Something else on the filesystem: a symlink into the mount, a cgroup v1
        // directory, a mistyped mount point.
        if let Ok(canonical) = fs::canonicalize(given) {
            if let Some(path) = self.path_of(&canonical) {
                return self.filter_at(given, &canonical, path);
            }
            let v1 = statfs(&canonical).is_ok_and(|s| s.filesystem_type() == CGROUP_SUPER_MAGIC);
            return Err(bad(FilterProblem::OutsideMount { v1 }));
        }
        if self.dir_of(&clean).is_none() {
            return Err(bad(FilterProblem::OutsideMountRoot {
                root: self.mount_root.clone(),
            }));
        }
        Err(bad(FilterProblem::NotFound {
            hierarchy_path: clean,
        }))
    }

    /// The filter for directory `dir`, whose hierarchy path is `path`.
    fn filter_at(
        &self,
        given: &Path,
        dir: &Path,
        path: PathBuf,
    ) -> Result<CgroupFilter, CgroupError> {
        let meta = match fs::metadata(dir) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(self.bad_filter(
                    given,
                    FilterProblem::NotFound {
                        hierarchy_path: path,
                    },
                ));
            }
            Err(source) => {
                return Err(CgroupError::Read {
                    path: dir.to_owned(),
                    source,
                });
            }
        };
        if !meta.is_dir() {
            return Err(self.bad_filter(given, FilterProblem::NotADirectory));
        }
        let mount = fs::metadata(&self.mount_point).map_err(|source| CgroupError::Read {
            path: self.mount_point.clone(),
            source,
        })?;
        // Another filesystem mounted below the cgroup2 mount holds no cgroups.
        if meta.dev() != mount.dev() {
            return Err(self.bad_filter(given, FilterProblem::OtherFilesystem));
        }
        let level = path
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .count();
        Ok(CgroupFilter {
            id: meta.ino(),
            level: u32::try_from(level).unwrap_or(u32::MAX),
            path,
        })
    }

    fn bad_filter(&self, given: &Path, problem: FilterProblem) -> CgroupError {
        CgroupError::BadFilter {
            given: given.to_owned(),
            problem,
            mount: self.mount_point.clone(),
        }
    }
}

/// What is wrong with a `--cgroup` path; [`CgroupError::BadFilter`] words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterProblem {
    Relative,
    DotDot,
    /// No such directory; `hierarchy_path` is where it was looked for.
    NotFound {
        hierarchy_path: PathBuf,
    },
    NotADirectory,
    /// Below the mount point, but on another filesystem mounted there.
    OtherFilesystem,
    /// An existing path outside the cgroup2 mount; `v1`: on a cgroup v1 filesystem.
    OutsideMount {
        v1: bool,
    },
    /// A hierarchy path outside the subtree that a bind mount or cgroup namespace shows.
    OutsideMountRoot {
        root: PathBuf,
    },
}

/// `base` joined with the normal components of `rest` (no `.`, no trailing `/`).
fn join_clean(base: &Path, rest: &Path) -> PathBuf {
    let mut out = base.to_owned();
    for c in rest.components() {
        if let Component::Normal(name) = c {
            out.push(name);
        }
    }
    out
}

/// The fields of a mountinfo line that matter here.
struct Mount {
    root: PathBuf,
    point: PathBuf,
    fstype: Vec<u8>,
}

/// One line of mountinfo: `ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE ...`.
fn parse_line(line: &[u8]) -> Option<Mount> {
    let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    // The optional fields vary in number; the separator after them does not.
    let dash = fields.iter().skip(6).position(|f| *f == b"-")? + 6;
    Some(Mount {
        root: PathBuf::from(unescape(fields.get(3)?)),
        point: PathBuf::from(unescape(fields.get(4)?)),
        fstype: fields.get(dash + 1)?.to_vec(),
    })
}

/// Undoes the kernel's `\ooo` octal escapes of space, tab, newline and backslash.
fn unescape(field: &[u8]) -> OsString {
    let mut out = Vec::with_capacity(field.len());
    let mut at = 0;
    while at < field.len() {
        let octal = field.get(at + 1..at + 4).filter(|d| {
            field[at] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)) && d[0] <= b'3'
        });
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                at += 4;
            }
            None => {
                out.push(field[at]);
                at += 1;
            }
        }
    }
    OsString::from_vec(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    const PURE_V2: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
25 23 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    fn found(text: &str) -> Option<(String, String)> {
        Hierarchy::from_mountinfo(text.as_bytes(), false).map(|h| {
            (
                h.mount_point.display().to_string(),
                h.mount_root.display().to_string(),
            )
        })
    }

    fn pair(point: &str, root: &str) -> Option<(String, String)> {
        Some((point.to_owned(), root.to_owned()))
    }

    #[test]
    fn finds_the_v2_mount_on_hybrid_and_pure_systems() {
        assert_eq!(found(HYBRID), pair("/sys/fs/cgroup/unified", "/"));
        assert_eq!(found(PURE_V2), pair("/sys/fs/cgroup", "/"));
    }

    #[test]
    fn none_on_a_v1_only_system() {
        let v1_only: String = HYBRID.lines().take(3).map(|l| format!("{l}\n")).collect();
        assert_eq!(found(&v1_only), None);
        assert_eq!(found(""), None);
    }

    #[test]
    fn a_bind_mount_of_a_subtree_keeps_its_root_and_escapes_are_undone() {
        let text =
            "50 27 0:38 /user.slice/my\\040app\\134x /mnt/cg\\011here rw - cgroup2 cgroup2 rw\n";
        assert_eq!(found(text), pair("/mnt/cg\there", "/user.slice/my app\\x"));
    }

    #[test]
    fn the_mount_showing_the_whole_hierarchy_wins() {
        let text = "\
50 27 0:38 /system.slice /mnt/sub rw - cgroup2 cgroup2 rw
51 27 0:38 / /sys/fs/cgroup rw shared:4 master:1 - cgroup2 cgroup2 rw
52 27 0:38 / /mnt/second rw - cgroup2 cgroup2 rw
";
        assert_eq!(found(text), pair("/sys/fs/cgroup", "/"));
    }

    #[test]
    fn a_mount_hidden_under_a_later_one_is_skipped() {
        let text = "\
51 27 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
60 51 0:50 / /sys/fs/cgroup rw - tmpfs tmpfs rw
61 60 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";
        assert_eq!(found(text), pair("/sys/fs/cgroup/unified", "/"));
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let text = b"garbage\n1 2 3\n41 31 0:38 / /x rw - \n\xff\xfe - cgroup2\n";
        assert_eq!(Hierarchy::from_mountinfo(text, false), None);
        let mut bytes = b"7 1 0:1 / /odd\xff rw - ext4 x rw\n".to_vec();
        bytes.extend_from_slice(HYBRID.as_bytes());
        assert_eq!(
            Hierarchy::from_mountinfo(&bytes, false).map(|h| h.mount_point),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn unescape_leaves_other_backslashes() {
        assert_eq!(unescape(b"a\\040b"), OsString::from("a b"));
        assert_eq!(unescape(b"a\\9b\\"), OsString::from("a\\9b\\"));
        assert_eq!(unescape(b"\\777"), OsString::from("\\777"));
        assert_eq!(unescape(b"\\04"), OsString::from("\\04"));
    }

    #[test]
    fn inside_a_cgroup_namespace() {
        // The host's mount seen from a namespace rooted one level down, and one made inside.
        let outside = "41 31 0:38 /.. /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        let inside = "70 60 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let h = Hierarchy::from_mountinfo(outside.as_bytes(), true).expect("a mount");
        assert_eq!(h.mount_root(), Path::new("/"));
        assert!(!h.namespace_relative());
        let h = Hierarchy::from_mountinfo(inside.as_bytes(), true).expect("a mount");
        assert!(h.namespace_relative());
        // The mount reaching above the namespace shows more.
        let both = format!("{inside}{outside}");
        let h = Hierarchy::from_mountinfo(both.as_bytes(), true).expect("a mount");
        assert_eq!(h.mount_point(), Path::new("/sys/fs/cgroup/unified"));
        let h = Hierarchy::from_mountinfo(inside.as_bytes(), false).expect("a mount");
        assert!(!h.namespace_relative());
    }

    #[test]
    fn maps_between_directories_and_hierarchy_paths() {
        let h = Hierarchy::new("/sys/fs/cgroup".into(), "/sub".into());
        assert_eq!(
            h.path_of(Path::new("/sys/fs/cgroup/a/b")),
            Some(PathBuf::from("/sub/a/b"))
        );
        assert_eq!(h.path_of(Path::new("/sys/fs/cgroup")), Some("/sub".into()));
        assert_eq!(h.path_of(Path::new("/sys/fs/cgroupx")), None);
        assert_eq!(
            h.dir_of(Path::new("/sub/a")),
            Some(PathBuf::from("/sys/fs/cgroup/a"))
        );
        assert_eq!(h.dir_of(Path::new("/other")), None);
    }

    /// A hierarchy over a temporary directory: resolve_filter's path logic does not depend
    /// on the filesystem being cgroup2.
    fn fake() -> (tempfile::TempDir, Hierarchy) {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        fs::create_dir_all(tmp.path().join("a/b")).expect("mkdir");
        fs::write(tmp.path().join("a/file"), b"").expect("a file");
        let h = Hierarchy::new(tmp.path().to_owned(), "/".into());
        (tmp, h)
    }

    fn ino(path: &Path) -> u64 {
        fs::metadata(path).expect("stat").ino()
    }

    fn filter(h: &Hierarchy, path: &Path) -> CgroupFilter {
        h.resolve_filter(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn filter_by_directory_or_hierarchy_path() {
        let (tmp, h) = fake();
        let want = CgroupFilter {
            id: ino(&tmp.path().join("a/b")),
            level: 2,
            path: "/a/b".into(),
        };
        assert_eq!(filter(&h, &tmp.path().join("a/b")), want);
        assert_eq!(filter(&h, &tmp.path().join("a/./b/")), want);
        assert_eq!(filter(&h, Path::new("/a/b")), want);
        assert_eq!(filter(&h, Path::new("/a/b/")), want);
        let root = filter(&h, Path::new("/"));
        assert_eq!((root.id, root.level), (ino(tmp.path()), 0));
        assert_eq!(filter(&h, tmp.path()).level, 0);
    }

    #[test]
    fn the_level_counts_from_the_hierarchy_root_not_the_mount() {
        let (tmp, _) = fake();
        let h = Hierarchy::new(tmp.path().to_owned(), "/x/y".into());
        let got = filter(&h, &tmp.path().join("a"));
        assert_eq!((got.level, got.path), (3, PathBuf::from("/x/y/a")));
        assert_eq!(filter(&h, Path::new("/x/y/a/b")).level, 4);
        let err = h.resolve_filter(Path::new("/a")).expect_err("outside");
        assert_eq!(
            err.to_string(),
            format!(
                "no cgroup v2 directory /a: the cgroup2 mount at {} shows only /x/y and below; give a path under /x/y",
                tmp.path().display()
            )
        );
    }

    #[test]
    fn bad_filters_say_what_to_do() {
        let (tmp, h) = fake();
        let mount = tmp.path().display().to_string();
        let err = |p: &str| {
            h.resolve_filter(Path::new(p))
                .expect_err("a bad filter")
                .to_string()
        };
        assert_eq!(
            err("/foo/bar"),
            format!(
                "no cgroup v2 directory /foo/bar (looked in {mount}): give a path under the cgroup2 mount or a path as /proc/PID/cgroup shows it (0::/PATH)"
            )
        );
        assert_eq!(
            err(&format!("{mount}/nope")),
            format!(
                "no cgroup v2 directory /nope (looked in {mount}): give a path under the cgroup2 mount or a path as /proc/PID/cgroup shows it (0::/PATH)"
            )
        );
        assert_eq!(
            err("foo"),
            format!(
                "cgroup path foo is relative: give a path under the cgroup2 mount ({mount}/...) or a path as /proc/PID/cgroup shows it (/system.slice/...)"
            )
        );
        assert_eq!(
            err("/a/../a"),
            "cgroup path /a/../a contains `..`: give it without"
        );
        assert_eq!(
            err(&format!("{mount}/a/file")),
            format!("{mount}/a/file is a file, not a cgroup directory: give its directory")
        );
        // An existing directory that is not in the hierarchy.
        assert_eq!(
            err("/proc"),
            format!(
                "/proc is not in the cgroup v2 hierarchy (mounted at {mount}): give a path under {mount} or a path as /proc/PID/cgroup shows it"
            )
        );
    }

    #[test]
    fn a_symlink_into_the_mount_names_its_target() {
        let (tmp, h) = fake();
        let outside = tempfile::tempdir().expect("a temporary directory");
        let link = outside.path().join("link");
        std::os::unix::fs::symlink(tmp.path().join("a"), &link).expect("symlink");
        let got = filter(&h, &link);
        assert_eq!(got.path, PathBuf::from("/a"));
        assert_eq!(got.id, ino(&tmp.path().join("a")));
    }
}
