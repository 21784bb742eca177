//! The bearer layer's service: the credentials read from the request, the token pipeline,
//! then the JSON-RPC body for the scope and access policies, and the response future that
//! runs those steps without a boxed future on the common path.
//!
//! Why one file of this size: the steps are the states of one hand-written future
//! ([`ResponseFuture`]) and share its types; split across files, the order of the checks (what
//! a request may learn before its token is verified) would be read in several places. The
//! guard's configuration lives in `guard.rs`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::request::Parts;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;

use super::dpop::{RequestView, refuse_bound_bearer};
use super::guard::Guard;
use super::lists::{ListFilterBox, list_answer};
use crate::auth::Auth;
use crate::authenticator::Lookup;
use crate::challenge::{Rejection, json_error};
use crate::claims::now_unix;
use crate::error::VerifyError;
use crate::jsonrpc::peek_jsonrpc;
use crate::metrics::AuthResult;
use crate::verify::BoxFuture;

/// The response body of [`BearerAuth`]: the inner service's, or a rejection's JSON.
pub type ResponseBody<B> = Either<B, Full<Bytes>>;

/// Applies [`BearerAuth`] to a service. Made by [`OAuth::layer`](crate::OAuth::layer); it
/// holds only what a request is checked against (the resource rule, the token pipeline, the
/// scope policy), shared with the configuration: cheap to clone.
#[derive(Debug, Clone)]
pub struct BearerAuthLayer {
    guard: Arc<Guard>,
}

impl BearerAuthLayer {
    pub(crate) fn new(guard: Arc<Guard>) -> Self {
        Self { guard }
    }
}

impl<S> tower_layer::Layer<S> for BearerAuthLayer {
    type Service = BearerAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerAuth {
            inner,
            guard: self.guard.clone(),
        }
    }
}

/// Authenticates requests before `S` sees them; see the [module docs](crate::layer).
#[derive(Debug, Clone)]
pub struct BearerAuth<S> {
    inner: S,
    guard: Arc<Guard>,
}

impl<S> BearerAuth<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, owned.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The service that was driven to readiness, leaving a clone in its place, for a call
    /// that the response future makes later
    /// (https://docs.rs/tower/latest/tower/trait.Service.html#be-careful-when-cloning-inner-services).
    fn take_ready(&mut self) -> S
    where
        S: Clone,
    {
        let clone = self.inner.clone();
        std::mem::replace(&mut self.inner, clone)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, ReqBody, ResBody> tower_service::Service<Request<ReqBody>> for BearerAuth<S>
where
    S: tower_service::Service<Request<ReqBody>, Response = Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ReqBody: Body + From<Bytes> + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // Everything that can be decided without waiting is decided here: a rejection, or a
        // token from the verified-token cache and no body to read, in which case the inner
        // service is called now and its future is all that is left to poll (no allocation).
        if is_preflight(&req) {
            return ResponseFuture::inner(self.inner.call(req));
        }
        let guard = &self.guard;
        let lookup = match authenticate_now(guard, &req) {
            Ok(lookup) => lookup,
            Err(rejection) => return ResponseFuture::done(reject(guard, &req, rejection)),
        };
        let auth = match lookup {
            (Lookup::Accepted(auth), _, Scheme::Bearer) => match refuse_bound_bearer(&auth) {
                Ok(()) => auth,
                Err(rejection) => return ResponseFuture::done(reject(guard, &req, rejection)),
            },
            // The verifier must run, or recheck a cached token, or a DPoP proof be checked:
            // that may wait (keys, store, replay cache).
            (lookup, now, scheme) => {
                let fut = Box::pin(authenticate_later(guard.clone(), req, lookup, now, scheme));
                return ResponseFuture {
                    state: State::Authenticating {
                        fut,
                        guard: self.guard.clone(),
                        inner: self.take_ready(),
                    },
                };
            }
        };
        match after_authentication(guard, req, auth) {
            Next::Call(req) => ResponseFuture::inner(self.inner.call(req)),
            Next::Reject(response) => ResponseFuture::done(response),
            Next::ReadBody(parts, body, auth) => {
                ResponseFuture::read_body(self.guard.clone(), self.take_ready(), parts, body, auth)
            }
        }
    }
}

