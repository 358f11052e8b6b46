//! OTLP metrics → Prometheus series, in two naming modes.
//!
//! `otel`: the Collector's translation (UnderscoreEscapingWithSuffixes): sanitised names,
//! a unit suffix, `_total` on monotonic counters, and an allow-list of resource attributes
//! as labels (a node agent has one resource per pod, so without them series would collide).
//!
//! `kubeskoop`: KubeSkoop's exact names (carried in the metric's metadata by the receiver)
//! and its labels `k8s_node`, `k8s_namespace`, `k8s_pod` (empty for the host namespace).

use podnet_pipeline::pdata::kubeskoop_pod;
use podnet_pipeline::pdata::{
    AggregationTemporality, ExponentialHistogram, ExponentialHistogramDataPoint, KeyValue, Metric, NO_RECORDED_VALUE, NumberDataPoint,
    ResourceMetrics, any_value_to_string, attr_string, exponential_histogram_data_point, keys, kubeskoop_meta, metric, number_value_f64,
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Naming {
    #[default]
    Otel,
    Kubeskoop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FamilyType {
    Counter,
    Gauge,
    Histogram,
    Summary,
}

impl FamilyType {
    pub fn as_str(self) -> &'static str {
        match self {
            FamilyType::Counter => "counter",
            FamilyType::Gauge => "gauge",
            FamilyType::Histogram => "histogram",
            FamilyType::Summary => "summary",
        }
    }
}

pub type Labels = Vec<(String, String)>;

/// One exposition line before rendering.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub family: String,
    pub help: String,
    pub kind: FamilyType,
    /// `""`, or `_bucket` / `_sum` / `_count` for histograms.
    pub suffix: &'static str,
    pub labels: Labels,
    pub value: f64,
    /// The data point's time (remote write sends it; the scrape endpoint does not).
    pub time_unix_nano: u64,
    /// Which resource the point came from (a hash of its attributes), so a store can tell
    /// two resources that land on the same series apart from one resource updating it.
    pub resource: u64,
}

/// A resource's identity for [`Sample::resource`].
pub fn resource_id(attrs: &[KeyValue]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for kv in attrs {
        kv.key.hash(&mut h);
        kv.value.as_ref().map(any_value_to_string).unwrap_or_default().hash(&mut h);
    }
    h.finish()
}

pub struct Translator<'a> {
    pub naming: Naming,
    pub namespace: &'a str,
    pub resource_labels: &'a [String],
    pub const_labels: &'a [(String, String)],
    /// The Collector's `resource_to_telemetry_conversion`: every resource attribute is a
    /// label (otel naming), not only `resource_labels`.
    pub all_resource_attributes: bool,
}

/// `target_info` on or off (otel naming): one series per resource carrying the
/// resource's attributes, as the Collector's Prometheus exporters write it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetInfo {
    pub enabled: bool,
}

impl Default for TargetInfo {
    fn default() -> Self {
        TargetInfo { enabled: true }
    }
}

/// The Collector's `resource_to_telemetry_conversion`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceToTelemetry {
    pub enabled: bool,
}

const SERVICE_NAME: &str = "service.name";
const SERVICE_NAMESPACE: &str = "service.namespace";
const SERVICE_INSTANCE_ID: &str = "service.instance.id";

/// The resource attributes that become `job` and `instance` instead of labels of their own.
fn is_identity(key: &str) -> bool {
    key == SERVICE_NAME || key == SERVICE_NAMESPACE || key == SERVICE_INSTANCE_ID
}

/// `job` (`service.namespace/service.name`, or `service.name`) and `instance`
/// (`service.instance.id`), as the Collector derives them.
fn job_and_instance(attrs: &[KeyValue]) -> Labels {
    let mut labels = Labels::new();
    if let Some(name) = attr_string(attrs, SERVICE_NAME).filter(|n| !n.is_empty()) {
        let job = match attr_string(attrs, SERVICE_NAMESPACE).filter(|n| !n.is_empty()) {
            Some(ns) => format!("{ns}/{name}"),
            None => name,
        };
        labels.push(("job".into(), job));
    }
    if let Some(id) = attr_string(attrs, SERVICE_INSTANCE_ID).filter(|i| !i.is_empty()) {
        labels.push(("instance".into(), id));
    }
    labels
}

/// What a translation could not express, for the drop counter.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    pub delta: usize,
    pub unsupported: usize,
}

/// How exponential histograms leave for Prometheus: `classic` buckets (`_bucket{le}`,
/// `_sum`, `_count`; every receiver and format takes them) or `native` histograms (exact, one
/// series each; Prometheus needs `--enable-feature=native-histograms`; the name keeps the
/// recorded unit, as power-of-2 bounds do not survive a unit change).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistogramFormat {
    #[default]
    Classic,
    Native,
}

/// An exponential-histogram point as a Prometheus native histogram (schema = the OTel
/// scale, at most 8; bucket `i` holds (base^(i-1), base^i], OTel's index `i-1`).
#[derive(Clone, Debug, PartialEq)]
pub struct NativeHistogram {
    pub family: String,
    pub help: String,
    /// The family the same point has as classic buckets, which a scrape that takes native
    /// histograms leaves out (the same data twice otherwise).
    pub classic_family: String,
    pub labels: Labels,
    pub time_unix_nano: u64,
    pub schema: i32,
    pub zero_threshold: f64,
    pub zero_count: u64,
    pub count: u64,
    pub sum: f64,
    /// (Prometheus bucket index, count), ascending.
    pub positive: Vec<(i32, u64)>,
    pub negative: Vec<(i32, u64)>,
    /// The series ended at its source (OTLP's no-recorded-value flag): a staleness marker.
    pub stale: bool,
    pub resource: u64,
}

/// Native buckets given as ascending (index, count) in Prometheus' wire form: spans
/// (offset from the previous span's end, the first from 0; length) and each count's delta
/// from the previous one. Counts past i64::MAX wrap, as the reader's int64 arithmetic does.
pub fn spans_and_deltas(buckets: &[(i32, u64)]) -> (Vec<(i32, u32)>, Vec<i64>) {
    let (mut spans, mut deltas) = (Vec::<(i32, u32)>::new(), Vec::with_capacity(buckets.len()));
    let (mut next_index, mut previous) = (None::<i32>, 0i64);
    for &(index, count) in buckets {
        match (next_index, spans.last_mut()) {
            (Some(next), Some(span)) if next == index => span.1 += 1,
            // Indexes at the ends of i32 (only a malformed point has them) wrap as int32 does.
            (Some(next), _) => spans.push((index.wrapping_sub(next), 1)),
            (None, _) => spans.push((index, 1)),
        }
        next_index = Some(index.wrapping_add(1));
        deltas.push((count as i64).wrapping_sub(previous));
        previous = count as i64;
    }
    (spans, deltas)
}

