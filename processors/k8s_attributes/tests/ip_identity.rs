//! The cluster-wide IP identity cache against a local API server serving recorded pods,
//! nodes and services: lists, then a pod watch in which a deleted pod's address is taken
//! by a new pod.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use podnet_processor_k8s_attributes::identity::{Include, IpIdentity, PeerType};
use podnet_processor_k8s_attributes::kube::{KubeApiConfig, KubeClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn pod(name: &str, uid: &str, rv: &str, ip: &str, node: &str) -> serde_json::Value {
    serde_json::json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": name, "namespace": "shop", "uid": uid, "resourceVersion": rv},
        "spec": {"nodeName": node, "containers": []},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}
    })
}

fn list(kind: &str, items: Vec<serde_json::Value>) -> String {
    serde_json::json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "100"}, "items": items}).to_string()
}

/// Answers lists by path; the pod watch streams `pod_events` once, other watches stay
/// open and empty. Records the request lines.
async fn api_server(lists: HashMap<&'static str, String>, pod_events: Vec<String>, seen: Arc<Mutex<Vec<String>>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let pod_events = Arc::new(Mutex::new(Some(pod_events)));
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let (lists, pod_events, seen) = (lists.clone(), pod_events.clone(), seen.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).await.unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_string();
                seen.lock().unwrap().push(line.clone());
                let path = line.split_whitespace().nth(1).unwrap_or_default().split('?').next().unwrap_or_default().to_string();
                if line.contains("watch=true") {
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n").await;
                    let events = if path == "/api/v1/pods" { pod_events.lock().unwrap().take() } else { None };
                    for e in events.unwrap_or_default() {
                        let _ = s.write_all(format!("{e}\n").as_bytes()).await;
                        let _ = s.flush().await;
                    }
                    tokio::time::sleep(Duration::from_secs(600)).await;
                } else {
                    let body = lists.get(path.as_str()).cloned().unwrap_or_default();
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
                    let _ = s.write_all(head.as_bytes()).await;
                    let _ = s.write_all(body.as_bytes()).await;
                }
            });
        }
    });
    port
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn pods_nodes_and_services_of_the_whole_cluster_and_a_reused_address() {
    let lists: HashMap<&'static str, String> = [
        (
            "/api/v1/pods",
            list("PodList", vec![pod("web-1", "u1", "90", "10.244.2.5", "node-2"), pod("db-0", "u2", "91", "10.244.3.8", "node-3")]),
        ),
        (
            "/api/v1/nodes",
            list(
                "NodeList",
                vec![serde_json::json!({"metadata": {"name": "node-2", "uid": "n2", "resourceVersion": "5"},
                    "status": {"addresses": [{"type": "InternalIP", "address": "192.168.10.22"}]}})],
            ),
        ),
        (
            "/api/v1/services",
            list(
                "ServiceList",
                vec![serde_json::json!({"metadata": {"name": "cart", "namespace": "shop", "uid": "s1", "resourceVersion": "7"},
                    "spec": {"clusterIP": "10.96.4.7"}})],
            ),
        ),
    ]
    .into();
    let deleted = serde_json::json!({"type": "DELETED", "object": pod("web-1", "u1", "101", "10.244.2.5", "node-2")});
    let added = serde_json::json!({"type": "ADDED", "object": pod("web-7", "u7", "102", "10.244.2.5", "node-4")});
    let seen = Arc::new(Mutex::new(Vec::new()));
    let port = api_server(lists, vec![deleted.to_string(), added.to_string()], seen.clone()).await;
    let config = KubeApiConfig { token_file: "/nonexistent".into(), ..Default::default() };
    let client = KubeClient::new(&format!("http://127.0.0.1:{port}"), &config, "node-1").unwrap();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let errs = errors.clone();
    let identity = IpIdentity::watch(&client, &[Include::Pods, Include::Nodes, Include::Services], move |e| errs.lock().unwrap().push(e));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        identity.refresh();
        let reused = identity.lookup(ip("10.244.2.5"));
        let all = identity.lookup(ip("10.96.4.7")).kind == PeerType::Service && identity.lookup(ip("192.168.10.22")).kind == PeerType::Node;
        if all && reused.name.as_deref() == Some("web-7") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the cache did not follow the API: {:?}", seen.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let web = identity.lookup(ip("10.244.2.5"));
    assert_eq!(
        (web.kind, web.node.as_deref(), web.namespace.as_deref()),
        (PeerType::Pod, Some("node-4"), Some("shop")),
        "the new pod has the address"
    );
    let db = identity.lookup(ip("10.244.3.8"));
    assert_eq!((db.name.as_deref(), db.node.as_deref()), (Some("db-0"), Some("node-3")));
    assert_eq!(identity.lookup(ip("10.244.9.9")).kind, PeerType::Unknown);
    let requests = seen.lock().unwrap().clone();
    for path in ["/api/v1/pods?", "/api/v1/nodes?", "/api/v1/services?"] {
        assert!(requests.iter().any(|r| r.contains(path) && !r.contains("watch=")), "a cluster-wide list of {path}: {requests:#?}");
    }
    assert!(!requests.iter().any(|r| r.contains("fieldSelector")), "cluster-wide: no node selector: {requests:#?}");
    assert!(errors.lock().unwrap().is_empty(), "{:?}", errors.lock().unwrap());
}
