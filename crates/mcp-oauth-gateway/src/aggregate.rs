//! Several upstreams behind one endpoint.
//!
//! Why one file of this size: the fan-out (open, route, merge lists, rename, map resources,
//! forward server-initiated messages) is one state machine over one [`Fanout`](crate::fanout::Fanout);
//! split across files its invariants (which member owns an id, what a name maps back to)
//! would be read in several places. The merging of lists is the part that would move out first.
//!
//! Each upstream is a one-upstream gateway of its own (a *member*, the same code as a gateway
//! with one upstream, called in-process, without authentication of its own). The aggregate is
//! the member's client: a client session here opens one session in every member when the client
//! initializes (concurrently; a member that fails is left out and tried again at the next
//! request that needs it), and:
//!
//! - tools and prompts are exposed as `NAME__tool` ([`SEPARATOR`](crate::SEPARATOR)), kept
//!   inside `^[a-zA-Z0-9_-]{1,64}$`: a name that would be longer, or holds other characters,
//!   is cut and given a stable hash suffix; `*/list` is fanned out, every page read, and the
//!   results merged; members that fail are named in the result's `_meta` instead of failing
//!   the list;
//! - `tools/call`, `prompts/get` and `completion/complete` go to the member the name says,
//!   with the prefix removed; `resources/read` and the subscriptions go to the member whose
//!   list had the URI (else each member in turn, until one knows it);
//! - the client's answers to a member's requests (sampling, elicitation) go to the member with
//!   requests in flight, when there is exactly one;
//! - the GET stream merges the members' streams; DELETE ends every member session;
//! - protocol 2026-07-28: the headers are checked ([`modern`](crate::modern)) before anything
//!   reads the body, a stateless caller gets a fan-out session of its own (out of sight,
//!   members opened on demand), and `server/discover` opens every member and merges what
//!   they say;
//! - tools renamed or described ([`rename`](crate::rename)) are shown so, while the policy and
//!   the routing see the upstream's own name.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::http::{HeaderValue, Method, StatusCode, header};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt as _;
use mcp_oauth::Auth;
use mcp_oauth::challenge::Rejection;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::SEPARATOR;
use crate::fanout::Fanout;
use crate::front::{self, session_not_found, status_only};
use crate::gate::{Call, Decision, Gatekeeper, ListKind};
use crate::jsonrpc::{self, Kind, Message};
use crate::metrics::{Metrics, Outcome};
use crate::modern;
use crate::reply::{self, rpc_error};
use crate::sessions::{Session, Sessions, principal};

/// Most pages read from one member for one list.
const MAX_PAGES: usize = 50;
/// Largest member answer read whole (lists, initialize).
const MAX_READ: usize = 16 * 1024 * 1024;
/// The `_meta` member naming the upstreams a merged list is missing.
pub(crate) const UNAVAILABLE_META: &str = "io.github.mcp-oauth/unavailable";

static SESSION_ID: header::HeaderName = header::HeaderName::from_static("mcp-session-id");

/// One upstream of the aggregate.
pub(crate) struct Member {
    pub(crate) name: Arc<str>,
    pub(crate) route: crate::isolation::Route,
    /// The upstream's number in the metrics.
    pub(crate) index: usize,
    /// Its tools' new names and descriptions.
    pub(crate) renames: Arc<crate::rename::Renames>,
}

/// Marks a request of the gateway itself that lists tools under the names the policy sees
/// (the upstreams' own names, prefixed), not the names clients are shown.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PolicyNames;

pub(crate) struct Aggregate {
    pub(crate) members: Vec<Member>,
    pub(crate) sessions: Sessions,
    pub(crate) gatekeeper: Arc<dyn Gatekeeper>,
    pub(crate) oauth: Option<mcp_oauth::OAuth>,
    pub(crate) max_body: usize,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) audit: Option<mcp_oauth::AuditLog>,
    /// One upstream at a path of its own (`/NAME/mcp`): clients see its own names, while the
    /// gatekeeper and the audit still see `NAME__tool`, as at the merged endpoint.
    pub(crate) unprefixed: bool,
    /// The only upstream of a gateway of one, served here for its renamed tools or prompts
    /// (with `unprefixed`): the gatekeeper, the audit and the catalog see the upstream's own
    /// names without a prefix too, as with one upstream served directly.
    pub(crate) alone: bool,
}

/// Whether `name` may name an upstream of an aggregate: 1 to 32 ASCII letters, digits or
/// `-` (no `_`, so that the first `__` of an exposed name ends the upstream's name).
pub fn valid_upstream_name(name: &str) -> bool {
    (1..=32).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// The exposed name of `name` of upstream `upstream`, and whether it had to be shortened (so
/// that it cannot be split back).
pub(crate) fn expose(upstream: &str, name: &str) -> (String, bool) {
    let plain = format!("{upstream}{SEPARATOR}{name}");
    if plain.len() <= 64 && plain.bytes().all(allowed) {
        return (plain, false);
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, name.as_bytes());
    let hash: String = digest
        .as_ref()
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    let room = 64 - upstream.len() - SEPARATOR.len() - 1 - hash.len();
    let cleaned: String = name
        .bytes()
        .map(|b| if allowed(b) { char::from(b) } else { '_' })
        .take(room)
        .collect();
    (format!("{upstream}{SEPARATOR}{cleaned}_{hash}"), true)
}

fn not_permitted(id: Option<&str>) -> Response {
    reply::json(
        StatusCode::OK,
        jsonrpc::error_response(id, jsonrpc::INVALID_PARAMS, "not found, or not permitted"),
    )
}

/// Decrements a member's in-flight count when the answer's body is done or dropped.
struct InFlight {
    session: Arc<Session>,
    member: Arc<str>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(fanout) = &self.session.fanout {
            fanout.end(&self.member);
        }
    }
}

