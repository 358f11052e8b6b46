//! The real binary: the embedded default pipeline, hot reload by file edit, ConfigMap-style
//! symlink swap and SIGHUP, and an invalid edit that leaves the old pipeline serving.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use podnet_integration::{Agent, sample_value};
use podnet_receiver_procfs::netdev;

const NODE: &str = "it-node";
const SERIES_LABELS: &str = "{k8s_node=\"it-node\",k8s_namespace=\"\",k8s_pod=\"\"}";

fn host_netdev_sum() -> netdev::DeviceCounters {
    netdev::sum_without_loopback(&netdev::parse(&std::fs::read_to_string("/proc/1/net/dev").unwrap()).unwrap())
}

#[test]
fn embedded_default_serves_kubeskoop_netdev_from_the_host_namespace() {
    let before = host_netdev_sum();
    let agent = Agent::start(&[], &[("PODNET_NODE_NAME", NODE), ("PODNET_COLLECTION_INTERVAL", "1s")]);
    agent.wait_until(Duration::from_secs(10), "netdev series", || agent.metrics().contains("kubeskoop_netdev_rxbytes{"));
    let m = agent.metrics();
    let after = host_netdev_sum();
    for (name, lo, hi) in [
        ("kubeskoop_netdev_rxbytes", before.rx_bytes, after.rx_bytes),
        ("kubeskoop_netdev_txbytes", before.tx_bytes, after.tx_bytes),
        ("kubeskoop_netdev_rxpackets", before.rx_packets, after.rx_packets),
        ("kubeskoop_netdev_txpackets", before.tx_packets, after.tx_packets),
        ("kubeskoop_netdev_rxerrors", before.rx_errors, after.rx_errors),
        ("kubeskoop_netdev_txerrors", before.tx_errors, after.tx_errors),
        ("kubeskoop_netdev_rxdropped", before.rx_dropped, after.rx_dropped),
        ("kubeskoop_netdev_txdropped", before.tx_dropped, after.tx_dropped),
    ] {
        let v = sample_value(&m, &format!("{name}{SERIES_LABELS}")).unwrap_or_else(|| panic!("{name} missing:\n{m}"));
        assert!((lo as f64) <= v && v <= hi as f64, "{name} = {v}, outside the /proc/net/dev sums {lo}..={hi}");
        assert!(m.contains(&format!("# TYPE {name} counter\n")), "{name} is a counter");
    }
    // Self-telemetry and the other endpoints.
    assert!(m.contains("podnet_component_up{component_id=\"procfs\",component_kind=\"receiver\",state=\"running\"} 1"), "{m}");
    assert!(m.contains("podnet_receiver_collection_duration_seconds_count{"), "{m}");
    assert_eq!(agent.health("/healthz").unwrap().0, 200);
    let (code, status) = agent.health("/status").unwrap();
    assert_eq!(code, 200);
    assert!(status.contains("\"id\": \"procfs\"") && status.contains("\"state\": \"running\""), "{status}");
    if !Path::new("/proc/net/ip_vs_stats").exists() {
        assert!(status.contains("\"ipvs\": \"no /proc/net/ip_vs_stats: IPVS is not loaded on this node\""), "{status}");
    }
    assert!(agent.stop().success());
}

