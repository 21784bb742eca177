//! The embedded authorization server's request parsing: sequences of requests to
//! `GET`/`POST /authorize`, `POST /token`, `/revoke` and `/register` (and the metadata and
//! JWKS routes) with arbitrary query strings, form bodies, JSON, cookies and Basic
//! credentials. Values may be arbitrary text, or what earlier answers of the same input
//! handed out (request ids, CSRF cookies, codes, tokens, client credentials), so that the
//! fuzzer walks the whole authorization-code flow.
//!
//! Invariants: never a 5xx, never a panic; every redirect goes to a redirect URI some
//! client registered, with `iss`; every page has the anti-framing headers and escapes
//! what it shows; JSON errors have `error`; every issued access token verifies; a code or
//! refresh token works once; PKCE and the CSRF check hold; a replayed code, a reused
//! refresh token and a revocation revoke the grant; `client_credentials` tokens go only to
//! the client the operator configured, and an anonymous registration asking for that grant
//! is refused; `/register` takes only JSON.
//!
//! Inputs that start with a 0 byte are scripts of real requests (the seeds and regression
//! inputs), see `run_script`: `fuzz/regressions/auth_server_requests/code_flow_*` walk the
//! whole code flow and, run by `scripts/fuzz --regressions`, assert that the code-exchange,
//! refresh, "works once" and "replay revokes the grant" checks were reached.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use arbitrary::{Arbitrary, Unstructured};
use axum::body::Body;
use base64::Engine as _;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use mcp_oauth::auth_server::{AuthServer, ClientSpec, GrantType, KeyRing};
use mcp_oauth::jose::Algorithm;
use mcp_oauth::jose::dangerous::decode_unverified;
use mcp_oauth::verify::TokenVerifier;
use serde_json::Value;
use tower::ServiceExt;

/// RFC 7636 Appendix B: BASE64URL(SHA256(verifier)) is the challenge (`pkce_pair_is_rfc7636s`
/// checks it at start-up, so that a wrong pair cannot make every code exchange fail again).
const PKCE_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const PKCE_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
/// A marker the pages must never show unescaped.
const INJECT: &str = "<x-inject>";

const ISSUERS: [&str; 2] = ["https://auth.example.com", "http://127.0.0.1:9000/oauth"];
const MCP_RESOURCE: &str = "https://mcp.example.com/mcp";

const PUBLIC_CLIENT: &str = "public-client";
const NATIVE_CLIENT: &str = "native-client";
const SERVICE_CLIENT: &str = "service-client";
const SERVICE_SECRET: &str = "service-secret-0123456789";
const PRE_REGISTERED_REDIRECTS: [&str; 3] = [
    "http://127.0.0.1/callback",
    "https://app.example.com/cb?x=1",
    "com.example.app:/oauth",
];

const NAMES: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "resource",
    "prompt",
    "request_id",
    "csrf",
    "username",
    "password",
    "decision",
    "grant_type",
    "code",
    "code_verifier",
    "refresh_token",
    "client_secret",
    "token",
    "token_type_hint",
    "access_token",
    "nonce",
];

const WORDS: &[&str] = &[
    "code",
    "S256",
    "plain",
    PKCE_CHALLENGE,
    PKCE_VERIFIER,
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "approve",
    "deny",
    "dev",
    "mcp:read",
    "mcp:write",
    "admin",
    "offline_access",
    "mcp:read offline_access",
    "none",
    "login",
    MCP_RESOURCE,
    "https://mcp.example.com/mcp#frag",
    "https://other.example.com/mcp",
    "not a url",
    PUBLIC_CLIENT,
    NATIVE_CLIENT,
    SERVICE_CLIENT,
    SERVICE_SECRET,
    "http://127.0.0.1/callback",
    "http://127.0.0.1:5555/callback",
    "http://localhost/callback",
    "http://[::1]/callback",
    "https://app.example.com/cb?x=1",
    "https://app.example.com/cb",
    "com.example.app:/oauth",
    "javascript:alert(1)",
    "https://evil.example/cb",
    "http://evil.example/cb",
    "native",
    "web",
    "client_secret_basic",
    "client_secret_post",
    "https://client.example.com/metadata.json",
    INJECT,
    "",
    " ",
    "%",
    "\u{0}",
];

const REGISTER_FIELDS: &[&str] = &[
    "redirect_uris",
    "grant_types",
    "response_types",
    "token_endpoint_auth_method",
    "application_type",
    "client_name",
    "scope",
    "client_id",
    "client_secret",
    "client_uri",
    "logo_uri",
    "jwks",
    "software_id",
];

