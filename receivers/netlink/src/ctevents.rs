//! Conntrack events per network namespace (KubeSkoop's `conntrack` event probe, which
//! crashes KubeSkoop itself): a ctnetlink socket subscribed to the new/update/destroy
//! multicast groups in each namespace, read as the kernel writes, each event a log record
//! (`ConntrackNew`, `ConntrackUpdate`, `ConntrackDestroy`) with its tuple, rate-limited per
//! namespace. The socket is opened inside the namespace and keeps listening there after the
//! opening thread leaves it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use podnet_netns::{Namespace, NamespaceSource};
use podnet_pipeline::component::ComponentContext;
use podnet_pipeline::fanout::Outputs;
use podnet_pipeline::pdata::{
    AnyValue, KeyValue, LogRecord, LogsBuilder, PData, Signal, any_value, keys, kv_bool, kv_int, kv_str, network_transport, now_unix_nanos,
};
use serde::{Deserialize, Serialize};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio_util::sync::CancellationToken;

use crate::dump::attributes;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    New,
    Update,
    Destroy,
}

impl Kind {
    /// KubeSkoop's event type.
    pub fn event_type(self) -> &'static str {
        match self {
            Kind::New => "ConntrackNew",
            Kind::Update => "ConntrackUpdate",
            Kind::Destroy => "ConntrackDestroy",
        }
    }
    /// The multicast group (`NFNLGRP_CONNTRACK_*`, legacy bitmask form).
    fn group(self) -> u32 {
        match self {
            Kind::New => 1,
            Kind::Update => 2,
            Kind::Destroy => 4,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConntrackEventsConfig {
    /// Which events to report; updates are the chattiest (every TCP state change).
    pub types: Vec<Kind>,
    /// Per namespace; the rest are counted as dropped (`rate_limited`).
    pub events_per_second: u32,
}

impl Default for ConntrackEventsConfig {
    fn default() -> Self {
        ConntrackEventsConfig { types: vec![Kind::New, Kind::Destroy], events_per_second: 100 }
    }
}

/// One conntrack event, the original direction's tuple.
#[derive(Clone, Debug, PartialEq)]
pub struct CtEvent {
    pub kind: Kind,
    pub l4proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    /// The other side has answered (`IPS_SEEN_REPLY`).
    pub replied: bool,
    /// TCP's conntrack state (`TCP_CONNTRACK_*`), when the kernel says.
    pub tcp_state: Option<u8>,
}

const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_EXCL: u16 = 0x200;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_PROTOINFO: u16 = 4;
const CTA_STATUS: u16 = 3;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_PROTOINFO_TCP: u16 = 1;
const CTA_PROTOINFO_TCP_STATE: u16 = 1;
const IPS_SEEN_REPLY: u32 = 1 << 1;

fn be_u16(b: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(..2)?.try_into().ok()?))
}

fn be_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

