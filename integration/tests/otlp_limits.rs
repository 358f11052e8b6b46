//! The `otlp` receiver listens on the node's address: one request must not be able to take
//! the agent down. A gzip bomb over HTTP and oversized or decompression-bomb messages over
//! gRPC are refused, counted, and leave the agent's memory where it was; other clients are
//! served on.

use std::io::Write as _;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use podnet_integration::{Agent, free_port, http_post, labeled_sum};
use prost::Message;

/// Peak resident memory of a process so far, in MiB (`VmHWM`).
fn peak_rss_mib(pid: i32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok()).unwrap_or(0.0)
        / 1024.0
}

fn gzipped_zeros(n: usize) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..n / chunk.len() {
        enc.write_all(&chunk).unwrap();
    }
    enc.finish().unwrap()
}

fn log_request(body_bytes: usize) -> ExportLogsServiceRequest {
    let record =
        LogRecord { body: Some(AnyValue { value: Some(any_value::Value::StringValue("x".repeat(body_bytes))) }), ..Default::default() };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs { log_records: vec![record], ..Default::default() }],
            ..Default::default()
        }],
    }
}

/// POST over HTTP with headers of our choosing; the status only.
fn post(port: u16, path: &str, content_encoding: Option<&str>, body: &[u8]) -> Option<u16> {
    use std::io::Read as _;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let enc = content_encoding.map(|e| format!("Content-Encoding: {e}\r\n")).unwrap_or_default();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\n{enc}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .ok()?;
    // The server may answer (and close) before it has read everything: that is the point.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw).split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn oversized_and_bomb_requests_are_refused_and_the_agent_stays_small() {
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: 127.0.0.1:{grpc} }}
      http: {{ endpoint: 127.0.0.1:{http}, max_request_body_size: 4194304 }}
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
    let before = peak_rss_mib(agent.pid());

    // HTTP: 512 MiB of zeros in a ~0.5 MiB gzip body.
    let bomb = gzipped_zeros(512 << 20);
    assert!(bomb.len() < 4 << 20, "the bomb itself is under the raw limit: {} bytes", bomb.len());
    assert_eq!(post(http, "/v1/metrics", Some("gzip"), &bomb), Some(413));
    // HTTP: a plain body over the limit.
    assert_eq!(post(http, "/v1/metrics", None, &vec![0u8; 5 << 20]), Some(413));
    // A well-formed request is still served.
    let ok = ExportMetricsServiceRequest::default().encode_to_vec();
    assert_eq!(http_post(http, "/v1/metrics", "application/x-protobuf", &ok).map(|(s, _)| s), Some(200));

    // gRPC: a 5 MiB message over the 4 MiB default, and a 64 MiB message that gzip makes
    // small on the wire.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let codes = rt.block_on(async {
        let mut client =
            LogsServiceClient::connect(format!("http://127.0.0.1:{grpc}")).await.unwrap().max_encoding_message_size(usize::MAX);
        let big = client.export(log_request(5 << 20)).await.err().map(|s| s.code());
        let mut gz = client.clone().send_compressed(tonic::codec::CompressionEncoding::Gzip);
        let bomb = gz.export(log_request(64 << 20)).await.err().map(|s| s.code());
        let fine = client.export(log_request(1000)).await.map(|_| ()).map_err(|s| s.code());
        (big, bomb, fine)
    });
    let refused = |c: Option<tonic::Code>| matches!(c, Some(tonic::Code::OutOfRange | tonic::Code::ResourceExhausted));
    assert!(refused(codes.0), "5 MiB message: {:?}", codes.0);
    assert!(refused(codes.1), "64 MiB compressed message: {:?}", codes.1);
    assert_eq!(codes.2, Ok(()), "a small message is still taken");

    let after = peak_rss_mib(agent.pid());
    assert!(after - before < 64.0, "peak RSS went from {before:.1} MiB to {after:.1} MiB");
    let m = agent.metrics();
    assert_eq!(labeled_sum(&m, "podnet_receiver_refused_requests_total", &[("component_id", "otlp"), ("reason", "too_large")]), 2.0, "{m}");
}
