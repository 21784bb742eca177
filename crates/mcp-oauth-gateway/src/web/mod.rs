//! The gateway's own pages (an approval page, a page for a user's upstream connections):
//! who is signed in, the sign-in that gets them there, forms that only the page itself can
//! post, and the HTML frame.
//!
//! # Signing in
//!
//! A page is for a user of the gateway's **own authorization server** (the embedded one, with
//! local users as `mcp-oauth dev` has them, or the users of a provider with `--login`). The
//! pages are a first-party client of that server (client id [`CLIENT_ID`], registered by
//! [`Pages::embedded`]): a browser reaching a page without a session is sent to the server's
//! `/authorize` (authorization code with PKCE S256), signs in and consents there, and comes
//! back to [`CALLBACK_PATH`], where:
//!
//! - the `state` must be one this gateway issued and not used yet (it is taken from the store,
//!   so a replay fails on every instance sharing the store), and the browser must carry the
//!   binding cookie set when that sign-in started (a `state` started in another browser is
//!   refused, as the authorization server's proxy binds its own steps);
//! - the code is exchanged in-process (the server's token endpoint is called as a service,
//!   without a network hop to the gateway's own public URL), the access token verified with
//!   the server's keys and then dropped;
//! - the browser gets a session cookie, sealed (AES-256-GCM) under the gateway's key:
//!   subject, email, groups, client, the token's identity claims and an expiry
//!   ([`Pages::session_ttl`], default 30 minutes). `HttpOnly`, `SameSite=Lax`, `Path=/`; on
//!   an `https` gateway `Secure` with the `__Host-` prefix. Nothing in it can be changed
//!   without the key; an expired one is refused.
//!
//! The browser then goes back to the page it asked for: the return path is kept with the
//! `state` in the store (never read from the callback's query), and only a path on this
//! gateway (starting with one `/`) is accepted.
//!
//! Signing out ([`SIGN_OUT_PATH`]) revokes the session, not only the cookie in this browser:
//! a mark keyed by the session's id goes to the store until the cookie's own expiry, and every
//! page request checks it, so a copy of the cookie is refused from then on, on every instance
//! sharing the store. Starting a sign-in is limited per client address
//! ([`Pages::sign_in_limit`]).
//!
//! With an external issuer (`--issuer`), the gateway has no sign-in of its own: the pages
//! answer [`Pages::unavailable`]'s message (HTTP 503) and nothing else.
//!
//! # Writing a page
//!
//! A handler takes [`SignedIn`] (an extractor: the user, or a redirect to sign in that comes
//! back to this page; a `POST` without a session is refused, not redirected) with the
//! [`Pages`] in its state ([`axum::extract::FromRef`]). A form carries
//! [`Visitor::csrf_field`]; its handler calls [`Pages::check_form`] (the token must be this
//! session's, and the `Origin` this gateway's). [`Pages::page`] wraps the body in the frame
//! (no framing, no caching, a CSP that allows forms to this origin only); [`escape`] every
//! value that did not come from the page's own code. Mount the page's routes beside
//! [`Pages::router`] (sign-in callback and sign-out), under [`PREFIX`].
//!
//! ```
//! use axum::{Router, extract::State, response::Response, routing::get};
//! use mcp_oauth_gateway::web::{self, Pages, SignedIn};
//!
//! async fn hello(State(pages): State<Pages>, SignedIn(user): SignedIn) -> Response {
//!     let body = format!("<h1>Hello</h1><p>{}</p>", web::escape(user.subject()));
//!     pages.page(http::StatusCode::OK, "Hello", &body)
//! }
//!
//! fn routes(pages: Pages) -> Router {
//!     Router::new()
//!         .route("/gateway/hello", get(hello))
//!         .with_state(pages.clone())
//!         .merge(pages.router())
//! }
//! # let _ = routes(Pages::unavailable("no sign-in here"));
//! ```

mod limit;
mod session;
mod signin;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRef, FromRequestParts, OriginalUri};
use axum::response::{IntoResponse as _, Response};
use http::request::Parts;
use http::{HeaderMap, Method, StatusCode, header};
use mcp_oauth::auth_server::page_kit::{self, Sealer};
use mcp_oauth::auth_server::{AuthServer, RateLimit};
use mcp_oauth::verify::TokenVerifier;
use serde_json::{Map, Value};

