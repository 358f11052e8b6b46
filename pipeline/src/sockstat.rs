//! `/proc/<pid>/net/sockstat` and `sockstat6`: `PROTO: key value key value …` lines. In the
//! core because two receivers read it: procfs (the `sock` probe) and netlink (tcpsummary's
//! socket walk checks its count against `inuse`).

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {reason}")]
pub struct SockstatError {
    pub line: usize,
    pub reason: String,
}

/// `(protocol, key, value)`: `("TCP", "inuse", 3)`, `("sockets", "used", 8)`.
pub fn parse(text: &str) -> Result<Vec<(String, String, u64)>, SockstatError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let err = |reason: String| SockstatError { line: i + 1, reason };
        let (proto, rest) = line.split_once(':').ok_or_else(|| err("no \"PROTO:\" prefix".into()))?;
        let words: Vec<&str> = rest.split_whitespace().collect();
        if !words.len().is_multiple_of(2) {
            return Err(err(format!("{proto}: keys and values do not pair up")));
        }
        for kv in words.chunks(2) {
            let v = kv[1].parse::<u64>().map_err(|_| err(format!("{proto} {}: \"{}\" is not a number", kv[0], kv[1])))?;
            out.push((proto.to_string(), kv[0].to_string(), v));
        }
    }
    Ok(out)
}

pub fn get(entries: &[(String, String, u64)], proto: &str, key: &str) -> Option<u64> {
    entries.iter().find(|(p, k, _)| p == proto && k == key).map(|(_, _, v)| *v)
}
