//! Exporter `prometheus_remote_write` (alias `prometheusremotewrite`): Prometheus remote
//! write 1.0: a snappy block-compressed protobuf `WriteRequest` with the three standard
//! headers, OTel or KubeSkoop naming (the scrape exporter's translation), external labels,
//! basic or bearer auth, custom headers, TLS; queued and retried by the exporter helper.

pub mod proto;

use std::collections::BTreeMap;
use std::sync::Arc;

use podnet_exporter_helper::{BasicAuth, HttpBackend, HttpSettings, QueueConfig, Request, RetryConfig, TlsConfig};
use podnet_pipeline::component::{
    BoxFuture, BuildError, ComponentContext, Exporter, ExporterFactory, Factory, FactoryInfo, Kind, Stability,
};
use podnet_pipeline::config::ConfigDuration;
use podnet_pipeline::fanout::Input;
use podnet_pipeline::pdata::{PData, Signal, keys};
use podnet_prometheus_translator::{HistogramFormat, Naming, NativeHistogram, ResourceToTelemetry, Sample, TargetInfo, Translator};
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::proto::{BucketSpan, Histogram, Label, Sample as RwSample, TimeSeries, WriteRequest};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteWriteConfig {
    /// `http(s)://host:port/api/v1/write`
    pub endpoint: String,
    pub naming: Naming,
    pub namespace: String,
    pub external_labels: BTreeMap<String, String>,
    pub resource_attributes_as_labels: Vec<String>,
    pub headers: BTreeMap<String, String>,
    pub basic_auth: Option<BasicAuth>,
    pub bearer_token: Option<String>,
    pub tls: TlsConfig,
    /// Per attempt.
    pub timeout: ConfigDuration,
    /// Larger requests are split.
    pub max_batch_size_bytes: usize,
    /// One `target_info` series per resource with all its attributes (otel naming only).
    pub target_info: TargetInfo,
    pub resource_to_telemetry_conversion: ResourceToTelemetry,
    /// Exponential histograms (podnet's latency probes, OTel SDKs' base-2 histograms) as
    /// `classic` buckets or `native` histograms ([`HistogramFormat`]).
    pub exponential_histograms: HistogramFormat,
    pub sending_queue: QueueConfig,
    pub retry_on_failure: RetryConfig,
}

impl Default for RemoteWriteConfig {
    fn default() -> Self {
        RemoteWriteConfig {
            endpoint: String::new(),
            naming: Naming::Otel,
            namespace: String::new(),
            external_labels: BTreeMap::new(),
            resource_attributes_as_labels: vec![
                keys::K8S_NODE_NAME.into(),
                keys::K8S_NAMESPACE_NAME.into(),
                keys::K8S_POD_NAME.into(),
                keys::NETNS_INODE.into(),
            ],
            headers: BTreeMap::new(),
            basic_auth: None,
            bearer_token: None,
            tls: TlsConfig::default(),
            timeout: ConfigDuration::from_secs(5),
            max_batch_size_bytes: 3_000_000,
            target_info: TargetInfo::default(),
            resource_to_telemetry_conversion: ResourceToTelemetry::default(),
            exponential_histograms: HistogramFormat::Classic,
            sending_queue: QueueConfig::default(),
            retry_on_failure: RetryConfig { initial_interval: ConfigDuration::from_millis(50), ..RetryConfig::default() },
        }
    }
}

const RESERVED_HEADERS: [&str; 4] = ["content-encoding", "content-type", "x-prometheus-remote-write-version", "user-agent"];

pub struct RemoteWriteExporterFactory;

impl Factory for RemoteWriteExporterFactory {
    type Config = RemoteWriteConfig;
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "prometheus_remote_write",
            aliases: &["prometheusremotewrite"],
            kind: Kind::Exporter,
            signals: &[Signal::Metrics],
            stability: Stability::Alpha,
            description: "Prometheus remote write 1.0 (snappy protobuf) with a queue and retries",
            probes: &[],
        }
    }
    fn validate(&self, c: &RemoteWriteConfig) -> Result<(), String> {
        podnet_exporter_helper::check_http_endpoint(&c.endpoint, "http(s)://host:port/api/v1/write")?;
        c.http().validate(&RESERVED_HEADERS)?;
        if c.max_batch_size_bytes < 1024 {
            return Err("max_batch_size_bytes must be at least 1024".into());
        }
        c.retry_on_failure.validate()
    }
}

