//! Events to Loki's push API, checked against Loki's protobuf schema (and its JSON form) by
//! a receiving server in the test: stream labels from the configured attributes, the event
//! time as entry time, entries time-ordered per stream, the tenant header, retries on 503.
//! Events enter through podnet's own OTLP receiver (OTLP JSON over HTTP).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use podnet_exporter_loki::proto::PushRequest;
use podnet_integration::{Agent, free_port, http_post};
use prost::Message;

#[derive(Default)]
struct Received {
    bodies: Vec<Vec<u8>>,
    headers: Vec<HeaderMap>,
    script: Vec<u16>,
}
type Shared = Arc<Mutex<Received>>;

async fn push(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut r = state.lock().unwrap();
    r.bodies.push(body.to_vec());
    r.headers.push(headers);
    let code = if r.script.is_empty() { 204 } else { r.script.remove(0) };
    StatusCode::from_u16(code).unwrap()
}

fn start_loki(script: Vec<u16>) -> (u16, Shared, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let state: Shared = Arc::new(Mutex::new(Received { script, ..Default::default() }));
    let app = axum::Router::new().route("/loki/api/v1/push", axum::routing::post(push)).with_state(state.clone());
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    rt.spawn(async move { axum::serve(listener, app).await });
    (port, state, rt)
}

const EVENTS: &str = r#"{"resourceLogs":[
 {"resource":{"attributes":[{"key":"k8s.node.name","value":{"stringValue":"n1"}},{"key":"k8s.namespace.name","value":{"stringValue":"default"}},{"key":"k8s.pod.name","value":{"stringValue":"web-1"}}]},
  "scopeLogs":[{"logRecords":[
   {"timeUnixNano":"1700000000000000300","eventName":"PacketLoss","body":{"stringValue":"drop 3"},"attributes":[{"key":"reason","value":{"stringValue":"NETFILTER_DROP"}}]},
   {"timeUnixNano":"1700000000000000100","eventName":"PacketLoss","body":{"stringValue":"drop 1"}},
   {"timeUnixNano":"1700000000000000200","eventName":"TCPRESET_NOSOCK","body":{"stringValue":"reset"}}]}]},
 {"resource":{"attributes":[{"key":"k8s.node.name","value":{"stringValue":"n1"}}]},
  "scopeLogs":[{"logRecords":[{"timeUnixNano":"1700000000000000150","eventName":"PacketLoss","body":{"stringValue":"host drop"}}]}]}]}"#;

fn gateway(dir: &std::path::Path, http: u16, loki: u16, format: &str) -> Agent {
    let path = dir.join(format!("gw-{format}.yaml"));
    std::fs::write(
        &path,
        format!(
            "receivers:
  otlp:
    protocols:
      http: {{ endpoint: 127.0.0.1:{http} }}
exporters:
  loki:
    endpoint: http://127.0.0.1:{loki}/loki/api/v1/push
    format: {format}
    tenant_id: team-a
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 200ms }}
  prometheus:
    endpoint: ${{env:PODNET_LISTEN}}
service:
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [loki]
    metrics:
      receivers: [otlp]
      exporters: [prometheus]
"
        ),
    )
    .unwrap();
    Agent::start(&["-c", path.to_str().unwrap()], &[])
}

