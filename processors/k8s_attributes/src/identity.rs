//! Who an IP address is, cluster-wide: a pod (its node, namespace and name), a node, a
//! service (its namespace and name), or unknown. Fed by watches of every pod, node and
//! service (kube-runtime's watcher through [`follow_objects`], as the node's own pods
//! are), each object kept as a small record; the address index is rebuilt from those
//! records when they change, so an address that a new pod reuses names the new pod.
//!
//! One cache per API endpoint in the process, shared by every `k8s_attributes` instance
//! (a processor runs once per pipeline) and stopped when the last one goes.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::Api;
use kube::runtime::watcher;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use podnet_pipeline::pdata::{KeyValue, Logs, Metric, Metrics, attr_string, keys, kv_str, metric};

use crate::kube::{KubeClient, follow_objects};
use crate::pods::PodIndex;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Include {
    Pods,
    Nodes,
    Services,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IpIdentityConfig {
    /// Name the peers of flows and events (`source.*`/`destination.*`) from the whole
    /// cluster's pods, nodes and services. Needs list and watch on pods, nodes and services
    /// cluster-wide (the DaemonSet's ClusterRole has them).
    pub enabled: bool,
    pub include: Vec<Include>,
}

impl Default for IpIdentityConfig {
    fn default() -> Self {
        IpIdentityConfig { enabled: false, include: vec![Include::Pods, Include::Nodes, Include::Services] }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerType {
    Pod,
    Node,
    Service,
    Unknown,
}

impl PeerType {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerType::Pod => "pod",
            PeerType::Node => "node",
            PeerType::Service => "service",
            PeerType::Unknown => "unknown",
        }
    }
}

/// Who an address is. Node and namespace names are shared between records.
#[derive(Clone, Debug, PartialEq)]
pub struct Peer {
    pub kind: PeerType,
    /// The pod's node, or the node itself.
    pub node: Option<Arc<str>>,
    pub namespace: Option<Arc<str>>,
    /// The pod's or the service's name.
    pub name: Option<Arc<str>>,
}

impl Peer {
    pub const UNKNOWN: Peer = Peer { kind: PeerType::Unknown, node: None, namespace: None, name: None };
}

/// One watched object: its addresses, who they are, and how strongly it claims them.
#[derive(Clone, Debug)]
pub struct Claim {
    pub ips: Vec<IpAddr>,
    pub peer: Peer,
    /// When two objects claim one address, the higher rank wins: a service's cluster IP
    /// and a node's address over a pod's, a running pod over a pending one.
    pub rank: u8,
}

/// The same `Arc<str>` for the same text: namespaces and nodes repeat across pods.
fn shared(text: &str) -> Arc<str> {
    static NAMES: OnceLock<Mutex<HashSet<Arc<str>>>> = OnceLock::new();
    let mut names = NAMES.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = names.get(text) {
        return s.clone();
    }
    let s: Arc<str> = Arc::from(text);
    names.insert(s.clone());
    s
}

fn parse_ips<'a>(texts: impl IntoIterator<Item = &'a str>) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = texts.into_iter().filter_map(|t| t.parse().ok()).collect();
    ips.sort_unstable();
    ips.dedup();
    ips
}

/// A pod's claim: its pod IPs while it runs or waits to. Host-network pods have the
/// node's address (the node claims it) and finished pods have given theirs back.
pub fn pod_claim(p: &Pod) -> Option<Claim> {
    let status = p.status.as_ref()?;
    if p.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false) {
        return None;
    }
    let rank = match status.phase.as_deref() {
        Some("Running") => 2,
        Some("Pending") | None => 1,
        _ => return None,
    };
    let mut texts: Vec<&str> = status.pod_ips.iter().flatten().map(|ip| ip.ip.as_str()).collect();
    texts.extend(status.pod_ip.as_deref());
    let ips = parse_ips(texts);
    if ips.is_empty() {
        return None;
    }
    let peer = Peer {
        kind: PeerType::Pod,
        node: p.spec.as_ref().and_then(|s| s.node_name.as_deref()).map(shared),
        namespace: p.metadata.namespace.as_deref().map(shared),
        name: p.metadata.name.as_deref().map(Arc::from),
    };
    Some(Claim { ips, peer, rank })
}