impl Aggregate {
    /// The member's number in the metrics.
    fn metric(&self, member: usize) -> usize {
        self.members.get(member).map_or(usize::MAX, |m| m.index)
    }

    /// A request to a member, as its client would send it.
    async fn send(
        &self,
        member: usize,
        auth: Option<&Auth>,
        sub: Option<&str>,
        method: Method,
        body: Bytes,
    ) -> Response {
        let Some(m) = self.members.get(member) else {
            return status_only(StatusCode::INTERNAL_SERVER_ERROR);
        };
        let mut builder = ::http::Request::builder()
            .method(method)
            .uri("/mcp")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, text/event-stream");
        if let Some(sub) = sub {
            builder = builder.header(&SESSION_ID, sub);
        }
        let Ok(mut request) = builder.body(Body::from(body)) else {
            return status_only(StatusCode::INTERNAL_SERVER_ERROR);
        };
        if let Some(auth) = auth {
            request.extensions_mut().insert(auth.clone());
        }
        m.route.handle(request).await
    }

    fn sub(&self, session: &Session, member: usize) -> Option<Arc<str>> {
        let name = &self.members.get(member)?.name;
        session.fanout.as_ref()?.sub(name)
    }

    fn set_sub(&self, session: &Session, member: usize, sub: Option<Arc<str>>) {
        if let (Some(fanout), Some(m)) = (&session.fanout, self.members.get(member)) {
            fanout.set_sub(&m.name, sub);
        }
    }

    /// A member's instructions as the client reads them: under the member's name when
    /// several upstreams share the session.
    fn instructions_of(&self, member: &Member, text: &str) -> String {
        if self.unprefixed {
            text.to_owned()
        } else {
            format!("{} ({}{SEPARATOR}…): {text}", member.name, member.name)
        }
    }

    /// Refuses a rename onto a name that the upstream's own list (`tools` or `prompts`, as
    /// the policy sees it: `NAME__tool`) still gives another tool (prompt), which clients
    /// would not see.
    pub(crate) fn check_renames(
        &self,
        kind: ListKind,
        items: &Value,
    ) -> Result<(), crate::GatewayError> {
        let (what, noun) = match kind {
            ListKind::Prompts => ("prompt names", "prompt"),
            _ => ("tool names", "tool"),
        };
        let listed = items.as_array().map(Vec::as_slice).unwrap_or_default();
        for item in listed {
            let name = item.get("name").and_then(Value::as_str);
            let alone = self.members.first().filter(|_| self.alone);
            let Some((upstream, tool)) = (match alone {
                Some(member) => name.map(|n| (&*member.name, n)),
                None => name.and_then(|n| n.split_once(SEPARATOR)),
            }) else {
                continue;
            };
            let Some(member) = self.members.iter().find(|m| &*m.name == upstream) else {
                continue;
            };
            let table = match kind {
                ListKind::Prompts => member.renames.prompts(),
                _ => member.renames.tools(),
            };
            if let Some(by) = table.shadows(tool) {
                return Err(crate::GatewayError::Config {
                    what,
                    reason: format!(
                        "{upstream}: {by} is renamed to {tool}, but the upstream has a {noun} {tool} of its own; rename {tool} too, or pick another name"
                    ),
                });
            }
        }
        Ok(())
    }

    /// The number of the member named `name`.
    fn position(&self, name: &str) -> Option<usize> {
        self.members.iter().position(|m| &*m.name == name)
    }

    /// Opens a session in `member` with the client's `initialize`; its answer's result.
    async fn open(
        &self,
        member: usize,
        auth: Option<&Auth>,
        init: Bytes,
    ) -> Result<(Arc<str>, Value), String> {
        let response = self.send(member, auth, None, Method::POST, init).await;
        let status = response.status();
        let sub = response
            .headers()
            .get(&SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .map(Arc::<str>::from);
        let answer = read_answer(response).await?;
        let Some(sub) = sub.filter(|_| status.is_success()) else {
            return Err(format!("initialize answered {status}"));
        };
        let result = answer
            .get("result")
            .cloned()
            .ok_or_else(|| "initialize answered an error".to_owned())?;
        let initialized = jsonrpc::encode_request(None, "notifications/initialized", None);
        let _ = self
            .send(member, auth, Some(&sub), Method::POST, initialized)
            .await;
        Ok((sub, result))
    }

    /// The member's session, opened now if it is not yet.
    async fn ensure(
        &self,
        session: &Session,
        member: usize,
        auth: Option<&Auth>,
    ) -> Result<Arc<str>, String> {
        if let Some(sub) = self.sub(session, member) {
            return Ok(sub);
        }
        let init = session
            .fanout
            .as_ref()
            .map(|f| f.init.clone())
            .unwrap_or_default();
        let (sub, result) = self.open(member, auth, init).await?;
        self.set_sub(session, member, Some(sub.clone()));
        if let (Some(fanout), Some(m)) = (&session.fanout, self.members.get(member)) {
            fanout.set_result(&m.name, &result);
        }
        Ok(sub)
    }

    /// Sends `body` to the member in the session (opened on demand; reopened once if the
    /// member lost it).
    async fn forward(
        &self,
        session: &Session,
        member: usize,
        auth: Option<&Auth>,
        body: Bytes,
    ) -> Result<Response, String> {
        for _ in 0..2 {
            let sub = self.ensure(session, member, auth).await?;
            let response = self
                .send(member, auth, Some(&sub), Method::POST, body.clone())
                .await;
            if response.status() == StatusCode::NOT_FOUND {
                self.set_sub(session, member, None);
                continue;
            }
            return Ok(response);
        }
        Err("the upstream session was lost".to_owned())
    }

    fn member_of_name(&self, session: &Session, exposed: &str) -> Option<(usize, String)> {
        if let Some(fanout) = &session.fanout {
            let shortened = fanout.shortened.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((member, name)) = shortened.get(exposed)
                && let Some(member) = self.position(member)
            {
                return Some((member, name.clone()));
            }
        }
        let (upstream, name) = exposed.split_once(SEPARATOR)?;
        let member = self.members.iter().position(|m| &*m.name == upstream)?;
        (!name.is_empty()).then(|| (member, name.to_owned()))
    }
}

/// The JSON-RPC response in a member's answer (JSON or SSE).
pub(crate) async fn read_answer(response: Response) -> Result<Value, String> {
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    let body = axum::body::to_bytes(response.into_body(), MAX_READ)
        .await
        .map_err(|_| "the answer is too large".to_owned())?;
    crate::upstream::body::messages(content_type.as_ref(), &body)
        .into_iter()
        .filter_map(|m| serde_json::from_slice::<Value>(&m).ok())
        .find(|m| m.get("id").is_some() && (m.get("result").is_some() || m.get("error").is_some()))
        .ok_or_else(|| "the answer holds no response".to_owned())
}

/// The one handler of the aggregate's MCP endpoint.
pub(crate) async fn handle(State(agg): State<Arc<Aggregate>>, req: Request) -> Response {
    if let Some(version) = req.headers().get("mcp-protocol-version") {
        let known = version.to_str().is_ok_and(|v| {
            crate::versions::SUPPORTED_VERSIONS.contains(&v) || v == modern::VERSION
        });
        if !known {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                None,
                jsonrpc::INVALID_REQUEST,
                &format!(
                    "unsupported MCP-Protocol-Version; this gateway speaks {}",
                    modern::all_versions().join(", ")
                ),
            );
        }
    }
    match *req.method() {
        Method::POST => post(agg, req).await,
        Method::GET => get(agg, req).await,
        Method::DELETE => delete(agg, req).await,
        _ => front::method_not_allowed(),
    }
}

