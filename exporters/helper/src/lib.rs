//! What every push exporter needs between the pipeline and the network, in the manner of
//! the Collector's exporterhelper: a bounded queue that never blocks the receivers (a full
//! queue drops, counted, with its reason), consumers that send in order, and retries with
//! exponential backoff and jitter for retryable failures (5xx, 429 with Retry-After,
//! connection refused) but none for permanent ones (4xx).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use podnet_pipeline::component::ComponentContext;
use podnet_pipeline::config::ConfigDuration;
use podnet_pipeline::fanout::Input;
use podnet_pipeline::pdata::{PData, Signal};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

mod disk;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    pub enabled: bool,
    /// Requests (batches) the queue holds before it drops new ones.
    pub queue_size: usize,
    /// Keep the queue in this directory instead of memory: what was not sent survives a
    /// restart (or a reload that rebuilds the exporter) and is sent then.
    pub directory: Option<std::path::PathBuf>,
    /// Bytes of payload the queue holds before it drops new batches (0: batches alone
    /// bound it). A thousand batches of up to megabytes each is too much for a node agent.
    pub max_bytes: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig { enabled: true, queue_size: 1000, directory: None, max_bytes: 64 << 20 }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub enabled: bool,
    pub initial_interval: ConfigDuration,
    pub max_interval: ConfigDuration,
    /// Give up on a request after this long (0: never).
    pub max_elapsed_time: ConfigDuration,
    pub multiplier: f64,
    pub randomization_factor: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: true,
            initial_interval: ConfigDuration::from_secs(5),
            max_interval: ConfigDuration::from_secs(30),
            max_elapsed_time: ConfigDuration::from_secs(300),
            multiplier: 1.5,
            randomization_factor: 0.5,
        }
    }
}

impl RetryConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.multiplier < 1.0 {
            return Err("retry_on_failure::multiplier must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.randomization_factor) {
            return Err("retry_on_failure::randomization_factor must be between 0 and 1".into());
        }
        if self.initial_interval.0.is_zero() || self.max_interval.0 < self.initial_interval.0 {
            return Err("retry_on_failure: initial_interval must be > 0 and max_interval ≥ initial_interval".into());
        }
        Ok(())
    }

    /// The wait before attempt `n + 1` (n ≥ 1), with jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let base = self.initial_interval.0.as_secs_f64() * self.multiplier.powi(attempt.saturating_sub(1) as i32);
        let capped = base.min(self.max_interval.0.as_secs_f64());
        let jitter = 1.0 + self.randomization_factor * (2.0 * fastrand::f64() - 1.0);
        Duration::from_secs_f64((capped * jitter).max(0.0))
    }
}

/// How long a stopping exporter gives its queue to send what it holds.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(8);

/// The whole life of a push exporter, as the Collector's exporterhelper and Vector's sink
/// drivers run it: every batch from `input` is turned into requests by `encode` (which
/// counts what it cannot send) and queued; the queue's consumer sends them through
/// `transport` with retries. At shutdown the input is drained, the queue closed, and what
/// it holds gets [`SHUTDOWN_FLUSH`] to go out (on disk it stays for the next start).
pub async fn run_push_exporter<B: Persist + Send + Sync + 'static>(
    ctx: ComponentContext,
    mut input: Input,
    queue: &QueueConfig,
    retry: &RetryConfig,
    transport: impl Transport<B>,
    mut encode: impl FnMut(PData) -> Vec<Request<B>>,
) {
    let (queue, consumer) = Queue::start(queue, retry, ctx.clone(), transport);
    while let Some(data) = input.next(&ctx.shutdown).await {
        for request in encode(data) {
            queue.push(request);
        }
    }
    // Closing the queue lets the consumer send what is queued (one attempt each, as
    // shutdown has begun).
    drop(queue);
    if tokio::time::timeout(SHUTDOWN_FLUSH, consumer).await.is_err() {
        tracing::warn!(component = %ctx.id, "queued data not sent before shutdown");
    }
}

