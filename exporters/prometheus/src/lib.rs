//! Exporter `prometheus`: a scrape endpoint (default `0.0.0.0:9102/metrics`) that also
//! serves podnet's own `podnet_*` metrics. Health and status are the `health_check`
//! extension's.

mod points;
pub mod protobuf;
pub mod store;
mod web_config;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use podnet_pipeline::component::{
    BoxFuture, BuildError, ComponentContext, Exporter, ExporterFactory, Factory, FactoryInfo, Kind, Stability,
};
use podnet_pipeline::config::ConfigDuration;
use podnet_pipeline::fanout::Input;
use podnet_pipeline::pdata::{KeyValue, PData, ResourceMetrics, ScopeMetrics, Signal, keys, metric};
use serde::{Deserialize, Serialize};

use crate::points::PointCache;
use crate::store::{Format, Store};
use podnet_prometheus_translator::{HistogramFormat, Naming, ResourceToTelemetry, TargetInfo, Translator};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusConfig {
    /// `host:port` to listen on.
    pub endpoint: String,
    pub path: String,
    /// `otel` (the Collector's translation) or `kubeskoop` (KubeSkoop's names and labels).
    pub naming: Naming,
    /// Series not updated for this long disappear.
    pub metric_expiration: ConfigDuration,
    /// Serve OpenMetrics to scrapers that ask for it.
    pub enable_open_metrics: bool,
    /// Prefix for metric names in `otel` naming.
    pub namespace: String,
    /// Labels added to every series.
    pub const_labels: BTreeMap<String, String>,
    /// Resource attributes copied to labels in `otel` naming.
    pub resource_attributes_as_labels: Vec<String>,
    /// The most series the endpoint holds; past it new series are dropped and counted
    /// (`podnet_exporter_series_dropped_total{reason="limit"}`), known ones keep updating.
    /// Flow series carry addresses and ports: this bounds what a noisy pod can cost. 0: no limit.
    pub max_series: usize,
    /// One `target_info` series per resource (otel naming), as the Collector writes it.
    pub target_info: TargetInfo,
    /// Every resource attribute as a label (otel naming), not only
    /// `resource_attributes_as_labels`.
    pub resource_to_telemetry_conversion: ResourceToTelemetry,
    /// Exponential histograms as `classic` buckets (default; every scraper reads them) or,
    /// with `native`, also as native histograms for scrapers that ask for the protobuf
    /// format (Prometheus with `--enable-feature=native-histograms`); text scrapes still get
    /// the classic buckets.
    pub exponential_histograms: HistogramFormat,
    /// Prometheus' web config file (the exporter-toolkit format): TLS and basic auth.
    pub web_config_file: Option<std::path::PathBuf>,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        PrometheusConfig {
            endpoint: "0.0.0.0:9102".into(),
            path: "/metrics".into(),
            naming: Naming::Otel,
            metric_expiration: ConfigDuration::from_secs(300),
            enable_open_metrics: false,
            namespace: String::new(),
            const_labels: BTreeMap::new(),
            max_series: 100_000,
            target_info: TargetInfo::default(),
            resource_to_telemetry_conversion: ResourceToTelemetry::default(),
            exponential_histograms: HistogramFormat::Classic,
            web_config_file: None,
            resource_attributes_as_labels: vec![
                keys::K8S_NODE_NAME.into(),
                keys::K8S_NAMESPACE_NAME.into(),
                keys::K8S_POD_NAME.into(),
                keys::NETNS_INODE.into(),
            ],
        }
    }
}

const RESERVED_PATHS: [&str; 1] = ["/"];

pub struct PrometheusExporterFactory;

impl Factory for PrometheusExporterFactory {
    type Config = PrometheusConfig;
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "prometheus",
            aliases: &[],
            kind: Kind::Exporter,
            signals: &[Signal::Metrics],
            stability: Stability::Beta,
            description: "Prometheus scrape endpoint (text or OpenMetrics), with podnet's own metrics",
            probes: &[],
        }
    }
    fn validate(&self, c: &PrometheusConfig) -> Result<(), String> {
        podnet_pipeline::config::check_listen_address(&c.endpoint, "0.0.0.0:9102")?;
        if !c.path.starts_with('/') || RESERVED_PATHS.contains(&c.path.as_str()) {
            return Err(format!("path \"{}\" must start with / and not be one of {}", c.path, RESERVED_PATHS.join(", ")));
        }
        if c.metric_expiration.0.is_zero() {
            return Err("metric_expiration must be greater than zero".into());
        }
        if let Some(path) = &c.web_config_file {
            web_config::WebConfig::load(path)?;
        }
        for k in c.const_labels.keys() {
            if podnet_prometheus_translator::sanitize_label(k) != *k {
                return Err(format!("const_labels: \"{k}\" is not a valid Prometheus label name"));
            }
        }
        Ok(())
    }
}

