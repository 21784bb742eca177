//! The embedded authorization server from the attacker's side: the requests of
//! `security-review-2.md` (F1, F3, F7, F8, I4 / issue 10 item 9), replayed over real HTTP on
//! 127.0.0.1, each answered the safe way.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod common;

use std::time::Duration;

use common::{CHALLENGE, Served, VERIFIER};
use mcp_oauth::auth_server::{AuthServer, AuthServerBuilder, ClientSpec, Registration};
use mcp_oauth::{OAuth, ResourceUrl};
use reqwest::redirect::Policy;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const RESOURCE: &str = "http://127.0.0.1:9999/mcp";
const REDIRECT: &str = "http://127.0.0.1:33418/callback";
const EVIL: &str = "https://evil.example";

struct Running {
    server: AuthServer,
    issuer: String,
    http: reqwest::Client,
    served: Served,
}

/// A server offering `mcp:read mcp:write admin` for [`RESOURCE`], with auto-approve (the
/// user's consent is not what these tests are about), no rate limits, and whatever
/// `configure` adds.
async fn start_with(configure: impl FnOnce(AuthServerBuilder) -> AuthServerBuilder) -> Running {
    start_bare(|b| configure(b.resource(RESOURCE))).await
}

/// As [`start_with`], without a configured resource.
async fn start_bare(configure: impl FnOnce(AuthServerBuilder) -> AuthServerBuilder) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("addr"));
    let builder = AuthServer::builder(issuer.clone())
        .scopes(["mcp:read", "mcp:write", "admin"])
        .default_scopes(["mcp:read"])
        .auto_approve(true)
        .rate_limits(None, None, None);
    let server = configure(builder).build().await.expect("server");
    let served = Served::app(listener, server.router());
    let http = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client");
    Running {
        server,
        issuer,
        http,
        served,
    }
}

async fn start() -> Running {
    start_with(|b| b).await
}

async fn json_of(res: reqwest::Response) -> (u16, Value) {
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

impl Running {
    async fn stop(self) {
        self.served.stop().await;
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    async fn register(&self, body: Value) -> (u16, Value) {
        json_of(
            self.http
                .post(self.url("/register"))
                .json(&body)
                .send()
                .await
                .expect("register"),
        )
        .await
    }

    /// A public client (PKCE, no secret), as MCP clients register.
    async fn public_client(&self) -> String {
        let (status, body) = self
            .register(
                json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"]}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["client_id"].as_str().expect("client_id").to_owned()
    }

    /// A confidential client registered for `method`: (id, secret).
    async fn confidential_client(&self, method: &str) -> (String, String) {
        let (status, body) = self
            .register(
                json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": method,
                "grant_types": ["authorization_code", "refresh_token"]}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        (
            body["client_id"].as_str().expect("client_id").to_owned(),
            body["client_secret"].as_str().expect("secret").to_owned(),
        )
    }

    /// An authorization code for `client_id` (auto-approved), bound to [`CHALLENGE`].
    async fn code(&self, client_id: &str) -> String {
        let mut url = url::Url::parse(&self.url("/authorize")).expect("url");
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("state", "st")
            .append_pair("code_challenge", CHALLENGE)
            .append_pair("code_challenge_method", "S256")
            .append_pair("scope", "mcp:read")
            .append_pair("resource", RESOURCE);
        let res = self.http.get(url).send().await.expect("authorize");
        assert_eq!(res.status(), 302, "{:?}", res.text().await);
        let location = res.headers()["location"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(location.starts_with(REDIRECT), "{location}");
        url::Url::parse(&location)
            .expect("url")
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .expect("a code")
    }

    async fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        json_of(
            self.http
                .post(self.url("/token"))
                .form(form)
                .send()
                .await
                .expect("token"),
        )
        .await
    }

    async fn redeem(&self, client_id: &str, code: &str, verifier: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ])
        .await
    }

    async fn refresh(&self, client_id: &str, refresh_token: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", refresh_token),
        ])
        .await
    }

    /// Whether an access token of this server is accepted for [`RESOURCE`].
    async fn accepted(&self, token: &str) -> bool {
        OAuth::builder()
            .verifier(self.server.verifier().expect("verifier"))
            .token_cache(None)
            .build_authenticator()
            .expect("pipeline")
            .authenticate(token, &ResourceUrl::parse(RESOURCE).expect("resource"))
            .await
            .is_ok()
    }
}

