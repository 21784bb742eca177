//! The upstreams of a gateway of several, swappable while it serves
//! ([`Gateway::reload`](crate::Gateway::reload)).
//!
//! A reload builds what changed and keeps what did not: an upstream whose configuration is the
//! same keeps its running side (its stdio child, its sessions); the client sessions of the
//! merged endpoint and of each upstream's own path stay (they are keyed by upstream name, so
//! a member opened in a changed upstream is opened again at the session's next request);
//! a removed upstream's child stops when the last request using it is done.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;

use crate::aggregate::{self, Aggregate, Member};
use crate::error::GatewayError;
use crate::front::{Inner, Upstream};
use crate::gate::{AllowAll, Gatekeeper};
use crate::isolation::{self, Route};
use crate::metrics::Metrics;
use crate::paths::Own;
use crate::per_session;
use crate::rename::{Renames, ToolNames};
use crate::sessions::Sessions;
use crate::upstream::Isolation;
use crate::upstream::{self, UpstreamConfig};
use crate::{SEPARATOR, identity, valid_upstream_name};

/// What building an upstream's running side needs, from the builder.
#[derive(Clone)]
pub(crate) struct Parts {
    pub(crate) oauth: Option<mcp_oauth::OAuth>,
    pub(crate) gatekeeper: Arc<dyn Gatekeeper>,
    pub(crate) audit: Option<mcp_oauth::AuditLog>,
    pub(crate) max_body: usize,
    pub(crate) ready_timeout: Duration,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) signer: Option<Arc<identity::Signer>>,
    pub(crate) identity_meta: bool,
    pub(crate) per_user_idle: Duration,
    pub(crate) per_user_max: u64,
    pub(crate) per_session_idle: Duration,
    pub(crate) per_session_max: u64,
    pub(crate) session_idle: Duration,
    pub(crate) max_sessions: u64,
    /// The merged endpoint's path.
    pub(crate) path: String,
}

impl Parts {
    /// The upstream's number in the metrics (one a reload adds gets series then).
    fn metric_index(&self, name: &str, config: &UpstreamConfig) -> usize {
        self.metrics
            .upstream(name, crate::metrics::Transport::of(config))
    }

    fn sessions(&self) -> Sessions {
        Sessions::new(self.session_idle, self.max_sessions)
    }
}

