//! Token parsing and verification: arbitrary text, and tokens really signed (by trusted keys
//! and by impostors) over arbitrary headers and payloads, then possibly edited, go through
//! the `Authenticator` with a static-key and HMAC `JwtVerifier`.
//!
//! Invariants: no panic; nothing but an intact token signed by a trusted key is accepted;
//! an accepted token's header is one the crate understands, its claims are exactly the
//! decoded payload, with the right `iss`, a matching `aud` and a live `exp`; the
//! verified-token cache answers as the pipeline does.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use std::sync::{Arc, OnceLock};

use arbitrary::{Arbitrary, Unstructured};
use common::{ISSUER, LEEWAY, Mint, RESOURCE, now, runtime, verifier};
use libfuzzer_sys::fuzz_target;
use mcp_oauth::authenticator::Authenticator;
use mcp_oauth::jose::dangerous::decode_unverified;
use mcp_oauth::verify::JwtVerifier;
use mcp_oauth::{Claims, OAuth, ResourceUrl};
use serde_json::Value;

#[derive(Arbitrary, Debug)]
enum Input {
    /// Any text as a token.
    Raw(String),
    /// A token really signed over arbitrary parts.
    Minted(Mint),
}

struct Fixture {
    /// No cache: every call runs the whole pipeline.
    plain: Authenticator,
    /// The default cache.
    cached: Authenticator,
    resource: ResourceUrl,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let verifier: Arc<JwtVerifier> = Arc::new(verifier());
        Fixture {
            plain: OAuth::builder()
                .verifier(verifier.clone())
                .token_cache(None)
                .build_authenticator()
                .expect("pipeline"),
            cached: Authenticator::new(verifier),
            resource: ResourceUrl::parse(RESOURCE).expect("the resource parses"),
        }
    })
}

/// Whether a time claim sits within a few seconds of a boundary, where two calls a moment
/// apart may legitimately disagree.
fn near_time_boundary(claims: &Claims, now: i64) -> bool {
    let near = |t: i64| (t - now).abs() <= LEEWAY + 3 && (t - now).abs() >= LEEWAY - 3;
    ["exp", "nbf", "iat"]
        .iter()
        .any(|name| claims.numeric_date(name).ok().flatten().is_some_and(near))
}

fn check_accepted(token: &str, header: &[u8], auth: &mcp_oauth::Auth, before: i64) {
    let decoded = decode_unverified(token).expect("an accepted token decodes");
    assert_eq!(
        decoded.claims, auth.claims,
        "claims are the decoded payload"
    );
    let claims = &auth.claims;
    assert_eq!(claims.iss(), Some(ISSUER), "iss is the issuer");
    let resource = &fixture().resource;
    let audiences = claims.audiences().expect("aud is well formed");
    assert!(
        audiences.iter().any(|aud| resource.matches(aud)),
        "aud names the resource: {audiences:?}"
    );
    let exp = claims
        .numeric_date("exp")
        .expect("exp is a number")
        .expect("exp is required");
    assert!(exp + LEEWAY > before - 1, "exp is live: {exp} at {before}");
    for name in ["nbf", "iat"] {
        if let Some(t) = claims.numeric_date(name).expect("a number") {
            assert!(t <= now() + LEEWAY + 1, "{name} is not in the future");
        }
    }
    let subject = claims
        .sub()
        .or_else(|| claims.str("user_id"))
        .or_else(|| claims.str("id"))
        .unwrap_or_default();
    assert_eq!(auth.subject(), subject);
    assert_eq!(auth.access_token.secret(), token);
    // The header: only what the crate understands.
    let header: serde_json::Map<String, Value> =
        serde_json::from_slice(header).expect("an accepted header is a JSON object");
    for refused in ["crit", "enc", "b64"] {
        assert!(
            !header.contains_key(refused),
            "{refused} in an accepted header"
        );
    }
    assert!(
        !header
            .get("cty")
            .and_then(Value::as_str)
            .is_some_and(|cty| cty.eq_ignore_ascii_case("jwt")),
        "nested token accepted"
    );
    assert_eq!(
        header.get("alg").and_then(Value::as_str),
        Some(decoded.alg.as_str())
    );
}