enum Owned {
    None,
    Refused,
    Session(Arc<Session>),
}

fn session_of(agg: &Aggregate, headers: &::http::HeaderMap, auth: Option<&Auth>) -> Owned {
    let Some(id) = headers.get(&SESSION_ID) else {
        return Owned::None;
    };
    match id.to_str().ok().and_then(|id| agg.sessions.get(id, auth)) {
        Some(session) => Owned::Session(session),
        None => Owned::Refused,
    }
}

async fn post(agg: Arc<Aggregate>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    if let Some(refusal) = front::refuse_post_headers(&parts.headers) {
        return refusal;
    }
    let Ok(bytes) = axum::body::to_bytes(body, agg.max_body).await else {
        return rpc_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            jsonrpc::INVALID_REQUEST,
            &format!("the body is larger than {} bytes", agg.max_body),
        );
    };
    let message = match jsonrpc::parse(&bytes) {
        Ok(message) => message,
        Err(err) => return rpc_error(StatusCode::BAD_REQUEST, None, err.code(), &err.to_string()),
    };
    crate::jsonrpc::trace_id(&message);
    let auth = parts.extensions.get::<Auth>();
    let id = message.id.map(RawValue::get);
    let modern = modern::is_modern(&parts.headers);
    // Before anything reads the body's method or name (the policy included).
    if modern && let Err(reason) = modern::check_headers(&parts.headers, &message) {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            id,
            modern::HEADER_MISMATCH,
            &reason,
        );
    }
    let session = match session_of(&agg, &parts.headers, auth) {
        Owned::Refused => return session_not_found(),
        Owned::None if modern && message.method.as_deref() != Some("initialize") => {
            match stateless_session(&agg, auth, &message) {
                Some(session) => session,
                None => {
                    return rpc_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        id,
                        jsonrpc::INTERNAL_ERROR,
                        "cannot create a session",
                    );
                }
            }
        }
        Owned::None => {
            if message.kind == Kind::Request && message.method.as_deref() == Some("initialize") {
                return initialize(&agg, auth, &message, bytes.clone()).await;
            }
            return rpc_error(
                StatusCode::BAD_REQUEST,
                id,
                jsonrpc::INVALID_REQUEST,
                "no Mcp-Session-Id: start a session with initialize first",
            );
        }
        Owned::Session(session) => session,
    };
    if modern && let Some(stripped) = modern::without_protocol_meta(&message) {
        let response = match jsonrpc::parse(&stripped) {
            Ok(message) => {
                in_session(&agg, &parts, auth, &session, &message, stripped.clone()).await
            }
            Err(err) => rpc_error(StatusCode::BAD_REQUEST, id, err.code(), &err.to_string()),
        };
        let method = message.method.as_deref().unwrap_or_default();
        return modern::reshape_response(response, method).await;
    }
    let response = in_session(&agg, &parts, auth, &session, &message, bytes.clone()).await;
    match message.method.as_deref() {
        Some(method) if modern => modern::reshape_response(response, method).await,
        _ => response,
    }
}

/// The session the aggregate keeps for a stateless (protocol 2026-07-28) caller, made at
/// their first request and never shown to them; each member's side is opened when a request
/// first needs it, with the caller's client information from `_meta`. `None` when the random
/// source fails.
fn stateless_session(
    agg: &Aggregate,
    auth: Option<&Auth>,
    message: &Message<'_>,
) -> Option<Arc<Session>> {
    let principal = principal(auth);
    if let Some(session) = agg.sessions.stateless(&principal) {
        return Some(session);
    }
    let fanout = Fanout::new(modern::initialize_for(message.params), HashMap::new());
    let session = agg
        .sessions
        .create_fanout(principal, modern::VERSION, fanout)?;
    agg.sessions.set_stateless(&session);
    Some(session)
}