pin_project! {
    /// The response future of [`BearerAuth`]: a state machine, so that the usual request (a
    /// token from the verified-token cache) costs no allocation here.
    pub struct ResponseFuture<S, B>
    where
        S: tower_service::Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    #[project_replace = StateOwned]
    enum State<S, B>
    where
        S: tower_service::Service<Request<B>>,
    {
        // The verifier runs, or rechecks a cached token (boxed: it borrows the guard).
        Authenticating {
            fut: BoxFuture<'static, Result<(Request<B>, Auth), Response<Full<Bytes>>>>,
            guard: Arc<Guard>,
            inner: S,
        },
        // The body is read for the scope policy.
        ReadingBody {
            #[pin]
            body: B,
            read: BodyBytes,
            parts: Parts,
            auth: Auth,
            guard: Arc<Guard>,
            inner: S,
        },
        // The inner service answers.
        Inner {
            #[pin]
            fut: S::Future,
        },
        // The inner service answers a request with a list in it, whose answer is filtered.
        InnerListed {
            #[pin]
            fut: S::Future,
            filter: Option<ListFilterBox>,
            limit: usize,
        },
        // The answer to a list request is read and filtered (boxed: it owns the body).
        Listing {
            fut: BoxFuture<'static, Response<Full<Bytes>>>,
        },
        // A rejection, answered at the first poll.
        Rejected {
            response: Response<Full<Bytes>>,
        },
        // The response was handed out.
        Done,
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: tower_service::Service<Request<B>>,
{
    fn inner(fut: S::Future) -> Self {
        Self {
            state: State::Inner { fut },
        }
    }

    fn done(response: Response<Full<Bytes>>) -> Self {
        Self {
            state: State::Rejected { response },
        }
    }

    fn read_body(guard: Arc<Guard>, inner: S, parts: Parts, body: B, auth: Auth) -> Self {
        Self {
            state: State::ReadingBody {
                body,
                read: BodyBytes::default(),
                parts,
                auth,
                guard,
                inner,
            },
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: tower_service::Service<Request<B>, Response = Response<ResBody>>,
    B: Body + From<Bytes>,
    ResBody: Body<Data = Bytes> + Send + 'static,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut state = self.as_mut().project().state;
            let next = match state.as_mut().project() {
                StateProj::Inner { fut } => {
                    return fut.poll(cx).map_ok(|res| res.map(Either::Left));
                }
                StateProj::InnerListed { fut, filter, limit } => {
                    let response = ready!(fut.poll(cx))?;
                    match list_answer(response, filter.take(), *limit) {
                        Ok(response) => return Poll::Ready(Ok(response.map(Either::Left))),
                        Err(fut) => State::Listing { fut },
                    }
                }
                StateProj::Listing { fut } => {
                    let response = ready!(fut.as_mut().poll(cx));
                    state.as_mut().project_replace(State::Done);
                    return Poll::Ready(Ok(response.map(Either::Right)));
                }
                StateProj::Authenticating { fut, .. } => {
                    let outcome = ready!(fut.as_mut().poll(cx));
                    let StateOwned::Authenticating {
                        guard, mut inner, ..
                    } = state.as_mut().project_replace(State::Done)
                    else {
                        unreachable!("the state was Authenticating")
                    };
                    match outcome {
                        Ok((req, auth)) => match after_authentication(&guard, req, auth) {
                            Next::Call(req) => State::Inner {
                                fut: inner.call(req),
                            },
                            Next::Reject(response) => State::Rejected { response },
                            Next::ReadBody(parts, body, auth) => State::ReadingBody {
                                body,
                                read: BodyBytes::default(),
                                parts,
                                auth,
                                guard,
                                inner,
                            },
                        },
                        Err(response) => State::Rejected { response },
                    }
                }
                StateProj::ReadingBody {
                    mut body,
                    read,
                    guard,
                    ..
                } => {
                    let limit = guard.max_body_bytes();
                    let complete = loop {
                        if body.is_end_stream() {
                            break Ok(());
                        }
                        match ready!(body.as_mut().poll_frame(cx)) {
                            Some(Ok(frame)) => {
                                // Trailers are not part of the JSON-RPC message.
                                if let Ok(data) = frame.into_data()
                                    && read.push(data, limit).is_err()
                                {
                                    break Err(());
                                }
                            }
                            None => break Ok(()),
                            Some(Err(_)) => break Err(()),
                        }
                    };
                    let StateOwned::ReadingBody {
                        read,
                        parts,
                        auth,
                        guard,
                        mut inner,
                        ..
                    } = state.as_mut().project_replace(State::Done)
                    else {
                        unreachable!("the state was ReadingBody")
                    };
                    match complete {
                        Ok(()) => match after_body(&guard, parts, read.into_bytes(), auth) {
                            Decided::Call(req) => State::Inner {
                                fut: inner.call(req),
                            },
                            Decided::Listed(req, filter) => State::InnerListed {
                                fut: inner.call(req),
                                filter: Some(filter),
                                limit: guard.max_body_bytes(),
                            },
                            Decided::Reject(response) => State::Rejected { response },
                        },
                        Err(()) => {
                            guard.count(AuthResult::TooLarge);
                            State::Rejected {
                                response: too_large(),
                            }
                        }
                    }
                }
                StateProj::Rejected { .. } => {
                    let StateOwned::Rejected { response } =
                        state.as_mut().project_replace(State::Done)
                    else {
                        unreachable!("the state was Rejected")
                    };
                    return Poll::Ready(Ok(response.map(Either::Right)));
                }
                StateProj::Done => panic!("BearerAuth's ResponseFuture polled after completion"),
            };
            state.set(next);
        }
    }
}

/// The body read so far: one frame as it came (the usual case: no copy), or several copied
/// into one buffer.
#[derive(Default)]
struct BodyBytes {
    len: usize,
    first: Bytes,
    more: Option<BytesMut>,
}

impl BodyBytes {
    /// Appends a frame's data; `Err` when the body would exceed `limit` bytes.
    fn push(&mut self, mut data: impl Buf, limit: usize) -> Result<(), ()> {
        let n = data.remaining();
        self.len = self.len.saturating_add(n);
        if self.len > limit {
            return Err(());
        }
        match &mut self.more {
            Some(more) => more.put(data),
            None if self.first.is_empty() => self.first = data.copy_to_bytes(n),
            None => {
                let mut more = BytesMut::with_capacity(self.len);
                more.extend_from_slice(&self.first);
                more.put(data);
                self.first = Bytes::new();
                self.more = Some(more);
            }
        }
        Ok(())
    }

    fn into_bytes(self) -> Bytes {
        match self.more {
            Some(more) => more.freeze(),
            None => self.first,
        }
    }
}

fn is_preflight<B>(req: &Request<B>) -> bool {
    req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// How the token is presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    /// `Authorization: Bearer` (RFC 6750).
    Bearer,
    /// `Authorization: DPoP`, with a proof in the `DPoP` header (RFC 9449 §7.1).
    Dpop,
}

/// Finds the token: exactly one `Authorization` header with scheme `Bearer` or `DPoP` (any
/// case). The usual `Bearer` header is read in one pass; anything else step by step.
fn credentials(headers: &HeaderMap) -> Result<(Scheme, &str), Rejection> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(if headers.contains_key(header::AUTHORIZATION) {
            Rejection::InvalidRequest("send one Authorization header, not several")
        } else {
            Rejection::MissingToken
        });
    };
    match well_formed_bearer(value.as_bytes()) {
        Some(token) => Ok((Scheme::Bearer, token)),
        None => careful_credentials(value),
    }
}

