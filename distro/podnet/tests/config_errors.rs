//! Bad configs, each with the exact message a user sees.

use podnet_pipeline::config::load_str;

fn errors(yaml: &str) -> Vec<String> {
    match load_str(yaml, "test.yaml", &podnet::registry(), |name| match name {
        "PODNET_LISTEN" => Some("127.0.0.1:9999".to_string()),
        _ => None,
    }) {
        Ok(_) => panic!("config was accepted:\n{yaml}"),
        Err(e) => e.lines(),
    }
}

fn warnings(yaml: &str) -> Vec<String> {
    load_str(yaml, "test.yaml", &podnet::registry(), |_| None).expect("valid config").warnings
}

const PIPELINE: &str = "
service:
  pipelines:
    metrics:
      receivers: [procfs]
      exporters: [prometheus]
";

fn with_pipeline(components: &str) -> String {
    format!("{components}{PIPELINE}")
}

#[test]
fn invalid_duration_names_the_path() {
    let yaml = "
receivers:
  procfs/pods:
    collection_interval: 5x
exporters:
  prometheus:
service:
  pipelines:
    metrics:
      receivers: [procfs/pods]
      exporters: [prometheus]
";
    assert_eq!(
        errors(yaml),
        ["receivers::procfs/pods::collection_interval: invalid duration \"5x\" (write a number and a unit: 500ms, 15s, 5m, 1h)"]
    );
}

#[test]
fn duration_without_unit() {
    assert_eq!(
        errors(&with_pipeline("receivers:\n  procfs:\n    collection_interval: 15\nexporters:\n  prometheus:\n")),
        ["receivers::procfs::collection_interval: invalid duration 15: add a unit, like \"15s\""]
    );
}

#[test]
fn unknown_key_lists_the_valid_keys() {
    assert_eq!(
        errors(&with_pipeline("receivers:\n  procfs:\n    colection_interval: 5s\nexporters:\n  prometheus:\n")),
        [
            "receivers::procfs: unknown key \"colection_interval\" (valid keys: collection_interval, root_path, namespaces, netns_extension, names_path, probes, netdev, tcpext, softnet)"
        ]
    );
}

#[test]
fn unknown_nested_key() {
    assert_eq!(
        errors(&with_pipeline("receivers:\n  procfs:\n    netdev: { per_devices: true }\nexporters:\n  prometheus:\n")),
        ["receivers::procfs::netdev: unknown key \"per_devices\" (valid keys: per_device)"]
    );
}

#[test]
fn unknown_top_level_section() {
    assert_eq!(
        errors(&with_pipeline("receiver:\n  procfs:\nexporters:\n  prometheus:\n")),
        ["unknown key \"receiver\" (valid keys: receivers, processors, exporters, extensions, connectors, service)"]
    );
}

#[test]
fn unknown_component_type_lists_the_choices() {
    assert_eq!(
        errors(&with_pipeline("receivers:\n  procfs:\n  hostmetrics:\nexporters:\n  prometheus:\n")),
        ["receivers::hostmetrics: unknown type \"hostmetrics\" (valid receiver types: ebpf, netlink, otlp, procfs)"]
    );
}

#[test]
fn unknown_probe_lists_the_probes() {
    assert_eq!(
        errors(&with_pipeline("receivers:\n  procfs:\n    probes: [netdev, nosuch]\nexporters:\n  prometheus:\n")),
        [
            "receivers::procfs::probes::1: unknown value \"nosuch\" (valid values: netdev, tcp, udp, ip, udp6, ip6, tcpext, sock, softnet, ipvs, io, fd)"
        ]
    );
}

#[test]
fn unknown_naming_mode() {
    assert_eq!(
        errors(&with_pipeline("receivers:\n  procfs:\nexporters:\n  prometheus:\n    naming: kubeskop\n")),
        ["exporters::prometheus::naming: unknown value \"kubeskop\" (valid values: otel, kubeskoop)"]
    );
}

