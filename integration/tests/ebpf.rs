//! The eBPF probes attached for real: traffic between two test pods produces each event
//! type on purpose, and the counters, the KubeSkoop event lines and the OTLP log records
//! must name the right pod, reason and tuple.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::time::Duration;

use podnet_integration::pods::{Pods, in_netns, nft};
use podnet_integration::{Agent, json_lines, labeled_sum, root_or_skip};

/// One test at a time: they count kernel-wide things (programs loaded, loopback drops).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a test with pods needs: its turn, two test pods with a process each, a directory.
/// `None` (skipped) without root.
fn pods_test(tag: &str) -> Option<(std::sync::MutexGuard<'static, ()>, Pods, podnet_integration::pods::Sleepers, tempfile::TempDir)> {
    if !root_or_skip("attaching eBPF programs and creating namespaces needs root (CI runs as root)") {
        return None;
    }
    let turn = serial();
    let pods = Pods::create(tag);
    let sleepers = pods.sleepers();
    Some((turn, pods, sleepers, tempfile::tempdir().unwrap()))
}

fn label<'a>(e: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    e["labels"].as_array()?.iter().find(|l| l["name"] == name)?["value"].as_str()
}

/// Every OTLP log record in the file exporter's output: (event name, attributes as text).
fn otlp_records(path: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        for rl in v["resourceLogs"].as_array().into_iter().flatten() {
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                for r in sl["logRecords"].as_array().into_iter().flatten() {
                    out.push((r["eventName"].as_str().unwrap_or_default().to_string(), format!("{} {}", rl["resource"], r)));
                }
            }
        }
    }
    out
}

