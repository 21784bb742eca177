//! Request-rate limits for the endpoints anyone can call without credentials: a token
//! bucket per client address (from axum's `ConnectInfo`; one shared bucket when the server
//! is not served with connection info).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use tokio::time::Instant;

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

/// Buckets per client address, bounded in number and forgotten when idle.
#[derive(Clone)]
pub(crate) struct Limiter {
    limit: RateLimit,
    buckets: moka::sync::Cache<IpAddr, Arc<Mutex<Bucket>>>,
}

impl Limiter {
    pub(crate) fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(600))
                .build(),
        }
    }

    /// Takes one token for `ip`; `Err(wait)` when the bucket is empty.
    pub(crate) fn take(&self, ip: IpAddr) -> Result<(), Duration> {
        let bucket = self.buckets.get_with(ip, || {
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

/// The middleware: 429 with `Retry-After` when the caller's bucket is empty.
pub(crate) async fn limit(
    State(limiter): State<Limiter>,
    request: Request,
    next: Next,
) -> Response {
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(addr)| addr.ip());
    match limiter.take(ip) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            tracing::warn!(target: "mcp_oauth::auth_server", %ip, path = %request.uri().path(), "rate limit reached");
            let mut response = super::oauth_error(
                StatusCode::TOO_MANY_REQUESTS,
                "temporarily_unavailable",
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
        let limiter = Limiter::new(RateLimit::new(60, 2));
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
}
