//! Processor `k8s_attributes`: names each network namespace's pod. Every resource that
//! carries a `podnet.netns.inode` (metrics and events alike) gets `k8s.pod.name`,
//! `k8s.pod.uid`, `k8s.namespace.name`, `k8s.pod.ip`, the workload (`k8s.deployment.name`,
//! …), the configured labels and annotations and KubeSkoop's `additional_labels`; the host
//! namespace stays node level, and a namespace no source knows keeps its inode (it is
//! never dropped).
//!
//! Sources: the container runtime (CRI: sandbox → pid → namespace), enriched by the
//! Kubernetes API (this node's pods, watched); with no runtime reachable, the API alone,
//! matching each namespace's local address to a pod IP.
//!
//! With `ip_identity` on, flows and events also get who their peers are
//! (`source.address`, `destination.address` → pod, node, service or unknown), from this
//! node's pods and a cluster-wide cache of pods, nodes and services (`identity.rs`).

pub mod cri;
pub mod cri_source;
pub mod identity;
pub mod ipmatch;
pub mod kube;
pub mod pods;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use podnet_pipeline::component::{
    BoxFuture, BuildError, ComponentContext, Factory, FactoryInfo, Kind, Processor, ProcessorFactory, Stability,
};
use podnet_pipeline::config::ConfigDuration;
use podnet_pipeline::fanout::{Input, Outputs};
use podnet_pipeline::pdata::{Logs, Metrics, PData, Resource, Signal};
use serde::{Deserialize, Serialize};

use crate::pods::{Additional, Extract, PodIndex, Tagger};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CriConfig {
    pub enabled: bool,
    /// `auto` (the first of containerd's, CRI-O's, cri-dockerd's and k3s's sockets that
    /// exists) or `unix:///path/to/runtime.sock`.
    pub endpoint: String,
    pub poll_interval: ConfigDuration,
    /// Per call.
    pub timeout: ConfigDuration,
}

impl Default for CriConfig {
    fn default() -> Self {
        CriConfig {
            enabled: true,
            endpoint: "auto".into(),
            poll_interval: ConfigDuration::from_secs(2),
            timeout: ConfigDuration::from_secs(2),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct K8sAttributesConfig {
    /// Where sandbox pids' namespaces are looked up (`/host/proc` in the DaemonSet).
    pub root_path: PathBuf,
    pub cri: CriConfig,
    /// How long a deleted pod's namespace keeps its name (in-flight events, the last
    /// collection) before its data goes unnamed and its series expire.
    pub grace_period: ConfigDuration,
    pub extract: Extract,
    /// KubeSkoop's `additionalLabels`: `name=text with ${labels:<pod label>}`.
    pub additional_labels: Vec<String>,
    pub kube_api: kube::KubeApiConfig,
    /// `ip netns` names, for matching namespaces by address.
    pub names_path: PathBuf,
    pub ip_identity: identity::IpIdentityConfig,
}

impl Default for K8sAttributesConfig {
    fn default() -> Self {
        K8sAttributesConfig {
            root_path: "/proc".into(),
            cri: CriConfig::default(),
            grace_period: ConfigDuration::from_secs(30),
            extract: Extract::default(),
            additional_labels: Vec::new(),
            kube_api: kube::KubeApiConfig::default(),
            names_path: "/run/netns".into(),
            ip_identity: identity::IpIdentityConfig::default(),
        }
    }
}

pub struct K8sAttributesProcessorFactory;

fn additional(c: &K8sAttributesConfig) -> Result<Vec<Additional>, String> {
    c.additional_labels.iter().enumerate().map(|(i, a)| Additional::parse(a).map_err(|e| format!("additional_labels::{i}: {e}"))).collect()
}

impl Factory for K8sAttributesProcessorFactory {
    type Config = K8sAttributesConfig;
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "k8s_attributes",
            aliases: &["k8sattributes"],
            kind: Kind::Processor,
            signals: &[Signal::Metrics, Signal::Logs],
            stability: Stability::Alpha,
            description: "Names each network namespace's pod (k8s.pod.name, k8s.namespace.name, labels) from the container runtime",
            probes: &[],
        }
    }
    fn validate(&self, c: &K8sAttributesConfig) -> Result<(), String> {
        additional(c)?;
        if !c.cri.enabled && c.kube_api.enabled == kube::Enabled::False {
            return Err("no pod source: enable cri or kube_api".into());
        }
        if c.cri.enabled && c.cri.endpoint != "auto" {
            cri::socket_path(&c.cri.endpoint).map_err(|e| format!("cri::endpoint: {e}"))?;
        }
        // The poll interval also paces address matching when the runtime is off.
        if c.cri.poll_interval.0.is_zero() || c.cri.timeout.0.is_zero() {
            return Err("cri::poll_interval and cri::timeout must be greater than zero".into());
        }
        if c.ip_identity.enabled && c.ip_identity.include.is_empty() {
            return Err("ip_identity::include must name pods, nodes or services".into());
        }
        if c.ip_identity.enabled && c.kube_api.enabled == kube::Enabled::False {
            return Err("ip_identity needs the Kubernetes API: set kube_api::enabled to auto or true".into());
        }
        Ok(())
    }
}

impl ProcessorFactory for K8sAttributesProcessorFactory {
    fn create(&self, config: &K8sAttributesConfig, ctx: ComponentContext) -> Result<Box<dyn Processor>, BuildError> {
        let tagger = Tagger {
            node: ctx.host.node.name.clone(),
            extract: config.extract.clone(),
            additional: additional(config).map_err(BuildError::new)?,
        };
        Ok(Box::new(K8sAttributesProcessor { config: config.clone(), tagger, index: Arc::default(), ctx }))
    }
}

struct K8sAttributesProcessor {
    config: K8sAttributesConfig,
    tagger: Tagger,
    index: Arc<ArcSwap<PodIndex>>,
    ctx: ComponentContext,
}

/// Tags each resource; returns how many were named after a pod.
fn tag_resources<'a>(resources: impl Iterator<Item = &'a mut Option<Resource>>, tagger: &Tagger, index: &PodIndex) -> usize {
    resources.map(|r| usize::from(tagger.tag(&mut r.get_or_insert_with(Default::default).attributes, index))).sum()
}

