//! Pods of this node from the Kubernetes API: a list, then a watch from its
//! resourceVersion (`fieldSelector=spec.nodeName=<node>`, so no cluster-wide traffic),
//! resumed from the last version seen when the connection drops, and a fresh list when
//! the API says that version is gone (410). Needs only get/list/watch on pods.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
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
pub fn workload(owners: &[Value], labels: &HashMap<String, String>) -> Option<(&'static str, String)> {
    let owner = owners.iter().find(|o| o["controller"].as_bool() == Some(true)).or_else(|| owners.first())?;
    let name = owner["name"].as_str()?.to_string();
    Some(match owner["kind"].as_str()? {
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

fn string_map(v: &Value) -> HashMap<String, String> {
    v.as_object().map(|o| o.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect()).unwrap_or_default()
}

/// A Pod object (JSON) to what podnet keeps of it.
pub fn parse_pod(v: &Value) -> Option<ApiPod> {
    let meta = &v["metadata"];
    let labels = string_map(&meta["labels"]);
    let owners = meta["ownerReferences"].as_array().cloned().unwrap_or_default();
    Some(ApiPod {
        pod: Pod {
            name: meta["name"].as_str()?.to_string(),
            namespace: meta["namespace"].as_str().unwrap_or_default().to_string(),
            uid: meta["uid"].as_str()?.to_string(),
            ip: v["status"]["podIP"].as_str().unwrap_or_default().to_string(),
            workload: workload(&owners, &labels),
            labels: labels.into_iter().collect(),
            annotations: string_map(&meta["annotations"]).into_iter().collect(),
        },
        host_network: v["spec"]["hostNetwork"].as_bool().unwrap_or(false),
        resource_version: meta["resourceVersion"].as_str().unwrap_or_default().to_string(),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("{0}")]
    Setup(String),
    #[error("{url}: {reason}")]
    Request { url: String, reason: String },
    /// The resourceVersion is too old: list again.
    #[error("resource version gone (410): relisting")]
    Gone,
    /// A watch event over the size limit: it would come again on resume, so list again.
    #[error("{url}: a watch event over {limit} bytes: refused, relisting")]
    EventTooLarge { url: String, limit: usize },
}

/// Pods by uid, as the API last told.
pub type PodStore = Arc<Mutex<HashMap<String, ApiPod>>>;

pub struct KubeClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    node: String,
}

impl KubeClient {
    pub fn new(endpoint: &str, config: &KubeApiConfig, node: &str) -> Result<KubeClient, KubeError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // A watch is a long response; the server ends it (timeoutSeconds) well before this.
            .read_timeout(Duration::from_secs(330))
            .user_agent(concat!("podnet/", env!("CARGO_PKG_VERSION")))
            .danger_accept_invalid_certs(config.insecure_skip_verify);
        if endpoint.starts_with("https://") && config.ca_file.exists() {
            let pem = std::fs::read(&config.ca_file)
                .map_err(|e| KubeError::Setup(format!("kube_api::ca_file {}: {e}", config.ca_file.display())))?;
            let ca = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| KubeError::Setup(format!("kube_api::ca_file {}: {e}", config.ca_file.display())))?;
            builder = builder.tls_certs_only([ca]);
        }
        let http = builder.build().map_err(|e| KubeError::Setup(format!("cannot build the HTTP client: {e}")))?;
        // The token is re-read on each request: kubelet rotates projected tokens.
        let token = config.token_file.exists().then(|| config.token_file.display().to_string());
        Ok(KubeClient { http, base: endpoint.trim_end_matches('/').to_string(), token, node: node.to_string() })
    }

    fn url(&self, extra: &str) -> String {
        format!("{}/api/v1/pods?fieldSelector=spec.nodeName%3D{}{extra}", self.base, self.node)
    }

    async fn get(&self, url: &str) -> Result<reqwest::Response, KubeError> {
        let mut req = self.http.get(url);
        if let Some(path) = &self.token
            && let Ok(t) = std::fs::read_to_string(path)
        {
            req = req.bearer_auth(t.trim());
        }
        let resp = req.send().await.map_err(|e| KubeError::Request { url: url.into(), reason: e.to_string() })?;
        match resp.status().as_u16() {
            200 => Ok(resp),
            410 => Err(KubeError::Gone),
            code => {
                let body = read_capped(resp, ERROR_BODY_CAP).await.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
                let hint =
                    if code == 401 || code == 403 { " (podnet needs get, list and watch on pods: see the DaemonSet's RBAC)" } else { "" };
                Err(KubeError::Request {
                    url: url.into(),
                    reason: format!("HTTP {code}{hint}: {}", body.chars().take(200).collect::<String>()),
                })
            }
        }
    }

    /// The node's pods and the list's resourceVersion.
    pub async fn list(&self) -> Result<(HashMap<String, ApiPod>, String), KubeError> {
        let url = self.url("");
        let resp = self.get(&url).await?;
        let bytes = read_capped(resp, MAX_POD_LIST).await.map_err(|e| KubeError::Request { url: url.clone(), reason: e.to_string() })?;
        if bytes.len() >= MAX_POD_LIST {
            return Err(KubeError::Request { url: url.clone(), reason: format!("the pod list is over {MAX_POD_LIST} bytes: refused") });
        }
        let body: Value =
            serde_json::from_slice(&bytes).map_err(|e| KubeError::Request { url: url.clone(), reason: format!("not a PodList: {e}") })?;
        let rv = body["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string();
        let pods = body["items"].as_array().into_iter().flatten().filter_map(parse_pod).map(|p| (p.pod.uid.clone(), p)).collect();
        Ok((pods, rv))
    }

    /// Applies watch events to `store` until the server ends the watch; returns the last
    /// resourceVersion seen.
    pub async fn watch(&self, mut rv: String, store: &PodStore, shutdown: &CancellationToken) -> Result<String, KubeError> {
        let url = self.url(&format!("&watch=1&allowWatchBookmarks=true&timeoutSeconds=300&resourceVersion={rv}"));
        let mut resp = self.get(&url).await?;
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let chunk = tokio::select! {
                _ = shutdown.cancelled() => return Ok(rv),
                c = resp.chunk() => c.map_err(|e| KubeError::Request { url: url.clone(), reason: format!("watch stream: {e}") })?,
            };
            let Some(chunk) = chunk else { return Ok(rv) };
            buf.extend_from_slice(&chunk);
            if buf.len() > MAX_WATCH_LINE && !buf.contains(&b'\n') {
                // One event this large is no pod: end the watch, the caller relists.
                return Err(KubeError::EventTooLarge { url: url.clone(), limit: MAX_WATCH_LINE });
            }
            while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let Ok(event) = serde_json::from_slice::<Value>(&line) else { continue };
                let object = &event["object"];
                match event["type"].as_str() {
                    Some("ERROR") => {
                        if object["code"].as_u64() == Some(410) {
                            return Err(KubeError::Gone);
                        }
                        return Err(KubeError::Request { url: url.clone(), reason: format!("watch error: {}", object["message"]) });
                    }
                    Some("BOOKMARK") => {}
                    Some(kind @ ("ADDED" | "MODIFIED" | "DELETED")) => {
                        if let Some(pod) = parse_pod(object) {
                            let mut s = store.lock().unwrap_or_else(|e| e.into_inner());
                            if kind == "DELETED" {
                                s.remove(&pod.pod.uid);
                            } else {
                                s.insert(pod.pod.uid.clone(), pod);
                            }
                        }
                    }
                    _ => {}
                }
                if let Some(v) = object["metadata"]["resourceVersion"].as_str() {
                    rv = v.to_string();
                }
            }
        }
    }
}