/// When a token decodes, its claims are its payload (the second segment, base64url, parsed
/// strictly) and its `alg` is the header's.
fn check_decoded(token: &str) {
    let Ok(decoded) = decode_unverified(token) else {
        return;
    };
    let mut segments = token.split('.');
    let segment = |s: Option<&str>| {
        base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            s.expect("three segments"),
        )
        .expect("a decoded token's segments are base64url")
    };
    let header = segment(segments.next());
    let payload = segment(segments.next());
    let claims = Claims::from_json_slice(&payload).expect("a decoded token's payload parses");
    assert_eq!(decoded.claims, claims);
    let header: Value = serde_json::from_slice(&header).expect("the header is JSON");
    assert_eq!(
        header.get("alg").and_then(Value::as_str),
        Some(decoded.alg.as_str())
    );
    assert_eq!(
        header.get("kid").and_then(Value::as_str),
        decoded.kid.as_deref()
    );
}

/// Inputs that start with this byte are a token as text (the seeds are real tokens).
const RAW: u8 = 0;

fuzz_target!(|data: &[u8]| {
    let input = match data.split_first() {
        Some((&RAW, rest)) => Input::Raw(String::from_utf8_lossy(rest).into_owned()),
        _ => match Input::arbitrary_take_rest(Unstructured::new(data)) {
            Ok(input) => input,
            Err(_) => return,
        },
    };
    let fx = fixture();
    let (token, header, signed_by_trusted_key) = match &input {
        Input::Raw(text) => {
            // The pieces that read untrusted token bytes, on their own.
            if let Ok(claims) = Claims::from_json_slice(text.as_bytes()) {
                // The strict parser reads what serde_json reads (it only refuses more).
                let plain: serde_json::Map<String, Value> =
                    serde_json::from_slice(text.as_bytes()).expect("strict JSON is JSON");
                assert_eq!(claims.as_map(), &plain);
            }
            check_decoded(text);
            let header = text
                .split('.')
                .next()
                .and_then(|h| {
                    base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, h)
                        .ok()
                })
                .unwrap_or_default();
            (text.clone(), header, common::hmac_signed(text))
        }
        Input::Minted(mint) => {
            let minted = mint.build();
            check_decoded(&minted.token);
            (
                minted.token,
                minted.header,
                minted.intact && mint.key.trusted(),
            )
        }
    };
    let before = now();
    let result = runtime().block_on(fx.plain.authenticate(&token, &fx.resource));
    match &result {
        Ok(auth) => {
            assert!(
                signed_by_trusted_key,
                "accepted a token that is not intact and signed by a trusted key: {input:?}"
            );
            check_accepted(&token, &header, auth, before);
        }
        Err(err) => {
            // A refusal never repeats the token (it goes to logs and error bodies).
            assert!(!err.public_description().is_empty());
            if token.len() >= 64 {
                assert!(!err.to_string().contains(token.as_str()), "{err}");
            }
        }
    }
    // The cached pipeline agrees, on the first call and on the cached second one.
    for _ in 0..2 {
        let again = runtime().block_on(fx.cached.authenticate(&token, &fx.resource));
        match (&result, &again) {
            (Ok(a), Ok(b)) => assert_eq!(a.claims, b.claims),
            (Err(a), Err(b)) => assert_eq!(a.kind(), b.kind()),
            (Ok(auth), Err(_)) | (Err(_), Ok(auth)) => assert!(
                near_time_boundary(&auth.claims, now()),
                "the cache disagrees with the pipeline: {result:?} vs {again:?}"
            ),
        }
    }
});
