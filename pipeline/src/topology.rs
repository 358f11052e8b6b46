//! Running components and the wires between them.
//!
//! Startup and reload take the same path (as in Vector): [`Topology::apply`] compares the
//! wanted config with what runs, stops the components that changed or went away, builds
//! the new ones and rewires every output. A component whose own config and type did not
//! change keeps running and keeps its state (a receiver's counters, an exporter's series).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::component::{BuildError, ComponentContext, ComponentId, Created, Kind};
use crate::config::{ResolvedComponent, ResolvedConfig};
use crate::fanout::{self, Destination, Outputs};
use crate::host::Host;
use crate::pdata::{PData, Signal};
use crate::status::{State, StatusHandle};

/// How long a stopping component may take to flush before it is aborted.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running component. Processors exist once per pipeline, as in the Collector.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeKey {
    Receiver(ComponentId),
    Processor { pipeline: String, id: ComponentId },
    Exporter(ComponentId),
    Extension(ComponentId),
}

impl NodeKey {
    fn kind(&self) -> Kind {
        match self {
            NodeKey::Receiver(_) => Kind::Receiver,
            NodeKey::Processor { .. } => Kind::Processor,
            NodeKey::Exporter(_) => Kind::Exporter,
            NodeKey::Extension(_) => Kind::Extension,
        }
    }
    fn id(&self) -> &ComponentId {
        match self {
            NodeKey::Receiver(id) | NodeKey::Exporter(id) | NodeKey::Extension(id) | NodeKey::Processor { id, .. } => id,
        }
    }
    fn pipeline(&self) -> Option<&str> {
        match self {
            NodeKey::Processor { pipeline, .. } => Some(pipeline),
            _ => None,
        }
    }
    /// Stop order: upstream first, so in-flight data reaches the exporters; extensions,
    /// which the others use, last. Builds go the other way.
    fn stage(&self) -> u8 {
        match self {
            NodeKey::Receiver(_) => 0,
            NodeKey::Processor { .. } => 1,
            NodeKey::Exporter(_) => 2,
            NodeKey::Extension(_) => 3,
        }
    }
}

impl std::fmt::Display for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeKey::Processor { pipeline, id } => write!(f, "processor/{id}@{pipeline}"),
            other => write!(f, "{}/{}", other.kind(), other.id()),
        }
    }
}

struct RunningNode {
    type_name: &'static str,
    config: serde_json::Value,
    cancel: CancellationToken,
    task: JoinHandle<()>,
    outputs: Option<Outputs>,
    input: Option<mpsc::Sender<PData>>,
    status: StatusHandle,
}

/// What one `apply` did, for logs and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub started: Vec<String>,
    pub stopped: Vec<String>,
    pub kept: Vec<String>,
}

pub struct Topology {
    host: Arc<Host>,
    nodes: BTreeMap<NodeKey, RunningNode>,
}

impl Topology {
    pub fn new(host: Arc<Host>) -> Self {
        Topology { host, nodes: BTreeMap::new() }
    }

    /// The nodes a config asks for, with their components.
    fn wanted(config: &ResolvedConfig) -> BTreeMap<NodeKey, ResolvedComponent> {
        let mut wanted = BTreeMap::new();
        for id in &config.extensions {
            if let Some(c) = config.component(Kind::Extension, id) {
                wanted.insert(NodeKey::Extension(id.clone()), c.clone());
            }
        }
        for (pipeline_id, p) in &config.pipelines {
            for id in &p.receivers {
                if let Some(c) = config.component(Kind::Receiver, id) {
                    wanted.insert(NodeKey::Receiver(id.clone()), c.clone());
                }
            }
            for id in &p.processors {
                if let Some(c) = config.component(Kind::Processor, id) {
                    wanted.insert(NodeKey::Processor { pipeline: pipeline_id.clone(), id: id.clone() }, c.clone());
                }
            }
            for id in &p.exporters {
                if let Some(c) = config.component(Kind::Exporter, id) {
                    wanted.insert(NodeKey::Exporter(id.clone()), c.clone());
                }
            }
        }
        wanted
    }