/// A value: a word, arbitrary text, or something an earlier answer handed out.
#[derive(Arbitrary, Debug, Clone)]
enum Val {
    Word(u8),
    Raw(String),
    RequestId(u8),
    Csrf(u8),
    Code(u8),
    Refresh(u8),
    Access(u8),
    ClientId(u8),
    ClientSecret(u8),
}

#[derive(Arbitrary, Debug, Clone)]
enum Name {
    Word(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug, Clone)]
enum RegValue {
    Null,
    Bool(bool),
    Num(i64),
    Str(Val),
    List(Vec<Val>),
    Object(Vec<(Val, Val)>),
}

#[derive(Arbitrary, Debug, Clone)]
enum RegisterBody {
    Raw(Vec<u8>),
    Fields(Vec<(u8, RegValue)>),
}

#[derive(Arbitrary, Debug, Clone)]
enum Step {
    AuthorizeGet {
        params: Vec<(Name, Val)>,
        cookie: Option<Val>,
    },
    AuthorizePost {
        params: Vec<(Name, Val)>,
        cookie: Option<Val>,
        origin: Option<Val>,
        form_type: bool,
    },
    Token {
        params: Vec<(Name, Val)>,
        basic: Option<(Val, Val)>,
        form_type: bool,
    },
    Revoke {
        params: Vec<(Name, Val)>,
        basic: Option<(Val, Val)>,
    },
    Register(RegisterBody),
    Get(u8),
    RawPost {
        endpoint: u8,
        content_type: Option<String>,
        body: Vec<u8>,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    issuer: bool,
    auto_approve: bool,
    steps: Vec<Step>,
}

/// What earlier answers handed out, and what the invariants need to remember.
#[derive(Default)]
struct State {
    request_ids: Vec<String>,
    csrf: Vec<String>,
    codes: Vec<String>,
    refresh: Vec<String>,
    access: Vec<String>,
    clients: Vec<String>,
    secrets: Vec<String>,
    redirect_uris: Vec<String>,
    /// Codes and refresh tokens that were exchanged successfully, with the request that
    /// redeemed them (its sorted parameters, its `Authorization` and `Content-Type`).
    used: HashMap<String, Presentation>,
    /// Grant (`sid`) of each code and refresh token exchanged, and of each access token.
    grant_of: Vec<(String, String)>,
}

fn pick(list: &[String], i: u8) -> String {
    if list.is_empty() {
        return String::new();
    }
    list.get(usize::from(i) % list.len())
        .cloned()
        .unwrap_or_default()
}

impl State {
    fn resolve(&self, val: &Val) -> String {
        match val {
            Val::Word(i) => WORDS
                .get(usize::from(*i) % WORDS.len())
                .copied()
                .unwrap_or_default()
                .to_owned(),
            Val::Raw(s) => s.clone(),
            Val::RequestId(i) => pick(&self.request_ids, *i),
            Val::Csrf(i) => pick(&self.csrf, *i),
            Val::Code(i) => pick(&self.codes, *i),
            Val::Refresh(i) => pick(&self.refresh, *i),
            Val::Access(i) => pick(&self.access, *i),
            Val::ClientId(i) => pick(&self.clients, *i),
            Val::ClientSecret(i) => pick(&self.secrets, *i),
        }
    }

    fn name(name: &Name) -> String {
        match name {
            Name::Word(i) => NAMES
                .get(usize::from(*i) % NAMES.len())
                .copied()
                .unwrap_or_default()
                .to_owned(),
            Name::Raw(s) => s.clone(),
        }
    }

    fn pairs(&self, params: &[(Name, Val)]) -> Vec<(String, String)> {
        params
            .iter()
            .map(|(n, v)| (Self::name(n), self.resolve(v)))
            .collect()
    }

    fn json(&self, value: &RegValue) -> Value {
        match value {
            RegValue::Null => Value::Null,
            RegValue::Bool(b) => Value::Bool(*b),
            RegValue::Num(n) => Value::from(*n),
            RegValue::Str(v) => Value::String(self.resolve(v)),
            RegValue::List(items) => Value::Array(
                items
                    .iter()
                    .map(|v| Value::String(self.resolve(v)))
                    .collect(),
            ),
            RegValue::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, v)| (self.resolve(k), Value::String(self.resolve(v))))
                    .collect(),
            ),
        }
    }
}

fn form(pairs: &[(String, String)]) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        out.append_pair(k, v);
    }
    out.finish()
}

fn get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn keys() -> Arc<KeyRing> {
    static KEYS: OnceLock<Arc<KeyRing>> = OnceLock::new();
    KEYS.get_or_init(|| Arc::new(KeyRing::ephemeral(Algorithm::ES256).expect("a key ring")))
        .clone()
}