/// The claims of a JWT, unverified (the tests only read what was minted).
fn claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("claims")
}

fn error_of(body: &Value) -> Option<&str> {
    body["error"].as_str()
}

/// A body for a failure message, cut short (some echo kilobytes).
fn short(body: &Value) -> String {
    body.to_string().chars().take(300).collect()
}

// ---- F1: no token without a user or an operator's decision ---------------------------------

/// The review's first request, in dev and proxy form: open registration never yields a
/// client that may use `client_credentials`.
#[tokio::test]
async fn f1_anonymous_registration_of_a_machine_client_is_refused() {
    let r = start().await;
    for body in [
        json!({"client_name": "anon", "grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_basic"}),
        json!({"grant_types": ["client_credentials"]}),
        json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post", "scope": "admin"}),
        json!({"redirect_uris": [REDIRECT], "grant_types": ["authorization_code", "client_credentials"]}),
    ] {
        let (status, answer) = r.register(body.clone()).await;
        assert_eq!(
            (status, error_of(&answer)),
            (400, Some("invalid_client_metadata")),
            "{body}: {answer}"
        );
        assert!(answer.get("client_secret").is_none(), "{answer}");
    }
    r.stop().await;
}

/// A client that registered for a user's authorization gets no token by itself, whatever
/// grant it asks for.
#[tokio::test]
async fn f1_a_registered_client_gets_no_client_credentials_token() {
    let r = start().await;
    let (id, secret) = r.confidential_client("client_secret_basic").await;
    let (status, body) = json_of(
        r.http
            .post(r.url("/token"))
            .basic_auth(&id, Some(&secret))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", "mcp:read mcp:write admin"),
            ])
            .send()
            .await
            .expect("token"),
    )
    .await;
    assert_eq!(
        (status, error_of(&body)),
        (400, Some("unauthorized_client"))
    );
    r.stop().await;
}

/// A machine client an older version registered anonymously (still in a SQLite or Redis
/// store, `client_credentials` among its grants) gets no token: only the operator gives a
/// client machine scopes.
#[tokio::test]
async fn f1_a_stored_anonymous_machine_client_gets_no_token() {
    let r = start().await;
    let record: mcp_oauth::auth_server::store::ClientRecord = serde_json::from_value(json!({
        "client_id": "old-anon",
        "secret_hash": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", // "test"
        "redirect_uris": [],
        "token_endpoint_auth_method": "client_secret_basic",
        "grant_types": ["client_credentials"],
        "application_type": "web",
        "issued_at": 1_700_000_000
    }))
    .expect("record");
    r.server.store().put_client(record).await.expect("put");
    let (status, body) = json_of(
        r.http
            .post(r.url("/token"))
            .basic_auth("old-anon", Some("test"))
            .form(&[("grant_type", "client_credentials"), ("scope", "admin")])
            .send()
            .await
            .expect("token"),
    )
    .await;
    assert_eq!(
        (status, error_of(&body)),
        (400, Some("unauthorized_client")),
        "{body}"
    );
    r.stop().await;
}