pub use session::Visitor;

/// Where the gateway's pages live: every path of theirs starts with it.
pub const PREFIX: &str = "/gateway";
/// The redirect URI of the pages' sign-in (the path; the URI is the gateway's URL with it).
pub const CALLBACK_PATH: &str = "/gateway/signed-in";
/// `GET` here with `?return=PATH` starts a sign-in that comes back to `PATH` (a path on this
/// gateway).
pub const SIGN_IN_PATH: &str = "/gateway/sign-in";
/// `POST` here (with the form token) ends the session.
pub const SIGN_OUT_PATH: &str = "/gateway/sign-out";
/// The client id the pages use at the gateway's own authorization server.
pub const CLIENT_ID: &str = "mcp-oauth-gateway-pages";

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    page_kit::escape(text)
}

/// The pages' sign-in and session; cheap to clone. See the [module docs](self).
#[derive(Clone)]
pub struct Pages(Arc<Inner>);

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pages")
            .field("origin", &self.0.origin)
            .field("available", &self.0.sign_in.is_some())
            .finish_non_exhaustive()
    }
}

struct Inner {
    /// The gateway's origin (`https://gw.example`), without a trailing `/`.
    origin: String,
    secure: bool,
    sign_in: Option<signin::SignIn>,
    /// Why there is no sign-in, when there is none.
    unavailable: String,
    sealer: Option<Sealer>,
    session_ttl: Duration,
    clock: Arc<dyn Fn() -> i64 + Send + Sync>,
    /// The limit on starting sign-ins per client address, and its buckets (made at first use,
    /// with the clock then set).
    start_limit: Option<RateLimit>,
    start_limiter: OnceLock<Option<mcp_oauth::policy::RateLimiter>>,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Why [`Pages::embedded`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PagesError {
    /// The gateway's URL is not an `http(s)` origin.
    #[error("the gateway's URL {0:?} is not an http(s) URL")]
    Url(String),
    /// The key is not 32 bytes.
    #[error("the pages' key: {0}")]
    Key(String),
    /// The pages' client could not be registered.
    #[error("the pages' client cannot be registered at the gateway's authorization server: {0}")]
    Register(String),
}

impl Pages {
    /// Pages whose users sign in at `server` (the gateway's own authorization server), served
    /// at `gateway_url` (its public URL; only the origin counts), with sessions sealed under
    /// `key` (32 bytes; the same on every instance behind one URL). Registers the pages'
    /// client ([`CLIENT_ID`], redirect URI `gateway_url` + [`CALLBACK_PATH`]) at the server.
    ///
    /// # Errors
    ///
    /// A URL that is not `http(s)`, a key of another length, or a store that fails.
    pub async fn embedded(
        server: AuthServer,
        gateway_url: &str,
        key: &[u8],
    ) -> Result<Self, PagesError> {
        let url = url::Url::parse(gateway_url.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| PagesError::Url(gateway_url.to_owned()))?;
        let origin = url.origin().ascii_serialization();
        let sealer = Sealer::new(key).map_err(|e| PagesError::Key(e.to_string()))?;
        let sign_in = signin::SignIn::register(server, &origin)
            .await
            .map_err(PagesError::Register)?;
        Ok(Self(Arc::new(Inner {
            secure: url.scheme() == "https",
            origin,
            sign_in: Some(sign_in),
            unavailable: String::new(),
            sealer: Some(sealer),
            session_ttl: Duration::from_secs(30 * 60),
            clock: Arc::new(unix_now),
            start_limit: Some(RateLimit::new(limit::DEFAULT.0, limit::DEFAULT.1)),
            start_limiter: OnceLock::new(),
        })))
    }

    /// Pages that cannot be used: every one answers HTTP 503 with `reason` (for a gateway
    /// whose tokens come from an external issuer, with no sign-in of its own).
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Self(Arc::new(Inner {
            origin: String::new(),
            secure: false,
            sign_in: None,
            unavailable: reason.into(),
            sealer: None,
            session_ttl: Duration::ZERO,
            clock: Arc::new(unix_now),
            start_limit: None,
            start_limiter: OnceLock::new(),
        }))
    }

    fn inner_mut(&mut self) -> Option<&mut Inner> {
        Arc::get_mut(&mut self.0)
    }

    /// How long a session lasts (default 30 minutes). Call before cloning.
    #[must_use]
    pub fn session_ttl(mut self, ttl: Duration) -> Self {
        if let Some(inner) = self.inner_mut() {
            inner.session_ttl = ttl;
        }
        self
    }

    /// How many sign-ins one client address may start (`None`: no limit). Each visit without
    /// a session starts one and keeps a pending record in the store for 10 minutes; over the
    /// limit, the visitor gets HTTP 429 with `Retry-After` and a page that says when to try
    /// again. The buckets are kept in the authorization server's store, so instances sharing
    /// it share them; the client address is the one the server counts its own limits by
    /// (its [trusted proxies](mcp_oauth::auth_server::AuthServerBuilder::trusted_proxies)).
    /// Default: 20 per minute, bursts of 20. Call before cloning.
    #[must_use]
    pub fn sign_in_limit(mut self, limit: Option<RateLimit>) -> Self {
        if let Some(inner) = self.inner_mut() {
            inner.start_limit = limit;
        }
        self
    }

    /// The limiter of sign-in starts, if there is a limit.
    fn start_limiter(&self) -> Option<&mcp_oauth::policy::RateLimiter> {
        self.0
            .start_limiter
            .get_or_init(|| {
                let store = self.0.sign_in.as_ref()?.server.store().clone();
                limit::limiter(self.0.start_limit?, store, self.0.clock.clone())
            })
            .as_ref()
    }

    /// Reads the time (Unix seconds) from `clock` (tests). Call before cloning.
    #[doc(hidden)]
    #[must_use]
    pub fn clock(mut self, clock: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        if let Some(inner) = self.inner_mut() {
            inner.clock = Arc::new(clock);
        }
        self
    }

    /// Whether users can sign in to the pages.
    pub fn is_available(&self) -> bool {
        self.0.sign_in.is_some()
    }

    /// The gateway's origin (`https://gw.example`); empty when unavailable.
    pub fn origin(&self) -> &str {
        &self.0.origin
    }

    /// The absolute URL of a page at `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.0.origin)
    }

