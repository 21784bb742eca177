//! Error types, one per layer: configuration, token verification and outbound fetches.
//!
//! Messages are lowercase, carry no trailing period and never contain a token or a secret.

use std::fmt;

/// A configuration value is missing or wrong. Raised where the value enters (builders,
/// `from_env`), never at request time.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required value was not given.
    #[error("{field} is required: {hint}")]
    Missing {
        /// The configuration field.
        field: &'static str,
        /// What to do about it (the builder method or the environment variable to set).
        hint: String,
    },
    /// A URL could not be parsed or is not acceptable.
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidUrl {
        /// The configuration field.
        field: &'static str,
        /// The value as given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// A key could not be read or does not fit its algorithm.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// Any other invalid value.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The configuration field.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },
}

impl ConfigError {
    pub(crate) fn missing(field: &'static str, hint: impl Into<String>) -> Self {
        Self::Missing {
            field,
            hint: hint.into(),
        }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn url(field: &'static str, value: &str, reason: impl Into<String>) -> Self {
        Self::InvalidUrl {
            field,
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Why a token was not accepted.
///
/// [`VerifyError::kind`] is what a caller matches on; the variant's fields carry context
/// for logs (an issuer, a `kid`, a claim name), never the token itself.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The token is longer than the configured limit; it was not parsed.
    #[error("token is {len} bytes, more than the limit of {limit}")]
    TooLarge {
        /// Length of the token in bytes.
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The token is not a well-formed compact JWS, or its JSON is invalid.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header names an algorithm this verifier does not accept.
    #[error("algorithm {alg:?} is not accepted")]
    UnsupportedAlgorithm {
        /// The `alg` header value (truncated).
        alg: String,
    },
    /// The header carries something this verifier refuses (unknown `crit`, nested JWT, …).
    #[error("unsupported token header: {0}")]
    UnsupportedHeader(&'static str),
    /// No key matches the token's `kid` and algorithm.
    #[error("no key for kid {kid:?}")]
    UnknownKey {
        /// The `kid` header value (truncated), if any.
        kid: Option<String>,
    },
    /// The signature does not verify.
    #[error("signature does not verify")]
    InvalidSignature,
    /// `iss` is missing or differs from the configured issuer.
    #[error("issuer {found:?} is not the expected {expected:?}")]
    InvalidIssuer {
        /// The issuer this verifier accepts.
        expected: String,
        /// The `iss` claim (truncated), if present.
        found: Option<String>,
    },
    /// `aud` does not name this resource.
    #[error("audience does not name this resource")]
    InvalidAudience,
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` or `iat` is in the future (beyond the leeway).
    #[error("token is not valid yet ({claim} in the future)")]
    NotYetValid {
        /// The claim that is in the future.
        claim: &'static str,
    },
    /// A required claim is absent.
    #[error("required claim {0} is missing")]
    MissingClaim(&'static str),
    /// A claim has the wrong type or value.
    #[error("claim {0} is invalid")]
    InvalidClaim(&'static str),
    /// The `typ` header is not the required one (RFC 9068 `at+jwt`).
    #[error("token type is not {expected}")]
    InvalidType {
        /// The required `typ`.
        expected: &'static str,
    },
    /// Introspection says the token is not active.
    #[error("token is not active")]
    Inactive,
    /// The custom verifier refused the token.
    #[error("token refused by the verifier: {0}")]
    Refused(String),
    /// Keys or the introspection endpoint could not be reached, so the token could not be
    /// checked. This is not the token's fault: it is answered with 503, not 401.
    #[error("verification unavailable: {0}")]
    Unavailable(String),
}

/// The broad class of a [`VerifyError`], for matching and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VerifyErrorKind {
    /// [`VerifyError::TooLarge`] or [`VerifyError::Malformed`].
    Malformed,
    /// Algorithm or header refused.
    UnsupportedAlgorithm,
    /// No key for the `kid`.
    UnknownKey,
    /// Bad signature.
    InvalidSignature,
    /// Wrong or missing issuer.
    InvalidIssuer,
    /// Wrong audience.
    InvalidAudience,
    /// Expired.
    Expired,
    /// `nbf` / `iat` in the future.
    NotYetValid,
    /// A claim is missing or has the wrong type.
    InvalidClaims,
    /// The token is not active (introspection) or a custom verifier refused it.
    Inactive,
    /// The verifier could not reach its keys or endpoint.
    Unavailable,
}

impl VerifyError {
    /// The broad class of this error.
    pub fn kind(&self) -> VerifyErrorKind {
        match self {
            Self::TooLarge { .. } | Self::Malformed(_) => VerifyErrorKind::Malformed,
            Self::UnsupportedAlgorithm { .. }
            | Self::UnsupportedHeader(_)
            | Self::InvalidType { .. } => VerifyErrorKind::UnsupportedAlgorithm,
            Self::UnknownKey { .. } => VerifyErrorKind::UnknownKey,
            Self::InvalidSignature => VerifyErrorKind::InvalidSignature,
            Self::InvalidIssuer { .. } => VerifyErrorKind::InvalidIssuer,
            Self::InvalidAudience => VerifyErrorKind::InvalidAudience,
            Self::Expired => VerifyErrorKind::Expired,
            Self::NotYetValid { .. } => VerifyErrorKind::NotYetValid,
            Self::MissingClaim(_) | Self::InvalidClaim(_) => VerifyErrorKind::InvalidClaims,
            Self::Inactive | Self::Refused(_) => VerifyErrorKind::Inactive,
            Self::Unavailable(_) => VerifyErrorKind::Unavailable,
        }
    }

    /// A short text for the `error_description` of a challenge: fixed strings that name the
    /// class of problem and nothing an attacker could use.
    pub fn public_description(&self) -> &'static str {
        match self.kind() {
            VerifyErrorKind::Expired => "the access token expired",
            VerifyErrorKind::InvalidAudience => "the access token was not issued for this resource",
            VerifyErrorKind::Unavailable => "the access token cannot be verified right now",
            _ => "the access token is invalid",
        }
    }

    pub(crate) fn unsupported_alg(alg: &str) -> Self {
        Self::UnsupportedAlgorithm { alg: truncate(alg) }
    }

    pub(crate) fn unknown_key(kid: Option<&str>) -> Self {
        Self::UnknownKey {
            kid: kid.map(truncate),
        }
    }
}

/// Shortens attacker-controlled strings before they go into errors and logs.
pub(crate) fn truncate(value: &str) -> String {
    const MAX: usize = 64;
    if value.len() <= MAX {
        return value.to_owned();
    }
    let mut end = MAX;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", value.get(..end).unwrap_or_default())
}

/// An outbound fetch (JWKS, authorization-server metadata, introspection) failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("fetching {url} failed: {kind}")]
pub struct FetchError {
    /// The URL that was fetched.
    pub url: String,
    /// What went wrong.
    pub kind: FetchErrorKind,
}

/// What went wrong in a [`FetchError`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchErrorKind {
    /// No answer within the timeout.
    Timeout,
    /// Connection or protocol failure.
    Network(String),
    /// The server answered with a status other than 200.
    Status(u16),
    /// The body exceeded the size limit.
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body is not the expected JSON document.
    Parse(String),
    /// The URL is refused by policy (plain `http` to a non-loopback host, for example).
    Refused(String),
}

impl fmt::Display for FetchErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("timed out"),
            Self::Network(reason) => write!(f, "network error: {reason}"),
            Self::Status(status) => write!(f, "status {status}"),
            Self::TooLarge { limit } => write!(f, "body larger than {limit} bytes"),
            Self::Parse(reason) => write!(f, "invalid document: {reason}"),
            Self::Refused(reason) => write!(f, "refused: {reason}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_keeps_char_boundaries() {
        let long = "é".repeat(100);
        let short = truncate(&long);
        assert!(short.ends_with('…'));
        assert!(short.len() <= 64 + '…'.len_utf8());
    }

    #[test]
    fn public_descriptions_never_echo_details() {
        let err = VerifyError::InvalidIssuer {
            expected: "https://a".into(),
            found: Some("https://evil".into()),
        };
        assert_eq!(err.public_description(), "the access token is invalid");
        assert!(err.to_string().contains("evil"));
    }
}
