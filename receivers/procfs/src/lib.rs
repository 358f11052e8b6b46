//! Receiver `procfs`: kernel network counters from `/proc/<pid>/net/*` of every network
//! namespace on the node (one resource per namespace), plus node-level counters the kernel
//! keeps globally (softnet, socket memory) once for the node.

pub mod netdev;
pub use probes::parse_ipvs;
mod probes;
pub mod registry;
pub mod snmp;
pub use podnet_pipeline::sockstat;
pub mod softnet;
pub mod tables;

use std::path::PathBuf;
use std::sync::Arc;

pub use podnet_netns::Namespaces;
use podnet_netns::{Namespace, NamespaceSource};
use podnet_pipeline::Host;
use podnet_pipeline::component::{
    BoxFuture, BuildError, ComponentContext, Factory, FactoryInfo, Kind, Receiver, ReceiverFactory, Stability,
};
use podnet_pipeline::config::ConfigDuration;
use podnet_pipeline::cumulative::CumulativeTracker;
use podnet_pipeline::fanout::Outputs;
use podnet_pipeline::pdata::{KeyValue, MetricsBuilder, Signal, keys, kv_str, now_unix_nanos};
use podnet_pipeline::scrape::{Collection, CollectionError, Scraper, run_scraper};
use serde::{Deserialize, Serialize};

