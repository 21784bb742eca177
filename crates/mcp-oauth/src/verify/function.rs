//! A verifier made of an async function.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use super::{BoxFuture, TokenVerifier};
use crate::claims::Claims;
use crate::error::VerifyError;
use crate::secret::AccessToken;

/// A [`TokenVerifier`] that calls your async function with the token.
///
/// The function returns the claims of a valid token, or an error
/// ([`VerifyError::Refused`] for "not valid"). The shared rules still apply afterwards:
/// audience binding, `exp` (required unless [`FnVerifier::exp_optional`]) and `nbf`/`iat`.
/// Results are not cached unless [`FnVerifier::cache_for`] says so.
///
/// ```
/// use mcp_oauth::verify::FnVerifier;
/// use mcp_oauth::{Claims, VerifyError};
///
/// let verifier = FnVerifier::new(|token: mcp_oauth::AccessToken| async move {
///     if token.secret() == "let-me-in" {
///         let claims = serde_json::json!({"sub": "dev", "aud": "http://127.0.0.1:8080/mcp", "exp": 4102444800u64});
///         Ok(Claims::new(claims.as_object().cloned().unwrap_or_default()))
///     } else {
///         Err(VerifyError::Refused("unknown token".into()))
///     }
/// });
/// # let _ = verifier;
/// ```
pub struct FnVerifier<F> {
    f: F,
    requires_exp: bool,
    cache_ttl: Duration,
}

impl<F> fmt::Debug for FnVerifier<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnVerifier")
            .field("requires_exp", &self.requires_exp)
            .field("cache_ttl", &self.cache_ttl)
            .finish_non_exhaustive()
    }
}

impl<F, Fut> FnVerifier<F>
where
    F: Fn(AccessToken) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Claims, VerifyError>> + Send + 'static,
{
    /// Wraps `f`.
    pub fn new(f: F) -> Self {
        Self {
            f,
            requires_exp: true,
            cache_ttl: Duration::ZERO,
        }
    }

    /// Accepts claims without `exp`.
    #[must_use]
    pub fn exp_optional(mut self) -> Self {
        self.requires_exp = false;
        self
    }

    /// Caches a successful result for at most `ttl` (and never beyond `exp`). Default: no
    /// caching, since the function may have reasons to answer differently next time.
    #[must_use]
    pub fn cache_for(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }
}

impl<F, Fut> TokenVerifier for FnVerifier<F>
where
    F: Fn(AccessToken) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Claims, VerifyError>> + Send + 'static,
{
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Claims, VerifyError>> {
        Box::pin((self.f)(AccessToken::new(token)))
    }

    fn requires_exp(&self) -> bool {
        self.requires_exp
    }

    fn max_cache_ttl(&self) -> Option<Duration> {
        Some(self.cache_ttl)
    }
}
