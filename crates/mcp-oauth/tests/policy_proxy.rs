//! The access policy in proxy mode, against a local stand-in of GitHub: a user the policy
//! does not let sign in comes back to the client with `access_denied` after signing in at the
//! provider, and an allowed user gets only the scopes the policy grants.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::Query;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use common::{CHALLENGE, Served, VERIFIER, cookie_header, keep_cookies};
use mcp_oauth::auth_server::store::MemoryStore;
use mcp_oauth::auth_server::{AuthServer, Upstream};
use mcp_oauth::fetch::HttpClient;
use mcp_oauth::policy::{Catalog, Policy, PolicyConfig};
use mcp_oauth::testing::hidden_form_fields;
use reqwest::redirect;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const RESOURCE: &str = "http://127.0.0.1:9999/mcp";
const REDIRECT: &str = "http://127.0.0.1:33418/callback";

/// GitHub's endpoints, enough for one sign-in of octocat (octocat@github.example), who is in
/// the organisations `octo-org` and `acme` and the team `octo-org/admins`; the user API
/// answers only to the access token it issued.
async fn github() -> (String, Served) {
    async fn authorize(Query(q): Query<HashMap<String, String>>) -> Response {
        let redirect = q.get("redirect_uri").cloned().unwrap_or_default();
        let state = q.get("state").cloned().unwrap_or_default();
        Redirect::to(&format!("{redirect}?code=gh-code&state={state}")).into_response()
    }
    async fn token() -> Response {
        axum::Json(
            json!({"access_token": "gh-access", "token_type": "bearer", "scope": "read:user"}),
        )
        .into_response()
    }
    async fn user() -> Response {
        axum::Json(json!({"id": 583231, "login": "octocat", "name": "The Octocat", "email": "octocat@github.example"}))
            .into_response()
    }
    fn authorized(headers: &http::HeaderMap) -> bool {
        headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer gh-access")
    }
    async fn orgs(headers: http::HeaderMap) -> Response {
        if !authorized(&headers) {
            return http::StatusCode::UNAUTHORIZED.into_response();
        }
        axum::Json(json!([{"login": "octo-org", "id": 1}, {"login": "acme", "id": 2}]))
            .into_response()
    }
    async fn teams(headers: http::HeaderMap) -> Response {
        if !authorized(&headers) {
            return http::StatusCode::UNAUTHORIZED.into_response();
        }
        axum::Json(
            json!([{"slug": "admins", "name": "Admins", "organization": {"login": "octo-org"}}]),
        )
        .into_response()
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let origin = format!("http://{}", listener.local_addr().expect("addr"));
    let app = axum::Router::new()
        .route("/login/oauth/authorize", get(authorize))
        .route("/login/oauth/access_token", post(token))
        .route("/user", get(user))
        .route("/user/orgs", get(orgs))
        .route("/user/teams", get(teams));
    (origin, Served::app(listener, app))
}

struct Proxy {
    issuer: String,
    http: reqwest::Client,
    served: Served,
    github: Served,
}

async fn start(policy: &str) -> Proxy {
    start_with(policy, false).await
}

/// With `groups`, the GitHub organisations and teams become groups at sign-in.
async fn start_with(policy: &str, groups: bool) -> Proxy {
    let (origin, github) = github().await;
    let mut upstream = Upstream::github_at(&origin, &origin, "proxy-client", "proxy-secret")
        .http_client(HttpClient::new().unwrap());
    if groups {
        upstream = upstream.github_groups();
    }
    let upstream = upstream.build().unwrap();
    let policy = Policy::new(
        PolicyConfig::from_toml(policy, "policy.toml").expect("toml"),
        Catalog::new(),
    )
    .expect("policy");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("addr"));
    let server = AuthServer::builder(issuer.clone())
        .resource(RESOURCE)
        .scopes(["mcp:read", "mcp:write", "admin"])
        .store(Arc::new(MemoryStore::new()))
        .upstream(upstream)
        .encryption_key([9u8; 32].as_slice())
        .policy(policy, None)
        .build()
        .await
        .expect("proxy");
    let served = Served::app(listener, server.router());
    let http = reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .expect("client");
    Proxy {
        issuer,
        http,
        served,
        github,
    }
}