    /// Makes the running components match `config`. On a build error the components
    /// started by this call are stopped again and the error returned; the caller rolls
    /// back by applying the previous config.
    pub async fn apply(&mut self, config: &ResolvedConfig) -> Result<ApplyReport, BuildError> {
        let wanted = Self::wanted(config);
        let mut report = ApplyReport::default();

        // 1. Stop what changed or went away, upstream first.
        let mut to_stop: Vec<NodeKey> = self
            .nodes
            .iter()
            .filter(|(key, node)| match wanted.get(*key) {
                None => true,
                Some(c) => c.factory.info().type_name != node.type_name || c.config.to_json() != node.config,
            })
            .map(|(k, _)| k.clone())
            .collect();
        to_stop.sort_by_key(|k| k.stage());
        for key in to_stop {
            if let Some(node) = self.nodes.remove(&key) {
                self.stop(&key, node).await;
                report.stopped.push(key.to_string());
            }
        }
        report.kept = self.nodes.keys().map(ToString::to_string).collect();

        // 2. Build what is missing, downstream first so inputs exist before producers.
        let mut missing: Vec<(&NodeKey, &ResolvedComponent)> = wanted.iter().filter(|(k, _)| !self.nodes.contains_key(*k)).collect();
        missing.sort_by_key(|(k, _)| std::cmp::Reverse(k.stage()));
        let mut built: Vec<(NodeKey, Created, ComponentContext)> = Vec::new();
        for (key, component) in missing {
            let ctx = self.context(key);
            match component.factory.create(component.config.as_ref(), ctx.clone()) {
                Ok(created) => built.push((key.clone(), created, ctx)),
                Err(e) => {
                    ctx.status.remove();
                    for (_, _, ctx) in &built {
                        ctx.status.remove();
                    }
                    return Err(BuildError::new(format!("{}: cannot start: {}", key_path(key), e.0)));
                }
            }
        }

        // 3. Start consumers (exporters, processors) so they have inputs; receivers wait
        //    until every output is wired.
        let mut receivers = Vec::new();
        for (key, created, ctx) in built {
            let component = &wanted[&key];
            let config_json = component.config.to_json();
            let type_name = component.factory.info().type_name;
            match created {
                Created::Exporter(exporter) => {
                    let (tx, input) = fanout::channel(ctx.telemetry.clone());
                    let task = supervise(&ctx, exporter.run(input));
                    self.insert(key.clone(), type_name, config_json, &ctx, task, None, Some(tx));
                }
                Created::Processor(processor) => {
                    let (tx, input) = fanout::channel(ctx.telemetry.clone());
                    let outputs = Outputs::new(ctx.telemetry.clone());
                    let task = supervise(&ctx, processor.run(input, outputs.clone()));
                    self.insert(key.clone(), type_name, config_json, &ctx, task, Some(outputs), Some(tx));
                }
                Created::Extension(extension) => {
                    self.host.set_extension(&key.id().to_string(), extension.service());
                    let task = supervise(&ctx, extension.run());
                    self.insert(key.clone(), type_name, config_json, &ctx, task, None, None);
                }
                Created::Receiver(receiver) => receivers.push((key.clone(), receiver, ctx, type_name, config_json)),
            }
            report.started.push(key.to_string());
        }

        // 4. Wire processors, then start receivers with their outputs already in place.
        self.wire_processors(config);
        for (key, receiver, ctx, type_name, config_json) in receivers {
            let outputs = Outputs::new(ctx.telemetry.clone());
            self.wire_receiver(config, &key, &outputs);
            let task = supervise(&ctx, receiver.run(outputs.clone()));
            self.insert(key, type_name, config_json, &ctx, task, Some(outputs), None);
        }
        let kept_receivers: Vec<NodeKey> = self.nodes.keys().filter(|k| matches!(k, NodeKey::Receiver(_))).cloned().collect();
        for key in kept_receivers {
            if let Some(outputs) = self.nodes.get(&key).and_then(|n| n.outputs.clone()) {
                self.wire_receiver(config, &key, &outputs);
            }
        }
        report.started.sort();
        Ok(report)
    }

    /// Stops everything, upstream first.
    pub async fn shutdown(&mut self) {
        let mut keys: Vec<NodeKey> = self.nodes.keys().cloned().collect();
        keys.sort_by_key(|k| k.stage());
        for key in keys {
            if let Some(node) = self.nodes.remove(&key) {
                self.stop(&key, node).await;
            }
        }
    }

    /// Where each running node's outputs go, for tests and debugging.
    pub fn wiring(&self) -> BTreeMap<String, Vec<(Signal, Vec<String>)>> {
        self.nodes
            .iter()
            .filter_map(|(k, n)| {
                n.outputs.as_ref().map(|o| (k.to_string(), Signal::ALL.iter().map(|s| (*s, o.destinations(*s))).collect()))
            })
            .collect()
    }

    pub fn running(&self) -> Vec<String> {
        self.nodes.keys().map(ToString::to_string).collect()
    }

    async fn stop(&self, key: &NodeKey, node: RunningNode) {
        stop_node(key, node).await;
        if let NodeKey::Extension(id) = key {
            self.host.set_extension(&id.to_string(), None);
        }
    }

