//! Identity forwarding: the signing key kept in a file (the same for every start and every
//! instance), published key sets, and the caller's groups in the identity token, checked with
//! the library's verifier as an upstream written in Rust would.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::sync::{Arc, Mutex};

use mcp_oauth::gateway_identity::{IdentityVerifier, JWKS_PATH};
use mcp_oauth_gateway::HttpConfig;
use mcp_oauth_gateway::identity::IdentityKey;
use serde_json::{Value, json};
use support::{Harness, ISSUER, raw_session, serve_app};

type Seen = Arc<Mutex<Vec<http::HeaderMap>>>;

/// An HTTP upstream that keeps every request's headers; its URL.
async fn recording_upstream() -> (String, Seen, tokio::sync::oneshot::Sender<()>) {
    let seen: Seen = Seen::default();
    let record = seen.clone();
    let app = mcp_oauth_gateway::test_upstream::http_router().layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            record.lock().unwrap().push(req.headers().clone());
            next.run(req)
        },
    ));
    let (addr, stop) = serve_app(app).await;
    (format!("http://{addr}/mcp"), seen, stop)
}

async fn jwks(h: &Harness) -> String {
    reqwest::get(format!("http://{}{JWKS_PATH}", h.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn kids(jwks: &str) -> Vec<String> {
    let set: Value = serde_json::from_str(jwks).unwrap();
    set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// The identity token the upstream got with the last request.
fn last_identity(seen: &Seen) -> String {
    let seen = seen.lock().unwrap();
    seen.last().unwrap()["x-mcp-identity"]
        .to_str()
        .unwrap()
        .to_owned()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mcp-gw-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn a_key_file_signs_for_every_instance_and_every_start() {
    let (upstream, seen, _stop) = recording_upstream().await;
    let dir = temp_dir("identity-key");
    let file = dir.join("identity.pem");
    let start = || async {
        let key = IdentityKey::from_file(&file).unwrap();
        Harness::start_with(HttpConfig::new(&upstream).unwrap(), move |b| {
            b.identity_header("X-MCP-Identity").identity_key(key)
        })
        .await
    };
    // Two instances reading one key file (the second could as well be the first restarted).
    let first = start().await;
    let second = start().await;
    let (first_keys, second_keys) = (jwks(&first).await, jwks(&second).await);
    assert_eq!(kids(&first_keys).len(), 1);
    assert_eq!(first_keys, second_keys, "one key set");
    raw_session(&first.url, &first.token("alice")).await;
    let token = last_identity(&seen);
    // Verified with the key set the other instance publishes.
    let caller = IdentityVerifier::with_jwks(&first.url, &upstream, &second_keys)
        .unwrap()
        .verify(&token)
        .await
        .unwrap();
    assert_eq!(caller.subject, "alice");
    // A gateway with a key of its own does not publish it.
    let other = Harness::start_with(HttpConfig::new(&upstream).unwrap(), |b| {
        b.identity_header("X-MCP-Identity")
    })
    .await;
    let other_keys = jwks(&other).await;
    assert_ne!(kids(&other_keys), kids(&first_keys));
    assert!(
        IdentityVerifier::with_jwks(&first.url, &upstream, &other_keys)
            .unwrap()
            .verify(&token)
            .await
            .is_err()
    );
    // A rotation: the new key first in the file, the old one after it. The new key signs;
    // a token the old key signed still verifies with the published set.
    let new = IdentityKey::generate().unwrap();
    let old = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("{}{old}", new.to_pem())).unwrap();
    let rotated = start().await;
    let rotated_keys = jwks(&rotated).await;
    assert_eq!(
        kids(&rotated_keys),
        [new.kid().to_owned(), kids(&first_keys)[0].clone()]
    );
    let verifier = IdentityVerifier::with_jwks(&rotated.url, &upstream, &rotated_keys).unwrap();
    raw_session(&rotated.url, &rotated.token("bob")).await;
    let fresh = last_identity(&seen);
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            fresh.split('.').next().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], new.kid());
    assert_eq!(verifier.verify(&fresh).await.unwrap().subject, "bob");
    let old_verifier = IdentityVerifier::with_jwks(&first.url, &upstream, &rotated_keys).unwrap();
    assert_eq!(old_verifier.verify(&token).await.unwrap().subject, "alice");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_callers_groups_are_in_the_identity_token() {
    let (upstream, seen, _stop) = recording_upstream().await;
    let h = Harness::start_with(HttpConfig::new(&upstream).unwrap(), |b| {
        b.identity_header("X-MCP-Identity")
    })
    .await;
    let token = |groups: Option<Value>, roles: Option<Value>| {
        let mut t = h
            .key
            .token()
            .iss(ISSUER)
            .aud(&h.url)
            .sub("alice")
            .scope("mcp:read");
        if let Some(groups) = groups {
            t = t.claim("groups", groups);
        }
        if let Some(roles) = roles {
            t = t.claim("roles", roles);
        }
        t.sign()
    };
    let verifier = IdentityVerifier::with_jwks(&h.url, &upstream, &jwks(&h).await).unwrap();
    // The token's `groups` and `roles` claims, each a string or an array, without repeats.
    raw_session(
        &h.url,
        &token(Some(json!(["staff", "ops"])), Some(json!("ops"))),
    )
    .await;
    let caller = verifier.verify(&last_identity(&seen)).await.unwrap();
    assert_eq!(caller.groups, ["staff", "ops"]);
    assert_eq!(caller.claims["groups"], json!(["staff", "ops"]));
    raw_session(&h.url, &token(None, Some(json!(["admins"])))).await;
    let caller = verifier.verify(&last_identity(&seen)).await.unwrap();
    assert_eq!(caller.groups, ["admins"]);
    // None: no claim at all.
    raw_session(&h.url, &token(None, None)).await;
    let caller = verifier.verify(&last_identity(&seen)).await.unwrap();
    assert!(caller.groups.is_empty());
    assert!(caller.claims.get("groups").is_none());

    // The groups as the gateway's owner computes them (the command: the policy's view).
    let mapped = Harness::start_with(HttpConfig::new(&upstream).unwrap(), |b| {
        b.identity_header("X-MCP-Identity")
            .identity_groups(|caller| vec![format!("team-of-{}", caller.subject())])
    })
    .await;
    raw_session(&mapped.url, &mapped.token("carol")).await;
    let verifier =
        IdentityVerifier::with_jwks(&mapped.url, &upstream, &jwks(&mapped).await).unwrap();
    let caller = verifier.verify(&last_identity(&seen)).await.unwrap();
    assert_eq!(caller.groups, ["team-of-carol"]);
}

#[test]
fn a_damaged_key_file_stops_the_start_and_says_why() {
    let dir = temp_dir("identity-bad");
    let file = dir.join("identity.pem");
    std::fs::write(&file, "not a key").unwrap();
    let err = IdentityKey::from_file(&file).unwrap_err().to_string();
    assert!(err.contains("identity.pem"), "{err}");
    assert!(err.contains("PRIVATE KEY"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
