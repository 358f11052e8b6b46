//! Receiver `otlp`: OTLP metrics and logs over gRPC (`:4317`) and HTTP (`:4318`,
//! `/v1/metrics` and `/v1/logs`, protobuf or JSON, optionally gzip), so one podnet can be a
//! gateway that node agents send to.

use std::io::Read as _;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{MetricsService, MetricsServiceServer};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use podnet_configtls::TlsServerSetting;
use podnet_pipeline::auth::{AuthSetting, Verdict};
use podnet_pipeline::component::{
    BoxFuture, BuildError, ComponentContext, Factory, FactoryInfo, Kind, Receiver, ReceiverFactory, Stability,
};
use podnet_pipeline::fanout::Outputs;
use podnet_pipeline::pdata::{Logs, Metrics, PData, Signal};
use prost::Message;
use serde::{Deserialize, Serialize};
use tonic::codec::CompressionEncoding;

/// The Collector's defaults: 20 MiB for an HTTP body, 4 MiB for a gRPC message.
pub const DEFAULT_MAX_REQUEST_BODY_SIZE: usize = 20 * 1024 * 1024;
pub const DEFAULT_MAX_RECV_MSG_SIZE_MIB: usize = 4;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProtocolConfig {
    /// `ip:port`; empty: the protocol's standard port on all addresses.
    pub endpoint: String,
    /// HTTP: the largest request body, counted after gunzip (a small compressed body can
    /// expand to gigabytes). Larger requests get 413 and are counted, unread past the limit.
    pub max_request_body_size: usize,
    /// gRPC: the largest message, in MiB, after decompression; larger ones get
    /// RESOURCE_EXHAUSTED.
    pub max_recv_msg_size_mib: usize,
    /// TLS (and mTLS with `client_ca_file`), the Collector's `tls` block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsServerSetting>,
    /// `authenticator`: the id of a `basicauth` or `bearertokenauth` extension.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSetting>,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        ProtocolConfig {
            endpoint: String::new(),
            max_request_body_size: DEFAULT_MAX_REQUEST_BODY_SIZE,
            max_recv_msg_size_mib: DEFAULT_MAX_RECV_MSG_SIZE_MIB,
            tls: None,
            auth: None,
        }
    }
}

impl ProtocolConfig {
    fn address(&self, default: &str) -> String {
        if self.endpoint.is_empty() { default.to_string() } else { self.endpoint.clone() }
    }
}

/// As in the Collector: a protocol listed (even as `grpc:` with nothing under it) is on,
/// one not listed is off; no `protocols` at all turns both on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protocols {
    #[serde(default, deserialize_with = "listed")]
    pub grpc: Option<ProtocolConfig>,
    #[serde(default, deserialize_with = "listed")]
    pub http: Option<ProtocolConfig>,
}

fn listed<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<ProtocolConfig>, D::Error> {
    Ok(Some(Option::<ProtocolConfig>::deserialize(d)?.unwrap_or_default()))
}

