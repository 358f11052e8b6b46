//! podnet's own metrics, built on the OpenTelemetry SDK: a manual reader serves them on the
//! Prometheus endpoint at scrape time, and an optional periodic OTLP reader pushes them
//! (`service.telemetry.metrics.otlp`).
//!
//! Every component gets a [`ComponentTelemetry`] with its identity pre-bound, so the
//! framework counts what flows in and out and components add only what they alone know
//! (export failures, collection duration).

use std::sync::{Arc, Weak};
use std::time::Duration;

use opentelemetry::KeyValue as OtelKeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource as SdkResource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics as SdkResourceMetrics;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{InstrumentKind, ManualReader, PeriodicReader, Pipeline, SdkMeterProvider, Temporality};

use crate::config::TelemetryConfig;
use crate::id::{ComponentId, Kind};
use crate::pdata::{ExportMetricsServiceRequest, Metrics, Signal};
use crate::status::StatusRegistry;

/// The manual reader, shared between the meter provider (which owns a reader) and the
/// scrape handler (which collects from it).
#[derive(Debug, Clone)]
struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline)
    }
    fn collect(&self, rm: &mut SdkResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

/// Sending queues to report: (component attributes, live depth, capacity).
type QueueRegistry = std::sync::Mutex<Vec<(Vec<OtelKeyValue>, Weak<std::sync::atomic::AtomicUsize>, usize)>>;

/// One reading of a probe self-metric (eBPF program runs, events lost), published by the
/// receiver that owns the probe and observed at collection time.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeSample {
    /// One of [`PROBE_METRICS`]' names.
    pub metric: &'static str,
    pub attributes: Vec<(&'static str, String)>,
    pub value: f64,
}

/// The probe self-metrics: (name, description, unit, monotonic).
pub const PROBE_METRICS: &[(&str, &str, &str, bool)] = &[
    ("podnet.probe.up", "1 when a probe is attached and running, 0 when it is unsupported on this kernel.", "", false),
    ("podnet.ebpf.program.runs", "Times an eBPF program ran (kernel BPF statistics).", "{run}", true),
    ("podnet.ebpf.program.run_time", "Time eBPF programs spent running (kernel BPF statistics).", "s", true),
    ("podnet.ebpf.events", "Probe events by outcome: sent, lost (ring buffer full), rate_limited, decode_error.", "{event}", true),
    ("podnet.ebpf.flows.evicted", "Flows evicted from a probe's bounded flow table (their series end).", "{flow}", true),
    (
        "podnet.ebpf.latency.starts",
        "Latency probes: start timestamps by outcome: completed (measured), reclaimed (the LRU made room; the completion never came), inflight.",
        "{start}",
        true,
    ),
    ("podnet.ebpf.latency.series_full", "Latency probes: new histogram series refused because the map was full.", "{series}", true),
];

/// Published sample sets: (component attributes, the set); a stopped receiver's set is gone.
type ProbeRegistry = std::sync::Mutex<Vec<(Vec<OtelKeyValue>, Weak<std::sync::Mutex<Vec<ProbeSample>>>)>>;

/// A receiver's handle for publishing its probe self-metrics.
#[derive(Clone, Default)]
pub struct ProbeStats(Arc<std::sync::Mutex<Vec<ProbeSample>>>);

impl ProbeStats {
    /// Replaces the published samples.
    pub fn publish(&self, samples: Vec<ProbeSample>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = samples;
    }
}

struct Instruments {
    queues: Arc<QueueRegistry>,
    probes: Arc<ProbeRegistry>,
    received: Counter<u64>,
    sent: Counter<u64>,
    dropped: Counter<u64>,
    export_failed: Counter<u64>,
    collection_duration: Histogram<f64>,
    collection_errors: Counter<u64>,
    refused: Counter<u64>,
    series_dropped: Counter<u64>,
    series_collisions: Counter<u64>,
    reloads: Counter<u64>,
    retries: Counter<u64>,
}

/// The service's telemetry: one per process, it outlives reloads.
pub struct Telemetry {
    provider: SdkMeterProvider,
    reader: Arc<ManualReader>,
    instruments: Arc<Instruments>,
    meter: Meter,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("service::telemetry::metrics::otlp: cannot build the OTLP exporter for {endpoint}: {reason}")]
    Otlp { endpoint: String, reason: String },
}

