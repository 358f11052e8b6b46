//! Golden-fixture tests for the snmp, netstat, snmp6, sockstat and softnet parsers: real
//! captures, plus malformed, truncated and unknown-field variants.

use podnet_receiver_procfs::{snmp, sockstat, softnet};

fn fixture(path: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"))).expect("fixture exists")
}

#[test]
fn snmp_real_capture() {
    let text_s = fixture("snmp/kernel-6.18.txt");
    let s = snmp::parse_sections(&text_s).unwrap();
    let names: Vec<_> = s.iter().map(|x| x.name).collect();
    assert_eq!(names, ["Ip", "Icmp", "IcmpMsg", "Tcp", "Udp", "UdpLite"]);
    let tcp = s.iter().find(|x| x.name == "Tcp").unwrap();
    assert_eq!(tcp.get("MaxConn"), Some(-1), "signed values are kept");
    assert_eq!(tcp.get("ActiveOpens"), Some(1291));
    assert_eq!(tcp.get("OutRsts"), Some(70));
    assert_eq!(s[0].get("OutTransmits"), Some(21932), "newer kernel fields parse like any other");
}

#[test]
fn snmp_unknown_sections_and_fields_are_kept_by_name() {
    let text_s = fixture("snmp/unknown-fields.txt");
    let s = snmp::parse_sections(&text_s).unwrap();
    assert_eq!(s[1].name, "Future");
    let tcp = &s[2];
    assert_eq!((tcp.get("ActiveOpens"), tcp.get("CurrEstab"), tcp.get("NewThing")), (Some(5), Some(3), Some(9)));
}

#[test]
fn snmp_bad_files() {
    assert_eq!(snmp::parse_sections(&fixture("snmp/truncated.txt")).unwrap_err().to_string(), "line 3: header line without a value line");
    assert_eq!(
        snmp::parse_sections(&fixture("snmp/count-mismatch.txt")).unwrap_err().to_string(),
        "line 2: section Tcp: 3 names but 2 values"
    );
    assert_eq!(
        snmp::parse_sections(&fixture("snmp/not-a-number.txt")).unwrap_err().to_string(),
        "line 2: Tcp:PassiveOpens: \"x6\" is not a number"
    );
    assert_eq!(
        snmp::parse_sections(&fixture("snmp/crossed-sections.txt")).unwrap_err().to_string(),
        "line 2: value line of section \"Udp\" follows header of \"Tcp\""
    );
}

#[test]
fn netstat_real_capture_and_truncation() {
    let text_s = fixture("netstat/kernel-6.18.txt");
    let s = snmp::parse_sections(&text_s).unwrap();
    let names: Vec<_> = s.iter().map(|x| x.name).collect();
    assert_eq!(names, ["TcpExt", "IpExt", "MPTcpExt"]);
    assert!(s[0].fields.len() > 100);
    assert!(s[0].get("TCPWqueueTooBig").is_some());
    assert!(snmp::parse_sections(&fixture("netstat/truncated.txt")).unwrap_err().to_string().contains("names but"));
}

#[test]
fn snmp6_real_capture_and_malformed() {
    let text_s = fixture("snmp6/kernel-6.18.txt");
    let s = snmp::parse_snmp6(&text_s).unwrap();
    let names: Vec<_> = s.iter().map(|x| x.name).collect();
    assert_eq!(names, ["Ip6", "Icmp6", "Udp6", "UdpLite6"]);
    let udp6 = s.iter().find(|x| x.name == "Udp6").unwrap();
    assert!(udp6.get("NoPorts").is_some() && udp6.get("InDatagrams").is_some());
    assert_eq!(snmp::parse_snmp6(&fixture("snmp6/malformed.txt")).unwrap_err().to_string(), "line 2: expected \"Name value\"");
}

#[test]
fn sockstat_real_and_malformed() {
    let v4 = sockstat::parse(&fixture("sockstat/kernel-6.18.txt")).unwrap();
    assert_eq!(sockstat::get(&v4, "sockets", "used"), Some(8));
    assert_eq!(sockstat::get(&v4, "TCP", "mem"), Some(357));
    assert_eq!(sockstat::get(&v4, "FRAG", "memory"), Some(0));
    let v6 = sockstat::parse(&fixture("sockstat/kernel-6.18-v6.txt")).unwrap();
    assert_eq!(sockstat::get(&v6, "TCP6", "inuse"), Some(0));
    assert_eq!(sockstat::parse(&fixture("sockstat/malformed.txt")).unwrap_err().to_string(), "line 2: TCP: keys and values do not pair up");
}

#[test]
fn softnet_columns_across_kernels() {
    let new = softnet::parse(&fixture("softnet/kernel-6.18.txt")).unwrap();
    assert_eq!(new.len(), 2);
    assert_eq!((new[0].cpu, new[0].processed), (0, 0x2102));
    assert_eq!((new[1].cpu, new[1].processed), (1, 0x3d1b), "the CPU index column is used");
    let old = softnet::parse(&fixture("softnet/kernel-5.4-11-columns.txt")).unwrap();
    assert_eq!(old[0], softnet::CpuSoftnet { cpu: 0, processed: 0xa0b1, dropped: 2, time_squeeze: 3 });
    assert_eq!(old[1].cpu, 1, "without an index column, rows count CPUs");
    assert_eq!(softnet::parse(&fixture("softnet/bad-hex.txt")).unwrap_err().to_string(), "line 1: \"0000zz00\" is not hexadecimal");
}

#[test]
fn ipvs_totals_are_hexadecimal_and_bytes_are_not_packets() {
    let t = podnet_receiver_procfs::parse_ipvs(&fixture("ipvs/ip_vs_stats.txt")).unwrap();
    assert_eq!(t, [2, 0x3f, 5, 0x1a2b, 0xff]);
    assert_eq!(podnet_receiver_procfs::parse_ipvs(&fixture("ipvs/truncated.txt")).unwrap_err(), "line 3: expected 5 totals, found 2");
}
