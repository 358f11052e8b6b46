//! A gateway keeps other agents' data apart: two services send the same metric with the
//! same attributes over OTLP/HTTP; the scrape endpoint (otel naming) shows two series,
//! told apart by `job` and `instance` as the Collector derives them, and one `target_info`
//! per resource carrying the rest of each resource.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use podnet_integration::{Agent, free_port, http_post};
use prost::Message;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue { key: k.into(), value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }), ..Default::default() }
}

/// `shop.orders{route=/buy}` = `value`, from a resource with `attrs`.
fn orders(attrs: Vec<KeyValue>, value: i64) -> Vec<u8> {
    let point = NumberDataPoint {
        attributes: vec![kv("route", "/buy")],
        start_time_unix_nano: 1,
        time_unix_nano: 2,
        value: Some(number_data_point::Value::AsInt(value)),
        ..Default::default()
    };
    let metric = Metric {
        name: "shop.orders".into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: vec![point],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource { attributes: attrs, ..Default::default() }),
            scope_metrics: vec![ScopeMetrics { metrics: vec![metric], ..Default::default() }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// A gateway: OTLP/HTTP in, the scrape endpoint (otel naming) out; the config's directory
/// lives as long as the agent.
fn gateway(http: u16) -> (Agent, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.yaml");
    std::fs::write(
        &cfg,
        format!(
            "receivers:
  otlp:
    protocols:
      http: {{ endpoint: 127.0.0.1:{http} }}
exporters:
  prometheus:
    endpoint: ${{env:PODNET_LISTEN}}
    naming: otel
service:
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [prometheus]
"
        ),
    )
    .unwrap();
    let agent = Agent::start(&["-c", cfg.to_str().unwrap()], &[]);
    (agent, dir)
}

#[test]
fn two_services_with_the_same_series_stay_apart() {
    let http = free_port();
    let (agent, _dir) = gateway(http);
    let checkout = orders(vec![kv("service.name", "checkout"), kv("service.instance.id", "c-1"), kv("deployment.environment", "prod")], 5);
    let billing = orders(vec![kv("service.namespace", "shop"), kv("service.name", "billing"), kv("service.instance.id", "b-7")], 9);
    for body in [checkout, billing] {
        let (code, text) = http_post(http, "/v1/metrics", "application/x-protobuf", &body).expect("the otlp receiver answers");
        assert_eq!(code, 200, "{text}");
    }
    agent.wait_until(Duration::from_secs(10), "both services' series", || agent.metrics().matches("shop_orders_total{").count() == 2);
    let m = agent.metrics();
    assert!(m.contains("shop_orders_total{instance=\"c-1\",job=\"checkout\",route=\"/buy\"} 5"), "{m}");
    assert!(m.contains("shop_orders_total{instance=\"b-7\",job=\"shop/billing\",route=\"/buy\"} 9"), "{m}");
    let infos: Vec<&str> = m.lines().filter(|l| l.starts_with("target_info{")).collect();
    assert_eq!(infos.len(), 2, "{m}");
    let checkout_info = infos.iter().find(|l| l.contains("job=\"checkout\"")).expect("checkout's target_info");
    assert!(checkout_info.contains("deployment_environment=\"prod\"") && checkout_info.contains("instance=\"c-1\""), "{checkout_info}");
    assert!(!checkout_info.contains("service_name"), "service.name is the job, not a label of its own: {checkout_info}");
}

/// Sources that nothing tells apart (no service identity, no attribute kept as a label)
/// still land on one series: the later value wins, and it is counted and said, not silent.
#[test]
fn sources_nothing_tells_apart_are_counted_as_collisions() {
    let http = free_port();
    let (agent, _dir) = gateway(http);
    for (host, value) in [("a", 1), ("b", 2)] {
        let body = orders(vec![kv("host.name", host)], value);
        assert_eq!(http_post(http, "/v1/metrics", "application/x-protobuf", &body).map(|(c, _)| c), Some(200));
    }
    agent.wait_until(Duration::from_secs(10), "the collision counted", || {
        podnet_integration::labeled_sum(&agent.metrics(), "podnet_exporter_series_collisions_total", &[]) >= 1.0
    });
    let m = agent.metrics();
    assert_eq!(m.matches("shop_orders_total{").count(), 1, "{m}");
    assert!(m.contains("shop_orders_total{route=\"/buy\"} 2"), "{m}");
    agent.wait_until(Duration::from_secs(5), "the warning", || {
        agent.log_text().contains("two resources write the same series of shop_orders_total")
    });
}
