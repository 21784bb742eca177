//! An SSRF guard for URLs that come from clients (Client ID Metadata Documents, browser
//! proxy targets): the host is resolved first, every address it resolves to is checked, and
//! the connection is pinned to a checked address so that DNS cannot change its mind between
//! the check and the request.
//!
//! Refused by default: loopback, private (RFC 1918, RFC 4193), link-local, CGNAT
//! (100.64/10), unspecified, broadcast, multicast, documentation and benchmarking ranges,
//! IPv4-mapped and NAT64 forms of any of those, and the cloud metadata address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use url::Url;

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GuardError {
    /// Not `https` (or `http` where allowed).
    #[error("scheme {0:?} is not allowed")]
    Scheme(String),
    /// The URL has no host, or carries credentials.
    #[error("the URL is not acceptable: {0}")]
    Url(&'static str),
    /// The name did not resolve.
    #[error("cannot resolve {0}")]
    Resolve(String),
    /// An address is not public.
    #[error("{host} resolves to {addr}, a non-public address")]
    Private {
        /// The host.
        host: String,
        /// The offending address.
        addr: IpAddr,
    },
}

/// Which destinations are allowed.
#[derive(Debug, Clone, Default)]
pub struct NetGuard {
    allow_http: bool,
    allowed_hosts: Vec<String>,
}

impl NetGuard {
    /// https only, public addresses only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also plain `http` (still public addresses only).
    #[must_use]
    pub fn allow_http(mut self) -> Self {
        self.allow_http = true;
        self
    }

    /// Exempts `host` or `host:port` from the address rules (and allows `http` to it), for
    /// tests and private deployments.
    #[must_use]
    pub fn allow_host(mut self, host: impl Into<String>) -> Self {
        self.allowed_hosts.push(host.into().to_ascii_lowercase());
        self
    }

    fn is_allowed_host(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        let with_port = url
            .port_or_known_default()
            .map(|p| format!("{host}:{p}"))
            .unwrap_or_default();
        self.allowed_hosts
            .iter()
            .any(|h| *h == host || *h == with_port)
    }

    /// Resolves `url`'s host and returns an address to connect to, after checking every
    /// address the name resolves to.
    ///
    /// # Errors
    ///
    /// The scheme, the URL or an address is refused, or the name does not resolve.
    pub async fn check(&self, url: &Url) -> Result<SocketAddr, GuardError> {
        let exempt = self.is_allowed_host(url);
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http || exempt => {}
            other => return Err(GuardError::Scheme(other.to_owned())),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(GuardError::Url("credentials in the URL"));
        }
        let host = url
            .host_str()
            .ok_or(GuardError::Url("no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url
            .port_or_known_default()
            .ok_or(GuardError::Url("no port"))?;
        let lookup = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::lookup_host((host.clone(), port)),
        )
        .await;
        let addrs: Vec<SocketAddr> = match lookup {
            Ok(Ok(addrs)) => addrs.collect(),
            _ => return Err(GuardError::Resolve(host)),
        };
        let first = *addrs
            .first()
            .ok_or_else(|| GuardError::Resolve(host.clone()))?;
        if !exempt {
            for addr in &addrs {
                if !is_public(addr.ip()) {
                    return Err(GuardError::Private {
                        host,
                        addr: addr.ip(),
                    });
                }
            }
        }
        Ok(first)
    }
}

/// An HTTP client for `url` that connects only to `addr` (what [`NetGuard::check`] returned
/// for it): no redirects followed (check each hop again), and no HTTP(S) proxy from the
/// environment, which would resolve the name again, unchecked. Add a timeout, then build.
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use mcp_oauth::net_guard::{NetGuard, pinned_client};
///
/// let url = url::Url::parse("https://client.example.com/metadata.json")?;
/// let addr = NetGuard::new().check(&url).await?;
/// let http = pinned_client(&url, addr).timeout(std::time::Duration::from_secs(5)).build()?;
/// let document = http.get(url).send().await?.text().await?;
/// # let _ = document; Ok(()) }
/// ```
pub fn pinned_client(url: &Url, addr: SocketAddr) -> reqwest::ClientBuilder {
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .resolve(host, addr)
        .user_agent(concat!("mcp-oauth/", env!("CARGO_PKG_VERSION")))
}

/// Whether `ip` is a public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            // NAT64 well-known prefix 64:ff9b::/96 embeds an IPv4 address.
            let segments = v6.segments();
            if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let octets = v6.octets();
                return is_public_v4(Ipv4Addr::new(
                    octets[12], octets[13], octets[14], octets[15],
                ));
            }
            is_public_v6(v6)
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
        || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
        || first == 0x0100 && ip.segments()[1..4] == [0, 0, 0]) // discard 100::/64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2001:db8::1",
            "ff02::1",
        ] {
            assert!(!is_public(ip.parse().expect("ip")), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(is_public(ip.parse().expect("ip")), "{ip}");
        }
    }

    #[tokio::test]
    async fn loopback_names_and_addresses_are_refused_unless_allowed() {
        let guard = NetGuard::new().allow_http();
        for url in [
            "http://127.0.0.1/x",
            "http://localhost/x",
            "http://[::1]:8080/x",
            "http://2130706433/x",
        ] {
            let err = guard
                .check(&Url::parse(url).expect("url"))
                .await
                .expect_err(url);
            assert!(
                matches!(err, GuardError::Private { .. } | GuardError::Resolve(_)),
                "{url}: {err}"
            );
        }
        assert!(matches!(
            NetGuard::new()
                .check(&Url::parse("http://example.com/x").expect("url"))
                .await,
            Err(GuardError::Scheme(_))
        ));
        assert!(matches!(
            NetGuard::new()
                .check(&Url::parse("https://u:p@example.com/x").expect("url"))
                .await,
            Err(GuardError::Url(_))
        ));
        let allowed = NetGuard::new().allow_host("127.0.0.1:8443");
        let addr = allowed
            .check(&Url::parse("http://127.0.0.1:8443/doc").expect("url"))
            .await
            .expect("allowed");
        assert_eq!(addr.port(), 8443);
        assert!(
            allowed
                .check(&Url::parse("http://127.0.0.1:9/doc").expect("url"))
                .await
                .is_err()
        );
    }
}
