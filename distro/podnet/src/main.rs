//! `podnet`: run, validate and inspect pipelines.

mod memory;
mod privileges;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use podnet_pipeline::config::{self, ConfigSource, LogEncoding, LogLevel, MetricsLevel};
use podnet_pipeline::reload::ConfigWatcher;
use podnet_pipeline::status::StatusRegistry;
use podnet_pipeline::telemetry::Telemetry;
use podnet_pipeline::{Host, NodeInfo, ReloadOutcome, Service};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(name = "podnet", version, about = "Pod-level network monitoring from the Linux kernel")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent (without -c: the embedded default pipeline, configs/node.yaml).
    Run {
        /// Pipeline config file; it is watched and reapplied when it changes.
        #[arg(short, long, env = "PODNET_CONFIG")]
        config: Option<PathBuf>,
        /// Log level, overriding service::telemetry::logs::level.
        #[arg(long)]
        log_level: Option<String>,
        /// Log format (`console` or `json`), overriding service::telemetry::logs::encoding.
        #[arg(long)]
        log_format: Option<String>,
    },
    /// Check a config and exit: 0 when valid, 1 with every error otherwise.
    Validate {
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// List every receiver, processor and exporter, and each receiver's probes.
    Components,
    /// Print the podnet pipeline equivalent to another tool's config (`podnet run` also
    /// reads that config as is): `podnet convert kubeskoop config.yaml > podnet.yaml`.
    Convert {
        #[command(subcommand)]
        from: ConvertFrom,
    },
    /// Print the effective config: defaults applied, PODNET_CFG_ overrides merged; secrets
    /// (passwords, tokens, Authorization headers) and values from the environment hidden.
    PrintConfig {
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Print secrets and ${env:…} values as they are.
        #[arg(long)]
        show_secrets: bool,
    },
}

#[derive(Subcommand)]
enum ConvertFrom {
    /// KubeSkoop's exporter config (the `config.yaml` of its `kubeskoop-config` ConfigMap).
    Kubeskoop { file: PathBuf },
}

fn source(config: Option<PathBuf>) -> ConfigSource {
    match config {
        Some(p) => ConfigSource::File(p),
        None => podnet::default_source(),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Components => {
            print!("{}", podnet::components_listing());
            std::process::ExitCode::SUCCESS
        }
        Command::Validate { config } => {
            let source = source(config);
            match config::load(&source, &podnet::registry()) {
                Ok(c) => {
                    for w in &c.warnings {
                        eprintln!("warning: {w}");
                    }
                    println!("{}: valid", source.describe());
                    std::process::ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
        Command::Convert { from: ConvertFrom::Kubeskoop { file } } => {
            let origin = file.display().to_string();
            let converted = std::fs::read_to_string(&file)
                .map_err(|e| format!("{origin}: cannot read the config file: {e}"))
                .and_then(|text| config::kubeskoop::convert(&text, &origin).map_err(|e| e.to_string()));
            match converted {
                Ok(c) => {
                    for w in &c.warnings {
                        eprintln!("warning: {w}");
                    }
                    print!("{}", c.yaml);
                    std::process::ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
        Command::PrintConfig { config, show_secrets } => match config::load(&source(config), &podnet::registry()) {
            Ok(c) => {
                print!("{}", if show_secrets { c.to_yaml() } else { c.to_yaml_redacted() });
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                std::process::ExitCode::FAILURE
            }
        },
        Command::Run { config, log_level, log_format } => {
            // Before any thread exists: capabilities are per thread.
            let dropped = match std::env::var("PODNET_KEEP_CAPABILITIES").as_deref() {
                Ok("all") => None,
                _ => Some(privileges::drop_unused()),
            };
            memory::limit_arenas();
            memory::spawn_trimmer();
            let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("podnet: cannot start the async runtime: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(source(config), log_level, log_format, dropped)) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("podnet: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_logging(level: &str, encoding: LogEncoding) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PODNET_LOG").or_else(|_| tracing_subscriber::EnvFilter::try_new(level))?;
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    let result = match encoding {
        LogEncoding::Json => builder.json().flatten_event(true).try_init(),
        LogEncoding::Console => builder.try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

async fn run(
    source: ConfigSource,
    log_level: Option<String>,
    log_format: Option<String>,
    dropped: Option<std::io::Result<privileges::Dropped>>,
) -> Result<()> {
    let registry = podnet::registry();
    let config = config::load(&source, &registry)?;
    let logs = &config.telemetry.logs;
    let encoding = match log_format.as_deref() {
        None => logs.encoding,
        Some("json") => LogEncoding::Json,
        Some("console" | "text") => LogEncoding::Console,
        Some(other) => anyhow::bail!("--log-format {other}: use console or json"),
    };
    init_logging(log_level.as_deref().unwrap_or(LogLevel::as_str(logs.level)), encoding)?;

    let node = NodeInfo::detect();
    let status = Arc::new(StatusRegistry::default());
    let telemetry = Arc::new(Telemetry::new(&config.telemetry, &node.name, status.clone())?);
    let host = Arc::new(Host::new(node, status, telemetry, config.telemetry.metrics.level != MetricsLevel::None));
    tracing::info!(version = env!("CARGO_PKG_VERSION"), node = %host.node.name, config = %source.describe(), "podnet starting");
    match dropped {
        Some(Ok(d)) => tracing::info!("{}", d.describe()),
        Some(Err(e)) => tracing::warn!("cannot drop unused capabilities ({e}): running with the ones it was given"),
        None => tracing::info!("PODNET_KEEP_CAPABILITIES=all: every capability it was given is kept"),
    }

    let mut watcher = match source.path() {
        Some(p) => Some(ConfigWatcher::new(p).with_context(|| format!("cannot watch {} for changes", p.display()))?),
        None => None,
    };
    let mut service = Service::start(registry, source, config, host).await?;

    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    loop {
        let reason = tokio::select! {
            _ = hangup.recv() => "SIGHUP",
            Some(()) = async { match watcher.as_mut() { Some(w) => w.changed().await, None => std::future::pending().await } } => "file change",
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        };
        tracing::info!(trigger = reason, "reloading config");
        match service.reload().await {
            ReloadOutcome::Applied(_) | ReloadOutcome::Unchanged => {}
            ReloadOutcome::Rejected(_) | ReloadOutcome::RolledBack(_) => {}
        }
    }
    tracing::info!("shutting down");
    service.shutdown().await;
    Ok(())
}
