//! Test pods: two network namespaces joined by a veth pair. Known traffic between them
//! must move each namespace's own series by exactly the right amount, and no other's.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use podnet_integration::pods::{Pods, in_netns, nft};
use podnet_integration::{Agent, root_or_skip};

/// `kubeskoop_<metric>` per `k8s_pod` label value.
fn by_pod(metrics: &str, metric: &str) -> BTreeMap<String, f64> {
    let prefix = format!("{metric}{{");
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let pod = rest.split("k8s_pod=\"").nth(1)?.split('"').next()?.to_string();
            let value = rest.rsplit(' ').next()?.parse().ok()?;
            Some((pod, value))
        })
        .collect()
}

#[test]
fn each_test_pod_counts_its_own_traffic() {
    if !root_or_skip("creating network namespaces needs root (the test suite runs as root in CI)") {
        return;
    }
    let pods = Pods::create("p");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("podnet.yaml");
    std::fs::write(
        &config,
        "extensions:
  netns: { refresh_interval: 200ms }
receivers:
  procfs:
    collection_interval: 200ms
    probes: [netdev, tcp, udp, ip, sock]
exporters:
  prometheus:
    endpoint: ${env:PODNET_LISTEN}
    naming: kubeskoop
service:
  extensions: [netns]
  pipelines:
    metrics:
      receivers: [procfs]
      exporters: [prometheus]
",
    )
    .unwrap();
    // Namespaces need a process for /proc discovery: a sleeper in each test pod.
    let sleepers = pods.sleepers();
    let agent = Agent::start(&["-c", config.to_str().unwrap()], &[("PODNET_NODE_NAME", "netns-node")]);
    agent.wait_until(Duration::from_secs(15), "both test pods on /metrics", || {
        let m = by_pod(&agent.metrics(), "kubeskoop_tcp_activeopens");
        m.contains_key(&pods.a) && m.contains_key(&pods.b)
    });
    let before = agent.metrics();

    // B drops UDP to :7777 with an nft rule (the packets arrive, IP sees them, UDP never does).
    nft(&pods.b, &["add", "table", "inet", "podnet_test"]);
    nft(&pods.b, &["add", "chain", "inet", "podnet_test", "in", "{ type filter hook input priority 0; }"]);
    nft(&pods.b, &["add", "rule", "inet", "podnet_test", "in", "udp", "dport", "7777", "drop"]);

    // Traffic: B listens on :8080; A connects 5 times, once to the closed :8081 (reset),
    // sends 3 UDP datagrams to the closed :9999 and 4 to :7777, which B's rule drops.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            in_netns(&pods.b, || {
                let listener = TcpListener::bind("10.213.0.2:8080").unwrap();
                ready_tx.send(()).unwrap();
                for _ in 0..5 {
                    let (mut c, _) = listener.accept().unwrap();
                    let mut buf = [0u8; 5];
                    c.read_exact(&mut buf).unwrap();
                    c.write_all(b"pong").unwrap();
                }
            })
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        in_netns(&pods.a, || {
            for _ in 0..5 {
                let mut c = TcpStream::connect_timeout(&"10.213.0.2:8080".parse().unwrap(), Duration::from_secs(5)).unwrap();
                c.write_all(b"ping!").unwrap();
                let mut buf = [0u8; 4];
                c.read_exact(&mut buf).unwrap();
            }
            let refused = TcpStream::connect_timeout(&"10.213.0.2:8081".parse().unwrap(), Duration::from_secs(5));
            assert!(refused.is_err(), "8081 is closed");
            let udp = UdpSocket::bind("10.213.0.1:0").unwrap();
            let to: SocketAddr = "10.213.0.2:9999".parse().unwrap();
            for _ in 0..3 {
                udp.send_to(b"x", to).unwrap();
            }
            for _ in 0..4 {
                udp.send_to(b"dropped", "10.213.0.2:7777").unwrap();
            }
        });
    });

    let delta = |after: &str, metric: &str, pod: &str| {
        by_pod(after, metric).get(pod).copied().unwrap_or(f64::NAN) - by_pod(&before, metric).get(pod).copied().unwrap_or(f64::NAN)
    };
    agent.wait_until(Duration::from_secs(15), "B's counters to take in all the traffic", || {
        let m = agent.metrics();
        delta(&m, "kubeskoop_udp_noports", &pods.b) >= 3.0
            && delta(&m, "kubeskoop_ip_inreceives", &pods.b) - delta(&m, "kubeskoop_ip_indelivers", &pods.b) >= 4.0
    });
    // Every counter of this traffic has moved by now (the same collection saw it all).
    let after = agent.metrics();
    let (a, b) = (pods.a.as_str(), pods.b.as_str());
    assert_eq!(delta(&after, "kubeskoop_tcp_activeopens", a), 6.0, "5 connections and 1 refused attempt");
    assert_eq!(delta(&after, "kubeskoop_tcp_attemptfails", a), 1.0);
    assert_eq!(delta(&after, "kubeskoop_tcp_passiveopens", b), 5.0);
    assert_eq!(delta(&after, "kubeskoop_tcp_outrsts", b), 1.0, "the reset to the closed port");
    assert_eq!(delta(&after, "kubeskoop_udp_noports", b), 3.0, "the dropped datagrams never reached UDP");
    assert_eq!(delta(&after, "kubeskoop_udp_indatagrams", b), 0.0);
    // IP received every packet of this traffic, the nft-dropped ones included; it delivered
    // all but those 4.
    assert_eq!(
        delta(&after, "kubeskoop_ip_inreceives", b) - delta(&after, "kubeskoop_ip_indelivers", b),
        4.0,
        "the 4 datagrams the nft rule dropped"
    );
    // No other namespace moved.
    assert_eq!(delta(&after, "kubeskoop_tcp_activeopens", b), 0.0);
    assert_eq!(delta(&after, "kubeskoop_tcp_passiveopens", a), 0.0);
    assert_eq!(delta(&after, "kubeskoop_udp_noports", a), 0.0);
    assert_eq!(delta(&after, "kubeskoop_udp_noports", ""), 0.0, "the host");
    // The devices saw the packets.
    assert!(delta(&after, "kubeskoop_netdev_rxpackets", b) >= 5.0 * 3.0 + 3.0, "{after}");
    assert!(delta(&after, "kubeskoop_netdev_txpackets", a) >= 5.0 * 3.0 + 3.0);

    // A deleted pod: its namespace goes, and its series with it (after metric_expiration;
    // here, it simply stops updating and is no longer collected).
    drop(sleepers);
    drop(pods);
    let collections = |m: &str| podnet_integration::series_sum(m, "podnet_receiver_collection_duration_seconds_count");
    let at_delete = collections(&agent.metrics());
    agent.wait_until(Duration::from_secs(15), "three collections after the deletion", || collections(&agent.metrics()) >= at_delete + 3.0);
    assert!(!agent.log_text().contains("collection error"), "a deleted pod is not an error:\n{}", agent.log_text());
}