/// OTel buckets (offset, counts) at `scale` as Prometheus buckets at `scale - shift`:
/// merged 2^shift to one, index + 1.
fn native_buckets(b: Option<&exponential_histogram_data_point::Buckets>, shift: u32) -> Vec<(i32, u64)> {
    let mut out: Vec<(i32, u64)> = Vec::new();
    for (k, n) in b
        .map(|b| (b.offset, b.bucket_counts.as_slice()))
        .into_iter()
        .flat_map(|(o, c)| c.iter().enumerate().map(move |(k, n)| (i64::from(o) + k as i64, *n)))
    {
        let index = ((k >> shift) + 1) as i32;
        match out.last_mut() {
            // Merged counts past u64::MAX (only a malformed point has them) stay at the maximum.
            Some((last, total)) if *last == index => *total = total.saturating_add(n),
            _ => out.push((index, n)),
        }
    }
    out
}

impl Translator<'_> {
    pub fn translate(&self, resources: &[ResourceMetrics], out: &mut Vec<Sample>) -> Skipped {
        self.translate_with(resources, out, None)
    }

    /// [`translate`](Self::translate), with exponential histograms as native histograms
    /// into `natives` when given (remote write), or as classic buckets when not.
    pub fn translate_with(
        &self,
        resources: &[ResourceMetrics],
        out: &mut Vec<Sample>,
        mut natives: Option<&mut Vec<NativeHistogram>>,
    ) -> Skipped {
        let mut skipped = Skipped::default();
        for rm in resources {
            let resource_attrs: &[KeyValue] = rm.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or(&[]);
            let base = self.resource_labels(resource_attrs);
            let first = out.len();
            let first_native = natives.as_ref().map_or(0, |n| n.len());
            let id = resource_id(resource_attrs);
            for sm in &rm.scope_metrics {
                for m in &sm.metrics {
                    match (&m.data, natives.as_deref_mut()) {
                        (Some(metric::Data::ExponentialHistogram(h)), Some(natives)) => self.native(m, h, &base, natives, &mut skipped),
                        _ => self.metric(m, &base, out, &mut skipped),
                    }
                }
            }
            for s in &mut out[first..] {
                s.resource = id;
            }
            if let Some(natives) = natives.as_deref_mut() {
                for n in &mut natives[first_native..] {
                    n.resource = id;
                }
            }
        }
        skipped
    }

    /// Only the exponential histograms of `resources`, as native histograms (the scrape
    /// endpoint keeps them beside the classic translation, for scrapers that take them).
    pub fn native_histograms(&self, resources: &[ResourceMetrics], out: &mut Vec<NativeHistogram>) -> Skipped {
        let mut skipped = Skipped::default();
        for rm in resources {
            let resource_attrs: &[KeyValue] = rm.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or(&[]);
            let first = out.len();
            let mut base = None;
            for m in rm.scope_metrics.iter().flat_map(|sm| &sm.metrics) {
                if let Some(metric::Data::ExponentialHistogram(h)) = &m.data {
                    let base = base.get_or_insert_with(|| self.resource_labels(resource_attrs));
                    self.native(m, h, base, out, &mut skipped);
                }
            }
            let id = resource_id(resource_attrs);
            for n in &mut out[first..] {
                n.resource = id;
            }
        }
        skipped
    }

    /// Native histograms keep the recorded unit (their bucket bounds are powers of 2 in it;
    /// scaling ms to s would move every bound), so the name says that unit.
    fn native(&self, m: &Metric, h: &ExponentialHistogram, base: &Labels, out: &mut Vec<NativeHistogram>, skipped: &mut Skipped) {
        if h.aggregation_temporality != AggregationTemporality::Cumulative as i32 {
            skipped.delta += h.data_points.len();
            return;
        }
        let kubeskoop_name = attr_string(&m.metadata, kubeskoop_meta::NAME).filter(|_| self.naming == Naming::Kubeskoop);
        let family = kubeskoop_name.clone().unwrap_or_else(|| otel_metric_name(self.namespace, &m.name, &m.unit, FamilyType::Histogram));
        let classic_family =
            kubeskoop_name.unwrap_or_else(|| otel_metric_name(self.namespace, &m.name, seconds(&m.unit).0, FamilyType::Histogram));
        for dp in &h.data_points {
            // Prometheus knows schemas -4 to 8; a finer scale is merged down to 8.
            if dp.scale < -4 {
                skipped.unsupported += 1;
                continue;
            }
            // Past 63 every bucket has merged into one anyway (and a larger shift would overflow).
            let shift = (dp.scale - 8).clamp(0, 63) as u32;
            let mut labels = merge(base, &dp.attributes, None);
            if self.naming == Naming::Otel {
                labels.sort();
            }
            out.push(NativeHistogram {
                family: family.clone(),
                help: m.description.clone(),
                classic_family: classic_family.clone(),
                labels,
                time_unix_nano: dp.time_unix_nano,
                schema: dp.scale.min(8),
                zero_threshold: dp.zero_threshold,
                zero_count: dp.zero_count,
                count: dp.count,
                sum: dp.sum.unwrap_or(0.0),
                positive: native_buckets(dp.positive.as_ref(), shift),
                negative: native_buckets(dp.negative.as_ref(), shift),
                stale: dp.flags & NO_RECORDED_VALUE != 0,
                resource: 0,
            });
        }
    }

    /// One `target_info` gauge (value 1) per resource, labelled with every resource
    /// attribute: the Collector's way to keep the resource in Prometheus (otel naming).
    pub fn target_info(&self, resources: &[ResourceMetrics], time_unix_nano: u64) -> Vec<Sample> {
        resources
            .iter()
            .filter_map(|rm| rm.resource.as_ref())
            .map(|r| {
                let mut labels = self.resource_labels(&r.attributes);
                for kv in r.attributes.iter().filter(|kv| !is_identity(&kv.key)) {
                    let name = sanitize_label(&kv.key);
                    if !labels.iter().any(|(n, _)| *n == name) {
                        labels.push((name, kv.value.as_ref().map(any_value_to_string).unwrap_or_default()));
                    }
                }
                labels.sort();
                Sample {
                    family: "target_info".into(),
                    help: "Target metadata".into(),
                    kind: FamilyType::Gauge,
                    suffix: "",
                    labels,
                    value: 1.0,
                    time_unix_nano,
                    resource: resource_id(&r.attributes),
                }
            })
            .collect()
    }

    /// The labels every series of a resource with `attrs` carries, for
    /// [`number_point_sample`](Self::number_point_sample).
    pub fn resource_base(&self, attrs: &[KeyValue]) -> Labels {
        self.resource_labels(attrs)
    }

    /// The sample of one point of a cumulative Sum or a Gauge, as `translate` makes it
    /// (`resource` left 0); None for other kinds, delta sums, or a point with no name in
    /// this naming. Lets an exporter translate only the points it has not seen before.
    pub fn number_point_sample(&self, m: &Metric, base: &Labels, dp: &NumberDataPoint) -> Option<Sample> {
        let kind = number_kind(m)?;
        let mut out = Vec::with_capacity(1);
        self.number_point(m, kind, &m.description, base, dp, &mut out);
        out.pop()
    }

    /// The value `translate` gives a number point of `m` (times in seconds in otel naming).
    pub fn point_value(&self, m: &Metric, dp: &NumberDataPoint) -> f64 {
        match self.naming {
            // The staleness marker is a bit pattern: no arithmetic on it.
            _ if dp.flags & NO_RECORDED_VALUE != 0 => number_value_f64(dp),
            // Prometheus' base unit of time is the second (`_seconds`, not `_milliseconds`).
            Naming::Otel => number_value_f64(dp) / seconds(&m.unit).1,
            Naming::Kubeskoop => number_value_f64(dp),
        }
    }

    fn resource_labels(&self, attrs: &[KeyValue]) -> Labels {
        let mut labels = Labels::new();
        match self.naming {
            Naming::Kubeskoop => {
                let get = |k: &str| attr_string(attrs, k).unwrap_or_default();
                labels.push(("k8s_node".into(), get(keys::K8S_NODE_NAME)));
                labels.push(("k8s_namespace".into(), get(keys::K8S_NAMESPACE_NAME)));
                labels.push(("k8s_pod".into(), kubeskoop_pod(attrs)));
                if let Some(extra) = attr_string(attrs, keys::KUBESKOOP_LABELS) {
                    for key in extra.split(',').filter(|k| !k.is_empty()) {
                        labels.push((sanitize_label(key), get(key)));
                    }
                }
            }
            Naming::Otel => {
                labels.extend(job_and_instance(attrs));
                if self.all_resource_attributes {
                    for kv in attrs.iter().filter(|kv| !is_identity(&kv.key)) {
                        labels.push((sanitize_label(&kv.key), kv.value.as_ref().map(any_value_to_string).unwrap_or_default()));
                    }
                } else {
                    for key in self.resource_labels {
                        if let Some(v) = attr_string(attrs, key) {
                            labels.push((sanitize_label(key), v));
                        }
                    }
                }
            }
        }
        labels.extend(self.const_labels.iter().cloned());
        labels
    }

    /// The family name, and the data-point attribute it consumed (kubeskoop split names).
    fn family_name<'m>(&self, m: &'m Metric, kind: FamilyType, attrs: &[KeyValue]) -> Option<(String, Option<&'m str>)> {
        if self.naming == Naming::Kubeskoop {
            if let Some(name) = attr_string(&m.metadata, kubeskoop_meta::NAME) {
                return Some((name, None));
            }
            if let Some(split) = m.metadata.iter().find(|kv| kv.key == kubeskoop_meta::SPLIT_BY) {
                let attr = split.value.as_ref().map(any_value_to_string).unwrap_or_default();
                let value = attr_string(attrs, &attr)?;
                let name = attr_string(&m.metadata, &format!("{}{value}", kubeskoop_meta::NAME_FOR))?;
                let key: &'m str = match &split.value {
                    Some(podnet_pipeline::pdata::AnyValue { value: Some(podnet_pipeline::pdata::any_value::Value::StringValue(s)) }) => s,
                    _ => return None,
                };
                return Some((name, Some(key)));
            }
            // Beyond KubeSkoop: podnet's own name, with KubeSkoop's labels.
            return Some((self.otel_name(m, kind), None));
        }
        Some((self.otel_name(m, kind), None))
    }

    fn otel_name(&self, m: &Metric, kind: FamilyType) -> String {
        otel_metric_name(self.namespace, &m.name, seconds(&m.unit).0, kind)
    }

    fn metric(&self, m: &Metric, base: &Labels, out: &mut Vec<Sample>, skipped: &mut Skipped) {
        let help = m.description.clone();
        match &m.data {
            Some(metric::Data::Sum(sum)) => {
                if sum.aggregation_temporality != AggregationTemporality::Cumulative as i32 {
                    skipped.delta += sum.data_points.len();
                    return;
                }
                let kind = if sum.is_monotonic { FamilyType::Counter } else { FamilyType::Gauge };
                for dp in &sum.data_points {
                    self.number_point(m, kind, &help, base, dp, out);
                }
            }
            Some(metric::Data::Gauge(g)) => {
                for dp in &g.data_points {
                    self.number_point(m, FamilyType::Gauge, &help, base, dp, out);
                }
            }
            Some(metric::Data::Histogram(h)) => {
                if h.aggregation_temporality != AggregationTemporality::Cumulative as i32 {
                    skipped.delta += h.data_points.len();
                    return;
                }
                // otel naming exposes times in seconds (the name says so): bounds and sum too.
                let to_unit = if self.naming == Naming::Otel { seconds(&m.unit).1 } else { 1.0 };
                for dp in &h.data_points {
                    let Some((family, _)) = self.family_name(m, FamilyType::Histogram, &dp.attributes) else { continue };
                    let buckets = dp
                        .explicit_bounds
                        .iter()
                        .map(|b| b / to_unit)
                        .chain(std::iter::once(f64::INFINITY))
                        .zip(dp.bucket_counts.iter().copied());
                    let point = HistogramPoint {
                        family: &family,
                        help: &help,
                        base,
                        attributes: &dp.attributes,
                        time_unix_nano: dp.time_unix_nano,
                    };
                    self.histogram_samples(point, buckets, dp.sum.unwrap_or(0.0) / to_unit, dp.count, out);
                }
            }
            Some(metric::Data::Summary(summary)) => {
                // Summaries are cumulative by definition: quantiles, `_sum`, `_count`.
                let to_unit = if self.naming == Naming::Otel { seconds(&m.unit).1 } else { 1.0 };
                for dp in &summary.data_points {
                    let Some((family, _)) = self.family_name(m, FamilyType::Summary, &dp.attributes) else { continue };
                    let mut labels = merge(base, &dp.attributes, None);
                    if self.naming == Naming::Otel {
                        labels.sort();
                    }
                    let sample = |suffix: &'static str, labels: Labels, value: f64| Sample {
                        family: family.clone(),
                        help: help.clone(),
                        kind: FamilyType::Summary,
                        suffix,
                        labels,
                        value,
                        time_unix_nano: dp.time_unix_nano,
                        resource: 0,
                    };
                    for q in &dp.quantile_values {
                        let mut l = labels.clone();
                        l.push(("quantile".into(), format_value(q.quantile)));
                        out.push(sample("", l, q.value / to_unit));
                    }
                    out.push(sample("_sum", labels.clone(), dp.sum / to_unit));
                    out.push(sample("_count", labels, dp.count as f64));
                }
            }
            Some(metric::Data::ExponentialHistogram(h)) => {
                if h.aggregation_temporality != AggregationTemporality::Cumulative as i32 {
                    skipped.delta += h.data_points.len();
                    return;
                }
                // Time units become seconds, Prometheus' base unit: bounds and sum are scaled.
                let (unit, to_unit) = match m.unit.as_str() {
                    "ns" => ("s", 1e9),
                    "us" => ("s", 1e6),
                    "ms" => ("s", 1e3),
                    other => (other, 1.0),
                };
                // One family per metric: KubeSkoop's name where the metric has one, else the
                // OTel name with the converted unit (histograms are never split by attribute).
                let family = match (self.naming, attr_string(&m.metadata, kubeskoop_meta::NAME)) {
                    (Naming::Kubeskoop, Some(name)) => name,
                    _ => otel_metric_name(self.namespace, &m.name, unit, FamilyType::Histogram),
                };
                for dp in &h.data_points {
                    if dp.negative.as_ref().is_some_and(|n| n.bucket_counts.iter().any(|c| *c != 0)) {
                        // Classic buckets cannot hold negative values; podnet's latencies have none.
                        skipped.unsupported += 1;
                        continue;
                    }
                    let buckets = exponential_buckets(dp, to_unit);
                    let point = HistogramPoint {
                        family: &family,
                        help: &help,
                        base,
                        attributes: &dp.attributes,
                        time_unix_nano: dp.time_unix_nano,
                    };
                    self.histogram_samples(point, buckets, dp.sum.unwrap_or(0.0) / to_unit, dp.count, out);
                }
            }
            None => {}
        }
    }

    /// `_bucket` (cumulative, ascending `le`, ending at `+Inf`), `_sum` and `_count` samples.
    fn histogram_samples(
        &self,
        p: HistogramPoint<'_>,
        buckets: impl Iterator<Item = (f64, u64)>,
        sum: f64,
        count: u64,
        out: &mut Vec<Sample>,
    ) {
        let mut labels = merge(p.base, p.attributes, None);
        if self.naming == Naming::Otel {
            labels.sort();
        }
        let sample = |suffix: &'static str, labels: Labels, value: f64| Sample {
            family: p.family.to_string(),
            help: p.help.to_string(),
            kind: FamilyType::Histogram,
            suffix,
            labels,
            value,
            time_unix_nano: p.time_unix_nano,
            resource: 0,
        };
        let mut cumulative = 0u64;
        let mut saw_inf = false;
        for (le, n) in buckets {
            cumulative = cumulative.saturating_add(n);
            saw_inf |= le.is_infinite();
            let mut l = labels.clone();
            l.push(("le".into(), format_value(le)));
            out.push(sample("_bucket", l, cumulative as f64));
        }
        if !saw_inf {
            let mut l = labels.clone();
            l.push(("le".into(), "+Inf".into()));
            out.push(sample("_bucket", l, count as f64));
        }
        out.push(sample("_sum", labels.clone(), sum));
        out.push(sample("_count", labels, count as f64));
    }

    #[allow(clippy::too_many_arguments)]
    fn number_point(&self, m: &Metric, kind: FamilyType, help: &str, base: &Labels, dp: &NumberDataPoint, out: &mut Vec<Sample>) {
        let Some((family, consumed)) = self.family_name(m, kind, &dp.attributes) else { return };
        let mut labels = match self.naming {
            Naming::Kubeskoop => merge_relabeled(base, &dp.attributes, consumed, &m.metadata),
            Naming::Otel => merge(base, &dp.attributes, consumed),
        };
        if self.naming == Naming::Otel {
            // Attribute order is not meaningful in OTLP; sorted labels give stable output.
            // KubeSkoop mode keeps KubeSkoop's order (k8s_node, k8s_namespace, k8s_pod, …).
            labels.sort();
        }
        let value = self.point_value(m, dp);
        out.push(Sample {
            family,
            help: help.to_string(),
            kind,
            suffix: "",
            labels,
            value,
            time_unix_nano: dp.time_unix_nano,
            resource: 0,
        });
    }
}

