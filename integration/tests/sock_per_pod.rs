//! KubeSkoop's `kubeskoop_sock_orphan`, `_alloc` and `_mem` per pod: the kernel keeps them
//! node-wide only, so podnet counts them from each namespace's socket walk. A pod whose
//! clients close with unsent data against a peer that stops reading holds exactly that many
//! orphans; the node keeps sockstat's global series.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use podnet_integration::pods::{Pods, in_netns};
use podnet_integration::{Agent, labeled_sum, root_or_skip};

const CLIENTS: usize = 3;

#[test]
fn orphans_allocated_sockets_and_memory_are_counted_per_pod() {
    if !root_or_skip("test pods (network namespaces) need root (CI runs as root)") {
        return;
    }
    let pods = Pods::create("so");
    let _sleepers = pods.sleepers();
    let (a, b) = (pods.a.as_str(), pods.b.as_str());

    // B accepts and never reads; A's clients fill their send buffers and close: their data
    // cannot leave (B's window is full), so each stays, without a process, in FIN_WAIT1.
    let listener = in_netns(b, || TcpListener::bind("10.213.0.2:7300").unwrap());
    let mut accepted = Vec::new();
    for _ in 0..CLIENTS {
        let client = in_netns(a, || TcpStream::connect("10.213.0.2:7300").unwrap());
        accepted.push(listener.accept().unwrap().0);
        client.set_nonblocking(true).unwrap();
        let chunk = vec![7u8; 64 * 1024];
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while (&client).write(&chunk).is_ok() {
            assert!(std::time::Instant::now() < deadline, "the send buffer never filled");
        }
        drop(client);
    }

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("podnet.yaml");
    std::fs::write(
        &config,
        "receivers:
  procfs:
    collection_interval: 300ms
    probes: [sock]
  netlink:
    collection_interval: 300ms
    probes: [tcpsummary]
exporters:
  prometheus:
    endpoint: ${env:PODNET_LISTEN}
    naming: kubeskoop
service:
  pipelines:
    metrics:
      receivers: [procfs, netlink]
      exporters: [prometheus]
",
    )
    .unwrap();
    let agent = Agent::start(&["-c", config.to_str().unwrap()], &[("PODNET_NODE_NAME", "sock-node")]);
    let of = |m: &str, metric: &str, pod: &str| labeled_sum(m, metric, &[("k8s_pod", pod)]);
    agent.wait_until(Duration::from_secs(15), "the pods' socket counts", || {
        of(&agent.metrics(), "kubeskoop_sock_orphan", a) == CLIENTS as f64
    });
    let m = agent.metrics();
    // A: the orphans are its only sockets. B: the listener and the accepted connections.
    assert_eq!(of(&m, "kubeskoop_sock_alloc", a), CLIENTS as f64, "{m}");
    assert_eq!(of(&m, "kubeskoop_sock_orphan", b), 0.0);
    assert_eq!(of(&m, "kubeskoop_sock_alloc", b), (CLIENTS + 1) as f64);
    // The unsent data on A's side, the unread data on B's: whole pages of it.
    assert!(of(&m, "kubeskoop_sock_mem", a) >= CLIENTS as f64, "{m}");
    assert!(of(&m, "kubeskoop_sock_mem", b) >= CLIENTS as f64, "{m}");
    // The node keeps the kernel's global sockstat figures, at node level.
    assert!(m.lines().any(|l| l.starts_with("kubeskoop_sock_orphan{") && l.contains("k8s_pod=\"\"")), "{m}");
    drop(accepted);
}
