//! Receiver `ebpf`: kernel programs that see what counters cannot. `packetloss` (every IP
//! packet the kernel drops, with the kernel's drop reason), `tcpreset` (resets sent and
//! received, typed as KubeSkoop types them) and `tcpretrans` (retransmissions). Counts
//! are aggregated in the kernel per network namespace and read every collection
//! interval; chosen events come through one ring buffer per probe with batched wake-ups
//! and become log records.

pub mod abi;
mod batch;
pub mod btf;
pub mod events;
pub mod kallsyms;
pub mod latency;
pub mod loader;
pub mod nic;
pub mod probes;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use podnet_netns::{NamespaceSource, Namespaces};
use podnet_pipeline::component::{
    BoxFuture, BuildError, ComponentContext, Factory, FactoryInfo, Kind, Overhead, ProbeInfo, Receiver, ReceiverFactory, Stability,
};
use podnet_pipeline::config::ConfigDuration;
use podnet_pipeline::cumulative::{CumulativeTracker, PointWriter, SeriesKey};
use podnet_pipeline::fanout::Outputs;
use podnet_pipeline::pdata::{LogsBuilder, MetricsBuilder, PData, Signal, now_unix_nanos};
use podnet_pipeline::scrape::{Collection, CollectionError, Scraper, run_scraper};
use podnet_pipeline::telemetry::ProbeSample;
use serde::{Deserialize, Deserializer, Serialize};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio_util::sync::CancellationToken;

use crate::events::{Decoder, NamespaceIndex};
use crate::loader::{Hook, LoadOptions, LoadedProbe};
use crate::probes::{FlowTable, Graveyard, ProbeKind, Reasons};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeOptions {
    /// Where to attach: `auto` (tp_btf, then tracepoint, then kprobe) or one of them.
    pub hook: Hook,
    /// Emit an event (log record) per occurrence, besides the counters.
    pub events: bool,
    /// Add the kernel stack, symbolised from /proc/kallsyms, to each event.
    pub stack: bool,
    /// Events per second per network namespace; past it events are counted, not sent.
    /// 0: no limit.
    pub events_per_second: u32,
    /// Size of the probe's flow table (packetloss, tcpretrans); the least recently
    /// updated flow makes room, and its series end.
    pub max_flows: Option<u32>,
    /// Latency probes: the two thresholds counted in the kernel, `[low, high]`
    /// (KubeSkoop's: 1ms/100ms for socketlatency, 10ms/100ms for the others).
    pub thresholds: Option<[ConfigDuration; 2]>,
    /// Latency probes: an event for every interval longer than this.
    pub event_threshold: Option<ConfigDuration>,
    /// softirq: the types measured (default: net_rx, net_tx).
    pub softirq_types: Option<Vec<String>>,
    /// Latency probes: size of each table of start timestamps (packets, sockets or IOs
    /// in flight); when full, the oldest entry makes room and is counted as reclaimed.
    pub max_inflight: Option<u32>,
    /// flow: `pods` (every pod's own devices, attributed to the pod) or `nic` (TC on the
    /// node's NIC, KubeSkoop's mode, node level).
    pub mode: Option<FlowMode>,
    /// flow, nic mode: the device, or a prefix ending with `*` (default: the device of
    /// the default route).
    pub interface_name: Option<String>,
    /// flow: key flows by ports too (KubeSkoop's `enablePortInLabel`), in host byte order.
    pub enable_port_in_label: Option<bool>,
    /// flow, with ports: zero the ephemeral (client) port of each flow so one busy client
    /// is one series, not one per connection (default: true).
    pub aggregate_ephemeral_ports: Option<bool>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowMode {
    #[default]
    Pods,
    Nic,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            hook: Hook::Auto,
            events: true,
            stack: false,
            events_per_second: 100,
            max_flows: None,
            thresholds: None,
            event_threshold: None,
            softirq_types: None,
            max_inflight: None,
            mode: None,
            interface_name: None,
            enable_port_in_label: None,
            aggregate_ephemeral_ports: None,
        }
    }
}

impl ProbeOptions {
    /// The latency settings of `kind`: the config's, or the probe's defaults.
    pub fn latency_settings(&self, kind: ProbeKind) -> Option<probes::LatencySettings> {
        let lk = kind.latency()?;
        let types = self.softirq_types.clone().unwrap_or_else(|| vec!["net_rx".into(), "net_tx".into()]);
        Some(probes::LatencySettings {
            thresholds: self.thresholds.map(|t| [t[0].0, t[1].0]).unwrap_or(lk.thresholds),
            event_threshold: self.event_threshold.map(|d| d.0).unwrap_or(lk.event_threshold),
            softirq_types: types.iter().filter_map(|t| latency::SOFTIRQ_NAMES.iter().position(|n| n == t)).map(|i| i as u32).collect(),
        })
    }

    fn nic(&self) -> bool {
        self.mode == Some(FlowMode::Nic)
    }

