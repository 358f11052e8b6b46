//! `scripts/bench`, sixth table: what the latency probes cost, side by side in one run.
//! 1. Program run time per hook event (the kernel's BPF statistics: exact) of each probe
//!    against a bpftrace script building the same histograms on the same hooks, under the
//!    same traffic (TCP request/response between two test pods; direct writes to a loop
//!    device for biolatency).
//! 2. 64-byte UDP packets per second over a veth pair between two test pods with no probe,
//!    with the default eBPF probes, and with the six latency probes on as well (the whole
//!    `podnet run` agent in each case).
//! 3. The agent's CPU per collection with the latency probes on, at 1 and 100 test pods
//!    that each carry a TCP exchange.
//!
//! Every figure is min / median / max over interleaved rounds.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use podnet_integration::bench::{BenchAgent, bpftrace, mmm, new_program_stats, ping_pong, program_ids, stats, udp_pps};
use podnet_integration::http_get;
use podnet_integration::pods::{Pods, in_netns, ip};
use podnet_receiver_ebpf::loader::{self, Hook, LatencyGlobals, LoadOptions, LoadedProbe};
use podnet_receiver_ebpf::probes::ProbeKind;

const ROUNDS: usize = 3;
const MESSAGES: usize = 20_000;

/// (runs, run time ns) of a loaded probe's programs whose names start with one of `only`.
fn probe_stats(p: &LoadedProbe, only: &[&str]) -> (u64, u64) {
    p.program_stats()
        .into_iter()
        .filter(|(name, _)| only.is_empty() || only.iter().any(|o| name.starts_with(o)))
        .fold((0, 0), |(n, t), (_, (runs, time))| (n + runs, t + time.as_nanos() as u64))
}

fn load(kind: ProbeKind) -> LoadedProbe {
    let btf = aya::Btf::from_sys_fs().expect("kernel BTF");
    let lk = kind.latency().expect("a latency probe");
    let opts = LoadOptions {
        hook: Hook::Auto,
        events: true,
        stack: false,
        events_per_second: 100,
        wakeup_batch: 512,
        ring_buffer_bytes: 1 << 20,
        max_flows: 1,
        globals: Vec::new(),
        latency: Some(LatencyGlobals {
            threshold_low_ns: lk.thresholds[0].as_nanos() as u64,
            threshold_high_ns: lk.thresholds[1].as_nanos() as u64,
            event_threshold_ns: lk.event_threshold.as_nanos() as u64,
            softirq_mask: 0b1100,
            max_inflight: 16384,
            max_series: lk.fixed_dims.is_none().then_some(16384),
            start_maps: lk.start_maps,
        }),
    };
    loader::load(kind.spec(), &opts, Some(&btf)).unwrap_or_else(|e| panic!("{}: {}", kind.spec().name, e.0))
}

