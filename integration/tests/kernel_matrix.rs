//! Every eBPF probe on a second kernel: Debian 12's 6.1, booted under qemu by
//! `integration/kernel-matrix/run.sh` (the CI kernel, 6.18, has no kprobes and refuses
//! fentry, so only here do the kprobe variants run at all).
//!
//! The rounds come from the probes' own specs: one round with every probe on `hook: auto`,
//! then round k with each probe on its k-th hook variant. In each round the guest plants
//! the same events (guest-init.sh); here every variant must either count them exactly or be
//! reported unsupported with the reason this kernel gives, as `EXPECTED` says. The support
//! matrix in ebpf/README.md is written from what the run saw
//! (`PODNET_UPDATE_KERNEL_MATRIX=1` rewrites it; otherwise a difference fails).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use podnet_integration::{labeled_sum, podnet_binary};
use podnet_pipeline::testing::{Lacks, skip};
use podnet_receiver_ebpf::loader::{Hook, ProbeSpec};
use podnet_receiver_ebpf::probes::ProbeKind;

/// One probe as configured: the flow probe's two modes are two units (two receivers).
#[derive(Clone, Copy)]
struct Unit {
    kind: ProbeKind,
    nic: bool,
}

impl Unit {
    fn all() -> Vec<Unit> {
        let mut units: Vec<Unit> = ProbeKind::ALL.iter().map(|&kind| Unit { kind, nic: false }).collect();
        units.push(Unit { kind: ProbeKind::Flow, nic: true });
        units
    }
    fn spec(self) -> &'static ProbeSpec {
        self.kind.spec_for(self.nic)
    }
    fn name(self) -> String {
        if self.nic { format!("{} (nic)", self.spec().name) } else { self.spec().name.to_string() }
    }
    fn receiver(self) -> &'static str {
        if self.nic { "ebpf/nic" } else { "ebpf" }
    }
    /// The probe's hook variants, each once (biolatency has two tracepoint sets).
    fn hooks(self) -> Vec<Hook> {
        let mut hooks: Vec<Hook> = Vec::new();
        for (hook, _) in self.spec().hooks {
            if !hooks.contains(hook) {
                hooks.push(*hook);
            }
        }
        hooks
    }
    fn options(self, hook: Hook) -> String {
        let mut o = Vec::new();
        if self.nic {
            o.push("mode: nic".to_string());
            o.push("interface_name: v0".to_string());
        }
        if hook != Hook::Auto {
            o.push(format!("hook: {}", hook.as_str()));
        }
        format!("{{ {} }}", o.join(", "))
    }
}

/// What 6.1 must do with each variant: count the planted events; attach but miss part of
/// them, saying so in /status (`probe_limits`, containing the needle); or be unsupported with
/// a reason containing the needle. `auto` must pick the hook `AUTO_PICKS` names.
enum Expect {
    Counts,
    Misses { needle: &'static str, why: &'static str },
    Unsupported { needle: &'static str, why: &'static str },
}

const NOSOCK_UNTRACED: &str = "misses nosock resets (traced from 6.10)";

const EXPECTED: &[(&str, Hook, Expect)] = &[
    ("tcpreset", Hook::TpBtf, Expect::Misses { needle: "nosock", why: NOSOCK_UNTRACED }),
    ("tcpreset", Hook::Tracepoint, Expect::Misses { needle: "nosock", why: NOSOCK_UNTRACED }),
    ("socketlatency", Hook::TpBtf, Expect::Unsupported { needle: "sk_data_ready", why: "no `sk_data_ready` tracepoint (6.7+)" }),
    (
        "kernellatency",
        Hook::Tracepoint,
        Expect::Unsupported { needle: "tcp_probe", why: "6.1's `tcp_probe` record has no socket or skb address" },
    ),
    ("biolatency", Hook::TpBtf, Expect::Unsupported { needle: "block_io_start", why: "no `block_io_start` tracepoint (6.5+)" }),
    ("biolatency", Hook::Kprobe, Expect::Unsupported { needle: "blk_account_io_start", why: "`blk_account_io_start` is inlined" }),
    ("flow (nic)", Hook::Tcx, Expect::Unsupported { needle: "6.6", why: "tcx links need 6.6+" }),
];

