//! DPoP proofs (RFC 9449) from the attacker's side: every check of `DpopVerifier` refuses
//! what it should, with the error code a challenge will carry, and accepts valid proofs of
//! every algorithm family.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderValue, Method};
use mcp_oauth::dpop::{
    self, DpopError, DpopErrorKind, DpopNonces, DpopRequest, DpopVerifier, MAX_JTI_LEN,
    MemoryReplayCache, NonceProblem, ReplayCache, ReplayCacheError, ReplayKey,
};
use mcp_oauth::jose::{Algorithm, Algorithms, Jwk};
use mcp_oauth::testing::TestKey;
use mcp_oauth::verify::BoxFuture;
use mcp_oauth::{Claims, VerifyError};
use serde_json::{Map, Value, json};
use url::Url;

/// The request every proof is made for, unless a test says otherwise.
const HTU: &str = "https://mcp.example.com/mcp";
/// The verifier's clock.
const NOW: i64 = 1_800_000_000;
const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln";

fn url() -> Url {
    Url::parse(HTU).unwrap()
}

fn verifier() -> DpopVerifier {
    DpopVerifier::builder().build().unwrap()
}

/// A unique `jti` per proof, so that only the replay tests replay.
fn next_jti() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("jti-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The public JWK a client puts in its proofs: the required members only.
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

fn thumbprint(key: &TestKey) -> String {
    key.public_jwk().unwrap().thumbprint().unwrap()
}

/// Builds a proof as a client would, with the parts a test changes.
struct Proof {
    key: TestKey,
    header: Map<String, Value>,
    claims: Map<String, Value>,
}

impl Proof {
    /// A valid proof for `POST HTU` at `NOW`, bound to `TOKEN`.
    fn new(key: &TestKey) -> Self {
        let header =
            json!({"typ": "dpop+jwt", "alg": key.key().alg().as_str(), "jwk": bare_jwk(key)});
        let claims = json!({
            "jti": next_jti(), "htm": "POST", "htu": HTU, "iat": NOW,
            "ath": dpop::access_token_hash(TOKEN),
        });
        Self {
            key: key.clone(),
            header: header.as_object().unwrap().clone(),
            claims: claims.as_object().unwrap().clone(),
        }
    }

    fn header(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.header.insert(name.into(), value.into());
        self
    }

    fn without_header(mut self, name: &str) -> Self {
        self.header.remove(name);
        self
    }

    fn claim(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.claims.insert(name.into(), value.into());
        self
    }

    fn without(mut self, name: &str) -> Self {
        self.claims.remove(name);
        self
    }

    fn sign(&self) -> String {
        self.key.key().sign_compact(
            Value::Object(self.header.clone()).to_string().as_bytes(),
            Value::Object(self.claims.clone()).to_string().as_bytes(),
        )
    }
}

fn header_value(proof: &str) -> HeaderValue {
    HeaderValue::from_str(proof).unwrap()
}

/// Verifies `proof` as the only `DPoP` header of `POST HTU` presenting `TOKEN`, bound to
/// `jkt`.
async fn check(
    verifier: &DpopVerifier,
    proof: &str,
    jkt: &str,
) -> Result<dpop::DpopProof, DpopError> {
    let url = url();
    let request = DpopRequest::new(&Method::POST, &url).access_token(TOKEN, jkt);
    verifier.verify(&[header_value(proof)], &request, NOW).await
}

/// The refusal of a proof by `key` for its own thumbprint, asserting the error code.
async fn refusal(proof: &Proof) -> DpopError {
    let err = check(&verifier(), &proof.sign(), &thumbprint(&proof.key))
        .await
        .expect_err("refused");
    assert_eq!(err.error_code(), Some("invalid_dpop_proof"), "{err}");
    err
}

#[tokio::test]
async fn valid_proofs_of_every_family_are_accepted() {
    for alg in [
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::EdDSA,
    ] {
        let key = TestKey::generate(alg);
        let proof = Proof::new(&key);
        let jti = proof.claims["jti"].as_str().unwrap().to_owned();
        let checked = check(&verifier(), &proof.sign(), &thumbprint(&key))
            .await
            .unwrap_or_else(|err| panic!("{alg}: {err}"));
        assert_eq!(checked.jkt(), thumbprint(&key), "{alg}");
        assert_eq!(checked.jti(), jti);
        assert_eq!(checked.iat(), NOW);
        assert_eq!(checked.alg(), alg);
    }
}

#[tokio::test]
async fn proofs_without_a_token_need_no_ath() {
    let key = TestKey::es256();
    let proof = Proof::new(&key).without("ath").sign();
    let url = url();
    let request = DpopRequest::new(&Method::POST, &url);
    assert!(
        verifier()
            .verify(&[header_value(&proof)], &request, NOW)
            .await
            .is_ok()
    );
    // An authorization server's binding without a token: the key must still match.
    let other = TestKey::es256();
    let proof = Proof::new(&key).without("ath").sign();
    let jkt = thumbprint(&other);
    let request = DpopRequest::new(&Method::POST, &url).bound_to(&jkt);
    assert_eq!(
        verifier()
            .verify(&[header_value(&proof)], &request, NOW)
            .await,
        Err(DpopError::KeyMismatch)
    );
}

#[test]
fn rfc7638_thumbprint_example() {
    // RFC 7638 §3.1, with its kid and alg (which do not enter the thumbprint).
    let jwk: Jwk = serde_json::from_value(json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29"
    }))
    .unwrap();
    assert_eq!(
        jwk.thumbprint().unwrap(),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
    let no_e = Jwk {
        e: None,
        ..jwk.clone()
    };
    assert!(no_e.thumbprint().is_err());
    let oct = Jwk {
        kty: "oct".into(),
        ..jwk
    };
    assert!(oct.thumbprint().is_err());
}