/// The same histograms as podnet's probe, on the same hooks (classic tracepoints: what
/// bpftrace 0.17 attaches to). podnet keys by namespace and device too; these do not.
fn bpftrace_script(kind: ProbeKind) -> &'static str {
    match kind {
        ProbeKind::Softirq => {
            "tracepoint:irq:softirq_raise /args->vec == 2 || args->vec == 3/ { if (!@r[cpu, args->vec]) { @r[cpu, args->vec] = nsecs; } }
             tracepoint:irq:softirq_entry /args->vec == 2 || args->vec == 3/ { if (@r[cpu, args->vec]) { @sched[args->vec] = hist(nsecs - @r[cpu, args->vec]); delete(@r[cpu, args->vec]); } @e[cpu, args->vec] = nsecs; }
             tracepoint:irq:softirq_exit /@e[cpu, args->vec]/ { @exec[args->vec] = hist(nsecs - @e[cpu, args->vec]); delete(@e[cpu, args->vec]); }"
        }
        ProbeKind::Netiftxlat => {
            "tracepoint:net:net_dev_queue { @q[args->skbaddr] = nsecs; }
             tracepoint:net:net_dev_start_xmit { if (@q[args->skbaddr]) { @qh = hist(nsecs - @q[args->skbaddr]); delete(@q[args->skbaddr]); } @x[args->skbaddr] = nsecs; }
             tracepoint:net:net_dev_xmit /@x[args->skbaddr]/ { @xh = hist(nsecs - @x[args->skbaddr]); delete(@x[args->skbaddr]); }"
        }
        // The read side only: bpftrace 0.17 cannot reach the socket of tcp_sendmsg_locked.
        ProbeKind::Socketlatency => {
            "tracepoint:sock:sk_data_ready /args->protocol == 6/ { if (!@r[args->skaddr]) { @r[args->skaddr] = nsecs; } }
             tracepoint:sock:sock_recv_length /args->ret > 0 && @r[args->sk]/ { @read = hist(nsecs - @r[args->sk]); delete(@r[args->sk]); }"
        }
        ProbeKind::Kernellatency => {
            "tracepoint:net:netif_receive_skb { @s[args->skbaddr] = nsecs; }
             tracepoint:tcp:tcp_probe /@s[args->skbaddr]/ { @rx = hist(nsecs - @s[args->skbaddr]); delete(@s[args->skbaddr]); }
             tracepoint:net:net_dev_queue { $skb = (struct sk_buff *)args->skbaddr; if ($skb->sk != 0 && $skb->tstamp > 0) { @tx = hist(nsecs - $skb->tstamp); } }"
        }
        ProbeKind::Biolatency => {
            "tracepoint:block:block_io_start { @s[args->dev, args->sector] = nsecs; }
             tracepoint:block:block_io_done /@s[args->dev, args->sector]/ { @h[args->dev] = hist(nsecs - @s[args->dev, args->sector]); delete(@s[args->dev, args->sector]); }"
        }
        _ => "",
    }
}

/// podnet's programs on the same hooks as the bpftrace script.
fn comparable_programs(kind: ProbeKind) -> &'static [&'static str] {
    match kind {
        ProbeKind::Socketlatency => &["socketlatency_ready", "socketlatency_read"],
        _ => &[],
    }
}

struct LoopDevice(String);

