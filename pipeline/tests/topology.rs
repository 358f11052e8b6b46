//! The topology and reload semantics with small test components: what is kept, what is
//! rebuilt, fan-out, rollback when a new component cannot start.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use podnet_pipeline::component::*;
use podnet_pipeline::config::{ConfigSource, TelemetryConfig, load_str};
use podnet_pipeline::fanout::{Input, Outputs};
use podnet_pipeline::pdata::{MetricDef, MetricKind, MetricsBuilder, PData, Signal, kv_str, number_value_f64};
use podnet_pipeline::status::StatusRegistry;
use podnet_pipeline::telemetry::Telemetry;
use podnet_pipeline::{Host, ReloadOutcome, Service};
use serde::{Deserialize, Serialize};

static TICK_A_CREATED: AtomicUsize = AtomicUsize::new(0);
type Captured = Arc<Mutex<HashMap<String, Vec<(String, f64)>>>>;

fn captured() -> Captured {
    static C: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    C.get_or_init(Default::default).clone()
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TickConfig {
    value: i64,
}

struct TickFactory;
impl Factory for TickFactory {
    type Config = TickConfig;
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "tick",
            aliases: &["ticker"],
            kind: Kind::Receiver,
            signals: &[Signal::Metrics],
            stability: Stability::Development,
            description: "test",
            probes: &[],
        }
    }
}
impl ReceiverFactory for TickFactory {
    fn create(&self, config: &TickConfig, ctx: ComponentContext) -> Result<Box<dyn Receiver>, BuildError> {
        if ctx.id.to_string() == "tick/a" {
            TICK_A_CREATED.fetch_add(1, Ordering::SeqCst);
        }
        Ok(Box::new(Tick { value: config.value, ctx }))
    }
}
struct Tick {
    value: i64,
    ctx: ComponentContext,
}
const M: MetricDef = MetricDef { name: "tick", description: "", unit: "1", kind: MetricKind::Gauge, kubeskoop: None };
impl Receiver for Tick {
    fn run(self: Box<Self>, outputs: Outputs) -> BoxFuture {
        Box::pin(async move {
            loop {
                let mut b = MetricsBuilder::new("t");
                b.resource(vec![kv_str("source", self.ctx.id.to_string())]).point(
                    &M,
                    vec![],
                    0,
                    1,
                    podnet_pipeline::pdata::Value::Int(self.value),
                );
                outputs.send(PData::Metrics(b.finish())).await;
                tokio::select! {
                    _ = self.ctx.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct CaptureConfig {
    tag: String,
    fail: bool,
}

struct CaptureFactory;
impl Factory for CaptureFactory {
    type Config = CaptureConfig;
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "capture",
            aliases: &[],
            kind: Kind::Exporter,
            signals: &[Signal::Metrics, Signal::Logs],
            stability: Stability::Development,
            description: "test",
            probes: &[],
        }
    }
}
impl ExporterFactory for CaptureFactory {
    fn create(&self, config: &CaptureConfig, ctx: ComponentContext) -> Result<Box<dyn Exporter>, BuildError> {
        if config.fail {
            return Err(BuildError::new("port taken"));
        }
        Ok(Box::new(Capture { tag: config.tag.clone(), ctx }))
    }
}
struct Capture {
    tag: String,
    ctx: ComponentContext,
}
impl Exporter for Capture {
    fn run(self: Box<Self>, mut input: Input) -> BoxFuture {
        Box::pin(async move {
            loop {
                let m = tokio::select! {
                    _ = self.ctx.shutdown.cancelled() => return,
                    d = input.recv() => match d {
                        Some(PData::Metrics(m)) => m,
                        _ => return,
                    },
                };
                for r in m.resources() {
                    let source = podnet_pipeline::pdata::attr_string(&r.resource.as_ref().unwrap().attributes, "source").unwrap();
                    for s in &r.scope_metrics {
                        for metric in &s.metrics {
                            if let Some(podnet_pipeline::pdata::metric::Data::Gauge(g)) = &metric.data {
                                captured()
                                    .lock()
                                    .unwrap()
                                    .entry(self.tag.clone())
                                    .or_default()
                                    .push((source.clone(), number_value_f64(&g.data_points[0])));
                            }
                        }
                    }
                }
            }
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct GreeterConfig {
    greeting: String,
}

/// An extension offering a shared value to other components.
struct GreeterFactory;
impl Factory for GreeterFactory {
    type Config = GreeterConfig;
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "greeter",
            aliases: &[],
            kind: Kind::Extension,
            signals: &[],
            stability: Stability::Development,
            description: "test",
            probes: &[],
        }
    }
}
impl ExtensionFactory for GreeterFactory {
    fn create(&self, config: &GreeterConfig, ctx: ComponentContext) -> Result<Box<dyn Extension>, BuildError> {
        Ok(Box::new(Greeter { greeting: Arc::new(config.greeting.clone()), ctx }))
    }
}
struct Greeter {
    greeting: Arc<String>,
    ctx: ComponentContext,
}
impl Extension for Greeter {
    fn service(&self) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        Some(self.greeting.clone())
    }
    fn run(self: Box<Self>) -> BoxFuture {
        Box::pin(async move { self.ctx.shutdown.cancelled().await })
    }
}

fn registry() -> Registry {
    Registry::new().receiver(TickFactory).exporter(CaptureFactory).extension(GreeterFactory)
}

fn host() -> Arc<Host> {
    let status = Arc::new(StatusRegistry::default());
    let telemetry = Arc::new(Telemetry::new(&TelemetryConfig::default(), "node", status.clone()).unwrap());
    Arc::new(Host::new(podnet_pipeline::NodeInfo { name: "node".into() }, status, telemetry, true))
}

fn cfg(yaml: &str) -> podnet_pipeline::ResolvedConfig {
    load_str(yaml, "test", &registry(), |_| None).unwrap_or_else(|e| panic!("{e}"))
}

async fn wait_for(tag: &str, pred: impl Fn(&[(String, f64)]) -> bool) {
    for _ in 0..200 {
        if pred(captured().lock().unwrap().get(tag).map(Vec::as_slice).unwrap_or(&[])) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting on {tag}: {:?}", captured().lock().unwrap().get(tag));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_unchanged_components_and_rolls_back_failures() {
    let v1 = "
receivers:
  tick/a: { value: 1 }
exporters:
  capture/x: { tag: x1 }
service:
  pipelines:
    metrics:
      receivers: [tick/a]
      exporters: [capture/x]
";
    let h = host();
    let source = ConfigSource::Embedded { name: "t", text: "" };
    let mut service = Service::start(registry(), source, cfg(v1), h.clone()).await.unwrap();
    wait_for("x1", |v| v.iter().any(|(s, val)| s == "tick/a" && *val == 1.0)).await;
    let created = TICK_A_CREATED.load(Ordering::SeqCst);

    // Only the exporter changes: the receiver keeps running, data moves to the new exporter.
    let v2 = v1.replace("tag: x1", "tag: x2");
    let ReloadOutcome::Applied(report) = service.apply(cfg(&v2)).await else { panic!("not applied") };
    assert_eq!(report.stopped, ["exporter/capture/x"]);
    assert_eq!(report.started, ["exporter/capture/x"]);
    assert_eq!(report.kept, ["receiver/tick/a"]);
    assert_eq!(TICK_A_CREATED.load(Ordering::SeqCst), created, "receiver was not rebuilt");
    wait_for("x2", |v| !v.is_empty()).await;

    // Add a receiver and a second pipeline sharing it, fanning out to two exporters.
    let v3 = "
receivers:
  tick/a: { value: 1 }
  tick/b: { value: 2 }
exporters:
  capture/x: { tag: x2 }
  capture/y: { tag: y }
service:
  pipelines:
    metrics:
      receivers: [tick/a, tick/b]
      exporters: [capture/x]
    metrics/second:
      receivers: [tick/b]
      exporters: [capture/x, capture/y]
";
    let ReloadOutcome::Applied(report) = service.apply(cfg(v3)).await else { panic!("not applied") };
    assert_eq!(report.started, ["exporter/capture/y", "receiver/tick/b"]);
    assert!(report.stopped.is_empty());
    let wiring = service.topology().wiring();
    assert_eq!(
        wiring["receiver/tick/b"][0],
        (Signal::Metrics, vec!["exporter/capture/x".to_string(), "exporter/capture/x".to_string(), "exporter/capture/y".to_string()])
    );
    wait_for("y", |v| v.iter().any(|(s, _)| s == "tick/b")).await;
    assert!(captured().lock().unwrap()["y"].iter().all(|(s, _)| s == "tick/b"), "tick/a is not in the second pipeline");

    // A new exporter that cannot start: the previous pipeline is restored and keeps delivering.
    let v4 = v3.replace("tag: y", "tag: y, fail: true");
    let outcome = service.apply(cfg(&v4)).await;
    assert_eq!(outcome, ReloadOutcome::RolledBack("exporters::capture/y: cannot start: port taken".into()));
    let before = captured().lock().unwrap()["y"].len();
    wait_for("y", |v| v.len() > before + 2).await;
    assert_eq!(h.status.last_reload_ok(), Some(false));

    // The same config again changes nothing.
    assert_eq!(service.apply(cfg(v3)).await, ReloadOutcome::Unchanged);

    // Dropping a receiver from every pipeline stops it and removes its status line.
    let v5 = v3
        .replace("receivers: [tick/a, tick/b]", "receivers: [tick/a]")
        .replace("receivers: [tick/b]", "receivers: [tick/a]")
        .replace("  tick/b: { value: 2 }\n", "");
    let ReloadOutcome::Applied(report) = service.apply(cfg(&v5)).await else { panic!("not applied") };
    assert_eq!(report.stopped, ["receiver/tick/b"]);
    assert!(!h.status.snapshot().iter().any(|c| c.id == "tick/b"));
    assert_eq!(h.status.last_reload_ok(), Some(true));
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_file_is_rejected_and_pipeline_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    let good = "receivers:\n  tick/r: { value: 5 }\nexporters:\n  capture: { tag: r }\nservice:\n  pipelines:\n    metrics:\n      receivers: [tick/r]\n      exporters: [capture]\n";
    std::fs::write(&path, good).unwrap();
    let source = ConfigSource::File(path.clone());
    let config = podnet_pipeline::config::load(&source, &registry()).unwrap();
    let h = host();
    let mut service = Service::start(registry(), source, config, h.clone()).await.unwrap();
    wait_for("r", |v| !v.is_empty()).await;
    std::fs::write(&path, good.replace("value: 5", "value: five")).unwrap();
    let ReloadOutcome::Rejected(msg) = service.reload().await else { panic!("accepted") };
    assert!(msg.contains("receivers::tick/r::value: invalid type: found string \"five\", expected i64"), "{msg}");
    let before = captured().lock().unwrap()["r"].len();
    wait_for("r", |v| v.len() > before + 2).await;
    let report = h.status.report();
    assert_eq!(report.last_reload.as_ref().unwrap().result, "rejected");
    // The deprecated alias works, with a warning.
    std::fs::write(&path, good.replace("tick/r", "ticker/r")).unwrap();
    assert!(matches!(service.reload().await, ReloadOutcome::Applied(_)));
    assert!(
        service.config().warnings.iter().any(|w| w.contains("\"ticker\" is a deprecated name; use \"tick\"")),
        "{:?}",
        service.config().warnings
    );
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extensions_start_first_and_offer_their_service() {
    let v1 = "
extensions:
  greeter: { greeting: hello }
receivers:
  tick/e: { value: 9 }
exporters:
  capture: { tag: e }
service:
  extensions: [greeter]
  pipelines:
    metrics:
      receivers: [tick/e]
      exporters: [capture]
";
    let h = host();
    let mut service = Service::start(registry(), ConfigSource::Embedded { name: "t", text: "" }, cfg(v1), h.clone()).await.unwrap();
    assert_eq!(h.extension::<String>("greeter").as_deref().map(String::as_str), Some("hello"));
    assert!(h.extension::<u64>("greeter").is_none(), "a service of another type is not handed out");
    assert!(h.status.snapshot().iter().any(|c| c.kind == Kind::Extension && c.id == "greeter"));

    let ReloadOutcome::Applied(report) = service.apply(cfg(&v1.replace("greeting: hello", "greeting: hi"))).await else { panic!() };
    assert_eq!(report.stopped, ["extension/greeter"]);
    assert_eq!(h.extension::<String>("greeter").as_deref().map(String::as_str), Some("hi"));

    let without = v1.replace("  extensions: [greeter]\n", "");
    let cfg_without = cfg(&without);
    assert!(
        cfg_without.warnings.iter().any(|w| w == "extensions::greeter: defined but not listed in service::extensions; it will not run")
    );
    let ReloadOutcome::Applied(_) = service.apply(cfg_without).await else { panic!() };
    assert!(h.extension::<String>("greeter").is_none());
    service.shutdown().await;
}