/// Why a send failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SendError {
    #[error("{reason}")]
    Retryable { reason: String, retry_after: Option<Duration> },
    #[error("{0}")]
    Permanent(String),
}

pub type SendFuture = Pin<Box<dyn Future<Output = Result<(), SendError>> + Send>>;

/// A request ready to send: encoded once, sent as often as retries need.
pub struct Request<R> {
    pub body: Arc<R>,
    pub signal: Signal,
    pub items: usize,
}

/// Sends one request over the wire (one attempt).
pub trait Transport<R>: Send + Sync + 'static {
    fn send(&self, request: Arc<R>) -> SendFuture;
}

impl<R, F> Transport<R> for F
where
    F: Fn(Arc<R>) -> SendFuture + Send + Sync + 'static,
{
    fn send(&self, request: Arc<R>) -> SendFuture {
        self(request)
    }
}

/// The producer side: enqueue without ever waiting.
pub struct Queue<R> {
    backend: Backend<R>,
    ctx: ComponentContext,
    /// Batches waiting, shared with the consumer and the `podnet_exporter_queue_size` gauge.
    depth: Arc<std::sync::atomic::AtomicUsize>,
    /// Payload bytes waiting in memory, shared with the consumer.
    bytes: Arc<std::sync::atomic::AtomicUsize>,
    max_bytes: usize,
}

enum Backend<R> {
    /// Each request with its payload size, measured once at push.
    Memory(mpsc::Sender<(Request<R>, usize)>),
    Disk(Arc<disk::DiskQueue>),
}

