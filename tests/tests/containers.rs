//! End-to-end: cgroups and containers. Real cgroup v2 directories this test creates, named
//! the way Docker (systemd driver) and containerd under Kubernetes name theirs, with real
//! processes moved into them: each record names both sides' cgroups and containers, and
//! `--cgroup` keeps, in the kernel, only signals from or to that subtree.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use nix::sys::signal::Signal;
use serde_json::json;

use crate::util::*;

const WAIT: Duration = Duration::from_secs(10);

/// The cgroup2 mount: /sys/fs/cgroup on a pure v2 system, /sys/fs/cgroup/unified on a
/// hybrid one.
fn cgroup2_mount() -> PathBuf {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    mountinfo
        .lines()
        .find_map(|line| {
            let (mount, fs) = line.split_once(" - ")?;
            let point = mount.split_whitespace().nth(4)?;
            fs.starts_with("cgroup2 ").then(|| PathBuf::from(point))
        })
        .expect("a cgroup2 mount (the matrix guests and this project's machines have one)")
}

/// Cgroups this test made, removed deepest first when it ends (its processes gone first:
/// declare it before them).
struct Cgroups(Vec<PathBuf>);

impl Cgroups {
    fn make(&mut self, path: PathBuf) -> PathBuf {
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        self.0.push(path.clone());
        path
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for dir in self.0.iter().rev() {
            let _ = fs::remove_dir(dir);
        }
    }
}

fn move_into(cgroup: &Path, pid: i32) {
    fs::write(cgroup.join("cgroup.procs"), pid.to_string())
        .unwrap_or_else(|e| panic!("moving {pid} into {}: {e}", cgroup.display()));
}

/// perl: once sent SIGUSR2, sends SIGUSR1 to process `target` (its argument).
const SENDER_PERL: &str = r#"$| = 1; my $go = 0; $SIG{USR2} = sub { $go = 1 }; print "ready\n"; select(undef, undef, undef, 0.02) until $go; kill 'USR1', $ARGV[0]; print "sent\n"; sleep 60;"#;

