//! Exporter `control`: what the on-node investigation tools read (`podnet top`,
//! `podnet events`, through the agent's control socket). It keeps, per pod, the latest value
//! of the counters that say something is wrong (drops by kernel reason, resets, retransmits,
//! listen overflows, conntrack failures, slow socket reads) and the last events, and fans
//! new events out live. The agent adds it to every pipeline itself; its state is process
//! wide ([`tap`]), as the control socket is.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use podnet_pipeline::component::{
    BoxFuture, BuildError, ComponentContext, Exporter, ExporterFactory, Factory, FactoryInfo, Kind, Stability,
};
use podnet_pipeline::fanout::Input;
use podnet_pipeline::kubeskoop_event;
use podnet_pipeline::pdata::{KeyValue, LogRecord, Logs, Metrics, PData, Signal, attr_string, keys, metric, number_value_f64};
use serde::{Deserialize, Serialize};

/// Events kept for `--since` (the oldest go first): kept as records, formatted only when a
/// tool asks, so the agent pays little for a tool nobody runs.
const EVENTS_KEPT: usize = 2_000;

/// A pod as the tools name it; the node itself is `pod: ""`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PodKey {
    pub namespace: String,
    pub pod: String,
}

/// One pod's counters: `counter name/attribute` → cumulative value, and its rate per second
/// between the last two collections that read it (what is wrong *now*).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PodCounters {
    pub key: PodKey,
    pub time_unix_nano: u64,
    pub counters: BTreeMap<String, f64>,
    pub rates: BTreeMap<String, f64>,
    /// Latency histogram → its 99th percentile in nanoseconds over the same window (the
    /// upper bound of the log2 bucket it falls in), when the window saw any.
    pub p99_ns: BTreeMap<String, f64>,
    /// When each counter's latest value was read.
    #[serde(skip)]
    at: BTreeMap<String, u64>,
    /// Each latency histogram's latest cumulative buckets (scale-0 index → count), zero
    /// count and time.
    #[serde(skip)]
    latency: BTreeMap<String, (BTreeMap<i64, u64>, u64, u64)>,
}

/// The latency histograms `podnet top` shows (podnet's eBPF latency probes: scale 0).
const LATENCIES: [&str; 2] = ["podnet.socket.read.delay", "podnet.socket.write.delay"];

/// The upper bound of the log2 bucket holding the 99th percentile of `window` (scale-0
/// index → count, plus `zero` values of 0), or None when it is empty.
fn p99(window: &BTreeMap<i64, u64>, zero: u64) -> Option<f64> {
    let total = zero + window.values().sum::<u64>();
    if total == 0 {
        return None;
    }
    let rank = (total as f64 * 0.99).ceil() as u64;
    let mut seen = zero;
    if seen >= rank {
        return Some(0.0);
    }
    for (index, n) in window {
        seen += n;
        if seen >= rank {
            return Some(2f64.powi((*index + 1) as i32));
        }
    }
    None
}

impl PodCounters {
    fn record_latency(&mut self, name: &str, buckets: BTreeMap<i64, u64>, zero: u64, t: u64) {
        if let Some((prev, prev_zero, t0)) = self.latency.get(name) {
            if t <= *t0 {
                return;
            }
            let window: BTreeMap<i64, u64> =
                buckets.iter().map(|(i, n)| (*i, n.saturating_sub(prev.get(i).copied().unwrap_or(0)))).collect();
            match p99(&window, zero.saturating_sub(*prev_zero)) {
                Some(v) => self.p99_ns.insert(name.to_string(), v),
                None => self.p99_ns.remove(name),
            };
        }
        self.latency.insert(name.to_string(), (buckets, zero, t));
        self.time_unix_nano = self.time_unix_nano.max(t);
    }
}

/// One event as the tools show it, with its two machine forms ready.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub time_unix_nano: u64,
    pub kind: String,
    pub namespace: String,
    pub pod: String,
    pub node: String,
    pub message: String,
    /// KubeSkoop's event line (`{"timestamp","type","labels","msg"}`).
    pub kubeskoop: String,
    /// The record under its resource as an OTLP JSON `ExportLogsServiceRequest`.
    pub otlp_json: String,
}

/// An event as received: its resource's attributes and the record.
pub struct Kept {
    key: PodKey,
    resource: Vec<KeyValue>,
    record: LogRecord,
}

impl Kept {
    pub fn time_unix_nano(&self) -> u64 {
        if self.record.time_unix_nano != 0 { self.record.time_unix_nano } else { self.record.observed_time_unix_nano }
    }