#[tokio::test]
async fn a_replayed_proof_is_refused() {
    let key = TestKey::es256();
    let verifier = verifier();
    let jkt = thumbprint(&key);
    let proof = Proof::new(&key);
    let signed = proof.sign();
    assert!(check(&verifier, &signed, &jkt).await.is_ok());
    let err = check(&verifier, &signed, &jkt).await.unwrap_err();
    assert_eq!(err, DpopError::Replayed);
    assert_eq!(err.error_code(), Some("invalid_dpop_proof"));
    // A new proof with the same jti and key is the same proof to the cache, whatever else
    // changed; clones of the verifier share the cache.
    let again = Proof::new(&key)
        .claim("jti", proof.claims["jti"].clone())
        .claim("iat", NOW - 1)
        .sign();
    assert_eq!(
        check(&verifier.clone(), &again, &jkt).await,
        Err(DpopError::Replayed)
    );
    // Another key's proof with that jti is a different proof.
    let other = TestKey::es256();
    let theirs = Proof::new(&other)
        .claim("jti", proof.claims["jti"].clone())
        .sign();
    assert!(check(&verifier, &theirs, &thumbprint(&other)).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_concurrent_presentations_of_one_proof_exactly_one_wins() {
    let key = TestKey::es256();
    let verifier = verifier();
    let jkt = thumbprint(&key);
    for _ in 0..5 {
        let proof = Arc::new(Proof::new(&key).sign());
        let barrier = Arc::new(tokio::sync::Barrier::new(32));
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (verifier, proof, jkt, barrier) = (
                    verifier.clone(),
                    proof.clone(),
                    jkt.clone(),
                    barrier.clone(),
                );
                tokio::spawn(async move {
                    barrier.wait().await;
                    check(&verifier, &proof, &jkt).await
                })
            })
            .collect();
        let mut accepted = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => accepted += 1,
                Err(err) => assert_eq!(err, DpopError::Replayed),
            }
        }
        assert_eq!(accepted, 1);
    }
}

#[tokio::test]
async fn a_mismatched_method_is_refused() {
    let key = TestKey::es256();
    for htm in ["GET", "post", "POST ", ""] {
        let err = refusal(&Proof::new(&key).claim("htm", htm)).await;
        assert_eq!(err, DpopError::MethodMismatch, "{htm:?}");
    }
    let err = refusal(&Proof::new(&key).claim("htm", json!(["POST"]))).await;
    assert_eq!(err, DpopError::InvalidClaim("htm"));
}

#[tokio::test]
async fn htu_names_the_request_url_after_normalisation() {
    let key = TestKey::es256();
    let jkt = thumbprint(&key);
    for htu in [
        "https://MCP.Example.com/mcp",
        "HTTPS://mcp.example.com:443/mcp",
        "https://mcp.example.com/mcp?session=1",
        "https://mcp.example.com/mcp#top",
        "https://mcp.example.com/%6Dcp",
    ] {
        let proof = Proof::new(&key).claim("htu", htu).sign();
        assert!(check(&verifier(), &proof, &jkt).await.is_ok(), "{htu}");
    }
    // The request's own query is ignored too.
    let with_query = Url::parse("https://mcp.example.com/mcp?a=b").unwrap();
    let proof = Proof::new(&key).sign();
    let request = DpopRequest::new(&Method::POST, &with_query).access_token(TOKEN, &jkt);
    assert!(
        verifier()
            .verify(&[header_value(&proof)], &request, NOW)
            .await
            .is_ok()
    );

    for htu in [
        "https://mcp.example.com/other",
        "https://mcp.example.com/mcp/",
        "https://mcp.example.com/MCP",
        "https://evil.example.com/mcp",
        "https://mcp.example.com.evil.example/mcp",
        "http://mcp.example.com/mcp",
        "https://mcp.example.com:8443/mcp",
        "https://user:pw@mcp.example.com/mcp",
    ] {
        let err = refusal(&Proof::new(&key).claim("htu", htu)).await;
        assert_eq!(err, DpopError::UrlMismatch, "{htu}");
    }
    for htu in [
        json!("/mcp"),
        json!("mcp.example.com/mcp"),
        json!("urn:x:y"),
        json!(5),
    ] {
        let err = refusal(&Proof::new(&key).claim("htu", htu.clone())).await;
        assert_eq!(err, DpopError::InvalidClaim("htu"), "{htu}");
    }
}

#[tokio::test]
async fn ath_must_be_the_hash_of_the_presented_token() {
    let key = TestKey::es256();
    let err =
        refusal(&Proof::new(&key).claim("ath", dpop::access_token_hash("another token"))).await;
    assert_eq!(err, DpopError::AccessTokenHashMismatch);
    // The hash in another encoding is not the hash.
    let hex: String = URL_SAFE_NO_PAD
        .decode(dpop::access_token_hash(TOKEN))
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let err = refusal(&Proof::new(&key).claim("ath", hex)).await;
    assert_eq!(err, DpopError::AccessTokenHashMismatch);
    let err = refusal(&Proof::new(&key).without("ath")).await;
    assert_eq!(err, DpopError::MissingClaim("ath"));
    let err = refusal(&Proof::new(&key).claim("ath", json!(null))).await;
    assert_eq!(err, DpopError::InvalidClaim("ath"));
    // RFC 9449 §4.2's example: the hash of this token.
    assert_eq!(
        dpop::access_token_hash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
        "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
    );
}

