//! Durations as configs write them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A duration written with a unit: `15s`, `500ms`, `5m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigDuration(pub std::time::Duration);

impl ConfigDuration {
    pub const fn from_secs(s: u64) -> Self {
        ConfigDuration(std::time::Duration::from_secs(s))
    }
    pub const fn from_millis(ms: u64) -> Self {
        ConfigDuration(std::time::Duration::from_millis(ms))
    }
}

impl Serialize for ConfigDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ConfigDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration with a unit, like \"15s\"")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ConfigDuration, E> {
                humantime::parse_duration(s.trim())
                    .map(ConfigDuration)
                    .map_err(|_| E::custom(format!("invalid duration \"{s}\" (write a number and a unit: 500ms, 15s, 5m, 1h)")))
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<ConfigDuration, E> {
                Err(E::custom(format!("invalid duration {n}: add a unit, like \"{n}s\"")))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<ConfigDuration, E> {
                Err(E::custom(format!("invalid duration {n}: add a unit, like \"{n}s\"")))
            }
            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<ConfigDuration, E> {
                Err(E::custom(format!("invalid duration {n}: add a unit, like \"{n}s\"")))
            }
        }
        d.deserialize_any(V)
    }
}
