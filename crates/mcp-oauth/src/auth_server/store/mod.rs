//! Where the authorization server keeps its state: clients, pending authorization requests,
//! codes, refresh tokens, revoked grants, in proxy mode transactions, consents and sealed
//! upstream tokens, and the DPoP proofs a resource server accepted. In memory by default;
//! SQLite (feature `sqlite`) for one machine that restarts; PostgreSQL (feature `postgres`) or
//! Redis (feature `redis`, also on a Redis Cluster) for several instances sharing one state.
//!
//! Why one file of this size: the typed records and their encoding are written once, here,
//! over the primitives every backend implements (the point of the layering below); each
//! backend is a file of its own.
//!
//! # Two layers
//!
//! A backend implements [`Store`]: seven primitives over opaque bytes, each record filed
//! under a [`Kind`] and a key:
//!
//! | primitive | what it does |
//! | --- | --- |
//! | [`Store::put`] | saves (or replaces) a record, unused, until `expires_at` (or for good) |
//! | [`Store::put_if_absent`] | saves a record unless a live one is filed under its key: of any number of concurrent calls with one key, exactly one saves it |
//! | [`Store::get`] | reads a live record and whether it was redeemed, changing nothing |
//! | [`Store::take`] | removes a live record and returns it: of two concurrent takes, one gets it |
//! | [`Store::redeem`] | marks a live record used and says whether it was before: of any number of concurrent redemptions, exactly one is [`Redeemed::Fresh`] |
//! | [`Store::revoke_family`] | revokes a grant family until a time, never shortening a revocation |
//! | [`Store::is_family_revoked`] | whether a grant family is revoked now |
//!
//! A record whose `expires_at` is not after the current Unix time (this machine's clock) is
//! absent for every primitive. The typed records ([`ClientRecord`], [`CodeRecord`], ...) are
//! encoded (JSON) and decoded once, here, by the methods on `dyn Store` that the handlers call
//! (`store.put_client(..)`, `store.peek_code(..)`, ...). A new backend is one file that
//! implements the seven primitives and passes the conformance suite (`tests/store.rs`).
//!
//! Codes and refresh tokens are stored under the SHA-256 of their value, never the value.
//!
//! [`StoreReplayCache`] puts a DPoP verifier's replay cache in a store, so that every
//! instance that shares the store refuses a proof any of them accepted before.
//!
//! # Failures
//!
//! A [`StoreError`] has a [`StoreErrorKind`]: [`Unavailable`](StoreErrorKind::Unavailable)
//! (the backend cannot be reached or refused the call: retrying may help) or
//! [`Damaged`](StoreErrorKind::Damaged) (a record does not decode). The endpoints answer
//! every store failure the same way and fail closed: `503 temporarily_unavailable` for an
//! unavailable store, `500 server_error` for a damaged record; never "unknown code", never
//! "not revoked".

mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
mod postgres_tls;
#[cfg(feature = "redis")]
mod redis;
mod replay;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::protocol::{ApplicationType, ClientAuthMethod, GrantType};
use crate::claims::now_unix;
use crate::verify::BoxFuture;

pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
#[cfg(feature = "redis")]
pub use redis::RedisStore;
pub use replay::StoreReplayCache;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

/// What kind of failure a [`StoreError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The backend cannot be reached, timed out or refused the call (or could not be set up:
    /// a bad URL, a schema newer than this build). Retrying later may help.
    Unavailable,
    /// A record does not decode: written by something else, or damaged.
    Damaged,
    /// A record was refused before it reached the backend (a client that does not validate).
    Invalid,
}

/// A storage failure. The message names the backend and what failed, never a record, a
/// password or a token.
#[derive(Debug, Clone, thiserror::Error)]
#[error("store: {message}")]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
}

