//! Services the whole process shares with its components: node identity, component status
//! and self-telemetry. They outlive config reloads.

use std::sync::Arc;

use crate::status::StatusRegistry;
use crate::telemetry::Telemetry;

pub struct Host {
    pub node: NodeInfo,
    pub status: Arc<StatusRegistry>,
    pub telemetry: Arc<Telemetry>,
    /// Whether Prometheus endpoints also serve podnet's own `podnet_*` metrics
    /// (`service.telemetry.metrics.level` is not `none`).
    pub serve_self_metrics: bool,
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
