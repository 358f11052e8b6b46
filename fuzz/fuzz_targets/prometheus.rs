//! OTLP metrics (as the gateway receives them from anyone) through the Prometheus
//! translation in both namings, the scrape store's text and OpenMetrics rendering, and the
//! remote-write encoding (exponential histograms as classic buckets and as native ones).
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use podnet_exporter_prometheus::store::{Format, Store};
use podnet_prometheus_translator::{Naming, Translator};
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = ExportMetricsServiceRequest::decode(data) else { return };
    let resource_labels = ["k8s.pod.name".to_string()];
    let const_labels = [("k8s_node".to_string(), "node-1".to_string())];
    for naming in [Naming::Otel, Naming::Kubeskoop] {
        for all_resource_attributes in [false, true] {
            let t = Translator {
                naming,
                namespace: "podnet",
                resource_labels: &resource_labels,
                const_labels: &const_labels,
                all_resource_attributes,
            };
            let (mut samples, mut natives) = (Vec::new(), Vec::new());
            drop(t.translate(&req.resource_metrics, &mut samples));
            drop(t.translate_with(&req.resource_metrics, &mut Vec::new(), Some(&mut natives)));
            samples.extend(t.target_info(&req.resource_metrics, 1));
            let mut series = podnet_exporter_prometheus_remote_write::to_timeseries(samples.clone(), &Default::default());
            series.extend(podnet_exporter_prometheus_remote_write::native_to_timeseries(natives, &Default::default()));
            drop(podnet_exporter_prometheus_remote_write::encode(series, 4096));
            let mut store = Store::with_limit(1000);
            store.update(samples, std::time::Instant::now());
            let mut natives = Vec::new();
            drop(t.native_histograms(&req.resource_metrics, &mut natives));
            store.update_natives(natives, std::time::Instant::now());
            store.render_protobuf(&mut Vec::new());
            for format in [Format::Text, Format::OpenMetrics] {
                let mut out = String::new();
                store.render(format, &mut out);
            }
        }
    }
});