impl<R: Persist + Send + Sync + 'static> Queue<R> {
    /// Starts the consumer; returns the queue and the consumer's task. In memory, the task
    /// ends when the queue is dropped and drained; on disk, at shutdown, leaving what was
    /// not sent for the next start.
    pub fn start(
        queue: &QueueConfig,
        retry: &RetryConfig,
        ctx: ComponentContext,
        sender: impl Transport<R>,
    ) -> (Queue<R>, tokio::task::JoinHandle<()>) {
        let capacity = if queue.enabled { queue.queue_size.max(1) } else { 1 };
        let sender: Arc<dyn Transport<R>> = Arc::new(sender);
        if let (true, Some(dir)) = (queue.enabled, &queue.directory) {
            match disk::DiskQueue::open(dir, capacity, queue.max_bytes) {
                Ok(dq) => {
                    let dq = Arc::new(dq);
                    let pending = dq.len();
                    if pending > 0 {
                        tracing::info!(component = %ctx.id, pending, directory = %dir.display(), "resuming batches queued on disk");
                    }
                    let depth = Arc::new(std::sync::atomic::AtomicUsize::new(pending));
                    ctx.telemetry.track_queue(&depth, capacity);
                    let consumer = tokio::spawn(disk::consume(dq.clone(), retry.clone(), ctx.clone(), sender, depth.clone()));
                    return (Queue { backend: Backend::Disk(dq), ctx, depth, bytes: Arc::default(), max_bytes: queue.max_bytes }, consumer);
                }
                Err(e) => {
                    tracing::error!(component = %ctx.id, directory = %dir.display(), "cannot use the on-disk queue, queueing in memory instead: {e}");
                    ctx.status.failed(format!("on-disk queue unusable ({e}); queueing in memory"));
                }
            }
        }
        let (tx, rx) = mpsc::channel(capacity);
        let depth = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        ctx.telemetry.track_queue(&depth, capacity);
        let bytes: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let consumer = tokio::spawn(consume(rx, retry.clone(), ctx.clone(), sender, depth.clone(), bytes.clone()));
        let max_bytes = if queue.enabled { queue.max_bytes } else { 0 };
        (Queue { backend: Backend::Memory(tx), ctx, depth, bytes, max_bytes }, consumer)
    }

    /// Queues `request`; when the queue is full the request is dropped and counted.
    pub fn push(&self, request: Request<R>) {
        let (signal, items) = (request.signal, request.items);
        let full = || {
            self.ctx.telemetry.dropped(signal, items, "queue_full");
            tracing::warn!(component = %self.ctx.id, items, "sending queue is full; dropping a batch (raise sending_queue::queue_size or max_bytes, or check the backend)");
        };
        match &self.backend {
            Backend::Memory(tx) => {
                let size = request.body.byte_len();
                let held = self.bytes.load(std::sync::atomic::Ordering::Relaxed);
                // An empty queue takes any one batch, however large: nothing else could send it.
                if self.max_bytes > 0 && held > 0 && held + size > self.max_bytes {
                    return full();
                }
                match tx.try_send((request, size)) {
                    Ok(()) => {
                        self.depth.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        self.bytes.fetch_add(size, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => full(),
                    Err(mpsc::error::TrySendError::Closed(_)) => self.ctx.telemetry.dropped(signal, items, "shutdown"),
                }
            }
            Backend::Disk(dq) => match dq.push(&request) {
                Ok(true) => {
                    self.depth.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(false) => full(),
                Err(e) => {
                    self.ctx.telemetry.dropped(signal, items, "disk_error");
                    tracing::error!(component = %self.ctx.id, "cannot write to the on-disk queue, batch dropped: {e}");
                }
            },
        }
    }

    /// Batches waiting to be sent.
    pub fn len(&self) -> usize {
        match &self.backend {
            Backend::Memory(tx) => tx.max_capacity() - tx.capacity(),
            Backend::Disk(dq) => dq.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

async fn consume<R: Send + Sync + 'static>(
    mut rx: mpsc::Receiver<(Request<R>, usize)>,
    retry: RetryConfig,
    ctx: ComponentContext,
    sender: Arc<dyn Transport<R>>,
    depth: Arc<std::sync::atomic::AtomicUsize>,
    bytes: Arc<std::sync::atomic::AtomicUsize>,
) {
    while let Some((request, size)) = rx.recv().await {
        if send_with_retry(&request, &retry, &ctx, sender.as_ref()).await == Outcome::Interrupted {
            ctx.telemetry.dropped(request.signal, request.items, "shutdown");
        }
        depth.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let _ = bytes
            .fetch_update(std::sync::atomic::Ordering::Relaxed, std::sync::atomic::Ordering::Relaxed, |b| Some(b.saturating_sub(size)));
    }
}

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Rejected for good, or out of retries: counted as dropped.
    Dropped,
    /// Shutdown came while the backend was failing: the caller decides (kept on disk).
    Interrupted,
}

/// A request body that can be written to the on-disk queue and read back.
pub trait Persist: Sized {
    fn to_bytes(&self) -> Vec<u8>;
    fn from_bytes(bytes: &[u8]) -> Option<Self>;
    /// What the request weighs in the queue (its payload bytes), without encoding it.
    fn byte_len(&self) -> usize;
}

impl Persist for Vec<u8> {
    fn to_bytes(&self) -> Vec<u8> {
        self.clone()
    }
    fn byte_len(&self) -> usize {
        self.len()
    }
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(bytes.to_vec())
    }
}

/// Sends until success, a permanent error, the retry budget, or shutdown.
pub async fn send_with_retry<R: Send + Sync + 'static>(
    request: &Request<R>,
    retry: &RetryConfig,
    ctx: &ComponentContext,
    sender: &dyn Transport<R>,
) -> Outcome {
    let started = Instant::now();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match sender.send(request.body.clone()).await {
            Ok(()) => {
                ctx.telemetry.sent(request.signal, request.items);
                if matches!(ctx.status.state(), Some(podnet_pipeline::status::State::Failed(_))) {
                    ctx.status.running();
                }
                return Outcome::Delivered;
            }
            Err(SendError::Permanent(reason)) => {
                ctx.telemetry.export_failed(request.signal, request.items);
                ctx.telemetry.dropped(request.signal, request.items, "permanent_error");
                tracing::error!(component = %ctx.id, items = request.items, "dropping data the backend rejected (not retried): {reason}");
                return Outcome::Dropped;
            }
            Err(SendError::Retryable { reason, retry_after }) => {
                let wait = retry_after.unwrap_or_else(|| retry.backoff(attempt));
                let budget = retry.max_elapsed_time.0;
                let out_of_budget = !retry.enabled || (!budget.is_zero() && started.elapsed() + wait > budget);
                if ctx.shutdown.is_cancelled() {
                    return Outcome::Interrupted;
                }
                if out_of_budget {
                    ctx.telemetry.export_failed(request.signal, request.items);
                    ctx.telemetry.dropped(request.signal, request.items, "retries_exhausted");
                    tracing::error!(component = %ctx.id, attempts = attempt, "giving up on a batch: {reason}");
                    return Outcome::Dropped;
                }
                ctx.telemetry.retried(request.signal);
                ctx.status.failed(format!("backend failing, retrying: {reason}"));
                tracing::warn!(component = %ctx.id, attempt, wait_ms = wait.as_millis() as u64, "send failed, retrying: {reason}");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = ctx.shutdown.cancelled() => {}
                }
            }
        }
    }
}