#[tokio::test]
async fn iat_must_be_inside_the_window() {
    let key = TestKey::es256();
    let jkt = thumbprint(&key);
    // The defaults: 60 seconds old, 60 seconds ahead, both inclusive.
    for iat in [NOW - 60, NOW + 60, NOW] {
        let proof = Proof::new(&key).claim("iat", iat).sign();
        assert!(check(&verifier(), &proof, &jkt).await.is_ok(), "{iat}");
    }
    assert_eq!(
        refusal(&Proof::new(&key).claim("iat", NOW - 61)).await,
        DpopError::Stale
    );
    assert_eq!(
        refusal(&Proof::new(&key).claim("iat", 0)).await,
        DpopError::Stale
    );
    assert_eq!(
        refusal(&Proof::new(&key).claim("iat", NOW + 61)).await,
        DpopError::IssuedInFuture
    );
    assert_eq!(
        refusal(&Proof::new(&key).claim("iat", i64::MAX)).await,
        DpopError::IssuedInFuture
    );
    assert_eq!(
        refusal(&Proof::new(&key).claim("iat", i64::MIN)).await,
        DpopError::Stale
    );
    assert_eq!(
        refusal(&Proof::new(&key).without("iat")).await,
        DpopError::MissingClaim("iat")
    );
    assert_eq!(
        refusal(&Proof::new(&key).claim("iat", NOW.to_string())).await,
        DpopError::InvalidClaim("iat")
    );
    // A configured window.
    let strict = DpopVerifier::builder()
        .max_age(Duration::from_secs(10))
        .leeway(Duration::ZERO)
        .build()
        .unwrap();
    let old = Proof::new(&key).claim("iat", NOW - 11).sign();
    assert_eq!(check(&strict, &old, &jkt).await, Err(DpopError::Stale));
    let ahead = Proof::new(&key).claim("iat", NOW + 1).sign();
    assert_eq!(
        check(&strict, &ahead, &jkt).await,
        Err(DpopError::IssuedInFuture)
    );
}

#[tokio::test]
async fn a_proof_by_another_key_than_the_tokens_is_refused() {
    let key = TestKey::es256();
    let attacker = TestKey::es256();
    // A valid proof by the attacker's own key, for the victim's token.
    let proof = Proof::new(&attacker).sign();
    let err = check(&verifier(), &proof, &thumbprint(&key))
        .await
        .unwrap_err();
    assert_eq!(err, DpopError::KeyMismatch);
    assert_eq!(err.error_code(), Some("invalid_dpop_proof"));
    // The victim's public key in the header, signed by the attacker: the signature fails.
    let forged = Proof {
        key: attacker.clone(),
        ..Proof::new(&key)
    }
    .header("alg", "ES256");
    let err = check(&verifier(), &forged.sign(), &thumbprint(&key))
        .await
        .unwrap_err();
    assert_eq!(err, DpopError::InvalidSignature);
    // The same key with other optional members is the same key.
    let dressed = Proof::new(&key).header(
        "jwk",
        serde_json::to_value(key.public_jwk().unwrap()).unwrap(),
    );
    assert!(
        check(&verifier(), &dressed.sign(), &thumbprint(&key))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn alg_none_hmac_and_confused_algorithms_are_refused() {
    let key = TestKey::es256();
    // `none`, with an empty signature.
    let header = json!({"typ": "dpop+jwt", "alg": "none", "jwk": bare_jwk(&key)});
    let claims = Value::Object(Proof::new(&key).claims);
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let err = check(&verifier(), &unsigned, &thumbprint(&key))
        .await
        .unwrap_err();
    assert!(matches!(err, DpopError::Malformed(_)), "{err}");
    let with_sig = format!("{unsigned}c2ln");
    let err = check(&verifier(), &with_sig, &thumbprint(&key))
        .await
        .unwrap_err();
    assert_eq!(err, DpopError::UnsupportedAlgorithm { alg: "none".into() });

    // HS256 with the secret in an oct jwk, or a public key as the "secret".
    let secret = [7u8; 32];
    let hmac = TestKey::hs256(&secret);
    let oct = json!({"kty": "oct", "k": URL_SAFE_NO_PAD.encode(secret)});
    for jwk in [oct, bare_jwk(&key)] {
        let proof = Proof {
            key: hmac.clone(),
            ..Proof::new(&key)
        }
        .header("alg", "HS256")
        .header("jwk", jwk);
        let err = check(&verifier(), &proof.sign(), &thumbprint(&key))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            DpopError::UnsupportedAlgorithm {
                alg: "HS256".into()
            }
        );
    }

    // An algorithm of another family than the key's.
    let rsa = TestKey::rs256();
    let confused = Proof {
        key: rsa.clone(),
        ..Proof::new(&key)
    }
    .header("alg", "RS256");
    let err = check(&verifier(), &confused.sign(), &thumbprint(&key))
        .await
        .unwrap_err();
    assert!(matches!(err, DpopError::InvalidKey(_)), "{err}");

    // An allowed set without RSA.
    let ec_only = DpopVerifier::builder()
        .algorithms([Algorithm::ES256].into_iter().collect())
        .build()
        .unwrap();
    let err = check(&ec_only, &Proof::new(&rsa).sign(), &thumbprint(&rsa))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        DpopError::UnsupportedAlgorithm {
            alg: "RS256".into()
        }
    );
    assert_eq!(
        ec_only.algorithms().iter().collect::<Vec<_>>(),
        [Algorithm::ES256]
    );
}

