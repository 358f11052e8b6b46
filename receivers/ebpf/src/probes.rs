//! The probes: their objects and hooks, their metrics, and how their maps are read.

use std::collections::{HashMap, HashSet};

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuHashMap};
use podnet_pipeline::pdata::{KeyValue, KubeskoopName, Log2Histogram, MetricDef, keys, kv_int, kv_str};
use serde::{Deserialize, Serialize};

use crate::abi::{self, DropKey, FlowDrops, FlowKey, ResetKey, StateKey};
use crate::btf::ReasonNames;
use crate::latency::{self, DiskNames, LatencyKind};
use crate::loader::{Attach, Gap, Hook, LoadedProbe, ProbeSpec};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    Packetloss,
    Tcpreset,
    Tcpretrans,
    Softirq,
    Netiftxlat,
    Socketlatency,
    Kernellatency,
    Virtcmdlatency,
    Biolatency,
    Flow,
}

impl ProbeKind {
    pub const ALL: [ProbeKind; 10] = [
        ProbeKind::Packetloss,
        ProbeKind::Tcpreset,
        ProbeKind::Tcpretrans,
        ProbeKind::Softirq,
        ProbeKind::Netiftxlat,
        ProbeKind::Socketlatency,
        ProbeKind::Kernellatency,
        ProbeKind::Virtcmdlatency,
        ProbeKind::Biolatency,
        ProbeKind::Flow,
    ];

    pub fn spec(self) -> &'static ProbeSpec {
        match self {
            ProbeKind::Packetloss => &PACKETLOSS,
            ProbeKind::Tcpreset => &TCPRESET,
            ProbeKind::Tcpretrans => &TCPRETRANS,
            ProbeKind::Softirq => &latency::SOFTIRQ,
            ProbeKind::Netiftxlat => &latency::NETIFTXLAT,
            ProbeKind::Socketlatency => &latency::SOCKETLATENCY,
            ProbeKind::Kernellatency => &latency::KERNELLATENCY,
            ProbeKind::Virtcmdlatency => &latency::VIRTCMDLATENCY,
            ProbeKind::Biolatency => &latency::BIOLATENCY,
            ProbeKind::Flow => &FLOW_PODS,
        }
    }

    /// The object and hooks for these options: the flow probe's nic mode is its own set.
    pub fn spec_for(self, nic: bool) -> &'static ProbeSpec {
        match self {
            ProbeKind::Flow if nic => &FLOW_NIC,
            _ => self.spec(),
        }
    }

    /// What a latency probe measures; `None` for the counting probes.
    pub fn latency(self) -> Option<&'static LatencyKind> {
        match self {
            ProbeKind::Softirq => Some(&latency::SOFTIRQ_KIND),
            ProbeKind::Netiftxlat => Some(&latency::NETIFTXLAT_KIND),
            ProbeKind::Socketlatency => Some(&latency::SOCKETLATENCY_KIND),
            ProbeKind::Kernellatency => Some(&latency::KERNELLATENCY_KIND),
            ProbeKind::Virtcmdlatency => Some(&latency::VIRTCMDLATENCY_KIND),
            ProbeKind::Biolatency => Some(&latency::BIOLATENCY_KIND),
            _ => None,
        }
    }
}

/// A latency probe's settings, resolved from the config and the probe's defaults.
#[derive(Clone, Debug)]
pub struct LatencySettings {
    pub thresholds: [std::time::Duration; 2],
    pub event_threshold: std::time::Duration,
    /// softirq: the vectors measured.
    pub softirq_types: Vec<u32>,
}

pub static PACKETLOSS_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../ebpf/packetloss.bpf.o"));
pub static TCPRESET_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../ebpf/tcpreset.bpf.o"));
pub static FLOW_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../ebpf/flow.bpf.o"));
pub static TCPRETRANS_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../ebpf/tcpretrans.bpf.o"));

pub static PACKETLOSS: ProbeSpec = ProbeSpec {
    name: "packetloss",
    object: PACKETLOSS_OBJECT,
    flow_map: Some("drop_flows"),
    gaps: &[],
    hooks: &[
        (Hook::TpBtf, &[Attach::TpBtf { program: "packetloss_btf", event: "kfree_skb" }]),
        (Hook::Tracepoint, &[Attach::Tracepoint { program: "packetloss_tp", category: "skb", event: "kfree_skb" }]),
        (Hook::Kprobe, &[Attach::Kprobe { program: "packetloss_kprobe", function: "kfree_skb_reason" }]),
    ],
};

