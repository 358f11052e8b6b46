//! Who a component is: its kind and its `type[/name]` id, with the Collector's rules. The
//! status registry, self-telemetry and config all name components by these.

use std::fmt;

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Receiver,
    Processor,
    Exporter,
    Extension,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Receiver, Kind::Processor, Kind::Exporter, Kind::Extension];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Receiver => "receiver",
            Kind::Processor => "processor",
            Kind::Exporter => "exporter",
            Kind::Extension => "extension",
        }
    }
    /// The config section holding components of this kind.
    pub fn section(self) -> &'static str {
        match self {
            Kind::Receiver => "receivers",
            Kind::Processor => "processors",
            Kind::Exporter => "exporters",
            Kind::Extension => "extensions",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `type` or `type/name`, with the Collector's syntax rules.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId {
    ty: String,
    name: Option<String>,
}

impl ComponentId {
    pub fn parse(id: &str) -> Result<ComponentId, String> {
        if id.trim().is_empty() {
            return Err("id must not be empty".to_string());
        }
        let (ty, name) = match id.split_once('/') {
            Some((t, n)) => (t, Some(n)),
            None => (id, None),
        };
        let valid_type = ty.len() <= 63
            && ty.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && ty.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_type {
            return Err(format!("invalid character(s) in type \"{ty}\""));
        }
        if let Some(n) = name {
            if n.is_empty() {
                return Err(format!("in \"{id}\" id: the part after / should not be empty"));
            }
            if n.chars().count() > 1024 {
                return Err(format!("name \"{n}\" is longer than 1024 characters"));
            }
            if n.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!("invalid character(s) in name \"{n}\""));
            }
        }
        Ok(ComponentId { ty: ty.to_string(), name: name.map(str::to_string) })
    }

    pub fn type_name(&self) -> &str {
        &self.ty
    }
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{}", self.ty, n),
            None => f.write_str(&self.ty),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_ids_follow_collector_rules() {
        assert_eq!(ComponentId::parse("procfs").unwrap().to_string(), "procfs");
        let id = ComponentId::parse("procfs/pods").unwrap();
        assert_eq!((id.type_name(), id.name()), ("procfs", Some("pods")));
        assert_eq!(ComponentId::parse("").unwrap_err(), "id must not be empty");
        assert_eq!(ComponentId::parse("otlp/").unwrap_err(), "in \"otlp/\" id: the part after / should not be empty");
        assert_eq!(ComponentId::parse("1x").unwrap_err(), "invalid character(s) in type \"1x\"");
        assert_eq!(ComponentId::parse("a-b").unwrap_err(), "invalid character(s) in type \"a-b\"");
        assert!(ComponentId::parse(&format!("x/{}", "n".repeat(1025))).unwrap_err().contains("longer than 1024"));
    }
}
