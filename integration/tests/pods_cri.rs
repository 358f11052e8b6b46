//! Pod attribution against a real containerd: sandboxes created as kubelet creates them
//! must show their own counters and events under their own pod name, the host at node
//! level, a new pod within one polling interval and a deleted pod gone after the grace
//! period.

use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use podnet_integration::containerd::{Containerd, in_pod};
use podnet_integration::{Agent, labeled_sum};

fn config(endpoint: &str, events: &std::path::Path) -> String {
    format!(
        "receivers:
  procfs:
    collection_interval: 300ms
    probes: [udp, tcp, fd]
  ebpf:
    collection_interval: 300ms
    flush_interval: 50ms
    probes:
      tcpreset:
processors:
  k8s_attributes:
    cri:
      endpoint: {endpoint}
      poll_interval: 500ms
    grace_period: 2s
    extract:
      labels:
        - key: app
          tag_name: app
    additional_labels: [\"team=${{labels:team}}\"]
exporters:
  prometheus:
    endpoint: ${{env:PODNET_LISTEN}}
    naming: kubeskoop
    metric_expiration: 1s
  file:
    path: {}
    format: kubeskoop
  file/otlp:
    path: {}.otlp
service:
  pipelines:
    metrics:
      receivers: [procfs, ebpf]
      processors: [k8s_attributes]
      exporters: [prometheus, file/otlp]
    logs:
      receivers: [ebpf]
      processors: [k8s_attributes]
      exporters: [file]
",
        events.display(),
        events.display()
    )
}

/// One containerd at a time: each brings up a bridge and dozens of sandboxes on 2 cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn noports(m: &str, pod: &str) -> f64 {
    labeled_sum(m, "kubeskoop_udp_noports", &[("k8s_pod", pod)])
}