impl StoreError {
    /// The backend cannot be reached or refused the call.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            kind: StoreErrorKind::Unavailable,
            message: message.into(),
        }
    }

    /// A record does not decode.
    pub fn damaged(message: impl Into<String>) -> Self {
        Self {
            kind: StoreErrorKind::Damaged,
            message: message.into(),
        }
    }

    /// A record that cannot be stored as given.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            kind: StoreErrorKind::Invalid,
            message: message.into(),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// How an endpoint answers this failure, the one mapping every handler uses: the HTTP
    /// status and the OAuth error code (`temporarily_unavailable` or `server_error`).
    pub(crate) fn http(&self) -> (http::StatusCode, &'static str) {
        match self.kind {
            StoreErrorKind::Unavailable => (
                http::StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
            ),
            StoreErrorKind::Damaged | StoreErrorKind::Invalid => {
                (http::StatusCode::INTERNAL_SERVER_ERROR, "server_error")
            }
        }
    }

    /// The OAuth JSON error answer for this failure (logged here, once).
    pub(crate) fn into_response(self) -> axum::response::Response {
        let (status, code) = self.logged();
        super::http::oauth_error(status, code, "try again later")
    }

    /// The HTML page for this failure, for the browser's endpoints (logged here, once).
    pub(crate) fn into_page(self) -> axum::response::Response {
        let (status, _) = self.logged();
        super::pages::error_page(
            status,
            "The sign-in is unavailable right now; try again later.",
        )
    }

    /// Logs the failure and returns [`http`](Self::http).
    pub(crate) fn logged(&self) -> (http::StatusCode, &'static str) {
        tracing::error!(target: "mcp_oauth::auth_server", error = %self, "store failed");
        self.http()
    }
}

/// The result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// What a record is: the namespace of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// A [`ClientRecord`], keyed by client id.
    Client,
    /// An [`AuthRequestRecord`], keyed by request id.
    Request,
    /// A [`CodeRecord`], keyed by the SHA-256 of the code.
    Code,
    /// A [`RefreshRecord`], keyed by the SHA-256 of the refresh token.
    Refresh,
    /// An OAuth proxy's pending upstream authorization, keyed by the hash of its `state`.
    Transaction,
    /// An OAuth proxy's upstream tokens, sealed (AES-GCM), keyed by grant family.
    UpstreamTokens,
    /// A remembered consent, keyed by user and client.
    Consent,
    /// A DPoP proof a resource server accepted ([`StoreReplayCache`]), keyed by the
    /// [`ReplayKey`](crate::dpop::ReplayKey) of its key and `jti`; no data.
    DpopProof,
    /// A client assertion (`private_key_jwt`) the server accepted, keyed by client id and
    /// `jti`, or the assertion of a JWT-bearer grant (an ID-JAG, a workload token), keyed by
    /// its issuer and `jti`; no data. Kept until the assertion expires, so it is used once.
    ClientAssertion,
    /// A slot of a rate-limit bucket (`mcp_oauth::policy::RateLimiter`), keyed by the
    /// bucket and the slot's number; no data. Kept until the slot is past.
    RateLimit,
    /// An approval of one call (`mcp_oauth::policy::Approvals`), keyed by the SHA-256 of
    /// the call's binding, or a marker that an approval ticket was answered. Kept until the
    /// ticket expires.
    Approval,
    /// A key a gateway shares with the other instances on the store (`mcp-oauth gateway
    /// --identity-key store`: the key that signs identity tokens), keyed by its use; kept
    /// until replaced.
    GatewayKey,
    /// An entry of a gateway's per-user credential vault (`mcp_oauth_gateway::vault`): a
    /// user's sealed credential for one upstream, its index of a user's entries, or the
    /// short lock that serialises changes to that index. Keyed by hashes, never by the user.
    Vault,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Self; 13] = [
        Self::Client,
        Self::Request,
        Self::Code,
        Self::Refresh,
        Self::Transaction,
        Self::UpstreamTokens,
        Self::Consent,
        Self::DpopProof,
        Self::ClientAssertion,
        Self::RateLimit,
        Self::Approval,
        Self::GatewayKey,
        Self::Vault,
    ];

    /// A stable name, for keys and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Request => "request",
            Self::Code => "code",
            Self::Refresh => "refresh",
            Self::Transaction => "transaction",
            Self::UpstreamTokens => "upstream_tokens",
            Self::Consent => "consent",
            Self::DpopProof => "dpop_proof",
            Self::ClientAssertion => "client_assertion",
            Self::RateLimit => "rate_limit",
            Self::Approval => "approval",
            Self::GatewayKey => "gateway_key",
            Self::Vault => "vault",
        }
    }

    /// A record of this kind, named for messages ("a client").
    fn noun(self) -> &'static str {
        match self {
            Self::Client => "a client",
            Self::Request => "an authorization request",
            Self::Code => "a code",
            Self::Refresh => "a refresh token",
            Self::Transaction => "a transaction",
            Self::UpstreamTokens => "upstream tokens",
            Self::Consent => "a consent",
            Self::DpopProof => "a DPoP proof",
            Self::ClientAssertion => "a client assertion",
            Self::RateLimit => "a rate-limit slot",
            Self::Approval => "an approval",
            Self::GatewayKey => "a gateway key",
            Self::Vault => "a vault entry",
        }
    }
}

