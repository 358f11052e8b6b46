//! What every component is doing right now, for `/status`, `/readyz` and the
//! `podnet_component_up` gauge.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use crate::id::{ComponentId, Kind};
use crate::pdata::now_unix_nanos;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "lowercase")]
pub enum State {
    Starting,
    Running,
    /// The component could not do its job; the reason says why and what to do.
    Failed(String),
    /// The kernel lacks what the component needs (a hook, BTF); everything else runs.
    Unsupported(String),
}

impl State {
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running => "running",
            State::Failed(_) => "failed",
            State::Unsupported(_) => "unsupported",
        }
    }
    pub fn is_up(&self) -> bool {
        matches!(self, State::Running | State::Starting)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ComponentStatus {
    pub kind: Kind,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    #[serde(flatten)]
    pub state: State,
    pub since_unix_nano: u64,
    /// Probes of this component the kernel cannot serve, with why; the others run.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub unsupported_probes: BTreeMap<String, String>,
    /// Running probes that cannot see everything on this kernel, with what they miss.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub probe_limits: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReloadRecord {
    pub at_unix_nano: u64,
    /// `success`, `rejected` (invalid config, nothing changed) or `rolled_back`.
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Default)]
struct Inner {
    components: BTreeMap<(Kind, String, Option<String>), ComponentStatus>,
    ready: bool,
    reloads: u64,
    last_reload: Option<ReloadRecord>,
    config_source: String,
    time_boxed: Vec<TimeBoxed>,
}

/// A probe switched on for a while through the control socket.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimeBoxed {
    /// `receiver/probe`, e.g. `ebpf/socketlatency`.
    pub probe: String,
    /// Who asked: the control socket peer's uid and pid.
    pub asked_by: String,
    pub until_unix_nano: u64,
}

#[derive(Default)]
pub struct StatusRegistry {
    inner: Mutex<Inner>,
}

/// The JSON served on `/status`.
#[derive(Serialize)]
pub struct StatusReport {
    pub version: &'static str,
    pub ready: bool,
    pub config_source: String,
    pub reloads: u64,
    pub last_reload: Option<ReloadRecord>,
    pub components: Vec<ComponentStatus>,
    /// Probes on for a bounded time (`podnet events --enable`), off by themselves after.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub time_boxed: Vec<TimeBoxed>,
}

/// What replaces detail on `/status` for a caller not on the node.
pub const DETAIL_HIDDEN: &str = "hidden: ask from the node itself (loopback) for the detail";

impl StatusReport {
    /// The report without what may say too much to someone on the network: the config's
    /// source, error texts and reasons (paths, endpoints, the content that failed to parse).
    /// States, readiness and counts stay.
    pub fn without_detail(mut self) -> StatusReport {
        self.config_source = DETAIL_HIDDEN.into();
        if let Some(r) = &mut self.last_reload
            && r.error.is_some()
        {
            r.error = Some(DETAIL_HIDDEN.into());
        }
        for t in &mut self.time_boxed {
            t.asked_by = DETAIL_HIDDEN.into();
        }
        for c in &mut self.components {
            match &mut c.state {
                State::Failed(reason) | State::Unsupported(reason) => *reason = DETAIL_HIDDEN.into(),
                State::Starting | State::Running => {}
            }
            for reason in c.unsupported_probes.values_mut().chain(c.probe_limits.values_mut()) {
                *reason = DETAIL_HIDDEN.into();
            }
        }
        self
    }
}

impl StatusRegistry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere must not take /status down with it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn handle(self: &Arc<Self>, kind: Kind, id: &ComponentId, pipeline: Option<&str>) -> StatusHandle {
        let handle = StatusHandle { registry: self.clone(), key: (kind, id.to_string(), pipeline.map(str::to_string)) };
        handle.set(State::Starting);
        handle
    }

    pub fn snapshot(&self) -> Vec<ComponentStatus> {
        self.lock().components.values().cloned().collect()
    }

    pub fn report(&self) -> StatusReport {
        let inner = self.lock();
        StatusReport {
            version: env!("CARGO_PKG_VERSION"),
            ready: inner.ready,
            config_source: inner.config_source.clone(),
            reloads: inner.reloads,
            last_reload: inner.last_reload.clone(),
            components: inner.components.values().cloned().collect(),
            time_boxed: inner.time_boxed.clone(),
        }
    }

    pub fn set_time_boxed(&self, probes: Vec<TimeBoxed>) {
        self.lock().time_boxed = probes;
    }

    pub fn set_ready(&self, ready: bool) {
        self.lock().ready = ready;
    }
    pub fn is_ready(&self) -> bool {
        self.lock().ready
    }
    pub fn set_config_source(&self, source: &str) {
        self.lock().config_source = source.to_string();
    }

    pub fn record_reload(&self, result: &'static str, error: Option<String>) {
        let mut inner = self.lock();
        inner.reloads += 1;
        inner.last_reload = Some(ReloadRecord { at_unix_nano: now_unix_nanos(), result, error });
    }

    pub fn last_reload_ok(&self) -> Option<bool> {
        self.lock().last_reload.as_ref().map(|r| r.result == "success")
    }

    fn remove(&self, key: &(Kind, String, Option<String>)) {
        self.lock().components.remove(key);
    }
}

