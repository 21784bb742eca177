//! A remote JWK Set with a hardened cache.
//!
//! - honours `Cache-Control: max-age` within bounds ([`JwksOptions::min_ttl`],
//!   [`JwksOptions::max_ttl`]);
//! - single-flight: concurrent requests that need a fetch wait for one fetch;
//! - an unknown `kid` triggers a refetch at most once per [`JwksOptions::unknown_kid_cooldown`]
//!   (default 30 s), so random `kid`s cannot make the server hammer the IdP;
//! - stale-if-error: when a refresh fails, the last good keys keep verifying for
//!   [`JwksOptions::stale_if_error`] past their expiry;
//! - after a failed fetch, no new attempt for [`JwksOptions::retry_after_error`];
//! - every fetch has a timeout and a body limit, follows no redirects, and keys with `kty: oct`
//!   are never taken from the set.

use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::error::{FetchError, FetchErrorKind, VerifyError};
use crate::fetch::{HttpClient, cache_ttl};
use crate::jose::{Algorithms, KeySet};
use crate::refresh::{RefreshRules, Refreshing, Unavailable};

/// Cache rules for a [`RemoteJwks`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JwksOptions {
    /// TTL when the response has no usable `Cache-Control`. Default is 10 minutes.
    pub default_ttl: Duration,
    /// Lower bound on the TTL. Default is 1 minute.
    pub min_ttl: Duration,
    /// Upper bound on the TTL. Default is 24 hours.
    pub max_ttl: Duration,
    /// Least time between two fetches caused by an unknown `kid`. Default is 30 seconds.
    pub unknown_kid_cooldown: Duration,
    /// How long past their TTL the last good keys keep verifying while fetches fail.
    /// Default is 1 hour.
    pub stale_if_error: Duration,
    /// Least time between a failed fetch and the next attempt. Default is 5 seconds.
    pub retry_after_error: Duration,
    /// Most keys kept from one document. Default is 64.
    pub max_keys: usize,
}

impl Default for JwksOptions {
    fn default() -> Self {
        Self {
            default_ttl: Duration::from_secs(600),
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(86_400),
            unknown_kid_cooldown: Duration::from_secs(30),
            stale_if_error: Duration::from_secs(3600),
            retry_after_error: Duration::from_secs(5),
            max_keys: 64,
        }
    }
}

impl JwksOptions {
    /// Sets [`JwksOptions::unknown_kid_cooldown`].
    #[must_use]
    pub fn unknown_kid_cooldown(mut self, cooldown: Duration) -> Self {
        self.unknown_kid_cooldown = cooldown;
        self
    }

    /// Sets [`JwksOptions::stale_if_error`].
    #[must_use]
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        self.stale_if_error = window;
        self
    }

    /// Sets [`JwksOptions::retry_after_error`].
    #[must_use]
    pub fn retry_after_error(mut self, wait: Duration) -> Self {
        self.retry_after_error = wait;
        self
    }

    /// Sets the TTL bounds and default.
    #[must_use]
    pub fn ttl(mut self, default: Duration, min: Duration, max: Duration) -> Self {
        self.default_ttl = default;
        self.min_ttl = min;
        self.max_ttl = max;
        self
    }
}

/// Where the key set lives: a known URL, or the issuer's metadata names it (`jwks_uri`).
#[derive(Debug, Clone)]
pub(crate) enum JwksLocation {
    Url(Url),
    Discover(Url),
}

/// A JWK Set fetched from a URL and cached: see [`JwksOptions`] for the rules.
pub struct RemoteJwks {
    location: JwksLocation,
    resolved: tokio::sync::OnceCell<Url>,
    client: HttpClient,
    options: JwksOptions,
    algorithms: Algorithms,
    keys: Refreshing<KeySet>,
}

impl std::fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteJwks")
            .field("location", &self.location)
            .field("options", &self.options)
            .field("fetches", &self.fetch_count())
            .finish_non_exhaustive()
    }
}

impl RemoteJwks {
    pub(crate) fn new(
        location: JwksLocation,
        client: HttpClient,
        options: JwksOptions,
        algorithms: Algorithms,
    ) -> Self {
        let rules = RefreshRules {
            stale_if_error: options.stale_if_error,
            retry_after_error: options.retry_after_error,
        };
        Self {
            location,
            resolved: tokio::sync::OnceCell::new(),
            client,
            options,
            algorithms: algorithms.without_hmac(),
            keys: Refreshing::new(rules),
        }
    }