#[test]
fn pipeline_references_an_undefined_component() {
    let yaml = "
receivers:
  procfs:
exporters:
  prometheus:
service:
  pipelines:
    metrics:
      receivers: [procfs, procfs/pods]
      exporters: [prometheus, otlp_grpc]
";
    assert_eq!(
        errors(yaml),
        [
            "service::pipelines::metrics: references receiver \"procfs/pods\" which is not configured",
            "service::pipelines::metrics: references exporter \"otlp_grpc\" which is not configured",
        ]
    );
}

#[test]
fn pipeline_without_receiver_or_exporter() {
    let yaml = "
receivers:
  procfs:
exporters:
  prometheus:
service:
  pipelines:
    metrics:
      exporters: [prometheus]
    metrics/b:
      receivers: [procfs]
";
    assert_eq!(
        errors(yaml),
        ["service::pipelines::metrics: must have at least one receiver", "service::pipelines::metrics/b: must have at least one exporter"]
    );
}

#[test]
fn no_pipelines() {
    assert_eq!(
        errors("receivers:\n  procfs:\nexporters:\n  prometheus:\n"),
        ["service must have at least one pipeline (add service::pipelines)"]
    );
}

#[test]
fn signal_the_component_does_not_carry() {
    let yaml = "
receivers:
  procfs:
exporters:
  prometheus:
service:
  pipelines:
    logs:
      receivers: [procfs]
      exporters: [prometheus]
";
    assert_eq!(
        errors(yaml),
        [
            "service::pipelines::logs: receiver \"procfs\" does not support logs (it supports metrics)",
            "service::pipelines::logs: exporter \"prometheus\" does not support logs (it supports metrics)",
        ]
    );
}

#[test]
fn traces_pipeline_is_not_a_podnet_signal() {
    let yaml = "
receivers:
  procfs:
exporters:
  prometheus:
service:
  pipelines:
    traces:
      receivers: [procfs]
      exporters: [prometheus]
";
    assert_eq!(errors(yaml), ["service::pipelines::traces: unknown signal \"traces\" (podnet pipelines carry metrics or logs)"]);
}

#[test]
fn component_listed_twice() {
    let yaml = "
receivers:
  procfs:
exporters:
  prometheus:
service:
  pipelines:
    metrics:
      receivers: [procfs]
      exporters: [prometheus, prometheus]
";
    assert_eq!(errors(yaml), ["service::pipelines::metrics: references exporter \"prometheus\" multiple times"]);
}

#[test]
fn invalid_component_id() {
    assert_eq!(
        errors(&with_pipeline("receivers:\n  procfs:\n  procfs/:\nexporters:\n  prometheus:\n")),
        ["receivers::procfs/: in \"procfs/\" id: the part after / should not be empty"]
    );
}

#[test]
fn component_validation_message() {
    assert_eq!(
        errors(&with_pipeline("receivers:\n  procfs:\n    root_path: host/proc\nexporters:\n  prometheus:\n    endpoint: \"9102\"\n")),
        [
            "receivers::procfs: root_path \"host/proc\" must be an absolute path",
            "exporters::prometheus: endpoint \"9102\" must be host:port, like \"0.0.0.0:9102\"",
        ]
    );
}

#[test]
fn wrong_type() {
    assert_eq!(
        errors(&with_pipeline("receivers:\n  procfs:\n    probes: netdev\nexporters:\n  prometheus:\n")),
        ["receivers::procfs::probes: invalid type: found string \"netdev\", expected a sequence"]
    );
}

#[test]
fn bad_env_reference() {
    assert_eq!(
        errors(&with_pipeline("receivers:\n  procfs:\nexporters:\n  prometheus:\n    endpoint: ${env:PODNET-LISTEN}\n")),
        ["line 5: environment variable \"PODNET-LISTEN\" has invalid name: must match regex ^[a-zA-Z_][a-zA-Z0-9_]*$"]
    );
}

