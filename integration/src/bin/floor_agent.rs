//! `scripts/bench`, the whole-agent table's floor: a separate process that does, on the
//! agent's interval, the kernel reads the procfs and netlink receivers do, and nothing else
//! (no parsing, no metrics, no pipeline, no eBPF, no HTTP). Written from the kernel's
//! interfaces with libc only, sharing no code with podnet, so podnet's overhead cannot hide
//! in it. Every cycle:
//! - finds the network namespaces as the netns extension does: every /proc/<pid>/ns/net,
//!   one process per namespace inode;
//! - reads the host's softnet_stat, sockstat, sockstat6 and ip_vs_stats once, and per
//!   namespace /proc/<pid>/net/{dev,snmp,snmp6,netstat,sockstat,sockstat6}, and
//!   /proc/<pid>/io and the /proc/<pid>/fd links of each of its processes;
//! - enters each namespace (setns) and dumps, one netlink socket per family per namespace:
//!   qdiscs (RTM_GETQDISC), conntrack statistics (per CPU and global), and, with
//!   `--sock-diag`, every TCP socket over IPv4 and IPv6 (inet_diag with SKMEMINFO), as
//!   tcpsummary does with `source: sock_diag`.
//!
//! Usage: floor_agent <interval seconds> <cycle-count file> [--sock-diag]
//! The count of finished cycles is written to the file after each cycle, for CPU per cycle.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const RTM_GETQDISC: u16 = 38;
/// NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_GET_STATS_CPU / IPCTNL_MSG_CT_GET_STATS.
const CT_GET_STATS_CPU: u16 = (1 << 8) | 4;
const CT_GET_STATS: u16 = (1 << 8) | 5;
const INET_DIAG_SKMEMINFO: u8 = 7;

/// A netlink request: header, then body.
fn message(kind: u16, flags: u16, body: &[u8]) -> Vec<u8> {
    let len = 16 + body.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(body);
    m
}

/// The TCP states ESTABLISHED (1) to CLOSING (11), as tcpsummary asks for them. Not every
/// bit: on 6.x kernels bit 13 (bound-inactive sockets) adds a walk of the bind hash to
/// each dump, work podnet does not ask for.
const TCP_STATES: u32 = 0xffe;

/// struct inet_diag_req_v2 for TCP in `family`, the states above, memory info requested.
fn inet_diag(family: u8) -> Vec<u8> {
    let mut body = vec![family, libc::IPPROTO_TCP as u8, 1 << (INET_DIAG_SKMEMINFO - 1), 0];
    body.extend_from_slice(&TCP_STATES.to_ne_bytes());
    body.extend_from_slice(&[0u8; 48]);
    message(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, &body)
}

fn socket(protocol: i32) -> Option<OwnedFd> {
    // SAFETY: plain socket(2); the descriptor is owned from here on.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return None;
    }
    let timeout = libc::timeval { tv_sec: 2, tv_usec: 0 };
    // SAFETY: fd is ours, the option value is a timeval of the size given.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    // SAFETY: fd was just returned by socket(2) and is owned by nothing else.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends one request and reads its answer to the end (NLMSG_DONE, or the NLMSG_ERROR that
/// acknowledges or refuses it); returns the bytes received.
fn dump(fd: &OwnedFd, request: &[u8], buf: &mut [u8]) -> usize {
    // SAFETY: send(2) of a buffer we own.
    if unsafe { libc::send(fd.as_raw_fd(), request.as_ptr().cast(), request.len(), 0) } < 0 {
        return 0;
    }
    let mut total = 0;
    loop {
        // SAFETY: recv(2) into a buffer we own, of its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            return total;
        }
        let n = n as usize;
        total += n;
        let mut off = 0;
        while off + 16 <= n {
            let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
            let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
            if kind == NLMSG_DONE || kind == NLMSG_ERROR || len < 16 {
                return total;
            }
            off += (len + 3) & !3;
        }
    }
}

/// One namespace: a process in it and every process in it.
struct Namespace {
    pids: Vec<u32>,
}

