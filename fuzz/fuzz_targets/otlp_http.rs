//! OTLP/HTTP request bodies as the `otlp` receiver reads them. The first byte picks the
//! encoding (bit 0: gzip, bit 1: JSON) and the signal (bit 2: logs); the limit is small so
//! a gzip bomb is refused, not inflated.
#![no_main]

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use podnet_receiver_otlp::decode_http_body;

const LIMIT: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else { return };
    let mut headers = HeaderMap::new();
    if mode & 1 != 0 {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    let content_type = if mode & 2 != 0 { "application/json" } else { "application/x-protobuf" };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let body = Bytes::copy_from_slice(body);
    if mode & 4 != 0 {
        drop(decode_http_body::<ExportLogsServiceRequest>(&headers, body, LIMIT));
    } else {
        drop(decode_http_body::<ExportMetricsServiceRequest>(&headers, body, LIMIT));
    }
});
