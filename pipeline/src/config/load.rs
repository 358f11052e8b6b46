//! Reading a config: its source, `${env:…}` expansion, YAML through figment with the
//! `PODNET_CFG_…` overrides, then resolution through the registry.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format};

use super::yaml::Yaml;

use super::deserialize::figment_errors;
use super::document::RawConfig;
use super::kubeskoop;
use super::resolve::resolve;
use super::{ConfigError, ConfigErrors, ENV_OVERRIDE_PREFIX, ResolvedConfig, expand_env};
use crate::component::Registry;

/// Where a config comes from.
#[derive(Clone, Debug)]
pub enum ConfigSource {
    File(PathBuf),
    /// The pipeline compiled into the binary (`configs/node.yaml`).
    Embedded {
        name: &'static str,
        text: &'static str,
    },
}

impl ConfigSource {
    pub fn describe(&self) -> String {
        match self {
            ConfigSource::File(p) => p.display().to_string(),
            ConfigSource::Embedded { name, .. } => format!("{name} (embedded)"),
        }
    }
    pub fn path(&self) -> Option<&Path> {
        match self {
            ConfigSource::File(p) => Some(p),
            ConfigSource::Embedded { .. } => None,
        }
    }
    pub fn read(&self) -> Result<String, ConfigErrors> {
        match self {
            ConfigSource::File(p) => std::fs::read_to_string(p).map_err(|e| ConfigErrors {
                origin: self.describe(),
                errors: vec![ConfigError::top(format!("cannot read the config file: {e}"))],
                notes: Vec::new(),
            }),
            ConfigSource::Embedded { text, .. } => Ok(text.to_string()),
        }
    }
}

/// Loads and checks a config: reads the source, expands `${env:…}`, applies
/// `PODNET_CFG_…` overrides and resolves every component through `registry`.
pub fn load(source: &ConfigSource, registry: &Registry) -> Result<ResolvedConfig, ConfigErrors> {
    load_with(source, registry, None)
}

/// [`load`], with `overlay` applied to the pipeline's text after KubeSkoop's conversion and
/// before `${env:…}` expansion.
pub fn load_with(source: &ConfigSource, registry: &Registry, overlay: Option<TextOverlay<'_>>) -> Result<ResolvedConfig, ConfigErrors> {
    let text = source.read()?;
    load_str_with(&text, &source.describe(), registry, |k| std::env::var(k).ok(), overlay)
}

/// [`load`] on text already read; `lookup` resolves `${env:…}` references.
pub fn load_str(
    text: &str,
    source: &str,
    registry: &Registry,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<ResolvedConfig, ConfigErrors> {
    load_str_with(text, source, registry, lookup, None)
}

/// Rewrites a podnet pipeline's text (KubeSkoop's config already converted, `${env:…}` not
/// yet expanded): the agent's own additions.
pub type TextOverlay<'a> = &'a (dyn Fn(&str) -> Result<String, String> + Send + Sync);

/// [`load_str`], with `overlay` applied to the pipeline's text first.
fn load_str_with(
    text: &str,
    source: &str,
    registry: &Registry,
    lookup: impl Fn(&str) -> Option<String>,
    overlay: Option<TextOverlay<'_>>,
) -> Result<ResolvedConfig, ConfigErrors> {
    let overrides: Vec<String> = std::env::vars().map(|(k, _)| k).filter(|k| k.starts_with(ENV_OVERRIDE_PREFIX)).collect();
    let notes = if overrides.is_empty() { Vec::new() } else { vec![format!("environment overrides in effect: {}", overrides.join(", "))] };
    let fail = |errors: Vec<ConfigError>| ConfigErrors { origin: source.to_string(), errors, notes: notes.clone() };
    // KubeSkoop's exporter config is read as the podnet pipeline it stands for.
    let (converted, mut conversion_warnings) = match kubeskoop::is_kubeskoop(text) {
        true => {
            let c = kubeskoop::convert(text, source)?;
            let mut warnings = vec![format!(
                "{source} is read as KubeSkoop's exporter config (`podnet convert kubeskoop {source}` prints the podnet pipeline it stands for)"
            )];
            warnings.extend(c.warnings);
            (Some(c.yaml), warnings)
        }
        false => (None, Vec::new()),
    };
    let text = converted.as_deref().unwrap_or(text);
    let overlaid = match overlay {
        Some(overlay) => Some(overlay(text).map_err(|e| fail(vec![ConfigError::top(e)]))?),
        None => None,
    };
    let text = overlaid.as_deref().unwrap_or(text);
    let expanded = expand_env(text, lookup).map_err(|e| fail(vec![ConfigError::top(e)]))?;
    if expanded.text.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) {
        return Err(fail(vec![ConfigError::top("empty configuration file")]));
    }
    let figment = Figment::new()
        .merge(Yaml::string(&expanded.text))
        .merge(Env::prefixed(ENV_OVERRIDE_PREFIX).map(|k| k.as_str().replace("___", "/").replace("__", ".").into()).lowercase(true));
    let raw: RawConfig = figment.extract().map_err(|e| fail(figment_errors(e, "")))?;
    let mut resolved = resolve(raw, source, registry).map_err(fail)?;
    resolved.env_values = expanded.from_env.clone();
    resolved.env_values.extend(std::env::vars().filter(|(k, _)| k.starts_with(ENV_OVERRIDE_PREFIX)));
    resolved.warnings.append(&mut conversion_warnings);
    for var in expanded.unset {
        resolved.warnings.push(format!("the config references unset environment variable \"{var}\"; it expands to an empty value"));
    }
    Ok(resolved)
}
