//! What the benchmark binaries share: the real `podnet run` agent started on a config,
//! waited for until every probe it names is attached, and measured from /proc.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, http_get, labeled_sum};

pub struct BenchAgent {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl BenchAgent {
    /// Starts `podnet run` on the config `config(port)` returns (its Prometheus endpoint
    /// on that port), and waits until every probe reports up.
    pub fn start(config: impl FnOnce(u16) -> String) -> BenchAgent {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let path = dir.path().join("bench.yaml");
        std::fs::write(&path, config(port)).expect("write config");
        let child = Command::new(crate::podnet_binary())
            .args(["run", "-c"])
            .arg(&path)
            .env("PODNET_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start podnet (cargo build --release -p podnet)");
        let agent = BenchAgent { child, port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some((200, m)) = http_get(port, "/metrics")
                && m.contains("podnet_probe_up{")
                && !m.lines().any(|l| l.starts_with("podnet_probe_up{") && l.ends_with(" 0"))
            {
                return agent;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("podnet did not attach its probes within 30 s");
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The sum of the series of `family` with these labels on /metrics.
    pub fn metric(&self, family: &str, labels: &[(&str, &str)]) -> f64 {
        http_get(self.port, "/metrics").map(|(_, m)| labeled_sum(&m, family, labels)).unwrap_or(f64::NAN)
    }

    /// User + system CPU seconds so far.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        (ticks(11) + ticks(12)) / hz
    }
}

impl Drop for BenchAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
