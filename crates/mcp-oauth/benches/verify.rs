//! What a token verification costs, beside the physical limit: the signature check of the
//! same bytes with aws-lc-rs alone.
//!
//! For each of RS256, ES256, EdDSA and HS256 (group `verify/<alg>`):
//!
//! - `raw`: `ParsedPublicKey::verify_sig` (or `hmac::verify`) on the token's signing input
//!   and signature, with the key parsed once beforehand, as the library does;
//! - `cold`: [`Authenticator::authenticate`] with the verified-token cache off: the whole
//!   pipeline (size limit, JWS parse, signature, `iss`, audience, times, claim mapping);
//! - `cached`: the same with the default cache, after one verification filled it (hash of
//!   the token, cache look-up, audience and time re-checked).
//!
//! - `jsonwebtoken`: the same token through the `jsonwebtoken` crate (`decode` into a JSON map,
//!   `iss`, `aud`, `exp` checked), a reference point.
//!
//! Last, `interleaved` measures raw, cold and cached again in alternating short rounds and
//! keeps the fastest round of each: ratios that a busy machine disturbs less.
//!
//! The group `reject` measures the refusals: a token that is not a JWT, and an RS256 token
//! whose signature does not verify.
//!
//! ```sh
//! cargo bench -p mcp-oauth --bench verify
//! cargo bench -p mcp-oauth --bench verify -- --quick      # a smoke run
//! ```
//!
//! The token looks like one from a real authorization server (oidc-provider's
//! client_credentials access token: `jti`, `sub`, `iat`, `exp`, `scope`, `client_id`, `iss`,
//! `aud`; header `alg`, `typ: at+jwt`, `kid`).
#![allow(
    missing_docs,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing
)]

use std::hint::black_box;

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use aws_lc_rs::{hmac, rand::SecureRandom as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use mcp_oauth::authenticator::Authenticator;
use mcp_oauth::jose::{Algorithm, Jwk};
use mcp_oauth::testing::TestKey;
use mcp_oauth::verify::JwtVerifier;
use mcp_oauth::{OAuth, ResourceUrl};

const ISSUER: &str = "https://auth.example.com";
const RESOURCE: &str = "https://mcp.example.com/mcp";

/// The physical limit: one signature check with the crypto library, key parsed beforehand.
enum Raw {
    Public(ParsedPublicKey),
    Hmac(Box<hmac::Key>),
}

impl Raw {
    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Self::Public(key) => key.verify_sig(message, signature).is_ok(),
            Self::Hmac(key) => hmac::verify(key, message, signature).is_ok(),
        }
    }
}

fn b64(value: Option<&String>) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(value.expect("JWK member present"))
        .expect("base64url")
}

fn raw_public_key(alg: Algorithm, jwk: &Jwk) -> Raw {
    let parsed = match alg {
        Algorithm::RS256 => {
            let n = b64(jwk.n.as_ref());
            let e = b64(jwk.e.as_ref());
            RsaPublicKeyComponents {
                n: &n[..],
                e: &e[..],
            }
            .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256)
            .expect("RSA key")
        }
        Algorithm::ES256 => {
            let mut point = vec![0x04];
            point.extend(b64(jwk.x.as_ref()));
            point.extend(b64(jwk.y.as_ref()));
            ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point).expect("EC key")
        }
        Algorithm::EdDSA => {
            ParsedPublicKey::new(&signature::ED25519, b64(jwk.x.as_ref())).expect("Ed25519 key")
        }
        other => panic!("no raw public key for {other}"),
    };
    Raw::Public(parsed)
}

/// A `jti` like oidc-provider's: 43 base64url characters.
fn jti() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("random");
    URL_SAFE_NO_PAD.encode(bytes)
}

fn token(key: &TestKey) -> String {
    key.token()
        .claim("jti", jti())
        .sub("svc")
        .scope("mcp:read mcp:write")
        .claim("client_id", "svc")
        .iss(ISSUER)
        .aud(RESOURCE)
        .sign()
}

/// Splits a compact JWS into its signing input and decoded signature.
fn parts(token: &str) -> (&[u8], Vec<u8>) {
    let dot = token.rfind('.').expect("three segments");
    let signature = URL_SAFE_NO_PAD
        .decode(&token[dot + 1..])
        .expect("base64url signature");
    (&token.as_bytes()[..dot], signature)
}

const HMAC_SECRET: &[u8] = b"a shared secret of at least 32 bytes, for HS256";

/// A verifier for `key`: its public JWK, or the shared secret for HS256.
fn verifier(key: &TestKey) -> JwtVerifier {
    let builder = JwtVerifier::builder().issuer(ISSUER);
    match key.public_jwk() {
        Some(jwk) => builder.jwk(&jwk),
        None => builder.hmac_secret(HMAC_SECRET),
    }
    .build()
    .expect("verifier")
}

