//! `scripts/bench`, third table: what exporting costs per sample, side by side in one run:
//! remote-write encoding (translation, protobuf, snappy) against OTLP encoding (protobuf,
//! gzip), bytes per sample on the wire, and samples per second a local Prometheus accepts
//! over remote write (when Debian's `prometheus` is installed).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use podnet_exporter_prometheus_remote_write::{encode, to_timeseries};
use podnet_integration::{free_port, http_get};
use podnet_pipeline::pdata::{MetricDef, Metrics, MetricsBuilder, keys, kv_int, kv_str};
use podnet_prometheus_translator::{Naming, Translator};
use prost::Message;

const NAMESPACES: usize = 1000;
const METRICS: usize = 60;

/// A collection the size of a busy node: 1000 namespaces × 60 counters.
fn batch(round: u64) -> Metrics {
    let defs: Vec<MetricDef> = (0..METRICS)
        .map(|i| {
            MetricDef::counter(podnet_pipeline::pdata::intern(&format!("podnet.bench.counter_{i}")), "bench", "{event}")
                .kubeskoop(podnet_pipeline::pdata::intern(&format!("kubeskoop_bench_c{i}")))
        })
        .collect();
    let now = 1_800_000_000_000_000_000 + round * 1_000_000_000;
    let mut b = MetricsBuilder::new("bench");
    for ns in 0..NAMESPACES {
        let mut r = b.resource(vec![
            kv_str(keys::K8S_NODE_NAME, "node"),
            kv_int(keys::NETNS_INODE, 4026531840 + ns as i64),
            kv_str(keys::K8S_POD_NAME, format!("pod-{ns}")),
        ]);
        for (i, d) in defs.iter().enumerate() {
            r.point(d, vec![], 1, now, ((ns * 1000 + i) as u64 * (round + 1)).into());
        }
    }
    b.finish()
}

fn rw_bodies(m: &Metrics) -> Vec<(Vec<u8>, usize)> {
    let t =
        Translator { naming: Naming::Kubeskoop, namespace: "", resource_labels: &[], const_labels: &[], all_resource_attributes: false };
    let mut samples = Vec::new();
    t.translate(m.resources(), &mut samples);
    encode(to_timeseries(samples, &Default::default()), 3_000_000)
}

fn otlp_body(m: &Metrics) -> Vec<u8> {
    let raw = m.to_request().encode_to_vec();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&raw).expect("gzip to memory");
    enc.finish().expect("gzip to memory")
}

fn post(port: u16, body: &[u8]) -> u16 {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return 0 };
    let head = format!(
        "POST /api/v1/write HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Encoding: snappy\r\nContent-Type: application/x-protobuf\r\nX-Prometheus-Remote-Write-Version: 0.1.0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if s.write_all(head.as_bytes()).and_then(|_| s.write_all(body)).is_err() {
        return 0;
    }
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

fn main() {
    let m = batch(0);
    let points = m.point_count() as f64;
    let rounds = 5;
    let t0 = Instant::now();
    let mut rw_bytes = 0;
    for _ in 0..rounds {
        rw_bytes = rw_bodies(&m).iter().map(|(b, _)| b.len()).sum::<usize>();
    }
    let rw_ns = t0.elapsed().as_nanos() as f64 / rounds as f64 / points;
    let t0 = Instant::now();
    let mut otlp_bytes = 0;
    for _ in 0..rounds {
        otlp_bytes = otlp_body(&m).len();
    }
    let otlp_ns = t0.elapsed().as_nanos() as f64 / rounds as f64 / points;
    println!("exporting one collection of {NAMESPACES} namespaces × {METRICS} counters ({points} samples), same run");
    println!("{:<40} {:>14} {:>14} {:>10}", "measure", "remote write", "OTLP (gzip)", "ratio");
    println!("{:<40} {:>14.0} {:>14.0} {:>9.2}x", "encode cost per sample (ns)", rw_ns, otlp_ns, rw_ns / otlp_ns);
    println!(
        "{:<40} {:>14.2} {:>14.2} {:>9.2}x",
        "bytes per sample on the wire",
        rw_bytes as f64 / points,
        otlp_bytes as f64 / points,
        rw_bytes as f64 / otlp_bytes as f64
    );

    // Sustained ingestion into a real Prometheus, when installed.
    let Ok(dir) = tempfile::tempdir() else { return };
    let port = free_port();
    std::fs::write(dir.path().join("p.yml"), "global:\n  scrape_interval: 1h\n").expect("write config");
    let Ok(mut prom) = Command::new("prometheus")
        .arg(format!("--config.file={}", dir.path().join("p.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-remote-write-receiver")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        println!("{:<40} {:>14}", "samples/s into Prometheus", "n/a (apt-get install prometheus)");
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(port, "/-/ready").is_none_or(|(s, _)| s != 200) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let (mut sent, mut round) = (0usize, 1u64);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        for (body, n) in rw_bodies(&batch(round)) {
            if post(port, &body) / 100 == 2 {
                sent += n;
            }
        }
        round += 1;
    }
    let rate = sent as f64 / start.elapsed().as_secs_f64();
    println!("{:<40} {:>14.0} {:>14}", "samples/s into Prometheus (encode + send)", rate, "");
    let _ = prom.kill();
    let _ = prom.wait();
}
