//! Conntrack events per pod: a datagram from one test pod to another, tracked in the
//! receiving pod (an nftables `ct state` rule turns conntrack on there), comes out as a
//! `ConntrackNew` event under that pod's namespace with KubeSkoop's message and the tuple.

use std::net::UdpSocket;
use std::time::Duration;

use podnet_integration::pods::{Pods, in_netns, nft};
use podnet_integration::{Agent, root_or_skip};

#[test]
fn a_new_connection_in_a_pod_is_an_event_of_that_pod() {
    if !root_or_skip("test pods need root (CI runs as root)") {
        return;
    }
    let pods = Pods::create("ct");
    let _sleepers = pods.sleepers();
    nft(&pods.b, &["add", "table", "inet", "podnet_ct"]);
    nft(&pods.b, &["add", "chain", "inet", "podnet_ct", "in", "{ type filter hook input priority 0; }"]);
    nft(&pods.b, &["add", "rule", "inet", "podnet_ct", "in", "ct", "state", "new", "counter"]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.otlp.jsonl");
    let cfg = dir.path().join("podnet.yaml");
    std::fs::write(
        &cfg,
        format!(
            "receivers:
  netlink:
    collection_interval: 300ms
    probes: [conntrack]
    events:
      conntrack:
        types: [new]
exporters:
  prometheus:
    endpoint: ${{env:PODNET_LISTEN}}
  file:
    path: {}
service:
  pipelines:
    metrics:
      receivers: [netlink]
      exporters: [prometheus]
    logs:
      receivers: [netlink]
      exporters: [file]
",
            out.display()
        ),
    )
    .unwrap();
    let agent = Agent::start(&["-c", cfg.to_str().unwrap()], &[("PODNET_NODE_NAME", "ct-node")]);
    // Datagrams until the listener in b's namespace is up (it starts within a collection).
    let mut port = 40100u16;
    agent.wait_until(Duration::from_secs(15), "a ConntrackNew event from pod b", || {
        port += 1;
        in_netns(&pods.a, || {
            let udp = UdpSocket::bind(("10.213.0.1", port)).unwrap();
            udp.send_to(b"x", "10.213.0.2:5353").unwrap();
        });
        std::thread::sleep(Duration::from_millis(300));
        std::fs::read_to_string(&out).unwrap_or_default().contains("ConntrackNew")
    });
    let text = std::fs::read_to_string(&out).unwrap();
    let line = text.lines().find(|l| l.contains("ConntrackNew")).unwrap();
    assert!(line.contains(&pods.b), "under pod b's namespace: {line}");
    assert!(!line.contains(&format!("\"{}\"", pods.a)), "not a's: a has no conntrack: {line}");
    assert!(line.contains("Proto = UDP Replied = false Src = 10.213.0.1:"), "{line}");
    assert!(line.contains("Dst = 10.213.0.2:5353"), "{line}");
    assert!(line.contains("\"destination.port\"") && line.contains("\"source.address\""), "{line}");
    assert!(agent.stop().success());
}
