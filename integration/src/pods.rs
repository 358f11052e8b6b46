//! Test pods: network namespaces made with `ip netns`, joined by a veth pair (needs root).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;

/// Two `ip netns` namespaces, removed on drop.
pub struct Pods {
    pub a: String,
    pub b: String,
    /// The veth ends: `va` in `a` (10.213.0.1), `vb` in `b` (10.213.0.2).
    pub va: String,
    pub vb: String,
}

pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip (iproute2)");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

impl Pods {
    /// `tag` keeps the namespaces of tests running side by side apart.
    pub fn create(tag: &str) -> Pods {
        let id = std::process::id();
        let (va, vb) = (format!("pv{tag}a{id}"), format!("pv{tag}b{id}"));
        let pods = Pods { a: format!("pn-{tag}a-{id}"), b: format!("pn-{tag}b-{id}"), va: va.clone(), vb: vb.clone() };
        for ns in [&pods.a, &pods.b] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb]);
        ip(&["link", "set", &va, "netns", &pods.a]);
        ip(&["link", "set", &vb, "netns", &pods.b]);
        ip(&["-n", &pods.a, "addr", "add", "10.213.0.1/24", "dev", &va]);
        ip(&["-n", &pods.b, "addr", "add", "10.213.0.2/24", "dev", &vb]);
        ip(&["-n", &pods.a, "link", "set", &va, "up"]);
        ip(&["-n", &pods.b, "link", "set", &vb, "up"]);
        pods
    }
}

impl Drop for Pods {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Runs `f` on a thread that has entered namespace `name`: sockets it opens live there.
pub fn in_netns<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> T {
    in_netns_path(&format!("/run/netns/{name}"), f)
}

/// Runs `f` on a thread that has entered the namespace at `path` (`/proc/<pid>/ns/net`).
pub fn in_netns_path<T: Send>(path: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let ns = File::open(path).expect("open netns");
            // SAFETY: setns on this thread only; the fd is valid for the call.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("netns thread")
    })
}

/// Runs `nft <rule…>` inside namespace `ns`.
pub fn nft(ns: &str, rule: &[&str]) {
    let out = Command::new("ip").args(["netns", "exec", ns, "nft"]).args(rule).output().expect("nft (nftables)");
    assert!(out.status.success(), "nft {rule:?} in {ns}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A `sleep` in each test pod, so /proc shows the namespaces as a pod's would; killed on drop.
pub struct Sleepers(Vec<std::process::Child>);

impl Pods {
    pub fn sleepers(&self) -> Sleepers {
        Sleepers(
            [&self.a, &self.b]
                .iter()
                .map(|ns| Command::new("ip").args(["netns", "exec", ns, "sleep", "600"]).spawn().expect("sleeper"))
                .collect(),
        )
    }
}

impl Drop for Sleepers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
