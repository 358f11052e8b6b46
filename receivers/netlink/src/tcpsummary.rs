//! TCP sockets of a namespace by state, with their queue bytes, from NETLINK_SOCK_DIAG
//! (IPv4 and IPv6) rather than by parsing /proc/net/tcp: the kernel filters and formats
//! nothing we do not need.

use std::collections::BTreeMap;
use std::time::Duration;

use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::*;
use netlink_packet_sock_diag::inet::nlas::Nla;
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_sys::protocols::NETLINK_SOCK_DIAG;

use crate::dump::{self, DumpError, RawMessage};

/// One socket as far as the summary cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSocket {
    pub state: u8,
    /// Listening: pending connections; otherwise unread bytes.
    pub recv_queue: u32,
    /// Listening: the backlog limit; otherwise unacknowledged bytes.
    pub send_queue: u32,
    /// The socket's file; 0 when no process holds it (orphans, TIME_WAIT, pending requests).
    pub inode: u32,
    /// Memory the socket holds in the TCP accounting: received and queued-to-send data plus
    /// its reserve (`sk_rmem_alloc + sk_wmem_queued + sk_forward_alloc`, INET_DIAG_SKMEMINFO).
    pub memory_bytes: u64,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct TcpSummary {
    /// Sockets per state name (`established`, `time_wait`, …).
    pub by_state: BTreeMap<&'static str, u64>,
    /// Sum over non-listening sockets.
    pub rx_queue_bytes: u64,
    pub tx_queue_bytes: u64,
    /// Listening sockets: pending connections summed, their limits summed, and the fullest
    /// one's fill ratio.
    pub listen_pending: u64,
    pub listen_limit: u64,
    pub listen_max_fill: f64,
    /// What the kernel's sockstat keeps only node-wide, counted for this namespace: sockets
    /// no process holds that are still closing (not TIME_WAIT, not a pending request), full
    /// sockets (the kernel's `alloc`: everything but TIME_WAIT and pending requests), and
    /// their memory in pages.
    pub orphans: u64,
    pub allocated: u64,
    pub memory_pages: u64,
}

/// The semantic-convention name of a kernel TCP state.
pub fn state_name(state: u8) -> &'static str {
    match state {
        TCP_ESTABLISHED => "established",
        TCP_SYN_SENT => "syn_sent",
        TCP_SYN_RECV => "syn_received",
        TCP_FIN_WAIT1 => "fin_wait_1",
        TCP_FIN_WAIT2 => "fin_wait_2",
        TCP_TIME_WAIT => "time_wait",
        TCP_CLOSE => "close",
        TCP_CLOSE_WAIT => "close_wait",
        TCP_LAST_ACK => "last_ack",
        TCP_LISTEN => "listen",
        TCP_CLOSING => "closing",
        _ => "unknown",
    }
}

pub fn summarize(sockets: &[TcpSocket]) -> TcpSummary {
    let mut s = TcpSummary::default();
    let mut memory_bytes = 0u64;
    for sock in sockets {
        *s.by_state.entry(state_name(sock.state)).or_default() += 1;
        // Pending requests (SYN_RECV) and TIME_WAIT are mini-sockets outside these counts.
        if sock.state != TCP_TIME_WAIT && sock.state != TCP_SYN_RECV {
            s.allocated += 1;
            memory_bytes += sock.memory_bytes;
            if sock.inode == 0 {
                s.orphans += 1;
            }
        }
        if sock.state == TCP_LISTEN {
            s.listen_pending += u64::from(sock.recv_queue);
            s.listen_limit += u64::from(sock.send_queue);
            if sock.send_queue > 0 {
                s.listen_max_fill = s.listen_max_fill.max(f64::from(sock.recv_queue) / f64::from(sock.send_queue));
            }
        } else {
            s.rx_queue_bytes += u64::from(sock.recv_queue);
            s.tx_queue_bytes += u64::from(sock.send_queue);
        }
    }
    s.memory_pages = memory_bytes.div_ceil(PAGE_BYTES);
    s
}

