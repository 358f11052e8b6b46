//! podnet as a gateway between independent OTLP implementations, every value checked:
//! the OpenTelemetry Python SDK sends a counter, an up-down counter, an explicit and an
//! exponential histogram, a gauge and a log record over gRPC (service checkout) and HTTP
//! (service billing); podnet exposes them on its scrape endpoint (otel naming: job/instance,
//! target_info, seconds), writes them to a real Prometheus by remote write (the exponential
//! histograms as native histograms) which also scrapes podnet (in the protobuf format, the
//! exponential histograms native there too), and forwards them with its
//! otlp_grpc and otlp_http exporters to a receiver built on the official Python proto
//! classes, which decodes every request.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use podnet_integration::backends::{self, query};
use podnet_integration::python::{otel_python, send_otlp};
use podnet_integration::{Agent, free_port, json_lines, labeled_sum, sample_value};

struct Sink(Child);

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The first sample of an instant query's result, as a number.
fn value(prom: u16, q: &str) -> Option<f64> {
    let r = query(prom, q).ok()?;
    r.first()?["value"][1].as_str()?.parse().ok()
}

#[test]
fn python_sdk_through_podnet_to_prometheus_and_a_python_receiver() {
    let Some(python) = otel_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (grpc, http, prom, sink_grpc, sink_http, metrics_port) =
        (free_port(), free_port(), free_port(), free_port(), free_port(), free_port());

    // Prometheus: remote-write receiver with native histograms, and a scrape of podnet that
    // keeps the job/instance podnet derived (honor_labels), marked via="scrape".
    std::fs::write(
        d.join("prometheus.yml"),
        format!(
            "global: {{ scrape_interval: 1s }}
scrape_configs:
  - job_name: podnet
    honor_labels: true
    static_configs: [{{ targets: ['127.0.0.1:{metrics_port}'], labels: {{ via: scrape }} }}]
"
        ),
    )
    .unwrap();
    let _prometheus = backends::prometheus(d, prom, &["--enable-feature=native-histograms".to_string()]);

    let sink_out = d.join("sink.jsonl");
    let _sink = Sink(
        Command::new(&python)
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/python/otlp_sink.py"))
            .args(["--grpc-port", &sink_grpc.to_string(), "--http-port", &sink_http.to_string(), "--out", sink_out.to_str().unwrap()])
            .stdout(Stdio::null())
            .spawn()
            .expect("otlp_sink.py"),
    );

    let logs_file = d.join("logs.jsonl");
    let config = d.join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: 127.0.0.1:{grpc} }}
      http: {{ endpoint: 127.0.0.1:{http} }}
exporters:
  prometheus:
    endpoint: ${{env:PODNET_LISTEN}}
    naming: otel
    exponential_histograms: native
  prometheus_remote_write:
    endpoint: http://127.0.0.1:{prom}/api/v1/write
    exponential_histograms: native
  otlp_grpc:
    endpoint: http://127.0.0.1:{sink_grpc}
  otlp_http:
    endpoint: http://127.0.0.1:{sink_http}
  file/logs:
    path: {logs}
service:
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [prometheus, prometheus_remote_write, otlp_grpc, otlp_http]
    logs:
      receivers: [otlp]
      exporters: [file/logs, otlp_grpc, otlp_http]