/// Each machine client has its own scopes: the operator's list, not every scope offered.
#[tokio::test]
async fn f1_a_configured_machine_client_gets_only_its_own_scopes() {
    let r = start_with(|b| b.client(ClientSpec::service("svc", "svc-secret").scopes(["mcp:read"])))
        .await;
    let cc = |scope: Option<&'static str>| {
        let mut form = vec![("grant_type", "client_credentials")];
        form.extend(scope.map(|s| ("scope", s)));
        r.http
            .post(r.url("/token"))
            .basic_auth("svc", Some("svc-secret"))
            .form(&form)
            .send()
    };
    for asked in ["admin", "mcp:read admin", "mcp:write"] {
        let (status, body) = json_of(cc(Some(asked)).await.expect("token")).await;
        assert_eq!(
            (status, error_of(&body)),
            (400, Some("invalid_scope")),
            "{asked}: {body}"
        );
    }
    // The interop suite's request (`dev --client svc:svc-secret`, scope=mcp:read).
    let (status, body) = json_of(cc(Some("mcp:read")).await.expect("token")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "mcp:read");
    let (status, body) = json_of(cc(None).await.expect("token")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        claims(body["access_token"].as_str().expect("at"))["scope"],
        "mcp:read",
        "no scope asked: the client's own scopes, not the server's defaults or all of them"
    );
    r.stop().await;
}

/// A machine client without scopes is a configuration error, not "every scope".
#[tokio::test]
async fn f1_a_machine_client_without_scopes_is_a_configuration_error() {
    let err = AuthServer::builder("http://127.0.0.1:1")
        .client(ClientSpec::service("svc", "svc-secret"))
        .build()
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("svc"), "{err}");
    let err = AuthServer::builder("http://127.0.0.1:1")
        .client(ClientSpec::service("svc", "svc-secret").scopes(["admin"]))
        .build()
        .await
        .expect_err("a scope the server does not offer");
    assert!(err.to_string().contains("admin"), "{err}");
}