/// The running side of one upstream. `several`: a member of an aggregate (no OAuth, gatekeeper
/// or audit of its own; the aggregate has them).
pub(crate) fn route_for(
    parts: &Parts,
    name: Option<Arc<str>>,
    config: &UpstreamConfig,
    several: bool,
) -> Result<Route, GatewayError> {
    // A named upstream has series of its own (one a reload brings gets them then); the only
    // upstream of a gateway built without a name is the first series.
    let index = match name.as_deref() {
        Some(name) => parts.metric_index(name, config),
        None => 0,
    };
    let assemble = {
        let gatekeeper = if several {
            Arc::new(AllowAll) as Arc<dyn Gatekeeper>
        } else {
            parts.gatekeeper.clone()
        };
        let oauth = if several { None } else { parts.oauth.clone() };
        let audit = if several { None } else { parts.audit.clone() };
        let (max_body, ready_timeout) = (parts.max_body, parts.ready_timeout);
        let metrics = parts.metrics.clone();
        let name = name.clone();
        let meta_identity = parts
            .signer
            .clone()
            .filter(|_| parts.identity_meta && matches!(config, UpstreamConfig::Stdio(_)))
            .map(|signer| (signer, identity::stdio_audience(name.as_deref())));
        move |sessions: Sessions, upstream: Upstream| {
            Arc::new(Inner {
                upstream,
                gatekeeper: gatekeeper.clone(),
                sessions,
                oauth: oauth.clone(),
                max_body,
                ready_timeout,
                metrics: metrics.clone(),
                index,
                name: name.clone(),
                front: !several,
                audit: audit.clone(),
                meta_identity: meta_identity.clone(),
            })
        }
    };
    let (session_idle, max_sessions) = (parts.session_idle, parts.max_sessions);
    // Where a stdio child counts its starts and restarts.
    let probe = (parts.metrics.clone(), index);
    if let UpstreamConfig::Stdio(config) = config
        && config.user_secret.is_some()
        && config.isolation != Isolation::PerUser
    {
        return Err(GatewayError::Config {
            what: "user-secret",
            reason: "a stdio upstream gets each user's token in its environment only with isolation = \"per-user\" (one child per user)".to_owned(),
        });
    }
    Ok(match config {
        UpstreamConfig::Stdio(config) if config.isolation == Isolation::PerUser => {
            let secret = config.user_secret.clone();
            let config = config.clone();
            let make = move |env: isolation::UserEnv| {
                let sessions = Sessions::new(session_idle, max_sessions);
                let mut config = config.clone();
                config.env.extend(env);
                let child = upstream::stdio::Stdio::start(config, sessions.clone(), probe.clone());
                assemble(sessions, Upstream::Stdio(child))
            };
            Route::PerUser(Arc::new(isolation::PerUser::new(
                name,
                make,
                parts.per_user_idle,
                parts.per_user_max,
                secret,
            )))
        }
        UpstreamConfig::Stdio(config) if config.isolation == Isolation::PerSession => {
            let config = config.clone();
            let make = move || {
                let sessions = Sessions::new(session_idle, max_sessions);
                let child =
                    upstream::stdio::Stdio::start(config.clone(), sessions.clone(), probe.clone());
                assemble(sessions, Upstream::Stdio(child))
            };
            Route::PerSession(Arc::new(per_session::PerSession::new(
                name,
                make,
                parts.per_session_idle.min(session_idle),
                parts.per_session_max,
                parts.max_body,
            )))
        }
        UpstreamConfig::Stdio(config) => {
            let sessions = parts.sessions();
            let child =
                upstream::stdio::Stdio::start(config.clone(), sessions.clone(), probe.clone());
            Route::Shared(assemble(sessions, Upstream::Stdio(child)))
        }
        UpstreamConfig::Http(config) => {
            let http = upstream::http::Http::new(config, parts.signer.clone())?;
            Route::Shared(assemble(parts.sessions(), Upstream::Http(http)))
        }
    })
}

/// Whether two configurations of an upstream run the same way (secrets compared too, never
/// shown). Upstream credentials are not comparable: an upstream with them counts as changed.
fn same(a: &UpstreamConfig, b: &UpstreamConfig) -> bool {
    match (a, b) {
        (UpstreamConfig::Stdio(a), UpstreamConfig::Stdio(b)) => {
            a.program == b.program
                && a.args == b.args
                && a.env == b.env
                && a.pass_env == b.pass_env
                && a.cwd == b.cwd
                && a.init_timeout == b.init_timeout
                && a.isolation == b.isolation
                && a.user_secret.is_none()
                && b.user_secret.is_none()
        }
        (UpstreamConfig::Http(a), UpstreamConfig::Http(b)) => {
            a.url == b.url
                && a.timeout == b.timeout
                && a.transport == b.transport
                && a.credentials.is_none()
                && b.credentials.is_none()
                && a.headers.len() == b.headers.len()
                && a.headers
                    .iter()
                    .zip(&b.headers)
                    .all(|(x, y)| x.name == y.name && x.value == y.value)
        }
        _ => false,
    }
}

/// One upstream as served.
struct Served {
    config: UpstreamConfig,
    route: Route,
    own: Own,
    /// The sessions of its own path (kept across reloads).
    own_sessions: Sessions,
}

struct Serving {
    upstreams: Vec<(Arc<str>, Served)>,
    /// Each upstream's tool names and descriptions, as configured.
    tools: HashMap<String, ToolNames>,
    merged: Arc<Aggregate>,
    /// Each upstream's own path → its router (bearer layer, endpoint, metadata).
    paths: HashMap<String, Router>,
}

