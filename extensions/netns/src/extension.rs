//! The `netns` extension: rescans on an interval and hands the latest list to receivers.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use podnet_pipeline::component::{
    BoxFuture, BuildError, ComponentContext, Extension, ExtensionFactory, Factory, FactoryInfo, Kind, Stability,
};
use podnet_pipeline::config::ConfigDuration;
use serde::{Deserialize, Serialize};

use crate::Namespace;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetnsConfig {
    /// Where the host's /proc is mounted (`/host/proc` in the DaemonSet).
    pub root_path: PathBuf,
    /// Where `ip netns` keeps its names (`/host/run/netns` in the DaemonSet).
    pub names_path: PathBuf,
    /// How often to rescan: a new pod is seen within this time.
    pub refresh_interval: ConfigDuration,
}

impl Default for NetnsConfig {
    fn default() -> Self {
        NetnsConfig { root_path: "/proc".into(), names_path: "/run/netns".into(), refresh_interval: ConfigDuration::from_secs(5) }
    }
}

/// The shared list, as receivers see it.
pub struct NetnsDirectory {
    current: ArcSwap<Vec<Namespace>>,
    pub root_path: PathBuf,
}

impl NetnsDirectory {
    pub fn namespaces(&self) -> Arc<Vec<Namespace>> {
        self.current.load_full()
    }
}

pub struct NetnsExtensionFactory;

impl Factory for NetnsExtensionFactory {
    type Config = NetnsConfig;
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "netns",
            aliases: &[],
            kind: Kind::Extension,
            signals: &[],
            stability: Stability::Alpha,
            description: "Discovers every network namespace on the node (scan of /proc/*/ns/net) for the receivers",
            probes: &[],
        }
    }
    fn validate(&self, c: &NetnsConfig) -> Result<(), String> {
        if c.refresh_interval.0.is_zero() {
            return Err("refresh_interval must be greater than zero".into());
        }
        if !c.root_path.is_absolute() {
            return Err(format!("root_path \"{}\" must be an absolute path", c.root_path.display()));
        }
        Ok(())
    }
}

impl ExtensionFactory for NetnsExtensionFactory {
    fn create(&self, config: &NetnsConfig, ctx: ComponentContext) -> Result<Box<dyn Extension>, BuildError> {
        // The first scan happens now, so receivers created next already see every namespace.
        let first = crate::scan(&config.root_path, &config.names_path).map_err(BuildError::new)?;
        let directory = Arc::new(NetnsDirectory { current: ArcSwap::from_pointee(first), root_path: config.root_path.clone() });
        Ok(Box::new(NetnsExtension { config: config.clone(), directory, ctx }))
    }
}

struct NetnsExtension {
    config: NetnsConfig,
    directory: Arc<NetnsDirectory>,
    ctx: ComponentContext,
}

impl Extension for NetnsExtension {
    fn service(&self) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        Some(self.directory.clone())
    }

    fn run(self: Box<Self>) -> BoxFuture {
        Box::pin(async move {
            let mut ticker = tokio::time::interval(self.config.refresh_interval.0);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                tokio::select! {
                    _ = self.ctx.shutdown.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                let (root, names) = (self.config.root_path.clone(), self.config.names_path.clone());
                match tokio::task::spawn_blocking(move || crate::scan(&root, &names)).await {
                    Ok(Ok(list)) => {
                        let before = self.directory.current.load().len();
                        if list.len() != before {
                            tracing::debug!(component = %self.ctx.id, namespaces = list.len(), "network namespaces changed");
                        }
                        self.directory.current.store(Arc::new(list));
                        self.ctx.status.running();
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(component = %self.ctx.id, "scan failed, keeping the previous list: {e}");
                        self.ctx.status.failed(format!("scan failed: {e}"));
                    }
                    Err(e) => tracing::error!(component = %self.ctx.id, "scan task: {e}"),
                }
            }
        })
    }
}