/// With no configured resource, the audience of a token is never a URL the client chose:
/// `resource` is refused at the token and authorization endpoints, and tokens carry no
/// `aud`.
#[tokio::test]
async fn f1_no_client_chosen_audience_without_configured_resources() {
    let r = start_bare(|b| b.client(ClientSpec::service("svc", "svc-secret").scopes(["mcp:read"])))
        .await;
    let other = "https://other-resource-server.example/mcp";
    let (status, body) = json_of(
        r.http
            .post(r.url("/token"))
            .basic_auth("svc", Some("svc-secret"))
            .form(&[("grant_type", "client_credentials"), ("resource", other)])
            .send()
            .await
            .expect("token"),
    )
    .await;
    assert_eq!(
        (status, error_of(&body)),
        (400, Some("invalid_target")),
        "{body}"
    );
    let (status, body) = json_of(
        r.http
            .post(r.url("/token"))
            .basic_auth("svc", Some("svc-secret"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .expect("token"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        claims(body["access_token"].as_str().expect("at"))
            .get("aud")
            .is_none(),
        "{body}"
    );
    assert!(body.get("resource").is_none(), "{body}");

    // The authorization endpoint: no code for a resource the client chose.
    let client = r.public_client().await;
    let mut url = url::Url::parse(&r.url("/authorize")).expect("url");
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_challenge", CHALLENGE)
        .append_pair("code_challenge_method", "S256")
        .append_pair("resource", other);
    let res = r.http.get(url).send().await.expect("authorize");
    let location = res
        .headers()
        .get("location")
        .map(|l| l.to_str().expect("ascii").to_owned());
    match location {
        Some(location) => assert!(
            location.contains("error=invalid_target") && !location.contains("code="),
            "{location}"
        ),
        None => assert_eq!(res.status(), 400),
    }
    r.stop().await;
}

/// RFC 7591 §3: with an initial access token, the operator's tool can register a machine
/// client (with the scopes it names); without it, or with a wrong one, nothing registers.
#[tokio::test]
async fn f1_an_initial_access_token_registers_machine_clients() {
    let r = start_with(|b| {
        b.registration(Registration::InitialAccessToken(
            "operator-issued-iat".into(),
        ))
    })
    .await;
    let machine = json!({"client_name": "batch job", "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "client_secret_basic", "scope": "mcp:read"});
    let (status, body) = r.register(machine.clone()).await;
    assert_eq!((status, error_of(&body)), (401, Some("invalid_token")));
    for wrong in [
        "Bearer guess",
        "Bearer operator-issued-iat-",
        "Basic b3BlcmF0b3I=",
    ] {
        let res = r
            .http
            .post(r.url("/register"))
            .header("authorization", wrong)
            .json(&machine)
            .send()
            .await
            .expect("register");
        assert_eq!(res.status(), 401, "{wrong}");
        assert!(
            res.headers()["www-authenticate"]
                .to_str()
                .expect("ascii")
                .starts_with("Bearer"),
            "{wrong}"
        );
    }
    // Even a client for users needs the token under this policy.
    let (status, _) = r
        .register(json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}))
        .await;
    assert_eq!(status, 401);

    let (status, body) = json_of(
        r.http
            .post(r.url("/register"))
            .bearer_auth("operator-issued-iat")
            .json(&machine)
            .send()
            .await
            .expect("register"),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = body["client_id"].as_str().expect("id").to_owned();
    let secret = body["client_secret"].as_str().expect("secret").to_owned();
    let cc = |scope: &'static str| {
        r.http
            .post(r.url("/token"))
            .basic_auth(&id, Some(&secret))
            .form(&[("grant_type", "client_credentials"), ("scope", scope)])
            .send()
    };
    let (status, body) = json_of(cc("mcp:read").await.expect("token")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = json_of(cc("admin").await.expect("token")).await;
    assert_eq!((status, error_of(&body)), (400, Some("invalid_scope")));
    // A machine registration names the scopes it may use, among those offered.
    for bad in [
        json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_basic"}),
        json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_basic", "scope": "root"}),
    ] {
        let (status, body) = json_of(
            r.http
                .post(r.url("/register"))
                .bearer_auth("operator-issued-iat")
                .json(&bad)
                .send()
                .await
                .expect("register"),
        )
        .await;
        assert_eq!(
            (status, error_of(&body)),
            (400, Some("invalid_client_metadata")),
            "{bad}"
        );
    }
    r.stop().await;
}

#[tokio::test]
async fn f1_registration_off_removes_the_endpoint_from_the_metadata() {
    for (policy, advertised) in [
        (Registration::Open, true),
        (Registration::InitialAccessToken("t".into()), true),
        (Registration::Off, false),
    ] {
        let r = start_with(|b| b.registration(policy)).await;
        let doc: Value = r
            .http
            .get(r.url("/.well-known/oauth-authorization-server"))
            .send()
            .await
            .expect("metadata")
            .json()
            .await
            .expect("json");
        assert_eq!(
            doc.get("registration_endpoint").is_some(),
            advertised,
            "{doc}"
        );
        if !advertised {
            let (status, _) = r
                .register(
                    json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}),
                )
                .await;
            assert_eq!(status, 403);
        }
        r.stop().await;
    }
}

/// F12 for the configuration types of this part: `Debug` never shows a secret.
#[test]
fn f12_client_specs_and_policies_print_no_secret() {
    let spec = ClientSpec::service("svc", "svc-very-secret-value").scopes(["mcp:read"]);
    let printed = format!("{spec:?} {spec:#?}");
    assert!(printed.contains("svc"), "{printed}");
    assert!(!printed.contains("svc-very-secret-value"), "{printed}");
    let policy = Registration::InitialAccessToken("iat-very-secret-value".into());
    let printed = format!("{policy:?}");
    assert!(!printed.contains("iat-very-secret-value"), "{printed}");
}

// ---- F3: cross-origin pages cannot use the server on someone's behalf -----------------------

/// The review's CORS-simple registration: `text/plain` (or no type) is 415 with an RFC 7591
/// error, so a browser must preflight a registration.
#[tokio::test]
async fn f3_register_needs_application_json() {
    let r = start().await;
    let body =
        r#"{"redirect_uris":["http://127.0.0.1:5555/cb"],"token_endpoint_auth_method":"none"}"#;
    for content_type in [
        Some("text/plain;charset=UTF-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let mut req = r
            .http
            .post(r.url("/register"))
            .header("origin", EVIL)
            .body(body);
        if let Some(content_type) = content_type {
            req = req.header("content-type", content_type);
        }
        let (status, answer) = json_of(req.send().await.expect("register")).await;
        assert_eq!(
            (status, error_of(&answer)),
            (415, Some("invalid_client_metadata")),
            "{content_type:?}: {answer}"
        );
    }
    let res = r
        .http
        .post(r.url("/register"))
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .expect("register");
    assert_eq!(res.status(), 201);
    r.stop().await;
}

/// CORS endpoint by endpoint: metadata and JWKS for any origin (GET); token, register and
/// revoke for any origin without credentials; the pages a browser navigates to (authorize,
/// the proxy callback) none at all.
#[tokio::test]
async fn f3_cors_is_per_endpoint() {
    let r = start().await;
    let preflight = |path: &str, method: &str, headers: &str| {
        r.http
            .request(reqwest::Method::OPTIONS, r.url(path))
            .header("origin", EVIL)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", headers)
            .send()
    };
    let allow_origin =
        |res: &reqwest::Response| res.headers().get("access-control-allow-origin").cloned();
    let no_credentials = |res: &reqwest::Response| {
        res.headers()
            .get("access-control-allow-credentials")
            .is_none()
    };

    for path in ["/.well-known/oauth-authorization-server", "/jwks"] {
        let res = r
            .http
            .get(r.url(path))
            .header("origin", EVIL)
            .send()
            .await
            .expect("get");
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(
            allow_origin(&res).as_ref().map(|v| v.as_bytes()),
            Some(&b"*"[..]),
            "{path}"
        );
        assert!(no_credentials(&res), "{path}");
    }
    for path in ["/token", "/register", "/revoke"] {
        let res = preflight(path, "POST", "content-type,authorization")
            .await
            .expect("preflight");
        assert!(res.status().is_success(), "{path}: {}", res.status());
        assert_eq!(
            allow_origin(&res).as_ref().map(|v| v.as_bytes()),
            Some(&b"*"[..]),
            "{path}"
        );
        assert!(no_credentials(&res), "{path}");
        let allowed = res
            .headers()
            .get("access-control-allow-headers")
            .map(|v| v.to_str().expect("ascii").to_ascii_lowercase())
            .unwrap_or_default();
        assert!(
            allowed.contains("content-type") && allowed.contains("authorization"),
            "{path}: {allowed}"
        );
        let res = r
            .http
            .post(r.url(path))
            .header("origin", EVIL)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("x=1")
            .send()
            .await
            .expect("post");
        assert_eq!(
            allow_origin(&res).as_ref().map(|v| v.as_bytes()),
            Some(&b"*"[..]),
            "{path}"
        );
        assert!(no_credentials(&res), "{path}");
    }
    for path in ["/authorize", "/oauth/callback"] {
        let res = r
            .http
            .get(r.url(path))
            .header("origin", EVIL)
            .send()
            .await
            .expect("get");
        assert!(allow_origin(&res).is_none(), "{path}: {:?}", res.headers());
        let res = preflight(path, "POST", "content-type")
            .await
            .expect("preflight");
        assert!(allow_origin(&res).is_none(), "{path}: {:?}", res.headers());
        assert!(
            res.headers().get("access-control-allow-methods").is_none(),
            "{path}: {:?}",
            res.headers()
        );
    }
    r.stop().await;
}

// ---- F7: registrations bounded ---------------------------------------------------------------

/// The review's 64 KiB registration: over 8 KiB is refused.
#[tokio::test]
async fn f7_registration_metadata_is_limited_to_8_kib() {
    let r = start().await;
    let big = json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
        "client_name": "x".repeat(1000), "junk": "A".repeat(63_000)});
    let (status, body) = r.register(big).await;
    assert_eq!(
        (status, error_of(&body)),
        (413, Some("invalid_client_metadata")),
        "{}",
        short(&body)
    );
    let just_over = json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
        "client_name": "x".repeat(8 * 1024)});
    assert_eq!(r.register(just_over).await.0, 413);
    let under = json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
        "client_name": "x".repeat(7 * 1024)});
    assert_eq!(r.register(under).await.0, 201);
    r.stop().await;
}

