//! Exporters `otlp_grpc` (alias `otlp`) and `otlp_http` (alias `otlphttp`): metrics and
//! logs as OTLP, gzip by default, headers, timeouts, TLS, and the Collector's config keys;
//! queued and retried by the exporter helper with the OTLP specification's retryable codes.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use podnet_exporter_helper::{HttpBackend, HttpSettings, QueueConfig, Request, RetryConfig, SendError, SendFuture, TlsConfig};
use podnet_pipeline::component::{
    BoxFuture, BuildError, ComponentContext, Exporter, ExporterFactory, Factory, FactoryInfo, Kind, Stability,
};
use podnet_pipeline::config::ConfigDuration;
use podnet_pipeline::fanout::Input;
use podnet_pipeline::pdata::{PData, Signal};
use prost::Message;
use serde::{Deserialize, Serialize};
use tonic::codec::CompressionEncoding;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Gzip,
    None,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    /// gRPC: `http(s)://host:4317`; HTTP: `http(s)://host:4318` (`/v1/metrics`, `/v1/logs` appended).
    pub endpoint: String,
    /// HTTP only: full URLs overriding `endpoint` per signal.
    pub metrics_endpoint: Option<String>,
    pub logs_endpoint: Option<String>,
    pub compression: Compression,
    pub headers: BTreeMap<String, String>,
    pub tls: TlsConfig,
    pub timeout: ConfigDuration,
    pub sending_queue: QueueConfig,
    pub retry_on_failure: RetryConfig,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            endpoint: String::new(),
            metrics_endpoint: None,
            logs_endpoint: None,
            compression: Compression::Gzip,
            headers: BTreeMap::new(),
            tls: TlsConfig::default(),
            timeout: ConfigDuration::from_secs(5),
            sending_queue: QueueConfig::default(),
            retry_on_failure: RetryConfig::default(),
        }
    }
}

fn validate(c: &OtlpConfig) -> Result<(), String> {
    if c.endpoint.is_empty() && (c.metrics_endpoint.is_none() || c.logs_endpoint.is_none()) {
        return Err("requires a non-empty \"endpoint\"".into());
    }
    for e in [Some(&c.endpoint), c.metrics_endpoint.as_ref(), c.logs_endpoint.as_ref()].into_iter().flatten().filter(|e| !e.is_empty()) {
        podnet_exporter_helper::check_http_endpoint(e, "")?;
    }
    if c.timeout.0.is_zero() {
        return Err("timeout must be greater than zero".into());
    }
    c.retry_on_failure.validate()
}

/// One batch, encoded once.
pub enum Body {
    Metrics(ExportMetricsServiceRequest),
    Logs(ExportLogsServiceRequest),
}

impl podnet_exporter_helper::Persist for Body {
    fn to_bytes(&self) -> Vec<u8> {
        let (tag, bytes) = match self {
            Body::Metrics(r) => (0u8, r.encode_to_vec()),
            Body::Logs(r) => (1u8, r.encode_to_vec()),
        };
        let mut out = vec![tag];
        out.extend(bytes);
        out
    }
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (tag, rest) = bytes.split_first()?;
        match tag {
            0 => ExportMetricsServiceRequest::decode(rest).ok().map(Body::Metrics),
            1 => ExportLogsServiceRequest::decode(rest).ok().map(Body::Logs),
            _ => None,
        }
    }
    fn byte_len(&self) -> usize {
        match self {
            Body::Metrics(r) => r.encoded_len(),
            Body::Logs(r) => r.encoded_len(),
        }
    }
}

impl podnet_exporter_helper::Persist for HttpBody {
    fn byte_len(&self) -> usize {
        self.bytes.len()
    }
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = (self.url.len() as u32).to_le_bytes().to_vec();
        out.extend(self.url.as_bytes());
        out.extend(&self.bytes);
        out
    }
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let len = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?) as usize;
        let url = String::from_utf8(bytes.get(4..4 + len)?.to_vec()).ok()?;
        Some(HttpBody { url, bytes: bytes.get(4 + len..)?.to_vec() })
    }
}

fn to_body(data: PData) -> (Body, Signal, usize) {
    let (signal, items) = (data.signal(), data.item_count());
    match data {
        PData::Metrics(m) => (Body::Metrics(m.to_request()), signal, items),
        PData::Logs(l) => (Body::Logs(l.to_request()), signal, items),
    }
}

