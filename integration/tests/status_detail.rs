//! The health_check extension's `/status` on the node's address: a caller on the node
//! (loopback, or the node's own address) sees every detail; a
//! caller elsewhere (here: a test pod reaching the host over a veth) sees states only.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use podnet_integration::pods::{in_netns, ip};
use podnet_integration::{Agent, free_port, root_or_skip};

struct Pod(String);

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn status_detail_is_for_the_node_only() {
    if !root_or_skip("creating a test pod needs root (CI runs as root)") {
        return;
    }
    let id = std::process::id();
    let pod = Pod(format!("pn-st-{id}"));
    let (host_end, pod_end) = (format!("pst{id}h"), format!("pst{id}p"));
    ip(&["netns", "add", &pod.0]);
    ip(&["link", "add", &host_end, "type", "veth", "peer", "name", &pod_end]);
    ip(&["link", "set", &pod_end, "netns", &pod.0]);
    ip(&["addr", "add", "10.214.0.1/24", "dev", &host_end]);
    ip(&["link", "set", &host_end, "up"]);
    ip(&["-n", &pod.0, "addr", "add", "10.214.0.2/24", "dev", &pod_end]);
    ip(&["-n", &pod.0, "link", "set", &pod_end, "up"]);

    let (port, health) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("podnet.yaml");
    // An IPVS probe on a node without IPVS: an unsupported reason to hide.
    std::fs::write(
        &config,
        format!(
            "extensions:
  health_check:
    endpoint: 0.0.0.0:{health}
receivers:
  procfs:
    namespaces: host
    probes: [netdev, ipvs]
exporters:
  prometheus:
    endpoint: 0.0.0.0:{port}
service:
  extensions: [health_check]
  pipelines:
    metrics:
      receivers: [procfs]
      exporters: [prometheus]
"
        ),
    )
    .unwrap();
    let _agent = Agent::start_with_port(&["-c", config.to_str().unwrap()], &[], port);
    let local = get(&format!("127.0.0.1:{health}"), "/status");
    assert!(local.contains(config.to_str().unwrap()), "the node sees the config source: {local}");
    // The node calling its own address (as it must when the endpoint binds the node's IP).
    let node = get(&format!("10.214.0.1:{health}"), "/status");
    assert!(node.contains(config.to_str().unwrap()), "the node at its own address sees the config source: {node}");
    let remote = in_netns(&pod.0, || get(&format!("10.214.0.1:{health}"), "/status"));
    assert!(remote.contains("200 OK") && remote.contains("\"ready\""), "{remote}");
    assert!(!remote.contains(config.to_str().unwrap()), "a pod does not see the config's path: {remote}");
    assert!(remote.contains("hidden: ask from the node itself"), "{remote}");
    if local.contains("ip_vs_stats") {
        assert!(!remote.contains("ip_vs_stats"), "nor the reasons: {remote}");
    }
}