/// Members the server does not know are neither stored nor echoed; the RFC 7591 ones it
/// knows are kept.
#[tokio::test]
async fn f7_unknown_registration_members_are_dropped() {
    let r = start().await;
    let (status, body) = r
        .register(
            json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
            "client_uri": "https://app.example/", "contacts": ["ops@app.example"],
            "junk": "A".repeat(4000), "x-tracking": {"nested": [1, 2, 3]}}),
        )
        .await;
    assert_eq!(status, 201, "{}", short(&body));
    assert!(
        body.get("junk").is_none() && body.get("x-tracking").is_none(),
        "{}",
        short(&body)
    );
    assert_eq!(body["client_uri"], "https://app.example/");
    assert_eq!(body["contacts"], json!(["ops@app.example"]));
    let stored = r
        .server
        .store()
        .client(body["client_id"].as_str().expect("id"))
        .await
        .expect("read")
        .expect("stored");
    let stored = serde_json::to_string(&stored).expect("json");
    assert!(
        !stored.contains("junk") && !stored.contains("x-tracking") && !stored.contains("AAAA"),
        "{}",
        &stored[..stored.len().min(300)]
    );
    r.stop().await;
}

/// A registration lapses when unused (here at once: a zero time to live), so an anonymous
/// caller cannot fill the store for good.
#[tokio::test]
async fn f7_an_unused_registration_lapses() {
    let r = start_with(|b| b.unused_registration_ttl(Duration::ZERO)).await;
    let client = r.public_client().await;
    assert!(
        r.server
            .store()
            .client(&client)
            .await
            .expect("read")
            .is_none(),
        "a registration past its time is unknown"
    );
    let res = r
        .http
        .get(format!(
            "{}?response_type=code&client_id={client}&redirect_uri={REDIRECT}&code_challenge={CHALLENGE}&code_challenge_method=S256",
            r.url("/authorize")
        ))
        .send()
        .await
        .expect("authorize");
    assert_eq!(
        res.status(),
        400,
        "the lapsed client cannot start a sign-in"
    );
    r.stop().await;
}

