//! `per-user` isolation for stdio upstreams: each user (issuer and subject) gets a child
//! process of their own, started at their first request, stopped after a while without
//! requests (or when the most users are reached, the least recently active first). A user's
//! sessions live in their child's gateway, so another user's session id is unknown there.
//!
//! With a [`UserSecret`] in the environment (`credentials = { kind = "user-secret", env = … }`)
//! each child gets its user's own token: the vault is read at each request, a user without a
//! token gets the link to the page (and no child), and a child whose user's token changed or
//! was revoked is stopped (and, for a changed one, started again with the new token at the
//! user's next request). A change made through this instance's vault (the token page, the
//! connections page) stops the child at once; one made on another instance sharing the store
//! is noticed there at the user's next request.

use std::collections::HashMap;
use std::ffi::OsString;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::digest::{SHA256, digest};
use axum::extract::{Request, State};
use axum::response::{IntoResponse as _, Response};
use mcp_oauth::Auth;

use crate::children::Children;
use crate::front::{self, Inner};
use crate::sessions::principal;
use crate::upstream::UserSecret;
use crate::vault::{ChangeHook, EntryKind};

/// Variables set in a child's environment for its user.
pub(crate) type UserEnv = Vec<(OsString, OsString)>;

/// The children of a per-user upstream.
pub(crate) struct PerUser {
    pub(crate) name: Option<Arc<str>>,
    make: Box<dyn Fn(UserEnv) -> Arc<Inner> + Send + Sync>,
    children: Children,
    /// Each user's token for the child's environment, when configured.
    secret: Option<UserSecret>,
    /// The SHA-256 of the token each user's running child was started with.
    started_with: Arc<Mutex<HashMap<Arc<str>, Vec<u8>>>>,
    /// Stops a user's child when their token is replaced or deleted through the vault (held
    /// here: the vault keeps only a weak reference).
    _on_change: Option<Arc<ChangeHook>>,
    /// How many tokens have changed through the vault.
    changes: Arc<AtomicU64>,
}

impl PerUser {
    pub(crate) fn new(
        name: Option<Arc<str>>,
        make: impl Fn(UserEnv) -> Arc<Inner> + Send + Sync + 'static,
        idle: Duration,
        max: u64,
        secret: Option<UserSecret>,
    ) -> Self {
        let children = Children::new(idle, Some(max));
        let started_with = Arc::new(Mutex::new(HashMap::new()));
        let changes = Arc::new(AtomicU64::new(0));
        let on_change = secret
            .as_ref()
            .map(|secret| stop_on_change(secret, &children, &started_with, &changes));
        Self {
            name,
            make: Box::new(make),
            children,
            secret,
            started_with,
            _on_change: on_change,
            changes,
        }
    }

    fn inner_for(&self, auth: Option<&Auth>) -> Arc<Inner> {
        self.children
            .get_with(principal(auth), || (self.make)(Vec::new()))
    }

    /// The caller's child, started with their token in its environment; a child started
    /// with another token is replaced. No token: the caller's child (if any) is stopped.
    async fn inner_with_secret(
        &self,
        auth: Option<&Auth>,
        secret: &UserSecret,
    ) -> Result<Arc<Inner>, crate::GatewayError> {
        let key = principal(auth);
        let mut reads = 0;
        let (value, mut started) = loop {
            reads += 1;
            let changes = self.changes.load(Ordering::SeqCst);
            let value = match secret.secret_of(auth).await {
                Ok(value) => value,
                Err(err) => {
                    if matches!(err, crate::GatewayError::ActionRequired { .. }) {
                        self.stop(&key);
                    }
                    return Err(err);
                }
            };
            let started = self.started_with.lock().unwrap_or_else(|p| p.into_inner());
            // A token changed while this one was read: read it again (a few times at most),
            // so that no child starts with a token just deleted.
            if self.changes.load(Ordering::SeqCst) == changes || reads >= 3 {
                break (value, started);
            }
        };
        let text = std::str::from_utf8(value.expose()).map_err(|_| {
            crate::GatewayError::Protocol("the user's token is not text".to_owned())
        })?;
        let print = digest(&SHA256, value.expose()).as_ref().to_vec();
        if started.get(&key) == Some(&print)
            && let Some(inner) = self.children.get(&key)
        {
            return Ok(inner);
        }
        // A child started with another token (or none yet): start one with this token.
        self.children.invalidate(&key);
        let name = secret.env_name().unwrap_or_default();
        let inner = (self.make)(vec![(OsString::from(name), OsString::from(text))]);
        self.children.insert(key.clone(), inner.clone());
        started.insert(key, print);
        Ok(inner)
    }

