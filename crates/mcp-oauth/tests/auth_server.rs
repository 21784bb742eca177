//! The embedded authorization server over real HTTP: the happy path, and every abuse case
//! the issue lists (missing PKCE, wrong verifier, code replay, redirect mismatch, open
//! redirects, CSRF on consent, refresh reuse, CIMD at a private address).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{CHALLENGE, Served, VERIFIER};
use mcp_oauth::auth_server::{AuthServer, CimdOptions, ClientSpec, DevUsers, RateLimit};
use mcp_oauth::authenticator::Authenticator;
use mcp_oauth::testing::hidden_form_fields;
use mcp_oauth::{OAuth, ResourceUrl, VerifyErrorKind};
use reqwest::redirect::Policy;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const RESOURCE: &str = "http://127.0.0.1:9999/mcp";
const REDIRECT: &str = "http://127.0.0.1:33418/callback";

struct Running {
    server: AuthServer,
    issuer: String,
    http: reqwest::Client,
    _served: Served,
}

async fn start_with(
    configure: impl FnOnce(
        mcp_oauth::auth_server::AuthServerBuilder,
    ) -> mcp_oauth::auth_server::AuthServerBuilder,
) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("addr"));
    let builder = AuthServer::builder(issuer.clone())
        .scopes(["mcp:read", "mcp:write", "admin"])
        .default_scopes(["mcp:read"])
        .resource(RESOURCE)
        .login(Arc::new(DevUsers::new().user("alice", "wonderland")))
        .client(ClientSpec::service("svc", "svc-secret").scopes(["mcp:read", "admin"]));
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
        _served: served,
    }
}

async fn start() -> Running {
    start_with(|b| b).await
}

impl Running {
    async fn register(&self, body: Value) -> (u16, Value) {
        let res = self
            .http
            .post(format!("{}/register", self.issuer))
            .json(&body)
            .send()
            .await
            .expect("register");
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }

    async fn public_client(&self) -> String {
        let (status, body) = self
            .register(json!({"redirect_uris": ["http://127.0.0.1/callback"], "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"], "application_type": "native", "client_name": "Test <Client>"}))
            .await;
        assert_eq!(status, 201, "{body}");
        body["client_id"].as_str().expect("client_id").to_owned()
    }

    /// A registered public client that has completed one authorization (a code redeemed), so
    /// that `/authorize` errors are redirected to it; a client that never did gets error
    /// pages (RFC 9700 §4.11.2, `tests/as_login.rs`).
    async fn activated_public_client(&self) -> String {
        let client = self.public_client().await;
        let cb = self.authorize(&client).await;
        let (status, body) = self
            .token(&[
                ("grant_type", "authorization_code"),
                ("code", &cb["code"]),
                ("client_id", &client),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ])
            .await;
        assert_eq!(status, 200, "{body}");
        client
    }

    fn authorize_url(&self, client_id: &str, extra: &[(&str, &str)]) -> String {
        let mut url = url::Url::parse(&format!("{}/authorize", self.issuer)).expect("url");
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in [
                ("response_type", "code"),
                ("client_id", client_id),
                ("redirect_uri", REDIRECT),
                ("state", "st-1"),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
                ("scope", "mcp:read mcp:write"),
                ("resource", RESOURCE),
            ] {
                if !extra.iter().any(|(name, _)| *name == k) {
                    q.append_pair(k, v);
                }
            }
            for (k, v) in extra {
                if !v.is_empty() {
                    q.append_pair(k, v);
                }
            }
        }
        url.to_string()
    }

    /// GETs the page and returns (status, body, cookie, request_id, csrf).
    async fn page(&self, url: &str) -> (u16, String, Option<String>, HashMap<String, String>) {
        let res = self.http.get(url).send().await.expect("get");
        let status = res.status().as_u16();
        let cookie = res
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
        let body = res.text().await.expect("body");
        let fields = hidden_form_fields(&body).into_iter().collect();
        (status, body, cookie, fields)
    }

    async fn submit(
        &self,
        fields: &HashMap<String, String>,
        cookie: Option<&str>,
        username: &str,
        password: &str,
        decision: &str,
    ) -> reqwest::Response {
        let mut form: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        form.extend([
            ("username", username),
            ("password", password),
            ("decision", decision),
        ]);
        let mut req = self
            .http
            .post(format!("{}/authorize", self.issuer))
            .form(&form);
        if let Some(cookie) = cookie {
            req = req.header("cookie", cookie);
        }
        req.send().await.expect("post")
    }

    /// The whole browser leg: page, sign in, approve; returns the callback query.
    async fn authorize(&self, client_id: &str) -> HashMap<String, String> {
        let (status, _, cookie, fields) = self.page(&self.authorize_url(client_id, &[])).await;
        assert_eq!(status, 200);
        let res = self
            .submit(&fields, cookie.as_deref(), "alice", "wonderland", "approve")
            .await;
        assert_eq!(res.status().as_u16(), 302);
        callback(&res)
    }

    async fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let res = self
            .http
            .post(format!("{}/token", self.issuer))
            .form(form)
            .send()
            .await
            .expect("token");
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }

    async fn exchange(&self, client_id: &str, code: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", client_id),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("resource", RESOURCE),
        ])
        .await
    }

    async fn verify(&self, token: &str) -> Result<mcp_oauth::Auth, mcp_oauth::VerifyError> {
        let auth = OAuth::builder()
            .verifier(self.server.verifier().expect("verifier"))
            .token_cache(None)
            .build_authenticator()
            .expect("pipeline");
        auth.authenticate(token, &ResourceUrl::parse(RESOURCE).expect("resource"))
            .await
    }
}