async fn server(issuer: &str, auto_approve: bool) -> AuthServer {
    AuthServer::builder(issuer)
        .keys(keys())
        .scopes(["mcp:read", "mcp:write", "admin"])
        .resource(MCP_RESOURCE)
        .auto_approve(auto_approve)
        .rate_limits(None, None, None)
        // Client ID Metadata Documents would be fetched over the network.
        .client_metadata_documents(None)
        .client(ClientSpec {
            client_id: PUBLIC_CLIENT.into(),
            client_secret: None,
            redirect_uris: vec![
                PRE_REGISTERED_REDIRECTS[0].into(),
                PRE_REGISTERED_REDIRECTS[1].into(),
            ],
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            client_name: Some(format!("Public {INJECT}")),
            ..ClientSpec::default()
        })
        .client(ClientSpec {
            client_id: NATIVE_CLIENT.into(),
            client_secret: None,
            redirect_uris: vec![PRE_REGISTERED_REDIRECTS[2].into()],
            grant_types: vec![GrantType::AuthorizationCode],
            client_name: None,
            ..ClientSpec::default()
        })
        .client(
            ClientSpec::service(SERVICE_CLIENT, SERVICE_SECRET).scopes(["mcp:read", "mcp:write"]),
        )
        .build()
        .await
        .expect("the server builds")
}

/// Whether `location` is a redirect to one of `registered` (RFC 8252 §7.3: any port for
/// `http` loopback).
fn is_registered_redirect(location: &url::Url, registered: &[String]) -> bool {
    registered.iter().any(|r| {
        let Ok(r) = url::Url::parse(r) else {
            return false;
        };
        let loopback_http = r.scheme() == "http"
            && matches!(r.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"));
        r.scheme() == location.scheme()
            && r.host() == location.host()
            && r.path() == location.path()
            && (loopback_http || r.port() == location.port())
    })
}

struct Outcome {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

async fn send(router: &axum::Router, request: Request<Body>) -> Outcome {
    let response = router
        .clone()
        .oneshot(request)
        .await
        .unwrap_or_else(|never| match never {});
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes().to_vec())
        .unwrap_or_default();
    Outcome {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

fn html_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let rest = html.get(start..)?;
    Some(rest.get(..rest.find('"')?)?.to_owned())
}

/// The invariants every answer keeps, and harvesting what it hands out.
async fn check(server: &AuthServer, state: &mut State, outcome: &Outcome, step: &str) {
    let status = outcome.status;
    assert!(
        status.as_u16() < 500,
        "{step}: {status} {}",
        String::from_utf8_lossy(&outcome.body)
    );
    let content_type = outcome
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&outcome.body);
    if content_type.starts_with("text/html") {
        // Pages: never framed, never cached, and what they show is escaped.
        assert_eq!(
            outcome.headers.get(header::X_FRAME_OPTIONS),
            Some(&HeaderValue::from_static("DENY"))
        );
        let csp = outcome
            .headers
            .get(header::CONTENT_SECURITY_POLICY)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            csp.contains("frame-ancestors 'none'"),
            "{step}: CSP {csp:?}"
        );
        assert!(!body.contains(INJECT), "{step}: unescaped markup in a page");
        if let Some(id) = html_value(&body, "request_id") {
            state.request_ids.push(id);
        }
        if let Some(csrf) = html_value(&body, "csrf") {
            state.csrf.push(csrf);
        }
    }
    if content_type.starts_with("application/json") && status.is_client_error() {
        let error: Value = serde_json::from_str(&body).expect("a JSON error is JSON");
        assert!(
            error.get("error").and_then(Value::as_str).is_some(),
            "{step}: {body}"
        );
    }
    if status.is_redirection() {
        let location = outcome
            .headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .expect("a redirect has a Location");
        let url = url::Url::parse(location).expect("the Location is an absolute URL");
        assert!(
            is_registered_redirect(&url, &state.redirect_uris),
            "{step}: redirect to an unregistered URI {location}"
        );
        let params: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            get(&params, "iss"),
            Some(server.issuer()),
            "{step}: RFC 9207 iss"
        );
        assert!(get(&params, "code").is_some() != get(&params, "error").is_some());
        if let Some(code) = get(&params, "code") {
            state.codes.push(code.to_owned());
        }
    }
    if let Some(cookie) = outcome
        .headers
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
    {
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        if let Some(value) = cookie
            .split(';')
            .next()
            .and_then(|kv| kv.split_once('='))
            .map(|(_, v)| v.to_owned())
        {
            state.csrf.push(value);
        }
    }
}

