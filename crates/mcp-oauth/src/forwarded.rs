//! Who is calling, behind reverse proxies: the client address and the public origin of a
//! request, from `Forwarded` (RFC 7239) or `X-Forwarded-For` / `-Host` / `-Proto`, believed
//! only when the TCP peer is a proxy you listed.
//!
//! The rules, in order:
//!
//! 1. The TCP peer (axum's `ConnectInfo<SocketAddr>`) is not in [`TrustedProxies`], or is
//!    unknown: the forwarded headers are ignored. The client is the peer; the public origin
//!    is the configured one.
//! 2. Otherwise the addresses of the chain are read right to left (each proxy appends the
//!    address it received the request from), skipping trusted proxies. The first address
//!    that is not a trusted proxy is the client: values a client sent itself lie further
//!    left and are never reached. An unreadable hop (`unknown`, an obfuscated identifier)
//!    stops the walk: the last trusted address seen stands for the client.
//! 3. The public origin: with [`ForwardedHeader::Forwarded`], the `host` and `proto` of the
//!    element of that same hop; with [`ForwardedHeader::XForwardedFor`], the last (rightmost)
//!    `X-Forwarded-Host` and `X-Forwarded-Proto` values, which the proxy that connects to
//!    this server wrote. No header: none (use the configured origin, never `Host`).
//!
//! Only one of the two header families is read, the one you configure: a proxy that writes
//! `X-Forwarded-For` passes a client's own `Forwarded` header through untouched, and the other
//! way round.
//!
//! # Deployment
//!
//! Every trusted proxy must append to (or overwrite) the header family you configure, and
//! the proxy that connects to this server must set `X-Forwarded-Host` / `X-Forwarded-Proto`
//! (or `host=` / `proto=`) when the public origin is taken from them. A proxy that passes a
//! client's header through unchanged lets the client choose the value.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use http::HeaderMap;

use crate::error::ConfigError;

/// An IP network, `a.b.c.d/n` or `x:y::/n`; a bare address is a single host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The network of `addr` with `prefix` leading bits.
    ///
    /// # Errors
    ///
    /// `prefix` is longer than the address, or `addr` has bits set past it.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, ConfigError> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(cidr_error(
                &format!("{addr}/{prefix}"),
                format!(
                    "the prefix length of an IPv{} network is 0 to {max}",
                    if max == 32 { 4 } else { 6 }
                ),
            ));
        }
        let network = mask(addr, prefix);
        if network != addr {
            return Err(cidr_error(
                &format!("{addr}/{prefix}"),
                format!("host bits are set; the network is {network}/{prefix}"),
            ));
        }
        Ok(Self { network, prefix })
    }

    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts as its IPv4
    /// address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let input = s.trim();
        let (addr, prefix) = match input.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (input, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            cidr_error(
                input,
                format!(
                    "{addr:?} is not an IP address; write a network as 10.0.0.0/8 or fd00::/8, or a single proxy as 192.0.2.7"
                ),
            )
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().map_err(|_| {
                cidr_error(
                    input,
                    format!("the prefix length {p:?} is not a number from 0 to {max}"),
                )
            })?,
        };
        Self::new(addr, prefix).map_err(|err| match err {
            ConfigError::InvalidUrl { reason, .. } => cidr_error(input, reason),
            other => other,
        })
    }
}

fn cidr_error(input: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::url("trusted proxy CIDR", input, reason)
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits & m))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & m))
        }
    }
}

/// An IPv4-mapped IPv6 address as its IPv4 address; anything else unchanged.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The key a client address is counted under: an IPv4 address as itself, an IPv6 address by
/// its /64 (one subscriber's allocation, which hands out addresses freely).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(_) => mask(ip, 64),
        v4 => v4,
    }
}

/// Which forwarded header family the trusted proxies write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` for the address, `X-Forwarded-Host` / `X-Forwarded-Proto` for the
    /// origin (nginx, HAProxy, Caddy, most load balancers). The default.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=…;host=…;proto=…`.
    Forwarded,
}

/// The reverse proxies whose forwarded headers are believed. Empty (the default): none are.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    cidrs: Vec<Cidr>,
    header: ForwardedHeader,
}

/// A public origin named by a trusted proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedOrigin {
    /// `http` or `https`, as given; `None` when the proxy did not say.
    pub scheme: Option<String>,
    /// `host` or `host:port`, as given.
    pub host: String,
}

