//! One function per probe: read the namespace's file (once, shared by the probes that use
//! it), parse, and add data points.

use std::collections::HashMap;

use podnet_netns::Namespace;
use podnet_pipeline::pdata::{KubeskoopName, MetricDef, MetricKind, keys, kv_str};

use crate::tables::{self, FieldSpec};
use crate::{netdev, snmp, sockstat, softnet};

/// A probe's failure on one namespace.
#[derive(Debug)]
pub struct ProbeError {
    pub class: &'static str,
    pub message: String,
}

/// The files of one namespace, each read at most once per collection.
pub struct NsFiles<'a> {
    ns: &'a Namespace,
    cache: std::cell::RefCell<HashMap<&'static str, Result<std::rc::Rc<str>, String>>>,
}

impl<'a> NsFiles<'a> {
    pub fn new(ns: &'a Namespace) -> Self {
        NsFiles { ns, cache: Default::default() }
    }

    /// `net/<name>` of the namespace's process (shared, so parsers can borrow from it).
    pub fn read(&self, name: &'static str) -> Result<std::rc::Rc<str>, ProbeError> {
        let ns = self.ns;
        let mut cache = self.cache.borrow_mut();
        let entry = cache.entry(name).or_insert_with(|| {
            let path = ns.proc_dir.join("net").join(name);
            std::fs::read_to_string(&path).map(std::rc::Rc::from).map_err(|e| format!("{}: {e}", path.display()))
        });
        entry.clone().map_err(|m| ProbeError { class: "read", message: m })
    }

    fn path(&self, name: &str) -> String {
        self.ns.proc_dir.join("net").join(name).display().to_string()
    }

    fn parse_error(&self, name: &str, e: impl std::fmt::Display) -> ProbeError {
        ProbeError { class: "parse", message: format!("{}: {e}", self.path(name)) }
    }
}

pub use podnet_pipeline::cumulative::{PointWriter as Emit, SeriesKey as Series};

pub fn netdev(files: &NsFiles, out: &mut Emit, per_device: bool) -> Result<(), ProbeError> {
    let devices = netdev::parse(&files.read("dev")?).map_err(|e| files.parse_error("dev", e))?;
    let total = netdev::sum_without_loopback(&devices);
    for (def, rx, tx) in netdev::points(&total) {
        out.point(def, vec![kv_str(keys::NETWORK_IO_DIRECTION, "receive")], rx);
        out.point(def, vec![kv_str(keys::NETWORK_IO_DIRECTION, "transmit")], tx);
    }
    if per_device {
        for d in devices.iter().filter(|d| d.name != "lo") {
            for (def, rx, tx) in netdev::device_points(&d.counters) {
                for (direction, value) in [("receive", rx), ("transmit", tx)] {
                    let attrs = vec![kv_str(keys::NETWORK_IO_DIRECTION, direction), kv_str(keys::NETWORK_INTERFACE_NAME, d.name.clone())];
                    out.point(def, attrs, value);
                }
            }
        }
    }
    Ok(())
}

/// Metric definitions built once per (probe, field) and reused every collection.
#[derive(Default)]
pub struct Defs {
    cache: HashMap<(&'static str, &'static str), MetricDef>,
}

impl Defs {
    fn get(&mut self, probe: &'static str, section: &str, file: &str, spec: &FieldSpec) -> MetricDef {
        *self.cache.entry((probe, spec.field)).or_insert_with(|| tables::metric_def(probe, section, file, spec))
    }
}

/// Exports `table`'s fields of `section`; with `all_fields`, every other field too.
#[allow(clippy::too_many_arguments)]
fn section_fields(
    probe: &'static str,
    section: &snmp::Section,
    file: &str,
    table: &[FieldSpec],
    all_fields: bool,
    defs: &mut Defs,
    out: &mut Emit,
) {
    for spec in table {
        if let Some(v) = section.get(spec.field) {
            let def = defs.get(probe, section.name, file, spec);
            out.signed(&def, vec![], v);
        }
    }
    if all_fields {
        for (field, v) in &section.fields {
            if !table.iter().any(|s| s.field == *field) {
                let def = defs.get(probe, section.name, file, &tables::extra_field(field));
                out.signed(&def, vec![], *v);
            }
        }
    }
}