fn address(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

/// One ctnetlink message (header included) as an event; `Ok(None)` for messages that are
/// not conntrack entries (expectations, other subsystems).
pub fn parse(msg: &[u8]) -> Result<Option<CtEvent>, String> {
    let header = msg.get(..16).ok_or("shorter than a netlink header")?;
    let len = u32::from_ne_bytes(header[..4].try_into().map_err(|_| "header")?) as usize;
    let kind = u16::from_ne_bytes(header[4..6].try_into().map_err(|_| "header")?);
    let flags = u16::from_ne_bytes(header[6..8].try_into().map_err(|_| "header")?);
    if len > msg.len() || len < 20 {
        return Err(format!("message length {len} of {} bytes", msg.len()));
    }
    if kind >> 8 != NFNL_SUBSYS_CTNETLINK {
        return Ok(None);
    }
    let event = match kind & 0xff {
        IPCTNL_MSG_CT_NEW if flags & (NLM_F_CREATE | NLM_F_EXCL) != 0 => Kind::New,
        IPCTNL_MSG_CT_NEW => Kind::Update,
        IPCTNL_MSG_CT_DELETE => Kind::Destroy,
        _ => return Ok(None),
    };
    // After the header: struct nfgenmsg (4 bytes), then attributes.
    let attrs = attributes(&msg[20..len]).map_err(|e| e.to_string())?;
    fn find<'a>(list: &[(u16, &'a [u8])], t: u16) -> Option<&'a [u8]> {
        list.iter().find(|(k, _)| *k == t).map(|(_, v)| *v)
    }
    let tuple = find(&attrs, CTA_TUPLE_ORIG).ok_or("no original tuple")?;
    let tuple = attributes(tuple).map_err(|e| e.to_string())?;
    let ip = attributes(find(&tuple, CTA_TUPLE_IP).ok_or("no tuple addresses")?).map_err(|e| e.to_string())?;
    // CTA_IP_V4_SRC/DST are 1/2, CTA_IP_V6_SRC/DST 3/4.
    let src = find(&ip, 1).or_else(|| find(&ip, 3)).and_then(address).ok_or("no source address")?;
    let dst = find(&ip, 2).or_else(|| find(&ip, 4)).and_then(address).ok_or("no destination address")?;
    let proto = attributes(find(&tuple, CTA_TUPLE_PROTO).ok_or("no tuple protocol")?).map_err(|e| e.to_string())?;
    let l4proto = *find(&proto, CTA_PROTO_NUM).and_then(|b| b.first()).ok_or("no protocol number")?;
    let sport = find(&proto, CTA_PROTO_SRC_PORT).and_then(be_u16).unwrap_or(0);
    let dport = find(&proto, CTA_PROTO_DST_PORT).and_then(be_u16).unwrap_or(0);
    let replied = find(&attrs, CTA_STATUS).and_then(be_u32).is_some_and(|s| s & IPS_SEEN_REPLY != 0);
    let tcp_state = find(&attrs, CTA_PROTOINFO)
        .and_then(|p| attributes(p).ok())
        .and_then(|p| find(&p, CTA_PROTOINFO_TCP).and_then(|t| attributes(t).ok()))
        .and_then(|t| find(&t, CTA_PROTOINFO_TCP_STATE).and_then(|b| b.first().copied()));
    Ok(Some(CtEvent { kind: event, l4proto, src, dst, sport, dport, replied, tcp_state }))
}

fn protocol_name(l4proto: u8) -> &'static str {
    match l4proto {
        6 => "TCP",
        17 => "UDP",
        1 => "ICMP",
        58 => "ICMP6",
        132 => "SCTP",
        _ => "IP",
    }
}

fn tcp_state_name(s: u8) -> &'static str {
    ["NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"]
        .get(usize::from(s))
        .copied()
        .unwrap_or("UNKNOW")
}

impl CtEvent {
    /// KubeSkoop's message: `Proto = TCP Replied = true State = ESTABLISHED Src = a:p, Dst = b:q`.
    pub fn message(&self) -> String {
        let state = self.tcp_state.map(|s| format!("State = {} ", tcp_state_name(s))).unwrap_or_default();
        let endpoint = |ip: &IpAddr, port: u16| match ip {
            IpAddr::V4(a) => format!("{a}:{port}"),
            IpAddr::V6(a) => format!("[{a}]:{port}"),
        };
        format!(
            "Proto = {} Replied = {} {state}Src = {}, Dst = {}",
            protocol_name(self.l4proto),
            self.replied,
            endpoint(&self.src, self.sport),
            endpoint(&self.dst, self.dport)
        )
    }

    pub fn record(&self) -> LogRecord {
        let mut attrs = vec![
            kv_str("network.transport", network_transport(self.l4proto)),
            kv_str(keys::SOURCE_ADDRESS, self.src.to_string()),
            kv_str(keys::DESTINATION_ADDRESS, self.dst.to_string()),
        ];
        if self.sport != 0 || self.dport != 0 {
            attrs.push(kv_int("source.port", i64::from(self.sport)));
            attrs.push(kv_int("destination.port", i64::from(self.dport)));
        }
        attrs.push(kv_bool("podnet.conntrack.replied", self.replied));
        if let Some(s) = self.tcp_state {
            attrs.push(kv_str("podnet.conntrack.tcp_state", tcp_state_name(s)));
        }
        let now = now_unix_nanos();
        LogRecord {
            time_unix_nano: now,
            observed_time_unix_nano: now,
            severity_number: 9, // INFO: connections come and go
            severity_text: "INFO".into(),
            body: Some(AnyValue { value: Some(any_value::Value::StringValue(self.message())) }),
            attributes: attrs,
            event_name: self.kind.event_type().to_string(),
            ..Default::default()
        }
    }
}

