//! Pipeline data: OTLP proto messages in a cheap-to-clone envelope, plus the builders
//! receivers use to write one line per data point.
//!
//! Payloads sit behind an `Arc` so that fan-out to several consumers costs a pointer copy;
//! a processor that edits data calls `resources_mut`, which copies only when the payload is
//! still shared (the Collector's "clone for mutating consumers" rule, done by `Arc::make_mut`).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
pub use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
pub use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
pub use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
pub use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum, Summary, SummaryDataPoint, exponential_histogram_data_point, metric, number_data_point, summary_data_point,
};
pub use opentelemetry_proto::tonic::resource::v1::Resource;

/// Resource and metric attribute keys podnet writes. OTel semantic-convention names where one
/// exists; `podnet.*` for what conventions do not cover.
pub mod keys {
    pub const K8S_NODE_NAME: &str = "k8s.node.name";
    pub const K8S_NAMESPACE_NAME: &str = "k8s.namespace.name";
    pub const K8S_POD_NAME: &str = "k8s.pod.name";
    pub const K8S_POD_UID: &str = "k8s.pod.uid";
    pub const HOST_NAME: &str = "host.name";
    /// Inode of the network namespace a resource describes: the key the k8s_attributes
    /// processor uses to find the pod.
    pub const NETNS_INODE: &str = "podnet.netns.inode";
    /// `true` on the resource of the host (node-level) network namespace.
    pub const NETNS_HOST: &str = "podnet.netns.host";
    /// The namespace's `ip netns` name, when it has one.
    pub const NETNS_NAME: &str = "podnet.netns.name";
    pub const NETWORK_IO_DIRECTION: &str = "network.io.direction";
    pub const NETWORK_INTERFACE_NAME: &str = "network.interface.name";
    pub const NETWORK_CONNECTION_STATE: &str = "network.connection.state";
    /// Comma-separated resource attributes that `kubeskoop` naming adds as labels after
    /// `k8s_pod` (KubeSkoop's `additionalLabels`, extracted pod labels).
    pub const KUBESKOOP_LABELS: &str = "podnet.kubeskoop.labels";
    /// A flow's or event's addresses (OTel semantic conventions).
    pub const SOURCE_ADDRESS: &str = "source.address";
    pub const DESTINATION_ADDRESS: &str = "destination.address";
    /// Who a flow's peers are, from the IP identity cache (`pod`, `node`, `service`,
    /// `unknown`). The conventions have no names for a peer's Kubernetes identity: these
    /// are podnet's, `source.`/`destination.` followed by the resource attribute's name.
    pub const SOURCE_TYPE: &str = "podnet.source.type";
    pub const SOURCE_NODE: &str = "source.k8s.node.name";
    pub const SOURCE_NAMESPACE: &str = "source.k8s.namespace.name";
    pub const SOURCE_POD: &str = "source.k8s.pod.name";
    pub const SOURCE_SERVICE: &str = "source.k8s.service.name";
    pub const DESTINATION_TYPE: &str = "podnet.destination.type";
    pub const DESTINATION_NODE: &str = "destination.k8s.node.name";
    pub const DESTINATION_NAMESPACE: &str = "destination.k8s.namespace.name";
    pub const DESTINATION_POD: &str = "destination.k8s.pod.name";
    pub const DESTINATION_SERVICE: &str = "destination.k8s.service.name";
}

/// `network.transport` (OTel, lowercase) for an IP protocol number, as the eBPF probes and
/// conntrack events report it.
pub fn network_transport(l4proto: u8) -> &'static str {
    match l4proto {
        6 => "tcp",
        17 => "udp",
        1 => "icmp",
        58 => "icmpv6",
        _ => "ip",
    }
}

