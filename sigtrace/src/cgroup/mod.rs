//! Cgroup v2 ids made readable: the kernel side reports, per event, the id of the sender's
//! and the target's default-hierarchy cgroup (`task->cgroups->dfl_cgrp->kn->id`, the value of
//! bpf_get_current_cgroup_id()), which on 64-bit kernels is the inode number of the cgroup's
//! directory in the cgroup2 mount. This module finds that mount ([`Hierarchy`]), maps ids to
//! hierarchy paths with a bounded, rate-limited cache ([`CgroupResolver`]), reads the
//! container and systemd unit a path names ([`parse_container`], [`systemd_unit`]), and turns
//! a `--cgroup PATH` into the id and level to filter on ([`Hierarchy::resolve_filter`]).
//!
//! Paths are the filesystem's bytes: they may be invalid UTF-8 or hold control characters
//! that any user allowed to create a cgroup chose, so they are handed out as `Path`s for the
//! output layer to escape (`escape::bytes(path.as_os_str().as_bytes())`). What a user sees
//! is in docs/containers.md.

mod container;
mod hierarchy;
#[cfg(test)]
mod live_tests;
mod resolver;

use std::io;
use std::path::{Path, PathBuf};

pub use container::{Container, Runtime, parse_container, systemd_unit};
pub use hierarchy::{CgroupFilter, FilterProblem, Hierarchy};
pub use resolver::{CgroupInfo, CgroupResolver, MAX_CGROUPS, MIN_RESCAN_INTERVAL, UNKNOWN_TTL};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("reading /proc/self/mountinfo: {source}")]
    Mountinfo {
        #[source]
        source: io::Error,
    },
    #[error(
        "no cgroup v2 hierarchy is mounted (no cgroup2 mount in /proc/self/mountinfo; a cgroup v1-only system?): cgroups cannot be named or filtered on"
    )]
    NoV2Mount,
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A `--cgroup` path that names no cgroup v2 directory.
    #[error("{}", bad_filter_text(given, problem, mount))]
    BadFilter {
        given: PathBuf,
        problem: FilterProblem,
        /// The cgroup2 mount point it was looked up in.
        mount: PathBuf,
    },
}

impl CgroupError {
    /// A path the user gave, or a system without cgroup v2, is the user's to fix (exit 2);
    /// failing to read /proc or the mount is the tracer's (exit 1).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, CgroupError::BadFilter { .. } | CgroupError::NoV2Mount)
    }
}

/// The words of [`CgroupError::BadFilter`]: the problem, then what to do.
fn bad_filter_text(given: &Path, problem: &FilterProblem, mount: &Path) -> String {
    let (given, mount) = (given.display(), mount.display());
    let as_proc = "a path as /proc/PID/cgroup shows it";
    match problem {
        FilterProblem::Relative => format!(
            "cgroup path {given} is relative: give a path under the cgroup2 mount ({mount}/...) or {as_proc} (/system.slice/...)"
        ),
        FilterProblem::DotDot => format!("cgroup path {given} contains `..`: give it without"),
        FilterProblem::NotFound { hierarchy_path } => format!(
            "no cgroup v2 directory {} (looked in {mount}): give a path under the cgroup2 mount or {as_proc} (0::/PATH)",
            hierarchy_path.display()
        ),
        FilterProblem::NotADirectory => {
            format!("{given} is a file, not a cgroup directory: give its directory")
        }
        FilterProblem::OtherFilesystem => format!(
            "{given} is on another filesystem mounted inside the cgroup2 mount {mount}: give a cgroup directory"
        ),
        FilterProblem::OutsideMount { v1: true } => format!(
            "{given} is a cgroup v1 directory; sigtrace filters on cgroup v2 (mounted at {mount}): give a path under {mount} or {as_proc} on its 0:: line"
        ),
        FilterProblem::OutsideMount { v1: false } => format!(
            "{given} is not in the cgroup v2 hierarchy (mounted at {mount}): give a path under {mount} or {as_proc}"
        ),
        FilterProblem::OutsideMountRoot { root } => {
            let root = root.display();
            format!(
                "no cgroup v2 directory {given}: the cgroup2 mount at {mount} shows only {root} and below; give a path under {root}"
            )
        }
    }
}