/// What a token request presented: its parameters, sorted, and its `Authorization` and
/// `Content-Type` headers. A replay is the same request sent again (a request that differs
/// may be refused before its credential is looked at, e.g. for its content type).
type Presentation = (Vec<(String, String)>, Option<String>, Option<String>);

/// How often each invariant that needs a whole flow was reached during the current input
/// (a script's `# reached` lines assert on it, see `run_script`).
fn reached() -> &'static Mutex<BTreeMap<&'static str, u32>> {
    static REACHED: OnceLock<Mutex<BTreeMap<&'static str, u32>>> = OnceLock::new();
    REACHED.get_or_init(|| Mutex::new(BTreeMap::new()))
}

fn reach(what: &'static str) {
    if let Ok(mut map) = reached().lock() {
        *map.entry(what).or_default() += 1;
    }
}

/// What a token response handed out.
struct Issued {
    sid: String,
    client_id: Option<String>,
}

/// Every access token a token response hands out verifies, and is for this issuer.
async fn check_token_response(server: &AuthServer, state: &mut State, body: &[u8]) -> Issued {
    let json: Value = serde_json::from_slice(body).expect("a token response is JSON");
    assert_eq!(
        json.get("token_type").and_then(Value::as_str),
        Some("Bearer")
    );
    let access = json
        .get("access_token")
        .and_then(Value::as_str)
        .expect("an access token")
        .to_owned();
    let verifier = server.verifier().expect("the verifier builds");
    let claims = verifier
        .verify(&access)
        .await
        .expect("an issued access token verifies");
    assert_eq!(claims.iss(), Some(server.issuer()));
    let decoded = decode_unverified(&access).expect("decodes");
    assert_eq!(decoded.typ.as_deref(), Some("at+jwt"));
    for scope in claims.scopes() {
        assert!(
            ["mcp:read", "mcp:write", "admin", "offline_access"].contains(&scope.as_str()),
            "granted an unsupported scope {scope}"
        );
    }
    let sid = claims.str("sid").unwrap_or_default().to_owned();
    if let Some(refresh) = json.get("refresh_token").and_then(Value::as_str) {
        state.refresh.push(refresh.to_owned());
        state.grant_of.push((refresh.to_owned(), sid.clone()));
    }
    state.grant_of.push((access.clone(), sid.clone()));
    state.access.push(access);
    Issued {
        sid,
        client_id: claims.client_id().map(str::to_owned),
    }
}

/// After a grant was revoked, none of its access tokens verifies. Returns how many were
/// checked.
async fn check_revoked(server: &AuthServer, state: &State, sid: &str, why: &str) -> usize {
    if sid.is_empty() {
        return 0;
    }
    let verifier = server.verifier().expect("the verifier builds");
    let mut checked = 0;
    for (token, grant) in &state.grant_of {
        if grant == sid && token.matches('.').count() == 2 {
            assert!(
                verifier.verify(token).await.is_err(),
                "{why}: an access token of the revoked grant still verifies"
            );
            checked += 1;
        }
    }
    checked
}

fn grant_of(state: &State, token: &str) -> Option<String> {
    state
        .grant_of
        .iter()
        .find(|(t, _)| t == token)
        .map(|(_, sid)| sid.clone())
}

/// The client a grant was issued to, read from one of its access tokens.
fn client_of_grant(state: &State, sid: &str) -> Option<String> {
    state
        .grant_of
        .iter()
        .filter(|(_, grant)| grant == sid)
        .filter_map(|(token, _)| decode_unverified(token).ok())
        .find_map(|t| t.claims.client_id().map(str::to_owned))
}

fn basic(state: &State, creds: &Option<(Val, Val)>) -> Option<HeaderValue> {
    let (id, secret) = creds.as_ref()?;
    let raw = format!("{}:{}", state.resolve(id), state.resolve(secret));
    let value = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    );
    HeaderValue::from_str(&value).ok()
}

/// The client id of a `Basic` header, as sent (not percent-decoded).
fn basic_client_id(authorization: Option<&str>) -> Option<String> {
    let (scheme, b64) = authorization?.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let raw = String::from_utf8(raw).ok()?;
    Some(raw.split_once(':')?.0.to_owned())
}

fn request(method: Method, uri: &str) -> http::request::Builder {
    Request::builder().method(method).uri(uri)
}