/// The unit of the kernel's TCP memory accounting (`sockstat`'s `mem`).
const PAGE_BYTES: u64 = 4096;

fn request(family: u8) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let socket_id = if family == AF_INET { SocketId::new_v4() } else { SocketId::new_v6() };
    let mut msg = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::SKMEMINFO,
            states: StateFlags::all(),
            socket_id,
        })
        .into(),
    );
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

pub(crate) fn fixture_requests() -> Vec<(&'static str, isize, Vec<u8>)> {
    vec![("sock_diag_tcp4.bin", NETLINK_SOCK_DIAG, request(AF_INET)), ("sock_diag_tcp6.bin", NETLINK_SOCK_DIAG, request(AF_INET6))]
}

/// Parses dump replies into sockets.
pub fn parse(messages: &[RawMessage]) -> Result<Vec<TcpSocket>, DumpError> {
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        let msg = NetlinkMessage::<SockDiagMessage>::deserialize(&m.bytes).map_err(|e| DumpError::Malformed(format!("sock_diag: {e}")))?;
        if let NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) = msg.payload {
            let memory_bytes = r
                .nlas
                .iter()
                .find_map(|n| match n {
                    Nla::MemInfo(m) => Some(u64::from(m.receive_queue) + u64::from(m.send_queue) + u64::from(m.cache)),
                    _ => None,
                })
                .unwrap_or(0);
            out.push(TcpSocket {
                state: r.header.state,
                recv_queue: r.header.recv_queue,
                send_queue: r.header.send_queue,
                inode: r.header.inode,
                memory_bytes,
            });
        }
    }
    Ok(out)
}

/// Every TCP socket of the calling thread's namespace, IPv4 and IPv6.
pub fn collect(timeout: Duration) -> Result<Vec<TcpSocket>, DumpError> {
    let socket = dump::open(NETLINK_SOCK_DIAG, timeout)?;
    let mut sockets = parse(&dump::dump(&socket, &request(AF_INET), timeout)?)?;
    match dump::dump(&socket, &request(AF_INET6), timeout) {
        Ok(m) => sockets.extend(parse(&m)?),
        // A kernel without IPv6 answers ENOENT/EAFNOSUPPORT: there are no IPv6 sockets.
        Err(DumpError::Kernel { errno }) if errno == libc::ENOENT || errno == libc::EAFNOSUPPORT => {}
        Err(e) => return Err(e),
    }
    Ok(sockets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_splits_listeners_from_connections() {
        let s = summarize(&[
            TcpSocket { state: TCP_ESTABLISHED, recv_queue: 10, send_queue: 20, inode: 7, memory_bytes: 5000 },
            TcpSocket { state: TCP_FIN_WAIT1, recv_queue: 1, send_queue: 2, inode: 0, memory_bytes: 4000 },
            TcpSocket { state: TCP_TIME_WAIT, recv_queue: 0, send_queue: 0, inode: 0, memory_bytes: 0 },
            TcpSocket { state: TCP_LISTEN, recv_queue: 3, send_queue: 4, inode: 8, memory_bytes: 0 },
            TcpSocket { state: TCP_LISTEN, recv_queue: 0, send_queue: 128, inode: 9, memory_bytes: 0 },
            TcpSocket { state: TCP_SYN_RECV, recv_queue: 0, send_queue: 0, inode: 0, memory_bytes: 0 },
        ]);
        assert_eq!(s.by_state["established"], 1);
        assert_eq!(s.by_state["fin_wait_1"], 1);
        assert_eq!(s.by_state["time_wait"], 1);
        assert_eq!(s.by_state["listen"], 2);
        assert_eq!((s.rx_queue_bytes, s.tx_queue_bytes), (11, 22));
        assert_eq!((s.listen_pending, s.listen_limit), (3, 132));
        assert_eq!(s.listen_max_fill, 0.75);
        // The FIN_WAIT1 socket without a file is the orphan; TIME_WAIT and the pending
        // request are neither orphans nor allocated; 9000 bytes are three pages.
        assert_eq!((s.orphans, s.allocated, s.memory_pages), (1, 4, 3));
    }
}
