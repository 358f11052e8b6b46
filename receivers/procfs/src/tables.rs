//! Which kernel counters each snmp/netstat probe exports, with their units and whether
//! KubeSkoop exports them (then under `kubeskoop_<probe>_<field in lowercase>`).

use podnet_pipeline::pdata::{KubeskoopName, MetricDef, MetricKind, intern};

use crate::snmp::snake_case;

#[derive(Clone, Copy, Debug)]
pub struct FieldSpec {
    pub field: &'static str,
    pub unit: &'static str,
    pub kind: MetricKind,
    pub kubeskoop: bool,
}

const fn c(field: &'static str, unit: &'static str) -> FieldSpec {
    FieldSpec { field, unit, kind: MetricKind::Counter, kubeskoop: true }
}
const fn g(field: &'static str, unit: &'static str) -> FieldSpec {
    FieldSpec { field, unit, kind: MetricKind::Gauge, kubeskoop: true }
}
/// Beyond KubeSkoop: exported with an OTel name only.
const fn beyond(field: &'static str, unit: &'static str) -> FieldSpec {
    FieldSpec { field, unit, kind: MetricKind::Counter, kubeskoop: false }
}

/// `Tcp:` of /proc/net/snmp.
pub const TCP: &[FieldSpec] = &[
    c("ActiveOpens", "{connection}"),
    c("PassiveOpens", "{connection}"),
    c("RetransSegs", "{segment}"),
    c("AttemptFails", "{connection}"),
    c("EstabResets", "{connection}"),
    g("CurrEstab", "{connection}"),
    c("InSegs", "{segment}"),
    c("OutSegs", "{segment}"),
    c("InErrs", "{segment}"),
    c("OutRsts", "{segment}"),
    beyond("InCsumErrors", "{segment}"),
];

/// `Udp:` of /proc/net/snmp.
pub const UDP: &[FieldSpec] = &[
    c("InDatagrams", "{datagram}"),
    c("NoPorts", "{datagram}"),
    c("InErrors", "{datagram}"),
    c("OutDatagrams", "{datagram}"),
    c("RcvbufErrors", "{datagram}"),
    c("SndbufErrors", "{datagram}"),
    c("InCsumErrors", "{datagram}"),
    c("IgnoredMulti", "{datagram}"),
];

/// `Ip:` of /proc/net/snmp. Forwarding, DefaultTTL and ReasmTimeout are settings.
pub const IP: &[FieldSpec] = &[
    g("Forwarding", "1"),
    g("DefaultTTL", "{hop}"),
    c("InReceives", "{packet}"),
    c("InHdrErrors", "{packet}"),
    c("InAddrErrors", "{packet}"),
    c("ForwDatagrams", "{packet}"),
    c("InUnknownProtos", "{packet}"),
    c("InDiscards", "{packet}"),
    c("InDelivers", "{packet}"),
    c("OutRequests", "{packet}"),
    c("OutDiscards", "{packet}"),
    c("OutNoRoutes", "{packet}"),
    g("ReasmTimeout", "s"),
    c("ReasmReqds", "{packet}"),
    c("ReasmOKs", "{packet}"),
    c("ReasmFails", "{packet}"),
    c("FragOKs", "{packet}"),
    c("FragFails", "{packet}"),
    c("FragCreates", "{packet}"),
];

/// `Udp6*` of /proc/net/snmp6 (beyond KubeSkoop, which reads IPv4 only).
pub const UDP6: &[FieldSpec] = &[
    beyond("InDatagrams", "{datagram}"),
    beyond("NoPorts", "{datagram}"),
    beyond("InErrors", "{datagram}"),
    beyond("OutDatagrams", "{datagram}"),
    beyond("RcvbufErrors", "{datagram}"),
    beyond("SndbufErrors", "{datagram}"),
    beyond("InCsumErrors", "{datagram}"),
    beyond("IgnoredMulti", "{datagram}"),
];