fn fake_proc(root: &Path, rx_bytes: u64) {
    std::fs::create_dir_all(root.join("1/ns")).unwrap();
    std::fs::create_dir_all(root.join("1/net")).unwrap();
    let _ = symlink("net:[4026531840]", root.join("1/ns/net"));
    // The other files of the host namespace, as captured from a real kernel.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../receivers/procfs/tests/fixtures");
    for (file, fx) in [
        ("snmp", "snmp/kernel-6.18.txt"),
        ("snmp6", "snmp6/kernel-6.18.txt"),
        ("netstat", "netstat/kernel-6.18.txt"),
        ("sockstat", "sockstat/kernel-6.18.txt"),
        ("sockstat6", "sockstat/kernel-6.18-v6.txt"),
        ("softnet_stat", "softnet/kernel-6.18.txt"),
    ] {
        std::fs::copy(fixtures.join(fx), root.join("1/net").join(file)).unwrap();
    }
    let text = format!(
        "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo: 999 9 0 0 0 0 0 0 999 9 0 0 0 0 0 0\n  eth0: {rx_bytes} 10 1 2 0 0 0 0 300 30 3 4 0 0 0 0\n  veth1: 5 1 0 0 0 0 0 0 7 1 0 0 0 0 0 0\n"
    );
    let tmp = root.join("1/net/dev.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, root.join("1/net/dev")).unwrap();
}

#[test]
fn value_equals_the_sum_over_non_loopback_devices_and_follows_it() {
    let dir = tempfile::tempdir().unwrap();
    fake_proc(dir.path(), 100);
    let root = dir.path().to_str().unwrap();
    let agent = Agent::start(&[], &[("PODNET_NODE_NAME", NODE), ("PODNET_COLLECTION_INTERVAL", "200ms"), ("PODNET_PROC_ROOT", root)]);
    let rx = format!("kubeskoop_netdev_rxbytes{SERIES_LABELS}");
    agent.wait_until(Duration::from_secs(10), "rxbytes = 105", || sample_value(&agent.metrics(), &rx) == Some(105.0));
    let m = agent.metrics();
    assert_eq!(sample_value(&m, &format!("kubeskoop_netdev_txbytes{SERIES_LABELS}")), Some(307.0));
    assert_eq!(sample_value(&m, &format!("kubeskoop_netdev_rxdropped{SERIES_LABELS}")), Some(2.0));
    assert_eq!(sample_value(&m, &format!("kubeskoop_netdev_txerrors{SERIES_LABELS}")), Some(3.0));
    fake_proc(dir.path(), 5000);
    agent.wait_until(Duration::from_secs(10), "rxbytes = 5005", || sample_value(&agent.metrics(), &rx) == Some(5005.0));
    // A malformed file: a clear error in the log; the other probes go on, and the last
    // netdev values stay served until they expire.
    std::fs::write(dir.path().join("1/net/dev"), "Inter-|\n face |bytes\n  eth0: 1 2\n").unwrap();
    agent.wait_until(Duration::from_secs(10), "collection error logged", || {
        agent.log_text().contains("line 3: device eth0: expected 16 counters, found 2")
    });
    assert!(!agent.log_text().contains("/net/snmp:"), "{}", agent.log_text());
    let m = agent.metrics();
    assert_eq!(sample_value(&m, &rx), Some(5005.0));
    assert_eq!(sample_value(&m, &format!("kubeskoop_tcp_activeopens{SERIES_LABELS}")), Some(1291.0), "{m}");
}

fn config(receivers: &[&str], extra_receivers: &str, expiration: &str) -> String {
    format!(
        "extensions:
  health_check:
    endpoint: ${{env:PODNET_HEALTH_LISTEN}}
receivers:
  procfs:
    collection_interval: 200ms
{extra_receivers}exporters:
  prometheus:
    endpoint: ${{env:PODNET_LISTEN}}
    naming: otel
    metric_expiration: {expiration}
service:
  extensions: [health_check]
  pipelines:
    metrics:
      receivers: [{}]
      exporters: [prometheus]
",
        receivers.join(", ")
    )
}

const DEVICES: &str = "  procfs/devices:
    collection_interval: 200ms
    netdev:
      per_device: true
";

fn has_device_series(agent: &Agent) -> bool {
    agent.metrics().contains("network_interface_name=")
}

fn up(agent: &Agent, id: &str) -> bool {
    agent.metrics().contains(&format!("podnet_component_up{{component_id=\"{id}\",component_kind=\"receiver\",state=\"running\"}} 1"))
}

#[test]
fn hot_reload_by_edit_symlink_swap_and_sighup() {
    let dir = tempfile::tempdir().unwrap();
    // A ConfigMap volume: config.yaml -> ..data/config.yaml, ..data -> ..v1
    let v1 = dir.path().join("..v1");
    std::fs::create_dir(&v1).unwrap();
    std::fs::write(v1.join("config.yaml"), config(&["procfs"], "", "2s")).unwrap();
    symlink("..v1", dir.path().join("..data")).unwrap();
    symlink("..data/config.yaml", dir.path().join("config.yaml")).unwrap();
    let path = dir.path().join("config.yaml");
    let agent = Agent::start(&["-c", path.to_str().unwrap()], &[("PODNET_NODE_NAME", NODE)]);
    agent.wait_until(Duration::from_secs(10), "host series", || agent.metrics().contains("system_network_io_bytes_total{"));
    assert!(!has_device_series(&agent));

    // 1. Edit in place (through the symlink): a receiver appears.
    std::fs::write(v1.join("config.yaml"), config(&["procfs", "procfs/devices"], DEVICES, "2s")).unwrap();
    agent.wait_until(Duration::from_secs(10), "procfs/devices to appear", || has_device_series(&agent) && up(&agent, "procfs/devices"));

    // 2. ConfigMap-style update: a new directory, and ..data swapped atomically.
    let v2 = dir.path().join("..v2");
    std::fs::create_dir(&v2).unwrap();
    std::fs::write(v2.join("config.yaml"), config(&["procfs"], "", "2s")).unwrap();
    symlink("..v2", dir.path().join("..data_tmp")).unwrap();
    std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
    std::fs::remove_dir_all(&v1).unwrap();
    agent.wait_until(Duration::from_secs(10), "procfs/devices to stop", || !up(&agent, "procfs/devices"));
    agent.wait_until(Duration::from_secs(10), "its series to expire", || !has_device_series(&agent));
    assert!(agent.metrics().contains("system_network_io_bytes_total{"), "the kept receiver still serves");

    // 3. A second swap (the first one's watch must still work), then an invalid one.
    let v3 = dir.path().join("..v3");
    std::fs::create_dir(&v3).unwrap();
    std::fs::write(v3.join("config.yaml"), config(&["procfs", "procfs/devices"], DEVICES, "2s")).unwrap();
    symlink("..v3", dir.path().join("..data_tmp")).unwrap();
    std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
    agent.wait_until(Duration::from_secs(10), "procfs/devices back", || has_device_series(&agent));

    std::fs::write(v3.join("config.yaml"), config(&["procfs", "procfs/devices"], DEVICES, "2s").replace("200ms", "2x")).unwrap();
    agent.wait_until(Duration::from_secs(10), "rejection logged", || agent.log_text().contains("config reload rejected"));
    assert!(agent.log_text().contains("receivers::procfs::collection_interval: invalid duration \"2x\""), "{}", agent.log_text());
    let status = agent.health("/status").unwrap().1;
    assert!(status.contains("\"result\": \"rejected\""), "{status}");
    // The old pipeline keeps serving fresh data.
    let metrics = agent.metrics();
    assert!(has_device_series(&agent) && metrics.contains("podnet_config_reloads_total{result=\"rejected\"} 1"), "{metrics}");
    assert!(metrics.contains("podnet_config_last_reload_success 0"), "{metrics}");

    // 4. SIGHUP re-reads the file: fixed now, with the device receiver removed.
    std::fs::write(v3.join("config.yaml"), config(&["procfs"], "", "2s")).unwrap();
    agent.signal(libc_sighup());
    agent.wait_until(Duration::from_secs(10), "procfs/devices removed again", || !up(&agent, "procfs/devices"));
    assert!(agent.log_text().contains("trigger=\"SIGHUP\"") || agent.log_text().contains("trigger=\"file change\""));
    let metrics = agent.metrics();
    assert!(metrics.contains("podnet_config_last_reload_success 1"), "{metrics}");
    assert!(agent.stop().success());
}

#[test]
fn sighup_alone_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("podnet.yaml");
    std::fs::write(&path, config(&["procfs"], "", "1m")).unwrap();
    let mut agent = Agent::start(&["-c", path.to_str().unwrap()], &[]);
    agent.signal(libc_sighup());
    agent.wait_until(Duration::from_secs(10), "SIGHUP handled", || agent.log_text().contains("trigger=\"SIGHUP\""));
    assert!(agent.is_running());
    assert!(agent.stop().success());
}

