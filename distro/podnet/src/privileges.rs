//! Least privilege: at start, before any thread exists (capabilities are per thread), the
//! agent gives up every capability it never uses, from its effective, permitted and
//! inheritable sets and from the bounding set, so neither it nor anything it could start
//! regains them. It keeps only what a probe or an endpoint may need for the whole run (probes
//! are plugged in by a config reload at any time):
//! - BPF, PERFMON: loading and attaching the eBPF probes;
//! - SYS_ADMIN: `setns` into pods' network namespaces (netlink probes), mounting tracefs;
//! - SYS_PTRACE, DAC_READ_SEARCH: other processes' `/proc/<pid>/ns`, `fd` and `io` (owned by
//!   the pods' users, mode 0500/0400);
//! - NET_ADMIN: TC programs and qdiscs on devices, conntrack event groups;
//! - SYS_RESOURCE: raising RLIMIT_MEMLOCK for eBPF maps on kernels before 5.11;
//! - SYSLOG: kernel addresses in /proc/kallsyms, to name drop locations and stacks;
//! - NET_BIND_SERVICE: an endpoint on a port below 1024.
//!
//! Dropped, among others: DAC_OVERRIDE, CHOWN, FOWNER, SETUID, SETGID, SETPCAP, NET_RAW,
//! KILL, MKNOD, SYS_MODULE, SYS_RAWIO, SYS_CHROOT. `PODNET_KEEP_CAPABILITIES=all` keeps
//! everything (to find out whether a failure is a missing capability).

/// (capability number, name), from include/uapi/linux/capability.h.
pub const KEPT: [(u32, &str); 9] = [
    (2, "DAC_READ_SEARCH"),
    (10, "NET_BIND_SERVICE"),
    (12, "NET_ADMIN"),
    (19, "SYS_PTRACE"),
    (21, "SYS_ADMIN"),
    (24, "SYS_RESOURCE"),
    (34, "SYSLOG"),
    (38, "PERFMON"),
    (39, "BPF"),
];

const KEPT_MASK: u64 = {
    let mut m = 0u64;
    let mut i = 0;
    while i < KEPT.len() {
        m |= 1 << KEPT[i].0;
        i += 1;
    }
    m
};

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct Header {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// What the process held and now holds (effective sets).
pub struct Dropped {
    pub before: u64,
    pub after: u64,
}

fn names(mask: u64) -> String {
    let named: Vec<String> = (0..64)
        .filter(|c| mask & (1 << c) != 0)
        .map(|c| KEPT.iter().find(|(n, _)| *n == c).map(|(_, name)| name.to_string()).unwrap_or_else(|| format!("cap {c}")))
        .collect();
    if named.is_empty() { "none".into() } else { named.join(", ") }
}

impl Dropped {
    pub fn describe(&self) -> String {
        format!("capabilities kept: {}; dropped: {} others", names(self.after), (self.before & !self.after).count_ones())
    }
}

fn capget() -> std::io::Result<[Data; 2]> {
    let mut header = Header { version: VERSION_3, pid: 0 };
    let mut data = [Data::default(); 2];
    // SAFETY: header and data are the v3 layout the syscall reads and fills.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header as *mut Header, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(data)
}

fn joined(data: &[Data; 2], set: impl Fn(&Data) -> u32) -> u64 {
    u64::from(set(&data[0])) | (u64::from(set(&data[1])) << 32)
}

/// Drops every capability outside [`KEPT`]. Must run before any other thread is started.
pub fn drop_unused() -> std::io::Result<Dropped> {
    let data = capget()?;
    let before = joined(&data, |d| d.effective);
    // The bounding set first: dropping from it needs SETPCAP, which goes next. Without
    // SETPCAP (an unprivileged run) there is nothing to bound.
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse::<u32>().ok()).unwrap_or(40);
    for cap in (0..=last).filter(|c| KEPT_MASK & (1 << c) == 0) {
        // SAFETY: prctl with integer arguments only.
        let dropped = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } == 0;
        if !dropped && std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) {
            break;
        }
    }
    // SAFETY: as above.
    unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0) };
    let keep = |word: u32, half: usize| word & (KEPT_MASK >> (32 * half)) as u32;
    let mut new = data;
    for (half, d) in new.iter_mut().enumerate() {
        d.effective = keep(d.effective, half);
        d.permitted = keep(d.permitted, half);
        d.inheritable = 0;
    }
    let mut header = Header { version: VERSION_3, pid: 0 };
    // SAFETY: the v3 layout; only bits the process holds are kept, which capset allows.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, new.as_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let after = joined(&new, |d| d.effective);
    Ok(Dropped { before, after })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_set_is_the_documented_one() {
        assert_eq!(
            names(KEPT_MASK),
            "DAC_READ_SEARCH, NET_BIND_SERVICE, NET_ADMIN, SYS_PTRACE, SYS_ADMIN, SYS_RESOURCE, SYSLOG, PERFMON, BPF"
        );
        assert_eq!(names(1 << 1), "cap 1");
        assert_eq!(names(0), "none");
    }
}