/// `Ip6*` of /proc/net/snmp6.
pub const IP6: &[FieldSpec] = &[
    beyond("InReceives", "{packet}"),
    beyond("InHdrErrors", "{packet}"),
    beyond("InTooBigErrors", "{packet}"),
    beyond("InNoRoutes", "{packet}"),
    beyond("InAddrErrors", "{packet}"),
    beyond("InUnknownProtos", "{packet}"),
    beyond("InTruncatedPkts", "{packet}"),
    beyond("InDiscards", "{packet}"),
    beyond("InDelivers", "{packet}"),
    beyond("OutForwDatagrams", "{packet}"),
    beyond("OutRequests", "{packet}"),
    beyond("OutDiscards", "{packet}"),
    beyond("OutNoRoutes", "{packet}"),
    beyond("ReasmReqds", "{packet}"),
    beyond("ReasmOKs", "{packet}"),
    beyond("ReasmFails", "{packet}"),
    beyond("FragOKs", "{packet}"),
    beyond("FragFails", "{packet}"),
    beyond("FragCreates", "{packet}"),
    beyond("InOctets", "By"),
    beyond("OutOctets", "By"),
];

/// The 32 `TcpExt:` counters KubeSkoop exports from /proc/net/netstat.
pub const TCPEXT: &[FieldSpec] = &[
    c("ListenDrops", "{packet}"),
    c("ListenOverflows", "{event}"),
    c("TCPSynRetrans", "{segment}"),
    c("TCPFastRetrans", "{segment}"),
    c("TCPRetransFail", "{segment}"),
    c("TCPTimeouts", "{event}"),
    c("TCPAbortOnClose", "{connection}"),
    c("TCPAbortOnMemory", "{connection}"),
    c("TCPAbortOnTimeout", "{connection}"),
    c("TCPAbortOnLinger", "{connection}"),
    c("TCPAbortOnData", "{connection}"),
    c("TCPAbortFailed", "{connection}"),
    c("TCPACKSkippedSynRecv", "{segment}"),
    c("TCPACKSkippedPAWS", "{segment}"),
    c("TCPACKSkippedSeq", "{segment}"),
    c("TCPACKSkippedFinWait2", "{segment}"),
    c("TCPACKSkippedTimeWait", "{segment}"),
    c("TCPACKSkippedChallenge", "{segment}"),
    c("TCPRcvQDrop", "{packet}"),
    c("TCPMemoryPressures", "{event}"),
    c("TCPMemoryPressuresChrono", "ms"),
    c("PAWSActive", "{packet}"),
    c("PAWSEstab", "{packet}"),
    c("EmbryonicRsts", "{connection}"),
    c("TCPWinProbe", "{segment}"),
    c("TCPKeepAlive", "{segment}"),
    c("TCPMTUPFail", "{event}"),
    c("TCPMTUPSuccess", "{event}"),
    c("TCPZeroWindowDrop", "{packet}"),
    c("TCPBacklogDrop", "{packet}"),
    c("PFMemallocDrop", "{packet}"),
    c("TCPWqueueTooBig", "{event}"),
];

/// The metric for one kernel field of `probe` (`tcp`, `tcpext`), read from `file`.
/// Names are built once per field and interned (the set of kernel fields is bounded).
pub fn metric_def(probe: &str, section: &str, file: &str, spec: &FieldSpec) -> MetricDef {
    MetricDef {
        name: intern(&format!("podnet.{probe}.{}", snake_case(spec.field))),
        description: intern(&format!("{section}: {} from /proc/<pid>/net/{file}.", spec.field)),
        unit: spec.unit,
        kind: spec.kind,
        kubeskoop: spec.kubeskoop.then(|| KubeskoopName::Same(intern(&format!("kubeskoop_{probe}_{}", spec.field.to_lowercase())))),
    }
}

/// A field not in the tables (the `all_fields` option): a counter with a generic unit.
pub fn extra_field(field: &str) -> FieldSpec {
    FieldSpec { field: intern(field), unit: "{event}", kind: MetricKind::Counter, kubeskoop: false }
}