#[tokio::test]
async fn private_key_material_in_the_jwk_is_refused() {
    let key = TestKey::es256();
    for member in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
        let mut jwk = bare_jwk(&key);
        jwk[member] = json!("AAAA");
        let err = refusal(&Proof::new(&key).header("jwk", jwk)).await;
        assert_eq!(
            err,
            DpopError::InvalidKey("jwk holds private key material".into()),
            "{member}"
        );
    }
    for jwk in [
        json!("a key"),
        json!([bare_jwk(&key)]),
        json!({"kty": "EC"}),
    ] {
        let err = refusal(&Proof::new(&key).header("jwk", jwk.clone())).await;
        assert!(matches!(err, DpopError::InvalidKey(_)), "{jwk}: {err}");
    }
    let err = refusal(&Proof::new(&key).without_header("jwk")).await;
    assert_eq!(err, DpopError::InvalidKey("the header has no jwk".into()));
    // An RSA key under 2048 bits (a 1024-bit modulus) is refused, whatever the signature.
    let mut n = vec![0xC5u8; 128];
    n[127] |= 1;
    let weak = json!({"kty": "RSA", "e": "AQAB", "n": URL_SAFE_NO_PAD.encode(&n)});
    let rsa = TestKey::rs256();
    let err = refusal(&Proof::new(&rsa).header("jwk", weak)).await;
    assert!(
        matches!(err, DpopError::InvalidKey(_) | DpopError::InvalidSignature),
        "{err}"
    );
    // A key for encryption is no signing key.
    let mut enc = bare_jwk(&key);
    enc["use"] = json!("enc");
    let err = refusal(&Proof::new(&key).header("jwk", enc)).await;
    assert!(matches!(err, DpopError::InvalidKey(_)), "{err}");
}

#[tokio::test]
async fn a_wrong_typ_is_refused() {
    let key = TestKey::es256();
    for typ in [json!("JWT"), json!("at+jwt"), json!("dpop"), json!(1)] {
        let err = refusal(&Proof::new(&key).header("typ", typ.clone())).await;
        assert!(
            matches!(err, DpopError::InvalidType | DpopError::Malformed(_)),
            "{typ}: {err}"
        );
    }
    let err = refusal(&Proof::new(&key).without_header("typ")).await;
    assert_eq!(err, DpopError::InvalidType);
    // The media-type spelling is the same type.
    let proof = Proof::new(&key)
        .header("typ", "application/dpop+jwt")
        .sign();
    assert!(check(&verifier(), &proof, &thumbprint(&key)).await.is_ok());
}

#[tokio::test]
async fn exactly_one_dpop_header_is_accepted() {
    let key = TestKey::es256();
    let jkt = thumbprint(&key);
    let url = url();
    let request = DpopRequest::new(&Method::POST, &url).access_token(TOKEN, &jkt);
    let a = header_value(&Proof::new(&key).sign());
    let b = header_value(&Proof::new(&key).sign());
    let verifier = verifier();
    assert_eq!(
        verifier
            .verify(&[a.clone(), b.clone()], &request, NOW)
            .await,
        Err(DpopError::MultipleHeaders { count: 2 })
    );
    assert_eq!(
        verifier
            .verify(&[a.clone(), a.clone(), b], &request, NOW)
            .await,
        Err(DpopError::MultipleHeaders { count: 3 })
    );
    let none: [HeaderValue; 0] = [];
    let err = verifier.verify(&none, &request, NOW).await.unwrap_err();
    assert_eq!(err, DpopError::Missing);
    assert_eq!(err.error_code(), Some("invalid_dpop_proof"));
    // From a header map, as the layer will pass it: two lines are two headers.
    let mut headers = http::HeaderMap::new();
    headers.append("dpop", a.clone());
    headers.append("DPoP", a);
    assert_eq!(
        verifier
            .verify(headers.get_all("dpop"), &request, NOW)
            .await,
        Err(DpopError::MultipleHeaders { count: 2 })
    );
}

#[tokio::test]
async fn duplicate_json_members_are_refused() {
    let key = TestKey::es256();
    let jwk = bare_jwk(&key).to_string();
    let claims = Value::Object(Proof::new(&key).claims).to_string();
    let good_header = format!(r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{jwk}}}"#);
    for (header, payload) in [
        (
            format!(r#"{{"typ":"dpop+jwt","alg":"ES256","alg":"ES256","jwk":{jwk}}}"#),
            claims.clone(),
        ),
        (
            format!(r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{jwk},"jwk":{jwk}}}"#),
            claims.clone(),
        ),
        (
            format!(
                r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{}}}"#,
                jwk.replacen('{', r#"{"kty":"EC","#, 1)
            ),
            claims.clone(),
        ),
        (
            good_header.clone(),
            claims.replacen('{', r#"{"htu":"https://evil.example/mcp","#, 1),
        ),
    ] {
        let proof = key
            .key()
            .sign_compact(header.as_bytes(), payload.as_bytes());
        let err = check(&verifier(), &proof, &thumbprint(&key))
            .await
            .unwrap_err();
        assert!(
            matches!(err, DpopError::Malformed(_)),
            "{header} {payload}: {err}"
        );
    }
    // The control: the same bytes without the duplicate pass.
    let proof = key
        .key()
        .sign_compact(good_header.as_bytes(), claims.as_bytes());
    assert!(check(&verifier(), &proof, &thumbprint(&key)).await.is_ok());
}