fn raw(key: &TestKey) -> Raw {
    match key.public_jwk() {
        Some(jwk) => raw_public_key(key.key().alg(), &jwk),
        None => Raw::Hmac(Box::new(hmac::Key::new(hmac::HMAC_SHA256, HMAC_SECRET))),
    }
}

/// The same check with the `jsonwebtoken` crate (already a dependency): a reference point for
/// what a popular JWT library costs. Claims into a JSON map, `iss`, `aud` and `exp` checked.
fn jsonwebtoken_check(key: &TestKey) -> (jsonwebtoken::DecodingKey, jsonwebtoken::Validation) {
    use jsonwebtoken::{Algorithm as J, DecodingKey};
    let (decoding, alg) = match key.public_jwk() {
        None => (DecodingKey::from_secret(HMAC_SECRET), J::HS256),
        Some(jwk) => match key.key().alg() {
            Algorithm::RS256 => (
                DecodingKey::from_rsa_components(
                    jwk.n.as_deref().expect("n"),
                    jwk.e.as_deref().expect("e"),
                )
                .expect("RSA key"),
                J::RS256,
            ),
            Algorithm::ES256 => (
                DecodingKey::from_ec_components(
                    jwk.x.as_deref().expect("x"),
                    jwk.y.as_deref().expect("y"),
                )
                .expect("EC key"),
                J::ES256,
            ),
            Algorithm::EdDSA => (
                DecodingKey::from_ed_components(jwk.x.as_deref().expect("x")).expect("Ed key"),
                J::EdDSA,
            ),
            other => panic!("no jsonwebtoken key for {other}"),
        },
    };
    let mut validation = jsonwebtoken::Validation::new(alg);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[RESOURCE]);
    (decoding, validation)
}

type JsonMap = serde_json::Map<String, serde_json::Value>;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn bench_verify(c: &mut Criterion) {
    let rt = runtime();
    let resource = ResourceUrl::parse(RESOURCE).expect("resource");
    for (name, key) in [
        ("RS256", TestKey::rs256()),
        ("ES256", TestKey::es256()),
        ("EdDSA", TestKey::ed25519()),
        ("HS256", TestKey::hs256(HMAC_SECRET)),
    ] {
        let token = token(&key);
        let raw = raw(&key);
        let (message, sig) = parts(&token);
        assert!(raw.verify(message, &sig), "{name}: raw verification");

        let cold = OAuth::builder()
            .verifier(verifier(&key))
            .token_cache(None)
            .build_authenticator()
            .expect("pipeline");
        let cached = Authenticator::new(verifier(&key));
        for auth in [&cold, &cached] {
            let verified = rt
                .block_on(auth.authenticate(&token, &resource))
                .expect("the token verifies");
            assert_eq!(verified.subject(), "svc");
        }
        assert_eq!(
            cached.cached_tokens(),
            1,
            "{name}: the cache holds the token"
        );
        let (jwt_key, jwt_validation) = jsonwebtoken_check(&key);
        let decoded = jsonwebtoken::decode::<JsonMap>(&token, &jwt_key, &jwt_validation)
            .expect("jsonwebtoken verifies the token");
        assert_eq!(decoded.claims.get("sub"), Some(&serde_json::json!("svc")));

        let mut group = c.benchmark_group(format!("verify/{name}"));
        group.bench_function("raw", |b| {
            b.iter(|| raw.verify(black_box(message), black_box(&sig)));
        });
        group.bench_function("cold", |b| {
            b.to_async(&rt)
                .iter(|| cold.authenticate(black_box(&token), &resource));
        });
        group.bench_function("cached", |b| {
            b.to_async(&rt)
                .iter(|| cached.authenticate(black_box(&token), &resource));
        });
        group.bench_function("jsonwebtoken", |b| {
            b.iter(|| {
                jsonwebtoken::decode::<JsonMap>(black_box(&token), &jwt_key, &jwt_validation)
            });
        });
        group.finish();
    }
}

