//! DPoP proofs at a resource server (RFC 9449): proof-of-possession for access tokens.
//!
//! A DPoP-bound access token carries the thumbprint of a client key (`cnf.jkt`, RFC 9449
//! §6), and each request that presents it carries a fresh proof signed by that key: a
//! compact JWS in a `DPoP` header naming the request's method and URL. A stolen token is
//! useless without the key. [`DpopVerifier::verify`] checks one request's proof (RFC 9449
//! §4.3, §7.1):
//!
//! 1. exactly one `DPoP` header, no longer than the limit (8 KiB by default);
//! 2. a compact JWS, every JSON member name used once at any depth;
//! 3. `typ` is `dpop+jwt`;
//! 4. `alg` is an allowed asymmetric algorithm (never `none`, never HMAC);
//! 5. `jwk` is a public key (no `d`, `p`, `q`, `dp`, `dq`, `qi`, `oth` or `k`) that fits
//!    `alg` and verifies the signature;
//! 6. `jti` (1 to [`MAX_JTI_LEN`] bytes), `htm`, `htu` and `iat` are present;
//! 7. `htm` is the request method, exactly;
//! 8. `htu` is the request URL as the public address names it, query and fragment
//!    ignored, after RFC 3986 normalisation (scheme and host case, default port, dot
//!    segments, percent-encoding);
//! 9. when [nonces](DpopNonces) are configured, `nonce` is a live nonce of this server;
//!    otherwise [`DpopError::UseNonce`] carries a fresh one for `use_dpop_nonce`;
//! 10. `iat` is at most [`max_age`](DpopVerifierBuilder::max_age) old and at most
//!     [`leeway`](DpopVerifierBuilder::leeway) in the future;
//! 11. with an access token, `ath` is the base64url SHA-256 of the token; with a binding
//!     (the token's `cnf.jkt`, or [`DpopRequest::bound_to`]), the proof key's RFC 7638
//!     thumbprint equals it (compared in constant time);
//! 12. the proof was never accepted before: its `jti`, under its key, goes into a
//!     [`ReplayCache`] until its `iat` leaves the window. Of concurrent presentations of one
//!     proof exactly one is accepted.
//!
//! Every refusal is a [`DpopError`], whose [`error_code`](DpopError::error_code) is
//! `invalid_dpop_proof` or `use_dpop_nonce`; only [`DpopError::Unavailable`] (the replay
//! cache failed) has none, and is answered 503.
//!
//! # Example
//!
//! ```
//! use http::{HeaderValue, Method};
//! use mcp_oauth::dpop::{self, DpopError, DpopRequest, DpopVerifier};
//! use mcp_oauth::jose::{Algorithm, SigningKey};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = DpopVerifier::builder().build()?;
//! let url = url::Url::parse("https://mcp.example.com/mcp")?;
//! let now = 1_800_000_000;
//!
//! // The client's key, and the token the authorization server bound to it.
//! let client_key = SigningKey::generate(Algorithm::ES256)?;
//! let jwk = client_key.public_jwk().ok_or("an asymmetric key")?;
//! let jkt = jwk.thumbprint()?;
//! let token = "eyJ...the access token";
//!
//! // The client's proof for this request.
//! let header = serde_json::json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
//! let claims = serde_json::json!({
//!     "jti": "e1j3V_bKic8-LAEB", "htm": "POST", "htu": "https://mcp.example.com/mcp",
//!     "iat": now, "ath": dpop::access_token_hash(token),
//! });
//! let proof = client_key.sign_compact(header.to_string().as_bytes(), claims.to_string().as_bytes());
//! let headers = [HeaderValue::from_str(&proof)?];
//!
//! let request = DpopRequest::new(&Method::POST, &url).access_token(token, &jkt);
//! let checked = verifier.verify(&headers, &request, now).await?;
//! assert_eq!(checked.jkt(), jkt);
//!
//! // The same proof a second time is a replay.
//! let err = verifier.verify(&headers, &request, now).await.unwrap_err();
//! assert_eq!(err, DpopError::Replayed);
//! assert_eq!(err.error_code(), Some("invalid_dpop_proof"));
//! # Ok(()) }
//! ```
//!
//! # Deployment
//!
//! `htu` is compared with the URL the client used, so the request URL given to
//! [`DpopRequest::new`] must be built from the configured public origin (the resource URL),
//! not from the `Host` header a proxy may have rewritten. Several instances behind one load
//! balancer need a shared [`ReplayCache`] and nonces under a shared secret
//! ([`DpopNonces::from_secret`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest;
use http::{HeaderValue, Method};
use subtle::ConstantTimeEq as _;
use url::Url;

