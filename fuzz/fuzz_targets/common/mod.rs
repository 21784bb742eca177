//! What several targets share: the keys, a runtime, and structured token input.
//!
//! Heavy objects (keys, runtimes, configurations) are built once per process in a
//! `OnceLock`; everything an input decides is rebuilt per input, so that a crash
//! reproduces from its input file alone.

#![allow(dead_code)] // each target uses part of this module

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use mcp_oauth::jose::Algorithm;
use mcp_oauth::testing::TestKey;
use mcp_oauth::verify::JwtVerifier;

/// The issuer the verifiers accept.
pub const ISSUER: &str = "https://auth.example.com";
/// The protected resource (the MCP endpoint).
pub const RESOURCE: &str = "https://mcp.example.com/mcp";
/// Its protected-resource metadata URL.
pub const METADATA_URL: &str = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";
/// The HMAC secret the verifiers accept.
pub const SECRET: &[u8] = b"fuzzing-hmac-secret-of-at-least-32-bytes";
/// Another secret of the same length: tokens signed with it must never verify.
pub const WRONG_SECRET: &[u8] = b"another-hmac-secret-of-at-least-32-bytes";
/// The leeway of the authenticators (the default).
pub const LEEWAY: i64 = 60;

/// The keys: trusted ones (in the verifier's key set or its HMAC secret) and impostors.
pub struct Keys {
    pub es: TestKey,
    pub ed: TestKey,
    pub hs: TestKey,
    /// Not in any key set, but with the same `kid` as `es`.
    pub es_impostor: TestKey,
    pub hs_wrong: TestKey,
    /// The JWKS document of the trusted asymmetric keys (an RSA key included, so that
    /// RS/PS tokens reach the RSA verification path).
    pub jwks_json: String,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let es = TestKey::es256();
        let ed = TestKey::ed25519();
        let rs = TestKey::rs256();
        let es_impostor = TestKey::from_key(
            mcp_oauth::jose::SigningKey::generate(Algorithm::ES256)
                .expect("key generation works")
                .with_kid(es.kid()),
        );
        let jwks_json =
            serde_json::to_string(&TestKey::jwks(&[&es, &ed, &rs])).expect("a JWKS serializes");
        Keys {
            es,
            ed,
            hs: TestKey::hs256(SECRET),
            es_impostor,
            hs_wrong: TestKey::hs256(WRONG_SECRET),
            jwks_json,
        }
    })
}

/// A current-thread runtime, built once.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

/// A verifier for the trusted keys: the JWKS (ES256, EdDSA, RS256) and the HMAC secret.
pub fn verifier() -> JwtVerifier {
    JwtVerifier::builder()
        .issuer(ISSUER)
        .jwks_json(&keys().jwks_json)
        .hmac_secret(SECRET)
        .build()
        .expect("the verifier builds")
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Which key signs a minted token.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyChoice {
    Es,
    Ed,
    Hs,
    EsImpostor,
    HsWrong,
}

impl KeyChoice {
    pub fn key(self) -> &'static TestKey {
        let k = keys();
        match self {
            Self::Es => &k.es,
            Self::Ed => &k.ed,
            Self::Hs => &k.hs,
            Self::EsImpostor => &k.es_impostor,
            Self::HsWrong => &k.hs_wrong,
        }
    }

    /// Whether a signature of this key may verify.
    pub fn trusted(self) -> bool {
        matches!(self, Self::Es | Self::Ed | Self::Hs)
    }
}

/// Words the tokens and requests are made of, so that the fuzzer reaches deep paths fast.
pub const WORDS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "scope",
    "scp",
    "client_id",
    "azp",
    "jti",
    "sid",
    "typ",
    "alg",
    "kid",
    "cty",
    "crit",
    "enc",
    "b64",
    "jku",
    "x5u",
    "jwk",
    "x5c",
    "zip",
    "at+jwt",
    "application/at+jwt",
    "JWT",
    "jwt",
    "none",
    "HS256",
    "HS384",
    "RS256",
    "PS256",
    "ES256",
    "ES384",
    "EdDSA",
    "mcp:read",
    "mcp:write",
    "admin",
    "mcp:read admin",
    ISSUER,
    "https://auth.example.com/",
    RESOURCE,
    "https://mcp.example.com/mcp/",
    "HTTPS://MCP.EXAMPLE.COM/mcp",
    "https://mcp.example.com",
    "https://mcp.example.com/mcpx",
    "https://other.example.com/mcp",
    "alice",
    "",
    " ",
];