fn callback(res: &reqwest::Response) -> HashMap<String, String> {
    let location = res
        .headers()
        .get("location")
        .expect("location")
        .to_str()
        .expect("ascii");
    assert!(location.starts_with(REDIRECT), "{location}");
    url::Url::parse(location)
        .expect("url")
        .query_pairs()
        .into_owned()
        .collect()
}

#[tokio::test]
async fn metadata_advertises_what_mcp_clients_need() {
    let r = start().await;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let doc: Value = r
            .http
            .get(format!("{}{path}", r.issuer))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        assert_eq!(doc["issuer"], r.issuer.as_str());
        assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(doc["response_types_supported"], json!(["code"]));
        assert!(
            doc["token_endpoint_auth_methods_supported"]
                .as_array()
                .expect("methods")
                .contains(&json!("none"))
        );
        assert_eq!(doc["client_id_metadata_document_supported"], true);
        assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
        assert_eq!(
            doc["grant_types_supported"],
            json!(["authorization_code", "refresh_token", "client_credentials"])
        );
        assert_eq!(doc["jwks_uri"], format!("{}/jwks", r.issuer));
    }
    let jwks: Value = r
        .http
        .get(format!("{}/jwks", r.issuer))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(jwks["keys"].as_array().expect("keys").len(), 1);
    assert!(
        jwks["keys"][0].get("d").is_none(),
        "no private member is published"
    );
}

