//! The component model, in the manner of the OpenTelemetry Collector: every receiver,
//! processor, exporter and extension comes from a factory that names its type, gives its
//! default config, validates a config and creates the running component.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::config::ConfigError;
use crate::fanout::{Input, Outputs};
use crate::host::Host;
pub use crate::id::{ComponentId, Kind};
use crate::pdata::Signal;
use crate::status::StatusHandle;
use crate::telemetry::ComponentTelemetry;

/// How much a probe costs the node, as KubeSkoop's docs classify probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Overhead {
    Low,
    Medium,
    High,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stability {
    Development,
    Alpha,
    Beta,
    Stable,
}

/// A probe inside a receiver, for `podnet components`.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ProbeInfo {
    pub name: &'static str,
    pub data_source: &'static str,
    pub overhead: Overhead,
}

/// What a factory tells about its components.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct FactoryInfo {
    pub type_name: &'static str,
    /// Deprecated names still accepted, with a warning (`otlp` for `otlp_grpc`).
    pub aliases: &'static [&'static str],
    pub kind: Kind,
    pub signals: &'static [Signal],
    pub stability: Stability,
    pub description: &'static str,
    pub probes: &'static [ProbeInfo],
}

/// A component's parsed config, type-erased so the registry can hold every factory.
pub trait ComponentConfig: Any + Send + Sync + fmt::Debug {
    fn as_any(&self) -> &dyn Any;
    /// The effective config (defaults applied) for `print-config` and for deciding on
    /// reload whether the component changed.
    fn to_json(&self) -> serde_json::Value;
}

impl<T: Serialize + Any + Send + Sync + fmt::Debug> ComponentConfig for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Everything a component gets from the service when it is created.
#[derive(Clone)]
pub struct ComponentContext {
    pub id: ComponentId,
    pub kind: Kind,
    /// For processors: the pipeline this instance belongs to.
    pub pipeline: Option<String>,
    pub telemetry: ComponentTelemetry,
    pub status: StatusHandle,
    pub host: Arc<Host>,
    /// Cancelled when the component must stop (reload or shutdown).
    pub shutdown: CancellationToken,
}

/// Errors while creating or starting a component (bind failures, missing kernel features).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);

impl BuildError {
    pub fn new(msg: impl Into<String>) -> Self {
        BuildError(msg.into())
    }
}

/// A created receiver: the future that runs it until shutdown.
pub trait Receiver: Send {
    fn run(self: Box<Self>, outputs: Outputs) -> BoxFuture;
}

/// A created processor: reads its input, writes to its outputs.
pub trait Processor: Send {
    fn run(self: Box<Self>, input: Input, outputs: Outputs) -> BoxFuture;
}

/// A created exporter: reads its input until shutdown, then flushes what it holds.
pub trait Exporter: Send {
    fn run(self: Box<Self>, input: Input) -> BoxFuture;
}

/// A created extension: a service shared by other components (the Collector's
/// extensions), started before and stopped after every pipeline component.
pub trait Extension: Send {
    /// What components get from [`Host::extension`](crate::host::Host::extension). They should
    /// look it up when they use it rather than keep it, so a reloaded extension is picked up.
    fn service(&self) -> Option<Arc<dyn Any + Send + Sync>> {
        None
    }
    fn run(self: Box<Self>) -> BoxFuture;
}

/// The typed half of a factory; implement one of [`ReceiverFactory`], [`ProcessorFactory`]
/// or [`ExporterFactory`] too.
pub trait Factory: Send + Sync + 'static {
    type Config: DeserializeOwned + Serialize + Default + fmt::Debug + Send + Sync + 'static;
    fn info(&self) -> FactoryInfo;
    /// Semantic checks beyond the types; the message is prefixed with the config path.
    fn validate(&self, _config: &Self::Config) -> Result<(), String> {
        Ok(())
    }
}

pub trait ReceiverFactory: Factory {
    fn create(&self, config: &Self::Config, ctx: ComponentContext) -> Result<Box<dyn Receiver>, BuildError>;
}
pub trait ProcessorFactory: Factory {
    fn create(&self, config: &Self::Config, ctx: ComponentContext) -> Result<Box<dyn Processor>, BuildError>;
}
pub trait ExporterFactory: Factory {
    fn create(&self, config: &Self::Config, ctx: ComponentContext) -> Result<Box<dyn Exporter>, BuildError>;
}
pub trait ExtensionFactory: Factory {
    fn create(&self, config: &Self::Config, ctx: ComponentContext) -> Result<Box<dyn Extension>, BuildError>;
}