/// The token of a `Bearer` header (tests; the layer reads [`credentials`]).
#[cfg(test)]
fn bearer_token(headers: &HeaderMap) -> Result<&str, Rejection> {
    match credentials(headers)? {
        (Scheme::Bearer, token) => Ok(token),
        (Scheme::Dpop, _) => Err(Rejection::MissingToken),
    }
}

/// [`credentials`] step by step: the `DPoP` scheme, or what is wrong with a header that is
/// not `Bearer <b64token>`.
fn careful_credentials(value: &http::HeaderValue) -> Result<(Scheme, &str), Rejection> {
    let value = value.to_str().map_err(|_| {
        Rejection::InvalidToken(VerifyError::Malformed("Authorization header is not ASCII"))
    })?;
    let (scheme, _) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("dpop") {
        return careful_token(value, "the DPoP token is not a token68").map(|t| (Scheme::Dpop, t));
    }
    careful_bearer_str(value).map(|t| (Scheme::Bearer, t))
}

/// [`credentials`] step by step for `Bearer`: what is wrong with a header that is not
/// `Bearer <b64token>`.
#[cfg(test)]
fn careful_bearer(value: &http::HeaderValue) -> Result<&str, Rejection> {
    let value = value.to_str().map_err(|_| {
        Rejection::InvalidToken(VerifyError::Malformed("Authorization header is not ASCII"))
    })?;
    careful_bearer_str(value)
}

fn careful_bearer_str(value: &str) -> Result<&str, Rejection> {
    let (scheme, _) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Rejection::MissingToken);
    }
    careful_token(value, "the bearer token is not a b64token")
}

/// The token after the scheme, without the spaces around it: RFC 6750 §2.1 b64token (the
/// same syntax as RFC 9110 token68), `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn careful_token<'a>(value: &'a str, problem: &'static str) -> Result<&'a str, Rejection> {
    let (_, rest) = value.split_once(' ').unwrap_or((value, ""));
    let token = rest.trim_matches(' ');
    let body = token.trim_end_matches('=');
    if body.is_empty() || !all_b64token(body.as_bytes()) {
        return Err(Rejection::InvalidToken(VerifyError::Malformed(problem)));
    }
    Ok(token)
}

/// The usual header, `Bearer <b64token>` (the scheme in any case, spaces around the token),
/// checked in one pass over its bytes; `None` for anything else, which [`bearer_token`] then
/// reads step by step ([`careful_credentials`]) to say what is wrong. Accepts exactly the headers
/// `careful_bearer` accepts, with the same token: a header that passes here is visible ASCII, its first
/// space ends the scheme, and the token is what is left without the spaces around it.
/// (The one pass is for `Bearer` only: a `DPoP` request costs a proof check anyway.)
fn well_formed_bearer(value: &[u8]) -> Option<&str> {
    let token = cut_bearer(value)?;
    let mut body = token;
    while let [rest @ .., b'='] = body {
        body = rest;
    }
    if body.is_empty() || !all_b64token(body) {
        return None;
    }
    std::str::from_utf8(token).ok()
}

