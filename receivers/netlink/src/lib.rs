//! Receiver `netlink`: per-namespace socket summaries (NETLINK_SOCK_DIAG), queueing
//! discipline statistics (rtnetlink) and connection tracking statistics (ctnetlink), read
//! inside every network namespace on the node.

pub mod conntrack;
pub mod ctevents;
pub mod dump;
mod enter;
pub mod qdisc;
pub mod socktable;
pub mod tcpsummary;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use podnet_netns::{Namespace, NamespaceSource, Namespaces};
use podnet_pipeline::Host;
use podnet_pipeline::component::{
    BoxFuture, BuildError, ComponentContext, Factory, FactoryInfo, Kind, Overhead, ProbeInfo, Receiver, ReceiverFactory, Stability,
};
use podnet_pipeline::config::ConfigDuration;
use podnet_pipeline::cumulative::{CumulativeTracker, PointWriter, SeriesKey};
use podnet_pipeline::fanout::Outputs;
use podnet_pipeline::pdata::{KubeskoopName, MetricDef, MetricKind, MetricsBuilder, Signal, keys, kv_str, now_unix_nanos};
use podnet_pipeline::scrape::{Collection, CollectionError, Scraper, run_scraper};
use regex::Regex;
use serde::{Deserialize, Serialize};

pub use conntrack::ConntrackStats;

/// The requests whose replies the golden fixtures hold: (file, protocol, request).
pub fn fixture_requests() -> Vec<(&'static str, isize, Vec<u8>)> {
    let mut v = tcpsummary::fixture_requests();
    v.extend(qdisc::fixture_requests());
    v.extend(conntrack::fixture_requests());
    v
}
pub use enter::{EnterError, for_each_namespace};

/// One namespace's answer to one probe.
#[derive(Debug)]
pub enum Reading {
    Tcp(tcpsummary::TcpSummary),
    Conntrack(ConntrackStats),
    Qdiscs(Vec<qdisc::QdiscStats>),
}

/// Every netlink probe, one entry each: what users configure, where it reads, what it
/// costs, the request made inside each namespace, how its answer becomes points, and which
/// errors mean the kernel cannot serve it. Adding a probe is adding an entry.
pub struct ProbeSpec {
    pub info: ProbeInfo,
    /// Runs in the calling thread's namespace (entered by `for_each_namespace`).
    pub read: fn(&ReadContext<'_>) -> Result<Reading, String>,
    pub emit: fn(&Reading, &Emitting<'_>, &mut PointWriter),
    /// The reason to report when this error (from the host namespace) means the kernel
    /// lacks the probe's support; the probe is then not asked again.
    pub unsupported: fn(&str) -> Option<String>,
}

/// What reading one namespace needs.
pub struct ReadContext<'a> {
    /// How long one netlink request may wait for the kernel.
    pub timeout: Duration,
    /// This namespace's sockets from the node's one-pass socket walk, when it ran; `None`
    /// dumps the namespace with sock_diag.
    pub sockets: Option<&'a socktable::NamespaceSockets>,
}

/// What emitting needs beyond the reading.
pub struct Emitting<'a> {
    /// Devices whose root qdiscs make up the namespace totals.
    pub qdisc_devices: &'a Regex,
    /// The node's own namespace: its orphan, allocated and memory figures are the kernel's
    /// node-wide sockstat values (the procfs `sock` probe), not counted here.
    pub is_host: bool,
}

fn always_supported(_: &str) -> Option<String> {
    None
}