fn find<'s, 't>(sections: &'s [snmp::Section<'t>], name: &str, path: &str) -> Result<&'s snmp::Section<'t>, ProbeError> {
    sections
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ProbeError { class: "parse", message: format!("{path}: no \"{name}:\" section") })
}

pub fn snmp_probe(probe: &'static str, files: &NsFiles, out: &mut Emit, defs: &mut Defs) -> Result<(), ProbeError> {
    let (section, table) = match probe {
        "tcp" => ("Tcp", tables::TCP),
        "udp" => ("Udp", tables::UDP),
        _ => ("Ip", tables::IP),
    };
    let text = files.read("snmp")?;
    let sections = snmp::parse_sections(&text).map_err(|e| files.parse_error("snmp", e))?;
    let s = find(&sections, section, &files.path("snmp"))?;
    section_fields(probe, s, "snmp", table, false, defs, out);
    Ok(())
}

pub fn snmp6_probe(probe: &'static str, files: &NsFiles, out: &mut Emit, defs: &mut Defs) -> Result<(), ProbeError> {
    let (section, table) = if probe == "udp6" { ("Udp6", tables::UDP6) } else { ("Ip6", tables::IP6) };
    let text = match files.read("snmp6") {
        Ok(t) => t,
        // A namespace (or kernel) without IPv6 has no snmp6: nothing to report, not an error.
        Err(e) if e.message.contains("No such file") => return Ok(()),
        Err(e) => return Err(e),
    };
    let sections = snmp::parse_snmp6(&text).map_err(|e| files.parse_error("snmp6", e))?;
    let s = find(&sections, section, &files.path("snmp6"))?;
    section_fields(probe, s, "snmp6", table, false, defs, out);
    Ok(())
}

pub fn tcpext(files: &NsFiles, out: &mut Emit, defs: &mut Defs, all_fields: bool) -> Result<(), ProbeError> {
    let text = files.read("netstat")?;
    let sections = snmp::parse_sections(&text).map_err(|e| files.parse_error("netstat", e))?;
    let s = find(&sections, "TcpExt", &files.path("netstat"))?;
    section_fields("tcpext", s, "netstat", tables::TCPEXT, all_fields, defs, out);
    if all_fields && let Ok(ip) = find(&sections, "IpExt", &files.path("netstat")) {
        section_fields("ipext", ip, "netstat", &[], true, defs, out);
    }
    Ok(())
}

pub const SOCK_USED: MetricDef =
    MetricDef::gauge("podnet.sock.sockets.used", "Sockets in use in the namespace (sockstat \"sockets: used\").", "{socket}");
pub const SOCK_TCP_INUSE: MetricDef =
    MetricDef::gauge("podnet.sock.tcp.inuse", "TCP sockets in use, IPv4 and IPv6 (sockstat TCP + TCP6 inuse).", "{socket}")
        .kubeskoop("kubeskoop_sock_inuse");
pub const SOCK_TCP_TW: MetricDef =
    MetricDef::gauge("podnet.sock.tcp.time_wait", "TCP sockets in TIME-WAIT (sockstat TCP tw).", "{socket}").kubeskoop("kubeskoop_sock_tw");
pub const SOCK_UDP_INUSE: MetricDef = MetricDef::gauge("podnet.sock.udp.inuse", "UDP sockets in use, IPv4 and IPv6.", "{socket}");
pub const SOCK_RAW_INUSE: MetricDef = MetricDef::gauge("podnet.sock.raw.inuse", "Raw sockets in use, IPv4 and IPv6.", "{socket}");
pub const SOCK_FRAG_INUSE: MetricDef = MetricDef::gauge("podnet.sock.frag.inuse", "IP fragment queues in use, IPv4 and IPv6.", "{queue}");
pub const SOCK_FRAG_MEMORY: MetricDef = MetricDef::gauge("podnet.sock.frag.memory", "Memory of IP fragment queues, IPv4 and IPv6.", "By");
pub const SOCK_TCP_ORPHAN: MetricDef =
    MetricDef::gauge("podnet.sock.tcp.orphan", "Orphaned TCP sockets on the node (global in the kernel).", "{socket}")
        .kubeskoop("kubeskoop_sock_orphan");
