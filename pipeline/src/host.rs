//! Services the whole process shares with its components: node identity, component status
//! and self-telemetry. They outlive config reloads.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::status::StatusRegistry;
use crate::telemetry::Telemetry;

pub struct Host {
    pub node: NodeInfo,
    pub status: Arc<StatusRegistry>,
    pub telemetry: Arc<Telemetry>,
    /// Whether Prometheus endpoints also serve podnet's own `podnet_*` metrics
    /// (`service.telemetry.metrics.level` is not `none`).
    pub serve_self_metrics: bool,
    extensions: RwLock<BTreeMap<String, Arc<dyn Any + Send + Sync>>>,
}

impl Host {
    pub fn new(node: NodeInfo, status: Arc<StatusRegistry>, telemetry: Arc<Telemetry>, serve_self_metrics: bool) -> Host {
        Host { node, status, telemetry, serve_self_metrics, extensions: RwLock::default() }
    }

    /// The service of the running extension `id` (e.g. `netns_discovery`), if it runs and
    /// offers a `T`.
    pub fn extension<T: Any + Send + Sync>(&self, id: &str) -> Option<Arc<T>> {
        let map = self.extensions.read().unwrap_or_else(|e| e.into_inner());
        map.get(id).cloned().and_then(|s| s.downcast::<T>().ok())
    }

    pub(crate) fn set_extension(&self, id: &str, service: Option<Arc<dyn Any + Send + Sync>>) {
        let mut map = self.extensions.write().unwrap_or_else(|e| e.into_inner());
        match service {
            Some(s) => map.insert(id.to_string(), s),
            None => map.remove(id),
        };
    }
}

#[derive(Clone, Debug)]
pub struct NodeInfo {
    /// The Kubernetes node name (`k8s_node` in KubeSkoop naming).
    pub name: String,
}

impl NodeInfo {
    /// Environment variables that name the node, first set wins: podnet's own, the
    /// Collector's convention, then KubeSkoop's so a migrated DaemonSet keeps its value.
    pub const ENV_VARS: [&'static str; 3] = ["PODNET_NODE_NAME", "KUBE_NODE_NAME", "INSPECTOR_NODENAME"];

    pub fn detect() -> NodeInfo {
        for var in Self::ENV_VARS {
            if let Ok(v) = std::env::var(var)
                && !v.trim().is_empty()
            {
                return NodeInfo { name: v.trim().to_string() };
            }
        }
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default();
        NodeInfo { name: if hostname.is_empty() { "unknown".to_string() } else { hostname } }
    }
}