/// The family type of a metric whose points are plain numbers: a cumulative Sum (a counter
/// when monotonic) or a Gauge; None for anything else.
pub fn number_kind(m: &Metric) -> Option<FamilyType> {
    match &m.data {
        Some(metric::Data::Sum(sum)) if sum.aggregation_temporality == AggregationTemporality::Cumulative as i32 => {
            Some(if sum.is_monotonic { FamilyType::Counter } else { FamilyType::Gauge })
        }
        Some(metric::Data::Gauge(_)) => Some(FamilyType::Gauge),
        _ => None,
    }
}

/// What the `_bucket`/`_sum`/`_count` samples of one histogram point share.
struct HistogramPoint<'a> {
    family: &'a str,
    help: &'a str,
    base: &'a Labels,
    attributes: &'a [KeyValue],
    time_unix_nano: u64,
}

/// An exponential histogram's buckets as classic (upper bound, count) pairs: the zero
/// bucket first (bound: the zero threshold, or 0), then each positive bucket `i` with its
/// inclusive upper bound base^(i+1), base = 2^(2^-scale). Bounds are divided by `to_unit`
/// (1e9 turns nanoseconds into seconds; a division keeps 2^k/1e9 exactly rounded).
pub fn exponential_buckets(dp: &ExponentialHistogramDataPoint, to_unit: f64) -> impl Iterator<Item = (f64, u64)> + '_ {
    let zero = std::iter::once((dp.zero_threshold / to_unit, dp.zero_count));
    let scale = dp.scale;
    let positive = dp.positive.iter().flat_map(move |b| {
        b.bucket_counts.iter().enumerate().map(move |(k, n)| {
            let index = i64::from(b.offset) + k as i64 + 1;
            // In f64: `-scale` of i32::MIN (any input can say so) would overflow as an i32.
            let bound = if scale == 0 { 2f64.powi(index as i32) } else { 2f64.powf(index as f64 * 2f64.powf(-f64::from(scale))) };
            (bound / to_unit, *n)
        })
    });
    zero.chain(positive)
}

