//! The `otel`-named scrape output passes `promtool check metrics` (Prometheus' own lint):
//! every procfs and netlink probe with every field, eBPF probes where they attach, and
//! podnet's own metrics. (`kubeskoop` naming keeps KubeSkoop's names on purpose.)

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use podnet_integration::Agent;
use podnet_pipeline::testing::{Lacks, skip};

#[test]
fn otel_names_pass_promtool() {
    let Some(promtool) = ["/usr/bin/promtool", "/usr/local/bin/promtool"].into_iter().find(|p| std::path::Path::new(p).exists()) else {
        return skip(Lacks::Tool, "promtool (Debian's prometheus package; scripts/test.sh installs it)");
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("otel.yaml");
    // SAFETY: geteuid has no preconditions.
    let ebpf = if unsafe { libc::geteuid() } == 0 {
        "  ebpf:\n    collection_interval: 300ms\n    probes:\n      packetloss:\n      tcpretrans:\n      softirq:\n"
    } else {
        ""
    };
    let receivers = if ebpf.is_empty() { "[procfs, netlink]" } else { "[procfs, netlink, ebpf]" };
    std::fs::write(
        &cfg,
        format!(
            "receivers:
  procfs:
    collection_interval: 300ms
    probes: [netdev, tcp, udp, ip, udp6, ip6, tcpext, sock, softnet, ipvs, io, fd]
    tcpext: {{ all_fields: true }}
    netdev: {{ per_device: true }}
    softnet: {{ per_cpu: true }}
  netlink:
    collection_interval: 300ms
{ebpf}exporters:
  prometheus:
    endpoint: ${{env:PODNET_LISTEN}}
    naming: otel
service:
  pipelines:
    metrics:
      receivers: {receivers}
      exporters: [prometheus]
"
        ),
    )
    .unwrap();
    let agent = Agent::start(&["-c", cfg.to_str().unwrap()], &[("PODNET_NODE_NAME", "lint-node")]);
    agent.wait_until(Duration::from_secs(15), "every receiver's series", || {
        let m = agent.metrics();
        m.contains("system_network_io_bytes_total{") && m.contains("system_network_connections{") && m.contains("podnet_component_up{")
    });
    let metrics = agent.metrics();
    promtool_check(promtool, &metrics);
    assert!(metrics.contains("podnet_tcpext_tcp_memory_pressures_chrono_seconds_total") || !metrics.contains("chrono"), "time in seconds");
}

fn promtool_check(promtool: &str, metrics: &str) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child.stdin.take().unwrap().write_all(metrics.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics:\n{said}");
}

/// Every shipped config whose scrape endpoint uses otel naming, as shipped.
#[test]
fn shipped_otel_configs_pass_promtool() {
    let Some(promtool) = ["/usr/bin/promtool", "/usr/local/bin/promtool"].into_iter().find(|p| std::path::Path::new(p).exists()) else {
        return skip(Lacks::Tool, "promtool (Debian's prometheus package; scripts/test.sh installs it)");
    };
    let configs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&configs).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let doc: serde_norway::Value = serde_norway::from_str(&text).unwrap();
        let otel_scrape = doc["exporters"].as_mapping().is_some_and(|m| {
            m.iter().any(|(id, c)| {
                id.as_str().is_some_and(|id| id.split('/').next() == Some("prometheus")) && c["naming"].as_str() == Some("otel")
            })
        });
        if !otel_scrape {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out.jsonl");
        let agent = Agent::start(&["-c", path.to_str().unwrap()], &[("PODNET_FILE_PATH", file.to_str().unwrap())]);
        agent.wait_until(Duration::from_secs(30), "the config's series", || agent.metrics().contains("podnet_component_up{"));
        promtool_check(promtool, &agent.metrics());
        checked.push(path.file_name().unwrap().to_string_lossy().to_string());
    }
    assert!(checked.contains(&"debug.yaml".to_string()), "the shipped otel-named configs: {checked:?}");
}
