//! What the proxy back-end keeps: the provider, the key that seals its tokens and signs the
//! proxy's cookies, how long a consent lasts, and one lock per grant being refreshed.

use std::sync::Arc;
use std::time::Duration;

use crate::auth_server::seal::Sealer;
use crate::auth_server::upstream::Upstream;

/// The upstream identity provider as a sign-in back-end (proxy mode).
pub(crate) struct ProxySignIn {
    pub(crate) upstream: Upstream,
    pub(crate) sealer: Sealer,
    /// How long a consent is remembered, in this browser and for this user. Zero: never.
    pub(crate) consent_ttl: Duration,
    /// One lock per grant whose upstream tokens are being refreshed (single flight).
    pub(crate) refreshes: moka::sync::Cache<String, Arc<tokio::sync::Mutex<()>>>,
}

impl ProxySignIn {
    pub(crate) fn new(upstream: Upstream, sealer: Sealer, consent_ttl: Duration) -> Self {
        Self {
            upstream,
            sealer,
            consent_ttl,
            refreshes: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_idle(Duration::from_secs(120))
                .build(),
        }
    }
}
