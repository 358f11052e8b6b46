//! The shipped Grafana dashboards (distro/dashboards/) against real data: a Prometheus scrapes
//! podnet (the shipped KubeSkoop config, with the softirq and socketlatency probes on) while
//! containerd pods carry traffic that plants what every panel shows (connections and reads,
//! refused connects, UDP to a closed port, retransmits into an nft drop rule). Every query of
//! every panel, with the template variables set as Grafana would, must return series.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use podnet_integration::backends;
use podnet_integration::containerd::{Containerd, in_pod};
use podnet_integration::{Agent, free_port};

/// A panel's expression as Grafana sends it with the variables chosen below.
fn expand(expr: &str) -> String {
    expr.replace("$__rate_interval", "30s").replace("$node", "dash-node").replace("$namespace", "shop").replace("$pod", "web-0|db-0")
}

fn shipped_config_with_latency_probes() -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/kubeskoop.yaml")).unwrap();
    let text = text
        .replace("      # softirq:\n", "      softirq:\n")
        .replace("      #   softirq_types: [net_rx, net_tx]\n", "        softirq_types: [net_rx, net_tx]\n")
        .replace("      # socketlatency:\n", "      socketlatency:\n");
    assert!(text.contains("      softirq:\n") && text.contains("      socketlatency:\n"), "configs/kubeskoop.yaml changed shape");
    text
}

/// Traffic between the pods that every panel needs something of.
fn plant(web: u32, db: u32, db_ip: &str) {
    let server = in_pod(db, || TcpListener::bind("0.0.0.0:8080").unwrap());
    let echo = std::thread::spawn(move || {
        for _ in 0..5 {
            let Ok((mut c, _)) = server.accept() else { return };
            let mut buf = [0u8; 64];
            if let Ok(n) = c.read(&mut buf) {
                let _ = c.write_all(&buf[..n]);
            }
        }
    });
    let addr = format!("{db_ip}:8080");
    for _ in 0..5 {
        in_pod(web, || {
            let mut c = TcpStream::connect(&addr).unwrap();
            c.write_all(b"hello").unwrap();
            let mut buf = [0u8; 5];
            c.read_exact(&mut buf).unwrap();
        });
    }
    let _ = echo.join();
    // Refused connects (resets, NO_SOCKET drops) and UDP to a closed port.
    let closed = format!("{db_ip}:9");
    in_pod(web, || {
        for _ in 0..3 {
            let _ = TcpStream::connect_timeout(&closed.parse().unwrap(), Duration::from_secs(2));
        }
        let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..3 {
            let _ = udp.send_to(b"x", format!("{db_ip}:9999"));
        }
    });
    // SYN retransmits into db-0's nft drop rule.
    let nft = |args: &[&str]| {
        let out = Command::new("nsenter").arg("-t").arg(db.to_string()).arg("-n").arg("nft").args(args).output().unwrap();
        assert!(out.status.success(), "nft {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    nft(&["add", "table", "inet", "dash"]);
    nft(&["add", "chain", "inet", "dash", "in", "{ type filter hook input priority 0; }"]);
    nft(&["add", "rule", "inet", "dash", "in", "tcp", "dport", "7", "drop"]);
    let dropped = format!("{db_ip}:7");
    in_pod(web, || {
        let _ = TcpStream::connect_timeout(&dropped.parse().unwrap(), Duration::from_millis(2500));
    });
}

#[test]
fn every_dashboard_panel_has_data() {
    let Some(mut ctrd) = Containerd::start("d") else { return };
    let web = ctrd.run_pod("shop", "web-0", &[("app", "web")], false);
    let db = ctrd.run_pod("shop", "db-0", &[("app", "db")], false);

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, shipped_config_with_latency_probes()).unwrap();
    let events = dir.path().join("events.jsonl");
    let endpoint = ctrd.endpoint();
    let agent = Agent::start(
        &["-c", config.to_str().unwrap()],
        &[
            ("PODNET_NODE_NAME", "dash-node"),
            ("PODNET_COLLECTION_INTERVAL", "1s"),
            ("PODNET_CRI_ENDPOINT", &endpoint),
            ("PODNET_EVENTS_FILE", events.to_str().unwrap()),
        ],
    );
    let prom_dir = tempfile::tempdir().unwrap();
    let prom_port = free_port();
    std::fs::write(
        prom_dir.path().join("prometheus.yml"),
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: podnet\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n", agent.port),
    )
    .unwrap();
    let _prometheus = backends::prometheus(prom_dir.path(), prom_port, &[]);
    // The pods named, and every eBPF probe attached before the traffic it must see.
    agent.wait_until(Duration::from_secs(30), "the pods named and the probes attached", || {
        let m = agent.metrics();
        let up = m.lines().filter(|l| l.starts_with("podnet_probe_up{") && l.ends_with(" 1")).count();
        m.contains("k8s_pod=\"web-0\"") && m.contains("k8s_pod=\"db-0\"") && up == 6
    });
    plant(web.pid, db.pid, &db.ip);

    let dashboards = Path::new(env!("CARGO_MANIFEST_DIR")).join("../distro/dashboards");
    let fresh = Command::new("python3").arg(dashboards.join("generate.py")).arg("--check").output().unwrap();
    assert!(fresh.status.success(), "{}", String::from_utf8_lossy(&fresh.stderr));
    let mut panels = Vec::new();
    for name in ["kubeskoop-nodes.json", "kubeskoop-pods.json", "podnet.json"] {
        let d: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dashboards.join(name)).unwrap()).unwrap();
        let variables: Vec<&str> = d["templating"]["list"].as_array().unwrap().iter().filter_map(|v| v["name"].as_str()).collect();
        assert!(variables.starts_with(&["datasource", "node"]), "{name}: {variables:?}");
        for p in d["panels"].as_array().unwrap() {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{name}: {}", p["title"]);
            for t in p["targets"].as_array().unwrap() {
                panels.push((format!("{name}: {} ({})", p["title"].as_str().unwrap(), t["refId"]), expand(t["expr"].as_str().unwrap())));
            }
        }
    }
    assert!(panels.len() >= 50, "{} queries", panels.len());
    // Rates need two samples of the planted traffic inside the 30 s window.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let empty: Vec<String> = panels
            .iter()
            .filter_map(|(what, q)| match backends::query(prom_port, q) {
                Ok(r) if !r.is_empty() => None,
                Ok(_) => Some(format!("{what}: no series for {q}")),
                Err(e) => Some(format!("{what}: {e} for {q}")),
            })
            .collect();
        if empty.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "panels without data:\n{}\n\npodnet's /metrics:\n{}", empty.join("\n"), agent.metrics());
        std::thread::sleep(Duration::from_secs(2));
    }
}
