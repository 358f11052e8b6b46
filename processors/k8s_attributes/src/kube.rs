//! Pods of this node from the Kubernetes API, through kube-runtime's watcher: a list, then
//! a watch from its resourceVersion (`fieldSelector=spec.nodeName=<node>`, so no
//! cluster-wide traffic), resumed from the last version seen when the connection drops, a
//! fresh list when the API says that version is gone (410), and the watcher's backoff on
//! errors. Needs only get/list/watch on pods.
//!
//! The store keeps podnet's compact view of each pod ([`ApiPod`]), not the typed object:
//! the typed Pod with its spec and status is ten times larger, and the identity cache will
//! hold every pod of a cluster. Responses are capped (`CapLayer`): an error body is read up
//! to 64 KiB, a list up to 64 MiB, a watch event up to 4 MiB (a larger one makes the
//! source list again, as it would come back on resume).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::pods::Pod;

pub const TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
pub const CA_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

/// Whether to use the API: `auto`, `true` or `false` (YAML booleans too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Enabled {
    /// When in-cluster credentials exist (KUBERNETES_SERVICE_HOST and a token).
    Auto,
    True,
    False,
}

impl<'de> Deserialize<'de> for Enabled {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(true) => Ok(Enabled::True),
            Raw::Bool(false) => Ok(Enabled::False),
            Raw::Text(t) => match t.as_str() {
                "auto" => Ok(Enabled::Auto),
                "true" => Ok(Enabled::True),
                "false" => Ok(Enabled::False),
                other => Err(serde::de::Error::custom(format!("\"{other}\" is not one of auto, true, false"))),
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubeApiConfig {
    pub enabled: Enabled,
    /// Default: `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`.
    pub endpoint: Option<String>,
    pub token_file: PathBuf,
    pub ca_file: PathBuf,
    pub insecure_skip_verify: bool,
}

impl Default for KubeApiConfig {
    fn default() -> Self {
        KubeApiConfig {
            enabled: Enabled::Auto,
            endpoint: None,
            token_file: TOKEN_FILE.into(),
            ca_file: CA_FILE.into(),
            insecure_skip_verify: false,
        }
    }
}

impl KubeApiConfig {
    /// The API endpoint to use, or `None` when the API source is off.
    pub fn endpoint(&self, env: impl Fn(&str) -> Option<String>) -> Option<String> {
        let in_cluster = || {
            let host = env("KUBERNETES_SERVICE_HOST")?;
            let port = env("KUBERNETES_SERVICE_PORT").unwrap_or_else(|| "443".into());
            let host = if host.contains(':') { format!("[{host}]") } else { host };
            Some(format!("https://{host}:{port}"))
        };
        match self.enabled {
            Enabled::False => None,
            Enabled::True => self.endpoint.clone().or_else(in_cluster),
            Enabled::Auto => self.endpoint.clone().or_else(|| in_cluster().filter(|_| self.token_file.exists())),
        }
    }
}

/// A pod as the API describes it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ApiPod {
    pub pod: Pod,
    pub host_network: bool,
    pub resource_version: String,
}

/// The workload that owns a pod, from its owner references: a ReplicaSet named
/// `<deployment>-<pod-template-hash>` is a Deployment's, a Job named `<cronjob>-<digits>` a
/// CronJob's. No ReplicaSet or Job is looked up.
pub fn workload(owners: &[OwnerReference], labels: &BTreeMap<String, String>) -> Option<(&'static str, String)> {
    let owner = owners.iter().find(|o| o.controller == Some(true)).or_else(|| owners.first())?;
    let name = owner.name.clone();
    Some(match owner.kind.as_str() {
        "ReplicaSet" => match labels.get("pod-template-hash").and_then(|h| name.strip_suffix(&format!("-{h}"))) {
            Some(deployment) => ("k8s.deployment.name", deployment.to_string()),
            None => ("k8s.replicaset.name", name),
        },
        "StatefulSet" => ("k8s.statefulset.name", name),
        "DaemonSet" => ("k8s.daemonset.name", name),
        "Job" => match name.rsplit_once('-') {
            Some((cron, suffix)) if suffix.len() >= 8 && suffix.bytes().all(|b| b.is_ascii_digit()) => {
                ("k8s.cronjob.name", cron.to_string())
            }
            _ => ("k8s.job.name", name),
        },
        _ => return None,
    })
}

impl ApiPod {
    /// What podnet keeps of a Pod object; `None` without a name or uid.
    pub fn from_pod(p: &k8s_openapi::api::core::v1::Pod) -> Option<ApiPod> {
        let meta = &p.metadata;
        let labels = meta.labels.clone().unwrap_or_default();
        Some(ApiPod {
            pod: Pod {
                name: meta.name.clone()?,
                namespace: meta.namespace.clone().unwrap_or_default(),
                uid: meta.uid.clone()?,
                ip: p.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
                workload: workload(meta.owner_references.as_deref().unwrap_or_default(), &labels),
                labels,
                annotations: meta.annotations.clone().unwrap_or_default(),
            },
            host_network: p.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("{0}")]
    Setup(String),
    #[error("{url}: {reason}")]
    Request { url: String, reason: String },
    /// A watch event over the size limit: it would come again on resume, so list again.
    #[error("{url}: a watch event over {limit} bytes: refused, relisting")]
    EventTooLarge { url: String, limit: usize },
}

/// Pods by uid, as the API last told.
pub type PodStore = Arc<Mutex<HashMap<String, ApiPod>>>;

#[derive(Clone)]
pub struct KubeClient {
    client: kube::Client,
    /// The API's base URL, for messages.
    base: String,
    node: String,
}

impl KubeClient {
    pub fn new(endpoint: &str, config: &KubeApiConfig, node: &str) -> Result<KubeClient, KubeError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let uri: http::Uri =
            endpoint.parse().map_err(|e| KubeError::Setup(format!("kube_api::endpoint \"{endpoint}\": {e} (use https://host:port)")))?;
        let mut kc = kube::Config::new(uri);
        kc.connect_timeout = Some(Duration::from_secs(5));
        kc.accept_invalid_certs = config.insecure_skip_verify;
        if endpoint.starts_with("https://") && config.ca_file.exists() {
            // Read now so a bad file fails here with its name; kube re-reads it as it rotates.
            let pem = std::fs::read(&config.ca_file)
                .map_err(|e| KubeError::Setup(format!("kube_api::ca_file {}: {e}", config.ca_file.display())))?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                return Err(KubeError::Setup(format!("kube_api::ca_file {}: no PEM certificate in it", config.ca_file.display())));
            }
            kc.root_cert_file = Some(config.ca_file.clone());
        }
        // kube re-reads the token file as kubelet rotates projected tokens.
        if config.token_file.exists() {
            kc.auth_info.token_file = Some(config.token_file.display().to_string());
        }
        if let Ok(ua) = http::HeaderValue::from_str(concat!("podnet/", env!("CARGO_PKG_VERSION"))) {
            kc.headers.push((http::header::USER_AGENT, ua));
        }
        let client = kube::client::ClientBuilder::try_from(kc)
            .map_err(|e| KubeError::Setup(format!("cannot build the Kubernetes client: {e}")))?
            .with_layer(&cap::CapLayer)
            .build();
        Ok(KubeClient { client, base: endpoint.trim_end_matches('/').to_string(), node: node.to_string() })
    }

