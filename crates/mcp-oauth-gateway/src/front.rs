//! The client-facing side: MCP Streamable HTTP (POST with JSON or SSE answers, the GET
//! stream, DELETE, `Mcp-Session-Id`, `MCP-Protocol-Version`), behind the bearer layer.
//!
//! Why one file of this size: the three methods of one endpoint (POST, GET, DELETE) share the
//! session checks, the protocol-version negotiation and the error answers; the SSE framing
//! already lives in `sse.rs`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{StreamExt as _, stream};
use mcp_oauth::Auth;
use mcp_oauth::challenge::Rejection;
use mcp_oauth::metrics::StreamedOperation;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use crate::gate::{Call, Decision, Gatekeeper, ListKind, filter_list};
use crate::jsonrpc::{self, Kind, Message};
use crate::metrics::{Metrics, Outcome};
use crate::modern;
use crate::reply::{json, rpc_error};
use crate::sessions::{Session, Sessions, principal};
use crate::sse::{Reader, Replay, Streams};
use crate::upstream::http::Http;
use crate::upstream::stdio::{Frame, Stdio};
use crate::versions::{LATEST, SUPPORTED_VERSIONS, negotiate};

static SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
static PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
static LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

pub(crate) enum Upstream {
    Stdio(Stdio),
    Http(Http),
}

pub(crate) struct Inner {
    pub(crate) upstream: Upstream,
    pub(crate) gatekeeper: Arc<dyn Gatekeeper>,
    pub(crate) sessions: Sessions,
    pub(crate) oauth: Option<mcp_oauth::OAuth>,
    pub(crate) max_body: usize,
    pub(crate) ready_timeout: Duration,
    pub(crate) metrics: Arc<Metrics>,
    /// This upstream's number in the metrics (0 with one upstream).
    pub(crate) index: usize,
    /// The upstream's name in audit events, when it has one.
    pub(crate) name: Option<Arc<str>>,
    /// Whether clients talk to this gateway directly (it counts requests and writes audit
    /// events); false for the members of an aggregate, whose aggregate does.
    pub(crate) front: bool,
    pub(crate) audit: Option<mcp_oauth::AuditLog>,
    /// For a stdio child with identity forwarding in `_meta`: the signer and the audience.
    pub(crate) meta_identity: Option<(Arc<crate::identity::Signer>, String)>,
}

/// What a stdio child gets in `_meta` for this caller: `None` when identity forwarding to it
/// is off, else the token (`None` without a caller).
fn meta_identity(inner: &Inner, caller: Option<&Auth>) -> Option<Option<String>> {
    inner
        .meta_identity
        .as_ref()
        .map(|(signer, audience)| signer.token_text(caller, audience))
}

/// Whether the upstream is usable: a stdio child running and initialized, an HTTP upstream
/// accepting connections.
pub(crate) async fn upstream_ready(inner: &Inner, timeout: Duration) -> bool {
    match &inner.upstream {
        Upstream::Stdio(stdio) => stdio.ready(timeout).await.is_ok(),
        Upstream::Http(http) => http.reachable(timeout).await,
    }
}

/// The refusal of a POST whose headers are wrong: 415 without JSON, 406 without both
/// `Accept` types.
pub(crate) fn refuse_post_headers(headers: &HeaderMap) -> Option<Response> {
    if !is_json(headers) {
        return Some(rpc_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
            jsonrpc::INVALID_REQUEST,
            "send Content-Type: application/json",
        ));
    }
    if !(accepts(headers, "application/json") && accepts(headers, "text/event-stream")) {
        return Some(rpc_error(
            StatusCode::NOT_ACCEPTABLE,
            None,
            jsonrpc::INVALID_REQUEST,
            "send Accept: application/json, text/event-stream",
        ));
    }
    None
}

/// 405 with the methods the MCP endpoint takes.
pub(crate) fn method_not_allowed() -> Response {
    let mut response = status_only(StatusCode::METHOD_NOT_ALLOWED);
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
    response
}