pub const PROBES: &[ProbeSpec] = &[
    ProbeSpec {
        info: ProbeInfo {
            name: "tcpsummary",
            data_source: "one BPF iterator pass over the node's socket files with each namespace's sockstat; NETLINK_SOCK_DIAG dump per namespace where those do not account for every socket",
            overhead: Overhead::Medium,
        },
        read: |ctx| read_tcp(ctx).map(Reading::Tcp),
        emit: emit_tcp,
        unsupported: always_supported,
    },
    ProbeSpec {
        info: ProbeInfo { name: "conntrack", data_source: "ctnetlink statistics per namespace", overhead: Overhead::Low },
        read: |ctx| conntrack::collect(ctx.timeout).map(Reading::Conntrack).map_err(|e| e.to_string()),
        emit: emit_conntrack,
        unsupported: |e| {
            (e.contains("Protocol not supported") || e.contains("No such file") || e.contains("Operation not supported"))
                .then(|| format!("{e} (load nf_conntrack and nf_conntrack_netlink)"))
        },
    },
    ProbeSpec {
        info: ProbeInfo { name: "qdisc", data_source: "rtnetlink RTM_GETQDISC per namespace", overhead: Overhead::Low },
        read: |ctx| qdisc::collect(ctx.timeout).map(Reading::Qdiscs).map_err(|e| e.to_string()),
        emit: emit_qdiscs,
        unsupported: always_supported,
    },
];

/// The namespace's TCP summary from the one-pass walk where it accounts for every socket,
/// from a sock_diag dump otherwise.
fn read_tcp(ctx: &ReadContext<'_>) -> Result<tcpsummary::TcpSummary, String> {
    if let Some(found) = ctx.sockets {
        let stat = socktable::SockStat::read_current()?;
        if let Some(summary) = found.summary(&stat) {
            return Ok(summary);
        }
        tracing::debug!(with_files = ?found.hashed, in_use = ?stat.inuse, "tcpsummary: sockets without a file in this namespace; dumping it with sock_diag");
    }
    tcpsummary::collect(ctx.timeout).map(|s| tcpsummary::summarize(&s)).map_err(|e| e.to_string())
}

podnet_pipeline::probe_table!(
    /// The netlink table, for [`podnet_pipeline::probe::Probe`].
    Netlink,
    ProbeSpec,
    PROBES,
    PROBE_INFOS
);

/// A netlink probe by name.
pub type Probe = podnet_pipeline::probe::Probe<Netlink>;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetlinkConfig {
    pub collection_interval: ConfigDuration,
    pub root_path: PathBuf,
    pub namespaces: Namespaces,
    pub netns_extension: String,
    pub names_path: PathBuf,
    pub probes: Vec<Probe>,
    /// How long one netlink request may wait for the kernel in one namespace.
    pub timeout: ConfigDuration,
    pub qdisc: QdiscOptions,
    pub tcpsummary: TcpSummaryOptions,
    /// Event probes (log records), off unless named.
    pub events: EventProbes,
}

/// `events: { conntrack: }` turns the conntrack event probe on with its defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventProbes {
    #[serde(deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub conntrack: Option<ctevents::ConntrackEventsConfig>,
}

/// A key that is present turns its probe on, even with no settings under it.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<Option<T>, D::Error> {
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QdiscOptions {
    /// Devices whose root qdiscs make up a namespace's `kubeskoop_qdisc_*` totals (a regular
    /// expression matching the whole name; KubeSkoop counts `eth*`). Every device still gets
    /// its own `podnet.qdisc.device.*` series.
    pub devices: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpSummaryOptions {
    pub source: SocketSource,
}

/// Where tcpsummary finds the sockets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SocketSource {
    /// `bpf_iter` where the kernel can run it (BTF, BPF iterators, CAP_BPF), else `sock_diag`.
    #[default]
    Auto,
    /// One pass over the node's socket files (cost grows with open files, not namespaces ×
    /// sockets); a namespace it cannot account for is dumped with sock_diag.
    BpfIter,
    /// A sock_diag dump in every namespace, each walking the kernel's whole TCP hash.
    SockDiag,
}

impl Default for QdiscOptions {
    fn default() -> Self {
        QdiscOptions { devices: "eth.*".into() }
    }
}

impl Default for NetlinkConfig {
    fn default() -> Self {
        NetlinkConfig {
            collection_interval: ConfigDuration::from_secs(15),
            root_path: "/proc".into(),
            namespaces: Namespaces::All,
            netns_extension: "netns".into(),
            names_path: "/run/netns".into(),
            probes: Probe::all(),
            timeout: ConfigDuration::from_secs(2),
            qdisc: QdiscOptions::default(),
            tcpsummary: TcpSummaryOptions::default(),
            events: EventProbes::default(),
        }
    }
}