    /// The event as the tools show it.
    pub fn event(&self) -> Event {
        let one = opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest {
            resource_logs: vec![podnet_pipeline::pdata::ResourceLogs {
                resource: Some(podnet_pipeline::pdata::Resource { attributes: self.resource.clone(), ..Default::default() }),
                scope_logs: vec![podnet_pipeline::pdata::ScopeLogs { log_records: vec![self.record.clone()], ..Default::default() }],
                ..Default::default()
            }],
        };
        let rec = &self.record;
        Event {
            time_unix_nano: self.time_unix_nano(),
            kind: if rec.event_name.is_empty() { "Log".into() } else { rec.event_name.clone() },
            namespace: self.key.namespace.clone(),
            pod: self.key.pod.clone(),
            node: attr_string(&self.resource, keys::K8S_NODE_NAME).unwrap_or_default(),
            message: rec.body.as_ref().map(podnet_pipeline::pdata::any_value_to_string).unwrap_or_default(),
            kubeskoop: kubeskoop_event::event_line(&self.resource, rec),
            otlp_json: serde_json::to_string(&one).unwrap_or_default(),
        }
    }
}

pub struct Tap {
    pods: Mutex<BTreeMap<PodKey, PodCounters>>,
    events: Mutex<VecDeque<Arc<Kept>>>,
    live: tokio::sync::broadcast::Sender<Arc<Kept>>,
}

/// The process's tap.
pub fn tap() -> Arc<Tap> {
    static TAP: OnceLock<Arc<Tap>> = OnceLock::new();
    TAP.get_or_init(|| {
        let (live, _) = tokio::sync::broadcast::channel(4096);
        Arc::new(Tap { pods: Mutex::default(), events: Mutex::default(), live })
    })
    .clone()
}

/// Whether the tools follow counter `name`: `Some(None)` as one number, `Some(Some(attr))`
/// split by that attribute (`name/value`), `None` not at all. Asked once per metric, so the
/// many points of metrics nobody shows (flows) cost no more than the name comparison.
fn followed(name: &str) -> Option<Option<&'static str>> {
    match name {
        "podnet.packet.drops" => Some(Some("podnet.drop.reason")),
        "podnet.tcp.resets" => Some(Some("podnet.tcp.reset.kind")),
        "podnet.tcp.retransmits" | "podnet.conntrack.drop" | "podnet.conntrack.insert_failed" | "podnet.conntrack.early_drop" => Some(None),
        n if n.ends_with("listen_overflows") || n.ends_with("listen_drops") => Some(None),
        _ => None,
    }
}

fn pod_key(resource: &[KeyValue]) -> PodKey {
    PodKey {
        namespace: attr_string(resource, keys::K8S_NAMESPACE_NAME).unwrap_or_default(),
        // As KubeSkoop names it: the pod, an `ip netns` name, or "" for the node.
        pod: podnet_pipeline::pdata::kubeskoop_pod(resource),
    }
}

impl Tap {
    pub fn record_metrics(&self, m: &Metrics) {
        let mut pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        for rm in m.resources() {
            let resource: &[KeyValue] = rm.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or(&[]);
            let key = pod_key(resource);
            for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
                if let Some(metric::Data::ExponentialHistogram(h)) = &m.data
                    && LATENCIES.contains(&m.name.as_str())
                {
                    // Every point of the pod (per socket, per state…) in one distribution.
                    let (mut buckets, mut zero, mut t) = (BTreeMap::<i64, u64>::new(), 0u64, 0u64);
                    for dp in h.data_points.iter().filter(|dp| dp.scale == 0) {
                        zero += dp.zero_count;
                        t = t.max(dp.time_unix_nano);
                        if let Some(b) = &dp.positive {
                            for (k, n) in b.bucket_counts.iter().enumerate() {
                                *buckets.entry(i64::from(b.offset) + k as i64).or_default() += n;
                            }
                        }
                    }
                    if t > 0 {
                        let entry = pods.entry(key.clone()).or_insert_with(|| PodCounters { key: key.clone(), ..Default::default() });
                        entry.record_latency(&m.name, buckets, zero, t);
                    }
                    continue;
                }
                let Some(metric::Data::Sum(sum)) = &m.data else { continue };
                let Some(split_by) = followed(&m.name) else { continue };
                // Points of one batch with the same key (several attributes folded) add up.
                let mut batch: BTreeMap<String, (f64, u64)> = BTreeMap::new();
                for dp in &sum.data_points {
                    let k = match split_by {
                        None => m.name.clone(),
                        Some(attr) => format!("{}/{}", m.name, attr_string(&dp.attributes, attr).unwrap_or_else(|| "unknown".into())),
                    };
                    let e = batch.entry(k).or_default();
                    e.0 += number_value_f64(dp);
                    e.1 = e.1.max(dp.time_unix_nano);
                }
                if batch.is_empty() {
                    continue;
                }
                let entry = pods.entry(key.clone()).or_insert_with(|| PodCounters { key: key.clone(), ..Default::default() });
                for (k, (v, t)) in batch {
                    if !v.is_finite() {
                        continue;
                    }
                    if let (Some(&t0), Some(&v0)) = (entry.at.get(&k), entry.counters.get(&k)) {
                        if t <= t0 {
                            // The same collection seen again (the metric in two pipelines).
                            continue;
                        }
                        // A counter that went down restarted (its namespace's probe reloaded).
                        let grown = if v >= v0 { v - v0 } else { v };
                        entry.rates.insert(k.clone(), grown / ((t - t0) as f64 / 1e9));
                    }
                    entry.counters.insert(k.clone(), v);
                    entry.at.insert(k, t);
                    entry.time_unix_nano = entry.time_unix_nano.max(t);
                }
            }
        }
    }

    pub fn record_logs(&self, logs: &Logs) {
        for rl in logs.resources() {
            let resource: &[KeyValue] = rl.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or(&[]);
            let key = pod_key(resource);
            for rec in rl.scope_logs.iter().flat_map(|s| &s.log_records) {
                let event = Arc::new(Kept { key: key.clone(), resource: resource.to_vec(), record: rec.clone() });
                let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
                if events.len() == EVENTS_KEPT {
                    events.pop_front();
                }
                events.push_back(event.clone());
                drop(events);
                // No receiver listening is fine: events are kept for --since.
                let _ = self.live.send(event);
            }
        }
    }

    /// Every pod's latest counters.
    pub fn pods(&self) -> Vec<PodCounters> {
        self.pods.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    /// Kept events at or after `since` (unix nanoseconds).
    pub fn events_since(&self, since: u64) -> Vec<Arc<Kept>> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|e| e.time_unix_nano() >= since).cloned().collect()
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<Kept>> {
        self.live.subscribe()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {}

pub struct ControlExporterFactory;

impl Factory for ControlExporterFactory {
    type Config = ControlConfig;
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "control",
            aliases: &[],
            kind: Kind::Exporter,
            signals: &[Signal::Metrics, Signal::Logs],
            stability: Stability::Alpha,
            description: "The control socket's view (podnet top, podnet events): per-pod counters and live events; added to every pipeline by the agent",
            probes: &[],
        }
    }
}

