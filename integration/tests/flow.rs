//! The flow probe attached for real: test pods exchange a known number of datagrams, and
//! `kubeskoop_flow_bytes`/`_packets` must show exactly those bytes and packets, per pod,
//! pair and direction, over IPv4 and IPv6, pod to pod and pod to host (pods mode); on a
//! named device with tcx and with a clsact qdisc that podnet adds and removes only when it
//! was not there (nic mode); and within `max_flows` when one client uses 5,000 ports.

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use podnet_integration::pods::{Pods, in_netns, ip};
use podnet_integration::{Agent, labeled_sum, root_or_skip};

/// One test at a time: pods mode counts every namespace on the machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn turn() -> Option<std::sync::MutexGuard<'static, ()>> {
    if !root_or_skip("test pods and eBPF programs need root (CI runs as root)") {
        return None;
    }
    Some(SERIAL.lock().unwrap_or_else(|e| e.into_inner()))
}

/// A veth pair from pod `ns` (`addr`/24) to the host (`host_addr`/24), removed on drop.
struct HostLink(String);

impl HostLink {
    fn new(ns: &str, host_dev: &str, addr: &str, host_addr: &str) -> HostLink {
        let peer = format!("{host_dev}p");
        ip(&["link", "add", host_dev, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &peer, "netns", ns]);
        ip(&["addr", "add", &format!("{host_addr}/24"), "dev", host_dev]);
        ip(&["link", "set", host_dev, "up"]);
        ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", &peer]);
        ip(&["-n", ns, "link", "set", &peer, "up"]);
        HostLink(host_dev.to_string())
    }
}

impl Drop for HostLink {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).output();
    }
}

