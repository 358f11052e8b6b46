//! Every TCP socket a process holds, in every namespace, in one pass (the `socktable` BPF
//! iterator over the tasks' open files, ebpf/src/socktable.bpf.c). A sock_diag dump walks the
//! kernel's global TCP hash once per namespace, so its cost grows as namespaces × sockets;
//! this pass grows with the node's open files only.
//!
//! The pass cannot see sockets without a file: TIME_WAIT and pending requests (counted from
//! the namespace's sockstat and the listeners' request queues, which sock_diag reports
//! without queues or memory either), and orphans or children not yet accepted. Those last
//! two are full sockets the kernel counts in sockstat's `inuse`: a namespace whose `inuse`
//! differs from the hashed sockets found here is dumped with sock_diag instead, so every
//! namespace's summary is what sock_diag would give.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use aya::programs::Iter;
use aya::{Btf, Ebpf, EbpfLoader};
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, TCP_SYN_RECV, TCP_TIME_WAIT};

use podnet_pipeline::sockstat;

use crate::tcpsummary::{TcpSocket, TcpSummary, state_name, summarize};

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../ebpf/socktable.bpf.o"));

/// `struct sock_row` of socktable.bpf.c.
const ROW_BYTES: usize = 40;

/// One row of the iterator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub inode: u64,
    pub memory_bytes: u64,
    pub netns: u32,
    pub recv_queue: u32,
    pub send_queue: u32,
    pub requests: u32,
    pub state: u8,
    pub family: u8,
}

impl Row {
    /// Decodes one `struct sock_row` (native byte order, as the kernel wrote it).
    pub fn decode(b: &[u8; ROW_BYTES]) -> Row {
        let u64_at = |i: usize| u64::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3], b[i + 4], b[i + 5], b[i + 6], b[i + 7]]);
        let u32_at = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Row {
            inode: u64_at(0),
            memory_bytes: u64_at(8),
            netns: u32_at(16),
            recv_queue: u32_at(20),
            send_queue: u32_at(24),
            requests: u32_at(28),
            state: b[32],
            family: b[33],
        }
    }
}

/// A namespace's sockets as the pass saw them.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct NamespaceSockets {
    pub sockets: Vec<TcpSocket>,
    /// Hashed sockets found, IPv4 and IPv6: what sockstat's `inuse` counts when every full
    /// socket has a file.
    pub hashed: [u64; 2],
    /// Pending connection requests on the listeners (sock_diag lists each as SYN_RECV).
    pub requests: u64,
}

/// What sockstat and sockstat6 say of one namespace.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SockStat {
    pub inuse: [u64; 2],
    pub time_wait: u64,
}

impl SockStat {
    /// Reads the calling thread's namespace's counts.
    pub fn read_current() -> Result<SockStat, String> {
        let read = |name: &str| {
            let path = format!("/proc/thread-self/net/{name}");
            std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))
        };
        let v4 = read("sockstat")?;
        // A kernel without IPv6 has no sockstat6: no IPv6 sockets.
        let v6 = read("sockstat6").unwrap_or_default();
        Self::parse(&v4, &v6)
    }

    pub fn parse(sockstat: &str, sockstat6: &str) -> Result<SockStat, String> {
        let v4 = sockstat::parse(sockstat).map_err(|e| format!("sockstat: {e}"))?;
        let v6 = sockstat::parse(sockstat6).map_err(|e| format!("sockstat6: {e}"))?;
        let need = |key| sockstat::get(&v4, "TCP", key).ok_or_else(|| format!("sockstat: no \"TCP: ... {key}\" value"));
        Ok(SockStat { inuse: [need("inuse")?, sockstat::get(&v6, "TCP6", "inuse").unwrap_or(0)], time_wait: need("tw")? })
    }
}

impl NamespaceSockets {
    /// The namespace's summary, equal to what its sock_diag dump gives, when the pass and the
    /// namespace's sockstat account for every socket; `None` when some full socket has no
    /// file (or sockets came and went between the two reads).
    pub fn summary(&self, stat: &SockStat) -> Option<TcpSummary> {
        if self.hashed != stat.inuse {
            return None;
        }
        let mut s = summarize(&self.sockets);
        // sock_diag lists these with no queue, memory or file: only their number counts.
        for (state, n) in [(TCP_TIME_WAIT, stat.time_wait), (TCP_SYN_RECV, self.requests)] {
            if n > 0 {
                *s.by_state.entry(state_name(state)).or_default() += n;
            }
        }
        Some(s)
    }
}