impl ExporterFactory for ControlExporterFactory {
    fn create(&self, _config: &ControlConfig, ctx: ComponentContext) -> Result<Box<dyn Exporter>, BuildError> {
        Ok(Box::new(ControlExporter { ctx }))
    }
}

struct ControlExporter {
    ctx: ComponentContext,
}

impl Exporter for ControlExporter {
    fn run(self: Box<Self>, mut input: Input) -> BoxFuture {
        Box::pin(async move {
            let tap = tap();
            self.ctx.status.running();
            while let Some(d) = input.next(&self.ctx.shutdown).await {
                match &d {
                    PData::Metrics(m) => tap.record_metrics(m),
                    PData::Logs(l) => tap.record_logs(l),
                }
                self.ctx.telemetry.sent(d.signal(), d.item_count());
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podnet_pipeline::pdata::{Log2Histogram, MetricDef, MetricsBuilder, kv_str};

    const READ: MetricDef = MetricDef::histogram("podnet.socket.read.delay", "", "ns");
    const DROPS: MetricDef = MetricDef::counter("podnet.packet.drops", "", "{packet}");

    fn batch(t: u64, drops: u64, reads: &Log2Histogram) -> Metrics {
        let mut b = MetricsBuilder::new("t");
        let mut r = b.resource(vec![kv_str(keys::K8S_NAMESPACE_NAME, "shop"), kv_str(keys::K8S_POD_NAME, "web")]);
        r.point(&DROPS, vec![kv_str("podnet.drop.reason", "NETFILTER_DROP")], 1, t, drops.into());
        r.histogram(&READ, vec![], 1, t, reads);
        b.finish()
    }

    #[test]
    fn rates_and_the_latency_percentile_cover_the_last_window() {
        let tap = Tap { pods: Mutex::default(), events: Mutex::default(), live: tokio::sync::broadcast::channel(4).0 };
        // 100 reads ≤ 1 µs (bucket 10: 2^9 < v ≤ 2^10 ns) before the window…
        let mut h = Log2Histogram { buckets: vec![0; 24], ..Default::default() };
        h.buckets[10] = 100;
        tap.record_metrics(&batch(1_000_000_000, 10, &h));
        // …then, in a 2 s window, 100 more of them and 5 slow ones (≤ 8.4 ms: bucket 23).
        h.buckets[10] = 200;
        h.buckets[23] = 5;
        tap.record_metrics(&batch(3_000_000_000, 410, &h));
        let pod = &tap.pods()[0];
        assert_eq!(pod.key, PodKey { namespace: "shop".into(), pod: "web".into() });
        assert_eq!(pod.rates["podnet.packet.drops/NETFILTER_DROP"], 200.0, "400 drops in 2 s");
        assert_eq!(pod.p99_ns["podnet.socket.read.delay"], 2f64.powi(23), "5 of 105 in the window are slow: p99 is theirs");
        // A window without reads has no percentile.
        tap.record_metrics(&batch(5_000_000_000, 410, &h));
        assert!(tap.pods()[0].p99_ns.is_empty());
        assert_eq!(tap.pods()[0].rates["podnet.packet.drops/NETFILTER_DROP"], 0.0);
    }
}
