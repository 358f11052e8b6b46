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
    cache: HashMap<&'static str, Result<String, String>>,
}

impl<'a> NsFiles<'a> {
    pub fn new(ns: &'a Namespace) -> Self {
        NsFiles { ns, cache: HashMap::new() }
    }

    /// `net/<name>` of the namespace's process.
    pub fn read(&mut self, name: &'static str) -> Result<&str, ProbeError> {
        let ns = self.ns;
        let entry = self.cache.entry(name).or_insert_with(|| {
            let path = ns.proc_dir.join("net").join(name);
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
        });
        entry.as_deref().map_err(|m| ProbeError { class: "read", message: m.clone() })
    }

    fn path(&self, name: &str) -> String {
        self.ns.proc_dir.join("net").join(name).display().to_string()
    }

    fn parse_error(&self, name: &str, e: impl std::fmt::Display) -> ProbeError {
        ProbeError { class: "parse", message: format!("{}: {e}", self.path(name)) }
    }
}

pub use podnet_pipeline::cumulative::{PointWriter as Emit, SeriesKey as Series};

pub fn netdev(files: &mut NsFiles, out: &mut Emit, per_device: bool) -> Result<(), ProbeError> {
    let devices = netdev::parse(files.read("dev")?).map_err(|e| files.parse_error("dev", e))?;
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
    cache: HashMap<(&'static str, String), MetricDef>,
}

impl Defs {
    fn get(&mut self, probe: &'static str, section: &str, file: &str, spec: &FieldSpec) -> MetricDef {
        *self.cache.entry((probe, spec.field.to_string())).or_insert_with(|| tables::metric_def(probe, section, file, spec))
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
            let def = defs.get(probe, &section.name, file, spec);
            out.signed(&def, vec![], v);
        }
    }
    if all_fields {
        for (field, v) in &section.fields {
            if !table.iter().any(|s| s.field == field) {
                let def = defs.get(probe, &section.name, file, &tables::extra_field(field));
                out.signed(&def, vec![], *v);
            }
        }
    }
}

fn find<'s>(sections: &'s [snmp::Section], name: &str, path: &str) -> Result<&'s snmp::Section, ProbeError> {
    sections
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ProbeError { class: "parse", message: format!("{path}: no \"{name}:\" section") })
}

pub fn snmp_probe(probe: &'static str, files: &mut NsFiles, out: &mut Emit, defs: &mut Defs) -> Result<(), ProbeError> {
    let (section, table) = match probe {
        "tcp" => ("Tcp", tables::TCP),
        "udp" => ("Udp", tables::UDP),
        _ => ("Ip", tables::IP),
    };
    let sections = snmp::parse_sections(files.read("snmp")?).map_err(|e| files.parse_error("snmp", e))?;
    let s = find(&sections, section, &files.path("snmp"))?;
    section_fields(probe, s, "snmp", table, false, defs, out);
    Ok(())
}

pub fn snmp6_probe(probe: &'static str, files: &mut NsFiles, out: &mut Emit, defs: &mut Defs) -> Result<(), ProbeError> {
    let (section, table) = if probe == "udp6" { ("Udp6", tables::UDP6) } else { ("Ip6", tables::IP6) };
    let text = match files.read("snmp6") {
        Ok(t) => t,
        // A namespace (or kernel) without IPv6 has no snmp6: nothing to report, not an error.
        Err(e) if e.message.contains("No such file") => return Ok(()),
        Err(e) => return Err(e),
    };
    let sections = snmp::parse_snmp6(text).map_err(|e| files.parse_error("snmp6", e))?;
    let s = find(&sections, section, &files.path("snmp6"))?;
    section_fields(probe, s, "snmp6", table, false, defs, out);
    Ok(())
}

pub fn tcpext(files: &mut NsFiles, out: &mut Emit, defs: &mut Defs, all_fields: bool) -> Result<(), ProbeError> {
    let sections = snmp::parse_sections(files.read("netstat")?).map_err(|e| files.parse_error("netstat", e))?;
    let s = find(&sections, "TcpExt", &files.path("netstat"))?;
    section_fields("tcpext", s, "netstat", tables::TCPEXT, all_fields, defs, out);
    if all_fields && let Ok(ip) = find(&sections, "IpExt", &files.path("netstat")) {
        section_fields("ipext", ip, "netstat", &[], true, defs, out);
    }
    Ok(())
}

