//! The Kubernetes API source against recorded API objects served by a local server: the
//! list, a watch with ADDED, MODIFIED, BOOKMARK and DELETED that then drops, a resumed
//! watch that answers 410 Gone, the relist and the next watch.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use podnet_processor_k8s_attributes::kube::{ApiPod, KubeApiConfig, KubeClient, KubeError, PodStore, follow};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)).unwrap()
}

async fn request_line(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.unwrap_or(0) == 0 {
            break;
        }
        buf.push(byte[0]);
    }
    String::from_utf8_lossy(&buf).lines().next().unwrap_or_default().to_string()
}

/// A watch request (`watch=true`, or `watch=1` as some clients write it).
fn is_watch(line: &str) -> bool {
    line.split(['?', '&', ' ']).any(|p| p == "watch=true" || p == "watch=1")
}

/// A list of this node's pods: the pods path, this node's field selector, no watch.
fn is_node_list(line: &str) -> bool {
    line.starts_with("GET /api/v1/pods?") && line.contains("fieldSelector=spec.nodeName%3Dnode-1") && !is_watch(line)
}

fn line_is_watch(seen: &Mutex<Vec<String>>) -> bool {
    seen.lock().unwrap().last().is_some_and(|l| is_watch(l))
}

/// Serves the script in order, one connection per request; records each request line.
async fn api_server(script: Vec<(u16, Vec<u8>, bool)>, seen: Arc<Mutex<Vec<String>>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        for (status, body, hold_open) in script {
            let (mut s, _) = listener.accept().await.unwrap();
            let line = request_line(&mut s).await;
            seen.lock().unwrap().push(line);
            let reason = if status == 200 { "OK" } else { "Error" };
            // A watch: no length, the stream ends when the connection does.
            let head = format!("HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n");
            s.write_all(head.as_bytes()).await.unwrap();
            // Watch events arrive one by one; a list in one piece.
            let is_watch = line_is_watch(&seen);
            if is_watch {
                for event in body.split_inclusive(|b| *b == b'\n') {
                    s.write_all(event).await.unwrap();
                    s.flush().await.unwrap();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            } else {
                s.write_all(&body).await.unwrap();
            }
            if hold_open {
                tokio::time::sleep(Duration::from_secs(600)).await;
            }
            // Dropping the socket here is the connection dropping under the watch.
        }
    });
    port
}

/// The source following the API at `port`: its store, the errors it reported, and how to
/// stop it.
fn start(port: u16) -> (PodStore, Arc<Mutex<Vec<String>>>, tokio_util::sync::CancellationToken, tokio::task::JoinHandle<()>) {
    let config = KubeApiConfig { token_file: "/nonexistent".into(), ..Default::default() };
    let client = KubeClient::new(&format!("http://127.0.0.1:{port}"), &config, "node-1").unwrap();
    let store: PodStore = Arc::default();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let errs = errors.clone();
    let task = tokio::spawn(follow(client, store.clone(), shutdown.clone(), move |e: &KubeError| errs.lock().unwrap().push(e.to_string())));
    (store, errors, shutdown, task)
}

fn pods(store: &PodStore) -> Vec<ApiPod> {
    let mut v: Vec<ApiPod> = store.lock().unwrap().values().cloned().collect();
    v.sort_by(|a, b| a.pod.name.cmp(&b.pod.name));
    v
}

#[tokio::test]
async fn list_watch_resume_relist_on_410() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let port = api_server(
        vec![
            (200, fixture("podlist-1.json"), false),
            (200, fixture("watch-1.jsonl"), false),
            (200, fixture("watch-2-gone.jsonl"), false),
            (200, fixture("podlist-2.json"), false),
            (200, Vec::new(), true),
        ],
        seen.clone(),
    )
    .await;
    let (store, errors, shutdown, task) = start(port);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < 5 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 5, "{requests:#?}");
    assert!(is_node_list(&requests[0]), "{requests:#?}");
    assert!(is_watch(&requests[1]) && requests[1].contains("resourceVersion=1005"), "{requests:#?}");
    assert!(requests[1].contains("fieldSelector=spec.nodeName%3Dnode-1"), "the watch is this node's too: {requests:#?}");
    assert!(
        is_watch(&requests[2]) && requests[2].contains("resourceVersion=1012"),
        "resumed after the drop from the last version seen: {requests:#?}"
    );
    assert!(is_node_list(&requests[3]), "410 Gone: list again: {requests:#?}");
    assert!(is_watch(&requests[4]) && requests[4].contains("resourceVersion=2001"), "{requests:#?}");
    assert!(errors.lock().unwrap().is_empty(), "{:?}", errors.lock().unwrap());

    let now = pods(&store);
    let names: Vec<&str> = now.iter().map(|p| p.pod.name.as_str()).collect();
    assert_eq!(names, ["backup-29123456-tq8zd", "cache-5f6d7c8b9-abcde", "node-agent-4kq2p", "web-7d4b9c8f5-x2x9q"], "db-0 was deleted");
    let web = &now[3];
    assert_eq!(web.pod.labels.get("release").map(String::as_str), Some("canary"), "the MODIFIED labels");
    assert_eq!(web.pod.workload, Some(("k8s.deployment.name", "web".to_string())));
    assert_eq!(web.pod.ip, "10.244.1.7");
    assert_eq!(now[0].pod.workload, Some(("k8s.cronjob.name", "backup".to_string())));
    assert!(now[2].host_network);
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
}

#[tokio::test]
async fn forbidden_names_the_missing_permission_and_retries() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let denied = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods is forbidden: User \"system:serviceaccount:podnet:podnet\" cannot list resource \"pods\"","reason":"Forbidden","code":403}"#.to_vec();
    let port = api_server(vec![(403, denied, false), (200, fixture("podlist-1.json"), false), (200, Vec::new(), true)], seen.clone()).await;
    let (store, errors, shutdown, task) = start(port);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.lock().unwrap().len() < 3 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let errors = errors.lock().unwrap().clone();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("HTTP 403") && errors[0].contains("get, list and watch on pods"), "{}", errors[0]);
    assert_eq!(store.lock().unwrap().len(), 3, "after the backoff the list succeeds");
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
}

#[tokio::test]
async fn an_oversized_watch_event_ends_the_watch_and_the_source_relists() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    // 5 MiB with no newline: no pod is that large.
    let huge = vec![b'x'; 5 << 20];
    let port = api_server(
        vec![(200, fixture("podlist-1.json"), false), (200, huge, false), (200, fixture("podlist-1.json"), false), (200, Vec::new(), true)],
        seen.clone(),
    )
    .await;
    let (store, errors, shutdown, task) = start(port);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < 3 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let errors = errors.lock().unwrap().clone();
    assert!(errors.iter().any(|e| e.contains("a watch event over 4194304 bytes")), "{errors:?}");
    assert!(is_node_list(&seen.lock().unwrap()[2]), "after the refused event the source relists: {:?}", seen.lock().unwrap());
    assert_eq!(store.lock().unwrap().len(), 3);
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
}