pub(crate) fn status_only(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

pub(crate) fn session_not_found() -> Response {
    rpc_error(
        StatusCode::NOT_FOUND,
        None,
        jsonrpc::INVALID_REQUEST,
        "this session does not exist for the caller (unknown, expired or ended); start a new one with initialize",
    )
}

/// The status of an upstream request that failed at the gateway: 403 when the caller's
/// credentials for the upstream were refused (the caller may not use it), else 502.
fn failed_status(err: &crate::GatewayError) -> StatusCode {
    match err {
        crate::GatewayError::CredentialsRefused(_) => StatusCode::FORBIDDEN,
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// An HTTP upstream's failure: a session it lost for good ends the client's session (404, so
/// the client starts a new one); refused credentials are a 403; anything else is a 502 with
/// the request's id.
fn upstream_failed(
    inner: &Inner,
    session_id: &str,
    id: Option<&str>,
    err: crate::GatewayError,
) -> Response {
    match err {
        crate::GatewayError::SessionGone => {
            inner.sessions.remove(session_id);
            session_not_found()
        }
        err => failed(id, err),
    }
}

/// The answer to a request that failed at the gateway: a caller who must act first (paste
/// a token) gets a JSON-RPC error carrying the link, in a 200 so that the client shows it;
/// anything else an error with [`failed_status`].
pub(crate) fn failed(id: Option<&str>, err: crate::GatewayError) -> Response {
    match err {
        crate::GatewayError::ActionRequired { message, url } => {
            let refusal = crate::gate::Refusal {
                code: crate::upstream::ACTION_REQUIRED,
                data: Some(crate::upstream::user_secret::action_data(&message, &url)),
                message,
                reason: "credentials:action_required".to_owned(),
            };
            json(StatusCode::OK, refusal.response(id))
        }
        err => rpc_error(
            failed_status(&err),
            id,
            jsonrpc::INTERNAL_ERROR,
            &err.to_string(),
        ),
    }
}

fn accepts(headers: &HeaderMap, kind: &str) -> bool {
    headers.get_all(header::ACCEPT).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',').any(|item| {
                let media = item.split(';').next().unwrap_or_default().trim();
                media.eq_ignore_ascii_case(kind) || media == "*/*"
            })
        })
    })
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// The one handler of the MCP endpoint.
pub(crate) async fn handle(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let version = req.headers().get(&PROTOCOL_VERSION);
    if let Some(version) = version {
        let known = version
            .to_str()
            .is_ok_and(|v| SUPPORTED_VERSIONS.contains(&v) || v == modern::VERSION);
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
    // Boxed: the handler's future is moved a few times before it runs, and unboxed it is
    // as large as the largest of these (several kilobytes, copied at each move).
    match *req.method() {
        Method::POST => Box::pin(post(inner, req)).await,
        Method::GET => Box::pin(get(inner, req)).await,
        Method::DELETE => Box::pin(delete(inner, req)).await,
        _ => method_not_allowed(),
    }
}

/// A session id that is unknown, expired, or another principal's: answered 404.
struct Refused;

/// The session a request names, if its caller owns it. `Ok(None)`: no session header.
fn session_of(
    inner: &Inner,
    headers: &HeaderMap,
    auth: Option<&Auth>,
) -> Result<Option<Arc<Session>>, Refused> {
    let Some(id) = headers.get(&SESSION_ID) else {
        return Ok(None);
    };
    let id = id.to_str().map_err(|_| Refused)?;
    match inner.sessions.get(id, auth) {
        Some(session) => Ok(Some(session)),
        None => {
            tracing::debug!(target: "mcp_oauth_gateway::session", "unknown session id, or one that another principal opened");
            Err(Refused)
        }
    }
}

async fn post(inner: Arc<Inner>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    if let Some(refusal) = refuse_post_headers(&parts.headers) {
        return refusal;
    }
    let bytes = match axum::body::to_bytes(body, inner.max_body).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return rpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                jsonrpc::INVALID_REQUEST,
                &format!("the body is larger than {} bytes", inner.max_body),
            );
        }
    };
    let message = match jsonrpc::parse(&bytes) {
        Ok(message) => message,
        Err(err) => {
            return rpc_error(StatusCode::BAD_REQUEST, None, err.code(), &err.to_string());
        }
    };
    crate::jsonrpc::trace_id(&message);
    let auth = parts.extensions.get::<Auth>();
    let id = message.id.map(RawValue::get);
    let modern = modern::is_modern(&parts.headers);
    if modern && let Err(reason) = modern::check_headers(&parts.headers, &message) {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            id,
            modern::HEADER_MISMATCH,
            &reason,
        );
    }
    let session = match session_of(&inner, &parts.headers, auth) {
        Ok(session) => session,
        Err(Refused) => return session_not_found(),
    };
    let session = match session {
        None if modern && message.method.as_deref() != Some("initialize") => {
            match stateless_session(&inner, auth, &message).await {
                Ok(session) => Some(session),
                Err(refusal) => return refusal,
            }
        }
        session => session,
    };
    let Some(session) = session else {
        if message.kind == Kind::Request && message.method.as_deref() == Some("initialize") {
            return initialize(&inner, auth, &message, bytes.clone()).await;
        }
        return rpc_error(
            StatusCode::BAD_REQUEST,
            id,
            jsonrpc::INVALID_REQUEST,
            "no Mcp-Session-Id: start a session with initialize first",
        );
    };
    if modern && let Some(stripped) = modern::without_protocol_meta(&message) {
        return match jsonrpc::parse(&stripped) {
            Ok(message) => {
                in_session(&inner, &parts, auth, &session, &message, stripped.clone()).await
            }
            Err(err) => rpc_error(StatusCode::BAD_REQUEST, id, err.code(), &err.to_string()),
        };
    }
    in_session(&inner, &parts, auth, &session, &message, bytes.clone()).await
}