/// The default registration limit per address: 20 at once, then one a minute (the review's
/// 20 a minute from each address filled a store by 1.8 GB a day). On tokio's paused clock,
/// through `oneshot` with the peer address the server would see.
#[tokio::test(start_paused = true)]
async fn f7_registrations_per_address_are_bounded_by_default() {
    use tower::ServiceExt as _;

    let router = AuthServer::builder("http://127.0.0.1:9")
        .build()
        .await
        .expect("server")
        .router();
    let register = |peer: [u8; 4]| {
        let mut req = http::Request::post("/register")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(
                r#"{"redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"none"}"#,
            ))
            .expect("request");
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                peer, 40_000,
            ))));
        let router = router.clone();
        async move { router.oneshot(req).await.expect("infallible").status() }
    };
    let attacker = [198, 51, 100, 7];
    for n in 1..=20 {
        assert_eq!(register(attacker).await, 201, "registration {n}");
    }
    assert_eq!(register(attacker).await, 429);
    assert_eq!(register([203, 0, 113, 9]).await, 201, "another address");
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(
        register(attacker).await,
        429,
        "half a minute refills nothing"
    );
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(register(attacker).await, 201, "one a minute");
    assert_eq!(register(attacker).await, 429);
}

/// A client that completes an authorization is kept; one that does not keeps its expiry
/// (24 hours by default).
#[tokio::test]
async fn f7_a_client_that_completes_an_authorization_is_kept() {
    let r = start().await;
    let used = r.public_client().await;
    let unused = r.public_client().await;
    let expiry = |record: Option<mcp_oauth::auth_server::store::ClientRecord>| {
        record.expect("registered").expires_at
    };
    let at = expiry(r.server.store().client(&unused).await.expect("read")).expect("an expiry");
    let issued = r
        .server
        .store()
        .client(&unused)
        .await
        .expect("read")
        .expect("c")
        .issued_at;
    assert_eq!(at - issued, 86_400, "the default time to live is 24 hours");

    let code = r.code(&used).await;
    let (status, body) = r.redeem(&used, &code, VERIFIER).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        expiry(r.server.store().client(&used).await.expect("read")),
        None,
        "kept once it redeemed a code"
    );
    assert!(expiry(r.server.store().client(&unused).await.expect("read")).is_some());
    r.stop().await;
}

