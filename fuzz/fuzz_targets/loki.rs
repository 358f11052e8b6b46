//! OTLP logs (events from any receiver, or a gateway's clients) into Loki push requests in
//! every format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use podnet_exporter_loki::{Format, encode, to_kubeskoop_streams, to_streams};
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = ExportLogsServiceRequest::decode(data) else { return };
    let labels = [("k8s.pod.name".to_string(), "pod".to_string())].into_iter().collect();
    drop(encode(to_streams(&req.resource_logs, &labels), Format::Protobuf));
    drop(encode(to_streams(&req.resource_logs, &labels), Format::Json));
    drop(encode(to_kubeskoop_streams(&req.resource_logs), Format::Kubeskoop));
});
