//! The latency probes attached for real, each made to measure something the test itself
//! causes in a test pod: a reader that leaves data unread, a qdisc that holds packets, a
//! process writing to a loop device, traffic that raises softirqs. Histograms, KubeSkoop's
//! threshold counters and the slow events must name the right pod.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use podnet_integration::pods::{Pods, Sleepers, in_netns};
use podnet_integration::{Agent, http_get, json_lines, labeled_sum, root_or_skip};

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Setup {
    _turn: std::sync::MutexGuard<'static, ()>,
    pods: Pods,
    _sleepers: Sleepers,
    dir: tempfile::TempDir,
}

/// Two test pods and a directory; `None` (skipped) without root.
fn setup(tag: &str) -> Option<Setup> {
    if !root_or_skip("attaching eBPF programs and creating namespaces needs root (CI runs as root)") {
        return None;
    }
    let turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let pods = Pods::create(tag);
    let sleepers = pods.sleepers();
    Some(Setup { _turn: turn, pods, _sleepers: sleepers, dir: tempfile::tempdir().unwrap() })
}

/// An agent running `probes` (YAML under `probes:`), metrics in KubeSkoop naming on the
/// agent's port and in OTel naming on a second one, events as KubeSkoop lines in a file.
fn agent(dir: &Path, probes: &str) -> (Agent, u16) {
    let otel_port = podnet_integration::free_port();
    let config = dir.join("podnet.yaml");
    std::fs::write(
        &config,
        format!(
            "extensions:
  health_check:
    endpoint: ${{env:PODNET_HEALTH_LISTEN}}
receivers:
  ebpf:
    collection_interval: 300ms
    flush_interval: 50ms
    probes:
{probes}
exporters:
  prometheus:
    endpoint: ${{env:PODNET_LISTEN}}
    naming: kubeskoop
  prometheus/otel:
    endpoint: 127.0.0.1:{otel_port}
  file:
    path: {}
    format: kubeskoop
  file/otlp:
    path: {}
service:
  pipelines:
    metrics:
      receivers: [ebpf]
      exporters: [prometheus, prometheus/otel, file/otlp]
    logs:
      receivers: [ebpf]
      exporters: [file]
  extensions: [health_check]
",
            dir.join("events.jsonl").display(),
            dir.join("metrics.otlp.jsonl").display()
        ),
    )
    .unwrap();
    let agent = Agent::start(&["-c", config.to_str().unwrap()], &[("PODNET_NODE_NAME", "lat-node")]);
    (agent, otel_port)
}

fn wait_up(agent: &Agent, probe: &str) {
    agent.wait_until(Duration::from_secs(20), &format!("{probe} to attach"), || {
        labeled_sum(&agent.metrics(), "podnet_probe_up", &[("probe", probe)]) == 1.0
    });
}

fn events(dir: &Path) -> Vec<serde_json::Value> {
    json_lines(&dir.join("events.jsonl"))
}

fn label<'a>(e: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    e["labels"].as_array()?.iter().find(|l| l["name"] == name)?["value"].as_str()
}

/// Observations of a histogram above `seconds`: its count minus the cumulative count of
/// the largest bucket bound at or below `seconds`.
fn above(m: &str, family: &str, labels: &[(&str, &str)], seconds: f64) -> f64 {
    let count = labeled_sum(m, &format!("{family}_count"), labels);
    let prefix = format!("{family}_bucket{{");
    let mut best: Option<(f64, f64)> = None;
    for line in m.lines().filter_map(|l| l.strip_prefix(&prefix)) {
        if !labels.iter().all(|(k, v)| line.contains(&format!("{k}=\"{v}\""))) {
            continue;
        }
        let Some(le) = line.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else { continue };
        let Ok(le) = le.parse::<f64>() else { continue };
        let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else { continue };
        if le <= seconds && best.is_none_or(|(b, _)| le > b) {
            best = Some((le, v));
        }
    }
    count - best.map_or(0.0, |(_, v)| v)
}

