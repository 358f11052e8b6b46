//! The pipeline file (podnet's YAML or KubeSkoop's ConfigMap), through `${env:…}` expansion,
//! parsing, KubeSkoop conversion and validation: any text loads or gives errors.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let registry = podnet::registry();
    match podnet_pipeline::config::load_str(text, "fuzz.yaml", &registry, |name| (name == "NODE_NAME").then(|| "node-1".to_string())) {
        Ok(config) => drop((config.to_yaml(), config.to_yaml_redacted())),
        Err(errors) => drop(errors.to_string()),
    }
});