/// OTLP's retryable gRPC codes; every other failure is permanent.
fn classify_grpc(status: tonic::Status) -> SendError {
    use tonic::Code::*;
    let reason = format!("gRPC {:?}: {}", status.code(), status.message());
    match status.code() {
        Unavailable | DeadlineExceeded | Aborted | Cancelled | OutOfRange | DataLoss | ResourceExhausted => {
            SendError::Retryable { reason, retry_after: None }
        }
        _ => SendError::Permanent(reason),
    }
}

/// One request per non-empty batch, encoded once for the queue by `encode`.
fn requests<R>(encode: impl Fn(Body) -> R) -> impl FnMut(PData) -> Vec<Request<R>> {
    move |d: PData| {
        let (body, signal, items) = to_body(d);
        if items == 0 {
            return Vec::new();
        }
        vec![Request { body: Arc::new(encode(body)), signal, items }]
    }
}

// --- otlp_grpc -------------------------------------------------------------------------------

pub struct OtlpGrpcExporterFactory;

impl Factory for OtlpGrpcExporterFactory {
    type Config = OtlpConfig;
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "otlp_grpc",
            aliases: &["otlp"],
            kind: Kind::Exporter,
            signals: &[Signal::Metrics, Signal::Logs],
            stability: Stability::Alpha,
            description: "OTLP over gRPC (metrics and logs), gzip, TLS, headers, queue and retries",
            probes: &[],
        }
    }
    fn validate(&self, c: &OtlpConfig) -> Result<(), String> {
        validate(c)?;
        if c.metrics_endpoint.is_some() || c.logs_endpoint.is_some() {
            return Err("metrics_endpoint and logs_endpoint are for otlp_http; otlp_grpc takes one endpoint".into());
        }
        Ok(())
    }
}

impl ExporterFactory for OtlpGrpcExporterFactory {
    fn create(&self, config: &OtlpConfig, ctx: ComponentContext) -> Result<Box<dyn Exporter>, BuildError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut endpoint = Endpoint::from_shared(config.endpoint.clone())
            .map_err(|e| BuildError::new(format!("endpoint \"{}\": {e}", config.endpoint)))?
            .timeout(config.timeout.0)
            .connect_timeout(config.timeout.0);
        if config.endpoint.starts_with("https://") && !config.tls.insecure {
            let tls = match config.tls.ca_pem().map_err(BuildError::new)? {
                Some(pem) => ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(pem)),
                None => ClientTlsConfig::new().with_webpki_roots(),
            };
            endpoint = endpoint.tls_config(tls).map_err(|e| BuildError::new(format!("TLS: {e}")))?;
        }
        // Connects on first use and reconnects by itself: a backend that is down at start is
        // retried like one that goes down later.
        let channel = endpoint.connect_lazy();
        Ok(Box::new(OtlpGrpcExporter { config: config.clone(), channel, ctx }))
    }
}

struct OtlpGrpcExporter {
    config: OtlpConfig,
    channel: Channel,
    ctx: ComponentContext,
}

impl Exporter for OtlpGrpcExporter {
    fn run(self: Box<Self>, input: Input) -> BoxFuture {
        let OtlpGrpcExporter { config, channel, ctx } = *self;
        let gzip = config.compression == Compression::Gzip;
        let headers: Vec<(tonic::metadata::MetadataKey<tonic::metadata::Ascii>, tonic::metadata::MetadataValue<tonic::metadata::Ascii>)> =
            config.headers.iter().filter_map(|(k, v)| Some((k.to_ascii_lowercase().parse().ok()?, v.parse().ok()?))).collect();
        let transport = move |body: Arc<Body>| -> SendFuture {
            let channel = channel.clone();
            let headers = headers.clone();
            Box::pin(async move {
                let result = match body.as_ref() {
                    Body::Metrics(req) => {
                        let mut client = MetricsServiceClient::new(channel);
                        if gzip {
                            client = client.send_compressed(CompressionEncoding::Gzip);
                        }
                        let mut r = tonic::Request::new(req.clone());
                        for (k, v) in headers {
                            r.metadata_mut().insert(k, v);
                        }
                        client.export(r).await.map(|_| ())
                    }
                    Body::Logs(req) => {
                        let mut client = LogsServiceClient::new(channel);
                        if gzip {
                            client = client.send_compressed(CompressionEncoding::Gzip);
                        }
                        let mut r = tonic::Request::new(req.clone());
                        for (k, v) in headers {
                            r.metadata_mut().insert(k, v);
                        }
                        client.export(r).await.map(|_| ())
                    }
                };
                result.map_err(classify_grpc)
            })
        };
        Box::pin(async move {
            let (queue, retry) = (config.sending_queue.clone(), config.retry_on_failure.clone());
            podnet_exporter_helper::run_push_exporter(ctx, input, &queue, &retry, transport, requests(|b| b)).await;
        })
    }
}

