//! `mcp-oauth serve --dpop … --dpop-nonce` as an operator runs several instances of it: those
//! given one `--dpop-nonce-secret-file` accept each other's nonces (a load balancer may send
//! the retry to another instance); an instance with another secret refuses them and hands out
//! its own; a bound token of the issuer works with a proof carrying a live nonce.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mcp_oauth::dpop;
use mcp_oauth::jose::Jwk;
use mcp_oauth::testing::{MockIdp, TestKey};
use serde_json::json;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// `mcp-oauth serve --dpop allowed --dpop-nonce --dpop-nonce-secret-file <secret>` on a free
/// port, ready; returns it and its MCP URL.
async fn serve(issuer: &str, secret: &std::path::Path) -> (Killed, String) {
    let port = free_port();
    let mcp_url = format!("http://127.0.0.1:{port}/mcp");
    let child = Command::new(env!("CARGO_BIN_EXE_mcp-oauth"))
        .args(["serve", "--issuer", issuer, "--mcp-url", &mcp_url])
        .args(["--scopes", "mcp:read", "--dpop", "allowed", "--dpop-nonce"])
        .arg("--dpop-nonce-secret-file")
        .arg(secret)
        .env_remove("MCP_OAUTH_DPOP")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut child = Killed(child);
    let prm = format!("http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(res) = reqwest::get(&prm).await
            && res.status().is_success()
        {
            return (child, mcp_url);
        }
        assert!(
            child.0.try_wait().expect("wait").is_none(),
            "mcp-oauth serve exited early"
        );
        assert!(Instant::now() < deadline, "mcp-oauth serve not ready");
        tokio::time::sleep(Duration::from_millis(25)).await; // poll interval, bounded above
    }
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
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(body.to_string())
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
    let dir = std::env::temp_dir().join(format!("mcp-oauth-cli-dpop-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let shared = dir.join("shared-secret");
    std::fs::write(&shared, "one secret for every instance, 32 bytes or more\n").unwrap();
    let other = dir.join("other-secret");
    std::fs::write(&other, "another secret, of another deployment entirely\n").unwrap();

    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let (a, url_a) = serve(idp.issuer(), &shared).await;
    let (b, url_b) = serve(idp.issuer(), &shared).await;
    let (c, url_c) = serve(idp.issuer(), &other).await;
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
    let _ = std::fs::remove_dir_all(&dir);
}