// ---- F8: codes and refresh tokens are used only by their owner ------------------------------

/// The review's request: a wrong verifier first. The code stays usable by its owner.
#[tokio::test]
async fn f8_a_wrong_verifier_leaves_the_code_to_its_owner() {
    let r = start().await;
    let client = r.public_client().await;
    let code = r.code(&client).await;
    let (status, body) = r.redeem(&client, &code, &"A".repeat(43)).await;
    assert_eq!((status, error_of(&body)), (400, Some("invalid_grant")));
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("code_verifier")),
        "{body}"
    );
    let (status, body) = r.redeem(&client, &code, VERIFIER).await;
    assert_eq!(status, 200, "the owner still redeems the code: {body}");
    assert!(r.accepted(body["access_token"].as_str().expect("at")).await);
    r.stop().await;
}

/// Another client, or the owner with another redirect URI or resource, burns nothing.
#[tokio::test]
async fn f8_a_code_presented_by_another_client_or_to_another_target_stays_usable() {
    let r = start().await;
    let owner = r.public_client().await;
    let thief = r.public_client().await;
    let code = r.code(&owner).await;
    let (status, body) = r.redeem(&thief, &code, VERIFIER).await;
    assert_eq!((status, error_of(&body)), (400, Some("invalid_grant")));
    let (status, body) = r
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &owner),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:33418/other"),
            ("code_verifier", VERIFIER),
        ])
        .await;
    assert_eq!((status, error_of(&body)), (400, Some("invalid_grant")));
    let (status, body) = r
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &owner),
            ("code", &code),
            ("code_verifier", VERIFIER),
            ("resource", "http://127.0.0.1:9999/other"),
        ])
        .await;
    assert_eq!((status, error_of(&body)), (400, Some("invalid_target")));
    let (status, body) = r.redeem(&owner, &code, VERIFIER).await;
    assert_eq!(status, 200, "{body}");
    r.stop().await;
}

/// A second successful redemption still revokes the grant, and says only that the code was
/// used; a replay that fails a check (wrong verifier) revokes nothing.
#[tokio::test]
async fn f8_a_second_redemption_revokes_the_grant_a_failed_one_does_not() {
    let r = start().await;
    let client = r.public_client().await;
    let code = r.code(&client).await;
    let (status, first) = r.redeem(&client, &code, VERIFIER).await;
    assert_eq!(status, 200, "{first}");
    let access = first["access_token"].as_str().expect("at").to_owned();
    let refresh = first["refresh_token"].as_str().expect("rt").to_owned();

    let (status, body) = r.redeem(&client, &code, &"B".repeat(43)).await;
    assert_eq!((status, error_of(&body)), (400, Some("invalid_grant")));
    assert!(
        r.accepted(&access).await,
        "someone who saw the code but not the verifier revokes nothing"
    );

    let (status, body) = r.redeem(&client, &code, VERIFIER).await;
    assert_eq!((status, error_of(&body)), (400, Some("invalid_grant")));
    assert_eq!(body["error_description"], "the code was already used");
    assert!(!r.accepted(&access).await, "the replay revoked the grant");
    let (status, body) = r.refresh(&client, &refresh).await;
    assert_eq!((status, error_of(&body)), (400, Some("invalid_grant")));
    r.stop().await;
}