impl ExporterFactory for PrometheusExporterFactory {
    fn create(&self, config: &PrometheusConfig, ctx: ComponentContext) -> Result<Box<dyn Exporter>, BuildError> {
        // Bind now, so a taken port fails the (re)load and the previous config is kept.
        let listener = std::net::TcpListener::bind(podnet_pipeline::config::listen_address(&config.endpoint))
            .map_err(|e| BuildError::new(format!("cannot listen on {}: {e} (set another endpoint)", config.endpoint)))?;
        listener.set_nonblocking(true).map_err(|e| BuildError::new(e.to_string()))?;
        let web = match &config.web_config_file {
            Some(path) => Some(web_config::WebConfig::load(path).map_err(BuildError::new)?),
            None => None,
        };
        Ok(Box::new(PrometheusExporter { config: config.clone(), ctx, listener, web }))
    }
}

struct PrometheusExporter {
    config: PrometheusConfig,
    ctx: ComponentContext,
    listener: std::net::TcpListener,
    web: Option<web_config::WebConfig>,
}

struct Shared {
    config: PrometheusConfig,
    const_labels: Vec<(String, String)>,
    state: Mutex<Held>,
    /// When the last series-limit warning was logged (one a minute at most).
    limit_warned: Mutex<Option<Instant>>,
    collision_warned: Mutex<Option<Instant>>,
    /// Points the scrape format cannot hold are warned about once, then only counted.
    unsupported_warned: std::sync::atomic::AtomicBool,
    delta_warned: std::sync::atomic::AtomicBool,
    ctx: ComponentContext,
}

/// The series and the points known to be in them.
#[derive(Default)]
struct Held {
    store: Store,
    points: PointCache,
}

impl Held {
    /// Drops series older than `ttl`, and the points that led to them.
    fn expire(&mut self, ttl: std::time::Duration) {
        if self.store.expire(Instant::now(), ttl) > 0 {
            self.forget_gone_points();
        }
    }

    /// Forgets the points whose series went (ended, expired, replaced by a type change).
    fn forget_gone_points(&mut self) {
        let store = &self.store;
        self.points.retain(|slot| store.holds(slot));
    }
}

