//! The verification pipeline every token goes through, whatever its verifier.
//!
//! ```text
//! size limit → verified-token cache → [issuer chosen by `iss`] → verifier (signature |
//!   introspection | function, issuer) → audience (RFC 8707) → exp / nbf / iat with leeway
//!   → claim mapping → Auth
//! ```
//!
//! With several trusted issuers ([`Issuer`], [`OAuthBuilder::issuer`](crate::OAuthBuilder::issuer)),
//! the verifier, the audience rule, the claim checks and the claim mapping are the issuer's
//! own; the rest is shared. See [`issuers`] for how a token finds its issuer.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::constant_time;

pub(crate) mod audience;
pub mod issuers;

pub use audience::Audience;
pub use issuers::Issuer;
pub(crate) use issuers::Trusted;

use crate::auth::{Auth, AuthInfo};
pub use crate::claims::{ClaimIfPresent, DEFAULT_LEEWAY, TimeRules};
use crate::claims::{Claims, Dates, check_times, now_unix};
use crate::error::VerifyError;
use crate::resource::ResourceUrl;
use crate::scope::ScopeHierarchy;
use crate::secret::AccessToken;
use crate::verify::TokenVerifier;

/// Default largest token accepted: 8 KiB. Longer ones are refused before parsing.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Settings of the verified-token cache.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct TokenCacheOptions {
    /// Most entries. Default is 10,000.
    pub max_entries: u64,
    /// Longest time an entry is kept (never beyond the token's `exp`). Default is 5 minutes.
    pub max_ttl: Duration,
}

impl Default for TokenCacheOptions {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_ttl: Duration::from_secs(300),
        }
    }
}

/// A verified token, with what its later requests are checked against read once: its dates,
/// and the resource its audience was accepted for (the same resource accepts it again without
/// reading the claims; another one, in trusted-proxy mode, gets the whole check).
#[derive(Clone)]
struct Entry {
    auth: Auth,
    ttl: Duration,
    /// The trusted issuer that verified it: a hit gets that issuer's rules again.
    issuer: usize,
    dates: Dates,
    audience_for: Arc<str>,
}

/// The verified-token cache: keys are chosen by signers, not by the requests that look them
/// up, so a fast keyed hash is enough.
type TokenCache = moka::sync::Cache<[u8; 40], Entry, foldhash::fast::RandomState>;

struct EntryExpiry;

impl moka::Expiry<[u8; 40], Entry> for EntryExpiry {
    fn expire_after_create(
        &self,
        _key: &[u8; 40],
        value: &Entry,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// What [`Authenticator::lookup`] found in the verified-token cache.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// A cached token that passed the request's checks.
    Accepted(Auth),
    /// A cached token that passed the request's checks; its verifier must recheck it
    /// (revocation) before it counts.
    Recheck {
        /// The cached result.
        auth: Auth,
        /// The trusted issuer whose verifier rechecks it.
        issuer: usize,
    },
    /// Not in the cache (or the cache is off): the verifier must run.
    Miss,
}

/// Verifies tokens end to end: size limit, verified-token cache, the verifier, audience
/// binding, `exp` / `nbf` / `iat` with leeway, then the claim mapping.
///
/// [`Authenticator::new`] gives the pipeline with the defaults; every setting (audience,
/// leeway, token size, cache, claim mapping, scope hierarchy) is an
/// [`OAuthBuilder`](crate::OAuthBuilder) knob, and
/// [`OAuthBuilder::build_authenticator`](crate::OAuthBuilder::build_authenticator) builds the
/// pipeline alone, for transports other than HTTP.
pub struct Authenticator {
    /// The trusted issuers' rules: one without an issuer (every token goes to it), or one
    /// per configured [`Issuer`], chosen by the token's `iss` (`by_iss`).
    trusted: Vec<Trusted>,
    by_iss: bool,
    hierarchy: Arc<ScopeHierarchy>,
    leeway: Duration,
    max_token_bytes: usize,
    cache: Option<(TokenCache, Duration)>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let issuers: Vec<_> = self.trusted.iter().map(|t| &t.issuer).collect();
        let audiences: Vec<_> = self.trusted.iter().map(|t| &t.audience).collect();
        f.debug_struct("Authenticator")
            .field("issuers", &issuers)
            .field("audience", &audiences)
            .field("leeway", &self.leeway)
            .field("max_token_bytes", &self.max_token_bytes)
            .field("cache", &self.cache.as_ref().map(|(c, _)| c.entry_count()))
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// A pipeline around `verifier` with the defaults: audience bound to the resource, 60 s
    /// leeway, 8 KiB token limit, the default claim mapping and a cache of 10,000 tokens.
    pub fn new(verifier: impl TokenVerifier) -> Self {
        Self::with_verifier(Arc::new(verifier))
    }

    /// [`Authenticator::new`] with a shared verifier (no second `Arc`).
    pub(crate) fn with_verifier(verifier: Arc<dyn TokenVerifier>) -> Self {
        Self::with_trusted(vec![Trusted::single(verifier)], false)
    }

