//! The on-node investigation workflow against a running agent: its control socket (root's
//! alone), a probe switched on for a bounded time by `podnet events --enable` (attached,
//! streaming, kept across a config reload, not extended by another client unless it says so,
//! off by itself at its deadline), `podnet events` filters with exact counts, and
//! `podnet top` (`--once`, and interactive under tmux) putting the pod with a drop storm first.

use std::net::{TcpStream, UdpSocket};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use podnet_integration::pods::{Pods, in_netns, nft};
use podnet_integration::{Agent, labeled_sum, podnet_binary, root_or_skip};

fn podnet(args: &[&str]) -> Output {
    Command::new(podnet_binary()).args(args).output().expect("run podnet")
}

fn lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

fn wait(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux").args(args).output().expect("tmux");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn investigation_workflow() {
    if !root_or_skip("test pods and eBPF need root (CI runs as root)") {
        return;
    }
    let pods = Pods::create("ct");
    let (a, b) = (pods.a.as_str(), pods.b.as_str());
    // Without k8s_attributes a test pod is named as KubeSkoop names a bare namespace.
    let pod_name = |ns: &str| format!("netns-{}", std::fs::metadata(format!("/run/netns/{ns}")).unwrap().ino());
    let (pod_a, pod_b) = (pod_name(a), pod_name(b));
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/control.sock");
    let sock = socket.to_str().unwrap();
    let config = dir.path().join("podnet.yaml");
    let write_config = |interval: &str| {
        std::fs::write(
            &config,
            format!(
                "receivers:
  ebpf:
    collection_interval: {interval}
    probes:
      packetloss:
exporters:
  prometheus:
    endpoint: ${{env:PODNET_LISTEN}}
service:
  pipelines:
    metrics:
      receivers: [ebpf]
      exporters: [prometheus]
"
            ),
        )
        .unwrap()
    };
    write_config("300ms");
    let agent = Agent::start(&["-c", config.to_str().unwrap(), "--control-socket", sock], &[]);
    let probe_up = |probe: &str| labeled_sum(&agent.metrics(), "podnet_probe_up", &[("probe", probe)]) == 1.0;
    wait("packetloss to attach", 30, || probe_up("packetloss"));

    // The socket is root's alone: mode 0600 in a directory the agent made 0700; a non-root
    // peer is refused even when the modes would let it connect.
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!((meta.mode() & 0o777, meta.uid()), (0o600, 0));
    assert_eq!(std::fs::metadata(socket.parent().unwrap()).unwrap().mode() & 0o777, 0o700);
    let as_nobody = || {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(podnet_binary())
            .args(["events", "--control-socket", sock, "--timeout", "2s"])
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (ok, said) = as_nobody();
    assert!(!ok && said.contains("Permission denied"), "{said}");
    let open = |mode: u32| {
        for p in [dir.path(), socket.parent().unwrap(), socket.as_path()] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(if p == socket { mode | 0o600 } else { mode | 0o700 })).unwrap();
        }
    };
    open(0o777);
    let (ok, said) = as_nobody();
    assert!(!ok && said.contains("refused: the control socket serves root only (you are uid 65534)"), "{said}");
    open(0);

    // `podnet events --enable tcpreset --for 8s`, filtered to pod B's NOSOCK resets.
    let streamer = Command::new(podnet_binary())
        .args(["events", "--control-socket", sock, "--enable", "tcpreset", "--for", "8s"])
        .args(["--pod", &pod_b, "--type", "TCPRESET_NOSOCK", "-o", "kubeskoop", "--count", "3", "--timeout", "30s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait("tcpreset to attach", 30, || probe_up("tcpreset"));
    let switched_on = Instant::now();

    // Another client cannot move its deadline without saying so.
    let other = podnet(&["events", "--control-socket", sock, "--enable", "tcpreset", "--for", "8s", "--timeout", "1s"]);
    let said = String::from_utf8_lossy(&other.stderr);
    assert!(!other.status.success() && said.contains("already on until") && said.contains("--extend"), "{said}");
    let extended = podnet(&["events", "--control-socket", sock, "--enable", "tcpreset", "--for", "8s", "--extend", "--timeout", "1s"]);
    assert!(extended.status.success(), "{}", String::from_utf8_lossy(&extended.stderr));
    let switched_on = switched_on.max(Instant::now());

    // A config reload keeps the time-boxed probe.
    write_config("250ms");
    wait("the reload", 15, || agent.log_text().matches("config reloaded").count() >= 2);
    wait("tcpreset after the reload", 15, || probe_up("tcpreset") && probe_up("packetloss"));

    // 3 connects from A to B's closed port (3 NOSOCK in B, 3 RECEIVE in A), 1 from B to A's
    // (1 NOSOCK in A, 1 RECEIVE in B).
    for _ in 0..3 {
        in_netns(a, || assert!(TcpStream::connect_timeout(&"10.213.0.2:8081".parse().unwrap(), Duration::from_secs(5)).is_err()));
    }
    in_netns(b, || assert!(TcpStream::connect_timeout(&"10.213.0.1:8081".parse().unwrap(), Duration::from_secs(5)).is_err()));
    let out = streamer.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = lines(&out);
    let all = || lines(&podnet(&["events", "--control-socket", sock, "--since", "5m", "--timeout", "1s"])).join("\n");
    assert_eq!(got.len(), 3, "{got:?}; every event kept: {}", all());
    assert!(
        got.iter()
            .all(|l| l.contains("\"type\":\"TCPRESET_NOSOCK\"") && l.contains(&format!("{{\"name\":\"pod\",\"value\":\"{pod_b}\"}}"))),
        "{got:?}"
    );
    // The kept events, filtered afterwards: exact counts per pod and type.
    let count = |args: &[&str]| {
        lines(&podnet(&[&["events", "--control-socket", sock, "--since", "5m", "--timeout", "1s"][..], args].concat())).len()
    };
    wait("the last events to arrive", 10, || count(&["--pod", &pod_a, "--type", "TCPRESET_*"]) == 4);
    assert_eq!(count(&["--pod", &pod_a, "--type", "TCPRESET_NOSOCK"]), 1);
    assert_eq!(count(&["--pod", &pod_a, "--type", "TCPRESET_RECEIVE"]), 3);
    assert_eq!(count(&["--pod", &pod_b, "--type", "TCPRESET_*"]), 4);
    let otlp = lines(&podnet(&[
        "events",
        "--control-socket",
        sock,
        "--since",
        "5m",
        "--timeout",
        "1s",
        "--pod",
        &pod_b,
        "--type",
        "TCPRESET_RECEIVE",
        "-o",
        "otlp-json",
    ]));
    assert_eq!(otlp.len(), 1, "{otlp:?}");
    let v: serde_json::Value = serde_json::from_str(&otlp[0]).unwrap();
    assert_eq!(v["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["eventName"], "TCPRESET_RECEIVE", "{v}");

    // /status names the probe, who asked and until when; at the deadline it goes by itself.
    wait("the probe to switch off", 20, || !probe_up("tcpreset"));
    let on_for = switched_on.elapsed();
    assert!(on_for >= Duration::from_secs(6), "off after {on_for:?}, asked for 8 s");
    assert!(agent.log_text().contains("time-boxed probe switched off: its time is up"), "{}", agent.log_text());

    // A drop storm in B: 300 datagrams a second to a port B's nft rule drops.
    nft(b, &["add", "table", "inet", "podnet_ct"]);
    nft(b, &["add", "chain", "inet", "podnet_ct", "in", "{ type filter hook input priority 0; }"]);
    nft(b, &["add", "rule", "inet", "podnet_ct", "in", "udp", "dport", "5000", "drop"]);
    let storming = AtomicBool::new(true);
    // Stops the storm however the checks below end (a failed one must not hang the test).
    struct Calm<'a>(&'a AtomicBool);
    impl Drop for Calm<'_> {
        fn drop(&mut self) {
            self.0.store(false, Ordering::Relaxed);
        }
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            in_netns(a, || {
                let udp = UdpSocket::bind("10.213.0.1:0").unwrap();
                while storming.load(Ordering::Relaxed) {
                    let _ = udp.send_to(b"storm", "10.213.0.2:5000");
                    std::thread::sleep(Duration::from_millis(3));
                }
            })
        });
        let _calm = Calm(&storming);
        let mut table = String::new();
        wait("the storm in top --once", 20, || {
            table = String::from_utf8_lossy(&podnet(&["top", "--once", "--control-socket", sock]).stdout).to_string();
            table.lines().nth(1).is_some_and(|l| l.starts_with(&pod_b) && l.contains("NETFILTER_DROP"))
        });
        assert!(table.lines().next().unwrap().starts_with("POD") && table.lines().all(|l| l.chars().count() <= 80), "{table}");

        // Interactive, in an 80×24 terminal: the storm first, Enter opens the pod, q exits and
        // gives the shell its screen back.
        let session = format!("podnet-top-{}", std::process::id());
        let cmd = format!("{} top --control-socket {sock}; echo TOP-EXITED; sleep 30", podnet_binary().display());
        tmux(&["new-session", "-d", "-s", &session, "-x", "80", "-y", "24", &cmd]);
        let screen = || tmux(&["capture-pane", "-p", "-t", &session]);
        wait("top's table", 15, || screen().lines().nth(2).is_some_and(|l| l.contains(&pod_b)));
        assert!(screen().contains("podnet top"), "{}", screen());
        tmux(&["send-keys", "-t", &session, "Enter"]);
        wait("the pod view", 10, || screen().contains("latest events:") && screen().contains("podnet.packet.drops/NETFILTER_DROP"));
        tmux(&["send-keys", "-t", &session, "Escape"]);
        wait("the table again", 10, || screen().contains("TOP REASON"));
        tmux(&["send-keys", "-t", &session, "q"]);
        wait("top to exit", 10, || screen().contains("TOP-EXITED"));
        assert!(!screen().contains("TOP REASON"), "the alternate screen is gone: {}", screen());
        tmux(&["kill-session", "-t", &session]);
    });
}
