//! Netlink request/dump over a blocking socket with a receive timeout, so a namespace that
//! does not answer costs at most that timeout and the others go on.

use std::os::fd::AsRawFd;
use std::time::Duration;

use netlink_sys::{Socket, SocketAddr};

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("kernel answered error {errno} ({})", std::io::Error::from_raw_os_error(*errno))]
    Kernel { errno: i32 },
    #[error("malformed netlink reply: {0}")]
    Malformed(String),
}

pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLM_F_REQUEST: u16 = 0x01;
pub const NLM_F_ACK: u16 = 0x04;
pub const NLM_F_DUMP: u16 = 0x300;

/// A connected netlink socket of `protocol` in the calling thread's namespace.
pub fn open(protocol: isize, timeout: Duration) -> Result<Socket, DumpError> {
    let mut socket = Socket::new(protocol).map_err(DumpError::Socket)?;
    socket.bind_auto().map_err(DumpError::Socket)?;
    socket.connect(&SocketAddr::new(0, 0)).map_err(DumpError::Socket)?;
    let tv = libc::timeval { tv_sec: timeout.as_secs() as libc::time_t, tv_usec: timeout.subsec_micros() as libc::suseconds_t };
    // SAFETY: setsockopt with a valid fd and a timeval of the right size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(DumpError::Socket(std::io::Error::last_os_error()));
    }
    Ok(socket)
}

/// One netlink message of a reply: its type and its payload after the 16-byte header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    pub kind: u16,
    /// The payload after the 16-byte header.
    pub payload: Vec<u8>,
    /// The whole message, header included, for typed parsers.
    pub bytes: Vec<u8>,
}

/// Splits a datagram into netlink messages (4-byte aligned), checking every length.
pub fn split_messages(buf: &[u8]) -> Result<Vec<RawMessage>, DumpError> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().expect("2 bytes"));
        if len < 16 || off + len > buf.len() {
            return Err(DumpError::Malformed(format!("message length {len} at offset {off} of {}", buf.len())));
        }
        out.push(RawMessage { kind, payload: buf[off + 16..off + len].to_vec(), bytes: buf[off..off + len].to_vec() });
        off += (len + 3) & !3;
    }
    Ok(out)
}

/// Sends `request` (a complete netlink message) and collects every reply message until
/// `NLMSG_DONE` (a dump) or the acknowledgement (a request sent with [`NLM_F_ACK`]).
pub fn dump(socket: &Socket, request: &[u8], timeout: Duration) -> Result<Vec<RawMessage>, DumpError> {
    socket.send(request, 0).map_err(DumpError::Socket)?;
    let mut messages = Vec::new();
    loop {
        let (buf, _) = socket.recv_from_full().map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => DumpError::Timeout(timeout),
            _ => DumpError::Socket(e),
        })?;
        for m in split_messages(&buf)? {
            match m.kind {
                NLMSG_DONE => return Ok(messages),
                NLMSG_ERROR => {
                    let errno = m.payload.get(0..4).map(|b| i32::from_ne_bytes(b.try_into().expect("4 bytes"))).unwrap_or(0);
                    if errno == 0 {
                        // The acknowledgement that ends a non-dump request (NLM_F_ACK).
                        return Ok(messages);
                    }
                    return Err(DumpError::Kernel { errno: -errno });
                }
                _ => messages.push(m),
            }
        }
    }
}

/// A netlink message: header (length, type, flags, seq 1, pid 0) then `body`.
pub fn request(kind: u16, flags: u16, body: &[u8]) -> Vec<u8> {
    let len = 16 + body.len();
    let mut buf = Vec::with_capacity(len);
    buf.extend_from_slice(&(len as u32).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&1u32.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(body);
    buf
}

/// Attributes (`struct nlattr`) in `buf`: (type without flag bits, payload).
pub fn attributes(buf: &[u8]) -> Result<Vec<(u16, &[u8])>, DumpError> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 4 <= buf.len() {
        let len = u16::from_ne_bytes(buf[off..off + 2].try_into().expect("2 bytes")) as usize;
        let kind = u16::from_ne_bytes(buf[off + 2..off + 4].try_into().expect("2 bytes")) & 0x3fff;
        if len < 4 || off + len > buf.len() {
            return Err(DumpError::Malformed(format!("attribute length {len} at offset {off} of {}", buf.len())));
        }
        out.push((kind, &buf[off + 4..off + len]));
        off += (len + 3) & !3;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_attributes_round_trip() {
        let attr = [8u8, 0, 2, 0, 0, 0, 0, 7];
        let mut two = request(0x104, NLM_F_REQUEST, &attr);
        two.extend(request(NLMSG_DONE, 0, &[0, 0, 0, 0]));
        let msgs = split_messages(&two).unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].kind, 0x104);
        assert_eq!(attributes(&msgs[0].payload).unwrap(), vec![(2, &[0u8, 0, 0, 7][..])]);
    }

    #[test]
    fn truncated_replies_are_errors_not_panics() {
        let mut m = request(0x104, 0, &[1, 2, 3, 4]);
        m.truncate(18);
        m[0] = 40; // claims more than there is
        assert!(matches!(split_messages(&m), Err(DumpError::Malformed(_))));
        assert!(matches!(attributes(&[9, 0, 1, 0, 1]), Err(DumpError::Malformed(_))));
    }
}
