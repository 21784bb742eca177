//! The protocol's words the whole crate shares, typed as oauth2-rs types them: grant types,
//! client authentication methods and application types, each named on the wire and in stored
//! records as the RFCs name it, and [`ClientCredentials`], how this crate authenticates as a
//! client of another server (a provider's token and revocation endpoints in proxy mode, an
//! introspection endpoint).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// A grant type the embedded authorization server issues tokens for (RFC 6749 §4, as registered by RFC 7591 §2),
/// named on the wire and in stored records as the RFCs name it.
///
/// ```
/// use mcp_oauth::protocol::GrantType;
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
    /// `urn:ietf:params:oauth:grant-type:jwt-bearer` (RFC 7523 §2.1): a JWT as the grant, from
    /// a trusted enterprise identity provider (an ID-JAG) or a workload identity issuer.
    #[serde(rename = "urn:ietf:params:oauth:grant-type:jwt-bearer")]
    JwtBearer,
}

impl GrantType {
    /// Every grant type, in the order the metadata lists them.
    pub const ALL: [Self; 4] = [
        Self::AuthorizationCode,
        Self::RefreshToken,
        Self::ClientCredentials,
        Self::JwtBearer,
    ];

    /// The name as it is sent and stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
            Self::JwtBearer => "urn:ietf:params:oauth:grant-type:jwt-bearer",
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
/// use mcp_oauth::protocol::ClientAuthMethod;
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
    /// `private_key_jwt`: a JWT the client signs with its private key (RFC 7523 §2.2), checked
    /// against the public keys it registered (`jwks`). No shared secret.
    PrivateKeyJwt,
}

impl ClientAuthMethod {
    /// Every method, in the order the metadata lists them.
    pub const ALL: [Self; 4] = [
        Self::None,
        Self::ClientSecretBasic,
        Self::ClientSecretPost,
        Self::PrivateKeyJwt,
    ];

    /// The name as it is sent and stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::PrivateKeyJwt => "private_key_jwt",
        }
    }

    /// The method of this name, if the server knows it.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// Whether the client proves who it is (a secret or a key); `none` does not.
    pub const fn is_confidential(self) -> bool {
        !matches!(self, Self::None)
    }

    /// Whether the client proves itself with a shared secret (`client_secret_basic` or
    /// `client_secret_post`): the ones a secret is issued for.
    pub const fn uses_secret(self) -> bool {
        matches!(self, Self::ClientSecretBasic | Self::ClientSecretPost)
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
    [
        "authorization_code",
        "refresh_token",
        "client_credentials",
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    ]
);
wire_names!(
    ClientAuthMethod,
    "token_endpoint_auth_method",
    [
        "none",
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt"
    ]
);
wire_names!(ApplicationType, "application_type", ["web", "native"]);

/// This crate as the client of another OAuth server: its client id, its secret if it has one,
/// and how it presents them (RFC 6749 §2.3.1). One type for every outbound client
/// authentication: a provider's token and revocation endpoints in proxy mode, an
/// introspection endpoint (RFC 7662 §2.1).
///
/// ```
/// use mcp_oauth::protocol::{ClientAuthMethod, ClientCredentials};
///
/// let basic = ClientCredentials::new("rs", "s3cret");
/// assert_eq!(basic.method(), ClientAuthMethod::ClientSecretBasic);
/// let post = basic.with_method(ClientAuthMethod::ClientSecretPost);
/// assert_eq!(post.method(), ClientAuthMethod::ClientSecretPost);
/// let public = ClientCredentials::public("cli");
/// assert_eq!(public.method(), ClientAuthMethod::None);
/// ```
#[derive(Clone)]
pub struct ClientCredentials {
    client_id: String,
    secret: Option<String>,
    method: ClientAuthMethod,
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("method", &self.method)
            .finish()
    }
}

impl ClientCredentials {
    /// A confidential client, authenticating with HTTP Basic (`client_secret_basic`, the
    /// method every server must support); [`ClientCredentials::with_method`] changes it.
    pub fn new(client_id: impl Into<String>, secret: impl Into<Secret>) -> Self {
        let secret: Secret = secret.into();
        Self {
            client_id: client_id.into(),
            secret: Some(String::from_utf8_lossy(secret.expose()).into_owned()),
            method: ClientAuthMethod::ClientSecretBasic,
        }
    }

    /// A public client: its `client_id` alone, in the form (`none`).
    pub fn public(client_id: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            secret: None,
            method: ClientAuthMethod::None,
        }
    }

    /// How the secret is presented. A public client stays public (it has no secret to
    /// present); `ClientAuthMethod::None` makes a confidential one send its id alone.
    /// `private_key_jwt` is not an outbound method here (this crate signs no client
    /// assertions): the method stays as it was.
    #[must_use]
    pub fn with_method(mut self, method: ClientAuthMethod) -> Self {
        if self.secret.is_some() && method != ClientAuthMethod::PrivateKeyJwt {
            self.method = method;
        }
        self
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// How the client authenticates.
    pub fn method(&self) -> ClientAuthMethod {
        self.method
    }

    /// Adds the client's authentication to a form POST: the fields it puts in the body, and
    /// the `Authorization` header it needs.
    #[cfg(feature = "remote")]
    pub(crate) fn authenticate<'a>(
        &'a self,
        form: &mut Vec<(&'a str, &'a str)>,
    ) -> crate::fetch::RequestAuth<'a> {
        match (self.method, &self.secret) {
            (ClientAuthMethod::ClientSecretBasic, Some(secret)) => {
                crate::fetch::RequestAuth::Basic(&self.client_id, secret)
            }
            (ClientAuthMethod::ClientSecretPost, Some(secret)) => {
                form.push(("client_id", &self.client_id));
                form.push(("client_secret", secret));
                crate::fetch::RequestAuth::None
            }
            _ => {
                form.push(("client_id", &self.client_id));
                crate::fetch::RequestAuth::None
            }
        }
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
        let err = "client_secret_jwt".parse::<ClientAuthMethod>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "token_endpoint_auth_method \"client_secret_jwt\" is not supported; use one of: none, client_secret_basic, client_secret_post, private_key_jwt"
        );
    }

    #[test]
    fn credentials_never_show_their_secret() {
        let debug = format!("{:?}", ClientCredentials::new("rs", "hunter2"));
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("rs"), "{debug}");
    }

    #[cfg(feature = "remote")]
    #[test]
    fn each_method_puts_the_credentials_where_it_says() {
        use crate::fetch::RequestAuth;
        let basic = ClientCredentials::new("rs", "s3cret");
        let mut form = vec![("token", "t")];
        assert!(matches!(
            basic.authenticate(&mut form),
            RequestAuth::Basic("rs", "s3cret")
        ));
        assert_eq!(form, [("token", "t")]);

        let post = basic
            .clone()
            .with_method(ClientAuthMethod::ClientSecretPost);
        let mut form = vec![("token", "t")];
        assert!(matches!(post.authenticate(&mut form), RequestAuth::None));
        assert_eq!(
            form,
            [
                ("token", "t"),
                ("client_id", "rs"),
                ("client_secret", "s3cret")
            ]
        );

        for id_only in [
            ClientCredentials::public("cli"),
            ClientCredentials::public("cli").with_method(ClientAuthMethod::ClientSecretBasic),
            ClientCredentials::new("cli", "s3cret").with_method(ClientAuthMethod::None),
        ] {
            let mut form = vec![];
            assert!(matches!(id_only.authenticate(&mut form), RequestAuth::None));
            assert_eq!(form, [("client_id", "cli")], "{id_only:?}");
        }
    }
}