impl Default for Protocols {
    fn default() -> Self {
        Protocols { grpc: Some(ProtocolConfig::default()), http: Some(ProtocolConfig::default()) }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpReceiverConfig {
    /// Which protocols to serve, and where.
    pub protocols: Protocols,
}

pub struct OtlpReceiverFactory;

impl Factory for OtlpReceiverFactory {
    type Config = OtlpReceiverConfig;
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "otlp",
            aliases: &[],
            kind: Kind::Receiver,
            signals: &[Signal::Metrics, Signal::Logs],
            stability: Stability::Alpha,
            description: "OTLP over gRPC and HTTP (protobuf or JSON): podnet as a gateway",
            probes: &[],
        }
    }
    fn validate(&self, c: &OtlpReceiverConfig) -> Result<(), String> {
        if c.protocols.grpc.is_none() && c.protocols.http.is_none() {
            return Err("must have at least one protocol (protocols::grpc or protocols::http)".into());
        }
        for p in [&c.protocols.grpc, &c.protocols.http].into_iter().flatten().filter(|p| !p.endpoint.is_empty()) {
            if p.endpoint.parse::<std::net::SocketAddr>().is_err() {
                return Err(format!("endpoint \"{}\" must be ip:port, like \"0.0.0.0:4317\"", p.endpoint));
            }
        }
        if let Some(g) = &c.protocols.grpc {
            if g.max_recv_msg_size_mib == 0 || g.max_recv_msg_size_mib > 2048 {
                return Err(format!("protocols::grpc::max_recv_msg_size_mib must be 1 to 2048, got {}", g.max_recv_msg_size_mib));
            }
            if g.max_request_body_size != DEFAULT_MAX_REQUEST_BODY_SIZE {
                return Err("protocols::grpc::max_request_body_size is an HTTP setting; for gRPC set max_recv_msg_size_mib".into());
            }
        }
        for (name, p) in [("grpc", &c.protocols.grpc), ("http", &c.protocols.http)] {
            let Some(p) = p else { continue };
            if let Some(tls) = &p.tls {
                tls.load().map_err(|e| format!("protocols::{name}::{e}"))?;
            }
            if p.auth.as_ref().is_some_and(|a| a.authenticator.is_empty()) {
                return Err(format!("protocols::{name}::auth::authenticator must name an auth extension, like basicauth/server"));
            }
        }
        if let Some(h) = &c.protocols.http {
            if h.max_request_body_size == 0 {
                return Err("protocols::http::max_request_body_size must be at least 1 byte".into());
            }
            if h.max_recv_msg_size_mib != DEFAULT_MAX_RECV_MSG_SIZE_MIB {
                return Err("protocols::http::max_recv_msg_size_mib is a gRPC setting; for HTTP set max_request_body_size".into());
            }
        }
        Ok(())
    }
}

impl ReceiverFactory for OtlpReceiverFactory {
    fn create(&self, config: &OtlpReceiverConfig, ctx: ComponentContext) -> Result<Box<dyn Receiver>, BuildError> {
        let bind = |p: &Option<ProtocolConfig>, default: &str| -> Result<Option<std::net::TcpListener>, BuildError> {
            p.as_ref()
                .map(|p| {
                    let addr = p.address(default);
                    let l = std::net::TcpListener::bind(&addr).map_err(|e| BuildError::new(format!("cannot listen on {addr}: {e}")))?;
                    l.set_nonblocking(true).map_err(|e| BuildError::new(e.to_string()))?;
                    Ok(l)
                })
                .transpose()
        };
        let tls = |p: &Option<ProtocolConfig>, name: &str| -> Result<Option<Arc<rustls::ServerConfig>>, BuildError> {
            p.as_ref()
                .and_then(|p| p.tls.as_ref())
                .map(|t| t.load().map_err(|e| BuildError::new(format!("protocols::{name}::{e}"))))
                .transpose()
        };
        let auth = |p: &Option<ProtocolConfig>| p.as_ref().and_then(|p| p.auth.clone());
        Ok(Box::new(OtlpReceiver {
            grpc: bind(&config.protocols.grpc, "0.0.0.0:4317")?,
            http: bind(&config.protocols.http, "0.0.0.0:4318")?,
            grpc_tls: tls(&config.protocols.grpc, "grpc")?,
            http_tls: tls(&config.protocols.http, "http")?,
            grpc_auth: auth(&config.protocols.grpc),
            http_auth: auth(&config.protocols.http),
            grpc_max: config.protocols.grpc.as_ref().map_or(DEFAULT_MAX_RECV_MSG_SIZE_MIB, |g| g.max_recv_msg_size_mib) << 20,
            http_max: config.protocols.http.as_ref().map_or(DEFAULT_MAX_REQUEST_BODY_SIZE, |h| h.max_request_body_size),
            ctx,
        }))
    }
}

