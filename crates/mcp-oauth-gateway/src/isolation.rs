//! `per-user` isolation for stdio upstreams: each user (issuer and subject) gets a child
//! process of their own, started at their first request, stopped after a while without
//! requests (or when the most users are reached, the least recently active first). A user's
//! sessions live in their child's gateway, so another user's session id is unknown there.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::Response;
use mcp_oauth::Auth;

use crate::front::{self, Inner};
use crate::sessions::principal;

/// How a stdio upstream's child processes are shared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Isolation {
    /// One child for every user (the default): `initialize` done once, state shared.
    #[default]
    Shared,
    /// One child per user (issuer and subject), started at the user's first request.
    PerUser,
    /// One child per MCP session, started by the session's `initialize` and stopped when it
    /// ends (`DELETE`), expires or the gateway stops.
    PerSession,
}

/// The children of a per-user upstream.
pub(crate) struct PerUser {
    pub(crate) name: Option<Arc<str>>,
    make: Box<dyn Fn() -> Arc<Inner> + Send + Sync>,
    children: moka::sync::Cache<Arc<str>, Arc<Inner>>,
    /// Stops idle children even when no request comes (the cache only expires entries when
    /// it is used).
    sweeper: tokio::task::JoinHandle<()>,
}

impl Drop for PerUser {
    fn drop(&mut self) {
        self.sweeper.abort();
    }
}

impl PerUser {
    pub(crate) fn new(
        name: Option<Arc<str>>,
        make: impl Fn() -> Arc<Inner> + Send + Sync + 'static,
        idle: Duration,
        max: u64,
    ) -> Self {
        let children: moka::sync::Cache<Arc<str>, Arc<Inner>> = moka::sync::Cache::builder()
            .max_capacity(max)
            .time_to_idle(idle)
            .build();
        let sweeper = sweeper(children.clone(), idle);
        Self {
            name,
            make: Box::new(make),
            children,
            sweeper,
        }
    }

    fn inner_for(&self, auth: Option<&Auth>) -> Arc<Inner> {
        self.children.get_with(principal(auth), || (self.make)())
    }

    /// Children running now (after dropping the idle ones).
    pub(crate) fn count(&self) -> u64 {
        self.children.run_pending_tasks();
        self.children.entry_count()
    }
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
            Self::PerUser(per_user) => per_user.inner_for(request.extensions().get::<Auth>()),
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

/// A task that stops idle children on time (the cache otherwise evicts only when touched):
/// every quarter of the idle time, between 50 ms and 30 s.
pub(crate) fn sweeper(
    children: moka::sync::Cache<Arc<str>, Arc<Inner>>,
    idle: Duration,
) -> tokio::task::JoinHandle<()> {
    let every = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(30));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            children.run_pending_tasks();
        }
    })
}
