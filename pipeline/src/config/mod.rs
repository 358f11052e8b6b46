//! Loading a pipeline config: YAML text → `${env:…}` expansion → figment (plus
//! `PODNET_CFG_…` overrides) → each component's typed config through its factory →
//! the Collector's structural checks. Every error names its config path.

mod expand;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use figment::providers::{Env, Format};
use figment::value::{Dict, Value};
use figment::{Figment, error::Kind as FigKind};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use expand::{Expanded, expand_env};

use crate::component::{ComponentConfig, ComponentId, DynFactory, Kind, Registry};
use crate::pdata::Signal;

/// Prefix of environment variables that override config keys; `__` separates levels and
/// `___` stands for the `/` of a component id:
/// `PODNET_CFG_RECEIVERS__PROCFS___PODS__COLLECTION_INTERVAL=30s`. It is distinct from any
/// variable a shipped config reads through `${env:…}` (`PODNET_LISTEN`, `PODNET_NODE_NAME`).
pub const ENV_OVERRIDE_PREFIX: &str = "PODNET_CFG_";

/// One problem in a config, at a path like `receivers::procfs/pods::collection_interval`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError { path: path.into(), message: message.into() }
    }
    pub fn top(message: impl Into<String>) -> Self {
        ConfigError { path: String::new(), message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() { f.write_str(&self.message) } else { write!(f, "{}: {}", self.path, self.message) }
    }
}