impl Shared {
    fn translator(&self) -> Translator<'_> {
        Translator {
            naming: self.config.naming,
            namespace: &self.config.namespace,
            resource_labels: &self.config.resource_attributes_as_labels,
            const_labels: &self.const_labels,
            all_resource_attributes: self.config.resource_to_telemetry_conversion.enabled,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn consume(&self, data: PData) {
        let PData::Metrics(metrics) = data else {
            self.ctx.telemetry.dropped(Signal::Logs, data.item_count(), "unsupported_signal");
            return;
        };
        let translator = self.translator();
        let (mut delta, mut unsupported) = (0, 0);
        let mut refused: BTreeMap<String, u64> = BTreeMap::new();
        // One resource (namespace) at a time: the samples in flight are one pod's, not the
        // whole batch's (tens of thousands of flow series would otherwise be held twice).
        let mut samples = Vec::new();
        let now = Instant::now();
        for resource in metrics.resources().chunks(1) {
            let rest = self.store_known_points(&translator, &resource[0], now, &mut delta, &mut refused);
            if let Some(rest) = rest {
                let skipped = translator.translate(std::slice::from_ref(&rest), &mut samples);
                (delta, unsupported) = (delta + skipped.delta, unsupported + skipped.unsupported);
                for (family, n) in self.lock().store.update(std::mem::take(&mut samples), now) {
                    *refused.entry(family).or_default() += n;
                }
            }
            if self.config.exponential_histograms == HistogramFormat::Native {
                let mut natives = Vec::new();
                unsupported += translator.native_histograms(resource, &mut natives).unsupported;
                for (family, n) in self.lock().store.update_natives(natives, now) {
                    *refused.entry(family).or_default() += n;
                }
            }
        }
        if self.config.naming == Naming::Otel && self.config.target_info.enabled {
            let info = translator.target_info(metrics.resources(), podnet_pipeline::pdata::now_unix_nanos());
            for (family, n) in self.lock().store.update(info, now) {
                *refused.entry(family).or_default() += n;
            }
        }
        if delta > 0 {
            self.ctx.telemetry.dropped(Signal::Metrics, delta, "delta_temporality");
            if !self.delta_warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(component = %self.ctx.id, points = delta, "dropped delta-temporality points: Prometheus exposes cumulative data only (from now on only counted, in podnet_component_dropped_total{{reason=\"delta_temporality\"}}; set the sender to cumulative temporality)");
            }
        }
        if unsupported > 0 {
            self.ctx.telemetry.dropped(Signal::Metrics, unsupported, "unsupported_type");
            if !self.unsupported_warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(component = %self.ctx.id, points = unsupported, "dropped exponential-histogram points with negative buckets: classic buckets cannot hold them (from now on only counted, in podnet_component_dropped_total{{reason=\"unsupported_type\"}})");
            }
        }
        let collisions = self.lock().store.take_collisions();
        if !collisions.is_empty() {
            let total: u64 = collisions.values().sum();
            self.ctx.telemetry.series_collisions(total);
            let mut warned = self.collision_warned.lock().unwrap_or_else(|e| e.into_inner());
            if warned.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(60)) {
                *warned = Some(Instant::now());
                let families: Vec<&str> = collisions.keys().map(String::as_str).take(5).collect();
                tracing::warn!(
                    component = %self.ctx.id,
                    writes = total,
                    "two resources write the same series of {}: the later value wins. Tell them apart with service.name/service.instance.id (job/instance), resource_attributes_as_labels or resource_to_telemetry_conversion",
                    families.join(", ")
                );
            }
        }
        if !refused.is_empty() {
            let total: u64 = refused.values().sum();
            self.ctx.telemetry.series_dropped(total, "limit");
            let mut warned = self.limit_warned.lock().unwrap_or_else(|e| e.into_inner());
            if warned.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(60)) {
                *warned = Some(Instant::now());
                let (worst, n) = refused.iter().max_by_key(|(_, n)| **n).map(|(f, n)| (f.as_str(), *n)).unwrap_or(("", 0));
                tracing::warn!(
                    component = %self.ctx.id,
                    dropped = total,
                    "the endpoint holds max_series = {} series: new series are dropped; {worst} grows fastest ({n} of them). Raise max_series, or drop it with a filter processor",
                    self.config.max_series
                );
            }
        }
    }

    /// Stores the number points of one resource (cumulative sums, gauges): a point seen
    /// before goes straight to its series, a new one is translated once and remembered.
    /// Returns the resource with its other metrics (histograms, summaries), which take the
    /// full translation, or None when it has none.
    fn store_known_points(
        &self,
        translator: &Translator<'_>,
        rm: &ResourceMetrics,
        now: Instant,
        delta: &mut usize,
        refused: &mut BTreeMap<String, u64>,
    ) -> Option<ResourceMetrics> {
        let attrs: &[KeyValue] = rm.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or(&[]);
        let resource_id = podnet_prometheus_translator::resource_id(attrs);
        let mut guard = self.lock();
        let state = &mut *guard;
        let resource_key = state.points.resource_key(attrs);
        let mut base = None;
        let mut rest: Option<ResourceMetrics> = None;
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                let points = match &m.data {
                    Some(metric::Data::Sum(sum)) if podnet_prometheus_translator::number_kind(m).is_some() => &sum.data_points,
                    Some(metric::Data::Gauge(g)) => &g.data_points,
                    Some(metric::Data::Sum(sum)) => {
                        *delta += sum.data_points.len();
                        continue;
                    }
                    _ => {
                        let rest = rest.get_or_insert_with(|| ResourceMetrics {
                            resource: rm.resource.clone(),
                            schema_url: rm.schema_url.clone(),
                            scope_metrics: Vec::new(),
                        });
                        match rest.scope_metrics.last_mut() {
                            Some(last) if last.scope == sm.scope => last.metrics.push(m.clone()),
                            _ => rest.scope_metrics.push(ScopeMetrics {
                                scope: sm.scope.clone(),
                                metrics: vec![m.clone()],
                                schema_url: sm.schema_url.clone(),
                            }),
                        }
                        continue;
                    }
                };
                let metric_key = state.points.metric_key(resource_key, m);
                for dp in points {
                    let key = state.points.point_key(metric_key, &dp.attributes);
                    let stale = dp.flags & podnet_pipeline::pdata::NO_RECORDED_VALUE != 0;
                    if !stale
                        && let Some(slot) = state.points.get(key)
                        && state.store.set(slot, translator.point_value(m, dp), now, resource_id)
                    {
                        continue;
                    }
                    let base = base.get_or_insert_with(|| translator.resource_base(attrs));
                    let Some(mut sample) = translator.number_point_sample(m, base, dp) else { continue };
                    sample.resource = resource_id;
                    if let Some(slot) = state.store.upsert(sample, now, refused) {
                        // Keys of series that went (churned flows, each cycle ending and
                        // starting ~1,000 at 100 pods) are forgotten before they would double
                        // the table, which only grows for series that are there.
                        let store = &state.store;
                        state.points.make_room(|slot| store.holds(slot));
                        state.points.insert(key, slot);
                    }
                }
            }
        }
        rest
    }

    /// The scraper names this target (its job and instance): podnet's own service attributes
    /// would only come back as exported_job.
    fn self_metric_samples(&self) -> Vec<podnet_prometheus_translator::Sample> {
        let mut own = self.ctx.host.telemetry.collect();
        for r in own.resources_mut().iter_mut().filter_map(|r| r.resource.as_mut()) {
            r.attributes.retain(|kv| !kv.key.starts_with("service."));
        }
        let mut samples = Vec::new();
        let translator = Translator {
            naming: Naming::Otel,
            namespace: "",
            resource_labels: &[],
            const_labels: &self.const_labels,
            all_resource_attributes: false,
        };
        translator.translate(own.resources(), &mut samples);
        samples
    }

    fn render_protobuf(&self) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut state = self.lock();
            state.expire(self.config.metric_expiration.0);
            state.store.render_protobuf(&mut out);
        }
        if self.ctx.host.serve_self_metrics {
            store::render_samples_protobuf(self.self_metric_samples(), &mut out);
        }
        out
    }

    fn render(&self, format: Format) -> String {
        let mut out = String::new();
        {
            let mut state = self.lock();
            state.expire(self.config.metric_expiration.0);
            state.store.render(format, &mut out);
        }
        if self.ctx.host.serve_self_metrics {
            store::render_samples(self.self_metric_samples(), format, &mut out);
        }
        if format == Format::OpenMetrics {
            out.push_str("# EOF\n");
        }
        out
    }
}