#[test]
fn pods_from_containerd_name_their_own_data() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut ctrd) = Containerd::start("a") else { return };
    let web = ctrd.run_pod("prod", "web-0", &[("app", "web"), ("team", "blue")], false);
    let db = ctrd.run_pod("data", "db-0", &[("app", "db")], false);
    let host_pod = ctrd.run_pod("kube-system", "node-agent", &[("app", "agent")], true);
    assert!(!web.ip.is_empty() && !db.ip.is_empty(), "CNI gave the sandboxes addresses");

    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let cfg = dir.path().join("podnet.yaml");
    std::fs::write(&cfg, config(&ctrd.endpoint(), &events)).unwrap();
    let agent = Agent::start(&["-c", cfg.to_str().unwrap()], &[("PODNET_NODE_NAME", "cri-node")]);
    agent.wait_until(Duration::from_secs(20), "both pods on /metrics and the reset probe attached", || {
        let m = agent.metrics();
        m.contains("k8s_pod=\"web-0\"")
            && m.contains("k8s_pod=\"db-0\"")
            && labeled_sum(&m, "podnet_probe_up", &[("probe", "tcpreset")]) == 1.0
    });

    // Each pod's own traffic: web-0 sends 3 datagrams to a closed port of db-0, and
    // connects to a closed TCP port of db-0 (db-0 resets it).
    let before = agent.metrics();
    let target = db.ip.clone();
    in_pod(web.pid, || {
        let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..3 {
            udp.send_to(b"x", (target.as_str(), 9999)).unwrap();
        }
        let refused = TcpStream::connect_timeout(&format!("{target}:8081").parse().unwrap(), Duration::from_secs(5));
        assert!(refused.is_err());
    });
    agent.wait_until(Duration::from_secs(15), "db-0's counters", || noports(&agent.metrics(), "db-0") - noports(&before, "db-0") >= 3.0);
    let m = agent.metrics();
    assert_eq!(noports(&m, "db-0") - noports(&before, "db-0"), 3.0, "{m}");
    assert_eq!(noports(&m, "web-0") - noports(&before, "web-0"), 0.0);
    // Labels: namespace, the extracted `app`, KubeSkoop's additional label.
    assert!(
        labeled_sum(
            &m,
            "kubeskoop_udp_noports",
            &[("k8s_pod", "db-0"), ("k8s_namespace", "data"), ("k8s_node", "cri-node"), ("app", "db")]
        ) >= 3.0,
        "{m}"
    );
    assert!(
        m.lines().any(|l| l.starts_with("kubeskoop_udp_noports{") && l.contains("k8s_pod=\"web-0\"") && l.contains("team=\"blue\"")),
        "{m}"
    );
    // The OTLP export: OTel resource attributes.
    let otlp = std::fs::read_to_string(format!("{}.otlp", events.display())).unwrap();
    let resource_with_db = otlp
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .flat_map(|v| v["resourceMetrics"].as_array().cloned().unwrap_or_default().into_iter().map(|r| r["resource"].to_string()));
    let db_resources: Vec<String> = resource_with_db.filter(|r| r.contains("\"db-0\"")).collect();
    assert!(!db_resources.is_empty(), "{otlp}");
    for key in ["k8s.pod.name", "k8s.namespace.name", "k8s.pod.uid", "k8s.pod.ip", "k8s.node.name"] {
        assert!(db_resources[0].contains(&format!("\"{key}\"")), "{key} in {}", db_resources[0]);
    }
    // The host-network pod's network data is the node's (k8s_pod=""); only its processes'
    // fds (found by the pod UID in their cgroup) are its own, as in KubeSkoop.
    assert!(
        m.lines().filter(|l| l.contains("node-agent")).all(|l| l.starts_with("kubeskoop_fd_")),
        "a hostNetwork pod has no network series of its own:\n{m}"
    );
    agent.wait_until(Duration::from_secs(10), "the host-network pod's fd series", || {
        agent.metrics().lines().any(|l| {
            l.starts_with("kubeskoop_fd_openfd{") && l.contains("k8s_pod=\"node-agent\"") && l.contains("k8s_namespace=\"kube-system\"")
        })
    });
    assert!(m.lines().any(|l| l.starts_with("kubeskoop_udp_noports{") && l.contains("k8s_pod=\"\"")), "{m}");

    // The reset event names the pod that sent it.
    let reset_from_db = || {
        std::fs::read_to_string(&events).unwrap_or_default().lines().any(|l| {
            l.contains("\"TCPRESET_NOSOCK\"")
                && l.contains(r#"{"name":"pod","value":"db-0"}"#)
                && l.contains(r#"{"name":"namespace","value":"data"}"#)
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !reset_from_db() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        reset_from_db(),
        "TCPRESET_NOSOCK from db-0 in\n{}\nlog:\n{}",
        std::fs::read_to_string(&events).unwrap_or_default(),
        agent.log_text()
    );

    // A new pod is named within one polling interval (plus a collection).
    let started = std::time::Instant::now();
    let _cache = ctrd.run_pod("prod", "cache-0", &[("app", "cache")], false);
    agent.wait_until(Duration::from_secs(5), "the new pod", || agent.metrics().contains("k8s_pod=\"cache-0\""));
    assert!(started.elapsed() < Duration::from_secs(3), "named after {:?}", started.elapsed());

    // A deleted pod: its series go once the grace period and the expiry have passed.
    ctrd.remove_pod(&web.id);
    agent.wait_until(Duration::from_secs(15), "web-0's series gone", || !agent.metrics().contains("k8s_pod=\"web-0\""));
    let log = agent.log_text();
    assert!(!log.contains("collection error"), "{log}");
    // containerd 1.6 streams no CRI events: podnet says so once and polls.
    assert!(log.contains("no event stream (CRI GetContainerEvents): polling only"), "{log}");
    drop(host_pod);
}

#[test]
fn churn_of_sandboxes_misses_no_pod_and_leaves_no_series() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut ctrd) = Containerd::start("b") else { return };
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let cfg = dir.path().join("podnet.yaml");
    std::fs::write(&cfg, config(&ctrd.endpoint(), &events)).unwrap();
    let agent = Agent::start(&["-c", cfg.to_str().unwrap()], &[]);
    // 100 sandboxes, created and deleted in waves of 10 while podnet collects.
    let mut seen = std::collections::BTreeSet::new();
    for wave in 0..10 {
        let pods: Vec<_> = (0..10).map(|i| ctrd.run_pod("churn", &format!("p{}", wave * 10 + i), &[], false)).collect();
        agent.wait_until(Duration::from_secs(10), "the wave on /metrics", || {
            let m = agent.metrics();
            pods.iter().all(|p| m.contains(&format!("k8s_pod=\"{}\"", p.name)))
        });
        seen.extend(pods.iter().map(|p| p.name.clone()));
        for p in &pods {
            ctrd.remove_pod(&p.id);
        }
    }
    assert_eq!(seen.len(), 100);
    agent.wait_until(Duration::from_secs(20), "no series of deleted pods", || !agent.metrics().contains("k8s_namespace=\"churn\""));
    let log = agent.log_text();
    assert!(!log.contains("ERROR") && !log.contains("collection error"), "{log}");
}
