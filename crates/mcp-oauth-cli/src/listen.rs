//! Listen addresses: whether one is loopback only. Shared with the examples, which include
//! this file by path.

use std::net::SocketAddr;

/// Whether a `HOST:PORT` listen address is loopback only (a host name other than `localhost`
/// counts as public).
pub(crate) fn is_loopback(listen: &str) -> bool {
    match listen.parse::<SocketAddr>() {
        Ok(addr) => addr.ip().is_loopback(),
        Err(_) => listen
            .rsplit_once(':')
            .is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_other_than_loopback_are_public() {
        assert!(is_loopback("127.0.0.1:8080"));
        assert!(is_loopback("[::1]:8080"));
        assert!(is_loopback("localhost:8080"));
        assert!(!is_loopback("0.0.0.0:8080"));
        assert!(!is_loopback("[::]:8080"));
        assert!(!is_loopback("mcp.internal:8080"));
    }
}
