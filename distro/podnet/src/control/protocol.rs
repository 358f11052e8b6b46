//! The control socket's protocol: one JSON request per line from the client, JSON lines
//! back (one answer, or a stream of events).

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// The agent's /status report (with its detail: the socket is root's alone).
    Status,
    /// Every pod's latest counters.
    Pods,
    /// Kept events at or after `since_unix_nano` that match, then (with `follow`) new ones.
    Events {
        #[serde(default)]
        since_unix_nano: u64,
        #[serde(default)]
        follow: bool,
        #[serde(default)]
        filter: Filter,
    },
    /// Switch an `ebpf` probe on for `seconds`.
    Enable {
        probe: String,
        #[serde(default)]
        args: serde_json::Value,
        seconds: u64,
        /// Move the deadline of a probe someone else switched on.
        #[serde(default)]
        extend: bool,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    pub pod: Option<String>,
    pub namespace: Option<String>,
    /// Event type (`TCPRESET_NOSOCK`, `PacketLoss`, …); a trailing `*` matches a prefix.
    pub r#type: Option<String>,
}

impl Filter {
    pub fn matches(&self, e: &podnet_exporter_control::Event) -> bool {
        let type_ok = match self.r#type.as_deref() {
            None => true,
            Some(t) => match t.strip_suffix('*') {
                Some(prefix) => e.kind.starts_with(prefix),
                None => e.kind == t,
            },
        };
        type_ok && self.pod.as_ref().is_none_or(|p| *p == e.pod) && self.namespace.as_ref().is_none_or(|n| *n == e.namespace)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Answer {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<Vec<podnet_exporter_control::PodCounters>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<podnet_exporter_control::Event>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_unix_nano: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_unix_nano: Option<u64>,
}

impl Answer {
    pub fn ok() -> Answer {
        Answer { ok: true, error: None, status: None, pods: None, event: None, until_unix_nano: None, time_unix_nano: None }
    }
    pub fn error(e: impl Into<String>) -> Answer {
        Answer { ok: false, error: Some(e.into()), ..Answer::ok() }
    }
}

/// The default socket path (`--control-socket` / `PODNET_CONTROL_SOCKET` change it).
pub const DEFAULT_SOCKET: &str = "/run/podnet/control.sock";
