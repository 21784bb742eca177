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

/// The kid in a JWT's header.
fn kid_of(token: &str) -> String {
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            token.split('.').next().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_stored_key_rotates_with_a_grace_time_and_stays_sealed() {
    use mcp_oauth::auth_server::SealingKey;
    use std::time::Duration;

    let (upstream, seen, _stop) = recording_upstream().await;
    let seal = SealingKey::derive(&[7; 32], "gateway identity key").unwrap();
    // The record a store keeps: sealed, no private key in the clear.
    let record = IdentityKey::generate()
        .unwrap()
        .to_record(Some(&seal))
        .unwrap();
    assert!(record.starts_with("sealed:"), "{record}");
    assert!(!record.contains("PRIVATE KEY"));
    let other_seal = SealingKey::derive(&[8; 32], "gateway identity key").unwrap();
    for (what, seal) in [("no key", None), ("another key", Some(&other_seal))] {
        let err = IdentityKey::from_record(&record, seal)
            .unwrap_err()
            .to_string();
        assert!(err.contains("encryption key"), "{what}: {err}");
    }
    let key = IdentityKey::from_record(&record, Some(&seal)).unwrap();
    let old_kid = key.kid();
    let running = key.clone();
    let h = Harness::start_with(HttpConfig::new(&upstream).unwrap(), move |b| {
        b.identity_header("X-MCP-Identity").identity_key(running)
    })
    .await;
    raw_session(&h.url, &h.token("alice")).await;
    let before = last_identity(&seen);
    assert_eq!(kid_of(&before), old_kid);

    // The rotation: read the record, add a new key, write it back; the running gateway
    // follows the record (every clone of its key sees the new keys).
    let rotated = IdentityKey::from_record(&record, Some(&seal))
        .unwrap()
        .rotated(Duration::from_secs(3600))
        .unwrap();
    let record = rotated.to_record(Some(&seal)).unwrap();
    key.replace(&IdentityKey::from_record(&record, Some(&seal)).unwrap());
    let new_kid = key.kid();
    assert_ne!(new_kid, old_kid);
    let keys = jwks(&h).await;
    assert_eq!(
        kids(&keys),
        [new_kid.clone(), old_kid.clone()],
        "both, new first"
    );
    let verifier = IdentityVerifier::with_jwks(&h.url, &upstream, &keys).unwrap();
    // Signed before the rotation: still verifies during the grace time.
    assert_eq!(verifier.verify(&before).await.unwrap().subject, "alice");
    // Signed after it: by the new key.
    raw_session(&h.url, &h.token("bob")).await;
    let after = last_identity(&seen);
    assert_eq!(kid_of(&after), new_kid);
    assert_eq!(verifier.verify(&after).await.unwrap().subject, "bob");

    // Once the grace time is over the old key is no longer published, and a token it signed
    // no longer verifies (a rotation with no grace shows it without waiting).
    let again = IdentityKey::from_record(&record, Some(&seal))
        .unwrap()
        .rotated(Duration::ZERO)
        .unwrap();
    key.replace(&again);
    let keys = jwks(&h).await;
    assert_eq!(
        kids(&keys),
        [key.kid(), old_kid.clone()],
        "the first old key keeps its grace; the one just replaced has none"
    );
    assert!(!kids(&keys).contains(&new_kid));
    let verifier = IdentityVerifier::with_jwks(&h.url, &upstream, &keys).unwrap();
    assert!(verifier.verify(&after).await.is_err(), "past its grace");
    // A record written before records were JSON (plain PEM) still reads.
    let pem = IdentityKey::generate().unwrap();
    let read = IdentityKey::from_record(&pem.to_pem(), Some(&seal)).unwrap();
    assert_eq!(read.kid(), pem.kid());
}