/// The token of the one `Authorization: Bearer <token>` header as [`well_formed_bearer`]
/// cuts it, its characters not yet checked; `None` for anything else.
fn plain_bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    cut_bearer(value.as_bytes())
}

/// What follows `Bearer ` (the scheme in any case) without the spaces around it, if anything.
fn cut_bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, mut token) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    while let [b' ', rest @ ..] = token {
        token = rest;
    }
    while let [rest @ .., b' '] = token {
        token = rest;
    }
    (!token.is_empty()).then_some(token)
}

/// RFC 6750 §2.1 b64token characters: ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/".
/// Every byte is looked at (no early exit), so the loop is vectorized: the token is most of
/// the header, 0.4–2 KB.
fn all_b64token(bytes: &[u8]) -> bool {
    bytes.iter().fold(true, |ok, &b| {
        ok & (b.is_ascii_alphanumeric() | matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
    })
}

fn query_has_token(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes()).any(|(name, _)| name == "access_token")
    })
}

fn too_large() -> Response<Full<Bytes>> {
    json_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        br#"{"error":"invalid_request","error_description":"the request body is too large"}"#,
    )
}

/// Where a request goes once its token is accepted.
enum Next<B> {
    /// To the inner service.
    Call(Request<B>),
    /// Its body is read first, for the scope policy.
    ReadBody(Parts, B, Auth),
    /// Nowhere: this answer.
    Reject(Response<Full<Bytes>>),
}

/// Where a request goes once its body is read.
enum Decided<B> {
    /// To the inner service.
    Call(Request<B>),
    /// To the inner service, and its answer through this list filter.
    #[cfg_attr(not(feature = "policy"), allow(dead_code))]
    Listed(Request<B>, ListFilterBox),
    /// Nowhere: this answer.
    Reject(Response<Full<Bytes>>),
}

/// Logs a rejection and builds its response, with the challenge for the request's resource.
fn reject<B>(guard: &Guard, req: &Request<B>, rejection: Rejection) -> Response<Full<Bytes>> {
    reject_parts(guard, req.headers(), req.extensions(), req.uri(), rejection)
}

fn reject_parts(
    guard: &Guard,
    headers: &HeaderMap,
    extensions: &http::Extensions,
    uri: &http::Uri,
    rejection: Rejection,
) -> Response<Full<Bytes>> {
    let resource = resource_of(guard, headers, extensions);
    log_rejection(&rejection, uri.path());
    guard.count(rejection_result(&rejection));
    let dpop = guard.dpop().map(|dpop| dpop.challenge(headers));
    rejection.into_response_with(&resource.metadata_url(), guard.challenge_scopes(), dpop)
}

/// The resource a request is for: the configured one, borrowed, unless trusted-proxy mode
/// builds it from the request (only then is the peer's address looked up).
fn resource_of<'g>(
    guard: &'g Guard,
    headers: &HeaderMap,
    extensions: &http::Extensions,
) -> std::borrow::Cow<'g, crate::resource::ResourceUrl> {
    if guard.trusted_proxies().is_empty() {
        return std::borrow::Cow::Borrowed(guard.resource());
    }
    guard.resource_for(headers, crate::forwarded::peer_addr(extensions))
}

/// The checks that never wait: the query string, the `Authorization` header and its scheme,
/// then the token's size and the verified-token cache ([`Authenticator::lookup`](crate::authenticator::Authenticator::lookup)).
/// Returns what the cache said, the time the token was checked at, and the scheme.
fn authenticate_now<B>(
    guard: &Guard,
    req: &Request<B>,
) -> Result<(Lookup, i64, Scheme), Rejection> {
    if query_has_token(req.uri().query()) {
        return Err(Rejection::InvalidRequest(
            "access tokens are not accepted in the query string; send them in the Authorization header",
        ));
    }
    // The usual request: one `Bearer` header whose token the verified-token cache holds. Its
    // bytes are looked up before its characters are checked: a cached token was checked when
    // it was verified, and the lookup compares every byte. Anything else (a miss, a refusal)
    // takes the careful way below, which says exactly what is wrong.
    if let Some(raw) = plain_bearer(req.headers())
        && !guard.dpop().is_some_and(|dpop| dpop.required())
    {
        let resource = resource_of(guard, req.headers(), req.extensions());
        let now = now_unix();
        if let Ok(lookup @ (Lookup::Accepted(_) | Lookup::Recheck { .. })) =
            guard.authenticator().lookup_bytes(raw, &resource, now)
        {
            return Ok((lookup, now, Scheme::Bearer));
        }
    }
    let (scheme, token) = credentials(req.headers())?;
    match (scheme, guard.dpop()) {
        (Scheme::Bearer, Some(dpop)) if dpop.required() => {
            return Err(Rejection::WrongScheme(
                "this resource accepts DPoP-bound tokens only: present the token with the DPoP scheme and a DPoP proof",
            ));
        }
        (Scheme::Dpop, None) => {
            return Err(Rejection::WrongScheme(
                "this resource does not accept the DPoP scheme: present a bearer token",
            ));
        }
        _ => {}
    }
    let resource = resource_of(guard, req.headers(), req.extensions());
    let now = now_unix();
    match guard.authenticator().lookup(token, &resource, now) {
        Ok(lookup) => Ok((lookup, now, scheme)),
        Err(err) => Err(Rejection::from_verify_error(err)),
    }
}