impl RemoteWriteConfig {
    fn http(&self) -> HttpSettings<'_> {
        HttpSettings {
            timeout: self.timeout.0,
            tls: &self.tls,
            headers: &self.headers,
            basic_auth: self.basic_auth.as_ref(),
            bearer_token: self.bearer_token.as_deref(),
        }
    }
}

impl ExporterFactory for RemoteWriteExporterFactory {
    fn create(&self, config: &RemoteWriteConfig, ctx: ComponentContext) -> Result<Box<dyn Exporter>, BuildError> {
        let backend = HttpBackend::new(&config.http()).map_err(BuildError::new)?;
        Ok(Box::new(RemoteWriteExporter { config: config.clone(), backend, ctx }))
    }
}

struct RemoteWriteExporter {
    config: RemoteWriteConfig,
    backend: HttpBackend,
    ctx: ComponentContext,
}

/// Series of one batch, in remote-write form: `__name__` first, labels sorted, empty values
/// dropped, one sample each.
pub fn to_timeseries(samples: Vec<Sample>, external: &BTreeMap<String, String>) -> Vec<TimeSeries> {
    samples
        .into_iter()
        .map(|s| {
            let mut labels: BTreeMap<String, String> = external.clone();
            for (k, v) in s.labels {
                labels.insert(k, v);
            }
            labels.insert("__name__".into(), format!("{}{}", s.family, s.suffix));
            TimeSeries {
                labels: labels.into_iter().filter(|(_, v)| !v.is_empty()).map(|(name, value)| Label { name, value }).collect(),
                samples: vec![RwSample { value: s.value, timestamp: (s.time_unix_nano / 1_000_000) as i64 }],
                histograms: Vec::new(),
            }
        })
        .collect()
}

/// Buckets as remote write's spans and deltas.
fn spans_and_deltas(buckets: &[(i32, u64)]) -> (Vec<BucketSpan>, Vec<i64>) {
    let (spans, deltas) = podnet_prometheus_translator::spans_and_deltas(buckets);
    (spans.into_iter().map(|(offset, length)| BucketSpan { offset, length }).collect(), deltas)
}

/// Native histograms in remote-write form, labelled as [`to_timeseries`] labels samples.
pub fn native_to_timeseries(histograms: Vec<NativeHistogram>, external: &BTreeMap<String, String>) -> Vec<TimeSeries> {
    histograms
        .into_iter()
        .map(|h| {
            let mut labels: BTreeMap<String, String> = external.clone();
            labels.extend(h.labels);
            labels.insert("__name__".into(), h.family);
            let (positive_spans, positive_deltas) = spans_and_deltas(&h.positive);
            let (negative_spans, negative_deltas) = spans_and_deltas(&h.negative);
            let histogram = Histogram {
                count_int: h.count,
                sum: if h.stale { f64::from_bits(podnet_pipeline::pdata::STALE_NAN_BITS) } else { h.sum },
                schema: h.schema,
                zero_threshold: h.zero_threshold,
                zero_count_int: h.zero_count,
                negative_spans,
                negative_deltas,
                positive_spans,
                positive_deltas,
                reset_hint: 0,
                timestamp: (h.time_unix_nano / 1_000_000) as i64,
            };
            TimeSeries {
                labels: labels.into_iter().filter(|(_, v)| !v.is_empty()).map(|(name, value)| Label { name, value }).collect(),
                samples: Vec::new(),
                histograms: vec![histogram],
            }
        })
        .collect()
}

/// Splits series into requests of at most `max_bytes` encoded, then snappy-compresses each.
pub fn encode(series: Vec<TimeSeries>, max_bytes: usize) -> Vec<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    let mut current = WriteRequest::default();
    let mut size = 0;
    for ts in series {
        let len = ts.encoded_len() + 8;
        if size + len > max_bytes && !current.timeseries.is_empty() {
            out.push(std::mem::take(&mut current));
            size = 0;
        }
        size += len;
        current.timeseries.push(ts);
    }
    if !current.timeseries.is_empty() {
        out.push(current);
    }
    out.into_iter()
        .map(|req| {
            let n = req.timeseries.len();
            let body = snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap_or_default();
            (body, n)
        })
        .collect()
}

const CONTENT_HEADERS: [(&str, &str); 3] =
    [("Content-Encoding", "snappy"), ("Content-Type", "application/x-protobuf"), ("X-Prometheus-Remote-Write-Version", "0.1.0")];