    /// flow: the kernel's port handling (`ports_mode` in flow.bpf.c).
    fn flow_ports_mode(&self) -> u32 {
        match (self.enable_port_in_label.unwrap_or(false), self.aggregate_ephemeral_ports.unwrap_or(true)) {
            (false, _) => 0,
            (true, false) => 1,
            (true, true) => 2,
        }
    }
}

/// `packetloss:` with no value means the probe with its defaults.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ProbeOptions>, D::Error> {
    Ok(Some(Option::<ProbeOptions>::deserialize(d)?.unwrap_or_default()))
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbesConfig {
    #[serde(deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub packetloss: Option<ProbeOptions>,
    #[serde(deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub tcpreset: Option<ProbeOptions>,
    #[serde(deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub tcpretrans: Option<ProbeOptions>,
    #[serde(deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub softirq: Option<ProbeOptions>,
    #[serde(deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub netiftxlat: Option<ProbeOptions>,
    #[serde(deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub socketlatency: Option<ProbeOptions>,
    #[serde(deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub kernellatency: Option<ProbeOptions>,
    #[serde(deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub virtcmdlatency: Option<ProbeOptions>,
    #[serde(deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub biolatency: Option<ProbeOptions>,
    #[serde(deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub flow: Option<ProbeOptions>,
}

impl ProbesConfig {
    pub fn enabled(&self) -> Vec<(ProbeKind, &ProbeOptions)> {
        [
            (ProbeKind::Packetloss, &self.packetloss),
            (ProbeKind::Tcpreset, &self.tcpreset),
            (ProbeKind::Tcpretrans, &self.tcpretrans),
            (ProbeKind::Softirq, &self.softirq),
            (ProbeKind::Netiftxlat, &self.netiftxlat),
            (ProbeKind::Socketlatency, &self.socketlatency),
            (ProbeKind::Kernellatency, &self.kernellatency),
            (ProbeKind::Virtcmdlatency, &self.virtcmdlatency),
            (ProbeKind::Biolatency, &self.biolatency),
            (ProbeKind::Flow, &self.flow),
        ]
        .into_iter()
        .filter_map(|(k, o)| o.as_ref().map(|o| (k, o)))
        .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EbpfConfig {
    pub collection_interval: ConfigDuration,
    pub root_path: PathBuf,
    pub names_path: PathBuf,
    pub netns_extension: String,
    /// The kernel's BTF, for CO-RE and for reason names.
    pub btf_path: PathBuf,
    pub kallsyms_path: PathBuf,
    /// Bytes of each probe's ring buffer: a power of two, at least one page.
    pub ring_buffer_size: u32,
    /// Wake the reader when this many events wait; it also drains every `flush_interval`.
    pub wakeup_batch: u32,
    /// The longest an event waits in podnet before it is sent on.
    pub flush_interval: ConfigDuration,
    /// Switch the kernel's BPF run-time statistics on and report each program's runs and
    /// run time (`podnet_ebpf_program_runs`, `_run_time`). Off by default: they are global,
    /// so every BPF program on the node (a CNI's datapath too) reads the clock twice per run;
    /// measured, that took 12 points of small-packet throughput with the latency probes on.
    pub program_stats: bool,
    pub probes: ProbesConfig,
}

impl Default for EbpfConfig {
    fn default() -> Self {
        EbpfConfig {
            collection_interval: ConfigDuration::from_secs(15),
            root_path: "/proc".into(),
            names_path: "/run/netns".into(),
            netns_extension: "netns".into(),
            btf_path: btf::VMLINUX.into(),
            kallsyms_path: "/proc/kallsyms".into(),
            ring_buffer_size: 1 << 20,
            wakeup_batch: 512,
            flush_interval: ConfigDuration(Duration::from_millis(200)),
            program_stats: false,
            probes: ProbesConfig::default(),
        }
    }
}

const DEFAULT_MAX_FLOWS: u32 = 10240;
const DEFAULT_MAX_INFLIGHT: u32 = 16384;
/// Histogram series per latency probe: namespaces × stages × devices.
const MAX_LATENCY_SERIES: u32 = 16384;
/// Log records per batch sent on.
const BATCH_RECORDS: usize = 1024;

const PROBES: &[ProbeInfo] = &[
    ProbeInfo {
        name: "packetloss",
        data_source: "eBPF tp_btf/kfree_skb (tracepoint skb:kfree_skb, kprobe kfree_skb_reason)",
        overhead: Overhead::Medium,
    },
    ProbeInfo {
        name: "tcpreset",
        data_source: "eBPF tcp:tcp_send_reset, tcp:tcp_receive_reset (kprobes tcp_v4_send_reset, tcp_send_active_reset)",
        overhead: Overhead::Low,
    },
    ProbeInfo { name: "tcpretrans", data_source: "eBPF tcp:tcp_retransmit_skb (kprobe tcp_retransmit_skb)", overhead: Overhead::Low },
    ProbeInfo { name: "softirq", data_source: "eBPF irq:softirq_raise, softirq_entry, softirq_exit", overhead: Overhead::High },
    ProbeInfo { name: "netiftxlat", data_source: "eBPF net:net_dev_queue, net_dev_start_xmit, net_dev_xmit", overhead: Overhead::High },
    ProbeInfo {
        name: "socketlatency",
        data_source: "eBPF sock:sk_data_ready, sock_recv_length, tcp:tcp_sendmsg_locked, net:net_dev_queue, tcp:tcp_destroy_sock (kprobes sock_def_readable, tcp_cleanup_rbuf, tcp_sendmsg_locked, tcp_write_xmit)",
        overhead: Overhead::High,
    },
    ProbeInfo {
        name: "kernellatency",
        data_source: "eBPF net:netif_receive_skb, tcp:tcp_probe, net:net_dev_queue",
        overhead: Overhead::High,
    },
    ProbeInfo { name: "virtcmdlatency", data_source: "eBPF kprobe+kretprobe virtnet_send_command(_reply)", overhead: Overhead::Low },
    ProbeInfo {
        name: "biolatency",
        data_source: "eBPF block:block_io_start, block_io_done (block_bio_queue, block_rq_complete; kprobes blk_account_io_start, blk_account_io_done)",
        overhead: Overhead::Medium,
    },
    ProbeInfo {
        name: "flow",
        data_source: "eBPF net:net_dev_queue, net:netif_receive_skb on every pod's devices (mode pods); TC ingress+egress by tcx or clsact on the node's NIC (mode nic)",
        overhead: Overhead::Medium,
    },
];

pub struct EbpfReceiverFactory;

impl Factory for EbpfReceiverFactory {
    type Config = EbpfConfig;
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "ebpf",
            aliases: &[],
            kind: Kind::Receiver,
            signals: &[Signal::Metrics, Signal::Logs],
            stability: Stability::Alpha,
            description: "Packet drops with kernel drop reasons, TCP resets and retransmits, and latency histograms (softirq, qdisc and driver, socket, kernel path, virtio, block IO) from eBPF programs, as metrics and events",
            probes: PROBES,
        }
    }
    fn validate(&self, c: &EbpfConfig) -> Result<(), String> {
        if c.collection_interval.0.is_zero() || c.flush_interval.0.is_zero() {
            return Err("collection_interval and flush_interval must be greater than zero".into());
        }
        if c.probes.enabled().is_empty() {
            return Err(format!(
                "probes must enable at least one probe (valid probes: {})",
                ProbeKind::ALL.iter().map(|k| k.spec().name).collect::<Vec<_>>().join(", ")
            ));
        }
        if !c.ring_buffer_size.is_power_of_two() || c.ring_buffer_size < 4096 {
            return Err(format!("ring_buffer_size must be a power of two of at least 4096 bytes, got {}", c.ring_buffer_size));
        }
        if let Some(o) = &c.probes.tcpreset
            && o.max_flows.is_some()
        {
            return Err("probes::tcpreset::max_flows: tcpreset keeps no flow table; remove the key".into());
        }
        for (kind, o) in c.probes.enabled() {
            let name = kind.spec().name;
            if o.max_flows == Some(0) {
                return Err(format!("probes::{name}::max_flows must be at least 1"));
            }
            validate_latency(kind, o).map_err(|e| format!("probes::{name}::{e}"))?;
            validate_flow(kind, o).map_err(|e| format!("probes::{name}::{e}"))?;
            validate_hook(kind, o).map_err(|e| format!("probes::{name}::{e}"))?;
        }
        Ok(())
    }
}