impl Exporter for PrometheusExporter {
    fn run(self: Box<Self>, mut input: Input) -> BoxFuture {
        Box::pin(async move {
            let PrometheusExporter { config, ctx, listener, web } = *self;
            let shared = Arc::new(Shared {
                const_labels: config.const_labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                config: config.clone(),
                state: Mutex::new(Held { store: Store::with_limit(config.max_series), points: PointCache::default() }),
                limit_warned: Mutex::new(None),
                collision_warned: Mutex::new(None),
                unsupported_warned: Default::default(),
                delta_warned: Default::default(),
                ctx: ctx.clone(),
            });
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    ctx.status.failed(format!("cannot use the listening socket: {e}"));
                    return;
                }
            };
            let mut app = router(&config.path, shared.clone());
            if let Some(web) = web.clone().filter(|w| !w.users.is_empty()) {
                app = app.layer(axum::middleware::from_fn(move |req: axum::extract::Request, next: axum::middleware::Next| {
                    basic_auth(web.clone(), req, next)
                }));
            }
            let shutdown = ctx.shutdown.clone();
            let tls = web.as_ref().and_then(|w| w.tls.clone());
            let scheme = if tls.is_some() { "https" } else { "http" };
            let server = tokio::spawn(podnet_configtls::serve_http(listener, app, tls, shutdown));
            tracing::info!(component = %ctx.id, endpoint = %config.endpoint, path = %config.path, naming = ?config.naming, scheme, "serving metrics");
            while let Some(d) = input.next(&ctx.shutdown).await {
                shared.consume(d);
            }
            match server.await {
                Ok(Err(e)) => tracing::warn!(component = %ctx.id, "metrics server ended: {e}"),
                Err(e) => tracing::warn!(component = %ctx.id, "metrics server task: {e}"),
                Ok(Ok(())) => {}
            }
        })
    }
}

/// 401 with a Basic challenge unless the request names a configured user and password.
async fn basic_auth(web: web_config::WebConfig, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_string);
    // bcrypt is slow on purpose: off the async threads.
    let ok = tokio::task::spawn_blocking(move || web.authorized(header.as_deref())).await.unwrap_or(false);
    if ok {
        next.run(req).await
    } else {
        (axum::http::StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Basic realm=\"podnet\"")], "Unauthorized\n").into_response()
    }
}