fn bench_reject(c: &mut Criterion) {
    let rt = runtime();
    let resource = ResourceUrl::parse(RESOURCE).expect("resource");
    let key = TestKey::rs256();
    let auth = Authenticator::new(
        JwtVerifier::builder()
            .issuer(ISSUER)
            .jwk(&key.public_jwk().expect("public key"))
            .build()
            .expect("verifier"),
    );
    let good = token(&key);
    // The same token with one bit of its signature flipped: the signature is still below the
    // modulus, so the check runs to the end (a signature from another key may be larger than
    // this key's modulus, and is then refused before any arithmetic).
    let forged = {
        let (signing_input, mut sig) = parts(&good);
        if let Some(last) = sig.last_mut() {
            *last ^= 1;
        }
        format!(
            "{}.{}",
            std::str::from_utf8(signing_input).expect("ascii"),
            URL_SAFE_NO_PAD.encode(sig)
        )
    };
    assert!(rt.block_on(auth.authenticate(&good, &resource)).is_ok());
    for bad in ["not-a-jwt", forged.as_str()] {
        assert!(rt.block_on(auth.authenticate(bad, &resource)).is_err());
    }
    let mut group = c.benchmark_group("reject");
    group.bench_function("malformed", |b| {
        b.to_async(&rt)
            .iter(|| auth.authenticate(black_box("not-a-jwt"), &resource));
    });
    group.bench_function("bad_signature_RS256", |b| {
        b.to_async(&rt)
            .iter(|| auth.authenticate(black_box(&forged), &resource));
    });
    group.finish();
}

/// Whether this is `cargo bench` (not `cargo test --benches`) and the filter, if any, names
/// `interleaved`.
fn interleaved_wanted() -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    args.iter().any(|a| a == "--bench")
        && (filters.is_empty() || filters.iter().any(|f| "interleaved".contains(f.as_str())))
}

/// The ratios again, measured so that a busy machine disturbs them less: `raw`, `cold` and
/// `cached` take turns in short rounds (200 × 500 verifications or 2 ms, whichever is more),
/// and the fastest round of each counts. Criterion's medians above come from separate
/// minutes; on a shared two-core machine they drift apart. Prints one `INTERLEAVED_JSON`
/// line that bench/run reads.
fn interleaved(_c: &mut Criterion) {
    if !interleaved_wanted() {
        return;
    }
    let rt = runtime();
    let resource = ResourceUrl::parse(RESOURCE).expect("resource");
    let mut rows = Vec::new();
    for (name, key) in [
        ("RS256", TestKey::rs256()),
        ("ES256", TestKey::es256()),
        ("EdDSA", TestKey::ed25519()),
        ("HS256", TestKey::hs256(HMAC_SECRET)),
    ] {
        let token = token(&key);
        let raw = raw(&key);
        let (message, sig) = parts(&token);
        let cold = OAuth::builder()
            .verifier(verifier(&key))
            .token_cache(None)
            .build_authenticator()
            .expect("pipeline");
        let cached = Authenticator::new(verifier(&key));
        assert!(rt.block_on(cached.authenticate(&token, &resource)).is_ok());
        let enough = |n: u32, start: std::time::Instant| {
            n >= 500 && start.elapsed() >= std::time::Duration::from_millis(2)
        };
        let ns_per =
            |start: std::time::Instant, n: u32| start.elapsed().as_secs_f64() * 1e9 / f64::from(n);
        let mut best = [f64::MAX; 3];
        for _ in 0..200 {
            let start = std::time::Instant::now();
            let mut n = 0;
            while !enough(n, start) {
                black_box(raw.verify(black_box(message), black_box(&sig)));
                n += 1;
            }
            let raw_ns = ns_per(start, n);
            let pipeline = |auth: &Authenticator| {
                rt.block_on(async {
                    let start = std::time::Instant::now();
                    let mut n = 0;
                    while !enough(n, start) {
                        black_box(
                            auth.authenticate(black_box(&token), &resource)
                                .await
                                .is_ok(),
                        );
                        n += 1;
                    }
                    ns_per(start, n)
                })
            };
            let times = [raw_ns, pipeline(&cold), pipeline(&cached)];
            for (b, t) in best.iter_mut().zip(times) {
                *b = b.min(t);
            }
        }
        let [raw_ns, cold_ns, cached_ns] = best;
        println!(
            "interleaved/{name}: raw {:.2} µs, cold {:.2} µs (× {:.3}, +{:.2} µs), cached {:.0} ns, token {} bytes",
            raw_ns / 1000.0,
            cold_ns / 1000.0,
            cold_ns / raw_ns,
            (cold_ns - raw_ns) / 1000.0,
            cached_ns,
            token.len()
        );
        rows.push(serde_json::json!({
            "alg": name, "raw_ns": raw_ns, "cold_ns": cold_ns, "cached_ns": cached_ns,
            "ratio": cold_ns / raw_ns, "token_bytes": token.len(),
        }));
    }
    println!("INTERLEAVED_JSON {}", serde_json::Value::Array(rows));
}

criterion_group!(benches, bench_verify, bench_reject, interleaved);
criterion_main!(benches);
