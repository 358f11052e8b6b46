//! From the document to a resolved config: each component's typed config through its
//! factory, then the Collector's structural checks (references, signals, unused parts).

use std::collections::{BTreeMap, BTreeSet};

use figment::value::Value;

use super::document::{RawConfig, RawPipeline};
use super::{ConfigError, PipelineConfig, ResolvedComponent, ResolvedConfig};
use crate::component::Registry;
use crate::id::{ComponentId, Kind};
use crate::pdata::Signal;

pub(super) fn resolve(raw: RawConfig, source: &str, registry: &Registry) -> Result<ResolvedConfig, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    if !raw.connectors.is_empty() {
        errors.push(ConfigError::at("connectors", "podnet has no connectors; route data with pipelines instead"));
    }
    let components = components(&raw, registry, &mut errors, &mut warnings);
    let service = raw.service.unwrap_or_default();
    if service.pipelines.is_empty() {
        errors.push(ConfigError::top("service must have at least one pipeline (add service::pipelines)"));
    }
    let mut extensions = Vec::new();
    for ext in &service.extensions {
        match check_reference(&raw.extensions, Kind::Extension, ext, "service::extensions") {
            Ok(id) => extensions.push(id),
            Err(e) => errors.push(e),
        }
    }
    let sections = Sections { receivers: &raw.receivers, processors: &raw.processors, exporters: &raw.exporters };
    let mut used: BTreeSet<(Kind, String)> = BTreeSet::new();
    let mut pipelines = BTreeMap::new();
    for (pipeline_id, p) in &service.pipelines {
        if let Some(pipeline) = pipeline(pipeline_id, p, &sections, &components, &mut used, &mut errors) {
            pipelines.insert(pipeline_id.clone(), pipeline);
        }
    }
    warnings.extend(unused(&components, &used, &extensions));
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(ResolvedConfig {
        source: source.to_string(),
        components,
        pipelines,
        extensions,
        telemetry: service.telemetry,
        warnings,
        env_values: Vec::new(),
    })
}

type Components = BTreeMap<(Kind, ComponentId), ResolvedComponent>;

/// Every configured component through its factory: id syntax, known type (or deprecated
/// alias), typed config and the factory's own checks.
fn components(raw: &RawConfig, registry: &Registry, errors: &mut Vec<ConfigError>, warnings: &mut Vec<String>) -> Components {
    let mut components = BTreeMap::new();
    let sections = [
        (Kind::Receiver, &raw.receivers),
        (Kind::Processor, &raw.processors),
        (Kind::Exporter, &raw.exporters),
        (Kind::Extension, &raw.extensions),
    ];
    for (kind, section) in sections {
        for (id_text, value) in section {
            let path = format!("{}::{}", kind.section(), id_text);
            let id = match ComponentId::parse(id_text) {
                Ok(id) => id,
                Err(e) => {
                    errors.push(ConfigError::at(path, e));
                    continue;
                }
            };
            let Some((factory, via_alias)) = registry.lookup(kind, id.type_name()) else {
                let valid = registry.type_names(kind);
                let choices = if valid.is_empty() {
                    format!("no {} types are available", kind)
                } else {
                    format!("valid {} types: {}", kind, valid.join(", "))
                };
                errors.push(ConfigError::at(path, format!("unknown type \"{}\" ({choices})", id.type_name())));
                continue;
            };
            if via_alias {
                warnings.push(format!("{path}: \"{}\" is a deprecated name; use \"{}\"", id.type_name(), factory.info().type_name));
            }
            match factory.parse(value, &path) {
                Ok(config) => {
                    components.insert((kind, id), ResolvedComponent { factory, config });
                }
                Err(es) => errors.extend(es),
            }
        }
    }
    components
}

struct Sections<'a> {
    receivers: &'a BTreeMap<String, Value>,
    processors: &'a BTreeMap<String, Value>,
    exporters: &'a BTreeMap<String, Value>,
}

/// One pipeline: its signal from its id, and its references, each configured, listed once
/// and able to carry the signal. `None` when the id names no signal.
fn pipeline(
    pipeline_id: &str,
    p: &RawPipeline,
    sections: &Sections<'_>,
    components: &Components,
    used: &mut BTreeSet<(Kind, String)>,
    errors: &mut Vec<ConfigError>,
) -> Option<PipelineConfig> {
    let path = format!("service::pipelines::{pipeline_id}");
    let signal = match ComponentId::parse(pipeline_id) {
        Err(e) => {
            errors.push(ConfigError::at(&path, e));
            return None;
        }
        Ok(id) => match id.type_name() {
            "metrics" => Signal::Metrics,
            "logs" => Signal::Logs,
            other => {
                errors.push(ConfigError::at(&path, format!("unknown signal \"{other}\" (podnet pipelines carry metrics or logs)")));
                return None;
            }
        },
    };
    let mut references = |kind: Kind, list: &[String], section: &BTreeMap<String, Value>| -> Vec<ComponentId> {
        let mut ids = Vec::new();
        let mut seen = BTreeSet::new();
        for name in list {
            if !seen.insert(name.as_str()) {
                errors.push(ConfigError::at(&path, format!("references {kind} \"{name}\" multiple times")));
                continue;
            }
            used.insert((kind, name.clone()));
            match check_reference(section, kind, name, &path) {
                Ok(id) => {
                    if let Some(c) = components.get(&(kind, id.clone())) {
                        let info = c.factory.info();
                        if !info.signals.contains(&signal) {
                            errors.push(ConfigError::at(
                                &path,
                                format!("{kind} \"{name}\" does not support {signal} (it supports {})", join_signals(info.signals)),
                            ));
                        }
                    }
                    ids.push(id);
                }
                Err(e) => errors.push(e),
            }
        }
        ids
    };
    let receivers = references(Kind::Receiver, &p.receivers, sections.receivers);
    let processors = references(Kind::Processor, &p.processors, sections.processors);
    let exporters = references(Kind::Exporter, &p.exporters, sections.exporters);
    if p.receivers.is_empty() {
        errors.push(ConfigError::at(&path, "must have at least one receiver"));
    }
    if p.exporters.is_empty() {
        errors.push(ConfigError::at(&path, "must have at least one exporter"));
    }
    Some(PipelineConfig { signal, receivers, processors, exporters })
}

/// Components that will not run: in no pipeline, or extensions not listed in the service.
fn unused(components: &Components, used: &BTreeSet<(Kind, String)>, extensions: &[ComponentId]) -> Vec<String> {
    let mut warnings = Vec::new();
    for (kind, id) in components.keys() {
        if *kind != Kind::Extension && !used.contains(&(*kind, id.to_string())) {
            warnings.push(format!("{}::{id}: defined but not used in any pipeline; it will not run", kind.section()));
        }
    }
    for (kind, id) in components.keys() {
        if *kind == Kind::Extension && !extensions.contains(id) {
            warnings.push(format!("extensions::{id}: defined but not listed in service::extensions; it will not run"));
        }
    }
    warnings
}

fn join_signals(signals: &[Signal]) -> String {
    signals.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" and ")
}

fn check_reference(section: &BTreeMap<String, Value>, kind: Kind, name: &str, path: &str) -> Result<ComponentId, ConfigError> {
    if !section.contains_key(name) {
        return Err(ConfigError::at(path, format!("references {kind} \"{name}\" which is not configured")));
    }
    ComponentId::parse(name).map_err(|e| ConfigError::at(path, e))
}
