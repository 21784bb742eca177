//! The protected resource's identifier (RFC 8707, RFC 9728) and audience matching.

use std::fmt;
use std::net::IpAddr;

use url::Url;

use crate::error::ConfigError;

/// The public URL of a protected MCP endpoint, e.g. `https://mcp.example.com/mcp`.
///
/// It is the `resource` in the protected-resource metadata, the `resource` clients send to
/// the authorization server, and so the audience tokens must carry. It is configured, never
/// taken from a request's `Host` header (see the trusted-proxy option on
/// [`OAuthBuilder`](crate::OAuthBuilder) for deployments that need that).
///
/// Canonical form: lowercase scheme and host, no default port, no fragment or query, and
/// no trailing slash on an origin-only URL (`https://mcp.example.com`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ResourceUrl {
    url: Url,
    text: String,
}

impl ResourceUrl {
    /// Parses and canonicalises a resource URL.
    ///
    /// Plain `http` is accepted for loopback hosts only (`127.0.0.1`, `[::1]`, `localhost`);
    /// use [`ResourceUrl::parse_insecure`] to allow it elsewhere.
    ///
    /// # Errors
    ///
    /// The URL is not absolute `https` (or loopback `http`), or has a fragment, a query or
    /// credentials.
    pub fn parse(value: &str) -> Result<Self, ConfigError> {
        Self::parse_with(value, false)
    }

    /// As [`ResourceUrl::parse`], but accepts plain `http` for any host.
    ///
    /// # Errors
    ///
    /// As [`ResourceUrl::parse`], minus the `https` rule.
    pub fn parse_insecure(value: &str) -> Result<Self, ConfigError> {
        Self::parse_with(value, true)
    }