/// A message in a session (the client's own, or the one kept for a stateless caller).
async fn in_session(
    agg: &Arc<Aggregate>,
    parts: &::http::request::Parts,
    auth: Option<&Auth>,
    session: &Arc<Session>,
    message: &Message<'_>,
    bytes: Bytes,
) -> Response {
    let id = message.id.map(RawValue::get);
    match message.kind {
        Kind::Request if message.method.as_deref() == Some("initialize") => rpc_error(
            StatusCode::BAD_REQUEST,
            id,
            jsonrpc::INVALID_REQUEST,
            "this session is already initialized; to start another, send initialize without Mcp-Session-Id",
        ),
        Kind::Request => {
            // The names the policy sees: at an upstream's own path, prefixed as at the merged
            // endpoint; a renamed tool, by the upstream's own name.
            let exposed = if agg.unprefixed {
                exposed_request(agg, session, message)
            } else {
                None
            };
            let exposed = match exposed.as_deref().map(jsonrpc::parse) {
                Some(Ok(exposed)) => Some(exposed),
                Some(Err(_)) => return not_permitted(id),
                None => None,
            };
            let message = exposed.as_ref().unwrap_or(message);
            match real_request(agg, session, message) {
                Ok(Some(rewritten)) => match jsonrpc::parse(&rewritten) {
                    Ok(real) => request(agg, parts, auth, session, &real).await,
                    Err(_) => not_permitted(id),
                },
                Ok(None) => request(agg, parts, auth, session, message).await,
                Err(Hidden) => {
                    let method = match message.method.as_deref() {
                        Some("prompts/get") => "prompts/get",
                        Some("completion/complete") => "completion/complete",
                        _ => "tools/call",
                    };
                    agg.metrics.request(method, Outcome::Denied);
                    not_permitted(id)
                }
            }
        }
        Kind::Notification => {
            if message.method.as_deref() != Some("notifications/initialized") {
                for member in 0..agg.members.len() {
                    if let Some(sub) = agg.sub(session, member) {
                        let _ = agg
                            .send(member, auth, Some(&sub), Method::POST, bytes.clone())
                            .await;
                    }
                }
            }
            status_only(StatusCode::ACCEPTED)
        }
        Kind::Response => {
            // The member that asked: the only one with requests in flight.
            let busy: Vec<usize> = session
                .fanout
                .as_ref()
                .map(|f| {
                    f.busy()
                        .iter()
                        .filter_map(|name| agg.position(name))
                        .collect()
                })
                .unwrap_or_default();
            match busy.as_slice() {
                [member] => match agg.sub(session, *member) {
                    Some(sub) => {
                        agg.send(*member, auth, Some(&sub), Method::POST, bytes)
                            .await
                    }
                    None => status_only(StatusCode::ACCEPTED),
                },
                _ => {
                    tracing::warn!(target: "mcp_oauth_gateway::aggregate", "a client's answer cannot be routed: {} upstreams have requests in flight", busy.len());
                    rpc_error(
                        StatusCode::BAD_REQUEST,
                        None,
                        jsonrpc::INVALID_REQUEST,
                        "this answer matches no single upstream request in flight",
                    )
                }
            }
        }
    }
}

/// At an upstream's own path: the request with the name it gives (a tool, a prompt, the
/// prompt a completion is for) as the merged endpoint exposes it, `NAME__tool`, so that the
/// gatekeeper, the audit and the routing see one vocabulary at every path; `None` when the
/// request names nothing to rewrite.
fn exposed_request(agg: &Aggregate, session: &Session, message: &Message<'_>) -> Option<Bytes> {
    let member = agg.members.first()?;
    let method = message.method.as_deref()?;
    let mut params = params_object(message);
    let slot = name_slot(&mut params, method)?;
    let name = slot.as_str()?.to_owned();
    let (exposed, shortened) = expose(&member.name, &name);
    if shortened && let Some(fanout) = &session.fanout {
        fanout
            .shortened
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(exposed.clone(), (member.name.clone(), name));
    }
    *slot = Value::String(exposed);
    Some(with_params(
        message.id.map(RawValue::get),
        method,
        &Value::Object(params),
    ))
}

/// The own name of a renamed tool, which the client was not shown.
struct Hidden;

/// A `tools/call` of a renamed tool (a `prompts/get` of a renamed prompt, a completion of
/// its arguments) with the name the policy sees: the upstream's own, prefixed
/// (`fs__read_file` for `fs__read`); `None` when the name is not a new one; `Err` when it is
/// the own name of a renamed tool or prompt.
fn real_request(
    agg: &Aggregate,
    session: &Session,
    message: &Message<'_>,
) -> Result<Option<Bytes>, Hidden> {
    let Some(method) = message.method.as_deref() else {
        return Ok(None);
    };
    let prompt = match method {
        "tools/call" => false,
        "prompts/get" | "completion/complete" => true,
        _ => return Ok(None),
    };
    if agg.members.iter().all(|m| m.renames.is_empty()) {
        return Ok(None);
    }
    let mut params = params_object(message);
    let slot = if method == "completion/complete" {
        let Some(reference) = params.get_mut("ref").and_then(Value::as_object_mut) else {
            return Ok(None);
        };
        if reference.get("type").and_then(Value::as_str) != Some("ref/prompt") {
            return Ok(None);
        }
        reference.get_mut("name")
    } else {
        params.get_mut("name")
    };
    let Some(slot) = slot else {
        return Ok(None);
    };
    let Some(name) = slot.as_str() else {
        return Ok(None);
    };
    let Some((member, local)) = agg.member_of_name(session, name) else {
        return Ok(None);
    };
    let Some(m) = agg.members.get(member) else {
        return Ok(None);
    };
    let table = if prompt {
        m.renames.prompts()
    } else {
        m.renames.tools()
    };
    let real = match table.seen(&local) {
        crate::rename::Seen::Same => return Ok(None),
        crate::rename::Seen::Hidden => return Err(Hidden),
        crate::rename::Seen::Renamed(real) => real,
    };
    let (exposed, shortened) = expose(&m.name, real);
    if shortened && let Some(fanout) = &session.fanout {
        fanout
            .shortened
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(exposed.clone(), (m.name.clone(), real.to_owned()));
    }
    *slot = Value::String(exposed);
    Ok(Some(with_params(
        message.id.map(RawValue::get),
        method,
        &Value::Object(params),
    )))
}

