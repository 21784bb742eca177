//! The browser side of `user-oauth`: the connect link of each upstream, its callback, and
//! the gateway's Client ID Metadata Document.
//!
//! | path | what |
//! | --- | --- |
//! | `GET /gateway/connect/NAME` | the signed-in user is sent to the upstream's authorization server |
//! | `GET /gateway/connect/NAME/callback` | the answer: the grant is sealed for the signed-in user who started |
//! | `GET /gateway/oauth-client.json` | the gateway's client metadata (its URL is its client id where supported) |
//!
//! Who is signed in comes from the gateway's page sign-in ([`PageSession`]); a visitor who is
//! not is sent to sign in first, and comes back.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::{CLIENT_METADATA_PATH, UserOAuth, callback_path};

/// The gateway's page sign-in, as the connect pages need it.
pub trait PageSession: Send + Sync + 'static {
    /// The vault's name for the user signed in on this request
    /// ([`Vault::user_of`](crate::vault::Vault::user_of) of their identity), if any.
    fn user<'a>(&'a self, headers: &'a HeaderMap) -> BoxFuture<'a, Option<String>>;
    /// The answer to a visitor who is not signed in: sign in, then come back to `path`.
    fn sign_in(&self, path: &str) -> Response;
    /// A page saying `message` (plain text, escaped by the page) under `title`.
    fn page(&self, status: StatusCode, title: &str, message: &str) -> Response;
}

struct Connect {
    upstreams: Vec<UserOAuth>,
    session: Arc<dyn PageSession>,
    client_metadata: Option<serde_json::Value>,
}

/// The routes of the connect pages of `upstreams`, and the gateway's Client ID Metadata
/// Document when `public_url` is given (the gateway's public URL; the document lists every
/// upstream's redirect URI).
pub fn connect_router(
    upstreams: Vec<UserOAuth>,
    public_url: Option<&str>,
    session: Arc<dyn PageSession>,
) -> Router {
    let client_metadata = public_url.map(|public| {
        let public = public.trim_end_matches('/');
        let redirect_uris: Vec<String> = upstreams
            .iter()
            .map(|u| format!("{public}{}", callback_path(u.upstream())))
            .collect();
        serde_json::json!({
            "client_id": format!("{public}{CLIENT_METADATA_PATH}"),
            "client_name": "MCP gateway",
            "client_uri": public,
            "redirect_uris": redirect_uris,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        })
    });
    let state = Arc::new(Connect {
        upstreams,
        session,
        client_metadata,
    });
    Router::new()
        .route("/gateway/connect/{name}", get(start))
        .route("/gateway/connect/{name}/callback", get(callback))
        .route(CLIENT_METADATA_PATH, get(client_metadata_document))
        .with_state(state)
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

impl Connect {
    fn upstream(&self, name: &str) -> Option<&UserOAuth> {
        self.upstreams.iter().find(|u| u.upstream() == name)
    }

    fn unknown(&self) -> Response {
        self.session.page(
            StatusCode::NOT_FOUND,
            "Unknown upstream",
            "No upstream of this gateway is connected with your own account under this name.",
        )
    }
}

async fn start(
    State(connect): State<Arc<Connect>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(upstream) = connect.upstream(&name) else {
        return connect.unknown();
    };
    let Some(user) = connect.session.user(&headers).await else {
        return connect.session.sign_in(&super::connect_path(&name));
    };
    match upstream.start_connect(&user).await {
        Ok(start) => start.into_response(),
        Err(err) => {
            tracing::warn!(target: "mcp_oauth_gateway::upstream", upstream = %name, error = %err, "a connection could not start");
            no_store(connect.session.page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Cannot connect now",
                "The upstream's authorization server cannot be reached or is not usable right now; try again later.",
            ))
        }
    }
}

async fn callback(
    State(connect): State<Arc<Connect>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(upstream) = connect.upstream(&name) else {
        return connect.unknown();
    };
    let Some(user) = connect.session.user(&headers).await else {
        // Signing in here would lose the answer; the flow is started again afterwards.
        return connect.session.sign_in(&super::connect_path(&name));
    };
    let response = match upstream
        .finish_connect(&user, query.as_deref().unwrap_or_default(), &headers)
        .await
    {
        Ok(_) => {
            let mut response = connect.session.page(
                StatusCode::OK,
                "Connected",
                &format!(
                    "Your account at {name} is connected. Go back to your MCP client and try the call again."
                ),
            );
            // Cleared on success only: a stranger's callback link must not end the
            // connection this browser has under way.
            response
                .headers_mut()
                .append(header::SET_COOKIE, upstream.clear_connect_cookie());
            response
        }
        Err(err) => connect
            .session
            .page(err.status(), "Not connected", &err.to_string()),
    };
    no_store(response)
}

async fn client_metadata_document(State(connect): State<Arc<Connect>>) -> Response {
    match &connect.client_metadata {
        Some(document) => (
            [(header::CACHE_CONTROL, "public, max-age=3600")],
            axum::Json(document.clone()),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The gateway's page sign-in ([`Pages`](crate::web::Pages)) as the connect pages' session.
struct WebSession {
    pages: crate::web::Pages,
    issuer: String,
}

/// The gateway's page sign-in as the connect pages' [`PageSession`]: the user signed in there
/// is the vault's `issuer` + subject, `issuer` being the gateway's own authorization server
/// (which issues both the pages' sessions and the tokens of the MCP clients), so a grant
/// connected on the page is the one the same user's MCP sessions use.
pub fn web_session(pages: crate::web::Pages, issuer: impl Into<String>) -> Arc<dyn PageSession> {
    Arc::new(WebSession {
        pages,
        issuer: issuer.into(),
    })
}

impl PageSession for WebSession {
    fn user<'a>(&'a self, headers: &'a HeaderMap) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            self.pages
                .visitor(headers)
                .await
                .map(|visitor| crate::vault::Vault::user_key(&self.issuer, visitor.subject()))
        })
    }

    fn sign_in(&self, path: &str) -> Response {
        let location = format!(
            "{}?return={}",
            crate::web::SIGN_IN_PATH,
            url::form_urlencoded::byte_serialize(path.as_bytes()).collect::<String>()
        );
        let mut response = StatusCode::SEE_OTHER.into_response();
        if let Ok(location) = HeaderValue::try_from(location) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        response
    }

    fn page(&self, status: StatusCode, title: &str, message: &str) -> Response {
        if status.is_success() {
            let body = format!(
                "<h1>{}</h1><p>{}</p>",
                crate::web::escape(title),
                crate::web::escape(message)
            );
            self.pages.page(status, title, &body)
        } else {
            self.pages.error_page(status, title, message)
        }
    }
}