    /// The client, for other watches on the same API.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// What to tell about an error of a watch of `path` (`/api/v1/pods?…`); `None` for the
    /// API's routine 410 (the watcher lists again by itself). `needs` is the permission a
    /// 401/403 names (`get, list and watch on pods`).
    pub fn describe(&self, e: &watcher::Error, path: &str, needs: &str) -> Option<KubeError> {
        let url = format!("{}{path}", self.base);
        let request = |reason: String| KubeError::Request { url: url.clone(), reason };
        let api_status = |s: &kube::core::Status| {
            let hint =
                if s.code == 401 || s.code == 403 { format!(" (podnet needs {needs}: see the DaemonSet's RBAC)") } else { String::new() };
            request(format!("HTTP {}{hint}: {}", s.code, s.message.chars().take(200).collect::<String>()))
        };
        match e {
            watcher::Error::WatchError(s) if s.code == 410 && s.message.starts_with(cap::TOO_LARGE_MARK) => {
                Some(KubeError::EventTooLarge { url: url.clone(), limit: cap::MAX_WATCH_LINE })
            }
            watcher::Error::WatchError(s) if s.code == 410 => None,
            watcher::Error::WatchError(s) => Some(api_status(s)),
            watcher::Error::InitialListFailed(kube::Error::Api(s))
            | watcher::Error::WatchStartFailed(kube::Error::Api(s))
            | watcher::Error::WatchFailed(kube::Error::Api(s)) => Some(api_status(s)),
            other => Some(request(other.to_string())),
        }
    }
}

/// Keeps `store` equal to the node's pods until shutdown.
pub async fn follow(client: KubeClient, store: PodStore, shutdown: CancellationToken, on_error: impl Fn(&KubeError)) {
    let api: Api<k8s_openapi::api::core::v1::Pod> = Api::all(client.client.clone());
    // Pages of 100: the typed page is the peak of memory, and a list costs a few more requests.
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", client.node)).page_size(100);
    let path = format!("/api/v1/pods?fieldSelector=spec.nodeName%3D{}", client.node);
    follow_objects(api, config, store, ApiPod::from_pod, Arc::default(), shutdown, |e| {
        if let Some(e) = client.describe(e, &path, "get, list and watch on pods") {
            on_error(&e);
        }
    })
    .await
}

/// Keeps `store` equal to the objects `api` lists under `config`, by uid, each as `keep`
/// makes it (podnet's compact record), until shutdown. A list replaces the store whole
/// once it is complete, so readers never see half a list. Pods, nodes and services are
/// all followed this way.
pub async fn follow_objects<K, V>(
    api: Api<K>,
    config: watcher::Config,
    store: Arc<Mutex<HashMap<String, V>>>,
    keep: impl Fn(&K) -> Option<V>,
    changes: Arc<std::sync::atomic::AtomicU64>,
    shutdown: CancellationToken,
    on_error: impl Fn(&watcher::Error),
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut events = std::pin::pin!(watcher(api, config).default_backoff());
    let mut listing: Option<HashMap<String, V>> = None;
    let uid = |o: &K| o.meta().uid.clone();
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = events.next() => next,
        };
        let Some(next) = next else { return };
        let event = match next {
            Ok(event) => event,
            Err(e) => {
                on_error(&e);
                continue;
            }
        };
        let lock = || {
            changes.fetch_add(1, std::sync::atomic::Ordering::Release);
            store.lock().unwrap_or_else(|e| e.into_inner())
        };
        match event {
            watcher::Event::Init => listing = Some(HashMap::new()),
            watcher::Event::InitApply(o) => {
                if let (Some(listing), Some(id), Some(v)) = (listing.as_mut(), uid(&o), keep(&o)) {
                    listing.insert(id, v);
                }
            }
            watcher::Event::InitDone => {
                if let Some(listing) = listing.take() {
                    *lock() = listing;
                }
            }
            watcher::Event::Apply(o) => {
                if let (Some(id), Some(v)) = (uid(&o), keep(&o)) {
                    lock().insert(id, v);
                }
            }
            watcher::Event::Delete(o) => {
                if let Some(id) = uid(&o) {
                    lock().remove(&id);
                }
            }
        }
    }
}