#[test]
fn probes_see_drops_resets_and_retransmits_per_pod() {
    let Some((_turn, pods, _sleepers, dir)) = pods_test("e") else { return };
    let events_file = dir.path().join("events.jsonl");
    let otlp_file = dir.path().join("events.otlp.jsonl");
    let config = dir.path().join("podnet.yaml");
    std::fs::write(
        &config,
        format!(
            "receivers:
  ebpf:
    collection_interval: 300ms
    flush_interval: 50ms
    program_stats: true
    probes:
      packetloss: {{ stack: true }}
      tcpreset:
      tcpretrans:
exporters:
  prometheus:
    endpoint: ${{env:PODNET_LISTEN}}
    naming: kubeskoop
  file/kubeskoop:
    path: {}
    format: kubeskoop
  file/otlp:
    path: {}
service:
  pipelines:
    metrics:
      receivers: [ebpf]
      exporters: [prometheus]
    logs:
      receivers: [ebpf]
      exporters: [file/kubeskoop, file/otlp]
",
            events_file.display(),
            otlp_file.display()
        ),
    )
    .unwrap();
    let agent = Agent::start(&["-c", config.to_str().unwrap()], &[("PODNET_NODE_NAME", "ebpf-node")]);
    agent.wait_until(Duration::from_secs(20), "the probes to attach", || {
        let m = agent.metrics();
        ["packetloss", "tcpreset", "tcpretrans"].iter().all(|p| labeled_sum(&m, "podnet_probe_up", &[("probe", p)]) == 1.0)
    });
    let (a, b) = (pods.a.as_str(), pods.b.as_str());

    // 1. A connects to B's closed port: B answers with a reset (NOSOCK) after dropping the
    //    SYN (NO_SOCKET); A receives it (RECEIVE).
    in_netns(a, || {
        let r = TcpStream::connect_timeout(&"10.213.0.2:8081".parse().unwrap(), Duration::from_secs(5));
        assert!(r.is_err(), "8081 is closed");
    });
    // 2. A aborts an established connection with SO_LINGER 0 (ACTIVE); B receives the reset.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            in_netns(b, || {
                let l = TcpListener::bind("10.213.0.2:7000").unwrap();
                ready_tx.send(()).unwrap();
                let (mut c, _) = l.accept().unwrap();
                let mut buf = [0u8; 16];
                // Ends with the reset.
                let _ = c.read(&mut buf);
            })
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        in_netns(a, || {
            let c = TcpStream::connect("10.213.0.2:7000").unwrap();
            set_linger_zero(&c);
            drop(c);
        });
    });
    // 3. UDP to B's closed port (NO_SOCKET) and to a port B's nft rule drops (NETFILTER_DROP).
    nft(b, &["add", "table", "inet", "podnet_ebpf"]);
    nft(b, &["add", "chain", "inet", "podnet_ebpf", "in", "{ type filter hook input priority 0; }"]);
    nft(b, &["add", "rule", "inet", "podnet_ebpf", "in", "udp", "dport", "5000", "drop"]);
    in_netns(a, || {
        let udp = UdpSocket::bind("10.213.0.1:0").unwrap();
        for _ in 0..3 {
            udp.send_to(b"x", "10.213.0.2:9999").unwrap();
        }
        for _ in 0..4 {
            udp.send_to(b"dropped", "10.213.0.2:5000").unwrap();
        }
    });

    let pod_b_reason =
        |m: &str, reason: &str| labeled_sum(m, "podnet_packet_drops_total", &[("k8s_pod", b), ("podnet_drop_reason", reason)]);
    agent.wait_until(Duration::from_secs(15), "the drops, resets and their events", || {
        let m = agent.metrics();
        pod_b_reason(&m, "NETFILTER_DROP") >= 4.0
            && pod_b_reason(&m, "NO_SOCKET") >= 4.0
            && labeled_sum(&m, "podnet_tcp_resets_total", &[("k8s_pod", b), ("podnet_tcp_reset_kind", "receive")]) >= 1.0
            && json_lines(&events_file).iter().filter(|e| e["type"].as_str().unwrap_or("").starts_with("TCPRESET_")).count() >= 4
    });
    let m = agent.metrics();
    assert_eq!(pod_b_reason(&m, "NO_SOCKET"), 4.0, "the SYN to :8081 and 3 datagrams to :9999\n{m}");
    assert_eq!(pod_b_reason(&m, "NETFILTER_DROP"), 4.0, "the 4 datagrams to :5000");
    assert_eq!(labeled_sum(&m, "podnet_packet_drops_total", &[("k8s_pod", a), ("podnet_drop_reason", "NETFILTER_DROP")]), 0.0);
    // KubeSkoop's flow series, with KubeSkoop's labels.
    let flow = [("k8s_pod", b), ("protocol", "UDP"), ("src", "10.213.0.1"), ("dst", "10.213.0.2")];
    assert_eq!(labeled_sum(&m, "kubeskoop_packetloss_netfilter", &flow), 4.0);
    assert_eq!(labeled_sum(&m, "kubeskoop_packetloss_total", &flow), 7.0);
    let resets = |pod: &str, kind: &str| labeled_sum(&m, "podnet_tcp_resets_total", &[("k8s_pod", pod), ("podnet_tcp_reset_kind", kind)]);
    assert_eq!(resets(b, "nosock"), 1.0);
    assert_eq!(labeled_sum(&m, "podnet_tcp_resets_total", &[("k8s_pod", b), ("podnet_tcp_reset_reason", "NO_SOCKET")]), 1.0);
    assert_eq!(resets(a, "receive"), 1.0);
    assert_eq!(resets(a, "active"), 1.0);
    assert_eq!(resets(b, "receive"), 1.0);
    assert_eq!(resets(a, "nosock") + resets(b, "active") + resets(a, "process") + resets(b, "process"), 0.0);

    // The KubeSkoop event lines: pod first, correct ports.
    let ev = json_lines(&events_file);
    let of = |kind: &str, pod: &str| ev.iter().filter(|e| e["type"] == kind && label(e, "pod") == Some(pod)).cloned().collect::<Vec<_>>();
    let nosock = of("TCPRESET_NOSOCK", b);
    assert_eq!(nosock.len(), 1, "{ev:#?}");
    let msg = nosock[0]["msg"].as_str().unwrap();
    assert!(
        msg.starts_with("protocol=TCP saddr=10.213.0.1 sport=") && msg.contains("daddr=10.213.0.2 dport=8081  state:TCP_OTHER"),
        "{msg}"
    );
    assert_eq!(label(&nosock[0], "node"), Some("ebpf-node"));
    assert_eq!(of("TCPRESET_RECEIVE", a).len(), 1, "{ev:#?}");
    let active = of("TCPRESET_ACTIVE", a);
    assert_eq!(active.len(), 1, "{ev:#?}");
    assert!(
        active[0]["msg"].as_str().unwrap().contains("saddr=10.213.0.1 sport=") && active[0]["msg"].as_str().unwrap().contains("dport=7000")
    );
    assert_eq!(of("TCPRESET_RECEIVE", b).len(), 1);
    let losses = of("PacketLoss", b);
    let closed_port = losses.iter().filter(|e| label(e, "dport") == Some("9999") && label(e, "protocol") == Some("UDP")).count();
    assert_eq!(closed_port, 3, "{losses:#?}");
    assert!(
        losses.iter().any(|e| e["msg"]
            .as_str()
            .unwrap_or("")
            .lines()
            .any(|f| f.starts_with("nft_do_chain") || f.starts_with("nf_hook_slow"))),
        "the netfilter drops carry their stack: {losses:#?}"
    );

    // The OTLP log records name the reason as the kernel does, under the pod's resource.
    let records = otlp_records(&otlp_file);
    assert!(
        records.iter().any(|(name, text)| name == "PacketLoss"
            && text.contains("\"NETFILTER_DROP\"")
            && text.contains(&format!("\"{b}\""))
            && text.contains("\"podnet.drop.location\"")),
        "{records:#?}"
    );

    // 4. Retransmits: A sends on a connection whose ACKs A's own nft rule drops.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            in_netns(b, || {
                let l = TcpListener::bind("10.213.0.2:7100").unwrap();
                ready_tx.send(()).unwrap();
                let (mut c, _) = l.accept().unwrap();
                c.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
                let mut buf = [0u8; 4096];
                // Until A is done or gone (a failed assertion in A must not hang the test).
                let deadline = std::time::Instant::now() + Duration::from_secs(40);
                while !done.load(std::sync::atomic::Ordering::Relaxed) && std::time::Instant::now() < deadline {
                    match c.read(&mut buf) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                        Err(_) => break,
                    }
                }
            })
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        // A socket belongs to the namespace it was made in, whichever thread uses it later;
        // the agent's endpoint is on the host's loopback, so the waiting happens out here.
        let mut c = in_netns(a, || TcpStream::connect("10.213.0.2:7100").unwrap());
        nft(a, &["add", "table", "inet", "podnet_ebpf"]);
        nft(a, &["add", "chain", "inet", "podnet_ebpf", "in", "{ type filter hook input priority 0; }"]);
        nft(a, &["add", "rule", "inet", "podnet_ebpf", "in", "tcp", "sport", "7100", "drop"]);
        c.write_all(b"are you there?").unwrap();
        let retransmitted =
            |m: &str| labeled_sum(m, "podnet_tcp_retransmits_total", &[("k8s_pod", a), ("network_connection_state", "established")]);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while retransmitted(&agent.metrics()) < 2.0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        drop(c);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let m = agent.metrics();
    let retrans = labeled_sum(&m, "podnet_tcp_retransmits_total", &[("k8s_pod", a), ("network_connection_state", "established")]);
    assert!(retrans >= 2.0, "A retransmits the unacknowledged data\n{m}");
    assert_eq!(labeled_sum(&m, "podnet_tcp_retransmits_total", &[("k8s_pod", b)]), 0.0, "B never had to retransmit");
    let flow = [("k8s_pod", a), ("protocol", "TCP"), ("src", "10.213.0.1"), ("dst", "10.213.0.2"), ("dport", "7100")];
    assert!(labeled_sum(&m, "kubeskoop_tcpretrans_total", &flow) >= 2.0, "{m}");
    agent.wait_until(Duration::from_secs(10), "TCPRetrans events from A", || {
        json_lines(&events_file)
            .iter()
            .any(|e| e["type"] == "TCPRetrans" && label(e, "pod") == Some(a) && label(e, "dport") == Some("7100"))
    });
    // Self-metrics: nothing lost, nothing undecodable, programs ran.
    let m = agent.metrics();
    assert_eq!(labeled_sum(&m, "podnet_ebpf_events_total", &[("outcome", "lost")]), 0.0);
    assert_eq!(labeled_sum(&m, "podnet_ebpf_events_total", &[("outcome", "decode_error")]), 0.0);
    assert!(labeled_sum(&m, "podnet_ebpf_events_total", &[("probe", "tcpreset"), ("outcome", "sent")]) >= 4.0);
    assert!(labeled_sum(&m, "podnet_ebpf_program_runs_total", &[("probe", "packetloss")]) >= 7.0, "{m}");
}