pub struct NetlinkReceiverFactory;

fn device_regex(pattern: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| format!("qdisc::devices: invalid regular expression \"{pattern}\": {e}"))
}

impl Factory for NetlinkReceiverFactory {
    type Config = NetlinkConfig;
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "netlink",
            aliases: &[],
            kind: Kind::Receiver,
            signals: &[Signal::Metrics, Signal::Logs],
            stability: Stability::Alpha,
            description: "Socket states, qdisc and conntrack statistics from netlink in every network namespace; conntrack events",
            probes: &PROBE_INFOS,
        }
    }
    fn validate(&self, c: &NetlinkConfig) -> Result<(), String> {
        if c.collection_interval.0.is_zero() || c.timeout.0.is_zero() {
            return Err("collection_interval and timeout must be greater than zero".into());
        }
        if c.probes.is_empty() {
            return Err(format!("probes must name at least one probe (valid probes: {})", Probe::names().join(", ")));
        }
        device_regex(&c.qdisc.devices)?;
        if let Some(ct) = &c.events.conntrack {
            if ct.types.is_empty() {
                return Err("events::conntrack::types must name new, update or destroy".into());
            }
            if ct.events_per_second == 0 {
                return Err("events::conntrack::events_per_second must be greater than zero".into());
            }
        }
        Ok(())
    }
}

impl ReceiverFactory for NetlinkReceiverFactory {
    fn create(&self, config: &NetlinkConfig, ctx: ComponentContext) -> Result<Box<dyn Receiver>, BuildError> {
        let scraper = NetlinkScraper::new(config.clone(), ctx.host.node.name.clone(), ctx.id.to_string())
            .map_err(BuildError::new)?
            .with_host(ctx.host.clone());
        Ok(Box::new(NetlinkReceiver { config: config.clone(), scraper, ctx }))
    }
}

struct NetlinkReceiver {
    config: NetlinkConfig,
    scraper: NetlinkScraper,
    ctx: ComponentContext,
}

impl Receiver for NetlinkReceiver {
    fn run(self: Box<Self>, outputs: Outputs) -> BoxFuture {
        let NetlinkReceiver { config, scraper, ctx } = *self;
        Box::pin(async move {
            let events = config.events.conntrack.clone().map(|ct| {
                let source = NamespaceSource::new(
                    config.namespaces,
                    config.root_path.clone(),
                    config.names_path.clone(),
                    config.netns_extension.clone(),
                    Some(ctx.host.clone()),
                );
                tokio::spawn(ctevents::run(ct, source, config.collection_interval.0, ctx.clone(), outputs.clone()))
            });
            run_scraper(scraper, config.collection_interval.0, ctx, outputs).await;
            if let Some(events) = events {
                let _ = events.await;
            }
        })
    }
}

// --- metric definitions ---------------------------------------------------------------------

pub const CONNECTIONS: MetricDef = MetricDef {
    name: "system.network.connection.count",
    description: "TCP sockets of the namespace by state (IPv4 and IPv6).",
    unit: "{connection}",
    kind: MetricKind::UpDownCounter,
    kubeskoop: Some(KubeskoopName::SplitBy {
        attribute: keys::NETWORK_CONNECTION_STATE,
        names: &[
            ("established", "kubeskoop_tcpsummary_tcpestablishedconn"),
            ("time_wait", "kubeskoop_tcpsummary_tcptimewaitconn"),
            ("close_wait", "kubeskoop_tcpsummary_tcpclosewaitconn"),
            ("syn_sent", "kubeskoop_tcpsummary_tcpsynsentconn"),
            ("syn_received", "kubeskoop_tcpsummary_tcpsynrecvconn"),
        ],
    }),
};
pub const QUEUE: MetricDef = MetricDef {
    name: "podnet.tcp.queue.size",
    description: "Bytes in the receive (unread) and send (unacknowledged) queues of the namespace's TCP connections.",
    unit: "By",
    kind: MetricKind::Gauge,
    kubeskoop: Some(KubeskoopName::SplitBy {
        attribute: keys::NETWORK_IO_DIRECTION,
        names: &[("receive", "kubeskoop_tcpsummary_tcprxqueue"), ("transmit", "kubeskoop_tcpsummary_tcptxqueue")],
    }),
};
pub const LISTEN_PENDING: MetricDef = MetricDef::gauge(
    "podnet.tcp.listen.pending",
    "Connections waiting to be accepted, over the namespace's listening sockets.",
    "{connection}",
);
pub const LISTEN_LIMIT: MetricDef =
    MetricDef::gauge("podnet.tcp.listen.limit", "Backlog limits of the namespace's listening sockets, summed.", "{connection}");