/// `POST /authorize`: a code is issued only to the signed-in user who approved, with the
/// CSRF token of the cookie.
fn after_authorize_post(pairs: &[(String, String)], cookies: &[String], outcome: &Outcome) {
    let issued_code = outcome
        .headers
        .get(header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .is_some_and(|l| l.contains("code="));
    if issued_code {
        // CSRF: the form's token equals the cookie (one of them, when the request has several
        // `Cookie` headers or pairs of that name); the user signed in.
        let csrf = get(pairs, "csrf").expect("a csrf field");
        assert!(
            cookies.iter().any(|c| c == csrf),
            "CSRF check bypassed: {csrf:?} not in {cookies:?}"
        );
        assert!(csrf.len() == 43);
        assert_eq!(get(pairs, "decision"), Some("approve"));
        assert_eq!(get(pairs, "username"), Some("dev"));
        assert_eq!(get(pairs, "password"), Some("dev"));
        reach("code_issued_after_consent");
    }
}

/// `POST /token`: PKCE, a credential works once, a replay revokes the grant, and
/// `client_credentials` only for the client the operator configured.
async fn after_token(
    server: &AuthServer,
    state: &mut State,
    pairs: &[(String, String)],
    (authorization, content_type): (Option<&str>, Option<&str>),
    outcome: &Outcome,
) {
    let grant_type = get(pairs, "grant_type").unwrap_or_default();
    let presented = match grant_type {
        "authorization_code" => get(pairs, "code"),
        "refresh_token" => get(pairs, "refresh_token"),
        _ => None,
    }
    .map(str::to_owned);
    let mut presentation: Presentation = (
        pairs.to_vec(),
        authorization.map(str::to_owned),
        content_type.map(str::to_owned),
    );
    presentation.0.sort();
    if outcome.status == StatusCode::OK {
        let issued = check_token_response(server, state, &outcome.body).await;
        match grant_type {
            "authorization_code" => {
                assert_eq!(
                    get(pairs, "code_verifier"),
                    Some(PKCE_VERIFIER),
                    "a code redeemed without its PKCE verifier"
                );
                reach("code_exchange");
            }
            "refresh_token" => reach("refresh_exchange"),
            "client_credentials" => {
                // Machine clients exist only where the operator configured them (never
                // through anonymous registration or a metadata document).
                assert_eq!(
                    issued.client_id.as_deref(),
                    Some(SERVICE_CLIENT),
                    "a client_credentials token for a client the operator did not configure"
                );
                reach("client_credentials_token");
            }
            _ => {}
        }
        if let Some(presented) = presented {
            assert!(
                state.used.insert(presented.clone(), presentation).is_none(),
                "a {grant_type} credential worked twice"
            );
            state.grant_of.push((presented, issued.sid));
        }
    } else if let Some(presented) = presented
        && let Some(first) = state.used.get(&presented)
    {
        reach("used_credential_refused");
        // The same request sent again: a replayed code or a reused refresh token revokes
        // the grant. (A replay that would fail for another reason, e.g. another client or
        // verifier, is refused before the credential is looked at, and need not revoke.)
        if *first == presentation
            && let Some(sid) = grant_of(state, &presented)
        {
            assert_eq!(outcome.status, StatusCode::BAD_REQUEST);
            if check_revoked(server, state, &sid, "replay").await > 0 {
                reach(match grant_type {
                    "authorization_code" => "code_replay_revoked",
                    _ => "refresh_reuse_revoked",
                });
            }
        }
    }
}

/// `POST /revoke` (RFC 7009): a client's own token revokes its whole grant.
async fn after_revoke(
    server: &AuthServer,
    state: &State,
    pairs: &[(String, String)],
    caller: Option<String>,
    outcome: &Outcome,
) {
    let token = get(pairs, "token").unwrap_or_default();
    if outcome.status == StatusCode::OK
        && !state.used.contains_key(token)
        && let Some(sid) = grant_of(state, token)
        && caller.is_some()
        && caller == client_of_grant(state, &sid)
        && check_revoked(server, state, &sid, "revocation").await > 0
    {
        reach("revocation_revoked");
    }
}

/// `POST /register`: only JSON, never a client that may use `client_credentials` (an
/// anonymous registration asking for it is refused), never a dangerous redirect scheme.
fn after_register(state: &mut State, content_type: Option<&str>, body: &[u8], outcome: &Outcome) {
    let created = outcome.status == StatusCode::CREATED;
    let declared_json = content_type.is_some_and(|c| {
        c.split(';')
            .next()
            .is_some_and(|t| t.trim().to_ascii_lowercase().ends_with("json"))
    });
    assert!(
        !created || declared_json,
        "/register accepted a body declared as {content_type:?}"
    );
    let asks_client_credentials = serde_json::from_slice::<Value>(body)
        .ok()
        .as_ref()
        .and_then(|v| v.get("grant_types"))
        .and_then(Value::as_array)
        .is_some_and(|g| g.iter().any(|g| g.as_str() == Some("client_credentials")));
    if asks_client_credentials {
        assert!(
            !created,
            "an anonymous registration got the client_credentials grant"
        );
        reach("client_credentials_registration_refused");
    }
    if !created {
        return;
    }
    let json: Value = serde_json::from_slice(&outcome.body).expect("a registration is JSON");
    let id = json
        .get("client_id")
        .and_then(Value::as_str)
        .expect("an id");
    state.clients.push(id.to_owned());
    if let Some(secret) = json.get("client_secret").and_then(Value::as_str) {
        state.secrets.push(secret.to_owned());
    }
    let grants = json.get("grant_types").and_then(Value::as_array);
    assert!(
        !grants
            .into_iter()
            .flatten()
            .any(|g| g.as_str() == Some("client_credentials")),
        "a registered client may use client_credentials"
    );
    for uri in json
        .get("redirect_uris")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let url = url::Url::parse(uri).expect("a registered redirect is a URL");
        assert!(
            !matches!(url.scheme(), "javascript" | "data" | "file"),
            "registered {uri}"
        );
        state.redirect_uris.push(uri.to_owned());
    }
}

fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// The invariants of one endpoint, after the answer: `path` is relative to the issuer's.
async fn after(
    server: &AuthServer,
    state: &mut State,
    (method, path): (&Method, &str),
    headers: &http::HeaderMap,
    body: &[u8],
    outcome: &Outcome,
) {
    let header = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if *method != Method::POST {
        return;
    }
    match path {
        "/authorize" => {
            let cookies: Vec<String> = headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|c| c.split(';'))
                .filter_map(|kv| kv.trim().split_once('='))
                .filter(|(k, _)| *k == cookie_name(server.issuer()))
                .map(|(_, v)| v.to_owned())
                .collect();
            after_authorize_post(&form_pairs(body), &cookies, outcome);
        }
        "/token" => {
            let pairs = form_pairs(body);
            after_token(
                server,
                state,
                &pairs,
                (header(header::AUTHORIZATION), header(header::CONTENT_TYPE)),
                outcome,
            )
            .await;
        }
        "/revoke" => {
            let pairs = form_pairs(body);
            let caller = basic_client_id(header(header::AUTHORIZATION))
                .or_else(|| get(&pairs, "client_id").map(str::to_owned));
            after_revoke(server, state, &pairs, caller, outcome).await;
        }
        "/register" => after_register(state, header(header::CONTENT_TYPE), body, outcome),
        _ => {}
    }
}

fn cookie_name(issuer: &str) -> &'static str {
    if issuer.starts_with("https") {
        "__Host-mcp_oauth_csrf"
    } else {
        "mcp_oauth_csrf"
    }
}

/// Sends one request and checks every invariant that applies to it.
async fn exchange(
    server: &AuthServer,
    router: &axum::Router,
    state: &mut State,
    base: &str,
    request: Request<Body>,
) -> Outcome {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let headers = request.headers().clone();
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes().to_vec())
        .unwrap_or_default();
    let outcome = send(router, Request::from_parts(parts, Body::from(body.clone()))).await;
    let step = format!("{method} {path}");
    check(server, state, &outcome, &step).await;
    let relative = path.strip_prefix(base).unwrap_or(&path);
    after(
        server,
        state,
        (&method, relative),
        &headers,
        &body,
        &outcome,
    )
    .await;
    outcome
}

