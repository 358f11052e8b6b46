//! Memory the Kubernetes API source and the ip_identity cache hold per pod: a local API server serves N realistic
//! pods (containers with env, mounts, probes; managedFields; container statuses, about
//! 6 KB of JSON each) and then an idle watch; the source lists and follows them. Reported:
//! the process's RSS growth from before the source starts to when it holds all N pods and
//! the list response is gone, per 1,000 pods, min/median/max over rounds in fresh
//! processes (one round per process: the allocator keeps what it got).
//!
//! The server pages its answer (100 pods, continue tokens) when the client asks for a
//! limit, and answers whole otherwise, as an API server does.
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

/// The list as an API server answers it: whole, or in pages of `PAGE` with continue tokens
/// when the client asks for a limit (as it does for kube-rs's watcher). Encoded before the
/// measurement starts, so the server's own allocations are not counted.
struct Lists {
    whole: Vec<u8>,
    pages: Vec<Vec<u8>>,
}

const PAGE: usize = 100;

fn lists(pods: usize) -> Lists {
    let items: Vec<serde_json::Value> = (0..pods).map(pod).collect();
    let list = |items: &[serde_json::Value], cont: Option<String>| {
        let mut meta = serde_json::json!({"resourceVersion": "999999"});
        if let Some(c) = cont {
            meta["continue"] = c.into();
        }
        serde_json::to_vec(&serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": meta, "items": items})).expect("json")
    };
    let pages = items
        .chunks(PAGE)
        .enumerate()
        .map(|(i, chunk)| list(chunk, ((i + 1) * PAGE < items.len()).then(|| format!("page{}", i + 1))))
        .collect();
    Lists { whole: list(&items, None), pages }
}

/// Answers lists from `lists`, then holds every watch open without events.
fn serve(lists: Arc<Lists>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let lists = lists.clone();
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
                    let page: Option<usize> =
                        line.split(['?', '&', ' ']).find_map(|p| p.strip_prefix("continue=page")).and_then(|n| n.parse().ok());
                    assert!(!line.contains("limit=") || line.contains(&format!("limit={PAGE}")), "pages of {PAGE} only: {line}");
                    let body = match (line.contains("limit="), page) {
                        (false, _) => &lists.whole,
                        (true, None) => &lists.pages[0],
                        (true, Some(n)) => &lists.pages[n],
                    };
                    let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
                    let _ = s.write_all(body);
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

#[derive(Clone, Copy, PartialEq)]
enum Source {
    /// podnet's source: kube-runtime's watcher into podnet's compact store.
    Podnet,
    /// The textbook kube-rs way: `reflector` over the same watcher, holding typed Pods
    /// (managedFields dropped, as kube-rs recommends).
    Reflector,
    /// The cluster-wide IP identity cache (`ip_identity`, pods only): claims by uid and
    /// the address index built from them.
    Identity,
}

/// The reference column: list and watch the same pods into a reflector store.
async fn reflector_until_loaded(port: u16, pods: usize) -> kube::runtime::reflector::Store<k8s_openapi::api::core::v1::Pod> {
    use futures_util::StreamExt;
    use kube::runtime::{WatchStreamExt, reflector, watcher};
    let client = kube::Client::try_from(kube::Config::new(format!("http://127.0.0.1:{port}").parse().expect("uri"))).expect("client");
    let api: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::all(client);
    let (reader, writer) = reflector::store();
    let stream = reflector(
        writer,
        watcher(api, watcher::Config::default().fields("spec.nodeName=node-1").page_size(PAGE as u32)).modify(|p| {
            p.metadata.managed_fields = None;
        }),
    );
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while stream.next().await.is_some() {}
    });
    while reader.state().len() < pods {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reader
}

/// One measurement in this process: KiB of RSS per 1,000 pods.
fn round(pods: usize, source: Source) -> f64 {
    let port = serve(Arc::new(lists(pods)));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    std::thread::sleep(Duration::from_millis(200));
    // Give back what building the fixture freed, so only the source's growth is measured.
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
    let before = rss_kib();
    if source == Source::Identity {
        use podnet_processor_k8s_attributes::identity::{Include, IpIdentity};
        let identity = rt.block_on(async {
            let config = KubeApiConfig { token_file: "/nonexistent".into(), ..Default::default() };
            let client = KubeClient::new(&format!("http://127.0.0.1:{port}"), &config, "node-1").expect("client");
            let identity = IpIdentity::watch(&client, &[Include::Pods], |e| eprintln!("identity: {e}"));
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                identity.refresh();
                if identity.len() >= pods {
                    break identity;
                }
                assert!(tokio::time::Instant::now() < deadline, "the identity cache did not load {pods} pods");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        std::thread::sleep(Duration::from_millis(500));
        let after = rss_kib();
        drop(identity);
        return (after - before) * 1000.0 / pods as f64;
    }
    if source == Source::Reflector {
        let reader = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(60), reflector_until_loaded(port, pods)).await })
            .expect("the reflector loads every pod");
        std::thread::sleep(Duration::from_millis(500));
        let after = rss_kib();
        drop(reader);
        return (after - before) * 1000.0 / pods as f64;
    }
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
    if let Some(source) = args.get(1).and_then(|a| match a.as_str() {
        "--round" => Some(Source::Podnet),
        "--round-reflector" => Some(Source::Reflector),
        "--round-identity" => Some(Source::Identity),
        _ => None,
    }) {
        let pods = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1000);
        println!("{:.0}", round(pods, source));
        return;
    }
    let pods: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rounds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5);
    let exe = std::env::current_exe().expect("exe");
    // Interleaved rounds, each in a fresh process.
    let (mut ours, mut reference, mut identity) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        for (flag, out) in [("--round", &mut ours), ("--round-reflector", &mut reference), ("--round-identity", &mut identity)] {
            let run = Command::new(&exe).args([flag, &pods.to_string()]).output();
            if let Some(v) = run.ok().and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().ok()) {
                out.push(v);
            }
        }
    }
    if ours.is_empty() || reference.is_empty() || identity.is_empty() {
        eprintln!("no round finished");
        std::process::exit(1);
    }
    ours.sort_by(f64::total_cmp);
    reference.sort_by(f64::total_cmp);
    identity.sort_by(f64::total_cmp);
    let median = |v: &[f64]| v[v.len() / 2];
    println!("## Kubernetes API source: RSS held per 1,000 pods ({pods} pods of ~6 KB JSON, {rounds} interleaved rounds)\n");
    println!(
        "Both list in pages of {PAGE} (podnet's setting) and keep watching; RSS growth from before the source starts to all pods loaded,"
    );
    println!("per 1,000 pods (allocator high-water included: that is what the node sees).\n");
    println!("| source | min | median | max |\n|---|---|---|---|");
    let row = |name: &str, v: &[f64]| println!("| {name} | {:.0} KiB | {:.0} KiB | {:.0} KiB |", v[0], median(v), v[v.len() - 1]);
    row("podnet (kube-runtime watcher → compact store)", &ours);
    row("kube-rs reflector of typed Pods, managedFields dropped", &reference);
    row("ip_identity: cluster-wide pods as address claims + index", &identity);
    println!("\npodnet / reflector (medians): {:.2}x", median(&ours) / median(&reference));
    println!("ip_identity / reflector (medians): {:.2}x", median(&identity) / median(&reference));
    lookup_cost(pods);
}