/// Before Linux 6.10 `tcp_send_reset` fires only for resets a socket sends: the replies to
/// segments for closed ports (NOSOCK, most of what users look for) go untraced. 6.10 brought
/// them in with the reset reasons, so the reasons' enum tells the kernels apart.
const UNTRACED_NOSOCK: &str = "resets sent without a socket (nosock: replies to closed ports): tcp_send_reset fires for them only from Linux 6.10 (this kernel's BTF has no enum sk_rst_reason)";

pub static TCPRESET: ProbeSpec = ProbeSpec {
    name: "tcpreset",
    object: TCPRESET_OBJECT,
    flow_map: None,
    gaps: &[
        Gap { hook: Hook::TpBtf, unless_btf_enum: "sk_rst_reason", misses: UNTRACED_NOSOCK },
        Gap { hook: Hook::Tracepoint, unless_btf_enum: "sk_rst_reason", misses: UNTRACED_NOSOCK },
    ],
    hooks: &[
        (
            Hook::TpBtf,
            &[
                Attach::TpBtf { program: "tcpreset_send_btf", event: "tcp_send_reset" },
                Attach::TpBtf { program: "tcpreset_receive_btf", event: "tcp_receive_reset" },
            ],
        ),
        (
            Hook::Tracepoint,
            &[
                Attach::Tracepoint { program: "tcpreset_send_tp", category: "tcp", event: "tcp_send_reset" },
                Attach::Tracepoint { program: "tcpreset_receive_tp", category: "tcp", event: "tcp_receive_reset" },
            ],
        ),
        (
            Hook::Kprobe,
            &[
                Attach::Kprobe { program: "tcpreset_v4_send_kprobe", function: "tcp_v4_send_reset" },
                Attach::Kprobe { program: "tcpreset_active_kprobe", function: "tcp_send_active_reset" },
                Attach::Tracepoint { program: "tcpreset_receive_tp", category: "tcp", event: "tcp_receive_reset" },
            ],
        ),
    ],
};

pub static TCPRETRANS: ProbeSpec = ProbeSpec {
    name: "tcpretrans",
    object: TCPRETRANS_OBJECT,
    flow_map: Some("retrans_flows"),
    gaps: &[],
    hooks: &[
        (Hook::TpBtf, &[Attach::TpBtf { program: "tcpretrans_btf", event: "tcp_retransmit_skb" }]),
        (Hook::Tracepoint, &[Attach::Tracepoint { program: "tcpretrans_tp", category: "tcp", event: "tcp_retransmit_skb" }]),
        (Hook::Kprobe, &[Attach::Kprobe { program: "tcpretrans_kprobe", function: "tcp_retransmit_skb" }]),
    ],
};

/// Per pod: every packet a pod's own devices queue or receive (see ebpf/README.md for why
/// these hooks rather than TC on the host-side veths).
pub static FLOW_PODS: ProbeSpec = ProbeSpec {
    name: "flow",
    object: FLOW_OBJECT,
    flow_map: Some("flows"),
    gaps: &[],
    hooks: &[
        (
            Hook::TpBtf,
            &[
                Attach::TpBtf { program: "flow_tx_btf", event: "net_dev_queue" },
                Attach::TpBtf { program: "flow_rx_btf", event: "netif_receive_skb" },
            ],
        ),
        (
            Hook::Tracepoint,
            &[
                Attach::Tracepoint { program: "flow_tx_tp", category: "net", event: "net_dev_queue" },
                Attach::Tracepoint { program: "flow_rx_tp", category: "net", event: "netif_receive_skb" },
            ],
        ),
    ],
};

/// KubeSkoop's: TC on the node's NIC(s), attached per device by `crate::nic`.
pub static FLOW_NIC: ProbeSpec = ProbeSpec {
    name: "flow",
    object: FLOW_OBJECT,
    flow_map: Some("flows"),
    gaps: &[],
    hooks: &[
        (
            Hook::Tcx,
            &[
                Attach::Tc { program: crate::nic::INGRESS_PROGRAM, ingress: true, tcx: true },
                Attach::Tc { program: crate::nic::EGRESS_PROGRAM, ingress: false, tcx: true },
            ],
        ),
        (
            Hook::Tc,
            &[
                Attach::Tc { program: crate::nic::INGRESS_PROGRAM, ingress: true, tcx: false },
                Attach::Tc { program: crate::nic::EGRESS_PROGRAM, ingress: false, tcx: false },
            ],
        ),
    ],
};

