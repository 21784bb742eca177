//! The protocol's words, typed as oauth2-rs types them: error codes, grant types, client
//! authentication methods, and a token request parsed from its form.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

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

/// A grant type this server issues tokens for (RFC 6749 §4, as registered by RFC 7591 §2),
/// named on the wire and in stored records as the RFCs name it.
///
/// ```
/// use mcp_oauth::auth_server::GrantType;
///
/// assert_eq!("client_credentials".parse(), Ok(GrantType::ClientCredentials));
/// assert_eq!(GrantType::RefreshToken.to_string(), "refresh_token");
/// assert!("password".parse::<GrantType>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum GrantType {
    /// `authorization_code` (RFC 6749 §4.1, with PKCE).
    AuthorizationCode,
    /// `refresh_token` (RFC 6749 §6).
    RefreshToken,
    /// `client_credentials` (RFC 6749 §4.4): machine clients the operator configures.
    ClientCredentials,
}

impl GrantType {
    /// Every grant type, in the order the metadata lists them.
    pub const ALL: [Self; 3] = [
        Self::AuthorizationCode,
        Self::RefreshToken,
        Self::ClientCredentials,
    ];

    /// The name as it is sent and stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
        }
    }

    /// The grant type of this name, if the server knows it.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == name)
    }
}

/// How a client authenticates at the token and revocation endpoints (RFC 7591 §2
/// `token_endpoint_auth_method`; oauth2-rs's `AuthType`, plus public clients).
///
/// ```
/// use mcp_oauth::auth_server::ClientAuthMethod;
///
/// assert_eq!("none".parse(), Ok(ClientAuthMethod::None));
/// assert_eq!(ClientAuthMethod::ClientSecretPost.to_string(), "client_secret_post");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClientAuthMethod {
    /// `none`: a public client, its id only.
    None,
    /// `client_secret_basic`: HTTP Basic with the client id and secret (RFC 6749 §2.3.1).
    ClientSecretBasic,
    /// `client_secret_post`: the id and secret in the form body.
    ClientSecretPost,
}

impl ClientAuthMethod {
    /// Every method, in the order the metadata lists them.
    pub const ALL: [Self; 3] = [Self::None, Self::ClientSecretBasic, Self::ClientSecretPost];

    /// The name as it is sent and stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
        }
    }

    /// The method of this name, if the server knows it.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// Whether the client proves itself with a secret.
    pub const fn is_confidential(self) -> bool {
        !matches!(self, Self::None)
    }
}

/// A client's `application_type` (OpenID Connect Dynamic Client Registration §2): which
/// redirect URIs it may register.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ApplicationType {
    /// `web` (the default): `https` redirect URIs, or `http` on loopback.
    #[default]
    Web,
    /// `native`: also private-use schemes (`com.example.app:/cb`).
    Native,
}

impl ApplicationType {
    /// Both types.
    pub const ALL: [Self; 2] = [Self::Web, Self::Native];

    /// The name as it is sent and stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Web => "web",
            Self::Native => "native",
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// A name that is none of a protocol enum's values; says which ones there are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    what: &'static str,
    name: String,
    known: &'static [&'static str],
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:?} is not supported; use one of: {}",
            self.what,
            self.name,
            self.known.join(", ")
        )
    }
}

impl std::error::Error for UnknownName {}

macro_rules! wire_names {
    ($ty:ident, $what:literal, [$($name:literal),+]) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = UnknownName;

            fn from_str(name: &str) -> Result<Self, UnknownName> {
                Self::parse(name).ok_or_else(|| UnknownName {
                    what: $what,
                    name: name.to_owned(),
                    known: &[$($name),+],
                })
            }
        }
    };
}

wire_names!(
    GrantType,
    "grant type",
    ["authorization_code", "refresh_token", "client_credentials"]
);
wire_names!(
    ClientAuthMethod,
    "token_endpoint_auth_method",
    ["none", "client_secret_basic", "client_secret_post"]
);
wire_names!(ApplicationType, "application_type", ["web", "native"]);

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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for grant in GrantType::ALL {
            assert_eq!(GrantType::parse(grant.as_str()), Some(grant));
        }
        assert_eq!(GrantType::parse("password"), None);
        for method in ClientAuthMethod::ALL {
            assert_eq!(method.as_str().parse(), Ok(method));
            // Stored records hold the wire name.
            assert_eq!(
                serde_json::to_value(method).unwrap(),
                serde_json::json!(method.as_str())
            );
        }
        for grant in GrantType::ALL {
            assert_eq!(
                serde_json::to_value(grant).unwrap(),
                serde_json::json!(grant.as_str())
            );
        }
        for kind in ApplicationType::ALL {
            assert_eq!(kind.as_str().parse(), Ok(kind));
        }
        let err = "private_key_jwt".parse::<ClientAuthMethod>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "token_endpoint_auth_method \"private_key_jwt\" is not supported; use one of: none, client_secret_basic, client_secret_post"
        );
        assert_eq!(
            ErrorCode::of_store("temporarily_unavailable").as_str(),
            "temporarily_unavailable"
        );
        assert_eq!(ErrorCode::of_store("server_error"), ErrorCode::ServerError);
    }
}