fn merge(base: &Labels, attrs: &[KeyValue], skip: Option<&str>) -> Labels {
    let mut labels = base.clone();
    for kv in attrs.iter().filter(|kv| Some(kv.key.as_str()) != skip) {
        let name = sanitize_label(&kv.key);
        let value = kv.value.as_ref().map(any_value_to_string).unwrap_or_default();
        match labels.iter_mut().find(|(n, _)| *n == name) {
            Some(existing) => existing.1 = value,
            None => labels.push((name, value)),
        }
    }
    labels
}

/// `merge` with KubeSkoop's label names where the metric declares them (flow tuples:
/// `source.address` → `src`, `network.transport` → `protocol` as `TCP`/`UDP`/…).
fn merge_relabeled(base: &Labels, attrs: &[KeyValue], skip: Option<&str>, metadata: &[KeyValue]) -> Labels {
    if !metadata.iter().any(|kv| kv.key.starts_with(kubeskoop_meta::LABEL_FOR)) {
        return merge(base, attrs, skip);
    }
    let mut labels = base.clone();
    for kv in attrs.iter().filter(|kv| Some(kv.key.as_str()) != skip) {
        let value = kv.value.as_ref().map(any_value_to_string).unwrap_or_default();
        let (name, value) = match attr_string(metadata, &format!("{}{}", kubeskoop_meta::LABEL_FOR, kv.key)) {
            Some(label) if label == "protocol" => (label, kubeskoop_protocol(&value)),
            Some(label) => (label, value),
            None => (sanitize_label(&kv.key), value),
        };
        match labels.iter_mut().find(|(n, _)| *n == name) {
            Some(existing) => existing.1 = value,
            None => labels.push((name, value)),
        }
    }
    // KubeSkoop's label order (the metric's declared order), after the resource's labels.
    let declared: Vec<String> = metadata
        .iter()
        .filter(|kv| kv.key.starts_with(kubeskoop_meta::LABEL_FOR))
        .filter_map(|kv| kv.value.as_ref().map(any_value_to_string))
        .collect();
    let fixed = base.len().min(labels.len());
    labels[fixed..].sort_by_key(|(n, _)| declared.iter().position(|d| d == n).unwrap_or(usize::MAX));
    labels
}

