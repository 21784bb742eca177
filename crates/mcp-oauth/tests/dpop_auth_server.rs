//! DPoP at the embedded authorization server (RFC 9449 §5, §8, §10) over real HTTP, from the
//! attacker's side: a bound refresh token or a code bound with `dpop_jkt` redeemed with
//! another key or without a proof, proofs for another URL or method, replays (one instance
//! and two sharing a store), nonces, junk and several `DPoP` headers; then the bound token at
//! a resource server, where it is refused as Bearer.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{CHALLENGE, Served, VERIFIER};
use mcp_oauth::auth_server::store::{MemoryStore, Store};
use mcp_oauth::auth_server::{AuthServer, AuthServerBuilder, DevUsers};
use mcp_oauth::dpop::{self, DpopNonces, DpopVerifier};
use mcp_oauth::jose::Jwk;
use mcp_oauth::testing::TestKey;
use reqwest::redirect::Policy;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const RESOURCE: &str = "http://127.0.0.1:9999/mcp";
const REDIRECT: &str = "http://127.0.0.1:33418/callback";

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

fn next_jti() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("as-jti-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn thumbprint(key: &TestKey) -> String {
    key.public_jwk().unwrap().thumbprint().unwrap()
}

fn bare_jwk(key: &TestKey) -> Value {
    let jwk = key.public_jwk().unwrap();
    let mut value = serde_json::to_value(Jwk {
        kid: None,
        alg: None,
        use_: None,
        ..jwk
    })
    .unwrap();
    value.as_object_mut().unwrap().retain(|_, v| !v.is_null());
    value
}

/// A proof by `key` for `method url`, with an optional `ath` and `nonce`.
fn proof(
    key: &TestKey,
    method: &str,
    url: &str,
    token: Option<&str>,
    nonce: Option<&str>,
) -> String {
    let header = json!({"typ": "dpop+jwt", "alg": key.key().alg().as_str(), "jwk": bare_jwk(key)});
    let mut claims = json!({"jti": next_jti(), "htm": method, "htu": url, "iat": now()});
    if let Some(token) = token {
        claims["ath"] = dpop::access_token_hash(token).into();
    }
    if let Some(nonce) = nonce {
        claims["nonce"] = nonce.into();
    }
    key.key()
        .sign_compact(header.to_string().as_bytes(), claims.to_string().as_bytes())
}

/// The claims of a JWT, unverified (the test reads what the server wrote).
fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

struct Running {
    server: AuthServer,
    issuer: String,
    /// Where requests go (another instance may serve the same issuer).
    base: String,
    http: reqwest::Client,
    _served: Served,
}

fn builder(issuer: &str) -> AuthServerBuilder {
    AuthServer::builder(issuer)
        .scopes(["mcp:read"])
        .resource(RESOURCE)
        .login(Arc::new(DevUsers::new().user("alice", "wonderland")))
        .auto_approve(true)
}

async fn start_with(configure: impl FnOnce(AuthServerBuilder) -> AuthServerBuilder) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let server = configure(builder(&issuer)).build().await.unwrap();
    let served = Served::app(listener, server.router());
    Running {
        server,
        base: issuer.clone(),
        issuer,
        http: reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .unwrap(),
        _served: served,
    }
}

/// Another instance for `issuer`, on its own port, over `store`.
async fn second_instance(issuer: &str, store: Arc<dyn Store>) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = builder(issuer)
        .store(store)
        .dpop(true)
        .build()
        .await
        .unwrap();
    let served = Served::app(listener, server.router());
    Running {
        server,
        issuer: issuer.to_owned(),
        base,
        http: reqwest::Client::new(),
        _served: served,
    }
}

impl Running {
    fn token_url(&self) -> String {
        format!("{}/token", self.issuer)
    }