    fn parse_with(value: &str, allow_http: bool) -> Result<Self, ConfigError> {
        const FIELD: &str = "resource URL";
        let url =
            Url::parse(value.trim()).map_err(|e| ConfigError::url(FIELD, value, e.to_string()))?;
        match url.scheme() {
            "https" => {}
            "http" if allow_http || is_loopback_url(&url) => {}
            "http" => {
                return Err(ConfigError::url(
                    FIELD,
                    value,
                    "plain http is only allowed for loopback hosts; use https (or the insecure option for a private network)",
                ));
            }
            other => {
                return Err(ConfigError::url(
                    FIELD,
                    value,
                    format!("scheme {other:?} is not http(s)"),
                ));
            }
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(ConfigError::url(FIELD, value, "the URL has no host"));
        }
        if url.fragment().is_some() {
            return Err(ConfigError::url(
                FIELD,
                value,
                "a resource URL must not have a fragment (RFC 8707)",
            ));
        }
        if url.query().is_some() {
            return Err(ConfigError::url(
                FIELD,
                value,
                "a resource URL should not have a query (RFC 8707)",
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ConfigError::url(
                FIELD,
                value,
                "a resource URL must not carry credentials",
            ));
        }
        Ok(Self::from_url(url))
    }

    fn from_url(url: Url) -> Self {
        let mut text = url.as_str().to_owned();
        if url.path() == "/" {
            text.pop();
        }
        Self { url, text }
    }

    /// The canonical URL as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The path of the MCP endpoint (`/mcp`; `/` for an origin-only resource).
    pub fn path(&self) -> &str {
        self.url.path()
    }

    /// `scheme://host[:port]`.
    pub fn origin(&self) -> String {
        self.url.origin().ascii_serialization()
    }

    /// The same resource on another origin (trusted-proxy mode): same path.
    pub(crate) fn with_origin(&self, scheme: &str, host: &str) -> Option<Self> {
        let url = Url::parse(&format!("{scheme}://{host}{}", self.url.path())).ok()?;
        (url.host_str().is_some() && url.query().is_none() && url.fragment().is_none())
            .then(|| Self::from_url(url))
    }

    /// The path of the endpoint without a trailing slash (`""` for the origin).
    fn trimmed_path(&self) -> &str {
        self.url.path().trim_end_matches('/')
    }

    /// The path-suffixed protected-resource metadata URL (RFC 9728 §3.1):
    /// `https://mcp.example.com/.well-known/oauth-protected-resource/mcp`.
    pub fn metadata_url(&self) -> String {
        format!("{}{}", self.origin(), self.metadata_path())
    }

    /// The path of [`ResourceUrl::metadata_url`] on this server.
    pub fn metadata_path(&self) -> String {
        format!(
            "/.well-known/oauth-protected-resource{}",
            self.trimmed_path()
        )
    }

    /// Whether `aud` names this resource: the same URL with any case of scheme and host,
    /// the default port spelled or not, and with or without a trailing slash.
    pub fn matches(&self, aud: &str) -> bool {
        if aud == self.text {
            return true;
        }
        let Ok(other) = Url::parse(aud) else {
            return false;
        };
        same_resource(&self.url, &other)
    }

    /// Whether `aud` is this resource or a path-boundary prefix of it (`https://h/api`
    /// covers `https://h/api/mcp`, not `https://h/api-other`).
    pub fn is_covered_by(&self, aud: &str) -> bool {
        if self.matches(aud) {
            return true;
        }
        let Ok(other) = Url::parse(aud) else {
            return false;
        };
        if other.scheme() != self.url.scheme()
            || other.host() != self.url.host()
            || other.port_or_known_default() != self.url.port_or_known_default()
            || other.query().is_some()
            || other.fragment().is_some()
        {
            return false;
        }
        let prefix = other.path().trim_end_matches('/');
        let path = self.trimmed_path();
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// Compares two URLs as resource identifiers.
pub(crate) fn same_resource(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host() == b.host()
        && a.port_or_known_default() == b.port_or_known_default()
        && a.path().trim_end_matches('/') == b.path().trim_end_matches('/')
        && a.query() == b.query()
        && b.fragment().is_none()
        && b.username().is_empty()
        && b.password().is_none()
}

impl fmt::Debug for ResourceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ResourceUrl").field(&self.text).finish()
    }
}

impl fmt::Display for ResourceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Whether the URL's host is a loopback name or address.
pub(crate) fn is_loopback_url(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => {
            domain.eq_ignore_ascii_case("localhost")
                || domain.to_ascii_lowercase().ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// The URLs to try, in the order the MCP specification gives (2025-11-25 "Authorization
/// Server Metadata Discovery"), for an issuer's metadata:
///
/// - with a path (`https://auth.example.com/tenant1`): RFC 8414 path-inserted,
///   OIDC path-inserted, OIDC path-appended;
/// - without: RFC 8414, then OIDC.
pub fn authorization_server_metadata_urls(issuer: &Url) -> Vec<Url> {
    let origin = issuer.origin().ascii_serialization();
    let path = issuer.path().trim_end_matches('/');
    let candidates = if path.is_empty() {
        vec![
            format!("{origin}/.well-known/oauth-authorization-server"),
            format!("{origin}/.well-known/openid-configuration"),
        ]
    } else {
        vec![
            format!("{origin}/.well-known/oauth-authorization-server{path}"),
            format!("{origin}/.well-known/openid-configuration{path}"),
            format!("{origin}{path}/.well-known/openid-configuration"),
        ]
    };
    candidates
        .iter()
        .filter_map(|c| Url::parse(c).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> ResourceUrl {
        ResourceUrl::parse(s).expect("valid resource")
    }

    #[test]
    fn canonical_form_lowercases_and_drops_origin_slash() {
        assert_eq!(
            r("HTTPS://MCP.Example.COM:443/mcp").as_str(),
            "https://mcp.example.com/mcp"
        );
        assert_eq!(
            r("https://mcp.example.com/").as_str(),
            "https://mcp.example.com"
        );
        assert_eq!(
            r("https://mcp.example.com").as_str(),
            "https://mcp.example.com"
        );
        assert_eq!(
            r("https://mcp.example.com:8443").as_str(),
            "https://mcp.example.com:8443"
        );
    }

    #[test]
    fn bad_resources_are_refused_with_reasons() {
        for bad in [
            "mcp.example.com/mcp",
            "ftp://mcp.example.com",
            "https://mcp.example.com/mcp#frag",
            "https://mcp.example.com/mcp?x=1",
            "https://user:pw@mcp.example.com/mcp",
            "http://mcp.example.com/mcp",
        ] {
            assert!(ResourceUrl::parse(bad).is_err(), "{bad}");
        }
        assert!(ResourceUrl::parse("http://127.0.0.1:8080/mcp").is_ok());
        assert!(ResourceUrl::parse("http://localhost:8080/mcp").is_ok());
        assert!(ResourceUrl::parse("http://[::1]:8080/mcp").is_ok());
        assert!(ResourceUrl::parse_insecure("http://mcp.internal/mcp").is_ok());
    }

    #[test]
    fn audience_matching_tolerates_slash_case_and_default_port() {
        let res = r("https://mcp.example.com/mcp");
        for ok in [
            "https://mcp.example.com/mcp",
            "https://mcp.example.com/mcp/",
            "HTTPS://MCP.EXAMPLE.COM/mcp",
            "https://mcp.example.com:443/mcp",
        ] {
            assert!(res.matches(ok), "{ok}");
        }
        for bad in [
            "https://mcp.example.com/MCP",
            "https://mcp.example.com/mcp2",
            "https://mcp.example.com",
            "http://mcp.example.com/mcp",
            "https://mcp.example.com:8443/mcp",
            "https://evil.example.com/mcp",
            "https://mcp.example.com/mcp?x",
            "https://mcp.example.com/mcp#x",
            "mcp.example.com/mcp",
            "",
        ] {
            assert!(!res.matches(bad), "{bad}");
        }
        let origin = r("https://mcp.example.com");
        assert!(origin.matches("https://mcp.example.com/"));
    }

    #[test]
    fn path_boundary_prefix() {
        let res = r("https://h.example/api/mcp");
        assert!(res.is_covered_by("https://h.example/api"));
        assert!(res.is_covered_by("https://h.example/"));
        assert!(!res.is_covered_by("https://h.example/ap"));
        assert!(!res.is_covered_by("https://h.example/api/mcp/tools"));
    }

    #[test]
    fn metadata_urls() {
        assert_eq!(
            r("https://mcp.example.com/public/mcp").metadata_url(),
            "https://mcp.example.com/.well-known/oauth-protected-resource/public/mcp"
        );
        assert_eq!(
            r("https://mcp.example.com").metadata_url(),
            "https://mcp.example.com/.well-known/oauth-protected-resource"
        );
        let issuer = Url::parse("https://auth.example.com/tenant1").expect("url");
        let urls: Vec<String> = authorization_server_metadata_urls(&issuer)
            .iter()
            .map(Url::to_string)
            .collect();
        assert_eq!(
            urls,
            [
                "https://auth.example.com/.well-known/oauth-authorization-server/tenant1",
                "https://auth.example.com/.well-known/openid-configuration/tenant1",
                "https://auth.example.com/tenant1/.well-known/openid-configuration",
            ]
        );
        let root = Url::parse("https://auth.example.com/").expect("url");
        assert_eq!(authorization_server_metadata_urls(&root).len(), 2);
    }
}