/// KubeSkoop's protocol spelling (`bpfutil.GetProtoStr`) of an OTel `network.transport`.
fn kubeskoop_protocol(transport: &str) -> String {
    match transport {
        "tcp" => "TCP",
        "udp" => "UDP",
        "icmp" => "ICMP",
        "icmpv6" => "ICMP6",
        _ => "IP",
    }
    .to_string()
}

/// A time unit as Prometheus wants it: seconds, and what a value is divided by to get
/// there. Other units are kept.
fn seconds(unit: &str) -> (&str, f64) {
    match unit {
        "ms" => ("s", 1e3),
        "us" => ("s", 1e6),
        "ns" => ("s", 1e9),
        other => (other, 1.0),
    }
}

/// A gauge `x.count` in `{thing}` (a semantic-convention count) as Prometheus names a
/// count: the things, plural (`system.network.connection.count` →
/// `system.network.connections`), as `_count` belongs to histograms and summaries.
fn without_count_suffix(name: &str, unit: &str) -> String {
    let Some(stem) = name.strip_suffix(".count") else { return name.to_string() };
    let thing = unit.strip_prefix('{').and_then(|u| u.strip_suffix('}')).filter(|t| !t.is_empty() && !t.contains(['{', '}']));
    match thing {
        Some(t) if stem.rsplit('.').next() == Some(t) => format!("{stem}s"),
        Some(t) => format!("{stem}.{t}s"),
        None => stem.to_string(),
    }
}

/// The Collector's metric name translation with suffixes.
pub fn otel_metric_name(namespace: &str, name: &str, unit: &str, kind: FamilyType) -> String {
    // Counters end in `_total`; only a gauge would end in `_count`.
    let name = if kind == FamilyType::Gauge { without_count_suffix(name, unit) } else { name.to_string() };
    let mut full = if namespace.is_empty() { sanitize_metric(&name) } else { sanitize_metric(&format!("{namespace}_{name}")) };
    if let Some(suffix) = unit_suffix(unit, kind)
        && !full.split('_').any(|w| w == suffix)
    {
        full.push('_');
        full.push_str(&suffix);
    }
    if kind == FamilyType::Counter && !full.ends_with("_total") {
        full.push_str("_total");
    }
    full
}

