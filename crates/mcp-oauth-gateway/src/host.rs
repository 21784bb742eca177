//! DNS-rebinding defence of the MCP endpoint: the host a request names (`Host`, or the
//! HTTP/2 `:authority`) must be the public URL's host or a loopback name, else 403. The same
//! rule the library gives rmcp for an OAuth-protected endpoint
//! (`mcp_oauth::rmcp::streamable_http_config`), and rmcp's own default without OAuth (loopback
//! names only). Off in trusted-proxy mode: the proxy decides which public hosts reach the
//! gateway, and the `Host` it passes varies with its configuration.
//!
//! A page in a browser that rebinds its own name to 127.0.0.1 sends its name as `Host`: it is
//! refused here whatever else the request carries.

use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::routing::MethodRouter;
use http::StatusCode;

/// The host names allowed in `Host`, or `None` when no check applies.
fn allowed_hosts(oauth: Option<&mcp_oauth::OAuth>) -> Option<Arc<[String]>> {
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    if let Some(oauth) = oauth {
        if oauth.trusts_forwarded_headers() {
            return None;
        }
        if let Some(host) = oauth.resource().url().host_str() {
            hosts.push(normalize(host));
        }
    }
    Some(hosts.into())
}

/// `endpoint`, answering 403 to a request whose host is not allowed.
pub(crate) fn guard(endpoint: MethodRouter, oauth: Option<&mcp_oauth::OAuth>) -> MethodRouter {
    let Some(hosts) = allowed_hosts(oauth) else {
        return endpoint;
    };
    endpoint.layer(axum::middleware::from_fn(
        move |request: Request, next: Next| {
            let hosts = hosts.clone();
            async move {
                match request_host(&request) {
                    Some(host) if hosts.contains(&host) => next.run(request).await,
                    host => {
                        tracing::warn!(
                            host = host.as_deref().unwrap_or("(none)"),
                            "refused a request naming a host this gateway does not serve (possible DNS rebinding)"
                        );
                        (
                            StatusCode::FORBIDDEN,
                            "Forbidden: the Host header names a host this MCP endpoint does not serve\n",
                        )
                            .into_response()
                    }
                }
            }
        },
    ))
}

/// The host a request names, without port, lowercase; `None` when it names none or an
/// unparsable one.
fn request_host(request: &Request) -> Option<String> {
    let authority = match request.headers().get(http::header::HOST) {
        Some(value) => http::uri::Authority::try_from(value.to_str().ok()?).ok()?,
        None => request.uri().authority()?.clone(),
    };
    Some(normalize(authority.host()))
}

fn normalize(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_service::Service as _;

    async fn status(endpoint: &mut MethodRouter, host: Option<&str>, uri: &str) -> StatusCode {
        let mut request = Request::builder().uri(uri);
        if let Some(host) = host {
            request = request.header(http::header::HOST, host);
        }
        let request = request.body(axum::body::Body::empty()).expect("request");
        endpoint.call(request).await.expect("infallible").status()
    }

    fn endpoint(oauth: Option<&mcp_oauth::OAuth>) -> MethodRouter {
        guard(axum::routing::any(|| async { "ok" }), oauth)
    }

    fn oauth(resource: &str, proxy: bool) -> mcp_oauth::OAuth {
        let key = mcp_oauth::testing::TestKey::es256();
        let verifier = mcp_oauth::verify::JwtVerifier::builder()
            .issuer("https://auth.example.com")
            .jwk(&key.public_jwk().expect("jwk"))
            .build()
            .expect("verifier");
        let mut builder = mcp_oauth::OAuth::builder()
            .resource(resource)
            .authorization_server("https://auth.example.com")
            .verifier(verifier)
            .mirror_authorization_server(false);
        if proxy {
            builder = builder.trusted_proxies(
                mcp_oauth::forwarded::TrustedProxies::parse(["10.0.0.0/8"]).expect("cidr"),
            );
        }
        builder.build().expect("oauth")
    }

    #[tokio::test]
    async fn loopback_names_pass_with_or_without_a_port() {
        let mut endpoint = endpoint(None);
        for host in ["127.0.0.1:8080", "localhost", "LOCALHOST:1", "[::1]:9"] {
            assert_eq!(
                status(&mut endpoint, Some(host), "/mcp").await,
                StatusCode::OK,
                "{host}"
            );
        }
    }

    #[tokio::test]
    async fn another_name_is_refused() {
        let mut endpoint = endpoint(None);
        for host in [
            "evil.example.com",
            "evil.example.com:8080",
            "127.0.0.1.evil.example.com",
            "127.0.0.2",
        ] {
            assert_eq!(
                status(&mut endpoint, Some(host), "/mcp").await,
                StatusCode::FORBIDDEN,
                "{host}"
            );
        }
    }

    #[tokio::test]
    async fn a_missing_or_malformed_host_is_refused() {
        let mut endpoint = endpoint(None);
        assert_eq!(
            status(&mut endpoint, None, "/mcp").await,
            StatusCode::FORBIDDEN
        );
        for host in ["", "a b", "x:y:z", "[::1"] {
            assert_eq!(
                status(&mut endpoint, Some(host), "/mcp").await,
                StatusCode::FORBIDDEN,
                "{host:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_host_that_is_not_text_is_refused() {
        let mut endpoint = endpoint(None);
        let request = Request::builder()
            .uri("/mcp")
            .header(
                http::header::HOST,
                http::HeaderValue::from_bytes(b"local\xffhost").expect("value"),
            )
            .body(axum::body::Body::empty())
            .expect("request");
        let answer = endpoint.call(request).await.expect("infallible");
        assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn the_http2_authority_counts_when_there_is_no_host_header() {
        let mut endpoint = endpoint(None);
        assert_eq!(
            status(&mut endpoint, None, "http://localhost:1/mcp").await,
            StatusCode::OK
        );
        assert_eq!(
            status(&mut endpoint, None, "http://evil.example.com/mcp").await,
            StatusCode::FORBIDDEN
        );
    }

    #[tokio::test]
    async fn the_public_host_passes_behind_oauth() {
        let oauth = oauth("https://mcp.example.com/mcp", false);
        let mut endpoint = endpoint(Some(&oauth));
        assert_eq!(
            status(&mut endpoint, Some("mcp.example.com"), "/mcp").await,
            StatusCode::OK
        );
        assert_eq!(
            status(&mut endpoint, Some("127.0.0.1:8080"), "/mcp").await,
            StatusCode::OK
        );
        assert_eq!(
            status(&mut endpoint, Some("evil.example.com"), "/mcp").await,
            StatusCode::FORBIDDEN
        );
    }

    #[tokio::test]
    async fn trusted_proxy_mode_leaves_host_to_the_proxy() {
        let oauth = oauth("https://mcp.example.com/mcp", true);
        let mut endpoint = endpoint(Some(&oauth));
        assert_eq!(
            status(&mut endpoint, Some("internal-name:8080"), "/mcp").await,
            StatusCode::OK
        );
    }
}