pub const LISTEN_MAX_FILL: MetricDef =
    MetricDef::gauge("podnet.tcp.listen.max_fill", "Fill ratio of the fullest listening socket's accept queue (pending / backlog).", "1");

/// KubeSkoop's `sock` orphan/alloc/mem per pod: the kernel keeps these node-wide only (its
/// sockstat shows the same global values in every namespace, so KubeSkoop's per-pod series
/// are empty), so they are counted from this namespace's socket walk; the node's series stay
/// sockstat's (procfs `sock`).
pub const NS_ORPHANS: MetricDef = MetricDef::gauge(
    "podnet.tcp.orphans",
    "TCP sockets of the namespace that no process holds any more and that are still closing (from the socket walk).",
    "{socket}",
)
.kubeskoop("kubeskoop_sock_orphan");
pub const NS_ALLOCATED: MetricDef = MetricDef::gauge(
    "podnet.tcp.sockets.allocated",
    "Full TCP sockets of the namespace (all but TIME_WAIT and pending connection requests), from the socket walk.",
    "{socket}",
)
.kubeskoop("kubeskoop_sock_alloc");
pub const NS_MEMORY: MetricDef = MetricDef::gauge(
    "podnet.tcp.memory",
    "Memory the namespace's TCP sockets hold (received and unsent data and reserves), in pages, from the socket walk.",
    "{page}",
)
.kubeskoop("kubeskoop_sock_mem");

pub const CONNTRACK_COUNTERS: &[(&str, MetricDef)] = &[
    (
        "found",
        MetricDef::counter("podnet.conntrack.found", "Conntrack lookups that found an entry.", "{event}")
            .kubeskoop("kubeskoop_conntrack_found"),
    ),
    (
        "invalid",
        MetricDef::counter("podnet.conntrack.invalid", "Packets conntrack could not track (invalid).", "{packet}")
            .kubeskoop("kubeskoop_conntrack_invalid"),
    ),
    (
        "ignore",
        MetricDef::counter("podnet.conntrack.ignore", "Packets conntrack ignored (already tracked or untracked).", "{packet}")
            .kubeskoop("kubeskoop_conntrack_ignore"),
    ),
    ("insert", MetricDef::counter("podnet.conntrack.insert", "Entries inserted.", "{entry}").kubeskoop("kubeskoop_conntrack_insert")),
    (
        "insert_failed",
        MetricDef::counter("podnet.conntrack.insert_failed", "Entries that could not be inserted (a race or a full table).", "{entry}")
            .kubeskoop("kubeskoop_conntrack_insertfailed"),
    ),
    (
        "drop",
        MetricDef::counter("podnet.conntrack.drop", "Packets dropped because conntrack failed.", "{packet}")
            .kubeskoop("kubeskoop_conntrack_drop"),
    ),
    (
        "early_drop",
        MetricDef::counter("podnet.conntrack.early_drop", "Entries dropped early to make room in a full table.", "{entry}")
            .kubeskoop("kubeskoop_conntrack_earlydrop"),
    ),
    (
        "error",
        MetricDef::counter("podnet.conntrack.error", "Packets with conntrack errors (ICMP errors that matched nothing).", "{packet}")
            .kubeskoop("kubeskoop_conntrack_error"),
    ),
    (
        "search_restart",
        MetricDef::counter("podnet.conntrack.search_restart", "Lookups restarted because a table resize raced them.", "{event}")
            .kubeskoop("kubeskoop_conntrack_searchrestart"),
    ),
    ("clash_resolve", MetricDef::counter("podnet.conntrack.clash_resolve", "Insert clashes that were resolved.", "{event}")),
    ("chain_toolong", MetricDef::counter("podnet.conntrack.chain_toolong", "Inserts that met a too-long hash chain.", "{event}")),
];
pub const CONNTRACK_ENTRIES: MetricDef =
    MetricDef::gauge("podnet.conntrack.entries", "Conntrack entries in the namespace's table.", "{entry}")
        .kubeskoop("kubeskoop_conntrack_entries");