/// Metric metadata keys carrying the KubeSkoop name of a metric, read by exporters in
/// `kubeskoop` naming mode. See [`KubeskoopName`].
pub mod kubeskoop_meta {
    /// The full Prometheus name (`kubeskoop_netdev_rxbytes`) when the metric maps 1:1.
    pub const NAME: &str = "podnet.kubeskoop.name";
    /// The data-point attribute whose value selects the name (`network.io.direction`).
    pub const SPLIT_BY: &str = "podnet.kubeskoop.split_by";
    /// Prefix of `<prefix><attribute value>` keys holding the name for that value.
    pub const NAME_FOR: &str = "podnet.kubeskoop.name.";
    /// Prefix of `<prefix><attribute key>` keys holding the KubeSkoop label for that
    /// attribute (`source.address` → `src`).
    pub const LABEL_FOR: &str = "podnet.kubeskoop.label.";
}

/// The signal a pipeline carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    Metrics,
    Logs,
}

impl Signal {
    pub const ALL: [Signal; 2] = [Signal::Metrics, Signal::Logs];

    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A batch of metrics: one `ResourceMetrics` per network namespace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics(Arc<Vec<ResourceMetrics>>);

impl Metrics {
    pub fn new(resources: Vec<ResourceMetrics>) -> Self {
        Metrics(Arc::new(resources))
    }
    pub fn resources(&self) -> &[ResourceMetrics] {
        &self.0
    }
    /// Mutable access; copies the payload first if another consumer still shares it.
    pub fn resources_mut(&mut self) -> &mut Vec<ResourceMetrics> {
        Arc::make_mut(&mut self.0)
    }
    pub fn point_count(&self) -> usize {
        self.0.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics).map(metric_point_count).sum()
    }
    pub fn to_request(&self) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest { resource_metrics: self.0.as_ref().clone() }
    }
}

/// A batch of log records (events): one `ResourceLogs` per network namespace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Logs(Arc<Vec<ResourceLogs>>);

impl Logs {
    pub fn new(resources: Vec<ResourceLogs>) -> Self {
        Logs(Arc::new(resources))
    }
    pub fn resources(&self) -> &[ResourceLogs] {
        &self.0
    }
    pub fn resources_mut(&mut self) -> &mut Vec<ResourceLogs> {
        Arc::make_mut(&mut self.0)
    }
    pub fn record_count(&self) -> usize {
        self.0.iter().flat_map(|r| &r.scope_logs).map(|s| s.log_records.len()).sum()
    }
    pub fn to_request(&self) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest { resource_logs: self.0.as_ref().clone() }
    }
}

/// What flows between components.
#[derive(Clone, Debug, PartialEq)]
pub enum PData {
    Metrics(Metrics),
    Logs(Logs),
}

impl PData {
    pub fn signal(&self) -> Signal {
        match self {
            PData::Metrics(_) => Signal::Metrics,
            PData::Logs(_) => Signal::Logs,
        }
    }
    /// Data points for metrics, records for logs: the unit of the self-telemetry counters.
    pub fn item_count(&self) -> usize {
        match self {
            PData::Metrics(m) => m.point_count(),
            PData::Logs(l) => l.record_count(),
        }
    }
}

pub fn metric_point_count(m: &Metric) -> usize {
    match &m.data {
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Histogram(h)) => h.data_points.len(),
        Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(metric::Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

pub fn now_unix_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days, proleptic Gregorian).
pub fn format_rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

// ---------------------------------------------------------------------------------------------
// Attributes

pub fn kv_str(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
        ..Default::default()
    }
}
pub fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue { key: key.to_string(), value: Some(AnyValue { value: Some(any_value::Value::IntValue(value)) }), ..Default::default() }
}
pub fn kv_bool(key: &str, value: bool) -> KeyValue {
    KeyValue { key: key.to_string(), value: Some(AnyValue { value: Some(any_value::Value::BoolValue(value)) }), ..Default::default() }
}

/// The value of `key` rendered as a string (ints and bools included), if present.
/// A string attribute's value, borrowed (no copy; `None` for other types).
pub fn attr_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attrs.iter().find(|kv| kv.key == key)?.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

