//! The on-node investigation workflow: the agent's control socket (`server`), the probes it
//! switches on for a while (`TimeBoxes`, applied through the config overlay and the same
//! reload path as a config change), and the tools that use it (`client`: `podnet events`,
//! `podnet top`).

pub mod client;
pub mod overlay;
pub mod protocol;
pub mod server;
pub mod top;

use std::sync::{Arc, Mutex};

use podnet_pipeline::pdata::now_unix_nanos;
use podnet_pipeline::service::Overlay;
use podnet_pipeline::status::TimeBoxed;

pub use overlay::Boxed;

/// Probes switched on until a deadline; never written anywhere, so an agent restart ends
/// them all.
#[derive(Clone, Default)]
pub struct TimeBoxes {
    boxed: Arc<Mutex<Vec<Boxed>>>,
}

impl TimeBoxes {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Boxed>> {
        self.boxed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The config overlay: the control exporter everywhere, and the boxed probes.
    pub fn overlay(&self) -> Overlay {
        let me = self.clone();
        Arc::new(move |text: &str| overlay::apply(text, &me.lock()))
    }

    pub fn status(&self) -> Vec<TimeBoxed> {
        self.lock()
            .iter()
            .map(|b| TimeBoxed { probe: format!("ebpf/{}", b.probe), asked_by: b.asked_by.clone(), until_unix_nano: b.until_unix_nano })
            .collect()
    }

    /// Adds or moves the deadline of `probe`; the previous state, to restore if the reload
    /// fails. Another asker's probe is moved only with `extend`.
    pub fn put(&self, b: Boxed, extend: bool) -> Result<Option<Boxed>, String> {
        let mut boxed = self.lock();
        match boxed.iter_mut().find(|x| x.probe == b.probe) {
            Some(x) if x.asked_by != b.asked_by && !extend => Err(format!(
                "ebpf/{} is already on until {} (asked by {}); say --extend to move its deadline",
                x.probe,
                rfc3339(x.until_unix_nano),
                x.asked_by
            )),
            Some(x) => Ok(Some(std::mem::replace(x, b))),
            None => {
                boxed.push(b);
                Ok(None)
            }
        }
    }

    /// Puts back what `put` replaced (or removes what it added).
    pub fn restore(&self, probe: &str, previous: Option<Boxed>) {
        let mut boxed = self.lock();
        boxed.retain(|x| x.probe != probe);
        boxed.extend(previous);
    }

    /// The earliest deadline, if any.
    pub fn next_deadline(&self) -> Option<u64> {
        self.lock().iter().map(|b| b.until_unix_nano).min()
    }

    /// Removes the probes whose time is up.
    pub fn expire(&self) -> Vec<Boxed> {
        let now = now_unix_nanos();
        let mut boxed = self.lock();
        let (gone, kept): (Vec<Boxed>, Vec<Boxed>) = boxed.drain(..).partition(|b| b.until_unix_nano <= now);
        *boxed = kept;
        gone
    }
}

/// `2026-12-07T15:04:05Z` (UTC).
pub fn rfc3339(unix_nano: u64) -> String {
    podnet_pipeline::pdata::format_rfc3339(unix_nano / 1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_796_655_845_000_000_000), "2026-12-07T15:04:05Z");
    }

    fn boxed(probe: &str, who: &str, until: u64) -> Boxed {
        Boxed { probe: probe.into(), args: serde_json::Value::Null, until_unix_nano: until, asked_by: who.into() }
    }

    #[test]
    fn another_askers_probe_moves_only_when_told() {
        let t = TimeBoxes::default();
        assert_eq!(t.put(boxed("softirq", "uid 0 pid 1", 10), false), Ok(None));
        let err = t.put(boxed("softirq", "uid 0 pid 2", 20), false).unwrap_err();
        assert!(err.contains("already on until") && err.contains("uid 0 pid 1") && err.contains("--extend"), "{err}");
        assert!(t.put(boxed("softirq", "uid 0 pid 2", 20), true).unwrap().is_some());
        assert_eq!(t.next_deadline(), Some(20));
        assert_eq!(t.put(boxed("softirq", "uid 0 pid 2", 30), false).unwrap().map(|b| b.until_unix_nano), Some(20), "its own probe, moved");
        assert_eq!(t.expire().len(), 1, "30 ns after the epoch is long past");
        assert!(t.status().is_empty());
    }

    #[test]
    fn the_overlay_adds_the_control_exporter_and_boxed_probes() {
        let text = "receivers:\n  procfs:\n    probes: [netdev]\nexporters:\n  prometheus: {}\nservice:\n  extensions: []\n  pipelines:\n    metrics:\n      receivers: [procfs]\n      exporters: [prometheus]\n";
        let out = overlay::apply(text, &[]).unwrap();
        let v: serde_norway::Value = serde_norway::from_str(&out).unwrap();
        assert!(v["exporters"]["control"].is_mapping(), "{out}");
        assert_eq!(v["service"]["pipelines"]["metrics"]["exporters"][1].as_str(), Some("control"), "{out}");
        assert!(v["service"]["extensions"].is_sequence(), "other service keys kept: {out}");
        let b = boxed("socketlatency", "uid 0 pid 1", u64::MAX);
        let out = overlay::apply(text, &[b]).unwrap();
        let v: serde_norway::Value = serde_norway::from_str(&out).unwrap();
        assert!(v["receivers"]["ebpf"]["probes"].as_mapping().unwrap().contains_key("socketlatency"), "{out}");
        assert_eq!(v["service"]["pipelines"]["logs/podnet-control"]["receivers"][0].as_str(), Some("ebpf"), "{out}");
        assert_eq!(v["service"]["pipelines"]["metrics/podnet-control"]["exporters"][0].as_str(), Some("control"), "{out}");
    }
}
