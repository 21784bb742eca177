//! The pages' sign-in at the gateway's own authorization server: authorization code with
//! PKCE, a single-use `state` bound to the browser, the code exchanged in-process.

use std::net::SocketAddr;
use std::sync::Arc;

use aws_lc_rs::digest;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Form, Query, State};
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, StatusCode, header};
use mcp_oauth::auth_server::page_kit::{append_cookie, cookie, hash_hex, random_token};
use mcp_oauth::auth_server::store::Kind;
use mcp_oauth::auth_server::{AuthServer, ClientSpec, GrantType};
use serde::{Deserialize, Serialize};

use super::session::{self, Visitor};
use super::{CALLBACK_PATH, CLIENT_ID, PREFIX, Pages, SIGN_OUT_PATH, Verifier, redirect};

/// How long a started sign-in may take (seconds).
const SIGN_IN_TTL: i64 = 600;
/// What the binding cookie of a sign-in is a MAC of (with its `state`).
const BINDING: &str = "mcp-oauth-gateway page sign-in";
/// The sealing context of a pending sign-in in the store.
const PENDING: &str = "mcp-oauth-gateway page sign-in pending";
/// The store key prefix of pending sign-ins (beside the proxy's transactions).
const KEY_PREFIX: &str = "gateway-pages:";
/// The largest token answer read.
const MAX_TOKEN_ANSWER: usize = 64 * 1024;

/// The pages as a client of the gateway's authorization server.
pub(super) struct SignIn {
    pub(super) server: AuthServer,
    /// The server's endpoints as a service (the token endpoint is called in-process).
    service: Router,
    verifier: Verifier,
    authorize: String,
    token_path: String,
    redirect_uri: String,
}