#[tokio::test]
async fn oversize_and_garbage_headers_are_refused() {
    let key = TestKey::es256();
    let jkt = thumbprint(&key);
    let huge = "a".repeat(dpop::DEFAULT_MAX_PROOF_LEN + 1);
    assert_eq!(
        check(&verifier(), &huge, &jkt).await,
        Err(DpopError::TooLarge {
            len: dpop::DEFAULT_MAX_PROOF_LEN + 1,
            limit: dpop::DEFAULT_MAX_PROOF_LEN
        })
    );
    // A valid proof over a configured limit.
    let small = DpopVerifier::builder().max_proof_len(512).build().unwrap();
    let rsa = TestKey::rs256();
    let proof = Proof::new(&rsa).sign();
    assert!(proof.len() > 512);
    assert!(matches!(
        check(&small, &proof, &thumbprint(&rsa)).await,
        Err(DpopError::TooLarge { .. })
    ));
    let valid = Proof::new(&key).sign();
    let (head, rest) = valid.split_once('.').unwrap();
    for garbage in [
        String::new(),
        "a.b.c".into(),
        "!!!.???.***".into(),
        "a.b".into(),
        format!("{valid}.x"),
        format!("{head}=.{rest}"),
        format!("+{}", &valid[1..]),
        format!("{}.{rest}", URL_SAFE_NO_PAD.encode("not json")),
        format!("{}.{rest}", URL_SAFE_NO_PAD.encode("[1,2]")),
        format!(
            "{head}.{}.{}",
            URL_SAFE_NO_PAD.encode("[]"),
            rest.split_once('.').unwrap().1
        ),
    ] {
        let err = check(&verifier(), &garbage, &jkt).await.unwrap_err();
        assert_eq!(
            err.kind(),
            DpopErrorKind::InvalidProof,
            "{garbage:?}: {err}"
        );
    }
    // A value that is not visible ASCII.
    let binary = HeaderValue::from_bytes(b"\xff\xfe.a.b").unwrap();
    let url = url();
    let request = DpopRequest::new(&Method::POST, &url);
    assert!(matches!(
        verifier().verify(&[binary], &request, NOW).await,
        Err(DpopError::Malformed(_))
    ));
}

#[tokio::test]
async fn jti_is_required_and_bounded() {
    let key = TestKey::es256();
    assert_eq!(
        refusal(&Proof::new(&key).without("jti")).await,
        DpopError::MissingClaim("jti")
    );
    assert_eq!(
        refusal(&Proof::new(&key).claim("jti", "")).await,
        DpopError::InvalidClaim("jti")
    );
    assert_eq!(
        refusal(&Proof::new(&key).claim("jti", 7)).await,
        DpopError::InvalidClaim("jti")
    );
    let long = "j".repeat(MAX_JTI_LEN + 1);
    assert_eq!(
        refusal(&Proof::new(&key).claim("jti", long)).await,
        DpopError::InvalidClaim("jti")
    );
    let longest = "j".repeat(MAX_JTI_LEN);
    let proof = Proof::new(&key).claim("jti", longest).sign();
    assert!(check(&verifier(), &proof, &thumbprint(&key)).await.is_ok());
    for name in ["htm", "htu"] {
        assert_eq!(
            refusal(&Proof::new(&key).without(name)).await,
            DpopError::MissingClaim(name)
        );
    }
}

#[tokio::test]
async fn server_nonces_are_required_when_configured() {
    let key = TestKey::es256();
    let jkt = thumbprint(&key);
    let nonces = DpopNonces::from_secret(&[3; 32], Duration::from_secs(300)).unwrap();
    let verifier = DpopVerifier::builder().nonces(nonces).build().unwrap();
    assert!(verifier.requires_nonce());

    // No nonce: use_dpop_nonce, with the nonce to retry with.
    let err = check(&verifier, &Proof::new(&key).sign(), &jkt)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), DpopErrorKind::UseNonce);
    assert_eq!(err.error_code(), Some("use_dpop_nonce"));
    assert!(matches!(
        err,
        DpopError::UseNonce {
            problem: NonceProblem::Missing,
            ..
        }
    ));
    let nonce = err.nonce().unwrap().to_owned();
    assert_eq!(verifier.fresh_nonce(NOW).as_deref(), Some(nonce.as_str()));

    // The retry with it passes.
    let proof = Proof::new(&key).claim("nonce", nonce.as_str()).sign();
    assert!(check(&verifier, &proof, &jkt).await.is_ok());

    // A forged nonce, another server's nonce, a non-string.
    let other = DpopNonces::from_secret(&[4; 32], Duration::from_secs(300)).unwrap();
    for (forged, problem) in [
        (json!("made-up"), NonceProblem::Unknown),
        (json!(other.issue(NOW)), NonceProblem::Unknown),
        (json!(""), NonceProblem::Unknown),
    ] {
        let proof = Proof::new(&key).claim("nonce", forged.clone()).sign();
        let err = check(&verifier, &proof, &jkt).await.unwrap_err();
        assert_eq!(err.error_code(), Some("use_dpop_nonce"), "{forged}");
        assert!(
            matches!(&err, DpopError::UseNonce { problem: p, nonce: fresh } if *p == problem && *fresh == nonce),
            "{forged}: {err:?}"
        );
    }
    let proof = Proof::new(&key).claim("nonce", 5).sign();
    assert_eq!(
        check(&verifier, &proof, &jkt).await,
        Err(DpopError::InvalidClaim("nonce"))
    );

    // A nonce from three periods ago is stale, even in a fresh proof.
    let old = verifier.fresh_nonce(NOW - 900).unwrap();
    let proof = Proof::new(&key).claim("nonce", old).sign();
    let err = check(&verifier, &proof, &jkt).await.unwrap_err();
    assert!(
        matches!(
            err,
            DpopError::UseNonce {
                problem: NonceProblem::Stale,
                ..
            }
        ),
        "{err:?}"
    );

    // Without configured nonces a proof's nonce is not checked.
    let proof = Proof::new(&key).claim("nonce", "anything").sign();
    assert!(check(&self::verifier(), &proof, &jkt).await.is_ok());
    assert!(self::verifier().fresh_nonce(NOW).is_none());
}