    /// How many times the key set was requested from the network (discovery not counted).
    pub fn fetch_count(&self) -> u64 {
        self.keys.fetch_count()
    }

    /// Fetches the key set now, ignoring the cache (for warm-up at start). Returns the
    /// number of usable keys.
    ///
    /// # Errors
    ///
    /// The fetch failed.
    pub async fn refresh_now(&self) -> Result<usize, FetchError> {
        match self.keys.refresh_now(|| self.fetch_once()).await {
            Ok(keys) => Ok(keys.len()),
            Err(Unavailable(err)) => Err(err.unwrap_or_else(|| FetchError {
                url: self.location.to_string(),
                kind: FetchErrorKind::Network("no key set".into()),
            })),
        }
    }

    /// The keys to verify a token with `kid`, refreshing when the set is missing, expired or
    /// does not know `kid` (at most once per cooldown).
    pub(crate) async fn keys_for(&self, kid: Option<&str>) -> Result<Arc<KeySet>, VerifyError> {
        let unknown_kid = |set: &KeySet| kid.is_some_and(|kid| !set.contains_kid(kid));
        self.keys
            .get(
                || self.fetch_once(),
                unknown_kid,
                self.options.unknown_kid_cooldown,
            )
            .await
            .map_err(|Unavailable(err)| {
                VerifyError::Unavailable(match err {
                    Some(err) => format!("signing keys unavailable: {err}"),
                    None => "signing keys unavailable".into(),
                })
            })
    }

    #[tracing::instrument(target = "mcp_oauth::jwks", skip_all, fields(url))]
    async fn fetch_once(&self) -> Result<(KeySet, Duration), FetchError> {
        let url = self.url().await?;
        tracing::Span::current().record("url", url.as_str());
        let fetched = self.client.get_json(&url).await?;
        let (keys, skipped) =
            KeySet::from_jwks_json(&fetched.body, self.algorithms, self.options.max_keys).map_err(
                |e| FetchError {
                    url: url.to_string(),
                    kind: FetchErrorKind::Parse(e.to_string()),
                },
            )?;
        let ttl = cache_ttl(
            &fetched.headers,
            self.options.default_ttl,
            self.options.min_ttl,
            self.options.max_ttl,
        );
        tracing::debug!(target: "mcp_oauth::jwks", keys = keys.len(), skipped, ttl_secs = ttl.as_secs(), "key set fetched");
        if keys.is_empty() {
            tracing::warn!(target: "mcp_oauth::jwks", skipped, "the key set has no usable signing key");
        }
        Ok((keys, ttl))
    }

    async fn url(&self) -> Result<Url, FetchError> {
        match &self.location {
            JwksLocation::Url(url) => Ok(url.clone()),
            JwksLocation::Discover(issuer) => self
                .resolved
                .get_or_try_init(|| async {
                    let doc = crate::metadata::discover(&self.client, issuer).await?;
                    let jwks_uri = doc.metadata.jwks_uri.clone().ok_or_else(|| FetchError {
                        url: doc.url.to_string(),
                        kind: FetchErrorKind::Parse("the metadata has no jwks_uri".into()),
                    })?;
                    let url = Url::parse(&jwks_uri).map_err(|e| FetchError {
                        url: doc.url.to_string(),
                        kind: FetchErrorKind::Parse(format!("jwks_uri is not a URL: {e}")),
                    })?;
                    self.client.check_url(&url)?;
                    Ok(url)
                })
                .await
                .cloned(),
        }
    }
}

impl super::KeySource for RemoteJwks {
    fn keys<'a>(
        &'a self,
        kid: Option<&'a str>,
    ) -> super::BoxFuture<'a, Result<Arc<KeySet>, VerifyError>> {
        Box::pin(self.keys_for(kid))
    }
}

impl std::fmt::Display for JwksLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Url(url) => f.write_str(url.as_str()),
            Self::Discover(issuer) => write!(f, "jwks_uri of {issuer}"),
        }
    }
}