/// What [`Store::get`] finds: a live record and whether it was redeemed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The record, as it was put.
    pub data: Vec<u8>,
    /// Whether [`Store::redeem`] marked it used.
    pub used: bool,
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

impl<T> Redeemed<T> {
    fn try_map<U>(self, f: impl FnOnce(T) -> StoreResult<U>) -> StoreResult<Redeemed<U>> {
        Ok(match self {
            Self::Fresh(t) => Redeemed::Fresh(f(t)?),
            Self::Replayed(t) => Redeemed::Replayed(f(t)?),
            Self::Missing => Redeemed::Missing,
        })
    }
}

/// The authorization server's storage: seven primitives over bytes (see the [module](self)
/// docs). The typed records are read and written through the methods on `dyn Store`.
///
/// Every primitive treats a record whose `expires_at` is not after now
/// (Unix seconds, this machine's clock) as absent; a backend may delete it any time after.
/// `put_if_absent`, `take`, `redeem` and `revoke_family` must be atomic across every instance
/// that shares the backend.
pub trait Store: Send + Sync + 'static {
    /// Saves (or replaces) a record, unused, until `expires_at` (Unix seconds; `None`: kept
    /// until replaced).
    fn put<'a>(
        &'a self,
        kind: Kind,
        key: &'a str,
        data: Vec<u8>,
        expires_at: Option<i64>,
    ) -> BoxFuture<'a, StoreResult<()>>;
    /// Saves a record, unused, until `expires_at` (Unix seconds; `None`: kept until replaced)
    /// and returns `true`, unless a live record is filed under `kind` and `key` (then
    /// `false`, and nothing changes). A record past its expiry counts as absent and is
    /// replaced.
    ///
    /// Of any number of concurrent calls with one kind and key, across every instance that
    /// shares the backend, exactly one returns `true` (while the record it saves is live).
    fn put_if_absent<'a>(
        &'a self,
        kind: Kind,
        key: &'a str,
        data: Vec<u8>,
        expires_at: Option<i64>,
    ) -> BoxFuture<'a, StoreResult<bool>>;
    /// A live record and whether it was redeemed; changes nothing.
    fn get<'a>(&'a self, kind: Kind, key: &'a str) -> BoxFuture<'a, StoreResult<Option<Stored>>>;
    /// Removes a record and returns it if it was live (single use: of two concurrent takes,
    /// one gets it).
    fn take<'a>(&'a self, kind: Kind, key: &'a str) -> BoxFuture<'a, StoreResult<Option<Vec<u8>>>>;
    /// Marks a live record used: [`Redeemed::Fresh`] if it was not (of any number of
    /// concurrent redemptions, exactly one), [`Redeemed::Replayed`] if it was,
    /// [`Redeemed::Missing`] if there is no live record. A used record stays until it lapses.
    fn redeem<'a>(
        &'a self,
        kind: Kind,
        key: &'a str,
    ) -> BoxFuture<'a, StoreResult<Redeemed<Vec<u8>>>>;
    /// Revokes a grant family until `until` (Unix seconds; the longest life of its tokens). A
    /// later call never shortens an existing revocation.
    fn revoke_family<'a>(&'a self, family: &'a str, until: i64) -> BoxFuture<'a, StoreResult<()>>;
    /// Whether a grant family is revoked (until a time after now).
    fn is_family_revoked<'a>(&'a self, family: &'a str) -> BoxFuture<'a, StoreResult<bool>>;
}

