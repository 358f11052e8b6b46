//! A real containerd for tests, playing kubelet through CRI: its own root, state, socket,
//! CNI bridge and subnet, `restrict_oom_score_adj` (no CAP_SYS_RESOURCE here) and a pause
//! image built from `cri/pause.c` (packed by distro/image/mkimage.py, the image builder)
//! and imported without a registry. Everything is torn down on drop, containers and
//! sandboxes first.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use podnet_pipeline::testing::{Lacks, skip};
use podnet_processor_k8s_attributes::cri::{
    ContainerConfig, CreateContainerRequest, CriClient, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NAMESPACE_CONTAINER,
    NAMESPACE_NODE, NAMESPACE_POD, NamespaceOption, PodSandboxConfig, PodSandboxMetadata,
};

static NEXT_UID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub struct Containerd {
    child: Child,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    bridge: String,
    ip_forward: String,
    rt: tokio::runtime::Runtime,
    client: CriClient,
    sandboxes: Vec<String>,
    /// Each sandbox's config (CreateContainer repeats it), and the containers started.
    configs: HashMap<String, PodSandboxConfig>,
    containers: Vec<String>,
}

/// A sandbox created by [`Containerd::run_pod`].
#[derive(Clone, Debug)]
pub struct Sandbox {
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub pid: u32,
    pub ip: String,
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(())
}