/// An integer attribute's value.
pub fn attr_int(attrs: &[KeyValue], key: &str) -> Option<i64> {
    match attrs.iter().find(|kv| kv.key == key)?.value.as_ref()?.value.as_ref()? {
        any_value::Value::IntValue(i) => Some(*i),
        _ => None,
    }
}

pub fn attr_string(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()).map(any_value_to_string)
}

pub fn any_value_to_string(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::BytesValue(b)) => b.iter().map(|x| format!("{x:02x}")).collect(),
        Some(any_value::Value::ArrayValue(a)) => {
            let parts: Vec<String> = a.values.iter().map(any_value_to_string).collect();
            format!("[{}]", parts.join(","))
        }
        Some(any_value::Value::KvlistValue(l)) => {
            let parts: Vec<String> = l
                .values
                .iter()
                .map(|kv| format!("{}={}", kv.key, kv.value.as_ref().map(any_value_to_string).unwrap_or_default()))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Some(any_value::Value::StringValueStrindex(i)) => i.to_string(),
        None => String::new(),
    }
}

/// KubeSkoop's `k8s_pod`: the pod's name; `""` at node level (the host namespace, or data
/// with no namespace); for a namespace no pod source knows, its `ip netns` name or
/// `netns-<inode>`, so it keeps series of its own instead of being dropped (as KubeSkoop
/// does) or merged into the node's.
pub fn kubeskoop_pod(attrs: &[KeyValue]) -> String {
    if let Some(pod) = attr_string(attrs, keys::K8S_POD_NAME) {
        return pod;
    }
    let is_host = attr_string(attrs, keys::NETNS_HOST).as_deref() == Some("true");
    match attr_string(attrs, keys::NETNS_INODE) {
        Some(inode) if !is_host => attr_string(attrs, keys::NETNS_NAME).unwrap_or_else(|| format!("netns-{inode}")),
        _ => String::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Metric definitions and builders

/// How a metric's values behave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Cumulative monotonic sum: a kernel counter.
    Counter,
    /// Cumulative non-monotonic sum.
    UpDownCounter,
    /// A current value (connections, queue bytes).
    Gauge,
    /// A cumulative distribution with base-2 buckets (OTLP exponential histogram): latencies
    /// bucketed in the kernel.
    Histogram,
}

/// The KubeSkoop Prometheus name(s) of a metric, so `kubeskoop` naming mode reproduces
/// KubeSkoop exactly while OTLP users see one semantic-convention metric.
#[derive(Clone, Copy, Debug)]
pub enum KubeskoopName {
    /// One OTel metric, one KubeSkoop metric.
    Same(&'static str),
    /// One OTel metric whose attribute value picks the KubeSkoop metric
    /// (`system.network.io{network.io.direction=receive}` → `kubeskoop_netdev_rxbytes`).
    /// The attribute is not exported as a label in kubeskoop mode.
    SplitBy { attribute: &'static str, names: &'static [(&'static str, &'static str)] },
    /// `SplitBy`, with KubeSkoop's own names for the remaining attributes
    /// (`podnet.softirq.type` → `softirq_type`).
    SplitByRelabeled {
        attribute: &'static str,
        names: &'static [(&'static str, &'static str)],
        labels: &'static [(&'static str, &'static str)],
    },
    /// One KubeSkoop metric whose labels have KubeSkoop's own names:
    /// (attribute key, label name) pairs, e.g. flow tuples (`source.address` → `src`).
    Relabeled { name: &'static str, labels: &'static [(&'static str, &'static str)] },
}

/// A `&'static str` for a name built at run time (a metric named after a kernel field).
/// Each distinct string is stored once for the life of the process; callers intern only
/// names from bounded sets (the kernel's counter fields), never per-packet values.
pub fn intern(s: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(existing) = names.get(s) {
        return existing;
    }
    let leaked: &'static str = Box::leak(s.to_string().into_boxed_str());
    names.insert(leaked);
    leaked
}

/// The static description of one metric a receiver produces.
#[derive(Clone, Copy, Debug)]
pub struct MetricDef {
    pub name: &'static str,
    pub description: &'static str,
    /// UCUM unit (`By`, `{packet}`, `s`).
    pub unit: &'static str,
    pub kind: MetricKind,
    pub kubeskoop: Option<KubeskoopName>,
}

impl MetricDef {
    pub const fn counter(name: &'static str, description: &'static str, unit: &'static str) -> Self {
        MetricDef { name, description, unit, kind: MetricKind::Counter, kubeskoop: None }
    }
    pub const fn gauge(name: &'static str, description: &'static str, unit: &'static str) -> Self {
        MetricDef { name, description, unit, kind: MetricKind::Gauge, kubeskoop: None }
    }
    pub const fn histogram(name: &'static str, description: &'static str, unit: &'static str) -> Self {
        MetricDef { name, description, unit, kind: MetricKind::Histogram, kubeskoop: None }
    }
    /// The metric's KubeSkoop name, when it maps 1:1.
    pub const fn kubeskoop(self, name: &'static str) -> Self {
        MetricDef { kubeskoop: Some(KubeskoopName::Same(name)), ..self }
    }

    fn empty_metric(&self) -> Metric {
        let mut metadata = Vec::new();
        match self.kubeskoop {
            Some(KubeskoopName::Same(name)) => metadata.push(kv_str(kubeskoop_meta::NAME, name)),
            Some(KubeskoopName::Relabeled { name, labels }) => {
                metadata.push(kv_str(kubeskoop_meta::NAME, name));
                for (key, label) in labels {
                    metadata.push(kv_str(&format!("{}{key}", kubeskoop_meta::LABEL_FOR), *label));
                }
            }
            Some(KubeskoopName::SplitBy { attribute, names }) => {
                metadata.push(kv_str(kubeskoop_meta::SPLIT_BY, attribute));
                for (value, name) in names {
                    metadata.push(kv_str(&format!("{}{value}", kubeskoop_meta::NAME_FOR), *name));
                }
            }
            Some(KubeskoopName::SplitByRelabeled { attribute, names, labels }) => {
                metadata.push(kv_str(kubeskoop_meta::SPLIT_BY, attribute));
                for (value, name) in names {
                    metadata.push(kv_str(&format!("{}{value}", kubeskoop_meta::NAME_FOR), *name));
                }
                for (key, label) in labels {
                    metadata.push(kv_str(&format!("{}{key}", kubeskoop_meta::LABEL_FOR), *label));
                }
            }
            None => {}
        }
        let data = match self.kind {
            MetricKind::Counter | MetricKind::UpDownCounter => metric::Data::Sum(Sum {
                data_points: Vec::new(),
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: self.kind == MetricKind::Counter,
            }),
            MetricKind::Gauge => metric::Data::Gauge(Gauge { data_points: Vec::new() }),
            MetricKind::Histogram => metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: Vec::new(),
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            }),
        };
        Metric {
            name: self.name.to_string(),
            description: self.description.to_string(),
            unit: self.unit.to_string(),
            metadata,
            data: Some(data),
        }
    }
}

