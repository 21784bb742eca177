//! Each upstream of a gateway of several at a path of its own (`/NAME/mcp`), with its own
//! protected-resource metadata and token audience, beside the merged `/mcp`; and what an
//! attacker tries there: a token or a session of one path at another, paths that are not
//! quite the upstream's.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use mcp_oauth::Auth;
use mcp_oauth_gateway::gate::{Call, Decision, Gatekeeper, ListKind};
use mcp_oauth_gateway::{HttpConfig, UpstreamConfig};
use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// `alpha` (a Streamable HTTP test server) and `beta` (the stdio test server).
async fn two(
    gatekeeper: Option<
        Box<dyn FnOnce(mcp_oauth_gateway::GatewayBuilder) -> mcp_oauth_gateway::GatewayBuilder>,
    >,
) -> (Harness, tokio::sync::oneshot::Sender<()>) {
    let (remote, stop) = serve_app(mcp_oauth_gateway::test_upstream::http_router()).await;
    let alpha: UpstreamConfig = HttpConfig::new(&format!("http://{remote}/mcp"))
        .unwrap()
        .into();
    let h = Harness::several(
        vec![("alpha", alpha), ("beta", stdio_upstream().into())],
        |b| match gatekeeper {
            Some(configure) => configure(b),
            None => b,
        },
    )
    .await;
    (h, stop)
}

fn url_of(h: &Harness, path: &str) -> String {
    format!("http://{}{path}", h.addr)
}

/// A token of `sub` whose audience is `audiences` (one or several URLs).
fn token_for(h: &Harness, sub: &str, audiences: &[&str]) -> String {
    let aud = match audiences {
        [one] => json!(one),
        many => json!(many),
    };
    h.key
        .token()
        .iss(ISSUER)
        .sub(sub)
        .scope("mcp:read")
        .claim("aud", aud)
        .sign()
}