impl Proxy {
    /// A client registers, asks for `scope`, the browser approves every consent page and
    /// signs in at GitHub; the query the client gets back.
    async fn sign_in(&self, scope: &str) -> (String, HashMap<String, String>, Vec<String>) {
        let reg: Value = self
            .http
            .post(format!("{}/register", self.issuer))
            .json(&json!({"redirect_uris": ["http://127.0.0.1/callback"], "token_endpoint_auth_method": "none"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let client = reg["client_id"].as_str().unwrap().to_owned();
        let mut url = url::Url::parse(&format!("{}/authorize", self.issuer)).unwrap();
        url.query_pairs_mut().extend_pairs([
            ("response_type", "code"),
            ("client_id", client.as_str()),
            ("redirect_uri", REDIRECT),
            ("state", "client-state"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("resource", RESOURCE),
            ("scope", scope),
        ]);
        let mut jar = HashMap::new();
        // The consent pages shown once the user is known ("You signed in with …").
        let mut after_sign_in = Vec::new();
        let mut res = self.http.get(url.as_str()).send().await.unwrap();
        for _ in 0..10 {
            keep_cookies(&res, &mut jar);
            if res.status() == 200 {
                let html = res.text().await.unwrap();
                if html.contains("You signed in with") {
                    after_sign_in.push(html.clone());
                }
                let mut form = hidden_form_fields(&html);
                form.push(("decision".into(), "approve".into()));
                res = self
                    .http
                    .post(format!("{}/authorize", self.issuer))
                    .header("cookie", cookie_header(&jar))
                    .form(&form)
                    .send()
                    .await
                    .unwrap();
                continue;
            }
            assert!(
                matches!(res.status().as_u16(), 302 | 303),
                "{}",
                res.status()
            );
            let next = res.headers()["location"].to_str().unwrap().to_owned();
            if next.starts_with(REDIRECT) {
                let back = url::Url::parse(&next)
                    .unwrap()
                    .query_pairs()
                    .into_owned()
                    .collect();
                return (client, back, after_sign_in);
            }
            res = self
                .http
                .get(&next)
                .header("cookie", cookie_header(&jar))
                .send()
                .await
                .unwrap();
        }
        panic!("too many redirects");
    }

    async fn stop(self) {
        self.served.stop().await;
        self.github.stop().await;
    }
}

#[tokio::test]
async fn a_github_user_outside_the_allowed_domain_gets_access_denied() {
    let proxy = start(
        r#"
[[policy.sign_in]]
id  = "staff"
who = { email_domains = ["example.com"] }
"#,
    )
    .await;
    let (_, back, pages) = proxy.sign_in("mcp:read").await;
    assert!(pages.is_empty(), "a refused user is not asked to consent");
    assert_eq!(
        back.get("error").map(String::as_str),
        Some("access_denied"),
        "{back:?}"
    );
    assert_eq!(back["state"], "client-state");
    assert!(!back.contains_key("code"));
    proxy.stop().await;
}

#[tokio::test]
async fn an_allowed_github_user_gets_only_the_granted_scopes() {
    let proxy = start(
        r#"
[[policy.sign_in]]
id  = "octocat"
who = { emails = ["octocat@github.example"] }

[[policy.grant]]
id     = "reads"
scopes = ["mcp:read"]
"#,
    )
    .await;
    let (client, back, pages) = proxy.sign_in("mcp:read mcp:write admin").await;
    // The consent page shows what will be granted.
    assert_eq!(pages.len(), 1);
    assert!(pages[0].contains("mcp:read"), "{}", pages[0]);
    assert!(!pages[0].contains("mcp:write"), "{}", pages[0]);
    let code = back.get("code").unwrap_or_else(|| panic!("{back:?}"));
    let tokens: Value = proxy
        .http
        .post(format!("{}/token", proxy.issuer))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("client_id", client.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("resource", RESOURCE),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tokens["scope"], "mcp:read", "{tokens}");
    proxy.stop().await;
}

#[tokio::test]
async fn github_organisations_and_teams_are_groups_at_sign_in() {
    // Only members of the team octo-org/admins may sign in; org members may read.
    let policy = r#"
[policy]
group_claims = ["groups"]

[[policy.sign_in]]
id  = "octo-admins"
who = { groups = ["octo-org/admins"] }

[[policy.grant]]
id     = "acme-reads"
who    = { groups = ["acme"] }
scopes = ["mcp:read"]
"#;
    let proxy = start_with(policy, true).await;
    let (client, back, _) = proxy.sign_in("mcp:read admin").await;
    let code = back.get("code").unwrap_or_else(|| panic!("{back:?}"));
    let tokens: Value = proxy
        .http
        .post(format!("{}/token", proxy.issuer))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("client_id", client.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("resource", RESOURCE),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tokens["scope"], "mcp:read", "{tokens}");
    // The groups travel in the access token, for the resource's policy.
    let payload = tokens["access_token"]
        .as_str()
        .and_then(|t| t.split('.').nth(1))
        .map(|p| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .unwrap()
        })
        .unwrap();
    let claims: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        claims["groups"],
        json!(["octo-org", "acme", "octo-org/admins"])
    );
    proxy.stop().await;

    // The same rules without fetching the groups: octocat is in no group, and is refused.
    let proxy = start_with(policy, false).await;
    let (_, back, _) = proxy.sign_in("mcp:read").await;
    assert_eq!(back.get("error").map(String::as_str), Some("access_denied"));
    proxy.stop().await;

    // A team rule that octocat does not meet: refused.
    let proxy = start_with(
        r#"
[policy]
group_claims = ["groups"]

[[policy.sign_in]]
id  = "acme-admins"
who = { groups = ["acme/admins"] }
"#,
        true,
    )
    .await;
    let (_, back, _) = proxy.sign_in("mcp:read").await;
    assert_eq!(back.get("error").map(String::as_str), Some("access_denied"));
    proxy.stop().await;
}

#[test]
fn github_groups_need_the_github_preset() {
    let err = Upstream::builder(
        "Other",
        "https://idp.example.com/authorize",
        "https://idp.example.com/token",
        "client",
    )
    .identity(mcp_oauth::auth_server::Identity::UserInfo {
        url: "https://idp.example.com/user".into(),
    })
    .github_groups()
    .build()
    .expect_err("not GitHub");
    assert!(err.to_string().contains("GitHub preset"), "{err}");
}