/// The first of `keys` that is set, as an error: `<key>: <why>; remove it`.
fn reject_set_keys(keys: &[(&str, bool)], why: &str) -> Result<(), String> {
    match keys.iter().find(|(_, set)| *set) {
        Some((key, _)) => Err(format!("{key}: {why}; remove it")),
        None => Ok(()),
    }
}

fn validate_flow(kind: ProbeKind, o: &ProbeOptions) -> Result<(), String> {
    if kind != ProbeKind::Flow {
        let keys = [
            ("mode", o.mode.is_some()),
            ("interface_name", o.interface_name.is_some()),
            ("enable_port_in_label", o.enable_port_in_label.is_some()),
            ("aggregate_ephemeral_ports", o.aggregate_ephemeral_ports.is_some()),
        ];
        return reject_set_keys(&keys, "only the flow probe takes this key");
    }
    if o.stack {
        return Err("stack: the flow probe sends no events; remove the key".into());
    }
    if let Some(name) = &o.interface_name {
        if !o.nic() {
            return Err("interface_name: only nic mode attaches to a device; add `mode: nic` (pods mode sees every pod's devices)".into());
        }
        let bare = name.strip_suffix('*').unwrap_or(name);
        if bare.is_empty() || bare.len() >= 16 || bare.contains(['/', ' ', '*']) {
            return Err(format!("interface_name: {name:?} is not a device name or a prefix ending with * (e.g. eth0, eth*)"));
        }
    }
    if o.aggregate_ephemeral_ports.is_some() && o.enable_port_in_label != Some(true) {
        return Err(
            "aggregate_ephemeral_ports: flows have no ports unless enable_port_in_label is true; remove the key or enable ports".into()
        );
    }
    Ok(())
}