    /// Stops the child of `key` (its user has no token any more).
    fn stop(&self, key: &Arc<str>) {
        self.children.invalidate(key);
        self.started_with
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Children running now (after dropping the idle ones).
    pub(crate) fn count(&self) -> u64 {
        self.children.run_pending_tasks();
        self.children.entry_count()
    }
}

/// The hook that stops a user's child as soon as their token for `secret`'s upstream is
/// replaced or deleted through the vault, registered with it.
fn stop_on_change(
    secret: &UserSecret,
    children: &Children,
    started_with: &Arc<Mutex<HashMap<Arc<str>, Vec<u8>>>>,
    changes: &Arc<AtomicU64>,
) -> Arc<ChangeHook> {
    let upstream = secret.upstream().to_owned();
    let children = (**children).clone();
    let started_with = started_with.clone();
    let changes = changes.clone();
    let hook: Arc<ChangeHook> = Arc::new(move |user: &str, name: &str, kind: EntryKind| {
        if kind != EntryKind::UserSecret || name != upstream {
            return;
        }
        changes.fetch_add(1, Ordering::SeqCst);
        {
            // Under the lock a request starting a child holds: it starts none in between.
            let mut started = started_with.lock().unwrap_or_else(|p| p.into_inner());
            started.remove(user);
            children.invalidate(user);
        }
        // Drops the child's gateway now (its process ends with it), not at the next sweep.
        children.run_pending_tasks();
        tracing::debug!(target: "mcp_oauth_gateway::vault", upstream = %upstream, "a user's token changed: their child is stopped");
    });
    secret.vault().on_change(&hook);
    hook
}

/// Where requests for one upstream go: its one gateway, or the caller's own.
#[derive(Clone)]
pub(crate) enum Route {
    Shared(Arc<Inner>),
    PerUser(Arc<PerUser>),
    PerSession(Arc<crate::per_session::PerSession>),
}

impl Route {
    pub(crate) async fn handle(&self, request: Request) -> Response {
        let inner = match self {
            Self::Shared(inner) => inner.clone(),
            Self::PerUser(per_user) => match &per_user.secret {
                Some(secret) => {
                    let auth = request.extensions().get::<Auth>().cloned();
                    match per_user.inner_with_secret(auth.as_ref(), secret).await {
                        Ok(inner) => inner,
                        Err(err) => return refused(request, err).await,
                    }
                }
                None => per_user.inner_for(request.extensions().get::<Auth>()),
            },
            Self::PerSession(per_session) => return per_session.handle(request).await,
        };
        front::handle(State(inner), request).await
    }

    /// The shared gateway, if this is one.
    pub(crate) fn shared(&self) -> Option<&Arc<Inner>> {
        match self {
            Self::Shared(inner) => Some(inner),
            Self::PerUser(_) | Self::PerSession(_) => None,
        }
    }

    /// Ready: a shared upstream as [`front::upstream_ready`] says; a per-user or per-session
    /// one always (its children start on demand).
    pub(crate) async fn ready(&self, timeout: Duration) -> bool {
        match self {
            Self::Shared(inner) => front::upstream_ready(inner, timeout).await,
            Self::PerUser(_) | Self::PerSession(_) => true,
        }
    }

    pub(crate) fn name(&self) -> Option<Arc<str>> {
        match self {
            Self::Shared(inner) => inner.name.clone(),
            Self::PerUser(per_user) => per_user.name.clone(),
            Self::PerSession(per_session) => per_session.name.clone(),
        }
    }
}

/// The answer to a request whose user cannot have a child (no token): the JSON-RPC error
/// with the link, to the request's id (a `POST`); other methods get it with a 403.
async fn refused(request: Request, err: crate::GatewayError) -> Response {
    if request.method() != http::Method::POST {
        let mut response = front::failed(None, err);
        *response.status_mut() = http::StatusCode::FORBIDDEN;
        return response;
    }
    let Ok(bytes) = axum::body::to_bytes(request.into_body(), 4 << 20).await else {
        return http::StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let id = crate::jsonrpc::parse(&bytes)
        .ok()
        .and_then(|m| m.id.map(|id| id.get().to_owned()));
    front::failed(id.as_deref(), err)
}
