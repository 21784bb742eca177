//! `user-oauth`: the upstream is reached with *each user's own* token at the upstream's
//! authorization server, which the user granted once (the consent chained through the
//! gateway's pages) and which the gateway keeps sealed per (user, upstream) and renews.
//!
//! # The upstream's 401 and 403
//!
//! A request the upstream refuses with a 401 (the token itself: no error named, or
//! `invalid_token`) is sent once more, once only, with the renewed token. A 403
//! `insufficient_scope` naming scopes sends the user to connect again; the next connection
//! asks for the scopes asked for before, those granted and those named (MCP's step-up).
//!
//! # Refresh, across instances
//!
//! The grant lives in the vault only (never cached in memory between requests), so every
//! gateway instance reads the same, latest refresh token. A grant within the margin of its
//! expiry, or whose access token the upstream just refused (401), is refreshed by one
//! request at a time per (user, upstream) across every instance sharing the store:
//!
//! 1. in this process, one task at a time per (user, upstream);
//! 2. across processes, a lock record put with [`Store::put_if_absent`] and a TTL (so a
//!    holder that dies frees it); the winner reads the grant again (someone may have just
//!    renewed it), refreshes, writes the new grant and removes the lock; the losers poll the
//!    vault until the grant changes or the lock is gone, up to a deadline.
//!
//! A refresh answer without a refresh token keeps the old one (never an empty one over a
//! good one); a rotated one replaces it in the vault before the lock is released, so no
//! instance ever presents a refresh token the server has retired. A 4xx from the token
//! endpoint (`invalid_grant`: revoked, expired, replayed) drops the grant, and the user must
//! connect again; a 5xx or a network failure keeps it (the access token is still used while
//! it has not expired).

mod connect;
mod discover;
mod grant;
mod pages;
mod token;

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use mcp_oauth::Auth;
use mcp_oauth::auth_server::store::{Kind, Store};

pub use connect::{ConnectError, ConnectStart};
use discover::{Discovery, Resolved};
pub use grant::UpstreamGrant;
pub use pages::{PageSession, connect_router, web_session};
pub use token::ClientAuth;
use token::{TokenEndpoint, TokenError, mcp_oauth_now as now};

use crate::GatewayError;
use crate::vault::{EntryKind, Vault, VaultError};

/// Default: refresh when the access token has less than this left.
const DEFAULT_MARGIN: Duration = Duration::from_secs(60);
/// Default: how long a refresh lock holds (longer than the token endpoint's timeout).
const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(20);
/// Default: the token endpoint's timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Each user's own token at the upstream, kept in the [`Vault`] and renewed single-flight
/// across instances. Cheap to clone.
#[derive(Clone)]
pub struct UserOAuth {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for UserOAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserOAuth")
            .field("upstream", &self.inner.upstream)
            .field("resource", &self.inner.resource.as_str())
            .field("discovery", &self.inner.discovery)
            .finish_non_exhaustive()
    }
}

struct Inner {
    upstream: String,
    resource: url::Url,
    /// The connect link, when configured; else the public URL's.
    connect_url: Option<String>,
    discovery: Discovery,
    /// The endpoints and the client, found at the first use (the upstream need not be up
    /// when the gateway starts); a failed discovery is tried again at the next use.
    resolved: tokio::sync::OnceCell<(Resolved, TokenEndpoint)>,
    scopes: Vec<String>,
    timeout: Duration,
    /// The store of the locks and states; `None`: the vault's.
    store: Option<Arc<dyn Store>>,
    vault: Vault,
    margin: i64,
    lock_ttl: Duration,
    /// One refresh at a time per user in this process.
    flights: moka::sync::Cache<Arc<str>, Arc<tokio::sync::Mutex<()>>>,
    /// Per user, the SHA-256 of the access token last sent, and whether the upstream refused
    /// it (then the grant is refreshed before it is used again, unless another instance
    /// already did).
    sent: moka::sync::Cache<Arc<str>, (Arc<[u8]>, bool)>,
}

