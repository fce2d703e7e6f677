//! A task's cgroup v2 (default hierarchy) membership: the id userspace resolves to a path
//! and a container, and the subtree test of --cgroup.

use super::{probe, read};
use crate::maps::conf;

/// A `struct cgroup *` of the default (v2) hierarchy.
#[derive(Clone, Copy)]
pub struct Cgroup(pub u64);

impl Cgroup {
    /// Its id: the kernfs node id, which is the inode of its directory in the cgroup2 mount
    /// and what bpf_get_current_cgroup_id() returns for a task in it.
    #[inline(always)]
    pub fn id(self) -> u64 {
        read(
            read::<u64>(self.0, conf!(offsets.cgroup_kn)),
            conf!(offsets.kernfs_node_id),
        )
    }
    /// Its depth: the root is 0.
    #[inline(always)]
    pub fn level(self) -> u32 {
        read(self.0, conf!(offsets.cgroup_level))
    }
    /// Whether it is the cgroup `id` at depth `level`, or below it: its ancestor at that
    /// depth is that one. The ancestors are an array past the struct's end, indexed by a
    /// configured depth, so read through the helper.
    #[inline(always)]
    pub fn within(self, level: u32, id: u64) -> bool {
        if self.0 == 0 || self.level() < level {
            return false;
        }
        let slot = conf!(offsets.cgroup_ancestors) + level * 8;
        let ancestor_id = if conf!(offsets.cgroup_ancestor_ids) != 0 {
            probe::<u64>(self.0, slot)
        } else {
            let ancestor: u64 = probe(self.0, slot);
            probe(
                probe::<u64>(ancestor, conf!(offsets.cgroup_kn)),
                conf!(offsets.kernfs_node_id),
            )
        };
        ancestor_id == id
    }
}
