//! Text files podnet reads from /proc and /sys of every namespace. The first line names the
//! file (`netdev`, `snmp`, `snmp6`, `netstat`, `sockstat`, `softnet`, `ipvs`, `kallsyms`,
//! `cgroup`), the rest is its content: any content gives a value or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podnet_receiver_procfs::{netdev, snmp, sockstat, softnet};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (file, content) = text.split_once('\n').unwrap_or((text, ""));
    match file {
        "netdev" => drop(netdev::parse(content)),
        "snmp" | "netstat" => drop(snmp::parse_sections(content)),
        "snmp6" => drop(snmp::parse_snmp6(content)),
        "sockstat" => drop(sockstat::parse(content)),
        "softnet" => drop(softnet::parse(content)),
        "ipvs" => drop(podnet_receiver_procfs::parse_ipvs(content)),
        "cgroup" => drop(podnet_netns::cgroup::pod_uid(content)),
        "kallsyms" => {
            let path = std::path::Path::new("/proc/kallsyms");
            if let Ok(k) = podnet_receiver_ebpf::kallsyms::Kallsyms::from_reader(path, content.as_bytes()) {
                for addr in [0, 1, 0xffffffff81000000, 0xffffffff81000100, u64::MAX] {
                    drop(k.resolve(addr));
                }
            }
        }
        _ => {}
    }
});