/// Groups the rows by namespace, one row per socket (a socket held by several fds or
/// processes appears once per fd).
pub fn group(rows: impl IntoIterator<Item = Row>) -> HashMap<u32, NamespaceSockets> {
    let mut seen = HashSet::new();
    let mut by_ns: HashMap<u32, NamespaceSockets> = HashMap::new();
    for r in rows {
        if !seen.insert(r.inode) {
            continue;
        }
        let ns = by_ns.entry(r.netns).or_default();
        ns.sockets.push(TcpSocket {
            state: r.state,
            recv_queue: r.recv_queue,
            send_queue: r.send_queue,
            inode: u32::try_from(r.inode).unwrap_or(u32::MAX),
            memory_bytes: r.memory_bytes,
        });
        match r.family {
            AF_INET => ns.hashed[0] += 1,
            AF_INET6 => ns.hashed[1] += 1,
            _ => {}
        }
        ns.requests += u64::from(r.requests);
    }
    by_ns
}

/// The loaded iterator program.
pub struct SockTable {
    ebpf: Ebpf,
    buf: Vec<u8>,
}

impl SockTable {
    /// Loads the iterator; the error says why this kernel cannot run it.
    pub fn load() -> Result<SockTable, String> {
        let btf = Btf::from_sys_fs().map_err(|e| format!("the kernel has no BTF (/sys/kernel/btf/vmlinux): {e}"))?;
        let mut ebpf = EbpfLoader::new().btf(Some(&btf)).load(OBJECT).map_err(|e| format!("loading socktable.bpf.o: {e}"))?;
        let program: &mut Iter = ebpf
            .program_mut("socktable")
            .ok_or("socktable.bpf.o has no program \"socktable\"")?
            .try_into()
            .map_err(|e| format!("socktable: {e}"))?;
        program.load("task_file", &btf).map_err(|e| format!("loading the task_file iterator: {e:?}"))?;
        Ok(SockTable { ebpf, buf: Vec::new() })
    }

