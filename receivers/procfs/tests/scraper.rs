//! The scraper against a fake proc root: what it emits, and how bad input is reported
//! without losing the rest.

use std::os::unix::fs::symlink;
use std::path::Path;

use podnet_pipeline::pdata::{attr_string, keys, metric, number_value_f64};
use podnet_pipeline::scrape::Scraper;
use podnet_receiver_procfs::{NetdevOptions, ProcfsConfig, ProcfsScraper, probe};

fn fake_proc(root: &Path, netdev: &str) {
    std::fs::create_dir_all(root.join("1/ns")).unwrap();
    std::fs::create_dir_all(root.join("1/net")).unwrap();
    symlink("net:[4026531840]", root.join("1/ns/net")).unwrap();
    std::fs::write(root.join("1/net/dev"), netdev).unwrap();
    std::fs::write(root.join("stat"), "cpu 1 2 3\nbtime 1700000000\n").unwrap();
}

fn config(root: &Path, per_device: bool) -> ProcfsConfig {
    ProcfsConfig {
        root_path: root.to_path_buf(),
        netdev: NetdevOptions { per_device },
        probes: vec![probe("netdev")],
        ..Default::default()
    }
}

fn point(m: &podnet_pipeline::Metrics, name: &str, direction: &str, device: Option<&str>) -> Option<(f64, u64)> {
    for r in m.resources() {
        for s in &r.scope_metrics {
            for metric in s.metrics.iter().filter(|x| x.name == name) {
                let Some(metric::Data::Sum(sum)) = &metric.data else { panic!("{name} is not a sum") };
                assert!(sum.is_monotonic);
                for dp in &sum.data_points {
                    if attr_string(&dp.attributes, keys::NETWORK_IO_DIRECTION).as_deref() == Some(direction)
                        && attr_string(&dp.attributes, keys::NETWORK_INTERFACE_NAME).as_deref() == device
                    {
                        return Some((number_value_f64(dp), dp.start_time_unix_nano));
                    }
                }
            }
        }
    }
    None
}

#[test]
fn host_namespace_sum_and_resource() {
    let dir = tempfile::tempdir().unwrap();
    fake_proc(dir.path(), include_str!("fixtures/netdev/wide-counters.txt"));
    let mut s = ProcfsScraper::new(config(dir.path(), false), "node-a".into(), "procfs".into());
    let c = s.scrape();
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    assert_eq!(c.metrics.resources().len(), 1);
    let res = c.metrics.resources()[0].resource.as_ref().unwrap();
    assert_eq!(attr_string(&res.attributes, keys::K8S_NODE_NAME).as_deref(), Some("node-a"));
    assert_eq!(attr_string(&res.attributes, keys::NETNS_INODE).as_deref(), Some("4026531840"));
    assert_eq!(attr_string(&res.attributes, keys::NETNS_HOST).as_deref(), Some("true"));
    let (rx, start) = point(&c.metrics, "system.network.io", "receive", None).unwrap();
    assert_eq!(rx, (12345678901u64 + 987654321012) as f64);
    assert_eq!(start, 1_700_000_000_000_000_000, "host counters start at boot");
    assert_eq!(point(&c.metrics, "system.network.packet.dropped", "transmit", None).unwrap().0, 12.0);
    assert_eq!(c.metrics.point_count(), 8);
}

#[test]
fn per_device_option_adds_device_points() {
    let dir = tempfile::tempdir().unwrap();
    fake_proc(dir.path(), include_str!("fixtures/netdev/wide-counters.txt"));
    let mut s = ProcfsScraper::new(config(dir.path(), true), "n".into(), "procfs".into());
    let c = s.scrape();
    assert_eq!(point(&c.metrics, "podnet.netdev.device.io", "transmit", Some("vethabcdef12")).unwrap().0, 23456789012.0);
    assert!(point(&c.metrics, "podnet.netdev.device.io", "receive", Some("lo")).is_none());
    assert!(
        point(&c.metrics, "system.network.io", "transmit", Some("vethabcdef12")).is_none(),
        "namespace sums and devices are separate metrics"
    );
    assert_eq!(c.metrics.point_count(), 8 + 2 * 8);
}

#[test]
fn counter_reset_moves_the_start_time() {
    let dir = tempfile::tempdir().unwrap();
    fake_proc(dir.path(), include_str!("fixtures/netdev/wide-counters.txt"));
    let mut s = ProcfsScraper::new(config(dir.path(), false), "n".into(), "procfs".into());
    let first = s.scrape();
    let (_, start1) = point(&first.metrics, "system.network.io", "receive", None).unwrap();
    // A device went away: the namespace sum goes down.
    std::fs::write(dir.path().join("1/net/dev"), include_str!("fixtures/netdev/kernel-6.18.txt")).unwrap();
    let second = s.scrape();
    let (rx, start2) = point(&second.metrics, "system.network.io", "receive", None).unwrap();
    assert_eq!(rx, 50118222.0);
    assert!(start2 > start1, "a reset starts a new series start time");
}

#[test]
fn malformed_file_is_a_clear_error_and_nothing_half_summed() {
    let dir = tempfile::tempdir().unwrap();
    fake_proc(dir.path(), include_str!("fixtures/netdev/truncated.txt"));
    let mut s = ProcfsScraper::new(config(dir.path(), false), "n".into(), "procfs".into());
    let c = s.scrape();
    assert!(c.metrics.resources().is_empty());
    assert_eq!(c.errors.len(), 1);
    assert_eq!(c.errors[0].message, format!("{}/1/net/dev: line 4: device eth0: expected 16 counters, found 4", dir.path().display()));
}

#[test]
fn vanished_namespace_file_is_a_read_error() {
    let dir = tempfile::tempdir().unwrap();
    fake_proc(dir.path(), "");
    std::fs::remove_file(dir.path().join("1/net/dev")).unwrap();
    let mut s = ProcfsScraper::new(config(dir.path(), false), "n".into(), "procfs".into());
    let c = s.scrape();
    assert_eq!(c.errors[0].class, "read");
    assert!(c.errors[0].message.contains("No such file"), "{}", c.errors[0].message);
}

#[test]
fn real_proc_matches_a_direct_read() {
    // The host namespace of this machine, read the way a user would check it.
    let mut s = ProcfsScraper::new(
        ProcfsConfig { probes: vec![probe("netdev")], namespaces: podnet_receiver_procfs::Namespaces::Host, ..Default::default() },
        "n".into(),
        "procfs".into(),
    );
    let c = s.scrape();
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    let direct = podnet_receiver_procfs::netdev::parse(&std::fs::read_to_string("/proc/1/net/dev").unwrap()).unwrap();
    let expected = podnet_receiver_procfs::netdev::sum_without_loopback(&direct);
    let (rx, _) = point(&c.metrics, "system.network.io", "receive", None).unwrap();
    // Traffic may flow between the two reads; the scrape came first.
    assert!(rx <= expected.rx_bytes as f64 && rx > 0.0 || expected.rx_bytes == 0);
}
