//! Exporters for people and files: `debug` prints to stdout, `file` appends OTLP JSON
//! lines (or KubeSkoop event lines), `stderr` writes events as KubeSkoop's stderr sink.

mod debug;
mod file;
pub use podnet_pipeline::kubeskoop_event as kubeskoop;
mod rotate;
mod stderr;

pub use debug::{DebugConfig, DebugExporterFactory, Verbosity, render};
pub use file::{FileConfig, FileExporterFactory, LineFormat, Rotation, render_lines};
pub use stderr::{StderrConfig, StderrExporterFactory, stderr_text};

use podnet_pipeline::component::ComponentContext;
use podnet_pipeline::fanout::Input;
use podnet_pipeline::pdata::PData;

/// Feeds every batch to `write` until shutdown, then drains what is queued.
pub(crate) async fn drive(ctx: &ComponentContext, input: &mut Input, mut write: impl FnMut(&PData) -> Result<(), String>) {
    let mut handle = |d: PData| match write(&d) {
        Ok(()) => ctx.telemetry.sent(d.signal(), d.item_count()),
        Err(e) => {
            ctx.telemetry.export_failed(d.signal(), d.item_count());
            tracing::error!(component = %ctx.id, "cannot write: {e}");
            ctx.status.failed(e);
        }
    };
    while let Some(d) = input.next(&ctx.shutdown).await {
        handle(d);
    }
}