#[tokio::test]
async fn registration_validates_redirects_and_client_types() {
    // Eleven registrations from one address: more than the default burst allows.
    let r = start_with(|b| b.rate_limits(None, None, None)).await;
    let (status, body) = r.register(json!({"redirect_uris": ["http://127.0.0.1:5555/cb"], "token_endpoint_auth_method": "none", "application_type": "native"})).await;
    assert_eq!(status, 201);
    assert!(body.get("client_secret").is_none());
    let (status, body) = r
        .register(json!({"redirect_uris": ["https://app.example/cb"]}))
        .await;
    assert_eq!(status, 201);
    assert_eq!(body["token_endpoint_auth_method"], "client_secret_basic");
    assert!(
        body["client_secret"]
            .as_str()
            .is_some_and(|s| s.len() >= 32)
    );
    for (bad, error) in [
        (
            json!({"redirect_uris": ["http://app.example/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["javascript:alert(1)"], "application_type": "native"}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https://app.example/cb#frag"]}),
            "invalid_redirect_uri",
        ),
        (json!({"redirect_uris": []}), "invalid_redirect_uri"),
        (
            json!({"redirect_uris": ["cursor://cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https://a/cb"], "token_endpoint_auth_method": "private_key_jwt"}),
            "invalid_client_metadata",
        ),
        (
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "none"}),
            "invalid_client_metadata",
        ),
        // Anyone may register a client that acts for a user, none that acts for itself:
        // machine clients come from the operator (configured, or an initial access token).
        (
            json!({"redirect_uris": ["https://app.example/cb"], "grant_types": ["authorization_code", "client_credentials"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_basic", "scope": "mcp:read"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": "https://a/cb"}),
            "invalid_client_metadata",
        ),
        (json!(["not", "an", "object"]), "invalid_client_metadata"),
    ] {
        let (status, body) = r.register(bad.clone()).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(error)),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn the_page_names_the_client_redirect_host_and_scopes_and_cannot_be_framed() {
    let r = start().await;
    let client = r.public_client().await;
    let res = r
        .http
        .get(r.authorize_url(&client, &[]))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(res.headers()["x-frame-options"], "DENY");
    assert_eq!(res.headers()["cache-control"], "no-store");
    // Not `no-referrer`: browsers would then send `Origin: null` with the form.
    assert_eq!(res.headers()["referrer-policy"], "same-origin");
    let cookie = res.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let html = res.text().await.expect("body");
    assert!(
        html.contains("Test &lt;Client&gt;"),
        "the client name, escaped"
    );
    assert!(html.contains("127.0.0.1"), "the redirect host");
    assert!(html.contains("<code>mcp:read</code>") && html.contains("<code>mcp:write</code>"));
    assert!(
        html.contains("address on your own computer"),
        "a loopback warning"
    );
}

#[tokio::test]
async fn full_flow_with_refresh_rotation() {
    let r = start().await;
    let client = r.public_client().await;
    let cb = r.authorize(&client).await;
    assert_eq!(cb["state"], "st-1");
    assert_eq!(cb["iss"], r.issuer);
    let (status, tokens) = r.exchange(&client, &cb["code"]).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["scope"], "mcp:read mcp:write");
    let access = tokens["access_token"].as_str().expect("at");
    let auth = r.verify(access).await.expect("our own token verifies");
    assert_eq!(auth.subject(), "alice");
    assert_eq!(auth.claims.str("aud"), Some(RESOURCE));
    assert_eq!(auth.client_id.as_deref(), Some(client.as_str()));
    assert_eq!(auth.user.email.as_deref(), Some("alice@example.com"));
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(access.split('.').next().expect("h"))
            .expect("b64"),
    )
    .expect("json");
    assert_eq!(header["typ"], "at+jwt");

    let refresh = tokens["refresh_token"].as_str().expect("rt").to_owned();
    let (status, rotated) = r
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", &client),
        ])
        .await;
    assert_eq!(status, 200, "{rotated}");
    let second = rotated["refresh_token"]
        .as_str()
        .expect("rotated")
        .to_owned();
    assert_ne!(second, refresh);
    // Reusing the old refresh token revokes the whole grant.
    let (status, body) = r
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", &client),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, _) = r
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &second),
            ("client_id", &client),
        ])
        .await;
    assert_eq!(status, 400, "the rotated token died with its family");
    let err = r
        .verify(rotated["access_token"].as_str().expect("at"))
        .await
        .expect_err("revoked");
    assert_eq!(err.kind(), VerifyErrorKind::Inactive);
}