#[test]
fn reload_to_a_taken_port_rolls_back() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("podnet.yaml");
    std::fs::write(&path, config(&["procfs"], "", "1m")).unwrap();
    let agent = Agent::start(&["-c", path.to_str().unwrap()], &[]);
    std::fs::write(&path, config(&["procfs"], "", "1m").replace("${env:PODNET_LISTEN}", &format!("127.0.0.1:{taken_port}"))).unwrap();
    agent.wait_until(Duration::from_secs(10), "rollback", || agent.log_text().contains("restoring the previous pipeline"));
    assert!(
        agent.log_text().contains(&format!("exporters::prometheus: cannot start: cannot listen on 127.0.0.1:{taken_port}")),
        "{}",
        agent.log_text()
    );
    agent.wait_until(Duration::from_secs(10), "old endpoint serving again", || {
        agent.health("/status").is_some_and(|(_, b)| b.contains("\"result\": \"rolled_back\""))
    });
    agent.wait_until(Duration::from_secs(10), "series served again", || agent.metrics().contains("system_network_io_bytes_total{"));
}

#[test]
fn invalid_config_at_start_exits_with_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "receivers:\n  procfs:\n    probes: [nope]\n").unwrap();
    let out = std::process::Command::new(podnet_integration::podnet_binary()).args(["run", "-c", path.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "receivers::procfs::probes::0: unknown value \"nope\" (valid values: netdev, tcp, udp, ip, udp6, ip6, tcpext, sock, softnet, ipvs, io, fd)"
        ),
        "{err}"
    );
}

fn libc_sighup() -> i32 {
    1
}

#[test]
fn processor_in_the_pipeline_filters_and_can_be_removed_live() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("podnet.yaml");
    let with_filter = "receivers:
  procfs:
    collection_interval: 200ms
processors:
  filter:
    metrics:
      exclude: ['system\\.network\\.packet\\..*']
exporters:
  prometheus:
    endpoint: ${env:PODNET_LISTEN}
    metric_expiration: 1m
