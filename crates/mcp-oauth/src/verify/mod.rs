//! Token verifiers: the part of the pipeline that decides whether a token is authentic.
//!
//! A [`TokenVerifier`] checks the signature (or asks the authorization server) and the
//! issuer, and returns the claims. Everything after that is shared by every verifier and
//! lives in the [`Authenticator`](crate::authenticator::Authenticator): the verified-token cache, audience
//! binding, the time rules (`exp`, `nbf`, `iat` with leeway) and the claim mapping.
//!
//! | verifier | for |
//! |---|---|
//! | [`JwtVerifier`] with a JWKS URL | JWT access tokens from any OIDC / OAuth provider |
//! | [`JwtVerifier`] with static keys | JWTs signed by keys you configure (PEM or JWK) |
//! | [`JwtVerifier`] with an HMAC secret | HS256 tokens (legacy Supabase); never consults a JWKS |
//! | [`IntrospectionVerifier`] | opaque tokens, RFC 7662 |
//! | [`FnVerifier`] | anything else: your own async function |

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::claims::Claims;
use crate::error::VerifyError;
use crate::jose::KeySet;

mod function;
#[cfg(feature = "remote")]
mod introspection;
#[cfg(feature = "remote")]
mod jwks;
mod jwt;
#[cfg(feature = "remote")]
pub(crate) mod unverified;

pub use function::FnVerifier;
#[cfg(feature = "remote")]
pub use introspection::{IntrospectionVerifier, IntrospectionVerifierBuilder};
#[cfg(feature = "remote")]
pub use jwks::{JwksOptions, RemoteJwks};
pub use jwt::{JwtVerifier, JwtVerifierBuilder};

/// Keys a [`JwtVerifier`] gets at verification time, for sets that change at run time.
/// `RemoteJwks` (feature `remote`) is one; an embedded authorization server's key
/// ring is another.
pub trait KeySource: Send + Sync + 'static {
    /// The current keys for a token with this `kid` (refreshing if the source wants to).
    fn keys<'a>(&'a self, kid: Option<&'a str>) -> BoxFuture<'a, Result<Arc<KeySet>, VerifyError>>;
}

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Decides whether a token is authentic and returns its claims.
///
/// Implementations check what only they can check (signature, issuer, introspection's
/// `active`); the shared rules run after them, in the [`Authenticator`](crate::authenticator::Authenticator).
pub trait TokenVerifier: Send + Sync + 'static {
    /// Verifies `token` and returns its claims.
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Claims, VerifyError>>;

    /// Whether `exp` must be present. Default `true`.
    fn requires_exp(&self) -> bool {
        true
    }

    /// How long a successful result may be cached at most (it is never cached beyond `exp`).
    /// `None`: until `exp`. `Some(Duration::ZERO)`: never.
    fn max_cache_ttl(&self) -> Option<Duration> {
        None
    }

    /// Whether [`TokenVerifier::recheck`] must run on every use of a cached result. Default
    /// `false`.
    fn rechecks(&self) -> bool {
        false
    }

    /// A check that must hold on every request, even when the verified token comes from the
    /// cache: revocation of the grant, for a verifier that can know it (the embedded
    /// authorization server's). Called only when [`TokenVerifier::rechecks`] is `true`.
    fn recheck<'a>(&'a self, claims: &'a Claims) -> BoxFuture<'a, Result<(), VerifyError>> {
        let _ = claims;
        Box::pin(std::future::ready(Ok(())))
    }

    /// [`TokenVerifier::recheck`]'s answer when it is known without waiting (a recent answer
    /// kept in memory), else `None` and `recheck` runs. The bearer layer answers a cached
    /// token without a future when this knows. Default `None`.
    fn recheck_now(&self, claims: &Claims) -> Option<Result<(), VerifyError>> {
        let _ = claims;
        None
    }
}

impl<T: TokenVerifier + ?Sized> TokenVerifier for Arc<T> {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Claims, VerifyError>> {
        (**self).verify(token)
    }

    fn requires_exp(&self) -> bool {
        (**self).requires_exp()
    }

    fn max_cache_ttl(&self) -> Option<Duration> {
        (**self).max_cache_ttl()
    }

    fn rechecks(&self) -> bool {
        (**self).rechecks()
    }

    fn recheck<'a>(&'a self, claims: &'a Claims) -> BoxFuture<'a, Result<(), VerifyError>> {
        (**self).recheck(claims)
    }

    fn recheck_now(&self, claims: &Claims) -> Option<Result<(), VerifyError>> {
        (**self).recheck_now(claims)
    }
}

impl<T: TokenVerifier + ?Sized> TokenVerifier for Box<T> {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Claims, VerifyError>> {
        (**self).verify(token)
    }

    fn requires_exp(&self) -> bool {
        (**self).requires_exp()
    }

    fn max_cache_ttl(&self) -> Option<Duration> {
        (**self).max_cache_ttl()
    }

    fn rechecks(&self) -> bool {
        (**self).rechecks()
    }

    fn recheck<'a>(&'a self, claims: &'a Claims) -> BoxFuture<'a, Result<(), VerifyError>> {
        (**self).recheck(claims)
    }

    fn recheck_now(&self, claims: &Claims) -> Option<Result<(), VerifyError>> {
        (**self).recheck_now(claims)
    }
}