struct OtlpReceiver {
    grpc: Option<std::net::TcpListener>,
    http: Option<std::net::TcpListener>,
    grpc_max: usize,
    http_max: usize,
    grpc_tls: Option<Arc<rustls::ServerConfig>>,
    http_tls: Option<Arc<rustls::ServerConfig>>,
    grpc_auth: Option<AuthSetting>,
    http_auth: Option<AuthSetting>,
    ctx: ComponentContext,
}

#[derive(Clone)]
struct Sink {
    outputs: Outputs,
    /// Largest HTTP body, after gunzip.
    http_max: usize,
    telemetry: podnet_pipeline::telemetry::ComponentTelemetry,
    /// The protocol's `auth` block, asked about every request.
    auth: Option<AuthSetting>,
    host: Arc<podnet_pipeline::host::Host>,
    id: String,
}

impl Sink {
    /// Whether a request with this `Authorization` may pass; a refusal is counted.
    async fn authorize(&self, signal: Signal, authorization: Option<String>) -> Result<(), &'static str> {
        let Some(auth) = &self.auth else { return Ok(()) };
        match auth.check(&self.host, authorization).await {
            Verdict::Pass => Ok(()),
            Verdict::Refused(challenge) => {
                self.telemetry.refused(signal, "unauthenticated");
                Err(challenge)
            }
            Verdict::Missing(msg) => {
                self.telemetry.refused(signal, "unauthenticated");
                tracing::error!(component = %self.id, "{msg}");
                Err("Basic realm=\"podnet\"")
            }
        }
    }

    async fn authorize_grpc<T>(&self, signal: Signal, request: &tonic::Request<T>) -> Result<(), tonic::Status> {
        let authorization = request.metadata().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
        self.authorize(signal, authorization).await.map_err(|_| tonic::Status::unauthenticated("missing or wrong credentials"))
    }

    async fn metrics(&self, req: ExportMetricsServiceRequest) {
        if !req.resource_metrics.is_empty() {
            self.outputs.send(PData::Metrics(Metrics::new(req.resource_metrics))).await;
        }
    }
    async fn logs(&self, req: ExportLogsServiceRequest) {
        if !req.resource_logs.is_empty() {
            self.outputs.send(PData::Logs(Logs::new(req.resource_logs))).await;
        }
    }
}

#[tonic::async_trait]
impl MetricsService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.authorize_grpc(Signal::Metrics, &request).await?;
        self.metrics(request.into_inner()).await;
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.authorize_grpc(Signal::Logs, &request).await?;
        self.logs(request.into_inner()).await;
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

/// Why a request was not taken.
#[derive(Debug, PartialEq)]
enum Refusal {
    Invalid(String),
    TooLarge(usize),
}

impl Refusal {
    fn response(self, sink: &Sink, signal: Signal) -> Response {
        match self {
            Refusal::Invalid(msg) => (StatusCode::BAD_REQUEST, msg).into_response(),
            Refusal::TooLarge(limit) => {
                sink.telemetry.refused(signal, "too_large");
                let msg = format!("request body over {limit} bytes (after decompression): split the batch, or raise max_request_body_size");
                (StatusCode::PAYLOAD_TOO_LARGE, msg).into_response()
            }
        }
    }
}

/// The request body, gunzipped when it says so, never more than `limit` bytes: a gzip bomb
/// is refused after `limit` bytes of output, not after all of it.
fn body_bytes(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Vec<u8>, Refusal> {
    let gzip = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    if !gzip {
        if body.len() > limit {
            return Err(Refusal::TooLarge(limit));
        }
        return Ok(body.to_vec());
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body.as_ref())
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Refusal::Invalid(format!("invalid gzip body: {e}")))?;
    if out.len() > limit {
        return Err(Refusal::TooLarge(limit));
    }
    Ok(out)
}

fn is_json(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"))
}