/// The namespaces of every process, by namespace inode; the host's is the one of pid 1.
fn namespaces() -> (Option<u64>, BTreeMap<u64, Namespace>) {
    let mut by_inode: BTreeMap<u64, Namespace> = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return (None, by_inode) };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if let Ok(meta) = std::fs::metadata(format!("/proc/{pid}/ns/net")) {
            by_inode.entry(meta.ino()).or_insert_with(|| Namespace { pids: Vec::new() }).pids.push(pid);
        }
    }
    let host = std::fs::metadata("/proc/1/ns/net").ok().map(|m| m.ino());
    (host, by_inode)
}

fn cycle(sock_diag: bool, buf: &mut [u8], requests: &Requests) {
    let (host, namespaces) = namespaces();
    for f in ["softnet_stat", "sockstat", "sockstat6", "ip_vs_stats"] {
        let _ = std::fs::read(format!("/proc/net/{f}"));
    }
    let Ok(home) = File::open("/proc/self/ns/net") else { return };
    for (inode, ns) in &namespaces {
        let first = ns.pids[0];
        for f in ["dev", "snmp", "snmp6", "netstat", "sockstat", "sockstat6"] {
            let _ = std::fs::read(format!("/proc/{first}/net/{f}"));
        }
        for pid in &ns.pids {
            let _ = std::fs::read(format!("/proc/{pid}/io"));
            if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
                for fd in fds.flatten() {
                    let _ = std::fs::read_link(fd.path());
                }
            }
        }
        let entered = if Some(*inode) == host {
            false
        } else {
            let Ok(target) = File::open(format!("/proc/{first}/ns/net")) else { continue };
            // SAFETY: setns(2) on a namespace descriptor we hold; this program is single-threaded.
            if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                continue;
            }
            true
        };
        if sock_diag && let Some(s) = socket(libc::NETLINK_SOCK_DIAG) {
            dump(&s, &requests.tcp4, buf);
            dump(&s, &requests.tcp6, buf);
        }
        if let Some(s) = socket(libc::NETLINK_ROUTE) {
            dump(&s, &requests.qdisc, buf);
        }
        if let Some(s) = socket(libc::NETLINK_NETFILTER) {
            dump(&s, &requests.ct_cpu, buf);
            dump(&s, &requests.ct, buf);
        }
        // SAFETY: back to the namespace this program started in, held open above.
        if entered && unsafe { libc::setns(home.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            eprintln!("floor_agent: cannot return to its own network namespace");
            std::process::exit(1);
        }
    }
}

struct Requests {
    tcp4: Vec<u8>,
    tcp6: Vec<u8>,
    qdisc: Vec<u8>,
    ct_cpu: Vec<u8>,
    ct: Vec<u8>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(interval), Some(count_file)) = (args.first().and_then(|a| a.parse::<u64>().ok()), args.get(1)) else {
        eprintln!("usage: floor_agent <interval seconds> <cycle-count file> [--sock-diag]");
        std::process::exit(2);
    };
    let sock_diag = args.iter().any(|a| a == "--sock-diag");
    let requests = Requests {
        tcp4: inet_diag(libc::AF_INET as u8),
        tcp6: inet_diag(libc::AF_INET6 as u8),
        qdisc: message(RTM_GETQDISC, NLM_F_REQUEST | NLM_F_DUMP, &[0u8; 20]),
        ct_cpu: message(CT_GET_STATS_CPU, NLM_F_REQUEST | NLM_F_DUMP, &[0u8; 4]),
        // Global statistics are one answer, not a dump: it ends with the acknowledgement.
        ct: message(CT_GET_STATS, NLM_F_REQUEST | NLM_F_ACK, &[0u8; 4]),
    };
    let mut buf = vec![0u8; 64 * 1024];
    let interval = Duration::from_secs(interval);
    let mut next = Instant::now();
    for done in 1u64.. {
        cycle(sock_diag, &mut buf, &requests);
        let _ = std::fs::write(count_file, done.to_string());
        next += interval;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}