/// The hook must be one this probe (in this mode) has.
fn validate_hook(kind: ProbeKind, o: &ProbeOptions) -> Result<(), String> {
    let mut valid_hooks: Vec<Hook> = Vec::new();
    for (h, _) in kind.spec_for(o.nic()).hooks {
        if !valid_hooks.contains(h) {
            valid_hooks.push(*h);
        }
    }
    if o.hook != Hook::Auto && !valid_hooks.contains(&o.hook) {
        let names: Vec<&str> = valid_hooks.iter().map(|h| h.as_str()).collect();
        let mode = if kind == ProbeKind::Flow { if o.nic() { " in nic mode" } else { " in pods mode" } } else { "" };
        return Err(format!("hook: {} is not a hook of this probe{mode} (valid hooks: auto, {})", o.hook.as_str(), names.join(", ")));
    }
    Ok(())
}

fn validate_latency(kind: ProbeKind, o: &ProbeOptions) -> Result<(), String> {
    let Some(_) = kind.latency() else {
        let keys = [
            ("thresholds", o.thresholds.is_some()),
            ("event_threshold", o.event_threshold.is_some()),
            ("softirq_types", o.softirq_types.is_some()),
            ("max_inflight", o.max_inflight.is_some()),
        ];
        return reject_set_keys(&keys, "only the latency probes take this key");
    };
    if o.max_flows.is_some() {
        return Err("max_flows: latency probes keep no flow table; remove the key (max_inflight sizes their tables)".into());
    }
    if o.stack {
        return Err("stack: latency events carry no stack; remove the key".into());
    }
    if let Some([low, high]) = o.thresholds
        && (low.0.is_zero() || low.0 >= high.0)
    {
        return Err(format!("thresholds: expected [low, high] with 0 < low < high, got [{:?}, {:?}]", low.0, high.0));
    }
    if o.max_inflight == Some(0) {
        return Err("max_inflight must be at least 1".into());
    }
    if let Some(types) = &o.softirq_types {
        if kind != ProbeKind::Softirq {
            return Err("softirq_types: only the softirq probe takes this key; remove it".into());
        }
        if types.is_empty() {
            return Err(format!("softirq_types: list at least one of {}", latency::SOFTIRQ_NAMES.join(", ")));
        }
        if let Some(bad) = types.iter().find(|t| !latency::SOFTIRQ_NAMES.contains(&t.as_str())) {
            return Err(format!("softirq_types: unknown softirq type {bad:?} (valid types: {})", latency::SOFTIRQ_NAMES.join(", ")));
        }
    }
    Ok(())
}

impl ReceiverFactory for EbpfReceiverFactory {
    fn create(&self, config: &EbpfConfig, ctx: ComponentContext) -> Result<Box<dyn Receiver>, BuildError> {
        Ok(Box::new(EbpfReceiver { config: config.clone(), ctx }))
    }
}

struct EbpfReceiver {
    config: EbpfConfig,
    ctx: ComponentContext,
}

impl Receiver for EbpfReceiver {
    fn run(self: Box<Self>, outputs: Outputs) -> BoxFuture {
        Box::pin(run(self.config, self.ctx, outputs))
    }
}

/// Event outcomes per probe, counted in user space.
#[derive(Default)]
struct EventCounters {
    sent: AtomicU64,
    decode_errors: AtomicU64,
}

struct Running {
    kind: ProbeKind,
    probe: LoadedProbe,
    flows: FlowTable,
    counters: Arc<EventCounters>,
    latency: Option<probes::LatencySettings>,
    /// flow: whether its table keeps ports.
    flow_ports: bool,
    /// flow, nic mode: the devices its TC programs are attached to.
    nic: Option<nic::NicAttachments>,
}

impl Running {
    fn read(&mut self, reasons: &Reasons, disks: &mut latency::DiskNames) -> Result<Vec<probes::Row>, String> {
        match (&self.latency, self.kind) {
            (Some(settings), _) => probes::read_latency(self.kind, &self.probe, settings, disks),
            (None, ProbeKind::Flow) => probes::read_flows(&self.probe, self.flow_ports, &mut self.flows),
            (None, _) => probes::read(self.kind, &self.probe, reasons, &mut self.flows),
        }
    }

    /// nic mode: attach to devices that appeared, forget those that left.
    fn sync_devices(&mut self) -> Vec<String> {
        match &mut self.nic {
            Some(n) => n.sync(&mut self.probe),
            None => Vec::new(),
        }
    }
}

