//! Exporter `loki`: events (log records) to Loki's push API, `/loki/api/v1/push`, as
//! snappy-compressed protobuf or JSON. Stream labels come from a small, configured set of
//! resource and record attributes (node, namespace, pod, event type by default: never a
//! per-event value); the rest travel as structured metadata. The kernel's timestamp is the
//! entry's time; entries are time-ordered within each stream. Loki's native OTLP endpoint
//! is the other route: `otlp_http` with `logs_endpoint: http://loki:3100/otlp/v1/logs`.

pub mod proto;

use std::collections::BTreeMap;
use std::sync::Arc;

use podnet_exporter_helper::{BasicAuth, HttpBackend, HttpSettings, QueueConfig, Request, RetryConfig, TlsConfig};
use podnet_pipeline::component::{
    BoxFuture, BuildError, ComponentContext, Exporter, ExporterFactory, Factory, FactoryInfo, Kind, Stability,
};
use podnet_pipeline::config::ConfigDuration;
use podnet_pipeline::fanout::Input;
use podnet_pipeline::pdata::{KeyValue, LogRecord, PData, ResourceLogs, Signal, any_value, any_value_to_string, attr_string, keys};
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::proto::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp};

/// The record's event name (`PacketLoss`, `TCPRESET_NOSOCK`), usable as a label source.
pub const EVENT_NAME: &str = "event.name";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Protobuf,
    Json,
    /// KubeSkoop's loki sink: protobuf, one stream `{instance="<node>", job="kubeskoop"}`
    /// per node, the KubeSkoop JSON event as the line, so its console's `{job="kubeskoop"} |
    /// json` queries keep working. `labels` do not apply.
    Kubeskoop,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LokiConfig {
    /// `http(s)://loki:3100/loki/api/v1/push`
    pub endpoint: String,
    pub format: Format,
    /// Sent as `X-Scope-OrgID`.
    pub tenant_id: Option<String>,
    /// Stream label → the resource or record attribute it comes from (`event.name` is the
    /// record's event name).
    pub labels: BTreeMap<String, String>,
    pub headers: BTreeMap<String, String>,
    pub basic_auth: Option<BasicAuth>,
    pub bearer_token: Option<String>,
    pub tls: TlsConfig,
    pub timeout: ConfigDuration,
    pub sending_queue: QueueConfig,
    pub retry_on_failure: RetryConfig,
}

impl Default for LokiConfig {
    fn default() -> Self {
        let labels =
            [("k8s_node", "k8s.node.name"), ("k8s_namespace", "k8s.namespace.name"), ("k8s_pod", "k8s.pod.name"), ("type", EVENT_NAME)]
                .into_iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
        LokiConfig {
            endpoint: String::new(),
            format: Format::Protobuf,
            tenant_id: None,
            labels,
            headers: BTreeMap::new(),
            basic_auth: None,
            bearer_token: None,
            tls: TlsConfig::default(),
            timeout: ConfigDuration::from_secs(5),
            sending_queue: QueueConfig::default(),
            retry_on_failure: RetryConfig::default(),
        }
    }
}

pub struct LokiExporterFactory;

impl Factory for LokiExporterFactory {
    type Config = LokiConfig;
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "loki",
            aliases: &[],
            kind: Kind::Exporter,
            signals: &[Signal::Logs],
            stability: Stability::Alpha,
            description: "Events to Loki's push API (protobuf + snappy, or JSON), with a queue and retries",
            probes: &[],
        }
    }
    fn validate(&self, c: &LokiConfig) -> Result<(), String> {
        podnet_exporter_helper::check_http_endpoint(&c.endpoint, "http(s)://loki:3100/loki/api/v1/push")?;
        if c.labels.is_empty() {
            return Err("labels must name at least one stream label (Loki needs one)".into());
        }
        for l in c.labels.keys() {
            let ok = l.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(format!("labels: \"{l}\" is not a valid Loki label name"));
            }
        }
        c.http().validate(&["content-type"])?;
        c.retry_on_failure.validate()
    }
}

