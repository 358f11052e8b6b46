//! The service: owns the running topology and applies new configs to it, rejecting
//! invalid ones and rolling back when a new component cannot start.

use std::sync::Arc;

use crate::component::Registry;
use crate::config::{self, ConfigSource, ResolvedConfig};
use crate::host::Host;
use crate::topology::{ApplyReport, Topology};

/// How a reload ended.
#[derive(Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    Applied(ApplyReport),
    /// The file's effective config did not change.
    Unchanged,
    /// The new config is invalid; the old pipeline keeps running.
    Rejected(String),
    /// A new component could not start; the old config was restored.
    RolledBack(String),
}

/// Rewrites the pipeline's text before it is loaded (see [`config::load_with`]): the
/// agent's own additions, such as probes switched on for a while through the control socket.
pub type Overlay = Arc<dyn Fn(&str) -> Result<String, String> + Send + Sync>;

pub struct Service {
    registry: Registry,
    source: ConfigSource,
    host: Arc<Host>,
    topology: Topology,
    current: ResolvedConfig,
    overlay: Option<Overlay>,
}

impl Service {
    /// Starts the topology of an already loaded config.
    pub async fn start(
        registry: Registry,
        source: ConfigSource,
        config: ResolvedConfig,
        host: Arc<Host>,
    ) -> Result<Service, crate::component::BuildError> {
        let mut topology = Topology::new(host.clone());
        host.status.set_config_source(&source.describe());
        for w in &config.warnings {
            tracing::warn!("{w}");
        }
        if let Err(e) = topology.apply(&config).await {
            topology.shutdown().await;
            return Err(e);
        }
        host.status.set_ready(true);
        tracing::info!(config = %source.describe(), components = ?topology.running(), "pipeline running");
        Ok(Service { registry, source, host, topology, current: config, overlay: None })
    }

    /// Every later reload passes the config text through `overlay` first.
    pub fn set_overlay(&mut self, overlay: Overlay) {
        self.overlay = Some(overlay);
    }

    pub fn config(&self) -> &ResolvedConfig {
        &self.current
    }
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Re-reads the config source and applies what changed.
    pub async fn reload(&mut self) -> ReloadOutcome {
        let new = match config::load_with(&self.source, &self.registry, self.overlay.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                let msg = e.to_string();
                tracing::error!("config reload rejected; the running pipeline is unchanged: {msg}");
                self.record("rejected", Some(msg.clone()));
                return ReloadOutcome::Rejected(msg);
            }
        };
        self.apply(new).await
    }

    /// Applies an already loaded config (a reload's second half).
    pub async fn apply(&mut self, new: ResolvedConfig) -> ReloadOutcome {
        if new.to_yaml() == self.current.to_yaml() {
            tracing::debug!("config reloaded; nothing changed");
            return ReloadOutcome::Unchanged;
        }
        for w in &new.warnings {
            tracing::warn!("{w}");
        }
        if new.telemetry != self.current.telemetry {
            tracing::warn!("service::telemetry changed; it applies at the next restart of podnet");
        }
        match self.topology.apply(&new).await {
            Ok(report) => {
                tracing::info!(started = ?report.started, stopped = ?report.stopped, "config reloaded");
                self.current = new;
                self.record("success", None);
                ReloadOutcome::Applied(report)
            }
            Err(e) => {
                let msg = e.to_string();
                tracing::error!("config reload failed, restoring the previous pipeline: {msg}");
                if let Err(e2) = self.topology.apply(&self.current).await {
                    tracing::error!("restoring the previous pipeline failed too: {e2}");
                }
                self.record("rolled_back", Some(msg.clone()));
                ReloadOutcome::RolledBack(msg)
            }
        }
    }

    fn record(&self, result: &'static str, error: Option<String>) {
        self.host.status.record_reload(result, error);
        self.host.telemetry.record_reload(result);
    }

    pub async fn shutdown(mut self) {
        self.host.status.set_ready(false);
        self.topology.shutdown().await;
        self.host.telemetry.shutdown();
    }
}