// --- metric definitions ---------------------------------------------------------------------

pub const DROP_REASON: &str = "podnet.drop.reason";
pub const DROP_LOCATION: &str = "podnet.drop.location";
pub const RESET_KIND: &str = "podnet.tcp.reset.kind";
pub const RESET_REASON: &str = "podnet.tcp.reset.reason";
pub const NETWORK_TRANSPORT: &str = "network.transport";
pub const NETWORK_TYPE: &str = "network.type";
pub const SOURCE_ADDRESS: &str = keys::SOURCE_ADDRESS;
pub const SOURCE_PORT: &str = "source.port";
pub const DESTINATION_ADDRESS: &str = keys::DESTINATION_ADDRESS;
pub const DESTINATION_PORT: &str = "destination.port";
pub const STACKTRACE: &str = "code.stacktrace";
pub const NETWORK_IO_DIRECTION: &str = "network.io.direction";

/// KubeSkoop's tuple labels, in KubeSkoop's order, then any a metric adds; the peers'
/// identity comes from the k8s_attributes processor's IP identity cache.
macro_rules! tuple_labels {
    ($($extra:expr),*) => {
        &[
            (NETWORK_TRANSPORT, "protocol"),
            (SOURCE_ADDRESS, "src"),
            (keys::SOURCE_TYPE, "src_type"),
            (keys::SOURCE_NODE, "src_node"),
            (keys::SOURCE_NAMESPACE, "src_namespace"),
            (keys::SOURCE_POD, "src_pod"),
            (DESTINATION_ADDRESS, "dst"),
            (keys::DESTINATION_TYPE, "dst_type"),
            (keys::DESTINATION_NODE, "dst_node"),
            (keys::DESTINATION_NAMESPACE, "dst_namespace"),
            (keys::DESTINATION_POD, "dst_pod"),
            (SOURCE_PORT, "sport"),
            (DESTINATION_PORT, "dport"),
            $($extra),*
        ]
    };
}

const TUPLE_LABELS: &[(&str, &str)] = tuple_labels!();

/// The flow series: KubeSkoop's tuple labels, then the direction (KubeSkoop adds both
/// directions into one series; podnet keeps them apart).
const FLOW_LABELS: &[(&str, &str)] = tuple_labels!((NETWORK_IO_DIRECTION, "direction"));

pub const FLOW_BYTES: MetricDef = MetricDef {
    kubeskoop: Some(KubeskoopName::Relabeled { name: "kubeskoop_flow_bytes", labels: FLOW_LABELS }),
    ..MetricDef::counter(
        "podnet.flow.bytes",
        "IP bytes per flow and direction (transmit: sent by the namespace or the NIC), from the IP header on (bounded flow table).",
        "By",
    )
};
pub const FLOW_PACKETS: MetricDef = MetricDef {
    kubeskoop: Some(KubeskoopName::Relabeled { name: "kubeskoop_flow_packets", labels: FLOW_LABELS }),
    ..MetricDef::counter(
        "podnet.flow.packets",
        "IP packets per flow and direction; a GSO/GRO packet counts as its segments (bounded flow table).",
        "{packet}",
    )
};

pub const DROPS: MetricDef = MetricDef::counter(
    "podnet.packet.drops",
    "IP packets the kernel dropped in the namespace, by drop reason as this kernel names it.",
    "{packet}",
);
pub const DROP_FLOWS: MetricDef = MetricDef {
    kubeskoop: Some(KubeskoopName::Relabeled { name: "kubeskoop_packetloss_total", labels: TUPLE_LABELS }),
    ..MetricDef::counter("podnet.packet.drops.flow", "IP packets dropped, by protocol and addresses (bounded flow table).", "{packet}")
};
pub const DROP_FLOWS_NETFILTER: MetricDef = MetricDef {
    kubeskoop: Some(KubeskoopName::Relabeled { name: "kubeskoop_packetloss_netfilter", labels: TUPLE_LABELS }),
    ..MetricDef::counter(
        "podnet.packet.drops.flow.netfilter",
        "IP packets netfilter (iptables, nftables) dropped, by protocol and addresses (bounded flow table).",
        "{packet}",
    )
};
pub const RESETS: MetricDef = MetricDef::counter(
    "podnet.tcp.resets",
    "TCP resets sent (kind nosock, active, process) and received (kind receive) in the namespace, by reset reason.",
    "{reset}",
);
pub const RETRANSMITS: MetricDef =
    MetricDef::counter("podnet.tcp.retransmits", "TCP segments retransmitted in the namespace, by the socket's TCP state.", "{segment}");