pub const CONNTRACK_MAX: MetricDef =
    MetricDef::gauge("podnet.conntrack.max_entries", "The conntrack table limit (nf_conntrack_max).", "{entry}")
        .kubeskoop("kubeskoop_conntrack_maxentries");

/// (per-device metric, namespace-total metric, value) of a qdisc.
fn qdisc_values(q: &qdisc::QdiscStats) -> [(&'static MetricDef, &'static MetricDef, u64); 7] {
    [
        (&QDISC_DEVICE[0], &QDISC_TOTAL[0], q.bytes),
        (&QDISC_DEVICE[1], &QDISC_TOTAL[1], q.packets),
        (&QDISC_DEVICE[2], &QDISC_TOTAL[2], q.drops),
        (&QDISC_DEVICE[3], &QDISC_TOTAL[3], q.overlimits),
        (&QDISC_DEVICE[4], &QDISC_TOTAL[4], q.requeues),
        (&QDISC_DEVICE[5], &QDISC_TOTAL[5], q.qlen),
        (&QDISC_DEVICE[6], &QDISC_TOTAL[6], q.backlog),
    ]
}
pub const QDISC_TOTAL: [MetricDef; 7] = [
    MetricDef::counter("podnet.qdisc.bytes", "Bytes sent through the root qdiscs of the selected devices.", "By")
        .kubeskoop("kubeskoop_qdisc_bytes"),
    MetricDef::counter("podnet.qdisc.packets", "Packets sent through the root qdiscs of the selected devices.", "{packet}")
        .kubeskoop("kubeskoop_qdisc_packets"),
    MetricDef::counter("podnet.qdisc.drops", "Packets the root qdiscs of the selected devices dropped.", "{packet}")
        .kubeskoop("kubeskoop_qdisc_drops"),
    MetricDef::counter("podnet.qdisc.overlimits", "Times the root qdiscs of the selected devices were over their limit.", "{event}")
        .kubeskoop("kubeskoop_qdisc_overlimits"),
    MetricDef::counter("podnet.qdisc.requeues", "Packets requeued by the root qdiscs of the selected devices.", "{packet}"),
    MetricDef::gauge("podnet.qdisc.qlen", "Packets queued in the root qdiscs of the selected devices.", "{packet}")
        .kubeskoop("kubeskoop_qdisc_qlen"),
    MetricDef::gauge("podnet.qdisc.backlog", "Bytes queued in the root qdiscs of the selected devices.", "By")
        .kubeskoop("kubeskoop_qdisc_backlog"),
];
pub const QDISC_DEVICE: [MetricDef; 7] = [
    MetricDef::counter("podnet.qdisc.device.bytes", "Bytes sent through a device's root qdisc.", "By"),
    MetricDef::counter("podnet.qdisc.device.packets", "Packets sent through a device's root qdisc.", "{packet}"),
    MetricDef::counter("podnet.qdisc.device.drops", "Packets a device's root qdisc dropped.", "{packet}"),
    MetricDef::counter("podnet.qdisc.device.overlimits", "Times a device's root qdisc was over its limit.", "{event}"),
    MetricDef::counter("podnet.qdisc.device.requeues", "Packets a device's root qdisc requeued.", "{packet}"),
    MetricDef::gauge("podnet.qdisc.device.qlen", "Packets queued in a device's root qdisc.", "{packet}"),
    MetricDef::gauge("podnet.qdisc.device.backlog", "Bytes queued in a device's root qdisc.", "By"),
];

