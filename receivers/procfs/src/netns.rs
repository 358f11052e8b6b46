//! Finding the network namespace to read. The host namespace is the one of pid 1 (with
//! `hostPID` in the DaemonSet); when pid 1 is not visible, podnet's own namespace stands in.

use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    pub inode: u64,
    /// `/proc/<pid>` of a process inside the namespace.
    pub proc_dir: PathBuf,
    pub is_host: bool,
    /// Best known origin of the namespace's counters (boot time for the host).
    pub start_unix_nanos: u64,
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

/// Boot time from `<root>/stat` (`btime` line), in Unix nanoseconds.
pub fn boot_time_unix_nanos(root: &Path) -> Option<u64> {
    let stat = std::fs::read_to_string(root.join("stat")).ok()?;
    stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|s| s.trim().parse::<u64>().ok()).map(|s| s * 1_000_000_000)
}

pub fn host_namespace(root: &Path) -> Result<Namespace, String> {
    let start = boot_time_unix_nanos(root).unwrap_or(0);
    let init = root.join("1");
    match netns_inode(&init) {
        Ok(inode) => Ok(Namespace { inode, proc_dir: init, is_host: true, start_unix_nanos: start }),
        Err(init_err) => {
            let own = root.join("self");
            let inode = netns_inode(&own).map_err(|e| format!("cannot find the host network namespace: {init_err}; {e}"))?;
            Ok(Namespace { inode, proc_dir: own, is_host: true, start_unix_nanos: start })
        }
    }
}
