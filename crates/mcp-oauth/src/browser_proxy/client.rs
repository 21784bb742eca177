//! Outbound requests of the browser proxy. Every URL, the first one and every redirect hop,
//! goes through the `validate_target` hook and the SSRF guard before anything is sent, and
//! the connection is pinned to the address the guard checked. Redirects are followed by
//! hand, at most `max_redirects` of them; reqwest's own redirect handling is off.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, StatusCode, header};
use url::Url;

use super::Shared;
use crate::net_guard::GuardError;

/// Target for tracing events.
pub(super) const TARGET: &str = "mcp_oauth::browser_proxy";

/// Request headers that never follow a redirect to another origin.
const ORIGIN_BOUND: [&str; 2] = ["authorization", "dpop"];

/// One outbound request.
pub(super) struct Outbound {
    pub(super) method: Method,
    pub(super) url: Url,
    pub(super) headers: HeaderMap,
    pub(super) body: Option<Bytes>,
    /// The hook already accepted `url` (the URL the browser gave); later hops are checked.
    pub(super) url_accepted: bool,
}

impl Outbound {
    pub(super) fn get(url: Url) -> Self {
        Self {
            method: Method::GET,
            url,
            headers: HeaderMap::new(),
            body: None,
            url_accepted: false,
        }
    }
}

/// The final (non-redirect) answer.
pub(super) struct Answer {
    /// Where the answer came from, after redirects.
    pub(super) url: Url,
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    /// Empty unless a body limit was given.
    pub(super) body: Bytes,
}

/// Why no answer came back.
pub(super) enum Failure {
    /// The hook or the guard refused a URL; nothing was sent to it.
    Refused(Refusal),
    /// The upstream could not be reached or read (the text is safe to show).
    Network(String),
    /// The response body is larger than the limit.
    TooLarge(usize),
    /// More redirects than allowed.
    TooManyRedirects(usize),
}

/// A refused URL: the host, and why.
pub(super) struct Refusal {
    pub(super) host: String,
    pub(super) reason: String,
}

impl Shared {
    /// Checks `url` with the hook (unless already done) and the guard; returns the address to
    /// connect to.
    async fn admit(&self, url: &Url, hook_done: bool) -> Result<std::net::SocketAddr, Failure> {
        let host = url.host_str().unwrap_or_default().to_owned();
        if !hook_done && !self.target_allowed(url) {
            tracing::debug!(target: TARGET, %host, "target refused by validate_target");
            return Err(Failure::Refused(Refusal {
                reason: "refused by validate_target".into(),
                host,
            }));
        }
        match self.guard.check(url).await {
            Ok(addr) => Ok(addr),
            Err(GuardError::Resolve(_)) => {
                tracing::debug!(target: TARGET, %host, "target does not resolve");
                Err(Failure::Network(format!("cannot resolve {host}")))
            }
            Err(err) => {
                tracing::debug!(target: TARGET, %host, "target refused by the network guard");
                // The resolved address is not shown: it would map the internal network.
                let reason = match err {
                    GuardError::Private { .. } => format!("{host} is not a public address"),
                    other => other.to_string(),
                };
                Err(Failure::Refused(Refusal { host, reason }))
            }
        }
    }

    /// Sends `req`, following redirects; reads the final body up to `body_limit` bytes
    /// (`None`: the body is not read).
    pub(super) async fn send(
        &self,
        mut req: Outbound,
        body_limit: Option<usize>,
    ) -> Result<Answer, Failure> {
        let mut hook_done = req.url_accepted;
        let mut hops = 0;
        loop {
            let addr = self.admit(&req.url, hook_done).await?;
            hook_done = false;
            // No timeout of its own: the handler's bounds the whole call, hops included.
            let client = crate::net_guard::pinned_client(&req.url, addr)
                .build()
                .map_err(|_| Failure::Network("cannot build the http client".into()))?;
            let mut request = client
                .request(req.method.clone(), req.url.clone())
                .headers(req.headers.clone());
            if let Some(body) = &req.body {
                request = request.body(body.clone());
            }
            let mut response = request.send().await.map_err(|e| network(&e))?;
            let status = response.status();
            if is_followed_redirect(status)
                && let Some(location) = response.headers().get(header::LOCATION)
            {
                if hops >= self.max_redirects {
                    return Err(Failure::TooManyRedirects(self.max_redirects));
                }
                hops += 1;
                let next = location
                    .to_str()
                    .ok()
                    .and_then(|l| req.url.join(l).ok())
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .ok_or_else(|| Failure::Network("invalid redirect location".into()))?;
                if status == StatusCode::SEE_OTHER
                    || (req.method == Method::POST
                        && matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND))
                {
                    req.method = Method::GET;
                    req.body = None;
                    req.headers.remove(header::CONTENT_TYPE);
                }
                if next.origin() != req.url.origin() {
                    for name in ORIGIN_BOUND {
                        req.headers.remove(name);
                    }
                }
                req.url = next;
                continue;
            }
            let headers = response.headers().clone();
            let Some(limit) = body_limit else {
                return Ok(Answer {
                    url: req.url,
                    status,
                    headers,
                    body: Bytes::new(),
                });
            };
            if response
                .content_length()
                .is_some_and(|len| len > limit as u64)
            {
                return Err(Failure::TooLarge(limit));
            }
            let mut body = BytesMut::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| network(&e))? {
                if body.len() + chunk.len() > limit {
                    return Err(Failure::TooLarge(limit));
                }
                body.extend_from_slice(&chunk);
            }
            return Ok(Answer {
                url: req.url,
                status,
                headers,
                body: body.freeze(),
            });
        }
    }
}

fn is_followed_redirect(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    )
}

/// A short description of a transport error, without the URL.
fn network(err: &reqwest::Error) -> Failure {
    Failure::Network(
        if err.is_connect() {
            "connection failed"
        } else if err.is_body() || err.is_decode() {
            "cannot read the response"
        } else {
            "request failed"
        }
        .into(),
    )
}