// --- collection ------------------------------------------------------------------------------

/// What one namespace gave: each asked probe's reading or error.
pub type NamespaceReading = Vec<(Probe, Result<Reading, String>)>;

/// Reads the enabled probes in the calling thread's namespace.
pub fn read_namespace(probes: &[Probe], ctx: &ReadContext<'_>) -> NamespaceReading {
    probes.iter().map(|&p| (p, (p.spec().read)(ctx).map_err(|e| format!("{}: {e}", p.name())))).collect()
}

/// The one-pass socket walk as configured: not wanted, loaded, or why it cannot run here.
enum SocketWalk {
    Off,
    Pending,
    Loaded(socktable::SockTable),
    Unavailable,
}

pub struct NetlinkScraper {
    config: NetlinkConfig,
    node_name: String,
    scope: String,
    source: NamespaceSource,
    devices: Regex,
    counters: CumulativeTracker<SeriesKey>,
    /// Probes the kernel does not support (ctnetlink absent), with the reason; not retried.
    unsupported: Vec<(Probe, String)>,
    socket_walk: SocketWalk,
}

impl NetlinkScraper {
    pub fn new(config: NetlinkConfig, node_name: String, component_id: String) -> Result<Self, String> {
        let source = NamespaceSource::new(
            config.namespaces,
            config.root_path.clone(),
            config.names_path.clone(),
            config.netns_extension.clone(),
            None,
        );
        Ok(NetlinkScraper {
            devices: device_regex(&config.qdisc.devices)?,
            socket_walk: match config.tcpsummary.source {
                SocketSource::SockDiag => SocketWalk::Off,
                SocketSource::Auto | SocketSource::BpfIter => SocketWalk::Pending,
            },
            config,
            node_name,
            scope: format!("podnet/receiver/{component_id}"),
            source,
            counters: CumulativeTracker::default(),
            unsupported: Vec::new(),
        })
    }

    pub fn with_host(mut self, host: Arc<Host>) -> Self {
        self.source.host = Some(host);
        self
    }

    /// Reads exactly these namespaces (what the `netns` extension would hand over).
    pub fn set_namespaces(&mut self, list: Arc<Vec<Namespace>>) {
        self.source.set_fixed(list);
    }
}

/// Writes one namespace's reading; returns the probes' errors.
fn emit(reading: &NamespaceReading, emitting: &Emitting<'_>, out: &mut PointWriter) -> Vec<String> {
    let mut errors = Vec::new();
    for (probe, result) in reading {
        match result {
            Ok(r) => (probe.spec().emit)(r, emitting, out),
            Err(e) => errors.push(e.clone()),
        }
    }
    errors
}

fn emit_tcp(r: &Reading, emitting: &Emitting<'_>, out: &mut PointWriter) {
    let Reading::Tcp(s) = r else { return };
    for (state, n) in &s.by_state {
        out.point(&CONNECTIONS, vec![kv_str(keys::NETWORK_CONNECTION_STATE, *state)], *n);
    }
    // The states KubeSkoop reports are always there, at 0 when no socket is in them.
    for state in ["established", "time_wait", "close_wait", "syn_sent", "syn_received"] {
        if !s.by_state.contains_key(state) {
            out.point(&CONNECTIONS, vec![kv_str(keys::NETWORK_CONNECTION_STATE, state)], 0);
        }
    }
    out.point(&QUEUE, vec![kv_str(keys::NETWORK_IO_DIRECTION, "receive")], s.rx_queue_bytes);
    out.point(&QUEUE, vec![kv_str(keys::NETWORK_IO_DIRECTION, "transmit")], s.tx_queue_bytes);
    out.point(&LISTEN_PENDING, vec![], s.listen_pending);
    out.point(&LISTEN_LIMIT, vec![], s.listen_limit);
    out.ratio(&LISTEN_MAX_FILL, vec![], s.listen_max_fill);
    if !emitting.is_host {
        out.point(&NS_ORPHANS, vec![], s.orphans);
        out.point(&NS_ALLOCATED, vec![], s.allocated);
        out.point(&NS_MEMORY, vec![], s.memory_pages);
    }
}