use crate::claims::{Claims, DEFAULT_LEEWAY};
use crate::error::{ConfigError, VerifyError};
use crate::jose::jws::b64;
use crate::jose::{Algorithm, Algorithms};

mod error;
mod htu;
mod nonce;
mod proof;
mod replay;

pub use error::{DpopError, DpopErrorKind, NonceProblem};
pub use nonce::DpopNonces;
pub use proof::MAX_JTI_LEN;
pub use replay::{MemoryReplayCache, ReplayCache, ReplayCacheError, ReplayKey};

/// The default limit on a `DPoP` header's length: 8 KiB (an RSA-4096 proof is about 2 KiB).
pub const DEFAULT_MAX_PROOF_LEN: usize = 8 * 1024;

/// The default [`max_age`](DpopVerifierBuilder::max_age) of a proof: 60 seconds.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(60);

/// The base64url (no padding) SHA-256 of an access token: a proof's `ath` (RFC 9449 §4.2).
pub fn access_token_hash(access_token: &str) -> String {
    b64(digest::digest(&digest::SHA256, access_token.as_bytes()).as_ref())
}

/// The `jkt` member of a verified token's `cnf` claim (RFC 9449 §6.1): the thumbprint of
/// the key the token is bound to. `None` when the token has no `cnf` (a bearer token).
///
/// # Errors
///
/// [`VerifyError::InvalidClaim`] when `cnf` is not an object or its `jkt` is not a string;
/// such a token is refused, never treated as unbound.
pub fn confirmation_jkt(claims: &Claims) -> Result<Option<&str>, VerifyError> {
    let Some(cnf) = claims.get("cnf") else {
        return Ok(None);
    };
    let serde_json::Value::Object(cnf) = cnf else {
        return Err(VerifyError::InvalidClaim("cnf"));
    };
    match cnf.get("jkt") {
        None => Ok(None),
        Some(serde_json::Value::String(jkt)) => Ok(Some(jkt)),
        Some(_) => Err(VerifyError::InvalidClaim("cnf")),
    }
}

/// The request a proof must match: its method and public URL, and what binds it.
#[derive(Clone, Copy)]
pub struct DpopRequest<'a> {
    method: &'a Method,
    url: &'a Url,
    access_token: Option<&'a str>,
    bound_jkt: Option<&'a str>,
}

impl fmt::Debug for DpopRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopRequest")
            .field("method", self.method)
            .field("path", &self.url.path())
            .field("access_token", &self.access_token.map(|_| "[redacted]"))
            .field("bound_jkt", &self.bound_jkt)
            .finish()
    }
}

impl<'a> DpopRequest<'a> {
    /// A request with this method and URL: the URL as the client addressed it, from the
    /// configured public origin and the request's path (its query is ignored).
    pub fn new(method: &'a Method, url: &'a Url) -> Self {
        Self {
            method,
            url,
            access_token: None,
            bound_jkt: None,
        }
    }

    /// The access token the request presents, and the `cnf.jkt` it is bound to (see
    /// [`confirmation_jkt`]): the proof must carry the token's hash in `ath` and be signed
    /// by that key. This is what a resource server passes.
    #[must_use]
    pub fn access_token(mut self, token: &'a str, jkt: &'a str) -> Self {
        self.access_token = Some(token);
        self.bound_jkt = Some(jkt);
        self
    }

    /// A key thumbprint the proof must be signed with, without an access token (an
    /// authorization server's `dpop_jkt`, or a refresh token's binding).
    #[must_use]
    pub fn bound_to(mut self, jkt: &'a str) -> Self {
        self.bound_jkt = Some(jkt);
        self
    }
}

/// A proof that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopProof {
    alg: Algorithm,
    jkt: String,
    jti: String,
    iat: i64,
}

impl DpopProof {
    /// The RFC 7638 thumbprint of the proof's key: what a token bound to it carries in
    /// `cnf.jkt`.
    pub fn jkt(&self) -> &str {
        &self.jkt
    }

    /// The proof's `jti`.
    pub fn jti(&self) -> &str {
        &self.jti
    }

    /// The proof's `iat` (Unix seconds).
    pub fn iat(&self) -> i64 {
        self.iat
    }

    /// The algorithm the proof is signed with.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }
}

/// Collects the options of a [`DpopVerifier`].
#[must_use]
pub struct DpopVerifierBuilder {
    algorithms: Algorithms,
    max_age: Duration,
    leeway: Duration,
    max_proof_len: usize,
    replay: Option<Arc<dyn ReplayCache>>,
    nonces: Option<DpopNonces>,
}