fn load_options(c: &EbpfConfig, kind: ProbeKind, o: &ProbeOptions, latency: Option<&probes::LatencySettings>, events: bool) -> LoadOptions {
    let latency = latency.map(|s| loader::LatencyGlobals {
        threshold_low_ns: s.thresholds[0].as_nanos() as u64,
        threshold_high_ns: s.thresholds[1].as_nanos() as u64,
        event_threshold_ns: s.event_threshold.as_nanos() as u64,
        softirq_mask: s.softirq_types.iter().fold(0u32, |m, v| m | (1 << v)),
        max_inflight: o.max_inflight.unwrap_or(DEFAULT_MAX_INFLIGHT),
        max_series: kind.latency().filter(|l| l.fixed_dims.is_none()).map(|_| MAX_LATENCY_SERIES),
        start_maps: kind.latency().map(|l| l.start_maps).unwrap_or(&[]),
    });
    let globals = if kind == ProbeKind::Flow { flow_globals(o, &c.root_path) } else { Vec::new() };
    LoadOptions {
        latency,
        globals,
        hook: o.hook,
        // The flow probe counts; it has no events.
        events: events && o.events && kind != ProbeKind::Flow,
        stack: o.stack,
        events_per_second: o.events_per_second,
        wakeup_batch: c.wakeup_batch,
        ring_buffer_bytes: c.ring_buffer_size,
        max_flows: o.max_flows.unwrap_or(DEFAULT_MAX_FLOWS),
    }
}

/// What the flow probe's program is told at load time (`volatile const` in flow.bpf.c).
pub fn flow_globals(o: &ProbeOptions, root_path: &std::path::Path) -> Vec<(&'static str, u32)> {
    let (low, high) = ephemeral_port_range();
    vec![("ports_mode", o.flow_ports_mode()), ("ephemeral_low", low), ("ephemeral_high", high), ("host_netns", host_netns(root_path))]
}

/// The node's ephemeral ports (`net.ipv4.ip_local_port_range`, the agent's namespace: the
/// node's), the kernel's default where unreadable.
fn ephemeral_port_range() -> (u32, u32) {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut it = text.split_whitespace().filter_map(|v| v.parse::<u32>().ok());
    match (it.next(), it.next()) {
        (Some(low), Some(high)) if low <= high && high <= 65535 => (low, high),
        _ => (32768, 60999),
    }
}

/// The host's network namespace inode (pid 1's under `root_path`), whose devices carry the
/// pods' traffic a second time; 0 (none skipped) when unreadable.
fn host_netns(root_path: &std::path::Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(root_path.join("1/ns/net")).or_else(|_| std::fs::metadata("/proc/self/ns/net")).map(|m| m.ino() as u32).unwrap_or(0)
}

const NO_RESET_REASONS: &str =
    "reset reasons: this kernel gives none (its BTF has no enum sk_rst_reason: Linux 6.10+), so the reason attribute is left out";

fn reasons(c: &EbpfConfig) -> (Reasons, Vec<String>) {
    let mut warnings = Vec::new();
    let unavailable = |warnings: &mut Vec<String>, e: btf::BtfError| {
        warnings.push(format!("reason names unavailable, numbers are reported instead: {e}"));
        btf::ReasonNames::default()
    };
    let data = match btf::read(&c.btf_path) {
        Ok(data) => data,
        Err(e) => {
            let numbers = unavailable(&mut warnings, e);
            return (Reasons { drop: numbers.clone(), reset: Some(numbers) }, warnings);
        }
    };
    let drop = btf::ReasonNames::from_btf(&data, "skb_drop_reason", "SKB_DROP_REASON_").unwrap_or_else(|e| unavailable(&mut warnings, e));
    let reset = match btf::ReasonNames::from_btf(&data, "sk_rst_reason", "SK_RST_REASON_") {
        Ok(n) => Some(n),
        // Before 6.10 the kernel gives resets no reason: the attribute is left out, not made up.
        Err(btf::BtfError::NoSuchEnum(_)) => None,
        Err(e) => Some(unavailable(&mut warnings, e)),
    };
    (Reasons { drop, reset }, warnings)
}