impl fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Store")
    }
}

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
    /// How the client authenticates at the token and revocation endpoints.
    pub token_endpoint_auth_method: ClientAuthMethod,
    /// The client's public keys (a JWK Set), for `private_key_jwt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Value>,
    /// Allowed grant types.
    pub grant_types: Vec<GrantType>,
    /// `web` or `native`.
    pub application_type: ApplicationType,
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
        self.token_endpoint_auth_method.is_confidential()
    }

    /// Whether a grant type is allowed.
    pub fn allows_grant(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// Whether the client is established: configured by the operator, or registered here and
    /// has redeemed an authorization code. `/authorize` errors are redirected only to
    /// established clients (RFC 9700 §4.11.2), and a registration lapses until it is one. A
    /// Client ID Metadata Document client never is.
    pub fn is_established(&self) -> bool {
        self.expires_at.is_none() && !self.from_metadata_document
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
    /// The `dpop_jkt` of the request (RFC 9449 §10): the key the code is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
    /// The CSRF token the page's form must return (with the matching cookie).
    pub csrf: String,
    /// When the request lapses (Unix seconds).
    pub expires_at: i64,
}

/// What a code or a refresh token grants: a user's authorization of a client, in a grant
/// family (every token issued from one authorization). A refresh token is its grant
/// ([`RefreshRecord`]); a code adds what the token request must match ([`CodeRecord`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GrantRecord {
    /// The client it was issued to.
    pub client_id: String,
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
    /// The grant family tokens issued from it belong to.
    pub family: String,
    /// When it lapses (Unix seconds).
    pub expires_at: i64,
    /// The RFC 7638 thumbprint of the key it is bound to (RFC 9449): for a code, the
    /// `dpop_jkt` of its authorization request; for a refresh token, the key of the DPoP
    /// proof it was issued with. Its use then needs a proof by that key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
}

/// A refresh token, stored under the hash of its value: the grant it carries on.
pub type RefreshRecord = GrantRecord;

/// An authorization code, stored under the hash of its value: its grant (read through
/// `Deref`: `code.client_id`) and what the token request must match. Stored as one JSON
/// object (the grant's members beside `redirect_uri` and `code_challenge`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CodeRecord {
    /// What the code grants.
    #[serde(flatten)]
    pub grant: GrantRecord,
    /// The redirect URI of the request.
    pub redirect_uri: String,
    /// The PKCE S256 challenge.
    pub code_challenge: String,
}

impl std::ops::Deref for CodeRecord {
    type Target = GrantRecord;

    fn deref(&self) -> &GrantRecord {
        &self.grant
    }
}

/// What a `put_entry` record of the OAuth proxy is (a [`Kind`] of its own).
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
    /// A stable name, for keys and tables (the [`Kind`]'s).
    pub fn as_str(self) -> &'static str {
        Kind::from(self).as_str()
    }
}

impl From<EntryKind> for Kind {
    fn from(kind: EntryKind) -> Self {
        match kind {
            EntryKind::Transaction => Self::Transaction,
            EntryKind::UpstreamTokens => Self::UpstreamTokens,
            EntryKind::Consent => Self::Consent,
        }
    }
}

/// The typed records over the primitives: each is encoded and decoded here, once. Every read
/// also checks the record's own expiry, so a record is never used past its time.
impl dyn Store {
    /// Saves (or replaces) a client; an unused registration lapses at its `expires_at`.
    pub async fn put_client(&self, client: ClientRecord) -> StoreResult<()> {
        let data = encode(&client)?;
        self.put(Kind::Client, &client.client_id, data, client.expires_at)
            .await
    }

    /// A client by id (`None` when unknown, or an unused registration that lapsed).
    pub async fn client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>> {
        let now = now_unix();
        let found = self.get(Kind::Client, client_id).await?;
        Ok(found
            .map(|s| decode::<ClientRecord>(Kind::Client, &s.data))
            .transpose()?
            .filter(|c| c.is_live(now)))
    }