impl fmt::Debug for DpopVerifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopVerifierBuilder")
            .field("algorithms", &self.algorithms)
            .field("max_age", &self.max_age)
            .field("leeway", &self.leeway)
            .field("max_proof_len", &self.max_proof_len)
            .field("custom_replay_cache", &self.replay.is_some())
            .field("nonces", &self.nonces)
            .finish()
    }
}

impl DpopVerifierBuilder {
    /// The algorithms a proof may be signed with. Default: the asymmetric ones (RS256/384/512,
    /// PS256/384/512, ES256/384, EdDSA). They are what `dpop_signing_alg_values_supported`
    /// and the challenge's `algs` will list.
    pub fn algorithms(mut self, algorithms: Algorithms) -> Self {
        self.algorithms = algorithms;
        self
    }

    /// How old a proof's `iat` may be. Default: [`DEFAULT_MAX_AGE`] (60 seconds). Replay
    /// records are kept this long (plus the leeway for proofs dated ahead).
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// How far in the future a proof's `iat` may be, for clients whose clocks run ahead.
    /// Default: 60 seconds, as for tokens.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The longest `DPoP` header value accepted, in bytes. Default:
    /// [`DEFAULT_MAX_PROOF_LEN`] (8 KiB).
    pub fn max_proof_len(mut self, max_proof_len: usize) -> Self {
        self.max_proof_len = max_proof_len;
        self
    }

    /// Where used proofs are remembered. Default: a [`MemoryReplayCache`] of 100 000
    /// records, right for a single instance; several instances need a shared one.
    pub fn replay_cache(mut self, cache: Arc<dyn ReplayCache>) -> Self {
        self.replay = Some(cache);
        self
    }

    /// Requires every proof to carry a server nonce from `nonces` (RFC 9449 §8). Default:
    /// nonces are not required.
    pub fn nonces(mut self, nonces: DpopNonces) -> Self {
        self.nonces = Some(nonces);
        self
    }

    /// Builds the verifier.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] when the algorithm set is empty or holds an HMAC algorithm,
    /// `max_age` is not between 1 second and 1 hour, `leeway` is over 1 hour, or
    /// `max_proof_len` is under 512 bytes.
    pub fn build(self) -> Result<DpopVerifier, ConfigError> {
        if self.algorithms.is_empty() {
            return Err(ConfigError::invalid(
                "DPoP algorithms",
                "at least one asymmetric algorithm is needed",
            ));
        }
        if self.algorithms.without_hmac() != self.algorithms {
            return Err(ConfigError::invalid(
                "DPoP algorithms",
                "a proof is signed with the client's private key; HMAC algorithms cannot be allowed",
            ));
        }
        if !(1..=3600).contains(&self.max_age.as_secs()) {
            return Err(ConfigError::invalid(
                "DPoP max_age",
                "it must be between 1 second and 1 hour",
            ));
        }
        if self.leeway.as_secs() > 3600 {
            return Err(ConfigError::invalid(
                "DPoP leeway",
                "it must be at most 1 hour",
            ));
        }
        if self.max_proof_len < 512 {
            return Err(ConfigError::invalid(
                "DPoP max_proof_len",
                "it must be at least 512 bytes",
            ));
        }
        Ok(DpopVerifier(Arc::new(Inner {
            algorithms: self.algorithms,
            max_age: secs(self.max_age),
            leeway: secs(self.leeway),
            max_proof_len: self.max_proof_len,
            replay: self
                .replay
                .unwrap_or_else(|| Arc::new(MemoryReplayCache::default())),
            nonces: self.nonces,
        })))
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Checks DPoP proofs (RFC 9449 §4.3, §7.1). Cheap to clone; clones share the replay cache.
///
/// See the [module documentation](self) for the checks and an example.
#[derive(Clone)]
pub struct DpopVerifier(Arc<Inner>);

struct Inner {
    algorithms: Algorithms,
    max_age: i64,
    leeway: i64,
    max_proof_len: usize,
    replay: Arc<dyn ReplayCache>,
    nonces: Option<DpopNonces>,
}

impl fmt::Debug for DpopVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopVerifier")
            .field("algorithms", &self.0.algorithms)
            .field("max_age", &self.0.max_age)
            .field("leeway", &self.0.leeway)
            .field("max_proof_len", &self.0.max_proof_len)
            .field("nonces", &self.0.nonces)
            .finish_non_exhaustive()
    }
}

impl DpopVerifier {
    /// A builder with the defaults: asymmetric algorithms, proofs up to 60 seconds old and
    /// 60 seconds ahead, 8 KiB, an in-memory replay cache, no nonces.
    pub fn builder() -> DpopVerifierBuilder {
        DpopVerifierBuilder {
            algorithms: Algorithms::asymmetric(),
            max_age: DEFAULT_MAX_AGE,
            leeway: DEFAULT_LEEWAY,
            max_proof_len: DEFAULT_MAX_PROOF_LEN,
            replay: None,
            nonces: None,
        }
    }