async fn run(config: EbpfConfig, ctx: ComponentContext, outputs: Outputs) {
    let want_events = outputs.wants(Signal::Logs);
    let cfg = config.clone();
    // Loading parses the kernel's BTF and runs the verifier: keep it off the async threads.
    let loaded = tokio::task::spawn_blocking(move || {
        let btf = aya::Btf::from_sys_fs().ok();
        let stats_fd = if cfg.program_stats { aya::sys::enable_stats(aya::sys::Stats::RunTime).ok() } else { None };
        // Each probe's latency settings, resolved once: the loader and the reader share them.
        type Loaded = (ProbeKind, ProbeOptions, Option<probes::LatencySettings>, Result<LoadedProbe, loader::Unsupported>);
        let probes: Vec<Loaded> = cfg
            .probes
            .enabled()
            .into_iter()
            .map(|(kind, o)| {
                let latency = o.latency_settings(kind);
                let result =
                    loader::load(kind.spec_for(o.nic()), &load_options(&cfg, kind, o, latency.as_ref(), want_events), btf.as_ref());
                (kind, o.clone(), latency, result)
            })
            .collect();
        let (reasons, warnings) = reasons(&cfg);
        // Stacks resolve many addresses per event: the whole table. Drop locations are a
        // few dozen sites: resolved as they come.
        let kallsyms = if cfg.probes.enabled().into_iter().any(|(_, o)| o.stack) {
            match kallsyms::Kallsyms::load(&cfg.kallsyms_path) {
                Ok(k) if k.usable() => Some(kallsyms::Symbols::Table(k)),
                Ok(_) => None,
                Err(e) => {
                    tracing::debug!("{e}");
                    None
                }
            }
        } else {
            kallsyms::LazySymbols::open(&cfg.kallsyms_path).map(kallsyms::Symbols::Lazy).map_err(|e| tracing::debug!("{e}")).ok()
        };
        (probes, stats_fd, reasons, warnings, kallsyms)
    })
    .await;
    let (probes, _stats_fd, reasons, warnings, kallsyms) = match loaded {
        Ok(v) => v,
        Err(e) => {
            ctx.status.failed(format!("loading the probes panicked: {e}"));
            return;
        }
    };
    for w in warnings {
        tracing::warn!(component = %ctx.id, "{w}");
    }
    if kallsyms.is_none() {
        tracing::info!(component = %ctx.id, "{} unreadable or hidden (kptr_restrict): locations and stacks stay as addresses", config.kallsyms_path.display());
    }

    let mut running = Vec::new();
    let mut up: Vec<ProbeSample> = Vec::new();
    for (kind, options, latency, result) in probes {
        let name = kind.spec().name;
        match result {
            Ok(p) => {
                tracing::info!(component = %ctx.id, probe = name, hook = p.hook.as_str(), "attached {}", p.programs.iter().map(|(_, a)| a.as_str()).collect::<Vec<_>>().join(", "));
                if let Some(misses) = p.misses {
                    tracing::warn!(component = %ctx.id, probe = name, hook = p.hook.as_str(), "this hook misses {misses}");
                    ctx.status.probe_limited(name, &format!("hook {} misses {misses}", p.hook.as_str()));
                }
                if kind == ProbeKind::Tcpreset && reasons.reset.is_none() {
                    ctx.status.probe_limited(name, NO_RESET_REASONS);
                }
                up.push(ProbeSample {
                    metric: "podnet.probe.up",
                    attributes: vec![("probe", name.into()), ("hook", p.hook.as_str().into())],
                    value: 1.0,
                });
                let nic = (kind == ProbeKind::Flow && options.nic())
                    .then(|| nic::NicAttachments::new(nic::DeviceMatch::parse(options.interface_name.as_deref()), p.hook));
                let mut r = Running {
                    kind,
                    probe: p,
                    flows: FlowTable::default(),
                    counters: Arc::default(),
                    latency,
                    flow_ports: options.flow_ports_mode() != 0,
                    nic,
                };
                // Count from now, not from the first collection.
                for problem in r.sync_devices() {
                    tracing::warn!(component = %ctx.id, probe = name, "{problem}");
                }
                running.push(r);
            }
            Err(e) => {
                tracing::warn!(component = %ctx.id, probe = name, "unsupported on this kernel: {}", e.0);
                ctx.status.probe_unsupported(name, &format!("unsupported on this kernel: {}", e.0));
                up.push(ProbeSample {
                    metric: "podnet.probe.up",
                    attributes: vec![("probe", name.into()), ("hook", "none".into())],
                    value: 0.0,
                });
            }
        }
    }
    let probe_stats = ctx.telemetry.probe_stats();
    probe_stats.publish(up.clone());
    if running.is_empty() {
        ctx.status.unsupported("no probe could attach on this kernel (see unsupported probes)");
        ctx.shutdown.cancelled().await;
        return;
    }

    let source = NamespaceSource::new(
        Namespaces::All,
        config.root_path.clone(),
        config.names_path.clone(),
        config.netns_extension.clone(),
        Some(ctx.host.clone()),
    );
    let mut index = NamespaceIndex::new(source, ctx.host.node.name.clone());
    if let Err(e) = index.refresh() {
        tracing::warn!(component = %ctx.id, "cannot list network namespaces: {e}");
    }
    let decoder = Arc::new(Decoder {
        reasons: reasons.clone(),
        kallsyms,
        boot_offset_nanos: events::monotonic_to_realtime_offset(),
        namespaces: std::sync::Mutex::new(index),
    });
    let scope = format!("podnet/receiver/{}", ctx.id);
    let mut pumps = Vec::new();
    for r in &mut running {
        if let Some(ring) = r.probe.events.take() {
            let pump = Pump {
                probe: r.kind.spec().name,
                hook: r.probe.hook.as_str(),
                decoder: decoder.clone(),
                outputs: outputs.clone(),
                counters: r.counters.clone(),
                scope: scope.clone(),
                flush: config.flush_interval.0,
                shutdown: ctx.shutdown.clone(),
                id: ctx.id.to_string(),
            };
            pumps.push(tokio::spawn(pump.run(ring)));
        }
    }

    let scraper = EbpfScraper {
        running,
        up,
        reasons,
        decoder,
        probe_stats,
        program_stats: config.program_stats,
        counters: CumulativeTracker::default(),
        graveyard: Graveyard::default(),
        disks: latency::DiskNames::default(),
        scope,
        attached_at: now_unix_nanos(),
    };
    run_scraper(scraper, config.collection_interval.0, ctx, outputs).await;
    for p in pumps {
        let _ = p.await;
    }
}