    /// The pipeline around these issuers' rules; `by_iss`: choose them by the token's `iss`
    /// (else there is exactly one, and every token goes to it).
    pub(crate) fn with_trusted(trusted: Vec<Trusted>, by_iss: bool) -> Self {
        Self {
            trusted,
            by_iss,
            hierarchy: Arc::new(ScopeHierarchy::new()),
            leeway: DEFAULT_LEEWAY,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            cache: Some(Self::make_cache(TokenCacheOptions::default())),
        }
    }

    /// The issuers tokens are chosen between by their `iss`, in the configured order (empty
    /// in a one-verifier configuration).
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.trusted.iter().filter_map(|t| t.issuer.as_deref())
    }

    /// The rules of the issuer at `index` (always in range: indexes come from `trusted`).
    fn rules(&self, index: usize) -> Result<&Trusted, VerifyError> {
        self.trusted
            .get(index)
            .ok_or_else(|| VerifyError::Unavailable("no trusted issuer is configured".into()))
    }

    fn make_cache(options: TokenCacheOptions) -> (TokenCache, Duration) {
        let cache = moka::sync::Cache::builder()
            .max_capacity(options.max_entries)
            .expire_after(EntryExpiry)
            .build_with_hasher(foldhash::fast::RandomState::default());
        (cache, options.max_ttl)
    }

    /// Sets the scope hierarchy the `Auth` helpers use.
    #[must_use]
    pub(crate) fn hierarchy(mut self, hierarchy: Arc<ScopeHierarchy>) -> Self {
        self.hierarchy = hierarchy;
        self
    }

    /// Clock-skew allowance for `exp`, `nbf` and `iat`. Default is 60 seconds.
    #[must_use]
    pub(crate) fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Largest token accepted. Default is 8 KiB.
    #[must_use]
    pub(crate) fn max_token_bytes(mut self, limit: usize) -> Self {
        self.max_token_bytes = limit;
        self
    }

    /// Sets the verified-token cache; `None` turns it off.
    #[must_use]
    pub(crate) fn cache(mut self, options: Option<TokenCacheOptions>) -> Self {
        self.cache = options.map(Self::make_cache);
        self
    }

    /// The scope hierarchy.
    pub fn scope_hierarchy(&self) -> &Arc<ScopeHierarchy> {
        &self.hierarchy
    }

    /// Verifies `token` for `resource`.
    ///
    /// # Errors
    ///
    /// Why the token is not accepted; [`VerifyError::Unavailable`] when it could not be
    /// checked at all.
    pub async fn authenticate(
        &self,
        token: &str,
        resource: &ResourceUrl,
    ) -> Result<Auth, VerifyError> {
        let now = now_unix();
        let lookup = self.lookup(token, resource, now)?;
        self.resolve(token, resource, now, lookup).await
    }

    /// The part of [`Authenticator::authenticate`] that never waits: the size limit, then the
    /// verified-token cache. A cached token gets the request's checks again here
    /// ([`Authenticator::post_checks`], the same ones a fresh token gets after its verifier)
    /// and is [`Lookup::Accepted`], or [`Lookup::Recheck`] when its verifier must also recheck
    /// it and cannot answer at once ([`TokenVerifier::recheck_now`]); a token not in the cache is a [`Lookup::Miss`]. The bearer layer answers a cached
    /// token without a boxed future this way; [`Authenticator::resolve`] does the rest.
    pub(crate) fn lookup(
        &self,
        token: &str,
        resource: &ResourceUrl,
        now: i64,
    ) -> Result<Lookup, VerifyError> {
        self.lookup_bytes(token.as_bytes(), resource, now)
    }

    /// [`Authenticator::lookup`] of a token not yet read as text: a cached token is equal,
    /// byte for byte, to one that was checked when it was verified, so the bearer layer looks
    /// a header's bytes up before it checks their characters.
    pub(crate) fn lookup_bytes(
        &self,
        token: &[u8],
        resource: &ResourceUrl,
        now: i64,
    ) -> Result<Lookup, VerifyError> {
        if token.len() > self.max_token_bytes {
            return Err(VerifyError::TooLarge {
                len: token.len(),
                limit: self.max_token_bytes,
            });
        }
        let Some((cache, _)) = &self.cache else {
            return Ok(Lookup::Miss);
        };
        match cache.get(&cache_key(token)) {
            Some(entry) if same_token(entry.auth.access_token.secret().as_bytes(), token) => {
                let rules = self.rules(entry.issuer)?;
                // The request's checks, as `post_checks` makes them, on what the entry read
                // once: the audience only for another resource than the one it passed for.
                if *entry.audience_for != *resource.as_str() {
                    rules.audience.check(&entry.auth.claims, resource)?;
                }
                TimeRules::new(self.leeway).check_dates(
                    entry.dates,
                    now,
                    rules.verifier.requires_exp(),
                )?;
                if !rules.verifier.rechecks() {
                    return Ok(Lookup::Accepted(entry.auth));
                }
                match rules.verifier.recheck_now(&entry.auth.claims) {
                    Some(answer) => answer.map(|()| Lookup::Accepted(entry.auth)),
                    None => Ok(Lookup::Recheck {
                        auth: entry.auth,
                        issuer: entry.issuer,
                    }),
                }
            }
            _ => Ok(Lookup::Miss),
        }
    }

