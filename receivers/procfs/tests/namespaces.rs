//! Every probe over several namespaces of a fake /proc: one resource per namespace, node
//! level once, bad content reported for its namespace alone, vanished namespaces skipped.

use std::os::unix::fs::symlink;
use std::path::Path;

use podnet_pipeline::pdata::{ResourceMetrics, attr_string, keys, metric, number_value_f64};
use podnet_pipeline::scrape::Scraper;
use podnet_receiver_procfs::{ProcfsConfig, ProcfsScraper, SoftnetOptions, TcpextOptions};

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn fixture(p: &str) -> String {
    std::fs::read_to_string(format!("{FIX}/{p}")).unwrap()
}

/// A process `pid` in namespace `inode` with the captured files of this kernel.
fn process(root: &Path, pid: u32, inode: u64) {
    let dir = root.join(pid.to_string());
    std::fs::create_dir_all(dir.join("ns")).unwrap();
    std::fs::create_dir_all(dir.join("net")).unwrap();
    symlink(format!("net:[{inode}]"), dir.join("ns/net")).unwrap();
    std::fs::write(dir.join("stat"), format!("{pid} (p) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 500 0 0")).unwrap();
    for (file, fx) in [
        ("dev", "netdev/kernel-6.18.txt"),
        ("snmp", "snmp/kernel-6.18.txt"),
        ("snmp6", "snmp6/kernel-6.18.txt"),
        ("netstat", "netstat/kernel-6.18.txt"),
        ("sockstat", "sockstat/kernel-6.18.txt"),
        ("sockstat6", "sockstat/kernel-6.18-v6.txt"),
        ("softnet_stat", "softnet/kernel-6.18.txt"),
    ] {
        std::fs::write(dir.join("net").join(file), fixture(fx)).unwrap();
    }
    std::fs::write(
        dir.join("io"),
        format!("rchar: 1\nwchar: 2\nsyscr: {pid}\nsyscw: 10\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("fd")).unwrap();
    symlink("socket:[1]", dir.join("fd/3")).unwrap();
    symlink("/dev/null", dir.join("fd/0")).unwrap();
}

fn fake_node(root: &Path) {
    std::fs::write(root.join("stat"), "btime 1700000000\n").unwrap();
    process(root, 1, 100);
    process(root, 30, 100);
    process(root, 200, 222);
    process(root, 300, 333);
}

fn resource_of(rms: &[ResourceMetrics], inode: Option<u64>) -> &ResourceMetrics {
    rms.iter()
        .find(|r| attr_string(&r.resource.as_ref().unwrap().attributes, keys::NETNS_INODE) == inode.map(|i| i.to_string()))
        .unwrap_or_else(|| panic!("no resource for {inode:?}"))
}

fn value(r: &ResourceMetrics, name: &str) -> Option<f64> {
    r.scope_metrics.iter().flat_map(|s| &s.metrics).find(|m| m.name == name).and_then(|m| match &m.data {
        Some(metric::Data::Sum(s)) => s.data_points.first().map(number_value_f64),
        Some(metric::Data::Gauge(g)) => g.data_points.first().map(number_value_f64),
        _ => None,
    })
}

fn metric_names(r: &ResourceMetrics) -> Vec<String> {
    r.scope_metrics.iter().flat_map(|s| &s.metrics).map(|m| m.name.clone()).collect()
}

fn config(root: &Path) -> ProcfsConfig {
    ProcfsConfig { root_path: root.to_path_buf(), names_path: root.join("no-netns"), ..Default::default() }
}

#[test]
fn every_probe_for_every_namespace() {
    let dir = tempfile::tempdir().unwrap();
    fake_node(dir.path());
    let mut s = ProcfsScraper::new(config(dir.path()), "n1".into(), "procfs".into());
    let c = s.scrape();
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    let rms = c.metrics.resources();
    assert_eq!(rms.len(), 4, "three namespaces and the node");
    let host = resource_of(rms, Some(100));
    assert_eq!(attr_string(&host.resource.as_ref().unwrap().attributes, keys::NETNS_HOST).as_deref(), Some("true"));
    let pod = resource_of(rms, Some(222));
    assert_eq!(attr_string(&pod.resource.as_ref().unwrap().attributes, keys::NETNS_HOST), None);
    for r in [host, pod] {
        assert_eq!(value(r, "podnet.tcp.active_opens"), Some(1291.0));
        assert_eq!(value(r, "podnet.tcp.curr_estab"), Some(0.0));
        assert_eq!(value(r, "podnet.tcp.out_rsts"), Some(70.0));
        assert_eq!(value(r, "podnet.ip.default_ttl"), Some(64.0));
        assert!(value(r, "podnet.udp.no_ports").is_some());
        assert!(value(r, "podnet.udp6.no_ports").is_some());
        assert!(value(r, "podnet.ip6.in_receives").is_some());
        assert!(value(r, "podnet.tcpext.listen_drops").is_some());
        assert_eq!(value(r, "podnet.sock.sockets.used"), Some(8.0));
        assert_eq!(value(r, "podnet.sock.tcp.inuse"), Some(1.0));
        assert!(value(r, "podnet.softnet.processed").is_none(), "softnet is node level only");
        assert!(value(r, "podnet.sock.tcp.memory").is_none(), "global socket memory is node level only");
    }
    let tcpext: Vec<_> = metric_names(pod).into_iter().filter(|n| n.starts_with("podnet.tcpext.")).collect();
    assert_eq!(tcpext.len(), 32, "KubeSkoop's 32 TcpExt fields: {tcpext:?}");
    let node = resource_of(rms, None);
    assert_eq!(value(node, "podnet.softnet.processed"), Some((0x2102 + 0x3d1b) as f64));
    assert_eq!(value(node, "podnet.sock.tcp.memory"), Some(357.0));
    assert_eq!(metric_names(node).len(), 7);
    // Per-process probes sum the namespace's processes: 1 and 30 in the host's.
    assert_eq!(value(host, "podnet.io.read_syscalls"), Some(31.0));
    assert_eq!(value(host, "podnet.io.write_bytes"), Some(2.0 * 8192.0));
    assert_eq!(value(host, "podnet.fd.open"), Some(4.0));
    assert_eq!(value(host, "podnet.fd.sockets"), Some(2.0));
    assert_eq!(value(pod, "podnet.io.read_syscalls"), Some(200.0));
    // No IPVS in this kernel: unsupported, said once, not an error.
    assert_eq!(c.unsupported, vec![("ipvs", "no /proc/net/ip_vs_stats: IPVS is not loaded on this node".to_string())]);
    assert!(s.scrape().unsupported.is_empty(), "reported once");
}

#[test]
fn ipvs_on_the_host_only() {
    let dir = tempfile::tempdir().unwrap();
    fake_node(dir.path());
    for pid in [1, 200] {
        std::fs::write(dir.path().join(format!("{pid}/net/ip_vs_stats")), fixture("ipvs/ip_vs_stats.txt")).unwrap();
    }
    let c = ProcfsScraper::new(config(dir.path()), "n".into(), "procfs".into()).scrape();
    assert!(c.unsupported.is_empty());
    assert_eq!(value(resource_of(c.metrics.resources(), Some(100)), "podnet.ipvs.incoming_bytes"), Some(0x1a2b as f64));
    assert_eq!(value(resource_of(c.metrics.resources(), Some(100)), "podnet.ipvs.incoming_packets"), Some(0x3f as f64));
    assert!(value(resource_of(c.metrics.resources(), Some(222)), "podnet.ipvs.connections").is_none());
}

#[test]
fn all_fields_and_per_cpu_options() {
    let dir = tempfile::tempdir().unwrap();
    fake_node(dir.path());
    let cfg = ProcfsConfig { tcpext: TcpextOptions { all_fields: true }, softnet: SoftnetOptions { per_cpu: true }, ..config(dir.path()) };
    let c = ProcfsScraper::new(cfg, "n".into(), "procfs".into()).scrape();
    let pod = resource_of(c.metrics.resources(), Some(222));
    let names = metric_names(pod);
    assert!(names.iter().filter(|n| n.starts_with("podnet.tcpext.")).count() > 100);
    assert!(names.iter().any(|n| n == "podnet.ipext.in_octets"), "IpExt too");
    let node = resource_of(c.metrics.resources(), None);
    let cpu_points =
        node.scope_metrics.iter().flat_map(|s| &s.metrics).find(|m| m.name == "podnet.softnet.cpu.processed").map(|m| match &m.data {
            Some(metric::Data::Sum(s)) => s.data_points.len(),
            _ => 0,
        });
    assert_eq!(cpu_points, Some(2));
}

#[test]
fn bad_file_fails_only_that_probe_of_that_namespace() {
    let dir = tempfile::tempdir().unwrap();
    fake_node(dir.path());
    std::fs::write(dir.path().join("200/net/snmp"), fixture("snmp/truncated.txt")).unwrap();
    let c = ProcfsScraper::new(config(dir.path()), "n".into(), "procfs".into()).scrape();
    assert_eq!(c.errors.len(), 3, "tcp, udp and ip of namespace 222: {:?}", c.errors);
    assert!(c.errors[0].message.ends_with("/200/net/snmp: line 3: header line without a value line"), "{}", c.errors[0].message);
    let pod = resource_of(c.metrics.resources(), Some(222));
    assert!(value(pod, "podnet.tcp.active_opens").is_none());
    assert!(value(pod, "system.network.io").is_some(), "the other probes of that namespace still report");
    assert!(value(resource_of(c.metrics.resources(), Some(333)), "podnet.tcp.active_opens").is_some(), "other namespaces are untouched");
}

#[test]
fn a_namespace_that_vanishes_is_skipped_silently() {
    let dir = tempfile::tempdir().unwrap();
    fake_node(dir.path());
    // Process 300 exits after the scan: its files and ns link are gone when they are read.
    let mut s = ProcfsScraper::new(config(dir.path()), "n".into(), "procfs".into());
    assert_eq!(s.scrape().metrics.resources().len(), 4);
    std::fs::remove_dir_all(dir.path().join("300")).unwrap();
    let c = s.scrape();
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    assert_eq!(c.metrics.resources().len(), 3);
}
