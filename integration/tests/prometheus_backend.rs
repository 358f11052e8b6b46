//! Real backends, installed from Debian by scripts/test.sh: Prometheus scrapes podnet's
//! endpoint and receives its remote write, VictoriaMetrics receives remote write too; their
//! query APIs must then hold the series with KubeSkoop's names and labels.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use podnet_integration::backends::{self, Server};
use podnet_integration::{Agent, free_port, http_get};

struct Prometheus {
    _server: Server,
    port: u16,
    _dir: tempfile::TempDir,
}

fn start_prometheus(scrape_port: u16) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: podnet\n    static_configs:\n      - targets: ['127.0.0.1:{scrape_port}']\n"),
    )
    .unwrap();
    let server = backends::prometheus(dir.path(), port, &[]);
    Prometheus { _server: server, port, _dir: dir }
}

fn query(port: u16, q: &str) -> Vec<serde_json::Value> {
    backends::query(port, q).unwrap_or_default()
}

#[test]
fn prometheus_scrapes_and_receives_remote_write() {
    let podnet_port = free_port();
    let prom = start_prometheus(podnet_port);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("podnet.yaml");
    std::fs::write(
        &path,
        format!(
            "receivers:
  procfs:
    collection_interval: 500ms
    namespaces: host
    probes: [netdev, tcp]
exporters:
  prometheus:
    endpoint: 127.0.0.1:{podnet_port}
    naming: kubeskoop
  prometheus_remote_write:
    endpoint: http://127.0.0.1:{}/api/v1/write
    naming: kubeskoop
    external_labels: {{ source: rw }}
service:
  pipelines:
    metrics:
      receivers: [procfs]
      exporters: [prometheus, prometheus_remote_write]
",
            prom.port
        ),
    )
    .unwrap();
    // The agent's own PODNET_LISTEN is unused here: the config names the port Prometheus scrapes.
    let agent = Agent::start_with_port(&["-c", path.to_str().unwrap()], &[("PODNET_NODE_NAME", "prom-node")], podnet_port);
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut scraped, mut written) = (Vec::new(), Vec::new());
    while Instant::now() < deadline && (scraped.is_empty() || written.is_empty()) {
        scraped = query(prom.port, "kubeskoop_netdev_rxbytes{job=\"podnet\"}");
        written = query(prom.port, "kubeskoop_netdev_rxbytes{source=\"rw\"}");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(scraped.len(), 1, "scraped series: {scraped:?}\nlog:\n{}", agent.log_text());
    assert_eq!(written.len(), 1, "remote-written series: {written:?}\nlog:\n{}", agent.log_text());
    for s in [&scraped[0], &written[0]] {
        assert_eq!(s["metric"]["k8s_node"], "prom-node", "{s}");
        assert!(s["metric"].get("k8s_pod").is_none(), "empty labels are absent in Prometheus: {s}");
        let v: f64 = s["value"][1].as_str().unwrap().parse().unwrap();
        assert!(v > 0.0, "{s}");
    }
    // Counters keep KubeSkoop's names through remote write, and rate() works on them.
    assert!(!query(prom.port, "kubeskoop_tcp_activeopens{source=\"rw\"}").is_empty());
    assert!(!query(prom.port, "podnet_component_up{job=\"podnet\"}").is_empty(), "self-metrics are scraped too");
}