/// The rest of the token's checks, that may wait: the verifier, or its recheck of a cached
/// token ([`Authenticator::resolve`](crate::authenticator::Authenticator::resolve)); then the
/// binding: a bound `Bearer` token is refused, a `DPoP` one needs its proof.
async fn authenticate_later<B>(
    guard: Arc<Guard>,
    req: Request<B>,
    lookup: Lookup,
    now: i64,
    scheme: Scheme,
) -> Result<(Request<B>, Auth), Response<Full<Bytes>>> {
    let result = match credentials(req.headers()) {
        Ok((_, token)) => {
            let resource = resource_of(&guard, req.headers(), req.extensions());
            match guard
                .authenticator()
                .resolve(token, &resource, now, lookup)
                .await
                .map_err(Rejection::from_verify_error)
            {
                Ok(auth) => match (scheme, guard.dpop()) {
                    (Scheme::Dpop, Some(dpop)) => dpop
                        .check(&RequestView::of(&req), &resource, token, &auth, now)
                        .await
                        .map(|()| auth),
                    (Scheme::Dpop, None) => Err(Rejection::WrongScheme(
                        "this resource does not accept the DPoP scheme: present a bearer token",
                    )),
                    (Scheme::Bearer, _) => refuse_bound_bearer(&auth).map(|()| auth),
                },
                Err(rejection) => Err(rejection),
            }
        }
        // Not reached: `authenticate_now` found this token in the same header.
        Err(rejection) => Err(rejection),
    };
    match result {
        Ok(auth) => Ok((req, auth)),
        Err(rejection) => Err(reject(&guard, &req, rejection)),
    }
}

/// After the token: the baseline scopes, then either the body (when the policy has per-method
/// or per-tool scopes and this is a POST) or the inner service, with [`Auth`] in the
/// request's extensions.
fn after_authentication<B>(guard: &Guard, req: Request<B>, auth: Auth) -> Next<B> {
    let policy = guard.policy();
    if !auth.has_scopes(policy.baseline().iter().map(String::as_str)) {
        let required = policy.baseline().to_vec();
        return Next::Reject(reject(
            guard,
            &req,
            Rejection::InsufficientScope { required },
        ));
    }
    if guard.needs_body() && req.method() == Method::POST {
        let mut req = req;
        forget_stream_position(guard, &mut req);
        let (parts, body) = req.into_parts();
        return Next::ReadBody(parts, body, auth);
    }
    let mut req = req;
    forget_stream_position(guard, &mut req);
    req.extensions_mut().insert::<Auth>(auth);
    guard.count(AuthResult::Ok);
    Next::Call(req)
}

/// With an access policy, `Last-Event-ID` is taken off: resuming a stream would replay
/// answers (a list among them) that the layer has not filtered, so the server starts afresh.
fn forget_stream_position<B>(guard: &Guard, req: &mut Request<B>) {
    #[cfg(feature = "policy")]
    if guard.enforcer().is_some() {
        req.headers_mut().remove(LAST_EVENT_ID);
    }
    #[cfg(not(feature = "policy"))]
    let _ = (guard, req);
}

/// The SSE resumption header (WHATWG HTML §9.2.4).
#[cfg(feature = "policy")]
const LAST_EVENT_ID: header::HeaderName = header::HeaderName::from_static("last-event-id");

