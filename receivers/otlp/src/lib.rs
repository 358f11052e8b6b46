//! Receiver `otlp`: OTLP metrics and logs over gRPC (`:4317`) and HTTP (`:4318`,
//! `/v1/metrics` and `/v1/logs`, protobuf or JSON, optionally gzip), so one podnet can be a
//! gateway that node agents send to.

use std::io::Read as _;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{MetricsService, MetricsServiceServer};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use podnet_pipeline::component::{
    BoxFuture, BuildError, ComponentContext, Factory, FactoryInfo, Kind, Receiver, ReceiverFactory, Stability,
};
use podnet_pipeline::fanout::Outputs;
use podnet_pipeline::pdata::{Logs, Metrics, PData, Signal};
use prost::Message;
use serde::{Deserialize, Serialize};
use tonic::codec::CompressionEncoding;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProtocolConfig {
    /// `ip:port`; empty: the protocol's standard port on all addresses.
    pub endpoint: String,
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
        Ok(Box::new(OtlpReceiver {
            grpc: bind(&config.protocols.grpc, "0.0.0.0:4317")?,
            http: bind(&config.protocols.http, "0.0.0.0:4318")?,
            ctx,
        }))
    }
}

struct OtlpReceiver {
    grpc: Option<std::net::TcpListener>,
    http: Option<std::net::TcpListener>,
    ctx: ComponentContext,
}

#[derive(Clone)]
struct Sink {
    outputs: Outputs,
}

impl Sink {
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
        self.logs(request.into_inner()).await;
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

fn bad_request(msg: String) -> Response {
    (StatusCode::BAD_REQUEST, msg).into_response()
}

/// The request body, gunzipped when it says so.
fn body_bytes(headers: &HeaderMap, body: Bytes) -> Result<Vec<u8>, String> {
    let gzip = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    if !gzip {
        return Ok(body.to_vec());
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body.as_ref()).read_to_end(&mut out).map_err(|e| format!("invalid gzip body: {e}"))?;
    Ok(out)
}

fn is_json(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"))
}

fn decode<T: Message + Default + serde::de::DeserializeOwned>(headers: &HeaderMap, body: Bytes) -> Result<T, String> {
    let bytes = body_bytes(headers, body)?;
    if is_json(headers) {
        serde_json::from_slice(&bytes).map_err(|e| format!("invalid OTLP JSON: {e}"))
    } else {
        T::decode(bytes.as_slice()).map_err(|e| format!("invalid OTLP protobuf: {e}"))
    }
}

fn reply<T: Message + Serialize>(headers: &HeaderMap, msg: T) -> Response {
    if is_json(headers) {
        ([(header::CONTENT_TYPE, "application/json")], serde_json::to_vec(&msg).unwrap_or_default()).into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/x-protobuf")], msg.encode_to_vec()).into_response()
    }
}

async fn http_metrics(State(sink): State<Sink>, headers: HeaderMap, body: Bytes) -> Response {
    match decode::<ExportMetricsServiceRequest>(&headers, body) {
        Ok(req) => {
            sink.metrics(req).await;
            reply(&headers, ExportMetricsServiceResponse::default())
        }
        Err(msg) => bad_request(msg),
    }
}

async fn http_logs(State(sink): State<Sink>, headers: HeaderMap, body: Bytes) -> Response {
    match decode::<ExportLogsServiceRequest>(&headers, body) {
        Ok(req) => {
            sink.logs(req).await;
            reply(&headers, ExportLogsServiceResponse::default())
        }
        Err(msg) => bad_request(msg),
    }
}

impl Receiver for OtlpReceiver {
    fn run(self: Box<Self>, outputs: Outputs) -> BoxFuture {
        Box::pin(async move {
            let OtlpReceiver { grpc, http, ctx } = *self;
            let sink = Sink { outputs };
            let mut tasks = Vec::new();
            if let Some(l) = grpc {
                let listener = match tokio::net::TcpListener::from_std(l) {
                    Ok(l) => l,
                    Err(e) => return ctx.status.failed(format!("gRPC listener: {e}")),
                };
                let shutdown = ctx.shutdown.clone();
                let server = tonic::transport::Server::builder()
                    .add_service(MetricsServiceServer::new(sink.clone()).accept_compressed(CompressionEncoding::Gzip))
                    .add_service(LogsServiceServer::new(sink.clone()).accept_compressed(CompressionEncoding::Gzip))
                    .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), async move {
                        shutdown.cancelled().await
                    });
                let id = ctx.id.to_string();
                tasks.push(tokio::spawn(async move {
                    if let Err(e) = server.await {
                        tracing::error!(component = %id, "OTLP gRPC server: {e}");
                    }
                }));
            }
            if let Some(l) = http {
                let listener = match tokio::net::TcpListener::from_std(l) {
                    Ok(l) => l,
                    Err(e) => return ctx.status.failed(format!("HTTP listener: {e}")),
                };
                let app = axum::Router::new()
                    .route("/v1/metrics", axum::routing::post(http_metrics))
                    .route("/v1/logs", axum::routing::post(http_logs))
                    .with_state(sink.clone());
                let shutdown = ctx.shutdown.clone();
                let id = ctx.id.to_string();
                tasks.push(tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await {
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