    /// Saves a pending authorization request under `id`.
    pub async fn put_request(&self, id: &str, request: AuthRequestRecord) -> StoreResult<()> {
        let data = encode(&request)?;
        self.put(Kind::Request, id, data, Some(request.expires_at))
            .await
    }

    /// A pending authorization request (`None` when unknown or expired).
    pub async fn request(&self, id: &str) -> StoreResult<Option<AuthRequestRecord>> {
        let found = self.get(Kind::Request, id).await?;
        live(
            found.map(|s| s.data),
            Kind::Request,
            |r: &AuthRequestRecord| r.expires_at,
        )
    }

    /// Removes a pending authorization request and returns it; `None` if another caller
    /// already did.
    pub async fn take_request(&self, id: &str) -> StoreResult<Option<AuthRequestRecord>> {
        let taken = self.take(Kind::Request, id).await?;
        live(taken, Kind::Request, |r: &AuthRequestRecord| r.expires_at)
    }

    /// Saves an authorization code under the hash of its value.
    pub async fn put_code(&self, hash: &str, code: CodeRecord) -> StoreResult<()> {
        let data = encode(&code)?;
        self.put(Kind::Code, hash, data, Some(code.expires_at))
            .await
    }

    /// An authorization code without using it: [`Redeemed::Fresh`] when unused,
    /// [`Redeemed::Replayed`] when used, [`Redeemed::Missing`] when unknown or expired.
    pub async fn peek_code(&self, hash: &str) -> StoreResult<Redeemed<CodeRecord>> {
        let found = self.get(Kind::Code, hash).await?;
        single_use(peeked(found), Kind::Code, |c: &CodeRecord| c.expires_at)
    }

    /// Redeems an authorization code (single use).
    pub async fn redeem_code(&self, hash: &str) -> StoreResult<Redeemed<CodeRecord>> {
        let redeemed = self.redeem(Kind::Code, hash).await?;
        single_use(redeemed, Kind::Code, |c: &CodeRecord| c.expires_at)
    }

    /// Saves a refresh token under the hash of its value.
    pub async fn put_refresh(&self, hash: &str, token: RefreshRecord) -> StoreResult<()> {
        let data = encode(&token)?;
        self.put(Kind::Refresh, hash, data, Some(token.expires_at))
            .await
    }

    /// A refresh token without using it, with whether it was used (as
    /// `peek_code`).
    pub async fn peek_refresh(&self, hash: &str) -> StoreResult<Redeemed<RefreshRecord>> {
        let found = self.get(Kind::Refresh, hash).await?;
        single_use(peeked(found), Kind::Refresh, |r: &RefreshRecord| {
            r.expires_at
        })
    }

    /// Redeems a refresh token (single use: rotation).
    pub async fn redeem_refresh(&self, hash: &str) -> StoreResult<Redeemed<RefreshRecord>> {
        let redeemed = self.redeem(Kind::Refresh, hash).await?;
        single_use(redeemed, Kind::Refresh, |r: &RefreshRecord| r.expires_at)
    }

    /// A refresh token, used or not, without using it (for revocation).
    pub async fn refresh(&self, hash: &str) -> StoreResult<Option<RefreshRecord>> {
        let found = self.get(Kind::Refresh, hash).await?;
        live(found.map(|s| s.data), Kind::Refresh, |r: &RefreshRecord| {
            r.expires_at
        })
    }

    /// Saves (or replaces) a record of the OAuth proxy until `expires_at` (Unix seconds),
    /// encoded as every record is.
    pub async fn put_entry<T: Serialize + ?Sized>(
        &self,
        kind: EntryKind,
        key: &str,
        value: &T,
        expires_at: i64,
    ) -> StoreResult<()> {
        let data = encode(value)?;
        self.put(kind.into(), key, data, Some(expires_at)).await
    }

    /// A record of the OAuth proxy, if present and not expired. A record that does not
    /// decode as `T` is [`StoreErrorKind::Damaged`].
    pub async fn entry<T: DeserializeOwned>(
        &self,
        kind: EntryKind,
        key: &str,
    ) -> StoreResult<Option<T>> {
        let found = self.get(kind.into(), key).await?;
        found.map(|s| decode(kind.into(), &s.data)).transpose()
    }