#[tokio::test]
async fn each_upstream_is_at_its_own_path_under_its_own_names() {
    let (h, _stop) = two(None).await;
    assert_eq!(
        h.gateway.upstream_paths(),
        [
            ("alpha".to_owned(), "/alpha/mcp".to_owned()),
            ("beta".to_owned(), "/beta/mcp".to_owned())
        ]
    );
    let alpha = url_of(&h, "/alpha/mcp");
    let beta = url_of(&h, "/beta/mcp");
    assert_eq!(
        h.gateway.upstream_resources(),
        [alpha.clone(), beta.clone()]
    );
    for (url, upstream) in [(&alpha, "alpha"), (&beta, "beta")] {
        let client = connect(url, &token_for(&h, "alice", &[url]), "alice").await;
        let tools = client.list_all_tools().await.unwrap();
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        assert!(
            names.contains(&"echo") && names.contains(&"pid"),
            "{upstream}: {names:?}"
        );
        assert!(
            names.iter().all(|n| !n.contains("__")),
            "{upstream}: {names:?}"
        );
        assert_eq!(
            call(&client, "echo", json!({"text": upstream}))
                .await
                .unwrap(),
            upstream
        );
        // The merged endpoint's names mean nothing here.
        for other in ["alpha__echo", "beta__echo"] {
            assert!(
                call(&client, other, json!({"text": "x"})).await.is_err(),
                "{other}"
            );
        }
        client.cancel().await.unwrap();
    }
    // The stdio child behind /beta/mcp is the one the merged endpoint uses.
    let client = connect(&beta, &token_for(&h, "alice", &[&beta]), "alice").await;
    let pid = call(&client, "pid", json!({})).await.unwrap();
    assert_eq!(pid, h.gateway.upstream_pid().unwrap().to_string());
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn each_path_has_its_own_protected_resource_metadata() {
    let (h, _stop) = two(None).await;
    let http = reqwest::Client::new();
    for (path, resource) in [
        (
            "/.well-known/oauth-protected-resource/alpha/mcp",
            "/alpha/mcp",
        ),
        (
            "/.well-known/oauth-protected-resource/beta/mcp",
            "/beta/mcp",
        ),
        ("/.well-known/oauth-protected-resource/mcp", "/mcp"),
    ] {
        let doc: Value = http
            .get(url_of(&h, path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(doc["resource"], url_of(&h, resource), "{path}: {doc}");
        assert_eq!(
            doc["authorization_servers"],
            json!([ISSUER]),
            "{path}: {doc}"
        );
    }
    // A request without a token points at the path's own metadata.
    let response = post(&url_of(&h, "/alpha/mcp"), None, None, INITIALIZE).await;
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains(&format!(
            "resource_metadata=\"{}\"",
            url_of(&h, "/.well-known/oauth-protected-resource/alpha/mcp")
        )),
        "{challenge}"
    );
}

#[tokio::test]
async fn a_token_for_one_path_is_refused_at_the_others() {
    let (h, _stop) = two(None).await;
    let (alpha, beta, merged) = (
        url_of(&h, "/alpha/mcp"),
        url_of(&h, "/beta/mcp"),
        url_of(&h, "/mcp"),
    );
    let for_alpha = token_for(&h, "alice", &[&alpha]);
    let for_merged = token_for(&h, "alice", &[&merged]);
    for (token, url) in [
        (&for_alpha, &beta),
        (&for_alpha, &merged),
        (&for_merged, &alpha),
        (&for_merged, &beta),
    ] {
        let response = post(url, Some(token), None, INITIALIZE).await;
        assert_eq!(response.status(), 401, "{url}");
        let challenge = response.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.contains("invalid_token"), "{url}: {challenge}");
    }
    assert_eq!(
        post(&alpha, Some(&for_alpha), None, INITIALIZE)
            .await
            .status(),
        200
    );
    // A token whose audience names both is accepted at both.
    let both = token_for(&h, "alice", &[&alpha, &merged]);
    for url in [&alpha, &merged] {
        assert_eq!(
            post(url, Some(&both), None, INITIALIZE).await.status(),
            200,
            "{url}"
        );
    }
    assert_eq!(
        post(&beta, Some(&both), None, INITIALIZE).await.status(),
        401
    );
}

#[tokio::test]
async fn a_session_opened_at_one_path_is_unknown_at_the_others() {
    let (h, _stop) = two(None).await;
    let urls = [
        url_of(&h, "/alpha/mcp"),
        url_of(&h, "/beta/mcp"),
        url_of(&h, "/mcp"),
    ];
    let all: Vec<&str> = urls.iter().map(String::as_str).collect();
    let token = token_for(&h, "alice", &all);
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string();
    for (i, opened_at) in urls.iter().enumerate() {
        let session = raw_session(opened_at, &token).await;
        let answer = post(opened_at, Some(&token), Some(&session), list.clone()).await;
        assert_eq!(answer.status(), 200, "{opened_at}");
        for (j, used_at) in urls.iter().enumerate() {
            if i == j {
                continue;
            }
            let response = post(used_at, Some(&token), Some(&session), list.clone()).await;
            assert_eq!(
                response.status(),
                404,
                "a session of {opened_at} used at {used_at}"
            );
            let get = reqwest::Client::new()
                .get(used_at)
                .bearer_auth(&token)
                .header("accept", "text/event-stream")
                .header("mcp-session-id", &session)
                .send()
                .await
                .unwrap();
            assert_eq!(
                get.status(),
                404,
                "GET with a session of {opened_at} at {used_at}"
            );
        }
    }
}

/// The status line's code of a request written byte for byte (no client normalizes the path).
async fn raw_status(h: &Harness, path: &str, token: &str) -> u16 {
    let mut tcp = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{INITIALIZE}",
        h.addr,
        INITIALIZE.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    text.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn paths_that_only_look_like_an_upstreams_are_not_found() {
    let (h, _stop) = two(None).await;
    let alpha = url_of(&h, "/alpha/mcp");
    let token = token_for(&h, "alice", &[&alpha, &url_of(&h, "/mcp")]);
    assert_eq!(raw_status(&h, "/alpha/mcp", &token).await, 200);
    for path in [
        "/ALPHA/mcp",
        "/Alpha/mcp",
        "/%61lpha/mcp",
        "/%2e%2e/mcp",
        "/alpha/../mcp",
        "/alpha/%2e%2e/mcp",
        "/beta/../alpha/mcp",
        "/alpha%2fmcp",
        "/alpha/mcp/",
        "//alpha/mcp",
        "/alpha/MCP",
        "/gamma/mcp",
        "/alpha__echo/mcp",
    ] {
        assert_eq!(raw_status(&h, path, &token).await, 404, "{path}");
    }
}

/// Denies `alpha__echo` and hides it from lists: a rule about the merged endpoint's name.
struct NoAlphaEcho;

impl Gatekeeper for NoAlphaEcho {
    fn decide(&self, _: Option<&Auth>, call: &Call<'_>) -> Decision {
        match call.name() {
            Some("alpha__echo") => Decision::Deny,
            _ => Decision::Allow,
        }
    }
    fn filters_lists(&self) -> bool {
        true
    }
    fn keep(&self, _: Option<&Auth>, _: ListKind, item: &Value) -> bool {
        item["name"] != "alpha__echo"
    }
}

#[tokio::test]
async fn the_gatekeeper_sees_the_merged_names_at_every_path() {
    let (h, _stop) = two(Some(Box::new(|b| b.gatekeeper(NoAlphaEcho)))).await;
    let alpha = url_of(&h, "/alpha/mcp");
    let beta = url_of(&h, "/beta/mcp");
    let client = connect(&alpha, &token_for(&h, "alice", &[&alpha]), "alice").await;
    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert!(
        !names.contains(&"echo") && names.contains(&"pid"),
        "{names:?}"
    );
    let denied = call(&client, "echo", json!({"text": "x"}))
        .await
        .unwrap_err();
    assert!(denied.contains("not permitted"), "{denied}");
    client.cancel().await.unwrap();
    // beta's echo is another tool: allowed.
    let client = connect(&beta, &token_for(&h, "alice", &[&beta]), "alice").await;
    assert_eq!(
        call(&client, "echo", json!({"text": "b"})).await.unwrap(),
        "b"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_host_the_gateway_does_not_serve_is_refused_at_every_path() {
    let (h, _stop) = two(None).await;
    let paths = ["/alpha/mcp", "/beta/mcp", "/mcp"];
    let urls: Vec<String> = paths.iter().map(|p| url_of(&h, p)).collect();
    let token = token_for(
        &h,
        "alice",
        &urls.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    for url in &urls {
        let refused = reqwest::Client::new()
            .post(url)
            .header("host", "rebound.example")
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(INITIALIZE)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403, "{url}");
        assert_eq!(
            post(url, Some(&token), None, INITIALIZE).await.status(),
            200,
            "{url}"
        );
    }
}