/// Builds a batch of log records (events), one resource per network namespace: records
/// with the same `resource_key` share a resource, whatever order they come in.
pub struct LogsBuilder {
    scope: InstrumentationScope,
    resources: Vec<ResourceLogs>,
    index: std::collections::HashMap<u64, usize>,
    records: usize,
}

impl LogsBuilder {
    pub fn new(scope: &str) -> Self {
        LogsBuilder {
            scope: InstrumentationScope { name: scope.to_string(), version: env!("CARGO_PKG_VERSION").to_string(), ..Default::default() },
            resources: Vec::new(),
            index: std::collections::HashMap::new(),
            records: 0,
        }
    }

    /// Adds `record` under the resource keyed `resource_key`; `attributes` is called only
    /// for the first record of a resource.
    pub fn push(&mut self, resource_key: u64, attributes: impl FnOnce() -> Vec<KeyValue>, record: LogRecord) {
        let i = *self.index.entry(resource_key).or_insert_with(|| {
            self.resources.push(ResourceLogs {
                resource: Some(Resource { attributes: attributes(), ..Default::default() }),
                scope_logs: vec![ScopeLogs { scope: Some(self.scope.clone()), ..Default::default() }],
                schema_url: String::new(),
            });
            self.resources.len() - 1
        });
        self.resources[i].scope_logs[0].log_records.push(record);
        self.records += 1;
    }