fn router(path: &str, shared: Arc<Shared>) -> Router {
    Router::new().route(path, get(metrics)).route("/", get(index)).with_state(shared)
}

/// OpenMetrics only when enabled and asked for: Prometheus asks by default, and would then
/// see `_total` appended to counter samples.
fn negotiate(headers: &HeaderMap, enabled: bool) -> Format {
    let wants = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("application/openmetrics-text"));
    if enabled && wants { Format::OpenMetrics } else { Format::Text }
}

/// Whether the scraper takes the protobuf exposition (Prometheus asks for it first when its
/// native histograms are on).
fn wants_protobuf(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| {
        a.split(',').any(|part| {
            let part = part.replace(' ', "");
            part.starts_with("application/vnd.google.protobuf")
                && part.contains("proto=io.prometheus.client.MetricFamily")
                && part.contains("encoding=delimited")
                && !part.contains("q=0;")
                && !part.ends_with("q=0")
        })
    })
}

async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if shared.config.exponential_histograms == HistogramFormat::Native && wants_protobuf(&headers) {
        return ([(header::CONTENT_TYPE, protobuf::CONTENT_TYPE)], shared.render_protobuf()).into_response();
    }
    let format = negotiate(&headers, shared.config.enable_open_metrics);
    let body = shared.render(format);
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

