//! One component's config from its YAML value, with figment's errors turned into
//! path-named messages.

use figment::error::Kind as FigKind;
use figment::value::{Dict, Value};
use serde::de::DeserializeOwned;

use super::{ConfigError, ENV_OVERRIDE_PREFIX};

/// Deserializes one component's config; a missing or empty value means "all defaults".
pub fn deserialize_component<T: DeserializeOwned>(value: &Value, path: &str) -> Result<T, Vec<ConfigError>> {
    let empty;
    let value = match value {
        Value::Empty(..) => {
            empty = Value::from(Dict::new());
            &empty
        }
        v => v,
    };
    value.deserialize::<T>().map_err(|e| figment_errors(e, path))
}

/// Turns figment's errors into path-named messages.
pub(super) fn figment_errors(err: figment::Error, base: &str) -> Vec<ConfigError> {
    err.into_iter()
        .map(|e| {
            let from_env = e.metadata.as_ref().is_some_and(|m| m.name.contains("environment"));
            let mut segments: Vec<String> = if base.is_empty() { Vec::new() } else { vec![base.to_string()] };
            segments.extend(e.path.iter().cloned());
            let (segments, message) = match &e.kind {
                FigKind::UnknownField(field, expected) => {
                    let valid = if expected.is_empty() {
                        "this section takes no keys".to_string()
                    } else {
                        format!("valid keys: {}", expected.join(", "))
                    };
                    // figment puts the offending key at the end of the path; name the section instead.
                    let mut seg = segments.clone();
                    if seg.last() == Some(field) {
                        seg.pop();
                    }
                    (seg, format!("unknown key \"{field}\" ({valid})"))
                }
                FigKind::MissingField(field) => (segments, format!("missing required key \"{field}\"")),
                FigKind::UnknownVariant(v, expected) => {
                    (segments, format!("unknown value \"{v}\" (valid values: {})", expected.join(", ")))
                }
                FigKind::InvalidType(actual, expected) => (segments, format!("invalid type: found {actual}, expected {expected}")),
                FigKind::InvalidValue(actual, expected) => (segments, format!("invalid value: found {actual}, expected {expected}")),
                FigKind::Message(m) => (segments, m.clone()),
                other => (segments, other.to_string()),
            };
            let message = if from_env { format!("{message} (set by environment variable {ENV_OVERRIDE_PREFIX}…)") } else { message };
            ConfigError::at(segments.join("::"), message)
        })
        .collect()
}