    async fn public_client(&self) -> String {
        let res = self
            .http
            .post(format!("{}/register", self.base))
            .json(&json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"], "client_name": "dpop client"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let body: Value = res.json().await.unwrap();
        body["client_id"].as_str().unwrap().to_owned()
    }

    /// `/authorize` (auto-approved) with `extra` parameters: the callback's query.
    async fn authorize(&self, client: &str, extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut url = url::Url::parse(&format!("{}/authorize", self.base)).unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("state", "st")
            .append_pair("code_challenge", CHALLENGE)
            .append_pair("code_challenge_method", "S256")
            .append_pair("scope", "mcp:read")
            .append_pair("resource", RESOURCE)
            .extend_pairs(extra);
        let res = self.http.get(url).send().await.unwrap();
        assert_eq!(res.status(), 302, "{:?}", res.text().await);
        let location = res.headers()["location"].to_str().unwrap();
        url::Url::parse(location)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect()
    }

    /// `POST /token` with these `DPoP` values: (status, `DPoP-Nonce`, body).
    async fn token(&self, form: &[(&str, &str)], proofs: &[&str]) -> (u16, Option<String>, Value) {
        let mut req = self.http.post(format!("{}/token", self.base)).form(form);
        for proof in proofs {
            req = req.header("dpop", *proof);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let nonce = res
            .headers()
            .get("dpop-nonce")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, nonce, res.json().await.unwrap_or(Value::Null))
    }

    async fn redeem(
        &self,
        client: &str,
        code: &str,
        proofs: &[&str],
    ) -> (u16, Option<String>, Value) {
        self.token(
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("client_id", client),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ],
            proofs,
        )
        .await
    }

    async fn refresh(
        &self,
        client: &str,
        refresh: &str,
        proofs: &[&str],
    ) -> (u16, Option<String>, Value) {
        self.token(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh),
                ("client_id", client),
            ],
            proofs,
        )
        .await
    }

    fn proof(&self, key: &TestKey) -> String {
        proof(key, "POST", &self.token_url(), None, None)
    }
}