/// The periodic half of the receiver, run by the core's scraper loop: reads the probes'
/// kernel maps into metrics and publishes the probes' self-metrics. The events are the
/// pumps' (one per ring buffer).
struct EbpfScraper {
    running: Vec<Running>,
    /// `podnet.probe.up` of every configured probe, attached or not.
    up: Vec<ProbeSample>,
    reasons: Reasons,
    decoder: Arc<Decoder>,
    probe_stats: podnet_pipeline::telemetry::ProbeStats,
    program_stats: bool,
    counters: CumulativeTracker<SeriesKey>,
    graveyard: Graveyard,
    disks: latency::DiskNames,
    scope: String,
    attached_at: u64,
}

impl Scraper for EbpfScraper {
    fn scrape(&mut self) -> Collection {
        let mut whole = Vec::new();
        let mut c = self.scrape_in_parts(&mut |mut part| whole.append(part.resources_mut()));
        whole.append(c.metrics.resources_mut());
        c.metrics = podnet_pipeline::pdata::Metrics::new(whole);
        c
    }

    fn scrape_in_parts(&mut self, send: &mut dyn FnMut(podnet_pipeline::pdata::Metrics)) -> Collection {
        let mut errors = Vec::new();
        let metrics = self.collect(&mut errors, send);
        self.probe_stats.publish(self_samples(&self.running, &self.up, self.program_stats));
        Collection { metrics, errors, unsupported: Vec::new() }
    }

    /// Maps are read even with no metrics consumer: self-metrics and the pruning of
    /// departed namespaces' entries depend on it.
    fn needs_ticks_without_consumer(&self) -> bool {
        true
    }
}

impl EbpfScraper {
    /// Reads every probe's maps; hands each part of at least [`PART_POINTS`] points (whole
    /// namespaces) to `send` as it is built, and returns the rest.
    fn collect(
        &mut self,
        errors: &mut Vec<CollectionError>,
        send: &mut dyn FnMut(podnet_pipeline::pdata::Metrics),
    ) -> podnet_pipeline::pdata::Metrics {
        let EbpfScraper { running, reasons, decoder, counters, graveyard, disks, scope, attached_at, .. } = self;
        let attached_at = *attached_at;
        let mut index = decoder.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = index.refresh() {
            errors.push(CollectionError { class: "read", message: format!("cannot list network namespaces: {e}") });
        }
        let mut rows = Vec::new();
        for r in running.iter_mut() {
            for problem in r.sync_devices() {
                errors.push(CollectionError { class: "read", message: format!("{}: {problem}", r.kind.spec().name) });
            }
            match r.read(reasons, disks) {
                Ok(v) => rows.extend(v),
                Err(e) => errors.push(CollectionError { class: "read", message: format!("{}: {e}", r.kind.spec().name) }),
            }
        }
        // Namespaces gone from the node for two collections: their entries leave the maps
        // (their series end with them).
        let in_maps: HashSet<u32> = rows.iter().filter(|r| !matches!(r.value, probes::RowValue::Ended)).map(|r| r.netns).collect();
        let dead = graveyard.update(&in_maps, &|ns| index.contains(ns), 2);
        if !dead.is_empty() {
            for r in running.iter_mut() {
                probes::prune(r.kind, &mut r.probe, &mut r.flows, &dead);
            }
            rows.retain(|r| !dead.contains(&r.netns));
        }
        // An ended flow of a namespace gone from the node names no series anyone still has.
        rows.retain(|r| !matches!(r.value, probes::RowValue::Ended) || r.netns == 0 || index.contains(r.netns));
        rows.sort_by_key(|r| r.netns);
        let now = now_unix_nanos();
        counters.begin_round();
        let mut builder = MetricsBuilder::new(scope.as_str());
        // Rows are consumed: their attributes move into the batch instead of being copied,
        // so a collection holds one set of flow attributes at a time, not two.
        let mut rows = rows.into_iter().peekable();
        let mut in_part = 0usize;
        while let Some(netns) = rows.peek().map(|r| r.netns) {
            if in_part >= PART_POINTS {
                send(std::mem::replace(&mut builder, MetricsBuilder::new(scope.as_str())).finish());
                in_part = 0;
            }
            let key = index.resource_key(netns);
            let attrs = index.attributes(key);
            let origin = index.namespace(key).map(|ns| ns.start_unix_nanos.max(attached_at)).unwrap_or(attached_at);
            let mut rb = builder.resource(attrs);
            let mut out = PointWriter { rb: &mut rb, counters, resource_key: key, origin, now };
            while let Some(row) = rows.next_if(|r| r.netns == netns) {
                in_part += 1;
                match row.value {
                    probes::RowValue::Count(v) => out.point(row.def, row.attrs.into_vec(), v),
                    probes::RowValue::Histogram(h) => out.histogram(row.def, row.attrs.into_vec(), &h),
                    probes::RowValue::Ended => out.ended(row.def, row.attrs.into_vec()),
                }
            }
        }
        counters.end_round();
        builder.finish()
    }
}