service:
  pipelines:
    metrics:
      receivers: [procfs]
      processors: [filter]
      exporters: [prometheus]
";
    std::fs::write(&path, with_filter).unwrap();
    let agent = Agent::start(&["-c", path.to_str().unwrap()], &[]);
    agent.wait_until(Duration::from_secs(10), "io series", || agent.metrics().contains("system_network_io_bytes_total{"));
    let m = agent.metrics();
    assert!(!m.contains("system_network_packet_count_total{"), "filtered out:\n{m}");
    assert!(m.contains("podnet_component_dropped_total{component_id=\"filter\",component_kind=\"processor\",pipeline=\"metrics\",reason=\"filtered\",signal=\"metrics\"}"), "{m}");
    std::fs::write(&path, with_filter.replace("      processors: [filter]\n", "")).unwrap();
    agent.wait_until(Duration::from_secs(10), "packet series once the filter is gone", || {
        agent.metrics().contains("system_network_packet_count_total{")
    });
    assert!(agent.log_text().contains("processors::filter: defined but not used in any pipeline"), "{}", agent.log_text());
}

#[test]
fn shipped_debug_config_prints_and_writes_otlp_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("metrics.jsonl");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/debug.yaml");
    let agent = Agent::start(
        &["-c", config.to_str().unwrap()],
        &[("PODNET_FILE_PATH", out.to_str().unwrap()), ("PODNET_COLLECTION_INTERVAL", "200ms"), ("PODNET_NODE_NAME", NODE)],
    );
    agent.wait_until(Duration::from_secs(10), "two file lines", || {
        std::fs::read_to_string(&out).map(|t| t.lines().count() >= 2).unwrap_or(false)
    });
    let text = std::fs::read_to_string(&out).unwrap();
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with(
            "{\"resourceMetrics\":[{\"resource\":{\"attributes\":[{\"key\":\"k8s.node.name\",\"value\":{\"stringValue\":\"it-node\"}}"
        ),
        "{first}"
    );
    assert!(first.contains("\"name\":\"system.network.io\"") && first.contains("\"isMonotonic\":true"), "{first}");
    assert!(first.contains("\"aggregationTemporality\":2"), "cumulative: {first}");
    let stdout = agent.stdout_text();
    // Other tests may create network namespaces meanwhile: count-agnostic.
    assert!(stdout.contains("debug: metrics: ") && stdout.contains(" resources, "), "{stdout}");
    assert!(stdout.contains("    system.network.io (counter, By)"), "{stdout}");
    assert!(stdout.contains("    podnet.netdev.device.io (counter, By)"), "{stdout}");
    assert!(stdout.contains("network.io.direction=receive network.interface.name="), "{stdout}");
    // OpenMetrics is served when asked for (and enabled in this config); plain text otherwise.
    let (_, om) =
        podnet_integration::http_get_accept(agent.port, "/metrics", "application/openmetrics-text;version=1.0.0,text/plain;q=0.5").unwrap();
    assert!(om.contains("# TYPE system_network_io_bytes counter\n") && om.contains("system_network_io_bytes_total{"), "{om}");
    assert!(om.ends_with("# EOF\n"), "{om}");
    let text = agent.metrics();
    assert!(text.contains("# TYPE system_network_io_bytes_total counter\n") && !text.contains("# EOF"), "{text}");
}

/// A push-only pipeline (no Prometheus endpoint) still answers the DaemonSet's probes: the
/// health_check extension serves liveness, readiness, the Collector's answer and /status.
#[test]
fn a_push_only_pipeline_answers_health_checks() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/otlp.yaml");
    let otlp_port = podnet_integration::free_port();
    let endpoint = format!("http://127.0.0.1:{otlp_port}");
    let agent = Agent::start(&["-c", config.to_str().unwrap()], &[("PODNET_OTLP_ENDPOINT", endpoint.as_str()), ("PODNET_NODE_NAME", NODE)]);
    assert_eq!(agent.get("/metrics"), None, "otlp.yaml has no scrape endpoint");
    assert_eq!(agent.health("/healthz").map(|(c, _)| c), Some(200));
    assert_eq!(agent.health("/readyz").map(|(c, _)| c), Some(200));
    let (code, body) = agent.health("/").unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!((code, v["status"].as_str()), (200, Some("Server available")), "{body}");
    assert!(v["upSince"].as_str().is_some_and(|s| s.ends_with('Z')) && v["uptime"].as_str().is_some_and(|s| s.ends_with('s')), "{body}");
    let (_, status) = agent.health("/status").unwrap();
    for id in ["\"id\": \"health_check\"", "\"id\": \"netns\"", "\"id\": \"otlp_grpc\"", "\"id\": \"procfs\""] {
        assert!(status.contains(id), "{id} in {status}");
    }
    assert!(agent.stop().success());
}