pub const RETRANSMIT_FLOWS: MetricDef = MetricDef {
    kubeskoop: Some(KubeskoopName::Relabeled { name: "kubeskoop_tcpretrans_total", labels: TUPLE_LABELS }),
    ..MetricDef::counter("podnet.tcp.retransmits.flow", "TCP segments retransmitted, by connection (bounded flow table).", "{segment}")
};

/// One data point, before it is placed under its namespace's resource.
#[derive(Clone, Debug)]
pub struct Row {
    pub netns: u32,
    pub def: &'static MetricDef,
    pub attrs: RowAttrs,
    pub value: RowValue,
}

/// A row's attributes. A flow's stay its 44-byte key until the row joins a batch: the
/// flow tables hold ~10,000 flows each at 100 pods, and their attributes built up front
/// (address strings, one allocation per key and value) were a collection's largest memory,
/// held whole while the batch was sent in parts.
#[derive(Clone, Debug)]
pub enum RowAttrs {
    Built(Vec<KeyValue>),
    Tuple { key: FlowKey, ports: bool, direction: Option<&'static str> },
}

impl RowAttrs {
    pub fn into_vec(self) -> Vec<KeyValue> {
        match self {
            RowAttrs::Built(v) => v,
            RowAttrs::Tuple { key, ports, direction } => {
                let mut attrs = tuple_attrs(&key, ports);
                if let Some(d) = direction {
                    attrs.push(kv_str(NETWORK_IO_DIRECTION, d));
                }
                attrs
            }
        }
    }
}

impl From<Vec<KeyValue>> for RowAttrs {
    fn from(v: Vec<KeyValue>) -> Self {
        RowAttrs::Built(v)
    }
}

fn tuple(key: &FlowKey, ports: bool) -> RowAttrs {
    RowAttrs::Tuple { key: *key, ports, direction: None }
}

#[derive(Clone, Debug)]
pub enum RowValue {
    Count(u64),
    Histogram(Log2Histogram),
    /// The series ended: its flow left the kernel's table.
    Ended,
}

fn count(netns: u32, def: &'static MetricDef, attrs: impl Into<RowAttrs>, value: u64) -> Row {
    Row { netns, def, attrs: attrs.into(), value: RowValue::Count(value) }
}

/// The end of a flow's series, one row per metric the flow feeds.
fn push_ended(rows: &mut Vec<Row>, netns: u32, defs: &[&'static MetricDef], attrs: RowAttrs) {
    for def in defs {
        rows.push(Row { netns, def, attrs: attrs.clone(), value: RowValue::Ended });
    }
}

/// Reason names from the kernel's BTF.
#[derive(Clone, Debug, Default)]
pub struct Reasons {
    pub drop: ReasonNames,
    /// `None` on kernels that give resets no reason (before 6.10).
    pub reset: Option<ReasonNames>,
}

fn tuple_attrs(k: &FlowKey, ports: bool) -> Vec<KeyValue> {
    let addr = |a: &[u8; 16]| abi::ip(k.family, a).map(|ip| ip.to_string()).unwrap_or_default();
    // No `network.type`: the addresses say it, and KubeSkoop's series have no such label.
    let mut attrs = vec![
        kv_str(NETWORK_TRANSPORT, podnet_pipeline::pdata::network_transport(k.l4proto)),
        kv_str(SOURCE_ADDRESS, addr(&k.saddr)),
        kv_str(DESTINATION_ADDRESS, addr(&k.daddr)),
    ];
    if ports {
        attrs.push(kv_int(SOURCE_PORT, i64::from(k.sport)));
        attrs.push(kv_int(DESTINATION_PORT, i64::from(k.dport)));
    }
    attrs
}

/// Reads a per-CPU hash of counters, summed over CPUs.
fn per_cpu<K: aya::Pod + Eq + std::hash::Hash>(probe: &LoadedProbe, map: &str) -> Result<Vec<(K, u64)>, String> {
    per_cpu_with(probe, map, |values: &[u64]| values.iter().sum())
}

/// Reads a per-CPU hash, each entry's CPU values combined by `combine`.
pub fn per_cpu_with<K: aya::Pod + Eq + std::hash::Hash, V: aya::Pod, T>(
    probe: &LoadedProbe,
    map: &str,
    combine: impl Fn(&[V]) -> T,
) -> Result<Vec<(K, T)>, String> {
    let m = probe.ebpf.map(map).ok_or_else(|| format!("{}: map {map} missing", probe.name))?;
    // Checks the key and value sizes against the map's.
    let h: PerCpuHashMap<&MapData, K, V> = PerCpuHashMap::try_from(m).map_err(|e| format!("{}: map {map}: {e}", probe.name))?;
    let mut cpu_values: Vec<V> = Vec::new();
    let batched = crate::batch::read::<K, V, _>(m, |k, bytes| {
        cpu_values.clear();
        cpu_values.extend(crate::batch::values::<V>(bytes));
        (k, combine(&cpu_values))
    });
    match batched {
        Ok(Some(out)) => return Ok(out),
        Ok(None) => {}
        Err(e) => return Err(format!("{}: map {map}: {e}", probe.name)),
    }
    let mut out = Vec::new();
    for item in h.iter() {
        match item {
            Ok((k, values)) => out.push((k, combine(&values))),
            // An entry deleted between key and lookup: gone, not an error.
            Err(aya::maps::MapError::KeyNotFound) => continue,
            Err(e) => return Err(format!("{}: map {map}: {e}", probe.name)),
        }
    }
    Ok(out)
}

fn shared<K: aya::Pod + Eq + std::hash::Hash, V: aya::Pod>(probe: &LoadedProbe, map: &str) -> Result<Vec<(K, V)>, String> {
    let m = probe.ebpf.map(map).ok_or_else(|| format!("{}: map {map} missing", probe.name))?;
    // Checks the key and value sizes against the map's.
    let h: BpfHashMap<&MapData, K, V> = BpfHashMap::try_from(m).map_err(|e| format!("{}: map {map}: {e}", probe.name))?;
    match crate::batch::read::<K, V, _>(m, |k, bytes| (k, crate::batch::values::<V>(bytes).next())) {
        Ok(Some(out)) => return Ok(out.into_iter().filter_map(|(k, v)| Some((k, v?))).collect()),
        Ok(None) => {}
        Err(e) => return Err(format!("{}: map {map}: {e}", probe.name)),
    }
    let mut out = Vec::new();
    for item in h.iter() {
        match item {
            Ok(kv) => out.push(kv),
            Err(aya::maps::MapError::KeyNotFound) => continue,
            Err(e) => return Err(format!("{}: map {map}: {e}", probe.name)),
        }
    }
    Ok(out)
}

/// The kernel counts flows it adds; what was added and is neither present nor pruned by
/// us was evicted by the LRU to make room. The flows read last time tell which series
/// ended since, so exporters drop them now instead of holding up to `max_flows` dead
/// series per collection until their expiration.
#[derive(Default)]
pub struct FlowTable {
    pruned: u64,
    pub evicted: u64,
    last: HashSet<FlowKey>,
}

impl FlowTable {
    fn observe(&mut self, added: u64, present: usize) {
        self.evicted = added.saturating_sub(present as u64).saturating_sub(self.pruned);
    }

    /// Records this collection's flows; returns last collection's that are gone.
    fn ended<'a>(&mut self, now: impl Iterator<Item = &'a FlowKey>) -> Vec<FlowKey> {
        let now: HashSet<FlowKey> = now.copied().collect();
        let gone = self.last.iter().filter(|k| !now.contains(k)).copied().collect();
        self.last = now;
        gone
    }
    fn pruned(&mut self, n: usize) {
        self.pruned += n as u64;
    }
}

/// Reads one probe's maps into rows.
pub fn read(kind: ProbeKind, probe: &LoadedProbe, reasons: &Reasons, flows: &mut FlowTable) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    match kind {
        ProbeKind::Packetloss => {
            for (k, v) in per_cpu::<DropKey>(probe, "drops")? {
                rows.push(count(k.netns, &DROPS, vec![kv_str(DROP_REASON, reasons.drop.name(k.reason))], v));
            }
            let list = shared::<FlowKey, FlowDrops>(probe, "drop_flows")?;
            flows.observe(probe.stat(abi::stat::FLOWS_NEW), list.len());
            for k in flows.ended(list.iter().map(|(k, _)| k)) {
                push_ended(&mut rows, k.netns, &[&DROP_FLOWS, &DROP_FLOWS_NETFILTER], tuple(&k, false));
            }
            for (k, v) in list {
                rows.push(count(k.netns, &DROP_FLOWS, tuple(&k, false), v.total));
                rows.push(count(k.netns, &DROP_FLOWS_NETFILTER, tuple(&k, false), v.netfilter));
            }
        }
        ProbeKind::Tcpreset => {
            for (k, v) in per_cpu::<ResetKey>(probe, "resets")? {
                let Some(ev) = abi::EventKind::from_raw(u32::from(k.kind)) else { continue };
                let mut attrs = vec![kv_str(RESET_KIND, ev.reset_kind())];
                if let Some(names) = reasons.reset.as_ref().filter(|_| ev != abi::EventKind::ResetReceive) {
                    attrs.push(kv_str(RESET_REASON, names.name(u32::from(k.reason))));
                }
                rows.push(count(k.netns, &RESETS, attrs, v));
            }
        }
        ProbeKind::Tcpretrans => {
            for (k, v) in per_cpu::<StateKey>(probe, "retrans")? {
                let state = abi::tcp_state(k.state as u8);
                rows.push(count(k.netns, &RETRANSMITS, vec![kv_str(keys::NETWORK_CONNECTION_STATE, state)], v));
            }
            let list = shared::<FlowKey, u64>(probe, "retrans_flows")?;
            flows.observe(probe.stat(abi::stat::FLOWS_NEW), list.len());
            for k in flows.ended(list.iter().map(|(k, _)| k)) {
                push_ended(&mut rows, k.netns, &[&RETRANSMIT_FLOWS], tuple(&k, true));
            }
            for (k, v) in list {
                rows.push(count(k.netns, &RETRANSMIT_FLOWS, tuple(&k, true), v));
            }
        }
        ProbeKind::Flow => return Err(format!("{}: read it with read_flows", probe.name)),
        _ => return Err(format!("{}: a latency probe: read it with read_latency", probe.name)),
    }
    Ok(rows)
}

