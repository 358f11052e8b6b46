//! Every file in configs/ must load, and the embedded default must be configs/node.yaml.

use podnet_pipeline::config::{ConfigSource, load};

#[test]
fn every_shipped_config_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("configs/ exists") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let config = load(&ConfigSource::File(path.clone()), &podnet::registry()).unwrap_or_else(|e| panic!("{e}"));
            assert!(config.warnings.is_empty(), "{}: {:?}", path.display(), config.warnings);
            checked += 1;
        }
    }
    assert!(checked >= 2, "found only {checked} configs");
}

#[test]
fn daemonset_configmap_is_valid() {
    let manifest = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../kubernetes/daemonset.yaml")).unwrap();
    let start = manifest.find("  config.yaml: |\n").expect("config.yaml key") + "  config.yaml: |\n".len();
    let body: String = manifest[start..]
        .lines()
        .take_while(|l| l.starts_with("    ") || l.is_empty())
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    let config =
        podnet_pipeline::config::load_str(&body, "daemonset.yaml", &podnet::registry(), |_| None).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let kubeskoop = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/kubeskoop.yaml")).unwrap();
    assert_eq!(body.trim_end(), kubeskoop.trim_end(), "the DaemonSet's ConfigMap is configs/kubeskoop.yaml verbatim");
    // The image distro/image/build.sh makes for this version, never a moving tag.
    let image = format!("image: podnet:{}\n", env!("CARGO_PKG_VERSION"));
    assert!(manifest.contains(&image) && !manifest.contains(":latest"), "the DaemonSet runs {image}");
    // What integration/tests/image.rs runs the image with.
    assert!(manifest.contains("readOnlyRootFilesystem: true"), "the DaemonSet's root filesystem is read-only");
    assert!(
        manifest.contains("drop: [ALL]\n              add: [SYS_ADMIN, SYS_PTRACE, NET_ADMIN, BPF, PERFMON, DAC_READ_SEARCH]\n")
            && manifest.contains("allowPrivilegeEscalation: false")
            && manifest.contains("type: RuntimeDefault"),
        "the capability set, no privilege escalation and the default seccomp profile, as image.rs runs them"
    );
}

/// configs/kubeskoop.yaml with its commented-out latency probes switched on.
fn kubeskoop_with_latency_probes() -> String {
    let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/kubeskoop.yaml")).unwrap();
    const PROBES: [&str; 6] = ["softirq", "netiftxlat", "socketlatency", "kernellatency", "virtcmdlatency", "biolatency"];
    let is_probe = |line: &str| line.strip_prefix("      # ").and_then(|r| r.strip_suffix(':')).is_some_and(|p| PROBES.contains(&p));
    let mut out = String::new();
    let mut in_probe = false;
    for line in text.lines() {
        let uncommented = if is_probe(line) {
            in_probe = true;
            line.replacen("      # ", "      ", 1)
        } else if in_probe && line.starts_with("      #   ") {
            line.replacen("      #   ", "        ", 1)
        } else {
            in_probe = false;
            line.to_string()
        };
        out.push_str(&uncommented);
        out.push('\n');
    }
    out
}

#[test]
fn the_commented_latency_probes_of_kubeskoop_yaml_are_valid() {
    let text = kubeskoop_with_latency_probes();
    let config =
        podnet_pipeline::config::load_str(&text, "kubeskoop.yaml", &podnet::registry(), |_| None).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    for probe in ["softirq:", "netiftxlat:", "socketlatency:", "kernellatency:", "virtcmdlatency:", "biolatency:"] {
        assert!(text.contains(&format!("\n      {probe}\n")), "{probe} uncommented\n{text}");
    }
    assert!(text.contains("        softirq_types: [net_rx, net_tx]\n"));
}

#[test]
fn the_commented_flow_probe_of_node_yaml_is_valid() {
    let text = podnet::DEFAULT_CONFIG.replace("      # flow:\n      #   max_flows: 10240\n", "      flow:\n        max_flows: 10240\n");
    assert_ne!(text, podnet::DEFAULT_CONFIG, "node.yaml carries the flow probe commented out");
    let config =
        podnet_pipeline::config::load_str(&text, "node.yaml", &podnet::registry(), |_| None).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn embedded_default_is_node_yaml() {
    let on_disk = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/node.yaml")).unwrap();
    assert_eq!(podnet::DEFAULT_CONFIG, on_disk);
}

#[test]
fn components_listing_names_every_component_and_probe() {
    let listing = podnet::components_listing();
    for needle in [
        "extension netns",
        "receiver  procfs",
        "probe netdev",
        "probe tcpext",
        "overhead low",
        "receiver  netlink",
        "probe tcpsummary",
        "overhead medium",
        "processor filter",
        "exporter  prometheus",
        "exporter  debug",
        "exporter  file",
        "exporter  stderr",
        "receiver  ebpf",
        "probe packetloss",
        "probe socketlatency",
        "probe virtcmdlatency",
        "probe tcpreset",
        "probe tcpretrans",
    ] {
        assert!(listing.contains(needle), "missing {needle:?} in\n{listing}");
    }
}

/// The manifests `kubectl apply -k distro/kubernetes` applies (Debian ships no kubectl to
/// render them with, so their structure is checked here): every listed file exists and is
/// YAML, and the Service and ServiceMonitor select the DaemonSet's pods and named port.
#[test]
fn the_kustomization_holds_together() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../kubernetes");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let kustomization: serde_norway::Value = serde_norway::from_str(&read("kustomization.yaml")).unwrap();
    let resources: Vec<&str> = kustomization["resources"].as_sequence().unwrap().iter().filter_map(|r| r.as_str()).collect();
    assert_eq!(resources, ["daemonset.yaml", "service.yaml", "servicemonitor.yaml"]);
    let mut kinds = Vec::new();
    for name in &resources {
        for doc in read(name).split("\n---\n") {
            let v: serde_norway::Value = serde_norway::from_str(doc).unwrap_or_else(|e| panic!("{name}: {e}"));
            kinds.push((v["kind"].as_str().unwrap_or_default().to_string(), v));
        }
    }
    let get = |kind: &str| &kinds.iter().find(|(k, _)| k == kind).unwrap_or_else(|| panic!("no {kind}")).1;
    let pod_labels = &get("DaemonSet")["spec"]["template"]["metadata"]["labels"];
    let ports = get("DaemonSet")["spec"]["template"]["spec"]["containers"][0]["ports"].as_sequence().unwrap().clone();
    assert!(ports.iter().any(|p| p["name"] == "metrics" && p["containerPort"] == 9102), "{ports:?}");
    let service = get("Service");
    for (k, v) in service["spec"]["selector"].as_mapping().unwrap() {
        assert_eq!(&pod_labels[k], v, "the Service selects the DaemonSet's pods");
    }
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "metrics");
    let monitor = get("ServiceMonitor");
    for (k, v) in monitor["spec"]["selector"]["matchLabels"].as_mapping().unwrap() {
        assert_eq!(&service["metadata"]["labels"][k], v, "the ServiceMonitor selects the Service");
    }
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
}