/// A cache that counts its calls and answers as told.
struct Counting {
    calls: AtomicUsize,
    fail: bool,
    inner: MemoryReplayCache,
}

impl ReplayCache for Counting {
    fn insert_if_absent<'a>(
        &'a self,
        key: &'a ReplayKey,
        expires_at: i64,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, ReplayCacheError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail {
            return Box::pin(async { Err(ReplayCacheError::new("backend down")) });
        }
        self.inner.insert_if_absent(key, expires_at, now)
    }
}

#[tokio::test]
async fn only_proofs_that_pass_every_check_reach_the_replay_cache() {
    let key = TestKey::es256();
    let cache = Arc::new(Counting {
        calls: AtomicUsize::new(0),
        fail: false,
        inner: MemoryReplayCache::new(10),
    });
    let verifier = DpopVerifier::builder()
        .replay_cache(cache.clone())
        .build()
        .unwrap();
    let someone_else = thumbprint(&TestKey::es256());
    assert_eq!(
        check(&verifier, &Proof::new(&key).sign(), &someone_else).await,
        Err(DpopError::KeyMismatch)
    );
    assert_eq!(
        check(
            &verifier,
            &Proof::new(&key).claim("htm", "GET").sign(),
            &thumbprint(&key)
        )
        .await,
        Err(DpopError::MethodMismatch)
    );
    assert_eq!(cache.calls.load(Ordering::SeqCst), 0);
    assert!(
        check(&verifier, &Proof::new(&key).sign(), &thumbprint(&key))
            .await
            .is_ok()
    );
    assert_eq!(cache.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_failing_replay_cache_refuses_as_unavailable() {
    let key = TestKey::es256();
    let cache = Arc::new(Counting {
        calls: AtomicUsize::new(0),
        fail: true,
        inner: MemoryReplayCache::new(10),
    });
    let verifier = DpopVerifier::builder().replay_cache(cache).build().unwrap();
    let err = check(&verifier, &Proof::new(&key).sign(), &thumbprint(&key))
        .await
        .unwrap_err();
    assert_eq!(err, DpopError::Unavailable("backend down".into()));
    assert_eq!(err.kind(), DpopErrorKind::Unavailable);
    assert_eq!(err.error_code(), None);
}

/// Two instances of a resource server, each with its own verifier and its own
/// `StoreReplayCache`, over one store: a proof accepted by one is a replay to the other.
#[tokio::test]
async fn instances_sharing_a_store_refuse_each_others_replays() {
    use mcp_oauth::auth_server::store::{MemoryStore, Store, StoreReplayCache};

    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let instance = || {
        DpopVerifier::builder()
            .replay_cache(Arc::new(StoreReplayCache::new(Arc::clone(&store))))
            .build()
            .unwrap()
    };
    let (one, two) = (instance(), instance());
    let key = TestKey::es256();
    let jkt = thumbprint(&key);
    let proof = Proof::new(&key);
    let signed = proof.sign();
    assert!(check(&one, &signed, &jkt).await.is_ok());
    assert_eq!(check(&two, &signed, &jkt).await, Err(DpopError::Replayed));
    // The same jti under the same key, re-signed with another iat, is still the same proof.
    let again = Proof::new(&key)
        .claim("jti", proof.claims["jti"].clone())
        .claim("iat", NOW - 5)
        .sign();
    assert_eq!(check(&two, &again, &jkt).await, Err(DpopError::Replayed));
    // Each instance accepts fresh proofs, and a fresh proof one accepts is spent for both.
    let fresh = Proof::new(&key).sign();
    assert!(check(&two, &fresh, &jkt).await.is_ok());
    assert_eq!(check(&one, &fresh, &jkt).await, Err(DpopError::Replayed));
    // A verifier with its own memory cache does not see the store's records.
    assert!(check(&verifier(), &signed, &jkt).await.is_ok());
}

/// A store that cannot answer refuses the proof as unverifiable (503), never accepts it.
#[tokio::test]
async fn an_unavailable_store_refuses_as_unavailable() {
    use mcp_oauth::auth_server::store::{
        Kind, Redeemed, Store, StoreError, StoreReplayCache, StoreResult, Stored,
    };

    struct Down;
    fn down<T>() -> BoxFuture<'static, StoreResult<T>> {
        Box::pin(async { Err(StoreError::unavailable("redis: connection refused")) })
    }
    impl Store for Down {
        fn put<'a>(
            &'a self,
            _: Kind,
            _: &'a str,
            _: Vec<u8>,
            _: Option<i64>,
        ) -> BoxFuture<'a, StoreResult<()>> {
            down()
        }
        fn put_if_absent<'a>(
            &'a self,
            _: Kind,
            _: &'a str,
            _: Vec<u8>,
            _: Option<i64>,
        ) -> BoxFuture<'a, StoreResult<bool>> {
            down()
        }
        fn get<'a>(&'a self, _: Kind, _: &'a str) -> BoxFuture<'a, StoreResult<Option<Stored>>> {
            down()
        }
        fn take<'a>(&'a self, _: Kind, _: &'a str) -> BoxFuture<'a, StoreResult<Option<Vec<u8>>>> {
            down()
        }
        fn redeem<'a>(
            &'a self,
            _: Kind,
            _: &'a str,
        ) -> BoxFuture<'a, StoreResult<Redeemed<Vec<u8>>>> {
            down()
        }
        fn revoke_family<'a>(&'a self, _: &'a str, _: i64) -> BoxFuture<'a, StoreResult<()>> {
            down()
        }
        fn is_family_revoked<'a>(&'a self, _: &'a str) -> BoxFuture<'a, StoreResult<bool>> {
            down()
        }
    }

    let verifier = DpopVerifier::builder()
        .replay_cache(Arc::new(StoreReplayCache::new(Arc::new(Down))))
        .build()
        .unwrap();
    let key = TestKey::es256();
    let err = check(&verifier, &Proof::new(&key).sign(), &thumbprint(&key))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        DpopError::Unavailable(
            "the DPoP replay cache is unavailable: store: redis: connection refused".into()
        )
    );
    assert_eq!(err.error_code(), None);
}

