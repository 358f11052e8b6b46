//! Helpers for end-to-end tests: start the real `podnet` binary, talk HTTP to it, wait
//! for conditions with a deadline.

pub mod backends;
pub mod bench;
pub mod containerd;
pub mod pods;
pub mod python;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The `podnet` binary cargo built next to this test.
pub fn podnet_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // Tests run from target/<profile>/deps, benchmark binaries from target/<profile>.
    let dir = exe.parent().expect("target dir");
    let dir = if dir.ends_with("deps") { dir.parent().expect("target dir") } else { dir };
    let bin = dir.join("podnet");
    assert!(bin.exists(), "{} not found: run `cargo build -p podnet` (cargo test --workspace builds it)", bin.display());
    bin
}

/// Whether this process runs as root; if not, records the test as skipped for lacking
/// root, saying `why` it needs it (CI runs as root, so there that is a failure).
pub fn root_or_skip(why: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    podnet_pipeline::testing::skip(podnet_pipeline::testing::Lacks::Root, why);
    false
}

/// Every JSON value in a file of JSON lines (events as the file exporter writes them);
/// a line that is not JSON (one being written) is left out.
pub fn json_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

pub struct Agent {
    child: Child,
    /// The Prometheus endpoint's port (`PODNET_LISTEN`).
    pub port: u16,
    /// The health_check extension's port (`PODNET_HEALTH_LISTEN`), when the config has one.
    pub health_port: u16,
    pub log: PathBuf,
    pub stdout: PathBuf,
    _dir: tempfile::TempDir,
}

impl Agent {
    /// Starts `podnet run` with `args`, listening on free ports passed as PODNET_LISTEN
    /// (metrics) and PODNET_HEALTH_LISTEN (health_check). Ready means `/readyz` answers 200
    /// on the health port; a config without health_check is ready once `/metrics` answers.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Agent {
        Self::launch(args, env, None)
    }

    /// As [`Agent::start`], with the port chosen by the caller.
    pub fn start_with_port(args: &[&str], env: &[(&str, &str)], port: u16) -> Agent {
        Self::launch(args, env, Some(port))
    }

    /// Starts the agent until it is ready. A free port is only free when it is chosen: by the
    /// time the agent binds it, another test's connection may hold it as its local port
    /// (ephemeral ports come from the same range), and the agent exits with "Address already
    /// in use". Then it starts again on new ports (those this side chose), three times at most.
    fn launch(args: &[&str], env: &[(&str, &str)], port: Option<u16>) -> Agent {
        let mut attempt = 1;
        loop {
            let mut agent = Self::spawn(args, env, port.unwrap_or_else(free_port));
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                // health_check answers /readyz with 200 or 503; anything else on that port is
                // not podnet's (no health_check configured, and the free port was taken since).
                let ready = match agent.health("/readyz") {
                    Some((200, _)) => true,
                    Some((503, _)) => false,
                    _ => agent.get("/metrics").is_some_and(|(s, _)| s == 200),
                };
                if ready {
                    return agent;
                }
                if !agent.is_running() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let log = agent.log_text();
            if attempt < 3 && !agent.is_running() && log.contains("Address already in use") {
                eprintln!("podnet could not listen on a port taken since it was chosen; starting it again on others:\n{log}");
                attempt += 1;
                continue;
            }
            panic!("timed out after 20s waiting for podnet to be ready\nlog:\n{log}");
        }
    }

    fn spawn(args: &[&str], env: &[(&str, &str)], port: u16) -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("podnet.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let stdout = dir.path().join("stdout.log");
        let stdout_file = std::fs::File::create(&stdout).expect("stdout file");
        let mut cmd = Command::new(podnet_binary());
        let health_port = free_port();
        cmd.arg("run")
            .args(args)
            .env("PODNET_LISTEN", format!("127.0.0.1:{port}"))
            .env("PODNET_HEALTH_LISTEN", format!("127.0.0.1:{health_port}"))
            .env("PODNET_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.stdout(stdout_file).stderr(log_file).spawn().expect("spawn podnet");
        Agent { child, port, health_port, log, stdout, _dir: dir }
    }

    /// GET on the Prometheus endpoint.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.port, path)
    }

    /// GET on the health_check endpoint (`/healthz`, `/readyz`, `/status`).
    pub fn health(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.health_port, path)
    }

    pub fn metrics(&self) -> String {
        match self.get("/metrics") {
            Some((200, body)) => body,
            other => panic!("GET /metrics: {other:?}\nlog:\n{}", self.log_text()),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Polls `cond` until true or the deadline, then panics with the agent's log.
    pub fn wait_until(&self, timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if cond() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out after {timeout:?} waiting for {what}\nlog:\n{}", self.log_text());
    }

    /// SIGTERM, then the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("podnet did not stop on SIGTERM\nlog:\n{}", self.log_text());
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 GET; `None` when nothing listens.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_get_accept(port, path, "*/*")
}

/// A POST of `body` with `content_type`; the status and the body as text.
pub fn http_post(port: u16, path: &str, content_type: &str, body: &[u8]) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .ok()?;
    s.write_all(body).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// A GET with an `Accept` header (content negotiation).
pub fn http_get_accept(port: u16, path: &str, accept: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: {accept}\r\nConnection: close\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() };
    Some((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The sum of every sample whose line starts with `prefix` (a family, or a family and the
/// start of its labels): a counter over all its label sets.
pub fn series_sum(metrics: &str, prefix: &str) -> f64 {
    metrics.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

/// The value of the series with exactly this name and label text (`{a="b"}` or ``).
pub fn sample_value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}

/// The sum of the samples of `family` whose labels include every `(name, value)` pair.
pub fn labeled_sum(metrics: &str, family: &str, labels: &[(&str, &str)]) -> f64 {
    let prefix = format!("{family}{{");
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter(|rest| labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|rest| rest.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
