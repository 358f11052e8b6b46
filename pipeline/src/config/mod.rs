//! Loading a pipeline config: YAML text → `${env:…}` expansion → figment (plus
//! `PODNET_CFG_…` overrides) → each component's typed config through its factory →
//! the Collector's structural checks. Every error names its config path.
//!
//! One file per concern: `error`, `duration` and `telemetry` are value types that
//! components use; `document` is the YAML's shape; `load` reads it, `resolve` checks it
//! through the registry into `resolved`; `deserialize` parses one component's config;
//! `kubeskoop` turns KubeSkoop's exporter config into a pipeline before all that; `yaml` is
//! the YAML format both parse with.
//! Components depend on these types; only `load`/`resolve` know about the registry.

mod deserialize;
mod document;
mod duration;
mod error;
mod expand;
pub mod kubeskoop;
mod listen;
mod load;
mod resolve;
mod resolved;
mod telemetry;
mod yaml;

pub use deserialize::deserialize_component;
pub use duration::ConfigDuration;
pub use error::{ConfigError, ConfigErrors};
pub use expand::{Expanded, expand_env};
pub use listen::{check_listen_address, listen_address};
pub use load::{ConfigSource, TextOverlay, load, load_str, load_with};
pub use resolved::{PipelineConfig, ResolvedComponent, ResolvedConfig};
pub use telemetry::{LogEncoding, LogLevel, LogsTelemetry, MetricsLevel, MetricsTelemetry, OtlpPush, TelemetryConfig};

/// Prefix of environment variables that override config keys; `__` separates levels and
/// `___` stands for the `/` of a component id:
/// `PODNET_CFG_RECEIVERS__PROCFS___PODS__COLLECTION_INTERVAL=30s`. It is distinct from any
/// variable a shipped config reads through `${env:…}` (`PODNET_LISTEN`, `PODNET_NODE_NAME`).
pub const ENV_OVERRIDE_PREFIX: &str = "PODNET_CFG_";
