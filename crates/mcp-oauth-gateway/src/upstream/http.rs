//! The Streamable HTTP upstream: each client session has an upstream session of its own
//! (the upstream's `Mcp-Session-Id` is kept by the gateway, never shown to the client).
//! Requests are built from scratch: only `Content-Type`, `Accept`, `MCP-Protocol-Version`,
//! `Mcp-Session-Id`, `Last-Event-ID`, the configured headers and the caller's upstream
//! credentials (an exchanged token, when configured) are sent, so the client's
//! `Authorization` (and cookies, and anything else) never reaches the upstream.
//!
//! When the upstream answers 404 to a request that carried its session id, the session
//! expired there: the client's `initialize` is replayed, and the request sent again once. A 400
//! whose body names the session counts as the same (the TypeScript SDK's example servers, the
//! reference `server-everything` among them, answer an unknown session id with
//! `400 Bad Request: No valid session ID provided`, as after a restart).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use mcp_oauth::Auth;

use super::body::{messages, read_capped, unavailable};
use super::legacy::Legacy;
use super::{HttpConfig, HttpTransport, UpstreamCredentials};
use crate::error::GatewayError;
use crate::jsonrpc;

static SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
static PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
static LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");
static JSON: HeaderValue = HeaderValue::from_static("application/json");
static JSON_OR_SSE: HeaderValue = HeaderValue::from_static("application/json, text/event-stream");

/// The upstream side of one client session.
pub(crate) struct HttpSession {
    upstream_id: Mutex<Option<HeaderValue>>,
    version: Mutex<Option<HeaderValue>>,
    /// The client's `initialize` request, replayed when the upstream session is lost.
    init: Bytes,
    /// The upstream's last answer to `initialize` (the response message).
    answer: Mutex<Bytes>,
    reinit: tokio::sync::Mutex<()>,
    /// The session's stream, for a legacy HTTP+SSE upstream (replaced when the upstream
    /// ends it).
    legacy: Option<Mutex<Arc<Legacy>>>,
}

