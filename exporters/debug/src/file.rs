//! `file`: appends each batch as one line of OTLP JSON (`{"resourceMetrics":[…]}` or
//! `{"resourceLogs":[…]}`), the format of the Collector's file exporter; or, with
//! `format: kubeskoop`, one KubeSkoop event line per log record.

use std::path::PathBuf;

use podnet_pipeline::component::{
    BoxFuture, BuildError, ComponentContext, Exporter, ExporterFactory, Factory, FactoryInfo, Kind, Stability,
};
use podnet_pipeline::fanout::Input;
use podnet_pipeline::pdata::{PData, Signal};
use serde::{Deserialize, Serialize};

use crate::rotate::RotatingFile;

/// How records are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineFormat {
    /// One OTLP JSON line per batch (metrics and events).
    #[default]
    OtlpJson,
    /// KubeSkoop's `{"timestamp","type","labels","msg"}`, one line per event (events only).
    Kubeskoop,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub path: PathBuf,
    pub format: LineFormat,
    /// Rotation by size (the Collector's `rotation` keys); absent: the file only grows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Rotation>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rotation {
    /// Size of the file before it is rotated, in MiB.
    pub max_megabytes: u32,
    /// Rotated files kept (`path.1` newest); 0 keeps none.
    pub max_backups: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation { max_megabytes: 100, max_backups: 3 }
    }
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
        if c.rotation.as_ref().is_some_and(|r| r.max_megabytes == 0) {
            return Err("rotation::max_megabytes must be at least 1 (remove rotation to never rotate)".into());
        }
        Ok(())
    }
}

impl ExporterFactory for FileExporterFactory {
    fn create(&self, config: &FileConfig, ctx: ComponentContext) -> Result<Box<dyn Exporter>, BuildError> {
        if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            std::fs::create_dir_all(dir).map_err(|e| BuildError::new(format!("cannot create directory {}: {e}", dir.display())))?;
        }
        let (max_bytes, max_backups) = config.rotation.as_ref().map_or((0, 0), |r| (u64::from(r.max_megabytes) << 20, r.max_backups));
        let file = RotatingFile::open(&config.path, max_bytes, max_backups)
            .map_err(|e| BuildError::new(format!("cannot open {} for appending: {e}", config.path.display())))?;
        Ok(Box::new(FileExporter { file, format: config.format, ctx }))
    }
}

struct FileExporter {
    file: RotatingFile,
    format: LineFormat,
    ctx: ComponentContext,
}

/// The text a batch becomes in `format`; `None` when the format has no place for it
/// (metrics in KubeSkoop's event format).
pub fn render_lines(data: &PData, format: LineFormat) -> Result<Option<String>, String> {
    match (format, data) {
        (LineFormat::OtlpJson, d) => to_json_line(d).map(Some),
        (LineFormat::Kubeskoop, PData::Logs(l)) => Ok(Some(crate::kubeskoop::lines(l, ""))),
        (LineFormat::Kubeskoop, PData::Metrics(_)) => Ok(None),
    }
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
            let FileExporter { mut file, format, ctx } = *self;
            let mut warned = false;
            // One buffer for every batch of event lines: no large allocation per batch.
            let mut buf = String::new();
            crate::drive(&ctx, &mut input, |d| match (format, d) {
                (LineFormat::Kubeskoop, PData::Logs(l)) => {
                    buf.clear();
                    crate::kubeskoop::lines_into(&mut buf, l, "");
                    file.write_all(buf.as_bytes()).map_err(|e| format!("write: {e}"))
                }
                _ => match render_lines(d, format)? {
                Some(text) => file.write_all(text.as_bytes()).map_err(|e| format!("write: {e}")),
                None => {
                    if !warned {
                        tracing::warn!(component = %ctx.id, "format kubeskoop holds events only: metrics are not written (use format otlp_json)");
                        warned = true;
                    }
                    Ok(())
                }
                },
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
