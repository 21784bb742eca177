//! Corners no other test reached: `resource_documentation` in the protected-resource metadata,
//! a custom route on `McpServer::app()`, the "no public URL" error, and the Google, Okta and
//! Entra ID preset URLs of proxy mode, each through the public API only.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use axum::routing::get;
use common::{CHALLENGE, Served, cookie_header, keep_cookies};
use mcp_oauth::auth_server::{AuthServer, MemoryStore, Upstream};
use mcp_oauth::providers::Oidc;
use mcp_oauth::server::{McpServer, NoArgs, Tool, ToolContext};
use mcp_oauth::testing::{MockIdp, TestKey, hidden_form_fields};
use mcp_oauth::verify::JwtVerifier;
use mcp_oauth::{Auth, OAuth};
use reqwest::redirect::Policy;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower::ServiceExt as _;

const ISSUER: &str = "https://auth.example.com";
const RESOURCE: &str = "https://mcp.example.com/mcp";

/// An OAuth configuration with a static key: nothing is fetched.
fn configured(key: &TestKey) -> mcp_oauth::OAuthBuilder {
    OAuth::builder()
        .resource(RESOURCE)
        .authorization_server(ISSUER)
        .mirror_authorization_server(false)
        .verifier(
            JwtVerifier::builder()
                .issuer(ISSUER)
                .jwk(&key.public_jwk().unwrap())
                .build()
                .unwrap(),
        )
}

