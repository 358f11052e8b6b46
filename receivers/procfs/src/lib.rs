//! Receiver `procfs`: kernel network counters from `/proc/<pid>/net/*`.
//!
//! This first version reads the host network namespace; per-pod namespaces come with the
//! namespace discovery extension.

pub mod netdev;
mod netns;

use std::path::PathBuf;

use podnet_pipeline::component::{
    BoxFuture, BuildError, ComponentContext, Factory, FactoryInfo, Kind, Overhead, ProbeInfo, Receiver, ReceiverFactory, Stability,
};
use podnet_pipeline::config::ConfigDuration;
use podnet_pipeline::cumulative::CumulativeTracker;
use podnet_pipeline::fanout::Outputs;
use podnet_pipeline::pdata::{MetricsBuilder, Signal, keys, kv_str, now_unix_nanos};
use podnet_pipeline::scrape::{Collection, CollectionError, Scraper, run_scraper};
use serde::{Deserialize, Serialize};

pub use netns::Namespace;

/// The probes this receiver runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Probe {
    Netdev,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcfsConfig {
    pub collection_interval: ConfigDuration,
    /// Where the host's /proc is mounted (`/host/proc` in the DaemonSet).
    pub root_path: PathBuf,
    pub probes: Vec<Probe>,
    pub netdev: NetdevOptions,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetdevOptions {
    /// Also report each device (`network.interface.name`), beyond KubeSkoop's namespace sum.
    pub per_device: bool,
}

impl Default for ProcfsConfig {
    fn default() -> Self {
        ProcfsConfig {
            collection_interval: ConfigDuration::from_secs(15),
            root_path: PathBuf::from("/proc"),
            probes: vec![Probe::Netdev],
            netdev: NetdevOptions::default(),
        }
    }
}

pub struct ProcfsReceiverFactory;

const PROBES: &[ProbeInfo] = &[ProbeInfo { name: "netdev", data_source: "/proc/<pid>/net/dev", overhead: Overhead::Low }];

impl Factory for ProcfsReceiverFactory {
    type Config = ProcfsConfig;
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "procfs",
            aliases: &[],
            kind: Kind::Receiver,
            signals: &[Signal::Metrics],
            stability: Stability::Alpha,
            description: "Kernel network counters from /proc/<pid>/net of network namespaces",
            probes: PROBES,
        }
    }
    fn validate(&self, c: &ProcfsConfig) -> Result<(), String> {
        if c.collection_interval.0.is_zero() {
            return Err("collection_interval must be greater than zero".into());
        }
        if c.probes.is_empty() {
            return Err("probes must name at least one probe (valid probes: netdev)".into());
        }
        if !c.root_path.is_absolute() {
            return Err(format!("root_path \"{}\" must be an absolute path", c.root_path.display()));
        }
        Ok(())
    }
}

impl ReceiverFactory for ProcfsReceiverFactory {
    fn create(&self, config: &ProcfsConfig, ctx: ComponentContext) -> Result<Box<dyn Receiver>, BuildError> {
        if !config.root_path.join("self").exists() && !config.root_path.join("1").exists() {
            return Err(BuildError::new(format!(
                "root_path \"{}\" is not a proc filesystem (mount the host's /proc there)",
                config.root_path.display()
            )));
        }
        Ok(Box::new(ProcfsReceiver { config: config.clone(), ctx }))
    }
}

struct ProcfsReceiver {
    config: ProcfsConfig,
    ctx: ComponentContext,
}

impl Receiver for ProcfsReceiver {
    fn run(self: Box<Self>, outputs: Outputs) -> BoxFuture {
        let interval = self.config.collection_interval.0;
        let scraper = ProcfsScraper::new(self.config, self.ctx.host.node.name.clone(), self.ctx.id.to_string());
        Box::pin(run_scraper(scraper, interval, self.ctx, outputs))
    }
}

/// Series key for start-time tracking: (namespace inode, metric, direction, device).
type SeriesKey = (u64, &'static str, &'static str, Option<String>);

pub struct ProcfsScraper {
    config: ProcfsConfig,
    node_name: String,
    scope: String,
    counters: CumulativeTracker<SeriesKey>,
}

impl ProcfsScraper {
    pub fn new(config: ProcfsConfig, node_name: String, component_id: String) -> Self {
        ProcfsScraper { config, node_name, scope: format!("podnet/receiver/{component_id}"), counters: CumulativeTracker::default() }
    }

    fn resource(&self, ns: &Namespace) -> Vec<podnet_pipeline::pdata::KeyValue> {
        let mut attrs =
            vec![kv_str(keys::K8S_NODE_NAME, self.node_name.clone()), podnet_pipeline::pdata::kv_int(keys::NETNS_INODE, ns.inode as i64)];
        if ns.is_host {
            attrs.push(podnet_pipeline::pdata::kv_bool(keys::NETNS_HOST, true));
        }
        attrs
    }

    fn collect_netdev(&mut self, ns: &Namespace, builder: &mut MetricsBuilder, errors: &mut Vec<CollectionError>) {
        let path = ns.proc_dir.join("net/dev");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                errors.push(CollectionError { class: "read", message: format!("{}: {e}", path.display()) });
                return;
            }
        };
        let devices = match netdev::parse(&text) {
            Ok(d) => d,
            Err(e) => {
                errors.push(CollectionError { class: "parse", message: format!("{}: {e}", path.display()) });
                return;
            }
        };
        let now = now_unix_nanos();
        let resource = self.resource(ns);
        let total = netdev::sum_without_loopback(&devices);
        let mut rb = builder.resource(resource);
        for (def, rx, tx) in netdev::points(&total) {
            for (direction, value) in [("receive", rx), ("transmit", tx)] {
                let start = self.counters.observe((ns.inode, def.name, direction, None), value, now, ns.start_unix_nanos);
                rb.point(def, vec![kv_str(keys::NETWORK_IO_DIRECTION, direction)], start, now, value.into());
            }
        }
        if self.config.netdev.per_device {
            for d in devices.iter().filter(|d| d.name != "lo") {
                for (def, rx, tx) in netdev::points(&d.counters) {
                    for (direction, value) in [("receive", rx), ("transmit", tx)] {
                        let start =
                            self.counters.observe((ns.inode, def.name, direction, Some(d.name.clone())), value, now, ns.start_unix_nanos);
                        let attrs =
                            vec![kv_str(keys::NETWORK_IO_DIRECTION, direction), kv_str(keys::NETWORK_INTERFACE_NAME, d.name.clone())];
                        rb.point(def, attrs, start, now, value.into());
                    }
                }
            }
        }
    }
}

impl Scraper for ProcfsScraper {
    fn scrape(&mut self) -> Collection {
        let mut errors = Vec::new();
        let mut builder = MetricsBuilder::new(&self.scope);
        self.counters.begin_round();
        match netns::host_namespace(&self.config.root_path) {
            Ok(ns) => {
                for probe in self.config.probes.clone() {
                    match probe {
                        Probe::Netdev => self.collect_netdev(&ns, &mut builder, &mut errors),
                    }
                }
            }
            Err(e) => errors.push(CollectionError { class: "read", message: e }),
        }
        self.counters.end_round();
        Collection { metrics: builder.finish(), errors }
    }
}
