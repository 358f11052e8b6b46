//! Ring buffer records to OTel log records: the event type as the record's event name,
//! the kernel's timestamp, the namespace's resource (so `k8s_attributes` can name the
//! pod) and the tuple, reasons, state and stack as attributes.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use podnet_netns::{Namespace, NamespaceSource};
use podnet_pipeline::pdata::{AnyValue, KeyValue, LogRecord, any_value, keys, kv_int, kv_str, now_unix_nanos};

use crate::abi::{self, EventKind, Record};
use crate::kallsyms::Symbols;
use crate::latency;
use crate::probes::{self, Reasons};

/// The slow interval, in nanoseconds.
pub const LATENCY: &str = "podnet.latency";
/// How the probe that measured it is attached: tp_btf, tracepoint, kprobe.
pub const HOOK: &str = "podnet.probe.hook";
pub const PROCESS_PID: &str = "process.pid";
pub const PROCESS_NAME: &str = "process.executable.name";
pub const CPU: &str = "cpu.logical_number";

/// Network namespace inode → its resource, refreshed when an unknown inode shows up
/// (at most once a second: a storm from a namespace that just vanished must not turn
/// into a storm of /proc scans).
pub struct NamespaceIndex {
    source: NamespaceSource,
    node: String,
    by_inode: HashMap<u64, Namespace>,
    host: Option<Namespace>,
    refreshed: Option<Instant>,
}

impl NamespaceIndex {
    pub fn new(source: NamespaceSource, node: String) -> NamespaceIndex {
        NamespaceIndex { source, node, by_inode: HashMap::new(), host: None, refreshed: None }
    }

    pub fn refresh(&mut self) -> Result<(), String> {
        self.refreshed = Some(Instant::now());
        let list = self.source.list()?;
        self.by_inode = list.iter().map(|ns| (ns.inode, ns.clone())).collect();
        self.host = list.iter().find(|ns| ns.is_host).cloned();
        Ok(())
    }

    pub fn contains(&self, inode: u32) -> bool {
        self.by_inode.contains_key(&u64::from(inode))
    }

    pub fn namespace(&self, inode: u64) -> Option<&Namespace> {
        self.by_inode.get(&inode)
    }

    pub fn host(&self) -> Option<&Namespace> {
        self.host.as_ref()
    }

    /// The resource key of `inode`: the namespace's inode, the host's for inode 0 (a packet
    /// with neither device nor socket is node level). An inode no scan knows triggers a
    /// rescan (at most once a second) and otherwise keeps a resource of its own.
    pub fn resource_key(&mut self, inode: u32) -> u64 {
        let inode = u64::from(inode);
        if inode != 0 && !self.by_inode.contains_key(&inode) && self.refreshed.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            let _ = self.refresh();
        }
        match (inode, &self.host) {
            (0, Some(host)) => host.inode,
            _ => inode,
        }
    }

    /// The attributes of the resource keyed `key` (from [`NamespaceIndex::resource_key`]).
    pub fn attributes(&self, key: u64) -> Vec<KeyValue> {
        match self.by_inode.get(&key) {
            Some(ns) => ns.resource_attributes(&self.node),
            None => vec![kv_str(keys::K8S_NODE_NAME, self.node.clone()), kv_int(keys::NETNS_INODE, key as i64)],
        }
    }
}

/// Turns records into log records; shared by a receiver's ring buffer readers.
pub struct Decoder {
    pub reasons: Reasons,
    pub kallsyms: Option<Symbols>,
    /// CLOCK_REALTIME − CLOCK_MONOTONIC, to turn bpf_ktime_get_ns() into wall time.
    pub boot_offset_nanos: i128,
    pub namespaces: Mutex<NamespaceIndex>,
}

/// CLOCK_REALTIME − CLOCK_MONOTONIC now.
pub fn monotonic_to_realtime_offset() -> i128 {
    let read = |clock| {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes into the timespec we own.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
    };
    let mono = read(libc::CLOCK_MONOTONIC);
    let real = read(libc::CLOCK_REALTIME);
    real - mono
}

/// Frames of the probe itself and the tracing glue that called it: not the kernel's path.
fn is_tracing_frame(symbol: &str) -> bool {
    ["bpf_prog_", "bpf_trace_run", "__bpf_trace_", "__traceiter_", "bpf_trampoline_"].iter().any(|p| symbol.starts_with(p))
}