/// Classifies an HTTP status: 2xx ok, 429/502/503/504 retryable (honouring Retry-After),
/// any other 5xx retryable, other 4xx permanent.
pub fn classify_http(status: u16, retry_after: Option<&str>, body: &str) -> Result<(), SendError> {
    let retry_after = retry_after.and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs);
    let reason = format!("HTTP {status}: {}", body.chars().take(300).collect::<String>().trim());
    match status {
        200..=299 => Ok(()),
        429 | 500..=599 => Err(SendError::Retryable { reason, retry_after }),
        _ => Err(SendError::Permanent(reason)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend answering 500 with a body that would never end: the exporter reads its cap
    /// and gives up the connection.
    #[tokio::test]
    async fn a_huge_error_body_is_read_only_up_to_the_cap() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = [0u8; 4096];
            let _ = tokio::io::AsyncReadExt::read(&mut s, &mut req).await;
            let _ = s.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 1073741824\r\n\r\n").await;
            let chunk = vec![b'e'; 64 * 1024];
            let mut sent = 0usize;
            while sent < 1 << 30 {
                if s.write_all(&chunk).await.is_err() {
                    break;
                }
                sent += chunk.len();
            }
            sent
        });
        let client = http_client(Duration::from_secs(30), &TlsConfig::default()).unwrap();
        let r = send_http(client.post(format!("http://{addr}/"))).await;
        let Err(SendError::Retryable { reason, .. }) = r else { panic!("{r:?}") };
        assert!(reason.starts_with("HTTP 500: eee") && reason.len() < 400, "{}", reason.len());
        let sent = tokio::time::timeout(Duration::from_secs(20), server).await.unwrap().unwrap();
        assert!(sent < 64 << 20, "the backend could write {sent} bytes before the exporter hung up");
    }

    /// The head of one request to a local server that answers 204.
    async fn one_request_head(send: impl FnOnce(String) -> SendFuture) -> (Result<(), SendError>, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/push", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let n = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n").await.unwrap();
            String::from_utf8_lossy(&buf[..n]).to_lowercase()
        });
        let result = send(url).await;
        (result, server.await.unwrap())
    }

    #[tokio::test]
    async fn an_http_backend_sends_content_headers_configured_headers_and_auth() {
        let headers: BTreeMap<String, String> = [("X-Team".to_string(), "net".to_string())].into();
        let basic = BasicAuth { username: "u".into(), password: "p".into() };
        let settings = HttpSettings {
            timeout: Duration::from_secs(5),
            tls: &TlsConfig::default(),
            headers: &headers,
            basic_auth: Some(&basic),
            bearer_token: None,
        };
        let backend = HttpBackend::new(&settings).unwrap();
        let (result, head) = one_request_head(|url| backend.post(&url, &[("Content-Type", "application/x-protobuf")], b"x".to_vec())).await;
        assert_eq!(result, Ok(()));
        assert!(head.starts_with("post /push http/1.1"), "{head}");
        for line in ["content-type: application/x-protobuf", "x-team: net", "authorization: basic dtpw"] {
            assert!(head.contains(line), "{line} missing in {head}");
        }
        let bearer = HttpBackend::new(&HttpSettings { basic_auth: None, bearer_token: Some("t0k"), ..settings }).unwrap();
        let (_, head) = one_request_head(|url| bearer.post(&url, &[], Vec::new())).await;
        assert!(head.contains("authorization: bearer t0k"), "{head}");
    }

    #[test]
    fn http_settings_are_checked() {
        let headers: BTreeMap<String, String> = [("Content-Type".to_string(), "text/plain".to_string())].into();
        let basic = BasicAuth::default();
        let tls = TlsConfig::default();
        let s = HttpSettings { timeout: Duration::from_secs(1), tls: &tls, headers: &headers, basic_auth: None, bearer_token: None };
        assert_eq!(s.validate(&["content-type"]).unwrap_err(), "headers: \"Content-Type\" is set by the exporter and cannot be overridden");
        assert_eq!(s.validate(&[]), Ok(()));
        let both = HttpSettings { basic_auth: Some(&basic), bearer_token: Some("t"), ..s };
        assert_eq!(both.validate(&[]).unwrap_err(), "set basic_auth or bearer_token, not both");
    }

    #[test]
    fn http_classes() {
        assert_eq!(classify_http(204, None, ""), Ok(()));
        assert!(matches!(classify_http(400, None, "bad"), Err(SendError::Permanent(r)) if r == "HTTP 400: bad"));
        assert!(
            matches!(classify_http(503, Some("7"), ""), Err(SendError::Retryable { retry_after: Some(d), .. }) if d == Duration::from_secs(7))
        );
        assert!(matches!(classify_http(429, None, ""), Err(SendError::Retryable { retry_after: None, .. })));
    }

    #[test]
    fn backoff_grows_and_is_capped_with_jitter() {
        let r = RetryConfig {
            initial_interval: ConfigDuration::from_secs(1),
            max_interval: ConfigDuration::from_secs(4),
            randomization_factor: 0.0,
            multiplier: 2.0,
            ..Default::default()
        };
        assert_eq!(r.backoff(1), Duration::from_secs(1));
        assert_eq!(r.backoff(2), Duration::from_secs(2));
        assert_eq!(r.backoff(5), Duration::from_secs(4));
        let j = RetryConfig { randomization_factor: 0.5, ..r };
        for _ in 0..100 {
            let d = j.backoff(1).as_secs_f64();
            assert!((0.5..=1.5).contains(&d), "{d}");
        }
    }
}