/// A ctnetlink socket subscribed to `groups`, non-blocking, in the calling thread's
/// namespace.
fn subscribe(groups: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, libc::NETLINK_NETFILTER) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain data; zeroed is a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = groups;
    // SAFETY: bind with a valid fd and a sockaddr_nl of the right size.
    let rc = unsafe {
        libc::bind(fd.as_raw_fd(), (&addr as *const libc::sockaddr_nl).cast(), std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // A burst of connections should not overflow the socket before it is read.
    let size: libc::c_int = 1 << 20;
    // SAFETY: setsockopt with a valid fd and an int.
    unsafe {
        libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, (&size as *const libc::c_int).cast(), 4);
    }
    Ok(fd)
}

/// Follows the namespaces and keeps one listener per namespace until shutdown.
pub async fn run(config: ConntrackEventsConfig, mut source: NamespaceSource, interval: Duration, ctx: ComponentContext, outputs: Outputs) {
    let groups = config.types.iter().fold(0, |g, k| g | k.group());
    let mut listening: HashMap<u64, (CancellationToken, tokio::task::JoinHandle<()>)> = HashMap::new();
    let mut reported_unsupported = false;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let list = match tokio::task::block_in_place(|| source.list()) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(component = %ctx.id, "conntrack events: cannot list namespaces: {e}");
                continue;
            }
        };
        // Namespaces gone: their listeners stop (their sockets went with them). A listener
        // that ended on a socket error is opened again below.
        listening.retain(|inode, (stop, task)| {
            let keep = list.iter().any(|n| n.inode == *inode) && !task.is_finished();
            if !keep {
                stop.cancel();
            }
            keep
        });
        let new: Vec<Namespace> = list.iter().filter(|n| !listening.contains_key(&n.inode)).cloned().collect();
        if new.is_empty() {
            continue;
        }
        let opened = tokio::task::block_in_place(|| crate::enter::for_each_namespace(&new, |_| subscribe(groups)));
        for (i, result) in opened {
            let ns = &new[i];
            match result {
                Ok(Ok(fd)) => {
                    let stop = ctx.shutdown.child_token();
                    let listener = Listener {
                        resource: ns.resource_attributes(&ctx.host.node.name),
                        inode: ns.inode,
                        outputs: outputs.clone(),
                        ctx: ctx.clone(),
                        events_per_second: config.events_per_second,
                        stop: stop.clone(),
                    };
                    listening.insert(ns.inode, (stop, tokio::spawn(listener.run(fd))));
                }
                Ok(Err(e)) if ns.is_host && !reported_unsupported => {
                    reported_unsupported = true;
                    let reason = format!("ctnetlink events: {e} (load nf_conntrack_netlink)");
                    tracing::warn!(component = %ctx.id, "conntrack events unsupported: {reason}");
                    ctx.status.probe_unsupported("conntrack_events", &reason);
                }
                Ok(Err(e)) => tracing::debug!(component = %ctx.id, inode = ns.inode, "conntrack events: {e}"),
                Err(e) => tracing::debug!(component = %ctx.id, inode = ns.inode, "conntrack events: {e:?}"),
            }
        }
    }
    for (stop, _) in listening.values() {
        stop.cancel();
    }
}

struct Listener {
    resource: Vec<KeyValue>,
    inode: u64,
    outputs: Outputs,
    ctx: ComponentContext,
    events_per_second: u32,
    stop: CancellationToken,
}