/// A refresh token presented by another client is not used up: its owner refreshes after.
#[tokio::test]
async fn f8_another_client_cannot_burn_a_refresh_token() {
    let r = start().await;
    let owner = r.public_client().await;
    let thief = r.public_client().await;
    let code = r.code(&owner).await;
    let (_, tokens) = r.redeem(&owner, &code, VERIFIER).await;
    let refresh = tokens["refresh_token"].as_str().expect("rt").to_owned();
    let (status, body) = r.refresh(&thief, &refresh).await;
    assert_eq!((status, error_of(&body)), (400, Some("invalid_grant")));
    let (status, body) = r.refresh(&owner, &refresh).await;
    assert_eq!(status, 200, "the owner still refreshes: {body}");
    // Reuse by the owner still revokes the grant.
    let rotated = body["access_token"].as_str().expect("at").to_owned();
    let (status, _) = r.refresh(&owner, &refresh).await;
    assert_eq!(status, 400);
    assert!(!r.accepted(&rotated).await);
    r.stop().await;
}

// ---- item 9 / I4: the registered authentication method, and the bound resource ---------------

/// A `client_secret_basic` client cannot authenticate in the form or without its secret,
/// and a `client_secret_post` one not with HTTP Basic, at the token and revocation endpoints.
#[tokio::test]
async fn i4_the_registered_token_endpoint_auth_method_is_enforced() {
    let r = start().await;
    let (basic_id, basic_secret) = r.confidential_client("client_secret_basic").await;
    let (post_id, post_secret) = r.confidential_client("client_secret_post").await;
    // A grant that fails after authentication (400 invalid_grant) tells a client that
    // authenticated from one that did not (401 invalid_client).
    let grant = [
        ("grant_type", "authorization_code"),
        ("code", "no-such-code"),
        ("code_verifier", VERIFIER),
    ];
    for endpoint in ["/token", "/revoke"] {
        let form = |extra: Vec<(&'static str, String)>| {
            let mut form: Vec<(&str, String)> = if endpoint == "/token" {
                grant.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
            } else {
                vec![("token", "no-such-token".to_owned())]
            };
            form.extend(extra);
            form
        };
        let ok = if endpoint == "/token" { 400 } else { 200 };
        let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
            (
                "basic client, Basic",
                r.http
                    .post(r.url(endpoint))
                    .basic_auth(&basic_id, Some(&basic_secret))
                    .form(&form(vec![])),
                ok,
            ),
            (
                "basic client, secret in the form",
                r.http.post(r.url(endpoint)).form(&form(vec![
                    ("client_id", basic_id.clone()),
                    ("client_secret", basic_secret.clone()),
                ])),
                401,
            ),
            (
                "basic client, no secret",
                r.http
                    .post(r.url(endpoint))
                    .form(&form(vec![("client_id", basic_id.clone())])),
                401,
            ),
            (
                "post client, secret in the form",
                r.http.post(r.url(endpoint)).form(&form(vec![
                    ("client_id", post_id.clone()),
                    ("client_secret", post_secret.clone()),
                ])),
                ok,
            ),
            (
                "post client, Basic",
                r.http
                    .post(r.url(endpoint))
                    .basic_auth(&post_id, Some(&post_secret))
                    .form(&form(vec![])),
                401,
            ),
        ];
        for (what, request, expected) in cases {
            let (status, body) = json_of(request.send().await.expect("send")).await;
            assert_eq!(status, expected, "{endpoint}, {what}: {body}");
            if expected == 401 {
                assert_eq!(
                    error_of(&body),
                    Some("invalid_client"),
                    "{endpoint}, {what}"
                );
            }
        }
    }
    r.stop().await;
}

/// RFC 8707 §2.2: the token response names the resource the token is bound to, for every
/// grant.
#[tokio::test]
async fn i4_the_token_response_names_its_resource() {
    let r = start_with(|b| b.client(ClientSpec::service("svc", "svc-secret").scopes(["mcp:read"])))
        .await;
    let client = r.public_client().await;
    let code = r.code(&client).await;
    let (status, body) = r.redeem(&client, &code, VERIFIER).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["resource"], RESOURCE, "{body}");
    let (status, body) = r
        .refresh(&client, body["refresh_token"].as_str().expect("rt"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["resource"], RESOURCE, "{body}");
    let (status, body) = json_of(
        r.http
            .post(r.url("/token"))
            .basic_auth("svc", Some("svc-secret"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .expect("token"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["resource"], RESOURCE, "{body}");
    r.stop().await;
}
