//! Network namespace discovery: every network namespace on the node, with one live process
//! inside it, found by scanning `/proc/*/ns/net`.
//!
//! [`scan`] is the one-shot scan; the `netns` extension keeps a fresh scan for every
//! receiver to share, so a node with a thousand pods is scanned once per refresh, not once
//! per probe. A namespace that vanishes between the scan and a read is normal (a pod was
//! deleted): readers skip it.

pub mod cgroup;
mod extension;
mod source;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub use extension::{NetnsConfig, NetnsDirectory, NetnsExtensionFactory};
pub use source::{NamespaceSource, Namespaces};

use podnet_pipeline::pdata::{KeyValue, keys, kv_bool, kv_int, kv_str};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Namespace {
    /// The namespace's inode: its identity on this node.
    pub inode: u64,
    /// The lowest pid seen inside it (stable across scans while that process lives).
    pub pid: u32,
    /// `<root>/<pid>`: where its `/proc/<pid>/net/*` files are.
    pub proc_dir: PathBuf,
    pub is_host: bool,
    /// Best known origin of its counters: boot time for the host, the process's start otherwise.
    pub start_unix_nanos: u64,
    /// Its `ip netns` name, when it has one.
    pub name: Option<String>,
    /// Every process seen inside it at the last scan, ascending (for per-process probes).
    pub pids: Vec<u32>,
}

impl Namespace {
    /// The OTLP resource of this namespace's data: node, inode, host flag, `ip netns` name.
    pub fn resource_attributes(&self, node_name: &str) -> Vec<KeyValue> {
        let mut attrs = vec![kv_str(keys::K8S_NODE_NAME, node_name), kv_int(keys::NETNS_INODE, self.inode as i64)];
        if self.is_host {
            attrs.push(kv_bool(keys::NETNS_HOST, true));
        }
        if let Some(name) = &self.name {
            attrs.push(kv_str(keys::NETNS_NAME, name.clone()));
        }
        attrs
    }

    /// Whether the process that stood for it is gone (the pod was deleted): exited, a
    /// zombie whose namespaces are already released (its `ns/net` link still lists, but
    /// no longer resolves), or in another namespace now.
    pub fn vanished(&self) -> bool {
        !netns_inode(&self.proc_dir).is_ok_and(|inode| inode == self.inode)
    }
}

/// The inode in a `net:[4026531840]` link.
pub fn netns_inode(proc_dir: &Path) -> Result<u64, String> {
    let link = proc_dir.join("ns/net");
    let target = std::fs::read_link(&link).map_err(|e| format!("{}: {e}", link.display()))?;
    let text = target.to_string_lossy();
    text.strip_prefix("net:[")
        .and_then(|s| s.strip_suffix(']'))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{}: unexpected link target \"{text}\"", link.display()))
}

/// Boot time from `<root>/stat` (`btime`), in Unix nanoseconds.
pub fn boot_time_unix_nanos(root: &Path) -> Option<u64> {
    let stat = std::fs::read_to_string(root.join("stat")).ok()?;
    stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|s| s.trim().parse::<u64>().ok()).map(|s| s * 1_000_000_000)
}

/// A process's start time, from field 22 of `<proc_dir>/stat` (clock ticks since boot).
fn process_start_unix_nanos(proc_dir: &Path, boot: u64) -> Option<u64> {
    let stat = std::fs::read_to_string(proc_dir.join("stat")).ok()?;
    let after_comm = stat.rsplit_once(')')?.1;
    let ticks: u64 = after_comm.split_whitespace().nth(19)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    Some(boot + ticks * (1_000_000_000 / hz))
}

/// `ip netns` names (bind mounts in `run_dir`, usually `/run/netns`) by inode.
pub fn named_namespaces(run_dir: &Path) -> BTreeMap<u64, String> {
    let Ok(entries) = std::fs::read_dir(run_dir) else { return BTreeMap::new() };
    entries
        .flatten()
        .filter_map(|e| {
            let meta = std::fs::metadata(e.path()).ok()?;
            Some((meta.ino(), e.file_name().to_string_lossy().into_owned()))
        })
        .collect()
}

/// The host namespace: pid 1's, or ours when pid 1 is not visible.
pub fn host_namespace(root: &Path) -> Result<Namespace, String> {
    let start = boot_time_unix_nanos(root).unwrap_or(0);
    let init = root.join("1");
    match netns_inode(&init) {
        Ok(inode) => Ok(Namespace { inode, pid: 1, proc_dir: init, is_host: true, start_unix_nanos: start, name: None, pids: vec![1] }),
        Err(init_err) => {
            let own = root.join("self");
            let inode = netns_inode(&own).map_err(|e| format!("cannot find the host network namespace: {init_err}; {e}"))?;
            let pid = std::process::id();
            Ok(Namespace {
                inode,
                pid,
                proc_dir: root.join(pid.to_string()),
                is_host: true,
                start_unix_nanos: start,
                name: None,
                pids: vec![pid],
            })
        }
    }
}