/// A message in an existing session.
async fn in_session(
    inner: &Inner,
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
        Kind::Request => request(inner, parts, auth, session, message, bytes).await,
        Kind::Notification | Kind::Response => {
            let sent = match (&inner.upstream, &session.http) {
                (Upstream::Stdio(stdio), _) if message.kind == Kind::Notification => {
                    stdio.notify(&session.id, message).await
                }
                (Upstream::Stdio(stdio), _) => stdio.respond(&session.id, message).await,
                // The gateway sent its own when it initialized the upstream session.
                (Upstream::Http(_), _)
                    if message.method.as_deref() == Some("notifications/initialized") =>
                {
                    Ok(())
                }
                (Upstream::Http(http), Some(hs)) => match http.post(auth, hs, bytes).await {
                    Ok(response) if response.status() == StatusCode::NOT_FOUND => {
                        inner.sessions.remove(&session.id);
                        return session_not_found();
                    }
                    Ok(_) => Ok(()),
                    Err(err) => Err(err),
                },
                (Upstream::Http(_), None) => Ok(()),
            };
            match sent {
                Ok(()) => status_only(StatusCode::ACCEPTED),
                Err(err) => rpc_error(
                    StatusCode::BAD_GATEWAY,
                    None,
                    jsonrpc::INTERNAL_ERROR,
                    &err.to_string(),
                ),
            }
        }
    }
}

/// The version for a client of a stdio child: what [`negotiate`] gives, but never newer than
/// the child's own version when the gateway speaks that one (the child's messages follow its
/// version; versions are dates, so they compare as strings).
fn negotiate_with_child(
    params: Option<&RawValue>,
    child: Option<&serde_json::Value>,
) -> &'static str {
    let wanted = negotiate(params);
    let child = child
        .and_then(|v| v.as_str())
        .and_then(|v| SUPPORTED_VERSIONS.iter().find(|s| **s == v).copied());
    match child {
        Some(child) if child < wanted => child,
        _ => wanted,
    }
}

/// The session the gateway keeps for a stateless (protocol 2026-07-28) caller, made at their
/// first request: for a stdio child, a routing key; for an HTTP upstream, an upstream session
/// opened with the caller's client information from `_meta`.
async fn stateless_session(
    inner: &Inner,
    auth: Option<&Auth>,
    message: &Message<'_>,
) -> Result<Arc<Session>, Response> {
    let id = message.id.map(RawValue::get);
    let principal = principal(auth);
    if let Some(session) = inner.sessions.stateless(&principal) {
        return Ok(session);
    }
    let http = match &inner.upstream {
        Upstream::Stdio(stdio) => {
            if let Err(err) = stdio.ready(inner.ready_timeout).await {
                return Err(rpc_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    id,
                    jsonrpc::INTERNAL_ERROR,
                    &err.to_string(),
                ));
            }
            None
        }
        Upstream::Http(http) => {
            let init = modern::initialize_for(message.params);
            match http.initialize(auth, init).await {
                Ok((status, _, upstream)) if status.is_success() => Some(upstream),
                Ok((status, _, _)) => return Err(upstream_refusal(status, id)),
                Err(err) => {
                    return Err(failed(id, err));
                }
            }
        }
    };
    let Some(session) = inner.sessions.create(principal, modern::VERSION, http) else {
        return Err(rpc_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            id,
            jsonrpc::INTERNAL_ERROR,
            "cannot create a session",
        ));
    };
    inner.sessions.set_stateless(&session);
    Ok(session)
}

/// `server/discover` (protocol 2026-07-28): the versions the gateway speaks and the
/// upstream's capabilities and identity.
async fn discover(inner: &Inner, session: &Session, id: Option<&str>) -> Response {
    let init = match (&inner.upstream, &session.http) {
        (Upstream::Stdio(stdio), _) => match stdio.ready(inner.ready_timeout).await {
            Ok(running) => running.init.clone(),
            Err(err) => {
                return rpc_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    id,
                    jsonrpc::INTERNAL_ERROR,
                    &err.to_string(),
                );
            }
        },
        (Upstream::Http(_), Some(hs)) => hs.init_result(),
        (Upstream::Http(_), None) => serde_json::Map::new(),
    };
    let result = modern::discover_result(&init);
    json(
        StatusCode::OK,
        jsonrpc::encode_response(id.unwrap_or("null"), Some(&result), None),
    )
}

fn with_session(mut response: Response, session: &Session) -> Response {
    if let Ok(value) = HeaderValue::from_str(&session.id) {
        response.headers_mut().insert(SESSION_ID.clone(), value);
    }
    response
}