",
            logs = logs_file.display()
        ),
    )
    .unwrap();
    let agent = Agent::start_with_port(&["-c", config.to_str().unwrap()], &[], metrics_port);

    let grpc_ep = format!("127.0.0.1:{grpc}");
    let http_ep = format!("127.0.0.1:{http}");
    for args in [
        ["--protocol", "grpc", "--endpoint", &grpc_ep, "--service", "checkout", "--instance", "i-1", "--orders", "5"],
        ["--protocol", "http", "--endpoint", &http_ep, "--service", "billing", "--instance", "i-2", "--orders", "9"],
    ] {
        let out = send_otlp(&python, &[&args[..], &["--exponential", "--logs"]].concat());
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    // The scrape endpoint, exact.
    let m = agent.metrics();
    let series = |name: &str, job: &str, extra: &str| {
        sample_value(&m, &format!("{name}{{instance=\"i-{}\",job=\"{job}\"{extra}}}", if job == "checkout" { 1 } else { 2 }))
    };
    for (job, orders) in [("checkout", 5.0), ("billing", 9.0)] {
        assert_eq!(series("shop_orders_total", job, ",route=\"/buy\""), Some(orders), "{m}");
        assert_eq!(series("shop_queue_depth", job, ",queue=\"main\""), Some(3.0), "{m}");
        assert_eq!(series("shop_temperature_celsius", job, ""), Some(21.5), "{m}");
        // Explicit histogram in ms (SDK bounds 0, 5, 10, 25, … ms), exposed in seconds.
        assert_eq!(series("shop_request_latency_seconds_bucket", job, ",le=\"0.005\""), Some(2.0), "{m}");
        assert_eq!(series("shop_request_latency_seconds_bucket", job, ",le=\"0.01\""), Some(4.0), "{m}");
        assert_eq!(series("shop_request_latency_seconds_bucket", job, ",le=\"0.25\""), Some(5.0), "{m}");
        assert_eq!(series("shop_request_latency_seconds_count", job, ""), Some(5.0), "{m}");
        assert_eq!(series("shop_request_latency_seconds_sum", job, ""), Some(0.2675), "{m}");
        // The exponential histogram as classic buckets on the scrape endpoint.
        assert_eq!(series("shop_payload_size_bytes_count", job, ""), Some(5.0), "{m}");
        assert_eq!(series("shop_payload_size_bytes_sum", job, ""), Some(267.5), "{m}");
        assert_eq!(series("shop_payload_size_bytes_bucket", job, ",le=\"+Inf\""), Some(5.0), "{m}");
        assert!(
            m.lines().any(|l| l.starts_with("target_info{")
                && l.contains(&format!("job=\"{job}\""))
                && l.contains("telemetry_sdk_language=\"python\"")),
            "{m}"
        );
    }
    assert_eq!(labeled_sum(&m, "podnet_component_dropped_total", &[("component_id", "prometheus")]), 0.0, "nothing dropped: {m}");

    // Remote write into Prometheus: counters and classic buckets by job, the exponential
    // histograms as native histograms with their quantiles.
    for (job, orders) in [("checkout", 5.0), ("billing", 9.0)] {
        let rw = format!("job=\"{job}\",via!=\"scrape\"");
        let got = wait_for("remote-written series in Prometheus", || value(prom, &format!("shop_orders_total{{{rw}}}")));
        assert_eq!(got, orders);
        assert_eq!(value(prom, &format!("histogram_count(shop_payload_size_bytes{{{rw}}})")), Some(5.0));
        assert_eq!(value(prom, &format!("histogram_sum(shop_payload_size_bytes{{{rw}}})")), Some(267.5));
        // The median of 0.5, 3, 7, 7, 250 is 7; a native histogram knows it to its bucket width.
        let median = value(prom, &format!("histogram_quantile(0.5, shop_payload_size_bytes{{{rw}}})")).expect("native quantile");
        assert!((median - 7.0).abs() / 7.0 < 0.05, "native median {median}");
        // Classic: rank 2.5 falls between 2 at le=5ms and 4 at le=10ms.
        let classic = value(prom, &format!("histogram_quantile(0.5, sum by (le) (shop_request_latency_seconds_bucket{{{rw}}}))"))
            .expect("classic quantile");
        assert!((classic - 0.00625).abs() < 1e-9, "classic median {classic}");
        assert_eq!(value(prom, &format!("target_info{{{rw},instance=\"i-{}\"}}", if job == "checkout" { 1 } else { 2 })), Some(1.0));
        // And Prometheus' own scrape of podnet shows the same job/instance; it asks for the
        // protobuf format (native histograms on), so the exponential histogram arrives native.
        let scraped = wait_for("the scrape of podnet", || value(prom, &format!("shop_orders_total{{job=\"{job}\",via=\"scrape\"}}")));
        assert_eq!(scraped, orders);
        let sc = format!("job=\"{job}\",via=\"scrape\"");
        assert_eq!(value(prom, &format!("histogram_count(shop_payload_size_bytes{{{sc}}})")), Some(5.0));
        assert_eq!(value(prom, &format!("histogram_sum(shop_payload_size_bytes{{{sc}}})")), Some(267.5));
        let median = value(prom, &format!("histogram_quantile(0.5, shop_payload_size_bytes{{{sc}}})")).expect("scraped native quantile");
        assert!((median - 7.0).abs() / 7.0 < 0.05, "scraped native median {median}");
        assert_eq!(value(prom, &format!("shop_request_latency_seconds_count{{{sc}}}")), Some(5.0), "classic histograms scrape as before");
        assert_eq!(value(prom, &format!("shop_temperature_celsius{{{sc}}}")), Some(21.5));
    }

    // The logs, in podnet's file and at the Python receiver.
    let lines = wait_for("the log records in the file", || {
        let lines = json_lines(&logs_file);
        let n: usize = lines.iter().map(|l| l["resourceLogs"].as_array().map_or(0, Vec::len)).sum();
        (n >= 2).then_some(lines)
    });
    let text = serde_json::to_string(&lines).unwrap();
    assert!(text.contains("payment declined for order 42") && text.contains("checkout") && text.contains("billing"), "{text}");

    // What podnet's otlp exporters sent, decoded by the official proto classes.
    let requests = wait_for("both exporters' metrics and logs at the Python receiver", || {
        let r = json_lines(&sink_out);
        let seen = |transport: &str, signal: &str| r.iter().any(|l| l["transport"] == transport && l["signal"] == signal);
        (seen("grpc", "metrics") && seen("http", "metrics") && seen("grpc", "logs") && seen("http", "logs")).then_some(r)
    });
    for transport in ["grpc", "http"] {
        let metrics: Vec<&serde_json::Value> = requests
            .iter()
            .filter(|l| l["transport"] == transport && l["signal"] == "metrics")
            .flat_map(|l| l["request"]["resource_metrics"].as_array().into_iter().flatten())
            .collect();
        let by_service = |service: &str| {
            metrics
                .iter()
                .find(|rm| {
                    rm["resource"]["attributes"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|kv| kv["key"] == "service.name" && kv["value"]["string_value"] == service))
                })
                .unwrap_or_else(|| panic!("{transport}: no resource for {service}: {metrics:?}"))
        };
        for (service, orders) in [("checkout", "5"), ("billing", "9")] {
            let rm = by_service(service);
            let all: Vec<&serde_json::Value> =
                rm["scope_metrics"].as_array().unwrap().iter().flat_map(|s| s["metrics"].as_array().unwrap()).collect();
            let metric = |name: &str| *all.iter().find(|m| m["name"] == name).unwrap_or_else(|| panic!("{transport}/{service}: no {name}"));
            let orders_m = metric("shop.orders");
            assert_eq!(orders_m["unit"], "{order}");
            assert_eq!(orders_m["sum"]["is_monotonic"], true);
            assert_eq!(orders_m["sum"]["aggregation_temporality"], "AGGREGATION_TEMPORALITY_CUMULATIVE");
            assert_eq!(orders_m["sum"]["data_points"][0]["as_int"], orders);
            assert_eq!(
                metric("shop.queue.depth")["sum"]["is_monotonic"],
                serde_json::Value::Null,
                "an up-down counter is not monotonic (false is the default)"
            );
            let latency = &metric("shop.request.latency")["histogram"]["data_points"][0];
            assert_eq!(latency["count"], "5");
            assert_eq!(latency["sum"], 267.5);
            assert_eq!(latency["bucket_counts"].as_array().unwrap()[..4], [serde_json::json!("0"), "2".into(), "2".into(), "0".into()]);
            let exp = &metric("shop.payload.size")["exponential_histogram"]["data_points"][0];
            assert_eq!(exp["count"], "5");
            let counts: u64 =
                exp["positive"]["bucket_counts"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().parse::<u64>().unwrap()).sum();
            assert_eq!(counts, 5, "{exp}");
            assert!(exp["scale"].as_i64().is_some(), "{exp}");
            assert_eq!(metric("shop.temperature")["gauge"]["data_points"][0]["as_double"], 21.5);
        }
        let logs: Vec<&serde_json::Value> = requests.iter().filter(|l| l["transport"] == transport && l["signal"] == "logs").collect();
        let text = serde_json::to_string(&logs).unwrap();
        assert!(
            text.contains("\"string_value\": \"payment declined for order 42\"") || text.contains("payment declined for order 42"),
            "{text}"
        );
        assert!(text.contains("\"severity_text\": \"WARN") || text.contains("SEVERITY_NUMBER_WARN"), "{text}");
    }
}