#[tokio::test]
async fn the_memory_cache_is_bounded_and_forgets_lapsed_proofs() {
    let key = TestKey::es256();
    let jkt = thumbprint(&key);
    let cache = Arc::new(MemoryReplayCache::new(2));
    let verifier = DpopVerifier::builder()
        .replay_cache(cache.clone())
        .build()
        .unwrap();
    let url = url();
    let request = DpopRequest::new(&Method::POST, &url).access_token(TOKEN, &jkt);
    let first = header_value(&Proof::new(&key).sign());
    assert!(verifier.verify([&first], &request, NOW).await.is_ok());
    assert!(
        verifier
            .verify([&header_value(&Proof::new(&key).sign())], &request, NOW)
            .await
            .is_ok()
    );
    // Full of live records: refused, not forgotten.
    let third = header_value(&Proof::new(&key).sign());
    assert!(matches!(
        verifier.verify([&third], &request, NOW).await,
        Err(DpopError::Unavailable(_))
    ));
    assert_eq!(
        verifier.verify([&first], &request, NOW + 60).await,
        Err(DpopError::Replayed)
    );
    // Once the first two can no longer be accepted anyway, they make room.
    let later = header_value(&Proof::new(&key).claim("iat", NOW + 61).sign());
    assert!(verifier.verify([&later], &request, NOW + 61).await.is_ok());
    assert_eq!(cache.len(), 1);
}

#[test]
fn errors_name_the_problem_without_echoing_input() {
    let alg = "x".repeat(10_000);
    let err = DpopError::UnsupportedAlgorithm { alg };
    assert_eq!(
        err.public_description(),
        "the DPoP proof's algorithm is not supported"
    );
    let long_kty = Jwk {
        kty: "<script>".repeat(1000),
        ..Jwk::default()
    };
    let key_err = long_kty.thumbprint().unwrap_err().to_string();
    assert!(key_err.len() < 120, "{key_err}");
    for err in [
        DpopError::Missing,
        DpopError::UrlMismatch,
        DpopError::KeyMismatch,
        DpopError::Replayed,
    ] {
        assert!(!err.public_description().is_empty());
        assert_eq!(err.error_code(), Some("invalid_dpop_proof"));
    }
}

#[tokio::test]
async fn error_messages_are_bounded_for_attacker_input() {
    let key = TestKey::es256();
    // An unknown algorithm name of 4 KiB and a key type of 4 KiB come back truncated.
    let proof = Proof::new(&key).header("alg", "A".repeat(4000)).sign();
    let err = check(&verifier(), &proof, &thumbprint(&key))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DpopError::UnsupportedAlgorithm { .. }),
        "{err}"
    );
    assert!(err.to_string().len() < 200, "{err}");
    let mut jwk = bare_jwk(&key);
    jwk["kty"] = json!("K".repeat(4000));
    let err = refusal(&Proof::new(&key).header("jwk", jwk)).await;
    assert!(matches!(err, DpopError::InvalidKey(_)), "{err}");
    assert!(err.to_string().len() < 200, "{err}");
}

#[test]
fn the_builder_refuses_weak_or_empty_settings() {
    for algorithms in [
        Algorithms::NONE,
        Algorithms::hmac(),
        Algorithms::default()
            .without_hmac()
            .iter()
            .chain([Algorithm::HS256])
            .collect(),
    ] {
        assert!(
            DpopVerifier::builder()
                .algorithms(algorithms)
                .build()
                .is_err(),
            "{algorithms:?}"
        );
    }
    assert!(
        DpopVerifier::builder()
            .max_age(Duration::ZERO)
            .build()
            .is_err()
    );
    assert!(
        DpopVerifier::builder()
            .max_age(Duration::from_secs(3601))
            .build()
            .is_err()
    );
    assert!(
        DpopVerifier::builder()
            .leeway(Duration::from_secs(3601))
            .build()
            .is_err()
    );
    assert!(DpopVerifier::builder().max_proof_len(100).build().is_err());
    let verifier = DpopVerifier::builder().build().unwrap();
    assert_eq!(verifier.algorithms(), Algorithms::asymmetric());
    assert!(!verifier.requires_nonce());
}

#[test]
fn cnf_jkt_is_read_strictly() {
    let claims = |value: Value| Claims::new(value.as_object().unwrap().clone());
    assert_eq!(
        dpop::confirmation_jkt(&claims(json!({"cnf": {"jkt": "abc"}}))).unwrap(),
        Some("abc")
    );
    assert_eq!(
        dpop::confirmation_jkt(&claims(json!({"sub": "a"}))).unwrap(),
        None
    );
    assert_eq!(
        dpop::confirmation_jkt(&claims(json!({"cnf": {"x5t#S256": "a"}}))).unwrap(),
        None
    );
    for bad in [
        json!({"cnf": "abc"}),
        json!({"cnf": {"jkt": 5}}),
        json!({"cnf": null}),
    ] {
        assert!(matches!(
            dpop::confirmation_jkt(&claims(bad)),
            Err(VerifyError::InvalidClaim("cnf"))
        ));
    }
}