#[tokio::test]
async fn pkce_is_required_and_checked() {
    let r = start().await;
    let client = r.activated_public_client().await;
    for (extra, description) in [
        (vec![("code_challenge", "")], "code_challenge is required"),
        (
            vec![("code_challenge_method", "plain")],
            "code_challenge_method must be S256",
        ),
        (
            vec![("code_challenge_method", "")],
            "code_challenge_method must be S256",
        ),
        (vec![("code_challenge", "short")], "code_challenge must be"),
    ] {
        let res = r
            .http
            .get(r.authorize_url(&client, &extra))
            .send()
            .await
            .expect("get");
        assert_eq!(res.status(), 302, "{extra:?}");
        let cb = callback(&res);
        assert_eq!(cb["error"], "invalid_request");
        assert!(
            cb["error_description"].starts_with(description),
            "{}",
            cb["error_description"]
        );
        assert_eq!(cb["iss"], r.issuer, "iss on error redirects too");
        assert_eq!(cb["state"], "st-1");
    }
    let cb = r.authorize(&client).await;
    let (status, body) = r
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &cb["code"]),
            ("client_id", &client),
            ("redirect_uri", REDIRECT),
            (
                "code_verifier",
                "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX",
            ),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "wrong verifier"
    );
    let cb = r.authorize(&client).await;
    let (status, body) = r
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &cb["code"]),
            ("client_id", &client),
            ("redirect_uri", REDIRECT),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "no verifier"
    );
}

#[tokio::test]
async fn a_replayed_code_revokes_what_it_issued() {
    let r = start().await;
    let client = r.public_client().await;
    let cb = r.authorize(&client).await;
    let (status, first) = r.exchange(&client, &cb["code"]).await;
    assert_eq!(status, 200);
    let (status, body) = r.exchange(&client, &cb["code"]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, _) = r
        .token(&[
            ("grant_type", "refresh_token"),
            (
                "refresh_token",
                first["refresh_token"].as_str().expect("rt"),
            ),
            ("client_id", &client),
        ])
        .await;
    assert_eq!(
        status, 400,
        "the refresh token of the replayed code is revoked"
    );
    assert!(
        r.verify(first["access_token"].as_str().expect("at"))
            .await
            .is_err(),
        "and so is its access token"
    );
}