fn emit_conntrack(r: &Reading, _: &Emitting<'_>, out: &mut PointWriter) {
    let Reading::Conntrack(c) = r else { return };
    for (name, def) in CONNTRACK_COUNTERS {
        // Newer kernels no longer report some counters (ignore, insert); KubeSkoop
        // shows those as 0, and so do we, so dashboards keep their series.
        match c.counters.iter().find(|(n, _)| n == name) {
            Some((_, v)) => out.point(def, vec![], *v),
            None if def.kubeskoop.is_some() => out.point(def, vec![], 0),
            None => {}
        }
    }
    if let Some(v) = c.entries {
        out.point(&CONNTRACK_ENTRIES, vec![], v);
    }
    if let Some(v) = c.max_entries {
        out.point(&CONNTRACK_MAX, vec![], v);
    }
}

fn emit_qdiscs(r: &Reading, emitting: &Emitting<'_>, out: &mut PointWriter) {
    let Reading::Qdiscs(qdiscs) = r else { return };
    let mut totals = [0u64; 7];
    // `noqueue` (loopback, veths) never queues and always reports zeros.
    for q in qdiscs.iter().filter(|q| q.kind != "noqueue") {
        let selected = emitting.qdisc_devices.is_match(&q.device);
        for (i, (device_def, _, v)) in qdisc_values(q).into_iter().enumerate() {
            let attrs = vec![kv_str(keys::NETWORK_INTERFACE_NAME, q.device.clone()), kv_str("podnet.qdisc.kind", q.kind.clone())];
            out.point(device_def, attrs, v);
            if selected {
                totals[i] += v;
            }
        }
    }
    for (def, v) in QDISC_TOTAL.iter().zip(totals) {
        out.point(def, vec![], v);
    }
}

impl NetlinkScraper {
    /// Decides from the host namespace's answer whether a probe is unsupported here; it is
    /// then not asked again.
    fn note_unsupported(&mut self, reading: &NamespaceReading) -> Vec<(&'static str, String)> {
        let mut found = Vec::new();
        for (probe, result) in reading {
            if let Err(e) = result
                && let Some(reason) = (probe.spec().unsupported)(e)
            {
                self.unsupported.push((*probe, reason.clone()));
                found.push((probe.name(), reason));
            }
        }
        found
    }
}

impl NetlinkScraper {
    /// The node's TCP socket files, grouped by namespace, or `None` to dump every namespace
    /// with sock_diag. Loads the walk on first use; a kernel that cannot run it is said once.
    fn walk_sockets(&mut self) -> Option<std::collections::HashMap<u32, socktable::NamespaceSockets>> {
        if let SocketWalk::Pending = self.socket_walk {
            self.socket_walk = match socktable::SockTable::load() {
                Ok(t) => SocketWalk::Loaded(t),
                Err(why) => {
                    let level_says = "tcpsummary dumps every namespace with sock_diag: the one-pass socket walk cannot run here";
                    if self.config.tcpsummary.source == SocketSource::BpfIter {
                        tracing::warn!(reason = %why, "{level_says} (tcpsummary::source is bpf_iter)");
                    } else {
                        tracing::info!(reason = %why, "{level_says}");
                    }
                    SocketWalk::Unavailable
                }
            };
        }
        let SocketWalk::Loaded(table) = &mut self.socket_walk else { return None };
        match table.read() {
            Ok(found) => Some(found),
            Err(e) => {
                tracing::warn!(error = %e, "tcpsummary: the socket walk failed this cycle; every namespace is dumped with sock_diag");
                None
            }
        }
    }
}