/// Reads the flow probe's table, each flow's per-CPU counts summed. `ports`: the table
/// keeps ports (a port aggregated away reads 0).
pub fn read_flows(probe: &LoadedProbe, ports: bool, flows: &mut FlowTable) -> Result<Vec<Row>, String> {
    let list = per_cpu_with::<FlowKey, abi::FlowValue, abi::FlowValue>(probe, "flows", |values| {
        values.iter().fold(abi::FlowValue::default(), |a, v| abi::FlowValue {
            packets: a.packets.wrapping_add(v.packets),
            bytes: a.bytes.wrapping_add(v.bytes),
        })
    })?;
    flows.observe(probe.stat(abi::stat::FLOWS_NEW), list.len());
    let attrs = |k: &FlowKey| {
        let direction = match k.direction {
            abi::FLOW_TX => "transmit",
            abi::FLOW_RX => "receive",
            _ => return None,
        };
        Some(RowAttrs::Tuple { key: *k, ports, direction: Some(direction) })
    };
    let mut rows = Vec::with_capacity(list.len() * 2);
    for k in flows.ended(list.iter().map(|(k, _)| k)) {
        let Some(a) = attrs(&k) else { continue };
        push_ended(&mut rows, k.netns, &[&FLOW_PACKETS, &FLOW_BYTES], a);
    }
    for (k, v) in list {
        let Some(a) = attrs(&k) else { continue };
        rows.push(count(k.netns, &FLOW_PACKETS, a.clone(), v.packets));
        rows.push(count(k.netns, &FLOW_BYTES, a, v.bytes));
    }
    Ok(rows)
}