fn decode<T: Message + Default + serde::de::DeserializeOwned>(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<T, Refusal> {
    let bytes = body_bytes(headers, body, limit)?;
    if is_json(headers) {
        serde_json::from_slice(&bytes).map_err(|e| Refusal::Invalid(format!("invalid OTLP JSON: {e}")))
    } else {
        T::decode(bytes.as_slice()).map_err(|e| Refusal::Invalid(format!("invalid OTLP protobuf: {e}")))
    }
}

/// An OTLP/HTTP request body read as the receiver reads it (gzip, JSON or protobuf, at
/// most `limit` bytes after decompression): public for the fuzz targets.
pub fn decode_http_body<T: Message + Default + serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Bytes,
    limit: usize,
) -> Result<T, String> {
    decode(headers, body, limit).map_err(|r| match r {
        Refusal::Invalid(msg) => msg,
        Refusal::TooLarge(limit) => format!("over {limit} bytes"),
    })
}

fn reply<T: Message + Serialize>(headers: &HeaderMap, msg: T) -> Response {
    if is_json(headers) {
        ([(header::CONTENT_TYPE, "application/json")], serde_json::to_vec(&msg).unwrap_or_default()).into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/x-protobuf")], msg.encode_to_vec()).into_response()
    }
}

/// The raw body, or why not: over the limit is counted like an oversized decoded body.
fn raw_body(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, Refusal> {
    body.map_err(|r| if r.status() == StatusCode::PAYLOAD_TOO_LARGE { Refusal::TooLarge(limit) } else { Refusal::Invalid(r.body_text()) })
}

/// 401 with the authenticator's challenge unless the request's credentials pass.
async fn http_auth_check(State(sink): State<Sink>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let signal = if req.uri().path() == "/v1/logs" { Signal::Logs } else { Signal::Metrics };
    let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_string);
    match sink.authorize(signal, authorization).await {
        Ok(()) => next.run(req).await,
        Err(challenge) => (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, challenge)], "Unauthorized\n").into_response(),
    }
}

async fn http_metrics(State(sink): State<Sink>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    match raw_body(body, sink.http_max).and_then(|b| decode::<ExportMetricsServiceRequest>(&headers, b, sink.http_max)) {
        Ok(req) => {
            sink.metrics(req).await;
            reply(&headers, ExportMetricsServiceResponse::default())
        }
        Err(r) => r.response(&sink, Signal::Metrics),
    }
}

async fn http_logs(State(sink): State<Sink>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    match raw_body(body, sink.http_max).and_then(|b| decode::<ExportLogsServiceRequest>(&headers, b, sink.http_max)) {
        Ok(req) => {
            sink.logs(req).await;
            reply(&headers, ExportLogsServiceResponse::default())
        }
        Err(r) => r.response(&sink, Signal::Logs),
    }
}