impl TrustedProxies {
    /// Proxies in `cidrs`, writing `X-Forwarded-*` headers.
    pub fn new(cidrs: impl IntoIterator<Item = Cidr>) -> Self {
        Self {
            cidrs: cidrs.into_iter().collect(),
            header: ForwardedHeader::default(),
        }
    }

    /// Parses each of `cidrs` (`10.0.0.0/8`, `fd00::/8`, `192.0.2.7`).
    ///
    /// # Errors
    ///
    /// One is not a network; the error names it and says what is wrong.
    pub fn parse<I, S>(cidrs: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let cidrs = cidrs
            .into_iter()
            .map(|c| c.as_ref().parse())
            .collect::<Result<Vec<Cidr>, _>>()?;
        Ok(Self::new(cidrs))
    }

    /// A proxy on the same host: `127.0.0.0/8` and `::1`.
    pub fn loopback() -> Self {
        Self::new([
            Cidr {
                network: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)),
                prefix: 8,
            },
            Cidr {
                network: IpAddr::V6(Ipv6Addr::LOCALHOST),
                prefix: 128,
            },
        ])
    }

    /// Which header family the proxies write. Default: [`ForwardedHeader::XForwardedFor`].
    #[must_use]
    pub fn header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    /// No proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.cidrs.is_empty()
    }

    /// The networks.
    pub fn cidrs(&self) -> &[Cidr] {
        &self.cidrs
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.cidrs.iter().any(|c| c.contains(ip))
    }

    /// The client's address: `peer` itself unless `peer` is a trusted proxy, else the
    /// rightmost address of the forwarded chain that is not a trusted proxy (see the module
    /// docs).
    pub fn client_addr(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let hops = self.hops(headers);
        match self.client_hop(&hops) {
            Some(i) => hops
                .get(i)
                .and_then(|h| h.addr)
                .unwrap_or_else(|| self.last_trusted(&hops, i, peer)),
            None => hops.first().and_then(|h| h.addr).unwrap_or(peer),
        }
    }

    /// The public origin a trusted proxy names, if `peer` is one and it names one (see the
    /// module docs). `None` means: use the configured origin.
    pub fn forwarded_origin(
        &self,
        peer: Option<IpAddr>,
        headers: &HeaderMap,
    ) -> Option<ForwardedOrigin> {
        if !peer.is_some_and(|p| self.contains(p)) {
            return None;
        }
        let (scheme, host) = match self.header {
            ForwardedHeader::XForwardedFor => (
                last_value(headers, "x-forwarded-proto"),
                last_value(headers, "x-forwarded-host")?,
            ),
            ForwardedHeader::Forwarded => {
                let hops = self.hops(headers);
                let i = self.client_hop(&hops).unwrap_or(0);
                let hop = hops.into_iter().nth(i)?;
                (hop.proto, hop.host?)
            }
        };
        Some(ForwardedOrigin { scheme, host })
    }

    /// The chain, left (client) to right (nearest proxy).
    fn hops(&self, headers: &HeaderMap) -> Vec<Hop> {
        match self.header {
            ForwardedHeader::XForwardedFor => values(headers, "x-forwarded-for")
                .iter()
                .map(|v| Hop {
                    addr: parse_node(v),
                    host: None,
                    proto: None,
                })
                .collect(),
            ForwardedHeader::Forwarded => values(headers, "forwarded")
                .iter()
                .map(|v| parse_element(v))
                .collect(),
        }
    }

    /// The index of the rightmost hop that is not a trusted proxy (an unreadable hop counts as
    /// not trusted); `None` when every hop is trusted (or there are none).
    fn client_hop(&self, hops: &[Hop]) -> Option<usize> {
        hops.iter()
            .rposition(|h| !h.addr.is_some_and(|a| self.contains(a)))
    }

    /// The trusted address right of hop `i`, or `peer`.
    fn last_trusted(&self, hops: &[Hop], i: usize, peer: IpAddr) -> IpAddr {
        hops.get(i + 1..)
            .and_then(|rest| rest.first())
            .and_then(|h| h.addr)
            .unwrap_or(peer)
    }
}

/// The TCP peer of a request, from axum's `ConnectInfo<SocketAddr>` (present when the app is
/// served with `into_make_service_with_connect_info::<SocketAddr>()`, as
/// [`McpServer`](crate::server::McpServer) and `mcp-oauth` do). `None` otherwise: then no
/// proxy is trusted.
pub fn peer_addr(extensions: &http::Extensions) -> Option<IpAddr> {
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(addr)) =
        extensions.get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(addr.ip());
    }
    extensions.get::<SocketAddr>().map(SocketAddr::ip)
}

