//! `service::telemetry`: podnet's own logs and metrics.

use serde::{Deserialize, Serialize};

use super::ConfigDuration;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    pub logs: LogsTelemetry,
    pub metrics: MetricsTelemetry,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsTelemetry {
    pub level: LogLevel,
    pub encoding: LogEncoding,
}

impl Default for LogsTelemetry {
    fn default() -> Self {
        LogsTelemetry { level: LogLevel::Info, encoding: LogEncoding::Console }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogEncoding {
    /// Human-readable text (the Collector's name; `text` is accepted too).
    #[serde(alias = "text")]
    Console,
    Json,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsTelemetry {
    /// `none` turns podnet's own metrics off; `normal` serves them on every Prometheus
    /// exporter's endpoint with the `podnet_` prefix.
    pub level: MetricsLevel,
    /// Also push them with OTLP/gRPC.
    pub otlp: Option<OtlpPush>,
}

impl Default for MetricsTelemetry {
    fn default() -> Self {
        MetricsTelemetry { level: MetricsLevel::Normal, otlp: None }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsLevel {
    None,
    Normal,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpPush {
    /// `http://host:4317` (plaintext) or `https://host:4317`.
    pub endpoint: String,
    #[serde(default = "default_push_interval")]
    pub interval: ConfigDuration,
    #[serde(default = "default_push_timeout")]
    pub timeout: ConfigDuration,
}

fn default_push_interval() -> ConfigDuration {
    ConfigDuration::from_secs(60)
}
fn default_push_timeout() -> ConfigDuration {
    ConfigDuration::from_secs(10)
}