#[tokio::test]
async fn unredirectable_errors_are_pages_never_redirects() {
    let r = start().await;
    let client = r.public_client().await;
    for url in [
        r.authorize_url(&client, &[("redirect_uri", "https://evil.example/steal")]),
        r.authorize_url(
            &client,
            &[("redirect_uri", "http://127.0.0.1:33418/callback/../../evil")],
        ),
        r.authorize_url(
            &client,
            &[("redirect_uri", "http://localhost:33418/callback")],
        ),
        r.authorize_url("unknown-client", &[]),
        r.authorize_url("", &[]),
        format!(
            "{}&redirect_uri=https%3A%2F%2Fevil.example%2F",
            r.authorize_url(&client, &[])
        ),
    ] {
        let res = r.http.get(&url).send().await.expect("get");
        assert_eq!(res.status(), 400, "{url}");
        assert!(
            res.headers().get("location").is_none(),
            "no redirect for {url}"
        );
        assert!(
            res.text()
                .await
                .expect("body")
                .contains("This sign-in cannot continue")
        );
    }
    // Any port on the registered loopback redirect is fine (RFC 8252 §7.3).
    let res = r
        .http
        .get(r.authorize_url(
            &client,
            &[("redirect_uri", "http://127.0.0.1:50123/callback")],
        ))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn consent_form_needs_its_cookie_and_token() {
    let r = start().await;
    let client = r.public_client().await;
    let (_, _, cookie, fields) = r.page(&r.authorize_url(&client, &[])).await;
    let cookie = cookie.expect("cookie");
    // No cookie (a cross-site form post), a wrong token, a foreign Origin: all refused.
    assert_eq!(
        r.submit(&fields, None, "alice", "wonderland", "approve")
            .await
            .status(),
        403
    );
    let mut forged = fields.clone();
    forged.insert("csrf".into(), "A".repeat(43));
    assert_eq!(
        r.submit(&forged, Some(&cookie), "alice", "wonderland", "approve")
            .await
            .status(),
        403
    );
    let mut form: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    form.extend([
        ("username", "alice"),
        ("password", "wonderland"),
        ("decision", "approve"),
    ]);
    let res = r
        .http
        .post(format!("{}/authorize", r.issuer))
        .form(&form)
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 403);
    // `Origin: null` (a sandboxed frame, e.g. on another loopback port, which is same-site
    // for cookies) is refused like a foreign origin, even with the cookie and token (I2);
    // the pages send `Referrer-Policy: same-origin`, so a real browser sends the origin.
    let mut wrong: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    wrong.extend([
        ("username", "alice"),
        ("password", "nope"),
        ("decision", "approve"),
    ]);
    let res = r
        .http
        .post(format!("{}/authorize", r.issuer))
        .form(&wrong)
        .header("cookie", &cookie)
        .header("origin", "null")
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 403);
    // A wrong password shows the page again; the request survives and then succeeds.
    let res = r
        .submit(&fields, Some(&cookie), "alice", "nope", "approve")
        .await;
    assert_eq!(res.status(), 400);
    assert!(
        res.text()
            .await
            .expect("body")
            .contains("Wrong user name or password")
    );
    let res = r
        .submit(&fields, Some(&cookie), "alice", "wonderland", "approve")
        .await;
    assert_eq!(res.status(), 302);
    assert!(callback(&res).contains_key("code"));
    // The request is single use.
    assert_eq!(
        r.submit(&fields, Some(&cookie), "alice", "wonderland", "approve")
            .await
            .status(),
        400
    );
}

#[tokio::test]
async fn deny_returns_access_denied_with_iss_and_state() {
    let r = start().await;
    let client = r.public_client().await;
    let (_, _, cookie, fields) = r.page(&r.authorize_url(&client, &[])).await;
    let res = r.submit(&fields, cookie.as_deref(), "", "", "deny").await;
    let cb = callback(&res);
    assert_eq!(cb["error"], "access_denied");
    assert_eq!(cb["state"], "st-1");
    assert_eq!(cb["iss"], r.issuer);
}

#[tokio::test]
async fn scope_and_resource_are_checked() {
    let r = start().await;
    let client = r.activated_public_client().await;
    let res = r
        .http
        .get(r.authorize_url(&client, &[("scope", "mcp:read root")]))
        .send()
        .await
        .expect("get");
    assert_eq!(callback(&res)["error"], "invalid_scope");
    let res = r
        .http
        .get(r.authorize_url(&client, &[("resource", "https://other.example/mcp")]))
        .send()
        .await
        .expect("get");
    assert_eq!(callback(&res)["error"], "invalid_target");
    // offline_access is accepted (clients add it), and the trailing-slash form of the resource too.
    let res = r
        .http
        .get(r.authorize_url(
            &client,
            &[
                ("scope", "mcp:read offline_access"),
                ("resource", "http://127.0.0.1:9999/mcp/"),
            ],
        ))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn client_credentials_and_client_authentication() {
    let r = start().await;
    let res = r
        .http
        .post(format!("{}/token", r.issuer))
        .basic_auth("svc", Some("svc-secret"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "mcp:read admin"),
            ("resource", RESOURCE),
        ])
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.expect("json");
    let auth = r
        .verify(body["access_token"].as_str().expect("at"))
        .await
        .expect("verifies");
    assert_eq!(auth.subject(), "svc");
    assert_eq!(auth.scopes, vec!["mcp:read", "admin"]);
    assert!(body.get("refresh_token").is_none());
    assert_eq!(body["resource"], RESOURCE, "the bound resource is named");

    // Only the scopes the operator gave this client, even ones the server offers.
    let res = r
        .http
        .post(format!("{}/token", r.issuer))
        .basic_auth("svc", Some("svc-secret"))
        .form(&[("grant_type", "client_credentials"), ("scope", "mcp:write")])
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.expect("json")["error"],
        "invalid_scope"
    );

    let res = r
        .http
        .post(format!("{}/token", r.issuer))
        .basic_auth("svc", Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 401);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .starts_with("Basic")
    );
    assert_eq!(
        res.json::<Value>().await.expect("json")["error"],
        "invalid_client"
    );
    let (status, body) = r
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", "never-registered"),
            ("code", "x"),
            ("code_verifier", VERIFIER),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "unknown clients get 401 so they re-register"
    );
    let public = r.public_client().await;
    let (status, body) = r
        .token(&[("grant_type", "client_credentials"), ("client_id", &public)])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
    let res = r
        .http
        .post(format!("{}/token", r.issuer))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 400, "JSON bodies are refused");
    let res = r
        .http
        .post(format!("{}/token", r.issuer))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&grant_type=authorization_code&client_id=svc")
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 400, "repeated parameters are refused");
}

