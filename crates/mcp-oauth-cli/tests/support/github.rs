//! GitHub's OAuth web flow and REST API, as far as `mcp-oauth proxy` and `gateway --login
//! github` use them: the web flow under `/login/oauth/`, the API under `/api/v3` (the GitHub
//! Enterprise Server layout) with `/user`, `/user/orgs` and `/user/teams`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// The OAuth app registered at the stand-in.
pub const CLIENT_ID: &str = "Iv1.mcp-oauth-cli-test";
pub const CLIENT_SECRET: &str = "gh-secret-for-the-cli-tests";
/// The one user's numeric id (the `sub` our tokens carry).
pub const USER_ID: u64 = 583_231;

/// What the stand-in saw and handed out.
#[derive(Default)]
pub struct Seen {
    /// The callback URL registered for the OAuth app (set once the server under test printed
    /// it).
    pub callback: Option<String>,
    pub authorize: Vec<HashMap<String, String>>,
    pub token_requests: Vec<HashMap<String, String>>,
    /// code -> (PKCE challenge, redirect_uri)
    codes: HashMap<String, (String, String)>,
    /// Every access and refresh token handed out.
    pub issued: Vec<String>,
    pub access_tokens: Vec<String>,
    /// (Authorization, User-Agent) of each `/user` call.
    pub user_calls: Vec<(String, String)>,
    /// The API paths called, below `/api/v3/`.
    pub api_calls: Vec<String>,
    /// The organisations and teams (`org`, `slug`) the user is in.
    pub orgs: Vec<String>,
    pub teams: Vec<(String, String)>,
}

#[derive(Clone)]
pub struct Github {
    pub origin: String,
    pub seen: Arc<Mutex<Seen>>,
}

/// `prefix` and 36 random base64url characters.
pub fn random(prefix: &str) -> String {
    let mut bytes = [0u8; 27];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The PKCE S256 challenge of `verifier`.
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD
        .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref())
}

async fn authorize(State(gh): State<Github>, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut seen = gh.seen.lock().unwrap();
    seen.authorize.push(q.clone());
    if q.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return (StatusCode::NOT_FOUND, "no such OAuth app").into_response();
    }
    let redirect = q.get("redirect_uri").cloned().unwrap_or_default();
    if seen.callback.as_deref() != Some(redirect.as_str()) {
        return (
            StatusCode::BAD_REQUEST,
            "The redirect_uri is not associated with this application.",
        )
            .into_response();
    }
    if q.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return (StatusCode::BAD_REQUEST, "PKCE S256 expected").into_response();
    }
    let code = random("ghcode_");
    let challenge = q.get("code_challenge").cloned().unwrap_or_default();
    seen.codes
        .insert(code.clone(), (challenge, redirect.clone()));
    let mut to = url::Url::parse(&redirect).unwrap();
    to.query_pairs_mut().append_pair("code", &code).append_pair(
        "state",
        q.get("state").map(String::as_str).unwrap_or_default(),
    );
    (
        StatusCode::FOUND,
        [
            ("location", to.to_string()),
            ("cache-control", "no-store".into()),
        ],
    )
        .into_response()
}

/// GitHub answers token requests with HTTP 200 even for errors, form-encoded unless asked for
/// JSON.
async fn access_token(
    State(gh): State<Github>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut seen = gh.seen.lock().unwrap();
    seen.token_requests.push(form.clone());
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    let answer = if field("client_id") != CLIENT_ID || field("client_secret") != CLIENT_SECRET {
        vec![("error", "incorrect_client_credentials".to_owned())]
    } else {
        match seen.codes.remove(field("code")) {
            Some((challenge, redirect))
                if s256(field("code_verifier")) == challenge
                    && field("redirect_uri") == redirect =>
            {
                let access = random("gho_");
                let refresh = random("ghr_");
                seen.issued.extend([access.clone(), refresh.clone()]);
                seen.access_tokens.push(access.clone());
                vec![
                    ("access_token", access),
                    ("expires_in", "28800".into()),
                    ("refresh_token", refresh),
                    ("refresh_token_expires_in", "15897600".into()),
                    ("scope", "read:user,user:email,read:org".into()),
                    ("token_type", "bearer".into()),
                ]
            }
            _ => vec![("error", "bad_verification_code".to_owned())],
        }
    };
    let wants_json = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("json"));
    if wants_json {
        let map: serde_json::Map<String, Value> = answer
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v)))
            .collect();
        return axum::Json(Value::Object(map)).into_response();
    }
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(answer)
        .finish();
    (
        [("content-type", "application/x-www-form-urlencoded")],
        body,
    )
        .into_response()
}

/// `/user`, `/user/orgs` and `/user/teams`, for a token it issued and a request with a
/// `User-Agent` (GitHub refuses one without).
async fn api(State(gh): State<Github>, Path(path): Path<String>, headers: HeaderMap) -> Response {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (auth, agent) = (text("authorization"), text("user-agent"));
    let mut seen = gh.seen.lock().unwrap();
    seen.api_calls.push(path.clone());
    if path == "user" {
        seen.user_calls.push((auth.clone(), agent.clone()));
    }
    if agent.is_empty() {
        return (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"message": "Request forbidden by administrative rules. Please make sure your request has a User-Agent header"})),
        )
            .into_response();
    }
    let token = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("token "))
        .unwrap_or_default();
    if !seen.access_tokens.iter().any(|t| t == token) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message": "Bad credentials"})),
        )
            .into_response();
    }
    match path.as_str() {
        "user" => axum::Json(json!({
            "login": "octocat",
            "id": USER_ID,
            "name": "The Octocat",
            "email": "octocat@github.example",
            "avatar_url": "https://avatars.github.example/u/583231",
            "type": "User",
        }))
        .into_response(),
        "user/orgs" => axum::Json(Value::Array(
            seen.orgs.iter().map(|o| json!({"login": o})).collect(),
        ))
        .into_response(),
        "user/teams" => axum::Json(Value::Array(
            seen.teams
                .iter()
                .map(|(org, slug)| json!({"slug": slug, "organization": {"login": org}}))
                .collect(),
        ))
        .into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The stand-in on a free port, its user a member of `orgs`; it stops when the returned
/// sender is dropped.
pub async fn start(orgs: &[&str]) -> (Github, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let gh = Github {
        origin: format!("http://{}", listener.local_addr().expect("addr")),
        seen: Arc::default(),
    };
    gh.seen.lock().unwrap().orgs = orgs.iter().map(|o| (*o).to_owned()).collect();
    let app = axum::Router::new()
        .route("/login/oauth/authorize", get(authorize))
        .route("/login/oauth/access_token", post(access_token))
        .route("/api/v3/{*path}", get(api))
        .with_state(gh.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    (gh, stop)
}

impl Github {
    /// The OAuth app and the stand-in's URLs as command options.
    pub fn args(&self) -> Vec<String> {
        [
            "--provider",
            "github",
            "--client-id",
            CLIENT_ID,
            "--client-secret",
            CLIENT_SECRET,
            "--github-url",
            &self.origin,
            "--github-api-url",
            &format!("{}/api/v3", self.origin),
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// The same as environment variables, the way `mcp-oauth proxy` and `gateway --login`
    /// read them too.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("MCP_OAUTH_UPSTREAM_CLIENT_ID", CLIENT_ID.to_owned()),
            ("MCP_OAUTH_UPSTREAM_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
            ("MCP_OAUTH_GITHUB_URL", self.origin.clone()),
            (
                "MCP_OAUTH_GITHUB_API_URL",
                format!("{}/api/v3", self.origin),
            ),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .to_vec()
    }
}