async fn initialize(
    inner: &Inner,
    auth: Option<&Auth>,
    message: &Message<'_>,
    bytes: Bytes,
) -> Response {
    let id = message.id.map(RawValue::get);
    let no_session = || {
        rpc_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            id,
            jsonrpc::INTERNAL_ERROR,
            "cannot create a session",
        )
    };
    match &inner.upstream {
        Upstream::Stdio(stdio) => {
            let running = match stdio.ready(inner.ready_timeout).await {
                Ok(running) => running,
                Err(err) => {
                    return rpc_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        id,
                        jsonrpc::INTERNAL_ERROR,
                        &err.to_string(),
                    );
                }
            };
            let version = negotiate_with_child(message.params, running.init.get("protocolVersion"));
            let mut result = running.init.clone();
            result.insert("protocolVersion".into(), version.into());
            let result = serde_json::Value::Object(result).to_string();
            let Some(session) = inner.sessions.create(principal(auth), version, None) else {
                return no_session();
            };
            session.declared(crate::elicit::declares_url_elicitation(message.params));
            let body = jsonrpc::encode_response(id.unwrap_or("null"), Some(&result), None);
            with_session(json(StatusCode::OK, body), &session)
        }
        Upstream::Http(http) => {
            let (status, answer, upstream) = match http.initialize(auth, bytes).await {
                Ok(answer) => answer,
                Err(err) => {
                    return failed(id, err);
                }
            };
            if !status.is_success() {
                return upstream_refusal(status, id);
            }
            let version = jsonrpc::parse(&answer)
                .ok()
                .and_then(|m| m.result)
                .map(|r| negotiate(Some(r)))
                .unwrap_or(LATEST);
            let Some(session) = inner
                .sessions
                .create(principal(auth), version, Some(upstream))
            else {
                return no_session();
            };
            session.declared(crate::elicit::declares_url_elicitation(message.params));
            with_session(json(StatusCode::OK, answer), &session)
        }
    }
}

/// An upstream's refusal, as the client sees it: its credentials problems are the gateway's
/// (502), never a challenge the client would answer with its own token.
fn upstream_refusal(status: StatusCode, id: Option<&str>) -> Response {
    let message = match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            "the upstream refused the gateway's credentials".to_owned()
        }
        s => format!("the upstream answered {s}"),
    };
    let status = if status.is_client_error()
        && !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
    {
        status
    } else {
        StatusCode::BAD_GATEWAY
    };
    rpc_error(status, id, jsonrpc::INTERNAL_ERROR, &message)
}

async fn request(
    inner: &Inner,
    parts: &::http::request::Parts,
    auth: Option<&Auth>,
    session: &Arc<Session>,
    message: &Message<'_>,
    bytes: Bytes,
) -> Response {
    let id = message.id.map(RawValue::get);
    let method = message.method.as_deref().unwrap_or_default();
    if method == "ping" {
        return json(
            StatusCode::OK,
            jsonrpc::encode_response(id.unwrap_or("null"), Some("{}"), None),
        );
    }
    if method == "server/discover" {
        return discover(inner, session, id).await;
    }
    let started = std::time::Instant::now();
    let (decision, called) = {
        let call = Call::new(method, message.params);
        let decision = inner.gatekeeper.decide(auth, &call);
        // The name is read once, for the audit line and for `admit`.
        let named = inner.audit.is_some() || crate::gate::admits(&decision, method);
        let called = crate::audit::Called {
            method,
            name: named.then(|| call.name()).flatten().map(str::to_owned),
            params: message.params,
            rule_ids: call.take_rule_ids(),
            hidden: Default::default(),
        };
        (decision, called)
    };
    let admission = crate::gate::Admission {
        method,
        name: called.name.as_deref(),
        params: message.params,
        upstream: inner.name.as_deref(),
    };
    let decision =
        crate::gate::admitted_as(inner.gatekeeper.as_ref(), auth, admission, decision).await;
    let response = decided(
        inner,
        parts,
        auth,
        session,
        (message, bytes),
        &decision,
        &called.hidden,
    )
    .await;
    if inner.front {
        let outcome = match &decision {
            Decision::Allow | Decision::Approved(_) if response.status().is_success() => {
                Outcome::Forwarded
            }
            Decision::Allow | Decision::Approved(_) => Outcome::UpstreamError,
            Decision::StepUp(_) if inner.oauth.is_some() => Outcome::StepUp,
            Decision::Deny | Decision::StepUp(_) | Decision::Refuse(_) => Outcome::Denied,
        };
        inner.metrics.request(method, outcome);
        if let Some(audit) = &inner.audit {
            crate::audit::record(
                audit,
                auth,
                &session.id,
                &called,
                inner.name.as_deref(),
                &decision,
                response.status(),
                started.elapsed(),
            )
            .await;
        }
    }
    response
}