/// What a reload did, by upstream name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reloaded {
    /// Upstreams that are new.
    pub added: Vec<String>,
    /// Upstreams whose configuration changed: started again (their sessions' upstream sides
    /// are opened again at the next request).
    pub changed: Vec<String>,
    /// Upstreams no longer served.
    pub removed: Vec<String>,
    /// Upstreams left as they were (their running side and sessions untouched).
    pub kept: Vec<String>,
    /// Upstreams whose tools are renamed or described differently than before (their
    /// running side untouched; clients are told that the list changed).
    pub renamed: Vec<String>,
    /// The gateway went from one upstream to several, or back: the endpoint serves another
    /// shape (prefixed names or not, `/NAME/mcp` paths or none), so every upstream was
    /// started again and every client session ended (its id is answered 404, and the client
    /// initializes again).
    pub reshaped: bool,
}

/// The live upstreams of a gateway of several.
pub(crate) struct Live {
    parts: Parts,
    /// The merged endpoint's client sessions (kept across reloads).
    sessions: Sessions,
    state: RwLock<Serving>,
}

/// Checks the names of a gateway of several upstreams.
pub(crate) fn check_names<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Result<(), GatewayError> {
    let mut seen: Vec<&str> = Vec::new();
    for name in names {
        if !valid_upstream_name(name) {
            return Err(GatewayError::Config {
                what: "upstream name",
                reason: format!(
                    "{name:?}: with several upstreams each needs a name of 1 to 32 letters, digits or '-' (it prefixes its tools: NAME{SEPARATOR}tool)"
                ),
            });
        }
        if seen.contains(&name) {
            return Err(GatewayError::Config {
                what: "upstream name",
                reason: format!("{name:?} names two upstreams"),
            });
        }
        seen.push(name);
    }
    Ok(())
}