fn unit_suffix(unit: &str, kind: FamilyType) -> Option<String> {
    // Annotations in braces are dropped ("{packet}" → nothing, "By/{s}" keeps "bytes").
    let mut clean = String::new();
    let mut depth = 0;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            c if depth == 0 => clean.push(c),
            _ => {}
        }
    }
    let clean = clean.trim();
    if clean.is_empty() {
        return None;
    }
    if clean == "1" {
        return (kind == FamilyType::Gauge).then(|| "ratio".to_string());
    }
    let word = |u: &str| -> String {
        match u {
            "d" => "days",
            "h" => "hours",
            "min" => "minutes",
            "s" => "seconds",
            "ms" => "milliseconds",
            "us" => "microseconds",
            "ns" => "nanoseconds",
            "By" => "bytes",
            "KiBy" => "kibibytes",
            "MiBy" => "mebibytes",
            "GiBy" => "gibibytes",
            "KBy" => "kilobytes",
            "MBy" => "megabytes",
            "GBy" => "gigabytes",
            "bit" => "bits",
            "%" => "percent",
            "Cel" => "celsius",
            "Hz" => "hertz",
            "V" => "volts",
            "W" => "watts",
            "m" => "meters",
            other => return sanitize_metric(other),
        }
        .to_string()
    };
    let suffix = match clean.split_once('/') {
        Some((a, b)) if !b.is_empty() => {
            let per = match b {
                "s" => "second".to_string(),
                "m" => "minute".to_string(),
                "h" => "hour".to_string(),
                "d" => "day".to_string(),
                other => word(other),
            };
            if a.is_empty() { format!("per_{per}") } else { format!("{}_per_{per}", word(a)) }
        }
        _ => word(clean),
    };
    (!suffix.is_empty()).then_some(suffix)
}

fn sanitize(name: &str, allow_colon: bool) -> String {
    let mut out = String::with_capacity(name.len());
    let mut last_underscore = false;
    for c in name.chars() {
        let ok = c.is_ascii_alphanumeric() || c == '_' || (allow_colon && c == ':');
        let c = if ok { c } else { '_' };
        if c == '_' && last_underscore {
            continue;
        }
        last_underscore = c == '_';
        out.push(c);
    }
    out.trim_matches('_').to_string()
}

pub fn sanitize_metric(name: &str) -> String {
    let s = sanitize(name, true);
    if s.starts_with(|c: char| c.is_ascii_digit()) { format!("_{s}") } else { s }
}

pub fn sanitize_label(key: &str) -> String {
    if key.starts_with("__") {
        return key.to_string();
    }
    let s = sanitize(key, false);
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        format!("key_{s}")
    } else if s.is_empty() {
        "key".to_string()
    } else {
        s
    }
}

/// Prometheus number formatting: integers without a fraction, `+Inf`, `-Inf`, `NaN`.
pub fn format_value(v: f64) -> String {
    let mut out = String::new();
    format_value_into(v, &mut out);
    out
}

