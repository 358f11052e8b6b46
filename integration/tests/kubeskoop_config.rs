//! KubeSkoop's exporter config (its `kubeskoop-config` ConfigMap) read as is: the reference
//! configs validate with the warnings they deserve, a malformed one fails with its path, and
//! the agent runs one with KubeSkoop's names on KubeSkoop's port, its sinks as exporters,
//! reloading it when it changes. `podnet convert kubeskoop` prints a pipeline that runs alike.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use podnet_integration::{Agent, free_port, json_lines, podnet_binary, root_or_skip};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kubeskoop").join(name)
}

fn podnet(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(podnet_binary()).args(args).output().expect("podnet");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn kubeskoops_reference_configs_validate_with_what_they_lose_named() {
    let (ok, _, err) = podnet(&["validate", "-c", fixture("helm-default.yaml").to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(err.contains("read as KubeSkoop's exporter config"), "{err}");
    assert!(err.contains("debugmode: KubeSkoop does not read these keys either"), "{err}");

    let (ok, _, err) = podnet(&["validate", "-c", fixture("every-key.yaml").to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(err.contains("probes podnet does not have, left out: metrics::probes::13 (rdma)"), "{err}");
    assert!(err.contains("enableController/controllerAddr: podnet has no KubeSkoop controller"), "{err}");

    // The converted pipeline is a podnet config that validates on its own, and says how
    // KubeSkoop's settings came across.
    let (ok, yaml, err) = podnet(&["convert", "kubeskoop", fixture("every-key.yaml").to_str().unwrap()]);
    assert!(ok, "{err}");
    for expected in [
        "naming: kubeskoop",
        "endpoint: \"0.0.0.0:9102\"",
        "flow: { mode: nic, enable_port_in_label: false, interface_name: \"eth*\", events: false }",
        "packetloss: { stack: true }",
        // The metric probe's types and the event probe's, united.
        "softirq: { softirq_types: [\"net_rx\", \"net_tx\"] }",
        "additional_labels: [\"app=${labels:app}\", \"team=t_${labels:team}\"]",
        "endpoint: \"http://loki-service:3100/loki/api/v1/push\"",
        "path: \"/var/log/kubeskoop-events.jsonl\"",
        "exporters: [stderr, file/sink1, loki/sink2]",
    ] {
        assert!(yaml.contains(expected), "missing {expected:?} in\n{yaml}");
    }
    let dir = tempfile::tempdir().unwrap();
    let converted = dir.path().join("podnet.yaml");
    std::fs::write(&converted, &yaml).unwrap();
    let (ok, _, err) = podnet(&["validate", "-c", converted.to_str().unwrap()]);
    assert!(ok && !err.contains("KubeSkoop's exporter config"), "the converted file is podnet's own format: {err}");

    let (ok, _, err) = podnet(&["validate", "-c", fixture("malformed.yaml").to_str().unwrap()]);
    assert!(!ok && err.contains("metrics::probes::0: missing required key \"name\""), "{err}");
    let (ok, _, err) = podnet(&["validate", "-c", fixture("sink-without-path.yaml").to_str().unwrap()]);
    assert!(!ok && err.contains("event::sinks::0::args::path: the file sink needs path"), "{err}");
}

fn kubeskoop_config(port: u16, events: &Path, metric_probes: &[&str]) -> String {
    let probes: String = metric_probes.iter().map(|p| format!("    - name: {p}\n")).collect();
    format!(
        "address: tcp://127.0.0.1:{port}
enableController: true
metrics:
  probes:
{probes}event:
  probes:
    - name: tcpreset
    - name: packetloss
      args:
        enableStack: false
  sinks:
    - name: stderr
    - name: file
      args:
        path: {}
",
        events.display()
    )
}

#[test]
fn the_agent_runs_kubeskoops_config_and_reloads_it() {
    if !root_or_skip("the config's eBPF probes need root (CI runs as root)") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (config, events) = (dir.path().join("config.yaml"), dir.path().join("events.jsonl"));
    let port = free_port();
    std::fs::write(&config, kubeskoop_config(port, &events, &["netdev", "rdma", "packetloss"])).unwrap();
    let agent = Agent::start_with_port(
        &["-c", config.to_str().unwrap()],
        &[
            ("PODNET_NODE_NAME", "ks-node"),
            ("PODNET_COLLECTION_INTERVAL", "1s"),
            // No container runtime here: the namespaces stay unnamed (node level).
            ("PODNET_CRI_ENDPOINT", "unix:///nonexistent/containerd.sock"),
        ],
        port,
    );
    agent.wait_until(Duration::from_secs(20), "KubeSkoop's netdev series on KubeSkoop's address", || {
        agent.metrics().contains("kubeskoop_netdev_rxbytes{")
    });
    let log = agent.log_text();
    assert!(log.contains("read as KubeSkoop's exporter config"), "{log}");
    assert!(log.contains("metrics::probes::1 (rdma)") && log.contains("enableController"), "{log}");

    // A reset (a connect to a closed port on loopback) reaches both sinks in KubeSkoop's form.
    agent.wait_until(Duration::from_secs(20), "the reset probe", || agent.metrics().contains("probe=\"tcpreset\""));
    let _ = TcpStream::connect_timeout(&"127.0.0.1:1".parse().unwrap(), Duration::from_secs(2));
    agent.wait_until(Duration::from_secs(15), "the reset in the file sink", || {
        json_lines(&events).iter().any(|e| e["type"] == "TCPRESET_NOSOCK" && e["msg"].as_str().unwrap_or("").contains("dport=1 "))
    });
    agent.wait_until(Duration::from_secs(5), "the reset on stderr", || agent.log_text().contains("\"type\":\"TCPRESET_NOSOCK\""));
    assert!(!agent.metrics().contains("kubeskoop_tcp_activeopens"), "tcp is not configured yet");

    // The ConfigMap changes: a probe is added, applied without a restart.
    std::fs::write(&config, kubeskoop_config(port, &events, &["netdev", "tcp", "packetloss"])).unwrap();
    agent.wait_until(Duration::from_secs(20), "the added tcp probe", || agent.metrics().contains("kubeskoop_tcp_activeopens{"));
    assert!(agent.metrics().contains("podnet_config_last_reload_success 1"));
}
