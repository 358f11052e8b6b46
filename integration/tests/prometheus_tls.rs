//! TLS and basic auth on the scrape endpoint from Prometheus' own web config file: a real
//! Prometheus scrapes through its `scheme: https`, `tls_config` and `basic_auth`; a scrape
//! without the password, a plain-HTTP request and a wrong password are refused.

use std::process::Command;
use std::time::{Duration, Instant};

use podnet_integration::backends;
use podnet_integration::{Agent, free_port};

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl").args(["-s", "-o", "/dev/null", "-w", "%{http_code}"]).args(args).output().expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn query(port: u16, q: &str) -> Vec<serde_json::Value> {
    backends::query(port, q).unwrap_or_default()
}

#[test]
fn prometheus_scrapes_through_tls_and_basic_auth() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    backends::test_certificates(d);
    let hash = bcrypt::hash("sc4pe-me", 6).unwrap();
    // Paths relative to the web config file, as Prometheus resolves them.
    std::fs::write(
        d.join("web.yml"),
        format!("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  prom: '{hash}'\n"),
    )
    .unwrap();
    let config = d.join("podnet.yaml");
    std::fs::write(
        &config,
        format!(
            "extensions:
  health_check:
    endpoint: ${{env:PODNET_HEALTH_LISTEN}}
receivers:
  procfs:
    collection_interval: 1s
    namespaces: host
    probes: [netdev]
exporters:
  prometheus:
    endpoint: ${{env:PODNET_LISTEN}}
    web_config_file: {}
service:
  extensions: [health_check]
  pipelines:
    metrics:
      receivers: [procfs]
      exporters: [prometheus]
",
            d.join("web.yml").display()
        ),
    )
    .unwrap();
    let agent = Agent::start(&["-c", config.to_str().unwrap()], &[("PODNET_NODE_NAME", "tls-node")]);
    let url = format!("https://127.0.0.1:{}/metrics", agent.port);
    let ca = d.join("ca.crt");
    let ca = ca.to_str().unwrap();
    assert_eq!(curl(&["--cacert", ca, "-u", "prom:sc4pe-me", &url]), "200");
    assert_eq!(curl(&["--cacert", ca, &url]), "401", "no password");
    assert_eq!(curl(&["--cacert", ca, "-u", "prom:wrong", &url]), "401", "a wrong password");
    assert_eq!(curl(&[&url.replace("https", "http")]), "000", "plain HTTP gets no answer");
    assert!(agent.log_text().contains("scheme=\"https\"") || agent.log_text().contains("scheme=https"), "{}", agent.log_text());

    // A real Prometheus: one job with the CA and the password, one without the password.
    let prom_port = free_port();
    let target = format!("127.0.0.1:{}", agent.port);
    std::fs::write(
        d.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: podnet\n    scheme: https\n    tls_config:\n      ca_file: {ca}\n    basic_auth:\n      username: prom\n      password: sc4pe-me\n    static_configs:\n      - targets: ['{target}']\n  - job_name: nopassword\n    scheme: https\n    tls_config:\n      ca_file: {ca}\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let prom_dir = tempfile::tempdir().unwrap();
    std::fs::copy(d.join("prometheus.yml"), prom_dir.path().join("prometheus.yml")).unwrap();
    let _prometheus = backends::prometheus(prom_dir.path(), prom_port, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up =
            |job: &str| query(prom_port, &format!("up{{job=\"{job}\"}}")).first().and_then(|r| r["value"][1].as_str().map(str::to_string));
        let series = query(prom_port, "system_network_io_bytes_total{job=\"podnet\"}");
        if up("podnet").as_deref() == Some("1") && up("nopassword").as_deref() == Some("0") && !series.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "podnet up {:?}, nopassword up {:?}, series {}", up("podnet"), up("nopassword"), series.len());
        std::thread::sleep(Duration::from_millis(500));
    }
}
