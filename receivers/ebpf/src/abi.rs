//! Mirrors of the records and map keys in `ebpf/src/*.bpf.c` (`podnet.h` and each probe's
//! maps). The size assertions fail the build when one side changes without the other.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
pub const MAX_STACK: usize = 64;

/// `enum event_kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    Drop,
    ResetNosock,
    ResetActive,
    ResetProcess,
    ResetReceive,
    Retrans,
    RxKernel,
    TxKernel,
    NetifQdisc,
    NetifXmit,
    SockRead,
    SockWrite,
    SoftirqSched,
    SoftirqExec,
    Virtcmd,
    Bio,
}

impl EventKind {
    pub fn from_raw(v: u32) -> Option<EventKind> {
        Some(match v {
            1 => EventKind::Drop,
            2 => EventKind::ResetNosock,
            3 => EventKind::ResetActive,
            4 => EventKind::ResetProcess,
            5 => EventKind::ResetReceive,
            6 => EventKind::Retrans,
            7 => EventKind::RxKernel,
            8 => EventKind::TxKernel,
            9 => EventKind::NetifQdisc,
            10 => EventKind::NetifXmit,
            11 => EventKind::SockRead,
            12 => EventKind::SockWrite,
            13 => EventKind::SoftirqSched,
            14 => EventKind::SoftirqExec,
            15 => EventKind::Virtcmd,
            16 => EventKind::Bio,
            _ => return None,
        })
    }

    /// The event type KubeSkoop users know. `high`: the latency is above the probe's high
    /// threshold (KubeSkoop types softirq and virtio events by the larger threshold).
    pub fn kubeskoop_type(self, high: bool) -> &'static str {
        match self {
            EventKind::RxKernel => "RXKERNEL_SLOW",
            EventKind::TxKernel => "TXKERNEL_SLOW",
            EventKind::NetifQdisc => "NETIFTXLAT_QDISC",
            EventKind::NetifXmit => "NETIFTXLAT_XMIT",
            EventKind::SockRead => "SOCKETLAT_READSLOW",
            EventKind::SockWrite => "SOCKETLAT_SENDSLOW",
            EventKind::SoftirqSched if high => "SOFTIRQ_SCHED_100MS",
            EventKind::SoftirqSched => "SOFTIRQ_SCHED_SLOW",
            EventKind::SoftirqExec if high => "SOFTIRQ_EXCUTE_100MS",
            EventKind::SoftirqExec => "SOFTIRQ_EXCUTE_SLOW",
            EventKind::Virtcmd if high => "VIRTCMDEXCUTE_100MS",
            EventKind::Virtcmd => "VIRTCMDEXCUTE",
            EventKind::Bio => "BIOLAT_10MS",
            EventKind::Drop => "PacketLoss",
            EventKind::ResetNosock => "TCPRESET_NOSOCK",
            EventKind::ResetActive => "TCPRESET_ACTIVE",
            EventKind::ResetProcess => "TCPRESET_PROCESS",
            EventKind::ResetReceive => "TCPRESET_RECEIVE",
            EventKind::Retrans => "TCPRetrans",
        }
    }

    /// The `podnet.tcp.reset.kind` attribute value.
    pub fn reset_kind(self) -> &'static str {
        match self {
            EventKind::ResetNosock => "nosock",
            EventKind::ResetActive => "active",
            EventKind::ResetProcess => "process",
            EventKind::ResetReceive => "receive",
            _ => "",
        }
    }
}

/// `struct event`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Event {
    pub ts_ns: u64,
    pub location: u64,
    pub kind: u32,
    pub netns: u32,
    pub reason: u32,
    pub family: u16,
    pub protocol: u16,
    pub sport: u16,
    pub dport: u16,
    pub l4proto: u8,
    pub state: u8,
    pub stack_len: u16,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub latency_ns: u64,
    pub pid: u32,
    pub cpu: u32,
    pub detail: u32,
    pub pad: u32,
    /// The task's comm or the device's name, NUL-padded.
    pub name: [u8; 16],
}
const _: () = assert!(std::mem::size_of::<Event>() == 112);

impl Event {
    pub fn is_latency(&self) -> bool {
        self.kind >= 7
    }
    /// `name` up to its first NUL, as text.
    pub fn name(&self) -> String {
        let end = self.name.iter().position(|b| *b == 0).unwrap_or(self.name.len());
        String::from_utf8_lossy(&self.name[..end]).into_owned()
    }
}
pub const EVENT_WITH_STACK_SIZE: usize = std::mem::size_of::<Event>() + MAX_STACK * 8;