    pub fn len(&self) -> usize {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The batch so far; the builder starts over empty.
    pub fn take(&mut self) -> Logs {
        self.index.clear();
        self.records = 0;
        Logs::new(std::mem::take(&mut self.resources))
    }
}

/// Builds the metrics of one collection: `resource(..)` starts a network namespace,
/// then one `point(..)` call per data point.
pub struct MetricsBuilder {
    scope: InstrumentationScope,
    resources: Vec<ResourceMetrics>,
}

impl MetricsBuilder {
    /// `scope` names the producing component, e.g. `podnet/receiver/procfs`.
    pub fn new(scope: &str) -> Self {
        MetricsBuilder {
            scope: InstrumentationScope { name: scope.to_string(), version: env!("CARGO_PKG_VERSION").to_string(), ..Default::default() },
            resources: Vec::new(),
        }
    }

    /// Starts (or continues) the resource with exactly these attributes.
    pub fn resource(&mut self, attributes: Vec<KeyValue>) -> ResourceMetricsBuilder<'_> {
        // Receivers write a resource's points together: try the newest resource first.
        let same = |r: &ResourceMetrics| r.resource.as_ref().map(|x| &x.attributes) == Some(&attributes);
        let found = match self.resources.last() {
            Some(last) if same(last) => Some(self.resources.len() - 1),
            _ => self.resources.iter().position(same),
        };
        let index = match found {
            Some(i) => i,
            None => {
                self.resources.push(ResourceMetrics {
                    resource: Some(Resource { attributes, ..Default::default() }),
                    scope_metrics: vec![ScopeMetrics { scope: Some(self.scope.clone()), ..Default::default() }],
                    schema_url: String::new(),
                });
                self.resources.len() - 1
            }
        };
        ResourceMetricsBuilder { scope: &mut self.resources[index].scope_metrics[0] }
    }

    /// Removes a resource started earlier (a namespace that vanished mid-collection).
    pub fn drop_resource(&mut self, attributes: &[KeyValue]) {
        self.resources.retain(|r| r.resource.as_ref().map(|x| x.attributes.as_slice()) != Some(attributes));
    }

    pub fn is_empty(&self) -> bool {
        self.resources.iter().all(|r| r.scope_metrics.iter().all(|s| s.metrics.is_empty()))
    }

    pub fn finish(self) -> Metrics {
        Metrics::new(self.resources.into_iter().filter(|r| r.scope_metrics.iter().any(|s| !s.metrics.is_empty())).collect())
    }
}

pub struct ResourceMetricsBuilder<'a> {
    scope: &'a mut ScopeMetrics,
}