/// Points per part of a collection sent ahead of the rest (at ~1 KiB per flow point, a
/// few MiB in flight instead of the whole collection's tens of MiB).
const PART_POINTS: usize = 4096;

fn self_samples(running: &[Running], up: &[ProbeSample], program_stats: bool) -> Vec<ProbeSample> {
    let mut out = up.to_vec();
    for r in running {
        let probe = r.kind.spec().name;
        // Without the kernel's statistics there is nothing to read: no syscall per program.
        if program_stats {
            for (program, (runs, time)) in r.probe.program_stats() {
                let attrs = vec![("probe", probe.to_string()), ("program", program.to_string())];
                out.push(ProbeSample { metric: "podnet.ebpf.program.runs", attributes: attrs.clone(), value: runs as f64 });
                out.push(ProbeSample { metric: "podnet.ebpf.program.run_time", attributes: attrs, value: time.as_secs_f64() });
            }
        }
        let outcomes: BTreeMap<&str, u64> = BTreeMap::from([
            ("sent", r.counters.sent.load(Ordering::Relaxed)),
            ("decode_error", r.counters.decode_errors.load(Ordering::Relaxed)),
            ("lost", r.probe.stat(abi::stat::LOST)),
            ("rate_limited", r.probe.stat(abi::stat::RATE_LIMITED)),
        ]);
        for (outcome, v) in outcomes {
            out.push(ProbeSample {
                metric: "podnet.ebpf.events",
                attributes: vec![("probe", probe.to_string()), ("outcome", outcome.to_string())],
                value: v as f64,
            });
        }
        if r.latency.is_some() {
            let (completed, reclaimed, inflight) = probes::latency_starts(r.kind, &r.probe);
            for (outcome, v) in [("completed", completed), ("reclaimed", reclaimed), ("inflight", inflight)] {
                out.push(ProbeSample {
                    metric: "podnet.ebpf.latency.starts",
                    attributes: vec![("probe", probe.to_string()), ("outcome", outcome.to_string())],
                    value: v as f64,
                });
            }
            out.push(ProbeSample {
                metric: "podnet.ebpf.latency.series_full",
                attributes: vec![("probe", probe.to_string())],
                value: r.probe.stat(abi::stat::SERIES_FULL) as f64,
            });
        }
        if r.kind.spec().flow_map.is_some() {
            out.push(ProbeSample {
                metric: "podnet.ebpf.flows.evicted",
                attributes: vec![("probe", probe.to_string())],
                value: r.flows.evicted as f64,
            });
        }
    }
    out
}

/// Reads one probe's ring buffer: drains it when woken (a batch is waiting) and on every
/// flush tick (fewer than a batch wait without waking anyone), and sends log records on
/// in batches.
struct Pump {
    probe: &'static str,
    hook: &'static str,
    decoder: Arc<Decoder>,
    outputs: Outputs,
    counters: Arc<EventCounters>,
    scope: String,
    flush: Duration,
    shutdown: CancellationToken,
    id: String,
}

impl Pump {
    fn drain(&self, ring: &mut RingBuf<MapData>, batch: &mut LogsBuilder) {
        while let Some(item) = ring.next() {
            match abi::decode(&item) {
                Ok(record) => {
                    let (key, log) = self.decoder.log_record(&record, self.hook);
                    batch.push(key, || self.decoder.resource(key), log);
                }
                Err(e) => {
                    let n = self.counters.decode_errors.fetch_add(1, Ordering::Relaxed);
                    if n == 0 {
                        tracing::warn!(component = %self.id, probe = self.probe, "undecodable event: {e}");
                    }
                }
            }
        }
    }

    async fn send(&self, batch: &mut LogsBuilder) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len();
        self.outputs.send(PData::Logs(batch.take())).await;
        self.counters.sent.fetch_add(n as u64, Ordering::Relaxed);
    }

    async fn run(self, ring: RingBuf<MapData>) {
        // SAFETY: the ring buffer's fd stays open, and the same, for as long as the AsyncFd
        // owns the RingBuf.
        let mut afd = match unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) } {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(component = %self.id, probe = self.probe, "cannot poll the ring buffer: {e}");
                return;
            }
        };
        let mut batch = LogsBuilder::new(&self.scope);
        let mut tick = tokio::time::interval(self.flush);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => {
                    self.drain(afd.get_mut(), &mut batch);
                    self.send(&mut batch).await;
                    return;
                }
                guard = afd.readable_mut() => {
                    match guard {
                        Ok(mut g) => {
                            self.drain(g.get_inner_mut(), &mut batch);
                            g.clear_ready();
                        }
                        Err(e) => {
                            tracing::error!(component = %self.id, probe = self.probe, "ring buffer poll failed: {e}");
                            return;
                        }
                    }
                    if batch.len() >= BATCH_RECORDS {
                        self.send(&mut batch).await;
                    }
                }
                _ = tick.tick() => {
                    self.drain(afd.get_mut(), &mut batch);
                    self.send(&mut batch).await;
                }
            }
        }
    }
}
