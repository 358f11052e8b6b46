//! A config that passed every check: what the topology builds from, and how it prints.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::TelemetryConfig;
use crate::component::{ComponentConfig, DynFactory};
use crate::id::{ComponentId, Kind};
use crate::pdata::Signal;

/// A component as configured: its factory and typed config.
#[derive(Clone)]
pub struct ResolvedComponent {
    pub factory: Arc<dyn DynFactory>,
    pub config: Arc<dyn ComponentConfig>,
}

impl fmt::Debug for ResolvedComponent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvedComponent").field("type", &self.factory.info().type_name).field("config", &self.config).finish()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelineConfig {
    pub signal: Signal,
    pub receivers: Vec<ComponentId>,
    pub processors: Vec<ComponentId>,
    pub exporters: Vec<ComponentId>,
}

/// A config that passed every check, ready for the topology.
#[derive(Clone, Debug)]
pub struct ResolvedConfig {
    pub source: String,
    pub components: BTreeMap<(Kind, ComponentId), ResolvedComponent>,
    pub pipelines: BTreeMap<String, PipelineConfig>,
    pub extensions: Vec<ComponentId>,
    pub telemetry: TelemetryConfig,
    /// Non-fatal findings: unused components, deprecated names, unset variables.
    pub warnings: Vec<String>,
    /// (variable, value) of what the environment put into the config (`${env:…}` and
    /// `PODNET_CFG_…`): [`ResolvedConfig::to_yaml_redacted`] hides these values.
    pub env_values: Vec<(String, String)>,
}

impl ResolvedConfig {
    pub fn component(&self, kind: Kind, id: &ComponentId) -> Option<&ResolvedComponent> {
        self.components.get(&(kind, id.clone()))
    }

    /// The effective config (defaults applied, env expanded) as YAML.
    /// The effective config as YAML, secrets included.
    pub fn to_yaml(&self) -> String {
        serde_norway::to_string(&self.tree()).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    /// The effective config as YAML for people to read and paste: values of keys that name
    /// secrets (passwords, tokens, Authorization headers) become `<redacted>`, and what came
    /// from the environment is shown as its `${env:NAME}` reference.
    pub fn to_yaml_redacted(&self) -> String {
        let mut env: Vec<&(String, String)> = self.env_values.iter().filter(|(_, v)| !v.is_empty()).collect();
        // Longest first, so a value inside another is not replaced within it first.
        env.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
        let mut tree = serde_json::Value::Object(self.tree());
        redact(&mut tree, &env);
        serde_norway::to_string(&tree).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    fn tree(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut root = serde_json::Map::new();
        for kind in Kind::ALL {
            let section: serde_json::Map<_, _> =
                self.components.iter().filter(|((k, _), _)| *k == kind).map(|((_, id), c)| (id.to_string(), c.config.to_json())).collect();
            if !section.is_empty() {
                root.insert(kind.section().to_string(), serde_json::Value::Object(section));
            }
        }
        let pipelines: serde_json::Map<_, _> = self
            .pipelines
            .iter()
            .map(|(id, p)| {
                let ids = |v: &[ComponentId]| serde_json::Value::from(v.iter().map(ToString::to_string).collect::<Vec<_>>());
                (
                    id.clone(),
                    serde_json::json!({"receivers": ids(&p.receivers), "processors": ids(&p.processors), "exporters": ids(&p.exporters)}),
                )
            })
            .collect();
        let mut service = serde_json::Map::new();
        if !self.extensions.is_empty() {
            service.insert("extensions".into(), self.extensions.iter().map(ToString::to_string).collect::<Vec<_>>().into());
        }
        service.insert("pipelines".into(), serde_json::Value::Object(pipelines));
        service.insert("telemetry".into(), serde_json::to_value(&self.telemetry).unwrap_or_default());
        root.insert("service".into(), serde_json::Value::Object(service));
        root
    }
}

/// A key whose value is a secret itself (not a path to one: `password_file` is fine).
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    !k.ends_with("_file")
        && (k.contains("password")
            || k.contains("token")
            || k.contains("secret")
            || k == "authorization"
            || k.contains("api_key")
            || k == "apikey")
}

fn redact(v: &mut serde_json::Value, env: &[&(String, String)]) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, x) in map.iter_mut() {
                match x {
                    serde_json::Value::String(s) if is_secret_key(k) && !s.is_empty() => *s = "<redacted>".into(),
                    _ => redact(x, env),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|x| redact(x, env)),
        serde_json::Value::String(s) => {
            for (name, value) in env {
                if s == value {
                    *s = format!("${{env:{name}}}");
                    return;
                }
                // Inside a longer string only when the value is long enough not to match by chance.
                if value.len() >= 6 && s.contains(value.as_str()) {
                    *s = s.replace(value.as_str(), &format!("${{env:{name}}}"));
                }
            }
        }
        _ => {}
    }
}
