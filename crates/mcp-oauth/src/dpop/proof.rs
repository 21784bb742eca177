//! Reading one proof (RFC 9449 §4.2, §4.3 steps 2–7): a compact JWS of `typ: dpop+jwt`,
//! an allowed asymmetric `alg`, a public `jwk` that verifies its signature, and the claims.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::DpopError;
use crate::claims::{Claims, parse_json_object};
use crate::error::{VerifyError, truncate};
use crate::jose::jws::UnverifiedJws;
use crate::jose::{Algorithm, Algorithms, Jwk, VerifyingKey};

/// The longest `jti` accepted, in bytes. RFC 9449 asks for at least 96 bits of randomness
/// (16 base64url characters); UUIDs are 36.
pub const MAX_JTI_LEN: usize = 256;

/// JWK members that hold private or symmetric key material (RFC 7518 §6.2.2, §6.3.2, §6.4;
/// RFC 8037 §2). A proof's `jwk` must carry none of them.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// A proof whose signature verified with its own key, claims read but not yet checked
/// against the request.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) alg: Algorithm,
    pub(crate) jkt: String,
    pub(crate) jti: String,
    pub(crate) htm: String,
    pub(crate) htu: String,
    pub(crate) iat: i64,
    pub(crate) ath: Option<String>,
    pub(crate) nonce: Option<String>,
}

pub(crate) fn parse(value: &str, allowed: Algorithms) -> Result<Parsed, DpopError> {
    let jws = UnverifiedJws::parse(value).map_err(|err| match err {
        VerifyError::Malformed(what) | VerifyError::UnsupportedHeader(what) => {
            DpopError::Malformed(what)
        }
        VerifyError::UnsupportedAlgorithm { alg } => DpopError::UnsupportedAlgorithm { alg },
        _ => DpopError::Malformed("not a compact JWS"),
    })?;
    // Member names are unique at every depth (the jwk is an object inside the header), so
    // that no other reader of this proof sees another key or claim than this one does.
    if !unique_members_everywhere(&jws.header_bytes) || !unique_members_everywhere(&jws.payload) {
        return Err(DpopError::Malformed("a JSON member name is used twice"));
    }
    if !jws.header.typ.as_deref().is_some_and(is_dpop_type) {
        return Err(DpopError::InvalidType);
    }
    if !allowed.contains(jws.alg) {
        return Err(DpopError::UnsupportedAlgorithm {
            alg: jws.alg.as_str().to_owned(),
        });
    }
    let header = parse_json_object(&jws.header_bytes)
        .map_err(|()| DpopError::Malformed("the header is not a JSON object"))?;
    let jwk = public_jwk(&header)?;
    let key = VerifyingKey::from_jwk(&jwk, [jws.alg].into_iter().collect())
        .map_err(|err| DpopError::InvalidKey(truncate(&err.to_string())))?;
    if !key.verify(jws.alg, jws.signing_input, &jws.signature) {
        return Err(DpopError::InvalidSignature);
    }
    let jkt = jwk
        .thumbprint()
        .map_err(|err| DpopError::InvalidKey(truncate(&err.to_string())))?;
    let claims = Claims::from_json_slice(&jws.payload)
        .map_err(|_| DpopError::Malformed("the claims are not a JSON object"))?;
    let jti = required_str(&claims, "jti")?;
    if jti.is_empty() || jti.len() > MAX_JTI_LEN {
        return Err(DpopError::InvalidClaim("jti"));
    }
    let iat = match claims.numeric_date("iat") {
        Ok(Some(iat)) => iat,
        Ok(None) => return Err(DpopError::MissingClaim("iat")),
        Err(_) => return Err(DpopError::InvalidClaim("iat")),
    };
    Ok(Parsed {
        alg: jws.alg,
        jkt,
        jti: jti.to_owned(),
        htm: required_str(&claims, "htm")?.to_owned(),
        htu: required_str(&claims, "htu")?.to_owned(),
        iat,
        ath: optional_str(&claims, "ath")?.map(str::to_owned),
        nonce: optional_str(&claims, "nonce")?.map(str::to_owned),
    })
}

/// `dpop+jwt`, compared as a media type: case-insensitively, `application/` implied
/// (RFC 7515 §4.1.9).
fn is_dpop_type(typ: &str) -> bool {
    typ.eq_ignore_ascii_case("dpop+jwt") || typ.eq_ignore_ascii_case("application/dpop+jwt")
}

/// The `jwk` header: an object with public members only, as a [`Jwk`].
fn public_jwk(header: &Map<String, Value>) -> Result<Jwk, DpopError> {
    let Some(value) = header.get("jwk") else {
        return Err(DpopError::InvalidKey("the header has no jwk".into()));
    };
    let Value::Object(members) = value else {
        return Err(DpopError::InvalidKey("jwk is not a JSON object".into()));
    };
    if PRIVATE_MEMBERS
        .iter()
        .any(|name| members.contains_key(*name))
    {
        return Err(DpopError::InvalidKey(
            "jwk holds private key material".into(),
        ));
    }
    serde_json::from_value(value.clone())
        .map_err(|_| DpopError::InvalidKey("jwk members have the wrong types".into()))
}

fn required_str<'c>(claims: &'c Claims, name: &'static str) -> Result<&'c str, DpopError> {
    optional_str(claims, name)?.ok_or(DpopError::MissingClaim(name))
}

fn optional_str<'c>(claims: &'c Claims, name: &'static str) -> Result<Option<&'c str>, DpopError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(DpopError::InvalidClaim(name)),
    }
}

/// Whether `bytes` is JSON whose objects, at every depth, use each member name once.
/// serde_json's recursion limit bounds the depth.
fn unique_members_everywhere(bytes: &[u8]) -> bool {
    serde_json::from_slice::<Strict>(bytes).is_ok()
}

struct Strict;

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON without duplicate member names")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_str<E>(self, _: &str) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        while seq.next_element::<Strict>()?.is_some() {}
        Ok(Strict)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key) {
                return Err(de::Error::custom("duplicate member name"));
            }
            map.next_value::<Strict>()?;
        }
        Ok(Strict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_found_at_any_depth() {
        assert!(unique_members_everywhere(
            br#"{"a":{"b":[{"c":1,"d":2}]},"e":null}"#
        ));
        assert!(!unique_members_everywhere(br#"{"a":1,"a":1}"#));
        assert!(!unique_members_everywhere(br#"{"jwk":{"x":"1","x":"2"}}"#));
        assert!(!unique_members_everywhere(br#"{"a":[{"b":1,"b":2}]}"#));
        assert!(!unique_members_everywhere(b"{"));
        // Deep nesting is refused by the parser's recursion limit, not by a stack overflow.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(!unique_members_everywhere(deep.as_bytes()));
    }

    #[test]
    fn dpop_type_is_a_media_type() {
        for typ in [
            "dpop+jwt",
            "DPoP+JWT",
            "application/dpop+jwt",
            "Application/DPOP+jwt",
        ] {
            assert!(is_dpop_type(typ), "{typ}");
        }
        for typ in [
            "",
            "jwt",
            "JWT",
            "at+jwt",
            "dpop",
            "dpop+jwt ",
            "text/dpop+jwt",
            "application/éop+jwt",
        ] {
            assert!(!is_dpop_type(typ), "{typ}");
        }
    }
}