async fn get_json(app: axum::Router, path: &str) -> (u16, Value) {
    let res = app
        .oneshot(
            http::Request::get(path)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn resource_documentation_and_name_are_published_in_the_metadata() {
    let key = TestKey::rs256();
    let oauth = configured(&key)
        .resource_name("Calendar")
        .resource_documentation("https://docs.example.com/mcp")
        .build()
        .unwrap();
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let (status, doc) = get_json(oauth.metadata_router(), path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            doc["resource_documentation"], "https://docs.example.com/mcp",
            "{path}: {doc}"
        );
        assert_eq!(doc["resource_name"], "Calendar", "{path}: {doc}");
        assert_eq!(doc["resource"], RESOURCE);
    }

    // Without them, neither member is present (not null).
    let (_, doc) = get_json(
        configured(&key).build().unwrap().metadata_router(),
        "/.well-known/oauth-protected-resource/mcp",
    )
    .await;
    let members = doc.as_object().unwrap();
    assert!(!members.contains_key("resource_documentation"), "{doc}");
    assert!(!members.contains_key("resource_name"), "{doc}");
}

#[tokio::test]
async fn custom_routes_on_the_app_are_public_unless_layered() {
    let key = TestKey::rs256();
    let oauth = configured(&key).build().unwrap();
    let app = McpServer::new("corners", "1")
        .oauth(oauth.clone())
        .tool(Tool::new(
            "whoami",
            "Who",
            |_: NoArgs, _ctx: ToolContext| async move { "x" },
        ))
        .app()
        .unwrap()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/me",
            get(|auth: Auth| async move { auth.subject().to_owned() }).layer(oauth.layer()),
        );

    let send = |path: &str, token: Option<&str>| {
        let mut req = http::Request::get(path);
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        app.clone()
            .oneshot(req.body(axum::body::Body::empty()).unwrap())
    };

    // A route of your own next to the MCP endpoint: public unless you layer it.
    let res = send("/health", None).await.unwrap();
    assert_eq!(res.status(), 200);
    let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
    assert_eq!(&body[..], b"ok");

    // Layered with oauth.layer(): the same challenge as the MCP endpoint.
    let res = send("/me", None).await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.headers()["www-authenticate"],
        r#"Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp""#
    );
    let token = key
        .token()
        .iss(ISSUER)
        .sub("frank")
        .aud(RESOURCE)
        .exp_in(300)
        .sign();
    let res = send("/me", Some(&token)).await.unwrap();
    assert_eq!(res.status(), 200);
    let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
    assert_eq!(&body[..], b"frank");

    // The MCP endpoint and the metadata are still there.
    let res = send("/mcp", None).await.unwrap();
    assert_eq!(res.status(), 401);
    let (status, _) = get_json(app.clone(), "/.well-known/oauth-protected-resource/mcp").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_preset_without_a_public_url_is_refused_unless_listening_on_loopback() {
    assert!(
        std::env::var_os("MCP_URL").is_none(),
        "this test needs MCP_URL unset: it is the public URL the error asks for"
    );
    // A local issuer: the loopback server below checks it at start-up.
    let idp = MockIdp::start(TestKey::rs256()).await.unwrap();
    let server = || {
        McpServer::new("corners", "1")
            .provider(Oidc::new(idp.issuer()))
            .expect("a valid preset")
            .tool(Tool::new(
                "whoami",
                "Who",
                |_: NoArgs, _ctx: ToolContext| async move { "x" },
            ))
    };

    // No listener known yet (app()), so no URL can be made up: the error says what to set.
    let err = server().app().expect_err("no public URL").to_string();
    assert!(
        err.contains("OAuth needs the public URL of the MCP endpoint")
            && err.contains("McpServer::url")
            && err.contains("MCP_URL"),
        "{err}"
    );

    // With McpServer::url it builds, and the metadata names that URL.
    let app = server().url(RESOURCE).app().expect("with a URL");
    let (status, doc) = get_json(app, "/.well-known/oauth-protected-resource/mcp").await;
    assert_eq!(status, 200);
    assert_eq!(doc["resource"], RESOURCE);

    // On a loopback listener the URL is the listener's.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Served::mcp(listener, server());
    let doc: Value = reqwest::get(format!(
        "http://{addr}/.well-known/oauth-protected-resource/mcp"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(doc["resource"], format!("http://{addr}/mcp"));
    served.stop().await;
    idp.shutdown().await;
}

/// Where the proxy sends the browser for `upstream`: registers a client, asks for a code and
/// approves the consent page that comes before the provider; returns the provider URL and the
/// proxy's issuer.
async fn upstream_redirect(upstream: Upstream) -> (url::Url, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let server = AuthServer::builder(issuer.clone())
        .resource(RESOURCE)
        .store(Arc::new(MemoryStore::new()))
        .upstream(upstream)
        .encryption_key([7u8; 32].as_slice())
        .build()
        .await
        .expect("proxy");
    let served = Served::app(listener, server.router());
    let http = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let reg: Value = http
        .post(format!("{issuer}/register"))
        .json(&json!({"redirect_uris": ["http://127.0.0.1/callback"], "token_endpoint_auth_method": "none", "client_name": "Corner client", "grant_types": ["authorization_code", "refresh_token"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_id = reg["client_id"].as_str().expect("client_id").to_owned();
    let mut authorize = url::Url::parse(&format!("{issuer}/authorize")).unwrap();
    authorize.query_pairs_mut().extend_pairs([
        ("response_type", "code"),
        ("client_id", client_id.as_str()),
        ("redirect_uri", "http://127.0.0.1/callback"),
        ("state", "s"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("resource", RESOURCE),
    ]);
    let mut jar = HashMap::new();
    let res = http.get(authorize.as_str()).send().await.unwrap();
    keep_cookies(&res, &mut jar);
    assert_eq!(res.status(), 200, "the consent page comes first");
    let mut form = hidden_form_fields(&res.text().await.unwrap());
    form.push(("decision".into(), "approve".into()));
    let res = http
        .post(format!("{issuer}/authorize"))
        .header("cookie", cookie_header(&jar))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert!(
        matches!(res.status().as_u16(), 302 | 303),
        "{}",
        res.status()
    );
    let location = url::Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
    served.stop().await;
    (location, issuer)
}

fn query(url: &url::Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

/// What every preset sends: our client id, the callback under our issuer, PKCE S256 and a
/// state of its own.
fn assert_common(url: &url::Url, issuer: &str, client_id: &str) {
    let q = query(url);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], client_id);
    assert_eq!(q["redirect_uri"], format!("{issuer}/oauth/callback"));
    assert_eq!(q["code_challenge_method"], "S256");
    assert_ne!(q["code_challenge"], CHALLENGE, "a challenge of our own");
    assert!(
        q.get("state").is_some_and(|s| s != "s"),
        "a state of our own"
    );
    assert!(
        !q.contains_key("resource"),
        "the client's resource stays here"
    );
}

#[tokio::test]
async fn the_google_preset_sends_users_to_google_with_offline_access() {
    let upstream = Upstream::google("123.apps.googleusercontent.com", "GOCSPX-secret")
        .build()
        .unwrap();
    let (url, issuer) = upstream_redirect(upstream).await;
    assert_eq!(
        url.origin().ascii_serialization(),
        "https://accounts.google.com"
    );
    assert_eq!(url.path(), "/o/oauth2/v2/auth");
    assert_common(&url, &issuer, "123.apps.googleusercontent.com");
    let q = query(&url);
    assert_eq!(q["scope"], "openid email profile");
    assert_eq!(q["access_type"], "offline");
    assert_eq!(q["prompt"], "consent");
}

#[tokio::test]
async fn the_okta_preset_uses_the_custom_authorization_server_path() {
    for (domain, server, want) in [
        (
            "dev-123.okta.com",
            "default",
            "https://dev-123.okta.com/oauth2/default/v1/authorize",
        ),
        (
            "https://login.example.com/",
            "aus1a2b3c",
            "https://login.example.com/oauth2/aus1a2b3c/v1/authorize",
        ),
    ] {
        let upstream = Upstream::okta(domain, server, "0oa-client", "okta-secret")
            .build()
            .unwrap();
        let (url, issuer) = upstream_redirect(upstream).await;
        assert_eq!(
            format!("{}{}", url.origin().ascii_serialization(), url.path()),
            want
        );
        assert_common(&url, &issuer, "0oa-client");
        assert_eq!(query(&url)["scope"], "openid email profile");
    }
}

#[tokio::test]
async fn the_entra_preset_uses_the_tenants_v2_endpoints() {
    let tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    let upstream = Upstream::entra(tenant, "app-client-id", "entra-secret")
        .build()
        .unwrap();
    let (url, issuer) = upstream_redirect(upstream).await;
    assert_eq!(
        format!("{}{}", url.origin().ascii_serialization(), url.path()),
        format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize")
    );
    assert_common(&url, &issuer, "app-client-id");
    assert_eq!(query(&url)["scope"], "openid email profile offline_access");
}
