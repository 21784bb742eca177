//! The authorization server's side of the protocol: its error codes and a token request
//! parsed from its form. The words it shares with the rest of the crate (grant types, client
//! authentication methods, application types) are in [`crate::protocol`].

use std::collections::HashMap;
use std::fmt;

pub use crate::protocol::{ApplicationType, ClientAuthMethod, GrantType, UnknownName};

/// An OAuth error code: RFC 6749 §4.1.2.1 and §5.2, RFC 7591 §3.2.2, RFC 8707 §2, RFC 6750
/// §3.1, OpenID Connect Core §3.1.2.6 (`login_required`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    InvalidTarget,
    AccessDenied,
    LoginRequired,
    ServerError,
    TemporarilyUnavailable,
    InvalidClientMetadata,
    InvalidRedirectUri,
    InvalidToken,
    /// RFC 9449 §5: the DPoP proof at the token endpoint is not accepted.
    InvalidDpopProof,
    /// RFC 9449 §8: the DPoP proof needs a fresh server nonce (sent in `DPoP-Nonce`).
    UseDpopNonce,
}

impl ErrorCode {
    /// The code as it is sent.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidTarget => "invalid_target",
            Self::AccessDenied => "access_denied",
            Self::LoginRequired => "login_required",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::InvalidClientMetadata => "invalid_client_metadata",
            Self::InvalidRedirectUri => "invalid_redirect_uri",
            Self::InvalidToken => "invalid_token",
            Self::InvalidDpopProof => "invalid_dpop_proof",
            Self::UseDpopNonce => "use_dpop_nonce",
        }
    }

    /// The code of a store failure's answer (`StoreError::http`: `temporarily_unavailable`
    /// or `server_error`).
    pub(crate) fn of_store(code: &str) -> Self {
        if code == Self::TemporarilyUnavailable.as_str() {
            Self::TemporarilyUnavailable
        } else {
            Self::ServerError
        }
    }
}

impl AsRef<str> for ErrorCode {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token request (RFC 6749 §4.1.3, §6, §4.4; RFC 7636 §4.5; RFC 8707 §2), its grant
/// type's fields read from the form.
#[derive(Debug)]
pub(crate) enum TokenRequest<'a> {
    AuthorizationCode {
        code: &'a str,
        code_verifier: &'a str,
        redirect_uri: Option<&'a str>,
        resource: Option<&'a str>,
    },
    RefreshToken {
        refresh_token: &'a str,
        scope: Option<&'a str>,
        resource: Option<&'a str>,
    },
    ClientCredentials {
        scope: Option<&'a str>,
        resource: Option<&'a str>,
    },
    /// RFC 7523 §2.1: the JWT is the grant.
    JwtBearer {
        assertion: &'a str,
        scope: Option<&'a str>,
        resource: Option<&'a str>,
    },
}

impl<'a> TokenRequest<'a> {
    /// The request of a known grant type; `Err` says which required field is missing (an
    /// `invalid_request`).
    pub(crate) fn parse(
        grant: GrantType,
        form: &'a HashMap<String, String>,
    ) -> Result<Self, &'static str> {
        let field = |name: &str| form.get(name).map(String::as_str);
        let required = |name: &str, missing: &'static str| field(name).ok_or(missing);
        Ok(match grant {
            GrantType::AuthorizationCode => Self::AuthorizationCode {
                code: required("code", "code is missing")?,
                code_verifier: required("code_verifier", "code_verifier is missing (PKCE)")?,
                redirect_uri: field("redirect_uri"),
                resource: field("resource"),
            },
            GrantType::RefreshToken => Self::RefreshToken {
                refresh_token: required("refresh_token", "refresh_token is missing")?,
                scope: field("scope"),
                resource: field("resource"),
            },
            GrantType::ClientCredentials => Self::ClientCredentials {
                scope: field("scope"),
                resource: field("resource"),
            },
            GrantType::JwtBearer => Self::JwtBearer {
                assertion: required("assertion", "assertion is missing (RFC 7523 §2.1)")?,
                scope: field("scope"),
                resource: field("resource"),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_error_codes_round_trip() {
        assert_eq!(
            ErrorCode::of_store("temporarily_unavailable").as_str(),
            "temporarily_unavailable"
        );
        assert_eq!(ErrorCode::of_store("server_error"), ErrorCode::ServerError);
    }
}