    /// The algorithms proofs may use.
    pub fn algorithms(&self) -> Algorithms {
        self.0.algorithms
    }

    /// Whether proofs must carry a server nonce.
    pub fn requires_nonce(&self) -> bool {
        self.0.nonces.is_some()
    }

    /// The current server nonce at `now`, for a `DPoP-Nonce` header on any response (RFC
    /// 9449 §8.2 lets a server hand out the next nonce early); `None` without nonces.
    pub fn fresh_nonce(&self, now: i64) -> Option<String> {
        self.0.nonces.as_ref().map(|nonces| nonces.issue(now))
    }

    /// Checks the proof of one request at `now` (Unix seconds).
    ///
    /// `header_values` are all the request's `DPoP` header values (`headers.get_all("dpop")`);
    /// anything but exactly one is refused. With an access token, call this after the token
    /// itself verified, so that only holders of a valid bound token reach the replay cache.
    ///
    /// # Errors
    ///
    /// The first check that fails, in the order of the [module documentation](self).
    pub async fn verify<'h, I>(
        &self,
        header_values: I,
        request: &DpopRequest<'_>,
        now: i64,
    ) -> Result<DpopProof, DpopError>
    where
        I: IntoIterator<Item = &'h HeaderValue>,
    {
        let result = self.check(header_values, request, now).await;
        if let Err(err) = &result {
            tracing::debug!(
                target: "mcp_oauth::dpop",
                kind = ?err.kind(),
                reason = %err,
                "DPoP proof refused"
            );
        }
        result
    }

    async fn check<'h, I>(
        &self,
        header_values: I,
        request: &DpopRequest<'_>,
        now: i64,
    ) -> Result<DpopProof, DpopError>
    where
        I: IntoIterator<Item = &'h HeaderValue>,
    {
        let inner = &*self.0;
        // The iterator ends here, so that the future holds none of it across the await.
        let value = {
            let mut values = header_values.into_iter();
            match (values.next(), values.next()) {
                (None, _) => return Err(DpopError::Missing),
                (Some(value), None) => value,
                (Some(_), Some(_)) => {
                    return Err(DpopError::MultipleHeaders {
                        count: 2 + values.count(),
                    });
                }
            }
        };
        if value.len() > inner.max_proof_len {
            return Err(DpopError::TooLarge {
                len: value.len(),
                limit: inner.max_proof_len,
            });
        }
        let value = value
            .to_str()
            .map_err(|_| DpopError::Malformed("the header value is not visible ASCII"))?;
        let proof = proof::parse(value, inner.algorithms)?;
        if proof.htm != request.method.as_str() {
            return Err(DpopError::MethodMismatch);
        }
        htu::check(&proof.htu, request.url)?;
        if let Some(nonces) = &inner.nonces {
            let checked = match &proof.nonce {
                None => Err(NonceProblem::Missing),
                Some(nonce) => nonces.check(nonce, now),
            };
            if let Err(problem) = checked {
                return Err(DpopError::UseNonce {
                    problem,
                    nonce: nonces.issue(now),
                });
            }
        }
        if now.saturating_sub(proof.iat) > inner.max_age {
            return Err(DpopError::Stale);
        }
        if proof.iat.saturating_sub(now) > inner.leeway {
            return Err(DpopError::IssuedInFuture);
        }
        if let Some(token) = request.access_token {
            let Some(ath) = &proof.ath else {
                return Err(DpopError::MissingClaim("ath"));
            };
            if !bool::from(ath.as_bytes().ct_eq(access_token_hash(token).as_bytes())) {
                return Err(DpopError::AccessTokenHashMismatch);
            }
        }
        if let Some(jkt) = request.bound_jkt
            && !bool::from(jkt.as_bytes().ct_eq(proof.jkt.as_bytes()))
        {
            return Err(DpopError::KeyMismatch);
        }
        // Kept until the proof's iat leaves the window, whatever `now` is.
        let expires_at = proof
            .iat
            .saturating_add(inner.max_age)
            .saturating_add(1)
            .max(now.saturating_add(1));
        let key = ReplayKey::new(&proof.jkt, &proof.jti);
        match inner.replay.insert_if_absent(&key, expires_at, now).await {
            Ok(true) => Ok(DpopProof {
                alg: proof.alg,
                jkt: proof.jkt,
                jti: proof.jti,
                iat: proof.iat,
            }),
            Ok(false) => Err(DpopError::Replayed),
            Err(err) => Err(DpopError::Unavailable(err.to_string())),
        }
    }
}