/// The answer to a request once the gatekeeper decided.
async fn decided(
    inner: &Inner,
    parts: &::http::request::Parts,
    auth: Option<&Auth>,
    session: &Arc<Session>,
    (message, bytes): (&Message<'_>, Bytes),
    decision: &Decision,
    hidden: &crate::gate::HiddenBy,
) -> Response {
    let id = message.id.map(RawValue::get);
    let method = message.method.as_deref().unwrap_or_default();
    match decision {
        Decision::Allow | Decision::Approved(_) => {}
        Decision::StepUp(scopes) if inner.oauth.is_some() => {
            let Some(oauth) = &inner.oauth else {
                return status_only(StatusCode::FORBIDDEN);
            };
            let resource = oauth.resource_for(
                &parts.headers,
                mcp_oauth::forwarded::peer_addr(&parts.extensions),
            );
            let response = Rejection::InsufficientScope {
                required: scopes.clone(),
            }
            .into_response(&resource.metadata_url(), &[]);
            return response.map(Body::new);
        }
        Decision::Refuse(refusal) => {
            return json(
                StatusCode::OK,
                crate::elicit::refused(refusal, id, method, session),
            );
        }
        Decision::Deny | Decision::StepUp(_) => {
            return json(
                StatusCode::OK,
                jsonrpc::error_response(id, jsonrpc::INVALID_PARAMS, "not found, or not permitted"),
            );
        }
    }
    // Tool lists are read whole too: their names label the operation histogram.
    let filters = inner.gatekeeper.filters_lists();
    let filter = ListKind::of_method(method).filter(|k| filters || *k == ListKind::Tools);
    let gatekeeper: &dyn Gatekeeper = if filters {
        inner.gatekeeper.as_ref()
    } else {
        &crate::gate::AllowAll
    };
    let list = filter.map(|kind| ListFilterOf {
        kind,
        gatekeeper,
        auth,
        hidden,
        metrics: &inner.metrics,
    });
    let started = std::time::Instant::now();
    // Open while the request is under way (not entered: the handler's future stays as it is).
    let span = upstream_span(inner, message);
    match (&inner.upstream, &session.http) {
        (Upstream::Stdio(stdio), _) => match stdio
            .request(
                &session.id,
                message,
                inner.ready_timeout,
                meta_identity(inner, auth).as_ref(),
            )
            .await
        {
            Ok(mut rx) => {
                // The latency is the time to the first frame (the answer or progress).
                let first = rx.recv().await;
                inner
                    .metrics
                    .upstream_call(inner.index, method, started.elapsed());
                if first.is_none() {
                    crate::metrics::upstream_failed(&span, None);
                    inner.metrics.upstream_error(inner.index);
                }
                drop(span);
                from_channel((inner, session, method), first, rx, list).await
            }
            Err(err) => {
                crate::metrics::upstream_failed(&span, None);
                inner.metrics.upstream_error(inner.index);
                rpc_error(
                    StatusCode::OK,
                    id,
                    jsonrpc::INTERNAL_ERROR,
                    &err.to_string(),
                )
            }
        },
        (Upstream::Http(http), Some(hs)) => {
            let answer = http.post(auth, hs, bytes).await;
            inner
                .metrics
                .upstream_call(inner.index, method, started.elapsed());
            match answer {
                Ok(response) => {
                    if !response.status().is_success() {
                        crate::metrics::upstream_failed(&span, Some(response.status()));
                        inner.metrics.upstream_error(inner.index);
                    }
                    drop(span);
                    from_upstream((inner, session, method), response, id, list).await
                }
                Err(err) => {
                    crate::metrics::upstream_failed(&span, None);
                    inner.metrics.upstream_error(inner.index);
                    upstream_failed(inner, &session.id, id, err)
                }
            }
        }
        (Upstream::Http(_), None) => session_not_found(),
    }
}

/// The span of a request sent to this front's upstream ([`crate::metrics::upstream_span`]).
fn upstream_span(inner: &Inner, message: &Message<'_>) -> tracing::Span {
    let transport = match inner.upstream {
        Upstream::Stdio(_) => crate::metrics::Transport::Pipe,
        Upstream::Http(_) => crate::metrics::Transport::Tcp,
    };
    crate::metrics::upstream_span(
        transport,
        message.method.as_deref().unwrap_or_default(),
        message.params,
        message.id.map(RawValue::get),
    )
}

/// A list read whole: to filter, and (tools) to learn the names.
#[derive(Clone, Copy)]
struct ListFilterOf<'a> {
    kind: ListKind,
    gatekeeper: &'a dyn Gatekeeper,
    auth: Option<&'a Auth>,
    /// Where the rules that hid items are noted.
    hidden: &'a crate::gate::HiddenBy,
    metrics: &'a Metrics,
}

type ListFilter<'a> = Option<ListFilterOf<'a>>;

/// A response message with its list filtered.
fn filtered(message: &[u8], list: ListFilter<'_>) -> Bytes {
    let Some(ListFilterOf {
        kind,
        gatekeeper,
        auth,
        hidden,
        metrics,
    }) = list
    else {
        return Bytes::copy_from_slice(message);
    };
    let Ok(parsed) = jsonrpc::parse(message) else {
        return Bytes::copy_from_slice(message);
    };
    let (Some(id), Some(result)) = (parsed.id, parsed.result) else {
        return Bytes::copy_from_slice(message);
    };
    if kind == ListKind::Tools {
        metrics.tools_listed(result.get());
    }
    match filter_list(gatekeeper, auth, kind, result.get(), hidden) {
        Some(result) => jsonrpc::encode_response(id.get(), Some(&result), None),
        // Not a list: nothing can be shown safely.
        None => jsonrpc::error_response(
            Some(id.get()),
            jsonrpc::INTERNAL_ERROR,
            "the upstream's list answer is not a list",
        ),
    }
}

fn sse_event(bytes: &Bytes) -> Result<Event, Infallible> {
    Ok(Event::default().data(String::from_utf8_lossy(bytes)))
}

/// The session's streams when the answer's streams carry event ids and can be resumed: the
/// client-facing endpoint (an aggregate reads its members' streams itself), a session of a
/// version before 2026-07-28 (which has no resumability).
fn resumable<'s>(inner: &Inner, session: &'s Session) -> Option<&'s Streams> {
    if !inner.front || session.protocol_version == modern::VERSION {
        return None;
    }
    session.streams()
}