impl Listener {
    async fn run(self, fd: OwnedFd) {
        // SAFETY: the AsyncFd owns the socket: it stays open, and the same, while registered.
        let afd = match unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) } {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(component = %self.ctx.id, "conntrack events: {e}");
                return;
            }
        };
        let scope = format!("podnet/receiver/{}", self.ctx.id);
        let mut batch = LogsBuilder::new(&scope);
        let mut buf = vec![0u8; 64 * 1024];
        let (mut window, mut in_window) = (Instant::now(), 0u32);
        let mut flush = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => break,
                _ = flush.tick() => {
                    if !batch.is_empty() {
                        self.outputs.send(PData::Logs(batch.take())).await;
                    }
                }
                ready = afd.readable() => {
                    let Ok(mut guard) = ready else { break };
                    loop {
                        // SAFETY: recv into a buffer we own, of its length.
                        let n = unsafe { libc::recv(afd.get_ref().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                        if n < 0 {
                            let e = std::io::Error::last_os_error();
                            match e.raw_os_error() {
                                Some(libc::EAGAIN) => { guard.clear_ready(); break; }
                                // The kernel had more than the socket held: those are lost.
                                Some(libc::ENOBUFS) => { self.ctx.telemetry.dropped(Signal::Logs, 1, "overflow"); continue; }
                                _ => { tracing::debug!(component = %self.ctx.id, "conntrack events: {e}"); return; }
                            }
                        }
                        let mut datagram = &buf[..n as usize];
                        while datagram.len() >= 16 {
                            let len = u32::from_ne_bytes([datagram[0], datagram[1], datagram[2], datagram[3]]) as usize;
                            if len < 16 || len > datagram.len() { break; }
                            match parse(&datagram[..len]) {
                                Ok(Some(event)) => {
                                    if window.elapsed() >= Duration::from_secs(1) {
                                        (window, in_window) = (Instant::now(), 0);
                                    }
                                    if in_window < self.events_per_second {
                                        in_window += 1;
                                        batch.push(self.inode, || self.resource.clone(), event.record());
                                    } else {
                                        self.ctx.telemetry.dropped(Signal::Logs, 1, "rate_limited");
                                    }
                                }
                                Ok(None) => {}
                                Err(e) => tracing::debug!(component = %self.ctx.id, "conntrack events: undecodable message: {e}"),
                            }
                            datagram = &datagram[((len + 3) & !3).min(datagram.len())..];
                        }
                    }
                    if batch.len() >= 256 {
                        self.outputs.send(PData::Logs(batch.take())).await;
                    }
                }
            }
        }
        if !batch.is_empty() {
            self.outputs.send(PData::Logs(batch.take())).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// Recorded from a 6.18 kernel: a UDP datagram 127.0.0.1:40000 → 127.0.0.1:9999 in a
    /// namespace with an nftables `ct state new` rule, and its entry timing out.
    const NEW: &str = "94000000000100060000000000000000020000003400018014000180080001007f000001080002007f0000011c0002800500010011000000060002009c40000006000300270f00003400028014000180080001007f000001080002007f0000011c000280050001001100000006000200270f0000060003009c40000008000c00a4c4786608000300000000080800070000000001";
    const DESTROY: &str = "8c000000020100000000000000000000020000003400018014000180080001007f000001080002007f0000011c0002800500010011000000060002009c40000006000300270f00003400028014000180080001007f000001080002007f0000011c000280050001001100000006000200270f0000060003009c40000008000c00a4c478660800030000000208";

    #[test]
    fn recorded_new_and_destroy_events() {
        let new = parse(&hex(NEW)).unwrap().unwrap();
        let localhost: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            new,
            CtEvent {
                kind: Kind::New,
                l4proto: 17,
                src: localhost,
                dst: localhost,
                sport: 40000,
                dport: 9999,
                replied: false,
                tcp_state: None
            }
        );
        assert_eq!(new.message(), "Proto = UDP Replied = false Src = 127.0.0.1:40000, Dst = 127.0.0.1:9999");
        let destroy = parse(&hex(DESTROY)).unwrap().unwrap();
        assert_eq!((destroy.kind, destroy.sport, destroy.replied), (Kind::Destroy, 40000, false));
        let record = destroy.record();
        assert_eq!(record.event_name, "ConntrackDestroy");
        assert!(record.attributes.iter().any(|kv| kv.key == keys::DESTINATION_ADDRESS));
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        let new = hex(NEW);
        for cut in [0, 10, 19, 30, 60, 100] {
            let mut m = new[..cut].to_vec();
            if m.len() >= 4 {
                m[..4].copy_from_slice(&(cut as u32).to_ne_bytes());
            }
            assert!(parse(&m).is_err() || parse(&m).unwrap().is_none(), "cut at {cut}");
        }
        let mut other = new.clone();
        other[5] = 2; // the expectation subsystem
        assert_eq!(parse(&other).unwrap(), None);
    }
}