/// The hook `auto` picks on 6.1.
const AUTO_PICKS: &[(&str, &str)] = &[
    ("packetloss", "tp_btf"),
    ("tcpreset", "kprobe"),
    ("tcpretrans", "tp_btf"),
    ("softirq", "tp_btf"),
    ("netiftxlat", "tp_btf"),
    ("socketlatency", "kprobe"),
    ("kernellatency", "tp_btf"),
    ("virtcmdlatency", "kprobe"),
    ("biolatency", "tracepoint"),
    ("flow", "tp_btf"),
    ("flow (nic)", "tc"),
];

fn expected(unit: &str, hook: Hook) -> &'static Expect {
    EXPECTED.iter().find(|(u, h, _)| *u == unit && *h == hook).map(|(_, _, e)| e).unwrap_or(&Expect::Counts)
}

/// The round whose config also runs tcpsummary by the BPF socket walk.
const SOCKET_WALK_ROUND: &str = "0-auto";

/// 6.1 runs the one-pass socket walk (iter/task_file with bpf_sock_from_file): it loaded,
/// and the pod's TCP sockets (nc's listener on 8080; the planted connections, closed by
/// the node's side first, leave the pod nothing else) come out as by sock_diag.
fn check_socket_walk(metrics: &str, log: &str, pod: &str) -> Result<(), String> {
    if let Some(line) = log.lines().find(|l| l.contains("socket walk cannot run here") || l.contains("socket walk failed")) {
        return Err(format!("the socket walk did not run: {line}"));
    }
    let seen = Seen { metrics, limits: String::new(), events: &[], pod, host: "" };
    let state = |s| seen.pod("system_network_connections", &[("network_connection_state", s)]);
    exactly("the pod's listening TCP sockets", state("listen"), 1.0)?;
    exactly("the pod's established TCP sockets", state("established"), 0.0)
}

struct Round {
    name: String,
    variants: Vec<(Unit, Hook)>,
}

fn rounds() -> Vec<Round> {
    let units = Unit::all();
    let mut rounds = vec![Round { name: "0-auto".into(), variants: units.iter().map(|&u| (u, Hook::Auto)).collect() }];
    let most = units.iter().map(|u| u.hooks().len()).max().unwrap_or(0);
    for k in 0..most {
        let variants: Vec<(Unit, Hook)> = units.iter().filter_map(|&u| u.hooks().get(k).map(|&h| (u, h))).collect();
        rounds.push(Round { name: format!("{}-variant", k + 1), variants });
    }
    rounds
}