/// The SSE answer of a stream's reader: each event with its id.
fn replayed(reader: Reader, keep_alive: bool) -> Response {
    let events = stream::unfold(reader, |mut reader| async move {
        let (id, data) = reader.next().await?;
        let event = Event::default().id(id).data(String::from_utf8_lossy(&data));
        Some((Ok::<_, Infallible>(event), reader))
    });
    let sse = Sse::new(events);
    if keep_alive {
        sse.keep_alive(KeepAlive::default()).into_response()
    } else {
        sse.into_response()
    }
}

/// A 2026-07-28 client's answer with its results reshaped; any other as it is.
async fn shaped(session: &Session, method: &str, response: Response) -> Response {
    if session.protocol_version == modern::VERSION {
        modern::reshape_response(response, method).await
    } else {
        response
    }
}

/// Answers from the stdio upstream's frames: JSON when the response comes first, else SSE.
async fn from_channel(
    (inner, session, method): (&Inner, &Session, &str),
    first: Option<Frame>,
    rx: mpsc::Receiver<Frame>,
    list: ListFilter<'_>,
) -> Response {
    let response = channel_answer(|| resumable(inner, session), first, rx, list).await;
    shaped(session, method, response).await
}

/// [`from_channel`]'s answer; `streams` is asked for only when the answer is a stream (the
/// session's id prefix is drawn then).
async fn channel_answer<'s>(
    streams: impl FnOnce() -> Option<&'s Streams>,
    first: Option<Frame>,
    mut rx: mpsc::Receiver<Frame>,
    list: ListFilter<'_>,
) -> Response {
    let Some(first) = first else {
        return rpc_error(
            StatusCode::OK,
            None,
            jsonrpc::INTERNAL_ERROR,
            "the upstream closed the request",
        );
    };
    if first.last {
        return json(
            StatusCode::OK,
            match list {
                Some(_) => filtered(&first.bytes, list),
                None => first.bytes,
            },
        );
    }
    if list.is_some() {
        // A filtered list is answered whole: wait for the response, drop what came before.
        while let Some(frame) = rx.recv().await {
            if frame.last {
                return json(StatusCode::OK, filtered(&frame.bytes, list));
            }
        }
        return rpc_error(
            StatusCode::OK,
            None,
            jsonrpc::INTERNAL_ERROR,
            "the upstream closed the request",
        );
    }
    // Observed when the response comes, with its error code (or when the stream is dropped).
    let operation = StreamedOperation::new();
    let ending = operation.clone();
    let end = move |frame: &Frame| {
        if frame.last {
            ending.end(crate::metrics::answer_error(&frame.bytes));
        }
    };
    if let Some(streams) = streams() {
        // The frames are read to the response whether or not the client stays: a client
        // whose connection broke resumes with a GET and Last-Event-ID.
        let replay = streams.open();
        if let Some(reader) = replay.attach(None, true) {
            replay.start();
            tokio::spawn(async move {
                let mut last = first.last;
                replay.push(first.bytes);
                while !last {
                    let Some(frame) = rx.recv().await else { break };
                    last = frame.last;
                    end(&frame);
                    replay.push(frame.bytes);
                }
                replay.finish();
            });
            return with_operation(replayed(reader, false), operation);
        }
    }
    let events = stream::unfold(
        (Some(first), rx, false, end),
        |(first, mut rx, done, end)| async move {
            if done {
                return None;
            }
            let frame = match first {
                Some(frame) => frame,
                None => rx.recv().await?,
            };
            let last = frame.last;
            end(&frame);
            Some((sse_event(&frame.bytes), (None, rx, last, end)))
        },
    );
    with_operation(Sse::new(events).into_response(), operation)
}

/// `response`, a stream, with the operation the layer observes at its end.
fn with_operation(mut response: Response, operation: StreamedOperation) -> Response {
    response.extensions_mut().insert(operation);
    response
}

fn is_sse(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        })
}

/// The answer to one request, streamed: its id (JSON text), to know its final event, and
/// the operation observed when that event comes (or the stream ends).
type Answering = (String, StreamedOperation);

/// Reads an upstream's SSE body into `replay`, each message an event of the gateway's,
/// until the body or the session ends. The upstream's own event ids are noted for its GET
/// stream. For a request's answer (`answering`), the event with the request's id ends the
/// operation, with its JSON-RPC error code if it is an error.
fn pump_upstream(
    replay: Arc<Replay>,
    response: reqwest::Response,
    ended: impl Future<Output = ()> + Send + 'static,
    mut answering: Option<Answering>,
) {
    tokio::spawn(async move {
        let events = crate::sse::sse_events(Body::from_stream(response.bytes_stream()));
        let mut events = std::pin::pin!(events);
        let mut ended = std::pin::pin!(ended);
        loop {
            let event = tokio::select! {
                biased;
                () = &mut ended => break,
                event = events.next() => event,
            };
            let Some(Ok(event)) = event else { break };
            let text = String::from_utf8_lossy(&event);
            if let Some(id) = crate::sse::event_id(&text) {
                *replay
                    .upstream_last
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(id);
            }
            for data in crate::sse::event_data(&text) {
                if let Some((id, _)) = &answering
                    && let Some(error) = crate::metrics::streamed_answer(data.as_bytes(), id)
                    && let Some((_, operation)) = answering.take()
                {
                    operation.end(error);
                }
                replay.push(Bytes::from(data));
            }
        }
        replay.finish();
        // Without its final event: observed now (dropped), with no error type.
        drop(answering);
    });
}