/// All problems found in one config, reported together.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    /// The file (or embedded config) the errors are in.
    pub origin: String,
    pub errors: Vec<ConfigError>,
    /// Context that helps fix the errors (environment overrides in effect).
    pub notes: Vec<String>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration {}:", self.origin)?;
        for e in &self.errors {
            write!(f, "\n  {e}")?;
        }
        for n in &self.notes {
            write!(f, "\nnote: {n}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    /// The messages alone, one per line (what tests assert).
    pub fn lines(&self) -> Vec<String> {
        self.errors.iter().map(ToString::to_string).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Value types shared by component configs

/// A duration written with a unit: `15s`, `500ms`, `5m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigDuration(pub std::time::Duration);

impl ConfigDuration {
    pub const fn from_secs(s: u64) -> Self {
        ConfigDuration(std::time::Duration::from_secs(s))
    }
    pub const fn from_millis(ms: u64) -> Self {
        ConfigDuration(std::time::Duration::from_millis(ms))
    }
}

impl Serialize for ConfigDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ConfigDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration with a unit, like \"15s\"")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ConfigDuration, E> {
                humantime::parse_duration(s.trim())
                    .map(ConfigDuration)
                    .map_err(|_| E::custom(format!("invalid duration \"{s}\" (write a number and a unit: 500ms, 15s, 5m, 1h)")))
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<ConfigDuration, E> {
                Err(E::custom(format!("invalid duration {n}: add a unit, like \"{n}s\"")))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<ConfigDuration, E> {
                Err(E::custom(format!("invalid duration {n}: add a unit, like \"{n}s\"")))
            }
            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<ConfigDuration, E> {
                Err(E::custom(format!("invalid duration {n}: add a unit, like \"{n}s\"")))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------------
// service::telemetry

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

// ---------------------------------------------------------------------------------------------
// The raw document

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    receivers: BTreeMap<String, Value>,
    #[serde(default)]
    processors: BTreeMap<String, Value>,
    #[serde(default)]
    exporters: BTreeMap<String, Value>,
    #[serde(default)]
    extensions: BTreeMap<String, Value>,
    #[serde(default)]
    connectors: BTreeMap<String, Value>,
    service: Option<RawService>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    #[serde(default)]
    extensions: Vec<String>,
    #[serde(default)]
    pipelines: BTreeMap<String, RawPipeline>,
    #[serde(default)]
    telemetry: TelemetryConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    #[serde(default)]
    receivers: Vec<String>,
    #[serde(default)]
    processors: Vec<String>,
    #[serde(default)]
    exporters: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// The resolved config

/// A component as configured: its factory and typed config.
#[derive(Clone)]
pub struct ResolvedComponent {
    pub factory: Arc<dyn DynFactory>,
    pub config: Arc<dyn ComponentConfig>,
}

impl fmt::Debug for ResolvedComponent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvedComponent").field("type", &self.factory.info().type_name).field("config", &self.config).finish()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelineConfig {
    pub signal: Signal,
    pub receivers: Vec<ComponentId>,
    pub processors: Vec<ComponentId>,
    pub exporters: Vec<ComponentId>,
}

/// A config that passed every check, ready for the topology.
#[derive(Clone, Debug)]
pub struct ResolvedConfig {
    pub source: String,
    pub components: BTreeMap<(Kind, ComponentId), ResolvedComponent>,
    pub pipelines: BTreeMap<String, PipelineConfig>,
    pub extensions: Vec<ComponentId>,
    pub telemetry: TelemetryConfig,
    /// Non-fatal findings: unused components, deprecated names, unset variables.
    pub warnings: Vec<String>,
    /// (variable, value) of what the environment put into the config (`${env:…}` and
    /// `PODNET_CFG_…`): [`ResolvedConfig::to_yaml_redacted`] hides these values.
    pub env_values: Vec<(String, String)>,
}

impl ResolvedConfig {
    pub fn component(&self, kind: Kind, id: &ComponentId) -> Option<&ResolvedComponent> {
        self.components.get(&(kind, id.clone()))
    }

    /// The effective config (defaults applied, env expanded) as YAML.
    /// The effective config as YAML, secrets included.
    pub fn to_yaml(&self) -> String {
        serde_norway::to_string(&self.tree()).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    /// The effective config as YAML for people to read and paste: values of keys that name
    /// secrets (passwords, tokens, Authorization headers) become `<redacted>`, and what came
    /// from the environment is shown as its `${env:NAME}` reference.
    pub fn to_yaml_redacted(&self) -> String {
        let mut env: Vec<&(String, String)> = self.env_values.iter().filter(|(_, v)| !v.is_empty()).collect();
        // Longest first, so a value inside another is not replaced within it first.
        env.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
        let mut tree = serde_json::Value::Object(self.tree());
        redact(&mut tree, &env);
        serde_norway::to_string(&tree).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    fn tree(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut root = serde_json::Map::new();
        for kind in Kind::ALL {
            let section: serde_json::Map<_, _> =
                self.components.iter().filter(|((k, _), _)| *k == kind).map(|((_, id), c)| (id.to_string(), c.config.to_json())).collect();
            if !section.is_empty() {
                root.insert(kind.section().to_string(), serde_json::Value::Object(section));
            }
        }
        let pipelines: serde_json::Map<_, _> = self
            .pipelines
            .iter()
            .map(|(id, p)| {
                let ids = |v: &[ComponentId]| serde_json::Value::from(v.iter().map(ToString::to_string).collect::<Vec<_>>());
                (
                    id.clone(),
                    serde_json::json!({"receivers": ids(&p.receivers), "processors": ids(&p.processors), "exporters": ids(&p.exporters)}),
                )
            })
            .collect();
        let mut service = serde_json::Map::new();
        if !self.extensions.is_empty() {
            service.insert("extensions".into(), self.extensions.iter().map(ToString::to_string).collect::<Vec<_>>().into());
        }
        service.insert("pipelines".into(), serde_json::Value::Object(pipelines));
        service.insert("telemetry".into(), serde_json::to_value(&self.telemetry).unwrap_or_default());
        root.insert("service".into(), serde_json::Value::Object(service));
        root
    }
}

/// A key whose value is a secret itself (not a path to one: `password_file` is fine).
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    !k.ends_with("_file")
        && (k.contains("password")
            || k.contains("token")
            || k.contains("secret")
            || k == "authorization"
            || k.contains("api_key")
            || k == "apikey")
}

fn redact(v: &mut serde_json::Value, env: &[&(String, String)]) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, x) in map.iter_mut() {
                match x {
                    serde_json::Value::String(s) if is_secret_key(k) && !s.is_empty() => *s = "<redacted>".into(),
                    _ => redact(x, env),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|x| redact(x, env)),
        serde_json::Value::String(s) => {
            for (name, value) in env {
                if s == value {
                    *s = format!("${{env:{name}}}");
                    return;
                }
                // Inside a longer string only when the value is long enough not to match by chance.
                if value.len() >= 6 && s.contains(value.as_str()) {
                    *s = s.replace(value.as_str(), &format!("${{env:{name}}}"));
                }
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Loading

/// Where a config comes from.
#[derive(Clone, Debug)]
pub enum ConfigSource {
    File(PathBuf),
    /// The pipeline compiled into the binary (`configs/node.yaml`).
    Embedded {
        name: &'static str,
        text: &'static str,
    },
}

impl ConfigSource {
    pub fn describe(&self) -> String {
        match self {
            ConfigSource::File(p) => p.display().to_string(),
            ConfigSource::Embedded { name, .. } => format!("{name} (embedded)"),
        }
    }
    pub fn path(&self) -> Option<&Path> {
        match self {
            ConfigSource::File(p) => Some(p),
            ConfigSource::Embedded { .. } => None,
        }
    }
    pub fn read(&self) -> Result<String, ConfigErrors> {
        match self {
            ConfigSource::File(p) => std::fs::read_to_string(p).map_err(|e| ConfigErrors {
                origin: self.describe(),
                errors: vec![ConfigError::top(format!("cannot read the config file: {e}"))],
                notes: Vec::new(),
            }),
            ConfigSource::Embedded { text, .. } => Ok(text.to_string()),
        }
    }
}

/// The YAML format for figment, parsed with serde_norway (figment's own `yaml` feature
/// uses the deprecated serde_yaml).
struct Yaml;

impl Format for Yaml {
    type Error = serde_norway::Error;
    const NAME: &'static str = "YAML";
    fn from_str<T: DeserializeOwned>(string: &str) -> Result<T, Self::Error> {
        serde_norway::from_str(string)
    }
}

/// Loads and checks a config: reads the source, expands `${env:…}`, applies
/// `PODNET_CFG_…` overrides and resolves every component through `registry`.
pub fn load(source: &ConfigSource, registry: &Registry) -> Result<ResolvedConfig, ConfigErrors> {
    let text = source.read()?;
    load_str(&text, &source.describe(), registry, |k| std::env::var(k).ok())
}

/// [`load`] on text already read; `lookup` resolves `${env:…}` references.
pub fn load_str(
    text: &str,
    source: &str,
    registry: &Registry,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<ResolvedConfig, ConfigErrors> {
    let overrides: Vec<String> = std::env::vars().map(|(k, _)| k).filter(|k| k.starts_with(ENV_OVERRIDE_PREFIX)).collect();
    let notes = if overrides.is_empty() { Vec::new() } else { vec![format!("environment overrides in effect: {}", overrides.join(", "))] };
    let fail = |errors: Vec<ConfigError>| ConfigErrors { origin: source.to_string(), errors, notes: notes.clone() };
    let expanded = expand_env(text, lookup).map_err(|e| fail(vec![ConfigError::top(e)]))?;
    if expanded.text.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) {
        return Err(fail(vec![ConfigError::top("empty configuration file")]));
    }
    let figment = Figment::new()
        .merge(Yaml::string(&expanded.text))
        .merge(Env::prefixed(ENV_OVERRIDE_PREFIX).map(|k| k.as_str().replace("___", "/").replace("__", ".").into()).lowercase(true));
    let raw: RawConfig = figment.extract().map_err(|e| fail(figment_errors(e, "")))?;
    let mut resolved = resolve(raw, source, registry).map_err(fail)?;
    resolved.env_values = expanded.from_env.clone();
    resolved.env_values.extend(std::env::vars().filter(|(k, _)| k.starts_with(ENV_OVERRIDE_PREFIX)));
    for var in expanded.unset {
        resolved.warnings.push(format!("the config references unset environment variable \"{var}\"; it expands to an empty value"));
    }
    Ok(resolved)
}

fn resolve(raw: RawConfig, source: &str, registry: &Registry) -> Result<ResolvedConfig, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut components = BTreeMap::new();

    if !raw.connectors.is_empty() {
        errors.push(ConfigError::at("connectors", "podnet has no connectors; route data with pipelines instead"));
    }
    let sections = [
        (Kind::Receiver, &raw.receivers),
        (Kind::Processor, &raw.processors),
        (Kind::Exporter, &raw.exporters),
        (Kind::Extension, &raw.extensions),
    ];
    for (kind, section) in sections {
        for (id_text, value) in section {
            let path = format!("{}::{}", kind.section(), id_text);
            let id = match ComponentId::parse(id_text) {
                Ok(id) => id,
                Err(e) => {
                    errors.push(ConfigError::at(path, e));
                    continue;
                }
            };
            let Some((factory, via_alias)) = registry.lookup(kind, id.type_name()) else {
                let valid = registry.type_names(kind);
                let choices = if valid.is_empty() {
                    format!("no {} types are available", kind)
                } else {
                    format!("valid {} types: {}", kind, valid.join(", "))
                };
                errors.push(ConfigError::at(path, format!("unknown type \"{}\" ({choices})", id.type_name())));
                continue;
            };
            if via_alias {
                warnings.push(format!("{path}: \"{}\" is a deprecated name; use \"{}\"", id.type_name(), factory.info().type_name));
            }
            match factory.parse(value, &path) {
                Ok(config) => {
                    components.insert((kind, id), ResolvedComponent { factory, config });
                }
                Err(es) => errors.extend(es),
            }
        }
    }

    let service = raw.service.unwrap_or_default();
    if service.pipelines.is_empty() {
        errors.push(ConfigError::top("service must have at least one pipeline (add service::pipelines)"));
    }

    let mut extensions = Vec::new();
    for ext in &service.extensions {
        match check_reference(&raw.extensions, Kind::Extension, ext, "service::extensions") {
            Ok(id) => extensions.push(id),
            Err(e) => errors.push(e),
        }
    }

    let mut pipelines = BTreeMap::new();
    let mut used: BTreeSet<(Kind, String)> = BTreeSet::new();
    for (pipeline_id, p) in &service.pipelines {
        let path = format!("service::pipelines::{pipeline_id}");
        let signal = match ComponentId::parse(pipeline_id) {
            Err(e) => {
                errors.push(ConfigError::at(&path, e));
                continue;
            }
            Ok(id) => match id.type_name() {
                "metrics" => Signal::Metrics,
                "logs" => Signal::Logs,
                other => {
                    errors.push(ConfigError::at(&path, format!("unknown signal \"{other}\" (podnet pipelines carry metrics or logs)")));
                    continue;
                }
            },
        };
        let mut resolve_list = |kind: Kind, list: &[String], section: &BTreeMap<String, Value>| -> Vec<ComponentId> {
            let mut ids = Vec::new();
            let mut seen = BTreeSet::new();
            for name in list {
                if !seen.insert(name.as_str()) {
                    errors.push(ConfigError::at(&path, format!("references {kind} \"{name}\" multiple times")));
                    continue;
                }
                used.insert((kind, name.clone()));
                match check_reference(section, kind, name, &path) {
                    Ok(id) => {
                        if let Some(c) = components.get(&(kind, id.clone())) {
                            let c: &ResolvedComponent = c;
                            let info = c.factory.info();
                            if !info.signals.contains(&signal) {
                                errors.push(ConfigError::at(
                                    &path,
                                    format!("{kind} \"{name}\" does not support {signal} (it supports {})", join_signals(info.signals)),
                                ));
                            }
                        }
                        ids.push(id);
                    }
                    Err(e) => errors.push(e),
                }
            }
            ids
        };
        let receivers = resolve_list(Kind::Receiver, &p.receivers, &raw.receivers);
        let processors = resolve_list(Kind::Processor, &p.processors, &raw.processors);
        let exporters = resolve_list(Kind::Exporter, &p.exporters, &raw.exporters);
        if p.receivers.is_empty() {
            errors.push(ConfigError::at(&path, "must have at least one receiver"));
        }
        if p.exporters.is_empty() {
            errors.push(ConfigError::at(&path, "must have at least one exporter"));
        }
        pipelines.insert(pipeline_id.clone(), PipelineConfig { signal, receivers, processors, exporters });
    }

    for (kind, id) in components.keys() {
        if *kind != Kind::Extension && !used.contains(&(*kind, id.to_string())) {
            warnings.push(format!("{}::{id}: defined but not used in any pipeline; it will not run", kind.section()));
        }
    }
    for (kind, id) in components.keys() {
        if *kind == Kind::Extension && !extensions.contains(id) {
            warnings.push(format!("extensions::{id}: defined but not listed in service::extensions; it will not run"));
        }
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(ResolvedConfig {
        source: source.to_string(),
        components,
        pipelines,
        extensions,
        telemetry: service.telemetry,
        warnings,
        env_values: Vec::new(),
    })
}

fn join_signals(signals: &[Signal]) -> String {
    signals.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" and ")
}

fn check_reference(section: &BTreeMap<String, Value>, kind: Kind, name: &str, path: &str) -> Result<ComponentId, ConfigError> {
    if !section.contains_key(name) {
        return Err(ConfigError::at(path, format!("references {kind} \"{name}\" which is not configured")));
    }
    ComponentId::parse(name).map_err(|e| ConfigError::at(path, e))
}

/// Deserializes one component's config; a missing or empty value means "all defaults".
pub fn deserialize_component<T: DeserializeOwned>(value: &Value, path: &str) -> Result<T, Vec<ConfigError>> {
    let empty;
    let value = match value {
        Value::Empty(..) => {
            empty = Value::from(Dict::new());
            &empty
        }
        v => v,
    };
    value.deserialize::<T>().map_err(|e| figment_errors(e, path))
}

/// Turns figment's errors into path-named messages.
fn figment_errors(err: figment::Error, base: &str) -> Vec<ConfigError> {
    err.into_iter()
        .map(|e| {
            let from_env = e.metadata.as_ref().is_some_and(|m| m.name.contains("environment"));
            let mut segments: Vec<String> = if base.is_empty() { Vec::new() } else { vec![base.to_string()] };
            segments.extend(e.path.iter().cloned());
            let (segments, message) = match &e.kind {
                FigKind::UnknownField(field, expected) => {
                    let valid = if expected.is_empty() {
                        "this section takes no keys".to_string()
                    } else {
                        format!("valid keys: {}", expected.join(", "))
                    };
                    // figment puts the offending key at the end of the path; name the section instead.
                    let mut seg = segments.clone();
                    if seg.last() == Some(field) {
                        seg.pop();
                    }
                    (seg, format!("unknown key \"{field}\" ({valid})"))
                }
                FigKind::MissingField(field) => (segments, format!("missing required key \"{field}\"")),
                FigKind::UnknownVariant(v, expected) => {
                    (segments, format!("unknown value \"{v}\" (valid values: {})", expected.join(", ")))
                }
                FigKind::InvalidType(actual, expected) => (segments, format!("invalid type: found {actual}, expected {expected}")),
                FigKind::InvalidValue(actual, expected) => (segments, format!("invalid value: found {actual}, expected {expected}")),
                FigKind::Message(m) => (segments, m.clone()),
                other => (segments, other.to_string()),
            };
            let message = if from_env { format!("{message} (set by environment variable {ENV_OVERRIDE_PREFIX}…)") } else { message };
            ConfigError::at(segments.join("::"), message)
        })
        .collect()
}