/// Each upstream's checked [`Renames`]; refuses a table for an upstream that is not served.
fn renames_of(
    upstreams: &[(String, UpstreamConfig)],
    tools: &HashMap<String, ToolNames>,
) -> Result<HashMap<String, Arc<Renames>>, GatewayError> {
    let mut renames = HashMap::with_capacity(tools.len());
    for (upstream, names) in tools {
        if !upstreams.iter().any(|(n, _)| n == upstream) {
            return Err(GatewayError::Config {
                what: "tool names",
                reason: format!(
                    "tools are renamed for {upstream:?}, which is not an upstream (the upstreams: {})",
                    upstreams
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        renames.insert(upstream.clone(), Arc::new(Renames::new(upstream, names)?));
    }
    Ok(renames)
}

impl Live {
    pub(crate) fn new(
        parts: Parts,
        upstreams: Vec<(String, UpstreamConfig)>,
        tools: HashMap<String, ToolNames>,
    ) -> Result<Self, GatewayError> {
        let sessions = parts.sessions();
        let state = Self::assemble(&parts, &sessions, Vec::new(), upstreams, tools, None)?.0;
        Ok(Self {
            parts,
            sessions,
            state: RwLock::new(state),
        })
    }

    /// The state serving `upstreams`, reusing what `old` runs where the configuration is the
    /// same.
    fn assemble(
        parts: &Parts,
        sessions: &Sessions,
        mut old: Vec<(Arc<str>, Served)>,
        upstreams: Vec<(String, UpstreamConfig)>,
        tools: HashMap<String, ToolNames>,
        old_tools: Option<&HashMap<String, ToolNames>>,
    ) -> Result<(Serving, Reloaded), GatewayError> {
        check_names(upstreams.iter().map(|(n, _)| n.as_str()))?;
        let renames = renames_of(&upstreams, &tools)?;
        let mut report = Reloaded::default();
        let mut served = Vec::with_capacity(upstreams.len());
        for (name, config) in upstreams {
            let name: Arc<str> = Arc::from(name.as_str());
            let previous = old
                .iter()
                .position(|(n, _)| *n == name)
                .map(|at| old.swap_remove(at).1);
            if let Some(old_tools) = old_tools
                && previous.is_some()
                && old_tools.get(&*name) != tools.get(&*name)
            {
                report.renamed.push(name.to_string());
            }
            let (route, own, own_sessions) = match previous {
                Some(p) if same(&p.config, &config) => {
                    report.kept.push(name.to_string());
                    (p.route, p.own, p.own_sessions)
                }
                Some(p) => {
                    report.changed.push(name.to_string());
                    let route = route_for(parts, Some(name.clone()), &config, true)?;
                    (route, p.own, p.own_sessions)
                }
                None => {
                    report.added.push(name.to_string());
                    let route = route_for(parts, Some(name.clone()), &config, true)?;
                    let own = Own::new(&name, &parts.path, parts.oauth.as_ref())?;
                    (route, own, parts.sessions())
                }
            };
            served.push((
                name,
                Served {
                    config,
                    route,
                    own,
                    own_sessions,
                },
            ));
        }
        report.removed = old.iter().map(|(n, _)| n.to_string()).collect();
        let member = |name: &Arc<str>, s: &Served| Member {
            name: name.clone(),
            route: s.route.clone(),
            index: parts.metric_index(name, &s.config),
            renames: renames.get(&**name).cloned().unwrap_or_default(),
        };
        let view = |members: Vec<Member>, sessions: Sessions, oauth, unprefixed| {
            Arc::new(Aggregate {
                members,
                sessions,
                gatekeeper: parts.gatekeeper.clone(),
                oauth,
                max_body: parts.max_body,
                metrics: parts.metrics.clone(),
                audit: parts.audit.clone(),
                unprefixed,
                alone: false,
            })
        };
        let merged = view(
            served.iter().map(|(n, s)| member(n, s)).collect(),
            sessions.clone(),
            parts.oauth.clone(),
            false,
        );
        let mut paths = HashMap::new();
        for (name, s) in &served {
            let alone = view(
                vec![member(name, s)],
                s.own_sessions.clone(),
                s.own.oauth.clone(),
                true,
            );
            let router = s
                .own
                .route(Router::new(), alone)
                .layer(mcp_oauth::routes::mcp_cors())
                .merge(s.own.metadata_router());
            paths.insert(s.own.path.clone(), router.clone());
            if let Some(oauth) = &s.own.oauth {
                paths.insert(oauth.resource().metadata_path(), router);
            }
        }
        Ok((
            Serving {
                upstreams: served,
                tools,
                merged,
                paths,
            },
            report,
        ))
    }

    /// Serves `upstreams` from now on, their tools renamed as `tools` says (`None`: as
    /// before); see the module docs.
    pub(crate) fn reload(
        &self,
        upstreams: Vec<(String, UpstreamConfig)>,
        tools: Option<HashMap<String, ToolNames>>,
    ) -> Result<Reloaded, GatewayError> {
        if upstreams.len() < 2 {
            return Err(GatewayError::Config {
                what: "upstreams",
                reason: "a gateway of several upstreams keeps at least two across a reload (restart it to serve one)".into(),
            });
        }
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        let old: Vec<(Arc<str>, Served)> = state
            .upstreams
            .iter()
            .map(|(n, s)| {
                (
                    n.clone(),
                    Served {
                        config: s.config.clone(),
                        route: s.route.clone(),
                        own: s.own.clone(),
                        own_sessions: s.own_sessions.clone(),
                    },
                )
            })
            .collect();
        let tools = tools.unwrap_or_else(|| state.tools.clone());
        // Built beside the old state: on an error the old one goes on serving.
        let (next, report) = Self::assemble(
            &self.parts,
            &self.sessions,
            old,
            upstreams,
            tools,
            Some(&state.tools),
        )?;
        *state = next;
        if !(report.added.is_empty()
            && report.changed.is_empty()
            && report.removed.is_empty()
            && report.renamed.is_empty())
        {
            aggregate::announce_list_changes(&self.sessions);
            for (name, served) in &state.upstreams {
                let untouched = report.kept.iter().any(|k| **k == **name)
                    && !report.renamed.iter().any(|k| **k == **name);
                if !untouched {
                    aggregate::announce_list_changes(&served.own_sessions);
                }
            }
        }
        Ok(report)
    }

    /// The merged endpoint's aggregate now.
    pub(crate) fn merged(&self) -> Arc<Aggregate> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state.merged.clone()
    }

    /// Each upstream's name and own path, in order.
    pub(crate) fn paths(&self) -> Vec<(String, String, Option<String>)> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state
            .upstreams
            .iter()
            .map(|(n, s)| {
                (
                    n.to_string(),
                    s.own.path.clone(),
                    s.own.oauth.as_ref().map(|o| o.resource().to_string()),
                )
            })
            .collect()
    }

    /// The tables of upstream `name` in force.
    fn tools_of(&self, name: &str) -> Option<ToolNames> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state.tools.get(name).cloned()
    }

    /// Each upstream's name and configuration, in order.
    fn configs(&self) -> Vec<(String, UpstreamConfig)> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state
            .upstreams
            .iter()
            .map(|(n, s)| (n.to_string(), s.config.clone()))
            .collect()
    }

    /// Ends every client session, at `/mcp` and at each upstream's own path (the gateway no
    /// longer serves this shape).
    fn close(&self) {
        self.sessions.close_all();
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        for (_, served) in &state.upstreams {
            served.own_sessions.close_all();
        }
    }

    fn own_router(&self, path: &str) -> Option<Router> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state.paths.get(path).cloned()
    }
}