pub const SOCK_TCP_ALLOC: MetricDef =
    MetricDef::gauge("podnet.sock.tcp.allocated", "TCP sockets allocated on the node (global in the kernel).", "{socket}")
        .kubeskoop("kubeskoop_sock_alloc");
pub const SOCK_TCP_MEM: MetricDef =
    MetricDef::gauge("podnet.sock.tcp.memory", "Memory pages used by TCP on the node (global in the kernel).", "{page}")
        .kubeskoop("kubeskoop_sock_mem");
pub const SOCK_UDP_MEM: MetricDef =
    MetricDef::gauge("podnet.sock.udp.memory", "Memory pages used by UDP on the node (global in the kernel).", "{page}");

fn sockstat_entries(files: &NsFiles) -> Result<Vec<(String, String, u64)>, ProbeError> {
    let mut entries = sockstat::parse(&files.read("sockstat")?).map_err(|e| files.parse_error("sockstat", e))?;
    match files.read("sockstat6") {
        Ok(t) => entries.extend(sockstat::parse(&t).map_err(|e| files.parse_error("sockstat6", e))?),
        Err(e) if e.message.contains("No such file") => {}
        Err(e) => return Err(e),
    }
    Ok(entries)
}

/// The per-namespace sockstat fields.
pub fn sock(files: &NsFiles, out: &mut Emit) -> Result<(), ProbeError> {
    let e = sockstat_entries(files)?;
    let get = |p: &str, k: &str| sockstat::get(&e, p, k).unwrap_or(0);
    let rows = [
        (&SOCK_USED, get("sockets", "used")),
        (&SOCK_TCP_INUSE, get("TCP", "inuse") + get("TCP6", "inuse")),
        (&SOCK_TCP_TW, get("TCP", "tw")),
        (&SOCK_UDP_INUSE, get("UDP", "inuse") + get("UDP6", "inuse")),
        (&SOCK_RAW_INUSE, get("RAW", "inuse") + get("RAW6", "inuse")),
        (&SOCK_FRAG_INUSE, get("FRAG", "inuse") + get("FRAG6", "inuse")),
        (&SOCK_FRAG_MEMORY, get("FRAG", "memory") + get("FRAG6", "memory")),
    ];
    for (def, v) in rows {
        out.point(def, vec![], v);
    }
    Ok(())
}

/// The node-wide sockstat fields (the kernel keeps them globally, so any namespace's
/// sockstat shows the same values): reported once, at node level.
pub fn sock_node(files: &NsFiles, out: &mut Emit) -> Result<(), ProbeError> {
    let e = sockstat_entries(files)?;
    let get = |p: &str, k: &str| sockstat::get(&e, p, k).unwrap_or(0);
    for (def, v) in [
        (&SOCK_TCP_ORPHAN, get("TCP", "orphan")),
        (&SOCK_TCP_ALLOC, get("TCP", "alloc")),
        (&SOCK_TCP_MEM, get("TCP", "mem")),
        (&SOCK_UDP_MEM, get("UDP", "mem")),
    ] {
        out.point(def, vec![], v);
    }
    Ok(())
}

pub const SOFTNET_PROCESSED: MetricDef = MetricDef {
    name: "podnet.softnet.processed",
    description: "Packets processed by the network receive softirq, summed over CPUs (node level).",
    unit: "{packet}",
    kind: MetricKind::Counter,
    kubeskoop: Some(KubeskoopName::Same("kubeskoop_softnet_processed")),
};
pub const SOFTNET_DROPPED: MetricDef = MetricDef {
    name: "podnet.softnet.dropped",
    description: "Packets dropped because a CPU's backlog queue was full, summed over CPUs (node level).",
    unit: "{packet}",
    kind: MetricKind::Counter,
    kubeskoop: Some(KubeskoopName::Same("kubeskoop_softnet_dropped")),
};
pub const SOFTNET_TIME_SQUEEZE: MetricDef = MetricDef {
    name: "podnet.softnet.time_squeeze",
    description: "Times the receive softirq ran out of budget or time with work left, summed over CPUs (node level).",
    unit: "{event}",
    kind: MetricKind::Counter,
    kubeskoop: None,
};

pub const SOFTNET_CPU_PROCESSED: MetricDef =
    MetricDef::counter("podnet.softnet.cpu.processed", "Packets processed by the receive softirq, per CPU.", "{packet}");