/// A node's claim: its internal and external addresses.
pub fn node_claim(n: &Node) -> Option<Claim> {
    let name = n.metadata.name.as_deref()?;
    let addresses = n.status.as_ref()?.addresses.as_ref()?;
    let ips = parse_ips(addresses.iter().filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP").map(|a| a.address.as_str()));
    (!ips.is_empty()).then(|| Claim {
        ips,
        peer: Peer { kind: PeerType::Node, node: Some(shared(name)), namespace: None, name: None },
        rank: 3,
    })
}

/// A service's claim: its cluster IPs (headless services have none).
pub fn service_claim(s: &Service) -> Option<Claim> {
    let spec = s.spec.as_ref()?;
    let mut texts: Vec<&str> = spec.cluster_ips.iter().flatten().map(String::as_str).collect();
    texts.extend(spec.cluster_ip.as_deref());
    let ips = parse_ips(texts.into_iter().filter(|t| *t != "None"));
    let peer = Peer {
        kind: PeerType::Service,
        node: None,
        namespace: s.metadata.namespace.as_deref().map(shared),
        name: s.metadata.name.as_deref().map(Arc::from),
    };
    (!ips.is_empty()).then_some(Claim { ips, peer, rank: 3 })
}

type Claims = Arc<Mutex<HashMap<String, Claim>>>;

/// The cluster's addresses, kept up to date by the watches while it lives.
pub struct IpIdentity {
    sources: Vec<Claims>,
    /// Bumped by every change a watch applies; the index is rebuilt when it moved.
    changes: Arc<AtomicU64>,
    built_at: AtomicU64,
    /// A rebuild walks every claim (8 ms at 10,000 pods): with churn, at most one per this.
    min_rebuild_interval: Duration,
    last_build: Mutex<Option<Instant>>,
    index: ArcSwap<HashMap<IpAddr, Peer>>,
    stop: CancellationToken,
}

impl Drop for IpIdentity {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl IpIdentity {
    /// An identity over fixed claims (tests, benchmarks); [`IpIdentity::watch`] for the API.
    pub fn from_claims(claims: Vec<(String, Claim)>) -> IpIdentity {
        let store: Claims = Arc::new(Mutex::new(claims.into_iter().collect()));
        let id = IpIdentity {
            sources: vec![store],
            changes: Arc::new(AtomicU64::new(1)),
            built_at: AtomicU64::new(0),
            min_rebuild_interval: Duration::ZERO,
            last_build: Mutex::new(None),
            index: ArcSwap::from_pointee(HashMap::new()),
            stop: CancellationToken::new(),
        };
        id.refresh();
        id
    }

    /// Starts watching `include` through `client`; errors go to `on_error`.
    pub fn watch(client: &KubeClient, include: &[Include], on_error: impl Fn(String) + Clone + Send + Sync + 'static) -> IpIdentity {
        let stop = CancellationToken::new();
        let changes = Arc::new(AtomicU64::new(0));
        let mut sources = Vec::new();
        for kind in include {
            let store: Claims = Arc::default();
            sources.push(store.clone());
            let (changes, stop, on_error) = (changes.clone(), stop.clone(), on_error.clone());
            let kube = client.client();
            let path = format!("/api/v1/{}", format!("{kind:?}").to_lowercase());
            let describer = client.clone();
            let report = move |e: &watcher::Error| {
                if let Some(e) = describer.describe(e, &path, "list and watch on pods, nodes and services for ip_identity") {
                    on_error(e.to_string());
                }
            };
            // Pages of 100, as for the node's pods: the typed page is the memory peak.
            let config = watcher::Config::default().page_size(100);
            match kind {
                Include::Pods => {
                    let api: Api<Pod> = Api::all(kube);
                    tokio::spawn(follow_objects(api, config, store, pod_claim, changes, stop, report));
                }
                Include::Nodes => {
                    let api: Api<Node> = Api::all(kube);
                    tokio::spawn(follow_objects(api, config, store, node_claim, changes, stop, report));
                }
                Include::Services => {
                    let api: Api<Service> = Api::all(kube);
                    tokio::spawn(follow_objects(api, config, store, service_claim, changes, stop, report));
                }
            }
        }
        IpIdentity {
            sources,
            changes,
            built_at: AtomicU64::new(u64::MAX),
            min_rebuild_interval: Duration::from_secs(1),
            last_build: Mutex::new(None),
            index: ArcSwap::from_pointee(HashMap::new()),
            stop,
        }
    }

    /// Rebuilds the address index if a watch changed something since the last build (and
    /// the last build is at least `min_rebuild_interval` old).
    pub fn refresh(&self) {
        let now = self.changes.load(Ordering::Acquire);
        if self.built_at.load(Ordering::Acquire) == now {
            return;
        }
        {
            let mut last = self.last_build.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < self.min_rebuild_interval) {
                return;
            }
            *last = Some(Instant::now());
        }
        self.built_at.store(now, Ordering::Release);
        let mut index: HashMap<IpAddr, (u8, Peer)> = HashMap::new();
        for source in &self.sources {
            let claims = source.lock().unwrap_or_else(|e| e.into_inner());
            for claim in claims.values() {
                for ip in &claim.ips {
                    match index.get(ip) {
                        Some((rank, _)) if *rank >= claim.rank => {}
                        _ => {
                            index.insert(*ip, (claim.rank, claim.peer.clone()));
                        }
                    }
                }
            }
        }
        self.index.store(Arc::new(index.into_iter().map(|(ip, (_, peer))| (ip, peer)).collect()));
    }

    /// Who `ip` is, as of the last [`IpIdentity::refresh`].
    pub fn lookup(&self, ip: IpAddr) -> Peer {
        self.index.load().get(&ip).cloned().unwrap_or(Peer::UNKNOWN)
    }

    pub fn len(&self) -> usize {
        self.index.load().len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The one cache per endpoint and set of kinds, shared while anyone holds it.
pub fn shared_identity(endpoint: &str, include: &[Include], make: impl FnOnce() -> Option<IpIdentity>) -> Option<Arc<IpIdentity>> {
    static CACHES: OnceLock<Mutex<HashMap<String, Weak<IpIdentity>>>> = OnceLock::new();
    let mut kinds = include.to_vec();
    kinds.sort_unstable();
    kinds.dedup();
    let key = format!("{endpoint} {kinds:?}");
    let mut caches = CACHES.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    caches.retain(|_, w| w.strong_count() > 0);
    if let Some(existing) = caches.get(&key).and_then(Weak::upgrade) {
        return Some(existing);
    }
    let made = Arc::new(make()?);
    caches.insert(key, Arc::downgrade(&made));
    Some(made)
}

/// This node's pods by address, from the pod index (the runtime's and the API's view of
/// the node): known before the cluster-wide lists arrive.
pub fn local_peers(index: &PodIndex, node: &str) -> HashMap<IpAddr, Peer> {
    let node = shared(node);
    index
        .by_netns
        .values()
        .filter_map(|pod| {
            let ip = pod.ip.parse().ok()?;
            let peer = Peer {
                kind: PeerType::Pod,
                node: Some(node.clone()),
                namespace: Some(shared(&pod.namespace)),
                name: Some(Arc::from(pod.name.as_str())),
            };
            Some((ip, peer))
        })
        .collect()
}

/// Peers by address: this node's pods first, then the cluster's.
pub struct Peers<'a> {
    pub local: HashMap<IpAddr, Peer>,
    pub cluster: &'a IpIdentity,
}

impl Peers<'_> {
    pub fn lookup(&self, ip: IpAddr) -> Peer {
        self.local.get(&ip).cloned().unwrap_or_else(|| self.cluster.lookup(ip))
    }
}

const SIDES: [(&str, [&str; 5]); 2] = [
    (keys::SOURCE_ADDRESS, [keys::SOURCE_TYPE, keys::SOURCE_NODE, keys::SOURCE_NAMESPACE, keys::SOURCE_POD, keys::SOURCE_SERVICE]),
    (
        keys::DESTINATION_ADDRESS,
        [keys::DESTINATION_TYPE, keys::DESTINATION_NODE, keys::DESTINATION_NAMESPACE, keys::DESTINATION_POD, keys::DESTINATION_SERVICE],
    ),
];

/// Adds who the source and destination are to attributes that carry their addresses.
/// Returns whether any address was there.
pub fn tag_peer_attributes(attrs: &mut Vec<KeyValue>, peers: &Peers<'_>) -> bool {
    let mut found = false;
    let mut tags: [Option<(&[&str; 5], Peer)>; 2] = [None, None];
    for (side, (address_key, keys)) in SIDES.iter().enumerate() {
        let Some(ip) = attr_string(attrs, address_key).and_then(|a| a.parse::<IpAddr>().ok()) else { continue };
        found = true;
        // Tagged once: a batch that passes two processors, or data from another agent.
        if attrs.iter().any(|kv| kv.key == keys[0]) {
            continue;
        }
        tags[side] = Some((keys, peers.lookup(ip)));
    }
    // Grown once to its final size: tens of thousands of flow points per batch, each
    // doubling its attribute vector on the first push, held ~18 MB of spare capacity.
    let added: usize = tags
        .iter()
        .flatten()
        .map(|(_, p)| 1 + usize::from(p.node.is_some()) + usize::from(p.namespace.is_some()) + usize::from(p.name.is_some()))
        .sum();
    attrs.reserve_exact(added);
    for (&[type_key, node_key, namespace_key, pod_key, service_key], peer) in tags.into_iter().flatten() {
        attrs.push(kv_str(type_key, peer.kind.as_str()));
        if let Some(node) = &peer.node {
            attrs.push(kv_str(node_key, node.as_ref()));
        }
        if let Some(namespace) = &peer.namespace {
            attrs.push(kv_str(namespace_key, namespace.as_ref()));
        }
        if let Some(name) = &peer.name {
            let key = if peer.kind == PeerType::Service { service_key } else { pod_key };
            attrs.push(kv_str(key, name.as_ref()));
        }
    }
    found
}

/// Every data point's attributes in a metric.
fn point_attributes(m: &mut Metric) -> Vec<&mut Vec<KeyValue>> {
    match m.data.as_mut() {
        Some(metric::Data::Sum(s)) => s.data_points.iter_mut().map(|p| &mut p.attributes).collect(),
        Some(metric::Data::Gauge(g)) => g.data_points.iter_mut().map(|p| &mut p.attributes).collect(),
        Some(metric::Data::Histogram(h)) => h.data_points.iter_mut().map(|p| &mut p.attributes).collect(),
        Some(metric::Data::ExponentialHistogram(h)) => h.data_points.iter_mut().map(|p| &mut p.attributes).collect(),
        Some(metric::Data::Summary(s)) => s.data_points.iter_mut().map(|p| &mut p.attributes).collect(),
        None => Vec::new(),
    }
}

/// Names the peers of every flow series in `m` (the metrics whose points carry
/// addresses); `peers` is asked only when there are some.
pub fn tag_metric_peers<'a>(m: &mut Metrics, peers: impl FnOnce() -> Peers<'a>) {
    let carries = |m: &Metric| match m.data.as_ref() {
        Some(metric::Data::Sum(s)) => s.data_points.first().is_some_and(|p| has_address(&p.attributes)),
        Some(metric::Data::Gauge(g)) => g.data_points.first().is_some_and(|p| has_address(&p.attributes)),
        _ => false,
    };
    let wanted = m.resources().iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics).any(carries);
    if !wanted {
        return;
    }
    let peers = peers();
    for rm in m.resources_mut().iter_mut() {
        for metric in rm.scope_metrics.iter_mut().flat_map(|s| s.metrics.iter_mut()).filter(|m| carries(m)) {
            for attrs in point_attributes(metric) {
                tag_peer_attributes(attrs, &peers);
            }
        }
    }
}