impl LoopDevice {
    fn create(dir: &std::path::Path) -> Option<LoopDevice> {
        let image = dir.join("disk.img");
        std::fs::File::create(&image).ok()?.set_len(64 << 20).ok()?;
        let out = Command::new("losetup").args(["-f", "--show"]).arg(&image).output().ok()?;
        out.status.success().then(|| LoopDevice(String::from_utf8_lossy(&out.stdout).trim().to_string()))
    }
    fn write(&self, count: usize) {
        let _ = Command::new("dd")
            .args(["if=/dev/zero", &format!("of={}", self.0), "bs=4k", &format!("count={count}"), "oflag=direct"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).output();
    }
}

fn run_workload(kind: ProbeKind, pods: &Pods, disk: Option<&LoopDevice>) {
    match kind {
        ProbeKind::Biolatency => {
            if let Some(d) = disk {
                d.write(4000);
            }
        }
        _ => ping_pong(&pods.a, &pods.b, "10.213.0.2", MESSAGES),
    }
}

/// Table 1: ns per program run, podnet against bpftrace, per probe.
fn program_cost(pods: &Pods, disk: Option<&LoopDevice>) {
    // The kernel times every program run while this is held (only for this table: the
    // clock reads would weigh on the throughput table).
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("enable BPF run-time statistics");
    println!("Latency probes, program run time per hook event (kernel BPF statistics), min / median / max of {ROUNDS} interleaved rounds");
    println!(
        "workload: {MESSAGES} TCP 64-byte request/responses between two test pods (biolatency: 4000 direct 4 KiB writes to a loop device)"
    );
    println!("{:<16} {:>26} {:>26} {:>10}  what bpftrace does", "probe", "podnet ns/run", "bpftrace ns/run", "ratio");
    let kinds = [ProbeKind::Softirq, ProbeKind::Netiftxlat, ProbeKind::Socketlatency, ProbeKind::Kernellatency, ProbeKind::Biolatency];
    for kind in kinds {
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for _ in 0..ROUNDS {
            {
                let p = load(kind);
                let only = comparable_programs(kind);
                let (n0, t0) = probe_stats(&p, only);
                run_workload(kind, pods, disk);
                let (n1, t1) = probe_stats(&p, only);
                ours.push(if n1 > n0 { (t1 - t0) as f64 / (n1 - n0) as f64 } else { f64::NAN });
            }
            let before = program_ids();
            if let Some(mut bt) = bpftrace(bpftrace_script(kind)) {
                let (n0, t0) = new_program_stats(&before);
                run_workload(kind, pods, disk);
                let (n1, t1) = new_program_stats(&before);
                theirs.push(if n1 > n0 { (t1 - t0) as f64 / (n1 - n0) as f64 } else { f64::NAN });
                let _ = bt.kill();
                let _ = bt.wait();
            }
        }
        let ratio = stats(&ours).1 / stats(&theirs).1;
        let what = match kind {
            ProbeKind::Socketlatency => "read side only; podnet column: its 2 read-side programs",
            ProbeKind::Kernellatency => "no TCP filter at RX (podnet reads the IP header)",
            ProbeKind::Netiftxlat => "one histogram per stage (podnet: per namespace and device)",
            ProbeKind::Biolatency => "per disk (podnet: per disk, direction and the writer's namespace)",
            _ => "same histograms",
        };
        let ratio = if ratio.is_finite() { format!("{ratio:.2}x") } else { "n/a".into() };
        println!("{:<16} {:>26} {:>26} {:>10}  {what}", kind.spec().name, mmm(&ours, 0), mmm(&theirs, 0), ratio);
    }
    println!("{:<16} {:>26}", "virtcmdlatency", "n/a: needs kprobes, this kernel has none");
}

/// The whole agent on the ebpf receiver with `probes` (program statistics as the agent
/// ships: off), the shared `netns` extension as configs/kubeskoop.yaml has it, KubeSkoop
/// naming, events to /dev/null.
fn agent(probes: &str, interval: &str, names_path: &str) -> BenchAgent {
    BenchAgent::start(|port| {
        format!(
            "extensions:
  netns:
    names_path: {names_path}
    refresh_interval: 5s
receivers:
  ebpf:
    collection_interval: {interval}
    names_path: {names_path}
    probes:
{probes}exporters:
  prometheus:
    endpoint: 127.0.0.1:{port}
    naming: kubeskoop
  file:
    path: /dev/null
    format: kubeskoop
service:
  extensions: [netns]
  pipelines:
    metrics:
      receivers: [ebpf]
      exporters: [prometheus]
    logs:
      receivers: [ebpf]
      exporters: [file]
"
        )
    })
}

fn collections(agent: &BenchAgent) -> f64 {
    agent.metric("podnet_receiver_collection_duration_seconds_count", &[("component_id", "ebpf")])
}

const DEFAULT_PROBES: &str = "      packetloss:\n      tcpreset:\n      tcpretrans:\n";
const LATENCY_PROBES: &str = "      softirq:\n      netiftxlat:\n      socketlatency:\n      kernellatency:\n      biolatency:\n";

/// Table 2.
fn small_packets(pods: &Pods) {
    println!();
    println!("64-byte UDP over a veth pair between two test pods, packets/s received, min / median / max of {ROUNDS} interleaved rounds");
    let configs: Vec<(String, Option<String>)> = vec![
        ("no probe".into(), None),
        ("default eBPF probes (packetloss, tcpreset, tcpretrans)".into(), Some(DEFAULT_PROBES.into())),
        ("default + five latency probes (all but virtcmdlatency)".into(), Some(format!("{DEFAULT_PROBES}{LATENCY_PROBES}"))),
        ("softirq alone".into(), Some("      softirq:\n".into())),
        ("netiftxlat alone".into(), Some("      netiftxlat:\n".into())),
        ("socketlatency alone".into(), Some("      socketlatency:\n".into())),
        ("kernellatency alone".into(), Some("      kernellatency:\n".into())),
        ("biolatency alone".into(), Some("      biolatency:\n".into())),
    ];
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    for _ in 0..ROUNDS {
        for (i, (_, probes)) in configs.iter().enumerate() {
            let _agent = probes.as_ref().map(|p| agent(p, "15s", "/run/netns"));
            results[i].push(udp_pps(&pods.a, "10.213.0.1", &pods.b, "10.213.0.2", 3.0));
        }
    }
    let base = stats(&results[0]).1;
    println!("{:<58} {:>30} {:>8}", "configuration (the whole `podnet run` agent)", "kpps", "vs none");
    for ((name, _), v) in configs.iter().zip(&results) {
        let k: Vec<f64> = v.iter().map(|x| x / 1e3).collect();
        println!("{:<58} {:>30} {:>7.1}%", name, mmm(&k, 1), stats(v).1 / base * 100.0);
    }
}

/// `n` namespaces named `<prefix><i>` under /run/netns, lo up, each with one TCP exchange
/// over its loopback (sockets, packets: series in every latency probe but biolatency).
struct ManyPods {
    names: Vec<String>,
}

impl ManyPods {
    fn create(prefix: &str, n: usize) -> ManyPods {
        let names: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
        for name in &names {
            ip(&["netns", "add", name]);
            ip(&["-n", name, "link", "set", "lo", "up"]);
        }
        ManyPods { names }
    }