/// Answers from an HTTP upstream's response: streamed as it comes, unless a list is
/// filtered.
async fn from_upstream(
    (inner, session, method): (&Inner, &Session, &str),
    response: reqwest::Response,
    id: Option<&str>,
    list: ListFilter<'_>,
) -> Response {
    let response = upstream_answer(inner, session, response, id, list).await;
    shaped(session, method, response).await
}

async fn upstream_answer(
    inner: &Inner,
    session: &Session,
    response: reqwest::Response,
    id: Option<&str>,
    list: ListFilter<'_>,
) -> Response {
    let status = response.status();
    match status {
        StatusCode::ACCEPTED => return status_only(StatusCode::ACCEPTED),
        StatusCode::NOT_FOUND => {
            inner.sessions.remove(&session.id);
            return session_not_found();
        }
        s if !s.is_success() => return upstream_refusal(s, id),
        _ => {}
    }
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    if list.is_some() {
        let body = match crate::upstream::body::read_capped(response).await {
            Ok(body) => body,
            Err(err) => {
                return rpc_error(
                    StatusCode::BAD_GATEWAY,
                    id,
                    jsonrpc::INTERNAL_ERROR,
                    &err.to_string(),
                );
            }
        };
        let answer = crate::upstream::body::messages(content_type.as_ref(), &body)
            .into_iter()
            .find(|m| jsonrpc::parse(m).is_ok_and(|m| m.kind == Kind::Response));
        return match answer {
            Some(message) => json(StatusCode::OK, filtered(&message, list)),
            None => rpc_error(
                StatusCode::BAD_GATEWAY,
                id,
                jsonrpc::INTERNAL_ERROR,
                "the upstream's answer holds no response",
            ),
        };
    }
    if is_sse(response.headers())
        && let Some(streams) = resumable(inner, session)
    {
        let replay = streams.open();
        if let Some(reader) = replay.attach(None, true) {
            replay.start();
            let answering = id.map(|id| (id.to_owned(), StreamedOperation::new()));
            let operation = answering.as_ref().map(|(_, o)| o.clone());
            pump_upstream(replay, response, streams.ended(), answering);
            let out = replayed(reader, false);
            return match operation {
                Some(operation) => with_operation(out, operation),
                None => out,
            };
        }
    }
    let mut out = Response::new(Body::from_stream(response.bytes_stream()));
    *out.status_mut() = status;
    if let Some(content_type) = content_type {
        out.headers_mut().insert(header::CONTENT_TYPE, content_type);
    }
    out
}

/// A stream whose source is being opened: finished when dropped before [`Starting::started`].
struct Starting<'a>(Option<&'a Replay>);

impl Starting<'_> {
    fn started(mut self) {
        self.0 = None;
    }
}

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        if let Some(replay) = self.0 {
            replay.finish();
        }
    }
}

const ONE_GET_STREAM: &str = "this session already has a GET stream open";

async fn get(inner: Arc<Inner>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    if !accepts(&parts.headers, "text/event-stream") {
        return rpc_error(
            StatusCode::NOT_ACCEPTABLE,
            None,
            jsonrpc::INVALID_REQUEST,
            "send Accept: text/event-stream",
        );
    }
    let auth = parts.extensions.get::<Auth>();
    let session = match session_of(&inner, &parts.headers, auth) {
        Ok(Some(session)) => session,
        Ok(None) => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                None,
                jsonrpc::INVALID_REQUEST,
                "no Mcp-Session-Id: start a session with initialize first",
            );
        }
        Err(Refused) => return session_not_found(),
    };
    if let Some(streams) = resumable(&inner, &session) {
        return resumable_get(&inner, auth, &session, streams, &parts.headers).await;
    }
    match (&inner.upstream, &session.http) {
        (Upstream::Stdio(_), _) => {
            let Some(rx) = session.open_stream() else {
                return rpc_error(
                    StatusCode::CONFLICT,
                    None,
                    jsonrpc::INVALID_REQUEST,
                    ONE_GET_STREAM,
                );
            };
            let events = stream::unfold(rx, |mut rx| async move {
                let bytes = rx.recv().await?;
                Some((sse_event(&bytes), rx))
            });
            Sse::new(events)
                .keep_alive(KeepAlive::default())
                .into_response()
        }
        (Upstream::Http(http), Some(hs)) => {
            match http.get(auth, hs, parts.headers.get(&LAST_EVENT_ID)).await {
                Ok(response) => upstream_answer(&inner, &session, response, None, None).await,
                Err(err) => upstream_failed(&inner, &session.id, None, err),
            }
        }
        (Upstream::Http(_), None) => session_not_found(),
    }
}

