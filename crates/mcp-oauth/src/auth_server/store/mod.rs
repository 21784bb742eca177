//! Where the authorization server keeps its state: clients, pending authorization requests,
//! codes, refresh tokens, revoked grants and, in proxy mode, transactions, consents and sealed
//! upstream tokens. In memory by default; SQLite (feature `sqlite`) for one machine that
//! restarts; Redis (feature `redis`) for several instances sharing one state.
//!
//! Codes and refresh tokens are stored under the SHA-256 of their value, never the value.

mod memory;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::verify::BoxFuture;

#[cfg(feature = "redis")]
pub use self::redis::RedisStore;
pub use memory::MemoryStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

/// A storage failure.
#[derive(Debug, Clone, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

/// The result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// A registered client (RFC 7591), or one resolved from its metadata document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClientRecord {
    /// The client id.
    pub client_id: String,
    /// SHA-256 (hex) of the client secret, for confidential clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_hash: Option<String>,
    /// Registered redirect URIs.
    pub redirect_uris: Vec<String>,
    /// `none`, `client_secret_basic` or `client_secret_post`.
    pub token_endpoint_auth_method: String,
    /// Allowed grant types.
    pub grant_types: Vec<String>,
    /// `web` or `native`.
    pub application_type: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// Scope the client registered with (space-separated), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The other registered members this server knows (`client_uri`, `logo_uri`,
    /// `contacts`, …), returned as registered. Unknown members are dropped at registration.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// Registration time (Unix seconds).
    pub issued_at: i64,
    /// `true` for a Client ID Metadata Document client (cached, not registered).
    #[serde(default)]
    pub from_metadata_document: bool,
    /// The scopes `client_credentials` tokens of this client may carry. Only the operator
    /// sets them (a configured client, or a registration with the initial access token);
    /// `None`: the client cannot use `client_credentials`, whatever its `grant_types` say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_scopes: Option<Vec<String>>,
    /// When an unused dynamic registration lapses (Unix seconds): set at registration,
    /// cleared once the client redeems its first authorization code. `None`: kept until
    /// removed. Stores treat a lapsed client as unknown and purge it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

impl ClientRecord {
    /// Whether the client authenticates at the token endpoint.
    pub fn is_confidential(&self) -> bool {
        self.token_endpoint_auth_method != "none"
    }

    /// Whether a grant type is allowed.
    pub fn allows_grant(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant)
    }

    /// Whether the client is still usable at `now` (an unused registration lapses).
    pub fn is_live(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// An authorization request waiting for the user at the login and consent page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuthRequestRecord {
    /// The client.
    pub client_id: String,
    /// The redirect URI (already checked against the client).
    pub redirect_uri: String,
    /// `state`, returned unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The granted scopes if approved.
    pub scope: Vec<String>,
    /// The RFC 8707 resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The PKCE S256 challenge.
    pub code_challenge: String,
    /// The CSRF token the page's form must return (with the matching cookie).
    pub csrf: String,
    /// When the request lapses (Unix seconds).
    pub expires_at: i64,
}

/// An authorization code, stored under the hash of its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CodeRecord {
    /// The client it was issued to.
    pub client_id: String,
    /// The redirect URI of the request.
    pub redirect_uri: String,
    /// The PKCE S256 challenge.
    pub code_challenge: String,
    /// Granted scopes.
    pub scope: Vec<String>,
    /// The RFC 8707 resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The user.
    pub subject: String,
    /// Identity claims to put in access tokens (email, name, …).
    #[serde(default)]
    pub user_claims: Map<String, Value>,
    /// The grant family tokens issued from this code belong to.
    pub family: String,
    /// When the code lapses (Unix seconds).
    pub expires_at: i64,
}

/// A refresh token, stored under the hash of its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RefreshRecord {
    /// The client.
    pub client_id: String,
    /// Granted scopes.
    pub scope: Vec<String>,
    /// The RFC 8707 resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The user.
    pub subject: String,
    /// Identity claims.
    #[serde(default)]
    pub user_claims: Map<String, Value>,
    /// The grant family (all refresh tokens of one authorization).
    pub family: String,
    /// When it lapses (Unix seconds).
    pub expires_at: i64,
}

/// What redeeming (or peeking at) a single-use value found.
#[derive(Debug, Clone, PartialEq)]
pub enum Redeemed<T> {
    /// First use: the record, now marked used (when peeking: not used yet, left unused).
    Fresh(T),
    /// Used before: a replay. The record tells which grant to revoke.
    Replayed(T),
    /// Unknown or expired.
    Missing,
}

/// What an [`Store::put_entry`] record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EntryKind {
    /// An OAuth proxy's pending upstream authorization, keyed by the hash of its `state`.
    Transaction,
    /// An OAuth proxy's upstream tokens, sealed (AES-GCM), keyed by grant family.
    UpstreamTokens,
    /// A remembered consent, keyed by user and client.
    Consent,
}