impl SignIn {
    pub(super) async fn register(server: AuthServer, origin: &str) -> Result<Self, String> {
        let redirect_uri = format!("{origin}{CALLBACK_PATH}");
        let client = ClientSpec {
            client_id: CLIENT_ID.to_owned(),
            redirect_uris: vec![redirect_uri.clone()],
            grant_types: vec![GrantType::AuthorizationCode],
            client_name: Some("the gateway's own pages".to_owned()),
            ..ClientSpec::default()
        };
        server.add_client(client).await.map_err(|e| e.to_string())?;
        let metadata = server.metadata();
        let authorize = metadata
            .authorization_endpoint
            .clone()
            .ok_or("the server has no authorization endpoint")?;
        let token_path = metadata
            .token_endpoint
            .as_deref()
            .and_then(|t| url::Url::parse(t).ok())
            .map(|u| u.path().to_owned())
            .ok_or("the server has no token endpoint")?;
        let verifier: Verifier = Arc::new(server.verifier().map_err(|e| e.to_string())?);
        Ok(Self {
            service: server.router(),
            server,
            verifier,
            authorize,
            token_path,
            redirect_uri,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct Pending {
    verifier: String,
    back: String,
}

/// A path on this gateway to come back to after signing in, if `back` is one: a single `/`
/// then printable ASCII without `\` (never `//host`, a scheme, or a control character).
pub(super) fn safe_return(back: &str) -> Option<&str> {
    let ok = back.starts_with('/')
        && !back.starts_with("//")
        && back.len() <= 2048
        && back.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    ok.then_some(back)
}

/// The binding cookie's name for a sign-in (one per sign-in: several may run at once).
fn binding_name(pages: &Pages, state: &str) -> String {
    let prefix = if pages.0.secure {
        "__Host-mcp_gateway_signin_"
    } else {
        "mcp_gateway_signin_"
    };
    let h = hash_hex(state);
    format!("{prefix}{}", h.get(..16).unwrap_or(&h))
}

/// Starts a sign-in that comes back to `back`, for the browser of `request`: counted against
/// the limit of its client address ([`super::limit`]), then a pending record in the store,
/// the binding cookie, and the redirect to the authorization server.
pub(super) async fn start(pages: &Pages, back: &str, request: &http::request::Parts) -> Response {
    let (Some(sign_in), Some(sealer)) = (&pages.0.sign_in, pages.sealer()) else {
        return pages.unavailable_page();
    };
    let client = super::limit::client_addr(pages, &request.headers, &request.extensions);
    if let Err(refused) = super::limit::check(pages, client).await {
        return refused;
    }
    let back = safe_return(back).unwrap_or(PREFIX).to_owned();
    let state = random_token();
    let verifier = random_token();
    let challenge = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()));
    let pending = serde_json::to_vec(&Pending { verifier, back }).unwrap_or_default();
    let Some(sealed) = sealer.seal(&pending, PENDING) else {
        return super::failure(pages, "cannot seal a pending sign-in");
    };
    let stored = sign_in
        .server
        .store()
        .put_if_absent(
            Kind::Transaction,
            &format!("{KEY_PREFIX}{}", hash_hex(&state)),
            sealed.into_bytes(),
            Some(super::unix_now() + SIGN_IN_TTL),
        )
        .await;
    if !matches!(stored, Ok(true)) {
        return super::failure(pages, &format!("cannot keep a pending sign-in: {stored:?}"));
    }
    let mut url = match url::Url::parse(&sign_in.authorize) {
        Ok(url) => url,
        Err(e) => return super::failure(pages, &format!("the authorization endpoint: {e}")),
    };
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", &sign_in.redirect_uri)
        .append_pair("state", &state)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let cookie = format!(
        "{}={}{}",
        binding_name(pages, &state),
        sealer.mac(BINDING, &state),
        session::attributes(pages, SIGN_IN_TTL.unsigned_abs())
    );
    redirect(url.as_str(), &[cookie])
}

#[derive(Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

async fn callback(State(pages): State<Pages>, request: axum::extract::Request) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .cloned();
    let headers = request.headers();
    let query = Query::<Callback>::try_from_uri(request.uri())
        .map(|q| q.0)
        .unwrap_or(Callback {
            code: None,
            state: None,
            error: None,
        });
    let (Some(sign_in), Some(sealer)) = (&pages.0.sign_in, pages.sealer()) else {
        return pages.unavailable_page();
    };
    let refused = |message: &str| {
        pages.error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in cannot continue",
            message,
        )
    };
    let Some(state) = query
        .state
        .as_deref()
        .filter(|s| !s.is_empty() && s.len() <= 128)
    else {
        return refused("The sign-in answer has no state. Open the page you wanted again.");
    };
    // Bound to the browser that started it: a state from another browser is refused.
    let bound = cookie(headers, &binding_name(&pages, state))
        .is_some_and(|tag| sealer.verify_mac(BINDING, state, &tag));
    if !bound {
        return refused(
            "This sign-in was not started in this browser, or it took too long. Open the page you wanted again.",
        );
    }
    // Single use, on every instance sharing the store.
    let taken = sign_in
        .server
        .store()
        .take(
            Kind::Transaction,
            &format!("{KEY_PREFIX}{}", hash_hex(state)),
        )
        .await;
    let pending = match taken {
        Ok(Some(data)) => String::from_utf8(data)
            .ok()
            .and_then(|s| sealer.open(&s, PENDING))
            .and_then(|p| serde_json::from_slice::<Pending>(&p).ok()),
        Ok(None) => None,
        Err(e) => return super::failure(&pages, &format!("the store: {e}")),
    };
    let Some(pending) = pending else {
        return refused(
            "This sign-in was already completed, or it took too long. Open the page you wanted again.",
        );
    };
    let clear_binding = format!(
        "{}={}",
        binding_name(&pages, state),
        session::attributes(&pages, 0)
    );
    // The state is spent: whatever the answer, the browser's binding for it goes too.
    let spent = |mut response: Response| {
        append_cookie(&mut response, &clear_binding);
        response
    };
    if let Some(error) = &query.error {
        return spent(pages.error_page(
            StatusCode::FORBIDDEN,
            "You were not signed in",
            &format!("The sign-in ended with {error}."),
        ));
    }
    let Some(code) = query.code.as_deref() else {
        return spent(refused("The sign-in answer has no code."));
    };
    let token = match exchange(sign_in, code, &pending.verifier, peer).await {
        Ok(token) => token,
        Err(e) => return spent(super::failure(&pages, &e)),
    };
    let claims = match sign_in.verifier.verify(&token).await {
        Ok(claims) => claims,
        Err(e) => return spent(super::failure(&pages, &format!("the pages' token: {e}"))),
    };
    let ttl = i64::try_from(pages.0.session_ttl.as_secs()).unwrap_or(i64::MAX);
    let visitor = Visitor::new(
        &claims,
        CLIENT_ID,
        random_token(),
        pages.now().saturating_add(ttl),
    );
    let Some(cookie) = session::set(&pages, &visitor) else {
        return super::failure(&pages, "cannot seal a session");
    };
    redirect(&pages.url(&pending.back), &[cookie, clear_binding])
}