pub fn tag_metrics(m: &mut Metrics, tagger: &Tagger, index: &PodIndex) -> usize {
    tag_resources(m.resources_mut().iter_mut().map(|r| &mut r.resource), tagger, index)
}

pub fn tag_logs(l: &mut Logs, tagger: &Tagger, index: &PodIndex) -> usize {
    tag_resources(l.resources_mut().iter_mut().map(|r| &mut r.resource), tagger, index)
}

/// Keeps `index` current until shutdown: polls the runtime, merges what the API knows,
/// and falls back to address matching when no runtime answers.
async fn maintain(
    config: K8sAttributesConfig,
    index: Arc<ArcSwap<PodIndex>>,
    api: Option<kube::PodStore>,
    ctx: ComponentContext,
    first: tokio::sync::oneshot::Sender<()>,
) {
    let mut cri = None;
    let endpoint = cri::resolve_endpoint(&config.cri.endpoint, std::path::Path::new("/"));
    // Where the runtime streams events, a sandbox change triggers a poll at once; polling
    // on the interval goes on regardless (a missed event costs one interval at most).
    let changed = Arc::new(tokio::sync::Notify::new());
    if config.cri.enabled {
        match cri::CriClient::new(&endpoint, config.cri.timeout.0) {
            Ok(c) => {
                tokio::spawn(follow_runtime_events(c.clone(), changed.clone(), ctx.clone()));
                cri = Some(cri_source::CriSource::new(c, config.root_path.clone()));
            }
            Err(e) => ctx.status.failed(e.to_string()),
        }
    }
    let mut first = Some(first);
    let mut ticker = tokio::time::interval(config.cri.poll_interval.0);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_error: Option<String> = None;
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = ticker.tick() => {}
            _ = changed.notified() => {}
        }
        let mut live = None;
        if let Some(source) = &mut cri {
            match source.poll().await {
                Ok((pods, errors)) => {
                    for e in &errors {
                        tracing::debug!(component = %ctx.id, "{e}");
                    }
                    if last_error.take().is_some() {
                        tracing::info!(component = %ctx.id, endpoint = %endpoint, "container runtime reachable again");
                        ctx.status.running();
                    }
                    live = Some(pods);
                }
                Err(e) => {
                    let text = e.to_string();
                    if last_error.as_deref() != Some(text.as_str()) {
                        let fallback = if api.is_some() {
                            "matching namespaces to the API's pods by address"
                        } else {
                            "pods keep their last known names"
                        };
                        tracing::warn!(component = %ctx.id, "{text}: {fallback}; retrying every {:?}", config.cri.poll_interval.0);
                        ctx.status.failed(format!("{text} (retrying)"));
                    }
                    last_error = Some(text);
                }
            }
        }
        let api_pods = api.as_ref().map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).clone());
        let mut host_network = cri.as_ref().map(|c| c.host_network()).unwrap_or_default();
        for p in api_pods.iter().flat_map(|a| a.values()).filter(|p| p.host_network) {
            host_network.entry(p.pod.uid.clone()).or_insert_with(|| p.pod.clone());
        }
        let live = match (live, api_pods) {
            (Some(mut pods), Some(api)) => {
                ipmatch::enrich(&mut pods, &api);
                Some(pods)
            }
            (Some(pods), None) => Some(pods),
            (None, Some(api)) => {
                let (root, names) = (config.root_path.clone(), config.names_path.clone());
                tokio::task::spawn_blocking(move || ipmatch::match_by_ip(&root, &names, &api)).await.ok()
            }
            (None, None) => None,
        };
        let mut next = PodIndex::clone(&index.load());
        // No source answered: keep the names, age out the departed.
        let live = live.unwrap_or_else(|| next.by_netns.clone());
        next.replace(live, config.grace_period.0, Instant::now());
        next.host_network = host_network;
        index.store(Arc::new(next));
        if let Some(tx) = first.take() {
            let _ = tx.send(());
        }
    }
}