async fn run(input: &Input) {
    let issuer = ISSUERS[usize::from(input.issuer)];
    let server = server(issuer, input.auto_approve).await;
    let router = server.router();
    let base = url::Url::parse(issuer).expect("the issuer parses");
    let base = base.path().trim_end_matches('/').to_owned();
    let cookie_name = cookie_name(issuer);
    let mut state = State {
        redirect_uris: PRE_REGISTERED_REDIRECTS.map(str::to_owned).to_vec(),
        ..State::default()
    };

    for step in input.steps.iter().take(12) {
        match step {
            Step::AuthorizeGet { params, cookie } => {
                let query = form(&state.pairs(params));
                let mut builder = request(Method::GET, &format!("{base}/authorize?{query}"));
                if let Some(cookie) = cookie {
                    let value = format!("{cookie_name}={}", state.resolve(cookie));
                    if let Ok(value) = HeaderValue::from_str(&value) {
                        builder = builder.header(header::COOKIE, value);
                    }
                }
                let request = builder.body(Body::empty()).expect("a request");
                let outcome = exchange(&server, &router, &mut state, &base, request).await;
                if outcome.status.is_redirection() && input.auto_approve {
                    // Approved at once: only with PKCE S256.
                    let pairs = state.pairs(params);
                    if outcome
                        .headers
                        .get(header::LOCATION)
                        .and_then(|l| l.to_str().ok())
                        .is_some_and(|l| l.contains("code="))
                    {
                        assert_eq!(get(&pairs, "code_challenge_method"), Some("S256"));
                        assert_eq!(get(&pairs, "response_type"), Some("code"));
                    }
                }
            }
            Step::AuthorizePost {
                params,
                cookie,
                origin,
                form_type,
            } => {
                let pairs = state.pairs(params);
                let mut builder = request(Method::POST, &format!("{base}/authorize"));
                if *form_type {
                    builder =
                        builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                }
                if let Some(value) = cookie.as_ref().map(|c| state.resolve(c))
                    && let Ok(value) = HeaderValue::from_str(&format!("{cookie_name}={value}"))
                {
                    builder = builder.header(header::COOKIE, value);
                }
                if let Some(value) = origin
                    .as_ref()
                    .map(|o| state.resolve(o))
                    .and_then(|o| HeaderValue::from_str(&o).ok())
                {
                    builder = builder.header(header::ORIGIN, value);
                }
                let request = builder.body(Body::from(form(&pairs))).expect("a request");
                exchange(&server, &router, &mut state, &base, request).await;
            }
            Step::Token {
                params,
                basic: creds,
                form_type,
            } => {
                let pairs = state.pairs(params);
                let mut builder = request(Method::POST, &format!("{base}/token"));
                if *form_type {
                    builder =
                        builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                }
                if let Some(value) = basic(&state, creds) {
                    builder = builder.header(header::AUTHORIZATION, value);
                }
                let request = builder.body(Body::from(form(&pairs))).expect("a request");
                exchange(&server, &router, &mut state, &base, request).await;
            }
            Step::Revoke {
                params,
                basic: creds,
            } => {
                let pairs = state.pairs(params);
                let mut builder = request(Method::POST, &format!("{base}/revoke"))
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                if let Some(value) = basic(&state, creds) {
                    builder = builder.header(header::AUTHORIZATION, value);
                }
                let request = builder.body(Body::from(form(&pairs))).expect("a request");
                exchange(&server, &router, &mut state, &base, request).await;
            }
            Step::Register(body) => {
                let bytes = match body {
                    RegisterBody::Raw(bytes) => bytes.clone(),
                    RegisterBody::Fields(fields) => {
                        let mut out = String::from("{");
                        for (i, (field, value)) in fields.iter().enumerate() {
                            if i > 0 {
                                out.push(',');
                            }
                            let name = REGISTER_FIELDS
                                .get(usize::from(*field) % REGISTER_FIELDS.len())
                                .copied()
                                .unwrap_or_default();
                            out.push_str(&Value::String(name.to_owned()).to_string());
                            out.push(':');
                            out.push_str(&state.json(value).to_string());
                        }
                        out.push('}');
                        out.into_bytes()
                    }
                };
                let request = request(Method::POST, &format!("{base}/register"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(bytes))
                    .expect("a request");
                exchange(&server, &router, &mut state, &base, request).await;
            }
            Step::Get(which) => {
                let path = match which % 4 {
                    0 => format!("/.well-known/oauth-authorization-server{base}"),
                    1 => format!("/.well-known/openid-configuration{base}"),
                    2 => format!("{base}/jwks"),
                    _ => format!("{base}/nothing-here"),
                };
                let request = request(Method::GET, &path)
                    .body(Body::empty())
                    .expect("a request");
                exchange(&server, &router, &mut state, &base, request).await;
            }
            Step::RawPost {
                endpoint,
                content_type,
                body,
            } => {
                let path = match endpoint % 4 {
                    0 => "/authorize",
                    1 => "/token",
                    2 => "/revoke",
                    _ => "/register",
                };
                let mut builder = request(Method::POST, &format!("{base}{path}"));
                if let Some(value) = content_type
                    .as_deref()
                    .and_then(|c| HeaderValue::from_str(c).ok())
                {
                    builder = builder.header(header::CONTENT_TYPE, value);
                }
                let request = builder.body(Body::from(body.clone())).expect("a request");
                exchange(&server, &router, &mut state, &base, request).await;
            }
        }
    }
}

/// Replaces `{code}`, `{csrf}`, `{request_id}`, `{refresh}`, `{access}`, `{client_id}` and
/// `{client_secret}` with the latest value of that kind an earlier answer handed out, and
/// `{refresh.0}` etc. with the first (`.1` the second, …).
fn substitute(text: &str, state: &State) -> String {
    let kinds: [(&str, &Vec<String>); 7] = [
        ("code", &state.codes),
        ("csrf", &state.csrf),
        ("request_id", &state.request_ids),
        ("refresh", &state.refresh),
        ("access", &state.access),
        ("client_id", &state.clients),
        ("client_secret", &state.secrets),
    ];
    let mut out = text.to_owned();
    for (name, values) in kinds {
        if let Some(last) = values.last() {
            out = out.replace(&format!("{{{name}}}"), last);
        }
        for (i, value) in values.iter().enumerate().take(4) {
            out = out.replace(&format!("{{{name}.{i}}}"), value);
        }
    }
    out
}

/// Set by `scripts/fuzz --regressions`: scripts' `# expect` and `# reached` lines are
/// asserted (while fuzzing they are comments, so that a mutated line is not a crash).
fn expectations_on() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("MCP_OAUTH_FUZZ_EXPECT").is_some_and(|v| v == "1"))
}