/// The code exchanged at the server's token endpoint, called as a service.
async fn exchange(
    sign_in: &SignIn,
    code: &str,
    verifier: &str,
    peer: Option<ConnectInfo<SocketAddr>>,
) -> Result<String, String> {
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", code)
        .append_pair("redirect_uri", &sign_in.redirect_uri)
        .append_pair("client_id", CLIENT_ID)
        .append_pair("code_verifier", verifier)
        .finish();
    let mut request = http::Request::post(&sign_in.token_path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .map_err(|e| e.to_string())?;
    // Counted in the browser's rate-limit bucket, as its own requests are.
    if let Some(peer) = peer {
        request.extensions_mut().insert(peer);
    }
    let mut service = sign_in.service.clone();
    let response = match tower_service::Service::call(&mut service, request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), MAX_TOKEN_ANSWER)
        .await
        .map_err(|e| format!("the token answer: {e}"))?;
    let answer: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| format!("the token answer is not JSON ({status}): {e}"))?;
    if !status.is_success() {
        return Err(format!("the code was refused ({status}): {answer}"));
    }
    answer
        .get("access_token")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| "the token answer has no access_token".to_owned())
}

#[derive(Deserialize)]
struct SignOut {
    #[serde(default)]
    csrf: String,
}

async fn sign_out(
    State(pages): State<Pages>,
    headers: HeaderMap,
    Form(form): Form<SignOut>,
) -> Response {
    if !pages.is_available() {
        return pages.unavailable_page();
    }
    // An intact session (signed out already or not): the form must be its own, and then the
    // session is revoked, so that a copy of the cookie stops working too.
    if let Some(visitor) = session::read(&pages, &headers) {
        if let Err(refused) = pages.check_form(&visitor, &headers, &form.csrf) {
            return refused.into_response();
        }
        if let Err(e) = session::revoke(&pages, &visitor).await {
            return super::failure(&pages, &format!("a session cannot be signed out: {e}"));
        }
    }
    let mut response = pages.page(
        StatusCode::OK,
        "Signed out",
        "<h1>Signed out</h1><p>You are signed out of the gateway's pages.</p>",
    );
    if let Ok(value) = http::HeaderValue::from_str(&session::clear(&pages)) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// A `GET` of [`super::SIGN_IN_PATH`]`?return=PATH`: starts a sign-in that comes back to
/// `PATH` (a path on this gateway; anything else comes back to the pages' start).
async fn sign_in_link(
    State(pages): State<Pages>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    request: http::request::Parts,
) -> Response {
    let back = query
        .get("return")
        .and_then(|b| safe_return(b))
        .unwrap_or(PREFIX)
        .to_owned();
    start(&pages, &back, &request).await
}

/// [`PREFIX`]: who is signed in, and a button to sign out.
async fn index(State(pages): State<Pages>, super::SignedIn(visitor): super::SignedIn) -> Response {
    let email = visitor
        .email()
        .map(|e| format!(" ({})", super::escape(e)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Gateway</h1><p>Signed in as <code>{}</code>{email}.</p>\
<form method=\"post\" action=\"{SIGN_OUT_PATH}\">{}<div class=\"buttons\"><button type=\"submit\">Sign out</button></div></form>",
        super::escape(visitor.subject()),
        visitor.csrf_field(&pages),
    );
    pages.page(StatusCode::OK, "Gateway", &body)
}

pub(super) fn router(pages: Pages) -> Router {
    let router = Router::new();
    // Unavailable: every page of the gateway says so (a page mounted beside wins its path).
    let router = if pages.is_available() {
        router
    } else {
        router.route(
            &format!("{PREFIX}/{{*page}}"),
            axum::routing::any(
                |State(pages): State<Pages>| async move { pages.unavailable_page() },
            ),
        )
    };
    router
        .route(PREFIX, get(index))
        .route(CALLBACK_PATH, get(callback))
        .route(super::SIGN_IN_PATH, get(sign_in_link))
        .route(SIGN_OUT_PATH, post(sign_out))
        .with_state(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_on_this_gateway_are_returned_to() {
        for ok in ["/gateway", "/gateway/approve?t=abc.def", "/x"] {
            assert_eq!(safe_return(ok), Some(ok));
        }
        for bad in [
            "",
            "gateway",
            "//evil.example/",
            "/\\evil.example",
            "https://evil.example/",
            "/gateway\r\nSet-Cookie: x=1",
            "/a b",
        ] {
            assert_eq!(safe_return(bad), None, "{bad:?}");
        }
    }
}
