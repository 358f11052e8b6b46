//! Connection tracking statistics from ctnetlink: the per-CPU counters summed, the number
//! of entries and the table's limit.

use std::time::Duration;

use crate::dump::{self, DumpError, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, RawMessage};

const NETLINK_NETFILTER: isize = 12;
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET_STATS_CPU: u16 = 4;
const IPCTNL_MSG_CT_GET_STATS: u16 = 5;

/// `enum ctattr_stats_cpu` of linux/netfilter/nfnetlink_conntrack.h, with our names.
pub const CPU_FIELDS: &[(u16, &str)] = &[
    (2, "found"),
    (4, "invalid"),
    (5, "ignore"),
    (8, "insert"),
    (9, "insert_failed"),
    (10, "drop"),
    (11, "early_drop"),
    (12, "error"),
    (13, "search_restart"),
    (14, "clash_resolve"),
    (15, "chain_toolong"),
];
const CTA_STATS_GLOBAL_ENTRIES: u16 = 1;
const CTA_STATS_GLOBAL_MAX_ENTRIES: u16 = 2;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConntrackStats {
    /// Counter name → sum over CPUs; only the counters this kernel reports.
    pub counters: Vec<(&'static str, u64)>,
    pub entries: Option<u64>,
    pub max_entries: Option<u64>,
}

/// The per-CPU statistics are a dump (one message per CPU, then DONE); the global ones a
/// single reply, so that request asks for an acknowledgement to know where it ends.
fn request(kind: u16) -> Vec<u8> {
    let flags = if kind == IPCTNL_MSG_CT_GET_STATS_CPU { NLM_F_REQUEST | NLM_F_DUMP } else { NLM_F_REQUEST | NLM_F_ACK };
    // struct nfgenmsg { family = AF_UNSPEC, version = NFNETLINK_V0, res_id = 0 }
    dump::request((NFNL_SUBSYS_CTNETLINK << 8) | kind, flags, &[0, 0, 0, 0])
}

fn be32(payload: &[u8]) -> Result<u64, DumpError> {
    payload
        .get(0..4)
        .map(|b| u64::from(u32::from_be_bytes(b.try_into().expect("4 bytes"))))
        .ok_or_else(|| DumpError::Malformed("short u32 attribute".into()))
}

/// Sums the per-CPU replies (one message per CPU, attributes after the 4-byte nfgenmsg).
pub fn parse_cpu(messages: &[RawMessage]) -> Result<Vec<(&'static str, u64)>, DumpError> {
    let mut sums: Vec<(&'static str, u64)> = Vec::new();
    for m in messages {
        let attrs = dump::attributes(m.payload.get(4..).ok_or_else(|| DumpError::Malformed("missing nfgenmsg".into()))?)?;
        for (kind, payload) in attrs {
            if let Some((_, name)) = CPU_FIELDS.iter().find(|(k, _)| *k == kind) {
                let v = be32(payload)?;
                match sums.iter_mut().find(|(n, _)| n == name) {
                    Some(e) => e.1 += v,
                    None => sums.push((name, v)),
                }
            }
        }
    }
    sums.sort_by_key(|(n, _)| CPU_FIELDS.iter().position(|(_, f)| f == n));
    Ok(sums)
}

pub fn parse_global(messages: &[RawMessage]) -> Result<(Option<u64>, Option<u64>), DumpError> {
    let (mut entries, mut max) = (None, None);
    for m in messages {
        for (kind, payload) in dump::attributes(m.payload.get(4..).ok_or_else(|| DumpError::Malformed("missing nfgenmsg".into()))?)? {
            match kind {
                CTA_STATS_GLOBAL_ENTRIES => entries = Some(be32(payload)?),
                CTA_STATS_GLOBAL_MAX_ENTRIES => max = Some(be32(payload)?),
                _ => {}
            }
        }
    }
    Ok((entries, max))
}

pub(crate) fn fixture_requests() -> Vec<(&'static str, isize, Vec<u8>)> {
    vec![
        ("ctnetlink_stats_cpu.bin", NETLINK_NETFILTER, request(IPCTNL_MSG_CT_GET_STATS_CPU)),
        ("ctnetlink_stats.bin", NETLINK_NETFILTER, request(IPCTNL_MSG_CT_GET_STATS)),
    ]
}

/// The calling thread's namespace's conntrack statistics.
pub fn collect(timeout: Duration) -> Result<ConntrackStats, DumpError> {
    let socket = dump::open(NETLINK_NETFILTER, timeout)?;
    let counters = parse_cpu(&dump::dump(&socket, &request(IPCTNL_MSG_CT_GET_STATS_CPU), timeout)?)?;
    let (entries, max_entries) = parse_global(&dump::dump(&socket, &request(IPCTNL_MSG_CT_GET_STATS), timeout)?)?;
    Ok(ConntrackStats { counters, entries, max_entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, v: u32) -> Vec<u8> {
        let mut a = vec![8, 0];
        a.extend(kind.to_ne_bytes());
        a.extend(v.to_be_bytes());
        a
    }

    fn msg(attrs: &[Vec<u8>]) -> RawMessage {
        let mut body = vec![0, 0, 0, 0];
        for a in attrs {
            body.extend(a);
        }
        let bytes = dump::request(0x104, 0, &body);
        RawMessage { kind: 0x104, payload: bytes[16..].to_vec(), bytes }
    }

    #[test]
    fn per_cpu_counters_are_summed_big_endian() {
        let cpu0 = msg(&[attr(2, 5), attr(10, 1), attr(99, 7)]);
        let cpu1 = msg(&[attr(2, 7), attr(10, 2), attr(8, 3)]);
        assert_eq!(parse_cpu(&[cpu0, cpu1]).unwrap(), vec![("found", 12), ("insert", 3), ("drop", 3)]);
    }

    #[test]
    fn global_entries_and_limit() {
        assert_eq!(parse_global(&[msg(&[attr(1, 42), attr(2, 262144)])]).unwrap(), (Some(42), Some(262144)));
    }

    #[test]
    fn a_reply_without_nfgenmsg_is_malformed() {
        let bad = RawMessage { kind: 0x104, payload: vec![0, 0], bytes: vec![] };
        assert!(matches!(parse_cpu(&[bad]), Err(DumpError::Malformed(_))));
    }
}
