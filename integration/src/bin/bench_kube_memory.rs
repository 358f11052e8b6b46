//! Memory the Kubernetes API source holds per pod: a local API server serves N realistic
//! pods (containers with env, mounts, probes; managedFields; container statuses, about
//! 6 KB of JSON each) and then an idle watch; the source lists and follows them. Reported:
//! the process's RSS growth from before the source starts to when it holds all N pods and
//! the list response is gone, per 1,000 pods, min/median/max over rounds in fresh
//! processes (one round per process: the allocator keeps what it got).
//!
//! `bench_kube_memory [pods] [rounds]` (defaults 1000, 5). Run as a child of itself with
//! `--round` for each measurement.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use podnet_processor_k8s_attributes::kube::{KubeApiConfig, KubeClient, PodStore, follow};

fn pod(i: usize) -> serde_json::Value {
    let env: Vec<serde_json::Value> =
        (0..12).map(|e| serde_json::json!({"name": format!("SETTING_{e}"), "value": format!("value-{e}-{i}")})).collect();
    serde_json::json!({
        "metadata": {
            "name": format!("web-7d4b9c8f5-{i:05}"), "namespace": format!("team-{}", i % 20),
            "uid": format!("6c1f3b1e-7a51-4f0f-9d0e-{i:012}"), "resourceVersion": format!("{}", 1000 + i),
            "creationTimestamp": "2026-11-20T08:14:03Z",
            "labels": {"app": "web", "pod-template-hash": "7d4b9c8f5", "team": format!("team-{}", i % 20), "tier": "frontend"},
            "annotations": {"kubernetes.io/config.seen": "2026-11-20T08:14:03.512Z", "kubernetes.io/config.source": "api",
                            "prometheus.io/scrape": "true", "prometheus.io/port": "8080"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "web-7d4b9c8f5", "apiVersion": "apps/v1",
                                 "uid": "0f3c1a2e-1111-4c3b-9e55-5b2f0c9d7a10", "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [
                {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "time": "2026-11-20T08:14:03Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}, "f:pod-template-hash": {}, "f:team": {}, "f:tier": {}},
                 "f:ownerReferences": {}}, "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {"f:env": {}, "f:image": {}, "f:ports": {}, "f:resources": {}}}}}},
                {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": "2026-11-20T08:14:05Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:conditions": {}, "f:containerStatuses": {}, "f:hostIP": {}, "f:podIP": {}, "f:podIPs": {}}},
                 "subresource": "status"}
            ]
        },
        "spec": {
            "nodeName": "node-1", "hostNetwork": false, "serviceAccountName": "web", "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
            "containers": [{
                "name": "app", "image": "registry.example.com/shop/web:1.42.0", "env": env,
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 5},
                "livenessProbe": {"httpGet": {"path": "/live", "port": 8080}, "periodSeconds": 10},
                "volumeMounts": [{"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}]
            }],
            "volumes": [{"name": "kube-api-access", "projected": {"sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}]}}],
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]
        },
        "status": {
            "phase": "Running", "podIP": format!("10.{}.{}.{}", 244 + i / 65536, (i / 256) % 256, i % 256),
            "podIPs": [{"ip": format!("10.{}.{}.{}", 244 + i / 65536, (i / 256) % 256, i % 256)}], "hostIP": "192.168.10.21",
            "qosClass": "Burstable", "startTime": "2026-11-20T08:14:03Z",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-20T08:14:05Z"},
                           {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-11-20T08:14:05Z"}],
            "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "image": "registry.example.com/shop/web:1.42.0",
                                   "imageID": "registry.example.com/shop/web@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                                   "containerID": format!("containerd://{i:064}"), "started": true,
                                   "state": {"running": {"startedAt": "2026-11-20T08:14:04Z"}}}]
        }
    })
}

/// Answers a list with `body`, then holds every watch open without events.
fn serve(body: Arc<Vec<u8>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let body = body.clone();
            std::thread::spawn(move || {
                let mut s = stream;
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_string();
                if line.contains("watch=") {
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
                    std::thread::sleep(Duration::from_secs(3600));
                } else {
                    let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
                    let _ = s.write_all(&body);
                }
            });
        }
    });
    port
}

fn rss_kib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// One measurement in this process: KiB of RSS per 1,000 pods.
fn round(pods: usize) -> f64 {
    let items: Vec<serde_json::Value> = (0..pods).map(pod).collect();
    let list = serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "999999"}, "items": items});
    let body = serde_json::to_vec(&list).expect("json");
    drop(list);
    let port = serve(Arc::new(body));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    std::thread::sleep(Duration::from_millis(200));
    let before = rss_kib();
    let store: PodStore = Arc::default();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let config = KubeApiConfig { token_file: "/nonexistent".into(), ..Default::default() };
    let s = store.clone();
    let sd = shutdown.clone();
    rt.spawn(async move {
        let client = KubeClient::new(&format!("http://127.0.0.1:{port}"), &config, "node-1").expect("client");
        follow(client, s, sd, |e| eprintln!("kube: {e}")).await;
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.lock().map(|s| s.len()).unwrap_or(0) < pods {
        assert!(Instant::now() < deadline, "the source did not load {pods} pods");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the list's buffers go and the watch settle.
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib();
    shutdown.cancel();
    (after - before) * 1000.0 / pods as f64
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--round") {
        let pods = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1000);
        println!("{:.0}", round(pods));
        return;
    }
    let pods: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rounds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5);
    let exe = std::env::current_exe().expect("exe");
    let mut kib: Vec<f64> = (0..rounds)
        .filter_map(|_| {
            let out = Command::new(&exe).args(["--round", &pods.to_string()]).output().ok()?;
            String::from_utf8_lossy(&out.stdout).trim().parse().ok()
        })
        .collect();
    kib.sort_by(f64::total_cmp);
    if kib.is_empty() {
        eprintln!("no round finished");
        std::process::exit(1);
    }
    println!("## Kubernetes API source: memory held per 1,000 pods ({pods} pods of ~6 KB JSON, {} rounds)\n", kib.len());
    println!("| what | min | median | max |\n|---|---|---|---|");
    println!("| RSS growth, KiB per 1,000 pods | {:.0} | {:.0} | {:.0} |", kib[0], kib[kib.len() / 2], kib[kib.len() - 1]);
}
