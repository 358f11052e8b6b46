//! The YAML format for figment, shared by podnet's own config and KubeSkoop's.

use figment::providers::Format;
use serde::de::DeserializeOwned;

/// The YAML format for figment, parsed with serde_norway (figment's own `yaml` feature
/// uses the deprecated serde_yaml).
pub(super) struct Yaml;

impl Format for Yaml {
    type Error = serde_norway::Error;
    const NAME: &'static str = "YAML";
    fn from_str<T: DeserializeOwned>(string: &str) -> Result<T, Self::Error> {
        serde_norway::from_str(string)
    }
}