/// A component's handle on its own status line.
#[derive(Clone)]
pub struct StatusHandle {
    registry: Arc<StatusRegistry>,
    key: (Kind, String, Option<String>),
}

impl StatusHandle {
    pub fn set(&self, state: State) {
        let mut inner = self.registry.lock();
        let entry = inner.components.entry(self.key.clone()).or_insert_with(|| ComponentStatus {
            kind: self.key.0,
            id: self.key.1.clone(),
            pipeline: self.key.2.clone(),
            state: state.clone(),
            since_unix_nano: now_unix_nanos(),
            unsupported_probes: BTreeMap::new(),
            probe_limits: BTreeMap::new(),
        });
        if entry.state != state {
            entry.state = state;
            entry.since_unix_nano = now_unix_nanos();
        }
    }
    pub fn running(&self) {
        self.set(State::Running)
    }
    pub fn failed(&self, reason: impl Into<String>) {
        self.set(State::Failed(reason.into()))
    }
    pub fn unsupported(&self, reason: impl Into<String>) {
        self.set(State::Unsupported(reason.into()))
    }
    pub fn state(&self) -> Option<State> {
        self.registry.lock().components.get(&self.key).map(|c| c.state.clone())
    }
    /// Marks one probe of the component unsupported on this kernel.
    pub fn probe_unsupported(&self, probe: &str, reason: &str) {
        let mut inner = self.registry.lock();
        if let Some(c) = inner.components.get_mut(&self.key) {
            c.unsupported_probes.insert(probe.to_string(), reason.to_string());
        }
    }

    /// Records what a running probe cannot see on this kernel (several limits are joined).
    pub fn probe_limited(&self, probe: &str, limit: &str) {
        let mut inner = self.registry.lock();
        if let Some(c) = inner.components.get_mut(&self.key) {
            let entry = c.probe_limits.entry(probe.to_string()).or_default();
            if !entry.is_empty() {
                entry.push_str("; ");
            }
            entry.push_str(limit);
        }
    }

    /// Removes the line: the component was stopped by a reload.
    pub fn remove(&self) {
        self.registry.remove(&self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_detail_keeps_states_and_hides_reasons_and_sources() {
        let report = StatusReport {
            version: "0",
            ready: true,
            config_source: "/etc/podnet/secret-path.yaml".into(),
            reloads: 2,
            last_reload: Some(ReloadRecord { at_unix_nano: 1, result: "rejected", error: Some("line 3: password: hunter2".into()) }),
            time_boxed: vec![TimeBoxed { probe: "ebpf/softirq".into(), asked_by: "uid 0 pid 7".into(), until_unix_nano: 9 }],
            components: vec![ComponentStatus {
                kind: Kind::Exporter,
                id: "otlp".into(),
                pipeline: None,
                state: State::Failed("cannot reach http://user:pw@collector:4317".into()),
                since_unix_nano: 1,
                unsupported_probes: BTreeMap::from([("ipvs".to_string(), "no /proc/net/ip_vs_stats".to_string())]),
                probe_limits: BTreeMap::from([("tcpreset".to_string(), "no enum sk_rst_reason".to_string())]),
            }],
        };
        let text = serde_json::to_string(&report.without_detail()).unwrap();
        for secret in ["secret-path", "hunter2", "user:pw", "ip_vs_stats", "sk_rst_reason"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(text.contains("\"state\":\"failed\"") && text.contains("\"ready\":true") && text.contains("\"reloads\":2"), "{text}");
    }
}
