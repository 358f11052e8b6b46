//! Receiver `procfs`: kernel network counters from `/proc/<pid>/net/*` of every network
//! namespace on the node (one resource per namespace), plus node-level counters the kernel
//! keeps globally (softnet, socket memory) once for the node.

pub mod netdev;
pub use probes::parse_ipvs;
mod probes;
pub mod snmp;
pub mod sockstat;
pub mod softnet;
pub mod tables;

use std::path::PathBuf;
use std::sync::Arc;

pub use podnet_netns::Namespaces;
use podnet_netns::{Namespace, NamespaceSource};
use podnet_pipeline::Host;
use podnet_pipeline::component::{
    BoxFuture, BuildError, ComponentContext, Factory, FactoryInfo, Kind, Overhead, ProbeInfo, Receiver, ReceiverFactory, Stability,
};
use podnet_pipeline::config::ConfigDuration;
use podnet_pipeline::cumulative::CumulativeTracker;
use podnet_pipeline::fanout::Outputs;
use podnet_pipeline::pdata::{KeyValue, MetricsBuilder, Signal, keys, kv_str, now_unix_nanos};
use podnet_pipeline::scrape::{Collection, CollectionError, Scraper, run_scraper};
use serde::{Deserialize, Serialize};

use crate::probes::{Defs, Emit, NsFiles, ProbeError, Series};

/// The probes this receiver runs; each can be enabled alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Probe {
    Netdev,
    Tcp,
    Udp,
    Ip,
    Udp6,
    Ip6,
    Tcpext,
    Sock,
    Softnet,
    Ipvs,
    Io,
    Fd,
}

impl Probe {
    pub const ALL: [Probe; 12] = [
        Probe::Netdev,
        Probe::Tcp,
        Probe::Udp,
        Probe::Ip,
        Probe::Udp6,
        Probe::Ip6,
        Probe::Tcpext,
        Probe::Sock,
        Probe::Softnet,
        Probe::Ipvs,
        Probe::Io,
        Probe::Fd,
    ];
}

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
            probes: Probe::ALL.to_vec(),
            netdev: NetdevOptions::default(),
            tcpext: TcpextOptions::default(),
            softnet: SoftnetOptions::default(),
        }
    }
}

pub struct ProcfsReceiverFactory;