    /// Removes a record of the OAuth proxy and returns it (single use: of two concurrent
    /// takes, one gets it).
    pub async fn take_entry<T: DeserializeOwned>(
        &self,
        kind: EntryKind,
        key: &str,
    ) -> StoreResult<Option<T>> {
        let taken = self.take(kind.into(), key).await?;
        taken.map(|data| decode(kind.into(), &data)).transpose()
    }
}

fn encode<T: Serialize + ?Sized>(record: &T) -> StoreResult<Vec<u8>> {
    // Records are plain data (strings, numbers, maps with string keys): this cannot fail.
    serde_json::to_vec(record)
        .map_err(|e| StoreError::damaged(format!("cannot encode a record: {}", Damage(&e))))
}

fn decode<T: DeserializeOwned>(kind: Kind, data: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(data)
        .map_err(|e| StoreError::damaged(format!("cannot read {}: {}", kind.noun(), Damage(&e))))
}

/// A record decoded, if present and live by its own `expires_at`.
fn live<T: DeserializeOwned>(
    data: Option<Vec<u8>>,
    kind: Kind,
    expires_at: fn(&T) -> i64,
) -> StoreResult<Option<T>> {
    let now = now_unix();
    Ok(data
        .map(|data| decode::<T>(kind, &data))
        .transpose()?
        .filter(|record| expires_at(record) > now))
}

/// What [`Store::get`] found, as a peek: fresh when unused, replayed when used.
fn peeked(found: Option<Stored>) -> Redeemed<Vec<u8>> {
    match found {
        Some(Stored { data, used: false }) => Redeemed::Fresh(data),
        Some(Stored { data, used: true }) => Redeemed::Replayed(data),
        None => Redeemed::Missing,
    }
}

/// A single-use record decoded, [`Redeemed::Missing`] when past its own `expires_at`.
fn single_use<T: DeserializeOwned>(
    redeemed: Redeemed<Vec<u8>>,
    kind: Kind,
    expires_at: fn(&T) -> i64,
) -> StoreResult<Redeemed<T>> {
    let now = now_unix();
    let redeemed = redeemed.try_map(|data| decode::<T>(kind, &data))?;
    Ok(match redeemed {
        Redeemed::Fresh(r) | Redeemed::Replayed(r) if expires_at(&r) <= now => Redeemed::Missing,
        other => other,
    })
}

/// A JSON error described without serde_json's own message, which may quote the record
/// (user claims, a CSRF token, a sealed token): only where it broke.
struct Damage<'a>(&'a serde_json::Error);

impl fmt::Display for Damage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.0.classify() {
            serde_json::error::Category::Io => "i/o",
            serde_json::error::Category::Syntax => "syntax",
            serde_json::error::Category::Data => "data",
            serde_json::error::Category::Eof => "truncated",
        };
        write!(
            f,
            "damaged record ({kind} error at line {} column {})",
            self.0.line(),
            self.0.column()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn damaged_records_are_errors_that_do_not_quote_them() {
        let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(MemoryStore::new());
        store
            .put(
                Kind::Client,
                "c",
                br#"{"client_id": "secret-looking-value"}"#.to_vec(),
                None,
            )
            .await
            .expect("put");
        let err = store.client("c").await.expect_err("damaged");
        assert_eq!(err.kind(), StoreErrorKind::Damaged);
        let message = err.to_string();
        assert!(
            message.starts_with("store: cannot read a client: damaged record (data error"),
            "{message}"
        );
        assert!(!message.contains("secret-looking-value"), "{message}");
    }

    #[test]
    fn failures_map_one_way_to_http() {
        let (status, code) = StoreError::unavailable("x").http();
        assert_eq!((status.as_u16(), code), (503, "temporarily_unavailable"));
        let (status, code) = StoreError::damaged("x").http();
        assert_eq!((status.as_u16(), code), (500, "server_error"));
    }

    #[test]
    fn kinds_have_distinct_stable_names() {
        let mut names: Vec<_> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Kind::ALL.len());
        assert_eq!(EntryKind::Consent.as_str(), "consent");
    }
}