/// Reads a latency probe's histograms: per series a histogram and its two threshold
/// counts. softirq and virtcmdlatency series exist from the start, at zero, as KubeSkoop's do.
pub fn read_latency(kind: ProbeKind, probe: &LoadedProbe, settings: &LatencySettings, disks: &mut DiskNames) -> Result<Vec<Row>, String> {
    let Some(lk) = kind.latency() else { return Err(format!("{}: not a latency probe", probe.name)) };
    let mut series = latency::read_series(probe, lk.fixed_dims)?;
    let mut seed = |stage: u32, dim: u32| {
        if !series.iter().any(|s| s.key.stage == stage && s.key.dim == dim && s.key.netns == 0) {
            series.push(latency::LatSeries { key: abi::LatKey { netns: 0, stage, dim }, hist: abi::LatHist::default() });
        }
    };
    match kind {
        ProbeKind::Softirq => {
            for vec in &settings.softirq_types {
                seed(0, *vec);
                seed(1, *vec);
            }
        }
        ProbeKind::Virtcmdlatency => seed(0, 0),
        _ => {}
    }
    let names = if kind == ProbeKind::Netiftxlat { latency::dim_names(probe) } else { HashMap::new() };
    let labels = settings.thresholds.map(latency::threshold_label);
    let mut rows = Vec::with_capacity(series.len() * 3);
    for s in &series {
        let Some((hist_def, slow_def)) = lk.stages.get(s.key.stage as usize) else { continue };
        let attrs = latency::dim_attrs(kind, s, &names, disks);
        rows.push(Row { netns: s.key.netns, def: hist_def, attrs: attrs.clone().into(), value: RowValue::Histogram(s.histogram()) });
        for (label, n) in labels.iter().zip([s.hist.over_low, s.hist.over_high]) {
            let mut a = attrs.clone();
            a.push(kv_str(latency::THRESHOLD, label.clone()));
            rows.push(count(s.key.netns, slow_def, a, n));
        }
    }
    Ok(rows)
}