#[tokio::test]
async fn revocation_of_refresh_and_access_tokens() {
    let r = start().await;
    let client = r.public_client().await;
    let cb = r.authorize(&client).await;
    let (_, tokens) = r.exchange(&client, &cb["code"]).await;
    let res = r
        .http
        .post(format!("{}/revoke", r.issuer))
        .form(&[
            ("token", tokens["refresh_token"].as_str().expect("rt")),
            ("client_id", &client),
        ])
        .send()
        .await
        .expect("revoke");
    assert_eq!(res.status(), 200);
    assert!(
        r.verify(tokens["access_token"].as_str().expect("at"))
            .await
            .is_err(),
        "the grant is revoked"
    );
    let res = r
        .http
        .post(format!("{}/revoke", r.issuer))
        .form(&[("token", "garbage"), ("client_id", &client)])
        .send()
        .await
        .expect("revoke");
    assert_eq!(
        res.status(),
        200,
        "an unknown token is not an error (RFC 7009 §2.2)"
    );

    let cb = r.authorize(&client).await;
    let (_, tokens) = r.exchange(&client, &cb["code"]).await;
    let access = tokens["access_token"].as_str().expect("at");
    r.http
        .post(format!("{}/revoke", r.issuer))
        .form(&[("token", access), ("client_id", &client)])
        .send()
        .await
        .expect("revoke");
    assert!(r.verify(access).await.is_err());
    let (status, _) = r
        .token(&[
            ("grant_type", "refresh_token"),
            (
                "refresh_token",
                tokens["refresh_token"].as_str().expect("rt"),
            ),
            ("client_id", &client),
        ])
        .await;
    assert_eq!(status, 400, "revoking the access token revoked its grant");
}

mod metadata_documents {
    use super::*;