/// After the body: the scopes of the JSON-RPC calls in it, read without copying them; the
/// request is put back together around the same bytes.
fn after_body<B: From<Bytes>>(guard: &Guard, parts: Parts, bytes: Bytes, auth: Auth) -> Decided<B> {
    let rejection = match peek_jsonrpc(&bytes) {
        Ok(calls) => {
            let required = guard.policy().required_for(&calls);
            if !auth.has_scopes(required.iter().map(String::as_str)) {
                Some(Rejection::InsufficientScope { required })
            } else {
                // A request reaches its body with the DPoP scheme only once its proof verified.
                #[cfg(feature = "policy")]
                match access_policy(
                    guard,
                    &auth,
                    &calls,
                    &bytes,
                    required,
                    super::dpop::presents_dpop(&parts.headers),
                ) {
                    PolicyAnswer::Pass => None,
                    PolicyAnswer::List(filter) => {
                        let mut req = Request::from_parts(parts, B::from(bytes));
                        // The answer is read: ask for it uncompressed.
                        req.headers_mut().remove(header::ACCEPT_ENCODING);
                        req.extensions_mut().insert::<Auth>(auth);
                        guard.count(AuthResult::Ok);
                        return Decided::Listed(req, filter);
                    }
                    PolicyAnswer::Reject(rejection) => Some(rejection),
                    PolicyAnswer::Answer(response) => {
                        // The caller is authenticated: the policy's refusal is counted with
                        // the policy's decisions.
                        guard.count(AuthResult::Ok);
                        return Decided::Reject(response);
                    }
                }
                #[cfg(not(feature = "policy"))]
                None
            }
        }
        Err(_) => Some(Rejection::InvalidRequest(
            "the body is not a JSON-RPC message",
        )),
    };
    if let Some(rejection) = rejection {
        return Decided::Reject(reject_parts(
            guard,
            &parts.headers,
            &parts.extensions,
            &parts.uri,
            rejection,
        ));
    }
    let mut req = Request::from_parts(parts, B::from(bytes));
    req.extensions_mut().insert::<Auth>(auth);
    guard.count(AuthResult::Ok);
    Decided::Call(req)
}

/// What the access policy makes of a body.
#[cfg(feature = "policy")]
enum PolicyAnswer {
    /// Nothing to say: on to the service.
    Pass,
    /// On to the service, and its answer (to a list request) through this filter.
    List(ListFilterBox),
    /// A rejection with a challenge (step-up 403, unreadable body 400).
    Reject(Rejection),
    /// This JSON-RPC answer in the service's place.
    Answer(Response<Full<Bytes>>),
}