fn config(round: &Round) -> String {
    let mut receivers = String::new();
    for receiver in ["ebpf", "ebpf/nic"] {
        let probes: Vec<String> = round
            .variants
            .iter()
            .filter(|(u, _)| u.receiver() == receiver)
            .map(|(u, h)| format!("      {}: {}\n", u.spec().name, u.options(*h)))
            .collect();
        if !probes.is_empty() {
            receivers += &format!("  {receiver}:\n    collection_interval: 1s\n    probes:\n{}", probes.concat());
        }
    }
    let mut names: Vec<&str> = ["ebpf", "ebpf/nic"].into_iter().filter(|r| receivers.contains(&format!("  {r}:\n"))).collect();
    if round.name == SOCKET_WALK_ROUND {
        // tcpsummary by the one-pass socket walk only (no sock_diag fallback when it cannot
        // load: it says so in the log), checked against the pod's known sockets.
        receivers += "  netlink:\n    collection_interval: 1s\n    probes: [tcpsummary]\n    tcpsummary: { source: bpf_iter }\n";
        names.push("netlink");
    }
    format!(
        "# probes: {count}
extensions:
  health_check: {{ endpoint: \"127.0.0.1:13133\" }}
receivers:
{receivers}exporters:
  prometheus: {{ endpoint: \"127.0.0.1:9102\" }}
  file: {{ path: /tmp/events-{name}.jsonl, format: kubeskoop }}
service:
  extensions: [health_check]
  pipelines:
    metrics: {{ receivers: [{list}], exporters: [prometheus] }}
    logs: {{ receivers: [ebpf], exporters: [file] }}
",
        count = round.variants.len(),
        name = round.name,
        list = names.join(", "),
    )
}

/// What the guest reported: its `@@@` lines and named blocks.
struct Report {
    lines: Vec<String>,
    blocks: BTreeMap<String, String>,
}

impl Report {
    fn parse(text: &str) -> Report {
        let (mut lines, mut blocks) = (Vec::new(), BTreeMap::new());
        let mut open: Option<(String, String)> = None;
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if let Some(name) = line.strip_prefix("@@@ begin ") {
                open = Some((name.to_string(), String::new()));
            } else if let Some(name) = line.strip_prefix("@@@ end ") {
                if let Some((n, body)) = open.take().filter(|(n, _)| n == name) {
                    blocks.insert(n, body);
                }
            } else if let Some((_, body)) = open.as_mut() {
                body.push_str(line);
                body.push('\n');
            } else if let Some(l) = line.strip_prefix("@@@ ") {
                lines.push(l.to_string());
            }
        }
        Report { lines, blocks }
    }
    fn value(&self, key: &str) -> Option<&str> {
        self.lines.iter().find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
    }
    fn block(&self, round: &str, what: &str) -> &str {
        self.blocks.get(&format!("{round} {what}")).map(String::as_str).unwrap_or("")
    }
}

/// One round's view for the checks.
struct Seen<'a> {
    metrics: &'a str,
    /// The receiver's `probe_limits` entry for the probe checked.
    limits: String,
    /// The round's events, in KubeSkoop's format.
    events: &'a [serde_json::Value],
    pod: &'a str,
    host: &'a str,
}

impl Seen<'_> {
    /// Events of `kind` whose label `dport` (or message `dport=`) is `port`.
    fn events(&self, kind: &str, port: &str) -> f64 {
        let label = |e: &serde_json::Value| {
            e["labels"]
                .as_array()
                .and_then(|l| l.iter().find(|l| l["name"] == "dport"))
                .and_then(|l| l["value"].as_str())
                .map(str::to_string)
        };
        let in_msg = |e: &serde_json::Value| e["msg"].as_str().is_some_and(|m| m.contains(&format!("dport={port} ")));
        self.events.iter().filter(|e| e["type"] == kind && (label(e).as_deref() == Some(port) || in_msg(e))).count() as f64
    }
    fn sum(&self, family: &str, labels: &[(&str, &str)]) -> f64 {
        labeled_sum(self.metrics, family, labels)
    }
    fn pod(&self, family: &str, labels: &[(&str, &str)]) -> f64 {
        let mut l = vec![("podnet_netns_inode", self.pod)];
        l.extend_from_slice(labels);
        self.sum(family, &l)
    }
    fn host(&self, family: &str, labels: &[(&str, &str)]) -> f64 {
        let mut l = vec![("podnet_netns_inode", self.host)];
        l.extend_from_slice(labels);
        self.sum(family, &l)
    }
}

fn exactly(what: &str, got: f64, want: f64) -> Result<(), String> {
    if got == want { Ok(()) } else { Err(format!("{what}: {got}, want {want}")) }
}

fn at_least(what: &str, got: f64, want: f64) -> Result<(), String> {
    if got >= want { Ok(()) } else { Err(format!("{what}: {got}, want at least {want}")) }
}

/// The planted events (guest-init.sh) as each probe must count them.
fn check(unit: Unit, s: &Seen) -> Result<(), String> {
    let flow = |receive: bool| {
        let (dir, src, dst) = if receive { ("receive", "10.2.0.1", "10.2.0.2") } else { ("transmit", "10.2.0.2", "10.2.0.1") };
        s.pod(
            "podnet_flow_packets_total",
            &[("network_transport", "icmp"), ("network_io_direction", dir), ("source_address", src), ("destination_address", dst)],
        )
    };
    match (unit.kind, unit.nic) {
        (ProbeKind::Packetloss, _) => {
            let drops = |reason| s.pod("podnet_packet_drops_total", &[("podnet_drop_reason", reason)]);
            exactly("the pod's NO_SOCKET drops (3 SYNs to a closed port)", drops("NO_SOCKET"), 3.0)?;
            exactly("the pod's NETFILTER_DROP drops (2 SYNs to port 7, each sent twice)", drops("NETFILTER_DROP"), 4.0)?;
            exactly("PacketLoss events for port 9", s.events("PacketLoss", "9"), 3.0)?;
            exactly("PacketLoss events for port 7", s.events("PacketLoss", "7"), 4.0)
        }
        (ProbeKind::Tcpreset, _) => {
            let resets = |kind, host: bool| {
                let l = [("podnet_tcp_reset_kind", kind)];
                if host { s.host("podnet_tcp_resets_total", &l) } else { s.pod("podnet_tcp_resets_total", &l) }
            };
            exactly("the pod's resets for its closed port (nosock)", resets("nosock", false), 3.0)?;
            exactly("the node's received resets", resets("receive", true), 3.0)?;
            exactly("TCPRESET_NOSOCK events", s.events("TCPRESET_NOSOCK", "9"), 3.0)?;
            exactly("TCPRESET_RECEIVE events", s.events("TCPRESET_RECEIVE", "9"), 3.0)?;
            no_reset_reasons(s)
        }
        (ProbeKind::Tcpretrans, _) => {
            // SYN_SENT: the planted connects; the guest's own loopback traffic (the agent's
            // /metrics answered under TCG's delays) may retransmit a FIN now and then.
            let syn_sent = [("network_connection_state", "syn_sent")];
            exactly("the node's SYN retransmits to the pod's port 7", s.host("podnet_tcp_retransmits_total", &syn_sent), 2.0)?;
            exactly("TCPRetrans events", s.events("TCPRetrans", "7"), 2.0)
        }
        (ProbeKind::Softirq, _) => at_least(
            "NET_RX softirqs measured",
            s.sum("podnet_softirq_execution_duration_seconds_count", &[("podnet_softirq_type", "net_rx")]),
            1.0,
        ),
        (ProbeKind::Netiftxlat, _) => at_least(
            "transmits measured on the pod's veth (the ping replies)",
            s.pod("podnet_netif_tx_driver_duration_seconds_count", &[("network_interface_name", "v1")]),
            10.0,
        ),
        (ProbeKind::Socketlatency, _) => exactly(
            "the pod's reads of data (one line on each of 3 connections)",
            s.pod("podnet_socket_read_delay_seconds_count", &[]),
            3.0,
        ),
        (ProbeKind::Kernellatency, _) => {
            at_least("TCP segments the pod's stack took in", s.pod("podnet_kernel_rx_latency_seconds_count", &[]), 3.0)
        }
        (ProbeKind::Virtcmdlatency, _) => at_least(
            "virtio-net control commands (promiscuous on/off, address)",
            s.sum("podnet_virtio_net_command_duration_seconds_count", &[]),
            2.0,
        ),
        (ProbeKind::Biolatency, _) => exactly(
            "the pod's direct reads of the virtio disk (32 × 4 KiB)",
            s.pod("podnet_disk_io_latency_seconds_count", &[("system_device", "vda"), ("disk_io_direction", "read")]),
            32.0,
        ),
        (ProbeKind::Flow, false) => {
            exactly("pings the pod received", flow(true), 10.0)?;
            exactly("replies the pod sent", flow(false), 10.0)
        }
        (ProbeKind::Flow, true) => {
            // The node's side of the veth, under the node's resource: pings out, replies in.
            let nic = |dir, src, dst| {
                s.host(
                    "podnet_flow_packets_total",
                    &[("network_transport", "icmp"), ("network_io_direction", dir), ("source_address", src), ("destination_address", dst)],
                )
            };
            exactly("pings out through v0", nic("transmit", "10.2.0.1", "10.2.0.2"), 10.0)?;
            exactly("replies in through v0", nic("receive", "10.2.0.2", "10.2.0.1"), 10.0)
        }
    }
}

/// 6.1 gives resets no reason: the attribute must be absent (not "0"), and /status says why.
fn no_reset_reasons(s: &Seen) -> Result<(), String> {
    if s.metrics.lines().any(|l| l.starts_with("podnet_tcp_resets_total{") && l.contains("podnet_tcp_reset_reason=")) {
        return Err("reset series carry a reason the kernel never gave".into());
    }
    if !s.limits.contains("sk_rst_reason") {
        return Err(format!("/status does not say the kernel has no reset reasons: {:?}", s.limits));
    }
    Ok(())
}

/// What a variant that misses part of the events must still count.
fn check_partial(unit: Unit, s: &Seen) -> Result<(), String> {
    match unit.kind {
        // No nosock resets before 6.10: what it does see, exactly, and nothing invented.
        ProbeKind::Tcpreset => {
            let resets = |kind| s.sum("podnet_tcp_resets_total", &[("podnet_tcp_reset_kind", kind)]);
            exactly("the node's received resets", s.host("podnet_tcp_resets_total", &[("podnet_tcp_reset_kind", "receive")]), 3.0)?;
            exactly("nosock resets (this hook cannot see them here)", resets("nosock"), 0.0)?;
            exactly("TCPRESET_RECEIVE events", s.events("TCPRESET_RECEIVE", "9"), 3.0)?;
            no_reset_reasons(s)
        }
        other => Err(format!("no check for what {other:?} still sees with a partial hook: add one to check_partial")),
    }
}

/// The hook a unit attached with in a round, or `None` when reported unsupported.
fn attached(metrics: &str, unit: Unit) -> Option<String> {
    let prefix = "podnet_probe_up{";
    metrics.lines().filter_map(|l| l.strip_prefix(prefix)).find_map(|rest| {
        let ok = rest.contains(&format!("component_id=\"{}\"", unit.receiver()))
            && rest.contains(&format!("probe=\"{}\"", unit.spec().name))
            && rest.ends_with("} 1");
        ok.then(|| rest.split("hook=\"").nth(1)?.split('"').next().map(str::to_string)).flatten()
    })
}

/// What /status says about a probe of a receiver under `field` (`unsupported_probes`: why
/// it cannot run; `probe_limits`: what it cannot see while running).
fn probe_status(status: &str, unit: Unit, field: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(status).ok()?;
    let component = v["components"].as_array()?.iter().find(|c| c["id"] == unit.receiver())?;
    component[field][unit.spec().name].as_str().map(str::to_string)
}

/// The agent's log lines about one probe, and its errors.
fn probe_log(log: &str, unit: Unit) -> String {
    let tag = format!("probe=\"{}\"", unit.spec().name);
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(&tag) || l.contains("ERROR")).collect();
    excerpt(&lines.join("\n"), 8)
}

