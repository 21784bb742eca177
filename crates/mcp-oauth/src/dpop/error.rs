//! Why a DPoP proof was refused, and the error code that says so (RFC 9449 §7.1, §8).

use std::fmt;

/// Why a DPoP proof was not accepted.
///
/// [`DpopError::error_code`] is the OAuth error code to answer with, and
/// [`DpopError::public_description`] a fixed text for its `error_description`. The message of
/// the error itself is for logs: it quotes nothing from the proof but a truncated algorithm
/// name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpopError {
    /// The request carries no `DPoP` header.
    #[error("the request has no DPoP header")]
    Missing,
    /// The request carries more than one `DPoP` header (RFC 9449 §4.3 step 1).
    #[error("the request has {count} DPoP headers, exactly one is allowed")]
    MultipleHeaders {
        /// How many there were.
        count: usize,
    },
    /// The header value is longer than the configured limit; it was not parsed.
    #[error("the DPoP proof is {len} bytes, more than the limit of {limit}")]
    TooLarge {
        /// Its length in bytes.
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The header value is not a compact JWS with JSON header and claims, each member name
    /// used once.
    #[error("malformed DPoP proof: {0}")]
    Malformed(&'static str),
    /// The `typ` header is not `dpop+jwt`.
    #[error("the DPoP proof's typ is not dpop+jwt")]
    InvalidType,
    /// The `alg` header is not one of the allowed asymmetric algorithms.
    #[error("DPoP proof algorithm {alg:?} is not accepted")]
    UnsupportedAlgorithm {
        /// The `alg` header value (truncated).
        alg: String,
    },
    /// The `jwk` header is missing, carries private key material, or is not a usable
    /// public key for the proof's algorithm.
    #[error("the DPoP proof's jwk is not acceptable: {0}")]
    InvalidKey(String),
    /// The signature does not verify with the proof's own `jwk`.
    #[error("the DPoP proof's signature does not verify")]
    InvalidSignature,
    /// A required claim (`jti`, `htm`, `htu`, `iat`, `ath`) is absent.
    #[error("the DPoP proof has no {0} claim")]
    MissingClaim(&'static str),
    /// A claim has the wrong type or an unacceptable value (an empty or overlong `jti`, an
    /// `htu` that is not an absolute URL).
    #[error("the DPoP proof's {0} claim is invalid")]
    InvalidClaim(&'static str),
    /// `htm` is not the request's method.
    #[error("the DPoP proof's htm is not the request method")]
    MethodMismatch,
    /// `htu` is not the request's URL.
    #[error("the DPoP proof's htu is not the request URL")]
    UrlMismatch,
    /// `iat` is older than the accepted window.
    #[error("the DPoP proof was issued too long ago")]
    Stale,
    /// `iat` is further in the future than the clock-skew allowance.
    #[error("the DPoP proof is issued in the future")]
    IssuedInFuture,
    /// `ath` is not the hash of the presented access token.
    #[error("the DPoP proof's ath does not match the access token")]
    AccessTokenHashMismatch,
    /// The proof's key is not the one the token (or grant) is bound to (`cnf.jkt`).
    #[error("the DPoP proof's key is not the key the token is bound to")]
    KeyMismatch,
    /// This proof (its `jti`, under its key) was seen before.
    #[error("the DPoP proof was already used")]
    Replayed,
    /// The server requires a nonce it issued, and the proof has none, an expired one, or
    /// one it did not issue. Answer `use_dpop_nonce` with `nonce` in a `DPoP-Nonce` header.
    #[error("the DPoP proof needs a fresh server nonce ({problem})")]
    UseNonce {
        /// What was wrong with the proof's nonce.
        problem: NonceProblem,
        /// A fresh nonce for the `DPoP-Nonce` response header.
        nonce: String,
    },
    /// The replay cache could not be reached, so the proof could not be checked. This is not
    /// the proof's fault: answer 503, not 401.
    #[error("DPoP verification unavailable: {0}")]
    Unavailable(String),
}

/// What was wrong with a proof's server nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NonceProblem {
    /// The proof has no `nonce` claim.
    Missing,
    /// The nonce was issued by this server but has expired (it was rotated out).
    Stale,
    /// The nonce was not issued by this server (or not with its current secret).
    Unknown,
}

impl fmt::Display for NonceProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Missing => "no nonce",
            Self::Stale => "an expired nonce",
            Self::Unknown => "a nonce this server did not issue",
        })
    }
}

/// The broad class of a [`DpopError`]: what to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DpopErrorKind {
    /// `invalid_dpop_proof` (RFC 9449 §7.1): 401 at a resource server, 400 at a token
    /// endpoint.
    InvalidProof,
    /// `use_dpop_nonce` (RFC 9449 §8, §9) with a fresh `DPoP-Nonce` header.
    UseNonce,
    /// The server could not check the proof: 503.
    Unavailable,
}

impl DpopError {
    /// The broad class of this error.
    pub fn kind(&self) -> DpopErrorKind {
        match self {
            Self::UseNonce { .. } => DpopErrorKind::UseNonce,
            Self::Unavailable(_) => DpopErrorKind::Unavailable,
            _ => DpopErrorKind::InvalidProof,
        }
    }

    /// The OAuth error code: `invalid_dpop_proof` or `use_dpop_nonce`; `None` for
    /// [`DpopError::Unavailable`], which is a server failure (503) with no code.
    pub fn error_code(&self) -> Option<&'static str> {
        match self.kind() {
            DpopErrorKind::InvalidProof => Some("invalid_dpop_proof"),
            DpopErrorKind::UseNonce => Some("use_dpop_nonce"),
            DpopErrorKind::Unavailable => None,
        }
    }

    /// The fresh nonce to send in a `DPoP-Nonce` response header, for
    /// [`DpopError::UseNonce`].
    pub fn nonce(&self) -> Option<&str> {
        match self {
            Self::UseNonce { nonce, .. } => Some(nonce),
            _ => None,
        }
    }

    /// A short text for `error_description`: fixed strings that say what to fix and quote
    /// nothing from the request.
    pub fn public_description(&self) -> &'static str {
        match self {
            Self::Missing => "a DPoP proof is required",
            Self::MultipleHeaders { .. } => "exactly one DPoP header is allowed",
            Self::TooLarge { .. } => "the DPoP proof is too large",
            Self::Malformed(_) => "the DPoP proof is not a well-formed JWT",
            Self::InvalidType => "the DPoP proof's typ must be dpop+jwt",
            Self::UnsupportedAlgorithm { .. } => "the DPoP proof's algorithm is not supported",
            Self::InvalidKey(_) => "the DPoP proof's jwk must be a supported public key",
            Self::InvalidSignature => "the DPoP proof's signature does not verify",
            Self::MissingClaim(_) => "the DPoP proof lacks a required claim",
            Self::InvalidClaim(_) => "the DPoP proof has an invalid claim",
            Self::MethodMismatch => "the DPoP proof's htm does not match the request method",
            Self::UrlMismatch => "the DPoP proof's htu does not match the request URL",
            Self::Stale => "the DPoP proof is too old",
            Self::IssuedInFuture => "the DPoP proof is issued in the future",
            Self::AccessTokenHashMismatch => "the DPoP proof's ath does not match the access token",
            Self::KeyMismatch => "the DPoP proof's key is not the key the access token is bound to",
            Self::Replayed => "the DPoP proof was already used",
            Self::UseNonce { .. } => "the DPoP proof must carry the server's current nonce",
            Self::Unavailable(_) => "the DPoP proof cannot be checked right now",
        }
    }
}
