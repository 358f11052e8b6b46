//! `scripts/bench`, second table: one collection of every procfs and netlink probe over N
//! network namespaces (N = 1, 100, 500, 1000; each a real namespace holding a sleeping
//! process), as CPU time, against the floor: opening and reading the same /proc files and
//! running the same netlink dumps, with no parsing and no metric building.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use podnet_netns::Namespace;
use podnet_pipeline::scrape::Scraper;
use podnet_receiver_netlink::{NetlinkConfig, NetlinkScraper, SocketSource, TcpSummaryOptions, dump};
use podnet_receiver_procfs::{Probe, ProcfsConfig, ProcfsScraper};

const SIZES: [usize; 4] = [1, 100, 500, 1000];
const ROUNDS: u32 = 5;

fn cpu_ms() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 * 1000.0 + tv.tv_usec as f64 / 1000.0;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// CPU and wall milliseconds of one run of `f`.
fn once(f: &mut impl FnMut()) -> (f64, f64) {
    let (c0, w0) = (cpu_ms(), Instant::now());
    f();
    (cpu_ms() - c0, w0.elapsed().as_secs_f64() * 1000.0)
}

/// Runs `a` and `b` alternately ROUNDS times (after one warm-up each) and keeps each one's
/// fastest run: the machine's noise only ever adds time, and both face the same noise.
fn measure_pair(mut a: impl FnMut(), mut b: impl FnMut()) -> ((f64, f64), (f64, f64)) {
    a();
    b();
    let (mut best_a, mut best_b) = ((f64::MAX, f64::MAX), (f64::MAX, f64::MAX));
    for _ in 0..ROUNDS {
        let ra = once(&mut a);
        let rb = once(&mut b);
        if ra.0 < best_a.0 {
            best_a = ra;
        }
        if rb.0 < best_b.0 {
            best_b = rb;
        }
    }
    (best_a, best_b)
}

const FILES: [&str; 6] = ["dev", "snmp", "snmp6", "netstat", "sockstat", "sockstat6"];

