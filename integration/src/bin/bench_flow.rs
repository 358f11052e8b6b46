//! `scripts/bench`, eighth table: what the flow probe costs, side by side in one run, on
//! two test pods routed through the host as a CNI routes them (pod → host-side veth →
//! host routing → host-side veth → pod).
//! 1. Throughput between the pods (iperf3 TCP, and 64-byte UDP packets per second) with no
//!    probe, with the flow probe in pods mode (tp_btf, tracepoint), and with the flow
//!    programs on the pods' host-side veths by TC (tcx, clsact): the measurement behind
//!    the per-pod hook choice in ebpf/README.md. The whole `podnet run` agent each time.
//! 2. Program run time per packet (the kernel's BPF statistics) of the pods-mode programs
//!    against a bpftrace script counting the same tuple per namespace on the same
//!    tracepoints, under the same TCP request/response traffic.
//!
//! Every figure is min / median / max over interleaved rounds.

use std::process::{Command, Stdio};
use std::time::Duration;

use podnet_integration::bench::{BenchAgent, bpftrace, mmm, new_program_stats, ping_pong, program_ids, stats, udp_pps};
use podnet_integration::free_port;
use podnet_integration::pods::ip;
use podnet_receiver_ebpf::ProbeOptions;
use podnet_receiver_ebpf::loader::{self, Hook, LoadOptions, LoadedProbe};
use podnet_receiver_ebpf::nic;
use podnet_receiver_ebpf::probes::ProbeKind;

const ROUNDS: usize = 3;
const MESSAGES: usize = 20_000;

/// Two namespaces, each with a veth to the host (`fba<id>`, `fbb<id>` on the host side),
/// routed through the host: 10.219.1.1 ↔ 10.219.2.1.
struct RoutedPods {
    a: String,
    b: String,
    forwarding_was: String,
}

const A: &str = "10.219.1.1";
const B: &str = "10.219.2.1";

impl RoutedPods {
    fn create() -> RoutedPods {
        let id = std::process::id();
        let pods = RoutedPods {
            a: format!("fba-{id}"),
            b: format!("fbb-{id}"),
            forwarding_was: std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_else(|_| "0".into()),
        };
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").expect("enable IPv4 forwarding");
        for (i, ns) in [&pods.a, &pods.b].into_iter().enumerate() {
            let subnet = i + 1;
            // The host side, named like the pods' veths a CNI makes (the nic rows match `fb*`).
            let dev = &format!("fb{}{id}", ['a', 'b'][i]);
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["link", "add", dev, "type", "veth", "peer", "name", "eth0", "netns", ns]);
            ip(&["addr", "add", &format!("10.219.{subnet}.254/24"), "dev", dev]);
            ip(&["link", "set", dev, "up"]);
            ip(&["-n", ns, "addr", "add", &format!("10.219.{subnet}.1/24"), "dev", "eth0"]);
            ip(&["-n", ns, "link", "set", "eth0", "up"]);
            ip(&["-n", ns, "route", "add", "default", "via", &format!("10.219.{subnet}.254")]);
        }
        pods
    }
}

impl Drop for RoutedPods {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", self.forwarding_was.trim());
    }
}

/// iperf3 TCP from pod a to pod b for 3 s: Gbit/s received.
fn iperf3_gbits(pods: &RoutedPods) -> Option<f64> {
    let port = free_port().to_string();
    let mut server = Command::new("ip")
        .args(["netns", "exec", &pods.b, "iperf3", "-s", "-1", "-B", B, "-p", &port])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new("ip").args(["netns", "exec", &pods.a, "iperf3", "-c", B, "-p", &port, "-t", "3", "-J"]).output().ok()?;
    let _ = server.wait();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["end"]["sum_received"]["bits_per_second"].as_f64().map(|b| b / 1e9)
}

fn agent(flow: &str) -> BenchAgent {
    BenchAgent::start(|port| {
        format!(
            "receivers:
  ebpf:
    collection_interval: 15s
    probes:
      flow: {flow}
exporters:
  prometheus:
    endpoint: 127.0.0.1:{port}
    naming: kubeskoop
service:
  pipelines:
    metrics:
      receivers: [ebpf]
      exporters: [prometheus]
"
        )
    })
}