impl Telemetry {
    /// Builds the meter provider. Must run inside a tokio runtime when OTLP push is set
    /// (the gRPC client needs the reactor).
    pub fn new(config: &TelemetryConfig, node_name: &str, status: Arc<StatusRegistry>) -> Result<Telemetry, TelemetryError> {
        let reader = Arc::new(ManualReader::builder().with_temporality(Temporality::Cumulative).build());
        let resource = SdkResource::builder()
            .with_service_name("podnet")
            .with_attribute(OtelKeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .with_attribute(OtelKeyValue::new("k8s.node.name", node_name.to_string()))
            .build();
        let mut builder = SdkMeterProvider::builder().with_resource(resource).with_reader(SharedReader(reader.clone()));
        if let Some(otlp) = &config.metrics.otlp {
            let exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(otlp.endpoint.clone())
                .with_timeout(otlp.timeout.0)
                .build()
                .map_err(|e| TelemetryError::Otlp { endpoint: otlp.endpoint.clone(), reason: e.to_string() })?;
            builder = builder.with_reader(PeriodicReader::builder(exporter).with_interval(otlp.interval.0).build());
        }
        let provider = builder.build();
        let meter = provider.meter("podnet");
        let queues: Arc<QueueRegistry> = Arc::default();
        for (name, description, capacity) in [
            ("podnet.exporter.queue.size", "Batches an exporter holds: queued, or being sent.", false),
            ("podnet.exporter.queue.capacity", "How many batches an exporter's sending queue holds.", true),
        ] {
            let queues = queues.clone();
            meter
                .i64_observable_gauge(name)
                .with_description(description)
                .with_unit("{batch}")
                .with_callback(move |obs| {
                    let mut list = queues.lock().unwrap_or_else(|e| e.into_inner());
                    // Queues of stopped exporters are gone: forget them.
                    list.retain(|(_, depth, _)| depth.strong_count() > 0);
                    for (attrs, depth, cap) in list.iter() {
                        if let Some(d) = depth.upgrade() {
                            let v = if capacity { *cap } else { d.load(std::sync::atomic::Ordering::Relaxed) };
                            obs.observe(v as i64, attrs);
                        }
                    }
                })
                .build();
        }
        let probes: Arc<ProbeRegistry> = Arc::default();
        for &(name, description, unit, monotonic) in PROBE_METRICS {
            let probes = probes.clone();
            let observe = move |out: &mut dyn FnMut(f64, &[OtelKeyValue])| {
                let mut list = probes.lock().unwrap_or_else(|e| e.into_inner());
                list.retain(|(_, set)| set.strong_count() > 0);
                for (base, set) in list.iter() {
                    let Some(set) = set.upgrade() else { continue };
                    for sample in set.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|s| s.metric == name) {
                        let mut attrs = base.clone();
                        attrs.extend(sample.attributes.iter().map(|(k, v)| OtelKeyValue::new(*k, v.clone())));
                        out(sample.value, &attrs);
                    }
                }
            };
            if monotonic {
                meter
                    .f64_observable_counter(name)
                    .with_description(description)
                    .with_unit(unit)
                    .with_callback(move |obs| observe(&mut |v, a| obs.observe(v, a)))
                    .build();
            } else {
                meter
                    .f64_observable_gauge(name)
                    .with_description(description)
                    .with_unit(unit)
                    .with_callback(move |obs| observe(&mut |v, a| obs.observe(v, a)))
                    .build();
            }
        }
        let instruments = Arc::new(Instruments {
            queues,
            probes,
            received: meter
                .u64_counter("podnet.component.received")
                .with_description("Items (data points or log records) a processor or exporter received.")
                .with_unit("{item}")
                .build(),
            sent: meter
                .u64_counter("podnet.component.sent")
                .with_description("Items a receiver or processor passed on, or an exporter delivered.")
                .with_unit("{item}")
                .build(),
            dropped: meter
                .u64_counter("podnet.component.dropped")
                .with_description("Items a component dropped, by reason.")
                .with_unit("{item}")
                .build(),
            export_failed: meter
                .u64_counter("podnet.exporter.send_failed")
                .with_description("Items an exporter failed to deliver.")
                .with_unit("{item}")
                .build(),
            collection_duration: meter
                .f64_histogram("podnet.receiver.collection.duration")
                .with_description("Time one collection of a receiver took.")
                .with_unit("s")
                .with_boundaries(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
                .build(),
            collection_errors: meter
                .u64_counter("podnet.receiver.collection.errors")
                .with_description("Collection errors (a namespace or file that could not be read), by receiver.")
                .with_unit("{error}")
                .build(),
            retries: meter
                .u64_counter("podnet.exporter.retries")
                .with_description("Send attempts an exporter retried after a retryable failure.")
                .with_unit("{retry}")
                .build(),
            series_collisions: meter
                .u64_counter("podnet.exporter.series_collisions")
                .with_description("Writes to a series by a resource other than the one that wrote it last: two sources whose data lands on the same labels (the later value wins).")
                .with_unit("{write}")
                .build(),
            series_dropped: meter
                .u64_counter("podnet.exporter.series_dropped")
                .with_description("New series an exporter did not take, by reason (limit: its max_series was reached).")
                .with_unit("{series}")
                .build(),
            refused: meter
                .u64_counter("podnet.receiver.refused_requests")
                .with_description("Requests a receiver refused before decoding them, by reason (too_large: over its size limit).")
                .with_unit("{request}")
                .build(),
            reloads: meter
                .u64_counter("podnet.config.reloads")
                .with_description("Config reloads, by result (success, rejected, rolled_back).")
                .with_unit("{reload}")
                .build(),
        });
        // Gauges computed from the status registry at collection time.
        let status_for_up = status.clone();
        meter
            .i64_observable_gauge("podnet.component.up")
            .with_description("1 when the component runs, 0 when it failed or is unsupported on this kernel.")
            .with_callback(move |obs| {
                for c in status_for_up.snapshot() {
                    obs.observe(
                        i64::from(c.state.is_up()),
                        &[
                            OtelKeyValue::new("component_kind", c.kind.as_str()),
                            OtelKeyValue::new("component_id", c.id.clone()),
                            OtelKeyValue::new("state", c.state.as_str()),
                        ],
                    );
                }
            })
            .build();
        let status_for_reload = status;
        meter
            .i64_observable_gauge("podnet.config.last_reload_success")
            .with_description("1 when the last config reload applied, 0 when it was rejected or rolled back.")
            .with_callback(move |obs| {
                if let Some(ok) = status_for_reload.last_reload_ok() {
                    obs.observe(i64::from(ok), &[]);
                }
            })
            .build();
        Ok(Telemetry { provider, reader, instruments, meter })
    }

    pub fn component(&self, kind: Kind, id: &ComponentId, pipeline: Option<&str>) -> ComponentTelemetry {
        let mut attrs = vec![OtelKeyValue::new("component_kind", kind.as_str()), OtelKeyValue::new("component_id", id.to_string())];
        if let Some(p) = pipeline {
            attrs.push(OtelKeyValue::new("pipeline", p.to_string()));
        }
        ComponentTelemetry { instruments: self.instruments.clone(), attrs: Arc::new(attrs) }
    }

    pub fn record_reload(&self, result: &'static str) {
        self.instruments.reloads.add(1, &[OtelKeyValue::new("result", result)]);
    }

    /// A meter for component-specific instruments (probe self-metrics).
    pub fn meter(&self) -> &Meter {
        &self.meter
    }

    /// The current self-metrics as OTLP, for the Prometheus endpoint and tests.
    pub fn collect(&self) -> Metrics {
        let mut rm = SdkResourceMetrics::default();
        match self.reader.collect(&mut rm) {
            Ok(()) => Metrics::new(ExportMetricsServiceRequest::from(&rm).resource_metrics),
            Err(e) => {
                tracing::warn!(error = %e, "cannot collect podnet self-metrics");
                Metrics::default()
            }
        }
    }

    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::debug!(error = %e, "telemetry shutdown");
        }
    }
}

