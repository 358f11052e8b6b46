//! Golden fixtures: real netlink replies captured from a 6.18 kernel
//! (examples/capture_fixtures.rs), plus truncated and corrupted variants.

use podnet_receiver_netlink::dump::{self, DumpError};
use podnet_receiver_netlink::{conntrack, qdisc, tcpsummary};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).expect("fixture")
}

fn messages(name: &str) -> Vec<dump::RawMessage> {
    dump::split_messages(&fixture(name)).expect("fixture splits")
}

#[test]
fn sock_diag_capture() {
    let sockets = tcpsummary::parse(&messages("sock_diag_tcp4.bin")).unwrap();
    assert_eq!(sockets.len(), 91);
    let summary = tcpsummary::summarize(&sockets);
    assert_eq!(summary.by_state.values().sum::<u64>(), 91);
    assert!(summary.by_state.keys().all(|s| *s != "unknown"), "{:?}", summary.by_state);
    assert!(summary.by_state.contains_key("listen"));
    assert!(tcpsummary::parse(&messages("sock_diag_tcp6.bin")).unwrap().is_empty());
}

#[test]
fn rtnetlink_capture_resolves_names_and_keeps_root_qdiscs() {
    let names = qdisc::link_names(&messages("rtnl_links.bin")).unwrap();
    assert_eq!(names.get(&1).map(String::as_str), Some("lo"));
    let qdiscs = qdisc::parse_qdiscs(&messages("rtnl_qdiscs.bin"), &names).unwrap();
    let summary: Vec<_> = qdiscs.iter().map(|q| (q.device.as_str(), q.kind.as_str())).collect();
    assert_eq!(summary, [("lo", "noqueue"), ("eth0", "pfifo_fast")]);
    assert!(qdiscs[1].packets > 0 && qdiscs[1].bytes > qdiscs[1].packets, "{:?}", qdiscs[1]);
}

#[test]
fn ctnetlink_capture() {
    let counters = conntrack::parse_cpu(&messages("ctnetlink_stats_cpu.bin")).unwrap();
    let names: Vec<_> = counters.iter().map(|(n, _)| *n).collect();
    assert!(names.contains(&"found") && names.contains(&"drop") && names.contains(&"search_restart"), "{names:?}");
    let (entries, max) = conntrack::parse_global(&messages("ctnetlink_stats.bin")).unwrap();
    assert_eq!(max, Some(262144));
    assert!(entries.is_some());
}

#[test]
fn truncated_and_corrupted_replies_are_errors() {
    let mut bytes = fixture("rtnl_qdiscs.bin");
    bytes.truncate(bytes.len() - 10);
    assert!(matches!(dump::split_messages(&bytes), Err(DumpError::Malformed(_))));

    // A qdisc message whose attributes are cut short: the route parser refuses it.
    let mut msgs = messages("rtnl_qdiscs.bin");
    let last = msgs.last_mut().unwrap();
    last.bytes.truncate(last.bytes.len() - 6);
    let len = last.bytes.len() as u32;
    last.bytes[0..4].copy_from_slice(&len.to_ne_bytes());
    assert!(qdisc::parse_qdiscs(&msgs, &Default::default()).is_err());

    let mut diag = messages("sock_diag_tcp4.bin");
    diag[0].bytes.truncate(30);
    diag[0].bytes[0..4].copy_from_slice(&30u32.to_ne_bytes());
    assert!(matches!(tcpsummary::parse(&diag), Err(DumpError::Malformed(_))));
}
