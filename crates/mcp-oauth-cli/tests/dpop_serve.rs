//! `mcp-oauth serve --dpop … --dpop-nonce` as an operator runs several instances of it: those
//! given one `--dpop-nonce-secret-file` accept each other's nonces (a load balancer may send
//! the retry to another instance); an instance with another secret refuses them and hands out
//! its own; a bound token of the issuer works with a proof carrying a live nonce.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use mcp_oauth::dpop;
use mcp_oauth::jose::Jwk;
use mcp_oauth::testing::{MockIdp, TestKey};
use serde_json::json;
use support::mcp::McpRequest as _;
use support::process::{Served, TempDir};

/// `mcp-oauth serve --dpop allowed --dpop-nonce --dpop-nonce-secret-file <secret>` on a free
/// port, ready; returns it and its MCP URL.
async fn serve(
    tmp: &TempDir,
    name: &str,
    issuer: &str,
    secret: &std::path::Path,
) -> (Served, String) {
    let served = support::process::serve(
        tmp,
        name,
        &[
            "--issuer",
            issuer,
            "--scopes",
            "mcp:read",
            "--dpop",
            "allowed",
            "--dpop-nonce",
            "--dpop-nonce-secret-file",
            secret.to_str().unwrap(),
        ],
    )
    .await;
    let mcp_url = served.mcp_url();
    (served, mcp_url)
}

fn proof(key: &TestKey, url: &str, token: &str, nonce: Option<&str>) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut jwk = serde_json::to_value(Jwk {
        kid: None,
        alg: None,
        use_: None,
        ..key.public_jwk().unwrap()
    })
    .unwrap();
    jwk.as_object_mut().unwrap().retain(|_, v| !v.is_null());
    let iat = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut claims = json!({
        "jti": format!("serve-{}", NEXT.fetch_add(1, Ordering::Relaxed)),
        "htm": "POST", "htu": url, "iat": iat, "ath": dpop::access_token_hash(token),
    });
    if let Some(nonce) = nonce {
        claims["nonce"] = nonce.into();
    }
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
    key.key()
        .sign_compact(header.to_string().as_bytes(), claims.to_string().as_bytes())
}

async fn whoami(url: &str, token: &str, proof: &str) -> reqwest::Response {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}});
    reqwest::Client::new()
        .post(url)
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", proof)
        .mcp(&body)
        .send()
        .await
        .expect("post")
}

fn nonce_of(res: &reqwest::Response) -> String {
    let challenge = res.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains(", DPoP error=\"use_dpop_nonce\""),
        "{challenge}"
    );
    res.headers()["dpop-nonce"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn instances_sharing_the_nonce_secret_accept_each_others_nonces() {
    let tmp = TempDir::new("dpop-serve", "nonces");
    let shared = tmp.path().join("shared-secret");
    std::fs::write(&shared, "one secret for every instance, 32 bytes or more\n").unwrap();
    let other = tmp.path().join("other-secret");
    std::fs::write(&other, "another secret, of another deployment entirely\n").unwrap();

    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let (a, url_a) = serve(&tmp, "a", idp.issuer(), &shared).await;
    let (b, url_b) = serve(&tmp, "b", idp.issuer(), &shared).await;
    let (c, url_c) = serve(&tmp, "c", idp.issuer(), &other).await;
    let client = TestKey::es256();
    let jkt = client.public_jwk().unwrap().thumbprint().unwrap();
    let bound = |aud: &str| {
        idp.token()
            .sub("erin")
            .aud(aud)
            .scope("mcp:read")
            .claim("cnf", json!({"jkt": jkt}))
            .sign()
    };

    // Instance a hands out a nonce.
    let token_a = bound(&url_a);
    let res = whoami(&url_a, &token_a, &proof(&client, &url_a, &token_a, None)).await;
    assert_eq!(res.status(), 401);
    let nonce = nonce_of(&res);
    // Instance b, with the same secret, accepts it.
    let token_b = bound(&url_b);
    let res = whoami(
        &url_b,
        &token_b,
        &proof(&client, &url_b, &token_b, Some(&nonce)),
    )
    .await;
    assert_eq!(res.status(), 200);
    // Instance c, with another secret, refuses it and hands out its own, which works there.
    let token_c = bound(&url_c);
    let res = whoami(
        &url_c,
        &token_c,
        &proof(&client, &url_c, &token_c, Some(&nonce)),
    )
    .await;
    assert_eq!(res.status(), 401);
    let own = nonce_of(&res);
    assert_ne!(own, nonce);
    let res = whoami(
        &url_c,
        &token_c,
        &proof(&client, &url_c, &token_c, Some(&own)),
    )
    .await;
    assert_eq!(res.status(), 200);
    // And a's nonce works at a.
    let res = whoami(
        &url_a,
        &token_a,
        &proof(&client, &url_a, &token_a, Some(&nonce)),
    )
    .await;
    assert_eq!(res.status(), 200);

    drop((a, b, c));
    idp.shutdown().await;
}