/// Names the peers of every event in `l` that carries addresses.
pub fn tag_log_peers<'a>(l: &mut Logs, peers: impl FnOnce() -> Peers<'a>) {
    let wanted = l.resources().iter().flat_map(|r| &r.scope_logs).flat_map(|s| &s.log_records).any(|r| has_address(&r.attributes));
    if !wanted {
        return;
    }
    let peers = peers();
    for rl in l.resources_mut().iter_mut() {
        for record in rl.scope_logs.iter_mut().flat_map(|s| s.log_records.iter_mut()) {
            tag_peer_attributes(&mut record.attributes, &peers);
        }
    }
}

fn has_address(attrs: &[KeyValue]) -> bool {
    attrs.iter().any(|kv| kv.key == keys::SOURCE_ADDRESS || kv.key == keys::DESTINATION_ADDRESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, name: &str, ip: &str, phase: &str, host_network: bool) -> (String, Pod) {
        let p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "shop", "uid": uid},
            "spec": {"nodeName": "node-2", "hostNetwork": host_network, "containers": []},
            "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}]}
        }))
        .unwrap();
        (uid.to_string(), p)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn pods_nodes_and_services_by_address() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "node-2"},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.168.10.22"}, {"type": "Hostname", "address": "node-2"}]}
        }))
        .unwrap();
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "cart", "namespace": "shop"},
            "spec": {"clusterIP": "10.96.4.7", "clusterIPs": ["10.96.4.7", "fd00::4:7"]}
        }))
        .unwrap();
        let headless: Service =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "db", "namespace": "shop"}, "spec": {"clusterIP": "None"}}))
                .unwrap();
        let mut claims = vec![("n".to_string(), node_claim(&node).unwrap()), ("s".to_string(), service_claim(&svc).unwrap())];
        assert!(service_claim(&headless).is_none());
        for (uid, p) in [
            pod("a", "web-1", "10.244.2.5", "Running", false),
            pod("b", "old-job", "10.244.2.9", "Succeeded", false),
            pod("c", "agent", "192.168.10.22", "Running", true),
        ] {
            if let Some(c) = pod_claim(&p) {
                claims.push((uid, c));
            }
        }
        let id = IpIdentity::from_claims(claims);
        let web = id.lookup(ip("10.244.2.5"));
        assert_eq!(
            (web.kind, web.node.as_deref(), web.namespace.as_deref(), web.name.as_deref()),
            (PeerType::Pod, Some("node-2"), Some("shop"), Some("web-1"))
        );
        assert_eq!(id.lookup(ip("10.244.2.9")).kind, PeerType::Unknown, "a finished pod gave its address back");
        assert_eq!(id.lookup(ip("192.168.10.22")).kind, PeerType::Node, "a host-network pod is the node's address");
        assert_eq!(id.lookup(ip("fd00::4:7")).name.as_deref(), Some("cart"));
        assert_eq!(id.lookup(ip("10.96.4.7")).kind, PeerType::Service);
        assert_eq!(id.lookup(ip("8.8.8.8")), Peer::UNKNOWN);
    }

    #[test]
    fn an_address_reused_by_a_new_pod_names_the_new_pod() {
        let (uid, old) = pod("a", "web-1", "10.244.2.5", "Running", false);
        let id = IpIdentity::from_claims(vec![(uid, pod_claim(&old).unwrap())]);
        assert_eq!(id.lookup(ip("10.244.2.5")).name.as_deref(), Some("web-1"));
        // The watch deletes the old pod and applies the new one.
        {
            let mut claims = id.sources[0].lock().unwrap();
            claims.remove("a");
            let (uid, new) = pod("z", "web-7", "10.244.2.5", "Running", false);
            claims.insert(uid, pod_claim(&new).unwrap());
        }
        id.changes.fetch_add(1, Ordering::Release);
        id.refresh();
        assert_eq!(id.lookup(ip("10.244.2.5")).name.as_deref(), Some("web-7"));
    }

    #[test]
    fn peers_are_added_once_local_pods_first() {
        let (uid, remote) = pod("r", "api-0", "10.244.9.3", "Running", false);
        let cluster = IpIdentity::from_claims(vec![(uid, pod_claim(&remote).unwrap())]);
        let local: HashMap<IpAddr, Peer> = [(
            ip("10.244.1.7"),
            Peer { kind: PeerType::Pod, node: Some(shared("node-1")), namespace: Some(shared("shop")), name: Some(Arc::from("web-0")) },
        )]
        .into();
        let peers = Peers { local, cluster: &cluster };
        let mut attrs = vec![kv_str(keys::SOURCE_ADDRESS, "10.244.1.7"), kv_str(keys::DESTINATION_ADDRESS, "10.244.9.3")];
        assert!(tag_peer_attributes(&mut attrs, &peers));
        let get = |k: &str| attr_string(&attrs, k);
        assert_eq!(get(keys::SOURCE_TYPE).as_deref(), Some("pod"));
        assert_eq!(get(keys::SOURCE_POD).as_deref(), Some("web-0"));
        assert_eq!(get(keys::SOURCE_NODE).as_deref(), Some("node-1"));
        assert_eq!(get(keys::DESTINATION_POD).as_deref(), Some("api-0"));
        assert_eq!(get(keys::DESTINATION_NODE).as_deref(), Some("node-2"));
        let n = attrs.len();
        tag_peer_attributes(&mut attrs, &peers);
        assert_eq!(attrs.len(), n, "tagged once");
        let mut unknown = vec![kv_str(keys::DESTINATION_ADDRESS, "1.1.1.1")];
        tag_peer_attributes(&mut unknown, &peers);
        assert_eq!(attr_string(&unknown, keys::DESTINATION_TYPE).as_deref(), Some("unknown"));
        assert_eq!(unknown.len(), 2, "an unknown peer has a type and nothing else");
    }
}
