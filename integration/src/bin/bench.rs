//! `scripts/bench`: one collection-and-scrape cycle of podnet against node_exporter's netdev
//! collector, side by side in one run, plus each agent's memory.
//!
//! Both agents are paced alike: podnet collects every PERIOD and is scraped every PERIOD;
//! node_exporter collects on each scrape. CPU per cycle is the process's user+system time
//! over the run divided by the number of cycles.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use podnet_integration::{free_port, http_get, series_sum};

const PERIOD: Duration = Duration::from_millis(50);
const CYCLES: usize = 200;

struct Measured {
    scrape_ms: f64,
    collect_ms: Option<f64>,
    cpu_ms_per_cycle: f64,
    rss_mib: f64,
    peak_rss_mib: f64,
    bytes: usize,
}

fn proc_cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the ")" of the command name: utime is the 12th, stime the 13th.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks * 1000.0 / hz
}

fn status_kib(pid: u32, key: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().unwrap_or(0.0)))
        .unwrap_or(0.0)
}

fn wait_ready(port: u16, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if http_get(port, path).is_some_and(|(s, _)| s == 200) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("agent on port {port} did not answer {path}");
}

fn measure(child: &Child, port: u16, podnet: bool) -> Measured {
    let pid = child.id();
    // Warm up: a few cycles so lazy initialisation is not counted.
    for _ in 0..10 {
        http_get(port, "/metrics");
        std::thread::sleep(PERIOD);
    }
    let before = http_get(port, "/metrics").map(|(_, b)| b).unwrap_or_default();
    let (sum0, count0) = (
        series_sum(&before, "podnet_receiver_collection_duration_seconds_sum"),
        series_sum(&before, "podnet_receiver_collection_duration_seconds_count"),
    );
    let cpu0 = proc_cpu_ms(pid);
    let mut scrape_total = Duration::ZERO;
    let mut bytes = 0;
    let start = Instant::now();
    for i in 0..CYCLES {
        let t = Instant::now();
        let (_, body) = http_get(port, "/metrics").expect("scrape");
        scrape_total += t.elapsed();
        bytes = body.len();
        let next = start + PERIOD * (i as u32 + 1);
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    let cpu1 = proc_cpu_ms(pid);
    let after = http_get(port, "/metrics").map(|(_, b)| b).unwrap_or_default();
    let collect_ms = podnet.then(|| {
        // Two receivers collect each cycle: their times add up.
        let sum = series_sum(&after, "podnet_receiver_collection_duration_seconds_sum") - sum0;
        let count = series_sum(&after, "podnet_receiver_collection_duration_seconds_count") - count0;
        if count > 0.0 { sum / count * 2.0 * 1000.0 } else { f64::NAN }
    });
    Measured {
        scrape_ms: scrape_total.as_secs_f64() * 1000.0 / CYCLES as f64,
        collect_ms,
        cpu_ms_per_cycle: (cpu1 - cpu0) / CYCLES as f64,
        rss_mib: status_kib(pid, "VmRSS:") / 1024.0,
        peak_rss_mib: status_kib(pid, "VmHWM:") / 1024.0,
        bytes,
    }
}

fn start_podnet(dir: &Path, port: u16) -> Child {
    let config = dir.join("bench.yaml");
    std::fs::write(
        &config,
        format!(
            "receivers:\n  procfs:\n    collection_interval: {ms}ms\n    namespaces: host\n    probes: [netdev, tcpext, sock, softnet]\n  netlink:\n    collection_interval: {ms}ms\n    namespaces: host\n    probes: [conntrack]\nexporters:\n  prometheus:\n    endpoint: 127.0.0.1:{port}\n    naming: kubeskoop\nservice:\n  pipelines:\n    metrics:\n      receivers: [procfs, netlink]\n      exporters: [prometheus]\n  telemetry:\n    logs: {{ level: warn }}\n",
            ms = PERIOD.as_millis()
        ),
    )
    .expect("write bench config");
    Command::new(podnet_integration::podnet_binary())
        .args(["run", "-c"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start podnet (build it with cargo build --release -p podnet)")
}

fn start_node_exporter(port: u16) -> Option<Child> {
    let bin = ["/usr/bin/prometheus-node-exporter", "/usr/bin/node_exporter"].into_iter().find(|p| Path::new(p).exists())?;
    Command::new(bin)
        .args([
            &format!("--web.listen-address=127.0.0.1:{port}"),
            "--collector.disable-defaults",
            "--collector.netdev",
            "--collector.netstat",
            "--collector.sockstat",
            "--collector.softnet",
            "--collector.conntrack",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

fn ratio(a: f64, b: Option<f64>) -> String {
    match b {
        Some(b) if b > 0.0 && a.is_finite() => format!("{:.2}x", a / b),
        _ => "n/a".into(),
    }
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let podnet_port = free_port();
    let mut podnet = start_podnet(dir.path(), podnet_port);
    wait_ready(podnet_port, "/metrics");
    let p = measure(&podnet, podnet_port, true);
    let _ = podnet.kill();
    let _ = podnet.wait();

    let ne_port = free_port();
    let ne = start_node_exporter(ne_port).map(|mut child| {
        wait_ready(ne_port, "/metrics");
        let m = measure(&child, ne_port, false);
        let _ = child.kill();
        let _ = child.wait();
        m
    });
    if ne.is_none() {
        eprintln!("node_exporter not found (apt-get install prometheus-node-exporter): its column is n/a");
    }

    let collect = p.collect_ms.unwrap_or(f64::NAN);
    let rows: Vec<(&str, f64, Option<f64>)> = vec![
        ("collection (ms, mean)", collect, None),
        ("scrape (ms, mean)", p.scrape_ms, ne.as_ref().map(|n| n.scrape_ms)),
        ("collection + scrape cycle (ms)", collect + p.scrape_ms, ne.as_ref().map(|n| n.scrape_ms)),
        ("CPU per cycle (ms)", p.cpu_ms_per_cycle, ne.as_ref().map(|n| n.cpu_ms_per_cycle)),
        ("RSS after run (MiB)", p.rss_mib, ne.as_ref().map(|n| n.rss_mib)),
        ("peak RSS (MiB)", p.peak_rss_mib, ne.as_ref().map(|n| n.peak_rss_mib)),
        ("/metrics size (bytes)", p.bytes as f64, ne.as_ref().map(|n| n.bytes as f64)),
    ];
    println!(
        "podnet vs node_exporter, host namespace: netdev, netstat (TcpExt), sockstat, softnet, conntrack; {CYCLES} cycles every {}ms, same run",
        PERIOD.as_millis()
    );
    println!("{:<32} {:>12} {:>15} {:>10}", "measure", "podnet", "node_exporter", "ratio");
    for (name, a, b) in rows {
        let bs = b.map(|v| format!("{v:.3}")).unwrap_or_else(|| "n/a".into());
        println!("{name:<32} {a:>12.3} {bs:>15} {:>10}", ratio(a, b));
    }
    println!(
        "(node_exporter collects inside its scrape, so its cycle is its scrape; ratio = podnet / node_exporter, lower is better for podnet)"
    );
}
