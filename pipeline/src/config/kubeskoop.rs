//! KubeSkoop's exporter config (the `kubeskoop-config` ConfigMap's `config.yaml`) read as
//! is: recognised by its keys, turned into the equivalent podnet pipeline (KubeSkoop naming
//! on KubeSkoop's port, the probes podnet has, the sinks as exporters), which then loads
//! like any podnet config. What has no equivalent is named in the warnings, never dropped
//! silently. `podnet convert kubeskoop` prints the same pipeline.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use figment::Figment;
use figment::providers::Format;
use serde::Deserialize;

use super::deserialize::figment_errors;
use super::yaml::Yaml;
use super::{ConfigError, ConfigErrors};

/// KubeSkoop's `InspServerConfig` (pkg/exporter/cmd/config.go); its keys are case-sensitive.
#[derive(Debug, Default, Deserialize)]
struct KubeskoopConfig {
    #[serde(rename = "debugMode", default)]
    debug_mode: bool,
    #[serde(default)]
    port: u16,
    #[serde(default)]
    address: String,
    #[serde(rename = "enableController", default)]
    enable_controller: bool,
    #[serde(rename = "controllerAddr", default)]
    controller_addr: String,
    #[serde(default)]
    metrics: Metrics,
    #[serde(default)]
    event: Event,
    /// Keys KubeSkoop does not read either (yaml.v3 ignores them), e.g. the Helm chart's
    /// lowercase `debugmode`.
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
struct Metrics {
    #[serde(default)]
    probes: Vec<Probe>,
    #[serde(rename = "additionalLabels", default)]
    additional_labels: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Event {
    #[serde(default)]
    probes: Vec<Probe>,
    #[serde(default)]
    sinks: Vec<Sink>,
}

#[derive(Debug, Deserialize)]
struct Probe {
    name: String,
    #[serde(default)]
    args: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct Sink {
    name: String,
    #[serde(default)]
    args: BTreeMap<String, serde_json::Value>,
}

/// The keys that tell KubeSkoop's format from podnet's (which has `receivers`/`service`).
const KUBESKOOP_KEYS: [&str; 7] = ["metrics", "event", "port", "address", "debugMode", "debugmode", "enableController"];

/// Whether `text` is a KubeSkoop exporter config rather than a podnet pipeline.
pub fn is_kubeskoop(text: &str) -> bool {
    let Ok(serde_norway::Value::Mapping(top)) = serde_norway::from_str::<serde_norway::Value>(text) else { return false };
    let has = |k: &str| top.contains_key(serde_norway::Value::String(k.to_string()));
    !has("receivers") && !has("service") && KUBESKOOP_KEYS.iter().any(|k| has(k))
}

/// The podnet pipeline equivalent to a KubeSkoop config, with what could not be carried over.
#[derive(Debug)]
pub struct Converted {
    pub yaml: String,
    pub warnings: Vec<String>,
}

enum Receiver {
    Procfs,
    Netlink,
    Ebpf,
}

/// Where each KubeSkoop probe lives in podnet (`None`: podnet has no such probe).
fn receiver_of(probe: &str) -> Option<Receiver> {
    match probe {
        "netdev" | "tcpext" | "tcp" | "udp" | "ip" | "sock" | "softnet" | "io" | "fd" | "ipvs" => Some(Receiver::Procfs),
        "tcpsummary" | "conntrack" | "qdisc" => Some(Receiver::Netlink),
        "flow" | "packetloss" | "tcpretrans" | "tcpreset" | "kernellatency" | "netiftxlat" | "socketlatency" | "softirq"
        | "virtcmdlatency" | "biolatency" => Some(Receiver::Ebpf),
        _ => None,
    }
}

/// A YAML scalar for any string (JSON's double-quoted strings are YAML).
fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// One eBPF probe's podnet options from KubeSkoop's args (metric and event entries merged).
#[derive(Default)]
struct EbpfProbe {
    /// Listed under `event.probes` (a probe listed only under `metrics` sends no events).
    events: bool,
    /// podnet option → YAML value. KubeSkoop runs a probe's metric and event sides with
    /// their own args; podnet runs one probe, so softirq types are united and any other
    /// difference is warned about (the event side's value wins).
    options: BTreeMap<&'static str, String>,
    softirq_types: Vec<String>,
}

impl EbpfProbe {
    fn set(&mut self, key: &'static str, value: String, path: &str, warnings: &mut Vec<String>) {
        if let Some(old) = self.options.insert(key, value.clone()).filter(|old| *old != value) {
            warnings.push(format!(
                "{path}: differs between the metric and the event probe ({old} vs {value}); podnet runs one probe with {value}"
            ));
        }
    }
}

fn ebpf_args(probe: &Probe, at: &str, into: &mut EbpfProbe, warnings: &mut Vec<String>) -> Result<(), ConfigError> {
    for (key, value) in &probe.args {
        let path = format!("{at}::args::{key}");
        let bool_arg = || value.as_bool().ok_or_else(|| ConfigError::at(&path, format!("must be true or false, not {value}")));
        match (probe.name.as_str(), key.as_str()) {
            ("flow", "interfaceName") => {
                let name = value.as_str().ok_or_else(|| ConfigError::at(&path, "must be a device name or a prefix ending in *"))?;
                into.set("interface_name", quoted(name), &path, warnings);
            }
            ("flow", "enablePortInLabel") => into.set("enable_port_in_label", bool_arg()?.to_string(), &path, warnings),
            ("packetloss", "enableStack") | ("packetloss", "EnableStack") => into.set("stack", bool_arg()?.to_string(), &path, warnings),
            ("softirq", "softirq-types") => {
                // Every element a name, or the whole value is refused.
                let types: Option<Vec<String>> = value.as_array().and_then(|a| a.iter().map(|t| t.as_str().map(quoted)).collect());
                let types = types.ok_or_else(|| ConfigError::at(&path, "must be a list of softirq names, e.g. [net_rx, net_tx]"))?;
                for t in types {
                    if !into.softirq_types.contains(&t) {
                        into.softirq_types.push(t);
                    }
                }
            }
            _ => warnings.push(format!("{path}: podnet's {} probe has no such argument; it is ignored", probe.name)),
        }
    }
    Ok(())
}

/// KubeSkoop's `address` (`[tcp://]host:port`, `:port`) or `port` as a listen address.
fn listen(c: &KubeskoopConfig) -> Result<String, ConfigError> {
    let address = c.address.trim();
    if address.is_empty() {
        if c.port == 0 {
            return Err(ConfigError::top("listen address is empty: set address (e.g. tcp://0.0.0.0:9102) or port"));
        }
        return Ok(format!("0.0.0.0:{}", c.port));
    }
    if address.starts_with("unix://") {
        return Err(ConfigError::at(
            "address",
            format!("{address}: podnet serves /metrics on TCP only; use an address such as tcp://0.0.0.0:9102"),
        ));
    }
    let hostport = address.strip_prefix("tcp://").unwrap_or(address);
    Ok(if hostport.starts_with(':') { format!("0.0.0.0{hostport}") } else { hostport.to_string() })
}

/// Converts KubeSkoop's config text; `origin` names the file in errors.
pub fn convert(text: &str, origin: &str) -> Result<Converted, ConfigErrors> {
    let fail = |errors: Vec<ConfigError>| ConfigErrors { origin: origin.to_string(), errors, notes: Vec::new() };
    let c: KubeskoopConfig = Figment::new().merge(Yaml::string(text)).extract().map_err(|e| fail(figment_errors(e, "")))?;
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    let endpoint = listen(&c).unwrap_or_else(|e| {
        errors.push(e);
        String::new()
    });
    if c.enable_controller || !c.controller_addr.is_empty() {
        warnings.push(
            "enableController/controllerAddr: podnet has no KubeSkoop controller to connect to; ignored (metrics and events are served and pushed as configured)".into(),
        );
    }
    if !c.other.is_empty() {
        let keys: Vec<&str> = c.other.keys().map(String::as_str).collect();
        warnings.push(format!(
            "{}: KubeSkoop does not read these keys either (its keys are case-sensitive, e.g. debugMode); ignored",
            keys.join(", ")
        ));
    }

    let (mut procfs, mut netlink) = (Vec::new(), Vec::new());
    let mut ebpf: BTreeMap<String, EbpfProbe> = BTreeMap::new();
    let mut conntrack_events = false;
    let mut unknown = Vec::new();
    for (list, is_event) in [(&c.metrics.probes, false), (&c.event.probes, true)] {
        for (i, probe) in list.iter().enumerate() {
            let at = format!("{}::probes::{i}", if is_event { "event" } else { "metrics" });
            match (receiver_of(&probe.name), is_event) {
                (None, _) => unknown.push(format!("{at} ({})", probe.name)),
                (Some(Receiver::Ebpf), _) => {
                    let p = ebpf.entry(probe.name.clone()).or_default();
                    p.events |= is_event;
                    if let Err(e) = ebpf_args(probe, &at, p, &mut warnings) {
                        errors.push(e);
                    }
                }
                (Some(_), true) if probe.name == "conntrack" => conntrack_events = true,
                (Some(_), true) => unknown.push(format!("{at} ({} has no events)", probe.name)),
                (Some(r), false) => {
                    let list = if matches!(r, Receiver::Procfs) { &mut procfs } else { &mut netlink };
                    if !list.contains(&probe.name) {
                        list.push(probe.name.clone());
                    }
                    if !probe.args.is_empty() {
                        warnings.push(format!("{at}::args: podnet's {} probe takes no arguments; ignored", probe.name));
                    }
                }
            }
        }
    }
    if !unknown.is_empty() {
        warnings.push(format!("probes podnet does not have, left out: {}", unknown.join(", ")));
    }

    let mut metric_receivers = Vec::new();
    if !procfs.is_empty() {
        metric_receivers.push("procfs");
    }
    if !netlink.is_empty() {
        metric_receivers.push("netlink");
    }
    let mut exporters = Vec::new();
    for (i, sink) in c.event.sinks.iter().enumerate() {
        let at = format!("event::sinks::{i}");
        let arg = |key: &str| match sink.args.get(key).and_then(|v| v.as_str()) {
            Some(v) if !v.is_empty() => Ok(v.to_string()),
            _ => Err(ConfigError::at(
                format!("{at}::args::{key}"),
                format!("the {} sink needs {key} (KubeSkoop crashes without it)", sink.name),
            )),
        };
        match sink.name.as_str() {
            "stderr" => exporters.push(("stderr".to_string(), "    format: kubeskoop\n".to_string())),
            "file" => match arg("path") {
                Ok(path) => exporters.push((format!("file/sink{i}"), format!("    path: {}\n    format: kubeskoop\n", quoted(&path)))),
                Err(e) => errors.push(e),
            },
            // KubeSkoop's Loki client: the address's port 3100, its push path, its stream.
            "loki" => match arg("addr") {
                Ok(addr) => exporters.push((
                    format!("loki/sink{i}"),
                    format!("    endpoint: {}\n    format: kubeskoop\n", quoted(&format!("http://{addr}:3100/loki/api/v1/push"))),
                )),
                Err(e) => errors.push(e),
            },
            other => warnings.push(format!("{at}: sink {other:?} is not one of KubeSkoop's (stderr, file, loki); left out")),
        }
    }
    if !errors.is_empty() {
        return Err(fail(errors));
    }

    let event_receivers: Vec<&str> = [(ebpf.values().any(|p| p.events), "ebpf"), (conntrack_events, "netlink")]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, r)| r)
        .collect();
    if !event_receivers.is_empty() && exporters.is_empty() {
        warnings.push("event::probes are set but event::sinks is empty: their events go nowhere (as in KubeSkoop)".into());
    }
    if !ebpf.is_empty() {
        metric_receivers.push("ebpf");
    }

