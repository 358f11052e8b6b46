//! `service.telemetry.metrics.otlp`: podnet pushes its own metrics with OTLP/gRPC. A local
//! OTLP server (the official proto service) receives them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{MetricsService, MetricsServiceServer};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use podnet_integration::Agent;

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<ExportMetricsServiceRequest>>>);

#[tonic::async_trait]
impl MetricsService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_metrics_are_pushed_over_otlp_grpc() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let sink = Sink::default();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(MetricsServiceServer::new(sink.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("podnet.yaml");
    std::fs::write(
        &path,
        format!(
            "receivers:
  procfs:
    collection_interval: 200ms
exporters:
  prometheus:
    endpoint: ${{env:PODNET_LISTEN}}
service:
  pipelines:
    metrics:
      receivers: [procfs]
      exporters: [prometheus]
  telemetry:
    metrics:
      otlp:
        endpoint: http://127.0.0.1:{port}
        interval: 500ms
"
        ),
    )
    .unwrap();
    let agent = tokio::task::spawn_blocking(move || Agent::start(&["-c", path.to_str().unwrap()], &[("PODNET_NODE_NAME", "otlp-node")]))
        .await
        .unwrap();

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let found = loop {
        let got = sink.0.lock().unwrap().iter().any(|req| {
            req.resource_metrics.iter().any(|rm| {
                let attrs = &rm.resource.as_ref().unwrap().attributes;
                let has = |k: &str, v: &str| attrs.iter().any(|kv| kv.key == k && format!("{:?}", kv.value).contains(v));
                has("service.name", "podnet")
                    && has("k8s.node.name", "otlp-node")
                    && rm.scope_metrics.iter().flat_map(|s| &s.metrics).any(|m| m.name == "podnet.component.sent")
            })
        });
        if got || std::time::Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(found, "no OTLP push with podnet.component.sent arrived\nlog:\n{}", agent.log_text());
    tokio::task::spawn_blocking(move || assert!(agent.stop().success())).await.unwrap();
    server.abort();
}
