//! `stderr`: events on standard error, as KubeSkoop's stderr sink writes them
//! (`event: {"timestamp",…}`), or as OTLP JSON lines.

use std::io::Write as _;

use podnet_pipeline::component::{
    BoxFuture, BuildError, ComponentContext, Exporter, ExporterFactory, Factory, FactoryInfo, Kind, Stability,
};
use podnet_pipeline::fanout::Input;
use podnet_pipeline::pdata::{PData, Signal};
use serde::{Deserialize, Serialize};

use crate::file::{LineFormat, to_json_line};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StderrConfig {
    pub format: LineFormat,
}

impl Default for StderrConfig {
    fn default() -> Self {
        StderrConfig { format: LineFormat::Kubeskoop }
    }
}

pub struct StderrExporterFactory;

impl Factory for StderrExporterFactory {
    type Config = StderrConfig;
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "stderr",
            aliases: &[],
            kind: Kind::Exporter,
            signals: &[Signal::Logs],
            stability: Stability::Beta,
            description: "Writes events to standard error, as KubeSkoop's stderr sink does (event: {json}) or as OTLP JSON",
            probes: &[],
        }
    }
}

impl ExporterFactory for StderrExporterFactory {
    fn create(&self, config: &StderrConfig, ctx: ComponentContext) -> Result<Box<dyn Exporter>, BuildError> {
        Ok(Box::new(StderrExporter { format: config.format, ctx }))
    }
}

struct StderrExporter {
    format: LineFormat,
    ctx: ComponentContext,
}

/// The text of a batch on stderr.
pub fn stderr_text(data: &PData, format: LineFormat) -> Result<String, String> {
    match (format, data) {
        (LineFormat::Kubeskoop, PData::Logs(l)) => Ok(crate::kubeskoop::lines(l, "event: ")),
        (_, d) => to_json_line(d),
    }
}

impl Exporter for StderrExporter {
    fn run(self: Box<Self>, mut input: Input) -> BoxFuture {
        Box::pin(async move {
            let StderrExporter { format, ctx } = *self;
            crate::drive(&ctx, &mut input, |d| {
                let text = stderr_text(d, format)?;
                // One write per batch: lines of concurrent writers do not interleave.
                std::io::stderr().lock().write_all(text.as_bytes()).map_err(|e| format!("write to stderr: {e}"))
            })
            .await;
        })
    }
}
