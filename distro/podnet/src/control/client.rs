//! The tools' side of the control socket, and `podnet events`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::protocol::{Answer, Filter, Request};
use super::rfc3339;

/// A connection that sent one request; its answers are read line by line.
pub struct Connection {
    lines: std::io::Lines<BufReader<UnixStream>>,
    /// The same socket, for its read timeout.
    stream: UnixStream,
}

pub fn request(socket: &Path, req: &Request) -> Result<Connection> {
    let mut stream = UnixStream::connect(socket).with_context(|| {
        format!("cannot reach the agent's control socket {} (is `podnet run` running here, and are you root? --control-socket names another path)", socket.display())
    })?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    // An agent that refuses the peer answers and closes before reading: its answer is what
    // matters, not the failed write.
    if let Err(e) = stream.write_all(&line)
        && !matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset)
    {
        return Err(e.into());
    }
    Ok(Connection { stream: stream.try_clone()?, lines: BufReader::new(stream).lines() })
}

impl Connection {
    /// The next answer; an answer with `ok: false` is an error naming what the agent said.
    pub fn next(&mut self) -> Result<Option<Answer>> {
        let line = match self.lines.next().transpose() {
            Ok(Some(line)) => line,
            Ok(None) => return Ok(None),
            // The refusal may already be gone with the reset connection.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => bail!("the agent closed the connection"),
            Err(e) => return Err(e.into()),
        };
        let a: Answer = serde_json::from_str(&line).with_context(|| format!("the agent answered something else: {line}"))?;
        if !a.ok {
            bail!("{}", a.error.unwrap_or_else(|| "refused".into()));
        }
        Ok(Some(a))
    }

    pub fn set_timeout(&mut self, t: Option<Duration>) -> Result<()> {
        self.stream.set_read_timeout(t)?;
        Ok(())
    }
}

/// `10m`, `30s`, `1h`, `500ms`.
pub fn parse_duration(s: &str) -> Result<Duration> {
    humantime::parse_duration(s).with_context(|| format!("\"{s}\" is not a duration (e.g. 30s, 10m, 1h)"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// One readable line per event.
    Text,
    /// KubeSkoop's event lines.
    Kubeskoop,
    /// One OTLP JSON `ExportLogsServiceRequest` per event.
    OtlpJson,
}

pub struct EventsArgs<'a> {
    pub socket: &'a Path,
    pub filter: Filter,
    pub since: Option<Duration>,
    pub output: Output,
    pub enable: Option<String>,
    pub duration: Duration,
    pub extend: bool,
    /// Stop after this many events (scripts, tests).
    pub count: Option<usize>,
    /// Stop after this long.
    pub timeout: Option<Duration>,
}

pub fn text_line(e: &podnet_exporter_control::Event) -> String {
    let who = match (e.namespace.as_str(), e.pod.as_str()) {
        (_, "") => "(node)".to_string(),
        ("", pod) => pod.to_string(),
        (ns, pod) => format!("{ns}/{pod}"),
    };
    let millis = (e.time_unix_nano / 1_000_000) % 1000;
    let t = rfc3339(e.time_unix_nano);
    format!("{}.{millis:03}Z  {:<20} {:<28} {}", t.trim_end_matches('Z'), e.kind, who, e.message.replace('\n', " "))
}

/// `podnet events`: optionally switches a probe on for a while, then prints matching events
/// as they come.
pub fn events(a: EventsArgs<'_>) -> Result<()> {
    let now = podnet_pipeline::pdata::now_unix_nanos();
    if let Some(probe) = &a.enable {
        let mut c = request(
            a.socket,
            &Request::Enable {
                probe: probe.clone(),
                args: serde_json::Value::Null,
                seconds: a.duration.as_secs().max(1),
                extend: a.extend,
            },
        )?;
        let until = c.next()?.and_then(|a| a.until_unix_nano).context("the agent did not answer the enable request")?;
        eprintln!("ebpf/{probe} is on until {} (the agent switches it off by itself)", rfc3339(until));
    }
    let since = a.since.map_or(now, |d| now.saturating_sub(d.as_nanos() as u64));
    let mut c = request(a.socket, &Request::Events { since_unix_nano: since, follow: true, filter: a.filter })?;
    let started = Instant::now();
    let mut seen = 0;
    let stdout = std::io::stdout();
    loop {
        if let Some(t) = a.timeout {
            let left = t.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Ok(());
            }
            c.set_timeout(Some(left))?;
        }
        let answer = match c.next() {
            Ok(Some(a)) => a,
            Ok(None) => bail!("the agent closed the event stream (did it stop?)"),
            Err(e)
                if e.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| matches!(io.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)) =>
            {
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let Some(e) = answer.event else { continue };
        let line = match a.output {
            Output::Text => text_line(&e),
            Output::Kubeskoop => e.kubeskoop,
            Output::OtlpJson => e.otlp_json,
        };
        let mut out = stdout.lock();
        writeln!(out, "{line}")?;
        out.flush()?;
        seen += 1;
        if a.count.is_some_and(|n| seen >= n) {
            return Ok(());
        }
    }
}
