//! Golden-fixture tests for the /proc/net/dev parser, in the manner of node_exporter:
//! real captures plus malformed, truncated and unknown-field variants.

use podnet_receiver_procfs::netdev::{self, DeviceCounters, NetDevError};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/netdev/{name}", env!("CARGO_MANIFEST_DIR"))).expect("fixture exists")
}

#[test]
fn real_kernel_capture() {
    let devices = netdev::parse(&fixture("kernel-6.18.txt")).unwrap();
    let names: Vec<_> = devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["lo", "ifb0", "ifb1", "eth0"]);
    let eth0 = &devices[3].counters;
    assert_eq!(*eth0, DeviceCounters { rx_bytes: 50118222, rx_packets: 3012, tx_bytes: 201274, tx_packets: 1732, ..Default::default() });
    let sum = netdev::sum_without_loopback(&devices);
    assert_eq!(sum.rx_bytes, 50118222, "loopback is excluded from the namespace sum");
}

#[test]
fn counters_wider_than_the_column_touch_the_colon() {
    let devices = netdev::parse(&fixture("wide-counters.txt")).unwrap();
    assert_eq!(devices[1].name, "vethabcdef12");
    assert_eq!(devices[1].counters.rx_bytes, 12345678901);
    assert_eq!(devices[1].counters.tx_bytes, 23456789012);
    assert_eq!(devices[2].counters.rx_bytes, 987654321012);
    let sum = netdev::sum_without_loopback(&devices);
    assert_eq!(sum.rx_errors, 6);
    assert_eq!(sum.rx_dropped, 8);
    assert_eq!(sum.tx_errors, 10);
    assert_eq!(sum.tx_dropped, 12);
}

#[test]
fn extra_columns_from_a_future_kernel_are_ignored() {
    let devices = netdev::parse(&fixture("extra-columns.txt")).unwrap();
    let sum = netdev::sum_without_loopback(&devices);
    assert_eq!((sum.rx_bytes, sum.rx_packets, sum.tx_bytes, sum.tx_packets), (150, 15, 250, 25));
    assert_eq!((sum.rx_errors, sum.rx_dropped, sum.tx_errors, sum.tx_dropped), (1, 2, 3, 4));
}

#[test]
fn truncated_line_is_an_error_naming_the_line_and_device() {
    assert_eq!(netdev::parse(&fixture("truncated.txt")).unwrap_err().to_string(), "line 4: device eth0: expected 16 counters, found 4");
}

#[test]
fn non_numeric_counter_is_an_error() {
    assert_eq!(
        netdev::parse(&fixture("not-a-number.txt")).unwrap_err().to_string(),
        "line 3: device eth0: counter \"30x2\" is not a number"
    );
}

#[test]
fn files_that_are_not_net_dev() {
    assert_eq!(netdev::parse(&fixture("no-header.txt")), Err(NetDevError::NoHeader));
    assert_eq!(netdev::parse(&fixture("empty.txt")), Err(NetDevError::NoHeader));
}
