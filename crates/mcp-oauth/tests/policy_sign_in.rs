//! The access policy at the embedded authorization server: a user the policy refuses is sent
//! back to the client with `access_denied` and no code, and the scopes a client asks for are
//! cut to what the policy grants this user (in the code, the access token and its refreshes).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::{CHALLENGE, Served, VERIFIER, eventually};
use mcp_oauth::audit::{AuditLog, MemorySink};
use mcp_oauth::auth_server::{AuthServer, DevUsers};
use mcp_oauth::policy::{Catalog, Policy, PolicyConfig};
use reqwest::redirect;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const RESOURCE: &str = "http://127.0.0.1:9999/mcp";
const REDIRECT: &str = "http://127.0.0.1:33418/callback";

struct Running {
    issuer: String,
    http: reqwest::Client,
    served: Served,
}

async fn start(user: &str, policy: &str, audit: Option<AuditLog>) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("addr"));
    let policy = Policy::new(
        PolicyConfig::from_toml(policy, "policy.toml").expect("toml"),
        Catalog::new(),
    )
    .expect("policy");
    let server = AuthServer::builder(issuer.clone())
        .scopes(["mcp:read", "mcp:write", "admin"])
        .default_scopes(["mcp:read"])
        .resource(RESOURCE)
        .login(Arc::new(DevUsers::new().user(user, "pw")))
        .auto_approve(true)
        .policy(policy, audit)
        .build()
        .await
        .expect("server");
    let served = Served::app(listener, server.router());
    let http = reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .expect("client");
    Running {
        issuer,
        http,
        served,
    }
}

impl Running {
    async fn client(&self) -> String {
        let res = self
            .http
            .post(format!("{}/register", self.issuer))
            .json(&json!({"redirect_uris": ["http://127.0.0.1/callback"], "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"], "application_type": "native"}))
            .send()
            .await
            .expect("register");
        assert_eq!(res.status(), 201);
        let body: Value = res.json().await.expect("json");
        body["client_id"].as_str().expect("client_id").to_owned()
    }

    /// `/authorize` (approved at once) and the parameters the browser is sent back with.
    async fn authorize(&self, client: &str, scope: &str) -> HashMap<String, String> {
        let mut url = url::Url::parse(&format!("{}/authorize", self.issuer)).expect("url");
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("state", "st-1")
            .append_pair("code_challenge", CHALLENGE)
            .append_pair("code_challenge_method", "S256")
            .append_pair("scope", scope)
            .append_pair("resource", RESOURCE);
        let res = self.http.get(url).send().await.expect("authorize");
        assert_eq!(res.status(), 302);
        let location = res.headers()["location"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(location.starts_with(REDIRECT), "{location}");
        url::Url::parse(&location)
            .expect("url")
            .query_pairs()
            .into_owned()
            .collect()
    }

    async fn token(&self, form: &[(&str, &str)]) -> Value {
        let (status, body) = self.token_answer(form).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn token_answer(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let res = self
            .http
            .post(format!("{}/token", self.issuer))
            .form(form)
            .send()
            .await
            .expect("token");
        (res.status().as_u16(), res.json().await.expect("json"))
    }
}

const POLICY: &str = r#"
[policy.groups.admins]
subjects = ["root"]

[[policy.sign_in]]
id  = "known-users"
who = { subjects = ["alice", "root"] }

[[policy.grant]]
id     = "everyone-reads"
scopes = ["mcp:read"]

[[policy.grant]]
id     = "admins-admin"
who    = { groups = ["admins"] }
scopes = ["admin"]
"#;

#[tokio::test]
async fn a_user_the_policy_refuses_gets_access_denied_and_no_code() {
    let r = start("mallory", POLICY, None).await;
    let client = r.client().await;
    let back = r.authorize(&client, "mcp:read").await;
    assert_eq!(back["error"], "access_denied");
    assert_eq!(back["state"], "st-1");
    assert!(back["error_description"].contains("not allowed to sign in"));
    assert!(!back.contains_key("code"));
    r.served.stop().await;
}

#[tokio::test]
async fn requested_scopes_are_cut_to_the_grant_rules_for_codes_and_refreshes() {
    let r = start("alice", POLICY, None).await;
    let client = r.client().await;
    let back = r.authorize(&client, "mcp:read mcp:write admin").await;
    let tokens = r
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &back["code"]),
            ("client_id", &client),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("resource", RESOURCE),
        ])
        .await;
    assert_eq!(tokens["scope"], "mcp:read");
    let refresh = tokens["refresh_token"].as_str().unwrap();
    // A refresh cannot widen the grant beyond what the policy allowed at sign-in.
    let (status, body) = r
        .token_answer(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", &client),
            ("scope", "mcp:read admin"),
        ])
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_scope");
    let refreshed = r
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", &client),
        ])
        .await;
    assert_eq!(refreshed["scope"], "mcp:read");
    r.served.stop().await;
}

#[tokio::test]
async fn an_admin_keeps_the_admin_scope_and_decisions_are_audited() {
    let sink = MemorySink::new();
    let audit = AuditLog::builder().memory(&sink).build().expect("audit");
    let r = start("root", POLICY, Some(audit.clone())).await;
    let client = r.client().await;
    let back = r.authorize(&client, "mcp:read admin").await;
    let tokens = r
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &back["code"]),
            ("client_id", &client),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("resource", RESOURCE),
        ])
        .await;
    assert_eq!(tokens["scope"], "mcp:read admin");
    eventually("two audit lines", async || {
        audit.flush().await.is_ok() && sink.lines().len() == 2
    })
    .await;
    let lines: Vec<Value> = sink
        .lines()
        .iter()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let sign_in = lines
        .iter()
        .find(|l| l["method"] == "sign_in")
        .expect("sign_in");
    assert_eq!(sign_in["actor"]["sub"], "root");
    assert_eq!(sign_in["actor"]["groups"], json!(["admins"]));
    assert_eq!(sign_in["decision"]["rule_ids"], json!(["known-users"]));
    let grant = lines
        .iter()
        .find(|l| l["method"] == "grant_scopes")
        .expect("grant");
    assert_eq!(
        grant["decision"]["rule_ids"],
        json!(["admins-admin", "everyone-reads"])
    );
    r.served.stop().await;
}

#[tokio::test]
async fn a_user_granted_none_of_the_requested_scopes_gets_access_denied() {
    let r = start("alice", POLICY, None).await;
    let client = r.client().await;
    let back = r.authorize(&client, "admin").await;
    assert_eq!(back["error"], "access_denied");
    assert!(!back.contains_key("code"));
    r.served.stop().await;
}