fn set_linger_zero(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt on a socket we own with a correctly sized linger struct.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
}

#[test]
fn a_probe_without_its_hook_is_unsupported_and_the_rest_run() {
    if !root_or_skip("attaching eBPF programs needs root (CI runs as root)") {
        return;
    }
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("podnet.yaml");
    std::fs::write(
        &config,
        "extensions:
  health_check:
    endpoint: ${env:PODNET_HEALTH_LISTEN}
receivers:
  ebpf:
    collection_interval: 300ms
    probes:
      packetloss: { hook: kprobe }
      tcpreset:
exporters:
  prometheus:
    endpoint: ${env:PODNET_LISTEN}
service:
  extensions: [health_check]
  pipelines:
    metrics:
      receivers: [ebpf]
      exporters: [prometheus]
",
    )
    .unwrap();
    let agent = Agent::start(&["-c", config.to_str().unwrap()], &[]);
    agent.wait_until(Duration::from_secs(20), "probe status", || {
        let m = agent.metrics();
        labeled_sum(&m, "podnet_probe_up", &[("probe", "tcpreset")]) == 1.0
            && m.lines().any(|l| l.starts_with("podnet_probe_up{") && l.contains("probe=\"packetloss\""))
    });
    let (_, status) = agent.health("/status").unwrap();
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let text = v.to_string();
    assert!(
        text.contains("packetloss") && text.contains("unsupported on this kernel") && text.contains("kprobe/kfree_skb_reason"),
        "{status}"
    );
    assert!(agent.log_text().contains("unsupported on this kernel"), "{}", agent.log_text());
    // The tcpreset probe works meanwhile: a reset on loopback is counted.
    let _ = TcpStream::connect_timeout(&"127.0.0.1:1".parse().unwrap(), Duration::from_secs(2));
    agent.wait_until(Duration::from_secs(10), "the reset counted by the running probe", || {
        labeled_sum(&agent.metrics(), "podnet_tcp_resets_total", &[("podnet_tcp_reset_kind", "nosock")]) >= 1.0
    });
}

