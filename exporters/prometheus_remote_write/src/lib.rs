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
use podnet_prometheus_translator::{Naming, ResourceToTelemetry, Sample, TargetInfo, Translator};
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::proto::{Label, Sample as RwSample, TimeSeries, WriteRequest};

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
            let encode = |data: PData| {
                let PData::Metrics(m) = data else {
                    ctx.telemetry.dropped(Signal::Logs, data.item_count(), "unsupported_signal");
                    return Vec::new();
                };
                let mut samples = Vec::new();
                let skipped = translator.translate(m.resources(), &mut samples);
                if config.naming == Naming::Otel && config.target_info.enabled {
                    samples.extend(translator.target_info(m.resources(), podnet_pipeline::pdata::now_unix_nanos()));
                }
                if skipped.delta > 0 {
                    ctx.telemetry.dropped(Signal::Metrics, skipped.delta, "delta_temporality");
                    tracing::warn!(component = %ctx.id, points = skipped.delta, "dropped delta-temporality points: remote write carries cumulative data only");
                }
                encode(to_timeseries(samples, &config.external_labels), config.max_batch_size_bytes)
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