/// A string: a known word or arbitrary text.
#[derive(Arbitrary, Debug, Clone)]
pub enum Text {
    Word(u8),
    Raw(String),
}

impl Text {
    pub fn resolve(&self) -> String {
        match self {
            Self::Word(i) => WORDS
                .get(usize::from(*i) % WORDS.len())
                .copied()
                .unwrap_or_default()
                .to_owned(),
            Self::Raw(s) => s.clone(),
        }
    }
}

/// A JSON value, written out by hand so that objects may repeat a member name.
#[derive(Arbitrary, Debug, Clone)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Now plus this many seconds.
    Time(i32),
    Str(Text),
    /// The signing key's algorithm.
    KeyAlg,
    /// The signing key's id.
    KeyKid,
    Arr(Vec<Json>),
    Obj(Vec<(Text, Json)>),
}

impl Json {
    pub fn write(&self, key: &TestKey, out: &mut String) {
        match self {
            Self::Null => out.push_str("null"),
            Self::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Self::Int(i) => out.push_str(&i.to_string()),
            Self::Float(f) => match serde_json::Number::from_f64(*f) {
                Some(n) => out.push_str(&n.to_string()),
                None => out.push_str("0.5"),
            },
            Self::Time(offset) => out.push_str(&(now() + i64::from(*offset)).to_string()),
            Self::Str(text) => write_str(&text.resolve(), out),
            Self::KeyAlg => write_str(key.key().alg().as_str(), out),
            Self::KeyKid => write_str(key.kid(), out),
            Self::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(key, out);
                }
                out.push(']');
            }
            Self::Obj(members) => write_object(members, key, out),
        }
    }
}

pub fn write_str(s: &str, out: &mut String) {
    out.push_str(&serde_json::Value::String(s.to_owned()).to_string());
}

pub fn write_object(members: &[(Text, Json)], key: &TestKey, out: &mut String) {
    out.push('{');
    for (i, (name, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(&name.resolve(), out);
        out.push(':');
        value.write(key, out);
    }
    out.push('}');
}

/// A token header or payload: an object (members in order, repeats allowed) or raw bytes.
#[derive(Arbitrary, Debug, Clone)]
pub enum Part {
    Object(Vec<(Text, Json)>),
    Raw(Vec<u8>),
}

impl Part {
    pub fn bytes(&self, key: &TestKey) -> Vec<u8> {
        match self {
            Self::Object(members) => {
                let mut out = String::new();
                write_object(members, key, &mut out);
                out.into_bytes()
            }
            Self::Raw(bytes) => bytes.clone(),
        }
    }
}

/// A token signed by one of the keys, then possibly edited byte by byte.
#[derive(Arbitrary, Debug, Clone)]
pub struct Mint {
    pub key: KeyChoice,
    pub header: Part,
    pub payload: Part,
    /// (position, byte): overwrite the byte at `position % len`.
    pub edits: Vec<(u16, u8)>,
}

pub struct Minted {
    pub token: String,
    /// Whether the token is exactly what the key signed.
    pub intact: bool,
    pub header: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Mint {
    pub fn build(&self) -> Minted {
        let key = self.key.key();
        let header = self.header.bytes(key);
        let payload = self.payload.bytes(key);
        let signed = key.key().sign_compact(&header, &payload);
        let mut bytes = signed.clone().into_bytes();
        for (pos, byte) in &self.edits {
            if bytes.is_empty() {
                break;
            }
            let at = usize::from(*pos) % bytes.len();
            if let Some(b) = bytes.get_mut(at) {
                *b = *byte;
            }
        }
        let token = String::from_utf8_lossy(&bytes).into_owned();
        Minted {
            intact: token == signed,
            token,
            header,
            payload,
        }
    }
}

/// Whether `token` is a compact JWS whose signature the HMAC secret verifies: a token text
/// (a seed, say) can be genuinely signed, since the secret is in this file.
pub fn hmac_signed(token: &str) -> bool {
    static SET: OnceLock<mcp_oauth::jose::KeySet> = OnceLock::new();
    let set = SET.get_or_init(|| {
        mcp_oauth::jose::KeySet::new(vec![
            mcp_oauth::jose::VerifyingKey::hmac(SECRET, mcp_oauth::jose::Algorithms::hmac(), None)
                .expect("an HMAC key"),
        ])
    });
    mcp_oauth::jose::dangerous::decode_unverified(token).is_ok_and(|t| t.verify_with(set).is_ok())
}
