//! The scrape endpoint holds at most `max_series` series: the rest are dropped, counted and
//! named in a warning, and the series already held keep updating.

use std::time::Duration;

use podnet_integration::{Agent, labeled_sum};

/// Series from the store (not podnet's own self-metrics, which carry `component_id`).
fn stored_series(m: &str) -> usize {
    m.lines().filter(|l| !l.starts_with('#') && !l.is_empty() && !l.contains("component_id=")).count()
}

#[test]
fn past_max_series_new_series_are_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("podnet.yaml");
    std::fs::write(
        &config,
        "receivers:
  procfs:
    collection_interval: 200ms
    namespaces: host
    probes: [netdev, tcp, udp, ip, tcpext]
exporters:
  prometheus:
    endpoint: ${env:PODNET_LISTEN}
    max_series: 25
service:
  pipelines:
    metrics:
      receivers: [procfs]
      exporters: [prometheus]
",
    )
    .unwrap();
    let agent = Agent::start(&["-c", config.to_str().unwrap()], &[]);
    agent.wait_until(Duration::from_secs(10), "series dropped at the limit", || {
        labeled_sum(&agent.metrics(), "podnet_exporter_series_dropped_total", &[("reason", "limit")]) > 0.0
    });
    let m = agent.metrics();
    assert_eq!(stored_series(&m), 25, "{m}");
    agent.wait_until(Duration::from_secs(5), "the warning naming the fastest-growing metric", || {
        agent.log_text().contains("max_series = 25") && agent.log_text().contains("grows fastest")
    });
    // The warning is not repeated every collection.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(agent.log_text().matches("grows fastest").count(), 1, "{}", agent.log_text());
}