#[tokio::test]
async fn a_proof_at_token_binds_the_access_token_and_the_public_clients_refresh_token() {
    let r = start_with(|b| b.dpop(true)).await;
    let client_key = TestKey::es256();
    let jkt = thumbprint(&client_key);
    let client = r.public_client().await;
    let cb = r.authorize(&client, &[]).await;
    let (status, _, body) = r
        .redeem(&client, &cb["code"], &[&r.proof(&client_key)])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(claims_of(access)["cnf"], json!({"jkt": jkt}));
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();

    // The thief's key: refused, and the refresh token is not spent.
    let thief = TestKey::es256();
    let (status, _, body) = r.refresh(&client, &refresh, &[&r.proof(&thief)]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant", "{body}");
    // No proof at all: the bound refresh token is refused too.
    let (status, _, body) = r.refresh(&client, &refresh, &[]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_dpop_proof", "{body}");

    // The owner's key: a new bound pair.
    let (status, _, body) = r.refresh(&client, &refresh, &[&r.proof(&client_key)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    assert_eq!(
        claims_of(body["access_token"].as_str().unwrap())["cnf"]["jkt"],
        jkt
    );
    // The rotated refresh token stays bound.
    let rotated = body["refresh_token"].as_str().unwrap();
    let (status, _, body) = r.refresh(&client, rotated, &[&r.proof(&thief)]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn without_a_proof_tokens_stay_bearer_tokens() {
    let r = start_with(|b| b.dpop(true)).await;
    let client = r.public_client().await;
    let cb = r.authorize(&client, &[]).await;
    let (status, _, body) = r.redeem(&client, &cb["code"], &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(
        claims_of(body["access_token"].as_str().unwrap())
            .get("cnf")
            .is_none()
    );
    // Its refresh token is not bound: refreshing without a proof works.
    let (status, _, body) = r
        .refresh(&client, body["refresh_token"].as_str().unwrap(), &[])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
}

#[tokio::test]
async fn a_code_bound_with_dpop_jkt_is_redeemed_only_with_that_key() {
    let r = start_with(|b| b.dpop(true)).await;
    let client_key = TestKey::es256();
    let jkt = thumbprint(&client_key);
    let client = r.public_client().await;
    let cb = r.authorize(&client, &[("dpop_jkt", &jkt)]).await;
    let code = &cb["code"];
    // Another key: refused, the code is left to its owner.
    let (status, _, body) = r
        .redeem(&client, code, &[&r.proof(&TestKey::es256())])
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant", "{body}");
    // No proof: refused.
    let (status, _, body) = r.redeem(&client, code, &[]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_dpop_proof", "{body}");
    // The key named at /authorize.
    let (status, _, body) = r.redeem(&client, code, &[&r.proof(&client_key)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        claims_of(body["access_token"].as_str().unwrap())["cnf"]["jkt"],
        jkt
    );
}

#[tokio::test]
async fn a_malformed_dpop_jkt_gets_no_code() {
    let r = start_with(|b| b.dpop(true)).await;
    let client = r.public_client().await;
    for bad in [
        "short",
        "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
        &"a".repeat(44),
    ] {
        let mut url = url::Url::parse(&format!("{}/authorize", r.base)).unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &client)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("code_challenge", CHALLENGE)
            .append_pair("code_challenge_method", "S256")
            .append_pair("dpop_jkt", bad);
        let res = r.http.get(url).send().await.unwrap();
        // A client that never completed an authorization gets an error page, not a redirect.
        assert_eq!(res.status(), 400, "{bad}");
        assert!(res.text().await.unwrap().contains("dpop_jkt"));
    }
}

#[tokio::test]
async fn proofs_for_another_url_or_method_and_replays_are_refused_at_token() {
    let r = start_with(|b| b.dpop(true)).await;
    let key = TestKey::es256();
    let client = r.public_client().await;
    let cb = r.authorize(&client, &[]).await;
    let code = &cb["code"];
    for bad in [
        proof(&key, "POST", &format!("{}/authorize", r.issuer), None, None),
        proof(&key, "POST", "https://evil.example/token", None, None),
        proof(&key, "GET", &r.token_url(), None, None),
    ] {
        let (status, _, body) = r.redeem(&client, code, &[&bad]).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"], "invalid_dpop_proof", "{body}");
    }
    // Two proofs at once.
    let (status, _, body) = r
        .redeem(&client, code, &[&r.proof(&key), &r.proof(&key)])
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_dpop_proof");
    // Junk.
    for junk in ["", "x", "a.b.c", "e30.e30.e30"] {
        let (status, _, body) = r.redeem(&client, code, &[junk]).await;
        assert_eq!(status, 400, "{junk:?}");
        assert_eq!(body["error"], "invalid_dpop_proof");
    }
    // The code survived every refusal; a good proof redeems it, and is then spent.
    let good = r.proof(&key);
    let (status, _, body) = r.redeem(&client, code, &[&good]).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = r
        .refresh(&client, body["refresh_token"].as_str().unwrap(), &[&good])
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_dpop_proof");
}

#[tokio::test]
async fn two_instances_sharing_a_store_refuse_each_others_replayed_proofs() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let one = start_with({
        let store = store.clone();
        |b| b.store(store).dpop(true)
    })
    .await;
    let two = second_instance(&one.issuer, store).await;
    let key = TestKey::es256();
    let client = one.public_client().await;
    let first = one.authorize(&client, &[]).await;
    let second = one.authorize(&client, &[]).await;
    let spent = one.proof(&key);
    let (status, _, body) = one.redeem(&client, &first["code"], &[&spent]).await;
    assert_eq!(status, 200, "{body}");
    // The same proof at the other instance, with a fresh code: a replay.
    let (status, _, body) = two.redeem(&client, &second["code"], &[&spent]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_dpop_proof", "{body}");
    let (status, _, body) = two
        .redeem(&client, &second["code"], &[&two.proof(&key)])
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        two.server
            .metadata()
            .extra
            .contains_key("dpop_signing_alg_values_supported")
    );
}

#[tokio::test]
async fn with_nonces_the_token_endpoint_answers_use_dpop_nonce_first() {
    let r = start_with(|b| {
        b.dpop_verifier(
            DpopVerifier::builder()
                .nonces(DpopNonces::generate(Duration::from_secs(300)).unwrap())
                .build()
                .unwrap(),
        )
    })
    .await;
    let key = TestKey::es256();
    let client = r.public_client().await;
    let cb = r.authorize(&client, &[]).await;
    let (status, nonce, body) = r.redeem(&client, &cb["code"], &[&r.proof(&key)]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "use_dpop_nonce", "{body}");
    let nonce = nonce.expect("a DPoP-Nonce header");
    let retry = proof(&key, "POST", &r.token_url(), None, Some(&nonce));
    let (status, _, body) = r.redeem(&client, &cb["code"], &[&retry]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
}

#[tokio::test]
async fn with_dpop_off_the_header_and_dpop_jkt_are_ignored() {
    let r = start_with(|b| b).await;
    assert!(
        !r.server
            .metadata()
            .extra
            .contains_key("dpop_signing_alg_values_supported")
    );
    let key = TestKey::es256();
    let client = r.public_client().await;
    let cb = r
        .authorize(&client, &[("dpop_jkt", &thumbprint(&key))])
        .await;
    let (status, _, body) = r.redeem(&client, &cb["code"], &["junk"]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(
        claims_of(body["access_token"].as_str().unwrap())
            .get("cnf")
            .is_none()
    );
}

#[tokio::test]
async fn the_metadata_lists_the_proof_algorithms() {
    let r = start_with(|b| b.dpop(true)).await;
    let doc: Value = r
        .http
        .get(format!("{}/.well-known/oauth-authorization-server", r.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        doc["dpop_signing_alg_values_supported"],
        json!([
            "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"
        ])
    );
}

#[tokio::test]
async fn a_bound_token_from_the_server_works_only_with_its_proof_at_the_resource() {
    use http::{Request, StatusCode};
    use http_body_util::Full;
    use tower::{ServiceExt, service_fn};

    let r = start_with(|b| b.dpop(true)).await;
    let key = TestKey::es256();
    let client = r.public_client().await;
    let cb = r.authorize(&client, &[]).await;
    let (_, _, body) = r.redeem(&client, &cb["code"], &[&r.proof(&key)]).await;
    let access = body["access_token"].as_str().unwrap().to_owned();
    let oauth = mcp_oauth::OAuth::builder()
        .resource(RESOURCE)
        .authorization_server(&r.issuer)
        .verifier(r.server.verifier().unwrap())
        .dpop(DpopVerifier::builder().build().unwrap())
        .mirror_authorization_server(false)
        .build()
        .unwrap();
    let call = |scheme: &str, proof: Option<String>| {
        let mut req = Request::post("/mcp")
            .header("authorization", format!("{scheme} {access}"))
            .body(Full::new(bytes::Bytes::new()))
            .unwrap();
        if let Some(proof) = proof {
            req.headers_mut().insert("dpop", proof.parse().unwrap());
        }
        let svc = tower::ServiceBuilder::new()
            .layer(oauth.layer())
            .service(service_fn(|_req: Request<Full<bytes::Bytes>>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                    bytes::Bytes::new(),
                )))
            }));
        svc.oneshot(req)
    };
    let res = call("Bearer", None).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let good = proof(&key, "POST", RESOURCE, Some(&access), None);
    assert_eq!(
        call("DPoP", Some(good)).await.unwrap().status(),
        StatusCode::OK
    );
    let thief = proof(&TestKey::es256(), "POST", RESOURCE, Some(&access), None);
    assert_eq!(
        call("DPoP", Some(thief)).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_proof_sent_with_a_junk_grant_never_reaches_the_replay_cache() {
    let r = start_with(|b| b.dpop(true)).await;
    let key = TestKey::es256();
    let client = r.public_client().await;
    let proof = r.proof(&key);
    // An unknown code: refused for the code, and the proof is not recorded.
    let (status, _, body) = r.redeem(&client, "no-such-code", &[&proof]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant", "{body}");
    let (status, _, body) = r.refresh(&client, "no-such-refresh-token", &[&proof]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant", "{body}");
    // So the same proof still redeems a real code.
    let cb = r.authorize(&client, &[]).await;
    let (status, _, body) = r.redeem(&client, &cb["code"], &[&proof]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
}
