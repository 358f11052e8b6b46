//! podnet's pipeline core: the data model (OTLP proto messages), the component model
//! (factories, ids, contexts), config loading, the running topology and hot reload.

pub mod auth;
pub mod component;
pub mod config;
pub mod cumulative;
pub mod fanout;
pub mod host;
pub mod id;
pub mod kubeskoop_event;
pub mod pdata;
pub mod probe;
pub mod reload;
pub mod scrape;
pub mod service;
pub mod sockstat;
pub mod status;
pub mod telemetry;
pub mod testing;
pub mod topology;

pub use component::{BuildError, ComponentContext, ComponentId, Kind, Registry};
pub use config::{ConfigDuration, ConfigError, ConfigErrors, ConfigSource, ResolvedConfig};
pub use host::{Host, NodeInfo};
pub use pdata::{Logs, Metrics, PData, Signal};
pub use service::{ReloadOutcome, Service};