#[test]
fn a_drop_storm_is_rate_limited_and_the_flow_table_stays_bounded() {
    let Some((_turn, pods, _sleepers, dir)) = pods_test("r") else { return };
    let events_file = dir.path().join("events.jsonl");
    let config = dir.path().join("podnet.yaml");
    std::fs::write(
        &config,
        format!(
            "receivers:
  ebpf:
    collection_interval: 300ms
    flush_interval: 50ms
    probes:
      packetloss: {{ events_per_second: 10, max_flows: 4 }}
exporters:
  prometheus:
    endpoint: ${{env:PODNET_LISTEN}}
    naming: kubeskoop
    metric_expiration: 1s
  file:
    path: {}
    format: kubeskoop
service:
  pipelines:
    metrics:
      receivers: [ebpf]
      exporters: [prometheus]
    logs:
      receivers: [ebpf]
      exporters: [file]
",
            events_file.display()
        ),
    )
    .unwrap();
    let agent = Agent::start(&["-c", config.to_str().unwrap()], &[]);
    agent.wait_until(Duration::from_secs(20), "the probe to attach", || {
        labeled_sum(&agent.metrics(), "podnet_probe_up", &[("probe", "packetloss")]) == 1.0
    });
    let a = pods.a.as_str();
    // 200 datagrams to a closed port, then one to each of 20 more loopback addresses:
    // 21 flows in a table of 4.
    in_netns(a, || {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..200 {
            udp.send_to(b"x", "127.0.0.1:9").unwrap();
        }
        for i in 2..22 {
            udp.send_to(b"x", format!("127.0.0.{i}:9")).unwrap();
        }
    });
    let drops = |m: &str| labeled_sum(m, "podnet_packet_drops_total", &[("k8s_pod", a), ("podnet_drop_reason", "NO_SOCKET")]);
    agent.wait_until(Duration::from_secs(15), "all 220 drops counted", || drops(&agent.metrics()) >= 220.0);
    // The file has what the limiter let through by the next flush.
    std::thread::sleep(Duration::from_millis(300));
    let m = agent.metrics();
    assert_eq!(drops(&m), 220.0, "the counters see every drop; only events are limited");
    let sent = json_lines(&events_file).iter().filter(|e| e["type"] == "PacketLoss" && label(e, "pod") == Some(a)).count();
    assert!((10..=20).contains(&sent), "10 a second, the burst may straddle two seconds: {sent}");
    assert!(labeled_sum(&m, "podnet_ebpf_events_total", &[("probe", "packetloss"), ("outcome", "rate_limited")]) >= 200.0, "{m}");
    // Series of evicted flows end; the endpoint forgets them after metric_expiration.
    let flows =
        |m: &str| m.lines().filter(|l| l.starts_with("kubeskoop_packetloss_total{") && l.contains(&format!("k8s_pod=\"{a}\""))).count();
    agent.wait_until(Duration::from_secs(10), "at most max_flows flow series", || (1..=4).contains(&flows(&agent.metrics())));
    assert!(labeled_sum(&m, "podnet_ebpf_flows_evicted_total", &[("probe", "packetloss")]) >= 17.0, "{m}");
}

