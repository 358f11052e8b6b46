//! TCP sockets of a namespace by state, with their queue bytes, from NETLINK_SOCK_DIAG
//! (IPv4 and IPv6) rather than by parsing /proc/net/tcp: the kernel filters and formats
//! nothing we do not need.

use std::collections::BTreeMap;
use std::time::Duration;

use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::*;
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
    for sock in sockets {
        *s.by_state.entry(state_name(sock.state)).or_default() += 1;
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
    s
}

fn request(family: u8) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let socket_id = if family == AF_INET { SocketId::new_v4() } else { SocketId::new_v6() };
    let mut msg = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
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
            out.push(TcpSocket { state: r.header.state, recv_queue: r.header.recv_queue, send_queue: r.header.send_queue });
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
            TcpSocket { state: TCP_ESTABLISHED, recv_queue: 10, send_queue: 20 },
            TcpSocket { state: TCP_ESTABLISHED, recv_queue: 1, send_queue: 2 },
            TcpSocket { state: TCP_TIME_WAIT, recv_queue: 0, send_queue: 0 },
            TcpSocket { state: TCP_LISTEN, recv_queue: 3, send_queue: 4 },
            TcpSocket { state: TCP_LISTEN, recv_queue: 0, send_queue: 128 },
        ]);
        assert_eq!(s.by_state["established"], 2);
        assert_eq!(s.by_state["time_wait"], 1);
        assert_eq!(s.by_state["listen"], 2);
        assert_eq!((s.rx_queue_bytes, s.tx_queue_bytes), (11, 22));
        assert_eq!((s.listen_pending, s.listen_limit), (3, 132));
        assert_eq!(s.listen_max_fill, 0.75);
    }
}
