//! `scripts/bench`: the whole agent as a user runs it. `podnet run -c configs/kubeskoop.yaml`
//! (every default probe, the eBPF ones and the flow probe included, `k8s_attributes`, the
//! Prometheus endpoint scraped as Prometheus would, events to a file) over N test pods on a
//! bridge, each with a process (a pod's pause container), a TCP listener and a connection to the next pod that carries a
//! message a second, and datagrams to 10 other pods' closed ports a second (every pair of
//! pods within ~10 s: drops and flows of a real node's cross-pod noise). Reported from /proc: RSS over the run and CPU per collection cycle,
//! per variant (as shipped, on mimalloc; tcpsummary by sock_diag in every namespace instead
//! of the one-pass socket walk; on glibc's malloc, tuned as podnet tunes it, untuned, and
//! without trimming), min / median / max over interleaved rounds.
//!
//! Usage: bench_agent [pods (100)] [seconds per run (120)] [rounds (3)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use podnet_integration::bench::{mmm, stats};
use podnet_integration::pods::{in_netns, ip};
use podnet_integration::{free_port, http_get, labeled_sum};

const BRIDGE: &str = "pnbbr0";

/// N namespaces `pnb-<i>` on a bridge, 10.240.0.0/16, each holding a listener and a
/// connection to the next one's (the bench process owns the sockets).
struct BridgedPods {
    names: Vec<String>,
    sockets: Vec<TcpStream>,
    _listeners: Vec<TcpListener>,
    /// One per pod: datagrams to other pods' closed ports, the cross-pod noise a real node
    /// has (router solicitations, probes, scans), dropped and answered with ICMP errors.
    udp: Vec<UdpSocket>,
    /// A process in each pod, as a pod's pause container is: the agent reads a namespace
    /// through a process in it, so without one the pods would be invisible to procfs and
    /// netlink (as they were to this benchmark before).
    processes: Vec<Child>,
    tick: usize,
}

/// Peers each pod sends a datagram to per second: every pair within ~10 s at 100 pods.
const NOISE_PEERS: usize = 10;

fn addr(i: usize) -> String {
    format!("10.240.{}.{}", i / 250, i % 250 + 1)
}