/// TLS settings shared by the HTTP exporters (the Collector's `tls` block).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Plaintext even for an endpoint without a scheme (gRPC).
    pub insecure: bool,
    /// Accept any server certificate (tests only).
    pub insecure_skip_verify: bool,
    /// Trust only this CA (PEM) for the backend's certificate, instead of the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
}

impl TlsConfig {
    /// The CA certificate's PEM, read now so a missing file fails the (re)load.
    pub fn ca_pem(&self) -> Result<Option<Vec<u8>>, String> {
        self.ca_file.as_ref().map(|p| std::fs::read(p).map_err(|e| format!("tls::ca_file {}: {e}", p.display()))).transpose()
    }
}

/// `basic_auth` of an HTTP exporter.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    pub password: String,
}

/// How an HTTP push exporter reaches its backend, as its config says.
pub struct HttpSettings<'a> {
    pub timeout: Duration,
    pub tls: &'a TlsConfig,
    /// Sent on every request (the exporter's own content headers are set apart).
    pub headers: &'a BTreeMap<String, String>,
    pub basic_auth: Option<&'a BasicAuth>,
    pub bearer_token: Option<&'a str>,
}

impl HttpSettings<'_> {
    /// The checks every HTTP exporter's config needs; `reserved` are the headers the
    /// exporter sets itself (lower case).
    pub fn validate(&self, reserved: &[&str]) -> Result<(), String> {
        if let Some(h) = self.headers.keys().find(|h| reserved.contains(&h.to_ascii_lowercase().as_str())) {
            return Err(format!("headers: \"{h}\" is set by the exporter and cannot be overridden"));
        }
        if self.basic_auth.is_some() && self.bearer_token.is_some() {
            return Err("set basic_auth or bearer_token, not both".into());
        }
        if self.timeout.is_zero() {
            return Err("timeout must be greater than zero".into());
        }
        Ok(())
    }
}