const fn sock_gauge(name: &'static str, description: &'static str, unit: &'static str, kubeskoop: Option<&'static str>) -> MetricDef {
    MetricDef {
        name,
        description,
        unit,
        kind: MetricKind::Gauge,
        kubeskoop: match kubeskoop {
            Some(k) => Some(KubeskoopName::Same(k)),
            None => None,
        },
    }
}

pub const SOCK_USED: MetricDef =
    sock_gauge("podnet.sock.sockets.used", "Sockets in use in the namespace (sockstat \"sockets: used\").", "{socket}", None);
pub const SOCK_TCP_INUSE: MetricDef = sock_gauge(
    "podnet.sock.tcp.inuse",
    "TCP sockets in use, IPv4 and IPv6 (sockstat TCP + TCP6 inuse).",
    "{socket}",
    Some("kubeskoop_sock_inuse"),
);
pub const SOCK_TCP_TW: MetricDef =
    sock_gauge("podnet.sock.tcp.time_wait", "TCP sockets in TIME-WAIT (sockstat TCP tw).", "{socket}", Some("kubeskoop_sock_tw"));
pub const SOCK_UDP_INUSE: MetricDef = sock_gauge("podnet.sock.udp.inuse", "UDP sockets in use, IPv4 and IPv6.", "{socket}", None);
pub const SOCK_RAW_INUSE: MetricDef = sock_gauge("podnet.sock.raw.inuse", "Raw sockets in use, IPv4 and IPv6.", "{socket}", None);
pub const SOCK_FRAG_INUSE: MetricDef = sock_gauge("podnet.sock.frag.inuse", "IP fragment queues in use, IPv4 and IPv6.", "{queue}", None);
pub const SOCK_FRAG_MEMORY: MetricDef = sock_gauge("podnet.sock.frag.memory", "Memory of IP fragment queues, IPv4 and IPv6.", "By", None);
pub const SOCK_TCP_ORPHAN: MetricDef = sock_gauge(
    "podnet.sock.tcp.orphan",
    "Orphaned TCP sockets on the node (global in the kernel).",
    "{socket}",
    Some("kubeskoop_sock_orphan"),
);
pub const SOCK_TCP_ALLOC: MetricDef = sock_gauge(
    "podnet.sock.tcp.allocated",
    "TCP sockets allocated on the node (global in the kernel).",
    "{socket}",
    Some("kubeskoop_sock_alloc"),
);
pub const SOCK_TCP_MEM: MetricDef = sock_gauge(
    "podnet.sock.tcp.memory",
    "Memory pages used by TCP on the node (global in the kernel).",
    "{page}",
    Some("kubeskoop_sock_mem"),
);
pub const SOCK_UDP_MEM: MetricDef =
    sock_gauge("podnet.sock.udp.memory", "Memory pages used by UDP on the node (global in the kernel).", "{page}", None);

fn sockstat_entries(files: &mut NsFiles) -> Result<Vec<(String, String, u64)>, ProbeError> {
    let mut entries = sockstat::parse(files.read("sockstat")?).map_err(|e| files.parse_error("sockstat", e))?;
    match files.read("sockstat6") {
        Ok(t) => entries.extend(sockstat::parse(t).map_err(|e| files.parse_error("sockstat6", e))?),
        Err(e) if e.message.contains("No such file") => {}
        Err(e) => return Err(e),
    }
    Ok(entries)
}

/// The per-namespace sockstat fields.
pub fn sock(files: &mut NsFiles, out: &mut Emit) -> Result<(), ProbeError> {
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
pub fn sock_node(files: &mut NsFiles, out: &mut Emit) -> Result<(), ProbeError> {
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

const fn per_cpu(name: &'static str, description: &'static str) -> MetricDef {
    MetricDef { name, description, unit: "{packet}", kind: MetricKind::Counter, kubeskoop: None }
}
// Per-CPU series are separate metrics, so the node sums above are never counted twice.
pub const SOFTNET_CPU_PROCESSED: MetricDef = per_cpu("podnet.softnet.cpu.processed", "Packets processed by the receive softirq, per CPU.");
pub const SOFTNET_CPU_DROPPED: MetricDef = per_cpu("podnet.softnet.cpu.dropped", "Packets dropped for a full backlog queue, per CPU.");
pub const SOFTNET_CPU_TIME_SQUEEZE: MetricDef =
    per_cpu("podnet.softnet.cpu.time_squeeze", "Receive softirq budget or time exhaustions, per CPU.");

pub fn softnet(files: &mut NsFiles, out: &mut Emit, per_cpu: bool) -> Result<(), ProbeError> {
    let cpus = softnet::parse(files.read("softnet_stat")?).map_err(|e| files.parse_error("softnet_stat", e))?;
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
