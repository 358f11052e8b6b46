//! Environment overrides (`PODNET_CFG_…`) next to `${env:…}` references. One test in its
//! own binary, because it sets process environment variables.

use podnet_pipeline::config::{ConfigSource, load};

#[test]
fn overrides_apply_and_do_not_collide_with_env_references() {
    // SAFETY: the only test in this binary; nothing else reads the environment concurrently.
    unsafe {
        std::env::set_var("PODNET_LISTEN", "127.0.0.1:19999");
        std::env::set_var("PODNET_NODE_NAME", "node-a");
        std::env::set_var("PODNET_CFG_RECEIVERS__PROCFS__COLLECTION_INTERVAL", "3s");
        std::env::set_var("PODNET_CFG_EXPORTERS__PROMETHEUS__METRIC_EXPIRATION", "1m");
    }
    let c = load(&podnet::default_source(), &podnet::registry()).expect("valid");
    let yaml = c.to_yaml();
    assert!(yaml.contains("endpoint: 127.0.0.1:19999"), "${{env:PODNET_LISTEN}} expands: {yaml}");
    assert!(yaml.contains("collection_interval: 3s"), "override applies: {yaml}");
    assert!(yaml.contains("metric_expiration: 1m"), "{yaml}");

    // A named component (`procfs/pods`) is reached with `___` for the slash.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        "receivers:\n  procfs/pods:\nexporters:\n  prometheus:\nservice:\n  pipelines:\n    metrics:\n      receivers: [procfs/pods]\n      exporters: [prometheus]\n",
    )
    .unwrap();
    unsafe { std::env::set_var("PODNET_CFG_RECEIVERS__PROCFS___PODS__COLLECTION_INTERVAL", "7s") };
    let yaml = load(&ConfigSource::File(path.clone()), &podnet::registry()).expect("valid").to_yaml();
    assert!(yaml.contains("collection_interval: 7s"), "{yaml}");

    // A misspelt override is an error that says overrides are in effect.
    unsafe { std::env::set_var("PODNET_CFG_EXPORTERS__PROMETHEUS__ENDPOINTS", "x") };
    let err = load(&ConfigSource::File(path), &podnet::registry()).unwrap_err();
    assert_eq!(
        err.lines()[0],
        "exporters::prometheus: unknown key \"endpoints\" (valid keys: endpoint, path, naming, metric_expiration, enable_open_metrics, namespace, const_labels, resource_attributes_as_labels, max_series, target_info, resource_to_telemetry_conversion, exponential_histograms, web_config_file)"
    );
    let text = err.to_string();
    assert!(
        text.contains("note: environment overrides in effect:") && text.contains("PODNET_CFG_EXPORTERS__PROMETHEUS__ENDPOINTS"),
        "{text}"
    );
}
