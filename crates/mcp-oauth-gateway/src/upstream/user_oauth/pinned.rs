//! Requests to URLs the gateway learnt from an upstream's documents (its protected-resource
//! metadata, its server's metadata, the token and registration endpoints those name): each
//! goes to the address the SSRF guard ([`NetGuard`]) checked, through a client pinned to it,
//! so a second DNS answer (a rebinding name) cannot send it to an internal service. No
//! redirect is followed, and no proxy from the environment is used (it would resolve the
//! name again, unchecked).

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use mcp_oauth::net_guard::{NetGuard, pinned_client};
use url::Url;

/// The timeout of a metadata request.
pub(crate) const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest metadata document read.
const MAX_DOCUMENT: usize = 256 * 1024;

/// Why a document was not fetched.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The server answered with this status (not 200).
    Status(u16),
    /// Refused by the guard, unreachable, too large, and the like.
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status(status) => write!(f, "it answered {status}"),
            Self::Other(why) => f.write_str(why),
        }
    }
}

/// The address `url` may be reached at, checked by the guard.
pub(crate) async fn check(guard: &NetGuard, url: &Url) -> Result<SocketAddr, String> {
    if !super::is_https_or_loopback(url) {
        return Err(format!(
            "{url} is refused: not https (plain http only to a loopback host)"
        ));
    }
    guard
        .check(url)
        .await
        .map_err(|e| format!("{url} is refused: {e}"))
}

/// `GET url` (JSON), sent to the address the guard checked; the body of a 200 answer.
pub(crate) async fn get_json(guard: &NetGuard, url: &Url) -> Result<Bytes, Failure> {
    let addr = check(guard, url).await.map_err(Failure::Other)?;
    fetch_at(url, addr).await
}

/// `GET url` (JSON) at `addr`, whatever the name in `url` resolves to.
pub(crate) async fn fetch_at(url: &Url, addr: SocketAddr) -> Result<Bytes, Failure> {
    let failed = |e: reqwest::Error| Failure::Other(format!("{url}: {}", e.without_url()));
    let response = pinned_client(url, addr)
        .timeout(FETCH_TIMEOUT)
        .build()
        .map_err(failed)?
        .get(url.clone())
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(failed)?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(Failure::Status(status));
    }
    crate::upstream::body::read_at_most(response, MAX_DOCUMENT)
        .await
        .map_err(|e| Failure::Other(format!("{url}: {e}")))
}

/// A client of one learnt URL (the token endpoint), pinned at each use to the address the
/// guard gives then (the name is checked again each time; the client is kept while it
/// resolves to the same address).
pub(crate) struct PinnedClient {
    guard: NetGuard,
    url: Url,
    timeout: Duration,
    current: Mutex<Option<(SocketAddr, reqwest::Client)>>,
}

impl PinnedClient {
    pub(crate) fn new(guard: NetGuard, url: Url, timeout: Duration) -> Self {
        Self {
            guard,
            url,
            timeout,
            current: Mutex::new(None),
        }
    }

    /// A client that connects only to the address the guard checked just now.
    pub(crate) async fn client(&self) -> Result<reqwest::Client, String> {
        let addr = check(&self.guard, &self.url).await?;
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((pinned, client)) = &*current
            && *pinned == addr
        {
            return Ok(client.clone());
        }
        let client = pinned_client(&self.url, addr)
            .timeout(self.timeout)
            .build()
            .map_err(|e| e.to_string())?;
        *current = Some((addr, client.clone()));
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in server on a loopback port answering `answer` to every request; its port.
    async fn stand_in(answer: &'static str) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let app = axum::Router::new().fallback(move || async move { answer });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        port
    }

    #[tokio::test]
    async fn a_pinned_request_goes_to_the_checked_address_without_asking_dns() {
        let port = stand_in(r#"{"ok":true}"#).await;
        // `.invalid` never resolves (RFC 6761 §6.4): the answer can only come from the
        // address the request is pinned to.
        let url = Url::parse(&format!("http://metadata.invalid:{port}/doc")).expect("url");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let body = fetch_at(&url, addr)
            .await
            .expect("fetched at the pinned address");
        assert_eq!(&body[..], br#"{"ok":true}"#);
    }

    #[tokio::test]
    async fn the_token_endpoints_client_is_checked_at_each_use() {
        let port = stand_in("{}").await;
        let url = Url::parse(&format!("http://127.0.0.1:{port}/token")).expect("url");
        // A guard that allows this host: a pinned client, kept while the address holds.
        let allowed = PinnedClient::new(
            NetGuard::new().allow_host(format!("127.0.0.1:{port}")),
            url.clone(),
            FETCH_TIMEOUT,
        );
        let client = allowed.client().await.expect("allowed");
        let answer = client.post(url.clone()).send().await.expect("sent");
        assert_eq!(answer.status(), 200);
        assert!(allowed.client().await.is_ok());
        // A guard that allows public addresses only refuses a loopback one: no client at all.
        let refused = PinnedClient::new(NetGuard::new().allow_http(), url, FETCH_TIMEOUT);
        let err = refused.client().await.expect_err("loopback is not public");
        assert!(err.contains("not a public address"), "{err}");
    }
}
