//! Pod attribution from the Kubernetes API alone (no container runtime reachable): each
//! test pod's namespace is matched to the API's pod by its address.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use podnet_integration::pods::Pods;
use podnet_integration::{Agent, labeled_sum, root_or_skip};

fn pod(name: &str, ns: &str, uid: &str, ip: &str, owner: (&str, &str), hash: &str) -> serde_json::Value {
    serde_json::json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": name, "namespace": ns, "uid": uid, "resourceVersion": "10",
                     "labels": {"app": name.split('-').next().unwrap(), "pod-template-hash": hash},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner.0, "name": owner.1, "uid": "x", "controller": true}]},
        "spec": {"nodeName": "api-node", "hostNetwork": false},
        "status": {"phase": "Running", "podIP": ip}
    })
}

/// A minimal API server: the list, then watches that stay open.
fn api_server(list: serde_json::Value) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let list = list.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                if req.contains("watch=1") || req.contains("watch=true") {
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n");
                    std::thread::sleep(Duration::from_secs(120));
                } else {
                    let body = list.to_string();
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            });
        }
    });
    port
}

#[test]
fn without_a_runtime_the_api_names_namespaces_by_address() {
    if !root_or_skip("creating network namespaces needs root (CI runs as root)") {
        return;
    }
    let pods = Pods::create("k");
    let _sleepers = pods.sleepers();
    let list = serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "10"}, "items": [
        pod("web-5d8f7-abcde", "prod", "u-a", "10.213.0.1", ("ReplicaSet", "web-5d8f7"), "5d8f7"),
        pod("db-0", "data", "u-b", "10.213.0.2", ("StatefulSet", "db"), ""),
        pod("gone-0", "prod", "u-c", "10.213.0.99", ("StatefulSet", "gone"), ""),
    ]});
    let port = api_server(list);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("podnet.yaml");
    std::fs::write(
        &cfg,
        format!(
            "receivers:
  procfs:
    collection_interval: 300ms
    probes: [udp]
processors:
  k8s_attributes:
    cri: {{ enabled: false, poll_interval: 300ms }}
    kube_api: {{ enabled: true, endpoint: \"http://127.0.0.1:{port}\" }}
    extract:
      labels: [{{ key: app }}]
exporters:
  prometheus:
    endpoint: ${{env:PODNET_LISTEN}}
    naming: kubeskoop
  file:
    path: {}
service:
  pipelines:
    metrics:
      receivers: [procfs]
      processors: [k8s_attributes]
      exporters: [prometheus, file]
",
            dir.path().join("out.jsonl").display()
        ),
    )
    .unwrap();
    let agent = Agent::start(&["-c", cfg.to_str().unwrap()], &[("PODNET_NODE_NAME", "api-node")]);
    agent.wait_until(Duration::from_secs(15), "both namespaces named by the API", || {
        let m = agent.metrics();
        labeled_sum(&m, "kubeskoop_udp_noports", &[("k8s_pod", "web-5d8f7-abcde"), ("k8s_namespace", "prod")]) >= 0.0
            && m.contains("k8s_pod=\"web-5d8f7-abcde\"")
            && m.contains("k8s_pod=\"db-0\"")
    });
    let m = agent.metrics();
    assert!(!m.contains("gone-0"), "a pod whose address no namespace has is nobody's");
    assert!(m.contains("k8s_pod=\"\""), "the host stays node level");
    // The OTLP resource carries the workload derived from the owner references.
    let out = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    assert!(out.contains("\"k8s.deployment.name\"") && out.contains("\"web\""), "ReplicaSet web-5d8f7 with hash 5d8f7 is Deployment web");
    assert!(out.contains("\"k8s.statefulset.name\"") && out.contains("\"k8s.pod.labels.app\""));
}