pub const SOFTNET_CPU_DROPPED: MetricDef =
    MetricDef::counter("podnet.softnet.cpu.dropped", "Packets dropped for a full backlog queue, per CPU.", "{packet}");
pub const SOFTNET_CPU_TIME_SQUEEZE: MetricDef =
    MetricDef::counter("podnet.softnet.cpu.time_squeeze", "Receive softirq budget or time exhaustions, per CPU.", "{packet}");

pub fn softnet(files: &NsFiles, out: &mut Emit, per_cpu: bool) -> Result<(), ProbeError> {
    let cpus = softnet::parse(&files.read("softnet_stat")?).map_err(|e| files.parse_error("softnet_stat", e))?;
    let sum = |f: fn(&softnet::CpuSoftnet) -> u64| cpus.iter().map(f).fold(0u64, u64::wrapping_add);
    out.point(&SOFTNET_PROCESSED, vec![], sum(|c| c.processed));
    out.point(&SOFTNET_DROPPED, vec![], sum(|c| c.dropped));
    out.point(&SOFTNET_TIME_SQUEEZE, vec![], sum(|c| c.time_squeeze));
    if per_cpu {
        for c in &cpus {
            let cpu = || vec![podnet_pipeline::pdata::kv_int("cpu.logical_number", i64::from(c.cpu))];
            out.point(&SOFTNET_CPU_PROCESSED, cpu(), c.processed);
            out.point(&SOFTNET_CPU_DROPPED, cpu(), c.dropped);
            out.point(&SOFTNET_CPU_TIME_SQUEEZE, cpu(), c.time_squeeze);
        }
    }
    Ok(())
}

pub const IO_READ_SYSCALLS: MetricDef = MetricDef::counter(
    "podnet.io.read_syscalls",
    "Read system calls of the namespace's processes (/proc/<pid>/io syscr, summed).",
    "{syscall}",
)
.kubeskoop("kubeskoop_io_readsyscall");
pub const IO_WRITE_SYSCALLS: MetricDef = MetricDef::counter(
    "podnet.io.write_syscalls",
    "Write system calls of the namespace's processes (/proc/<pid>/io syscw, summed).",
    "{syscall}",
)
.kubeskoop("kubeskoop_io_writesyscall");
pub const IO_READ_BYTES: MetricDef = MetricDef::counter(
    "podnet.io.read_bytes",
    "Bytes the namespace's processes read from storage (/proc/<pid>/io read_bytes, summed).",
    "By",
)
.kubeskoop("kubeskoop_io_readbytes");
pub const IO_WRITE_BYTES: MetricDef = MetricDef::counter(
    "podnet.io.write_bytes",
    "Bytes the namespace's processes wrote to storage (/proc/<pid>/io write_bytes, summed).",
    "By",
)
.kubeskoop("kubeskoop_io_writebytes");
pub const FD_OPEN: MetricDef =
    MetricDef::gauge("podnet.fd.open", "Open file descriptors of the namespace's processes.", "{file}").kubeskoop("kubeskoop_fd_openfd");
pub const FD_SOCKETS: MetricDef =
    MetricDef::gauge("podnet.fd.sockets", "Open sockets of the namespace's processes.", "{socket}").kubeskoop("kubeskoop_fd_opensocket");

fn root_of(ns: &Namespace) -> &std::path::Path {
    ns.proc_dir.parent().unwrap_or(&ns.proc_dir)
}