#[test]
fn records_name_containers_and_cgroup_filters_in_the_kernel() {
    if !bpf_allowed("records_name_containers_and_cgroup_filters_in_the_kernel") {
        return;
    }
    let _beside = beside_others();
    let mount = cgroup2_mount();
    let docker_id = format!("{:0>64}", format!("d0c4e7{}", std::process::id()));
    let containerd_id = format!("{:0>64}", format!("c0117a{}", std::process::id()));
    let pod_uid = "5f0c2f3e-9d41-4c1b-a7e2-3b8e8f0d6a11";
    let slice = format!("sigtrace-e2e-{}.slice", std::process::id());
    let pod = format!("kubepods-besteffort-pod{}.slice", pod_uid.replace('-', "_"));

    let mut cgroups = Cgroups(Vec::new());
    let top = cgroups.make(mount.join(&slice));
    let docker = cgroups.make(top.join(format!("docker-{docker_id}.scope")));
    let pod_dir = cgroups.make(top.join(&pod));
    let containerd = cgroups.make(pod_dir.join(format!("cri-containerd-{containerd_id}.scope")));

    let mut target = spawn_ready(&mut perl(TRAP_PERL));
    move_into(&docker, target.pid());
    let mut sender = spawn_ready(perl(SENDER_PERL).arg(target.pid().to_string()));
    move_into(&containerd, sender.pid());
    // Outside the slice: its signals must not pass --cgroup.
    let mut outsider = spawn_ready(&mut perl(TRAP_PERL));

    // The slice as /proc/PID/cgroup names it, and the docker scope by its mount path.
    let in_slice = Trace::start(&["--format", "json", "--cgroup", &format!("/{slice}")]);
    let docker_arg = docker.to_string_lossy().into_owned();
    let in_docker = Trace::start(&["--no-time", "--cgroup", &docker_arg]);

    outsider.signal(Signal::SIGUSR1);
    outsider.wait_line("got USR1", WAIT);
    sender.signal(Signal::SIGUSR2);
    sender.wait_line("sent", WAIT);
    target.wait_line("got USR1", WAIT);
    std::thread::sleep(scaled(Duration::from_millis(300)));
    let records = in_slice.stop_json(Vec::new());
    let (status, lines, err) = in_docker.stop_with(Signal::SIGINT);
    assert!(status.success(), "{err:?}");

    let me = std::process::id();
    let generations = of_type(&records, "generate");
    // In the slice: the sender's SIGUSR1 and the test's SIGUSR2 to the sender; not the
    // outsider's.
    assert!(
        generations
            .iter()
            .all(|g| g["target"]["pid"] != outsider.pid()),
        "{generations:#?}"
    );
    let usr1 = generations
        .iter()
        .find(|g| g["target"]["pid"] == target.pid() && signal_name(g) == "SIGUSR1")
        .unwrap_or_else(|| panic!("no SIGUSR1 to the target in {records:#?}"));
    assert_eq!(usr1["sender"]["pid"], sender.pid());
    let hierarchy = |dir: &Path| {
        format!(
            "/{}",
            dir.strip_prefix(&mount).expect("under the mount").display()
        )
    };
    assert_eq!(
        usr1["target"]["cgroup"]["path"],
        json!(hierarchy(&docker)),
        "{usr1:#}"
    );
    assert_eq!(
        usr1["target"]["cgroup"]["container"],
        json!({"runtime": "docker", "id": docker_id, "pod_uid": null})
    );
    assert_eq!(
        usr1["target"]["cgroup"]["unit"],
        json!(format!("docker-{docker_id}.scope"))
    );
    assert_eq!(usr1["sender_cgroup"]["path"], json!(hierarchy(&containerd)));
    assert_eq!(
        usr1["sender_cgroup"]["container"],
        json!({"runtime": "containerd", "id": containerd_id, "pod_uid": pod_uid})
    );
    let inode = |dir: &Path| {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(dir).expect("cgroup dir").ino()
    };
    assert_eq!(usr1["target"]["cgroup"]["id"], inode(&docker));
    assert_eq!(usr1["sender_cgroup"]["id"], inode(&containerd));
    // The delivery, in the target, names the target's cgroup.
    let delivered = of_type(&records, "deliver")
        .into_iter()
        .find(|d| d["task"]["pid"] == target.pid())
        .unwrap_or_else(|| panic!("no delivery to the target in {records:#?}"));
    assert_eq!(delivered["cgroup"], usr1["target"]["cgroup"]);
    // The test's own signal to the sender passed by its target's cgroup.
    let usr2 = generations
        .iter()
        .find(|g| g["target"]["pid"] == sender.pid())
        .unwrap_or_else(|| panic!("no SIGUSR2 to the sender in {records:#?}"));
    assert_eq!(usr2["sender"]["pid"], me);

    // --cgroup on the docker scope: only what reached the target, with its container.
    let short = |id: &str| id[..12].to_owned();
    let generated: Vec<&String> = lines.iter().filter(|l| l.starts_with("SIG")).collect();
    assert_eq!(generated.len(), 1, "{lines:#?}");
    assert!(
        generated[0].contains(&format!(
            "container docker {}  from container containerd {}",
            short(&docker_id),
            short(&containerd_id)
        )),
        "{lines:#?}"
    );
}

#[test]
fn a_cgroup_that_is_not_one_is_refused_in_one_line() {
    let _beside = beside_others();
    for (path, says) in [
        (
            "/no-such-cgroup-here",
            "no cgroup v2 directory /no-such-cgroup-here",
        ),
        ("relative/path", "relative"),
    ] {
        let out = Command::new(sigtrace_bin())
            .args(["--cgroup", path])
            .output()
            .expect("run sigtrace");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{path}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{path}: {stderr}");
        assert!(
            stderr.starts_with("sigtrace: --cgroup") && stderr.contains(says),
            "{path}: {stderr}"
        );
    }
}
