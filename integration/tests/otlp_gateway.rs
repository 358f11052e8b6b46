//! OTLP end to end: node agents send with `otlp_grpc` and `otlp_http` to a gateway podnet
//! whose `otlp` receiver decodes them with the official OTLP schema and serves them in
//! KubeSkoop's names, each node's series under its own `k8s_node`.

use std::time::Duration;

use podnet_integration::{Agent, free_port, sample_value};

fn write(dir: &std::path::Path, name: &str, text: String) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

fn node_config(exporter: &str, endpoint: &str) -> String {
    format!(
        "receivers:
  procfs:
    collection_interval: 300ms
    namespaces: host
    probes: [netdev, tcp]
exporters:
  prometheus:
    endpoint: ${{env:PODNET_LISTEN}}
  {exporter}:
    endpoint: {endpoint}
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 500ms }}
service:
  pipelines:
    metrics:
      receivers: [procfs]
      exporters: [prometheus, {exporter}]
"
    )
}

#[test]
fn nodes_send_over_grpc_and_http_to_a_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http, gw_metrics) = (free_port(), free_port(), free_port());
    // The nodes start first: the gateway is down for a while, and nothing is lost for it.
    let node_a = Agent::start(
        &["-c", &write(dir.path(), "a.yaml", node_config("otlp_grpc", &format!("http://127.0.0.1:{grpc}")))],
        &[("PODNET_NODE_NAME", "node-a")],
    );
    let node_b = Agent::start(
        &["-c", &write(dir.path(), "b.yaml", node_config("otlp_http", &format!("http://127.0.0.1:{http}")))],
        &[("PODNET_NODE_NAME", "node-b")],
    );
    std::thread::sleep(Duration::from_millis(500));
    let gateway_cfg = format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: 127.0.0.1:{grpc} }}
      http: {{ endpoint: 127.0.0.1:{http} }}
exporters:
  prometheus:
    endpoint: 127.0.0.1:{gw_metrics}
    naming: kubeskoop
service:
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [prometheus]
"
    );
    let gateway =
        Agent::start_with_port(&["-c", &write(dir.path(), "gw.yaml", gateway_cfg)], &[("PODNET_NODE_NAME", "gateway")], gw_metrics);
    gateway.wait_until(Duration::from_secs(20), "both nodes on the gateway", || {
        let m = gateway.metrics();
        m.contains("kubeskoop_netdev_rxbytes{k8s_node=\"node-a\"") && m.contains("kubeskoop_netdev_rxbytes{k8s_node=\"node-b\"")
    });
    let m = gateway.metrics();
    for node in ["node-a", "node-b"] {
        let series = format!("kubeskoop_tcp_activeopens{{k8s_node=\"{node}\",k8s_namespace=\"\",k8s_pod=\"\"}}");
        assert!(sample_value(&m, &series).is_some(), "{series} missing:\n{m}");
    }
    // The gateway counts what its receiver passed on; the nodes count what they delivered.
    assert!(m.contains("podnet_component_sent_total{component_id=\"otlp\",component_kind=\"receiver\",signal=\"metrics\"}"), "{m}");
    // A node counts a batch as sent when the gateway's answer is back, which can be just
    // after the gateway shows it.
    node_a.wait_until(Duration::from_secs(10), "node a to count what it delivered", || {
        node_a.metrics().contains("podnet_component_sent_total{component_id=\"otlp_grpc\",component_kind=\"exporter\",signal=\"metrics\"}")
    });
    // Bad input gets a clear 400; OTLP JSON is accepted and answered in JSON.
    let (code, text) = podnet_integration::http_post(http, "/v1/metrics", "application/x-protobuf", b"\xff\xff\xff").unwrap();
    assert_eq!(code, 400);
    assert!(text.contains("invalid OTLP protobuf"), "{text}");
    let (code, text) = podnet_integration::http_post(http, "/v1/metrics", "application/json", br#"{"resourceMetrics":[]}"#).unwrap();
    assert_eq!(code, 200, "{text}");
    node_b.wait_until(Duration::from_secs(10), "node b to count what it delivered", || {
        node_b.metrics().contains("podnet_component_sent_total{component_id=\"otlp_http\",component_kind=\"exporter\",signal=\"metrics\"}")
    });
}