impl Containerd {
    /// `None` (with the reason printed) when this machine cannot run it: not root, or no
    /// containerd/runc/CNI plugins installed.
    pub fn start(tag: &str) -> Option<Containerd> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            skip(Lacks::Root, "containerd needs root (CI runs as root)");
            return None;
        }
        for bin in ["containerd", "runc", "ctr", "gcc"] {
            if Command::new("sh").args(["-c", &format!("command -v {bin}")]).output().map(|o| !o.status.success()).unwrap_or(true) {
                skip(
                    Lacks::Tool,
                    &format!("{bin} not installed (scripts/test.sh installs containerd, runc and containernetworking-plugins)"),
                );
                return None;
            }
        }
        if !Path::new("/usr/lib/cni/bridge").exists() {
            skip(Lacks::Tool, "CNI plugins not installed (containernetworking-plugins)");
            return None;
        }
        Some(Self::start_checked(tag).unwrap_or_else(|e| panic!("containerd bring-up: {e}")))
    }

    fn start_checked(tag: &str) -> Result<Containerd, String> {
        let dir = tempfile::Builder::new().prefix("podnet-ctrd-").tempdir_in("/tmp").map_err(|e| e.to_string())?;
        let d = dir.path();
        let id = std::process::id() % 200;
        let bridge = format!("pnc{tag}{id}");
        let subnet = format!("10.{}.0.0/16", 100 + id % 100);
        std::fs::create_dir_all(d.join("net.d")).map_err(|e| e.to_string())?;
        std::fs::write(
            d.join("net.d/10-podnet.conflist"),
            format!(
                r#"{{"cniVersion":"1.0.0","name":"podnet-test","plugins":[{{"type":"bridge","bridge":"{bridge}","isGateway":true,"ipMasq":false,"hairpinMode":true,"ipam":{{"type":"host-local","ranges":[[{{"subnet":"{subnet}"}}]],"dataDir":"{}/cni-ipam"}}}}]}}"#,
                d.display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let socket = d.join("containerd.sock");
        std::fs::write(
            d.join("config.toml"),
            format!(
                r#"version = 2
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/podnet/pause:1"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/net.d"
"#,
                d = d.display(),
                sock = socket.display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("cri");
        run(Command::new("gcc").args(["-static", "-Os", "-s", "-o"]).arg(d.join("pause")).arg(here.join("pause.c")))?;
        let pause = format!("{}:/pause:755", d.join("pause").display());
        run(Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../distro/image/mkimage.py"))
            .args(["--name", "localhost/podnet/pause:1", "--entrypoint", "/pause", "--add", &pause, "--out"])
            .arg(d.join("pause-oci"))
            .arg("--tar")
            .arg(d.join("pause.tar")))?;
        let ip_forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_else(|_| "0\n".into());
        let log = std::fs::File::create(d.join("containerd.log")).map_err(|e| e.to_string())?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("containerd: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let ctr = |args: &[&str]| Command::new("ctr").arg("--address").arg(&socket).args(args).output();
        while !ctr(&["version"]).is_ok_and(|o| o.status.success()) {
            if Instant::now() > deadline {
                return Err(format!(
                    "containerd did not answer: {}",
                    std::fs::read_to_string(d.join("containerd.log")).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        run(Command::new("ctr")
            .arg("--address")
            .arg(&socket)
            .args(["-n", "k8s.io", "images", "import", "--snapshotter", "overlayfs"])
            .arg(d.join("pause.tar")))?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        let endpoint = format!("unix://{}", socket.display());
        let client = rt.block_on(async { CriClient::new(&endpoint, Duration::from_secs(20)) }).map_err(|e| e.to_string())?;
        Ok(Containerd {
            child,
            dir,
            socket,
            bridge,
            ip_forward,
            rt,
            client,
            sandboxes: Vec::new(),
            configs: HashMap::new(),
            containers: Vec::new(),
        })
    }

    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Creates a pod sandbox as kubelet would: metadata, `io.kubernetes.pod.*` labels plus
    /// `labels`; `host_network` puts it in the node's namespace.
    pub fn run_pod(&mut self, namespace: &str, name: &str, labels: &[(&str, &str)], host_network: bool) -> Sandbox {
        let network = if host_network { NAMESPACE_NODE } else { NAMESPACE_POD };
        self.run_pod_in(namespace, name, labels, NamespaceOption { network, pid: NAMESPACE_CONTAINER, ipc: NAMESPACE_POD })
    }

    /// A sandbox in the node's network and PID namespaces, as a DaemonSet's pod with
    /// `hostNetwork` and `hostPID`; its containers' logs go under this containerd's directory.
    pub fn run_node_pod(&mut self, namespace: &str, name: &str) -> Sandbox {
        self.run_pod_in(namespace, name, &[], NamespaceOption { network: NAMESPACE_NODE, pid: NAMESPACE_NODE, ipc: NAMESPACE_POD })
    }

    /// Starts a container of `config` in `sandbox` (created here); it is removed on drop.
    pub fn run_container(&mut self, sandbox: &Sandbox, config: ContainerConfig) -> String {
        let request = CreateContainerRequest {
            pod_sandbox_id: sandbox.id.clone(),
            config: Some(config),
            sandbox_config: self.configs.get(&sandbox.id).cloned(),
        };
        let client = &mut self.client;
        let id = self.rt.block_on(client.run_container(request)).unwrap_or_else(|e| panic!("CreateContainer/StartContainer: {e}"));
        self.containers.push(id.clone());
        id
    }

    /// Where a sandbox's container logs are (`ContainerConfig::log_path` is relative to it).
    pub fn log_directory(&self, sandbox: &Sandbox) -> PathBuf {
        self.pod_log_directory(&sandbox.name)
    }

    fn pod_log_directory(&self, pod: &str) -> PathBuf {
        self.dir.path().join("pod-logs").join(pod)
    }

    fn run_pod_in(&mut self, namespace: &str, name: &str, labels: &[(&str, &str)], namespaces: NamespaceOption) -> Sandbox {
        let host_network = namespaces.network == NAMESPACE_NODE;
        // A UID shaped like the API server's, which cgroup paths carry.
        let n = NEXT_UID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let uid = format!("{:08x}-7a51-4f0f-9d0e-{:012x}", std::process::id(), n);
        let mut all: HashMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        all.insert("io.kubernetes.pod.name".into(), name.into());
        all.insert("io.kubernetes.pod.namespace".into(), namespace.into());
        all.insert("io.kubernetes.pod.uid".into(), uid.clone());
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata { name: name.into(), uid: uid.clone(), namespace: namespace.into(), attempt: 0 }),
            hostname: if host_network { String::new() } else { name.into() },
            log_directory: self.pod_log_directory(name).display().to_string(),
            labels: all,
            annotations: [("podnet.test/annotation".to_string(), format!("{name}-note"))].into(),
            linux: Some(LinuxPodSandboxConfig {
                // Where kubelet (cgroupfs driver) puts a BestEffort pod.
                cgroup_parent: format!("/kubepods/besteffort/pod{uid}"),
                security_context: Some(LinuxSandboxSecurityContext { namespace_options: Some(namespaces) }),
            }),
        };
        let client = &mut self.client;
        let sandbox_config = config.clone();
        let (id, status) = self.rt.block_on(async {
            let id = client.run_pod_sandbox(config).await.unwrap_or_else(|e| panic!("RunPodSandbox {namespace}/{name}: {e}"));
            let status = client.pod_sandbox_status(&id).await.unwrap_or_else(|e| panic!("PodSandboxStatus: {e}"));
            (id, status)
        });
        self.sandboxes.push(id.clone());
        self.configs.insert(id.clone(), sandbox_config);
        let pid = podnet_processor_k8s_attributes::cri::sandbox_pid(&status).expect("sandbox pid");
        let ip = status.status.and_then(|s| s.network).map(|n| n.ip).unwrap_or_default();
        Sandbox { id, name: name.into(), namespace: namespace.into(), pid, ip }
    }

    pub fn remove_pod(&mut self, id: &str) {
        let client = &mut self.client;
        self.rt.block_on(async {
            client.stop_pod_sandbox(id).await.unwrap_or_else(|e| panic!("StopPodSandbox: {e}"));
            client.remove_pod_sandbox(id).await.unwrap_or_else(|e| panic!("RemovePodSandbox: {e}"));
        });
        self.sandboxes.retain(|s| s != id);
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let ids = std::mem::take(&mut self.sandboxes);
        let containers = std::mem::take(&mut self.containers);
        let client = &mut self.client;
        self.rt.block_on(async {
            for id in &containers {
                let _ = client.remove_container(id).await;
            }
            for id in &ids {
                let _ = client.stop_pod_sandbox(id).await;
                let _ = client.remove_pod_sandbox(id).await;
            }
        });
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Mounts left under our directory (a crashed test), deepest first.
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let prefix = self.dir.path().display().to_string();
        let mut ours: Vec<&str> = mounts.lines().filter_map(|l| l.split_whitespace().nth(1)).filter(|m| m.starts_with(&prefix)).collect();
        ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in ours {
            let _ = Command::new("umount").args(["-l", m]).output();
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).output();
        // The pods' cgroups (kubelet-style parents), deepest first; only empty ones go.
        let out = Command::new("sh")
            .args(["-c", "find /sys/fs/cgroup -depth -type d \\( -path '*kubepods*' -o -path '*/k8s.io*' \\) 2>/dev/null"])
            .output();
        for dir in out.map(|o| String::from_utf8_lossy(&o.stdout).to_string()).unwrap_or_default().lines() {
            let _ = std::fs::remove_dir(dir);
        }
        let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", &self.ip_forward);
    }
}

/// Runs `f` on a thread inside the network namespace of process `pid`.
pub fn in_pod<T: Send>(pid: u32, f: impl FnOnce() -> T + Send) -> T {
    crate::pods::in_netns_path(&format!("/proc/{pid}/ns/net"), f)
}