fn tool_missing() -> Option<&'static str> {
    ["qemu-system-x86_64", "busybox", "cpio", "objcopy", "apt-get", "dpkg"]
        .into_iter()
        .find(|t| !Command::new("sh").args(["-c", &format!("command -v {t}")]).output().is_ok_and(|o| o.status.success()))
}

fn excerpt(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn update_readme(table: &str) -> Result<(), String> {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ebpf/README.md");
    let text = std::fs::read_to_string(&readme).map_err(|e| e.to_string())?;
    let (begin, end) = ("<!-- kernel-matrix 6.1: begin -->\n", "<!-- kernel-matrix 6.1: end -->");
    let (Some(a), Some(b)) = (text.find(begin), text.find(end)) else {
        return Err(format!("{} has no {begin:?} … {end:?} section", readme.display()));
    };
    let current = &text[a + begin.len()..b];
    if current == table {
        return Ok(());
    }
    if std::env::var("PODNET_UPDATE_KERNEL_MATRIX").is_ok_and(|v| v == "1") {
        let updated = format!("{}{table}{}", &text[..a + begin.len()], &text[b..]);
        return std::fs::write(&readme, updated).map_err(|e| e.to_string());
    }
    Err(format!(
        "ebpf/README.md's 6.1 matrix differs from what the harness saw; rerun with PODNET_UPDATE_KERNEL_MATRIX=1 to rewrite it.\nseen:\n{table}\nin the README:\n{current}"
    ))
}

#[test]
fn every_probe_and_hook_on_debian_12_kernel_6_1() {
    if let Some(tool) = tool_missing() {
        skip(Lacks::Tool, &format!("the kernel matrix needs {tool} (scripts/test.sh installs qemu-system-x86, busybox-static, cpio)"));
        return;
    }
    // Kept after the run (a failure's evidence, and `run.sh podnet rounds out` reruns it by
    // hand): target/kernel-matrix/.
    let out: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/kernel-matrix");
    let rounds_dir = out.join("rounds");
    let _ = std::fs::remove_dir_all(&rounds_dir);
    std::fs::create_dir_all(&rounds_dir).unwrap();
    let rounds = rounds();
    for r in &rounds {
        std::fs::write(rounds_dir.join(format!("{}.yaml", r.name)), config(r)).unwrap();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("kernel-matrix/run.sh");
    let run = Command::new(&script).arg(podnet_binary()).arg(&rounds_dir).arg(&out).output().expect("run.sh");
    // A stall the script recovered from by booting again is worth seeing in the test's output.
    eprint!("{}", String::from_utf8_lossy(&run.stderr));
    let console = std::fs::read_to_string(out.join("console.log")).unwrap_or_default();
    let results = std::fs::read_to_string(out.join("results.txt")).unwrap_or_default();
    assert!(
        run.status.success(),
        "the 6.1 guest did not run to its end: {}\n{}\nconsole (last 40 lines, all of it in {}):\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
        out.display(),
        excerpt(&console, 40)
    );
    let report = Report::parse(&results);
    let kernel = report.value("kernel").unwrap_or("?").to_string();
    assert!(kernel.starts_with("6.1."), "the guest runs {kernel}, not 6.1");
    let errors: Vec<&String> = report.lines.iter().filter(|l| l.starts_with("error")).collect();
    assert!(errors.is_empty(), "the guest's setup failed: {errors:?}\n{}", excerpt(&console, 40));
    let (pod, host) = (report.value("pod-netns").unwrap_or_default(), report.value("host-netns").unwrap_or_default());

    // Per unit and hook: what was seen, for the checks and the README's table.
    let mut failures = Vec::new();
    let mut cells: BTreeMap<(String, &'static str), String> = BTreeMap::new();
    for round in &rounds {
        let metrics = report.block(&round.name, "metrics");
        let status = report.block(&round.name, "status");
        let log = report.block(&round.name, "log");
        let events: Vec<serde_json::Value> =
            report.block(&round.name, "events").lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        for &(unit, hook) in &round.variants {
            let limits = probe_status(status, unit, "probe_limits").unwrap_or_default();
            let seen = Seen { metrics, limits: limits.clone(), events: &events, pod, host };
            let name = unit.name();
            let label = format!("{name}, hook {} ({})", hook.as_str(), round.name);
            let got = attached(metrics, unit);
            let context = || {
                format!(
                    "\n  /status: {}\n  agent log:\n{}",
                    probe_status(status, unit, "unsupported_probes")
                        .unwrap_or_else(|| "(no reason)".into())
                        .chars()
                        .take(400)
                        .collect::<String>(),
                    probe_log(log, unit)
                )
            };
            let want_auto = AUTO_PICKS.iter().find(|(u, _)| *u == name).map(|(_, h)| *h);
            match (hook, expected(&name, hook), got) {
                (Hook::Auto, _, got) => {
                    if got.as_deref() != want_auto {
                        failures.push(format!("{label}: auto picked {got:?}, expected {want_auto:?}{}", context()));
                    } else if let Err(e) = check(unit, &seen) {
                        failures.push(format!("{label}: {e}{}", context()));
                    }
                    cells.insert((name.clone(), "auto"), got.unwrap_or_else(|| "unsupported".into()));
                }
                (_, Expect::Counts, Some(h)) if h == hook.as_str() => match check(unit, &seen) {
                    Ok(()) => {
                        cells.insert((name.clone(), hook.as_str()), "attaches, counts".into());
                    }
                    Err(e) => failures.push(format!("{label}: attached but {e}{}", context())),
                },
                (_, Expect::Misses { needle, why }, Some(h)) if h == hook.as_str() => {
                    match check_partial(unit, &seen).and_then(|()| {
                        if limits.contains(needle) { Ok(()) } else { Err(format!("/status does not say it misses `{needle}`: {limits:?}")) }
                    }) {
                        Ok(()) => {
                            cells.insert((name.clone(), hook.as_str()), format!("attaches, {why}"));
                        }
                        Err(e) => failures.push(format!("{label}: attached but {e}{}", context())),
                    }
                }
                (_, Expect::Counts | Expect::Misses { .. }, got) => {
                    failures.push(format!("{label}: expected to attach, got {got:?}{}", context()))
                }
                (_, Expect::Unsupported { needle, why }, None) => match probe_status(status, unit, "unsupported_probes") {
                    Some(reason) if reason.contains(needle) => {
                        cells.insert((name.clone(), hook.as_str()), format!("unsupported: {why}"));
                    }
                    other => failures.push(format!("{label}: unsupported, but /status does not say `{needle}`: {other:?}{}", context())),
                },
                (_, Expect::Unsupported { .. }, Some(h)) => {
                    failures.push(format!("{label}: attached as {h}, expected unsupported on 6.1 (update EXPECTED if the kernel changed)"))
                }
            }
        }
    }
    let walk = check_socket_walk(report.block(SOCKET_WALK_ROUND, "metrics"), report.block(SOCKET_WALK_ROUND, "log"), pod);
    if let Err(e) = walk {
        failures.push(format!("tcpsummary by the socket walk ({SOCKET_WALK_ROUND}): {e}"));
    }
    assert!(failures.is_empty(), "on {kernel}:\n{}\n\nguest output in {}", failures.join("\n\n"), out.display());

    // The README's table, from what was seen.
    let mut table = String::from("| probe | tp_btf | tracepoint | kprobe | tcx | tc | `auto` picks |\n|---|---|---|---|---|---|---|\n");
    for unit in Unit::all() {
        let name = unit.name();
        let cell = |h: &str| cells.get(&(name.clone(), h)).cloned().unwrap_or_else(|| "—".into());
        table += &format!(
            "| {name} | {} | {} | {} | {} | {} | {} |\n",
            cell("tp_btf"),
            cell("tracepoint"),
            cell("kprobe"),
            cell("tcx"),
            cell("tc"),
            cell("auto")
        );
    }
    table += "\n(Written by `integration/tests/kernel_matrix.rs` from what it saw on Debian 12's current 6.1 cloud kernel.)\n";
    if let Err(e) = update_readme(&table) {
        panic!("{e}");
    }
}
