//! One user's grant at one upstream's authorization server, as the vault keeps it.

use mcp_oauth::Secret;
use serde::{Deserialize, Serialize};

/// What the upstream's authorization server granted one user: the access token the gateway
/// sends to the upstream for that user, the refresh token that renews it, when the access
/// token expires and the scopes granted. Kept sealed in the vault under (user, upstream),
/// never in memory between requests, so every gateway instance reads the same (rotated)
/// refresh token.
#[derive(Clone, Serialize, Deserialize)]
pub struct UpstreamGrant {
    #[serde(with = "secret_str")]
    access_token: Secret,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_secret_str"
    )]
    refresh_token: Option<Secret>,
    /// Unix seconds; `None`: the server did not say (used until the upstream refuses it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
    #[serde(default)]
    scopes: Vec<String>,
}

impl std::fmt::Debug for UpstreamGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamGrant")
            .field("access_token", &"<redacted>")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expires_at", &self.expires_at)
            .field("scopes", &self.scopes)
            .finish()
    }
}

impl UpstreamGrant {
    /// A grant: `access_token`, maybe a `refresh_token`, its expiry (Unix seconds) and the
    /// scopes granted.
    pub fn new(
        access_token: impl Into<Secret>,
        refresh_token: Option<Secret>,
        expires_at: Option<i64>,
        scopes: Vec<String>,
    ) -> Self {
        Self {
            access_token: access_token.into(),
            refresh_token: refresh_token.filter(|t| !t.expose().is_empty()),
            expires_at,
            scopes,
        }
    }

    /// The access token sent to the upstream.
    pub fn access_token(&self) -> &str {
        std::str::from_utf8(self.access_token.expose()).unwrap_or_default()
    }

    /// The refresh token, if the server gave one.
    pub fn refresh_token(&self) -> Option<&str> {
        self.refresh_token
            .as_ref()
            .and_then(|t| std::str::from_utf8(t.expose()).ok())
    }

    /// When the access token expires (Unix seconds), if the server said.
    pub fn expires_at(&self) -> Option<i64> {
        self.expires_at
    }

    /// The scopes granted.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// Whether the access token has more than `margin` seconds left at `now`.
    pub(crate) fn fresh(&self, now: i64, margin: i64) -> bool {
        self.expires_at
            .is_none_or(|at| at.saturating_sub(margin) > now)
    }

    /// The grant after a refresh answered `renewed`: a refresh token the answer lacks (or
    /// gives empty) is the old one kept, never dropped; scopes it does not name are the old
    /// ones (RFC 6749 §5.1: scope is returned only when it differs).
    pub(crate) fn renewed(&self, renewed: Self) -> Self {
        Self {
            access_token: renewed.access_token,
            refresh_token: renewed.refresh_token.or_else(|| self.refresh_token.clone()),
            expires_at: renewed.expires_at,
            scopes: if renewed.scopes.is_empty() {
                self.scopes.clone()
            } else {
                renewed.scopes
            },
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

mod secret_str {
    use mcp_oauth::Secret;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(secret: &Secret, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(secret.expose()))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret::from)
    }
}

mod opt_secret_str {
    use mcp_oauth::Secret;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        secret: &Option<Secret>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match secret {
            Some(secret) => s.serialize_str(&String::from_utf8_lossy(secret.expose())),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
        Ok(Option::<String>::deserialize(d)?
            .filter(|t| !t.is_empty())
            .map(Secret::from))
    }
}
