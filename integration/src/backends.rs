//! Real backends the tests start from Debian's packages (installed by scripts/test.sh).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::http_get;

/// A child process killed when dropped, so a failing test leaves no server behind.
pub struct Server(pub Child);

impl Server {
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Prometheus with `dir/prometheus.yml`, data in `dir/data`, the remote-write receiver on,
/// listening on `port`; `extra` flags are added. Waits for readiness unless `extra` makes
/// it serve TLS (the caller then checks readiness its own way).
pub fn prometheus(dir: &Path, port: u16, extra: &[String]) -> Server {
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-remote-write-receiver")
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus is not installed: apt-get install prometheus (scripts/test.sh does)");
    let server = Server(child);
    if extra.iter().any(|a| a.starts_with("--web.config.file")) {
        return server;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(port, "/-/ready").is_none_or(|(s, _)| s != 200) {
        assert!(Instant::now() < deadline, "prometheus did not become ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    server
}
