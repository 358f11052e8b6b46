//! The real binary's `prometheus_remote_write` against a local receiving server that
//! decodes what arrives with the remote-write schema: headers, snappy, protobuf, names and
//! labels; a 400 is not retried; a 503 is, and the same data then arrives.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use podnet_exporter_prometheus_remote_write::proto::WriteRequest;
use podnet_integration::Agent;
use prost::Message;

#[derive(Default)]
struct Received {
    bodies: Vec<Vec<u8>>,
    headers: Vec<HeaderMap>,
    /// Status codes to answer, in order; then 204.
    script: Vec<u16>,
}

type Shared = Arc<Mutex<Received>>;

async fn write(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut r = state.lock().unwrap();
    r.bodies.push(body.to_vec());
    r.headers.push(headers);
    let code = if r.script.is_empty() { 204 } else { r.script.remove(0) };
    StatusCode::from_u16(code).unwrap()
}

async fn server(script: Vec<u16>) -> (u16, Shared) {
    let state: Shared = Arc::new(Mutex::new(Received { script, ..Default::default() }));
    let app = axum::Router::new().route("/api/v1/write", axum::routing::post(write)).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, state)
}

fn config(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    let path = dir.join("podnet.yaml");
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
    endpoint: http://127.0.0.1:{port}/api/v1/write
    naming: kubeskoop
    external_labels: {{ cluster: test }}
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 200ms }}
service:
  pipelines:
    metrics:
      receivers: [procfs]
      exporters: [prometheus, prometheus_remote_write]
"
        ),
    )
    .unwrap();
    path
}

fn decode(body: &[u8]) -> WriteRequest {
    let raw = snap::raw::Decoder::new().decompress_vec(body).expect("snappy block format");
    WriteRequest::decode(raw.as_slice()).expect("a remote-write WriteRequest")
}

async fn wait(state: &Shared, n: usize) {
    for _ in 0..150 {
        if state.lock().unwrap().bodies.len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fewer than {n} requests arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_kubeskoop_series_with_the_standard_headers() {
    let (port, state) = server(vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), port);
    let agent = tokio::task::spawn_blocking(move || Agent::start(&["-c", path.to_str().unwrap()], &[("PODNET_NODE_NAME", "rw-node")]))
        .await
        .unwrap();
    wait(&state, 2).await;
    let (body, headers) = {
        let r = state.lock().unwrap();
        (r.bodies[0].clone(), r.headers[0].clone())
    };
    assert_eq!(headers["content-encoding"], "snappy");
    assert_eq!(headers["content-type"], "application/x-protobuf");
    assert_eq!(headers["x-prometheus-remote-write-version"], "0.1.0");
    assert!(headers["user-agent"].to_str().unwrap().starts_with("podnet/"));
    let req = decode(&body);
    let series = req
        .timeseries
        .iter()
        .find(|ts| ts.labels.iter().any(|l| l.name == "__name__" && l.value == "kubeskoop_netdev_rxbytes"))
        .expect("rxbytes series");
    let labels: Vec<(&str, &str)> = series.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())).collect();
    // Sorted by name, empty values (k8s_pod="" at node level) dropped as remote write requires.
    assert_eq!(labels, [("__name__", "kubeskoop_netdev_rxbytes"), ("cluster", "test"), ("k8s_node", "rw-node")]);
    assert_eq!(series.samples.len(), 1);
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!((now_ms - series.samples[0].timestamp).abs() < 60_000, "the point's own time");
    tokio::task::spawn_blocking(move || assert!(agent.stop().success())).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_503_but_not_400() {
    // First batch: 503 twice (retried, the same body again), then 400 once (dropped, not
    // retried), then success.
    let (port, state) = server(vec![503, 503, 400]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), port);
    let agent = tokio::task::spawn_blocking(move || Agent::start(&["-c", path.to_str().unwrap()], &[])).await.unwrap();
    wait(&state, 5).await;
    let bodies = state.lock().unwrap().bodies.clone();
    assert_eq!(bodies[0], bodies[1], "a 503 is retried with the same request");
    assert_eq!(bodies[1], bodies[2], "and again");
    assert_ne!(bodies[3], bodies[2], "the 400 was not retried: the next request is the next batch");
    let m = agent.metrics();
    assert!(
        m.contains(
            "podnet_exporter_retries_total{component_id=\"prometheus_remote_write\",component_kind=\"exporter\",signal=\"metrics\"} 2"
        ),
        "{m}"
    );
    assert!(m.contains("reason=\"permanent_error\""), "{m}");
    assert!(agent.log_text().contains("HTTP 400"), "{}", agent.log_text());
}