impl Decoder {
    /// All frames, innermost first, one per line as `symbol+0xOFFSET` (KubeSkoop's
    /// spelling), starting at the kernel function that hit the hook.
    pub fn stack(&self, addrs: &[u64]) -> String {
        let resolved = self.kallsyms.as_ref().map(|k| k.resolve_all(addrs)).unwrap_or_default();
        let frames: Vec<String> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| resolved.get(i).cloned().flatten().unwrap_or_else(|| format!("0x{a:x}")))
            .skip_while(|f| is_tracing_frame(f))
            .collect();
        frames.join("\n")
    }

    /// The log record of one event, and its resource key (attributes: [`Decoder::resource`]).
    /// `hook` names how the probe attached (tp_btf, tracepoint, kprobe).
    pub fn log_record(&self, r: &Record, hook: &'static str) -> (u64, LogRecord) {
        let e = &r.event;
        let kind = EventKind::from_raw(e.kind).unwrap_or(EventKind::Drop);
        if e.is_latency() {
            return self.latency_record(e, kind, hook);
        }
        let mut attrs = Vec::with_capacity(14);
        let addr = |a: &[u8; 16]| abi::ip(e.family, a).map(|ip| ip.to_string()).unwrap_or_default();
        let (src, dst) = (addr(&e.saddr), addr(&e.daddr));
        let transport = podnet_pipeline::pdata::network_transport(e.l4proto);
        let mut summary = String::with_capacity(160);
        let _ = write!(summary, "protocol={} saddr={src} sport={} daddr={dst} dport={}", transport.to_uppercase(), e.sport, e.dport);
        attrs.push(kv_str(probes::NETWORK_TRANSPORT, transport));
        if e.family == abi::AF_INET || e.family == abi::AF_INET6 {
            attrs.push(kv_str(probes::NETWORK_TYPE, if e.family == abi::AF_INET6 { "ipv6" } else { "ipv4" }));
            attrs.push(kv_str(probes::SOURCE_ADDRESS, src));
            attrs.push(kv_int(probes::SOURCE_PORT, i64::from(e.sport)));
            attrs.push(kv_str(probes::DESTINATION_ADDRESS, dst));
            attrs.push(kv_int(probes::DESTINATION_PORT, i64::from(e.dport)));
        }
        match kind {
            EventKind::Drop => {
                let reason = self.reasons.drop.name(e.reason);
                let _ = write!(summary, " reason={reason}");
                attrs.push(kv_str(probes::DROP_REASON, reason));
                if let Some(sym) = self.kallsyms.as_ref().and_then(|k| k.resolve(e.location)) {
                    let _ = write!(summary, " location={sym}");
                    attrs.push(kv_str(probes::DROP_LOCATION, sym));
                }
            }
            EventKind::ResetNosock | EventKind::ResetActive | EventKind::ResetProcess | EventKind::ResetReceive => {
                attrs.push(kv_str(probes::RESET_KIND, kind.reset_kind()));
                if let Some(names) = self.reasons.reset.as_ref().filter(|_| kind != EventKind::ResetReceive) {
                    let reason = names.name(e.reason);
                    let _ = write!(summary, " reason={reason}");
                    attrs.push(kv_str(probes::RESET_REASON, reason));
                }
            }
            // Latency kinds are written by latency_record.
            _ => {}
        }
        if e.state != 0 {
            let state = abi::tcp_state(e.state);
            let _ = write!(summary, " state={state}");
            attrs.push(kv_str(keys::NETWORK_CONNECTION_STATE, state));
        }
        if !r.stack.is_empty() {
            attrs.push(kv_str(probes::STACKTRACE, self.stack(&r.stack)));
        }
        let observed = now_unix_nanos();
        let time = (i128::from(e.ts_ns) + self.boot_offset_nanos).clamp(0, i128::from(u64::MAX)) as u64;
        let record = LogRecord {
            time_unix_nano: time,
            observed_time_unix_nano: observed,
            severity_number: 13, // WARN: each of these is something going wrong
            severity_text: "WARN".into(),
            body: Some(AnyValue { value: Some(any_value::Value::StringValue(summary)) }),
            attributes: attrs,
            event_name: kind.kubeskoop_type(false).to_string(),
            ..Default::default()
        };
        let key = self.namespaces.lock().unwrap_or_else(|e| e.into_inner()).resource_key(e.netns);
        (key, record)
    }

    /// A slow interval: the latency, what it is about (tuple, softirq type, device, disk,
    /// task) and the hook that measured it; the body is KubeSkoop's message for the type.
    fn latency_record(&self, e: &abi::Event, kind: EventKind, hook: &'static str) -> (u64, LogRecord) {
        let mut attrs = Vec::with_capacity(12);
        let latency = e.latency_ns;
        attrs.push(kv_int(LATENCY, i64::try_from(latency).unwrap_or(i64::MAX)));
        attrs.push(kv_str(HOOK, hook));
        let ht = latency::human_time(latency);
        let has_tuple = e.family == abi::AF_INET || e.family == abi::AF_INET6;
        let tuple = if has_tuple {
            let addr = |a: &[u8; 16]| abi::ip(e.family, a).map(|ip| ip.to_string()).unwrap_or_default();
            let (src, dst) = (addr(&e.saddr), addr(&e.daddr));
            let transport = podnet_pipeline::pdata::network_transport(e.l4proto);
            let text = format!(
                "protocol={} saddr={src} sport={} daddr={dst} dport={} ",
                transport.to_uppercase().replace("ICMPV6", "ICMP6"),
                e.sport,
                e.dport
            );
            attrs.push(kv_str(probes::NETWORK_TRANSPORT, transport));
            attrs.push(kv_str(probes::NETWORK_TYPE, if e.family == abi::AF_INET6 { "ipv6" } else { "ipv4" }));
            attrs.push(kv_str(probes::SOURCE_ADDRESS, src));
            attrs.push(kv_int(probes::SOURCE_PORT, i64::from(e.sport)));
            attrs.push(kv_str(probes::DESTINATION_ADDRESS, dst));
            attrs.push(kv_int(probes::DESTINATION_PORT, i64::from(e.dport)));
            text
        } else {
            String::new()
        };
        let name = e.name();
        let task = |attrs: &mut Vec<KeyValue>| {
            if e.pid != 0 {
                attrs.push(kv_int(PROCESS_PID, i64::from(e.pid)));
                attrs.push(kv_str(PROCESS_NAME, name.clone()));
            }
        };
        let body = match kind {
            EventKind::RxKernel | EventKind::NetifQdisc | EventKind::NetifXmit => format!("{tuple} latency:{ht}"),
            EventKind::TxKernel | EventKind::SockRead | EventKind::SockWrite => format!("{tuple} latency={ht}"),
            EventKind::SoftirqSched | EventKind::SoftirqExec => {
                format!("cpu={} pid={} latency={ht} ", e.cpu, e.pid)
            }
            EventKind::Virtcmd => format!("cpu={}  pid={}  latency={ht}", e.cpu, e.pid),
            EventKind::Bio => format!("{name} {} latency {ht}", e.pid),
            _ => String::new(),
        };
        match kind {
            EventKind::NetifQdisc | EventKind::NetifXmit => attrs.push(kv_str(latency::INTERFACE, name.clone())),
            EventKind::SoftirqSched | EventKind::SoftirqExec => {
                attrs.push(kv_str(latency::SOFTIRQ_TYPE, latency::softirq_name(e.detail)));
                attrs.push(kv_int(CPU, i64::from(e.cpu)));
                task(&mut attrs);
            }
            EventKind::Virtcmd => {
                attrs.push(kv_int(CPU, i64::from(e.cpu)));
                task(&mut attrs);
            }
            EventKind::Bio => {
                attrs.push(kv_str(latency::DEVICE, format!("{}:{}", e.detail >> 20, e.detail & 0xfffff)));
                task(&mut attrs);
            }
            EventKind::SockRead => task(&mut attrs),
            _ => {}
        }
        let time = (i128::from(e.ts_ns) + self.boot_offset_nanos).clamp(0, i128::from(u64::MAX)) as u64;
        let record = LogRecord {
            time_unix_nano: time,
            observed_time_unix_nano: now_unix_nanos(),
            severity_number: 13,
            severity_text: "WARN".into(),
            body: Some(AnyValue { value: Some(any_value::Value::StringValue(body)) }),
            attributes: attrs,
            event_name: kind.kubeskoop_type(e.reason != 0).to_string(),
            ..Default::default()
        };
        let key = self.namespaces.lock().unwrap_or_else(|e| e.into_inner()).resource_key(e.netns);
        (key, record)
    }

    /// The resource attributes for a resource key (built once per batch and namespace).
    pub fn resource(&self, key: u64) -> Vec<KeyValue> {
        self.namespaces.lock().unwrap_or_else(|e| e.into_inner()).attributes(key)
    }
}