async fn initialize(
    agg: &Aggregate,
    auth: Option<&Auth>,
    message: &Message<'_>,
    bytes: Bytes,
) -> Response {
    let id = message.id.map(RawValue::get);
    let opened = futures_util::future::join_all(
        (0..agg.members.len()).map(|member| agg.open(member, auth, bytes.clone())),
    )
    .await;
    let mut subs = HashMap::with_capacity(opened.len());
    let mut results = Vec::new();
    let mut instructions = Vec::new();
    for (member, result) in agg.members.iter().zip(opened) {
        match result {
            Ok((sub, result)) => {
                if let Some(text) = result.get("instructions").and_then(Value::as_str) {
                    instructions.push(agg.instructions_of(member, text));
                }
                subs.insert(member.name.clone(), sub);
                results.push((member.name.clone(), result));
            }
            Err(err) => {
                tracing::warn!(target: "mcp_oauth_gateway::aggregate", upstream = %member.name, "cannot open a session: {err}");
            }
        }
    }
    let version = crate::versions::negotiate(message.params);
    let fanout = Fanout::new(bytes, subs);
    for (name, result) in &results {
        fanout.set_result(name, result);
    }
    let Some(session) = agg.sessions.create_fanout(principal(auth), version, fanout) else {
        return rpc_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            id,
            jsonrpc::INTERNAL_ERROR,
            "cannot create a session",
        );
    };
    session.declared(crate::elicit::declares_url_elicitation(message.params));
    let result = Value::Object(own_init(version, &instructions));
    let body = jsonrpc::encode_response(id.unwrap_or("null"), Some(&result.to_string()), None);
    let mut response = reply::json(StatusCode::OK, body);
    if let Ok(value) = HeaderValue::from_str(&session.id) {
        response.headers_mut().insert(SESSION_ID.clone(), value);
    }
    response
}

/// The aggregate's own `initialize` result at `version`, with the members' instructions.
fn own_init(version: &str, instructions: &[String]) -> Map<String, Value> {
    let mut result = Map::new();
    result.insert("protocolVersion".to_owned(), version.into());
    result.insert(
        "capabilities".to_owned(),
        json!({
            "tools": {"listChanged": true},
            "prompts": {"listChanged": true},
            "resources": {"listChanged": true, "subscribe": true},
            "logging": {},
            "completions": {}
        }),
    );
    result.insert(
        "serverInfo".to_owned(),
        json!({"name": "mcp-oauth-gateway", "version": env!("CARGO_PKG_VERSION")}),
    );
    if !instructions.is_empty() {
        result.insert(
            "instructions".to_owned(),
            Value::String(instructions.join("\n\n")),
        );
    }
    result
}

/// `server/discover` (protocol 2026-07-28): every member's side of the session opened (now,
/// if not yet), the aggregate's capabilities and the members' instructions; a member that
/// cannot be opened is named in `_meta` ([`UNAVAILABLE_META`]) instead of failing the answer.
async fn discover(
    agg: &Aggregate,
    auth: Option<&Auth>,
    session: &Session,
    id: Option<&str>,
) -> Response {
    let opened = futures_util::future::join_all(
        (0..agg.members.len()).map(|member| agg.ensure(session, member, auth)),
    )
    .await;
    let mut instructions = Vec::new();
    let mut unavailable = Vec::new();
    for ((number, member), opened) in agg.members.iter().enumerate().zip(opened) {
        match opened {
            Ok(_) => {
                let text = session
                    .fanout
                    .as_ref()
                    .and_then(|f| f.instructions(&member.name));
                if let Some(text) = text {
                    instructions.push(agg.instructions_of(member, &text));
                }
            }
            Err(err) => {
                agg.metrics.upstream_error(agg.metric(number));
                tracing::warn!(target: "mcp_oauth_gateway::aggregate", upstream = %member.name, "server/discover: cannot open a session: {err}");
                unavailable.push(Value::String(member.name.to_string()));
            }
        }
    }
    let mut result = modern::discover_object(&own_init(modern::VERSION, &instructions));
    if !unavailable.is_empty() {
        let meta = result
            .entry("_meta")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert(UNAVAILABLE_META.to_owned(), Value::Array(unavailable));
        }
    }
    reply::json(
        StatusCode::OK,
        jsonrpc::encode_response(
            id.unwrap_or("null"),
            Some(&Value::Object(result).to_string()),
            None,
        ),
    )
}

/// A request with `params` replaced.
fn with_params(id: Option<&str>, method: &str, params: &Value) -> Bytes {
    jsonrpc::encode_request(id, method, Some(&params.to_string()))
}

fn params_object(message: &Message<'_>) -> Map<String, Value> {
    message
        .params
        .and_then(|p| serde_json::from_str(p.get()).ok())
        .unwrap_or_default()
}

/// The member of `params` that names what a request is for, where the names of the merged
/// endpoint and the upstream's own differ: a tool's or prompt's `name`, the prompt's name in a
/// completion's `ref`; `None` for other methods.
fn name_slot<'p>(params: &'p mut Map<String, Value>, method: &str) -> Option<&'p mut Value> {
    match method {
        "tools/call" | "prompts/get" => params.get_mut("name"),
        "completion/complete" => {
            let reference = params.get_mut("ref")?.as_object_mut()?;
            if reference.get("type").and_then(Value::as_str) != Some("ref/prompt") {
                return None;
            }
            reference.get_mut("name")
        }
        _ => None,
    }
}