impl ResourceMetricsBuilder<'_> {
    fn metric(&mut self, def: &MetricDef) -> &mut Metric {
        // Points of one metric usually come together: try the newest metric first.
        let found = match self.scope.metrics.last() {
            Some(last) if last.name == def.name => Some(self.scope.metrics.len() - 1),
            _ => self.scope.metrics.iter().rposition(|m| m.name == def.name),
        };
        match found {
            Some(i) => &mut self.scope.metrics[i],
            None => {
                self.scope.metrics.push(def.empty_metric());
                self.scope.metrics.last_mut().expect("just pushed")
            }
        }
    }

    /// Adds one data point. `start_unix_nanos` is ignored for gauges.
    /// Marks the end of a series: a point with no recorded value.
    pub fn ended(&mut self, def: &MetricDef, attributes: Vec<KeyValue>, time_unix_nanos: u64) {
        let metric = self.metric(def);
        let dp = NumberDataPoint { attributes, time_unix_nano: time_unix_nanos, flags: NO_RECORDED_VALUE, ..Default::default() };
        match &mut metric.data {
            Some(metric::Data::Sum(s)) => s.data_points.push(dp),
            Some(metric::Data::Gauge(g)) => g.data_points.push(dp),
            _ => debug_assert!(false, "{} is a histogram: series end only for numbers", def.name),
        }
    }

    pub fn point(&mut self, def: &MetricDef, attributes: Vec<KeyValue>, start_unix_nanos: u64, time_unix_nanos: u64, value: Value) {
        let metric = self.metric(def);
        let mut dp = NumberDataPoint {
            attributes,
            start_time_unix_nano: start_unix_nanos,
            time_unix_nano: time_unix_nanos,
            value: Some(value.into()),
            ..Default::default()
        };
        match &mut metric.data {
            Some(metric::Data::Sum(s)) => s.data_points.push(dp),
            Some(metric::Data::Gauge(g)) => {
                dp.start_time_unix_nano = 0;
                g.data_points.push(dp)
            }
            // A histogram definition given a number: a receiver bug, not worth a panic.
            _ => debug_assert!(false, "{} is a histogram: use histogram()", def.name),
        }
    }

    /// Adds one histogram data point (`def` must be a [`MetricKind::Histogram`]).
    pub fn histogram(
        &mut self,
        def: &MetricDef,
        attributes: Vec<KeyValue>,
        start_unix_nanos: u64,
        time_unix_nanos: u64,
        h: &Log2Histogram,
    ) {
        let metric = self.metric(def);
        if let Some(metric::Data::ExponentialHistogram(e)) = &mut metric.data {
            e.data_points.push(h.data_point(attributes, start_unix_nanos, time_unix_nanos));
        } else {
            debug_assert!(false, "{} is not a histogram", def.name);
        }
    }
}

/// A distribution in base-2 buckets as the kernel keeps it: `buckets[i]` counts values `v`
/// with 2^(i-1) < v ≤ 2^i (so `buckets[0]` counts v = 1), `zero` counts v = 0. These are
/// exactly the buckets of an OTLP exponential histogram at scale 0 (bucket index i-1), and
/// their upper bounds are inclusive, as Prometheus' `le` is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Log2Histogram {
    pub zero: u64,
    pub buckets: Vec<u64>,
    pub sum: f64,
}

impl Log2Histogram {
    pub fn count(&self) -> u64 {
        self.zero.saturating_add(self.buckets.iter().fold(0u64, |a, b| a.saturating_add(*b)))
    }

    /// The OTLP point: scale 0, only the populated range of buckets (cumulative counts only
    /// grow, so the range only widens from one collection to the next).
    pub fn data_point(&self, attributes: Vec<KeyValue>, start: u64, time: u64) -> ExponentialHistogramDataPoint {
        let first = self.buckets.iter().position(|c| *c != 0);
        let last = self.buckets.iter().rposition(|c| *c != 0);
        let positive = match (first, last) {
            (Some(f), Some(l)) => {
                Some(exponential_histogram_data_point::Buckets { offset: f as i32 - 1, bucket_counts: self.buckets[f..=l].to_vec() })
            }
            _ => None,
        };
        ExponentialHistogramDataPoint {
            attributes,
            start_time_unix_nano: start,
            time_unix_nano: time,
            count: self.count(),
            sum: Some(self.sum),
            scale: 0,
            zero_count: self.zero,
            positive,
            negative: None,
            ..Default::default()
        }
    }
}

