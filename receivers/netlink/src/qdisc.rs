//! Queueing disciplines of a namespace's devices from rtnetlink (`RTM_GETQDISC`), with the
//! device names resolved in that same namespace (`RTM_GETLINK`). Only root qdiscs are
//! counted: a root `mq` already reports the sum of its children, so adding the children
//! would count packets twice.

use std::collections::HashMap;
use std::time::Duration;

use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage, TcStats2};
use netlink_sys::protocols::NETLINK_ROUTE;

use crate::dump::{self, DumpError, RawMessage};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct QdiscStats {
    pub device: String,
    pub kind: String,
    pub bytes: u64,
    pub packets: u64,
    pub drops: u64,
    pub overlimits: u64,
    pub requeues: u64,
    pub qlen: u64,
    pub backlog: u64,
}

fn request(msg: RouteNetlinkMessage) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut m = NetlinkMessage::new(header, msg.into());
    m.finalize();
    let mut buf = vec![0; m.buffer_len()];
    m.serialize(&mut buf);
    buf
}

fn route_messages(messages: &[RawMessage]) -> Result<Vec<RouteNetlinkMessage>, DumpError> {
    messages
        .iter()
        .map(|m| NetlinkMessage::<RouteNetlinkMessage>::deserialize(&m.bytes).map_err(|e| DumpError::Malformed(format!("rtnetlink: {e}"))))
        .filter_map(|r| match r {
            Ok(NetlinkMessage { payload: NetlinkPayload::InnerMessage(m), .. }) => Some(Ok(m)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
        .collect()
}

/// Device index → name from a link dump.
pub fn link_names(messages: &[RawMessage]) -> Result<HashMap<u32, String>, DumpError> {
    let mut names = HashMap::new();
    for m in route_messages(messages)? {
        if let RouteNetlinkMessage::NewLink(link) = m
            && let Some(name) = link.attributes.iter().find_map(|a| if let LinkAttribute::IfName(n) = a { Some(n.clone()) } else { None })
        {
            names.insert(link.header.index, name);
        }
    }
    Ok(names)
}

/// Root qdiscs with their statistics (TCA_STATS2, or the legacy TCA_STATS when absent).
pub fn parse_qdiscs(messages: &[RawMessage], names: &HashMap<u32, String>) -> Result<Vec<QdiscStats>, DumpError> {
    let mut out = Vec::new();
    for m in route_messages(messages)? {
        let RouteNetlinkMessage::NewQueueDiscipline(tc) = m else { continue };
        if tc.header.parent != TcHandle::ROOT {
            continue;
        }
        let index = tc.header.index as u32;
        let mut q = QdiscStats { device: names.get(&index).cloned().unwrap_or_else(|| format!("ifindex{index}")), ..Default::default() };
        let mut have_stats2 = false;
        for attr in &tc.attributes {
            match attr {
                TcAttribute::Kind(k) => q.kind = k.clone(),
                TcAttribute::Stats2(list) => {
                    for s in list {
                        match s {
                            TcStats2::Basic(b) => {
                                have_stats2 = true;
                                q.bytes = b.bytes;
                                q.packets = u64::from(b.packets);
                            }
                            TcStats2::Queue(qs) => {
                                have_stats2 = true;
                                q.qlen = u64::from(qs.qlen);
                                q.backlog = u64::from(qs.backlog);
                                q.drops = u64::from(qs.drops);
                                q.requeues = u64::from(qs.requeues);
                                q.overlimits = u64::from(qs.overlimits);
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if !have_stats2 && let Some(s) = tc.attributes.iter().find_map(|a| if let TcAttribute::Stats(s) = a { Some(s) } else { None }) {
            q.bytes = s.bytes;
            q.packets = u64::from(s.packets);
            q.drops = u64::from(s.drops);
            q.overlimits = u64::from(s.overlimits);
            q.qlen = u64::from(s.qlen);
            q.backlog = u64::from(s.backlog);
        }
        out.push(q);
    }
    Ok(out)
}

pub(crate) fn fixture_requests() -> Vec<(&'static str, isize, Vec<u8>)> {
    vec![
        ("rtnl_links.bin", NETLINK_ROUTE, request(RouteNetlinkMessage::GetLink(LinkMessage::default()))),
        ("rtnl_qdiscs.bin", NETLINK_ROUTE, request(RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default()))),
    ]
}

/// The root qdiscs of the calling thread's namespace.
pub fn collect(timeout: Duration) -> Result<Vec<QdiscStats>, DumpError> {
    let socket = dump::open(NETLINK_ROUTE, timeout)?;
    let names = link_names(&dump::dump(&socket, &request(RouteNetlinkMessage::GetLink(LinkMessage::default())), timeout)?)?;
    parse_qdiscs(&dump::dump(&socket, &request(RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default())), timeout)?, &names)
}