/// A small deterministic generator (xorshift64*), so that the mutation test needs no
/// dependency and replays the same inputs every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n).unwrap()).unwrap()
    }
}

#[tokio::test]
async fn mutated_proofs_are_refused_without_panicking() {
    let key = TestKey::es256();
    let jkt = thumbprint(&key);
    let valid = Proof::new(&key).sign().into_bytes();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ {}\"";
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..2000 {
        let mut bytes = valid.clone();
        for _ in 0..=rng.below(3) {
            match rng.below(4) {
                0 => {
                    let i = rng.below(bytes.len());
                    bytes[i] = alphabet[rng.below(alphabet.len())];
                }
                1 => {
                    let i = rng.below(bytes.len());
                    bytes.remove(i);
                }
                2 => {
                    let i = rng.below(bytes.len() + 1);
                    bytes.insert(i, alphabet[rng.below(alphabet.len())]);
                }
                _ => {
                    let cut = rng.below(bytes.len() + 1);
                    bytes.truncate(cut);
                }
            }
        }
        if bytes == valid || bytes.is_empty() {
            continue;
        }
        let Ok(value) = HeaderValue::from_bytes(&bytes) else {
            continue;
        };
        // A fresh verifier each time: a mutant that verified would be accepted, not replayed.
        let url = url();
        let request = DpopRequest::new(&Method::POST, &url).access_token(TOKEN, &jkt);
        let err = verifier()
            .verify([&value], &request, NOW)
            .await
            .expect_err("a changed proof never verifies");
        assert_eq!(
            err.kind(),
            DpopErrorKind::InvalidProof,
            "round {round}: {err}"
        );
    }
    // Random bytes, not derived from a proof.
    for _ in 0..500 {
        let len = rng.below(300);
        let bytes: Vec<u8> = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len())])
            .collect();
        if let Ok(value) = HeaderValue::from_bytes(&bytes) {
            let url = url();
            let request = DpopRequest::new(&Method::GET, &url);
            assert!(verifier().verify([&value], &request, NOW).await.is_err());
        }
    }
}

/// RFC 9449's published proofs, signed outside this crate: the token request example and
/// the protected-resource request example (§7.1, with `ath`), both by the key whose
/// thumbprint §6.1 shows in `cnf.jkt`.
#[tokio::test]
async fn rfc9449_example_proofs_verify() {
    const JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
    const TOKEN_REQUEST: &str = concat!(
        "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0",
        "VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10",
        "NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIj",
        "oiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ",
        ".2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg",
    );
    const RESOURCE_REQUEST: &str = concat!(
        "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0",
        "VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10",
        "NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIj",
        "oiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0ZWRyZXNvdXJjZSIsImlhdC",
        "I6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNFc05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9.2",
        "oW9RP35yRqzhrtNP86L-Ey71EOptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA",
    );
    const ACCESS_TOKEN: &str = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";

    let token_endpoint = Url::parse("https://server.example.com/token").unwrap();
    let request = DpopRequest::new(&Method::POST, &token_endpoint).bound_to(JKT);
    let proof = verifier()
        .verify([&header_value(TOKEN_REQUEST)], &request, 1_562_262_616)
        .await
        .expect("RFC 9449 token request proof");
    assert_eq!(
        (proof.jkt(), proof.jti(), proof.iat(), proof.alg()),
        (JKT, "-BwC3ESc6acc2lTc", 1_562_262_616, Algorithm::ES256)
    );

    let resource = Url::parse("https://resource.example.org/protectedresource").unwrap();
    let request = DpopRequest::new(&Method::GET, &resource).access_token(ACCESS_TOKEN, JKT);
    let proof = verifier()
        .verify([&header_value(RESOURCE_REQUEST)], &request, 1_562_262_618)
        .await
        .expect("RFC 9449 §7.1 proof");
    assert_eq!(proof.jti(), "e1j3V_bKic8-LAEB");

    // The same proof for another token, method or URL is refused.
    let request = DpopRequest::new(&Method::GET, &resource).access_token("another", JKT);
    assert_eq!(
        verifier()
            .verify([&header_value(RESOURCE_REQUEST)], &request, 1_562_262_618)
            .await,
        Err(DpopError::AccessTokenHashMismatch)
    );
    let request = DpopRequest::new(&Method::POST, &resource).access_token(ACCESS_TOKEN, JKT);
    assert_eq!(
        verifier()
            .verify([&header_value(RESOURCE_REQUEST)], &request, 1_562_262_618)
            .await,
        Err(DpopError::MethodMismatch)
    );
    let request = DpopRequest::new(&Method::GET, &token_endpoint).access_token(ACCESS_TOKEN, JKT);
    assert_eq!(
        verifier()
            .verify([&header_value(RESOURCE_REQUEST)], &request, 1_562_262_618)
            .await,
        Err(DpopError::UrlMismatch)
    );
}

#[test]
fn the_verifier_and_its_future_are_send() {
    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    fn assert_send<T: Send>(_: &T) {}
    let verifier = verifier();
    assert_send_sync(&verifier);
    let headers = http::HeaderMap::new();
    let url = url();
    let request = DpopRequest::new(&Method::POST, &url);
    let future = verifier.verify(headers.get_all("dpop"), &request, NOW);
    assert_send(&future);
    let cache: Arc<dyn ReplayCache> = Arc::new(MemoryReplayCache::default());
    assert_send_sync(&cache);
}
