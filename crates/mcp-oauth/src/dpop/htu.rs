//! Comparing a proof's `htu` with the request URL (RFC 9449 §4.3 step 9), after the
//! syntax- and scheme-based normalisation of RFC 3986 §6.2.2–6.2.3.

use url::Url;

use super::DpopError;

/// The parts of an `http(s)` URL that `htu` names: query and fragment are left out
/// (RFC 9449 §4.2), scheme and host are lowercase, the default port is implied, dot
/// segments are resolved, an empty path is `/`, and percent-encoding is normalised
/// (unreserved characters decoded, hex digits uppercase).
#[derive(Debug, PartialEq, Eq)]
struct Target<'a> {
    scheme: &'a str,
    username: &'a str,
    password: Option<&'a str>,
    host: Option<url::Host<&'a str>>,
    port: Option<u16>,
    path: String,
}

fn target(url: &Url) -> Option<Target<'_>> {
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    Some(Target {
        scheme: url.scheme(),
        username: url.username(),
        password: url.password(),
        host: url.host(),
        port: url.port_or_known_default(),
        path: normalize_percent_encoding(url.path()),
    })
}

/// Checks `htu` against `request`, the URL of the request as its public address names it.
pub(crate) fn check(htu: &str, request: &Url) -> Result<(), DpopError> {
    // The `url` parser does the scheme and host case, the default port, dot segments and
    // the empty path; a relative or non-http(s) htu names no request.
    let parsed = Url::parse(htu).map_err(|_| DpopError::InvalidClaim("htu"))?;
    let claimed = target(&parsed).ok_or(DpopError::InvalidClaim("htu"))?;
    match target(request) {
        Some(actual) if actual == claimed => Ok(()),
        _ => Err(DpopError::UrlMismatch),
    }
}

/// RFC 3986 §6.2.2.1–6.2.2.2: `%7e` and `%7E` are `~`, `%2f` is `%2F`.
fn normalize_percent_encoding(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            let decoded = hi << 4 | lo;
            if decoded.is_ascii_alphanumeric() || matches!(decoded, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(decoded));
            } else {
                out.push('%');
                out.push_str(&format!("{decoded:02X}"));
            }
            i += 3;
            continue;
        }
        out.push(char::from(b));
        i += 1;
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("a URL")
    }

    #[test]
    fn normalised_forms_match() {
        let request = url("https://mcp.example.com/mcp");
        for htu in [
            "https://mcp.example.com/mcp",
            "HTTPS://MCP.Example.COM/mcp",
            "https://mcp.example.com:443/mcp",
            "https://mcp.example.com/mcp?x=1",
            "https://mcp.example.com/mcp#frag",
            "https://mcp.example.com/a/../mcp",
            "https://mcp.example.com/%6dcp",
        ] {
            assert_eq!(check(htu, &request), Ok(()), "{htu}");
        }
        assert_eq!(check("http://h.test", &url("http://h.test/")), Ok(()));
        assert_eq!(
            check("http://h.test/%2f", &url("http://h.test/%2F")),
            Ok(())
        );
    }

    #[test]
    fn other_targets_do_not_match() {
        let request = url("https://mcp.example.com/mcp");
        for htu in [
            "https://mcp.example.com/MCP",
            "https://mcp.example.com/mcp/",
            "https://mcp.example.com/other",
            "http://mcp.example.com/mcp",
            "https://evil.example.com/mcp",
            "https://mcp.example.com:8443/mcp",
            "https://user@mcp.example.com/mcp",
            "https://mcp.example.com/mcp%2F",
        ] {
            assert_eq!(check(htu, &request), Err(DpopError::UrlMismatch), "{htu}");
        }
        for htu in [
            "/mcp",
            "",
            "ftp://mcp.example.com/mcp",
            "not a url",
            "mailto:a@b",
        ] {
            assert_eq!(
                check(htu, &request),
                Err(DpopError::InvalidClaim("htu")),
                "{htu}"
            );
        }
    }

    #[test]
    fn percent_encoding_normalisation_is_total() {
        assert_eq!(normalize_percent_encoding("/%7e%7E%2f%zz%"), "/~~%2F%zz%");
        assert_eq!(normalize_percent_encoding("/%4"), "/%4");
        assert_eq!(normalize_percent_encoding(""), "");
    }
}