impl HttpSession {
    /// The legacy stream in use, for a legacy HTTP+SSE upstream.
    fn legacy(&self) -> Option<Arc<Legacy>> {
        let legacy = self.legacy.as_ref()?;
        Some(legacy.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    fn upstream_id(&self) -> Option<HeaderValue> {
        self.upstream_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn version(&self) -> Option<HeaderValue> {
        self.version
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The `result` of the upstream's last answer to `initialize` (its capabilities and
    /// `serverInfo`).
    pub(crate) fn init_result(&self) -> serde_json::Map<String, serde_json::Value> {
        let answer = self
            .answer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        jsonrpc::parse(&answer)
            .ok()
            .and_then(|m| m.result)
            .and_then(|r| serde_json::from_str(r.get()).ok())
            .unwrap_or_default()
    }

    fn set(&self, id: Option<HeaderValue>, version: Option<HeaderValue>) {
        *self.upstream_id.lock().unwrap_or_else(|p| p.into_inner()) = id;
        *self.version.lock().unwrap_or_else(|p| p.into_inner()) = version;
    }
}

/// A legacy upstream's `initialize` answer with the version the client gets: the upstream's
/// (2024-11-05) belongs to its transport, which the client does not speak with the gateway;
/// the client is given the version [`negotiate`](crate::versions::negotiate) picks for it.
fn client_version(init: &Bytes, answer: Bytes) -> Bytes {
    let Ok(message) = jsonrpc::parse(&answer) else {
        return answer;
    };
    let (Some(id), Some(result)) = (message.id, message.result) else {
        return answer;
    };
    let Ok(mut result) =
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(result.get())
    else {
        return answer;
    };
    let spoken = result
        .get("protocolVersion")
        .and_then(|v| v.as_str())
        .is_some_and(|v| crate::versions::SUPPORTED_VERSIONS.contains(&v));
    if spoken {
        return answer;
    }
    let params = jsonrpc::parse(init).ok().and_then(|m| m.params);
    let version = crate::versions::negotiate(params);
    result.insert("protocolVersion".into(), version.into());
    let result = serde_json::Value::Object(result).to_string();
    jsonrpc::encode_response(id.get(), Some(&result), None)
}

fn new_session(init: Bytes, legacy: Option<Legacy>) -> HttpSession {
    HttpSession {
        upstream_id: Mutex::new(None),
        version: Mutex::new(None),
        init,
        answer: Mutex::new(Bytes::new()),
        reinit: tokio::sync::Mutex::new(()),
        legacy: legacy.map(|l| Mutex::new(Arc::new(l))),
    }
}

/// The upstream endpoint and its connection pool.
pub(crate) struct Http {
    url: reqwest::Url,
    client: reqwest::Client,
    headers: HeaderMap,
    /// Signs the caller's identity into a header of each request, when configured.
    identity: Option<std::sync::Arc<crate::identity::Signer>>,
    /// The caller's own credentials for the upstream, when configured (boxed: the
    /// upstream kinds share one enum, whose variants should stay close in size).
    credentials: Option<Box<UpstreamCredentials>>,
    transport: HttpTransport,
    /// The upstream turned out to speak only the legacy SSE transport.
    legacy_seen: std::sync::atomic::AtomicBool,
}

impl Http {
    pub(crate) fn new(
        config: &HttpConfig,
        identity: Option<std::sync::Arc<crate::identity::Signer>>,
    ) -> Result<Self, GatewayError> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| GatewayError::Config {
                what: "upstream HTTP client",
                reason: e.to_string(),
            })?;
        let mut headers = HeaderMap::new();
        for h in &config.headers {
            headers.append(h.name.clone(), h.value.clone());
        }
        Ok(Self {
            url: config.url.clone(),
            client,
            headers,
            identity,
            credentials: config.credentials.clone().map(Box::new),
            transport: config.transport,
            legacy_seen: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Whether the upstream's host accepts a TCP connection within `timeout` (readiness; no
    /// MCP request is sent, so no upstream session is opened).
    pub(crate) async fn reachable(&self, timeout: std::time::Duration) -> bool {
        let (Some(host), Some(port)) = (self.url.host_str(), self.url.port_or_known_default())
        else {
            return false;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        matches!(
            tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await,
            Ok(Ok(_))
        )
    }

    /// The configured headers, the caller's identity token when identity forwarding is on,
    /// and the caller's upstream credentials when configured.
    async fn headers_for(&self, caller: Option<&Auth>) -> Result<HeaderMap, GatewayError> {
        let mut headers = self.headers.clone();
        if let Some(signer) = &self.identity
            && let Some(header) = &signer.header
            && let Some(token) = signer.token(caller, self.url.as_str())
        {
            headers.insert(header.clone(), token);
        }
        if let Some(credentials) = &self.credentials {
            let (name, value) = credentials.header(caller).await?;
            headers.insert(name, value);
        }
        Ok(headers)
    }

    /// Sends `request`; a 401 or 403 from the upstream goes to the caller's credentials
    /// ([`UpstreamCredentials::refused`]: made anew, the request sent once more, or the user
    /// asked to consent again).
    async fn send(
        &self,
        caller: Option<&Auth>,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, GatewayError> {
        let Some(credentials) = &self.credentials else {
            return request.send().await.map_err(unavailable);
        };
        let again = credentials.copy_to_retry(&request);
        let response = request.send().await.map_err(unavailable)?;
        if matches!(
            response.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            return credentials
                .refused(&self.client, caller, response, again)
                .await;
        }
        Ok(response)
    }

    async fn post_builder(
        &self,
        caller: Option<&Auth>,
        body: Bytes,
        session: Option<&HeaderValue>,
        version: Option<&HeaderValue>,
    ) -> Result<reqwest::RequestBuilder, GatewayError> {
        // One header map, appended to as the builder's `header` would, and handed over once.
        let mut headers = self.headers_for(caller).await?;
        headers.append(header::CONTENT_TYPE, JSON.clone());
        headers.append(header::ACCEPT, JSON_OR_SSE.clone());
        if let Some(id) = session {
            headers.append(SESSION_ID.clone(), id.clone());
        }
        if let Some(version) = version {
            headers.append(PROTOCOL_VERSION.clone(), version.clone());
        }
        Ok(self
            .client
            .post(self.url.clone())
            .headers(headers)
            .body(body))
    }

    /// Sends the client's `initialize`; returns the upstream's answer (the response message)
    /// and the new upstream session.
    pub(crate) async fn initialize(
        &self,
        caller: Option<&Auth>,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes, HttpSession), GatewayError> {
        use std::sync::atomic::Ordering;
        let legacy_only = self.transport == HttpTransport::Sse
            || (self.transport == HttpTransport::Auto && self.legacy_seen.load(Ordering::Relaxed));
        let refused = if legacy_only {
            None
        } else {
            let session = new_session(body.clone(), None);
            let (status, message) = self.run_initialize(caller, &session).await?;
            let fall_back = self.transport == HttpTransport::Auto
                && matches!(
                    status,
                    StatusCode::BAD_REQUEST
                        | StatusCode::NOT_FOUND
                        | StatusCode::METHOD_NOT_ALLOWED
                );
            if !fall_back {
                return Ok((status, message, session));
            }
            Some((status, message, session))
        };
        match self.legacy_initialize(caller, body).await {
            Ok(session) => {
                if refused.is_some() {
                    tracing::info!(target: "mcp_oauth_gateway::upstream", "the upstream refused Streamable HTTP; it speaks the legacy HTTP+SSE transport, used from now on");
                    self.legacy_seen.store(true, Ordering::Relaxed);
                }
                let answer = session
                    .answer
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                Ok((StatusCode::OK, answer, session))
            }
            Err(err) => match refused {
                // Not a legacy upstream either: its refusal of the POST is the answer.
                Some(refusal) => {
                    tracing::debug!(target: "mcp_oauth_gateway::upstream", error = %err, "no legacy SSE fallback");
                    Ok(refusal)
                }
                None => Err(err),
            },
        }
    }

    /// Opens a legacy SSE session and initializes it with the client's `initialize`.
    async fn legacy_initialize(
        &self,
        caller: Option<&Auth>,
        body: Bytes,
    ) -> Result<HttpSession, GatewayError> {
        let legacy =
            Legacy::connect(&self.client, &self.url, self.headers_for(caller).await?).await?;
        let answer = legacy
            .initialize(&self.client, self.headers_for(caller).await?, body.clone())
            .await?;
        let answer = client_version(&body, answer);
        let session = new_session(body, Some(legacy));
        *session.answer.lock().unwrap_or_else(|p| p.into_inner()) = answer;
        Ok(session)
    }

    /// A new legacy stream for `session`, initialized with the client's `initialize`, in place
    /// of `lost` (which the upstream ended, or whose endpoint answers 404), unless another
    /// request already replaced it. An upstream that answers but cannot give a working session
    /// ends the client's session; one that cannot be reached keeps it, for a later try.
    async fn renew_legacy(
        &self,
        caller: Option<&Auth>,
        session: &HttpSession,
        lost: &Arc<Legacy>,
    ) -> Result<Arc<Legacy>, GatewayError> {
        let _one_at_a_time = session.reinit.lock().await;
        let (Some(slot), Some(current)) = (&session.legacy, session.legacy()) else {
            return Err(GatewayError::SessionGone);
        };
        if !Arc::ptr_eq(&current, lost) {
            return Ok(current);
        }
        tracing::info!(target: "mcp_oauth_gateway::upstream", "the legacy SSE upstream ended the session's stream; opening a new one");
        let renewed = async {
            let legacy =
                Legacy::connect(&self.client, &self.url, self.headers_for(caller).await?).await?;
            legacy
                .initialize(
                    &self.client,
                    self.headers_for(caller).await?,
                    session.init.clone(),
                )
                .await?;
            Ok::<_, GatewayError>(Arc::new(legacy))
        };
        match renewed.await {
            Ok(legacy) => {
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = legacy.clone();
                Ok(legacy)
            }
            Err(GatewayError::Protocol(_)) => Err(GatewayError::SessionGone),
            Err(err) => Err(err),
        }
    }

    /// Sends `initialize` (the client's, kept in `session`) and `notifications/initialized`,
    /// and keeps the upstream's session id and protocol version.
    async fn run_initialize(
        &self,
        caller: Option<&Auth>,
        session: &HttpSession,
    ) -> Result<(StatusCode, Bytes), GatewayError> {
        let request = self
            .post_builder(caller, session.init.clone(), None, None)
            .await?;
        let response = self.send(caller, request).await?;
        let status = response.status();
        let upstream_id = response.headers().get(&SESSION_ID).cloned();
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let body = read_capped(response).await?;
        if !status.is_success() {
            return Ok((status, body));
        }
        let message = messages(content_type.as_ref(), &body)
            .into_iter()
            .find(|m| jsonrpc::parse(m).is_ok_and(|m| m.kind == jsonrpc::Kind::Response))
            .ok_or_else(|| {
                GatewayError::Protocol("the upstream's initialize answer holds no response".into())
            })?;
        let version = jsonrpc::parse(&message)
            .ok()
            .and_then(|m| m.result)
            .and_then(|r| jsonrpc::member(r, "protocolVersion"))
            .and_then(|v| serde_json::from_str::<String>(v.get()).ok())
            .and_then(|v| HeaderValue::try_from(v).ok());
        session.set(upstream_id.clone(), version.clone());
        *session.answer.lock().unwrap_or_else(|p| p.into_inner()) = message.clone();
        let initialized = jsonrpc::encode_request(None, "notifications/initialized", None);
        let request = self
            .post_builder(caller, initialized, upstream_id.as_ref(), version.as_ref())
            .await?;
        let ack = self.send(caller, request).await?;
        if !ack.status().is_success() {
            return Err(GatewayError::Protocol(format!(
                "the upstream refused notifications/initialized with {}",
                ack.status()
            )));
        }
        Ok((status, message))
    }

    /// Starts a new upstream session for `session` unless another request already did
    /// (its id is no longer `lost`).
    async fn reinitialize(
        &self,
        caller: Option<&Auth>,
        session: &HttpSession,
        lost: &HeaderValue,
    ) -> Result<(), GatewayError> {
        let _one_at_a_time = session.reinit.lock().await;
        if session.upstream_id().as_ref() != Some(lost) {
            return Ok(());
        }
        tracing::info!(target: "mcp_oauth_gateway::upstream", "the upstream lost the session (it answered 404, or 400 naming the session); initializing a new one");
        // An upstream that answers but cannot give a working session (a refused initialize,
        // a new session lost at once) ends the client's session; one that cannot be reached
        // keeps it, for a later try.
        match self.run_initialize(caller, session).await {
            Ok((status, _)) if status.is_success() => Ok(()),
            Ok(_) | Err(GatewayError::Protocol(_)) => Err(GatewayError::SessionGone),
            Err(err) => Err(err),
        }
    }

    /// Posts a client message in `session`; on a lost upstream session, re-initializes and
    /// sends it once more.
    pub(crate) async fn post(
        &self,
        caller: Option<&Auth>,
        session: &HttpSession,
        body: Bytes,
    ) -> Result<reqwest::Response, GatewayError> {
        if let Some(legacy) = session.legacy() {
            let sent = legacy
                .post(&self.client, self.headers_for(caller).await?, body.clone())
                .await;
            match sent {
                Err(GatewayError::SessionGone) => {}
                Ok(response) if response.status() != StatusCode::NOT_FOUND => {
                    return Ok(response);
                }
                Ok(_) => {}
                Err(err) => return Err(err),
            }
            let renewed = self.renew_legacy(caller, session, &legacy).await?;
            return renewed
                .post(&self.client, self.headers_for(caller).await?, body)
                .await;
        }
        let id = session.upstream_id();
        let request = self
            .post_builder(
                caller,
                body.clone(),
                id.as_ref(),
                session.version().as_ref(),
            )
            .await?;
        let response = self.send(caller, request).await?;
        let (response, lost) = lost_session(response, id).await?;
        let Some(lost) = lost else {
            return Ok(response);
        };
        self.reinitialize(caller, session, &lost).await?;
        let request = self
            .post_builder(
                caller,
                body,
                session.upstream_id().as_ref(),
                session.version().as_ref(),
            )
            .await?;
        self.send(caller, request).await
    }

    /// Opens the upstream's GET stream for `session`.
    pub(crate) async fn get(
        &self,
        caller: Option<&Auth>,
        session: &HttpSession,
        last_event_id: Option<&HeaderValue>,
    ) -> Result<reqwest::Response, GatewayError> {
        if let Some(legacy) = session.legacy() {
            return Ok(legacy.stream());
        }
        let send = async |id: Option<HeaderValue>| {
            let mut request = self
                .client
                .get(self.url.clone())
                .headers(self.headers_for(caller).await?)
                .header(header::ACCEPT, "text/event-stream");
            if let Some(id) = id {
                request = request.header(&SESSION_ID, id);
            }
            if let Some(version) = session.version() {
                request = request.header(&PROTOCOL_VERSION, version);
            }
            if let Some(last) = last_event_id {
                request = request.header(&LAST_EVENT_ID, last);
            }
            self.send(caller, request).await
        };
        let id = session.upstream_id();
        let response = send(id.clone()).await?;
        let (response, lost) = lost_session(response, id).await?;
        let Some(lost) = lost else {
            return Ok(response);
        };
        self.reinitialize(caller, session, &lost).await?;
        send(session.upstream_id()).await
    }

    /// Ends the upstream session (best effort).
    pub(crate) async fn delete(&self, caller: Option<&Auth>, session: &HttpSession) {
        if let Some(legacy) = session.legacy() {
            legacy.close();
            return;
        }
        let Some(id) = session.upstream_id() else {
            return;
        };
        let Ok(headers) = self.headers_for(caller).await else {
            return;
        };
        let mut request = self
            .client
            .delete(self.url.clone())
            .headers(headers)
            .header(&SESSION_ID, id);
        if let Some(version) = session.version() {
            request = request.header(&PROTOCOL_VERSION, version);
        }
        let _ = request.send().await;
    }
}

/// Largest 400 answer read to see whether it names the session.
const MAX_BAD_REQUEST: usize = 64 * 1024;

/// Whether `response`, to a request that carried the upstream session `id`, says the upstream
/// no longer knows that session: 404 (what the specification prescribes), or 400 whose body
/// names the session. Returns the response (a 400 read here is given back unchanged) and the
/// lost session id.
async fn lost_session(
    mut response: reqwest::Response,
    id: Option<HeaderValue>,
) -> Result<(reqwest::Response, Option<HeaderValue>), GatewayError> {
    let Some(id) = id else {
        return Ok((response, None));
    };
    match response.status() {
        StatusCode::NOT_FOUND => Ok((response, Some(id))),
        StatusCode::BAD_REQUEST => {
            let status = response.status();
            let headers = std::mem::take(response.headers_mut());
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(unavailable)? {
                if body.len() + chunk.len() > MAX_BAD_REQUEST {
                    return Err(GatewayError::Protocol(
                        "the upstream's 400 answer is larger than 64 KiB".into(),
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            let names_session = String::from_utf8_lossy(&body)
                .to_ascii_lowercase()
                .contains("session");
            let mut again = http::Response::new(Bytes::from(body));
            *again.status_mut() = status;
            *again.headers_mut() = headers;
            Ok((again.into(), names_session.then_some(id)))
        }
        _ => Ok((response, None)),
    }
}