struct Hop {
    addr: Option<IpAddr>,
    host: Option<String>,
    proto: Option<String>,
}

/// Every comma-separated value of every `name` header, in order. Bytes that are not UTF-8
/// become U+FFFD (a client's garbage then spoils only its own value, not what a proxy
/// appended to the same line). `Forwarded` is split outside quoted strings, unless a line
/// leaves a quote open (again a client's doing): then at every comma.
fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
    let quoted = name == "forwarded";
    let mut out = Vec::new();
    for line in headers.get_all(name) {
        let line = String::from_utf8_lossy(line.as_bytes());
        let parts = if quoted && line.matches('"').count().is_multiple_of(2) {
            split_unquoted(&line, ',')
        } else {
            line.split(',').collect()
        };
        out.extend(
            parts
                .into_iter()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
        );
    }
    out
}

fn last_value(headers: &HeaderMap, name: &str) -> Option<String> {
    values(headers, name).pop()
}

/// Splits `s` on `sep` outside double-quoted strings.
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// One `Forwarded` element: `for=…;host=…;proto=…` (RFC 7239 §4).
fn parse_element(element: &str) -> Hop {
    let mut hop = Hop {
        addr: None,
        host: None,
        proto: None,
    };
    for pair in split_unquoted(element, ';') {
        let Some((name, value)) = pair.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"');
        match name.trim().to_ascii_lowercase().as_str() {
            "for" => hop.addr = parse_node(value),
            "host" if !value.is_empty() => hop.host = Some(value.to_owned()),
            "proto" if !value.is_empty() => hop.proto = Some(value.to_ascii_lowercase()),
            _ => {}
        }
    }
    hop
}