/// Table 1.
fn throughput(pods: &RoutedPods) {
    let veths = "\"fb*\"";
    let configs: Vec<(&str, Option<String>)> = vec![
        ("no probe", None),
        ("flow, pods mode, tp_btf (the default)", Some("{ hook: tp_btf }".into())),
        ("flow, pods mode, tracepoint", Some("{ hook: tracepoint }".into())),
        ("flow programs on the host-side veths, tcx", Some(format!("{{ mode: nic, interface_name: {veths}, hook: tcx }}"))),
        ("flow programs on the host-side veths, tc clsact", Some(format!("{{ mode: nic, interface_name: {veths}, hook: tc }}"))),
        ("flow, pods mode, ports in the key", Some("{ enable_port_in_label: true }".into())),
    ];
    let has_iperf3 = Command::new("iperf3").arg("--version").output().is_ok_and(|o| o.status.success());
    let mut pps: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    let mut gbits: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    for _ in 0..ROUNDS {
        for (i, (_, flow)) in configs.iter().enumerate() {
            let _agent = flow.as_deref().map(agent);
            pps[i].push(udp_pps(&pods.a, A, &pods.b, B, 3.0));
            if has_iperf3 {
                gbits[i].extend(iperf3_gbits(pods));
            }
        }
    }
    println!("Flow probe, throughput between two test pods routed through the host, min / median / max of {ROUNDS} interleaved rounds");
    println!("(the whole `podnet run` agent with only the flow probe; UDP: 64-byte datagrams for 3 s; TCP: iperf3 -t 3)");
    println!("{:<50} {:>26} {:>8} {:>22} {:>8}", "configuration", "UDP kpps", "vs none", "TCP Gbit/s", "vs none");
    let (base_pps, base_gbits) = (stats(&pps[0]).1, stats(&gbits[0]).1);
    for (i, (name, _)) in configs.iter().enumerate() {
        let k: Vec<f64> = pps[i].iter().map(|x| x / 1e3).collect();
        let tcp = if has_iperf3 { mmm(&gbits[i], 2) } else { "n/a (apt-get install iperf3)".into() };
        let tcp_ratio = stats(&gbits[i]).1 / base_gbits * 100.0;
        let tcp_ratio = if tcp_ratio.is_finite() { format!("{tcp_ratio:.1}%") } else { "n/a".into() };
        println!("{:<50} {:>26} {:>7.1}% {:>22} {:>8}", name, mmm(&k, 1), stats(&pps[i]).1 / base_pps * 100.0, tcp, tcp_ratio);
    }
}

fn probe_stats(p: &LoadedProbe) -> (u64, u64) {
    p.program_stats().into_values().fold((0, 0), |(n, t), (runs, time)| (n + runs, t + time.as_nanos() as u64))
}

/// The host namespace, for the bpftrace baseline's own skip (written apart from podnet's).
fn host_netns() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/1/ns/net").map(|m| m.ino() as u32).unwrap_or(0)
}

/// podnet's flow programs: pods mode (tp_btf, tracepoint) or on the pods' host-side veths
/// (tcx, tc), attached the way the agent attaches them.
struct Variant {
    probe: LoadedProbe,
    _veths: Option<nic::NicAttachments>,
}

fn load(hook: Hook, ports: bool) -> Variant {
    let btf = aya::Btf::from_sys_fs().expect("kernel BTF");
    let opts = LoadOptions {
        hook,
        events: false,
        stack: false,
        events_per_second: 0,
        wakeup_batch: 512,
        ring_buffer_bytes: 4096,
        max_flows: 10240,
        latency: None,
        // As the agent sets them; with ports, every port kept (no ephemeral aggregation).
        globals: podnet_receiver_ebpf::flow_globals(
            &ProbeOptions { enable_port_in_label: Some(ports), aggregate_ephemeral_ports: ports.then_some(false), ..Default::default() },
            std::path::Path::new("/proc"),
        ),
    };
    let on_veths = matches!(hook, Hook::Tcx | Hook::Tc);
    let mut probe = loader::load(ProbeKind::Flow.spec_for(on_veths), &opts, Some(&btf)).unwrap_or_else(|e| panic!("flow: {}", e.0));
    let veths = on_veths.then(|| {
        let mut n = nic::NicAttachments::new(nic::DeviceMatch::Prefix("fb".into()), hook);
        let problems = n.sync(&mut probe);
        assert!(problems.is_empty() && n.devices().len() == 2, "{problems:?} {:?}", n.devices());
        n
    });
    Variant { probe, _veths: veths }
}