/// What naming both ends of a flow series costs: `tag_peer_attributes` on series whose
/// addresses are half known pods, half unknown, against the floor of two plain address
/// lookups in the same index (a `HashMap<IpAddr, _>` get each), in one process.
fn lookup_cost(pods: usize) {
    use podnet_pipeline::pdata::{keys, kv_str};
    use podnet_processor_k8s_attributes::identity::{IpIdentity, Peers, pod_claim, tag_peer_attributes};
    let claims: Vec<(String, podnet_processor_k8s_attributes::identity::Claim)> = (0..pods)
        .filter_map(|i| {
            let p: k8s_openapi::api::core::v1::Pod = serde_json::from_value(pod(i)).ok()?;
            Some((format!("{i}"), pod_claim(&p)?))
        })
        .collect();
    let t = Instant::now();
    let identity = IpIdentity::from_claims(claims);
    let build_ms = t.elapsed().as_secs_f64() * 1000.0;
    let peers = Peers { local: Default::default(), cluster: &identity };
    let address = |i: usize| format!("10.{}.{}.{}", 244 + i / 65536, (i / 256) % 256, i % 256);
    let series: Vec<Vec<podnet_pipeline::pdata::KeyValue>> = (0..20_000)
        .map(|i| vec![kv_str(keys::SOURCE_ADDRESS, address(i % pods)), kv_str(keys::DESTINATION_ADDRESS, address(pods + i))])
        .collect();
    let (mut tag_ns, mut floor_ns) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let mut batch = series.clone();
        let t = Instant::now();
        for attrs in &mut batch {
            tag_peer_attributes(attrs, &peers);
        }
        tag_ns.push(t.elapsed().as_nanos() as f64 / series.len() as f64);
        let t = Instant::now();
        let mut found = 0usize;
        for attrs in &series {
            for kv in attrs {
                let ip: std::net::IpAddr =
                    podnet_pipeline::pdata::any_value_to_string(kv.value.as_ref().expect("value")).parse().expect("ip");
                found += usize::from(identity.lookup(ip).name.is_some());
            }
        }
        std::hint::black_box(found);
        floor_ns.push(t.elapsed().as_nanos() as f64 / series.len() as f64);
    }
    tag_ns.sort_by(f64::total_cmp);
    floor_ns.sort_by(f64::total_cmp);
    println!("\n| naming a series' two ends ({pods} pods cached) | min | median | max |\n|---|---|---|---|");
    println!("| tag_peer_attributes, ns per series | {:.0} | {:.0} | {:.0} |", tag_ns[0], tag_ns[2], tag_ns[4]);
    println!("| floor: parse + two index lookups, ns per series | {:.0} | {:.0} | {:.0} |", floor_ns[0], floor_ns[2], floor_ns[4]);
    println!(
        "\ntag / floor (medians): {:.2}x; index build for {pods} pods: {build_ms:.1} ms (once per API change, at most once per batch)",
        tag_ns[2] / floor_ns[2]
    );
}