fn config(dir: &std::path::Path, naming: &str, flow: &str) -> String {
    let path = dir.join(format!("podnet-{naming}.yaml"));
    std::fs::write(
        &path,
        format!(
            "receivers:
  ebpf:
    collection_interval: 300ms
    probes:
      flow: {flow}
exporters:
  prometheus:
    endpoint: ${{env:PODNET_LISTEN}}
    naming: {naming}
service:
  pipelines:
    metrics:
      receivers: [ebpf]
      exporters: [prometheus]
"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

/// `n` datagrams of `size` bytes from `from` to `to`, sent inside namespace `ns`; a socket
/// bound at `to` in `to_ns` takes them, so no ICMP error adds a flow.
fn datagrams(ns: &str, from: &str, to_ns: Option<&str>, to: &str, n: usize, size: usize) {
    let receiver = to_ns.map(|t| in_netns(t, || UdpSocket::bind(to).unwrap()));
    let receiver = receiver.or_else(|| Some(UdpSocket::bind(to).unwrap()));
    in_netns(ns, || {
        let s = UdpSocket::bind(from).unwrap();
        for _ in 0..n {
            s.send_to(&vec![b'x'; size], to).unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(50));
    drop(receiver);
}

fn attach_wait(agent: &Agent) {
    agent.wait_until(Duration::from_secs(20), "the flow probe to attach", || {
        labeled_sum(&agent.metrics(), "podnet_probe_up", &[("probe", "flow")]) == 1.0
    });
}

#[test]
fn pods_mode_counts_each_pods_flows_exactly_per_direction() {
    let Some(_turn) = turn() else { return };
    let pods = Pods::create("fl");
    let _sleepers = pods.sleepers();
    let (a, b) = (pods.a.as_str(), pods.b.as_str());
    ip(&["-n", a, "addr", "add", "fd00:213::1/64", "dev", &pods.va, "nodad"]);
    ip(&["-n", b, "addr", "add", "fd00:213::2/64", "dev", &pods.vb, "nodad"]);
    let _host = HostLink::new(a, &format!("flh{}", std::process::id()), "10.217.0.1", "10.217.0.254");
    let dir = tempfile::tempdir().unwrap();
    // Both hooks of pods mode, each counting from an empty table.
    for hook in ["tp_btf", "tracepoint"] {
        let cfg = config(dir.path(), "kubeskoop", &format!("{{ enable_port_in_label: true, hook: {hook} }}"));
        let agent = Agent::start(&["-c", &cfg], &[("PODNET_NODE_NAME", "flow-node")]);
        attach_wait(&agent);
        assert_eq!(labeled_sum(&agent.metrics(), "podnet_probe_up", &[("probe", "flow"), ("hook", hook)]), 1.0);
        exchange_and_check(&agent, a, b, hook);
        agent.stop();
    }
}

fn exchange_and_check(agent: &Agent, a: &str, b: &str, hook: &str) {
    datagrams(a, "10.213.0.1:0", Some(b), "10.213.0.2:5300", 50, 100);
    datagrams(a, "[fd00:213::1]:0", Some(b), "[fd00:213::2]:5300", 40, 200);
    datagrams(a, "10.217.0.1:0", None, "10.217.0.254:5400", 20, 100);

    let flow = |m: &str, family: &str, pod: &str, src: &str, dst: &str, dport: &str, direction: &str| {
        labeled_sum(
            m,
            family,
            &[
                ("k8s_pod", pod),
                ("protocol", "UDP"),
                ("src", src),
                ("dst", dst),
                ("sport", "0"),
                ("dport", dport),
                ("direction", direction),
            ],
        )
    };
    agent.wait_until(Duration::from_secs(20), "every datagram counted", || {
        let m = agent.metrics();
        flow(&m, "kubeskoop_flow_packets", b, "fd00:213::1", "fd00:213::2", "5300", "receive") == 40.0
            && flow(&m, "kubeskoop_flow_packets", a, "10.217.0.1", "10.217.0.254", "5400", "transmit") == 20.0
    });
    // Counted once per side, and nothing more arrives later.
    std::thread::sleep(Duration::from_millis(700));
    let m = agent.metrics();
    // IPv4: 100 bytes + 8 (UDP) + 20 (IP) each; IPv6: 200 + 8 + 40.
    for (family, want4, want6, want_host) in
        [("kubeskoop_flow_packets", 50.0, 40.0, 20.0), ("kubeskoop_flow_bytes", 6400.0, 9920.0, 2560.0)]
    {
        let what = format!("{hook}: {family}");
        assert_eq!(flow(&m, family, a, "10.213.0.1", "10.213.0.2", "5300", "transmit"), want4, "{what} A sent\n{m}");
        assert_eq!(flow(&m, family, b, "10.213.0.1", "10.213.0.2", "5300", "receive"), want4, "{what} B received\n{m}");
        assert_eq!(flow(&m, family, a, "fd00:213::1", "fd00:213::2", "5300", "transmit"), want6, "{what} A sent, IPv6\n{m}");
        assert_eq!(flow(&m, family, b, "fd00:213::1", "fd00:213::2", "5300", "receive"), want6, "{what} B received, IPv6\n{m}");
        assert_eq!(flow(&m, family, a, "10.217.0.1", "10.217.0.254", "5400", "transmit"), want_host, "{what} A to the host\n{m}");
        // The host's side of that link is not a pod: pods mode does not count it again.
        assert_eq!(
            labeled_sum(&m, family, &[("src", "10.217.0.1"), ("dst", "10.217.0.254")]),
            want_host,
            "{what}: the host namespace counted the pod's traffic a second time\n{m}"
        );
        assert_eq!(flow(&m, family, a, "10.213.0.1", "10.213.0.2", "5300", "receive"), 0.0, "{what}: no direction mix-up\n{m}");
    }
    assert_eq!(labeled_sum(&m, "podnet_ebpf_flows_evicted_total", &[("probe", "flow")]), 0.0);
    // The client port is ephemeral: aggregated away by default, the server's kept.
    assert!(!m.lines().any(|l| l.starts_with("kubeskoop_flow_packets{") && l.contains("dport=\"5300\"") && !l.contains("sport=\"0\"")));
}

#[test]
fn nic_mode_on_a_named_device_with_tcx_and_with_a_clsact_qdisc() {
    let Some(_turn) = turn() else { return };
    let pods = Pods::create("fn");
    let _sleepers = pods.sleepers();
    let dev = format!("fnh{}", std::process::id());
    let _host = HostLink::new(&pods.a, &dev, "10.218.0.1", "10.218.0.254");
    let dir = tempfile::tempdir().unwrap();
    let qdiscs = || String::from_utf8_lossy(&Command::new("tc").args(["qdisc", "show", "dev", &dev]).output().unwrap().stdout).to_string();
    // (hook, a clsact qdisc already there)
    for (hook, preexisting) in [("tcx", false), ("tc", false), ("tc", true)] {
        if preexisting {
            let out = Command::new("tc").args(["qdisc", "add", "dev", &dev, "clsact"]).output().unwrap();
            assert!(out.status.success(), "tc qdisc add clsact: {}", String::from_utf8_lossy(&out.stderr));
        }
        let cfg = config(dir.path(), "otel", &format!("{{ mode: nic, interface_name: \"fnh*\", hook: {hook} }}"));
        let agent = Agent::start(&["-c", &cfg], &[("PODNET_NODE_NAME", "flow-node")]);
        attach_wait(&agent);
        assert!(labeled_sum(&agent.metrics(), "podnet_probe_up", &[("probe", "flow"), ("hook", hook)]) == 1.0);
        assert_eq!(qdiscs().contains("clsact"), hook == "tc", "{hook}: {}", qdiscs());
        datagrams(&pods.a, "10.218.0.1:0", None, "10.218.0.254:5400", 20, 100);
        let series = |m: &str, family: &str| {
            labeled_sum(
                m,
                family,
                &[
                    ("network_transport", "udp"),
                    ("source_address", "10.218.0.1"),
                    ("destination_address", "10.218.0.254"),
                    ("network_io_direction", "receive"),
                ],
            )
        };
        agent.wait_until(Duration::from_secs(20), "the datagrams counted at the device", || {
            series(&agent.metrics(), "podnet_flow_packets_total") == 20.0
        });
        let m = agent.metrics();
        assert_eq!(series(&m, "podnet_flow_bytes_total"), 2560.0, "{hook}\n{m}");
        if hook == "tcx" {
            // A device that appears later and matches the prefix is watched from the next collection.
            let _late = HostLink::new(&pods.b, &format!("{dev}b"), "10.218.1.1", "10.218.1.254");
            agent.wait_until(Duration::from_secs(20), "the new device attached", || {
                datagrams(&pods.b, "10.218.1.1:0", None, "10.218.1.254:5400", 1, 100);
                labeled_sum(&agent.metrics(), "podnet_flow_packets_total", &[("source_address", "10.218.1.1")]) > 0.0
            });
        }
        // The pod's own namespace is not watched in nic mode; the node's NIC is node level.
        assert!(!m.lines().any(|l| l.starts_with("podnet_flow_packets_total{") && l.contains("k8s_pod_name")), "{m}");
        agent.stop();
        assert_eq!(qdiscs().contains("clsact"), preexisting, "{hook}, clsact there before: {preexisting}: {}", qdiscs());
        if preexisting {
            let filters = Command::new("tc").args(["filter", "show", "dev", &dev, "ingress"]).output().unwrap();
            assert!(!String::from_utf8_lossy(&filters.stdout).contains("flow_tc"), "podnet's filters are gone");
            let _ = Command::new("tc").args(["qdisc", "del", "dev", &dev, "clsact"]).output();
        }
    }
}

#[test]
fn one_client_on_5000_ports_stays_within_max_flows() {
    let Some(_turn) = turn() else { return };
    let pods = Pods::create("fc");
    let _sleepers = pods.sleepers();
    let (a, b) = (pods.a.as_str(), pods.b.as_str());
    let dir = tempfile::tempdir().unwrap();
    let send_from_5000_ports = || {
        let receiver = in_netns(b, || UdpSocket::bind("10.213.0.2:5300").unwrap());
        in_netns(a, || {
            for port in 40000..45000 {
                let s = UdpSocket::bind(("10.213.0.1", port)).unwrap();
                s.send_to(b"hello", "10.213.0.2:5300").unwrap();
            }
        });
        std::thread::sleep(Duration::from_millis(50));
        drop(receiver);
    };
    let client_series = |m: &str| m.lines().filter(|l| l.starts_with("kubeskoop_flow_packets{") && l.contains("dport=\"5300\"")).count();

    // Every port kept: the table holds max_flows flows, the rest are evicted and counted.
    let cfg = config(dir.path(), "kubeskoop", "{ enable_port_in_label: true, aggregate_ephemeral_ports: false, max_flows: 256 }");
    let agent = Agent::start(&["-c", &cfg], &[]);
    attach_wait(&agent);
    send_from_5000_ports();
    // 5,000 flows sent by A, 5,000 received by B.
    agent.wait_until(Duration::from_secs(20), "the evictions counted", || {
        labeled_sum(&agent.metrics(), "podnet_ebpf_flows_evicted_total", &[("probe", "flow")]) >= 10_000.0 - 256.0
    });
    let m = agent.metrics();
    let n = client_series(&m);
    assert!(n > 0 && n <= 256, "{n} series for 5,000 connections with max_flows 256");
    agent.stop();

    // Every flow fits: 10,000 entries are read from the kernel in several batches (4,096 per
    // call at first), and each is there exactly once, with its one datagram.
    let cfg = config(dir.path(), "kubeskoop", "{ enable_port_in_label: true, aggregate_ephemeral_ports: false, max_flows: 16384 }");
    let agent = Agent::start(&["-c", &cfg], &[]);
    attach_wait(&agent);
    send_from_5000_ports();
    agent.wait_until(Duration::from_secs(20), "every flow read", || client_series(&agent.metrics()) == 10_000);
    let m = agent.metrics();
    for direction in ["transmit", "receive"] {
        let lines: Vec<&str> = m
            .lines()
            .filter(|l| {
                l.starts_with("kubeskoop_flow_packets{")
                    && l.contains("dport=\"5300\"")
                    && l.contains(&format!("direction=\"{direction}\""))
            })
            .collect();
        assert_eq!(lines.len(), 5000, "{direction}: one series per source port");
        assert!(lines.iter().all(|l| l.ends_with(" 1")), "{direction}: one datagram each");
    }
    assert_eq!(labeled_sum(&m, "podnet_ebpf_flows_evicted_total", &[("probe", "flow")]), 0.0);
    agent.stop();

    // Ephemeral ports aggregated: one flow per side, every datagram in it.
    let cfg = config(dir.path(), "kubeskoop", "{ enable_port_in_label: true }");
    let agent = Agent::start(&["-c", &cfg], &[]);
    attach_wait(&agent);
    send_from_5000_ports();
    agent.wait_until(Duration::from_secs(20), "the datagrams counted", || {
        labeled_sum(&agent.metrics(), "kubeskoop_flow_packets", &[("dport", "5300"), ("direction", "receive")]) == 5000.0
    });
    let m = agent.metrics();
    assert_eq!(client_series(&m), 2, "A's transmit flow and B's receive flow\n{m}");
    assert_eq!(labeled_sum(&m, "kubeskoop_flow_packets", &[("k8s_pod", a), ("sport", "0"), ("dport", "5300")]), 5000.0);
    assert_eq!(labeled_sum(&m, "podnet_ebpf_flows_evicted_total", &[("probe", "flow")]), 0.0);
}
