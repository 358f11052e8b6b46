//! `podnet`: run, validate and inspect pipelines.

mod control;
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
        /// The control socket `podnet top` and `podnet events` use (`off`: none).
        #[arg(long, env = "PODNET_CONTROL_SOCKET", default_value = control::protocol::DEFAULT_SOCKET)]
        control_socket: String,
    },
    /// Stream the running agent's events (from its control socket), optionally switching an
    /// expensive probe on for a while first: `podnet events --enable socketlatency --for 10m`.
    Events {
        #[arg(long, env = "PODNET_CONTROL_SOCKET", default_value = control::protocol::DEFAULT_SOCKET)]
        control_socket: PathBuf,
        /// Only this pod's events (its name; `--namespace` narrows further).
        #[arg(long)]
        pod: Option<String>,
        #[arg(long)]
        namespace: Option<String>,
        /// Only this event type (`TCPRESET_NOSOCK`, `PacketLoss`, …; `TCPRESET_*` for a prefix).
        #[arg(long = "type")]
        event_type: Option<String>,
        /// Also the events of this long ago the agent still holds (e.g. 10m).
        #[arg(long)]
        since: Option<String>,
        #[arg(short, long, value_enum, default_value = "text")]
        output: control::client::Output,
        /// Switch this eBPF probe on first (the agent switches it off by itself after --for).
        #[arg(long)]
        enable: Option<String>,
        #[arg(long = "for", default_value = "10m")]
        duration: String,
        /// Move the deadline of a probe someone else switched on.
        #[arg(long)]
        extend: bool,
        /// Exit after this many events.
        #[arg(long)]
        count: Option<usize>,
        /// Exit after this long (e.g. 30s).
        #[arg(long)]
        timeout: Option<String>,
    },
    /// The node's pods sorted by what is wrong now (drops, retransmits, resets, listen
    /// overflows, conntrack failures per second), from the running agent.
    Top {
        #[arg(long, env = "PODNET_CONTROL_SOCKET", default_value = control::protocol::DEFAULT_SOCKET)]
        control_socket: PathBuf,
        #[arg(long, value_enum, default_value = "drops")]
        sort: control::top::SortBy,
        /// Print the table once as text and exit (scripts).
        #[arg(long)]
        once: bool,
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
        Command::Events { control_socket, pod, namespace, event_type, since, output, enable, duration, extend, count, timeout } => {
            let result = (|| -> Result<()> {
                let parse = |s: &Option<String>| s.as_deref().map(control::client::parse_duration).transpose();
                control::client::events(control::client::EventsArgs {
                    socket: &control_socket,
                    filter: control::protocol::Filter { pod, namespace, r#type: event_type },
                    since: parse(&since)?,
                    output,
                    enable,
                    duration: control::client::parse_duration(&duration)?,
                    extend,
                    count,
                    timeout: parse(&timeout)?,
                })
            })();
            exit_with(result)
        }
        Command::Top { control_socket, sort, once } => {
            let result = if once {
                control::top::once(&control_socket, sort).map(|t| print!("{t}"))
            } else {
                control::top::interactive(&control_socket, sort)
            };
            exit_with(result)
        }
        Command::Run { config, log_level, log_format, control_socket } => {
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
            let control_socket = (control_socket != "off").then(|| PathBuf::from(control_socket));
            exit_with(runtime.block_on(run(source(config), log_level, log_format, dropped, control_socket)))
        }
    }
}

fn exit_with(result: Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podnet: {e:#}");
            std::process::ExitCode::FAILURE
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
    control_socket: Option<PathBuf>,
) -> Result<()> {
    let registry = podnet::registry();
    let boxes = control::TimeBoxes::default();
    let overlay = boxes.overlay();
    let config = config::load_with(&source, &registry, Some(&*overlay))?;
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
    let mut service = Service::start(registry, source, config, host.clone()).await?;
    service.set_overlay(overlay);
    let (enable_tx, mut enable_rx) = tokio::sync::mpsc::channel(8);
    let stop = tokio_util::sync::CancellationToken::new();
    if let Some(path) = &control_socket {
        match control::server::ControlServer::bind(path) {
            Ok(server) => {
                tokio::spawn(server.serve(host.clone(), enable_tx, stop.clone()));
            }
            Err(e) => {
                tracing::warn!(socket = %path.display(), "no control socket (podnet top and podnet events will not reach this agent): {e}")
            }
        }
    }

    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    loop {
        let deadline = boxes.next_deadline().map(|until| {
            let left = until.saturating_sub(podnet_pipeline::pdata::now_unix_nanos());
            tokio::time::Instant::now() + std::time::Duration::from_nanos(left)
        });
        let reason = tokio::select! {
            Some(cmd) = enable_rx.recv() => {
                let result = enable(&mut service, &boxes, &host, cmd.probe, cmd.args, cmd.seconds, cmd.extend, cmd.asked_by).await;
                let _ = cmd.reply.send(result);
                continue;
            }
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                let gone = boxes.expire();
                host.status.set_time_boxed(boxes.status());
                for b in &gone {
                    tracing::info!(probe = %format!("ebpf/{}", b.probe), asked_by = %b.asked_by, "time-boxed probe switched off: its time is up");
                }
                if let ReloadOutcome::Rejected(e) | ReloadOutcome::RolledBack(e) = service.reload().await {
                    tracing::error!("switching time-boxed probes off failed, they stay on until the next reload: {e}");
                }
                continue;
            }
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
    stop.cancel();
    service.shutdown().await;
    Ok(())
}

/// Switches `probe` on until `seconds` from now, through the config overlay and a reload.
#[allow(clippy::too_many_arguments)]
async fn enable(
    service: &mut Service,
    boxes: &control::TimeBoxes,
    host: &Host,
    probe: String,
    args: serde_json::Value,
    seconds: u64,
    extend: bool,
    asked_by: String,
) -> std::result::Result<u64, String> {
    let known: Vec<&str> = podnet::registry()
        .all()
        .find(|f| f.info().type_name == "ebpf")
        .map(|f| f.info().probes.iter().map(|p| p.name).collect())
        .unwrap_or_default();
    if !known.contains(&probe.as_str()) {
        return Err(format!("unknown eBPF probe \"{probe}\" (one of: {})", known.join(", ")));
    }
    if !(1..=86_400).contains(&seconds) {
        return Err(format!("--for must be between 1s and 24h, got {seconds}s"));
    }
    let until = podnet_pipeline::pdata::now_unix_nanos() + seconds * 1_000_000_000;
    let boxed = control::Boxed { probe: probe.clone(), args, until_unix_nano: until, asked_by: asked_by.clone() };
    let previous = boxes.put(boxed, extend)?;
    match service.reload().await {
        ReloadOutcome::Applied(_) | ReloadOutcome::Unchanged => {
            host.status.set_time_boxed(boxes.status());
            tracing::info!(probe = %format!("ebpf/{probe}"), asked_by = %asked_by, until = %control::rfc3339(until), "time-boxed probe on");
            Ok(until)
        }
        ReloadOutcome::Rejected(e) | ReloadOutcome::RolledBack(e) => {
            boxes.restore(&probe, previous);
            Err(format!("ebpf/{probe} could not be switched on: {e}"))
        }
    }
}
