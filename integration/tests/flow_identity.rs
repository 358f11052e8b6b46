//! Flows with pod identity on both ends: packets dropped between two test pods carry who
//! sent and who was to receive them, from the cluster-wide IP identity cache (a local API
//! server serves the pods, nodes and services), in KubeSkoop's tuple labels and on the
//! events.

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::time::Duration;

use podnet_integration::pods::{Pods, in_netns, nft};
use podnet_integration::{Agent, json_lines, labeled_sum, root_or_skip};

fn pod(name: &str, uid: &str, ip: &str, node: &str) -> serde_json::Value {
    serde_json::json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": name, "namespace": "shop", "uid": uid, "resourceVersion": "10"},
        "spec": {"nodeName": node, "hostNetwork": false, "containers": []},
        "status": {"phase": "Running", "podIP": ip}
    })
}

fn list(kind: &str, items: Vec<serde_json::Value>) -> String {
    serde_json::json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "10"}, "items": items}).to_string()
}

/// Lists by path (this node's pods for a node-selected list), watches held open.
fn api_server() -> u16 {
    let local = vec![pod("web-0", "ua", "10.213.0.1", "flow-node"), pod("cart-0", "ub", "10.213.0.2", "flow-node")];
    let mut all = local.clone();
    all.push(pod("api-0", "uc", "10.213.0.50", "node-2"));
    let node_pods = list("PodList", local);
    let cluster_pods = list("PodList", all);
    let nodes = list(
        "NodeList",
        vec![serde_json::json!({"metadata": {"name": "node-2", "uid": "n2", "resourceVersion": "3"},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.10"}]}})],
    );
    let services = list("ServiceList", vec![]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let (node_pods, cluster_pods, nodes, services) = (node_pods.clone(), cluster_pods.clone(), nodes.clone(), services.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).unwrap_or(0);
                let line = String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_string();
                if line.contains("watch=true") || line.contains("watch=1") {
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n");
                    std::thread::sleep(Duration::from_secs(120));
                    return;
                }
                let body = if line.contains("/api/v1/nodes") {
                    nodes
                } else if line.contains("/api/v1/services") {
                    services
                } else if line.contains("fieldSelector") {
                    node_pods
                } else {
                    cluster_pods
                };
                let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            });
        }
    });
    port
}

#[test]
fn dropped_packets_name_the_pods_on_both_ends() {
    if !root_or_skip("test pods and eBPF programs need root (CI runs as root)") {
        return;
    }
    let pods = Pods::create("fi");
    let _sleepers = pods.sleepers();
    let port = api_server();
    let dir = tempfile::tempdir().unwrap();
    let events_file = dir.path().join("events.otlp.jsonl");
    let cfg = dir.path().join("podnet.yaml");
    std::fs::write(
        &cfg,
        format!(
            "receivers:
  ebpf:
    collection_interval: 300ms
    flush_interval: 50ms
    probes:
      packetloss:
processors:
  k8s_attributes:
    cri: {{ enabled: false, poll_interval: 300ms }}
    kube_api: {{ enabled: true, endpoint: \"http://127.0.0.1:{port}\" }}
    ip_identity: {{ enabled: true }}
exporters:
  prometheus:
    endpoint: ${{env:PODNET_LISTEN}}
    naming: kubeskoop
  file:
    path: {}
service:
  pipelines:
    metrics:
      receivers: [ebpf]
      processors: [k8s_attributes]
      exporters: [prometheus]
    logs:
      receivers: [ebpf]
      processors: [k8s_attributes]
      exporters: [file]
",
            events_file.display()
        ),
    )
    .unwrap();
    let agent = Agent::start(&["-c", cfg.to_str().unwrap()], &[("PODNET_NODE_NAME", "flow-node")]);
    agent.wait_until(Duration::from_secs(20), "packetloss attached", || {
        labeled_sum(&agent.metrics(), "podnet_probe_up", &[("probe", "packetloss")]) == 1.0
    });
    // cart-0 drops UDP to :5000 from web-0; a datagram to api-0's address (on another node,
    // known from the cluster list) is dropped by web-0's own rule.
    nft(&pods.b, &["add", "table", "inet", "podnet_fi"]);
    nft(&pods.b, &["add", "chain", "inet", "podnet_fi", "in", "{ type filter hook input priority 0; }"]);
    nft(&pods.b, &["add", "rule", "inet", "podnet_fi", "in", "udp", "dport", "5000", "drop"]);
    nft(&pods.a, &["add", "table", "inet", "podnet_fi"]);
    nft(&pods.a, &["add", "chain", "inet", "podnet_fi", "out", "{ type filter hook output priority 0; }"]);
    nft(&pods.a, &["add", "rule", "inet", "podnet_fi", "out", "ip", "daddr", "10.213.0.50", "drop"]);
    // Sent until the identity cache has the cluster's pods: the first may be counted before it.
    agent.wait_until(Duration::from_secs(20), "drops named on both ends", || {
        in_netns(&pods.a, || {
            let udp = UdpSocket::bind("10.213.0.1:0").unwrap();
            udp.send_to(b"dropped", "10.213.0.2:5000").unwrap();
            let _ = udp.send_to(b"dropped", "10.213.0.50:6000");
        });
        std::thread::sleep(Duration::from_millis(300));
        let m = agent.metrics();
        let local = [("src_type", "pod"), ("src_pod", "web-0"), ("src_namespace", "shop"), ("dst_type", "pod"), ("dst_pod", "cart-0")];
        let remote = [("src_pod", "web-0"), ("dst_type", "pod"), ("dst_pod", "api-0"), ("dst_node", "node-2")];
        labeled_sum(&m, "kubeskoop_packetloss_netfilter", &local) >= 1.0
            && labeled_sum(&m, "kubeskoop_packetloss_netfilter", &remote) >= 1.0
    });
    let m = agent.metrics();
    // The datagrams cart-0 dropped, in its own namespace (other flows between these
    // addresses may be counted elsewhere on a busy test machine).
    let line = m
        .lines()
        .find(|l| l.starts_with("kubeskoop_packetloss_netfilter{") && l.contains("k8s_pod=\"cart-0\"") && l.contains("protocol=\"UDP\""))
        .unwrap_or_else(|| panic!("cart-0's drops: {m}"));
    let order: Vec<&str> = line.split(['{', ',']).filter_map(|p| p.split_once('=').map(|(k, _)| k)).collect();
    let tuple: Vec<&str> = order.iter().copied().filter(|k| !k.starts_with("k8s_")).collect();
    // packetloss carries ports only when asked (`ports: true`), as the flow table's key.
    let kubeskoop_order = [
        "protocol",
        "src",
        "src_type",
        "src_node",
        "src_namespace",
        "src_pod",
        "dst",
        "dst_type",
        "dst_node",
        "dst_namespace",
        "dst_pod",
        "sport",
        "dport",
    ];
    let expected: Vec<&str> = kubeskoop_order.into_iter().filter(|k| tuple.contains(k)).collect();
    assert_eq!(tuple, expected, "KubeSkoop's order: {line}");
    assert_eq!(tuple.len(), 11, "every identity label: {line}");
    assert!(line.contains("src_node=\"flow-node\"") && line.contains("k8s_pod=\"cart-0\""), "{line}");
    // The events carry the same peers.
    agent.wait_until(Duration::from_secs(10), "an event with its peers", || {
        let text = std::fs::read_to_string(&events_file).unwrap_or_default();
        text.contains("\"destination.k8s.pod.name\"") && text.contains("\"cart-0\"") && text.contains("\"podnet.source.type\"")
    });
    assert!(!json_lines(&events_file).is_empty());
}
