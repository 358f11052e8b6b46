//! The part of the CRI v1 API (`runtime.v1.RuntimeService`) podnet speaks, over the
//! runtime's Unix socket: listing pod sandboxes and their verbose status (the sandbox's
//! pid, hence its network namespace). The messages are declared here with their proto
//! field numbers instead of generated, so building podnet needs no protoc; tests use the
//! sandbox lifecycle calls to play kubelet against a real containerd.
//!
//! Weighed against the generated `k8s-cri` crate (0.11, on tonic/prost 0.14 like us): it
//! runs `tonic-prost-build` in its build script, so every build would need `protoc`
//! installed, and it compiles all of CRI v1 and v1alpha2 for the four calls used here.
//! The hand-declared messages stay, pinned by the wire-format test against the proto's
//! field numbers and by the containerd tests.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxMetadata {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub uid: String,
    #[prost(string, tag = "3")]
    pub namespace: String,
    #[prost(uint32, tag = "4")]
    pub attempt: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxFilter {
    #[prost(string, tag = "1")]
    pub id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListPodSandboxRequest {
    #[prost(message, optional, tag = "1")]
    pub filter: Option<PodSandboxFilter>,
}

/// `PodSandboxState`: 0 ready, 1 not ready.
pub const SANDBOX_READY: i32 = 0;

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandbox {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<PodSandboxMetadata>,
    #[prost(int32, tag = "3")]
    pub state: i32,
    #[prost(int64, tag = "4")]
    pub created_at: i64,
    #[prost(map = "string, string", tag = "5")]
    pub labels: HashMap<String, String>,
    #[prost(map = "string, string", tag = "6")]
    pub annotations: HashMap<String, String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListPodSandboxResponse {
    #[prost(message, repeated, tag = "1")]
    pub items: Vec<PodSandbox>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxStatusRequest {
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
    #[prost(bool, tag = "2")]
    pub verbose: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodIp {
    #[prost(string, tag = "1")]
    pub ip: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxNetworkStatus {
    #[prost(string, tag = "1")]
    pub ip: String,
    #[prost(message, repeated, tag = "2")]
    pub additional_ips: Vec<PodIp>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxStatus {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<PodSandboxMetadata>,
    #[prost(int32, tag = "3")]
    pub state: i32,
    #[prost(int64, tag = "4")]
    pub created_at: i64,
    #[prost(message, optional, tag = "5")]
    pub network: Option<PodSandboxNetworkStatus>,
    #[prost(map = "string, string", tag = "7")]
    pub labels: HashMap<String, String>,
    #[prost(map = "string, string", tag = "8")]
    pub annotations: HashMap<String, String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxStatusResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<PodSandboxStatus>,
    #[prost(map = "string, string", tag = "2")]
    pub info: HashMap<String, String>,
}

// --- sandbox lifecycle (what kubelet calls; used by tests) ------------------------------------

/// `NamespaceMode`: 0 POD, 1 CONTAINER, 2 NODE (host network).
pub const NAMESPACE_POD: i32 = 0;
pub const NAMESPACE_CONTAINER: i32 = 1;
pub const NAMESPACE_NODE: i32 = 2;

#[derive(Clone, PartialEq, prost::Message)]
pub struct NamespaceOption {
    #[prost(int32, tag = "1")]
    pub network: i32,
    #[prost(int32, tag = "2")]
    pub pid: i32,
    #[prost(int32, tag = "3")]
    pub ipc: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxSandboxSecurityContext {
    #[prost(message, optional, tag = "1")]
    pub namespace_options: Option<NamespaceOption>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxPodSandboxConfig {
    #[prost(string, tag = "1")]
    pub cgroup_parent: String,
    #[prost(message, optional, tag = "2")]
    pub security_context: Option<LinuxSandboxSecurityContext>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxConfig {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<PodSandboxMetadata>,
    #[prost(string, tag = "2")]
    pub hostname: String,
    #[prost(string, tag = "3")]
    pub log_directory: String,
    #[prost(map = "string, string", tag = "6")]
    pub labels: HashMap<String, String>,
    #[prost(map = "string, string", tag = "7")]
    pub annotations: HashMap<String, String>,
    #[prost(message, optional, tag = "8")]
    pub linux: Option<LinuxPodSandboxConfig>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RunPodSandboxRequest {
    #[prost(message, optional, tag = "1")]
    pub config: Option<PodSandboxConfig>,
    #[prost(string, tag = "2")]
    pub runtime_handler: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RunPodSandboxResponse {
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxIdRequest {
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Empty {}

// --- container lifecycle (what kubelet calls; used by tests that run podnet's image) ---------

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerMetadata {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(uint32, tag = "2")]
    pub attempt: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ImageSpec {
    #[prost(string, tag = "1")]
    pub image: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Mount {
    #[prost(string, tag = "1")]
    pub container_path: String,
    #[prost(string, tag = "2")]
    pub host_path: String,
    #[prost(bool, tag = "3")]
    pub readonly: bool,
    /// `MountPropagation`: 0 private, 1 host to container, 2 bidirectional.
    #[prost(int32, tag = "5")]
    pub propagation: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Capability {
    #[prost(string, repeated, tag = "1")]
    pub add_capabilities: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub drop_capabilities: Vec<String>,
}

/// `SecurityProfile`; `profile_type` 0 is RuntimeDefault.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SecurityProfile {
    #[prost(int32, tag = "1")]
    pub profile_type: i32,
    #[prost(string, tag = "2")]
    pub localhost_ref: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxContainerSecurityContext {
    #[prost(message, optional, tag = "1")]
    pub capabilities: Option<Capability>,
    #[prost(bool, tag = "2")]
    pub privileged: bool,
    #[prost(message, optional, tag = "3")]
    pub namespace_options: Option<NamespaceOption>,
    #[prost(bool, tag = "7")]
    pub readonly_rootfs: bool,
    #[prost(bool, tag = "11")]
    pub no_new_privs: bool,
    #[prost(message, optional, tag = "15")]
    pub seccomp: Option<SecurityProfile>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxContainerConfig {
    #[prost(message, optional, tag = "2")]
    pub security_context: Option<LinuxContainerSecurityContext>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerConfig {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<ContainerMetadata>,
    #[prost(message, optional, tag = "2")]
    pub image: Option<ImageSpec>,
    #[prost(string, repeated, tag = "3")]
    pub command: Vec<String>,
    #[prost(string, repeated, tag = "4")]
    pub args: Vec<String>,
    #[prost(message, repeated, tag = "6")]
    pub envs: Vec<KeyValue>,
    #[prost(message, repeated, tag = "7")]
    pub mounts: Vec<Mount>,
    #[prost(map = "string, string", tag = "9")]
    pub labels: HashMap<String, String>,
    /// Relative to the sandbox's `log_directory`.
    #[prost(string, tag = "11")]
    pub log_path: String,
    #[prost(message, optional, tag = "15")]
    pub linux: Option<LinuxContainerConfig>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateContainerRequest {
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
    #[prost(message, optional, tag = "2")]
    pub config: Option<ContainerConfig>,
    #[prost(message, optional, tag = "3")]
    pub sandbox_config: Option<PodSandboxConfig>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerIdRequest {
    #[prost(string, tag = "1")]
    pub container_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StopContainerRequest {
    #[prost(string, tag = "1")]
    pub container_id: String,
    #[prost(int64, tag = "2")]
    pub timeout: i64,
}

/// `ContainerEventResponse`: only that something changed matters to podnet.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerEvent {
    #[prost(string, tag = "1")]
    pub container_id: String,
    #[prost(int32, tag = "2")]
    pub container_event_type: i32,
}

// --- client -----------------------------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("CRI endpoint {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    #[error("CRI {endpoint} {method}: {status}")]
    Call { endpoint: String, method: &'static str, status: String },
    #[error("CRI {endpoint} {method}: no answer within {timeout:?}")]
    Timeout { endpoint: String, method: &'static str, timeout: Duration },
}

/// Where the runtimes put their CRI socket, in the order `endpoint: auto` tries them.
pub const DEFAULT_ENDPOINTS: &[&str] = &[
    "unix:///run/containerd/containerd.sock",
    "unix:///run/crio/crio.sock",
    "unix:///run/cri-dockerd.sock",
    "unix:///run/k3s/containerd/containerd.sock",
];

/// `auto`: the first default socket that exists under `root` (`/` on a host, `/host` when
/// the host's /run is mounted there), else containerd's.
pub fn resolve_endpoint(endpoint: &str, root: &std::path::Path) -> String {
    if endpoint != "auto" {
        return endpoint.to_string();
    }
    DEFAULT_ENDPOINTS.iter().find(|e| root.join(e.trim_start_matches("unix:///")).exists()).unwrap_or(&DEFAULT_ENDPOINTS[0]).to_string()
}

/// The socket path of `unix:///run/containerd/containerd.sock` (or a bare path).
pub fn socket_path(endpoint: &str) -> Result<PathBuf, String> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    if !path.starts_with('/') {
        return Err(format!("\"{endpoint}\" is not a unix socket endpoint (unix:///path/to/runtime.sock)"));
    }
    Ok(PathBuf::from(path))
}

#[derive(Clone)]
pub struct CriClient {
    grpc: tonic::client::Grpc<Channel>,
    timeout: Duration,
    endpoint: String,
}

impl CriClient {
    /// Connects lazily: a runtime that starts after podnet is picked up on the next call.
    pub fn new(endpoint: &str, timeout: Duration) -> Result<CriClient, CriError> {
        let path = socket_path(endpoint).map_err(|reason| CriError::Connect { endpoint: endpoint.into(), reason })?;
        // The URI is a placeholder: the connector dials the socket.
        let channel = Endpoint::from_static("http://cri.sock").connect_timeout(timeout).connect_with_connector_lazy(tower::service_fn(
            move |_: Uri| {
                let path = path.clone();
                async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
            },
        ));
        Ok(CriClient { grpc: tonic::client::Grpc::new(channel), timeout, endpoint: endpoint.to_string() })
    }

    async fn call<Req, Resp>(&mut self, method: &'static str, req: Req) -> Result<Resp, CriError>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let path = http::uri::PathAndQuery::from_static(method);
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        let endpoint = self.endpoint.clone();
        let fut = async {
            self.grpc.ready().await.map_err(|e| CriError::Call { endpoint: endpoint.clone(), method, status: e.to_string() })?;
            self.grpc.unary(tonic::Request::new(req), path, codec).await.map_err(|s| CriError::Call {
                endpoint: endpoint.clone(),
                method,
                status: format!("{}: {}", s.code(), s.message()),
            })
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r.map(tonic::Response::into_inner),
            Err(_) => Err(CriError::Timeout { endpoint, method, timeout: self.timeout }),
        }
    }

    /// Calls `on_event` for each event of the runtime's event stream (CRI
    /// `GetContainerEvents`: containerd 1.7+, CRI-O) until it ends. `Ok(false)`: the runtime
    /// has no event stream.
    pub async fn follow_events(&mut self, mut on_event: impl FnMut()) -> Result<bool, CriError> {
        const METHOD: &str = "/runtime.v1.RuntimeService/GetContainerEvents";
        let endpoint = self.endpoint.clone();
        let call = |status: tonic::Status| CriError::Call {
            endpoint: endpoint.clone(),
            method: METHOD,
            status: format!("{}: {}", status.code(), status.message()),
        };
        tokio::time::timeout(self.timeout, self.grpc.ready())
            .await
            .map_err(|_| CriError::Timeout { endpoint: self.endpoint.clone(), method: METHOD, timeout: self.timeout })?
            .map_err(|e| CriError::Call { endpoint: self.endpoint.clone(), method: METHOD, status: e.to_string() })?;
        let codec = tonic_prost::ProstCodec::<Empty, ContainerEvent>::default();
        let response = self.grpc.server_streaming(tonic::Request::new(Empty {}), http::uri::PathAndQuery::from_static(METHOD), codec).await;
        let mut stream = match response {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == tonic::Code::Unimplemented => return Ok(false),
            Err(s) => return Err(call(s)),
        };
        loop {
            match stream.message().await {
                Ok(Some(_)) => on_event(),
                Ok(None) => return Ok(true),
                Err(s) if s.code() == tonic::Code::Unimplemented => return Ok(false),
                Err(s) => return Err(call(s)),
            }
        }
    }

    pub async fn list_pod_sandboxes(&mut self) -> Result<Vec<PodSandbox>, CriError> {
        let r: ListPodSandboxResponse = self.call("/runtime.v1.RuntimeService/ListPodSandbox", ListPodSandboxRequest::default()).await?;
        Ok(r.items)
    }

    pub async fn pod_sandbox_status(&mut self, id: &str) -> Result<PodSandboxStatusResponse, CriError> {
        let req = PodSandboxStatusRequest { pod_sandbox_id: id.to_string(), verbose: true };
        self.call("/runtime.v1.RuntimeService/PodSandboxStatus", req).await
    }

    pub async fn run_pod_sandbox(&mut self, config: PodSandboxConfig) -> Result<String, CriError> {
        let r: RunPodSandboxResponse = self
            .call("/runtime.v1.RuntimeService/RunPodSandbox", RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() })
            .await?;
        Ok(r.pod_sandbox_id)
    }

    /// Creates and starts a container in a sandbox; returns its id.
    pub async fn run_container(&mut self, request: CreateContainerRequest) -> Result<String, CriError> {
        let created: ContainerIdRequest = self.call("/runtime.v1.RuntimeService/CreateContainer", request).await?;
        let _: Empty = self.call("/runtime.v1.RuntimeService/StartContainer", created.clone()).await?;
        Ok(created.container_id)
    }

    /// Stops (at once) and removes a container.
    pub async fn remove_container(&mut self, id: &str) -> Result<(), CriError> {
        let _: Empty =
            self.call("/runtime.v1.RuntimeService/StopContainer", StopContainerRequest { container_id: id.into(), timeout: 0 }).await?;
        let _: Empty = self.call("/runtime.v1.RuntimeService/RemoveContainer", ContainerIdRequest { container_id: id.into() }).await?;
        Ok(())
    }

    pub async fn stop_pod_sandbox(&mut self, id: &str) -> Result<(), CriError> {
        let _: Empty = self.call("/runtime.v1.RuntimeService/StopPodSandbox", PodSandboxIdRequest { pod_sandbox_id: id.into() }).await?;
        Ok(())
    }

    pub async fn remove_pod_sandbox(&mut self, id: &str) -> Result<(), CriError> {
        let _: Empty = self.call("/runtime.v1.RuntimeService/RemovePodSandbox", PodSandboxIdRequest { pod_sandbox_id: id.into() }).await?;
        Ok(())
    }
}

/// The sandbox's pid from the verbose status (`info["info"]` is JSON with a `pid`).
pub fn sandbox_pid(resp: &PodSandboxStatusResponse) -> Option<u32> {
    let info: serde_json::Value = serde_json::from_str(resp.info.get("info")?).ok()?;
    info.get("pid")?.as_u64().and_then(|p| u32::try_from(p).ok()).filter(|p| *p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn endpoints() {
        assert_eq!(socket_path("unix:///run/containerd/containerd.sock").unwrap(), PathBuf::from("/run/containerd/containerd.sock"));
        assert_eq!(socket_path("/run/crio/crio.sock").unwrap(), PathBuf::from("/run/crio/crio.sock"));
        assert!(socket_path("tcp://1.2.3.4:10010").unwrap_err().contains("not a unix socket"));
    }

    #[test]
    fn auto_finds_the_runtime_socket() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(resolve_endpoint("auto", dir.path()), "unix:///run/containerd/containerd.sock", "nothing there: containerd's");
        std::fs::create_dir_all(dir.path().join("run/crio")).unwrap();
        std::fs::write(dir.path().join("run/crio/crio.sock"), "").unwrap();
        assert_eq!(resolve_endpoint("auto", dir.path()), "unix:///run/crio/crio.sock");
        assert_eq!(resolve_endpoint("unix:///x.sock", dir.path()), "unix:///x.sock");
    }

    #[test]
    fn verbose_info_pid() {
        let mut r = PodSandboxStatusResponse::default();
        assert_eq!(sandbox_pid(&r), None);
        r.info.insert("info".into(), r#"{"pid":22722,"processStatus":"running"}"#.into());
        assert_eq!(sandbox_pid(&r), Some(22722));
        r.info.insert("info".into(), r#"{"pid":0}"#.into());
        assert_eq!(sandbox_pid(&r), None, "a stopped sandbox has no process");
        r.info.insert("info".into(), "not json".into());
        assert_eq!(sandbox_pid(&r), None);
    }

    #[test]
    fn wire_format_matches_the_proto_field_numbers() {
        // metadata (2) { name (1) = "a" }, labels (5) { "k": "v" }
        let s = PodSandbox {
            metadata: Some(PodSandboxMetadata { name: "a".into(), ..Default::default() }),
            labels: [("k".to_string(), "v".to_string())].into(),
            ..Default::default()
        };
        assert_eq!(s.encode_to_vec(), vec![0x12, 0x03, 0x0a, 0x01, b'a', 0x2a, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v']);
    }
}