/// Enough of an API error to say why.
const ERROR_BODY_CAP: usize = 64 * 1024;
/// This node's pods: a few hundred at most, each a few KiB to tens of KiB.
const MAX_POD_LIST: usize = 64 << 20;
/// One watch event (one pod).
const MAX_WATCH_LINE: usize = 4 << 20;

/// Up to `cap` bytes of a response body; the rest is left unread.
async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while out.len() < cap {
        match resp.chunk().await? {
            Some(chunk) => out.extend_from_slice(&chunk[..chunk.len().min(cap - out.len())]),
            None => break,
        }
    }
    Ok(out)
}

/// Keeps `store` equal to the node's pods until shutdown: list, watch, resume, relist on
/// 410, back off on errors (1 s doubling to 30 s).
pub async fn follow(client: KubeClient, store: PodStore, shutdown: CancellationToken, on_error: impl Fn(&KubeError)) {
    let mut backoff = Duration::from_secs(1);
    let mut rv: Option<String> = None;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let result = match rv.clone() {
            None => client.list().await.map(|(pods, v)| {
                *store.lock().unwrap_or_else(|e| e.into_inner()) = pods;
                v
            }),
            Some(v) => client.watch(v, &store, &shutdown).await,
        };
        match result {
            Ok(v) => {
                rv = Some(v);
                backoff = Duration::from_secs(1);
                continue;
            }
            Err(KubeError::Gone) => {
                rv = None;
                continue;
            }
            Err(e @ KubeError::EventTooLarge { .. }) => {
                on_error(&e);
                rv = None;
            }
            Err(e) => on_error(&e),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_from_owner_references() {
        let labels: HashMap<String, String> = [("pod-template-hash".to_string(), "7d4b9c8f5".to_string())].into();
        let rs = serde_json::json!([{"kind": "ReplicaSet", "name": "web-7d4b9c8f5", "controller": true}]);
        assert_eq!(workload(rs.as_array().unwrap(), &labels), Some(("k8s.deployment.name", "web".into())));
        let bare_rs = serde_json::json!([{"kind": "ReplicaSet", "name": "web-abc", "controller": true}]);
        assert_eq!(workload(bare_rs.as_array().unwrap(), &HashMap::new()), Some(("k8s.replicaset.name", "web-abc".into())));
        let cron = serde_json::json!([{"kind": "Job", "name": "backup-29123456", "controller": true}]);
        assert_eq!(workload(cron.as_array().unwrap(), &HashMap::new()), Some(("k8s.cronjob.name", "backup".into())));
        let job = serde_json::json!([{"kind": "Job", "name": "migrate", "controller": true}]);
        assert_eq!(workload(job.as_array().unwrap(), &HashMap::new()), Some(("k8s.job.name", "migrate".into())));
        let sts = serde_json::json!([{"kind": "StatefulSet", "name": "db", "controller": true}]);
        assert_eq!(workload(sts.as_array().unwrap(), &HashMap::new()), Some(("k8s.statefulset.name", "db".into())));
        let ds = serde_json::json!([{"kind": "DaemonSet", "name": "agent", "controller": true}]);
        assert_eq!(workload(ds.as_array().unwrap(), &HashMap::new()), Some(("k8s.daemonset.name", "agent".into())));
        assert_eq!(workload(&[], &HashMap::new()), None);
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