impl LokiConfig {
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

impl ExporterFactory for LokiExporterFactory {
    fn create(&self, config: &LokiConfig, ctx: ComponentContext) -> Result<Box<dyn Exporter>, BuildError> {
        let backend = HttpBackend::new(&config.http()).map_err(BuildError::new)?;
        Ok(Box::new(LokiExporter { config: config.clone(), backend, ctx }))
    }
}

struct LokiExporter {
    config: LokiConfig,
    backend: HttpBackend,
    ctx: ComponentContext,
}

/// One entry before encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub time_unix_nano: u64,
    pub line: String,
    pub metadata: Vec<(String, String)>,
}

/// Streams in KubeSkoop's shape: per node, the KubeSkoop event line as it is.
pub fn to_kubeskoop_streams(resources: &[ResourceLogs]) -> BTreeMap<Vec<(String, String)>, Vec<Entry>> {
    let mut streams: BTreeMap<Vec<(String, String)>, Vec<Entry>> = BTreeMap::new();
    for rl in resources {
        let res_attrs: &[KeyValue] = rl.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or(&[]);
        let node = attr_string(res_attrs, keys::K8S_NODE_NAME).unwrap_or_default();
        let stream = vec![("instance".to_string(), node), ("job".to_string(), "kubeskoop".to_string())];
        let entries = streams.entry(stream).or_default();
        for rec in rl.scope_logs.iter().flat_map(|s| &s.log_records) {
            let line = podnet_pipeline::kubeskoop_event::event_line(res_attrs, rec);
            entries.push(Entry { time_unix_nano: entry_time(rec), line, metadata: Vec::new() });
        }
    }
    time_ordered(streams)
}

/// Streams (sorted label set → time-ordered entries) from a batch of log records.
pub fn to_streams(resources: &[ResourceLogs], labels: &BTreeMap<String, String>) -> BTreeMap<Vec<(String, String)>, Vec<Entry>> {
    let mut streams: BTreeMap<Vec<(String, String)>, Vec<Entry>> = BTreeMap::new();
    for rl in resources {
        let res_attrs: &[KeyValue] = rl.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or(&[]);
        for rec in rl.scope_logs.iter().flat_map(|s| &s.log_records) {
            let mut stream = Vec::new();
            let mut used = Vec::new();
            for (label, source) in labels {
                let value = if source == EVENT_NAME {
                    (!rec.event_name.is_empty()).then(|| rec.event_name.clone())
                } else {
                    attr_string(&rec.attributes, source).or_else(|| attr_string(res_attrs, source))
                };
                if let Some(v) = value.filter(|v| !v.is_empty()) {
                    stream.push((label.clone(), v));
                    used.push(source.as_str());
                }
            }
            let metadata = rec
                .attributes
                .iter()
                .filter(|kv| !used.contains(&kv.key.as_str()))
                .map(|kv| (kv.key.replace('.', "_"), kv.value.as_ref().map(any_value_to_string).unwrap_or_default()))
                .collect();
            streams.entry(stream).or_default().push(Entry { time_unix_nano: entry_time(rec), line: line(rec), metadata });
        }
    }
    time_ordered(streams)
}

/// Loki takes each stream's entries in time order.
fn time_ordered(mut streams: BTreeMap<Vec<(String, String)>, Vec<Entry>>) -> BTreeMap<Vec<(String, String)>, Vec<Entry>> {
    for entries in streams.values_mut() {
        entries.sort_by_key(|e| e.time_unix_nano);
    }
    streams
}

fn entry_time(rec: &LogRecord) -> u64 {
    if rec.time_unix_nano != 0 { rec.time_unix_nano } else { rec.observed_time_unix_nano }
}

/// The log line: a string body as it is; otherwise the body and attributes as JSON.
fn line(rec: &LogRecord) -> String {
    match rec.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        _ => {
            let attrs: serde_json::Map<String, serde_json::Value> = rec
                .attributes
                .iter()
                .map(|kv| (kv.key.clone(), serde_json::Value::String(kv.value.as_ref().map(any_value_to_string).unwrap_or_default())))
                .collect();
            let mut obj = serde_json::Map::new();
            obj.insert("type".into(), rec.event_name.clone().into());
            if let Some(b) = &rec.body {
                obj.insert("body".into(), any_value_to_string(b).into());
            }
            obj.insert("attributes".into(), serde_json::Value::Object(attrs));
            serde_json::Value::Object(obj).to_string()
        }
    }
}