use crate::probes::{Defs, Emit, NsFiles, ProbeError, Series};
pub use crate::registry::{PROBES, Probe, probe};
use crate::registry::{ProbeInput, Read};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcfsConfig {
    pub collection_interval: ConfigDuration,
    /// Where the host's /proc is mounted (`/host/proc` in the DaemonSet).
    pub root_path: PathBuf,
    pub namespaces: Namespaces,
    /// The `netns` extension to take the namespace list from; when it does not run, the
    /// receiver scans /proc itself at each collection.
    pub netns_extension: String,
    /// Where `ip netns` names live, for the receiver's own scans.
    pub names_path: PathBuf,
    pub probes: Vec<Probe>,
    pub netdev: NetdevOptions,
    pub tcpext: TcpextOptions,
    pub softnet: SoftnetOptions,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetdevOptions {
    /// Also report each device (`podnet.netdev.device.*`), beyond KubeSkoop's namespace sum.
    pub per_device: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpextOptions {
    /// Every TcpExt and IpExt field of /proc/net/netstat, not only KubeSkoop's 32.
    pub all_fields: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SoftnetOptions {
    /// Also report each CPU (`podnet.softnet.cpu.*`).
    pub per_cpu: bool,
}

impl Default for ProcfsConfig {
    fn default() -> Self {
        ProcfsConfig {
            collection_interval: ConfigDuration::from_secs(15),
            root_path: PathBuf::from("/proc"),
            namespaces: Namespaces::All,
            netns_extension: "netns".into(),
            names_path: PathBuf::from("/run/netns"),
            probes: Probe::all(),
            netdev: NetdevOptions::default(),
            tcpext: TcpextOptions::default(),
            softnet: SoftnetOptions::default(),
        }
    }
}

pub struct ProcfsReceiverFactory;

impl Factory for ProcfsReceiverFactory {
    type Config = ProcfsConfig;
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "procfs",
            aliases: &[],
            kind: Kind::Receiver,
            signals: &[Signal::Metrics],
            stability: Stability::Alpha,
            description: "Kernel network counters from /proc/<pid>/net of every network namespace",
            probes: &registry::PROBE_INFOS,
        }
    }
    fn validate(&self, c: &ProcfsConfig) -> Result<(), String> {
        if c.collection_interval.0.is_zero() {
            return Err("collection_interval must be greater than zero".into());
        }
        if c.probes.is_empty() {
            return Err(format!("probes must name at least one probe (valid probes: {})", Probe::names().join(", ")));
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
        let scraper =
            ProcfsScraper::new(self.config, self.ctx.host.node.name.clone(), self.ctx.id.to_string()).with_host(self.ctx.host.clone());
        Box::pin(run_scraper(scraper, interval, self.ctx, outputs))
    }
}

pub struct ProcfsScraper {
    config: ProcfsConfig,
    node_name: String,
    scope: String,
    source: NamespaceSource,
    counters: CumulativeTracker<Series>,
    defs: Defs,
    /// Probes the kernel cannot serve: not asked again.
    unsupported_probes: std::collections::HashSet<Probe>,
    /// Probes found unsupported in this collection, reported once.
    unsupported: Vec<(&'static str, String)>,
}

impl ProcfsScraper {
    pub fn new(config: ProcfsConfig, node_name: String, component_id: String) -> Self {
        let source = NamespaceSource::new(
            config.namespaces,
            config.root_path.clone(),
            config.names_path.clone(),
            config.netns_extension.clone(),
            None,
        );
        ProcfsScraper {
            config,
            node_name,
            scope: format!("podnet/receiver/{component_id}"),
            source,
            counters: CumulativeTracker::default(),
            defs: Defs::default(),
            unsupported_probes: Default::default(),
            unsupported: Vec::new(),
        }
    }

    /// Lets the scraper take the namespace list from the `netns` extension.
    pub fn with_host(mut self, host: Arc<Host>) -> Self {
        self.source.host = Some(host);
        self
    }

    /// Reads exactly these namespaces (what the `netns` extension would hand over).
    pub fn set_namespaces(&mut self, list: Arc<Vec<Namespace>>) {
        self.source.set_fixed(list);
    }

    fn resource(&self, ns: &Namespace) -> Vec<KeyValue> {
        ns.resource_attributes(&self.node_name)
    }

    /// One namespace, every enabled per-namespace probe.
    fn collect_namespace(&mut self, ns: &Namespace, builder: &mut MetricsBuilder, now: u64) -> Vec<ProbeError> {
        let files = NsFiles::new(ns);
        let mut errors = Vec::new();
        let resource = self.resource(ns);
        // In the host namespace, host-network pods' processes are counted as their pods'
        // (io, fd), apart from the node's own.
        let wants_processes = self.config.probes.iter().any(|p| p.spec().processes);
        let (own, host_pods) = if ns.is_host && wants_processes { split_host_processes(ns) } else { (ns.clone(), Vec::new()) };
        let mut rb = builder.resource(resource.clone());
        let mut out = Emit { rb: &mut rb, counters: &mut self.counters, resource_key: ns.inode, origin: ns.start_unix_nanos, now };
        for &probe in &self.config.probes {
            let spec = probe.spec();
            let Some(read) = spec.namespace else { continue };
            if (spec.host_only && !ns.is_host) || self.unsupported_probes.contains(&probe) {
                continue;
            }
            // Process probes read the namespace's own processes (the node's, in the host).
            let ns = if spec.processes { &own } else { ns };
            let mut input = ProbeInput { ns, files: &files, out: &mut out, defs: &mut self.defs, config: &self.config };
            match read(&mut input) {
                Ok(Read::Done) => {}
                Ok(Read::Unsupported(reason)) => {
                    self.unsupported_probes.insert(probe);
                    self.unsupported.push((probe.name(), reason));
                }
                Err(e) => errors.push(e),
            }
        }
        for (uid, pod) in host_pods {
            let mut attrs = resource.clone();
            attrs.push(kv_str(keys::K8S_POD_UID, uid.clone()));
            let mut rb = builder.resource(attrs);
            let key = {
                use std::hash::{Hash, Hasher};
                let mut h = std::hash::DefaultHasher::new();
                uid.hash(&mut h);
                h.finish()
            };
            let mut out = Emit { rb: &mut rb, counters: &mut self.counters, resource_key: key, origin: ns.start_unix_nanos, now };
            let pod_files = NsFiles::new(&pod);
            for spec in self.config.probes.iter().map(|p| p.spec()).filter(|s| s.processes) {
                let Some(read) = spec.namespace else { continue };
                let mut input = ProbeInput { ns: &pod, files: &pod_files, out: &mut out, defs: &mut self.defs, config: &self.config };
                // A pod's process that exits mid-read is not an error.
                if let Err(e) = read(&mut input) {
                    tracing::debug!("host-network pod {uid}: {}", e.message);
                }
            }
        }
        errors
    }

    /// Counters the kernel keeps for the whole node, read once from the host namespace.
    fn collect_node(&mut self, host: &Namespace, builder: &mut MetricsBuilder, now: u64) -> Vec<ProbeError> {
        let reads: Vec<_> = self.config.probes.iter().filter_map(|p| p.spec().node).collect();
        if reads.is_empty() {
            return Vec::new();
        }
        let files = NsFiles::new(host);
        let mut rb = builder.resource(vec![kv_str(keys::K8S_NODE_NAME, self.node_name.clone())]);
        // Node-level series are keyed apart from the host namespace's (inode 0).
        let mut out = Emit { rb: &mut rb, counters: &mut self.counters, resource_key: 0, origin: host.start_unix_nanos, now };
        let mut errors = Vec::new();
        for read in reads {
            let mut input = ProbeInput { ns: host, files: &files, out: &mut out, defs: &mut self.defs, config: &self.config };
            errors.extend(read(&mut input).err());
        }
        errors
    }
}

impl Scraper for ProcfsScraper {
    fn scrape(&mut self) -> Collection {
        let mut errors = Vec::new();
        let mut builder = MetricsBuilder::new(&self.scope);
        self.counters.begin_round();
        match self.source.list() {
            Ok(list) => {
                let now = now_unix_nanos();
                for ns in list.iter() {
                    let ns_errors = self.collect_namespace(ns, &mut builder, now);
                    // A namespace whose process went away mid-read was a deleted pod: normal.
                    if !ns_errors.is_empty() && !ns.is_host && ns.vanished() {
                        tracing::debug!(inode = ns.inode, "namespace vanished during collection");
                        builder.drop_resource(&self.resource(ns));
                        continue;
                    }
                    errors.extend(ns_errors.into_iter().map(|e| CollectionError { class: e.class, message: e.message }));
                }
                if let Some(host) = list.iter().find(|n| n.is_host) {
                    errors.extend(
                        self.collect_node(host, &mut builder, now)
                            .into_iter()
                            .map(|e| CollectionError { class: e.class, message: e.message }),
                    );
                }
            }
            Err(e) => errors.push(CollectionError { class: "read", message: e }),
        }
        self.counters.end_round();
        Collection { metrics: builder.finish(), errors, unsupported: std::mem::take(&mut self.unsupported) }
    }
}

/// The host namespace's processes split into the node's own and each host-network pod's
/// (by the pod UID in their cgroup path).
fn split_host_processes(host: &Namespace) -> (Namespace, Vec<(String, Namespace)>) {
    let root = host.proc_dir.parent().unwrap_or(&host.proc_dir);
    let mut own = Vec::new();
    let mut pods: std::collections::BTreeMap<String, Vec<u32>> = Default::default();
    for pid in &host.pids {
        let cgroup = std::fs::read_to_string(root.join(pid.to_string()).join("cgroup")).unwrap_or_default();
        match podnet_netns::cgroup::pod_uid(&cgroup) {
            Some(uid) => pods.entry(uid).or_default().push(*pid),
            None => own.push(*pid),
        }
    }
    let with = |pids: Vec<u32>| Namespace { pids, ..host.clone() };
    let pods = pods.into_iter().map(|(uid, pids)| (uid, with(pids))).collect();
    (with(own), pods)
}