/// The access policy's verdict on the calls in a body. A step-up names the scope policy's
/// scopes for these calls and the rule's step-up scopes.
#[cfg(feature = "policy")]
fn access_policy(
    guard: &Guard,
    auth: &Auth,
    calls: &[crate::jsonrpc::RpcCall<'_>],
    bytes: &[u8],
    mut required: Vec<String>,
    dpop: bool,
) -> PolicyAnswer {
    use crate::policy::Verdict;

    let Some(enforcer) = guard.enforcer() else {
        return PolicyAnswer::Pass;
    };
    match enforcer.check(auth, calls, bytes, dpop, guard.metrics()) {
        Verdict::Pass => match enforcer.list_filter(auth, calls, bytes) {
            Ok(None) => PolicyAnswer::Pass,
            Ok(Some(filter)) => PolicyAnswer::List(Box::new(filter)),
            Err(()) => PolicyAnswer::Reject(Rejection::InvalidRequest(
                "the body is not a JSON-RPC message with unique member names",
            )),
        },
        Verdict::StepUp(scopes) => {
            for scope in scopes {
                if !required.contains(&scope) {
                    required.push(scope);
                }
            }
            PolicyAnswer::Reject(Rejection::InsufficientScope { required })
        }
        Verdict::NeedsDpop => PolicyAnswer::Reject(Rejection::WrongScheme(
            "this tool accepts DPoP-bound tokens only: present the token with the DPoP scheme and a DPoP proof",
        )),
        Verdict::Unreadable => PolicyAnswer::Reject(Rejection::InvalidRequest(
            "the body is not a JSON-RPC message with unique member names",
        )),
        Verdict::Refuse(body) => {
            tracing::debug!(target: "mcp_oauth::policy", "a call was refused by the access policy");
            let mut response = match body {
                Some(body) => Response::new(Full::new(body)),
                None => {
                    let mut r = Response::new(Full::new(Bytes::new()));
                    *r.status_mut() = StatusCode::ACCEPTED;
                    r
                }
            };
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            PolicyAnswer::Answer(response)
        }
    }
}

/// What a rejection counts as in `mcp_oauth_auth_results_total`.
fn rejection_result(rejection: &Rejection) -> AuthResult {
    match rejection {
        Rejection::MissingToken => AuthResult::MissingToken,
        Rejection::InvalidRequest(_) => AuthResult::InvalidRequest,
        Rejection::InvalidToken(_) => AuthResult::InvalidToken,
        Rejection::InsufficientScope { .. } => AuthResult::InsufficientScope,
        Rejection::Unavailable(_) => AuthResult::Unavailable,
        Rejection::WrongScheme(_) => AuthResult::WrongScheme,
        Rejection::InvalidProof(crate::dpop::DpopError::Unavailable(_)) => AuthResult::Unavailable,
        Rejection::InvalidProof(_) => AuthResult::InvalidDpopProof,
    }
}

fn log_rejection(rejection: &Rejection, path: &str) {
    match rejection {
        Rejection::InvalidToken(err) | Rejection::Unavailable(err) => {
            tracing::debug!(target: "mcp_oauth::auth", status = rejection.status().as_u16(), kind = ?err.kind(), reason = %err, path, "request rejected");
        }
        Rejection::InvalidProof(err) => {
            tracing::debug!(target: "mcp_oauth::auth", status = rejection.status().as_u16(), kind = ?err.kind(), reason = %err, path, "request rejected: DPoP proof");
        }
        Rejection::WrongScheme(reason) => {
            tracing::debug!(target: "mcp_oauth::auth", status = rejection.status().as_u16(), reason, path, "request rejected: authorization scheme");
        }
        _ => {
            tracing::debug!(target: "mcp_oauth::auth", status = rejection.status().as_u16(), path, "request rejected")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                header::AUTHORIZATION,
                http::HeaderValue::from_str(v).expect("ascii"),
            );
        }
        h
    }

    #[test]
    fn scheme_is_case_insensitive_and_token_is_b64token() {
        for ok in ["Bearer abc", "bearer abc.def-_~+/==", "BEARER  abc "] {
            assert!(bearer_token(&headers(&[ok])).is_ok(), "{ok}");
        }
        assert!(matches!(
            bearer_token(&headers(&[])),
            Err(Rejection::MissingToken)
        ));
        assert!(matches!(
            bearer_token(&headers(&["Basic YTpi"])),
            Err(Rejection::MissingToken)
        ));
        assert!(matches!(
            bearer_token(&headers(&["Bearerabc"])),
            Err(Rejection::MissingToken)
        ));
        for bad in [
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer a\"b",
            "Bearer ===",
            "Bearer a,b",
        ] {
            assert!(
                matches!(
                    bearer_token(&headers(&[bad])),
                    Err(Rejection::InvalidToken(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            bearer_token(&headers(&["Bearer a", "Bearer b"])),
            Err(Rejection::InvalidRequest(_))
        ));
    }

    #[test]
    fn each_rejection_counts_under_its_reason() {
        use crate::dpop::DpopError;
        let cases = [
            (Rejection::MissingToken, "missing_token"),
            (Rejection::InvalidRequest("x"), "invalid_request"),
            (
                Rejection::InvalidToken(VerifyError::Expired),
                "invalid_token",
            ),
            (
                Rejection::InsufficientScope {
                    required: vec!["admin".into()],
                },
                "insufficient_scope",
            ),
            (Rejection::Unavailable(VerifyError::Expired), "unavailable"),
            (Rejection::WrongScheme("x"), "wrong_scheme"),
            (
                Rejection::InvalidProof(DpopError::Missing),
                "invalid_dpop_proof",
            ),
            (
                Rejection::InvalidProof(DpopError::Unavailable("store down".into())),
                "unavailable",
            ),
        ];
        for (rejection, label) in cases {
            assert_eq!(rejection_result(&rejection).label(), label, "{rejection:?}");
        }
    }

    #[test]
    fn query_tokens_are_detected() {
        assert!(query_has_token(Some("access_token=abc")));
        assert!(query_has_token(Some("x=1&access_token=")));
        assert!(query_has_token(Some("access%5Ftoken=abc")));
        assert!(!query_has_token(Some("token=abc")));
        assert!(!query_has_token(None));
    }

    #[test]
    fn the_one_pass_check_agrees_with_the_careful_reading() {
        // Every header of up to 5 characters from this alphabet after each prefix: the one
        // pass accepts exactly what the step-by-step reading accepts, with the same token.
        let alphabet = [' ', '=', 'a', 'Z', '9', '-', '/', '\t', ',', '"'];
        let prefixes = [
            "Bearer ", "bearer ", "BEARER  ", "Bearer", "Bearer=", "Basic ", "",
        ];
        let mut accepted = 0;
        let mut stack = vec![String::new()];
        while let Some(tail) = stack.pop() {
            for prefix in prefixes {
                let text = format!("{prefix}{tail}");
                let value = http::HeaderValue::from_str(&text).expect("visible ASCII or tab");
                let careful = careful_bearer(&value).ok();
                assert_eq!(well_formed_bearer(value.as_bytes()), careful, "{text:?}");
                accepted += usize::from(careful.is_some());
                // The cache's first look cuts every accepted header's token the same way (it
                // may also cut tokens the careful reading refuses: no cache holds those).
                let mut headers = HeaderMap::new();
                headers.insert(header::AUTHORIZATION, value.clone());
                if let Some(token) = careful {
                    assert_eq!(plain_bearer(&headers), Some(token.as_bytes()), "{text:?}");
                }
            }
            if tail.len() < 5 {
                stack.extend(alphabet.iter().map(|c| format!("{tail}{c}")));
            }
        }
        assert!(
            accepted > 1000,
            "the alphabet reaches accepted tokens ({accepted})"
        );
        // Bytes that are not visible ASCII: the careful reading says so, the one pass declines.
        let value = http::HeaderValue::from_bytes(b"Bearer abc\xff").expect("opaque bytes");
        assert_eq!(well_formed_bearer(value.as_bytes()), None);
        assert!(matches!(
            careful_bearer(&value),
            Err(Rejection::InvalidToken(VerifyError::Malformed(
                "Authorization header is not ASCII"
            )))
        ));
    }

    #[test]
    fn body_bytes_keep_one_frame_and_join_several_within_the_limit() {
        let mut one = BodyBytes::default();
        let frame = Bytes::from_static(b"{\"method\":\"ping\"}");
        one.push(frame.clone(), 64).expect("within the limit");
        let bytes = one.into_bytes();
        assert_eq!(bytes, frame);
        // The same allocation: one frame is not copied.
        assert_eq!(bytes.as_ptr(), frame.as_ptr());

        let mut several = BodyBytes::default();
        for part in [&b"{\"meth"[..], b"od\":", b"\"ping\"}"] {
            several
                .push(Bytes::copy_from_slice(part), 64)
                .expect("within the limit");
        }
        assert_eq!(several.into_bytes(), frame);

        let mut over = BodyBytes::default();
        over.push(Bytes::from_static(b"12345"), 8).expect("5 of 8");
        assert_eq!(over.push(Bytes::from_static(b"6789"), 8), Err(()));
        let mut exact = BodyBytes::default();
        exact.push(Bytes::from_static(b"1234"), 8).expect("4 of 8");
        exact.push(Bytes::from_static(b"5678"), 8).expect("8 of 8");
        assert_eq!(exact.into_bytes(), Bytes::from_static(b"12345678"));
    }

    /// A body that hands out its frames one by one, each after a `Pending`, as a socket does.
    struct Trickle {
        frames: std::collections::VecDeque<Bytes>,
        ready: bool,
    }

    impl From<Bytes> for Trickle {
        fn from(bytes: Bytes) -> Self {
            Self {
                frames: [bytes].into(),
                ready: true,
            }
        }
    }

    impl Body for Trickle {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            if !self.ready {
                self.ready = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.ready = false;
            Poll::Ready(
                self.frames
                    .pop_front()
                    .map(|b| Ok(http_body::Frame::data(b))),
            )
        }
    }

    #[tokio::test]
    async fn a_body_in_several_frames_is_read_whole_for_the_policy_and_passed_on() {
        use tower::ServiceExt;

        let key = crate::testing::TestKey::hs256(&[7u8; 32]);
        let oauth = crate::OAuth::builder()
            .resource("https://mcp.example.com/mcp")
            .authorization_server("https://as.example.com")
            .tool_scopes("admin_action", ["admin"])
            .verifier(
                crate::verify::JwtVerifier::builder()
                    .issuer("https://as.example.com")
                    .hmac_secret([7u8; 32].as_slice())
                    .build()
                    .expect("verifier"),
            )
            .mirror_authorization_server(false)
            .build()
            .expect("oauth");
        let token = |scope: &str| {
            key.token()
                .iss("https://as.example.com")
                .aud("https://mcp.example.com/mcp")
                .scope(scope)
                .exp_in(300)
                .sign()
        };
        let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin_action","arguments":{}}}"#;
        let request = |token: String| {
            let frames = call
                .as_bytes()
                .chunks(16)
                .map(Bytes::copy_from_slice)
                .collect();
            Request::post("/mcp")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Trickle {
                    frames,
                    ready: false,
                })
                .expect("request")
        };
        let service = || {
            tower::ServiceBuilder::new()
                .layer(oauth.layer())
                .service(tower::service_fn(|req: Request<Trickle>| async move {
                    let has_auth = req.extensions().get::<Auth>().is_some();
                    let body = http_body_util::BodyExt::collect(req.into_body())
                        .await?
                        .to_bytes();
                    assert!(has_auth, "Auth in the extensions");
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(body)))
                }))
        };
        // Twice each: the first use verifies the token, the second takes it from the cache.
        for _ in 0..2 {
            let res = service()
                .oneshot(request(token("admin")))
                .await
                .expect("infallible");
            assert_eq!(res.status(), StatusCode::OK);
            let body = http_body_util::BodyExt::collect(res.into_body())
                .await
                .expect("body")
                .to_bytes();
            assert_eq!(body, call.as_bytes());

            let res = service()
                .oneshot(request(token("mcp:read")))
                .await
                .expect("infallible");
            assert_eq!(res.status(), StatusCode::FORBIDDEN);
            assert_eq!(
                res.headers()[header::WWW_AUTHENTICATE],
                r#"Bearer error="insufficient_scope", error_description="the access token lacks a scope this request needs", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="admin""#
            );
        }
    }

    #[test]
    fn the_response_future_is_send() {
        fn assert_send<T: Send>() {}
        type Inner = tower::util::BoxCloneSyncService<
            Request<axum::body::Body>,
            Response<axum::body::Body>,
            std::convert::Infallible,
        >;
        assert_send::<ResponseFuture<Inner, axum::body::Body>>();
    }
}
