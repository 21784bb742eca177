//! Clients the operator configures ([`ClientSpec`]), checked and turned into records.

use serde_json::Map;

use super::http::hash_hex;
use super::protocol::{ApplicationType, ClientAuthMethod, GrantType};
use super::store;
use crate::claims::now_unix;
use crate::error::ConfigError;

/// A client the operator configures (pre-registered). `Debug` shows no secret.
///
/// A client with `client_credentials` among its grant types is a machine client: it needs
/// a secret and its own [`scopes`](Self::scopes), the only ones its tokens may carry. A
/// client with the JWT-bearer grant (`urn:ietf:params:oauth:grant-type:jwt-bearer`) may be
/// given scopes too: its tokens then carry only those (without, any scope of the server).
#[derive(Clone, Default)]
pub struct ClientSpec {
    /// The client id.
    pub client_id: String,
    /// The secret (confidential client), or none (public).
    pub client_secret: Option<String>,
    /// Redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Grant types.
    pub grant_types: Vec<GrantType>,
    /// Display name.
    pub client_name: Option<String>,
    /// The scopes `client_credentials` tokens of this client may carry (each one the server
    /// offers). Required for a machine client; there is no implicit "every scope".
    pub scopes: Vec<String>,
    /// How the client authenticates at the token and revocation endpoints:
    /// `client_secret_basic` or `client_secret_post` with a secret, `private_key_jwt` with
    /// [`jwks`](Self::jwks), `none` without either. Default (`None`): `client_secret_basic`
    /// with a secret, `private_key_jwt` with keys, `none` without.
    pub token_endpoint_auth_method: Option<ClientAuthMethod>,
    /// The client's public keys, a JWK Set (JSON text), for `private_key_jwt`.
    pub jwks: Option<String>,
}

impl std::fmt::Debug for ClientSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSpec")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("redirect_uris", &self.redirect_uris)
            .field("grant_types", &self.grant_types)
            .field("client_name", &self.client_name)
            .field("scopes", &self.scopes)
            .field(
                "token_endpoint_auth_method",
                &self.token_endpoint_auth_method,
            )
            .field("jwks", &self.jwks.is_some())
            .finish()
    }
}

impl ClientSpec {
    /// A confidential machine client for `client_credentials` (HTTP Basic authentication).
    /// Give it its scopes with [`Self::scopes`].
    pub fn service(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: Some(client_secret.into()),
            grant_types: vec![GrantType::ClientCredentials],
            ..Self::default()
        }
    }

    /// A confidential machine client for `client_credentials` that authenticates with
    /// `private_key_jwt` (RFC 7523 §2.2): JWTs it signs with its private key, checked against
    /// these public keys (a JWK Set, JSON text). Give it its scopes with [`Self::scopes`].
    pub fn service_with_keys(client_id: impl Into<String>, jwks: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            jwks: Some(jwks.into()),
            token_endpoint_auth_method: Some(ClientAuthMethod::PrivateKeyJwt),
            grant_types: vec![GrantType::ClientCredentials],
            ..Self::default()
        }
    }

    /// A client for the JWT-bearer grant only that presents no credentials of its own: a
    /// workload whose identity token is its credential
    /// ([`WorkloadIssuer`](super::WorkloadIssuer)). Give it its scopes with [`Self::scopes`].
    pub fn workload(client_id: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            token_endpoint_auth_method: Some(ClientAuthMethod::None),
            grant_types: vec![GrantType::JwtBearer],
            ..Self::default()
        }
    }

    /// The grant types this client may use (replacing those it had).
    pub fn grant_types<I: IntoIterator<Item = GrantType>>(mut self, grants: I) -> Self {
        self.grant_types = grants.into_iter().collect();
        self
    }

    /// The scopes this client's `client_credentials` (or JWT-bearer) tokens may carry.
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// How the client authenticates (`client_secret_basic`, `client_secret_post` or `none`).
    pub fn auth_method(mut self, method: ClientAuthMethod) -> Self {
        self.token_endpoint_auth_method = Some(method);
        self
    }

    pub(crate) fn into_record(
        self,
        offered: &[String],
    ) -> Result<store::ClientRecord, ConfigError> {
        let bad = |msg: String| ConfigError::invalid("client", msg);
        let id = &self.client_id;
        let method =
            self.token_endpoint_auth_method
                .unwrap_or(match (&self.client_secret, &self.jwks) {
                    (Some(_), _) => ClientAuthMethod::ClientSecretBasic,
                    (None, Some(_)) => ClientAuthMethod::PrivateKeyJwt,
                    (None, None) => ClientAuthMethod::None,
                });
        if method.uses_secret() != self.client_secret.is_some() {
            return Err(bad(format!(
                "client {id:?}: token_endpoint_auth_method {method} does not fit a client {} a secret",
                if self.client_secret.is_some() {
                    "with"
                } else {
                    "without"
                }
            )));
        }
        let jwks = match (method, &self.jwks) {
            (ClientAuthMethod::PrivateKeyJwt, Some(text)) => {
                let jwks: serde_json::Value = serde_json::from_str(text)
                    .map_err(|e| bad(format!("client {id:?}: jwks is not JSON: {e}")))?;
                super::registration::client_keys(&jwks)
                    .map_err(|e| bad(format!("client {id:?}: {e}")))?;
                Some(jwks)
            }
            (ClientAuthMethod::PrivateKeyJwt, None) => {
                return Err(bad(format!(
                    "client {id:?}: private_key_jwt needs the client's public keys (jwks)"
                )));
            }
            (_, Some(_)) => {
                return Err(bad(format!(
                    "client {id:?}: jwks are only for private_key_jwt, not {method}"
                )));
            }
            (_, None) => None,
        };
        let machine = self.grant_types.contains(&GrantType::ClientCredentials);
        let machine_scopes = if machine {
            if !method.is_confidential() {
                return Err(bad(format!(
                    "client {id:?}: client_credentials needs a client secret or keys (jwks)"
                )));
            }
            if self.scopes.is_empty() {
                return Err(bad(format!(
                    "client {id:?} may use client_credentials but has no scopes: give it its scopes with ClientSpec::scopes"
                )));
            }
            if let Some(s) = self.scopes.iter().find(|s| !offered.contains(s)) {
                return Err(bad(format!(
                    "client {id:?}: the scope {s:?} is not offered by this server"
                )));
            }
            Some(self.scopes)
        } else if self.grant_types.contains(&GrantType::JwtBearer) && !self.scopes.is_empty() {
            if let Some(s) = self.scopes.iter().find(|s| !offered.contains(s)) {
                return Err(bad(format!(
                    "client {id:?}: the scope {s:?} is not offered by this server"
                )));
            }
            Some(self.scopes)
        } else {
            None
        };
        Ok(store::ClientRecord {
            secret_hash: self.client_secret.as_deref().map(hash_hex),
            token_endpoint_auth_method: method,
            jwks,
            client_id: self.client_id,
            redirect_uris: self.redirect_uris,
            grant_types: self.grant_types,
            application_type: ApplicationType::Web,
            client_name: self.client_name,
            scope: None,
            metadata: Map::new(),
            issued_at: now_unix(),
            from_metadata_document: false,
            machine_scopes,
            expires_at: None,
        })
    }
}
