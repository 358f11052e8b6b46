//! Faults between podnet and its backends: a Prometheus that goes away for 60 s loses
//! nothing (the in-memory queue holds and retries), and a backend that hangs fills the queue,
//! which then drops with a counted reason while collection goes on.

use std::time::Duration;

use podnet_integration::backends::{self, Server};
use podnet_integration::{Agent, free_port, http_get, series_sum};

fn prometheus(dir: &std::path::Path, port: u16) -> Server {
    backends::prometheus(dir, port, &[])
}

/// Samples of the 8 netdev series carrying `label="value"` stored in Prometheus
/// (count_over_time per series: across series it would merge label sets once the names are
/// dropped).
fn stored(port: u16, label: &str, value: &str) -> f64 {
    let mut total = 0.0;
    for dir in ["rx", "tx"] {
        for what in ["bytes", "packets", "errors", "dropped"] {
            let q = format!("count_over_time(kubeskoop_netdev_{dir}{what}%7B{label}%3D%22{value}%22%7D%5B30m%5D)");
            let Some((200, body)) = http_get(port, &format!("/api/v1/query?query={q}")) else { return 0.0 };
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            total += v["data"]["result"][0]["value"][1].as_str().and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
        }
    }
    total
}

fn stored_samples(port: u16) -> f64 {
    stored(port, "source", "rw")
}

#[test]
fn a_backend_down_for_60s_loses_no_sample() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("prometheus.yml"), "global:\n  scrape_interval: 1h\n").unwrap();
    let port = free_port();
    let mut prom = prometheus(dir.path(), port);
    let cfg = dir.path().join("podnet.yaml");
    std::fs::write(
        &cfg,
        format!(
            "receivers:
  procfs:
    collection_interval: 1s
    namespaces: host
    probes: [netdev]
exporters:
  prometheus:
    endpoint: ${{env:PODNET_LISTEN}}
  prometheus_remote_write:
    endpoint: http://127.0.0.1:{port}/api/v1/write
    naming: kubeskoop
    external_labels: {{ source: rw }}
    retry_on_failure: {{ initial_interval: 200ms, max_interval: 2s, max_elapsed_time: 10m }}
service:
  pipelines:
    metrics:
      receivers: [procfs]
      exporters: [prometheus, prometheus_remote_write]
"
        ),
    )
    .unwrap();
    let agent = Agent::start(&["-c", cfg.to_str().unwrap()], &[]);
    agent.wait_until(Duration::from_secs(20), "first samples stored", || stored_samples(port) > 0.0);

    // The backend goes away for 60 s while podnet keeps collecting.
    prom.kill();
    std::thread::sleep(Duration::from_secs(60));
    assert!(agent.log_text().contains("send failed, retrying"), "{}", agent.log_text());
    let _prom = prometheus(dir.path(), port);

    // Once the queue has drained, every collection (8 series each) is in Prometheus, but
    // for the last few still on their way, and nothing was dropped.
    let collections = |m: &str| series_sum(m, "podnet_receiver_collection_duration_seconds_count");
    agent.wait_until(Duration::from_secs(90), "the queue to drain into Prometheus", || {
        let c = collections(&agent.metrics());
        stored_samples(port) >= 8.0 * (c - 3.0)
    });
    let m = agent.metrics();
    assert!(!m.contains("podnet_component_dropped_total{component_id=\"prometheus_remote_write\""), "nothing dropped:\n{m}");
    // Over 60 s of outage at 1 collection/s and 8 series, at least 400 samples were held.
    assert!(stored_samples(port) >= 8.0 * 60.0, "{}", stored_samples(port));
}