async fn request(
    agg: &Aggregate,
    parts: &::http::request::Parts,
    auth: Option<&Auth>,
    session: &Arc<Session>,
    message: &Message<'_>,
) -> Response {
    let started = Instant::now();
    let id = message.id.map(RawValue::get);
    let method = message.method.as_deref().unwrap_or_default();
    if method == "ping" {
        return reply::json(
            StatusCode::OK,
            jsonrpc::encode_response(id.unwrap_or("null"), Some("{}"), None),
        );
    }
    if method == "server/discover" {
        return discover(agg, auth, session, id).await;
    }
    // Alone: the gatekeeper and the audit see the upstream's own name, without the prefix.
    let own = if agg.alone {
        own_names(agg, session, message)
    } else {
        None
    };
    let own = own.and_then(|params| RawValue::from_string(params.to_string()).ok());
    let params = own.as_deref().or(message.params);
    let (decision, called) = {
        let call = Call::new(method, params);
        let decision = agg.gatekeeper.decide(auth, &call);
        let called = crate::audit::Called {
            method,
            name: call.name().map(str::to_owned),
            params,
            rule_ids: call.take_rule_ids(),
            hidden: Default::default(),
        };
        (decision, called)
    };
    let decision = crate::gate::admitted(
        agg.gatekeeper.as_ref(),
        auth,
        method,
        params,
        None,
        decision,
    )
    .await;
    let policy_names = parts.extensions.get::<PolicyNames>().is_some();
    let response = match &decision {
        Decision::Allow | Decision::Approved(_) => {
            route(
                agg,
                auth,
                session,
                message,
                (method, id),
                &called.hidden,
                policy_names,
            )
            .await
        }
        Decision::StepUp(scopes) if agg.oauth.is_some() => {
            agg.metrics.request(method, Outcome::StepUp);
            match &agg.oauth {
                Some(oauth) => {
                    let resource = oauth.resource_for(
                        &parts.headers,
                        mcp_oauth::forwarded::peer_addr(&parts.extensions),
                    );
                    Rejection::InsufficientScope {
                        required: scopes.clone(),
                    }
                    .into_response(&resource.metadata_url(), &[])
                    .map(Body::new)
                }
                None => status_only(StatusCode::FORBIDDEN),
            }
        }
        Decision::Deny | Decision::StepUp(_) => {
            agg.metrics.request(method, Outcome::Denied);
            not_permitted(id)
        }
        Decision::Refuse(refusal) => {
            agg.metrics.request(method, Outcome::Denied);
            reply::json(
                StatusCode::OK,
                crate::elicit::refused(refusal, id, method, session),
            )
        }
    };
    if let Some(audit) = &agg.audit {
        let upstream = called
            .name
            .as_deref()
            .and_then(|n| n.split_once(SEPARATOR))
            .map(|(u, _)| u.to_owned())
            .filter(|_| !agg.alone);
        crate::audit::record(
            audit,
            auth,
            &session.id,
            &called,
            upstream.as_deref(),
            &decision,
            response.status(),
            started.elapsed(),
        )
        .await;
    }
    response
}

/// The request's params with the name it gives (a tool, a prompt, the prompt a completion is
/// for) as the upstream's own, without the prefix; `None` when it names nothing.
fn own_names(agg: &Aggregate, session: &Session, message: &Message<'_>) -> Option<Value> {
    let method = message.method.as_deref()?;
    let mut params = params_object(message);
    let slot = name_slot(&mut params, method)?;
    let (_, own) = agg.member_of_name(session, slot.as_str()?)?;
    *slot = Value::String(own);
    Some(Value::Object(params))
}

async fn route(
    agg: &Aggregate,
    auth: Option<&Auth>,
    session: &Arc<Session>,
    message: &Message<'_>,
    (method, id): (&str, Option<&str>),
    hidden: &crate::gate::HiddenBy,
    policy_names: bool,
) -> Response {
    if let Some(kind) = ListKind::of_method(method) {
        return list(agg, auth, session, (kind, id), hidden, policy_names).await;
    }
    let mut params = params_object(message);
    let target = match method {
        "tools/call" | "prompts/get" => {
            let name = params
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            match agg.member_of_name(session, name) {
                Some((member, original)) => {
                    params.insert("name".into(), Value::String(original));
                    Some(member)
                }
                None => {
                    agg.metrics.request(method, Outcome::Denied);
                    return not_permitted(id);
                }
            }
        }
        "completion/complete" => {
            let reference = params.get("ref").cloned().unwrap_or_default();
            match reference.get("type").and_then(Value::as_str) {
                Some("ref/prompt") => {
                    let name = reference
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    match agg.member_of_name(session, name) {
                        Some((member, original)) => {
                            if let Some(r) = params.get_mut("ref").and_then(Value::as_object_mut) {
                                r.insert("name".to_owned(), Value::String(original));
                            }
                            Some(member)
                        }
                        None => return not_permitted(id),
                    }
                }
                _ => resource_member(agg, session, reference.get("uri")),
            }
        }
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            resource_member(agg, session, params.get("uri"))
        }
        "logging/setLevel" => {
            let body = with_params(id, method, &Value::Object(params));
            for member in 0..agg.members.len() {
                if agg.sub(session, member).is_some() {
                    let _ = agg.forward(session, member, auth, body.clone()).await;
                }
            }
            agg.metrics.request(method, Outcome::Forwarded);
            return reply::json(
                StatusCode::OK,
                jsonrpc::encode_response(id.unwrap_or("null"), Some("{}"), None),
            );
        }
        _ => {
            return reply::json(
                StatusCode::OK,
                jsonrpc::error_response(
                    id,
                    -32601,
                    "method not available through a gateway of several upstreams",
                ),
            );
        }
    };
    let body = with_params(id, method, &Value::Object(params));
    let members: Vec<usize> = match target {
        Some(member) => vec![member],
        // A resource no list showed: each member in turn, until one knows it.
        None => (0..agg.members.len()).collect(),
    };
    let last = members.len().saturating_sub(1);
    for (i, member) in members.into_iter().enumerate() {
        let Some(name) = agg.members.get(member).map(|m| m.name.clone()) else {
            continue;
        };
        if let Some(fanout) = &session.fanout {
            fanout.begin(&name);
        }
        let guard = InFlight {
            session: session.clone(),
            member: name,
        };
        // The member's own front times the upstream call (mcp_client_operation_duration_seconds).
        let response = agg.forward(session, member, auth, body.clone()).await;
        let response = match response {
            Ok(response) => response,
            Err(err) => {
                agg.metrics.upstream_error(agg.metric(member));
                if i < last {
                    continue;
                }
                agg.metrics.request(method, Outcome::UpstreamError);
                return rpc_error(StatusCode::BAD_GATEWAY, id, jsonrpc::INTERNAL_ERROR, &err);
            }
        };
        if i < last {
            // Trying members in turn: an error answer means "not mine".
            let status = response.status();
            let (parts, body) = response.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, MAX_READ).await else {
                continue;
            };
            let answer =
                crate::upstream::body::messages(parts.headers.get(header::CONTENT_TYPE), &bytes)
                    .into_iter()
                    .find(|m| {
                        jsonrpc::parse(m)
                            .is_ok_and(|m| m.kind == Kind::Response && m.result.is_some())
                    });
            match answer {
                Some(answer) if status.is_success() => {
                    agg.metrics.request(method, Outcome::Forwarded);
                    return reply::json(StatusCode::OK, answer);
                }
                _ => continue,
            }
        }
        let outcome = if response.status().is_success() {
            Outcome::Forwarded
        } else {
            agg.metrics.upstream_error(agg.metric(member));
            Outcome::UpstreamError
        };
        agg.metrics.request(method, outcome);
        let (parts, body) = response.into_parts();
        let stream = body.into_data_stream().map(move |chunk| {
            let _ = &guard;
            chunk
        });
        return Response::from_parts(parts, Body::from_stream(stream));
    }
    not_permitted(id)
}

