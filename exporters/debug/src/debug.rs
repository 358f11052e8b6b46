//! `debug`: what flows through a pipeline, on stdout (the Collector's debug exporter).

use std::fmt::Write as _;
use std::io::Write as _;

use podnet_pipeline::component::{
    BoxFuture, BuildError, ComponentContext, Exporter, ExporterFactory, Factory, FactoryInfo, Kind, Stability,
};
use podnet_pipeline::fanout::Input;
use podnet_pipeline::pdata::{KeyValue, PData, Signal, any_value_to_string, metric, number_value_f64};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    /// One summary line per batch.
    #[default]
    Basic,
    /// Every resource, metric, data point and log record.
    Detailed,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DebugConfig {
    pub verbosity: Verbosity,
}

pub struct DebugExporterFactory;

impl Factory for DebugExporterFactory {
    type Config = DebugConfig;
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "debug",
            aliases: &[],
            kind: Kind::Exporter,
            signals: &[Signal::Metrics, Signal::Logs],
            stability: Stability::Beta,
            description: "Prints metrics and events to stdout (basic: a line per batch; detailed: everything)",
            probes: &[],
        }
    }
}

impl ExporterFactory for DebugExporterFactory {
    fn create(&self, config: &DebugConfig, ctx: ComponentContext) -> Result<Box<dyn Exporter>, BuildError> {
        Ok(Box::new(DebugExporter { verbosity: config.verbosity, ctx }))
    }
}

struct DebugExporter {
    verbosity: Verbosity,
    ctx: ComponentContext,
}

impl Exporter for DebugExporter {
    fn run(self: Box<Self>, mut input: Input) -> BoxFuture {
        Box::pin(async move {
            let verbosity = self.verbosity;
            let id = self.ctx.id.to_string();
            crate::drive(&self.ctx, &mut input, |d| {
                let text = render(&id, d, verbosity);
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes()).and_then(|_| out.flush()).map_err(|e| format!("stdout: {e}"))
            })
            .await
        })
    }
}

fn attrs(a: &[KeyValue]) -> String {
    a.iter()
        .map(|kv| format!("{}={}", kv.key, kv.value.as_ref().map(any_value_to_string).unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The text the exporter prints for one batch.
pub fn render(id: &str, data: &PData, verbosity: Verbosity) -> String {
    let mut out = String::new();
    match data {
        PData::Metrics(m) => {
            let metrics: usize = m.resources().iter().flat_map(|r| &r.scope_metrics).map(|s| s.metrics.len()).sum();
            let _ = writeln!(out, "{id}: metrics: {} resources, {metrics} metrics, {} data points", m.resources().len(), m.point_count());
            if verbosity == Verbosity::Detailed {
                for r in m.resources() {
                    let _ = writeln!(out, "  resource {}", attrs(r.resource.as_ref().map(|x| x.attributes.as_slice()).unwrap_or(&[])));
                    for s in &r.scope_metrics {
                        for metric in &s.metrics {
                            let (kind, points): (&str, Vec<_>) = match &metric.data {
                                Some(metric::Data::Sum(x)) => {
                                    (if x.is_monotonic { "counter" } else { "updowncounter" }, x.data_points.iter().collect())
                                }
                                Some(metric::Data::Gauge(x)) => ("gauge", x.data_points.iter().collect()),
                                Some(metric::Data::ExponentialHistogram(h)) => {
                                    let _ = writeln!(out, "    {} (exponential histogram, {})", metric.name, metric.unit);
                                    for dp in &h.data_points {
                                        let buckets =
                                            dp.positive.as_ref().map(|b| (b.offset, b.bucket_counts.as_slice())).unwrap_or((0, &[]));
                                        let _ = writeln!(
                                            out,
                                            "      count={} sum={} zero={} scale={} offset={} buckets={:?} {{{}}} start={} time={}",
                                            dp.count,
                                            dp.sum.unwrap_or(0.0),
                                            dp.zero_count,
                                            dp.scale,
                                            buckets.0,
                                            buckets.1,
                                            attrs(&dp.attributes),
                                            dp.start_time_unix_nano,
                                            dp.time_unix_nano
                                        );
                                    }
                                    continue;
                                }
                                Some(_) => ("other", Vec::new()),
                                None => ("empty", Vec::new()),
                            };
                            let _ = writeln!(out, "    {} ({kind}, {})", metric.name, metric.unit);
                            for dp in points {
                                let _ = writeln!(
                                    out,
                                    "      {} {{{}}} start={} time={}",
                                    number_value_f64(dp),
                                    attrs(&dp.attributes),
                                    dp.start_time_unix_nano,
                                    dp.time_unix_nano
                                );
                            }
                        }
                    }
                }
            }
        }
        PData::Logs(l) => {
            let _ = writeln!(out, "{id}: logs: {} resources, {} records", l.resources().len(), l.record_count());
            if verbosity == Verbosity::Detailed {
                for r in l.resources() {
                    let _ = writeln!(out, "  resource {}", attrs(r.resource.as_ref().map(|x| x.attributes.as_slice()).unwrap_or(&[])));
                    for rec in r.scope_logs.iter().flat_map(|s| &s.log_records) {
                        let body = rec.body.as_ref().map(any_value_to_string).unwrap_or_default();
                        let _ = writeln!(out, "    {} {} {} {}", rec.time_unix_nano, rec.event_name, body, attrs(&rec.attributes));
                    }
                }
            }
        }
    }
    out
}
