//! The collection loop shared by receivers that read the kernel on an interval (the
//! Collector's scraperhelper): ticks, runs the blocking read off the async threads, times
//! it, reports partial failures and sends what it got.

use std::time::{Duration, Instant};

use crate::component::ComponentContext;
use crate::fanout::Outputs;
use crate::pdata::{Metrics, PData, Signal};

/// One collection's result: what could be read, and what could not (a namespace that
/// vanished mid-read, a malformed file). Errors never discard the rest.
#[derive(Debug, Default)]
pub struct Collection {
    pub metrics: Metrics,
    pub errors: Vec<CollectionError>,
    /// Probes found unsupported on this kernel during this collection: (probe, reason).
    pub unsupported: Vec<(&'static str, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionError {
    /// A short class for the self-metric label (`read`, `parse`).
    pub class: &'static str,
    /// What failed and where, e.g. `/proc/1/net/dev: line 3: expected 16 fields, found 4`.
    pub message: String,
}

/// Reads the kernel once per call; runs on a blocking thread.
pub trait Scraper: Send + 'static {
    fn scrape(&mut self) -> Collection;
    /// [`scrape`](Self::scrape), handing finished parts of the collection to `send` while
    /// the rest is still being read, so that a collection of tens of thousands of flow
    /// points is never held whole. A part holds whole resources: consumers may sum one
    /// namespace's points per batch. The returned collection carries the rest.
    fn scrape_in_parts(&mut self, send: &mut dyn FnMut(Metrics)) -> Collection {
        let _ = send;
        self.scrape()
    }
    /// Whether to collect even when nothing consumes the metrics (the collection also
    /// keeps kernel state or self-metrics up to date).
    fn needs_ticks_without_consumer(&self) -> bool {
        false
    }
}

/// Runs `scraper` every `interval` until the component is told to stop.
pub async fn run_scraper<S: Scraper>(mut scraper: S, interval: Duration, ctx: ComponentContext, outputs: Outputs) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_errors: Vec<CollectionError> = Vec::new();
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let wanted = outputs.wants(Signal::Metrics);
        if !wanted && !scraper.needs_ticks_without_consumer() {
            continue;
        }
        let started = Instant::now();
        let (parts_out, handle, stop) = (outputs.clone(), tokio::runtime::Handle::current(), ctx.shutdown.clone());
        let (returned, collection, parts) = match tokio::task::spawn_blocking(move || {
            let mut parts = 0usize;
            let mut send = |m: Metrics| {
                if wanted && !m.resources().is_empty() {
                    parts += 1;
                    // A blocking thread, not an async one: it may wait for the consumers.
                    handle.block_on(async {
                        tokio::select! {
                            _ = stop.cancelled() => {}
                            _ = parts_out.send(PData::Metrics(m)) => {}
                        }
                    });
                }
            };
            let c = scraper.scrape_in_parts(&mut send);
            (scraper, c, parts)
        })
        .await
        {
            Ok(r) => r,
            Err(e) => {
                ctx.status.failed(format!("collection panicked: {e}"));
                tracing::error!(component = %ctx.id, "collection panicked: {e}");
                return;
            }
        };
        scraper = returned;
        ctx.telemetry.collection_duration(started.elapsed().as_secs_f64());
        for e in &collection.errors {
            ctx.telemetry.collection_error(e.class);
        }
        for (probe, reason) in &collection.unsupported {
            tracing::warn!(component = %ctx.id, probe, "unsupported on this kernel: {reason}");
            ctx.status.probe_unsupported(probe, reason);
        }
        // Log a change in the error set, not the same error every interval.
        if collection.errors != last_errors {
            for e in &collection.errors {
                tracing::warn!(component = %ctx.id, "collection error: {}", e.message);
            }
            last_errors = collection.errors.clone();
        }
        if parts == 0 && collection.metrics.resources().is_empty() && !collection.errors.is_empty() {
            ctx.status.failed(format!("nothing could be collected: {}", collection.errors[0].message));
        } else if matches!(ctx.status.state(), Some(crate::status::State::Failed(_))) {
            ctx.status.running();
        }
        if wanted && !collection.metrics.resources().is_empty() {
            tokio::select! {
                _ = ctx.shutdown.cancelled() => return,
                _ = outputs.send(PData::Metrics(collection.metrics)) => {}
            }
        }
    }
}