    let env = |var: &str, default: &str| format!("${{env:{var}:-{default}}}");
    let (proc_root, names) = (env("PODNET_PROC_ROOT", "/proc"), env("PODNET_NETNS_NAMES", "/run/netns"));
    let interval = env("PODNET_COLLECTION_INTERVAL", "15s");
    let mut y = String::new();
    let _ = writeln!(y, "# podnet's equivalent of {origin} (KubeSkoop's exporter config).");
    for w in &warnings {
        let _ = writeln!(y, "# warning: {w}");
    }
    let _ = write!(
        y,
        "extensions:\n  health_check:\n    endpoint: {}\n  netns:\n    root_path: {proc_root}\n    names_path: {names}\n\nreceivers:\n",
        env("PODNET_HEALTH_LISTEN", "0.0.0.0:13133")
    );
    if !procfs.is_empty() {
        let _ =
            writeln!(y, "  procfs:\n    collection_interval: {interval}\n    root_path: {proc_root}\n    probes: [{}]", procfs.join(", "));
    }
    if !netlink.is_empty() || conntrack_events {
        let _ = writeln!(
            y,
            "  netlink:\n    collection_interval: {interval}\n    root_path: {proc_root}\n    probes: [{}]",
            netlink.join(", ")
        );
        if conntrack_events {
            y.push_str("    events:\n      conntrack: {}\n");
        }
    }
    if !ebpf.is_empty() {
        let _ =
            writeln!(y, "  ebpf:\n    collection_interval: {interval}\n    root_path: {proc_root}\n    names_path: {names}\n    probes:");
        for (name, p) in &ebpf {
            let mut options: Vec<String> = p.options.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            // KubeSkoop's flow probe counts on the node's NIC.
            if name == "flow" {
                options.insert(0, "mode: nic".into());
            }
            if !p.softirq_types.is_empty() {
                options.push(format!("softirq_types: [{}]", p.softirq_types.join(", ")));
            }
            // A probe listed for metrics only sends no events, as in KubeSkoop.
            if !p.events {
                options.push("events: false".into());
            }
            let options = if options.is_empty() { "{}".to_string() } else { format!("{{ {} }}", options.join(", ")) };
            let _ = writeln!(y, "      {name}: {options}");
        }
    }
    let _ = write!(
        y,
        "\nprocessors:\n  k8s_attributes:\n    root_path: {proc_root}\n    names_path: {names}\n    cri:\n      endpoint: {}\n    kube_api:\n      enabled: auto\n    ip_identity:\n      enabled: true\n",
        env("PODNET_CRI_ENDPOINT", "unix:///run/containerd/containerd.sock")
    );
    if !c.metrics.additional_labels.is_empty() {
        let labels: Vec<String> = c.metrics.additional_labels.iter().map(|l| quoted(l)).collect();
        let _ = writeln!(y, "    additional_labels: [{}]", labels.join(", "));
    }
    y.push_str("\nexporters:\n");
    if !metric_receivers.is_empty() {
        let _ = write!(y, "  prometheus:\n    endpoint: {}\n    naming: kubeskoop\n", quoted(&endpoint));
    }
    for (id, body) in &exporters {
        let _ = write!(y, "  {id}:\n{body}");
    }
    let _ = write!(y, "\nservice:\n  extensions: [health_check, netns]\n  pipelines:\n");
    if !metric_receivers.is_empty() {
        let _ = writeln!(
            y,
            "    metrics:\n      receivers: [{}]\n      processors: [k8s_attributes]\n      exporters: [prometheus]",
            metric_receivers.join(", ")
        );
    }
    if !event_receivers.is_empty() && !exporters.is_empty() {
        let ids: Vec<&str> = exporters.iter().map(|(id, _)| id.as_str()).collect();
        let _ = writeln!(
            y,
            "    logs:\n      receivers: [{}]\n      processors: [k8s_attributes]\n      exporters: [{}]",
            event_receivers.join(", "),
            ids.join(", ")
        );
    }
    let level = if c.debug_mode { "debug" } else { "info" };
    let _ = writeln!(y, "  telemetry:\n    logs:\n      level: {}", env("PODNET_LOG_LEVEL", level));
    Ok(Converted { yaml: y, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeskoops_format_is_told_from_podnets() {
        assert!(is_kubeskoop("port: 9102\nmetrics:\n  probes:\n  - name: netdev\n"));
        assert!(is_kubeskoop("debugmode: true\nevent: {}\n"));
        assert!(!is_kubeskoop("receivers:\n  procfs: {}\nservice: {}\n"));
        assert!(!is_kubeskoop("metrics: {}\nservice: {}\n"), "a podnet config with a stray key stays podnet's");
        assert!(!is_kubeskoop("- not a mapping\n"));
        assert!(!is_kubeskoop(": bad yaml ["));
    }

    #[test]
    fn addresses_come_across_as_kubeskoop_reads_them() {
        let convert_ok = |text: &str| convert(text, "c.yaml").unwrap().yaml;
        assert!(convert_ok("address: tcp://10.0.0.1:9200\nmetrics: {probes: [{name: netdev}]}\n").contains("endpoint: \"10.0.0.1:9200\""));
        assert!(convert_ok("address: \":9300\"\nmetrics: {probes: [{name: netdev}]}\n").contains("endpoint: \"0.0.0.0:9300\""));
        assert!(convert_ok("port: 9102\nmetrics: {probes: [{name: netdev}]}\n").contains("endpoint: \"0.0.0.0:9102\""));
        let err = convert("metrics: {probes: [{name: netdev}]}\n", "c.yaml").unwrap_err().to_string();
        assert!(err.contains("c.yaml") && err.contains("listen address is empty"), "{err}");
    }

    #[test]
    fn what_cannot_come_across_is_named() {
        let c = convert(
            "port: 9102\nmetrics:\n  probes:\n  - name: rdma\n  - name: netdev\n    args: {x: 1}\n  - name: flow\n    args: {sampleRate: 3}\nevent:\n  probes:\n  - name: netdev\n  sinks:\n  - name: kafka\n",
            "c.yaml",
        )
        .unwrap();
        let all = c.warnings.join("\n");
        assert!(all.contains("metrics::probes::0 (rdma)") && all.contains("event::probes::0 (netdev has no events)"), "{all}");
        assert!(all.contains("metrics::probes::1::args: podnet's netdev probe takes no arguments"), "{all}");
        assert!(all.contains("metrics::probes::2::args::sampleRate"), "{all}");
        assert!(all.contains("event::sinks::0: sink \"kafka\""), "{all}");
        // Every warning is also in the converted file, for whoever reads it later.
        for w in &c.warnings {
            assert!(c.yaml.contains(&format!("# warning: {w}")));
        }
        let err = convert("port: 9102\nevent:\n  sinks:\n  - name: loki\n    args: {}\n", "c.yaml").unwrap_err().to_string();
        assert!(err.contains("event::sinks::0::args::addr: the loki sink needs addr"), "{err}");
        let err = convert("port: 9102\nmetrics:\n  probes:\n  - name: flow\n    args: {enablePortInLabel: maybe}\n", "c.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("metrics::probes::0::args::enablePortInLabel: must be true or false"), "{err}");
    }
}
