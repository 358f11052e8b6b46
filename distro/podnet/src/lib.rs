//! The podnet distribution: which components this binary carries, and its embedded
//! default pipeline.

use podnet_pipeline::component::Registry;
use podnet_pipeline::config::ConfigSource;

/// `configs/node.yaml`, compiled in: what `podnet run` without `-c` runs.
pub const DEFAULT_CONFIG: &str = include_str!("../../../configs/node.yaml");

pub fn default_source() -> ConfigSource {
    ConfigSource::Embedded { name: "configs/node.yaml", text: DEFAULT_CONFIG }
}

/// Every component factory in this distribution.
pub fn registry() -> Registry {
    Registry::new()
        .extension(podnet_netns::NetnsExtensionFactory)
        .extension(podnet_extension_health_check::HealthCheckExtensionFactory)
        .extension(podnet_extension_auth::BasicAuthExtensionFactory)
        .extension(podnet_extension_auth::BearerTokenAuthExtensionFactory)
        .receiver(podnet_receiver_procfs::ProcfsReceiverFactory)
        .receiver(podnet_receiver_netlink::NetlinkReceiverFactory)
        .receiver(podnet_receiver_ebpf::EbpfReceiverFactory)
        .receiver(podnet_receiver_otlp::OtlpReceiverFactory)
        .processor(podnet_processor_filter::FilterProcessorFactory)
        .processor(podnet_processor_k8s_attributes::K8sAttributesProcessorFactory)
        .exporter(podnet_exporter_control::ControlExporterFactory)
        .exporter(podnet_exporter_prometheus::PrometheusExporterFactory)
        .exporter(podnet_exporter_prometheus_remote_write::RemoteWriteExporterFactory)
        .exporter(podnet_exporter_otlp::OtlpGrpcExporterFactory)
        .exporter(podnet_exporter_otlp::OtlpHttpExporterFactory)
        .exporter(podnet_exporter_loki::LokiExporterFactory)
        .exporter(podnet_exporter_debug::DebugExporterFactory)
        .exporter(podnet_exporter_debug::FileExporterFactory)
        .exporter(podnet_exporter_debug::StderrExporterFactory)
}

/// The `podnet components` listing: one line per component, probes indented below.
pub fn components_listing() -> String {
    let registry = registry();
    let mut out = String::new();
    let mut infos: Vec<_> = registry.all().map(|f| f.info()).collect();
    infos.sort_by_key(|i| (i.kind, i.type_name));
    for info in infos {
        let signals: Vec<_> = info.signals.iter().map(|s| s.as_str()).collect();
        let aliases = if info.aliases.is_empty() { String::new() } else { format!(" (alias {})", info.aliases.join(", ")) };
        out.push_str(&format!(
            "{:<9} {:<24} {:<12} {:<11} {}{aliases}\n",
            info.kind.as_str(),
            info.type_name,
            signals.join("+"),
            format!("{:?}", info.stability).to_lowercase(),
            info.description
        ));
        for p in info.probes {
            out.push_str(&format!(
                "{:<9}   probe {:<16} overhead {:<6} source {}\n",
                "",
                p.name,
                format!("{:?}", p.overhead).to_lowercase(),
                p.data_source
            ));
        }
    }
    out
}
