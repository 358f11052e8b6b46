//! The channels between components. A component's [`Outputs`] hold, per signal, the inputs
//! of whatever follows it in each pipeline; a reload swaps those lists in place, so a
//! receiver that did not change keeps running while its consumers are replaced.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::pdata::{PData, Signal};
use crate::telemetry::ComponentTelemetry;

/// Batches a component may have queued at its input before its producers wait.
pub const INPUT_CAPACITY: usize = 64;

/// A consumer's input as its producers see it.
#[derive(Clone, Debug)]
pub struct Destination {
    /// `exporter/prometheus` or `processor/filter@metrics`, for logs and tests.
    pub name: String,
    pub sender: mpsc::Sender<PData>,
}

#[derive(Clone)]
pub struct Outputs {
    metrics: Arc<ArcSwap<Vec<Destination>>>,
    logs: Arc<ArcSwap<Vec<Destination>>>,
    telemetry: ComponentTelemetry,
}

impl Outputs {
    pub fn new(telemetry: ComponentTelemetry) -> Self {
        Outputs { metrics: Default::default(), logs: Default::default(), telemetry }
    }

    fn slot(&self, signal: Signal) -> &ArcSwap<Vec<Destination>> {
        match signal {
            Signal::Metrics => &self.metrics,
            Signal::Logs => &self.logs,
        }
    }

    pub(crate) fn set(&self, signal: Signal, destinations: Vec<Destination>) {
        self.slot(signal).store(Arc::new(destinations));
    }

    pub fn destinations(&self, signal: Signal) -> Vec<String> {
        self.slot(signal).load().iter().map(|d| d.name.clone()).collect()
    }

    /// Whether anything consumes `signal`: a receiver skips work nobody reads.
    pub fn wants(&self, signal: Signal) -> bool {
        !self.slot(signal).load().is_empty()
    }

    /// Sends to every consumer of the data's signal. Waits when a consumer is busy (its
    /// input is full) rather than dropping: the producer then collects less often, and
    /// cumulative counters lose nothing. A consumer that is gone (stopped by a reload a
    /// moment ago) is counted as a drop.
    pub async fn send(&self, data: PData) {
        let signal = data.signal();
        let items = data.item_count();
        let destinations = self.slot(signal).load_full();
        if destinations.is_empty() {
            self.telemetry.dropped(signal, items, "no_consumer");
            return;
        }
        let mut delivered = false;
        // The last destination takes the data itself: a processor that changes a batch it
        // holds alone changes it in place, where a copy still held here would make it clone
        // the whole batch (tens of megabytes of flow points).
        let mut data = Some(data);
        for (i, d) in destinations.iter().enumerate() {
            let Some(item) = (if i + 1 == destinations.len() { data.take() } else { data.clone() }) else { break };
            if d.sender.send(item).await.is_ok() {
                delivered = true;
            } else {
                tracing::debug!(destination = %d.name, "consumer stopped; data for it dropped");
                self.telemetry.dropped(signal, items, "consumer_stopped");
            }
        }
        if delivered {
            self.telemetry.sent(signal, items);
        }
    }
}

/// A component's input: counts what it receives.
pub struct Input {
    rx: mpsc::Receiver<PData>,
    telemetry: ComponentTelemetry,
}

impl Input {
    pub(crate) fn new(rx: mpsc::Receiver<PData>, telemetry: ComponentTelemetry) -> Self {
        Input { rx, telemetry }
    }

    /// The next batch; `None` once every producer is gone.
    pub async fn recv(&mut self) -> Option<PData> {
        let data = self.rx.recv().await?;
        self.telemetry.received(data.signal(), data.item_count());
        Some(data)
    }

    /// The next batch until `shutdown`; after it, only what is already queued, so a
    /// component drains its input and then stops. `None` ends the component's loop:
    /// `while let Some(data) = input.next(&ctx.shutdown).await { … }`.
    pub async fn next(&mut self, shutdown: &CancellationToken) -> Option<PData> {
        if !shutdown.is_cancelled() {
            tokio::select! {
                data = self.recv() => return data,
                _ = shutdown.cancelled() => {}
            }
        }
        self.try_recv()
    }

    /// A batch already queued, without waiting.
    pub fn try_recv(&mut self) -> Option<PData> {
        let data = self.rx.try_recv().ok()?;
        self.telemetry.received(data.signal(), data.item_count());
        Some(data)
    }
}

/// A new input channel: the sender goes to producers, the [`Input`] to the consumer.
pub(crate) fn channel(telemetry: ComponentTelemetry) -> (mpsc::Sender<PData>, Input) {
    let (tx, rx) = mpsc::channel(INPUT_CAPACITY);
    (tx, Input::new(rx, telemetry))
}
