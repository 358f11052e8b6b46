//! Listening addresses as configs write them: `host:port`, where the host may be an IPv6
//! address without brackets (a pod IP from the downward API, `$(POD_IP):9102`).

/// `host:port` with an IPv6 host bracketed, ready for `bind`.
pub fn listen_address(endpoint: &str) -> String {
    match endpoint.rsplit_once(':') {
        Some((host, port)) if host.contains(':') && !host.starts_with('[') => format!("[{host}]:{port}"),
        _ => endpoint.to_string(),
    }
}

/// Checks `host:port` (a host is required: `0.0.0.0` for every address), naming `example`.
pub fn check_listen_address(endpoint: &str, example: &str) -> Result<(), String> {
    let ok = endpoint.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if ok { Ok(()) } else { Err(format!("endpoint \"{endpoint}\" must be host:port, like \"{example}\"")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_hosts_get_brackets() {
        assert_eq!(listen_address("10.0.0.5:9102"), "10.0.0.5:9102");
        assert_eq!(listen_address("fd00::5:9102"), "[fd00::5]:9102");
        assert_eq!(listen_address("[fd00::5]:9102"), "[fd00::5]:9102");
        assert_eq!(listen_address("0.0.0.0:13133"), "0.0.0.0:13133");
        assert!(check_listen_address("fd00::5:9102", "x").is_ok());
        assert_eq!(check_listen_address("9102", "0.0.0.0:9102").unwrap_err(), "endpoint \"9102\" must be host:port, like \"0.0.0.0:9102\"");
    }
}
