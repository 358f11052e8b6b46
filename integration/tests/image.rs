//! The container image as the DaemonSet runs it: built by `distro/image/build.sh` with no
//! container engine, the same digest on every build, imported into a real containerd and run
//! with the DaemonSet's settings (host network and PID, the host's /proc at /host/proc, the
//! runtime's socket, the events directory, the config directory, its capabilities, the
//! runtime's default seccomp profile, a read-only root filesystem) and the shipped config,
//! where every probe must run, the agent must hold exactly the capabilities it keeps, and
//! the test pods' counters and events must carry their pod names.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use podnet_integration::containerd::{Containerd, in_pod};
use podnet_integration::{free_port, http_get, json_lines, podnet_binary};
use podnet_processor_k8s_attributes::cri::{
    Capability, ContainerConfig, ContainerMetadata, ImageSpec, KeyValue, LinuxContainerConfig, LinuxContainerSecurityContext, Mount,
    NAMESPACE_NODE, NAMESPACE_POD, NamespaceOption, SecurityProfile,
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds the image from the test's podnet binary into `out`; returns the manifest digest.
fn build(out: &Path) -> String {
    let run = Command::new(repo().join("distro/image/build.sh"))
        .arg(out)
        .env("PODNET_BINARY", podnet_binary())
        .env("PODNET_IMAGE", "localhost/podnet:test")
        .output()
        .expect("build.sh");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "build.sh failed: {stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    stdout.lines().find_map(|l| l.strip_prefix("localhost/podnet:test ")?.split(' ').next().map(str::to_string)).expect("digest line")
}

/// `SecurityProfile.profile_type` RuntimeDefault: `seccompProfile: { type: RuntimeDefault }`.
const RUNTIME_DEFAULT: i32 = 0;

/// The capabilities the DaemonSet adds after dropping ALL (distro/kubernetes/daemonset.yaml).
const DAEMONSET_CAPABILITIES: [&str; 6] = ["SYS_ADMIN", "SYS_PTRACE", "NET_ADMIN", "BPF", "PERFMON", "DAC_READ_SEARCH"];

/// A process of user nobody in a pod's network namespace.
struct Nobody(std::process::Child);

impl Nobody {
    fn start(pod_pid: u32) -> Nobody {
        let child = Command::new("nsenter")
            .arg(format!("--net=/proc/{pod_pid}/ns/net"))
            .args(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sleep", "120"])
            .spawn()
            .expect("nsenter");
        Nobody(child)
    }
}

impl Drop for Nobody {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The container's podnet, found by its command line.
fn agent_pid() -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == b"/podnet\0run\0-c\0/etc/podnet/config.yaml\0"))
}