    async fn serve_document(
        doc: impl Fn(String) -> Value + Send + Sync + 'static,
    ) -> (String, Served) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let origin = format!("http://{}", listener.local_addr().expect("addr"));
        let url = format!("{origin}/client.json");
        let body = doc(url.clone()).to_string();
        let app = axum::Router::new().route(
            "/client.json",
            axum::routing::get(
                move || async move { ([("content-type", "application/json")], body) },
            ),
        );
        (url, Served::app(listener, app))
    }

    #[tokio::test]
    async fn a_document_client_signs_in_when_its_host_is_allowed() {
        let (url, _stop) = serve_document(|id| json!({"client_id": id, "client_name": "Doc Client", "redirect_uris": ["http://127.0.0.1/callback"]})).await;
        let host = url::Url::parse(&url).expect("url");
        let allowed = format!(
            "{}:{}",
            host.host_str().expect("host"),
            host.port().expect("port")
        );
        let r = start_with(|b| {
            b.client_metadata_documents(Some(CimdOptions::default().allow_host(allowed)))
        })
        .await;
        let (status, html, _, _) = r.page(&r.authorize_url(&url, &[])).await;
        assert_eq!(status, 200, "{html}");
        assert!(html.contains("Doc Client") && html.contains("identified by the document"));
        let cb = r.authorize(&url).await;
        let (status, _) = r.exchange(&url, &cb["code"]).await;
        assert_eq!(status, 200, "a public document client redeems its code");
    }

    /// A listener on loopback that counts every connection made to it and drops it: that
    /// nobody connected proves that nothing was fetched, whatever the scheme.
    struct CountingListener {
        port: u16,
        connections: Arc<std::sync::atomic::AtomicUsize>,
        task: tokio::task::JoinHandle<()>,
    }

    impl CountingListener {
        async fn start() -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let port = listener.local_addr().expect("addr").port();
            let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let count = connections.clone();
            let task = tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    drop(stream);
                }
            });
            Self {
                port,
                connections,
                task,
            }
        }

        fn connections(&self) -> usize {
            self.connections.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    impl Drop for CountingListener {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    #[tokio::test]
    async fn a_document_at_a_private_address_is_not_fetched() {
        // `https` URLs, which the default guard accepts as a scheme: only the address can
        // refuse them. Each points at a listener on 127.0.0.1 that counts connections, so a
        // fetch the guard let through would be seen (as a connection; its TLS would fail).
        let target = CountingListener::start().await;
        let port = target.port;
        let r = start().await;
        for url in [
            format!("https://127.0.0.1:{port}/client.json"),
            // A name for loopback, refused without asking DNS.
            format!("https://localhost:{port}/client.json"),
            // 127.0.0.1 inside an IPv6 address (IPv4-mapped).
            format!("https://[::ffff:127.0.0.1]:{port}/client.json"),
        ] {
            let (status, html, _, _) = r.page(&r.authorize_url(&url, &[])).await;
            assert_eq!(status, 400, "{url}: {html}");
            assert!(
                html.contains("client metadata document") && html.contains("cannot be fetched"),
                "{url}: {html}"
            );
            assert!(
                !html.contains("scheme"),
                "{url}: refused for its scheme: {html}"
            );
        }
        assert_eq!(
            target.connections(),
            0,
            "the server connected to a loopback address to fetch a client metadata document"
        );
    }

    #[tokio::test]
    async fn a_document_must_name_itself() {
        let (url, _stop) = serve_document(|_| json!({"client_id": "https://someone-else.example/client.json", "redirect_uris": ["http://127.0.0.1/callback"]})).await;
        let host = url::Url::parse(&url).expect("url");
        let allowed = format!(
            "{}:{}",
            host.host_str().expect("host"),
            host.port().expect("port")
        );
        let r = start_with(|b| {
            b.client_metadata_documents(Some(CimdOptions::default().allow_host(allowed)))
        })
        .await;
        let (status, html, _, _) = r.page(&r.authorize_url(&url, &[])).await;
        assert_eq!(status, 400);
        assert!(html.contains("is not its URL"), "{html}");
    }
}

#[tokio::test]
async fn auto_approve_answers_at_once() {
    let r = start_with(|b| b.auto_approve(true)).await;
    let client = r.public_client().await;
    let res = r
        .http
        .get(r.authorize_url(&client, &[]))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 302);
    let cb = callback(&res);
    let (status, tokens) = r.exchange(&client, &cb["code"]).await;
    assert_eq!(status, 200);
    assert_eq!(
        r.verify(tokens["access_token"].as_str().expect("at"))
            .await
            .expect("ok")
            .subject(),
        "alice"
    );
}