    /// One pass over every open file of the node's processes.
    pub fn read(&mut self) -> Result<HashMap<u32, NamespaceSockets>, String> {
        let program: &mut Iter =
            self.ebpf.program_mut("socktable").ok_or("socktable: program gone")?.try_into().map_err(|e| format!("socktable: {e}"))?;
        let id = program.attach().map_err(|e| format!("socktable: attaching the iterator: {e}"))?;
        let link = program.take_link(id).map_err(|e| format!("socktable: {e}"))?;
        let mut file = link.into_file().map_err(|e| format!("socktable: creating the iterator: {e}"))?;
        self.buf.clear();
        file.read_to_end(&mut self.buf).map_err(|e| format!("socktable: reading the iterator: {e}"))?;
        let (rows, rest) = self.buf.as_chunks::<ROW_BYTES>();
        if !rest.is_empty() {
            return Err(format!("socktable: {} bytes read, not a whole number of {ROW_BYTES}-byte rows", self.buf.len()));
        }
        Ok(group(rows.iter().map(Row::decode)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_sock_diag::constants::{TCP_ESTABLISHED, TCP_LISTEN};

    /// Captured in a test namespace on 6.18: a listener, a connection and its accepted end
    /// (inuse 3), one TIME_WAIT; `alloc` and `mem` are node-wide.
    const SOCKSTAT: &str = "sockets: used 3\nTCP: inuse 3 orphan 0 tw 1 alloc 4 mem 138\nUDP: inuse 0 mem 0\nUDPLITE: inuse 0\nRAW: inuse 0\nFRAG: inuse 0 memory 0\n";
    const SOCKSTAT6: &str = "TCP6: inuse 2\nUDP6: inuse 0\nUDPLITE6: inuse 0\nRAW6: inuse 0\nFRAG6: inuse 0 memory 0\n";

    #[test]
    fn sockstat_gives_in_use_per_family_and_time_wait() {
        assert_eq!(SockStat::parse(SOCKSTAT, SOCKSTAT6), Ok(SockStat { inuse: [3, 2], time_wait: 1 }));
        // No IPv6 in the kernel: no sockstat6.
        assert_eq!(SockStat::parse(SOCKSTAT, ""), Ok(SockStat { inuse: [3, 0], time_wait: 1 }));
    }

    #[test]
    fn sockstat_that_is_not_sockstat_is_an_error_naming_what_is_missing() {
        assert_eq!(SockStat::parse("UDP: inuse 0 mem 0\n", ""), Err("sockstat: no \"TCP: ... inuse\" value".to_string()));
        assert_eq!(
            SockStat::parse("TCP: inuse x orphan 0 tw 1\n", ""),
            Err("sockstat: line 1: TCP inuse: \"x\" is not a number".to_string())
        );
        assert_eq!(SockStat::parse("TCP: inuse 3 orphan 0\n", ""), Err("sockstat: no \"TCP: ... tw\" value".to_string()));
    }

    fn row(inode: u64, netns: u32, state: u8, family: u8) -> Row {
        Row { inode, memory_bytes: 4096, netns, recv_queue: 1, send_queue: 2, requests: 0, state, family }
    }

    #[test]
    fn rows_decode_from_the_kernel_layout() {
        let mut b = [0u8; ROW_BYTES];
        b[0..8].copy_from_slice(&77u64.to_ne_bytes());
        b[8..16].copy_from_slice(&8192u64.to_ne_bytes());
        b[16..20].copy_from_slice(&4026531840u32.to_ne_bytes());
        b[20..24].copy_from_slice(&3u32.to_ne_bytes());
        b[24..28].copy_from_slice(&128u32.to_ne_bytes());
        b[28..32].copy_from_slice(&2u32.to_ne_bytes());
        b[32] = TCP_LISTEN;
        b[33] = AF_INET6;
        let r = Row::decode(&b);
        assert_eq!(
            r,
            Row {
                inode: 77,
                memory_bytes: 8192,
                netns: 4026531840,
                recv_queue: 3,
                send_queue: 128,
                requests: 2,
                state: TCP_LISTEN,
                family: AF_INET6
            }
        );
    }

    #[test]
    fn a_socket_held_twice_counts_once_and_namespaces_stay_apart() {
        let mut listener = row(10, 1, TCP_LISTEN, AF_INET);
        listener.requests = 2;
        let rows =
            [listener, row(11, 1, TCP_ESTABLISHED, AF_INET6), row(11, 1, TCP_ESTABLISHED, AF_INET6), row(12, 2, TCP_ESTABLISHED, AF_INET)];
        let g = group(rows);
        assert_eq!(g[&1].sockets.len(), 2);
        assert_eq!(g[&1].hashed, [1, 1]);
        assert_eq!(g[&1].requests, 2);
        assert_eq!(g[&2].hashed, [1, 0]);
    }

    #[test]
    fn a_namespace_is_summarized_only_when_every_full_socket_is_accounted_for() {
        let mut listener = row(10, 1, TCP_LISTEN, AF_INET);
        listener.requests = 2;
        let found = &group([listener, row(11, 1, TCP_ESTABLISHED, AF_INET)])[&1];
        // An orphan or a child waiting to be accepted: one more in use than found.
        assert_eq!(found.summary(&SockStat { inuse: [3, 0], time_wait: 0 }), None);
        let s = found.summary(&SockStat { inuse: [2, 0], time_wait: 4 }).unwrap();
        assert_eq!(s.by_state.into_iter().collect::<Vec<_>>(), [("established", 1), ("listen", 1), ("syn_received", 2), ("time_wait", 4)]);
        // No TIME_WAIT and no requests: no entries for them, as a dump would have none.
        let bare = &group([row(11, 1, TCP_ESTABLISHED, AF_INET)])[&1];
        let s = bare.summary(&SockStat { inuse: [1, 0], time_wait: 0 }).unwrap();
        assert_eq!(s.by_state.into_keys().collect::<Vec<_>>(), ["established"]);
        assert_eq!((s.rx_queue_bytes, s.tx_queue_bytes, s.allocated, s.orphans, s.memory_pages), (1, 2, 1, 0, 1));
    }
}