/// The stream selector Loki parses the labels from: values are Go string literals, so a
/// newline or other control character in a value is escaped (raw, Loki refuses the push).
fn label_string(labels: &[(String, String)]) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() && u32::from(c) < 0x100 => out.push_str(&format!("\\x{:02x}", u32::from(c))),
                c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
    out
}

/// The request body and its content type.
pub fn encode(streams: BTreeMap<Vec<(String, String)>, Vec<Entry>>, format: Format) -> (Vec<u8>, &'static str) {
    match format {
        Format::Protobuf | Format::Kubeskoop => {
            let req = PushRequest {
                streams: streams
                    .into_iter()
                    .map(|(labels, entries)| StreamAdapter {
                        labels: label_string(&labels),
                        entries: entries
                            .into_iter()
                            .map(|e| EntryAdapter {
                                timestamp: Some(Timestamp {
                                    seconds: (e.time_unix_nano / 1_000_000_000) as i64,
                                    nanos: (e.time_unix_nano % 1_000_000_000) as i32,
                                }),
                                line: e.line,
                                structured_metadata: e.metadata.into_iter().map(|(name, value)| LabelPairAdapter { name, value }).collect(),
                            })
                            .collect(),
                        hash: 0,
                    })
                    .collect(),
            };
            (snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap_or_default(), "application/x-protobuf")
        }
        Format::Json => {
            let streams: Vec<serde_json::Value> = streams
                .into_iter()
                .map(|(labels, entries)| {
                    let stream: serde_json::Map<String, serde_json::Value> = labels.into_iter().map(|(k, v)| (k, v.into())).collect();
                    let values: Vec<serde_json::Value> = entries
                        .into_iter()
                        .map(|e| {
                            let md: serde_json::Map<String, serde_json::Value> =
                                e.metadata.into_iter().map(|(k, v)| (k, v.into())).collect();
                            serde_json::json!([e.time_unix_nano.to_string(), e.line, md])
                        })
                        .collect();
                    serde_json::json!({ "stream": stream, "values": values })
                })
                .collect();
            (serde_json::json!({ "streams": streams }).to_string().into_bytes(), "application/json")
        }
    }
}

struct Body {
    bytes: Vec<u8>,
    content_type: &'static str,
}

impl podnet_exporter_helper::Persist for Body {
    fn byte_len(&self) -> usize {
        self.bytes.len()
    }
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![u8::from(self.content_type == "application/json")];
        out.extend_from_slice(&self.bytes);
        out
    }
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (kind, rest) = bytes.split_first()?;
        let content_type = if *kind == 1 { "application/json" } else { "application/x-protobuf" };
        Some(Body { bytes: rest.to_vec(), content_type })
    }
}

impl Exporter for LokiExporter {
    fn run(self: Box<Self>, input: Input) -> BoxFuture {
        Box::pin(async move {
            let LokiExporter { config, backend, ctx } = *self;
            let (endpoint, tenant) = (config.endpoint.clone(), config.tenant_id.clone());
            let transport = move |body: Arc<Body>| {
                let mut content = vec![("Content-Type", body.content_type)];
                if let Some(t) = &tenant {
                    content.push(("X-Scope-OrgID", t.as_str()));
                }
                backend.post(&endpoint, &content, body.bytes.clone())
            };
            let encode = |d: PData| {
                let PData::Logs(logs) = d else {
                    ctx.telemetry.dropped(Signal::Metrics, d.item_count(), "unsupported_signal");
                    return Vec::new();
                };
                let items = logs.record_count();
                if items == 0 {
                    return Vec::new();
                }
                let streams = match config.format {
                    Format::Kubeskoop => to_kubeskoop_streams(logs.resources()),
                    _ => to_streams(logs.resources(), &config.labels),
                };
                let (bytes, content_type) = encode(streams, config.format);
                vec![Request { body: Arc::new(Body { bytes, content_type }), signal: Signal::Logs, items }]
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