async fn index(State(shared): State<Arc<Shared>>) -> Response {
    let body = format!(
        "podnet {}\n\n{}  metrics (health and status: the health_check extension's endpoint)\n",
        env!("CARGO_PKG_VERSION"),
        shared.config.path
    );
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use podnet_pipeline::config::TelemetryConfig;
    use podnet_pipeline::pdata::{MetricDef, MetricsBuilder, Value, kv_str, number_value_f64};
    use podnet_pipeline::status::StatusRegistry;
    use podnet_pipeline::telemetry::Telemetry;
    use podnet_pipeline::{ComponentId, Host, Kind, NodeInfo};

    const BYTES: MetricDef = MetricDef::counter("podnet.flow.bytes", "Bytes per flow.", "By");
    const QUEUE: MetricDef = MetricDef::gauge("podnet.queue.length", "Queue length.", "{packet}");

    fn shared(config: PrometheusConfig) -> Shared {
        let status = Arc::new(StatusRegistry::default());
        let telemetry = Arc::new(Telemetry::new(&TelemetryConfig::default(), "node", status.clone()).unwrap());
        let host = Arc::new(Host::new(NodeInfo { name: "node".into() }, status.clone(), telemetry.clone(), false));
        let id = ComponentId::parse("prometheus").unwrap();
        let ctx = ComponentContext {
            id: id.clone(),
            kind: Kind::Exporter,
            pipeline: None,
            telemetry: telemetry.component(Kind::Exporter, &id, None),
            status: status.handle(Kind::Exporter, &id, None),
            host,
            shutdown: Default::default(),
        };
        Shared {
            const_labels: Vec::new(),
            state: Mutex::new(Held { store: Store::with_limit(config.max_series), points: PointCache::default() }),
            config,
            limit_warned: Mutex::new(None),
            collision_warned: Mutex::new(None),
            unsupported_warned: Default::default(),
            delta_warned: Default::default(),
            ctx,
        }
    }

    /// otel naming without target_info, with `labels` as the resource attributes kept.
    fn config(labels: &[&str]) -> PrometheusConfig {
        PrometheusConfig {
            resource_attributes_as_labels: labels.iter().map(|l| l.to_string()).collect(),
            target_info: TargetInfo { enabled: false },
            ..Default::default()
        }
    }

    /// One batch: per pod, a flow counter for each peer and a gauge.
    /// A pod: its name, (peer address, bytes) per flow, its queue length.
    type Pod<'a> = (&'a str, &'a [(&'a str, i64)], f64);

    fn batch(pods: &[Pod]) -> PData {
        let mut b = MetricsBuilder::new("test");
        for (pod, flows, queue) in pods {
            let mut r = b.resource(vec![kv_str(keys::K8S_POD_NAME, *pod)]);
            for (peer, bytes) in *flows {
                r.point(&BYTES, vec![kv_str("destination.address", *peer)], 1, 2, Value::Int(*bytes));
            }
            r.point(&QUEUE, vec![], 1, 2, Value::Double(*queue));
        }
        PData::Metrics(b.finish())
    }

    fn lines(s: &Shared) -> Vec<String> {
        s.render(Format::Text).lines().filter(|l| !l.starts_with('#')).map(str::to_string).collect()
    }

    #[test]
    fn points_seen_before_update_their_series_and_new_ones_are_translated() {
        let s = shared(config(&[keys::K8S_POD_NAME]));
        s.consume(batch(&[("a", &[("10.0.0.2", 5), ("10.0.0.3", 7)], 1.0), ("b", &[("10.0.0.1", 9)], 2.0)]));
        let first = lines(&s);
        assert_eq!(first.len(), 5, "{first:?}");
        assert_eq!(s.lock().points.len(), 5, "every number point is remembered");
        // The same series with new values, and a new one: the known points go straight to
        // their series (the cache does not grow), the new one is translated.
        s.consume(batch(&[("a", &[("10.0.0.2", 6), ("10.0.0.3", 7), ("10.0.0.4", 1)], 3.5), ("b", &[("10.0.0.1", 10)], 2.0)]));
        assert_eq!(s.lock().points.len(), 6);
        let text = lines(&s).join("\n");
        for want in [
            r#"podnet_flow_bytes_total{destination_address="10.0.0.2",k8s_pod_name="a"} 6"#,
            r#"podnet_flow_bytes_total{destination_address="10.0.0.3",k8s_pod_name="a"} 7"#,
            r#"podnet_flow_bytes_total{destination_address="10.0.0.4",k8s_pod_name="a"} 1"#,
            r#"podnet_flow_bytes_total{destination_address="10.0.0.1",k8s_pod_name="b"} 10"#,
            r#"podnet_queue_length{k8s_pod_name="a"} 3.5"#,
            r#"podnet_queue_length{k8s_pod_name="b"} 2"#,
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
    }

    #[test]
    fn an_ended_or_expired_series_comes_back_when_its_point_returns() {
        let s = shared(config(&[]));
        s.consume(batch(&[("a", &[("10.0.0.2", 5)], 1.0)]));
        // The flow ends at its source: its series goes at once, although its point is cached.
        let mut b = MetricsBuilder::new("test");
        b.resource(vec![kv_str(keys::K8S_POD_NAME, "a")]).ended(&BYTES, vec![kv_str("destination.address", "10.0.0.2")], 3);
        s.consume(PData::Metrics(b.finish()));
        assert_eq!(lines(&s).len(), 1, "only the gauge is left: {:?}", lines(&s));
        // It comes back: the stale cache entry must not write into a freed (or reused) slot.
        s.consume(batch(&[("a", &[("10.0.0.9", 1), ("10.0.0.2", 8)], 1.0)]));
        let text = lines(&s).join("\n");
        assert!(text.contains(r#"podnet_flow_bytes_total{destination_address="10.0.0.2"} 8"#), "{text}");
        assert!(text.contains(r#"podnet_flow_bytes_total{destination_address="10.0.0.9"} 1"#), "{text}");
        // Expiry frees every slot; the cache forgets the points and they come back whole.
        s.lock().expire(std::time::Duration::ZERO);
        std::thread::sleep(std::time::Duration::from_millis(2));
        s.lock().expire(std::time::Duration::ZERO);
        assert_eq!(s.lock().store.series_count(), 0);
        assert_eq!(s.lock().points.len(), 0);
        s.consume(batch(&[("a", &[("10.0.0.2", 11)], 4.0)]));
        let text = lines(&s).join("\n");
        assert!(text.contains(r#"podnet_flow_bytes_total{destination_address="10.0.0.2"} 11"#), "{text}");
        assert!(text.contains("podnet_queue_length 4"), "{text}");
    }

    #[test]
    fn two_resources_on_one_series_are_counted_as_collisions_on_every_write() {
        // Without the pod as a label, pods a and b write the same series.
        let s = shared(config(&[]));
        for round in 0..3 {
            s.consume(batch(&[("a", &[], 1.0), ("b", &[], 2.0 + f64::from(round))]));
        }
        // Each write by the other resource than the last writer is a collision: a's second
        // and third writes (after b's) and all three of b's.
        let own = s.ctx.host.telemetry.collect();
        let collisions: f64 = own
            .resources()
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|sm| &sm.metrics)
            .filter(|m| m.name == "podnet.exporter.series_collisions")
            .filter_map(|m| match &m.data {
                Some(metric::Data::Sum(sum)) => Some(sum.data_points.iter().map(number_value_f64).sum::<f64>()),
                _ => None,
            })
            .sum();
        assert_eq!(collisions, 5.0);
        assert!(lines(&s).join("\n").contains("podnet_queue_length 4"), "the later value wins");
    }
}