#[test]
fn socketlatency_sees_a_reader_that_leaves_data_unread_for_150ms() {
    let Some(s) = setup("s") else { return };
    let (a, b) = (s.pods.a.as_str(), s.pods.b.as_str());
    let (agent, otel_port) = agent(s.dir.path(), "      socketlatency:\n        events_per_second: 0");
    wait_up(&agent, "socketlatency");

    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::scope(|sc| {
        sc.spawn(|| {
            in_netns(b, || {
                let l = TcpListener::bind("10.213.0.2:7300").unwrap();
                ready_tx.send(()).unwrap();
                let (mut c, _) = l.accept().unwrap();
                // The data is there; the application is busy for 150 ms.
                std::thread::sleep(Duration::from_millis(150));
                let mut buf = [0u8; 100];
                c.read_exact(&mut buf).unwrap();
                c.write_all(b"ok").unwrap();
                let _ = c.read(&mut buf);
            })
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        in_netns(a, || {
            let mut c = TcpStream::connect("10.213.0.2:7300").unwrap();
            c.write_all(&[7u8; 100]).unwrap();
            let mut ok = [0u8; 2];
            c.read_exact(&mut ok).unwrap();
        });
    });

    let family = "podnet_socket_read_delay_seconds";
    agent.wait_until(Duration::from_secs(15), "the slow read in pod b", || {
        let m = agent.metrics();
        above(&m, family, &[("k8s_pod", b)], 0.134217728) >= 1.0 && events(s.dir.path()).iter().any(|e| e["type"] == "SOCKETLAT_READSLOW")
    });
    let m = agent.metrics();
    assert_eq!(above(&m, family, &[("k8s_pod", b)], 0.134217728), 1.0, "one read waited 150 ms: bucket (2^27, 2^28] ns\n{m}");
    assert_eq!(above(&m, family, &[("k8s_pod", b)], 0.268435456), 0.0, "and not longer than 2^28 ns");
    assert_eq!(labeled_sum(&m, "kubeskoop_socketlatency_read100ms", &[("k8s_pod", b)]), 1.0, "{m}");
    assert!(labeled_sum(&m, "kubeskoop_socketlatency_read1ms", &[("k8s_pod", b)]) >= 1.0);
    assert_eq!(labeled_sum(&m, "kubeskoop_socketlatency_read100ms", &[("k8s_pod", a)]), 0.0, "pod a read at once");
    assert!(labeled_sum(&m, "podnet_socket_write_delay_seconds_count", &[("k8s_pod", a)]) >= 1.0, "a's send was measured\n{m}");
    // The sum is the latency itself, in seconds.
    let sum = labeled_sum(&m, "podnet_socket_read_delay_seconds_sum", &[("k8s_pod", b)]);
    assert!((0.15..0.5).contains(&sum), "read delay sum {sum}");

    let ev = events(s.dir.path());
    let slow: Vec<_> = ev.iter().filter(|e| e["type"] == "SOCKETLAT_READSLOW" && label(e, "pod") == Some(b)).collect();
    assert_eq!(slow.len(), 1, "{ev:#?}");
    let msg = slow[0]["msg"].as_str().unwrap();
    assert!(msg.starts_with("protocol=TCP saddr=10.213.0.2 sport=7300 daddr=10.213.0.1 dport="), "{msg}");
    assert!(msg.contains("  latency=15") && msg.ends_with(" ms"), "KubeSkoop's message with the latency: {msg}");

    // OTLP: an exponential histogram at scale 0 in nanoseconds; the 150 ms read sits in
    // bucket index 27, (2^27, 2^28] ns, under pod b's namespace.
    let otlp = std::fs::read_to_string(s.dir.path().join("metrics.otlp.jsonl")).unwrap();
    let last = otlp.lines().rev().find(|l| l.contains("podnet.socket.read.delay")).expect("an OTLP batch with the read delay");
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    let mut found = false;
    for rm in v["resourceMetrics"].as_array().unwrap() {
        if !rm["resource"].to_string().contains(b) {
            continue;
        }
        for m in rm["scopeMetrics"][0]["metrics"].as_array().unwrap() {
            if m["name"] != "podnet.socket.read.delay" {
                continue;
            }
            assert_eq!(m["unit"], "ns");
            let dp = &m["exponentialHistogram"]["dataPoints"][0];
            assert_eq!(dp["scale"].as_i64().unwrap_or(0), 0, "{dp}");
            let offset = dp["positive"]["offset"].as_i64().unwrap_or(0);
            let counts: Vec<u64> = dp["positive"]["bucketCounts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_u64().or_else(|| c.as_str().and_then(|s| s.parse().ok())).unwrap())
                .collect();
            assert_eq!(offset + counts.len() as i64 - 1, 27, "the top bucket is (2^27, 2^28] ns: {dp}");
            assert_eq!(*counts.last().unwrap(), 1, "{dp}");
            found = true;
        }
    }
    assert!(found, "{last}");

    // OTel naming: the same histogram, resource attributes as labels.
    let (_, otel) = http_get(otel_port, "/metrics").unwrap();
    assert!(otel.contains("# TYPE podnet_socket_read_delay_seconds histogram"), "{otel}");
    assert!(otel.contains("podnet_socket_read_slow_total{"), "{otel}");
}

#[test]
fn netiftxlat_sees_packets_held_in_a_qdisc() {
    let Some(s) = setup("q") else { return };
    let (a, b) = (s.pods.a.as_str(), s.pods.b.as_str());
    // 1 Mbit/s with one packet of burst: 20 datagrams of 1400 bytes leave 11 ms apart, so
    // the later ones wait over 100 ms in pod a's qdisc.
    let tc = Command::new("ip")
        .args([
            "netns", "exec", a, "tc", "qdisc", "add", "dev", &s.pods.va, "root", "tbf", "rate", "1mbit", "burst", "1540", "latency", "5s",
        ])
        .output()
        .expect("tc (iproute2)");
    assert!(tc.status.success(), "tc: {}", String::from_utf8_lossy(&tc.stderr));
    let (agent, _) = agent(s.dir.path(), "      netiftxlat:\n        events_per_second: 0");
    wait_up(&agent, "netiftxlat");
    in_netns(a, || {
        let udp = UdpSocket::bind("10.213.0.1:0").unwrap();
        for _ in 0..20 {
            udp.send_to(&[1u8; 1400], "10.213.0.2:9000").unwrap();
        }
    });
    let family = "podnet_netif_tx_queue_delay_seconds";
    let held = |m: &str| labeled_sum(m, "kubeskoop_netiftxlat_qdiscslow100ms", &[("k8s_pod", a)]);
    agent.wait_until(Duration::from_secs(15), "packets held over 100 ms in pod a's qdisc", || {
        let m = agent.metrics();
        held(&m) >= 5.0 && labeled_sum(&m, &format!("{family}_count"), &[("k8s_pod", a)]) >= 20.0
    });
    let m = agent.metrics();
    let slow = held(&m);
    // Packet i waits about (i - 1) × 11.2 ms: 11 of 20 wait longer than 100 ms, give or take one.
    assert!((9.0..=13.0).contains(&slow), "{slow} packets over 100 ms\n{m}");
    assert_eq!(
        above(&m, family, &[("k8s_pod", a), ("network_interface_name", &s.pods.va)], 0.134217728),
        above(&m, family, &[("k8s_pod", a)], 0.134217728)
    );
    assert!(above(&m, family, &[("k8s_pod", a)], 0.134217728) >= 5.0, "{m}");
    assert_eq!(held_in(&m, b), 0.0, "pod b's device holds nothing");
    // veth hands the packet to its peer in pod b: the driver stage is still pod a's device.
    assert!(labeled_sum(&m, "podnet_netif_tx_driver_duration_seconds_count", &[("k8s_pod", a)]) >= 20.0, "{m}");

    // An event per packet over the 100 ms event threshold, once the last flush is in.
    let qdisc_events = || events(s.dir.path()).into_iter().filter(|e| e["type"] == "NETIFTXLAT_QDISC").collect::<Vec<_>>();
    let deadline = Instant::now() + Duration::from_secs(10);
    while (qdisc_events().len() as f64) != held(&agent.metrics()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let q = qdisc_events();
    assert_eq!(q.len() as f64, held(&agent.metrics()), "{q:#?}");
    assert!(q.iter().all(|e| label(e, "pod") == Some(a)));
    let msg = q[0]["msg"].as_str().unwrap();
    assert!(msg.starts_with("protocol=UDP saddr=10.213.0.1 sport=") && msg.contains("daddr=10.213.0.2 dport=9000  latency:"), "{msg}");
}

fn held_in(m: &str, pod: &str) -> f64 {
    labeled_sum(m, "kubeskoop_netiftxlat_qdiscslow100ms", &[("k8s_pod", pod)])
}

#[test]
fn biolatency_names_the_pod_that_wrote() {
    let Some(s) = setup("d") else { return };
    let a = s.pods.a.as_str();
    let image = s.dir.path().join("disk.img");
    std::fs::File::create(&image).unwrap().set_len(8 << 20).unwrap();
    let out = Command::new("losetup").args(["-f", "--show"]).arg(&image).output().expect("losetup (util-linux)");
    assert!(out.status.success(), "losetup: {}", String::from_utf8_lossy(&out.stderr));
    let loop_dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
    struct Detach(String);
    impl Drop for Detach {
        fn drop(&mut self) {
            let _ = Command::new("losetup").args(["-d", &self.0]).output();
        }
    }
    let _detach = Detach(loop_dev.clone());
    let disk = loop_dev.trim_start_matches("/dev/").to_string();

    let (agent, _) = agent(s.dir.path(), "      biolatency:\n        events_per_second: 0\n        event_threshold: 1ns");
    wait_up(&agent, "biolatency");
    let dd = Command::new("ip")
        .args(["netns", "exec", a, "dd", "if=/dev/zero", &format!("of={loop_dev}"), "bs=4k", "count=64", "oflag=direct"])
        .output()
        .expect("dd");
    assert!(dd.status.success(), "dd: {}", String::from_utf8_lossy(&dd.stderr));
    let writes = |m: &str| {
        labeled_sum(m, "podnet_disk_io_latency_seconds_count", &[("k8s_pod", a), ("system_device", &disk), ("disk_io_direction", "write")])
    };
    agent.wait_until(Duration::from_secs(15), "64 direct writes in pod a", || writes(&agent.metrics()) >= 64.0);
    let m = agent.metrics();
    assert_eq!(writes(&m), 64.0, "one request per 4 KiB direct write\n{m}");
    assert_eq!(
        labeled_sum(&m, "podnet_disk_io_latency_seconds_count", &[("k8s_pod", ""), ("system_device", &disk)]),
        0.0,
        "none of the loop device's IO is the node's"
    );
    agent.wait_until(Duration::from_secs(10), "64 BIOLAT events", || {
        events(s.dir.path()).iter().filter(|e| e["type"] == "BIOLAT_10MS" && label(e, "pod") == Some(a)).count() >= 64
    });
    // With a 1 ns event threshold, an event per IO of pod a on any disk (dd's writes, what
    // opening the device reads, and reading dd itself from the root disk when `ip netns
    // exec` starts it in pod a), once the last collection and the last flush are in.
    let count_ios = || labeled_sum(&agent.metrics(), "podnet_disk_io_latency_seconds_count", &[("k8s_pod", a)]);
    let count_events = || events(s.dir.path()).iter().filter(|e| e["type"] == "BIOLAT_10MS" && label(e, "pod") == Some(a)).count() as f64;
    let deadline = Instant::now() + Duration::from_secs(10);
    while count_ios() != count_events() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(count_events(), count_ios(), "{}", agent.metrics());
    let ev = events(s.dir.path());
    let bio: Vec<_> = ev.iter().filter(|e| e["type"] == "BIOLAT_10MS" && label(e, "pod") == Some(a)).collect();
    // KubeSkoop's `<comm> <pid> latency <time>`: dd's 64 writes at least (the exec that
    // reads dd from disk still runs as `ip`).
    let by_dd = bio.iter().filter(|e| e["msg"].as_str().unwrap_or("").starts_with("dd ")).count();
    assert!(by_dd >= 64, "{bio:#?}");
}

#[test]
fn softirq_and_kernellatency_move_under_traffic() {
    let Some(s) = setup("k") else { return };
    let (a, b) = (s.pods.a.as_str(), s.pods.b.as_str());
    let (agent, otel_port) = agent(
        s.dir.path(),
        "      softirq:\n        events_per_second: 0\n        event_threshold: 1ns\n      kernellatency:\n        events_per_second: 0\n        event_threshold: 1ns\n      virtcmdlatency:",
    );
    wait_up(&agent, "softirq");
    wait_up(&agent, "kernellatency");
    // Series exist from the first collection on, at zero, as KubeSkoop's do.
    agent.wait_until(Duration::from_secs(10), "the first collection", || agent.metrics().contains("kubeskoop_softirq_schedslow{"));
    let m = agent.metrics();
    for name in [
        "kubeskoop_softirq_schedslow",
        "kubeskoop_softirq_schedslow100ms",
        "kubeskoop_softirq_excuteslow",
        "kubeskoop_softirq_excuteslow100ms",
    ] {
        assert!(m.lines().any(|l| l.starts_with(name) && l.contains("softirq_type=\"net_rx\"")), "{name}\n{m}");
    }
    // virtcmdlatency needs kprobes: unsupported here, with the reason, and the others run.
    if !Path::new("/sys/bus/event_source/devices/kprobe/type").exists() {
        assert_eq!(labeled_sum(&m, "podnet_probe_up", &[("probe", "virtcmdlatency")]), 0.0);
        let (_, status) = agent.health("/status").unwrap();
        assert!(status.contains("virtcmdlatency") && status.contains("kprobe/virtnet_send_command"), "{status}");
    }

    // 2 MB over TCP from a to b: b receives (RX path, NET_RX softirqs), a transmits.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::scope(|sc| {
        sc.spawn(|| {
            in_netns(b, || {
                let l = TcpListener::bind("10.213.0.2:7400").unwrap();
                ready_tx.send(()).unwrap();
                let (mut c, _) = l.accept().unwrap();
                let mut sink = Vec::new();
                c.read_to_end(&mut sink).unwrap();
                assert_eq!(sink.len(), 2 << 20);
            })
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        in_netns(a, || {
            let mut c = TcpStream::connect("10.213.0.2:7400").unwrap();
            c.write_all(&vec![3u8; 2 << 20]).unwrap();
        });
    });
    let rx = |m: &str, pod: &str| labeled_sum(m, "podnet_kernel_rx_latency_seconds_count", &[("k8s_pod", pod)]);
    let tx = |m: &str, pod: &str| labeled_sum(m, "podnet_kernel_tx_latency_seconds_count", &[("k8s_pod", pod)]);
    let net_rx = |m: &str| labeled_sum(m, "podnet_softirq_execution_duration_seconds_count", &[("softirq_type", "net_rx")]);
    agent.wait_until(Duration::from_secs(15), "RX in b, TX in a, NET_RX softirqs", || {
        let m = agent.metrics();
        rx(&m, b) >= 1.0 && tx(&m, a) >= 1.0 && net_rx(&m) >= 1.0
    });
    let m = agent.metrics();
    assert!(rx(&m, b) >= 10.0, "b received the data segments\n{m}");
    assert!(tx(&m, a) >= 10.0, "a transmitted them\n{m}");
    assert!(rx(&m, a) >= 1.0 && rx(&m, a) < rx(&m, b), "a received only ACKs, fewer than b's data segments");
    assert!(labeled_sum(&m, "podnet_softirq_schedule_delay_seconds_count", &[("softirq_type", "net_rx")]) >= 1.0, "{m}");

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut ev = events(s.dir.path());
    while !(ev.iter().any(|e| e["type"] == "RXKERNEL_SLOW") && ev.iter().any(|e| e["type"] == "SOFTIRQ_EXCUTE_SLOW"))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
        ev = events(s.dir.path());
    }
    let rx_ev = ev.iter().find(|e| e["type"] == "RXKERNEL_SLOW" && label(e, "pod") == Some(b)).unwrap_or_else(|| panic!("{ev:#?}"));
    assert!(rx_ev["msg"].as_str().unwrap().contains("daddr=10.213.0.2 dport=7400  latency:"), "{rx_ev}");
    let tx_ev = ev.iter().find(|e| e["type"] == "TXKERNEL_SLOW" && label(e, "pod") == Some(a)).unwrap_or_else(|| panic!("{ev:#?}"));
    assert!(tx_ev["msg"].as_str().unwrap().contains("saddr=10.213.0.1"), "{tx_ev}");
    let sirq = ev.iter().find(|e| e["type"] == "SOFTIRQ_EXCUTE_SLOW").unwrap();
    assert!(label(sirq, "type").is_some_and(|t| t == "net_rx" || t == "net_tx"), "{sirq}");
    assert!(sirq["msg"].as_str().unwrap().starts_with("cpu="), "{sirq}");

    let (_, otel) = http_get(otel_port, "/metrics").unwrap();
    assert!(otel.contains("podnet_softirq_execution_duration_seconds_bucket{"), "{otel}");
}

#[test]
fn latency_probes_plug_in_and_out_of_a_running_agent() {
    let Some(s) = setup("h") else { return };
    let (agent, _) = agent(s.dir.path(), "      softirq:");
    wait_up(&agent, "softirq");
    let config = s.dir.path().join("podnet.yaml");
    let text = std::fs::read_to_string(&config).unwrap().replace("      softirq:\n", "      socketlatency:\n");
    std::fs::write(&config, text).unwrap();
    agent.wait_until(Duration::from_secs(20), "socketlatency in, softirq out", || {
        let m = agent.metrics();
        labeled_sum(&m, "podnet_probe_up", &[("probe", "socketlatency")]) == 1.0 && !m.contains("probe=\"softirq\"")
    });
}