struct Victoria {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Victoria {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn victoria_metrics_receives_remote_write() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new("victoria-metrics")
        .arg(format!("-storageDataPath={}", dir.path().join("data").display()))
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        // Make fresh samples queryable at once (the default hides the last 30 s).
        .arg("-search.latencyOffset=0s")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("victoria-metrics is not installed: apt-get install victoria-metrics (scripts/test.sh does)");
    let vm = Victoria { child, port, _dir: dir };
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(vm.port, "/health").is_none_or(|(s, _)| s != 200) {
        assert!(Instant::now() < deadline, "victoria-metrics did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
    let cfg_dir = tempfile::tempdir().unwrap();
    let path = cfg_dir.path().join("podnet.yaml");
    std::fs::write(
        &path,
        format!(
            "receivers:
  procfs:
    collection_interval: 500ms
    namespaces: host
    probes: [netdev]
exporters:
  prometheus:
    endpoint: ${{env:PODNET_LISTEN}}
  prometheus_remote_write:
    endpoint: http://127.0.0.1:{}/api/v1/write
    naming: otel
service:
  pipelines:
    metrics:
      receivers: [procfs]
      exporters: [prometheus, prometheus_remote_write]
",
            vm.port
        ),
    )
    .unwrap();
    let agent = Agent::start(&["-c", path.to_str().unwrap()], &[("PODNET_NODE_NAME", "vm-node")]);
    // New series become searchable after VictoriaMetrics' next index flush.
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut found = Vec::new();
    while Instant::now() < deadline && found.is_empty() {
        found = query(vm.port, "system_network_io_bytes_total{network_io_direction=\"receive\"}");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(found.len(), 1, "{found:?}\nlog:\n{}", agent.log_text());
    assert_eq!(found[0]["metric"]["k8s_node_name"], "vm-node", "{}", found[0]);
    assert!(found[0]["metric"]["podnet_netns_inode"].as_str().is_some_and(|s| !s.is_empty()));
}

#[test]
fn node_to_gateway_to_remote_write_to_prometheus() {
    let prom = start_prometheus(free_port());
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let gw = dir.path().join("gw.yaml");
    std::fs::write(
        &gw,
        format!(
            "receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: 127.0.0.1:{grpc} }}
      http: {{ endpoint: 127.0.0.1:{http} }}
exporters:
  prometheus:
    endpoint: ${{env:PODNET_LISTEN}}
  prometheus_remote_write:
    endpoint: http://127.0.0.1:{}/api/v1/write
    naming: kubeskoop
    external_labels: {{ via: gateway }}
service:
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [prometheus, prometheus_remote_write]
",
            prom.port
        ),
    )
    .unwrap();
    let _gateway = Agent::start(&["-c", gw.to_str().unwrap()], &[("PODNET_NODE_NAME", "gateway")]);
    let node_cfg = |exporter: &str, endpoint: String| {
        format!(
            "receivers:
  procfs:
    collection_interval: 300ms
    namespaces: host
    probes: [netdev]
exporters:
  prometheus:
    endpoint: ${{env:PODNET_LISTEN}}
  {exporter}:
    endpoint: {endpoint}
service:
  pipelines:
    metrics:
      receivers: [procfs]
      exporters: [prometheus, {exporter}]
"
        )
    };
    let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
    std::fs::write(&a, node_cfg("otlp_grpc", format!("http://127.0.0.1:{grpc}"))).unwrap();
    std::fs::write(&b, node_cfg("otlp_http", format!("http://127.0.0.1:{http}"))).unwrap();
    let _node_a = Agent::start(&["-c", a.to_str().unwrap()], &[("PODNET_NODE_NAME", "chain-a")]);
    let _node_b = Agent::start(&["-c", b.to_str().unwrap()], &[("PODNET_NODE_NAME", "chain-b")]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut found = Vec::new();
    while Instant::now() < deadline && found.len() < 2 {
        found = query(prom.port, "kubeskoop_netdev_txbytes{via=\"gateway\"}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut nodes: Vec<&str> = found.iter().filter_map(|s| s["metric"]["k8s_node"].as_str()).collect();
    nodes.sort();
    assert_eq!(nodes, ["chain-a", "chain-b"], "{found:?}");
}

/// bcrypt of "podnet-secret", for Prometheus's web config.
const BCRYPT_PODNET_SECRET: &str = "$2b$04$4tnhNPfzV.v9ToIiAlsasOiaVK2qQG4tHZXF/fhJ2kX.W0jzzJ.ia";

#[test]
fn remote_write_over_tls_with_basic_auth() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A test CA and a server certificate for 127.0.0.1.
    backends::test_certificates(d);
    std::fs::write(
        d.join("web.yml"),
        format!("tls_server_config:\n  cert_file: {0}/server.crt\n  key_file: {0}/server.key\nbasic_auth_users:\n  podnet: {BCRYPT_PODNET_SECRET}\n", d.display()),
    )
    .unwrap();
    std::fs::write(d.join("prometheus.yml"), "global:\n  scrape_interval: 1h\n").unwrap();
    let port = free_port();
    let _prom = backends::prometheus(d, port, &[format!("--web.config.file={}", d.join("web.yml").display())]);
    let curl = |path: &str| -> String {
        let out = Command::new("curl")
            .args([
                "-s",
                "--cacert",
                d.join("ca.crt").to_str().unwrap(),
                "-u",
                "podnet:podnet-secret",
                &format!("https://127.0.0.1:{port}{path}"),
            ])
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !curl("/-/ready").contains("Ready") {
        assert!(Instant::now() < deadline, "prometheus (TLS) did not become ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    let config = |password: &str, name: &str| {
        let path = d.join(format!("{name}.yaml"));
        std::fs::write(
            &path,
            format!(
                "receivers:
  procfs:
    collection_interval: 300ms
    namespaces: host
    probes: [netdev]
exporters:
  prometheus:
    endpoint: ${{env:PODNET_LISTEN}}
  prometheus_remote_write:
    endpoint: https://127.0.0.1:{port}/api/v1/write
    naming: kubeskoop
    external_labels: {{ via: {name} }}
    basic_auth: {{ username: podnet, password: {password} }}
    tls: {{ ca_file: {} }}
service:
  pipelines:
    metrics:
      receivers: [procfs]
      exporters: [prometheus, prometheus_remote_write]
",
                d.join("ca.crt").display()
            ),
        )
        .unwrap();
        path
    };
    let good = Agent::start(&["-c", config("podnet-secret", "tls").to_str().unwrap()], &[("PODNET_NODE_NAME", "tls-node")]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut body = String::new();
    while Instant::now() < deadline && !body.contains("tls-node") {
        body = curl("/api/v1/query?query=kubeskoop_netdev_rxbytes%7Bvia%3D%22tls%22%7D");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(body.contains("\"k8s_node\":\"tls-node\""), "{body}\nlog:\n{}", good.log_text());

    // A wrong password is a permanent error: logged, counted, not retried.
    let bad = Agent::start(&["-c", config("wrong", "bad").to_str().unwrap()], &[]);
    bad.wait_until(Duration::from_secs(15), "the 401 to be reported", || bad.log_text().contains("HTTP 401"));
    assert!(bad.metrics().contains("reason=\"permanent_error\""));
    assert!(!bad.log_text().contains("send failed, retrying"), "{}", bad.log_text());
}