/// The only upstream of a gateway of one.
pub(crate) struct One {
    pub(crate) route: Route,
    /// Its name (empty when the gateway was built without one).
    name: String,
    config: UpstreamConfig,
    /// Its tools' and prompts' new names and descriptions, if any.
    table: Option<ToolNames>,
    /// With a table: the endpoint is this view of the upstream alone (the aggregate's, which
    /// renames), instead of the route itself.
    view: Option<Arc<Aggregate>>,
}

impl One {
    /// Handles a request at the endpoint.
    pub(crate) async fn handle(&self, request: Request) -> Response {
        match &self.view {
            Some(view) => aggregate::handle(State(view.clone()), request).await,
            None => self.route.handle(request).await,
        }
    }

    /// The view that renames, if there is one (for the catalog's checks).
    pub(crate) fn view(&self) -> Option<&Arc<Aggregate>> {
        self.view.as_ref()
    }

    /// Ends its client sessions: it is no longer served.
    fn close(&self) {
        close_route(&self.route);
        if let Some(view) = &self.view {
            view.sessions.close_all();
        }
    }

    /// Whether `name` (with `config`) is this upstream: the same name, or, for the unnamed
    /// upstream of a gateway built with one, the same configuration.
    fn matches(&self, name: &str, config: &UpstreamConfig) -> bool {
        name == self.name || (self.name.is_empty() && same(&self.config, config))
    }
}

impl Reloaded {
    /// Without the empty name of an unnamed upstream.
    fn without_unnamed(mut self) -> Self {
        for names in [
            &mut self.added,
            &mut self.changed,
            &mut self.removed,
            &mut self.kept,
        ] {
            names.retain(|n| !n.is_empty());
        }
        self
    }
}

/// What the endpoint serves now: one upstream (under its own names, no `/NAME/mcp`) or
/// several (merged at `/mcp`, each at its own path).
#[derive(Clone)]
pub(crate) enum Kind {
    One(Arc<One>),
    Several(Arc<Live>),
}

/// The gateway's upstreams, of either shape, swappable while it serves: a reload may go from
/// one upstream to several and back.
///
/// A reload that changes the shape changes what every name means (`read_file` becomes
/// `fs__read_file`), so nothing of the old shape is carried over: its upstreams are started
/// again under the new shape and its client sessions end. A client that sends an old
/// session id gets 404 (session not found), initializes again and lists the new names; no
/// session ever goes on talking to an endpoint of the other shape.
pub(crate) struct Shape {
    parts: Parts,
    kind: RwLock<Kind>,
    /// One reload at a time (a reload reads the shape, builds beside it, then swaps).
    reloading: std::sync::Mutex<()>,
}