    fn context(&self, key: &NodeKey) -> ComponentContext {
        let (kind, id, pipeline) = (key.kind(), key.id(), key.pipeline());
        ComponentContext {
            id: id.clone(),
            kind,
            pipeline: pipeline.map(str::to_string),
            telemetry: self.host.telemetry.component(kind, id, pipeline),
            status: self.host.status.handle(kind, id, pipeline),
            host: self.host.clone(),
            shutdown: CancellationToken::new(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn insert(
        &mut self,
        key: NodeKey,
        type_name: &'static str,
        config: serde_json::Value,
        ctx: &ComponentContext,
        task: JoinHandle<()>,
        outputs: Option<Outputs>,
        input: Option<mpsc::Sender<PData>>,
    ) {
        let node = RunningNode { type_name, config, cancel: ctx.shutdown.clone(), task, outputs, input, status: ctx.status.clone() };
        self.nodes.insert(key, node);
    }

    fn input_of(&self, key: &NodeKey) -> Option<Destination> {
        self.nodes.get(key).and_then(|n| n.input.clone()).map(|sender| Destination { name: key.to_string(), sender })
    }

    /// The inputs a pipeline starts at: its first processor, or its exporters.
    fn pipeline_entry(&self, pipeline_id: &str, config: &ResolvedConfig) -> Vec<Destination> {
        let p = &config.pipelines[pipeline_id];
        match p.processors.first() {
            Some(first) => {
                self.input_of(&NodeKey::Processor { pipeline: pipeline_id.to_string(), id: first.clone() }).into_iter().collect()
            }
            None => self.exporter_inputs(&p.exporters),
        }
    }

    fn exporter_inputs(&self, exporters: &[ComponentId]) -> Vec<Destination> {
        exporters.iter().filter_map(|id| self.input_of(&NodeKey::Exporter(id.clone()))).collect()
    }

    fn wire_processors(&self, config: &ResolvedConfig) {
        for (pipeline_id, p) in &config.pipelines {
            for (i, id) in p.processors.iter().enumerate() {
                let key = NodeKey::Processor { pipeline: pipeline_id.clone(), id: id.clone() };
                let Some(outputs) = self.nodes.get(&key).and_then(|n| n.outputs.as_ref()) else { continue };
                let next = match p.processors.get(i + 1) {
                    Some(next) => {
                        self.input_of(&NodeKey::Processor { pipeline: pipeline_id.clone(), id: next.clone() }).into_iter().collect()
                    }
                    None => self.exporter_inputs(&p.exporters),
                };
                for signal in Signal::ALL {
                    outputs.set(signal, if signal == p.signal { next.clone() } else { Vec::new() });
                }
            }
        }
    }

    fn wire_receiver(&self, config: &ResolvedConfig, key: &NodeKey, outputs: &Outputs) {
        let NodeKey::Receiver(id) = key else { return };
        for signal in Signal::ALL {
            let destinations: Vec<Destination> = config
                .pipelines
                .iter()
                .filter(|(_, p)| p.signal == signal && p.receivers.contains(id))
                .flat_map(|(pipeline_id, _)| self.pipeline_entry(pipeline_id, config))
                .collect();
            outputs.set(signal, destinations);
        }
    }
}

fn key_path(key: &NodeKey) -> String {
    format!("{}::{}", key.kind().section(), key.id())
}

/// Runs a component and notices when it ends on its own (a panic or an early return),
/// so `/status` tells the truth.
fn supervise(ctx: &ComponentContext, run: crate::component::BoxFuture) -> JoinHandle<()> {
    let inner = tokio::spawn(run);
    let status = ctx.status.clone();
    let cancel = ctx.shutdown.clone();
    let name = format!("{}/{}", ctx.kind, ctx.id);
    status.running_unless_set();
    tokio::spawn(async move {
        match inner.await {
            Err(e) if e.is_panic() => {
                tracing::error!(component = %name, "component panicked; it stays stopped until the next reload");
                status.failed("panicked (see the log); it restarts on the next config reload");
            }
            _ if !cancel.is_cancelled() && status.state().is_some_and(|s| s.is_up()) => {
                tracing::error!(component = %name, "component stopped on its own");
                status.failed("stopped unexpectedly (see the log)");
            }
            _ => {}
        }
    })
}

async fn stop_node(key: &NodeKey, node: RunningNode) {
    node.cancel.cancel();
    let mut task = node.task;
    if tokio::time::timeout(STOP_TIMEOUT, &mut task).await.is_err() {
        tracing::warn!(component = %key, "did not stop within {:?}; aborting it", STOP_TIMEOUT);
        task.abort();
    }
    node.status.remove();
    tracing::debug!(component = %key, "stopped");
}

impl StatusHandle {
    /// Marks the component running unless it already reported a state of its own
    /// (e.g. `unsupported` found during creation).
    fn running_unless_set(&self) {
        if matches!(self.state(), None | Some(State::Starting)) {
            self.running();
        }
    }
}