/// Follows the runtime's event stream, reconnecting after errors; stops for good when the
/// runtime has none (containerd 1.6, cri-dockerd).
async fn follow_runtime_events(mut client: cri::CriClient, changed: Arc<tokio::sync::Notify>, ctx: ComponentContext) {
    loop {
        let result = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            r = client.follow_events(|| changed.notify_one()) => r,
        };
        match result {
            Ok(false) => {
                tracing::info!(component = %ctx.id, "the container runtime has no event stream (CRI GetContainerEvents): polling only");
                return;
            }
            Ok(true) => {}
            Err(e) => tracing::debug!(component = %ctx.id, "runtime events: {e}"),
        }
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
        }
    }
}

impl Processor for K8sAttributesProcessor {
    fn run(self: Box<Self>, mut input: Input, outputs: Outputs) -> BoxFuture {
        Box::pin(async move {
            let K8sAttributesProcessor { config, tagger, index, ctx } = *self;
            let mut cluster = None;
            let api = match config.kube_api.endpoint(|k| std::env::var(k).ok()) {
                Some(endpoint) => match kube::KubeClient::new(&endpoint, &config.kube_api, &ctx.host.node.name) {
                    Ok(client) => {
                        if config.ip_identity.enabled {
                            let include = config.ip_identity.include.clone();
                            let id = ctx.id.to_string();
                            cluster = identity::shared_identity(&endpoint, &include, || {
                                tracing::info!(component = %id, endpoint, ?include, "watching the cluster's addresses for flow and event peers");
                                let id = id.clone();
                                Some(identity::IpIdentity::watch(&client, &include, move |e| {
                                    tracing::warn!(component = %id, "Kubernetes API (ip_identity): {e}");
                                }))
                            });
                        }
                        let store: kube::PodStore = Arc::default();
                        let id = ctx.id.to_string();
                        tracing::info!(component = %ctx.id, endpoint, node = %ctx.host.node.name, "watching this node's pods in the Kubernetes API");
                        tokio::spawn(kube::follow(client, store.clone(), ctx.shutdown.clone(), move |e| {
                            tracing::warn!(component = %id, "Kubernetes API: {e}");
                        }));
                        Some(store)
                    }
                    Err(e) => {
                        tracing::warn!(component = %ctx.id, "Kubernetes API source off: {e}");
                        None
                    }
                },
                None => None,
            };
            let (tx, rx) = tokio::sync::oneshot::channel();
            tokio::spawn(maintain(config.clone(), index.clone(), api, ctx.clone(), tx));
            // Data that comes before the first answer would go unnamed: wait for it, a
            // bounded time.
            let _ = tokio::time::timeout(config.cri.timeout.0 * 2, rx).await;
            if config.ip_identity.enabled && cluster.is_none() {
                tracing::info!(component = %ctx.id, "ip_identity is on without the Kubernetes API: peers are named from this node's pods only");
            }
            let empty = identity::IpIdentity::from_claims(Vec::new());
            let peers = |idx: &PodIndex| {
                let cluster = cluster.as_deref().unwrap_or(&empty);
                cluster.refresh();
                identity::Peers { local: identity::local_peers(idx, &tagger.node), cluster }
            };
            let process = |data: PData| -> PData {
                let idx = index.load();
                match data {
                    PData::Metrics(mut m) => {
                        tag_metrics(&mut m, &tagger, &idx);
                        if config.ip_identity.enabled {
                            identity::tag_metric_peers(&mut m, || peers(&idx));
                        }
                        PData::Metrics(m)
                    }
                    PData::Logs(mut l) => {
                        tag_logs(&mut l, &tagger, &idx);
                        if config.ip_identity.enabled {
                            identity::tag_log_peers(&mut l, || peers(&idx));
                        }
                        PData::Logs(l)
                    }
                }
            };
            while let Some(d) = input.next(&ctx.shutdown).await {
                outputs.send(process(d)).await;
            }
        })
    }
}