impl Receiver for OtlpReceiver {
    fn run(self: Box<Self>, outputs: Outputs) -> BoxFuture {
        Box::pin(async move {
            let OtlpReceiver { grpc, http, grpc_max, http_max, grpc_tls, http_tls, grpc_auth, http_auth, ctx } = *self;
            let sink =
                Sink { outputs, http_max, telemetry: ctx.telemetry.clone(), auth: None, host: ctx.host.clone(), id: ctx.id.to_string() };
            let mut tasks = Vec::new();
            if let Some(l) = grpc {
                let listener = match tokio::net::TcpListener::from_std(l) {
                    Ok(l) => l,
                    Err(e) => return ctx.status.failed(format!("gRPC listener: {e}")),
                };
                let shutdown = ctx.shutdown.clone();
                let sink = Sink { auth: grpc_auth, ..sink.clone() };
                let services = tonic::transport::Server::builder()
                    .add_service(
                        MetricsServiceServer::new(sink.clone())
                            .accept_compressed(CompressionEncoding::Gzip)
                            .max_decoding_message_size(grpc_max),
                    )
                    .add_service(
                        LogsServiceServer::new(sink.clone())
                            .accept_compressed(CompressionEncoding::Gzip)
                            .max_decoding_message_size(grpc_max),
                    );
                let id = ctx.id.to_string();
                tasks.push(tokio::spawn(async move {
                    let stopped = shutdown.clone();
                    let served = match grpc_tls {
                        Some(tls) => {
                            let incoming = podnet_configtls::tls_incoming(listener, tls, shutdown.clone());
                            services
                                .serve_with_incoming_shutdown(tokio_stream::wrappers::ReceiverStream::new(incoming), async move {
                                    stopped.cancelled().await
                                })
                                .await
                        }
                        None => {
                            services
                                .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), async move {
                                    stopped.cancelled().await
                                })
                                .await
                        }
                    };
                    if let Err(e) = served {
                        tracing::error!(component = %id, "OTLP gRPC server: {e}");
                    }
                }));
            }
            if let Some(l) = http {
                let listener = match tokio::net::TcpListener::from_std(l) {
                    Ok(l) => l,
                    Err(e) => return ctx.status.failed(format!("HTTP listener: {e}")),
                };
                let sink = Sink { auth: http_auth, ..sink.clone() };
                let app = axum::Router::new()
                    .route("/v1/metrics", axum::routing::post(http_metrics))
                    .route("/v1/logs", axum::routing::post(http_logs))
                    // The raw body may be as large as the decoded one is allowed to be
                    // (axum's own default, 2 MB, would refuse less than the Collector takes).
                    .layer(axum::extract::DefaultBodyLimit::max(http_max))
                    // Before the body is read: an unauthenticated client cannot make podnet
                    // buffer or inflate anything.
                    .layer(axum::middleware::from_fn_with_state(sink.clone(), http_auth_check))
                    .with_state(sink);
                let shutdown = ctx.shutdown.clone();
                let id = ctx.id.to_string();
                tasks.push(tokio::spawn(async move {
                    if let Err(e) = podnet_configtls::serve_http(listener, app, http_tls, shutdown).await {
                        tracing::error!(component = %id, "OTLP HTTP server: {e}");
                    }
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn gzip_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
        h
    }

    fn gzipped_zeros(n: usize) -> Bytes {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let chunk = vec![0u8; 1 << 20];
        let mut left = n;
        while left > 0 {
            let k = left.min(chunk.len());
            enc.write_all(&chunk[..k]).unwrap();
            left -= k;
        }
        Bytes::from(enc.finish().unwrap())
    }

    #[test]
    fn a_gzip_bomb_is_refused_after_the_limit_not_after_all_of_it() {
        let bomb = gzipped_zeros(64 << 20);
        assert!(bomb.len() < 1 << 20, "64 MiB of zeros compress to {} bytes", bomb.len());
        assert_eq!(body_bytes(&gzip_headers(), bomb, 1 << 20), Err(Refusal::TooLarge(1 << 20)));
    }

    #[test]
    fn a_body_at_the_limit_passes_and_one_byte_more_does_not() {
        assert_eq!(body_bytes(&gzip_headers(), gzipped_zeros(1000), 1000).unwrap().len(), 1000);
        assert_eq!(body_bytes(&gzip_headers(), gzipped_zeros(1001), 1000), Err(Refusal::TooLarge(1000)));
        assert_eq!(body_bytes(&HeaderMap::new(), Bytes::from(vec![1u8; 1000]), 1000).unwrap().len(), 1000);
        assert_eq!(body_bytes(&HeaderMap::new(), Bytes::from(vec![1u8; 1001]), 1000), Err(Refusal::TooLarge(1000)));
    }

    #[test]
    fn broken_gzip_is_a_bad_request() {
        let r = body_bytes(&gzip_headers(), Bytes::from_static(b"not gzip at all"), 1000);
        assert!(matches!(r, Err(Refusal::Invalid(ref m)) if m.starts_with("invalid gzip body")), "{r:?}");
    }
}