/// The floor: the same reads and dumps, results thrown away.
fn floor(namespaces: &[Namespace]) {
    let root = Path::new("/proc");
    // What podnet reads once for the node: softnet, global socket memory, IPVS.
    if let Some(host) = namespaces.iter().find(|n| n.is_host) {
        for f in ["softnet_stat", "sockstat", "sockstat6", "ip_vs_stats"] {
            let _ = std::fs::read(host.proc_dir.join("net").join(f));
        }
    }
    for ns in namespaces {
        for f in FILES {
            let _ = std::fs::read(ns.proc_dir.join("net").join(f));
        }
        for pid in &ns.pids {
            let p = root.join(pid.to_string());
            let _ = std::fs::read(p.join("io"));
            if let Ok(entries) = std::fs::read_dir(p.join("fd")) {
                for e in entries.flatten() {
                    let _ = std::fs::read_link(e.path());
                }
            }
        }
    }
    let requests = podnet_receiver_netlink::fixture_requests();
    let t = Duration::from_secs(2);
    podnet_receiver_netlink::for_each_namespace(namespaces, |_| {
        for (_, protocol, request) in &requests {
            if let Ok(socket) = dump::open(*protocol, t) {
                let _ = dump::dump(&socket, request, t);
            }
        }
    });
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("bench_namespaces needs root (it creates network namespaces)");
        std::process::exit(1);
    }
    let mut sleepers: Vec<Child> = Vec::new();
    let procfs_cfg = ProcfsConfig { probes: Probe::all(), ..Default::default() };
    let mut procfs = ProcfsScraper::new(procfs_cfg, "bench".into(), "procfs".into());
    let mut netlink = NetlinkScraper::new(NetlinkConfig::default(), "bench".into(), "netlink".into()).expect("netlink scraper");
    // tcpsummary alone, by each socket source: what the one-pass walk saves.
    let tcp_only = |source| {
        let config = NetlinkConfig {
            probes: vec![podnet_receiver_netlink::Probe::named("tcpsummary").expect("tcpsummary probe")],
            tcpsummary: TcpSummaryOptions { source },
            ..Default::default()
        };
        NetlinkScraper::new(config, "bench".into(), "netlink".into()).expect("netlink scraper")
    };
    let (mut by_diag, mut by_walk) = (tcp_only(SocketSource::SockDiag), tcp_only(SocketSource::BpfIter));
    let mut socket_rows = Vec::new();
    println!(
        "one collection of every procfs and netlink probe over N namespaces (best of {ROUNDS}, alternating), against the floor of the same reads and dumps"
    );
    println!(
        "{:>6} {:>11} {:>14} {:>13} {:>7} {:>10} {:>8} {:>12}",
        "N", "namespaces", "podnet CPU ms", "floor CPU ms", "ratio", "µs CPU/ns", "wall ms", "scan CPU ms"
    );
    for n in SIZES {
        while sleepers.len() < n {
            sleepers
                .push(Command::new("unshare").args(["--net", "sleep", "900"]).stdout(Stdio::null()).spawn().expect("unshare (util-linux)"));
        }
        // Wait until every sleeper is in its namespace.
        let deadline = Instant::now() + Duration::from_secs(60);
        let namespaces = loop {
            let list = podnet_netns::scan(Path::new("/proc"), Path::new("/run/netns")).expect("scan");
            if list.len() > n || Instant::now() > deadline {
                break list;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        // The netns extension's rescan (every 5 s by default), measured on its own.
        let (scan_cpu, _) = once(&mut || {
            let _ = podnet_netns::scan(Path::new("/proc"), Path::new("/run/netns"));
        });
        let shared = Arc::new(namespaces.clone());
        procfs.set_namespaces(shared.clone());
        netlink.set_namespaces(shared.clone());
        by_diag.set_namespaces(shared.clone());
        by_walk.set_namespaces(shared);
        let ((diag_cpu, _), (walk_cpu, _)) = measure_pair(
            || drop(by_diag.scrape()),
            || {
                let c = by_walk.scrape();
                assert!(c.errors.is_empty(), "socket walk: {:?}", c.errors.first());
            },
        );
        socket_rows.push(format!("{n:>6} {:>11} {diag_cpu:>16.1} {walk_cpu:>16.1} {:>7.2}x", namespaces.len(), diag_cpu / walk_cpu));
        let ((podnet_cpu, podnet_wall), (floor_cpu, _)) = measure_pair(
            || {
                let a = procfs.scrape();
                let b = netlink.scrape();
                assert!(
                    a.errors.len() + b.errors.len() < namespaces.len(),
                    "collections failed: {:?} {:?}",
                    a.errors.first(),
                    b.errors.first()
                );
            },
            || floor(&namespaces),
        );
        println!(
            "{n:>6} {:>11} {podnet_cpu:>14.1} {floor_cpu:>13.1} {:>6.2}x {:>10.1} {podnet_wall:>8.1} {scan_cpu:>12.1}",
            namespaces.len(),
            podnet_cpu / floor_cpu,
            podnet_cpu * 1000.0 / namespaces.len() as f64
        );
    }
    println!(
        "(podnet and floor exclude the namespace scan, which the netns extension does on its own interval; targets: ratio within 1.5x of the floor, 1000 namespaces under 1000 ms of CPU per cycle)"
    );
    println!();
    println!("tcpsummary alone over the same namespaces (best of {ROUNDS}, alternating): a sock_diag dump in every namespace against the");
    println!(
        "one-pass socket walk (BPF iterator over the node's socket files + each namespace's sockstat); CPU includes the kernel's side"
    );
    println!("{:>6} {:>11} {:>16} {:>16} {:>8}", "N", "namespaces", "sock_diag CPU ms", "walk CPU ms", "saved");
    for r in socket_rows {
        println!("{r}");
    }
    for mut s in sleepers {
        let _ = s.kill();
        let _ = s.wait();
    }
}