fn resource_member(agg: &Aggregate, session: &Session, uri: Option<&Value>) -> Option<usize> {
    let uri = uri?.as_str()?;
    let fanout = session.fanout.as_ref()?;
    let resources = fanout.resources.lock().unwrap_or_else(|p| p.into_inner());
    agg.position(resources.get(uri)?)
}

/// One member's whole list (every page), or why not.
async fn member_list(
    agg: &Aggregate,
    auth: Option<&Auth>,
    session: &Session,
    member: usize,
    kind: ListKind,
    method: &str,
) -> Result<Vec<Value>, String> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let params = match &cursor {
            Some(cursor) => json!({ "cursor": cursor }),
            None => json!({}),
        };
        let body = with_params(Some("1"), method, &params);
        // Timed by the member's own front, as every call to it.
        let response = agg.forward(session, member, auth, body).await?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        let answer = read_answer(response).await?;
        let Some(result) = answer.get("result") else {
            // A member without this capability answers "method not found": an empty list.
            return Ok(items);
        };
        match result.get(kind.member()).and_then(Value::as_array) {
            Some(page) => items.extend(page.iter().cloned()),
            None => return Err("the list answer is not a list".to_owned()),
        }
        cursor = result
            .get("nextCursor")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if cursor.is_none() {
            return Ok(items);
        }
    }
    Ok(items)
}

async fn list(
    agg: &Aggregate,
    auth: Option<&Auth>,
    session: &Arc<Session>,
    (kind, id): (ListKind, Option<&str>),
    hidden: &crate::gate::HiddenBy,
    policy_names: bool,
) -> Response {
    let method = match kind {
        ListKind::Tools => "tools/list",
        ListKind::Prompts => "prompts/list",
        ListKind::Resources => "resources/list",
        _ => "resources/templates/list",
    };
    let answers = futures_util::future::join_all(
        (0..agg.members.len()).map(|member| member_list(agg, auth, session, member, kind, method)),
    )
    .await;
    let mut merged = Vec::new();
    let mut unavailable = Vec::new();
    for (member, answer) in answers.into_iter().enumerate() {
        let Some(m) = agg.members.get(member) else {
            continue;
        };
        let items = match answer {
            Ok(items) => items,
            Err(err) => {
                agg.metrics.upstream_error(agg.metric(member));
                tracing::warn!(target: "mcp_oauth_gateway::aggregate", upstream = %m.name, "{method} failed: {err}");
                unavailable.push(Value::String(m.name.to_string()));
                continue;
            }
        };
        for mut item in items {
            // What the client is shown when it is not the name the policy sees: at an
            // upstream's own path, the upstream's own name; a renamed tool's new name.
            let mut own_name = None;
            match kind {
                ListKind::Tools | ListKind::Prompts => {
                    let Some(name) = item.get("name").and_then(Value::as_str).map(str::to_owned)
                    else {
                        continue;
                    };
                    let shown = if policy_names {
                        None
                    } else {
                        let (table, noun) = if kind == ListKind::Tools {
                            (m.renames.tools(), "tool")
                        } else {
                            (m.renames.prompts(), "prompt")
                        };
                        if let Some(by) = table.shadows(&name) {
                            tracing::error!(target: "mcp_oauth_gateway::aggregate", upstream = %m.name, "the upstream's {noun} {name} is left out: {by} is renamed to {name}; rename one of them");
                            continue;
                        }
                        table.shown(&name)
                    };
                    if let (Some(description), Some(object)) = (
                        shown.and_then(|s| s.description.as_ref()),
                        item.as_object_mut(),
                    ) {
                        object.insert("description".to_owned(), Value::String(description.clone()));
                    }
                    let new_name = shown.and_then(|s| s.name.as_ref());
                    if agg.unprefixed {
                        own_name = Some(new_name.unwrap_or(&name).clone());
                    } else if let Some(new_name) = new_name {
                        own_name = Some(expose(&m.name, new_name).0);
                    }
                    let (exposed, shortened) = expose(&m.name, &name);
                    // Alone: the gatekeeper (and the catalog) see the own name, unprefixed.
                    let policy_name = if agg.alone {
                        name.clone()
                    } else {
                        exposed.clone()
                    };
                    if kind == ListKind::Tools {
                        // The name the client calls labels the operation histogram.
                        let called = own_name.as_deref().unwrap_or(&exposed);
                        agg.metrics.registry().register_tools([called]);
                    }
                    if shortened && let Some(fanout) = &session.fanout {
                        fanout
                            .shortened
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(exposed.clone(), (m.name.clone(), name));
                    }
                    if let Some(object) = item.as_object_mut() {
                        object.insert("name".to_owned(), Value::String(policy_name));
                    }
                }
                ListKind::Resources => {
                    if let (Some(uri), Some(fanout)) =
                        (item.get("uri").and_then(Value::as_str), &session.fanout)
                    {
                        fanout
                            .resources
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(uri.to_owned(), m.name.clone());
                    }
                }
                _ => {}
            }
            if !agg.gatekeeper.filters_lists()
                || hidden.keeps(agg.gatekeeper.as_ref(), auth, kind, &item)
            {
                if let (Some(name), Some(object)) = (own_name, item.as_object_mut()) {
                    object.insert("name".to_owned(), Value::String(name));
                }
                merged.push(item);
            }
        }
    }
    let mut result = Map::new();
    result.insert(kind.member().to_owned(), Value::Array(merged));
    if !unavailable.is_empty() {
        result.insert("_meta".to_owned(), json!({ UNAVAILABLE_META: unavailable }));
    }
    agg.metrics.request(method, Outcome::Forwarded);
    reply::json(
        StatusCode::OK,
        jsonrpc::encode_response(
            id.unwrap_or("null"),
            Some(&Value::Object(result).to_string()),
            None,
        ),
    )
}