impl BridgedPods {
    fn create(n: usize) -> BridgedPods {
        let _ = Command::new("ip").args(["link", "del", BRIDGE]).output();
        ip(&["link", "add", BRIDGE, "type", "bridge"]);
        ip(&["addr", "add", "10.240.255.254/16", "dev", BRIDGE]);
        ip(&["link", "set", BRIDGE, "up"]);
        // Built in place, so a failure half-way still removes what exists (Drop).
        let mut pods =
            BridgedPods { names: Vec::new(), sockets: Vec::new(), _listeners: Vec::new(), udp: Vec::new(), processes: Vec::new(), tick: 0 };
        for i in 0..n {
            let ns = format!("pnb-{i}");
            let host = format!("pnbh{i}");
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
            ip(&["netns", "add", &ns]);
            pods.names.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&["link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
            ip(&["link", "set", &host, "master", BRIDGE]);
            ip(&["link", "set", &host, "up"]);
            ip(&["-n", &ns, "addr", "add", &format!("{}/16", addr(i)), "dev", "eth0"]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            pods.processes.push(
                Command::new("ip").args(["netns", "exec", &ns, "sleep", "infinity"]).stdin(Stdio::null()).spawn().expect("a pod's process"),
            );
        }
        let names = pods.names.clone();
        pods._listeners =
            names.iter().enumerate().map(|(i, ns)| in_netns(ns, || TcpListener::bind((addr(i).as_str(), 8080)).expect("bind"))).collect();
        for (i, ns) in names.iter().enumerate() {
            let peer = addr((i + 1) % n);
            // Hundreds of new links announcing themselves at once can delay the first ARP
            // answers past the kernel's patience: try again.
            let c = in_netns(ns, || {
                let mut tries = 0;
                loop {
                    match TcpStream::connect((peer.as_str(), 8080)) {
                        Ok(c) => break c,
                        Err(e) if tries < 20 => {
                            tries += 1;
                            eprintln!("connect {peer}: {e}; retrying");
                            std::thread::sleep(Duration::from_millis(500));
                        }
                        Err(e) => panic!("connect {peer}: {e}"),
                    }
                }
            });
            let (s, _) = pods._listeners[(i + 1) % n].accept().expect("accept");
            c.set_nodelay(true).unwrap();
            s.set_nonblocking(true).unwrap();
            pods.sockets.push(c);
            pods.sockets.push(s);
        }
        pods.udp = names.iter().enumerate().map(|(i, ns)| in_netns(ns, || UdpSocket::bind((addr(i).as_str(), 0)).expect("bind"))).collect();
        pods
    }

    /// One message on every connection, drained at the other end, and the noise.
    fn traffic(&mut self) {
        let mut buf = [0u8; 256];
        for pair in self.sockets.chunks_mut(2) {
            let _ = pair[0].write_all(&[7u8; 64]);
            let _ = pair[1].read(&mut buf);
        }
        let n = self.udp.len();
        for (i, u) in self.udp.iter().enumerate() {
            for k in 0..NOISE_PEERS.min(n.saturating_sub(1)) {
                let peer = (i + 1 + (self.tick * NOISE_PEERS + k) % (n - 1)) % n;
                let _ = u.send_to(b"noise", (addr(peer).as_str(), 9));
            }
        }
        self.tick += 1;
    }
}

impl Drop for BridgedPods {
    fn drop(&mut self) {
        self.sockets.clear();
        for p in &mut self.processes {
            let _ = p.kill();
            let _ = p.wait();
        }
        for ns in &self.names {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = Command::new("ip").args(["link", "del", BRIDGE]).output();
    }
}

fn status_kib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix(field)).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(f64::NAN)
}

fn rss_kib(pid: u32) -> f64 {
    status_kib(pid, "VmRSS:")
}

/// The anonymous part of RSS: heap and stacks. RSS also counts the touched pages of the
/// binary and its libraries (clean page cache, dropped under pressure, shared) and of the
/// eBPF ring buffers the agent maps (file-backed to the kernel).
fn rss_anon_kib(pid: u32) -> f64 {
    status_kib(pid, "RssAnon:")
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / hz
}

struct Run {
    rss_end_mib: f64,
    /// Anonymous memory at the end (heap and stacks).
    anon_end_mib: f64,
    rss_max_mib: f64,
    cpu_ms_per_cycle: f64,
    series: f64,
    /// Wall time of one collection per receiver (procfs, netlink, ebpf), from the agent's
    /// self-metrics over the measured window: where a cycle's time goes.
    collect_ms: [f64; 3],
}

impl Run {
    /// The figures of `pid`'s run, ending now: CPU per cycle since `(cpu seconds, cycles)`
    /// at the start of the measured window, RSS now and at most (`rss_max_kib`).
    fn ending(pid: u32, rss_max_kib: f64, (cpu0, cycles0): (f64, f64), cycles: f64, series: f64, collect_ms: [f64; 3]) -> Run {
        Run {
            rss_end_mib: rss_kib(pid) / 1024.0,
            anon_end_mib: rss_anon_kib(pid) / 1024.0,
            rss_max_mib: rss_max_kib / 1024.0,
            cpu_ms_per_cycle: (cpu_seconds(pid) - cpu0) * 1e3 / (cycles - cycles0).max(1.0),
            series,
            collect_ms,
        }
    }
}

const RECEIVERS: [&str; 3] = ["procfs", "netlink", "ebpf"];

const INTERVAL_SECS: u64 = 5;

/// What a row runs.
enum Subject<'a> {
    /// `podnet run` with `env` (a heap or socket-walk setting), of `binary` when given (an
    /// allocator build), of the built podnet otherwise, on the shipped config or, with
    /// `equal_work`, on the shipped config without its eBPF receiver (the floor's work).
    Agent { env: Vec<(&'a str, &'a str)>, binary: Option<&'a std::path::Path>, equal_work: bool },
    /// The floor (`floor_agent`), with a sock_diag dump per namespace or without.
    Floor { sock_diag: bool },
}

/// The shipped config with the eBPF receiver out of both pipelines: the procfs and netlink
/// receivers, `k8s_attributes` and the Prometheus endpoint, the work the floor is the floor of.
fn equal_work_config(shipped: &str) -> String {
    let metrics = "receivers: [procfs, netlink, ebpf]";
    let logs = "    logs:\n      receivers: [ebpf]\n      processors: [k8s_attributes]\n      exporters: [file/events]\n";
    assert!(shipped.contains(metrics) && shipped.contains(logs), "configs/kubeskoop.yaml changed its pipelines: update equal_work_config");
    shipped.replace(metrics, "receivers: [procfs, netlink]").replace(logs, "")
}

/// The floor's run: the same window, CPU per finished cycle from its count file.
fn run_floor(pods: &mut BridgedPods, secs: u64, sock_diag: bool) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let count = dir.path().join("cycles");
    let cycles = || std::fs::read_to_string(&count).ok().and_then(|c| c.trim().parse::<f64>().ok()).unwrap_or(0.0);
    let mut cmd = Command::new(podnet_integration::podnet_binary().with_file_name("floor_agent"));
    cmd.arg(INTERVAL_SECS.to_string()).arg(&count).stdout(Stdio::null());
    if sock_diag {
        cmd.arg("--sock-diag");
    }
    let mut child = cmd.spawn().expect("start floor_agent (cargo build --release -p podnet-integration --bins)");
    let pid = child.id();
    let started = Instant::now();
    let window = Duration::from_secs((secs / 2).min(60));
    let (mut rss_max, mut mark): (f64, Option<(f64, f64)>) = (0.0, None);
    while started.elapsed() < Duration::from_secs(secs) {
        pods.traffic();
        std::thread::sleep(Duration::from_secs(1));
        rss_max = rss_max.max(rss_kib(pid));
        if mark.is_none() && started.elapsed() >= Duration::from_secs(secs) - window {
            mark = Some((cpu_seconds(pid), cycles()));
        }
    }
    let run = Run::ending(pid, rss_max, mark.unwrap_or((0.0, 0.0)), cycles(), f64::NAN, [f64::NAN; 3]);
    let _ = child.kill();
    let _ = child.wait();
    run
}

