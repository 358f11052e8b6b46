//! Remote-write requests decode back to exactly the series they were made from, in order,
//! each within the size bound unless one series alone exceeds it.

use podnet_exporter_prometheus_remote_write::encode;
use podnet_exporter_prometheus_remote_write::proto::{BucketSpan, Histogram, Label, Sample, TimeSeries, WriteRequest};
use proptest::prelude::*;
use prost::Message;

fn series() -> impl Strategy<Value = TimeSeries> {
    let label = ("[a-zA-Z_][a-zA-Z0-9_]{0,12}", any::<String>()).prop_map(|(name, value)| Label { name, value });
    let sample = (any::<f64>(), any::<i64>()).prop_map(|(value, timestamp)| Sample { value, timestamp });
    let span = (-20i32..20, 0u32..5).prop_map(|(offset, length)| BucketSpan { offset, length });
    let histogram = (
        any::<u64>(),
        -1e9f64..1e9,
        -4i32..9,
        proptest::collection::vec(span, 0..3),
        proptest::collection::vec(any::<i64>(), 0..8),
        any::<i64>(),
    )
        .prop_map(|(count_int, sum, schema, positive_spans, positive_deltas, timestamp)| Histogram {
            count_int,
            sum,
            schema,
            positive_spans,
            positive_deltas,
            timestamp,
            ..Default::default()
        });
    (proptest::collection::vec(label, 0..6), proptest::collection::vec(sample, 0..3), proptest::collection::vec(histogram, 0..2))
        .prop_map(|(labels, samples, histograms)| TimeSeries { labels, samples, histograms })
}

/// Equality bit for bit (staleness-marker NaNs must survive exactly), but for -0.0, which
/// proto3 sends as the default +0.0 (Prometheus does not tell them apart either).
/// (labels, samples as (value bits, timestamp), native histograms) per series.
type Comparable = Vec<(Vec<(String, String)>, Vec<(u64, i64)>, Vec<Histogram>)>;

fn bits(series: &[TimeSeries]) -> Comparable {
    series
        .iter()
        .map(|s| {
            (
                s.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect(),
                s.samples.iter().map(|p| ((p.value + 0.0).to_bits(), p.timestamp)).collect(),
                s.histograms.iter().map(|h| Histogram { sum: h.sum + 0.0, ..h.clone() }).collect(),
            )
        })
        .collect()
}

proptest! {
    #[test]
    fn requests_decode_to_the_series_in_order(input in proptest::collection::vec(series(), 0..40), max_bytes in 1usize..4096) {
        let requests = encode(input.clone(), max_bytes);
        let mut decoded = Vec::new();
        for (body, items) in &requests {
            let raw = snap::raw::Decoder::new().decompress_vec(body).expect("valid snappy");
            let req = WriteRequest::decode(raw.as_slice()).expect("valid WriteRequest");
            prop_assert_eq!(req.timeseries.len(), *items);
            prop_assert!(*items > 0, "no empty request is sent");
            if req.timeseries.len() > 1 {
                let size: usize = req.timeseries.iter().map(|t| t.encoded_len() + 8).sum();
                prop_assert!(size <= max_bytes, "{} series in {} bytes, over the bound {}", req.timeseries.len(), size, max_bytes);
            }
            decoded.extend(req.timeseries);
        }
        prop_assert_eq!(bits(&decoded), bits(&input));
    }
}