/// The table of the only upstream, `name`: the one given under its name (with an unnamed
/// upstream, the only one given). A table for another name is refused.
fn table_for_one(
    name: &str,
    mut tools: HashMap<String, ToolNames>,
) -> Result<Option<ToolNames>, GatewayError> {
    tools.retain(|_, t| !t.is_empty());
    let table = match tools.remove(name) {
        Some(table) => Some(table),
        None if name.is_empty() && tools.len() == 1 => tools.drain().next().map(|(_, table)| table),
        None => None,
    };
    if let Some(other) = tools.keys().next() {
        return Err(GatewayError::Config {
            what: "tool names",
            reason: format!(
                "tools are renamed for {other:?}, which is not the upstream ({})",
                if name.is_empty() { "unnamed" } else { name }
            ),
        });
    }
    Ok(table)
}

impl Shape {
    pub(crate) fn new(
        parts: Parts,
        mut upstreams: Vec<(String, UpstreamConfig)>,
        tools: HashMap<String, ToolNames>,
    ) -> Result<Self, GatewayError> {
        let kind = if upstreams.len() == 1 {
            let (name, config) = upstreams.remove(0);
            let table = table_for_one(&name, tools)?;
            Kind::One(Arc::new(Self::one(&parts, name, config, table)?))
        } else {
            Kind::Several(Arc::new(Live::new(parts.clone(), upstreams, tools)?))
        };
        Ok(Self {
            parts,
            kind: RwLock::new(kind),
            reloading: std::sync::Mutex::new(()),
        })
    }

    /// The one upstream; with a table, served through a view of it alone that renames (the
    /// gatekeeper, the audit and the catalog still see its own names, unprefixed).
    fn one(
        parts: &Parts,
        name: String,
        config: UpstreamConfig,
        table: Option<ToolNames>,
    ) -> Result<One, GatewayError> {
        let named: Option<Arc<str>> = (!name.is_empty()).then(|| Arc::from(name.as_str()));
        let Some(names) = &table else {
            return Ok(One {
                route: route_for(parts, named, &config, false)?,
                name,
                config,
                table: None,
                view: None,
            });
        };
        let renames = Arc::new(Renames::alone(&name, names)?);
        let route = route_for(parts, named, &config, true)?;
        let index = if name.is_empty() {
            0
        } else {
            parts.metric_index(&name, &config)
        };
        // Inside the view only: it prefixes nothing a client or the gatekeeper sees.
        let member: Arc<str> = Arc::from(if name.is_empty() { "upstream" } else { &name });
        let view = Arc::new(Aggregate {
            members: vec![Member {
                name: member,
                route: route.clone(),
                index,
                renames,
            }],
            sessions: parts.sessions(),
            gatekeeper: parts.gatekeeper.clone(),
            oauth: parts.oauth.clone(),
            max_body: parts.max_body,
            metrics: parts.metrics.clone(),
            audit: parts.audit.clone(),
            unprefixed: true,
            alone: true,
        });
        Ok(One {
            route,
            name,
            config,
            table,
            view: Some(view),
        })
    }

