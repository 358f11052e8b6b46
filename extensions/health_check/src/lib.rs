//! Extension `health_check`, with the Collector's name and keys: liveness, readiness and the
//! component report on their own endpoint, whatever the pipelines export (a DaemonSet that
//! only pushes OTLP still needs its probes answered).
//!
//! - `path` (default `/`): the Collector's answer, 200 `{"status":"Server available",…}`
//!   once every component runs (or is reported unsupported), 503 before.
//! - `/healthz`: 200 while the process serves requests (liveness).
//! - `/readyz`: 200 once ready, 503 before (readiness), as plain text.
//! - `/status`: every component's state as JSON; the reasons and config sources only to a
//!   caller on the node itself (loopback, or the very address it called, which no other host
//!   can have: the DaemonSet binds the node's IP), since the endpoint listens on the node's
//!   address.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use podnet_pipeline::component::{
    BoxFuture, BuildError, ComponentContext, Extension, ExtensionFactory, Factory, FactoryInfo, Kind, Stability,
};
use podnet_pipeline::status::StatusRegistry;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponseBody {
    /// Body of the 200 answer on `path` instead of the JSON.
    pub healthy: Option<String>,
    /// Body of the 503 answer on `path` instead of the JSON.
    pub unhealthy: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    /// `host:port` to listen on. The DaemonSet uses host networking, so the kubelet's
    /// probes reach it on the node's address.
    pub endpoint: String,
    /// Where the Collector-style health answer is served.
    pub path: String,
    pub response_body: ResponseBody,
    /// HTTPS (the Collector's `tls` block): the kubelet's probes then need `scheme: HTTPS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<podnet_configtls::TlsServerSetting>,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig { endpoint: "0.0.0.0:13133".into(), path: "/".into(), response_body: ResponseBody::default(), tls: None }
    }
}

const FIXED_PATHS: [&str; 3] = ["/healthz", "/readyz", "/status"];

pub struct HealthCheckExtensionFactory;

impl Factory for HealthCheckExtensionFactory {
    type Config = HealthCheckConfig;
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "health_check",
            aliases: &[],
            kind: Kind::Extension,
            signals: &[],
            stability: Stability::Beta,
            description: "Liveness (/healthz), readiness (/readyz and the Collector's path) and component status (/status) on their own endpoint",
            probes: &[],
        }
    }
    fn validate(&self, c: &HealthCheckConfig) -> Result<(), String> {
        podnet_pipeline::config::check_listen_address(&c.endpoint, "0.0.0.0:13133")?;
        if !c.path.starts_with('/') || FIXED_PATHS.contains(&c.path.as_str()) {
            return Err(format!("path \"{}\" must start with / and not be one of {}", c.path, FIXED_PATHS.join(", ")));
        }
        if let Some(tls) = &c.tls {
            tls.load()?;
        }
        Ok(())
    }
}

impl ExtensionFactory for HealthCheckExtensionFactory {
    fn create(&self, config: &HealthCheckConfig, ctx: ComponentContext) -> Result<Box<dyn Extension>, BuildError> {
        // Bound now, so a taken port fails the (re)load and the previous config is kept.
        let listener = std::net::TcpListener::bind(podnet_pipeline::config::listen_address(&config.endpoint))
            .map_err(|e| BuildError::new(format!("cannot listen on {}: {e} (set another endpoint)", config.endpoint)))?;
        listener.set_nonblocking(true).map_err(|e| BuildError::new(e.to_string()))?;
        let tls = config.tls.as_ref().map(|t| t.load()).transpose().map_err(BuildError::new)?;
        Ok(Box::new(HealthCheck { config: config.clone(), ctx, listener, tls }))
    }
}

struct HealthCheck {
    config: HealthCheckConfig,
    ctx: ComponentContext,
    listener: std::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
}

struct Shared {
    status: Arc<StatusRegistry>,
    response_body: ResponseBody,
    started: Instant,
    started_at: SystemTime,
}

impl Extension for HealthCheck {
    fn run(self: Box<Self>) -> BoxFuture {
        Box::pin(async move {
            let HealthCheck { config, ctx, listener, tls } = *self;
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    ctx.status.failed(format!("cannot use the listening socket: {e}"));
                    return;
                }
            };
            let shared = Arc::new(Shared {
                status: ctx.host.status.clone(),
                response_body: config.response_body.clone(),
                started: Instant::now(),
                started_at: SystemTime::now(),
            });
            ctx.status.running();
            tracing::info!(component = %ctx.id, endpoint = %config.endpoint, "serving health checks");
            let shutdown = ctx.shutdown.clone();
            let app = router(&config.path, shared);
            if let Err(e) = podnet_configtls::serve_http(listener, app, tls, shutdown).await {
                tracing::warn!(component = %ctx.id, "health check server ended: {e}");
            }
        })
    }
}

fn router(path: &str, shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/status", get(status))
        .route(path, get(collector_health))
        .with_state(shared)
}

async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    if shared.status.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

/// The Collector's health_check answer: its JSON, or the configured bodies.
async fn collector_health(State(shared): State<Arc<Shared>>) -> Response {
    let ready = shared.status.is_ready();
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let custom = if ready { &shared.response_body.healthy } else { &shared.response_body.unhealthy };
    if let Some(body) = custom {
        return (code, body.clone()).into_response();
    }
    let since = shared.started_at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let body = serde_json::json!({
        "status": if ready { "Server available" } else { "Server not available" },
        "upSince": podnet_pipeline::pdata::format_rfc3339(since.as_secs()),
        "uptime": format!("{:.3}s", shared.started.elapsed().as_secs_f64()),
    });
    (code, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// The whole report to a caller on the node; states without detail to others.
async fn status(State(shared): State<Arc<Shared>>, ConnectInfo(caller): ConnectInfo<podnet_configtls::Caller>) -> Response {
    let report = shared.status.report();
    let report = if caller.is_local() { report } else { report.without_detail() };
    match serde_json::to_string_pretty(&report) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_checks() {
        let f = HealthCheckExtensionFactory;
        assert_eq!(f.validate(&HealthCheckConfig::default()), Ok(()));
        let bad = HealthCheckConfig { endpoint: "13133".into(), ..Default::default() };
        assert!(f.validate(&bad).unwrap_err().contains("must be host:port"));
        let clash = HealthCheckConfig { path: "/status".into(), ..Default::default() };
        assert!(f.validate(&clash).unwrap_err().contains("not be one of /healthz, /readyz, /status"));
    }
}