/// A latency probe's start timestamps: (completed, reclaimed by the LRU, in flight).
pub fn latency_starts(kind: ProbeKind, probe: &LoadedProbe) -> (u64, u64, u64) {
    let Some(lk) = kind.latency() else { return (0, 0, 0) };
    let present: u64 = lk.start_maps.iter().map(|m| latency::present(probe, m)).sum();
    let completed = probe.stat(abi::stat::COMPLETED);
    (completed, latency::reclaimed(probe.stat(abi::stat::STARTED), completed, present), present)
}

/// Deletes the entries of namespaces that are gone, so the kernel maps do not fill up
/// with the dead.
pub fn prune(kind: ProbeKind, probe: &mut LoadedProbe, flows: &mut FlowTable, dead: &HashSet<u32>) {
    if dead.is_empty() {
        return;
    }
    fn remove_per_cpu<K: aya::Pod + Eq + std::hash::Hash>(probe: &mut LoadedProbe, map: &str, dead: &HashSet<u32>, netns: fn(&K) -> u32) {
        let Some(m) = probe.ebpf.map_mut(map) else { return };
        let Ok(mut h) = PerCpuHashMap::<&mut MapData, K, u64>::try_from(m) else { return };
        let doomed: Vec<K> = h.keys().filter_map(Result::ok).filter(|k| dead.contains(&netns(k))).collect();
        for k in doomed {
            let _ = h.remove(&k);
        }
    }
    fn remove_per_cpu_flows(probe: &mut LoadedProbe, map: &str, dead: &HashSet<u32>) -> usize {
        let Some(m) = probe.ebpf.map_mut(map) else { return 0 };
        let Ok(mut h) = PerCpuHashMap::<&mut MapData, FlowKey, abi::FlowValue>::try_from(m) else { return 0 };
        let doomed: Vec<FlowKey> = h.keys().filter_map(Result::ok).filter(|k| dead.contains(&k.netns)).collect();
        doomed.iter().filter(|k| h.remove(k).is_ok()).count()
    }
    fn remove_flows<V: aya::Pod>(probe: &mut LoadedProbe, map: &str, dead: &HashSet<u32>) -> usize {
        let Some(m) = probe.ebpf.map_mut(map) else { return 0 };
        let Ok(mut h) = BpfHashMap::<&mut MapData, FlowKey, V>::try_from(m) else { return 0 };
        let doomed: Vec<FlowKey> = h.keys().filter_map(Result::ok).filter(|k| dead.contains(&k.netns)).collect();
        doomed.iter().filter(|k| h.remove(k).is_ok()).count()
    }
    match kind {
        ProbeKind::Packetloss => {
            remove_per_cpu::<DropKey>(probe, "drops", dead, |k| k.netns);
            let n = remove_flows::<FlowDrops>(probe, "drop_flows", dead);
            flows.pruned(n);
        }
        ProbeKind::Tcpreset => remove_per_cpu::<ResetKey>(probe, "resets", dead, |k| k.netns),
        ProbeKind::Tcpretrans => {
            remove_per_cpu::<StateKey>(probe, "retrans", dead, |k| k.netns);
            let n = remove_flows::<u64>(probe, "retrans_flows", dead);
            flows.pruned(n);
        }
        ProbeKind::Flow => {
            let n = remove_per_cpu_flows(probe, "flows", dead);
            flows.pruned(n);
        }
        _ => {
            let Some(m) = probe.ebpf.map_mut("latency") else { return };
            let Ok(mut h) = PerCpuHashMap::<&mut MapData, abi::LatKey, abi::LatHist>::try_from(m) else { return };
            let doomed: Vec<abi::LatKey> = h.keys().filter_map(Result::ok).filter(|k| dead.contains(&k.netns)).collect();
            for k in doomed {
                let _ = h.remove(&k);
            }
        }
    }
}

