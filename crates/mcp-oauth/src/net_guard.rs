//! An SSRF guard for URLs that come from clients (Client ID Metadata Documents, browser
//! proxy targets): the host is resolved first, every address it resolves to is checked, and
//! the connection is pinned to a checked address so that DNS cannot change its mind between
//! the check and the request.
//!
//! Refused by default: loopback (and the `localhost` names, without asking DNS), private
//! (RFC 1918, RFC 4193), link-local, CGNAT (100.64/10), unspecified, broadcast, multicast,
//! documentation and benchmarking ranges, and the cloud metadata address. IPv6 addresses
//! that carry an IPv4 address are judged by the IPv4 address they carry: IPv4-mapped
//! (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), IPv4-translated (SIIT,
//! `::ffff:0:a.b.c.d`), NAT64 well-known (`64:ff9b::/96`) and 6to4 (`2002::/16`). Local-use
//! NAT64 (`64:ff9b:1::/48`, RFC 8215) and Teredo (`2001::/32`) are refused outright: where
//! they reach depends on the local network.
//!
//! Error texts name the host, never the address it resolved to (that would let anyone map
//! an internal network's names).

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
    /// An address is not public. The message names the host only: the address would tell
    /// whoever reads it what an internal name resolves to.
    #[error("{host} is not a public address")]
    Private {
        /// The host.
        host: String,
        /// The offending address (for the operator's logs; never shown to a client).
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
        if !exempt && is_localhost_name(&host) {
            // RFC 6761 §6.3: these names are loopback, whatever a resolver says.
            return Err(GuardError::Private {
                host,
                addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            });
        }
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

/// `localhost` and any name under it (RFC 6761 §6.3), with or without the final dot.
fn is_localhost_name(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

/// Whether `ip` is a public unicast address. An IPv6 address that carries an IPv4 address
/// is judged by that IPv4 address; local-use NAT64 and Teredo are never public.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Embedded::V4(v4) => is_public_v4(v4),
            Embedded::Refused => false,
            Embedded::None => is_public_v6(v6),
        },
    }
}

/// What an IPv6 address says about IPv4.
enum Embedded {
    /// It carries this IPv4 address.
    V4(Ipv4Addr),
    /// It reaches an IPv4 address that cannot be judged from the address alone.
    Refused,
    /// A plain IPv6 address.
    None,
}

fn embedded_v4(v6: Ipv6Addr) -> Embedded {
    let s = v6.segments();
    let [.., a, b, c, d] = v6.octets();
    let low = Ipv4Addr::new(a, b, c, d);
    match s {
        // :: and ::1 are judged as IPv6 (unspecified, loopback).
        [0, 0, 0, 0, 0, 0, 0, 0 | 1] => Embedded::None,
        // IPv4-mapped ::ffff:0:0/96, IPv4-compatible ::/96 (deprecated, RFC 4291 §2.5.5.1),
        // IPv4-translated (SIIT) ::ffff:0:0:0/96 (RFC 2765), NAT64 well-known 64:ff9b::/96
        // (RFC 6052).
        [0, 0, 0, 0, 0, 0xffff, _, _]
        | [0, 0, 0, 0, 0, 0, _, _]
        | [0, 0, 0, 0, 0xffff, 0, _, _]
        | [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Embedded::V4(low),
        // 6to4 2002::/16 (RFC 3056): the IPv4 address follows the prefix.
        [0x2002, hi, lo, ..] => {
            let [a, b] = hi.to_be_bytes();
            let [c, d] = lo.to_be_bytes();
            Embedded::V4(Ipv4Addr::new(a, b, c, d))
        }
        // Local-use NAT64 64:ff9b:1::/48 (RFC 8215): translated by a gateway of the local
        // network, to wherever it is set up to go.
        [0x64, 0xff9b, 1, ..] => Embedded::Refused,
        // Teredo 2001::/32 (RFC 4380): tunnels through a relay to an obfuscated IPv4 address.
        [0x2001, 0, ..] => Embedded::Refused,
        _ => Embedded::None,
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
            "::8.8.8.8",
            "::ffff:0:8.8.8.8",
            "2002:808:808::1",
        ] {
            assert!(is_public(ip.parse().expect("ip")), "{ip}");
        }
    }

    /// Security review 2, F9: IPv6 forms that carry (or tunnel to) an IPv4 address.
    #[test]
    fn ipv6_forms_of_private_ipv4_addresses_are_not_public() {
        for ip in [
            // IPv4-compatible ::/96
            "::7f00:1",
            "::127.0.0.1",
            "::10.0.0.1",
            "::169.254.169.254",
            // IPv4-translated (SIIT) ::ffff:0:0:0/96
            "::ffff:0:7f00:1",
            "::ffff:0:10.1.2.3",
            "::ffff:0:a9fe:a9fe",
            // NAT64, well-known and local-use prefixes
            "64:ff9b::7f00:1",
            "64:ff9b:1::a9fe:a9fe",
            "64:ff9b:1::808:808",
            "64:ff9b:1:ffff::1",
            // 6to4 2002::/16
            "2002:7f00:1::",
            "2002:a00:1::1",
            "2002:a9fe:a9fe::1",
            "2002:c0a8:101::1",
            // Teredo 2001::/32
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001::1",
        ] {
            assert!(!is_public(ip.parse().expect("ip")), "{ip}");
        }
    }

    /// Security review 2, F10: the error names the host, not the address.
    #[test]
    fn private_error_does_not_reveal_the_address() {
        let err = GuardError::Private {
            host: "db.corp.internal".into(),
            addr: "10.20.30.40".parse().expect("ip"),
        };
        let text = err.to_string();
        assert!(text.contains("db.corp.internal"), "{text}");
        assert!(!text.contains("10.20.30.40"), "{text}");
    }

    /// Test review, finding 8: loopback names are refused by the guard itself (no DNS asked),
    /// so a resolver failure cannot pass for a refusal.
    #[tokio::test]
    async fn localhost_names_are_refused_without_dns() {
        let guard = NetGuard::new().allow_http();
        for url in [
            "http://localhost/x",
            "https://LOCALHOST./x",
            "https://api.localhost:8443/x",
        ] {
            let err = guard
                .check(&Url::parse(url).expect("url"))
                .await
                .expect_err(url);
            assert!(
                matches!(&err, GuardError::Private { addr, .. } if addr.is_loopback()),
                "{url}: {err:?}"
            );
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
            assert!(matches!(err, GuardError::Private { .. }), "{url}: {err}");
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