    pub(crate) fn now(&self) -> i64 {
        (self.0.clock)()
    }

    /// The routes of the sign-in itself: the callback ([`CALLBACK_PATH`]), the sign-in link
    /// ([`SIGN_IN_PATH`]), the sign-out ([`SIGN_OUT_PATH`]), and [`PREFIX`] itself (who is
    /// signed in, with a sign-out button).
    pub fn router(&self) -> Router {
        signin::router(self.clone())
    }

    /// The signed-in user of a request, from its session cookie: `None` without one, or
    /// when it is forged, altered, sealed under another key, expired, or signed out (a copy
    /// of the cookie too, on every instance sharing the store), or when the store cannot say
    /// whether it was (logged).
    pub async fn visitor(&self, headers: &HeaderMap) -> Option<Visitor> {
        match self.session(headers).await {
            Ok(visitor) => visitor,
            Err(e) => {
                tracing::error!(target: "mcp_oauth_gateway", "gateway pages: a session cannot be checked: {e}");
                None
            }
        }
    }

    /// The signed-in user of a request, or why the store cannot say.
    async fn session(&self, headers: &HeaderMap) -> Result<Option<Visitor>, String> {
        let Some(visitor) = session::read(self, headers) else {
            return Ok(None);
        };
        Ok((!session::is_revoked(self, &visitor).await?).then_some(visitor))
    }

    /// The page that says the pages are unavailable, when they are.
    fn unavailable_page(&self) -> Response {
        let body = format!(
            "<h1>Gateway pages are unavailable</h1><p class=\"error\">{}</p>",
            escape(&self.0.unavailable)
        );
        self.page(StatusCode::SERVICE_UNAVAILABLE, "Unavailable", &body)
    }

    /// A page in the frame: `body` is HTML (escape what it shows with [`escape`]). Forms may
    /// post to this origin only; the page cannot be framed or cached.
    pub fn page(&self, status: StatusCode, title: &str, body: &str) -> Response {
        page_kit::page(status, title, body, "'self'", None)
    }

