//! Prometheus' protobuf exposition (`io.prometheus.client.MetricFamily`, length-delimited):
//! the one scrape format that carries native histograms. Served when the scraper asks for it
//! (Prometheus does with `--enable-feature=native-histograms`) and the exporter has
//! `exponential_histograms: native`; the messages are hand-written with prost (the few of
//! `client_model/metrics.proto` used here).

use std::collections::BTreeMap;

use podnet_prometheus_translator::{FamilyType, NativeHistogram};

use crate::store::split_last_label;

pub const CONTENT_TYPE: &str = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricFamily {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub help: String,
    /// COUNTER 0, GAUGE 1, SUMMARY 2, UNTYPED 3, HISTOGRAM 4.
    #[prost(int32, tag = "3")]
    pub r#type: i32,
    #[prost(message, repeated, tag = "4")]
    pub metric: Vec<Metric>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Metric {
    #[prost(message, repeated, tag = "1")]
    pub label: Vec<LabelPair>,
    #[prost(message, optional, tag = "2")]
    pub gauge: Option<Value>,
    #[prost(message, optional, tag = "3")]
    pub counter: Option<Value>,
    #[prost(message, optional, tag = "4")]
    pub summary: Option<Summary>,
    #[prost(message, optional, tag = "7")]
    pub histogram: Option<Histogram>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelPair {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `Gauge` and `Counter` (its exemplar and created timestamp left out).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Value {
    #[prost(double, tag = "1")]
    pub value: f64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    #[prost(uint64, tag = "1")]
    pub sample_count: u64,
    #[prost(double, tag = "2")]
    pub sample_sum: f64,
    #[prost(message, repeated, tag = "3")]
    pub quantile: Vec<Quantile>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Quantile {
    #[prost(double, tag = "1")]
    pub quantile: f64,
    #[prost(double, tag = "2")]
    pub value: f64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Histogram {
    #[prost(uint64, tag = "1")]
    pub sample_count: u64,
    #[prost(double, tag = "2")]
    pub sample_sum: f64,
    /// Classic buckets, ascending, cumulative; `+Inf` is implied by `sample_count`.
    #[prost(message, repeated, tag = "3")]
    pub bucket: Vec<Bucket>,
    #[prost(sint32, tag = "5")]
    pub schema: i32,
    #[prost(double, tag = "6")]
    pub zero_threshold: f64,
    #[prost(uint64, tag = "7")]
    pub zero_count: u64,
    #[prost(message, repeated, tag = "9")]
    pub negative_span: Vec<BucketSpan>,
    #[prost(sint64, repeated, tag = "10")]
    pub negative_delta: Vec<i64>,
    #[prost(message, repeated, tag = "12")]
    pub positive_span: Vec<BucketSpan>,
    #[prost(sint64, repeated, tag = "13")]
    pub positive_delta: Vec<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Bucket {
    #[prost(uint64, tag = "1")]
    pub cumulative_count: u64,
    #[prost(double, tag = "2")]
    pub upper_bound: f64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BucketSpan {
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    #[prost(uint32, tag = "2")]
    pub length: u32,
}

pub const COUNTER: i32 = 0;
pub const GAUGE: i32 = 1;
pub const SUMMARY: i32 = 2;
pub const HISTOGRAM: i32 = 4;

/// Label pairs from the exposition text the store keeps (`a="x",b="y\"z"`).
pub fn parse_labels(text: &str) -> Vec<LabelPair> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while chars.peek().is_some() {
        let name: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        chars.next(); // '='
        chars.next(); // '"'
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => {}
                },
                c => value.push(c),
            }
        }
        out.push(LabelPair { name, value });
        chars.next_if_eq(&',');
    }
    out
}

fn number(v: &str) -> f64 {
    match v {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().unwrap_or(f64::NAN),
    }
}

/// One family from the store's series: (suffix, label text, value).
pub fn family<'a>(name: &str, kind: FamilyType, help: &str, series: impl Iterator<Item = (&'static str, &'a str, f64)>) -> MetricFamily {
    let mut mf = MetricFamily { name: name.to_string(), help: help.to_string(), r#type: GAUGE, metric: Vec::new() };
    match kind {
        FamilyType::Counter | FamilyType::Gauge => {
            mf.r#type = if kind == FamilyType::Counter { COUNTER } else { GAUGE };
            for (_, labels, value) in series {
                let v = Some(Value { value });
                let (counter, gauge) = if kind == FamilyType::Counter { (v, None) } else { (None, v) };
                mf.metric.push(Metric { label: parse_labels(labels), counter, gauge, ..Default::default() });
            }
        }
        FamilyType::Histogram => {
            mf.r#type = HISTOGRAM;
            let mut by_labels: BTreeMap<&str, Histogram> = BTreeMap::new();
            for (suffix, labels, value) in series {
                let (base, le) = if suffix == "_bucket" { split_last_label(labels, "le") } else { (labels, None) };
                let h = by_labels.entry(base).or_default();
                match (suffix, le) {
                    ("_bucket", Some(le)) if number(le).is_finite() => {
                        h.bucket.push(Bucket { cumulative_count: value as u64, upper_bound: number(le) })
                    }
                    ("_sum", _) => h.sample_sum = value,
                    ("_count", _) => h.sample_count = value as u64,
                    _ => {}
                }
            }
            for (labels, mut h) in by_labels {
                h.bucket.sort_by(|a, b| a.upper_bound.total_cmp(&b.upper_bound));
                mf.metric.push(Metric { label: parse_labels(labels), histogram: Some(h), ..Default::default() });
            }
        }
        FamilyType::Summary => {
            mf.r#type = SUMMARY;
            let mut by_labels: BTreeMap<&str, Summary> = BTreeMap::new();
            for (suffix, labels, value) in series {
                let (base, q) = if suffix.is_empty() { split_last_label(labels, "quantile") } else { (labels, None) };
                let s = by_labels.entry(base).or_default();
                match (suffix, q) {
                    ("", Some(q)) => s.quantile.push(Quantile { quantile: number(q), value }),
                    ("_sum", _) => s.sample_sum = value,
                    ("_count", _) => s.sample_count = value as u64,
                    _ => {}
                }
            }
            for (labels, s) in by_labels {
                mf.metric.push(Metric { label: parse_labels(labels), summary: Some(s), ..Default::default() });
            }
        }
    }
    mf
}

/// A native histogram into its family: onto the metric with the same labels (a histogram
/// with classic buckets too), or as a metric of its own.
pub fn add_native(mf: &mut MetricFamily, labels: &str, n: &NativeHistogram) {
    let label = parse_labels(labels);
    let index = match mf.metric.iter().position(|m| m.label == label && m.histogram.is_some()) {
        Some(i) => i,
        None => {
            mf.metric.push(Metric { label, histogram: Some(Histogram::default()), ..Default::default() });
            mf.metric.len() - 1
        }
    };
    let Some(h) = mf.metric[index].histogram.as_mut() else { return };
    let (positive_span, positive_delta) = podnet_prometheus_translator::spans_and_deltas(&n.positive);
    let (negative_span, negative_delta) = podnet_prometheus_translator::spans_and_deltas(&n.negative);
    h.sample_count = n.count;
    h.sample_sum = n.sum;
    h.schema = n.schema;
    // Prometheus tells a native histogram by its fields; an all-zero one would read as
    // classic. The smallest positive threshold keeps it native and changes nothing.
    h.zero_threshold = if n.zero_threshold > 0.0 { n.zero_threshold } else { f64::MIN_POSITIVE };
    h.zero_count = n.zero_count;
    h.positive_span = positive_span.into_iter().map(|(offset, length)| BucketSpan { offset, length }).collect();
    h.positive_delta = positive_delta;
    h.negative_span = negative_span.into_iter().map(|(offset, length)| BucketSpan { offset, length }).collect();
    h.negative_delta = negative_delta;
}
