//! A process's pod, from its cgroup path (`/proc/<pid>/cgroup`), under cgroup v1 and v2
//! and with kubelet's cgroupfs and systemd drivers:
//!
//! ```text
//! cgroupfs  12:memory:/kubepods/besteffort/pod6c1f3b1e-7a51-4f0f-9d0e-0c2f9b6f1a01/<container>
//! systemd   0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6c1f3b1e_7a51_….slice/cri-containerd-<id>.scope
//! ```
//!
//! Host-network pods share the host's namespace; this is how their processes are told
//! apart from the node's.

fn is_uid(s: &str) -> bool {
    s.len() == 36 && s.bytes().enumerate().all(|(i, b)| if [8, 13, 18, 23].contains(&i) { b == b'-' } else { b.is_ascii_hexdigit() })
}

/// The pod UID in one cgroup path segment (`pod<uid>` or `kubepods-…-pod<uid_>.slice`).
fn segment_uid(segment: &str) -> Option<String> {
    let segment = segment.strip_suffix(".slice").unwrap_or(segment);
    let at = if segment.starts_with("pod") { 0 } else { segment.rfind("-pod")? + 1 };
    let uid = segment[at + 3..].replace('_', "-");
    is_uid(&uid).then_some(uid)
}

/// The pod UID of a process, from the text of its `/proc/<pid>/cgroup`.
pub fn pod_uid(cgroup: &str) -> Option<String> {
    cgroup
        .lines()
        .filter_map(|line| line.splitn(3, ':').nth(2))
        .filter(|path| path.contains("kubepods"))
        .find_map(|path| path.split('/').find_map(segment_uid))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "6c1f3b1e-7a51-4f0f-9d0e-0c2f9b6f1a01";

    #[test]
    fn cgroupfs_v1() {
        let text = format!("13:pids:/kubepods/besteffort/pod{UID}/0a1b\n12:memory:/kubepods/besteffort/pod{UID}/0a1b\n1:name=systemd:/\n");
        assert_eq!(pod_uid(&text).as_deref(), Some(UID));
        let guaranteed = format!("4:cpu,cpuacct:/kubepods/pod{UID}/0a1b\n");
        assert_eq!(pod_uid(&guaranteed).as_deref(), Some(UID));
    }

    #[test]
    fn systemd_v2() {
        let u = UID.replace('-', "_");
        let text = format!("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/cri-containerd-0a1b.scope\n");
        assert_eq!(pod_uid(&text).as_deref(), Some(UID));
        let guaranteed = format!("0::/kubepods.slice/kubepods-pod{u}.slice/crio-0a1b.scope\n");
        assert_eq!(pod_uid(&guaranteed).as_deref(), Some(UID));
    }

    #[test]
    fn not_a_pod() {
        assert_eq!(pod_uid("0::/system.slice/containerd.service\n"), None);
        assert_eq!(pod_uid("0::/user.slice/user-0.slice/session-1.scope\n"), None);
        assert_eq!(pod_uid("0::/kubepods.slice/kubepods-besteffort.slice\n"), None, "a QoS slice is no pod");
        assert_eq!(pod_uid("garbage"), None);
    }
}