#[tokio::test]
async fn registration_and_token_requests_are_rate_limited() {
    // The slowest refill there is (one request a minute): the burst alone decides, however
    // slowly this machine sends the requests (within a minute). At 60 a minute, a request
    // that came a second after the first of its bucket found a token refilled.
    let r =
        start_with(|b| b.rate_limits(Some(RateLimit::new(1, 3)), Some(RateLimit::new(1, 2)), None))
            .await;
    let body = json!({"redirect_uris": ["http://127.0.0.1/callback"], "token_endpoint_auth_method": "none"});
    assert_eq!(r.register(body.clone()).await.0, 201);
    assert_eq!(r.register(body.clone()).await.0, 201);
    let res = r
        .http
        .post(format!("{}/register", r.issuer))
        .json(&body)
        .send()
        .await
        .expect("register");
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(
        res.json::<Value>().await.expect("json")["error"],
        "temporarily_unavailable"
    );
    for _ in 0..3 {
        let (status, _) = r
            .token(&[
                ("grant_type", "client_credentials"),
                ("client_id", "nobody"),
            ])
            .await;
        assert_eq!(status, 401);
    }
    let (status, _) = r
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "nobody"),
        ])
        .await;
    assert_eq!(status, 429, "guessing at the token endpoint is slowed down");
}

#[tokio::test]
async fn a_revocation_on_another_instance_is_seen_within_the_recheck_interval() {
    use mcp_oauth::auth_server::{KeyRing, MemoryStore, Store};
    use std::time::{Duration, Instant};

    // More instances of the same server share its store and keys, as behind a load balancer:
    // one asks the store on every request, one reuses a "not revoked" answer for a second,
    // one for an hour.
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let keys = Arc::new(KeyRing::ephemeral(mcp_oauth::jose::Algorithm::ES256).expect("keys"));
    let (s, k) = (store.clone(), keys.clone());
    let a = start_with(move |b| b.store(s).keys(k)).await;
    let instance = |recheck: Duration| {
        AuthServer::builder(a.issuer.clone())
            .store(store.clone())
            .keys(keys.clone())
            .resource(RESOURCE)
            .revocation_recheck(recheck)
            .build()
    };
    let resource = ResourceUrl::parse(RESOURCE).expect("resource");
    let authenticator =
        |server: AuthServer| Authenticator::new(server.verifier().expect("verifier"));
    let exact = authenticator(instance(Duration::ZERO).await.expect("instance"));
    let second = authenticator(instance(Duration::from_secs(1)).await.expect("instance"));
    let hour = authenticator(instance(Duration::from_secs(3600)).await.expect("instance"));
    let here = authenticator(a.server.clone());

    let client = a.public_client().await;
    let cb = a.authorize(&client).await;
    let (_, tokens) = a.exchange(&client, &cb["code"]).await;
    let access = tokens["access_token"].as_str().expect("at");
    for auth in [&exact, &second, &hour, &here] {
        auth.authenticate(access, &resource)
            .await
            .expect("valid everywhere");
    }
    // The one-second instance's "not revoked" answer was cached before this instant.
    let answered = Instant::now();
    let res = a
        .http
        .post(format!("{}/revoke", a.issuer))
        .form(&[("token", access), ("client_id", &client)])
        .send()
        .await
        .expect("revoke");
    assert_eq!(res.status(), 200);
    // Where the revocation was made, and where the store is asked every time: at once.
    assert!(here.authenticate(access, &resource).await.is_err());
    assert!(exact.authenticate(access, &resource).await.is_err());
    // Within its recheck interval an instance still accepts the token: its answer is reused.
    hour.authenticate(access, &resource)
        .await
        .expect("an hour's recheck interval has not passed");
    // Once the interval has passed, it asks the store again and refuses. (Waited for by the
    // clock, with a second's margin, then asserted once.)
    let after = answered + Duration::from_secs(2);
    while Instant::now() < after {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        second.authenticate(access, &resource).await.is_err(),
        "the revocation is seen once the recheck interval has passed"
    );
}