/// One decoded ring buffer record.
#[derive(Clone, Debug)]
pub struct Record {
    pub event: Event,
    pub stack: Vec<u64>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than an event (112 bytes)")]
    Short(usize),
    #[error("unknown event kind {0}")]
    UnknownKind(u32),
    #[error("stack of {frames} frames does not fit a record of {len} bytes")]
    Stack { frames: usize, len: usize },
}

/// Decodes one record as the kernel wrote it; checks lengths instead of trusting them.
pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let head = std::mem::size_of::<Event>();
    if bytes.len() < head {
        return Err(DecodeError::Short(bytes.len()));
    }
    // SAFETY: `bytes` holds at least size_of::<Event>() bytes, Event is plain old data
    // (any bit pattern is valid) and read_unaligned needs no alignment.
    let event: Event = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    if EventKind::from_raw(event.kind).is_none() {
        return Err(DecodeError::UnknownKind(event.kind));
    }
    let frames = usize::from(event.stack_len);
    if frames > MAX_STACK || head + frames * 8 > bytes.len() {
        return Err(DecodeError::Stack { frames, len: bytes.len() });
    }
    let stack = bytes[head..head + frames * 8].chunks_exact(8).map(|c| u64::from_ne_bytes(c.try_into().unwrap_or_default())).collect();
    Ok(Record { event, stack })
}

/// An address as the kernel stored it: 4 bytes for IPv4 in network order, 16 for IPv6.
pub fn ip(family: u16, raw: &[u8; 16]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))),
        AF_INET6 => {
            let v6 = Ipv6Addr::from(*raw);
            // v4-mapped addresses of dual-stack sockets read as the IPv4 address.
            Some(v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)))
        }
        _ => None,
    }
}

/// `struct drop_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DropKey {
    pub netns: u32,
    pub reason: u32,
}
// SAFETY: repr(C), no padding, every bit pattern valid.
unsafe impl aya::Pod for DropKey {}

/// `struct reset_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResetKey {
    pub netns: u32,
    pub kind: u16,
    pub reason: u16,
}
// SAFETY: as above.
unsafe impl aya::Pod for ResetKey {}

/// `struct state_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateKey {
    pub netns: u32,
    pub state: u32,
}
// SAFETY: as above.
unsafe impl aya::Pod for StateKey {}

/// `struct flow_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub netns: u32,
    pub family: u16,
    pub l4proto: u8,
    /// flow: [`FLOW_TX`] or [`FLOW_RX`]; 0 in the other probes' tables.
    pub direction: u8,
    pub sport: u16,
    pub dport: u16,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
}
const _: () = assert!(std::mem::size_of::<FlowKey>() == 44);
// SAFETY: as above.
unsafe impl aya::Pod for FlowKey {}

/// `struct flow_drops`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowDrops {
    pub total: u64,
    pub netfilter: u64,
}
// SAFETY: as above.
unsafe impl aya::Pod for FlowDrops {}

/// `FLOW_TX` / `FLOW_RX` in flow.bpf.c.
pub const FLOW_TX: u8 = 1;
pub const FLOW_RX: u8 = 2;

/// `struct flow_value` (flow.bpf.c), one per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowValue {
    pub packets: u64,
    pub bytes: u64,
}
// SAFETY: as above.
unsafe impl aya::Pod for FlowValue {}

/// Indexes of the `stats` array (`enum probe_stat`).
pub mod stat {
    pub const HITS: u32 = 0;
    pub const EVENTS: u32 = 1;
    pub const LOST: u32 = 2;
    pub const RATE_LIMITED: u32 = 3;
    pub const FILTERED: u32 = 4;
    pub const FLOWS_NEW: u32 = 5;
    pub const STARTED: u32 = 6;
    pub const COMPLETED: u32 = 7;
    pub const SERIES_FULL: u32 = 8;
}

/// Buckets of `struct lat_hist` (`LAT_SLOTS` in latency.h).
pub const LAT_SLOTS: usize = 48;

/// `struct lat_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LatKey {
    pub netns: u32,
    pub stage: u32,
    pub dim: u32,
}
// SAFETY: repr(C), no padding, every bit pattern valid.
unsafe impl aya::Pod for LatKey {}