    /// Finishes what [`Authenticator::lookup`] started: the verifier's recheck of a cached
    /// token, or the verifier itself for a token not in the cache (then the request's
    /// checks, the claim checks, the claim mapping, and the cache).
    pub(crate) async fn resolve(
        &self,
        token: &str,
        resource: &ResourceUrl,
        now: i64,
        lookup: Lookup,
    ) -> Result<Auth, VerifyError> {
        match lookup {
            Lookup::Accepted(auth) => Ok(auth),
            Lookup::Recheck { auth, issuer } => {
                self.rules(issuer)?.verifier.recheck(&auth.claims).await?;
                Ok(auth)
            }
            Lookup::Miss => self.verify_fresh(token, resource, now).await,
        }
    }

    /// A token not in the cache: its issuer (by `iss`, when several are trusted), that
    /// issuer's verifier, the request's checks, the claim checks, the claim mapping; the
    /// result is cached.
    async fn verify_fresh(
        &self,
        token: &str,
        resource: &ResourceUrl,
        now: i64,
    ) -> Result<Auth, VerifyError> {
        let issuer = if self.by_iss {
            issuers::route(&self.trusted, token)?
        } else {
            0
        };
        let rules = self.rules(issuer)?;
        let claims = rules.verifier.verify(token).await?;
        rules.confirm(&claims)?;
        self.post_checks(rules, &claims, resource, now)?;
        for check in &rules.claim_checks {
            check.check(&claims)?;
        }
        // Accepted: only now may the provider be asked about the token.
        #[cfg(feature = "remote")]
        let claims = match &rules.userinfo {
            Some(userinfo) => userinfo.complete(token, claims).await,
            None => claims,
        };
        let user = rules.mapper.user(&claims).await?;
        let info = AuthInfo::from_user(
            claims,
            AccessToken::new(token),
            user,
            self.hierarchy.clone(),
        );
        let auth = Auth::from(info);
        if let Some((cache, max_ttl)) = &self.cache {
            let ttl = cache_ttl(rules, &auth, now, *max_ttl);
            // The checks above passed, so the dates are numbers.
            if !ttl.is_zero()
                && let Ok(dates) = Dates::of(&auth.claims)
            {
                cache.insert(
                    cache_key(token),
                    Entry {
                        auth: auth.clone(),
                        ttl,
                        issuer,
                        dates,
                        audience_for: Arc::from(resource.as_str()),
                    },
                );
            }
        }
        Ok(auth)
    }

    /// The checks after the verifier that depend on the request (the resource) or the clock,
    /// so a cached token gets them again: audience, then `exp` / `nbf` / `iat`. (Claim checks
    /// depend on the claims alone: a cached token passed them.)
    fn post_checks(
        &self,
        rules: &Trusted,
        claims: &Claims,
        resource: &ResourceUrl,
        now: i64,
    ) -> Result<(), VerifyError> {
        rules.audience.check(claims, resource)?;
        check_times(claims, now, self.leeway, rules.verifier.requires_exp())
    }

    /// Entries in the verified-token cache (approximate).
    pub fn cached_tokens(&self) -> u64 {
        self.cache.as_ref().map_or(0, |(c, _)| {
            c.run_pending_tasks();
            c.entry_count()
        })
    }
}

/// The longest an entry may live: never past `exp`, never past the verifier's or the
/// cache's bound. Tokens without `exp` are cached only when the verifier sets a bound.
fn cache_ttl(rules: &Trusted, auth: &AuthInfo, now: i64, max_ttl: Duration) -> Duration {
    let mut ttl = max_ttl;
    if let Some(bound) = rules.verifier.max_cache_ttl() {
        ttl = ttl.min(bound);
    }
    match auth.expires_at {
        Some(exp) => ttl.min(Duration::from_secs(
            u64::try_from(exp.saturating_sub(now)).unwrap_or(0),
        )),
        None if rules.verifier.max_cache_ttl().is_some() => ttl,
        None => Duration::ZERO,
    }
}

/// The cache key: the token's last 32 bytes (for a JWS, its signature, which no one but the
/// signer can choose), with its length. Cheap where a digest of the whole token is not; a hit
/// counts only when the whole token is equal ([`same_token`]), so two tokens sharing a key
/// make a miss, never a wrong answer, and only verified tokens are ever stored.
fn cache_key(token: impl AsRef<[u8]>) -> [u8; 40] {
    let bytes = token.as_ref();
    let tail = bytes.get(bytes.len().saturating_sub(32)..).unwrap_or(bytes);
    let mut key = [0u8; 40];
    let (len, rest) = key.split_at_mut(8);
    len.copy_from_slice(&(bytes.len() as u64).to_le_bytes());
    for (slot, byte) in rest.iter_mut().zip(tail) {
        *slot = *byte;
    }
    key
}

/// Whole-token equality in constant time, so a lookup reveals nothing about a cached token.
fn same_token(cached: &[u8], presented: &[u8]) -> bool {
    constant_time::verify_slices_are_equal(cached, presented).is_ok()
}