const PROBES: &[ProbeInfo] = &[
    ProbeInfo { name: "netdev", data_source: "/proc/<pid>/net/dev", overhead: Overhead::Low },
    ProbeInfo { name: "tcp", data_source: "/proc/<pid>/net/snmp (Tcp)", overhead: Overhead::Low },
    ProbeInfo { name: "udp", data_source: "/proc/<pid>/net/snmp (Udp)", overhead: Overhead::Low },
    ProbeInfo { name: "ip", data_source: "/proc/<pid>/net/snmp (Ip)", overhead: Overhead::Low },
    ProbeInfo { name: "udp6", data_source: "/proc/<pid>/net/snmp6 (Udp6)", overhead: Overhead::Low },
    ProbeInfo { name: "ip6", data_source: "/proc/<pid>/net/snmp6 (Ip6)", overhead: Overhead::Low },
    ProbeInfo { name: "tcpext", data_source: "/proc/<pid>/net/netstat (TcpExt, IpExt)", overhead: Overhead::Low },
    ProbeInfo { name: "sock", data_source: "/proc/<pid>/net/sockstat, sockstat6", overhead: Overhead::Low },
    ProbeInfo { name: "softnet", data_source: "/proc/net/softnet_stat (node level)", overhead: Overhead::Low },
    ProbeInfo { name: "ipvs", data_source: "/proc/net/ip_vs_stats (host namespace)", overhead: Overhead::Low },
    ProbeInfo { name: "io", data_source: "/proc/<pid>/io of the namespace's processes", overhead: Overhead::Low },
    ProbeInfo { name: "fd", data_source: "/proc/<pid>/fd of the namespace's processes", overhead: Overhead::Medium },
];

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
            probes: PROBES,
        }
    }
    fn validate(&self, c: &ProcfsConfig) -> Result<(), String> {
        if c.collection_interval.0.is_zero() {
            return Err("collection_interval must be greater than zero".into());
        }
        if c.probes.is_empty() {
            let names: Vec<_> = PROBES.iter().map(|p| p.name).collect();
            return Err(format!("probes must name at least one probe (valid probes: {})", names.join(", ")));
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
    /// IPVS was found absent; it is not looked for again.
    ipvs_absent: bool,
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
            ipvs_absent: false,
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
        let wants_processes = self.config.probes.iter().any(|p| matches!(p, Probe::Io | Probe::Fd));
        let (own, host_pods) = if ns.is_host && wants_processes { split_host_processes(ns) } else { (ns.clone(), Vec::new()) };
        let mut rb = builder.resource(resource.clone());
        let mut out = Emit { rb: &mut rb, counters: &mut self.counters, resource_key: ns.inode, origin: ns.start_unix_nanos, now };
        for probe in &self.config.probes {
            let result = match probe {
                Probe::Netdev => probes::netdev(&files, &mut out, self.config.netdev.per_device),
                Probe::Tcp => probes::snmp_probe("tcp", &files, &mut out, &mut self.defs),
                Probe::Udp => probes::snmp_probe("udp", &files, &mut out, &mut self.defs),
                Probe::Ip => probes::snmp_probe("ip", &files, &mut out, &mut self.defs),
                Probe::Udp6 => probes::snmp6_probe("udp6", &files, &mut out, &mut self.defs),
                Probe::Ip6 => probes::snmp6_probe("ip6", &files, &mut out, &mut self.defs),
                Probe::Tcpext => probes::tcpext(&files, &mut out, &mut self.defs, self.config.tcpext.all_fields),
                Probe::Sock => probes::sock(&files, &mut out),
                Probe::Io => probes::io(&own, &mut out),
                Probe::Fd => probes::fd(&own, &mut out),
                Probe::Ipvs if ns.is_host && !self.ipvs_absent => match probes::ipvs(&files, &mut out) {
                    Ok(true) => Ok(()),
                    Ok(false) => {
                        self.ipvs_absent = true;
                        self.unsupported.push(("ipvs", "no /proc/net/ip_vs_stats: IPVS is not loaded on this node".to_string()));
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
                Probe::Softnet | Probe::Ipvs => Ok(()),
            };
            if let Err(e) = result {
                errors.push(e);
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
            for probe in &self.config.probes {
                let result = match probe {
                    Probe::Io => probes::io(&pod, &mut out),
                    Probe::Fd => probes::fd(&pod, &mut out),
                    _ => Ok(()),
                };
                // A pod's process that exits mid-read is not an error.
                if let Err(e) = result {
                    tracing::debug!("host-network pod {uid}: {}", e.message);
                }
            }
        }
        errors
    }

    /// Counters the kernel keeps for the whole node, read once from the host namespace.
    fn collect_node(&mut self, host: &Namespace, builder: &mut MetricsBuilder, now: u64) -> Vec<ProbeError> {
        let wants_sock = self.config.probes.contains(&Probe::Sock);
        let wants_softnet = self.config.probes.contains(&Probe::Softnet);
        if !wants_sock && !wants_softnet {
            return Vec::new();
        }
        let files = NsFiles::new(host);
        let mut rb = builder.resource(vec![kv_str(keys::K8S_NODE_NAME, self.node_name.clone())]);
        // Node-level series are keyed apart from the host namespace's (inode 0).
        let mut out = Emit { rb: &mut rb, counters: &mut self.counters, resource_key: 0, origin: host.start_unix_nanos, now };
        let mut errors = Vec::new();
        if wants_sock {
            errors.extend(probes::sock_node(&files, &mut out).err());
        }
        if wants_softnet {
            errors.extend(probes::softnet(&files, &mut out, self.config.softnet.per_cpu).err());
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