fn wait(state: &Shared, n: usize) {
    for _ in 0..100 {
        if state.lock().unwrap().bodies.len() >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("fewer than {n} pushes arrived");
}

#[test]
fn protobuf_push_with_stream_labels_order_tenant_and_retries() {
    let (loki, state, _rt) = start_loki(vec![503]);
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let agent = gateway(dir.path(), http, loki, "protobuf");
    assert_eq!(http_post(http, "/v1/logs", "application/json", EVENTS.as_bytes()).map(|r| r.0), Some(200));
    wait(&state, 2);
    let r = state.lock().unwrap();
    assert_eq!(r.bodies[0], r.bodies[1], "the 503 was retried with the same push");
    assert_eq!(r.headers[1]["x-scope-orgid"], "team-a");
    assert_eq!(r.headers[1]["content-type"], "application/x-protobuf");
    let raw = snap::raw::Decoder::new().decompress_vec(&r.bodies[1]).expect("snappy");
    let req = PushRequest::decode(raw.as_slice()).expect("Loki PushRequest");
    let streams: Vec<(&str, Vec<(&str, u64)>)> = req
        .streams
        .iter()
        .map(|s| {
            let entries = s.entries.iter().map(|e| {
                let t = e.timestamp.as_ref().unwrap();
                (e.line.as_str(), t.seconds as u64 * 1_000_000_000 + t.nanos as u64)
            });
            (s.labels.as_str(), entries.collect())
        })
        .collect();
    assert_eq!(
        streams,
        vec![
            (
                "{k8s_namespace=\"default\", k8s_node=\"n1\", k8s_pod=\"web-1\", type=\"PacketLoss\"}",
                vec![("drop 1", 1700000000000000100), ("drop 3", 1700000000000000300)]
            ),
            (
                "{k8s_namespace=\"default\", k8s_node=\"n1\", k8s_pod=\"web-1\", type=\"TCPRESET_NOSOCK\"}",
                vec![("reset", 1700000000000000200)]
            ),
            ("{k8s_node=\"n1\", type=\"PacketLoss\"}", vec![("host drop", 1700000000000000150)]),
        ]
    );
    let meta = &req.streams[0].entries[1].structured_metadata;
    assert_eq!(
        (meta[0].name.as_str(), meta[0].value.as_str()),
        ("reason", "NETFILTER_DROP"),
        "non-label attributes are structured metadata"
    );
    drop(r);
    drop(agent);
}

#[test]
fn json_push() {
    let (loki, state, _rt) = start_loki(vec![]);
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let _agent = gateway(dir.path(), http, loki, "json");
    assert_eq!(http_post(http, "/v1/logs", "application/json", EVENTS.as_bytes()).map(|r| r.0), Some(200));
    wait(&state, 1);
    let r = state.lock().unwrap();
    assert_eq!(r.headers[0]["content-type"], "application/json");
    let v: serde_json::Value = serde_json::from_slice(&r.bodies[0]).unwrap();
    let first = &v["streams"][0];
    assert_eq!(first["stream"]["type"], "PacketLoss");
    assert_eq!(first["values"][0][0], "1700000000000000100", "nanoseconds as a string, as Loki's JSON wants");
    assert_eq!(first["values"][0][1], "drop 1");
    assert_eq!(first["values"][1][2]["reason"], "NETFILTER_DROP");
}

#[test]
fn kubeskoop_format_pushes_kubeskoops_stream_with_its_event_lines() {
    let (loki, state, _rt) = start_loki(vec![]);
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let _agent = gateway(dir.path(), http, loki, "kubeskoop");
    assert_eq!(http_post(http, "/v1/logs", "application/json", EVENTS.as_bytes()).map(|r| r.0), Some(200));
    wait(&state, 1);
    let r = state.lock().unwrap();
    assert_eq!(r.headers[0]["content-type"], "application/x-protobuf", "KubeSkoop's sink pushes protobuf");
    let raw = snap::raw::Decoder::new().decompress_vec(&r.bodies[0]).expect("snappy");
    let req = PushRequest::decode(raw.as_slice()).expect("Loki PushRequest");
    // One stream per node, as KubeSkoop's `{job="kubeskoop"} | json` queries expect.
    assert_eq!(req.streams.len(), 1);
    let stream = &req.streams[0];
    assert_eq!(stream.labels, "{instance=\"n1\", job=\"kubeskoop\"}");
    let lines: Vec<serde_json::Value> = stream.entries.iter().map(|e| serde_json::from_str(&e.line).expect("a JSON event line")).collect();
    let types: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["PacketLoss", "PacketLoss", "TCPRESET_NOSOCK", "PacketLoss"], "time-ordered");
    assert!(stream.entries.iter().all(|e| e.structured_metadata.is_empty()));
    let first = &lines[0];
    assert_eq!(first["msg"], "", "a PacketLoss message is its stack, as KubeSkoop's (none asked for here)");
    assert_eq!(first["labels"][0]["name"], "pod", "labels[0] is the pod, as KubeSkoop's LogQL reads it");
    assert_eq!(first["labels"][0]["value"], "web-1");
    assert_eq!(first["labels"][1], serde_json::json!({"name": "namespace", "value": "default"}));
    assert_eq!(first["timestamp"].as_u64(), Some(1700000000000000100));
    assert_eq!(lines[1]["labels"][0], serde_json::json!({"name": "pod", "value": ""}), "the host's event is node level");
    assert_eq!(lines[2]["msg"], "protocol=IP saddr= sport=0 daddr= dport=0  state:TCP_OTHER ", "KubeSkoop's reset message");
}
