//! Every procfs probe, one table entry each, as node_exporter registers its collectors:
//! the name users configure, where it reads, what it costs, and the functions that read it
//! per namespace and for the node. Adding a probe is adding an entry here (and its
//! function in `probes.rs`).

use podnet_netns::Namespace;
use podnet_pipeline::component::{Overhead, ProbeInfo};

use crate::ProcfsConfig;
use crate::probes::{self, Defs, Emit, NsFiles, ProbeError};

/// What a probe's read function gets: the namespace, its files (read once for all
/// probes), the writer for its points, the receiver's metric definitions and config.
pub struct ProbeInput<'a, 'p, 'r> {
    pub ns: &'a Namespace,
    pub files: &'a NsFiles<'a>,
    pub out: &'a mut Emit<'p, 'r>,
    pub defs: &'a mut Defs,
    pub config: &'a ProcfsConfig,
}

/// How a read ended when it did not fail.
pub enum Read {
    Done,
    /// The kernel cannot serve this probe (a module not loaded): reported once and not
    /// asked again.
    Unsupported(String),
}

pub type ReadFn = fn(&mut ProbeInput<'_, '_, '_>) -> Result<Read, ProbeError>;

pub struct ProbeSpec {
    pub info: ProbeInfo,
    /// Read for each namespace (for the host's only, when `host_only`).
    pub namespace: Option<ReadFn>,
    pub host_only: bool,
    /// Reads the namespace's processes: in the host namespace, each host-network pod's
    /// processes are read apart and counted as that pod's.
    pub processes: bool,
    /// Read once per collection for the node, from the host namespace.
    pub node: Option<ReadFn>,
}

const fn spec(name: &'static str, data_source: &'static str, overhead: Overhead) -> ProbeSpec {
    ProbeSpec { info: ProbeInfo { name, data_source, overhead }, namespace: None, host_only: false, processes: false, node: None }
}

fn done(r: Result<(), ProbeError>) -> Result<Read, ProbeError> {
    r.map(|()| Read::Done)
}

pub const PROBES: &[ProbeSpec] = &[
    ProbeSpec {
        namespace: Some(|i| done(probes::netdev(i.files, i.out, i.config.netdev.per_device))),
        ..spec("netdev", "/proc/<pid>/net/dev", Overhead::Low)
    },
    ProbeSpec {
        namespace: Some(|i| done(probes::snmp_probe("tcp", i.files, i.out, i.defs))),
        ..spec("tcp", "/proc/<pid>/net/snmp (Tcp)", Overhead::Low)
    },
    ProbeSpec {
        namespace: Some(|i| done(probes::snmp_probe("udp", i.files, i.out, i.defs))),
        ..spec("udp", "/proc/<pid>/net/snmp (Udp)", Overhead::Low)
    },
    ProbeSpec {
        namespace: Some(|i| done(probes::snmp_probe("ip", i.files, i.out, i.defs))),
        ..spec("ip", "/proc/<pid>/net/snmp (Ip)", Overhead::Low)
    },
    ProbeSpec {
        namespace: Some(|i| done(probes::snmp6_probe("udp6", i.files, i.out, i.defs))),
        ..spec("udp6", "/proc/<pid>/net/snmp6 (Udp6)", Overhead::Low)
    },
    ProbeSpec {
        namespace: Some(|i| done(probes::snmp6_probe("ip6", i.files, i.out, i.defs))),
        ..spec("ip6", "/proc/<pid>/net/snmp6 (Ip6)", Overhead::Low)
    },
    ProbeSpec {
        namespace: Some(|i| done(probes::tcpext(i.files, i.out, i.defs, i.config.tcpext.all_fields))),
        ..spec("tcpext", "/proc/<pid>/net/netstat (TcpExt, IpExt)", Overhead::Low)
    },
    ProbeSpec {
        namespace: Some(|i| done(probes::sock(i.files, i.out))),
        node: Some(|i| done(probes::sock_node(i.files, i.out))),
        ..spec("sock", "/proc/<pid>/net/sockstat, sockstat6", Overhead::Low)
    },
    ProbeSpec {
        node: Some(|i| done(probes::softnet(i.files, i.out, i.config.softnet.per_cpu))),
        ..spec("softnet", "/proc/net/softnet_stat (node level)", Overhead::Low)
    },
    ProbeSpec {
        namespace: Some(|i| {
            Ok(match probes::ipvs(i.files, i.out)? {
                true => Read::Done,
                false => Read::Unsupported("no /proc/net/ip_vs_stats: IPVS is not loaded on this node".into()),
            })
        }),
        host_only: true,
        ..spec("ipvs", "/proc/net/ip_vs_stats (host namespace)", Overhead::Low)
    },
    ProbeSpec {
        namespace: Some(|i| done(probes::io(i.ns, i.out))),
        processes: true,
        ..spec("io", "/proc/<pid>/io of the namespace's processes", Overhead::Low)
    },
    ProbeSpec {
        namespace: Some(|i| done(probes::fd(i.ns, i.out))),
        processes: true,
        ..spec("fd", "/proc/<pid>/fd of the namespace's processes", Overhead::Medium)
    },
];

podnet_pipeline::probe_table!(
    /// The procfs table, for [`podnet_pipeline::probe::Probe`].
    Procfs,
    ProbeSpec,
    PROBES,
    PROBE_INFOS
);

/// A procfs probe by name.
pub type Probe = podnet_pipeline::probe::Probe<Procfs>;

/// `netdev` for tests and callers that name one probe.
pub fn probe(name: &str) -> Probe {
    Probe::named(name).unwrap_or_else(|| panic!("no procfs probe named {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_probe_has_a_unique_name_and_something_to_read() {
        let mut names: Vec<&str> = PROBES.iter().map(|p| p.info.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PROBES.len(), "duplicate probe names");
        for p in PROBES {
            assert!(p.namespace.is_some() || p.node.is_some(), "{} reads nothing", p.info.name);
            assert!(!(p.processes && p.node.is_some()), "{}: process probes are per namespace", p.info.name);
        }
        assert_eq!(PROBE_INFOS.map(|i| i.name).to_vec(), PROBES.iter().map(|p| p.info.name).collect::<Vec<_>>());
    }

    #[test]
    fn probes_are_configured_by_name() {
        let parsed: Vec<Probe> = serde_json::from_str(r#"["netdev", "fd"]"#).unwrap();
        assert_eq!(parsed, [probe("netdev"), probe("fd")]);
        assert_eq!(serde_json::to_string(&parsed).unwrap(), r#"["netdev","fd"]"#);
        let err = serde_json::from_str::<Vec<Probe>>(r#"["nope"]"#).unwrap_err().to_string();
        assert!(
            err.starts_with("unknown value \"nope\" (valid values: netdev, tcp, udp, ip, udp6, ip6, tcpext, sock, softnet, ipvs, io, fd)"),
            "{err}"
        );
    }
}
