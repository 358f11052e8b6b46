//! Pods as the Kubernetes API sends them (one watch event per line), down to the identity
//! podnet keeps; and KubeSkoop's `additionalLabels` entries.
#![no_main]

use k8s_openapi::api::core::v1::Pod;
use libfuzzer_sys::fuzz_target;
use podnet_processor_k8s_attributes::{kube::ApiPod, pods::Additional};

#[derive(serde::Deserialize)]
struct WatchLine {
    #[allow(dead_code)]
    r#type: String,
    object: Pod,
}

fuzz_target!(|data: &[u8]| {
    if let Ok(line) = serde_json::from_slice::<WatchLine>(data) {
        drop(ApiPod::from_pod(&line.object));
    }
    if let Ok(pod) = serde_json::from_slice::<Pod>(data) {
        drop(ApiPod::from_pod(&pod));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        drop(Additional::parse(text));
    }
});