/// A script: requests separated by lines `---`, each `METHOD /path?query`, header lines,
/// an empty line, the body (paths are relative to the issuer's; the server asks for
/// consent). Placeholders take what earlier answers handed out (see `substitute`). Lines
/// before the request line that start with `#` are comments, and with
/// `MCP_OAUTH_FUZZ_EXPECT=1`, `# expect 302` asserts this request's status and
/// `# reached code_exchange …` that the named checks ran during the script.
async fn run_script(bytes: &[u8]) {
    let issuer = ISSUERS[0];
    let server = server(issuer, false).await;
    let router = server.router();
    let mut state = State {
        redirect_uris: PRE_REGISTERED_REDIRECTS.map(str::to_owned).to_vec(),
        ..State::default()
    };
    if let Ok(mut map) = reached().lock() {
        map.clear();
    }
    let text = String::from_utf8_lossy(bytes);
    let mut must_reach: Vec<String> = Vec::new();
    for chunk in text.split("\n---\n").take(12) {
        let mut expect_status = None;
        let mut rest = chunk;
        while let Some(line) = rest.strip_prefix('#') {
            let (line, after) = line.split_once('\n').unwrap_or((line, ""));
            let mut words = line.split_whitespace();
            match words.next() {
                Some("expect") => expect_status = words.next().and_then(|s| s.parse::<u16>().ok()),
                Some("reached") => must_reach.extend(words.map(str::to_owned)),
                _ => {}
            }
            rest = after;
        }
        let chunk = substitute(rest, &state);
        let bytes = chunk.as_bytes();
        let (head, body) = match bytes.windows(2).position(|w| w == b"\n\n") {
            Some(at) => (
                bytes.get(..at).unwrap_or_default(),
                bytes.get(at + 2..).unwrap_or_default(),
            ),
            None => (bytes, &[][..]),
        };
        let head = String::from_utf8_lossy(head);
        let mut lines = head.lines();
        let first = lines.next().unwrap_or_default();
        let (method, target) = first.split_once(' ').unwrap_or(("GET", first));
        let Ok(method) = Method::from_bytes(method.as_bytes()) else {
            return;
        };
        let mut builder = request(method, target.trim());
        for line in lines {
            if let Some((name, value)) = line.split_once(':')
                && let (Ok(name), Ok(value)) = (
                    header::HeaderName::from_bytes(name.trim().as_bytes()),
                    HeaderValue::from_str(value.trim()),
                )
            {
                builder = builder.header(name, value);
            }
        }
        let Ok(request) = builder.body(Body::from(body.to_vec())) else {
            return;
        };
        let outcome = exchange(&server, &router, &mut state, "", request).await;
        if expectations_on()
            && let Some(expected) = expect_status
        {
            assert_eq!(
                outcome.status.as_u16(),
                expected,
                "{first}: {}",
                String::from_utf8_lossy(&outcome.body)
            );
        }
    }
    if expectations_on() {
        let map = reached().lock().map(|m| m.clone()).unwrap_or_default();
        for what in &must_reach {
            assert!(
                map.get(what.as_str()).copied().unwrap_or(0) > 0,
                "the check {what:?} was not reached (reached: {map:?})"
            );
        }
    }
}

/// The PKCE pair is RFC 7636's, or no code exchange can ever succeed.
fn pkce_pair_is_rfc7636s() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, PKCE_VERIFIER.as_bytes());
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
        assert_eq!(challenge, PKCE_CHALLENGE, "the PKCE pair does not match");
    });
}

/// Inputs that start with this byte are a script of real requests (the seeds are).
const SCRIPT: u8 = 0;

fuzz_target!(|data: &[u8]| {
    pkce_pair_is_rfc7636s();
    match data.split_first() {
        Some((&SCRIPT, rest)) => common::runtime().block_on(run_script(rest)),
        _ => {
            if let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) {
                common::runtime().block_on(run(&input));
            }
        }
    }
});
