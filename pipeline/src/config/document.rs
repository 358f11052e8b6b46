//! The config document as written, before any component is looked up.

use std::collections::BTreeMap;

use figment::value::Value;
use serde::Deserialize;

use super::TelemetryConfig;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) receivers: BTreeMap<String, Value>,
    #[serde(default)]
    pub(super) processors: BTreeMap<String, Value>,
    #[serde(default)]
    pub(super) exporters: BTreeMap<String, Value>,
    #[serde(default)]
    pub(super) extensions: BTreeMap<String, Value>,
    #[serde(default)]
    pub(super) connectors: BTreeMap<String, Value>,
    pub(super) service: Option<RawService>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    #[serde(default)]
    pub(super) extensions: Vec<String>,
    #[serde(default)]
    pub(super) pipelines: BTreeMap<String, RawPipeline>,
    #[serde(default)]
    pub(super) telemetry: TelemetryConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPipeline {
    #[serde(default)]
    pub(super) receivers: Vec<String>,
    #[serde(default)]
    pub(super) processors: Vec<String>,
    #[serde(default)]
    pub(super) exporters: Vec<String>,
}