/// Builds a [`UserOAuth`]; see [`UserOAuth::builder`].
#[must_use]
pub struct UserOAuthBuilder {
    upstream: String,
    resource: String,
    authorization_server: Option<String>,
    endpoints: Option<(String, String)>,
    client: Option<ClientAuth>,
    public_url: PublicUrl,
    connect_url: Option<String>,
    scopes: Vec<String>,
    store: Option<Arc<dyn Store>>,
    vault: Option<Vault>,
    margin: Duration,
    lock_ttl: Duration,
    timeout: Duration,
}

impl UserOAuth {
    /// The upstream named `upstream` (the name in the gateway's configuration and in the
    /// vault's keys), whose resource is `resource` (its MCP URL: where its metadata is
    /// discovered, and the `resource` asked for at its authorization server).
    pub fn builder(upstream: impl Into<String>, resource: impl Into<String>) -> UserOAuthBuilder {
        UserOAuthBuilder {
            upstream: upstream.into(),
            resource: resource.into(),
            authorization_server: None,
            endpoints: None,
            client: None,
            public_url: PublicUrl::default(),
            connect_url: None,
            scopes: Vec::new(),
            store: None,
            vault: None,
            margin: DEFAULT_MARGIN,
            lock_ttl: DEFAULT_LOCK_TTL,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The grant of `caller` at this upstream, renewed first when it is near its expiry or
    /// the upstream refused its access token.
    ///
    /// # Errors
    ///
    /// [`GatewayError::ActionRequired`] with the connect link when the user has no usable
    /// grant (never connected, or the server refused the refresh);
    /// [`GatewayError::Unavailable`] when the store or the token endpoint is unavailable and
    /// the access token has expired.
    pub async fn grant(&self, caller: &Auth) -> Result<UpstreamGrant, GatewayError> {
        let user = user_key(caller);
        let grant = self.current(&user).await?;
        self.inner
            .sent
            .insert(Arc::from(user), (digest(grant.access_token()), false));
        Ok(grant)
    }

    async fn current(&self, user: &str) -> Result<UpstreamGrant, GatewayError> {
        let grant = self.load(user).await?.ok_or_else(|| self.connect())?;
        if !self.needs_refresh(user, &grant) {
            return Ok(grant);
        }
        let flight = self
            .inner
            .flights
            .get_with(Arc::from(user), Default::default);
        let _one_here = flight.lock().await;
        self.refresh(user).await
    }

    /// The `Authorization` value for a request made for `caller`.
    pub(crate) async fn authorization(
        &self,
        caller: Option<&Auth>,
    ) -> Result<HeaderValue, GatewayError> {
        let Some(caller) = caller else {
            return Err(GatewayError::CredentialsRefused(
                "this upstream is reached with each user's own token, and the request has no verified caller".into(),
            ));
        };
        let grant = self.grant(caller).await?;
        let mut value =
            HeaderValue::try_from(format!("Bearer {}", grant.access_token())).map_err(|_| {
                GatewayError::Protocol(
                    "the upstream's access token cannot be sent in a header".into(),
                )
            })?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// The upstream refused (401) the access token last handed out for `caller`: the grant
    /// is refreshed before it is used again, unless another instance renewed it meanwhile.
    pub fn refused(&self, caller: &Auth) {
        let user: Arc<str> = Arc::from(user_key(caller));
        if let Some((sent, _)) = self.inner.sent.get(&user) {
            self.inner.sent.insert(user, (sent, true));
        }
    }

    pub(crate) fn forget(&self, caller: Option<&Auth>) {
        if let Some(caller) = caller {
            self.refused(caller);
        }
    }

    /// Removes `caller`'s grant (the user disconnects): the next call asks to connect again.
    ///
    /// # Errors
    ///
    /// The vault is unavailable.
    pub async fn disconnect(&self, caller: &Auth) -> Result<(), GatewayError> {
        let user = user_key(caller);
        self.inner
            .vault
            .revoke(&user, &self.inner.upstream, EntryKind::UserOauth)
            .await
            .map(|_| ())
            .map_err(vault_failed)
    }

    /// Keeps `grant` as `caller`'s grant at this upstream (after the consent).
    ///
    /// # Errors
    ///
    /// The vault is unavailable.
    pub async fn keep(&self, caller: &Auth, grant: &UpstreamGrant) -> Result<(), GatewayError> {
        let user = user_key(caller);
        self.inner
            .vault
            .put(
                &user,
                &self.inner.upstream,
                EntryKind::UserOauth,
                &grant.encode(),
                None,
            )
            .await
            .map(|_| ())
            .map_err(vault_failed)
    }

    /// The store of the locks, states and registrations.
    pub(crate) fn store(&self) -> Result<&Arc<dyn Store>, GatewayError> {
        self.inner
            .store
            .as_ref()
            .or_else(|| self.inner.vault.store())
            .ok_or_else(|| {
                GatewayError::Unavailable(
                    "the credential vault is not open yet (the gateway is starting)".into(),
                )
            })
    }

    /// The upstream's authorization server, discovered at the first use.
    async fn resolved(&self) -> Result<&(Resolved, TokenEndpoint), GatewayError> {
        let inner = &*self.inner;
        inner
            .resolved
            .get_or_try_init(|| async {
                let resolved = inner
                    .discovery
                    .resolve(&inner.upstream, &inner.resource, self.store()?)
                    .await?;
                let token = TokenEndpoint::new(
                    resolved.token_endpoint.clone(),
                    resolved.client.clone(),
                    inner.timeout,
                )?;
                Ok((resolved, token))
            })
            .await
    }

    /// The connect link a user without a grant is sent to.
    pub fn connect_url(&self) -> String {
        self.inner.connect_url.clone().unwrap_or_else(|| {
            format!(
                "{}{}",
                self.inner.discovery.public.get(),
                connect_path(&self.inner.upstream)
            )
        })
    }

    fn connect(&self) -> GatewayError {
        GatewayError::ActionRequired {
            message: format!(
                "the upstream {} needs your own account there: connect it at {}, then try again",
                self.inner.upstream,
                self.connect_url()
            ),
            url: self.connect_url(),
        }
    }

    fn needs_refresh(&self, user: &str, grant: &UpstreamGrant) -> bool {
        !grant.fresh(now(), self.inner.margin) || self.was_refused(user, grant)
    }

    async fn load(&self, user: &str) -> Result<Option<UpstreamGrant>, GatewayError> {
        let inner = &*self.inner;
        let entry = match inner
            .vault
            .get(user, &inner.upstream, EntryKind::UserOauth)
            .await
        {
            Ok(Some(entry)) => entry,
            Ok(None) => return Ok(None),
            Err(VaultError::Unreadable) => {
                tracing::warn!(target: "mcp_oauth_gateway::upstream", upstream = %inner.upstream, "a user's grant in the vault does not open (another key?); the user must connect again");
                return Ok(None);
            }
            Err(err) => return Err(vault_failed(err)),
        };
        match UpstreamGrant::decode(entry.secret.expose()) {
            Some(grant) => Ok(Some(grant)),
            None => {
                tracing::warn!(target: "mcp_oauth_gateway::upstream", upstream = %inner.upstream, "a user's grant in the vault does not decode; it is treated as absent");
                Ok(None)
            }
        }
    }

    /// Renews the grant of `user` unless someone just did, one refresh across instances.
    async fn refresh(&self, user: &str) -> Result<UpstreamGrant, GatewayError> {
        let inner = &*self.inner;
        let lock_key = format!(
            "user-oauth-refresh:{}:{}",
            inner.upstream,
            hex(&digest(user))
        );
        // Discovery (several fetches on a first use) happens before the lock, so that the lock
        // covers the token call only and cannot lapse while its holder still works.
        self.resolved().await?;
        let deadline = tokio::time::Instant::now() + inner.lock_ttl + Duration::from_secs(5);
        let mut pause = Duration::from_millis(20);
        loop {
            // Renewed by someone else (another task, another instance) meanwhile?
            let grant = self.load(user).await?.ok_or_else(|| self.connect())?;
            if !self.needs_refresh(user, &grant) {
                return Ok(grant);
            }
            let mut nonce = [0u8; 16];
            aws_lc_rs::rand::fill(&mut nonce).map_err(|_| {
                GatewayError::Unavailable("no randomness for the refresh lock".into())
            })?;
            let until =
                now().saturating_add(i64::try_from(inner.lock_ttl.as_secs()).unwrap_or(i64::MAX));
            let won = self
                .store()?
                .put_if_absent(Kind::UpstreamTokens, &lock_key, nonce.to_vec(), Some(until))
                .await
                .map_err(store_failed)?;
            if won {
                let outcome = self.refresh_held(user).await;
                self.unlock(&lock_key, &nonce).await;
                return outcome;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(GatewayError::Unavailable(format!(
                    "the refresh of the user's token at the upstream {:?} by another instance did not finish in time",
                    inner.upstream
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// The refresh itself, with the lock held.
    async fn refresh_held(&self, user: &str) -> Result<UpstreamGrant, GatewayError> {
        let inner = &*self.inner;
        // The previous holder may have renewed it just before this one got the lock.
        let grant = self.load(user).await?.ok_or_else(|| self.connect())?;
        if !self.needs_refresh(user, &grant) {
            return Ok(grant);
        }
        let Some(refresh_token) = grant.refresh_token() else {
            if grant.fresh(now(), 0) && !self.was_refused(user, &grant) {
                return Ok(grant);
            }
            return Err(self.connect());
        };
        let (_, token) = self.resolved().await?;
        match token.refresh(refresh_token, inner.resource.as_str()).await {
            Ok(renewed) => {
                let renewed = grant.renewed(renewed);
                // The user connected again while the refresh was in flight (the connect flow
                // takes no lock): their new grant stays.
                if let Some(current) = self.replaced(user, &grant).await? {
                    return Ok(current);
                }
                inner
                    .vault
                    .put(
                        user,
                        &inner.upstream,
                        EntryKind::UserOauth,
                        &renewed.encode(),
                        None,
                    )
                    .await
                    .map_err(vault_failed)?;
                tracing::debug!(target: "mcp_oauth_gateway::upstream", upstream = %inner.upstream, "renewed a user's token at the upstream");
                Ok(renewed)
            }
            Err(TokenError::Refused { status, error }) => {
                if let Some(current) = self.replaced(user, &grant).await? {
                    return Ok(current);
                }
                tracing::info!(target: "mcp_oauth_gateway::upstream", upstream = %inner.upstream, status, error = %error, "the upstream's authorization server refused a refresh; the user's grant is dropped, the user must connect again");
                inner
                    .vault
                    .revoke(user, &inner.upstream, EntryKind::UserOauth)
                    .await
                    .map_err(vault_failed)?;
                Err(self.connect())
            }
            Err(err @ TokenError::Unavailable(_)) => {
                tracing::warn!(target: "mcp_oauth_gateway::upstream", upstream = %inner.upstream, error = %err, "a refresh failed; the grant is kept");
                if grant.fresh(now(), 0) && !self.was_refused(user, &grant) {
                    Ok(grant)
                } else {
                    Err(GatewayError::Unavailable(format!(
                        "the user's token at the upstream {:?} expired and cannot be renewed now: {err}",
                        inner.upstream
                    )))
                }
            }
        }
    }

    /// The user's grant now, if it is no longer `used` (replaced by a new connection).
    async fn replaced(
        &self,
        user: &str,
        used: &UpstreamGrant,
    ) -> Result<Option<UpstreamGrant>, GatewayError> {
        Ok(self.load(user).await?.filter(|current| {
            current.refresh_token() != used.refresh_token()
                || current.access_token() != used.access_token()
        }))
    }

    /// Whether the upstream refused this grant's access token when it was last sent.
    fn was_refused(&self, user: &str, grant: &UpstreamGrant) -> bool {
        self.inner
            .sent
            .get(user)
            .is_some_and(|(sent, refused)| refused && *sent == *digest(grant.access_token()))
    }

    /// Removes the lock if it is still this holder's.
    async fn unlock(&self, key: &str, nonce: &[u8]) {
        let Ok(store) = self.store() else {
            return;
        };
        if let Ok(Some(held)) = store.get(Kind::UpstreamTokens, key).await
            && held.data == nonce
        {
            let _ = store.take(Kind::UpstreamTokens, key).await;
        }
    }
}

impl UserOAuthBuilder {
    /// The upstream's authorization server (its issuer URL), instead of the one its
    /// protected-resource metadata names; its metadata is still discovered.
    pub fn authorization_server(mut self, issuer: impl Into<String>) -> Self {
        self.authorization_server = Some(issuer.into());
        self
    }

    /// The authorization and token endpoints, instead of discovering them (needs a
    /// [`client`](Self::client)).
    pub fn endpoints(
        mut self,
        authorization_endpoint: impl Into<String>,
        token_endpoint: impl Into<String>,
    ) -> Self {
        self.endpoints = Some((authorization_endpoint.into(), token_endpoint.into()));
        self
    }

    /// The gateway's client registration at the upstream's server. Without it, the
    /// gateway's Client ID Metadata Document is its client id where the server supports
    /// those (and a [`public_url`](Self::public_url) is set), else it registers dynamically.
    pub fn client(mut self, client: ClientAuth) -> Self {
        self.client = Some(client);
        self
    }

    /// The gateway's public URL (`https://gateway.example.com`): the connect page
    /// ([`connect_path`]), the redirect URI ([`callback_path`]) and the Client ID Metadata
    /// Document ([`CLIENT_METADATA_PATH`]) are under it.
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = PublicUrl::default();
        self.public_url.set(url);
        self
    }

    /// The gateway's public URL, set later (once its listener is bound), shared with
    /// whatever else needs it.
    pub fn public_url_late(mut self, url: PublicUrl) -> Self {
        self.public_url = url;
        self
    }

    /// The scopes asked for at the consent (default: the resource's `scopes_supported`).
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The page where a user connects this upstream (the gateway's `/gateway/connect/NAME`),
    /// named in the error a call gets when the user has no grant.
    pub fn connect_url(mut self, url: impl Into<String>) -> Self {
        self.connect_url = Some(url.into());
        self
    }

    /// The store that holds the refresh locks, the connect states and a dynamic
    /// registration (shared by every instance). Default: the vault's.
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Where the grants are kept (sealed, per user and upstream). Required.
    pub fn vault(mut self, vault: Vault) -> Self {
        self.vault = Some(vault);
        self
    }

    /// Refresh when the access token has less than this left. Default 60 s.
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// How long a refresh lock holds when its holder never removes it. Default 20 s.
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl.max(Duration::from_secs(1));
        self
    }

    /// The token endpoint's timeout. Default 10 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Builds it.
    ///
    /// # Errors
    ///
    /// No store or vault, a URL that is not `https` (plain `http` only to a loopback host),
    /// or static endpoints without a client.
    pub fn build(self) -> Result<UserOAuth, GatewayError> {
        let config = |reason: String| GatewayError::Config {
            what: "user-oauth credentials",
            reason,
        };
        let url = |what: &str, value: &str| {
            let url = url::Url::parse(value)
                .map_err(|e| config(format!("the {what} {value:?} is not a URL: {e}")))?;
            if is_https_or_loopback(&url) {
                Ok(url)
            } else {
                Err(config(format!(
                    "the {what} {url} must be https (plain http only to a loopback host)"
                )))
            }
        };
        let resource = url("upstream URL", &self.resource)?;
        let authorization_server = self
            .authorization_server
            .as_deref()
            .map(|u| url("authorization server", u))
            .transpose()?;
        let (authorization_endpoint, token_endpoint) = match &self.endpoints {
            Some((authorize, token)) => {
                if self.client.is_none() {
                    return Err(config(
                        "static endpoints need the gateway's client_id there".into(),
                    ));
                }
                (
                    Some(url("authorization endpoint", authorize)?),
                    Some(url("token endpoint", token)?),
                )
            }
            None => (None, None),
        };
        let store = self.store;
        let vault = self
            .vault
            .ok_or_else(|| config("no vault for the users' grants".into()))?;
        let discovery = Discovery {
            authorization_server,
            authorization_endpoint,
            token_endpoint,
            client: self.client,
            public: self.public_url,
            upstream: self.upstream.clone(),
            client_name: "MCP gateway".into(),
        };
        Ok(UserOAuth {
            inner: Arc::new(Inner {
                upstream: self.upstream,
                resource,
                connect_url: self.connect_url,
                discovery,
                resolved: tokio::sync::OnceCell::new(),
                scopes: self.scopes,
                timeout: self.timeout,
                store,
                vault,
                margin: i64::try_from(self.margin.as_secs()).unwrap_or(i64::MAX),
                // The lock must outlast one token call, or a second instance could send the
                // same (rotating) refresh token while the first one still waits for its answer.
                lock_ttl: self.lock_ttl.max(self.timeout + Duration::from_secs(5)),
                flights: moka::sync::Cache::builder()
                    .max_capacity(100_000)
                    .time_to_idle(Duration::from_secs(600))
                    .build(),
                sent: moka::sync::Cache::builder()
                    .max_capacity(100_000)
                    .time_to_idle(Duration::from_secs(3600))
                    .build(),
            }),
        })
    }
}

/// The gateway's public URL (`https://gateway.example.com`), given at build or set once
/// (when the listener is bound); cheap to clone, clones share it.
#[derive(Debug, Clone, Default)]
pub struct PublicUrl(Arc<std::sync::OnceLock<String>>);

impl PublicUrl {
    /// Sets it (once; a later call changes nothing).
    pub fn set(&self, url: impl Into<String>) {
        let _ = self.0.set(url.into().trim_end_matches('/').to_owned());
    }

    /// The URL, or `""` while it is not set.
    pub fn get(&self) -> &str {
        self.0.get().map_or("", String::as_str)
    }
}

/// Where the gateway publishes its Client ID Metadata Document, under its public URL.
pub const CLIENT_METADATA_PATH: &str = "/gateway/oauth-client.json";
/// The connect page of the upstream `name`, under the gateway's public URL.
pub fn connect_path(name: &str) -> String {
    format!("/gateway/connect/{name}")
}

/// The redirect URI of the connect flow of the upstream `name`, under the gateway's public
/// URL.
pub fn callback_path(name: &str) -> String {
    format!("/gateway/connect/{name}/callback")
}

pub(crate) fn is_https_or_loopback(url: &url::Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => match url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

/// Whose grant: the caller's issuer and subject (two issuers may reuse a subject).
fn user_key(caller: &Auth) -> String {
    Vault::user_of(caller)
}

pub(crate) fn digest(value: &str) -> Arc<[u8]> {
    Arc::from(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.as_bytes()).as_ref())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

pub(crate) fn store_failed(err: mcp_oauth::auth_server::store::StoreError) -> GatewayError {
    GatewayError::Unavailable(format!("the credential store: {err}"))
}

pub(crate) fn vault_failed(err: VaultError) -> GatewayError {
    GatewayError::Unavailable(err.to_string())
}