/// Every network namespace with a live process, host first, then by inode.
pub fn scan(root: &Path, run_dir: &Path) -> Result<Vec<Namespace>, String> {
    let host = host_namespace(root)?;
    let boot = boot_time_unix_nanos(root).unwrap_or(0);
    let entries = std::fs::read_dir(root).map_err(|e| format!("{}: {e}", root.display()))?;
    let mut members: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        // A process that exits mid-scan, or one we may not inspect, is simply not seen.
        let Ok(inode) = netns_inode(&entry.path()) else { continue };
        members.entry(inode).or_default().push(pid);
    }
    for pids in members.values_mut() {
        pids.sort_unstable();
    }
    let names = named_namespaces(run_dir);
    let host_pids = members.remove(&host.inode).unwrap_or_else(|| host.pids.clone());
    let mut out = vec![Namespace { name: names.get(&host.inode).cloned(), pids: host_pids, ..host.clone() }];
    for (inode, pids) in members {
        let pid = pids[0];
        let proc_dir = root.join(pid.to_string());
        let start_unix_nanos = process_start_unix_nanos(&proc_dir, boot).unwrap_or(boot);
        out.push(Namespace { inode, pid, proc_dir, is_host: false, start_unix_nanos, name: names.get(&inode).cloned(), pids });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_zombie_has_vanished() {
        let me = netns_inode(Path::new("/proc/self")).unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let proc_dir = PathBuf::from(format!("/proc/{}", child.id()));
        let ns = Namespace { inode: me, pid: child.id(), proc_dir: proc_dir.clone(), ..Default::default() };
        // Exited, not yet reaped: its ns/net link still lists but no longer resolves.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !std::fs::read_to_string(proc_dir.join("stat")).unwrap_or_default().contains(") Z ") && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(std::fs::symlink_metadata(proc_dir.join("ns/net")).is_ok(), "the link is still listed");
        assert!(ns.vanished());
        child.wait().unwrap();
        assert!(ns.vanished());
        let other = Namespace { inode: me + 1, proc_dir: "/proc/self".into(), ..Default::default() };
        assert!(other.vanished(), "a process now in another namespace no longer stands for this one");
        let alive = Namespace { inode: me, proc_dir: "/proc/self".into(), ..Default::default() };
        assert!(!alive.vanished());
    }

    fn proc_entry(root: &Path, pid: u32, inode: u64) {
        let dir = root.join(pid.to_string());
        std::fs::create_dir_all(dir.join("ns")).unwrap();
        symlink(format!("net:[{inode}]"), dir.join("ns/net")).unwrap();
        std::fs::write(dir.join("stat"), format!("{pid} (sleep) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {} 0 0", pid * 100)).unwrap();
    }

    #[test]
    fn one_namespace_per_inode_with_its_lowest_pid() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("stat"), "btime 1000\n").unwrap();
        proc_entry(root, 1, 10);
        proc_entry(root, 50, 10);
        proc_entry(root, 300, 20);
        proc_entry(root, 200, 20);
        proc_entry(root, 400, 30);
        std::fs::create_dir_all(root.join("self")).unwrap();
        std::fs::write(root.join("not-a-pid"), "").unwrap();
        let ns = scan(root, Path::new("/nonexistent")).unwrap();
        let summary: Vec<_> = ns.iter().map(|n| (n.inode, n.pid, n.is_host, n.pids.clone())).collect();
        assert_eq!(summary, [(10, 1, true, vec![1, 50]), (20, 200, false, vec![200, 300]), (30, 400, false, vec![400])]);
        assert_eq!(ns[0].start_unix_nanos, 1000 * 1_000_000_000);
        assert!(ns[1].start_unix_nanos > ns[0].start_unix_nanos, "a pod namespace starts with its process");
    }

    #[test]
    fn real_proc_has_the_host_first() {
        let ns = scan(Path::new("/proc"), Path::new("/run/netns")).unwrap();
        assert!(ns[0].is_host);
        // pid 1's link may be unreadable in a sandbox; then our own namespace stands in.
        assert_eq!(ns[0].inode, host_namespace(Path::new("/proc")).unwrap().inode);
        let mut inodes: Vec<_> = ns.iter().map(|n| n.inode).collect();
        inodes.dedup();
        assert_eq!(inodes.len(), ns.len());
    }
}