#[test]
fn empty_file() {
    assert_eq!(errors("# nothing here\n\n"), ["empty configuration file"]);
}

#[test]
fn yaml_syntax_error_has_a_position() {
    let e = errors("receivers:\n  procfs: [\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].contains("line 3"), "{e:?}");
}

#[test]
fn deprecated_logging_exporter_is_an_unknown_type() {
    assert_eq!(
        errors(&with_pipeline("receivers:\n  procfs:\nexporters:\n  prometheus:\n  logging:\n")),
        [
            "exporters::logging: unknown type \"logging\" (valid exporter types: control, debug, file, loki, otlp_grpc, otlp_http, prometheus, prometheus_remote_write, stderr)"
        ]
    );
}

#[test]
fn unused_components_are_warnings() {
    let w = warnings(&with_pipeline("receivers:\n  procfs:\n  procfs/spare:\nexporters:\n  prometheus:\n  debug:\n"));
    assert_eq!(
        w,
        [
            "receivers::procfs/spare: defined but not used in any pipeline; it will not run",
            "exporters::debug: defined but not used in any pipeline; it will not run",
        ]
    );
}

#[test]
fn env_expansion_with_defaults() {
    let c = load_str(
        &with_pipeline("receivers:\n  procfs:\nexporters:\n  prometheus:\n    endpoint: ${env:PODNET_LISTEN:-0.0.0.0:9102}\n    path: ${env:NOPE:-/m}\n"),
        "t",
        &podnet::registry(),
        |n| (n == "PODNET_LISTEN").then(|| "127.0.0.1:9999".to_string()),
    )
    .unwrap();
    let yaml = c.to_yaml();
    assert!(yaml.contains("endpoint: 127.0.0.1:9999"), "{yaml}");
    assert!(yaml.contains("path: /m"), "{yaml}");
}

#[test]
fn remote_write_needs_an_endpoint_and_keeps_its_headers() {
    let yaml = "
receivers:
  procfs:
exporters:
  prometheusremotewrite:
    headers: { Content-Type: text/plain }
    endpoint: http://x/api/v1/write
  prometheus_remote_write/b:
service:
  pipelines:
    metrics:
      receivers: [procfs]
      exporters: [prometheusremotewrite, prometheus_remote_write/b]
";
    assert_eq!(
        errors(yaml),
        [
            "exporters::prometheus_remote_write/b: requires a non-empty \"endpoint\" (http(s)://host:port/api/v1/write)",
            "exporters::prometheusremotewrite: headers: \"Content-Type\" is set by the exporter and cannot be overridden",
        ]
    );
}

#[test]
fn file_rotation_is_checked() {
    let yaml = "receivers:\n  procfs:\nexporters:\n  file:\n    path: /tmp/x.jsonl\n    rotation: { max_megabytes: 0 }\nservice:\n  pipelines:\n    metrics:\n      receivers: [procfs]\n      exporters: [file]\n";
    assert_eq!(errors(yaml), ["exporters::file: rotation::max_megabytes must be at least 1 (remove rotation to never rotate)"]);
    let yaml = "receivers:\n  procfs:\nexporters:\n  file:\n    path: /tmp/x.jsonl\n    rotation: { max_megabyte: 10 }\nservice:\n  pipelines:\n    metrics:\n      receivers: [procfs]\n      exporters: [file]\n";
    let e = errors(yaml);
    assert!(e[0].contains("exporters::file::rotation") && e[0].contains("max_megabytes"), "{e:?}");
}

#[test]
fn otlp_size_limits_are_checked() {
    let otlp = |protocols: &str| {
        errors(&format!(
            "receivers:\n  otlp:\n    protocols:\n{protocols}exporters:\n  debug:\nservice:\n  pipelines:\n    logs:\n      receivers: [otlp]\n      exporters: [debug]\n"
        ))
    };
    assert_eq!(
        otlp("      grpc: { max_recv_msg_size_mib: 0 }\n"),
        ["receivers::otlp: protocols::grpc::max_recv_msg_size_mib must be 1 to 2048, got 0"]
    );
    assert_eq!(
        otlp("      http: { max_recv_msg_size_mib: 16 }\n"),
        ["receivers::otlp: protocols::http::max_recv_msg_size_mib is a gRPC setting; for HTTP set max_request_body_size"]
    );
    assert_eq!(
        otlp("      http: { max_request_body_size: 0 }\n"),
        ["receivers::otlp: protocols::http::max_request_body_size must be at least 1 byte"]
    );
    let ok = "receivers:\n  otlp:\n    protocols:\n      grpc: { max_recv_msg_size_mib: 16 }\n      http: { max_request_body_size: 1048576 }\nexporters:\n  debug:\nservice:\n  pipelines:\n    logs:\n      receivers: [otlp]\n      exporters: [debug]\n";
    assert!(load_str(ok, "t", &podnet::registry(), |_| None).is_ok());
}

#[test]
fn otlp_protocols_listed_are_on_and_others_off() {
    let c = load_str(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\nexporters:\n  debug:\nservice:\n  pipelines:\n    logs:\n      receivers: [otlp]\n      exporters: [debug]\n",
        "t",
        &podnet::registry(),
        |_| None,
    )
    .unwrap();
    let yaml = c.to_yaml();
    assert!(yaml.contains("grpc:\n        endpoint: ''") && yaml.contains("http: null"), "{yaml}");
}

fn ebpf_errors(receiver: &str) -> Vec<String> {
    errors(&format!(
        "receivers:
  ebpf:
{receiver}exporters:
  prometheus:
service:
  pipelines:
    metrics:
      receivers: [ebpf]
      exporters: [prometheus]
"
    ))
}

#[test]
fn ebpf_probe_options_are_checked() {
    let e = ebpf_errors("    probes:\n      packetlos:\n");
    assert!(e[0].contains("receivers::ebpf::probes") && e[0].contains("packetlos") && e[0].contains("packetloss"), "{e:?}");
    let e = ebpf_errors("    probes:\n      packetloss: { hook: fentry }\n");
    assert!(e[0].contains("receivers::ebpf::probes::packetloss::hook") && e[0].contains("tp_btf"), "{e:?}");
    let e = ebpf_errors("    probes:\n      tcpreset: { max_flows: 10 }\n");
    assert_eq!(e, ["receivers::ebpf: probes::tcpreset::max_flows: tcpreset keeps no flow table; remove the key"]);
    let e = ebpf_errors("    ring_buffer_size: 5000\n    probes:\n      tcpreset:\n");
    assert_eq!(e, ["receivers::ebpf: ring_buffer_size must be a power of two of at least 4096 bytes, got 5000"]);
    let e = ebpf_errors("    probes: {}\n");
    assert_eq!(
        e,
        [
            "receivers::ebpf: probes must enable at least one probe (valid probes: packetloss, tcpreset, tcpretrans, softirq, netiftxlat, socketlatency, kernellatency, virtcmdlatency, biolatency, flow)"
        ]
    );
}

#[test]
fn latency_probe_options_are_checked() {
    let e = ebpf_errors("    probes:\n      softirq: { softirq_types: [net_rx, nett_tx] }\n");
    assert_eq!(
        e,
        [
            "receivers::ebpf: probes::softirq::softirq_types: unknown softirq type \"nett_tx\" (valid types: hi, timer, net_tx, net_rx, block, irq_poll, tasklet, sched, hrtimer, rcu)"
        ]
    );
    let e = ebpf_errors("    probes:\n      socketlatency: { thresholds: [100ms, 1ms] }\n");
    assert_eq!(e, ["receivers::ebpf: probes::socketlatency::thresholds: expected [low, high] with 0 < low < high, got [100ms, 1ms]"]);
    let e = ebpf_errors("    probes:\n      netiftxlat: { softirq_types: [net_rx] }\n");
    assert_eq!(e, ["receivers::ebpf: probes::netiftxlat::softirq_types: only the softirq probe takes this key; remove it"]);
    let e = ebpf_errors("    probes:\n      packetloss: { event_threshold: 10ms }\n");
    assert_eq!(e, ["receivers::ebpf: probes::packetloss::event_threshold: only the latency probes take this key; remove it"]);
    let e = ebpf_errors("    probes:\n      biolatency: { max_flows: 10 }\n");
    assert_eq!(
        e,
        [
            "receivers::ebpf: probes::biolatency::max_flows: latency probes keep no flow table; remove the key (max_inflight sizes their tables)"
        ]
    );
    let e = ebpf_errors("    probes:\n      softirq: { hook: kprobe }\n");
    assert_eq!(e, ["receivers::ebpf: probes::softirq::hook: kprobe is not a hook of this probe (valid hooks: auto, tp_btf, tracepoint)"]);
    let e = ebpf_errors("    probes:\n      kernellatency: { max_inflight: 0 }\n");
    assert_eq!(e, ["receivers::ebpf: probes::kernellatency::max_inflight must be at least 1"]);
    let e = ebpf_errors("    probes:\n      socketlatency: { event_threshold: 100 }\n");
    assert!(e[0].contains("probes::socketlatency::event_threshold") && e[0].contains("add a unit"), "{e:?}");
    let e = ebpf_errors("    probes:\n      softirq: { stack: true }\n");
    assert_eq!(e, ["receivers::ebpf: probes::softirq::stack: latency events carry no stack; remove the key"]);
}

#[test]
fn flow_probe_options_are_checked() {
    let e = ebpf_errors("    probes:\n      flow: { interface_name: eth0 }\n");
    assert_eq!(
        e,
        [
            "receivers::ebpf: probes::flow::interface_name: only nic mode attaches to a device; add `mode: nic` (pods mode sees every pod's devices)"
        ]
    );
    let e = ebpf_errors("    probes:\n      flow: { mode: nic, interface_name: \"eth 0\" }\n");
    assert_eq!(
        e,
        ["receivers::ebpf: probes::flow::interface_name: \"eth 0\" is not a device name or a prefix ending with * (e.g. eth0, eth*)"]
    );
    let e = ebpf_errors("    probes:\n      flow: { mode: nic, hook: tp_btf }\n");
    assert_eq!(e, ["receivers::ebpf: probes::flow::hook: tp_btf is not a hook of this probe in nic mode (valid hooks: auto, tcx, tc)"]);
    let e = ebpf_errors("    probes:\n      flow: { hook: tcx }\n");
    assert_eq!(
        e,
        ["receivers::ebpf: probes::flow::hook: tcx is not a hook of this probe in pods mode (valid hooks: auto, tp_btf, tracepoint)"]
    );
    let e = ebpf_errors("    probes:\n      flow: { aggregate_ephemeral_ports: false }\n");
    assert_eq!(
        e,
        [
            "receivers::ebpf: probes::flow::aggregate_ephemeral_ports: flows have no ports unless enable_port_in_label is true; remove the key or enable ports"
        ]
    );
    let e = ebpf_errors("    probes:\n      packetloss: { interface_name: eth0 }\n");
    assert_eq!(e, ["receivers::ebpf: probes::packetloss::interface_name: only the flow probe takes this key; remove it"]);
    let e = ebpf_errors("    probes:\n      flow: { mode: switch }\n");
    assert!(e[0].contains("probes::flow::mode") && e[0].contains("pods") && e[0].contains("nic"), "{e:?}");
    let e = ebpf_errors("    probes:\n      flow: { max_flows: 0 }\n");
    assert_eq!(e, ["receivers::ebpf: probes::flow::max_flows must be at least 1"]);
}

#[test]
fn an_ebpf_probe_with_no_options_is_enabled_with_defaults() {
    let yaml = "receivers:
  ebpf:
    probes:
      packetloss:
      tcpretrans: { max_flows: 100 }
exporters:
  prometheus:
    endpoint: 127.0.0.1:9999
service:
  pipelines:
    metrics:
      receivers: [ebpf]
      exporters: [prometheus]
";
    assert!(warnings(yaml).is_empty());
    let cfg: podnet_receiver_ebpf::EbpfConfig =
        serde_norway::from_str("probes:\n  packetloss:\n  tcpretrans: { max_flows: 100 }\n").unwrap();
    assert_eq!(cfg.probes.packetloss, Some(podnet_receiver_ebpf::ProbeOptions::default()));
    assert_eq!(cfg.probes.tcpretrans.unwrap().max_flows, Some(100));
    assert_eq!(cfg.probes.tcpreset, None, "a probe not listed is off");
}

fn k8s_errors(processor: &str) -> Vec<String> {
    errors(&format!(
        "receivers:
  procfs:
processors:
  k8s_attributes:
{processor}exporters:
  prometheus:
service:
  pipelines:
    metrics:
      receivers: [procfs]
      processors: [k8s_attributes]
      exporters: [prometheus]
"
    ))
}

#[test]
fn k8s_attributes_options_are_checked() {
    let e = k8s_errors("    cri: { endpoint: \"tcp://10.0.0.1:10010\" }\n");
    assert_eq!(
        e,
        [
            "processors::k8s_attributes: cri::endpoint: \"tcp://10.0.0.1:10010\" is not a unix socket endpoint (unix:///path/to/runtime.sock)"
        ]
    );
    let e = k8s_errors("    cri: { enabled: false }\n    kube_api: { enabled: false }\n");
    assert_eq!(e, ["processors::k8s_attributes: no pod source: enable cri or kube_api"]);
    let e = k8s_errors("    additional_labels: [\"app\"]\n");
    assert_eq!(e, ["processors::k8s_attributes: additional_labels::0: \"app\": expected name=value, e.g. app=${labels:app}"]);
    let e = k8s_errors("    kube_api: { enabled: sometimes }\n");
    assert!(e[0].starts_with("processors::k8s_attributes::kube_api::enabled") && e[0].contains("auto, true, false"), "{e:?}");
}

#[test]
fn print_config_hides_secrets_and_environment_values() {
    let yaml = "receivers:
  procfs:
exporters:
  prometheus_remote_write:
    endpoint: http://${env:RW_HOST}:9090/api/v1/write
    basic_auth: { username: podnet, password: \"${env:RW_PASSWORD}\" }
    headers: { Authorization: Bearer literal-token-123, X-Team: netops }
service:
  pipelines:
    metrics:
      receivers: [procfs]
      exporters: [prometheus_remote_write]
";
    let env = |k: &str| match k {
        "RW_HOST" => Some("metrics.internal.example".to_string()),
        "RW_PASSWORD" => Some("s3cr3t-pa55".to_string()),
        _ => None,
    };
    let c = load_str(yaml, "t", &podnet::registry(), env).unwrap_or_else(|e| panic!("{e}"));
    let shown = c.to_yaml_redacted();
    assert!(
        !shown.contains("s3cr3t-pa55") && !shown.contains("literal-token-123") && !shown.contains("metrics.internal.example"),
        "{shown}"
    );
    assert!(shown.contains("http://${env:RW_HOST}:9090/api/v1/write"), "{shown}");
    assert!(shown.contains("password: <redacted>") && shown.contains("Authorization: <redacted>"), "{shown}");
    assert!(shown.contains("X-Team: netops") && shown.contains("username: podnet"), "what is no secret stays: {shown}");
    let all = c.to_yaml();
    assert!(all.contains("s3cr3t-pa55") && all.contains("metrics.internal.example"), "--show-secrets prints everything: {all}");
}
