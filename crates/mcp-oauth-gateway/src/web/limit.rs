//! The rate limit on starting a sign-in: a visit without a session writes a pending record
//! to the store (kept 10 minutes), so a stranger who never signs in could fill the store.
//! Starts are counted per client address in token buckets kept in the authorization server's
//! store (one bucket for every instance that shares it); over the limit the visitor gets
//! HTTP 429, with `Retry-After` and a page that says when to try again, and nothing is
//! written but the bucket's own slot.
//!
//! The client address is the one the authorization server counts its own limits by: the TCP
//! peer, or, when the peer is one of its trusted proxies, the rightmost forwarded address
//! that is not (see [`mcp_oauth::forwarded`]); IPv6 clients by their /64.

use std::net::IpAddr;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode, header};
use mcp_oauth::auth_server::RateLimit;
use mcp_oauth::forwarded::{client_key, peer_addr};
use mcp_oauth::policy::{self, Rate, RateLimitError, RateLimiter};

use super::Pages;

/// The default: 20 starts a minute per client address, in bursts of 20.
pub(super) const DEFAULT: (u32, u32) = (20, 20);

/// The limit's id, and the one "tool" it covers, in the rate limiter's keys.
const ID: &str = "gateway-pages-sign-in";

/// The limiter of `limit`, its buckets in `store`, reading the time from the pages' clock.
pub(super) fn limiter(
    limit: RateLimit,
    store: std::sync::Arc<dyn mcp_oauth::auth_server::Store>,
    clock: std::sync::Arc<dyn Fn() -> i64 + Send + Sync>,
) -> Option<RateLimiter> {
    let rate = Rate::new(limit.per_minute, Duration::from_secs(60))?;
    let limit = policy::RateLimit::new(ID, [ID], rate).burst(limit.burst);
    Some(
        RateLimiter::shared(vec![limit], store)
            .clock(move || u64::try_from(clock()).map_or(0, |s| s.saturating_mul(1000))),
    )
}

/// The client address of a request, as the authorization server counts it; `0.0.0.0` when
/// the gateway is not served with connection info.
pub(super) fn client_addr(
    pages: &Pages,
    headers: &HeaderMap,
    extensions: &http::Extensions,
) -> IpAddr {
    let peer = peer_addr(extensions).unwrap_or(IpAddr::from([0, 0, 0, 0]));
    match &pages.0.sign_in {
        Some(sign_in) => sign_in.server.trusted_proxies().client_addr(peer, headers),
        None => peer,
    }
}

/// Counts a sign-in started by `client`: `Err` with the page to answer when over the limit
/// (or when the limit cannot be checked: the start is refused, not waived).
pub(super) async fn check(pages: &Pages, client: IpAddr) -> Result<(), axum::response::Response> {
    let Some(limiter) = pages.start_limiter() else {
        return Ok(());
    };
    match limiter.check(&client_key(client).to_string(), ID).await {
        Ok(()) => Ok(()),
        Err(RateLimitError::Limited(limited)) => {
            let wait = limited.retry_after.as_secs_f64().ceil().max(1.0);
            // At most a minute's worth of slots ahead: a whole number of seconds.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let seconds = wait as u64;
            tracing::warn!(target: "mcp_oauth_gateway", ip = %client, "gateway pages: sign-in rate limit reached");
            let mut response = pages.error_page(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many sign-ins",
                &format!(
                    "Too many sign-ins were started from your network address. Try again in {seconds} second{}.",
                    if seconds == 1 { "" } else { "s" }
                ),
            );
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            Err(response)
        }
        Err(e) => Err(super::failure(
            pages,
            &format!("the sign-in rate limit: {e}"),
        )),
    }
}