fn value(metrics: &str, metric: &str, pod: &str) -> f64 {
    by_pod(metrics, metric).get(pod).copied().unwrap_or(f64::NAN)
}

#[test]
fn netlink_probes_see_each_pods_sockets_qdisc_and_conntrack() {
    if !root_or_skip("creating network namespaces needs root (the test suite runs as root in CI)") {
        return;
    }
    let pods = Pods::create("n");
    // A real root qdisc on B's device (veths have none by default).
    let tc =
        Command::new("tc").args(["-n", &pods.b, "qdisc", "add", "dev", &pods.vb, "root", "pfifo", "limit", "1000"]).output().expect("tc");
    assert!(tc.status.success(), "{}", String::from_utf8_lossy(&tc.stderr));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("podnet.yaml");
    std::fs::write(
        &config,
        format!(
            "extensions:
  netns: {{ refresh_interval: 200ms }}
receivers:
  netlink:
    collection_interval: 200ms
    qdisc: {{ devices: '{}' }}
exporters:
  prometheus:
    endpoint: ${{env:PODNET_LISTEN}}
    naming: kubeskoop
service:
  extensions: [netns]
  pipelines:
    metrics:
      receivers: [netlink]
      exporters: [prometheus]
",
            pods.vb
        ),
    )
    .unwrap();
    let sleepers = pods.sleepers();
    let agent = Agent::start(&["-c", config.to_str().unwrap()], &[("PODNET_NODE_NAME", "netlink-node")]);
    let (a, b) = (pods.a.clone(), pods.b.clone());
    agent.wait_until(Duration::from_secs(15), "both pods' tcpsummary", || {
        let m = by_pod(&agent.metrics(), "kubeskoop_tcpsummary_tcpestablishedconn");
        m.contains_key(&a) && m.contains_key(&b)
    });

    // B listens and accepts nothing; A opens 3 connections and writes 100 bytes on each:
    // they sit established in B's accept queue, with their bytes unread.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let b_ns = pods.b.clone();
        s.spawn(move || {
            in_netns(&b_ns, move || {
                let listener = TcpListener::bind("10.213.0.2:8080").unwrap();
                ready_tx.send(()).unwrap();
                done_rx.recv_timeout(Duration::from_secs(30)).ok();
                drop(listener);
            })
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let conns: Vec<TcpStream> = in_netns(&pods.a, || {
            (0..3)
                .map(|_| {
                    let mut c = TcpStream::connect_timeout(&"10.213.0.2:8080".parse().unwrap(), Duration::from_secs(5)).unwrap();
                    c.write_all(&[7u8; 100]).unwrap();
                    c
                })
                .collect()
        });
        agent.wait_until(Duration::from_secs(15), "B's 3 established connections", || {
            value(&agent.metrics(), "kubeskoop_tcpsummary_tcpestablishedconn", &b) == 3.0
        });
        agent.wait_until(Duration::from_secs(15), "B's unread bytes", || {
            value(&agent.metrics(), "kubeskoop_tcpsummary_tcprxqueue", &b) == 300.0
        });
        let m = agent.metrics();
        assert_eq!(value(&m, "kubeskoop_tcpsummary_tcpestablishedconn", &a), 3.0, "the client side");
        assert_eq!(value(&m, "kubeskoop_tcpsummary_tcprxqueue", &a), 0.0);
        assert!(!value(&m, "kubeskoop_tcpsummary_tcpestablishedconn", "").is_nan(), "the host has its series too");
        // Beyond KubeSkoop: the accept queue (3 pending connections, never accepted).
        assert_eq!(value(&m, "podnet_tcp_listen_pending", &b), 3.0, "{m}");
        assert!(value(&m, "podnet_tcp_listen_max_fill_ratio", &b) > 0.0);
        assert!(value(&m, "kubeskoop_qdisc_packets", &b) > 0.0, "B's pfifo carried B's SYN-ACKs and ACKs:\n{m}");
        assert_eq!(value(&m, "kubeskoop_qdisc_packets", &a), 0.0, "A's device is not selected");
        assert!(m.contains(&format!("network_interface_name=\"{}\",podnet_qdisc_kind=\"pfifo\"", pods.vb)), "{m}");
        for pod in [a.as_str(), b.as_str(), ""] {
            assert!(value(&m, "kubeskoop_conntrack_maxentries", pod) > 0.0, "conntrack of {pod:?}:\n{m}");
        }
        done_tx.send(()).unwrap();
        drop(conns);
    });
    drop(sleepers);
}