// --- otlp_http -------------------------------------------------------------------------------

pub struct OtlpHttpExporterFactory;

impl Factory for OtlpHttpExporterFactory {
    type Config = OtlpConfig;
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "otlp_http",
            aliases: &["otlphttp"],
            kind: Kind::Exporter,
            signals: &[Signal::Metrics, Signal::Logs],
            stability: Stability::Alpha,
            description: "OTLP over HTTP (protobuf), gzip, TLS, headers, queue and retries",
            probes: &[],
        }
    }
    fn validate(&self, c: &OtlpConfig) -> Result<(), String> {
        validate(c)
    }
}

/// An encoded HTTP request: URL and body (protobuf, gzipped when configured).
pub struct HttpBody {
    url: String,
    bytes: Vec<u8>,
}

fn url_for(config: &OtlpConfig, signal: Signal) -> String {
    let explicit = match signal {
        Signal::Metrics => &config.metrics_endpoint,
        Signal::Logs => &config.logs_endpoint,
    };
    explicit.clone().unwrap_or_else(|| format!("{}/v1/{}", config.endpoint.trim_end_matches('/'), signal.as_str()))
}

impl ExporterFactory for OtlpHttpExporterFactory {
    fn create(&self, config: &OtlpConfig, ctx: ComponentContext) -> Result<Box<dyn Exporter>, BuildError> {
        let settings =
            HttpSettings { timeout: config.timeout.0, tls: &config.tls, headers: &config.headers, basic_auth: None, bearer_token: None };
        let backend = HttpBackend::new(&settings).map_err(BuildError::new)?;
        Ok(Box::new(OtlpHttpExporter { config: config.clone(), backend, ctx }))
    }
}

struct OtlpHttpExporter {
    config: OtlpConfig,
    backend: HttpBackend,
    ctx: ComponentContext,
}

impl Exporter for OtlpHttpExporter {
    fn run(self: Box<Self>, input: Input) -> BoxFuture {
        let OtlpHttpExporter { config, backend, ctx } = *self;
        let gzip = config.compression == Compression::Gzip;
        let content: &[(&str, &str)] = if gzip {
            &[("Content-Type", "application/x-protobuf"), ("Content-Encoding", "gzip")]
        } else {
            &[("Content-Type", "application/x-protobuf")]
        };
        let transport = move |body: Arc<HttpBody>| backend.post(&body.url, content, body.bytes.clone());
        let cfg = config.clone();
        let encode = move |b: Body| {
            let (signal, raw) = match b {
                Body::Metrics(r) => (Signal::Metrics, r.encode_to_vec()),
                Body::Logs(r) => (Signal::Logs, r.encode_to_vec()),
            };
            let bytes = if gzip { gzip_bytes(&raw) } else { raw };
            HttpBody { url: url_for(&cfg, signal), bytes }
        };
        Box::pin(async move {
            let (queue, retry) = (config.sending_queue.clone(), config.retry_on_failure.clone());
            podnet_exporter_helper::run_push_exporter(ctx, input, &queue, &retry, transport, requests(encode)).await;
        })
    }
}

fn gzip_bytes(raw: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(raw.len() / 4), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(raw);
    enc.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_follow_the_otlp_spec() {
        assert!(matches!(classify_grpc(tonic::Status::unavailable("down")), SendError::Retryable { .. }));
        assert!(matches!(classify_grpc(tonic::Status::invalid_argument("bad")), SendError::Permanent(_)));
        assert!(matches!(classify_grpc(tonic::Status::unauthenticated("no")), SendError::Permanent(_)));
    }

    #[test]
    fn http_urls_per_signal() {
        let c = OtlpConfig {
            endpoint: "http://gw:4318/".into(),
            logs_endpoint: Some("http://loki:3100/otlp/v1/logs".into()),
            ..Default::default()
        };
        assert_eq!(url_for(&c, Signal::Metrics), "http://gw:4318/v1/metrics");
        assert_eq!(url_for(&c, Signal::Logs), "http://loki:3100/otlp/v1/logs");
    }
}