impl EntryKind {
    /// A stable name, for keys and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transaction => "transaction",
            Self::UpstreamTokens => "upstream_tokens",
            Self::Consent => "consent",
        }
    }
}

/// The authorization server's storage.
///
/// `redeem_*` must be atomic: of two concurrent redemptions of the same value, exactly one
/// sees [`Redeemed::Fresh`]. The token endpoint first peeks (`peek_*`, which changes
/// nothing), checks the client, redirect URI, PKCE verifier and resource against the record,
/// and redeems only then: a request that fails a check leaves the value usable by its owner.
pub trait Store: Send + Sync + 'static {
    /// Saves (or replaces) a client.
    fn put_client(&self, client: ClientRecord) -> BoxFuture<'_, StoreResult<()>>;
    /// A client by id (`None` when unknown, or an unused registration that lapsed).
    fn client<'a>(&'a self, client_id: &'a str)
    -> BoxFuture<'a, StoreResult<Option<ClientRecord>>>;
    /// Saves a pending authorization request.
    fn put_request<'a>(
        &'a self,
        id: &'a str,
        request: AuthRequestRecord,
    ) -> BoxFuture<'a, StoreResult<()>>;
    /// A pending authorization request (`None` when unknown or expired).
    fn request<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<AuthRequestRecord>>>;
    /// Removes a pending authorization request and returns it; `None` if another caller
    /// already did.
    fn take_request<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<AuthRequestRecord>>>;
    /// Saves an authorization code.
    fn put_code<'a>(&'a self, hash: &'a str, code: CodeRecord) -> BoxFuture<'a, StoreResult<()>>;
    /// Redeems an authorization code (single use).
    fn redeem_code<'a>(&'a self, hash: &'a str)
    -> BoxFuture<'a, StoreResult<Redeemed<CodeRecord>>>;
    /// An authorization code without using it: [`Redeemed::Fresh`] when unused,
    /// [`Redeemed::Replayed`] when used, [`Redeemed::Missing`] when unknown or expired.
    fn peek_code<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, StoreResult<Redeemed<CodeRecord>>>;
    /// Saves a refresh token.
    fn put_refresh<'a>(
        &'a self,
        hash: &'a str,
        token: RefreshRecord,
    ) -> BoxFuture<'a, StoreResult<()>>;
    /// Redeems a refresh token (single use: rotation).
    fn redeem_refresh<'a>(
        &'a self,
        hash: &'a str,
    ) -> BoxFuture<'a, StoreResult<Redeemed<RefreshRecord>>>;
    /// A refresh token without using it, with whether it was used (as
    /// [`Store::peek_code`]).
    fn peek_refresh<'a>(
        &'a self,
        hash: &'a str,
    ) -> BoxFuture<'a, StoreResult<Redeemed<RefreshRecord>>>;
    /// A refresh token without using it (for revocation).
    fn refresh<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, StoreResult<Option<RefreshRecord>>>;
    /// Revokes a grant family until `until` (Unix seconds; the longest life of its tokens). A
    /// later call never shortens an existing revocation.
    fn revoke_family<'a>(&'a self, family: &'a str, until: i64) -> BoxFuture<'a, StoreResult<()>>;
    /// Whether a grant family is revoked.
    fn is_family_revoked<'a>(&'a self, family: &'a str) -> BoxFuture<'a, StoreResult<bool>>;
    /// Saves (or replaces) a small record (JSON text) until `expires_at` (Unix seconds).
    fn put_entry<'a>(
        &'a self,
        kind: EntryKind,
        key: &'a str,
        value: String,
        expires_at: i64,
    ) -> BoxFuture<'a, StoreResult<()>>;
    /// A record, if present and not expired.
    fn entry<'a>(
        &'a self,
        kind: EntryKind,
        key: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<String>>>;
    /// Removes a record and returns it (single use: of two concurrent takes, one gets it).
    fn take_entry<'a>(
        &'a self,
        kind: EntryKind,
        key: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<String>>>;
}

impl fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Store")
    }
}

/// A record that does not decode, described without serde_json's own message, which may
/// quote the record (user claims, a CSRF token, a sealed token): only where it broke.
#[cfg(any(feature = "sqlite", feature = "redis"))]
fn damaged_record(err: &serde_json::Error, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let kind = match err.classify() {
        serde_json::error::Category::Io => "i/o",
        serde_json::error::Category::Syntax => "syntax",
        serde_json::error::Category::Data => "data",
        serde_json::error::Category::Eof => "truncated",
    };
    write!(
        f,
        "damaged record ({kind} error at line {} column {})",
        err.line(),
        err.column()
    )
}