/// An HTTP backend: one client (TLS, timeout) and what every request to it carries
/// (headers, basic or bearer auth). Each push exporter only says what to post where.
#[derive(Clone)]
pub struct HttpBackend {
    client: reqwest::Client,
    headers: Vec<(String, String)>,
    basic_auth: Option<BasicAuth>,
    bearer_token: Option<String>,
}

impl HttpBackend {
    pub fn new(settings: &HttpSettings<'_>) -> Result<HttpBackend, String> {
        Ok(HttpBackend {
            client: http_client(settings.timeout, settings.tls)?,
            headers: settings.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            basic_auth: settings.basic_auth.cloned(),
            bearer_token: settings.bearer_token.map(str::to_string),
        })
    }

    /// One attempt at posting `body` to `url` with the exporter's `content` headers,
    /// classified for the retry loop.
    pub fn post(&self, url: &str, content: &[(&str, &str)], body: Vec<u8>) -> SendFuture {
        let mut req = self.client.post(url);
        for (k, v) in content {
            req = req.header(*k, *v);
        }
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        if let Some(b) = &self.basic_auth {
            req = req.basic_auth(&b.username, Some(&b.password));
        }
        if let Some(t) = &self.bearer_token {
            req = req.bearer_auth(t);
        }
        send_http(req.body(body))
    }
}

/// The HTTP client of a push exporter: rustls (ring), the timeout, and the TLS settings.
fn http_client(timeout: Duration, tls: &TlsConfig) -> Result<reqwest::Client, String> {
    // One process-wide crypto provider for rustls; a second install is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("podnet/", env!("CARGO_PKG_VERSION")))
        .danger_accept_invalid_certs(tls.insecure_skip_verify);
    if let Some(pem) = tls.ca_pem()? {
        let ca = reqwest::Certificate::from_pem(&pem).map_err(|e| format!("tls::ca_file: not a PEM certificate: {e}"))?;
        builder = builder.tls_certs_only([ca]);
    }
    builder.build().map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Sends a prepared HTTP request once and classifies the answer: the one attempt every HTTP
/// push exporter makes.
fn send_http(request: reqwest::RequestBuilder) -> SendFuture {
    Box::pin(async move {
        let resp = request
            .send()
            .await
            .map_err(|e| SendError::Retryable { reason: format!("cannot reach the backend: {e}"), retry_after: None })?;
        let status = resp.status().as_u16();
        let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
        let text = if status >= 300 { read_capped(resp, ERROR_BODY_CAP).await } else { String::new() };
        classify_http(status, retry_after.as_deref(), &text)
    })
}

/// How much of a backend's error answer is read: enough to say why, never the whole of a
/// huge (or endless) body.
pub const ERROR_BODY_CAP: usize = 64 * 1024;

/// Up to `cap` bytes of a response body, as text; the rest is left unread (the connection
/// is dropped with the response).
pub async fn read_capped(mut resp: reqwest::Response, cap: usize) -> String {
    let mut out: Vec<u8> = Vec::new();
    while out.len() < cap {
        match resp.chunk().await {
            Ok(Some(chunk)) => out.extend_from_slice(&chunk[..chunk.len().min(cap - out.len())]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Checks an `http(s)://` endpoint: empty is an error that shows `example`.
pub fn check_http_endpoint(endpoint: &str, example: &str) -> Result<(), String> {
    if endpoint.is_empty() {
        return Err(format!("requires a non-empty \"endpoint\" ({example})"));
    }
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(format!("endpoint \"{endpoint}\" must start with http:// or https://"));
    }
    Ok(())
}