/// `struct lat_hist`: one CPU's share of a latency series.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatHist {
    pub slots: [u64; LAT_SLOTS],
    pub zero: u64,
    pub sum_ns: u64,
    pub over_low: u64,
    pub over_high: u64,
}
const _: () = assert!(std::mem::size_of::<LatHist>() == (LAT_SLOTS + 4) * 8);
// SAFETY: as above.
unsafe impl aya::Pod for LatHist {}

impl Default for LatHist {
    fn default() -> Self {
        LatHist { slots: [0; LAT_SLOTS], zero: 0, sum_ns: 0, over_low: 0, over_high: 0 }
    }
}

impl LatHist {
    /// Every CPU's share added up.
    pub fn sum(per_cpu: &[LatHist]) -> LatHist {
        let mut total = LatHist::default();
        for h in per_cpu {
            total.add(h);
        }
        total
    }

    /// Adds another CPU's share.
    pub fn add(&mut self, o: &LatHist) {
        for (a, b) in self.slots.iter_mut().zip(o.slots.iter()) {
            *a = a.wrapping_add(*b);
        }
        self.zero = self.zero.wrapping_add(o.zero);
        self.sum_ns = self.sum_ns.wrapping_add(o.sum_ns);
        self.over_low = self.over_low.wrapping_add(o.over_low);
        self.over_high = self.over_high.wrapping_add(o.over_high);
    }
}

/// TCP states as the kernel numbers them (`include/net/tcp_states.h`), in the spelling of
/// `network.connection.state`.
pub fn tcp_state(state: u8) -> &'static str {
    match state {
        1 => "established",
        2 => "syn_sent",
        3 => "syn_received",
        4 => "fin_wait_1",
        5 => "fin_wait_2",
        6 => "time_wait",
        7 => "close",
        8 => "close_wait",
        9 => "last_ack",
        10 => "listen",
        11 => "closing",
        12 => "new_syn_recv",
        _ => "none",
    }
}

/// KubeSkoop's `GetSkcStateStr`, for its event message format.
pub fn kubeskoop_state(state: u8) -> &'static str {
    match state {
        1 => "TCP_ESTABLISHED",
        2 => "TCP_SYN_SENT",
        3 => "TCP_SYN_RECV",
        10 => "TCP_LISTEN",
        _ => "TCP_OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(e: &Event, stack: &[u64]) -> Vec<u8> {
        // SAFETY: Event is repr(C) plain data.
        let mut v = unsafe { std::slice::from_raw_parts((e as *const Event).cast::<u8>(), std::mem::size_of::<Event>()) }.to_vec();
        for f in stack {
            v.extend_from_slice(&f.to_ne_bytes());
        }
        v
    }

    #[test]
    fn decodes_an_event_and_its_stack() {
        let e = Event { kind: 1, netns: 4026531840, reason: 3, family: AF_INET, sport: 80, stack_len: 2, ..Default::default() };
        let r = decode(&raw(&e, &[0xffff_ffff_8100_0000, 0xffff_ffff_8100_0010])).unwrap();
        assert_eq!(r.event.netns, 4026531840);
        assert_eq!(r.stack, vec![0xffff_ffff_8100_0000, 0xffff_ffff_8100_0010]);
    }

    #[test]
    fn rejects_bad_records() {
        assert_eq!(decode(&[0u8; 10]).unwrap_err(), DecodeError::Short(10));
        let e = Event { kind: 99, ..Default::default() };
        assert_eq!(decode(&raw(&e, &[])).unwrap_err(), DecodeError::UnknownKind(99));
        let e = Event { kind: 1, stack_len: 3, ..Default::default() };
        assert_eq!(decode(&raw(&e, &[1])).unwrap_err(), DecodeError::Stack { frames: 3, len: 120 });
    }

    #[test]
    fn addresses() {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[10, 0, 0, 1]);
        assert_eq!(ip(AF_INET, &a).unwrap().to_string(), "10.0.0.1");
        let mapped: [u8; 16] = Ipv4Addr::new(10, 0, 0, 2).to_ipv6_mapped().octets();
        assert_eq!(ip(AF_INET6, &mapped).unwrap().to_string(), "10.0.0.2");
        assert_eq!(ip(AF_INET6, &Ipv6Addr::LOCALHOST.octets()).unwrap().to_string(), "::1");
        assert_eq!(ip(0, &a), None);
    }
}