    /// An error page: `message` (text) under `title`.
    pub fn error_page(&self, status: StatusCode, title: &str, message: &str) -> Response {
        let body = format!(
            "<h1>{}</h1><p class=\"error\">{}</p>",
            escape(title),
            escape(message)
        );
        self.page(status, title, &body)
    }

    /// Checks a form post: the `Origin` (when sent) must be this gateway's, a browser's
    /// `Sec-Fetch-Site` (when sent) `same-origin`, and `token` the form token of `visitor`'s
    /// session ([`Visitor::csrf_token`]).
    ///
    /// # Errors
    ///
    /// [`FormRefused`]: answer it (HTTP 403, a page saying to send the form from its page).
    pub fn check_form(
        &self,
        visitor: &Visitor,
        headers: &HeaderMap,
        token: &str,
    ) -> Result<(), FormRefused> {
        let origin_ok = headers
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .is_none_or(|o| o == self.0.origin);
        let site_ok = headers
            .get("sec-fetch-site")
            .and_then(|o| o.to_str().ok())
            .is_none_or(|s| s == "same-origin");
        let token_ok = self
            .0
            .sealer
            .as_ref()
            .is_some_and(|s| s.verify_mac(session::FORM_PURPOSE, visitor.session_id(), token));
        if origin_ok && site_ok && token_ok {
            Ok(())
        } else {
            Err(FormRefused(self.clone()))
        }
    }

    fn sealer(&self) -> Option<&Sealer> {
        self.0.sealer.as_ref()
    }
}

/// A form post [`Pages::check_form`] refused; as a response, HTTP 403 with a page that says
/// to send the form from its page.
#[derive(Debug)]
pub struct FormRefused(Pages);

impl axum::response::IntoResponse for FormRefused {
    fn into_response(self) -> Response {
        self.0.error_page(
            StatusCode::FORBIDDEN,
            "This form cannot be accepted",
            "It was not sent from this gateway's page in this session. Open the page again and send it from there.",
        )
    }
}

/// The signed-in user of a page request; see the [module docs](self). When there is none,
/// a `GET` or `HEAD` is redirected to sign in (and back to this page afterwards), any other
/// method is refused (HTTP 403), and unavailable pages answer HTTP 503.
#[derive(Debug, Clone)]
pub struct SignedIn(pub Visitor);

impl<S> FromRequestParts<S> for SignedIn
where
    Pages: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let pages = Pages::from_ref(state);
        if !pages.is_available() {
            return Err(pages.unavailable_page());
        }
        match pages.session(&parts.headers).await {
            Ok(Some(visitor)) => return Ok(Self(visitor)),
            Ok(None) => {}
            Err(e) => {
                return Err(failure(
                    &pages,
                    &format!("a session cannot be checked: {e}"),
                ));
            }
        }
        if parts.method != Method::GET && parts.method != Method::HEAD {
            return Err(pages.error_page(
                StatusCode::FORBIDDEN,
                "You are not signed in",
                "Your session has ended. Open the page again to sign in.",
            ));
        }
        let uri = parts
            .extensions
            .get::<OriginalUri>()
            .map_or_else(|| parts.uri.clone(), |o| o.0.clone());
        let back = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        Err(signin::start(&pages, &back, parts).await)
    }
}

/// A page that only says `message` (HTTP 500) and logs `detail`.
fn failure(pages: &Pages, detail: &str) -> Response {
    tracing::error!(target: "mcp_oauth_gateway", "gateway pages: {detail}");
    pages.error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The gateway could not complete this step. Try again later.",
    )
}

/// The claims of a verified token that a session keeps (identity, not the token's own).
fn identity_claims(claims: &Map<String, Value>) -> Map<String, Value> {
    const TOKEN_OWN: [&str; 10] = [
        "iss",
        "aud",
        "exp",
        "iat",
        "nbf",
        "jti",
        "scope",
        "sid",
        "cnf",
        "client_id",
    ];
    claims
        .iter()
        .filter(|(k, _)| !TOKEN_OWN.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn redirect(location: &str, cookies: &[String]) -> Response {
    let mut response = (StatusCode::SEE_OTHER, ()).into_response();
    if let Ok(value) = http::HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    for cookie in cookies {
        if let Ok(value) = http::HeaderValue::from_str(cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

type Verifier = Arc<dyn TokenVerifier>;