impl Exporter for RemoteWriteExporter {
    fn run(self: Box<Self>, input: Input) -> BoxFuture {
        Box::pin(async move {
            let RemoteWriteExporter { config, backend, ctx } = *self;
            let endpoint = config.endpoint.clone();
            let transport = move |body: Arc<Vec<u8>>| backend.post(&endpoint, &CONTENT_HEADERS, body.as_ref().clone());
            let translator = Translator {
                naming: config.naming,
                namespace: &config.namespace,
                resource_labels: &config.resource_attributes_as_labels,
                const_labels: &[],
                all_resource_attributes: config.resource_to_telemetry_conversion.enabled,
            };
            let unsupported_warned = std::sync::atomic::AtomicBool::new(false);
            let delta_warned = std::sync::atomic::AtomicBool::new(false);
            let encode = |data: PData| {
                let PData::Metrics(m) = data else {
                    ctx.telemetry.dropped(Signal::Logs, data.item_count(), "unsupported_signal");
                    return Vec::new();
                };
                let mut samples = Vec::new();
                let mut natives = Vec::new();
                let native = config.exponential_histograms == HistogramFormat::Native;
                let skipped = translator.translate_with(m.resources(), &mut samples, native.then_some(&mut natives));
                if config.naming == Naming::Otel && config.target_info.enabled {
                    samples.extend(translator.target_info(m.resources(), podnet_pipeline::pdata::now_unix_nanos()));
                }
                if skipped.delta > 0 {
                    ctx.telemetry.dropped(Signal::Metrics, skipped.delta, "delta_temporality");
                    if !delta_warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                        tracing::warn!(component = %ctx.id, points = skipped.delta, "dropped delta-temporality points: remote write carries cumulative data only (from now on only counted, in podnet_component_dropped_total{{reason=\"delta_temporality\"}}; set the sender to cumulative temporality)");
                    }
                }
                if skipped.unsupported > 0 {
                    ctx.telemetry.dropped(Signal::Metrics, skipped.unsupported, "unsupported_type");
                    if !unsupported_warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                        tracing::warn!(component = %ctx.id, points = skipped.unsupported, "dropped exponential-histogram points this format cannot hold (negative buckets as classic buckets, or a scale below -4 as native; from now on only counted, in podnet_component_dropped_total{{reason=\"unsupported_type\"}})");
                    }
                }
                let mut series = to_timeseries(samples, &config.external_labels);
                series.extend(native_to_timeseries(natives, &config.external_labels));
                encode(series, config.max_batch_size_bytes)
                    .into_iter()
                    .map(|(body, items)| Request { body: Arc::new(body), signal: Signal::Metrics, items })
                    .collect()
            };
            podnet_exporter_helper::run_push_exporter(
                ctx.clone(),
                input,
                &config.sending_queue,
                &config.retry_on_failure,
                transport,
                encode,
            )
            .await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podnet_pipeline::pdata::{MetricDef, MetricsBuilder, kv_int, kv_str};

    #[test]
    fn native_buckets_are_spans_and_deltas() {
        let (spans, deltas) = spans_and_deltas(&[(-2, 3), (-1, 0), (0, 5), (4, 1), (5, 1)]);
        let spans: Vec<(i32, u32)> = spans.iter().map(|s| (s.offset, s.length)).collect();
        assert_eq!(spans, vec![(-2, 3), (3, 2)], "the second span starts 3 past the first one's end (index 1)");
        assert_eq!(deltas, vec![3, -3, 5, -4, 0]);
        assert_eq!(spans_and_deltas(&[]), (vec![], vec![]));
        // Counts past i64::MAX (any OTLP client may send them) wrap instead of panicking.
        let (_, deltas) = spans_and_deltas(&[(0, 1 << 63), (1, 1), (2, u64::MAX)]);
        assert_eq!(deltas, vec![i64::MIN, 1i64.wrapping_sub(i64::MIN), -2]);
    }

    #[test]
    fn any_scale_converts_without_overflow() {
        use podnet_pipeline::pdata::{
            ExponentialHistogram, ExponentialHistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics,
            exponential_histogram_data_point::Buckets, metric,
        };
        for scale in [i32::MIN, -5, 9, 100, i32::MAX] {
            let dp = ExponentialHistogramDataPoint {
                scale,
                count: 3,
                positive: Some(Buckets { offset: -2, bucket_counts: vec![1, 2] }),
                ..Default::default()
            };
            let m = Metric {
                name: "x".into(),
                unit: "ms".into(),
                data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram { data_points: vec![dp], aggregation_temporality: 2 })),
                ..Default::default()
            };
            let rm = ResourceMetrics { scope_metrics: vec![ScopeMetrics { metrics: vec![m], ..Default::default() }], ..Default::default() };
            let t =
                Translator { naming: Naming::Otel, namespace: "", resource_labels: &[], const_labels: &[], all_resource_attributes: false };
            let (mut classic, mut natives) = (Vec::new(), Vec::new());
            t.translate(std::slice::from_ref(&rm), &mut classic);
            let skipped = t.translate_with(std::slice::from_ref(&rm), &mut Vec::new(), Some(&mut natives));
            assert_eq!(skipped.unsupported + natives.len(), 1, "scale {scale}: one point, native or counted");
        }
    }

    #[test]
    fn exponential_histograms_become_native_series() {
        use podnet_pipeline::pdata::{
            ExponentialHistogram, ExponentialHistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics,
            exponential_histogram_data_point::Buckets, metric,
        };
        // Scale 10 is finer than Prometheus' 8: four OTel buckets merge into one.
        let dp = ExponentialHistogramDataPoint {
            scale: 10,
            count: 6,
            sum: Some(4.5),
            zero_count: 1,
            positive: Some(Buckets { offset: -3, bucket_counts: vec![1, 1, 1, 1, 1] }),
            time_unix_nano: 7_000_000,
            ..Default::default()
        };
        let h = ExponentialHistogram { data_points: vec![dp], aggregation_temporality: 2 };
        let m = Metric {
            name: "shop.payload.size".into(),
            unit: "By".into(),
            data: Some(metric::Data::ExponentialHistogram(h)),
            ..Default::default()
        };
        let rm = ResourceMetrics { scope_metrics: vec![ScopeMetrics { metrics: vec![m], ..Default::default() }], ..Default::default() };
        let t = Translator { naming: Naming::Otel, namespace: "", resource_labels: &[], const_labels: &[], all_resource_attributes: false };
        let (mut samples, mut natives) = (Vec::new(), Vec::new());
        t.translate_with(std::slice::from_ref(&rm), &mut samples, Some(&mut natives));
        assert!(samples.is_empty(), "no classic buckets besides: {samples:?}");
        // OTel indexes -3..=1 at scale 10 → -1,-1,-1,0,0 at scale 8 → Prometheus 0 and 1.
        assert_eq!((natives[0].schema, natives[0].positive.clone()), (8, vec![(0, 3), (1, 2)]));
        let series = native_to_timeseries(natives, &BTreeMap::new());
        let h = &series[0].histograms[0];
        assert_eq!(series[0].labels[0].value, "shop_payload_size_bytes");
        assert_eq!((h.count_int, h.sum, h.zero_count_int, h.timestamp), (6, 4.5, 1, 7));
        assert_eq!(h.positive_deltas, vec![3, -1]);
        // The classic path of the same point still works.
        let mut classic = Vec::new();
        t.translate(std::slice::from_ref(&rm), &mut classic);
        assert!(classic.iter().any(|s| s.suffix == "_count" && s.value == 6.0));
    }

    #[test]
    fn otel_naming_adds_one_target_info_per_resource() {
        const M: MetricDef = MetricDef::counter("system.network.io", "", "By");
        let mut b = MetricsBuilder::new("t");
        for inode in [1, 2] {
            b.resource(vec![kv_str(keys::K8S_NODE_NAME, "n"), kv_int(keys::NETNS_INODE, inode), kv_str("host.arch", "amd64")]).point(
                &M,
                vec![],
                1,
                5_000_000,
                7u64.into(),
            );
        }
        let m = b.finish();
        let cfg = RemoteWriteConfig::default();
        let t = Translator {
            naming: Naming::Otel,
            namespace: "",
            resource_labels: &cfg.resource_attributes_as_labels,
            const_labels: &[],
            all_resource_attributes: false,
        };
        let infos = t.target_info(m.resources(), 9_000_000);
        assert_eq!(infos.len(), 2);
        let series = to_timeseries(infos, &BTreeMap::new());
        let labels: Vec<(&str, &str)> = series[0].labels.iter().map(|l| (l.name.as_str(), l.value.as_str())).collect();
        assert_eq!(labels, [("__name__", "target_info"), ("host_arch", "amd64"), ("k8s_node_name", "n"), ("podnet_netns_inode", "1")]);
        assert_eq!((series[0].samples[0].value, series[0].samples[0].timestamp), (1.0, 9));
    }
}