/// A created component of any kind.
pub enum Created {
    Receiver(Box<dyn Receiver>),
    Processor(Box<dyn Processor>),
    Exporter(Box<dyn Exporter>),
    Extension(Box<dyn Extension>),
}

/// The object-safe face of a factory, as the registry stores it.
pub trait DynFactory: Send + Sync {
    fn info(&self) -> FactoryInfo;
    fn default_config(&self) -> serde_json::Value;
    fn parse(&self, value: &figment::value::Value, path: &str) -> Result<Arc<dyn ComponentConfig>, Vec<ConfigError>>;
    fn create(&self, config: &dyn ComponentConfig, ctx: ComponentContext) -> Result<Created, BuildError>;
}

fn parse_typed<F: Factory>(f: &F, value: &figment::value::Value, path: &str) -> Result<Arc<dyn ComponentConfig>, Vec<ConfigError>> {
    let config: F::Config = crate::config::deserialize_component(value, path)?;
    f.validate(&config).map_err(|msg| vec![ConfigError::at(path, msg)])?;
    Ok(Arc::new(config))
}

fn downcast<C: 'static>(config: &dyn ComponentConfig) -> Result<&C, BuildError> {
    config.as_any().downcast_ref::<C>().ok_or_else(|| BuildError::new("internal error: config of another component type"))
}

macro_rules! dyn_factory_for {
    ($wrapper:ident, $trait:ident, $variant:ident) => {
        /// Adapts a typed factory to [`DynFactory`].
        pub struct $wrapper<F>(pub F);

        impl<F: $trait> DynFactory for $wrapper<F> {
            fn info(&self) -> FactoryInfo {
                self.0.info()
            }
            fn default_config(&self) -> serde_json::Value {
                F::Config::default().to_json()
            }
            fn parse(&self, value: &figment::value::Value, path: &str) -> Result<Arc<dyn ComponentConfig>, Vec<ConfigError>> {
                parse_typed(&self.0, value, path)
            }
            fn create(&self, config: &dyn ComponentConfig, ctx: ComponentContext) -> Result<Created, BuildError> {
                Ok(Created::$variant(self.0.create(downcast::<F::Config>(config)?, ctx)?))
            }
        }
    };
}

dyn_factory_for!(ReceiverAdapter, ReceiverFactory, Receiver);
dyn_factory_for!(ProcessorAdapter, ProcessorFactory, Processor);
dyn_factory_for!(ExporterAdapter, ExporterFactory, Exporter);
dyn_factory_for!(ExtensionAdapter, ExtensionFactory, Extension);

/// All factories the binary knows, looked up by type name or alias.
#[derive(Default, Clone)]
pub struct Registry {
    factories: Vec<Arc<dyn DynFactory>>,
}

impl Registry {
    pub fn new() -> Self {
        Registry::default()
    }
    pub fn receiver<F: ReceiverFactory>(mut self, f: F) -> Self {
        self.factories.push(Arc::new(ReceiverAdapter(f)));
        self
    }
    pub fn processor<F: ProcessorFactory>(mut self, f: F) -> Self {
        self.factories.push(Arc::new(ProcessorAdapter(f)));
        self
    }
    pub fn exporter<F: ExporterFactory>(mut self, f: F) -> Self {
        self.factories.push(Arc::new(ExporterAdapter(f)));
        self
    }
    pub fn extension<F: ExtensionFactory>(mut self, f: F) -> Self {
        self.factories.push(Arc::new(ExtensionAdapter(f)));
        self
    }

    /// The factory for `type_name` of `kind`, and whether the name was a deprecated alias.
    pub fn lookup(&self, kind: Kind, type_name: &str) -> Option<(Arc<dyn DynFactory>, bool)> {
        self.factories.iter().filter(|f| f.info().kind == kind).find_map(|f| {
            let info = f.info();
            if info.type_name == type_name {
                Some((f.clone(), false))
            } else if info.aliases.contains(&type_name) {
                Some((f.clone(), true))
            } else {
                None
            }
        })
    }

    pub fn type_names(&self, kind: Kind) -> Vec<&'static str> {
        let mut names: Vec<_> = self.factories.iter().map(|f| f.info()).filter(|i| i.kind == kind).map(|i| i.type_name).collect();
        names.sort_unstable();
        names
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<dyn DynFactory>> {
        self.factories.iter()
    }
}