fn wait(what: &str, secs: u64, log: &Path, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}; the container's log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_image_runs_as_the_daemonset_runs_it() {
    let Some(mut ctrd) = Containerd::start("i") else { return };
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    let digest = build(&a);
    assert_eq!(build(&b), digest, "the same binary must give the same image");
    let tar = std::fs::read_dir(&a).unwrap().filter_map(|e| e.ok()).map(|e| e.path()).find(|p| p.extension().is_some_and(|x| x == "tar"));
    let tar = tar.expect("the image tar");
    let import =
        Command::new("ctr").arg("--address").arg(&ctrd.socket).args(["-n", "k8s.io", "images", "import"]).arg(&tar).output().unwrap();
    assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));

    let web = ctrd.run_pod("shop", "web-0", &[("app", "web")], false);
    let db = ctrd.run_pod("shop", "db-0", &[("app", "db")], false);

    // The DaemonSet's mounts: its ConfigMap (configs/kubeskoop.yaml), the host's /proc and
    // netns names, the events directory, the runtime's socket.
    let config_dir = work.path().join("config");
    let events_dir = work.path().join("events");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::create_dir_all(&events_dir).unwrap();
    std::fs::copy(repo().join("configs/kubeskoop.yaml"), config_dir.join("config.yaml")).unwrap();
    std::fs::create_dir_all("/run/netns").unwrap();
    let (port, health) = (free_port(), free_port());
    // The DaemonSet's pod as kubelet asks containerd for it: a sandbox with hostNetwork and
    // hostPID, then the container with the manifest's mounts, env and securityContext.
    let node_pod = ctrd.run_node_pod("podnet", "podnet-x7k2p");
    let env = [
        ("PODNET_NODE_NAME", "image-node".to_string()),
        ("PODNET_LISTEN", format!("127.0.0.1:{port}")),
        ("PODNET_HEALTH_LISTEN", format!("127.0.0.1:{health}")),
        ("PODNET_PROC_ROOT", "/host/proc".into()),
        ("PODNET_NETNS_NAMES", "/host/run/netns".into()),
        ("PODNET_COLLECTION_INTERVAL", "1s".into()),
    ];
    let mounts = [
        (config_dir.as_path(), "/etc/podnet", true),
        (Path::new("/proc"), "/host/proc", true),
        (Path::new("/run/netns"), "/host/run/netns", true),
        (events_dir.as_path(), "/var/log/podnet", false),
        (ctrd.socket.as_path(), "/run/containerd/containerd.sock", false),
    ];
    let config = ContainerConfig {
        metadata: Some(ContainerMetadata { name: "podnet".into(), attempt: 0 }),
        image: Some(ImageSpec { image: "localhost/podnet:test".into() }),
        args: ["run", "-c", "/etc/podnet/config.yaml"].map(String::from).to_vec(),
        envs: env.iter().map(|(k, v)| KeyValue { key: k.to_string(), value: v.clone() }).collect(),
        mounts: mounts
            .iter()
            .map(|(host, container, readonly)| Mount {
                container_path: container.to_string(),
                host_path: host.display().to_string(),
                readonly: *readonly,
                // The netns names: mountPropagation HostToContainer, as in the manifest.
                propagation: i32::from(*container == "/host/run/netns"),
            })
            .collect(),
        log_path: "podnet.log".into(),
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                capabilities: Some(Capability {
                    add_capabilities: DAEMONSET_CAPABILITIES.map(String::from).to_vec(),
                    drop_capabilities: vec!["ALL".into()],
                }),
                namespace_options: Some(NamespaceOption { network: NAMESPACE_NODE, pid: NAMESPACE_NODE, ipc: NAMESPACE_POD }),
                readonly_rootfs: true,
                no_new_privs: true,
                seccomp: Some(SecurityProfile { profile_type: RUNTIME_DEFAULT, localhost_ref: String::new() }),
                privileged: false,
            }),
        }),
        ..Default::default()
    };
    ctrd.run_container(&node_pod, config);
    let log = ctrd.log_directory(&node_pod).join("podnet.log");
    let metrics = || http_get(port, "/metrics").map(|(_, body)| body).unwrap_or_default();
    wait("the pods' counters under their names", 60, &log, || {
        let m = metrics();
        let series = |pod: &str| {
            m.lines().any(|l| {
                l.starts_with("kubeskoop_netdev_rxbytes{")
                    && [format!("k8s_pod=\"{pod}\""), "k8s_namespace=\"shop\"".into(), "k8s_node=\"image-node\"".into()]
                        .iter()
                        .all(|label| l.contains(label.as_str()))
            })
        };
        series("web-0") && series("db-0")
    });
    // web-0 connects to db-0's closed port: db-0 answers with a reset, its event names the pod.
    wait("the reset probe", 30, &log, || {
        metrics().contains("podnet_probe_up{component_id=\"ebpf\",component_kind=\"receiver\",hook=\"tp_btf\",probe=\"tcpreset\"} 1")
    });
    let target = format!("{}:9", db.ip);
    in_pod(web.pid, || {
        let _ = TcpStream::connect_timeout(&target.parse().unwrap(), Duration::from_secs(2));
    });
    let events = events_dir.join("events.jsonl");
    wait("db-0's reset in the events file on the host", 30, &log, || {
        json_lines(&events).iter().any(|e| {
            e["type"] == "TCPRESET_NOSOCK"
                && e["labels"].as_array().is_some_and(|l| l.iter().any(|l| l["name"] == "pod" && l["value"] == "db-0"))
        })
    });
    let (code, _) = http_get(health, "/readyz").expect("health endpoint");
    assert_eq!(code, 200);

    // A process of another user in web-0: its /proc/<pid>/fd and io are 0500/0400 for that
    // user, readable to the agent only through DAC_READ_SEARCH (DAC_OVERRIDE is dropped).
    let _nobody = Nobody::start(web.pid);
    std::thread::sleep(Duration::from_secs(4));
    let m = metrics();
    let down: Vec<&str> = m.lines().filter(|l| l.starts_with("podnet_probe_up{") && l.ends_with(" 0")).collect();
    assert!(down.is_empty(), "probes down with the DaemonSet's capabilities: {down:?}");
    let errors: Vec<&str> = m.lines().filter(|l| l.starts_with("podnet_receiver_collection_errors_total{") && !l.ends_with(" 0")).collect();
    assert!(
        errors.is_empty(),
        "collection errors with the DaemonSet's capabilities: {errors:?}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(
        m.lines().any(|l| l.starts_with("kubeskoop_tcpsummary_tcpestablishedconn{") && l.contains("k8s_pod=\"web-0\"")),
        "the socket walk (setns) reaches the pods"
    );

    // What the agent holds: exactly the DaemonSet's six (it drops ALL and adds them), in the
    // bounding set too.
    let pid = agent_pid().expect("the agent's process");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mask = |field: &str| status.lines().find_map(|l| l.strip_prefix(field)).map(|v| u64::from_str_radix(v.trim(), 16).unwrap());
    // DAC_READ_SEARCH 2, NET_ADMIN 12, SYS_PTRACE 19, SYS_ADMIN 21, PERFMON 38, BPF 39.
    let expected = [2u32, 12, 19, 21, 38, 39].iter().fold(0u64, |m, c| m | 1 << c);
    assert_eq!(mask("CapEff:"), Some(expected), "{status}");
    assert_eq!(mask("CapBnd:"), Some(expected), "nothing dropped can come back: {status}");
    assert!(status.lines().any(|l| l == "NoNewPrivs:\t1"), "allowPrivilegeEscalation: false: {status}");
    assert!(status.lines().any(|l| l == "Seccomp:\t2"), "the runtime's default seccomp profile (filter mode): {status}");
}
