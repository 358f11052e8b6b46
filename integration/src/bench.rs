//! What the benchmark binaries share: the real `podnet run` agent started on a config,
//! waited for until every probe it names is attached, and measured from /proc.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::pods::in_netns;

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
        Self::start_on(config, None)
    }

    /// As [`start`](Self::start), every thread of the agent on `cpu` alone: the affinity is
    /// set before exec, so the runtime's threads inherit it (setting it on the pid after the
    /// start would move only the main thread).
    pub fn start_pinned(config: impl FnOnce(u16) -> String, cpu: usize) -> BenchAgent {
        Self::start_on(config, Some(cpu))
    }

    fn start_on(config: impl FnOnce(u16) -> String, cpu: Option<usize>) -> BenchAgent {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let path = dir.path().join("bench.yaml");
        std::fs::write(&path, config(port)).expect("write config");
        let mut cmd = Command::new(crate::podnet_binary());
        cmd.args(["run", "-c"]).arg(&path).env("PODNET_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::null());
        if let Some(cpu) = cpu {
            // SAFETY: only sched_setaffinity (async-signal-safe) runs between fork and exec,
            // on a set built before the fork.
            let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            unsafe { libc::CPU_SET(cpu, &mut set) };
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                    if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                })
            };
        }
        let child = cmd.spawn().expect("start podnet (cargo build --release -p podnet)");
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

/// (min, median, max) of the finite values.
pub fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    s.sort_by(|a, b| a.total_cmp(b));
    (s[0], s[s.len() / 2], s[s.len() - 1])
}

/// `min / median / max` with `digits` decimals, or `n/a`.
pub fn mmm(v: &[f64], digits: usize) -> String {
    let (lo, med, hi) = stats(v);
    if med.is_nan() {
        return "n/a".into();
    }
    format!("{lo:.digits$} / {med:.digits$} / {hi:.digits$}")
}

/// The ids of the BPF programs loaded now.
pub fn program_ids() -> HashSet<u32> {
    aya::programs::loaded_programs().filter_map(Result::ok).map(|p| p.id()).collect()
}

/// (runs, run time ns) of the programs loaded since `before` (another tool's, e.g. bpftrace).
pub fn new_program_stats(before: &HashSet<u32>) -> (u64, u64) {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| !before.contains(&p.id()))
        .fold((0, 0), |(n, t), p| (n + p.run_count(), t + p.run_time().as_nanos() as u64))
}

pub fn bpftrace(script: &str) -> Option<Child> {
    let mut child = Command::new("bpftrace").args(["-e", script]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().ok()?;
    let mut lines = BufReader::new(child.stdout.take()?).lines();
    if !lines.next().is_some_and(|l| l.is_ok_and(|l| l.contains("Attaching"))) {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        eprintln!("bpftrace did not attach: {}", err.lines().take(5).collect::<Vec<_>>().join(" | "));
        let _ = child.kill();
        return None;
    }
    std::thread::sleep(Duration::from_millis(200));
    Some(child)
}

/// A TCP echo server in namespace `server_ns` (at `server_addr`) and a client in
/// `client_ns` exchanging `n` 64-byte messages.
pub fn ping_pong(client_ns: &str, server_ns: &str, server_addr: &str, n: usize) {
    let port = crate::free_port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            in_netns(server_ns, || {
                let l = TcpListener::bind((server_addr, port)).expect("bind");
                tx.send(()).unwrap();
                let (mut c, _) = l.accept().expect("accept");
                let mut buf = [0u8; 64];
                while c.read_exact(&mut buf).is_ok() {
                    if c.write_all(&buf).is_err() {
                        break;
                    }
                }
            })
        });
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        in_netns(client_ns, || {
            let mut c = TcpStream::connect((server_addr, port)).expect("connect");
            c.set_nodelay(true).unwrap();
            let mut buf = [7u8; 64];
            for _ in 0..n {
                c.write_all(&buf).unwrap();
                c.read_exact(&mut buf).unwrap();
            }
        });
    });
}

/// 64-byte UDP datagrams from `client_addr` in `client_ns` to `server_addr` in `server_ns`
/// for `secs`: packets per second the server read.
pub fn udp_pps(client_ns: &str, client_addr: &str, server_ns: &str, server_addr: &str, secs: f64) -> f64 {
    let port = crate::free_port();
    let received = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            in_netns(server_ns, || {
                let u = UdpSocket::bind((server_addr, port)).expect("bind");
                u.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
                tx.send(()).unwrap();
                let mut buf = [0u8; 128];
                while !stop.load(Ordering::Relaxed) {
                    if u.recv(&mut buf).is_ok() {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        });
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        in_netns(client_ns, || {
            let u = UdpSocket::bind((client_addr, 0)).expect("bind");
            let payload = [1u8; 64];
            let warm = Instant::now() + Duration::from_millis(300);
            while Instant::now() < warm {
                let _ = u.send_to(&payload, (server_addr, port));
            }
            let r0 = received.load(Ordering::Relaxed);
            let started = Instant::now();
            let end = started + Duration::from_secs_f64(secs);
            while Instant::now() < end {
                for _ in 0..64 {
                    let _ = u.send_to(&payload, (server_addr, port));
                }
            }
            let got = received.load(Ordering::Relaxed) - r0;
            stop.store(true, Ordering::Relaxed);
            got as f64 / started.elapsed().as_secs_f64()
        })
    })
}