/// [`format_value`] appended to `out` (a scrape writes ~50,000 of them).
pub fn format_value_into(v: f64, out: &mut String) {
    use std::fmt::Write as _;
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The samples of `m` under `naming`, with no labels added from resources or config.
    fn plain(naming: Naming, m: &podnet_pipeline::pdata::Metrics) -> Vec<Sample> {
        let t = Translator { naming, namespace: "", resource_labels: &[], const_labels: &[], all_resource_attributes: false };
        let mut out = Vec::new();
        t.translate(m.resources(), &mut out);
        out
    }

    #[test]
    fn collector_name_translation() {
        assert_eq!(otel_metric_name("", "system.network.io", "By", FamilyType::Counter), "system_network_io_bytes_total");
        assert_eq!(
            otel_metric_name("", "system.network.packet.dropped", "{packet}", FamilyType::Counter),
            "system_network_packet_dropped_total"
        );
        assert_eq!(
            otel_metric_name("", "podnet.receiver.collection.duration", "s", FamilyType::Histogram),
            "podnet_receiver_collection_duration_seconds"
        );
        assert_eq!(otel_metric_name("", "cpu.utilization", "1", FamilyType::Gauge), "cpu_utilization_ratio");
        assert_eq!(otel_metric_name("", "net.rate", "By/s", FamilyType::Gauge), "net_rate_bytes_per_second");
        assert_eq!(otel_metric_name("ns", "x", "", FamilyType::Gauge), "ns_x");
        assert_eq!(otel_metric_name("", "http.total", "", FamilyType::Counter), "http_total");
        assert_eq!(otel_metric_name("", "io_bytes", "By", FamilyType::Gauge), "io_bytes", "no doubled unit");
        assert_eq!(otel_metric_name("", "1st..metric", "", FamilyType::Gauge), "_1st_metric");
        // `_count` is for histograms and summaries (promtool): a count names its things.
        assert_eq!(
            otel_metric_name("", "system.network.connection.count", "{connection}", FamilyType::Gauge),
            "system_network_connections"
        );
        assert_eq!(otel_metric_name("", "k8s.pod.count", "{item}", FamilyType::Gauge), "k8s_pod_items");
        assert_eq!(otel_metric_name("", "queue.count", "", FamilyType::Gauge), "queue");
        assert_eq!(
            otel_metric_name("", "system.network.packet.count", "{packet}", FamilyType::Counter),
            "system_network_packet_count_total",
            "a counter keeps the Collector's name: it ends in _total"
        );
    }

    #[test]
    fn time_counters_are_exposed_in_seconds() {
        use podnet_pipeline::pdata::{MetricDef, MetricsBuilder, Value};
        const CHRONO: MetricDef = MetricDef::counter("podnet.tcpext.tcp_memory_pressures_chrono", "d", "ms");
        let mut b = MetricsBuilder::new("t");
        b.resource(vec![]).point(&CHRONO, vec![], 1, 2, Value::from(1500u64));
        let m = b.finish();
        let out = plain(Naming::Otel, &m);
        assert_eq!((out[0].family.as_str(), out[0].value), ("podnet_tcpext_tcp_memory_pressures_chrono_seconds_total", 1.5));
        let out = plain(Naming::Kubeskoop, &m);
        assert_eq!(out[0].value, 1500.0, "KubeSkoop naming keeps KubeSkoop's values");
    }

    #[test]
    fn kubeskoop_pod_label() {
        use podnet_pipeline::pdata::{kv_bool, kv_int, kv_str};
        assert_eq!(kubeskoop_pod(&[kv_int(keys::NETNS_INODE, 5), kv_bool(keys::NETNS_HOST, true)]), "");
        assert_eq!(kubeskoop_pod(&[kv_str(keys::K8S_NODE_NAME, "n")]), "", "node level");
        assert_eq!(kubeskoop_pod(&[kv_int(keys::NETNS_INODE, 7)]), "netns-7");
        assert_eq!(kubeskoop_pod(&[kv_int(keys::NETNS_INODE, 7), kv_str(keys::NETNS_NAME, "pod-a")]), "pod-a");
        assert_eq!(kubeskoop_pod(&[kv_int(keys::NETNS_INODE, 7), kv_str(keys::K8S_POD_NAME, "web-1")]), "web-1");
    }

    #[test]
    fn label_sanitising() {
        assert_eq!(sanitize_label("k8s.pod.name"), "k8s_pod_name");
        assert_eq!(sanitize_label("0abc"), "key_0abc");
        assert_eq!(sanitize_label("__name__"), "__name__");
    }

    fn one_histogram(def: &podnet_pipeline::pdata::MetricDef, naming: Naming) -> Vec<Sample> {
        use podnet_pipeline::pdata::{Log2Histogram, MetricsBuilder, kv_str};
        let mut b = MetricsBuilder::new("test");
        // Buckets 10 and 28: values in (2^9, 2^10] ns and (2^27, 2^28] ns; two zeros.
        let mut buckets = vec![0u64; 29];
        buckets[10] = 3;
        buckets[28] = 1;
        let h = Log2Histogram { zero: 2, buckets, sum: 150_003_000.0 };
        b.resource(vec![kv_str(keys::K8S_NODE_NAME, "n"), kv_str(keys::K8S_POD_NAME, "web")]).histogram(
            def,
            vec![kv_str("podnet.softirq.type", "net_rx")],
            1,
            2,
            &h,
        );
        let m = b.finish();
        let t = Translator {
            naming,
            namespace: "",
            resource_labels: &[keys::K8S_POD_NAME.to_string()],
            const_labels: &[],
            all_resource_attributes: false,
        };
        let mut out = Vec::new();
        assert_eq!(t.translate(m.resources(), &mut out), Skipped::default());
        out
    }

    fn le_values(samples: &[Sample]) -> Vec<(String, f64)> {
        samples
            .iter()
            .filter(|s| s.suffix == "_bucket")
            .map(|s| (s.labels.iter().find(|(k, _)| k == "le").map(|(_, v)| v.clone()).unwrap_or_default(), s.value))
            .collect()
    }

    #[test]
    fn exponential_histogram_in_nanoseconds_becomes_classic_buckets_in_seconds() {
        const DEF: podnet_pipeline::pdata::MetricDef =
            podnet_pipeline::pdata::MetricDef::histogram("podnet.softirq.schedule.delay", "d", "ns");
        let out = one_histogram(&DEF, Naming::Otel);
        assert!(out.iter().all(|s| s.family == "podnet_softirq_schedule_delay_seconds" && s.kind == FamilyType::Histogram));
        let mut expected = vec![("0".to_string(), 2.0)];
        // OTel index 9..=27 (buckets 10..=28): upper bounds 2^10 .. 2^28 ns, in seconds.
        for k in 10..=28 {
            let cumulative = if k < 28 { 5.0 } else { 6.0 };
            expected.push((format_value(2f64.powi(k) / 1e9), cumulative));
        }
        expected.push(("+Inf".to_string(), 6.0));
        assert_eq!(le_values(&out), expected);
        assert_eq!(expected[1].0, "0.000001024", "2^10 ns");
        assert_eq!(expected[19].0, "0.268435456", "2^28 ns");
        let sum = out.iter().find(|s| s.suffix == "_sum").unwrap();
        assert!((sum.value - 0.150003).abs() < 1e-12, "{}", sum.value);
        assert_eq!(out.iter().find(|s| s.suffix == "_count").unwrap().value, 6.0);
        let bucket = out.iter().find(|s| s.suffix == "_bucket").unwrap();
        assert!(
            bucket.labels.contains(&("podnet_softirq_type".into(), "net_rx".into()))
                && bucket.labels.contains(&("k8s_pod_name".into(), "web".into()))
        );
    }

    #[test]
    fn kubeskoop_naming_keeps_the_histogram_with_kubeskoop_labels() {
        const DEF: podnet_pipeline::pdata::MetricDef = podnet_pipeline::pdata::MetricDef::histogram("podnet.socket.read.delay", "d", "ns");
        let out = one_histogram(&DEF, Naming::Kubeskoop);
        assert!(out.iter().all(|s| s.family == "podnet_socket_read_delay_seconds"), "{out:?}");
        let count = out.iter().find(|s| s.suffix == "_count").unwrap();
        assert_eq!(
            &count.labels[..3],
            &[("k8s_node".into(), "n".into()), ("k8s_namespace".into(), "".into()), ("k8s_pod".into(), "web".into())]
        );
    }

    #[test]
    fn threshold_counters_take_kubeskoops_names_and_labels() {
        use podnet_pipeline::pdata::{KubeskoopName, MetricDef, MetricsBuilder, Value, kv_str};
        const SLOW: MetricDef = MetricDef {
            kubeskoop: Some(KubeskoopName::SplitByRelabeled {
                attribute: "podnet.latency.threshold",
                names: &[("10ms", "kubeskoop_softirq_schedslow"), ("100ms", "kubeskoop_softirq_schedslow100ms")],
                labels: &[("podnet.softirq.type", "softirq_type")],
            }),
            ..MetricDef::counter("podnet.softirq.schedule.slow", "d", "{event}")
        };
        let mut b = MetricsBuilder::new("test");
        let mut rb = b.resource(vec![kv_str(keys::K8S_NODE_NAME, "n")]);
        for (threshold, v) in [("10ms", 4u64), ("100ms", 1), ("5ms", 9)] {
            rb.point(
                &SLOW,
                vec![kv_str("podnet.softirq.type", "net_rx"), kv_str("podnet.latency.threshold", threshold)],
                1,
                2,
                Value::from(v),
            );
        }
        let m = b.finish();
        let out = plain(Naming::Kubeskoop, &m);
        let got: Vec<(String, Labels, f64)> = out.into_iter().map(|s| (s.family, s.labels, s.value)).collect();
        let labels = vec![
            ("k8s_node".to_string(), "n".to_string()),
            ("k8s_namespace".to_string(), String::new()),
            ("k8s_pod".to_string(), String::new()),
            ("softirq_type".to_string(), "net_rx".to_string()),
        ];
        // A threshold KubeSkoop has no name for (5ms) is not given one of its names.
        assert_eq!(
            got,
            vec![("kubeskoop_softirq_schedslow".into(), labels.clone(), 4.0), ("kubeskoop_softirq_schedslow100ms".into(), labels, 1.0)]
        );
    }

    #[test]
    fn summaries_pass_through_with_quantiles_in_seconds() {
        use podnet_pipeline::pdata::{SummaryDataPoint, summary_data_point::ValueAtQuantile};
        let dp = SummaryDataPoint {
            count: 4,
            sum: 2000.0,
            quantile_values: vec![ValueAtQuantile { quantile: 0.99, value: 900.0 }, ValueAtQuantile { quantile: 0.5, value: 400.0 }],
            time_unix_nano: 1,
            ..Default::default()
        };
        let m = Metric {
            name: "rpc.duration".into(),
            unit: "ms".into(),
            data: Some(metric::Data::Summary(podnet_pipeline::pdata::Summary { data_points: vec![dp] })),
            ..Default::default()
        };
        let rm = ResourceMetrics {
            scope_metrics: vec![podnet_pipeline::pdata::ScopeMetrics { metrics: vec![m], ..Default::default() }],
            ..Default::default()
        };
        let t = Translator { naming: Naming::Otel, namespace: "", resource_labels: &[], const_labels: &[], all_resource_attributes: false };
        let mut out = Vec::new();
        assert_eq!(t.translate(&[rm], &mut out), Skipped::default());
        let got: Vec<(&str, &str, String, f64)> = out
            .iter()
            .map(|s| (s.family.as_str(), s.suffix, s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","), s.value))
            .collect();
        assert_eq!(
            got,
            vec![
                ("rpc_duration_seconds", "", "quantile=0.99".to_string(), 0.9),
                ("rpc_duration_seconds", "", "quantile=0.5".to_string(), 0.4),
                ("rpc_duration_seconds", "_sum", String::new(), 2.0),
                ("rpc_duration_seconds", "_count", String::new(), 4.0),
            ]
        );
        assert!(out.iter().all(|s| s.kind == FamilyType::Summary));
    }

    #[test]
    fn an_ended_series_becomes_the_staleness_marker_in_both_namings() {
        use podnet_pipeline::pdata::{MetricDef, MetricsBuilder, STALE_NAN_BITS, kv_str};
        const FLOW: MetricDef = MetricDef::counter("podnet.flow.bytes", "d", "ms").kubeskoop("kubeskoop_flow_bytes");
        let mut b = MetricsBuilder::new("test");
        b.resource(vec![kv_str(keys::K8S_NODE_NAME, "n")]).ended(&FLOW, vec![kv_str("source.address", "10.0.0.1")], 2);
        let m = b.finish();
        for naming in [Naming::Otel, Naming::Kubeskoop] {
            let out = plain(naming, &m);
            assert_eq!(out.len(), 1, "{naming:?}");
            // Exactly the marker's bits: the unit scaling (ms → s) must not touch them.
            assert_eq!(out[0].value.to_bits(), STALE_NAN_BITS, "{naming:?}");
        }
    }

    #[test]
    fn relabeled_flow_series_take_kubeskoops_label_order() {
        use podnet_pipeline::pdata::{KubeskoopName, MetricDef, MetricsBuilder, Value, kv_int, kv_str};
        const FLOWS: MetricDef = MetricDef {
            kubeskoop: Some(KubeskoopName::Relabeled {
                name: "kubeskoop_packetloss_total",
                labels: &[
                    ("network.transport", "protocol"),
                    ("source.address", "src"),
                    ("podnet.source.type", "src_type"),
                    ("source.k8s.pod.name", "src_pod"),
                    ("destination.address", "dst"),
                    ("podnet.destination.type", "dst_type"),
                    ("source.port", "sport"),
                ],
            }),
            ..MetricDef::counter("podnet.packet.drops.flow", "d", "{packet}")
        };
        let mut b = MetricsBuilder::new("test");
        // As the receiver and then the processor write them: identity last.
        let attrs = vec![
            kv_str("network.transport", "udp"),
            kv_str("source.address", "10.0.0.1"),
            kv_str("destination.address", "10.0.0.2"),
            kv_int("source.port", 5000),
            kv_str("podnet.source.type", "pod"),
            kv_str("source.k8s.pod.name", "web-0"),
            kv_str("podnet.destination.type", "unknown"),
            kv_str("source.k8s.service.name", "x"),
        ];
        b.resource(vec![kv_str(keys::K8S_NODE_NAME, "n")]).point(&FLOWS, attrs, 1, 2, Value::from(3u64));
        let m = b.finish();
        let out = plain(Naming::Kubeskoop, &m);
        let names: Vec<&str> = out[0].labels.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "k8s_node",
                "k8s_namespace",
                "k8s_pod",
                "protocol",
                "src",
                "src_type",
                "src_pod",
                "dst",
                "dst_type",
                "sport",
                "source_k8s_service_name"
            ],
            "{:?}",
            out[0].labels
        );
        assert_eq!(out[0].labels[3].1, "UDP");
    }

    #[test]
    fn job_instance_and_resource_to_telemetry() {
        use podnet_pipeline::pdata::{MetricDef, MetricsBuilder, Value, kv_str};
        const M: MetricDef = MetricDef::counter("shop.orders", "d", "{order}");
        let mut b = MetricsBuilder::new("t");
        b.resource(vec![kv_str("service.name", "cart"), kv_str("service.instance.id", "i-1"), kv_str("cloud.region", "eu")]).point(
            &M,
            vec![],
            1,
            2,
            Value::from(3u64),
        );
        let m = b.finish();
        let mut t =
            Translator { naming: Naming::Otel, namespace: "", resource_labels: &[], const_labels: &[], all_resource_attributes: false };
        let mut out = Vec::new();
        t.translate(m.resources(), &mut out);
        assert_eq!(out[0].labels, [("instance".to_string(), "i-1".to_string()), ("job".to_string(), "cart".to_string())]);
        t.all_resource_attributes = true;
        let mut out = Vec::new();
        t.translate(m.resources(), &mut out);
        assert!(out[0].labels.contains(&("cloud_region".to_string(), "eu".to_string())), "{:?}", out[0].labels);
        assert!(!out[0].labels.iter().any(|(n, _)| n == "service_name"), "{:?}", out[0].labels);
        let info = t.target_info(m.resources(), 5);
        assert_eq!(info[0].labels.iter().filter(|(n, _)| n == "job").count(), 1, "{:?}", info[0].labels);
    }

    #[test]
    fn number_format() {
        assert_eq!(format_value(50118222.0), "50118222");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(1e20), "100000000000000000000");
    }
}