/// An agent whose remote write goes to a backend that accepts connections and never
/// answers, with `sending_queue` as given; netdev collected every 100 ms.
fn agent_with_hanging_backend(sending_queue: &str) -> (Agent, tempfile::TempDir) {
    let hang = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hang.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in hang.incoming().flatten() {
            held.push(c);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("podnet.yaml");
    std::fs::write(
        &cfg,
        format!(
            "receivers:
  procfs:
    collection_interval: 100ms
    namespaces: host
    probes: [netdev]
exporters:
  prometheus:
    endpoint: ${{env:PODNET_LISTEN}}
  prometheus_remote_write:
    endpoint: http://127.0.0.1:{port}/api/v1/write
    timeout: 30s
    sending_queue: {sending_queue}
service:
  pipelines:
    metrics:
      receivers: [procfs]
      exporters: [prometheus, prometheus_remote_write]
"
        ),
    )
    .unwrap();
    (Agent::start(&["-c", cfg.to_str().unwrap()], &[]), dir)
}

#[test]
fn a_hanging_backend_fills_the_queue_which_drops_and_never_blocks_collection() {
    let (agent, _dir) = agent_with_hanging_backend("{ queue_size: 2 }");
    let collections = |m: &str| series_sum(m, "podnet_receiver_collection_duration_seconds_count");
    agent.wait_until(Duration::from_secs(20), "drops for a full queue", || agent.metrics().contains("reason=\"queue_full\""));
    let before = collections(&agent.metrics());
    std::thread::sleep(Duration::from_secs(1));
    let after = collections(&agent.metrics());
    assert!(after >= before + 5.0, "collection goes on while the backend hangs: {before} → {after}");
    assert!(agent.log_text().contains("sending queue is full"), "{}", agent.log_text());
    let m = agent.metrics();
    assert!(m.contains("podnet_exporter_queue_capacity{component_id=\"prometheus_remote_write\",component_kind=\"exporter\"} 2"), "{m}");
    // Two queued and one being sent (to the backend that never answers).
    assert!(m.contains("podnet_exporter_queue_size{component_id=\"prometheus_remote_write\",component_kind=\"exporter\"} 3"), "{m}");
}

fn stored_run(port: u16, run: &str) -> f64 {
    stored(port, "run", run)
}

#[test]
fn the_on_disk_queue_survives_a_podnet_restart() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("prometheus.yml"), "global:\n  scrape_interval: 1h\n").unwrap();
    let port = free_port();
    let mut prom = prometheus(dir.path(), port);
    let queue_dir = dir.path().join("queue");
    let config = |run: &str| {
        let cfg = dir.path().join(format!("podnet-{run}.yaml"));
        std::fs::write(
            &cfg,
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
    endpoint: http://127.0.0.1:{port}/api/v1/write
    naming: kubeskoop
    external_labels: {{ run: '{run}' }}
    sending_queue: {{ directory: {} }}
    retry_on_failure: {{ initial_interval: 200ms, max_interval: 1s, max_elapsed_time: 10m }}
service:
  pipelines:
    metrics:
      receivers: [procfs]
      exporters: [prometheus, prometheus_remote_write]
",
                queue_dir.display()
            ),
        )
        .unwrap();
        cfg
    };
    let first = Agent::start(&["-c", config("1").to_str().unwrap()], &[]);
    first.wait_until(Duration::from_secs(20), "first samples stored", || stored_run(port, "1") > 0.0);
    prom.kill();
    std::thread::sleep(Duration::from_secs(5));
    let collected = series_sum(&first.metrics(), "podnet_receiver_collection_duration_seconds_count");
    assert!(first.stop().success());
    let queued = std::fs::read_dir(&queue_dir).unwrap().count();
    assert!(queued >= 5, "batches wait on disk while podnet is down: {queued}");

    // Backend back, podnet restarted: the first run's batches are sent from disk.
    let _prom = prometheus(dir.path(), port);
    let second = Agent::start(&["-c", config("2").to_str().unwrap()], &[]);
    second.wait_until(Duration::from_secs(60), "the first run's batches delivered", || stored_run(port, "1") >= 8.0 * (collected - 1.0));
    second.wait_until(Duration::from_secs(30), "the queue directory drained", || {
        std::fs::read_dir(&queue_dir).map(|d| d.count()).unwrap_or(0) <= 1
    });
    assert!(second.log_text().contains("resuming batches queued on disk"), "{}", second.log_text());
}

#[test]
fn the_queue_is_bounded_in_bytes_too() {
    // Room for a thousand batches, but 1 byte: one batch at a time (an empty queue takes
    // any one batch, however large).
    let (agent, _dir) = agent_with_hanging_backend("{ queue_size: 1000, max_bytes: 1 }");
    agent.wait_until(Duration::from_secs(20), "drops for a queue full in bytes", || {
        agent.metrics().contains("component_id=\"prometheus_remote_write\",component_kind=\"exporter\",reason=\"queue_full\"")
    });
    std::thread::sleep(Duration::from_millis(500));
    let m = agent.metrics();
    assert!(m.contains("podnet_exporter_queue_size{component_id=\"prometheus_remote_write\",component_kind=\"exporter\"} 1"), "{m}");
}