/// Namespaces seen in the maps but not on the node for `rounds` collections in a row.
#[derive(Default)]
pub struct Graveyard {
    missing: HashMap<u32, u32>,
}

impl Graveyard {
    /// Returns the namespaces to prune now.
    pub fn update(&mut self, in_maps: &HashSet<u32>, alive: &dyn Fn(u32) -> bool, rounds: u32) -> HashSet<u32> {
        self.missing.retain(|ns, _| in_maps.contains(ns));
        let mut dead = HashSet::new();
        for &ns in in_maps {
            if ns == 0 || alive(ns) {
                self.missing.remove(&ns);
                continue;
            }
            let n = self.missing.entry(ns).or_insert(0);
            *n += 1;
            if *n >= rounds {
                dead.insert(ns);
            }
        }
        for ns in &dead {
            self.missing.remove(ns);
        }
        dead
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graveyard_waits_before_pruning() {
        let mut g = Graveyard::default();
        let maps: HashSet<u32> = [1, 2, 0].into();
        let alive = |ns: u32| ns == 1;
        assert!(g.update(&maps, &alive, 2).is_empty(), "one missed round is not death");
        assert_eq!(g.update(&maps, &alive, 2), [2].into());
        assert!(g.update(&[1].into(), &alive, 2).is_empty());
    }

    #[test]
    fn flow_table_counts_evictions_not_pruned_flows() {
        let mut t = FlowTable::default();
        t.observe(3, 3);
        assert_eq!(t.evicted, 0);
        t.pruned(1);
        t.observe(6, 3);
        assert_eq!(t.evicted, 2, "6 added, 3 present, 1 pruned by us");
    }

    #[test]
    fn flow_table_tells_which_flows_ended() {
        let key = |sport| FlowKey { netns: 1, family: 2, l4proto: 17, direction: 1, sport, dport: 53, saddr: [0; 16], daddr: [0; 16] };
        let mut t = FlowTable::default();
        assert!(t.ended([key(1), key(2)].iter()).is_empty());
        assert_eq!(t.ended([key(2), key(3)].iter()), vec![key(1)]);
        assert_eq!(t.ended([].iter()).len(), 2);
    }

    #[test]
    fn tuple_attributes() {
        let mut saddr = [0u8; 16];
        saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        let k = FlowKey { netns: 1, family: 2, l4proto: 17, direction: 0, sport: 5000, dport: 53, saddr, daddr: [0; 16] };
        let a = tuple_attrs(&k, true);
        assert_eq!(podnet_pipeline::pdata::attr_string(&a, NETWORK_TRANSPORT).as_deref(), Some("udp"));
        assert_eq!(podnet_pipeline::pdata::attr_string(&a, SOURCE_ADDRESS).as_deref(), Some("10.0.0.1"));
        assert_eq!(podnet_pipeline::pdata::attr_string(&a, SOURCE_PORT).as_deref(), Some("5000"));
        assert_eq!(tuple_attrs(&k, false).len(), 3);
    }
}