/// A data point value: kernel counters are integers; some gauges are not.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Int(i64),
    Double(f64),
}

impl From<Value> for number_data_point::Value {
    fn from(v: Value) -> Self {
        match v {
            Value::Int(i) => number_data_point::Value::AsInt(i),
            Value::Double(d) => number_data_point::Value::AsDouble(d),
        }
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        // OTLP ints are signed; a kernel counter past i64::MAX is not reachable in practice,
        // and clamping keeps it monotonic instead of wrapping negative.
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

/// OTLP's `DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK`: the series ended (a flow left its
/// table); exporters end it too (Prometheus: a staleness marker, the scrape: the series goes).
pub const NO_RECORDED_VALUE: u32 = 1;

/// Prometheus' staleness marker, the one NaN that means "this series ended".
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

pub fn is_stale_marker(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// A number point's value as a float; an ended series' is the staleness marker.
pub fn number_value_f64(dp: &NumberDataPoint) -> f64 {
    if dp.flags & NO_RECORDED_VALUE != 0 {
        return f64::from_bits(STALE_NAN_BITS);
    }
    match dp.value {
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        Some(number_data_point::Value::AsDouble(d)) => d,
        None => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(1_796_000_000), "2026-11-30T00:53:20Z");
    }

    const RX: MetricDef = MetricDef {
        name: "system.network.io",
        description: "bytes",
        unit: "By",
        kind: MetricKind::Counter,
        kubeskoop: Some(KubeskoopName::SplitBy {
            attribute: keys::NETWORK_IO_DIRECTION,
            names: &[("receive", "kubeskoop_netdev_rxbytes"), ("transmit", "kubeskoop_netdev_txbytes")],
        }),
    };

    #[test]
    fn builder_groups_points_by_resource_and_metric() {
        let mut b = MetricsBuilder::new("test");
        b.resource(vec![kv_int(keys::NETNS_INODE, 1)]).point(&RX, vec![kv_str(keys::NETWORK_IO_DIRECTION, "receive")], 1, 2, 10u64.into());
        b.resource(vec![kv_int(keys::NETNS_INODE, 1)]).point(&RX, vec![kv_str(keys::NETWORK_IO_DIRECTION, "transmit")], 1, 2, 20u64.into());
        b.resource(vec![kv_int(keys::NETNS_INODE, 2)]).point(&RX, vec![], 1, 2, 5u64.into());
        let m = b.finish();
        assert_eq!(m.resources().len(), 2);
        assert_eq!(m.point_count(), 3);
        let metric = &m.resources()[0].scope_metrics[0].metrics[0];
        let Some(metric::Data::Sum(sum)) = &metric.data else { panic!("not a sum") };
        assert!(sum.is_monotonic);
        assert_eq!(sum.aggregation_temporality, AggregationTemporality::Cumulative as i32);
        assert_eq!(attr_string(&metric.metadata, kubeskoop_meta::SPLIT_BY).as_deref(), Some("network.io.direction"));
        assert_eq!(attr_string(&metric.metadata, "podnet.kubeskoop.name.transmit").as_deref(), Some("kubeskoop_netdev_txbytes"));
    }

    #[test]
    fn shared_payload_is_copied_on_write() {
        let a = Metrics::new(vec![ResourceMetrics::default()]);
        let mut b = a.clone();
        b.resources_mut().clear();
        assert_eq!(a.resources().len(), 1);
        assert!(b.resources().is_empty());
    }

    #[test]
    fn interning_returns_one_copy() {
        let a = intern(&format!("podnet.{}", "x"));
        let b = intern("podnet.x");
        assert!(std::ptr::eq(a, b));
    }

    #[test]
    fn huge_counter_is_clamped_not_wrapped() {
        assert_eq!(Value::from(u64::MAX), Value::Int(i64::MAX));
    }
}