/// One run of `secs` seconds of `subject`.
fn run(pods: &mut BridgedPods, secs: u64, subject: &Subject) -> Run {
    let (env, binary, equal_work) = match subject {
        Subject::Floor { sock_diag } => return run_floor(pods, secs, *sock_diag),
        Subject::Agent { env, binary, equal_work } => (env, *binary, *equal_work),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, health) = (free_port(), free_port());
    let mut config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/kubeskoop.yaml");
    if equal_work {
        let shipped = std::fs::read_to_string(&config).expect("configs/kubeskoop.yaml");
        let derived = dir.path().join("procfs-netlink.yaml");
        std::fs::write(&derived, equal_work_config(&shipped)).expect("write the equal-work config");
        config = derived;
    }
    // BENCH_AGENT_WRAPPER (e.g. `heaptrack`): run the agent under a profiler; its RSS and
    // CPU figures are then the wrapper's, only its profile counts.
    let mut cmd = match std::env::var("BENCH_AGENT_WRAPPER") {
        Ok(w) => {
            let mut c = Command::new(w);
            c.arg(
                std::env::var("BENCH_AGENT_BINARY").map(std::path::PathBuf::from).unwrap_or_else(|_| podnet_integration::podnet_binary()),
            );
            c
        }
        Err(_) => Command::new(binary.map(std::path::PathBuf::from).unwrap_or_else(podnet_integration::podnet_binary)),
    };
    cmd.args(["run", "-c"])
        .arg(&config)
        .env("PODNET_LISTEN", format!("127.0.0.1:{port}"))
        .env("PODNET_HEALTH_LISTEN", format!("127.0.0.1:{health}"))
        .env("PODNET_COLLECTION_INTERVAL", format!("{INTERVAL_SECS}s"))
        .env("PODNET_EVENTS_FILE", dir.path().join("events.jsonl"))
        .env("PODNET_CRI_ENDPOINT", format!("unix://{}", dir.path().join("no-cri.sock").display()))
        .env("PODNET_NODE_NAME", "bench-node")
        .env("PODNET_LOG_LEVEL", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env.iter() {
        cmd.env(k, v);
    }
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child: Child = cmd.spawn().expect("start podnet (cargo build --release -p podnet)");
    let pid = child.id();
    let started = Instant::now();
    let cycles = |m: &str| labeled_sum(m, "podnet_receiver_collection_duration_seconds_count", &[("component_id", "procfs")]);
    let mut rss_max: f64 = 0.0;
    // The last minute (or half the run) measures CPU per cycle, after the start-up.
    let window = Duration::from_secs((secs / 2).min(60));
    // (agent CPU seconds, cycles, per receiver (collection seconds, collections)).
    type Mark = (f64, f64, [(f64, f64); 3]);
    let mut mark: Option<Mark> = None;
    let durations = |m: &str| {
        RECEIVERS.map(|r| {
            let of = |name| labeled_sum(m, name, &[("component_id", r)]);
            (of("podnet_receiver_collection_duration_seconds_sum"), of("podnet_receiver_collection_duration_seconds_count"))
        })
    };
    let mut last_scrape = Instant::now();
    // BENCH_AGENT_PROGRESS: a line a minute (RSS, CPU per cycle in that minute, series), for
    // a soak run: `BENCH_AGENT_PROGRESS=1 BENCH_AGENT_VARIANTS=1 bench_agent 100 3600 1`.
    let progress = std::env::var_os("BENCH_AGENT_PROGRESS").is_some();
    let mut minute: Option<(Instant, f64, f64)> = None;
    while started.elapsed() < Duration::from_secs(secs) {
        pods.traffic();
        std::thread::sleep(Duration::from_secs(1));
        if progress && minute.is_none_or(|(at, _, _)| at.elapsed() >= Duration::from_secs(60)) {
            let m = http_get(port, "/metrics").map(|(_, m)| m).unwrap_or_default();
            let (cpu, k) = (cpu_seconds(pid), cycles(&m));
            if let Some((_, cpu0, k0)) = minute {
                eprintln!(
                    "minute {:>3}: RSS {:>6.1} MiB (anon {:>6.1}), CPU {:>6.1} ms per cycle, {} series",
                    started.elapsed().as_secs() / 60,
                    rss_kib(pid) / 1024.0,
                    rss_anon_kib(pid) / 1024.0,
                    (cpu - cpu0) * 1e3 / (k - k0).max(1.0),
                    m.lines().filter(|l| !l.starts_with('#')).count()
                );
            }
            minute = Some((Instant::now(), cpu, k));
        }
        // Prometheus would scrape every 15 s.
        if last_scrape.elapsed() >= Duration::from_secs(15) {
            let _ = http_get(port, "/metrics");
            last_scrape = Instant::now();
        }
        rss_max = rss_max.max(rss_kib(pid));
        if mark.is_none() && started.elapsed() >= Duration::from_secs(secs) - window {
            let m = http_get(port, "/metrics").map(|(_, m)| m).unwrap_or_default();
            mark = Some((cpu_seconds(pid), cycles(&m), durations(&m)));
        }
    }
    let m = http_get(port, "/metrics").map(|(_, m)| m).unwrap_or_default();
    // Series held at the end of the run (every run the same length: comparable).
    let series = m.lines().filter(|l| !l.starts_with('#')).count() as f64;
    // BENCH_AGENT_METRICS=<file>: keep the last /metrics text, to see which families grow.
    if let Ok(path) = std::env::var("BENCH_AGENT_METRICS") {
        let _ = std::fs::write(path, &m);
    }
    let d1 = durations(&m);
    let (c0, k0, d0) = mark.unwrap_or((0.0, 0.0, [(0.0, 0.0); 3]));
    let collect_ms = std::array::from_fn(|i| (d1[i].0 - d0[i].0) * 1e3 / (d1[i].1 - d0[i].1).max(1.0));
    let run = Run::ending(pid, rss_max, (c0, k0), cycles(&m), series, collect_ms);
    // The whole process group: a wrapper such as heaptrack runs the agent as its child,
    // which would outlive the wrapper and share the machine with every later run.
    // SAFETY: kill has no memory preconditions; the group is the one spawned above.
    unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
    let _ = child.wait();
    run
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("(the whole-agent table needs root: it creates namespaces and attaches programs)");
        return;
    }
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (n, secs, rounds) = (args.first().copied().unwrap_or(100), args.get(1).copied().unwrap_or(120), args.get(2).copied().unwrap_or(3));
    // scripts/bench builds target/release/podnet-glibc (`--no-default-features`).
    let glibc = podnet_integration::podnet_binary().with_file_name("podnet-glibc");
    let agent = |env: Vec<(&'static str, &'static str)>, binary| Subject::Agent { env, binary, equal_work: false };
    let mut variants: Vec<(&str, Subject)> = vec![
        ("podnet as shipped (mimalloc)", agent(vec![], None)),
        ("sock_diag in every namespace", agent(vec![("PODNET_SOCKET_SOURCE", "sock_diag")], None)),
        ("mimalloc, purge after 1 s", agent(vec![("MIMALLOC_PURGE_DELAY", "1000")], None)),
        ("procfs+netlink, sock_diag", Subject::Agent { env: vec![("PODNET_SOCKET_SOURCE", "sock_diag")], binary: None, equal_work: true }),
        ("floor, sock_diag", Subject::Floor { sock_diag: true }),
        ("floor, no socket dumps", Subject::Floor { sock_diag: false }),
    ];
    if glibc.exists() {
        variants.push(("glibc, 2 arenas, trim 10 s", agent(vec![], Some(glibc.as_path()))));
        variants.push((
            "glibc defaults",
            agent(vec![("PODNET_MALLOC_ARENAS", "0"), ("PODNET_MALLOC_TRIM_INTERVAL", "0")], Some(glibc.as_path())),
        ));
        variants.push(("glibc, 2 arenas, no trimming", agent(vec![("PODNET_MALLOC_TRIM_INTERVAL", "0")], Some(glibc.as_path()))));
    } else {
        println!("({} not built: no glibc rows)", glibc.display());
    }
    // BENCH_AGENT_VARIANTS=1,2: only those rows (numbered from 1), for a quicker look.
    if let Ok(only) = std::env::var("BENCH_AGENT_VARIANTS") {
        let keep: Vec<usize> = only.split(',').filter_map(|v| v.trim().parse().ok()).collect();
        variants = variants.into_iter().enumerate().filter(|(i, _)| keep.contains(&(i + 1))).map(|(_, v)| v).collect();
    }
    let mut pods = BridgedPods::create(n);
    // New links solicit routers and join multicast groups for their first seconds: wait
    // that out, so every run sees the same steady traffic.
    for _ in 0..20 {
        pods.traffic();
        std::thread::sleep(Duration::from_secs(1));
    }
    let mut results: Vec<Vec<Run>> = variants.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        for (i, (_, subject)) in variants.iter().enumerate() {
            results[i].push(run(&mut pods, secs as u64, subject));
        }
    }
    println!("The whole agent: podnet run -c configs/kubeskoop.yaml over {n} test pods on a bridge (a listener and a connection each,");
    println!(
        "a message a second), collection every {INTERVAL_SECS} s, /metrics read every 15 s, {secs} s per run, min / median / max of {rounds} interleaved rounds"
    );
    println!(
        "{:<30} {:>20} {:>20} {:>20} {:>20} {:>8} {:>26}",
        "variant", "RSS at end, MiB", "anon at end, MiB", "RSS max, MiB", "CPU ms per cycle", "series", "collect ms procfs/netlink/ebpf"
    );
    for ((name, _), runs) in variants.iter().zip(&results) {
        let col = |f: fn(&Run) -> f64, d| mmm(&runs.iter().map(f).collect::<Vec<_>>(), d);
        let median = |i: usize| stats(&runs.iter().map(|r| r.collect_ms[i]).collect::<Vec<_>>()).1;
        // The floor holds no series and has no receivers: "-".
        let (series, collect) = match runs.first() {
            Some(r) if r.series.is_nan() => ("-".to_string(), "-".to_string()),
            _ => (
                format!("{:.0}", stats(&runs.iter().map(|r| r.series).collect::<Vec<_>>()).1),
                format!("{:.0} / {:.0} / {:.0}", median(0), median(1), median(2)),
            ),
        };
        println!(
            "{:<30} {:>20} {:>20} {:>20} {:>20} {:>8} {:>26}",
            name,
            col(|r| r.rss_end_mib, 1),
            col(|r| r.anon_end_mib, 1),
            col(|r| r.rss_max_mib, 1),
            col(|r| r.cpu_ms_per_cycle, 1),
            series,
            collect
        );
    }
    println!(
        "(anon: heap and stacks; RSS adds the touched pages of the binary and its libraries, clean page cache, and the eBPF ring buffers)"
    );
    println!(
        "(procfs+netlink: the shipped config without its eBPF receiver, sock_diag dumps in every namespace: the floor's work plus parsing,"
    );
    println!(
        "metrics, k8s_attributes and the endpoint. floor: floor_agent, a separate program sharing no code with podnet, doing only the"
    );
    println!("same /proc reads (namespaces found by scanning /proc, as the netns extension does) and netlink dumps, one socket per family");
    println!("per namespace, results discarded; no eBPF, so the shipped rows do more work than it)");
}