mod cap {
    //! Response size limits as a tower layer under the kube client: kube reads error
    //! bodies and lists whole and splits watch streams into lines without a bound.

    use std::pin::Pin;
    use std::task::{Context, Poll, ready};

    use bytes::{Bytes, BytesMut};
    use http::{Request, Response};
    use http_body::{Body, Frame};

    type BoxError = Box<dyn std::error::Error + Send + Sync>;

    /// Enough of an API error to say why.
    pub const ERROR_BODY_CAP: usize = 64 * 1024;
    /// This node's pods: a few hundred at most, each a few KiB to tens of KiB.
    pub const MAX_POD_LIST: usize = 64 << 20;
    /// One watch event (one pod).
    pub const MAX_WATCH_LINE: usize = 4 << 20;
    /// Starts the message of the 410 that stands in for an oversized watch event.
    pub const TOO_LARGE_MARK: &str = "podnet: watch event over the size limit";

    #[derive(Clone, Copy)]
    pub struct CapLayer;

    impl<S> tower::Layer<S> for CapLayer {
        type Service = Capped<S>;
        fn layer(&self, inner: S) -> Capped<S> {
            Capped(inner)
        }
    }

    pub struct Capped<S>(S);

    impl<S, ReqBody, B> tower::Service<Request<ReqBody>> for Capped<S>
    where
        S: tower::Service<Request<ReqBody>, Response = Response<B>>,
        S::Future: Send + 'static,
    {
        type Response = Response<CappedBody<B>>;
        type Error = S::Error;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
            self.0.poll_ready(cx)
        }

        fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
            let watch = req.uri().query().is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
            let response = self.0.call(req);
            Box::pin(async move {
                let response = response.await?;
                let limit = if !response.status().is_success() {
                    Limit::Truncate(ERROR_BODY_CAP)
                } else if watch {
                    Limit::Lines(MAX_WATCH_LINE)
                } else {
                    Limit::Total(MAX_POD_LIST)
                };
                Ok(response.map(|inner| CappedBody { inner, limit, seen: 0, tail: BytesMut::new(), finished: false }))
            })
        }
    }

    #[derive(Clone, Copy)]
    enum Limit {
        /// An error body: what fits is kept, the rest never read.
        Truncate(usize),
        /// A list: over the limit is an error.
        Total(usize),
        /// A watch: whole lines are passed on; a line over the limit ends the stream with
        /// a 410, so kube's watcher lists again instead of resuming into the same event.
        Lines(usize),
    }

    pub struct CappedBody<B> {
        inner: B,
        limit: Limit,
        seen: usize,
        /// A watch line not yet complete.
        tail: BytesMut,
        finished: bool,
    }

    fn too_large_event() -> Bytes {
        let status = serde_json::json!({
            "type": "ERROR",
            "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired", "code": 410,
                       "message": format!("{TOO_LARGE_MARK} ({MAX_WATCH_LINE} bytes): relisting")},
        });
        Bytes::from(format!("{status}\n"))
    }

    impl<B> Body for CappedBody<B>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
    {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            let this = &mut *self;
            loop {
                if this.finished {
                    return Poll::Ready(None);
                }
                let data = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                    None => {
                        this.finished = true;
                        // A watch's last line may lack its newline.
                        return Poll::Ready((!this.tail.is_empty()).then(|| Ok(Frame::data(this.tail.split().freeze()))));
                    }
                    Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => data,
                        Err(_trailers) => continue,
                    },
                };
                match this.limit {
                    Limit::Truncate(limit) => {
                        let room = limit - this.seen;
                        let data = data.slice(..data.len().min(room));
                        this.seen += data.len();
                        this.finished = this.seen >= limit;
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Limit::Total(limit) => {
                        this.seen += data.len();
                        if this.seen > limit {
                            this.finished = true;
                            return Poll::Ready(Some(Err(format!("a response over {limit} bytes: refused").into())));
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Limit::Lines(limit) => {
                        let Some(last_newline) = data.iter().rposition(|&b| b == b'\n') else {
                            this.tail.extend_from_slice(&data);
                            if this.tail.len() > limit {
                                this.finished = true;
                                this.tail = BytesMut::new();
                                return Poll::Ready(Some(Ok(Frame::data(too_large_event()))));
                            }
                            continue;
                        };
                        let lines = if this.tail.is_empty() {
                            data.slice(..=last_newline)
                        } else {
                            this.tail.extend_from_slice(&data[..=last_newline]);
                            this.tail.split().freeze()
                        };
                        this.tail.extend_from_slice(&data[last_newline + 1..]);
                        if this.tail.len() > limit {
                            this.finished = true;
                            this.tail = BytesMut::new();
                            let mut both = BytesMut::from(&lines[..]);
                            both.extend_from_slice(&too_large_event());
                            return Poll::Ready(Some(Ok(Frame::data(both.freeze()))));
                        }
                        return Poll::Ready(Some(Ok(Frame::data(lines))));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owners(v: serde_json::Value) -> Vec<OwnerReference> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn workloads_from_owner_references() {
        let labels: BTreeMap<String, String> = [("pod-template-hash".to_string(), "7d4b9c8f5".to_string())].into();
        let none = BTreeMap::new();
        let rs = owners(
            serde_json::json!([{"apiVersion": "apps/v1", "uid": "1", "kind": "ReplicaSet", "name": "web-7d4b9c8f5", "controller": true}]),
        );
        assert_eq!(workload(&rs, &labels), Some(("k8s.deployment.name", "web".into())));
        let bare_rs =
            owners(serde_json::json!([{"apiVersion": "apps/v1", "uid": "1", "kind": "ReplicaSet", "name": "web-abc", "controller": true}]));
        assert_eq!(workload(&bare_rs, &none), Some(("k8s.replicaset.name", "web-abc".into())));
        let cron = owners(
            serde_json::json!([{"apiVersion": "batch/v1", "uid": "1", "kind": "Job", "name": "backup-29123456", "controller": true}]),
        );
        assert_eq!(workload(&cron, &none), Some(("k8s.cronjob.name", "backup".into())));
        let job = owners(serde_json::json!([{"apiVersion": "batch/v1", "uid": "1", "kind": "Job", "name": "migrate", "controller": true}]));
        assert_eq!(workload(&job, &none), Some(("k8s.job.name", "migrate".into())));
        let sts =
            owners(serde_json::json!([{"apiVersion": "apps/v1", "uid": "1", "kind": "StatefulSet", "name": "db", "controller": true}]));
        assert_eq!(workload(&sts, &none), Some(("k8s.statefulset.name", "db".into())));
        let ds =
            owners(serde_json::json!([{"apiVersion": "apps/v1", "uid": "1", "kind": "DaemonSet", "name": "agent", "controller": true}]));
        assert_eq!(workload(&ds, &none), Some(("k8s.daemonset.name", "agent".into())));
        assert_eq!(workload(&[], &none), None);
    }

    #[test]
    fn endpoint_selection() {
        let env = |k: &str| match k {
            "KUBERNETES_SERVICE_HOST" => Some("10.96.0.1".to_string()),
            "KUBERNETES_SERVICE_PORT" => Some("443".to_string()),
            _ => None,
        };
        let mut c = KubeApiConfig { token_file: "/nonexistent".into(), ..Default::default() };
        assert_eq!(c.endpoint(env), None, "auto: no token, no API");
        c.enabled = Enabled::True;
        assert_eq!(c.endpoint(env).as_deref(), Some("https://10.96.0.1:443"));
        c.enabled = Enabled::False;
        assert_eq!(c.endpoint(env), None);
        c.enabled = Enabled::Auto;
        c.endpoint = Some("http://127.0.0.1:8001".into());
        assert_eq!(c.endpoint(|_| None).as_deref(), Some("http://127.0.0.1:8001"));
    }
}
