//! `file`: appends each batch as one line of OTLP JSON (`{"resourceMetrics":[…]}` or
//! `{"resourceLogs":[…]}`), the format of the Collector's file exporter.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::PathBuf;

use podnet_pipeline::component::{
    BoxFuture, BuildError, ComponentContext, Exporter, ExporterFactory, Factory, FactoryInfo, Kind, Stability,
};
use podnet_pipeline::fanout::Input;
use podnet_pipeline::pdata::{PData, Signal};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub path: PathBuf,
}

pub struct FileExporterFactory;

impl Factory for FileExporterFactory {
    type Config = FileConfig;
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "file",
            aliases: &[],
            kind: Kind::Exporter,
            signals: &[Signal::Metrics, Signal::Logs],
            stability: Stability::Beta,
            description: "Appends metrics and events to a file as OTLP JSON lines",
            probes: &[],
        }
    }
    fn validate(&self, c: &FileConfig) -> Result<(), String> {
        if c.path.as_os_str().is_empty() {
            return Err("requires a non-empty \"path\"".into());
        }
        Ok(())
    }
}

impl ExporterFactory for FileExporterFactory {
    fn create(&self, config: &FileConfig, ctx: ComponentContext) -> Result<Box<dyn Exporter>, BuildError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.path)
            .map_err(|e| BuildError::new(format!("cannot open {} for appending: {e}", config.path.display())))?;
        Ok(Box::new(FileExporter { file, ctx }))
    }
}

struct FileExporter {
    file: File,
    ctx: ComponentContext,
}

/// One JSON line for a batch.
pub fn to_json_line(data: &PData) -> Result<String, String> {
    let mut line = match data {
        PData::Metrics(m) => serde_json::to_string(&m.to_request()),
        PData::Logs(l) => serde_json::to_string(&l.to_request()),
    }
    .map_err(|e| format!("cannot encode as JSON: {e}"))?;
    line.push('\n');
    Ok(line)
}

impl Exporter for FileExporter {
    fn run(self: Box<Self>, mut input: Input) -> BoxFuture {
        Box::pin(async move {
            let FileExporter { mut file, ctx } = *self;
            crate::drive(&ctx, &mut input, |d| {
                let line = to_json_line(d)?;
                file.write_all(line.as_bytes()).map_err(|e| format!("write: {e}"))
            })
            .await;
            if let Err(e) = file.sync_data() {
                tracing::warn!(component = %ctx.id, "sync at shutdown: {e}");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podnet_pipeline::pdata::{MetricDef, MetricKind, MetricsBuilder, kv_str};

    #[test]
    fn json_line_is_otlp_json() {
        const M: MetricDef = MetricDef { name: "m", description: "", unit: "By", kind: MetricKind::Counter, kubeskoop: None };
        let mut b = MetricsBuilder::new("s");
        b.resource(vec![kv_str("k8s.pod.name", "p")]).point(&M, vec![], 1, 2, 42u64.into());
        let line = to_json_line(&PData::Metrics(b.finish())).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let dp = &v["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["sum"]["dataPoints"][0];
        assert_eq!(dp["asInt"], "42", "OTLP JSON encodes 64-bit ints as strings: {line}");
        assert_eq!(v["resourceMetrics"][0]["resource"]["attributes"][0]["key"], "k8s.pod.name");
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
    }
}