#[test]
fn probes_are_plugged_in_and_out_by_editing_the_config() {
    if !root_or_skip("attaching eBPF programs needs root (CI runs as root)") {
        return;
    }
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("podnet.yaml");
    let write = |probes: &str| {
        let text = format!(
            "receivers:
  ebpf:
    collection_interval: 200ms
    probes:
{probes}exporters:
  prometheus:
    endpoint: ${{env:PODNET_LISTEN}}
service:
  pipelines:
    metrics:
      receivers: [ebpf]
      exporters: [prometheus]
"
        );
        let tmp = dir.path().join("podnet.yaml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, &config).unwrap();
    };
    let up = |m: &str, probe: &str| {
        m.lines().any(|l| l.starts_with("podnet_probe_up{") && l.contains(&format!("probe=\"{probe}\"")) && l.ends_with(" 1"))
    };
    write("      tcpreset:\n");
    let agent = Agent::start(&["-c", config.to_str().unwrap()], &[]);
    agent.wait_until(Duration::from_secs(20), "tcpreset attached", || up(&agent.metrics(), "tcpreset"));
    assert!(!up(&agent.metrics(), "packetloss"));
    write("      tcpreset:\n      packetloss:\n");
    agent.wait_until(Duration::from_secs(20), "packetloss plugged in without a restart", || up(&agent.metrics(), "packetloss"));
    write("      packetloss:\n");
    agent.wait_until(Duration::from_secs(20), "tcpreset unplugged", || {
        let m = agent.metrics();
        up(&m, "packetloss") && !up(&m, "tcpreset")
    });
    // Unplugged means detached: no tcpreset program is left in the kernel.
    let names: Vec<String> =
        aya::programs::loaded_programs().filter_map(Result::ok).filter_map(|p| p.name_as_str().map(str::to_string)).collect();
    assert!(!names.iter().any(|n| n.starts_with("tcpreset_")), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("packetloss_")), "{names:?}");
}