/// `/proc/<pid>/io` summed over the namespace's processes. Processes that exit meanwhile are
/// skipped; if none could be read, that is an error (podnet needs CAP_SYS_PTRACE).
pub fn io(ns: &Namespace, out: &mut Emit) -> Result<(), ProbeError> {
    let mut sums = [0u64; 4];
    let (mut read, mut last_err) = (0, None);
    for pid in &ns.pids {
        let path = root_of(ns).join(pid.to_string()).join("io");
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                read += 1;
                for line in text.lines() {
                    let Some((k, v)) = line.split_once(':') else { continue };
                    let idx = match k {
                        "syscr" => 0,
                        "syscw" => 1,
                        "read_bytes" => 2,
                        "write_bytes" => 3,
                        _ => continue,
                    };
                    let v: u64 = v.trim().parse().map_err(|_| ProbeError {
                        class: "parse",
                        message: format!("{}: {k}: \"{}\" is not a number", path.display(), v.trim()),
                    })?;
                    sums[idx] = sums[idx].wrapping_add(v);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => last_err = Some(format!("{}: {e}", path.display())),
        }
    }
    if read == 0
        && let Some(e) = last_err
    {
        return Err(ProbeError { class: "read", message: format!("{e} (reading other processes' io needs CAP_SYS_PTRACE)") });
    }
    for (def, v) in [(&IO_READ_SYSCALLS, sums[0]), (&IO_WRITE_SYSCALLS, sums[1]), (&IO_READ_BYTES, sums[2]), (&IO_WRITE_BYTES, sums[3])] {
        out.point(def, vec![], v);
    }
    Ok(())
}

/// Open descriptors and sockets over the namespace's processes.
pub fn fd(ns: &Namespace, out: &mut Emit) -> Result<(), ProbeError> {
    let (mut open, mut sockets) = (0u64, 0u64);
    let (mut read, mut last_err) = (0, None);
    for pid in &ns.pids {
        let dir = root_of(ns).join(pid.to_string()).join("fd");
        match std::fs::read_dir(&dir) {
            Ok(entries) => {
                read += 1;
                for e in entries.flatten() {
                    open += 1;
                    if std::fs::read_link(e.path()).is_ok_and(|t| t.as_os_str().as_encoded_bytes().starts_with(b"socket:")) {
                        sockets += 1;
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => last_err = Some(format!("{}: {e}", dir.display())),
        }
    }
    if read == 0
        && let Some(e) = last_err
    {
        return Err(ProbeError { class: "read", message: format!("{e} (listing other processes' fds needs CAP_SYS_PTRACE)") });
    }
    out.point(&FD_OPEN, vec![], open);
    out.point(&FD_SOCKETS, vec![], sockets);
    Ok(())
}

pub const IPVS: [MetricDef; 5] = [
    MetricDef::counter("podnet.ipvs.connections", "Connections scheduled by IPVS.", "{connection}").kubeskoop("kubeskoop_ipvs_connections"),
    MetricDef::counter("podnet.ipvs.incoming_packets", "Packets IPVS received.", "{packet}").kubeskoop("kubeskoop_ipvs_incomingpackets"),
    MetricDef::counter("podnet.ipvs.outgoing_packets", "Packets IPVS sent.", "{packet}").kubeskoop("kubeskoop_ipvs_outgoingpackets"),
    MetricDef::counter("podnet.ipvs.incoming_bytes", "Bytes IPVS received.", "By").kubeskoop("kubeskoop_ipvs_incomingbytes"),
    MetricDef::counter("podnet.ipvs.outgoing_bytes", "Bytes IPVS sent.", "By").kubeskoop("kubeskoop_ipvs_outgoingbytes"),
];

/// The five totals of `/proc/net/ip_vs_stats` (hexadecimal): conns, in packets, out
/// packets, in bytes, out bytes. (KubeSkoop reports the in bytes as in packets; not here.)
pub fn parse_ipvs(text: &str) -> Result<[u64; 5], String> {
    let line = text.lines().nth(2).ok_or("fewer than 3 lines")?;
    let values: Vec<u64> = line
        .split_whitespace()
        .map(|v| u64::from_str_radix(v, 16).map_err(|_| format!("line 3: \"{v}\" is not hexadecimal")))
        .collect::<Result<_, _>>()?;
    values.try_into().map_err(|v: Vec<u64>| format!("line 3: expected 5 totals, found {}", v.len()))
}

/// `Ok(false)` when IPVS is absent from this kernel (no ip_vs_stats): unsupported.
pub fn ipvs(files: &NsFiles, out: &mut Emit) -> Result<bool, ProbeError> {
    let text = match files.read("ip_vs_stats") {
        Ok(t) => t,
        Err(e) if e.message.contains("No such file") => return Ok(false),
        Err(e) => return Err(e),
    };
    let totals = parse_ipvs(&text).map_err(|e| files.parse_error("ip_vs_stats", e))?;
    for (def, v) in IPVS.iter().zip(totals) {
        out.point(def, vec![], v);
    }
    Ok(true)
}
