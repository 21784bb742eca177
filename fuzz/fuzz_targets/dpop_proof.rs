//! DPoP proofs (RFC 9449) at a resource server: arbitrary bytes as one or several `DPoP`
//! header values, and proofs really signed over arbitrary JOSE headers and claims, go
//! through `DpopVerifier::verify` for `POST https://mcp.example.com/mcp`.
//!
//! The first byte of an input says what the rest is:
//!
//! - bit 0 clear: raw header bytes; with bit 1 set they are split at each `\n` into several
//!   values (bytes that are not a valid header value are left out). No access token.
//! - bit 0 set: `<JOSE header JSON>\n<claims JSON>`, signed (ES256) by the target's key,
//!   for a request presenting an access token bound to that key. In the JSON, `"$JWK"` is
//!   replaced by the key's public JWK and `$ATH` by the token's hash. With bit 1 set the
//!   proof is sent twice.
//!
//! Invariants: no panic; only a single header value is ever accepted; an accepted proof's
//! `jkt` is the RFC 7638 thumbprint of the `jwk` in its header (and, with a token, the
//! token's binding); its `typ` is `dpop+jwt` (as a media type) and its `alg` the one reported; its `htm` is
//! `POST` and its `htu` names the request URL; its `jti` and `iat` are the ones reported,
//! `iat` inside the window; with a token, `ath` is the token's hash; and the same proof a
//! second time is a replay.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::runtime;
use http::{HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use mcp_oauth::dpop::{self, DpopError, DpopProof, DpopRequest, DpopVerifier};
use mcp_oauth::jose::Jwk;
use mcp_oauth::testing::TestKey;
use serde_json::Value;
use url::Url;

/// The request URL every proof is checked against.
const HTU: &str = "https://mcp.example.com/mcp";
/// The verifier's clock; the seeds' proofs are issued at this time.
const NOW: i64 = 1_800_000_000;
/// The access token a bound request presents.
const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln";
/// The verifier's window (the defaults): `max_age` back, `leeway` ahead.
const MAX_AGE: i64 = 60;
const LEEWAY: i64 = 60;

struct Fixture {
    key: TestKey,
    jwk_json: String,
    jkt: String,
    url: Url,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let key = TestKey::es256();
        let jwk = key.public_jwk().expect("an asymmetric key");
        Fixture {
            jwk_json: serde_json::to_string(&jwk).expect("a JWK serializes"),
            jkt: jwk.thumbprint().expect("a thumbprint"),
            key,
            url: Url::parse(HTU).expect("the request URL parses"),
        }
    })
}

/// RFC 3986 §6.2.2.1–6.2.2.2, independently of the crate: unreserved characters decoded,
/// other escapes with uppercase hex.
fn normalize_path(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: Option<&u8>| b.and_then(|b| char::from(*b).to_digit(16));
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2)))
        {
            let c = u8::try_from(hi * 16 + lo).expect("two hex digits fit a byte");
            if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
                out.push(char::from(c));
            } else {
                out.push_str(&format!("%{c:02X}"));
            }
            i += 3;
        } else {
            out.push(char::from(bytes[i]));
            i += 1;
        }
    }
    out
}

/// The invariants of an accepted proof.
fn check_accepted(value: &HeaderValue, proof: &DpopProof, bound: bool) {
    let text = value.to_str().expect("an accepted proof is ASCII");
    let mut parts = text.split('.');
    let (Some(header), Some(claims), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        panic!("an accepted proof has three parts");
    };
    let decode = |part: &str| -> Value {
        let bytes = URL_SAFE_NO_PAD.decode(part).expect("base64url");
        serde_json::from_slice(&bytes).expect("JSON")
    };
    let (header, claims) = (decode(header), decode(claims));

    // A media type: case-insensitive, `application/` implied (RFC 7515 §4.1.9).
    let typ = header["typ"].as_str().expect("typ is a string").to_ascii_lowercase();
    assert!(
        typ == "dpop+jwt" || typ == "application/dpop+jwt",
        "typ is dpop+jwt: {typ}"
    );
    assert_eq!(header["alg"], proof.alg().as_str());
    let jwk: Jwk = serde_json::from_value(header["jwk"].clone()).expect("the jwk parses");
    assert_eq!(
        jwk.thumbprint().expect("a thumbprint"),
        proof.jkt(),
        "jkt is the thumbprint of the proof's key"
    );
    if bound {
        assert_eq!(proof.jkt(), fixture().jkt, "jkt is the token's binding");
        assert_eq!(claims["ath"], dpop::access_token_hash(TOKEN));
    }

    assert_eq!(claims["htm"], "POST", "htm is the request method");
    let htu = Url::parse(claims["htu"].as_str().expect("htu is a string")).expect("htu parses");
    let url = &fixture().url;
    assert_eq!(htu.scheme(), url.scheme());
    assert_eq!(htu.username(), "");
    assert_eq!(htu.password(), None);
    assert_eq!(htu.host_str(), url.host_str());
    assert_eq!(htu.port_or_known_default(), url.port_or_known_default());
    assert_eq!(normalize_path(htu.path()), url.path(), "htu names the request");

    assert_eq!(claims["jti"], proof.jti());
    assert_eq!(claims["iat"].as_i64(), Some(proof.iat()));
    assert!(NOW - proof.iat() <= MAX_AGE && proof.iat() - NOW <= LEEWAY);
}

/// The values to send, and whether the request presents the bound token.
fn values(data: &[u8]) -> Option<(Vec<HeaderValue>, bool)> {
    let (&mode, rest) = data.split_first()?;
    let several = mode & 2 != 0;
    if mode & 1 == 0 {
        let values = if several {
            rest.split(|b| *b == b'\n')
                .filter_map(|part| HeaderValue::from_bytes(part).ok())
                .collect()
        } else {
            HeaderValue::from_bytes(rest).ok().into_iter().collect()
        };
        return Some((values, false));
    }
    let text = std::str::from_utf8(rest).ok()?;
    let (header, claims) = text.split_once('\n')?;
    let fixture = fixture();
    let ath = dpop::access_token_hash(TOKEN);
    let fill = |json: &str| json.replace("\"$JWK\"", &fixture.jwk_json).replace("$ATH", &ath);
    let proof = fixture
        .key
        .key()
        .sign_compact(fill(header).as_bytes(), fill(claims).as_bytes());
    let value = HeaderValue::from_str(&proof).ok()?;
    let copies = if several { 2 } else { 1 };
    Some((vec![value; copies], true))
}

fuzz_target!(|data: &[u8]| {
    let Some((values, bound)) = values(data) else {
        return;
    };
    let fixture = fixture();
    // A verifier per input, so that an input's outcome does not depend on the ones before.
    let verifier = DpopVerifier::builder().build().expect("the verifier builds");
    let request = if bound {
        DpopRequest::new(&Method::POST, &fixture.url).access_token(TOKEN, &fixture.jkt)
    } else {
        DpopRequest::new(&Method::POST, &fixture.url)
    };
    runtime().block_on(async {
        let Ok(proof) = verifier.verify(&values, &request, NOW).await else {
            return;
        };
        assert_eq!(values.len(), 1, "only a single DPoP header is accepted");
        check_accepted(&values[0], &proof, bound);
        assert_eq!(
            verifier.verify(&values, &request, NOW).await,
            Err(DpopError::Replayed),
            "the same proof a second time is a replay"
        );
    });
});