async fn get(agg: Arc<Aggregate>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let auth = parts.extensions.get::<Auth>();
    let session = match session_of(&agg, &parts.headers, auth) {
        Owned::Session(session) => session,
        Owned::Refused => return session_not_found(),
        Owned::None => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                None,
                jsonrpc::INVALID_REQUEST,
                "no Mcp-Session-Id: start a session with initialize first",
            );
        }
    };
    let mut streams = Vec::new();
    // The gateway's own messages to the session (a reload's list changes).
    if let Some(own) = session.open_stream() {
        streams.push(
            futures_util::stream::unfold(own, |mut own| async move {
                let message = own.recv().await?;
                let mut event = b"event: message\ndata: ".to_vec();
                event.extend_from_slice(&message);
                event.extend_from_slice(b"\n\n");
                Some((Ok(Bytes::from(event)), own))
            })
            .boxed(),
        );
    }
    for member in 0..agg.members.len() {
        let Some(sub) = agg.sub(&session, member) else {
            continue;
        };
        let response = agg
            .send(member, auth, Some(&sub), Method::GET, Bytes::new())
            .await;
        if response.status().is_success() {
            streams.push(crate::sse::sse_events(response.into_body()).boxed());
        }
    }
    if streams.is_empty() {
        return rpc_error(
            StatusCode::CONFLICT,
            None,
            jsonrpc::INVALID_REQUEST,
            "this session already has a GET stream open",
        );
    }
    let merged = futures_util::stream::select_all(streams);
    let mut response = Response::new(Body::from_stream(merged));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    response.into_response()
}

async fn delete(agg: Arc<Aggregate>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let auth = parts.extensions.get::<Auth>();
    let session = match session_of(&agg, &parts.headers, auth) {
        Owned::Session(session) => session,
        Owned::Refused => return session_not_found(),
        Owned::None => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                None,
                jsonrpc::INVALID_REQUEST,
                "no Mcp-Session-Id to end",
            );
        }
    };
    agg.sessions.remove(&session.id);
    for member in 0..agg.members.len() {
        if let Some(sub) = agg.sub(&session, member) {
            let _ = agg
                .send(member, auth, Some(&sub), Method::DELETE, Bytes::new())
                .await;
        }
    }
    status_only(StatusCode::OK)
}

/// Tells every session of `sessions` on its GET stream that the lists changed (a reload
/// changed the upstreams). A session without a GET stream open finds out at its next list.
pub(crate) fn announce_list_changes(sessions: &Sessions) {
    for session in sessions.all() {
        for method in [
            "notifications/tools/list_changed",
            "notifications/prompts/list_changed",
            "notifications/resources/list_changed",
        ] {
            let _ = session.push(jsonrpc::encode_request(None, method, None));
        }
    }
}

/// Whether each member is ready, by name.
pub(crate) async fn readiness(agg: &Aggregate, timeout: Duration) -> Vec<(Arc<str>, bool)> {
    let checks = agg
        .members
        .iter()
        .map(|m| async move { (m.name.clone(), m.route.ready(timeout).await) });
    futures_util::future::join_all(checks).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposed_names_fit_what_clients_accept() {
        assert_eq!(
            expose("fs", "read_file"),
            ("fs__read_file".to_owned(), false)
        );
        let (long, shortened) = expose("fs", &"x".repeat(80));
        assert!(shortened && long.len() == 64, "{long}");
        let (dotted, shortened) = expose("web", "get.page/v2");
        assert!(
            shortened && dotted.starts_with("web__get_page_v2_"),
            "{dotted}"
        );
        assert_ne!(expose("web", "a.b").0, expose("web", "a/b").0);
        for name in [long, dotted] {
            assert!(name.bytes().all(allowed) && (1..=64).contains(&name.len()));
        }
        assert!(valid_upstream_name("fs-2"));
        for bad in ["", "a_b", "a.b", &"x".repeat(33)] {
            assert!(!valid_upstream_name(bad), "{bad}");
        }
    }
}
