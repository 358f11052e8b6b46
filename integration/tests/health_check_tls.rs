//! The health_check extension over HTTPS (the Collector's `tls` block): probes answer over
//! TLS with the test CA, `/status` still shows its detail to a caller on the node (the
//! caller's address reaches the handler through the TLS loop), plain HTTP gets nothing, and a
//! missing certificate fails `podnet validate` with the key named.

use std::process::Command;

use podnet_integration::backends::test_certificates;
use podnet_integration::{Agent, free_port, podnet_binary};

fn curl(dir: &std::path::Path, args: &[&str]) -> (String, String) {
    let out =
        Command::new("curl").current_dir(dir).args(["-s", "--max-time", "10", "-w", "\n%{http_code}"]).args(args).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (body.to_string(), code.to_string())
}

#[test]
fn health_checks_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    test_certificates(d);
    let health = free_port();
    let config = d.join("podnet.yaml");
    let write = |key_file: &str| {
        std::fs::write(
            &config,
            format!(
                "extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
    tls: {{ cert_file: {d}/server.crt, key_file: {d}/{key_file} }}
receivers:
  procfs:
    namespaces: host
    probes: [netdev, ipvs]
exporters:
  prometheus:
    endpoint: ${{env:PODNET_LISTEN}}
service:
  extensions: [health_check]
  pipelines:
    metrics:
      receivers: [procfs]
      exporters: [prometheus]
",
                d = d.display()
            ),
        )
        .unwrap()
    };
    write("missing.key");
    let out = Command::new(podnet_binary()).args(["validate", "-c", config.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("extensions::health_check") && err.contains("tls::key_file") && err.contains("missing.key"),
        "{err}"
    );

    write("server.key");
    let _agent = Agent::start(&["-c", config.to_str().unwrap()], &[]);
    let url = |path: &str| format!("https://127.0.0.1:{health}{path}");
    let (_, code) = curl(d, &["--cacert", "ca.crt", &url("/healthz")]);
    assert_eq!(code, "200");
    let (_, code) = curl(d, &["--cacert", "ca.crt", &url("/readyz")]);
    assert_eq!(code, "200");
    let (status, code) = curl(d, &["--cacert", "ca.crt", &url("/status")]);
    assert_eq!(code, "200");
    assert!(status.contains("ipvs") && status.contains("IPVS"), "the unsupported probe's reason is shown to a loopback caller: {status}");
    let (_, code) = curl(d, &[&format!("http://127.0.0.1:{health}/healthz")]);
    assert_eq!(code, "000", "plain HTTP on the TLS port gets nothing");
}