impl Scraper for NetlinkScraper {
    fn scrape(&mut self) -> Collection {
        let mut errors = Vec::new();
        let mut unsupported = Vec::new();
        let mut builder = MetricsBuilder::new(&self.scope);
        self.counters.begin_round();
        let list = match self.source.list() {
            Ok(l) => l,
            Err(e) => {
                self.counters.end_round();
                return Collection {
                    metrics: builder.finish(),
                    errors: vec![CollectionError { class: "read", message: e }],
                    unsupported: Vec::new(),
                };
            }
        };
        let probes: Vec<Probe> = self.config.probes.iter().copied().filter(|p| !self.unsupported.iter().any(|(u, _)| u == p)).collect();
        let timeout = self.config.timeout.0;
        let walked = if probes.iter().any(|p| p.name() == "tcpsummary") { self.walk_sockets() } else { None };
        let no_sockets = socktable::NamespaceSockets::default();
        let readings = enter::for_each_namespace(&list, |ns| {
            // A namespace the walk found no socket file in still has its sockstat checked.
            let sockets = walked.as_ref().map(|w| u32::try_from(ns.inode).ok().and_then(|i| w.get(&i)).unwrap_or(&no_sockets));
            read_namespace(&probes, &ReadContext { timeout, sockets })
        });
        let now = now_unix_nanos();
        for (i, reading) in readings {
            let ns: &Namespace = &list[i];
            let reading = match reading {
                Ok(r) => r,
                Err(EnterError::Vanished) => continue,
                Err(EnterError::Failed(e)) => {
                    errors.push(CollectionError { class: "enter", message: e });
                    continue;
                }
            };
            if ns.is_host {
                unsupported.extend(self.note_unsupported(&reading));
            }
            let mut rb = builder.resource(ns.resource_attributes(&self.node_name));
            let mut out =
                PointWriter { rb: &mut rb, counters: &mut self.counters, resource_key: ns.inode, origin: ns.start_unix_nanos, now };
            let ns_errors = emit(&reading, &Emitting { qdisc_devices: &self.devices, is_host: ns.is_host }, &mut out);
            if !ns_errors.is_empty() && !ns.is_host && ns.vanished() {
                builder.drop_resource(&ns.resource_attributes(&self.node_name));
                continue;
            }
            errors.extend(ns_errors.into_iter().map(|e| CollectionError { class: "netlink", message: format!("netns {}: {e}", ns.inode) }));
        }
        self.counters.end_round();
        Collection { metrics: builder.finish(), errors, unsupported }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_are_one_table_configured_by_name() {
        let names: Vec<&str> = PROBES.iter().map(|p| p.info.name).collect();
        assert_eq!(names, ["tcpsummary", "conntrack", "qdisc"]);
        assert_eq!(PROBE_INFOS.map(|i| i.name).to_vec(), names);
        let parsed: Vec<Probe> = serde_json::from_str(r#"["qdisc"]"#).unwrap();
        assert_eq!(parsed.iter().map(|p| p.name()).collect::<Vec<_>>(), ["qdisc"]);
        let err = serde_json::from_str::<Vec<Probe>>(r#"["tcp"]"#).unwrap_err().to_string();
        assert!(err.starts_with("unknown value \"tcp\" (valid values: tcpsummary, conntrack, qdisc)"), "{err}");
    }

    #[test]
    fn only_conntrack_reports_a_missing_kernel_module() {
        let missing = "conntrack: Protocol not supported (os error 93)";
        let reasons: Vec<Option<String>> = PROBES.iter().map(|p| (p.unsupported)(missing)).collect();
        assert_eq!(reasons[0], None);
        assert_eq!(
            reasons[1].as_deref(),
            Some("conntrack: Protocol not supported (os error 93) (load nf_conntrack and nf_conntrack_netlink)")
        );
        assert_eq!(reasons[2], None);
        assert_eq!((PROBES[1].unsupported)("conntrack: timed out"), None);
    }
}