/// A GET of a session whose streams are resumable. With a `Last-Event-ID` of one of the
/// session's kept streams whose next events are still kept: those events, then the rest of
/// that stream (this connection takes the stream over). Else (no id, an unknown, expired or
/// forged one, another session's): the GET stream from now on, nothing replayed.
async fn resumable_get(
    inner: &Inner,
    auth: Option<&Auth>,
    session: &Arc<Session>,
    streams: &Streams,
    headers: &HeaderMap,
) -> Response {
    let resumed = headers
        .get(&LAST_EVENT_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(|last| streams.find(last))
        .and_then(|(replay, seq)| {
            let is_get_stream = Arc::ptr_eq(&replay, streams.standalone());
            replay.attach(Some(seq), true).map(|r| (r, is_get_stream))
        });
    let reader = match resumed {
        Some((reader, false)) => return replayed(reader, false),
        Some((reader, true)) => reader,
        None => {
            if headers.contains_key(&LAST_EVENT_ID) {
                tracing::debug!(target: "mcp_oauth_gateway::session", "a Last-Event-ID that names no kept event of this session; nothing replayed");
            }
            match streams.standalone().attach(None, false) {
                Some(reader) => reader,
                None => {
                    return rpc_error(
                        StatusCode::CONFLICT,
                        None,
                        jsonrpc::INVALID_REQUEST,
                        ONE_GET_STREAM,
                    );
                }
            }
        }
    };
    // The GET stream's source: the session's messages (stdio), the upstream's GET stream
    // (HTTP), read while the session lives (stdio) or the upstream's stream lasts (HTTP).
    let standalone = streams.standalone();
    match (&inner.upstream, &session.http) {
        (Upstream::Stdio(_), _) => {
            if let Some(mut rx) = session.open_stream()
                && standalone.start()
            {
                let replay = standalone.clone();
                tokio::spawn(async move {
                    while let Some(bytes) = rx.recv().await {
                        replay.push(bytes);
                    }
                    replay.finish();
                });
            }
        }
        (Upstream::Http(http), Some(hs)) => {
            if standalone.start() {
                // Until the task reads the upstream's stream, this request may be dropped
                // (the client went away): the stream is then marked as without a source.
                let starting = Starting(Some(standalone));
                let last = standalone
                    .upstream_last
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
                    .and_then(|id| HeaderValue::from_str(&id).ok());
                let response = match http.get(auth, hs, last.as_ref()).await {
                    Ok(response) => response,
                    Err(err) => {
                        drop((starting, reader));
                        return upstream_failed(inner, &session.id, None, err);
                    }
                };
                if !(response.status().is_success() && is_sse(response.headers())) {
                    drop((starting, reader));
                    return upstream_answer(inner, session, response, None, None).await;
                }
                starting.started();
                pump_upstream(standalone.clone(), response, streams.ended(), None);
            }
        }
        (Upstream::Http(_), None) => return session_not_found(),
    }
    replayed(reader, true)
}

async fn delete(inner: Arc<Inner>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let auth = parts.extensions.get::<Auth>();
    let session = match session_of(&inner, &parts.headers, auth) {
        Ok(Some(session)) => session,
        Ok(None) => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                None,
                jsonrpc::INVALID_REQUEST,
                "no Mcp-Session-Id to end",
            );
        }
        Err(Refused) => return session_not_found(),
    };
    inner.sessions.remove(&session.id);
    match (&inner.upstream, &session.http) {
        (Upstream::Stdio(stdio), _) => stdio.close_session(&session.id),
        (Upstream::Http(http), Some(hs)) => http.delete(auth, hs).await,
        (Upstream::Http(_), None) => {}
    }
    status_only(StatusCode::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_lists_are_read_item_by_item() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json;q=0.9, text/event-stream"),
        );
        assert!(accepts(&h, "application/json") && accepts(&h, "text/event-stream"));
        h.insert(header::ACCEPT, HeaderValue::from_static("text/html"));
        assert!(!accepts(&h, "application/json"));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        assert!(accepts(&h, "text/event-stream"));
    }

    #[test]
    fn the_version_is_the_clients_when_supported() {
        let p = |v: &str| {
            RawValue::from_string(format!(r#"{{"protocolVersion":"{v}"}}"#)).expect("raw")
        };
        assert_eq!(negotiate(Some(&p("2025-06-18"))), "2025-06-18");
        assert_eq!(negotiate(Some(&p("2024-01-01"))), LATEST);
        assert_eq!(negotiate(None), LATEST);
        let child = serde_json::json!("2025-06-18");
        assert_eq!(
            negotiate_with_child(Some(&p("2025-11-25")), Some(&child)),
            "2025-06-18"
        );
        assert_eq!(
            negotiate_with_child(Some(&p("2025-03-26")), Some(&child)),
            "2025-03-26"
        );
        let unknown = serde_json::json!("2024-11-05");
        assert_eq!(
            negotiate_with_child(Some(&p("2025-11-25")), Some(&unknown)),
            "2025-11-25"
        );
    }
}