/// The same count as podnet's pods mode, IPv4 only: bytes and packets per (namespace,
/// source, destination, protocol, ports, direction), the host namespace and loopback
/// skipped, on the same classic tracepoints.
fn bpftrace_script() -> String {
    let host = host_netns();
    let side = |hook: &str, dir: u8, ip: &str, l4: &str| {
        format!(
            "tracepoint:net:{hook} {{
               $skb = (struct sk_buff *)args->skbaddr;
               $ns = $skb->dev->nd_net.net->ns.inum;
               if ($ns != {host} && !($skb->dev->flags & 8) && $skb->protocol == 0x0008) {{
                 $ip = (struct iphdr *){ip};
                 $ports = (uint16 *){l4};
                 @bytes[$ns, $ip->saddr, $ip->daddr, $ip->protocol, $ports[0], $ports[1], {dir}] = sum(bswap($ip->tot_len));
                 @packets[$ns, $ip->saddr, $ip->daddr, $ip->protocol, $ports[0], $ports[1], {dir}] = count();
               }}
             }}"
        )
    };
    format!(
        "{}\n{}",
        side("net_dev_queue", 1, "($skb->head + $skb->network_header)", "($skb->head + $skb->transport_header)"),
        side("netif_receive_skb", 2, "$skb->data", "($skb->data + (((struct iphdr *)$skb->data)->ihl << 2))")
    )
}

/// Table 2.
fn program_cost(pods: &RoutedPods) {
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("enable BPF run-time statistics");
    let script = bpftrace_script();
    let variants: [(&str, Hook, bool); 5] = [
        ("pods mode, tp_btf", Hook::TpBtf, false),
        ("pods mode, tracepoint", Hook::Tracepoint, false),
        ("pods mode, tp_btf, ports", Hook::TpBtf, true),
        ("host-side veths, tcx", Hook::Tcx, false),
        ("host-side veths, tc", Hook::Tc, false),
    ];
    // (runs, ns) per round.
    let mut ours: Vec<Vec<(f64, f64)>> = vec![Vec::new(); variants.len()];
    let mut theirs = Vec::new();
    let per = |n0: u64, t0: u64, n1: u64, t1: u64| ((n1 - n0) as f64 / MESSAGES as f64, (t1 - t0) as f64 / MESSAGES as f64);
    for _ in 0..ROUNDS {
        for (i, (_, hook, ports)) in variants.iter().enumerate() {
            let v = load(*hook, *ports);
            let (n0, t0) = probe_stats(&v.probe);
            ping_pong(&pods.a, &pods.b, B, MESSAGES);
            let (n1, t1) = probe_stats(&v.probe);
            ours[i].push(per(n0, t0, n1, t1));
        }
        let before = program_ids();
        if let Some(mut bt) = bpftrace(&script) {
            let (n0, t0) = new_program_stats(&before);
            ping_pong(&pods.a, &pods.b, B, MESSAGES);
            let (n1, t1) = new_program_stats(&before);
            theirs.push(per(n0, t0, n1, t1));
            let _ = bt.kill();
            let _ = bt.wait();
        }
    }
    println!();
    println!("Flow probe, BPF program time per TCP request/response (kernel BPF statistics), min / median / max of {ROUNDS} rounds");
    println!("workload: {MESSAGES} 64-byte request/responses between the two routed pods; pods mode runs at each of the 4");
    println!("devices a packet crosses (the 2 host-side ones skipped early), TC only at the 2 host-side veths");
    println!("{:<28} {:>10} {:>26} {:>26} {:>8}", "variant", "runs", "ns per run", "ns per request/response", "vs bt");
    let ns = |v: &[(f64, f64)]| v.iter().map(|(_, t)| *t).collect::<Vec<_>>();
    let per_run = |v: &[(f64, f64)]| v.iter().map(|(n, t)| t / n).collect::<Vec<_>>();
    let runs = |v: &[(f64, f64)]| stats(&v.iter().map(|(n, _)| *n).collect::<Vec<_>>()).1;
    let base = stats(&ns(&theirs)).1;
    let row = |name: &str, v: &[(f64, f64)]| {
        let ratio = stats(&ns(v)).1 / base;
        let ratio = if ratio.is_finite() { format!("{ratio:.2}x") } else { "n/a".into() };
        println!("{:<28} {:>10.1} {:>26} {:>26} {:>8}", name, runs(v), mmm(&per_run(v), 0), mmm(&ns(v), 0), ratio);
    };
    for (i, (name, _, _)) in variants.iter().enumerate() {
        row(&format!("podnet, {name}"), &ours[i]);
    }
    row("bpftrace, tracepoints", &theirs);
    println!("(bpftrace: the pods-mode count with the same key per namespace, IPv4 only, on the classic tracepoints, in its");
    println!("per-CPU sum/count maps; podnet also parses IPv6 and counts GSO segments)");
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("(the flow table needs root: it attaches programs and creates namespaces)");
        return;
    }
    let pods = RoutedPods::create();
    let only = std::env::args().nth(1);
    let wanted = |t: &str| only.as_deref().is_none_or(|o| o == t);
    if wanted("throughput") {
        throughput(&pods);
    }
    if wanted("programs") {
        program_cost(&pods);
    }
}