    /// What is served now.
    pub(crate) fn current(&self) -> Kind {
        self.kind.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn swap(&self, kind: Kind) {
        *self.kind.write().unwrap_or_else(|p| p.into_inner()) = kind;
    }

    /// Serves `upstreams` from now on (tables: `None`, as before); see the type's docs.
    /// Everything is built beside what serves: on an error nothing changed.
    pub(crate) fn reload(
        &self,
        mut upstreams: Vec<(String, UpstreamConfig)>,
        tools: Option<HashMap<String, ToolNames>>,
    ) -> Result<Reloaded, GatewayError> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        if upstreams.is_empty() {
            return Err(GatewayError::Config {
                what: "upstreams",
                reason: "the gateway needs at least one upstream".into(),
            });
        }
        let several = upstreams.len() > 1;
        match self.current() {
            Kind::Several(live) if several => live.reload(upstreams, tools),
            Kind::One(one) if several => {
                // The first upstream that is the one served now.
                let this = upstreams.iter().position(|(n, c)| one.matches(n, c));
                let names: Vec<String> = upstreams.iter().map(|(n, _)| n.clone()).collect();
                // Tables as before: the one upstream's, under its name.
                let tools = tools.unwrap_or_else(|| {
                    one.table
                        .clone()
                        .map(|t| HashMap::from([(one.name.clone(), t)]))
                        .unwrap_or_default()
                });
                let next = Live::new(self.parts.clone(), upstreams, tools)?;
                self.swap(Kind::Several(Arc::new(next)));
                one.close();
                let mut report = Reloaded {
                    reshaped: true,
                    ..Reloaded::default()
                };
                for (at, name) in names.into_iter().enumerate() {
                    if Some(at) == this {
                        report.changed.push(name);
                    } else {
                        report.added.push(name);
                    }
                }
                if report.changed.is_empty() {
                    report.removed.push(one.name.clone());
                }
                Ok(report.without_unnamed())
            }
            Kind::One(one) => {
                let (name, config) = upstreams.remove(0);
                let table = match tools {
                    Some(tools) => table_for_one(&name, tools)?,
                    None => one.table.clone(),
                };
                // One upstream for another: the same one unless both are named, differently.
                let matches = name == one.name || name.is_empty() || one.name.is_empty();
                let renamed = table != one.table;
                if matches && same(&one.config, &config) && !renamed {
                    return Ok(Reloaded {
                        kept: vec![name],
                        ..Reloaded::default()
                    }
                    .without_unnamed());
                }
                let next = Self::one(&self.parts, name.clone(), config, table)?;
                self.swap(Kind::One(Arc::new(next)));
                one.close();
                Ok(if matches {
                    Reloaded {
                        changed: vec![name.clone()],
                        renamed: if renamed { vec![name] } else { Vec::new() },
                        ..Reloaded::default()
                    }
                } else {
                    Reloaded {
                        added: vec![name],
                        removed: vec![one.name.clone()],
                        ..Reloaded::default()
                    }
                }
                .without_unnamed())
            }
            Kind::Several(live) => {
                let (name, config) = upstreams.remove(0);
                let table = match tools {
                    Some(tools) => table_for_one(&name, tools)?,
                    None => live.tools_of(&name),
                };
                let before: Vec<String> = live.configs().into_iter().map(|(n, _)| n).collect();
                let next = Self::one(&self.parts, name.clone(), config, table)?;
                self.swap(Kind::One(Arc::new(next)));
                live.close();
                let mut report = Reloaded {
                    reshaped: true,
                    ..Reloaded::default()
                };
                for old in before {
                    if old == name {
                        report.changed.push(old);
                    } else {
                        report.removed.push(old);
                    }
                }
                if report.changed.is_empty() {
                    report.added.push(name);
                }
                Ok(report.without_unnamed())
            }
        }
    }
}

/// Ends the client sessions of a route no longer served (a per-user or per-session route's
/// children stop with it, and their sessions with them).
fn close_route(route: &Route) {
    if let Some(inner) = route.shared() {
        inner.sessions.close_all();
    }
}

/// The endpoint (`/mcp`): the one upstream, or the merged endpoint of several, whichever is
/// served at this request.
pub(crate) async fn handle_endpoint(State(shape): State<Arc<Shape>>, request: Request) -> Response {
    match shape.current() {
        Kind::One(one) => one.handle(request).await,
        Kind::Several(live) => aggregate::handle(State(live.merged()), request).await,
    }
}

/// An upstream's own path or its metadata: the router of the upstream whose path is exactly
/// the request's (no decoding, no case folding), else 404 (always with one upstream).
pub(crate) async fn handle_own(State(shape): State<Arc<Shape>>, request: Request) -> Response {
    let Kind::Several(live) = shape.current() else {
        return crate::front::status_only(::http::StatusCode::NOT_FOUND);
    };
    let Some(mut router) = live.own_router(request.uri().path()) else {
        return crate::front::status_only(::http::StatusCode::NOT_FOUND);
    };
    match tower_service::Service::call(&mut router, request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}
