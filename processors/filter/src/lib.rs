//! Processor `filter`: keeps or drops metrics by name and log records (events) by event
//! name, with regular expressions that must match the whole name.
//!
//! ```yaml
//! processors:
//!   filter:
//!     metrics:
//!       exclude: ['system\.network\.packet\..*']
//!     logs:
//!       include: ['PacketLoss', 'TCPRESET_.*']
//! ```

use podnet_pipeline::component::{
    BoxFuture, BuildError, ComponentContext, Factory, FactoryInfo, Kind, Processor, ProcessorFactory, Stability,
};
use podnet_pipeline::fanout::{Input, Outputs};
use podnet_pipeline::pdata::{Logs, Metrics, PData, Signal};
use regex::Regex;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NameFilter {
    /// When not empty, only names matching one of these are kept.
    pub include: Vec<String>,
    /// Names matching one of these are dropped (after `include`).
    pub exclude: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// Metric names.
    pub metrics: NameFilter,
    /// Log record event names (`PacketLoss`, `TCPRESET_NOSOCK`).
    pub logs: NameFilter,
}

/// Compiled patterns, anchored so they match whole names.
#[derive(Clone, Debug)]
pub struct Matcher {
    include: Vec<Regex>,
    exclude: Vec<Regex>,
}

impl Matcher {
    pub fn new(f: &NameFilter, key: &str) -> Result<Matcher, String> {
        let compile = |list: &[String], which: &str| -> Result<Vec<Regex>, String> {
            list.iter()
                .enumerate()
                .map(|(i, p)| {
                    Regex::new(&format!("^(?:{p})$")).map_err(|e| format!("{key}::{which}::{i}: invalid regular expression \"{p}\": {e}"))
                })
                .collect()
        };
        Ok(Matcher { include: compile(&f.include, "include")?, exclude: compile(&f.exclude, "exclude")? })
    }

    pub fn keeps(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|r| r.is_match(name))) && !self.exclude.iter().any(|r| r.is_match(name))
    }

    fn is_noop(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }
}

pub struct FilterProcessorFactory;

impl Factory for FilterProcessorFactory {
    type Config = FilterConfig;
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "filter",
            aliases: &[],
            kind: Kind::Processor,
            signals: &[Signal::Metrics, Signal::Logs],
            stability: Stability::Alpha,
            description: "Keeps or drops metrics by name and events by event name (regular expressions)",
            probes: &[],
        }
    }
    fn validate(&self, c: &FilterConfig) -> Result<(), String> {
        Matcher::new(&c.metrics, "metrics")?;
        Matcher::new(&c.logs, "logs")?;
        Ok(())
    }
}

impl ProcessorFactory for FilterProcessorFactory {
    fn create(&self, config: &FilterConfig, ctx: ComponentContext) -> Result<Box<dyn Processor>, BuildError> {
        let metrics = Matcher::new(&config.metrics, "metrics").map_err(BuildError::new)?;
        let logs = Matcher::new(&config.logs, "logs").map_err(BuildError::new)?;
        Ok(Box::new(FilterProcessor { metrics, logs, ctx }))
    }
}

struct FilterProcessor {
    metrics: Matcher,
    logs: Matcher,
    ctx: ComponentContext,
}

/// Removes filtered metrics; returns how many data points went.
pub fn filter_metrics(m: &mut Metrics, keep: &Matcher) -> usize {
    if keep.is_noop() {
        return 0;
    }
    let before = m.point_count();
    for r in m.resources_mut() {
        for s in &mut r.scope_metrics {
            s.metrics.retain(|x| keep.keeps(&x.name));
        }
        r.scope_metrics.retain(|s| !s.metrics.is_empty());
    }
    m.resources_mut().retain(|r| !r.scope_metrics.is_empty());
    before - m.point_count()
}

/// Removes filtered log records; returns how many went.
pub fn filter_logs(l: &mut Logs, keep: &Matcher) -> usize {
    if keep.is_noop() {
        return 0;
    }
    let before = l.record_count();
    for r in l.resources_mut() {
        for s in &mut r.scope_logs {
            s.log_records.retain(|x| keep.keeps(&x.event_name));
        }
        r.scope_logs.retain(|s| !s.log_records.is_empty());
    }
    l.resources_mut().retain(|r| !r.scope_logs.is_empty());
    before - l.record_count()
}

impl Processor for FilterProcessor {
    fn run(self: Box<Self>, mut input: Input, outputs: Outputs) -> BoxFuture {
        Box::pin(async move {
            let process = |data: PData| -> Option<PData> {
                let (signal, dropped, empty, data) = match data {
                    PData::Metrics(mut m) => {
                        let n = filter_metrics(&mut m, &self.metrics);
                        (Signal::Metrics, n, m.resources().is_empty(), PData::Metrics(m))
                    }
                    PData::Logs(mut l) => {
                        let n = filter_logs(&mut l, &self.logs);
                        (Signal::Logs, n, l.resources().is_empty(), PData::Logs(l))
                    }
                };
                if dropped > 0 {
                    self.ctx.telemetry.dropped(signal, dropped, "filtered");
                }
                (!empty).then_some(data)
            };
            // After shutdown, what was already queued is passed on: a reload loses nothing.
            while let Some(d) = input.next(&self.ctx.shutdown).await {
                if let Some(d) = process(d) {
                    outputs.send(d).await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podnet_pipeline::pdata::{MetricDef, MetricKind, MetricsBuilder, kv_str};

    const A: MetricDef = MetricDef { name: "system.network.io", description: "", unit: "By", kind: MetricKind::Counter, kubeskoop: None };
    const B: MetricDef =
        MetricDef { name: "system.network.packet.count", description: "", unit: "{packet}", kind: MetricKind::Counter, kubeskoop: None };

    fn batch() -> Metrics {
        let mut b = MetricsBuilder::new("t");
        let mut r = b.resource(vec![kv_str("k", "1")]);
        r.point(&A, vec![], 0, 1, 1u64.into());
        r.point(&B, vec![], 0, 1, 2u64.into());
        b.resource(vec![kv_str("k", "2")]).point(&B, vec![], 0, 1, 3u64.into());
        b.finish()
    }

    #[test]
    fn exclude_drops_whole_names_and_empty_resources() {
        let m = Matcher::new(&NameFilter { include: vec![], exclude: vec![r"system\.network\.packet\..*".into()] }, "metrics").unwrap();
        let original = batch();
        let mut filtered = original.clone();
        assert_eq!(filter_metrics(&mut filtered, &m), 2);
        assert_eq!(filtered.resources().len(), 1, "the resource left with nothing is removed");
        assert_eq!(original.point_count(), 3, "a shared batch is copied, not edited under another consumer");
    }

    #[test]
    fn include_is_anchored() {
        let m = Matcher::new(&NameFilter { include: vec!["system.network.io".into()], exclude: vec![] }, "metrics").unwrap();
        assert!(m.keeps("system.network.io"));
        assert!(!m.keeps("system.network.io.extra"));
    }

    #[test]
    fn invalid_pattern_names_its_path() {
        let err = FilterProcessorFactory
            .validate(&FilterConfig { metrics: NameFilter { include: vec!["(".into()], exclude: vec![] }, ..Default::default() });
        assert!(err.unwrap_err().starts_with("metrics::include::0: invalid regular expression \"(\""));
    }
}
