//! The `otlp` receiver with the Collector's `tls` and `auth` blocks, against a client that
//! is not podnet (the OpenTelemetry Python SDK) and curl: HTTP over mTLS with `basicauth`
//! (htpasswd: a bcrypt user and a plain one from the environment), gRPC over TLS with
//! `bearertokenauth`. What has no client certificate, no or wrong credentials, or speaks plain
//! text is refused and counted; what passes arrives with its values.

use std::path::Path;
use std::process::Command;

use podnet_integration::backends::test_certificates;
use podnet_integration::python::{otel_python, send_otlp};
use podnet_integration::{Agent, free_port, labeled_sum};

fn curl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("curl")
        .current_dir(dir)
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn tls_mtls_and_auth_on_both_protocols() {
    let Some(python) = otel_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    test_certificates(d);
    let hash = bcrypt::hash("agent-pw", 4).unwrap();
    let (grpc, http) = (free_port(), free_port());
    let config = d.join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "extensions:
  basicauth/agents:
    htpasswd:
      inline: |
        agent:{hash}
        ops:${{env:OPS_PASSWORD}}
  bearertokenauth/agents:
    token: ${{env:AGENT_TOKEN}}
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
        tls: {{ cert_file: {d}/server.crt, key_file: {d}/server.key, client_ca_file: {d}/ca.crt }}
        auth: {{ authenticator: basicauth/agents }}
      grpc:
        endpoint: 127.0.0.1:{grpc}
        tls: {{ cert_file: {d}/server.crt, key_file: {d}/server.key }}
        auth: {{ authenticator: bearertokenauth/agents }}
exporters:
  prometheus:
    endpoint: ${{env:PODNET_LISTEN}}
service:
  extensions: [basicauth/agents, bearertokenauth/agents]
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [prometheus]
",
            d = d.display()
        ),
    )
    .unwrap();
    let agent = Agent::start(&["-c", config.to_str().unwrap()], &[("OPS_PASSWORD", "ops-pw"), ("AGENT_TOKEN", "s3cr3t-token")]);
    let ca = d.join("ca.crt");
    let (cert, key) = (d.join("client.crt"), d.join("client.key"));
    let (ca, cert, key) = (ca.to_str().unwrap(), cert.to_str().unwrap(), key.to_str().unwrap());
    let http_ep = format!("127.0.0.1:{http}");
    let grpc_ep = format!("127.0.0.1:{grpc}");
    let send = |args: &[&str]| {
        let out = send_otlp(&python, args);
        (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
    };

    // HTTP, mTLS + basic auth: the bcrypt user and the plain one from ${env:…} pass.
    let basic = |user_pw: &str| {
        use base64::Engine as _;
        format!("Authorization=Basic {}", base64::engine::general_purpose::STANDARD.encode(user_pw))
    };
    let agent_basic = basic("agent:agent-pw");
    let (code, err) = send(&[
        "--protocol",
        "http",
        "--endpoint",
        &http_ep,
        "--service",
        "checkout",
        "--orders",
        "5",
        "--ca",
        ca,
        "--cert",
        cert,
        "--key",
        key,
        "--header",
        &agent_basic,
    ]);
    assert_eq!(code, Some(0), "{err}");
    let ops_basic = basic("ops:ops-pw");
    let (code, err) = send(&[
        "--protocol",
        "http",
        "--endpoint",
        &http_ep,
        "--service",
        "billing",
        "--orders",
        "9",
        "--ca",
        ca,
        "--cert",
        cert,
        "--key",
        key,
        "--header",
        &ops_basic,
    ]);
    assert_eq!(code, Some(0), "{err}");
    // A wrong password, and no credentials: refused (401) and counted.
    let wrong = basic("agent:nope");
    let (code, _) = send(&[
        "--protocol",
        "http",
        "--endpoint",
        &http_ep,
        "--service",
        "mallory",
        "--orders",
        "1",
        "--ca",
        ca,
        "--cert",
        cert,
        "--key",
        key,
        "--header",
        &wrong,
    ]);
    assert_eq!(code, Some(3));
    let url = format!("https://{http_ep}/v1/metrics");
    let proto = ["-H", "Content-Type: application/x-protobuf", "--data-binary", ""];
    assert_eq!(curl(d, &[&["--cacert", "ca.crt", "--cert", "client.crt", "--key", "client.key"][..], &proto, &[&url]].concat()), "401");
    // No client certificate: the handshake fails (curl reports 000), whatever the password.
    assert_eq!(curl(d, &[&["--cacert", "ca.crt", "-u", "agent:agent-pw"][..], &proto, &[&url]].concat()), "000");
    // Plain HTTP on the TLS port gets nothing.
    assert_eq!(curl(d, &[&proto[..], &[&format!("http://{http_ep}/v1/metrics")]].concat()), "000");
    // Right certificate and password through curl too.
    assert_eq!(
        curl(
            d,
            &[&["--cacert", "ca.crt", "--cert", "client.crt", "--key", "client.key", "-u", "agent:agent-pw"][..], &proto, &[&url]].concat()
        ),
        "200"
    );

    // gRPC over TLS with the bearer token (and without it, or with another).
    let (code, err) = send(&[
        "--protocol",
        "grpc",
        "--endpoint",
        &grpc_ep,
        "--service",
        "shipping",
        "--orders",
        "3",
        "--ca",
        ca,
        "--header",
        "authorization=Bearer s3cr3t-token",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _) = send(&[
        "--protocol",
        "grpc",
        "--endpoint",
        &grpc_ep,
        "--service",
        "mallory",
        "--orders",
        "1",
        "--ca",
        ca,
        "--header",
        "authorization=Bearer guess",
    ]);
    assert_eq!(code, Some(3));
    let (code, _) = send(&["--protocol", "grpc", "--endpoint", &grpc_ep, "--service", "mallory", "--orders", "1", "--ca", ca]);
    assert_eq!(code, Some(3));

    let m = agent.metrics();
    assert_eq!(labeled_sum(&m, "shop_orders_total", &[("job", "checkout"), ("route", "/buy")]), 5.0, "{m}");
    assert_eq!(labeled_sum(&m, "shop_orders_total", &[("job", "billing")]), 9.0, "{m}");
    assert_eq!(labeled_sum(&m, "shop_orders_total", &[("job", "shipping")]), 3.0, "{m}");
    assert_eq!(labeled_sum(&m, "shop_orders_total", &[("job", "mallory")]), 0.0, "nothing of the refused clients: {m}");
    // Refusals seen by the receiver: 1 SDK + 1 curl over HTTP, 2 over gRPC.
    assert_eq!(
        labeled_sum(&m, "podnet_receiver_refused_requests_total", &[("component_id", "otlp"), ("reason", "unauthenticated")]),
        4.0,
        "{m}"
    );
}

#[test]
fn an_auth_block_naming_no_running_extension_refuses_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "receivers:
  otlp:
    protocols:
      http: {{ endpoint: 127.0.0.1:{http}, auth: {{ authenticator: basicauth/missing }} }}
exporters:
  prometheus:
    endpoint: ${{env:PODNET_LISTEN}}
service:
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [prometheus]
"
        ),
    )
    .unwrap();
    let agent = Agent::start(&["-c", config.to_str().unwrap()], &[]);
    let status = podnet_integration::http_post(http, "/v1/metrics", "application/x-protobuf", b"").map(|(s, _)| s);
    assert_eq!(status, Some(401), "no data passes an authenticator that is not there");
    agent.wait_until(std::time::Duration::from_secs(5), "the error in the log", || {
        agent.log_text().contains("auth::authenticator \"basicauth/missing\" is not a running extension")
    });
}
