//! Request-rate limits for the endpoints anyone can call without credentials: a token
//! bucket per client address, and one per client id for requests that present a client
//! secret at `/token` and `/revoke`.
//!
//! The client address is the TCP peer (axum's `ConnectInfo`; one shared bucket when the
//! server is not served with connection info) unless the peer is a trusted proxy
//! ([`AuthServerBuilder::trusted_proxies`](super::AuthServerBuilder::trusted_proxies)): then
//! it is the rightmost address of the forwarded chain that is not a trusted proxy (see
//! [`crate::forwarded`]), never a value the client chose. IPv6 clients are counted by their
//! /64.

use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use tokio::time::Instant;

use super::protocol::ErrorCode;
use crate::forwarded::{TrustedProxies, client_key, peer_addr};

/// A limit: `burst` requests at once, refilled at `per_minute`.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RateLimit {
    /// Requests per minute, sustained.
    pub per_minute: u32,
    /// Requests allowed in a burst.
    pub burst: u32,
}

impl RateLimit {
    /// `per_minute` sustained, `burst` at once.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        Self {
            per_minute: per_minute.max(1),
            burst: burst.max(1),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Buckets per key (a client address, a client id), bounded in number and forgotten when
/// idle; with the trusted proxies that say which address a request comes from.
#[derive(Clone)]
pub(crate) struct Limiter<K = IpAddr> {
    limit: RateLimit,
    buckets: moka::sync::Cache<K, Arc<Mutex<Bucket>>>,
    proxies: Arc<TrustedProxies>,
}

impl<K: Hash + Eq + Send + Sync + 'static> Limiter<K> {
    pub(crate) fn new(limit: RateLimit, proxies: &TrustedProxies) -> Self {
        Self {
            limit,
            buckets: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(600))
                .build(),
            proxies: Arc::new(proxies.clone()),
        }
    }

    /// Takes one token for `key`; `Err(wait)` when the bucket is empty.
    pub(crate) fn take(&self, key: K) -> Result<(), Duration> {
        let bucket = self.buckets.get_with(key, || {
            Arc::new(Mutex::new(Bucket {
                tokens: f64::from(self.limit.burst),
                updated: Instant::now(),
            }))
        });
        let mut bucket = match bucket.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        let now = Instant::now();
        let rate = f64::from(self.limit.per_minute) / 60.0;
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.updated).as_secs_f64() * rate)
            .min(f64::from(self.limit.burst));
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                ((1.0 - bucket.tokens) / rate).max(1.0),
            ))
        }
    }
}

/// The client address of a request, for limits and logs: the TCP peer, or, when the peer is
/// a trusted proxy, the rightmost untrusted address the proxies forwarded. `0.0.0.0` when the
/// server is not served with connection info.
pub(crate) fn client_ip(
    proxies: &TrustedProxies,
    headers: &HeaderMap,
    extensions: &http::Extensions,
) -> IpAddr {
    let peer = peer_addr(extensions).unwrap_or(IpAddr::from([0, 0, 0, 0]));
    proxies.client_addr(peer, headers)
}

/// The middleware: 429 with `Retry-After` when the caller's bucket is empty.
pub(crate) async fn limit(
    State(limiter): State<Limiter>,
    request: Request,
    next: Next,
) -> Response {
    let ip = client_ip(&limiter.proxies, request.headers(), request.extensions());
    match limiter.take(client_key(ip)) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            tracing::warn!(target: "mcp_oauth::auth_server", %ip, path = %request.uri().path(), "rate limit reached");
            let mut response = super::http::oauth_error(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::TemporarilyUnavailable,
                &format!("too many requests; retry in {} s", wait.as_secs()),
            );
            if let Ok(value) = HeaderValue::from_str(&wait.as_secs().to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn buckets_refill_over_time_and_are_per_address() {
        let limiter = Limiter::new(RateLimit::new(60, 2), &TrustedProxies::default());
        let a = IpAddr::from([10, 0, 0, 1]);
        let b = IpAddr::from([10, 0, 0, 2]);
        assert!(limiter.take(a).is_ok());
        assert!(limiter.take(a).is_ok());
        assert!(limiter.take(a).is_err());
        assert!(
            limiter.take(b).is_ok(),
            "another address has its own bucket"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(
            limiter.take(a).is_ok(),
            "one token per second at 60 per minute"
        );
        assert!(limiter.take(a).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn per_client_buckets_refill_over_time() {
        let limiter: Limiter<String> =
            Limiter::new(RateLimit::new(60, 1), &TrustedProxies::default());
        assert!(limiter.take("svc".into()).is_ok());
        assert_eq!(limiter.take("svc".into()), Err(Duration::from_secs(1)));
        assert!(limiter.take("other".into()).is_ok());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(limiter.take("svc".into()).is_ok());
    }
}
