//! CRI replies from the container runtime: the sandbox list and the verbose status whose
//! `info` JSON carries the pid podnet enters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podnet_processor_k8s_attributes::cri::{self, ListPodSandboxResponse, PodSandboxStatusResponse};
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(status) = PodSandboxStatusResponse::decode(data) {
        let _ = cri::sandbox_pid(&status);
    }
    drop(ListPodSandboxResponse::decode(data));
    // The `info` JSON alone, as a runtime might write it.
    if let Ok(info) = std::str::from_utf8(data) {
        let status =
            PodSandboxStatusResponse { info: [("info".to_string(), info.to_string())].into_iter().collect(), ..Default::default() };
        let _ = cri::sandbox_pid(&status);
    }
});