    fn traffic(&self) {
        for name in &self.names {
            in_netns(name, || {
                let l = TcpListener::bind("127.0.0.1:7000").expect("bind");
                let mut c = TcpStream::connect("127.0.0.1:7000").expect("connect");
                let (mut s, _) = l.accept().expect("accept");
                let mut buf = [0u8; 64];
                c.write_all(&buf).unwrap();
                s.read_exact(&mut buf).unwrap();
                s.write_all(&buf).unwrap();
                c.read_exact(&mut buf).unwrap();
            });
        }
    }
}

impl Drop for ManyPods {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

/// Table 3.
fn collection_cost() {
    println!();
    println!("Agent CPU per collection, the five latency probes on, collection every 1 s over 10 s, min / median / max of {ROUNDS} rounds");
    println!("(the whole `podnet run` process: map reads, histograms, Prometheus exposition, and the netns extension's");
    println!("namespace scan every 5 s as configs/kubeskoop.yaml has it; each pod carried one TCP exchange)");
    println!("{:<10} {:>30} {:>10}", "pods", "CPU ms per collection", "series");
    let id = std::process::id();
    let mut per_size = Vec::new();
    for n in [1usize, 100] {
        let pods = ManyPods::create(&format!("bl{id}-{n}-"), n);
        let dir = tempfile::tempdir().expect("tempdir");
        // Only these pods' names: the agent sees them as it would see pods.
        let names = dir.path().join("netns");
        std::fs::create_dir_all(&names).unwrap();
        for name in &pods.names {
            let _ = std::os::unix::fs::symlink(format!("/run/netns/{name}"), names.join(name));
        }
        let mut cpu = Vec::new();
        let mut series = 0.0;
        for _ in 0..ROUNDS {
            let agent = agent(LATENCY_PROBES, "1s", names.to_str().unwrap());
            pods.traffic();
            std::thread::sleep(Duration::from_secs(2));
            let (c0, k0) = (agent.cpu_seconds(), collections(&agent));
            std::thread::sleep(Duration::from_secs(10));
            let (c1, k1) = (agent.cpu_seconds(), collections(&agent));
            cpu.push((c1 - c0) * 1e3 / (k1 - k0).max(1.0));
            series = http_get(agent.port, "/metrics").map(|(_, m)| m.lines().filter(|l| !l.starts_with('#')).count() as f64).unwrap_or(0.0);
        }
        println!("{:<10} {:>30} {:>10.0}", n, mmm(&cpu, 2), series);
        per_size.push(stats(&cpu).1);
    }
    if let [one, hundred] = per_size[..] {
        println!("{:<10} {:>30}", "100 / 1", format!("{:.1}x", hundred / one));
    }
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("(the latency table needs root: it attaches programs and creates namespaces)");
        return;
    }
    let pods = Pods::create("lb");
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = LoopDevice::create(dir.path());
    let only = std::env::args().nth(1);
    let wanted = |t: &str| only.as_deref().is_none_or(|o| o == t);
    if wanted("programs") {
        program_cost(&pods, disk.as_ref());
    }
    if wanted("packets") {
        small_packets(&pods);
    }
    if wanted("collection") {
        collection_cost();
    }
}