/// A node: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]:4711`; `None` for
/// `unknown`, obfuscated identifiers and anything else.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sa) = node.parse::<SocketAddr>() {
        return Some(canonical(sa.ip()));
    }
    let bracketed = node.strip_prefix('[')?;
    let (inner, _) = bracketed.split_once(']')?;
    inner
        .parse::<Ipv6Addr>()
        .ok()
        .map(|v6| canonical(IpAddr::V6(v6)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        map
    }

    #[test]
    fn cidrs_parse_and_match() {
        let net: Cidr = "10.1.0.0/16".parse().expect("cidr");
        assert!(net.contains(ip("10.1.200.3")));
        assert!(net.contains(ip("::ffff:10.1.0.9")));
        assert!(!net.contains(ip("10.2.0.1")));
        let v6: Cidr = "fd00:1::/32".parse().expect("cidr");
        assert!(v6.contains(ip("fd00:1::42")));
        assert!(!v6.contains(ip("fd00:2::42")));
        assert!(!v6.contains(ip("10.1.0.1")));
        let host: Cidr = "192.0.2.7".parse().expect("cidr");
        assert_eq!(host.to_string(), "192.0.2.7/32");
        assert!(
            "0.0.0.0/0"
                .parse::<Cidr>()
                .expect("any")
                .contains(ip("8.8.8.8"))
        );
        assert!(
            "::/0"
                .parse::<Cidr>()
                .expect("any")
                .contains(ip("2001:db8::1"))
        );
    }

    #[test]
    fn bad_cidrs_are_refused_with_what_to_fix() {
        for (input, says) in [
            ("10.0.0.0/33", "0 to 32"),
            ("fd00::/129", "0 to 128"),
            ("10.0.0.1/8", "the network is 10.0.0.0/8"),
            ("10.0.0.0/x", "not a number"),
            ("proxy.internal", "not an IP address"),
            ("10.0.0/8", "not an IP address"),
            ("", "not an IP address"),
        ] {
            let err = input.parse::<Cidr>().expect_err(input).to_string();
            assert!(err.contains(says), "{input}: {err}");
            assert!(err.contains("trusted proxy"), "{input}: {err}");
        }
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        assert_eq!(client_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(client_key(ip("2001:db8:1:2:bbbb::9")), ip("2001:db8:1:2::"));
        assert_ne!(client_key(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
        assert_eq!(client_key(ip("192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(client_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        let proxies = TrustedProxies::parse(["10.0.0.0/8"]).expect("proxies");
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-host", "evil.example"),
        ]);
        assert_eq!(
            proxies.client_addr(ip("198.51.100.1"), &h),
            ip("198.51.100.1")
        );
        assert_eq!(proxies.forwarded_origin(Some(ip("198.51.100.1")), &h), None);
        assert_eq!(proxies.forwarded_origin(None, &h), None);
        assert_eq!(
            TrustedProxies::default().client_addr(ip("10.0.0.1"), &h),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let proxies = TrustedProxies::parse(["10.0.0.0/8", "fd00::/8"]).expect("proxies");
        let peer = ip("10.0.0.2");
        for (xff, client) in [
            ("203.0.113.9", "203.0.113.9"),
            // A client-prepended value is left of the real client.
            ("1.2.3.4, 203.0.113.9", "203.0.113.9"),
            ("1.2.3.4, 203.0.113.9, 10.0.0.7", "203.0.113.9"),
            ("203.0.113.9:4711, fd00::3", "203.0.113.9"),
            ("[2001:db8::5]:443", "2001:db8::5"),
            // Every hop a trusted proxy: the leftmost.
            ("10.9.9.9, 10.0.0.7", "10.9.9.9"),
            // Unreadable hop written by a trusted proxy: the proxy right of it.
            ("1.2.3.4, unknown, 10.0.0.7", "10.0.0.7"),
            ("garbage", "10.0.0.2"),
        ] {
            let h = headers(&[("x-forwarded-for", xff)]);
            assert_eq!(proxies.client_addr(peer, &h), ip(client), "{xff}");
        }
        // Several header lines are one list.
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "203.0.113.9"),
        ]);
        assert_eq!(proxies.client_addr(peer, &h), ip("203.0.113.9"));
        // No header: the peer.
        assert_eq!(proxies.client_addr(peer, &HeaderMap::new()), peer);
        // A client's garbage on the line the proxy appends to spoils only the client's part.
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            http::HeaderValue::from_bytes(b"\xff\xfe\", 203.0.113.9").expect("value"),
        );
        assert_eq!(proxies.client_addr(peer, &h), ip("203.0.113.9"));
        let rfc = proxies.clone().header(ForwardedHeader::Forwarded);
        let h = headers(&[("forwarded", "for=\"1.2.3.4, for=203.0.113.9")]);
        assert_eq!(rfc.client_addr(peer, &h), ip("203.0.113.9"));
    }

    #[test]
    fn only_the_configured_header_family_is_read() {
        let xff = TrustedProxies::parse(["10.0.0.0/8"]).expect("proxies");
        let rfc = xff.clone().header(ForwardedHeader::Forwarded);
        let peer = ip("10.0.0.2");
        let h = headers(&[
            (
                "forwarded",
                "for=1.2.3.4;host=evil.example, for=203.0.113.9;host=mcp.example;proto=https",
            ),
            ("x-forwarded-for", "198.51.100.7"),
            ("x-forwarded-host", "xff.example"),
        ]);
        assert_eq!(xff.client_addr(peer, &h), ip("198.51.100.7"));
        assert_eq!(rfc.client_addr(peer, &h), ip("203.0.113.9"));
        assert_eq!(
            rfc.forwarded_origin(Some(peer), &h),
            Some(ForwardedOrigin {
                scheme: Some("https".into()),
                host: "mcp.example".into()
            })
        );
        assert_eq!(
            xff.forwarded_origin(Some(peer), &h),
            Some(ForwardedOrigin {
                scheme: None,
                host: "xff.example".into()
            })
        );
        let quoted = headers(&[("forwarded", r#"for="[2001:db8::5]:4711";proto=http"#)]);
        assert_eq!(rfc.client_addr(peer, &quoted), ip("2001:db8::5"));
        assert_eq!(
            rfc.forwarded_origin(Some(peer), &quoted),
            None,
            "no host: the configured origin"
        );
    }

    #[test]
    fn the_forwarded_host_is_the_one_the_nearest_proxy_wrote() {
        let proxies = TrustedProxies::loopback();
        let peer = ip("127.0.0.1");
        let h = headers(&[
            ("x-forwarded-host", "evil.example, mcp.example"),
            ("x-forwarded-proto", "http, https"),
        ]);
        assert_eq!(
            proxies.forwarded_origin(Some(peer), &h),
            Some(ForwardedOrigin {
                scheme: Some("https".into()),
                host: "mcp.example".into()
            })
        );
        let only_host = headers(&[("host", "evil.example")]);
        assert_eq!(proxies.forwarded_origin(Some(peer), &only_host), None);
    }
}