/// Self-telemetry handle of one component.
#[derive(Clone)]
pub struct ComponentTelemetry {
    instruments: Arc<Instruments>,
    attrs: Arc<Vec<OtelKeyValue>>,
}

impl ComponentTelemetry {
    fn with(&self, extra: &[OtelKeyValue]) -> Vec<OtelKeyValue> {
        let mut a = self.attrs.as_ref().clone();
        a.extend_from_slice(extra);
        a
    }
    fn signal_attr(signal: Signal) -> OtelKeyValue {
        OtelKeyValue::new("signal", signal.as_str())
    }
    pub fn received(&self, signal: Signal, items: usize) {
        self.instruments.received.add(items as u64, &self.with(&[Self::signal_attr(signal)]));
    }
    pub fn sent(&self, signal: Signal, items: usize) {
        self.instruments.sent.add(items as u64, &self.with(&[Self::signal_attr(signal)]));
    }
    pub fn dropped(&self, signal: Signal, items: usize, reason: &'static str) {
        self.instruments.dropped.add(items as u64, &self.with(&[Self::signal_attr(signal), OtelKeyValue::new("reason", reason)]));
    }
    pub fn export_failed(&self, signal: Signal, items: usize) {
        self.instruments.export_failed.add(items as u64, &self.with(&[Self::signal_attr(signal)]));
    }
    pub fn retried(&self, signal: Signal) {
        self.instruments.retries.add(1, &self.with(&[Self::signal_attr(signal)]));
    }
    pub fn collection_duration(&self, seconds: f64) {
        self.instruments.collection_duration.record(seconds, &self.attrs);
    }
    /// Reports a sending queue's depth (read at collection) and capacity.
    pub fn track_queue(&self, depth: &Arc<std::sync::atomic::AtomicUsize>, capacity: usize) {
        let mut list = self.instruments.queues.lock().unwrap_or_else(|e| e.into_inner());
        list.push((self.attrs.as_ref().clone(), Arc::downgrade(depth), capacity));
    }
    /// Registers a set of probe self-metrics, reported while the handle lives.
    pub fn probe_stats(&self) -> ProbeStats {
        let stats = ProbeStats::default();
        let mut list = self.instruments.probes.lock().unwrap_or_else(|e| e.into_inner());
        list.push((self.attrs.as_ref().clone(), Arc::downgrade(&stats.0)));
        stats
    }
    /// New series an exporter did not take.
    pub fn series_collisions(&self, n: u64) {
        self.instruments.series_collisions.add(n, &self.with(&[]));
    }
    pub fn series_dropped(&self, n: u64, reason: &'static str) {
        self.instruments.series_dropped.add(n, &self.with(&[OtelKeyValue::new("reason", reason)]));
    }
    /// A request refused whole (e.g. over a size limit): nothing of it was decoded.
    pub fn refused(&self, signal: Signal, reason: &'static str) {
        self.instruments.refused.add(1, &self.with(&[Self::signal_attr(signal), OtelKeyValue::new("reason", reason)]));
    }
    pub fn collection_error(&self, what: &'static str) {
        self.instruments.collection_errors.add(1, &self.with(&[OtelKeyValue::new("error_type", what)]));
    }
}
