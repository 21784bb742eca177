//! Compact JWS parsing (RFC 7515 §7.1) that refuses every malformed shape without panicking.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::Algorithm;
use crate::claims::{Claims, parse_json_object};
use crate::error::VerifyError;

/// The protected header fields this crate acts on. Everything else is ignored; in particular
/// `jku`, `x5u`, `jwk` and `x5c` are never fetched or trusted: keys come from configuration.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Header {
    pub(crate) alg: String,
    #[serde(default)]
    pub(crate) kid: Option<String>,
    #[serde(default)]
    pub(crate) typ: Option<String>,
    #[serde(default)]
    pub(crate) cty: Option<String>,
    #[serde(default)]
    pub(crate) crit: Option<serde_json::Value>,
    #[serde(default)]
    pub(crate) enc: Option<serde_json::Value>,
    #[serde(default)]
    pub(crate) b64: Option<serde_json::Value>,
}

/// A compact JWS split into its parts, signature not yet checked.
#[derive(Debug)]
pub(crate) struct UnverifiedJws<'a> {
    pub(crate) header: Header,
    /// The decoded header, for readers that need members [`Header`] leaves out.
    pub(crate) header_bytes: Vec<u8>,
    pub(crate) alg: Algorithm,
    /// `BASE64URL(header) || '.' || BASE64URL(payload)`: the bytes that were signed.
    pub(crate) signing_input: &'a [u8],
    pub(crate) payload: Vec<u8>,
    pub(crate) signature: Vec<u8>,
}

impl<'a> UnverifiedJws<'a> {
    /// Splits and decodes `token`. The caller has already bounded its length.
    pub(crate) fn parse(token: &'a str) -> Result<Self, VerifyError> {
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(VerifyError::Malformed("a JWT has exactly three segments"));
        };
        if header_b64.is_empty() || payload_b64.is_empty() || signature_b64.is_empty() {
            return Err(VerifyError::Malformed("empty segment"));
        }
        let header_bytes = decode_segment(header_b64)?;
        let header: Header = parse_json_object(&header_bytes)
            .and_then(|value| {
                serde_json::from_value(serde_json::Value::Object(value)).map_err(|_| ())
            })
            .map_err(|()| VerifyError::Malformed("header is not a valid JSON object"))?;
        check_header(&header)?;
        let alg = header
            .alg
            .parse::<Algorithm>()
            .map_err(|_| VerifyError::unsupported_alg(&header.alg))?;
        let payload = decode_segment(payload_b64)?;
        let signature = decode_segment(signature_b64)?;
        // The signing input is a prefix of the token, so the slice is in bounds.
        let signing_input = token
            .as_bytes()
            .get(..header_b64.len() + 1 + payload_b64.len())
            .ok_or(VerifyError::Malformed("segment bounds"))?;
        Ok(Self {
            header,
            header_bytes,
            alg,
            signing_input,
            payload,
            signature,
        })
    }

    /// Parses the payload as a claim set. Call only after the signature verified.
    pub(crate) fn claims(&self) -> Result<Claims, VerifyError> {
        Claims::from_json_slice(&self.payload)
    }
}

fn check_header(header: &Header) -> Result<(), VerifyError> {
    if header.enc.is_some() {
        return Err(VerifyError::UnsupportedHeader(
            "encrypted tokens (JWE) are not accepted",
        ));
    }
    if header.crit.is_some() {
        // RFC 7515 §4.1.11: a recipient that does not understand a listed extension MUST
        // reject the token. This crate understands none.
        return Err(VerifyError::UnsupportedHeader(
            "crit names an extension this server does not implement",
        ));
    }
    if header.b64.is_some() {
        return Err(VerifyError::UnsupportedHeader(
            "unencoded payloads (b64) are not accepted",
        ));
    }
    if header
        .cty
        .as_deref()
        .is_some_and(|cty| cty.eq_ignore_ascii_case("JWT"))
    {
        return Err(VerifyError::UnsupportedHeader(
            "nested tokens are not accepted",
        ));
    }
    Ok(())
}

/// Strict base64url: the URL-safe alphabet, no padding, no trailing bits.
fn decode_segment(segment: &str) -> Result<Vec<u8>, VerifyError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| VerifyError::Malformed("segment is not base64url without padding"))
}

/// Encodes bytes as base64url without padding.
pub(crate) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(header: &str, payload: &str, sig: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            b64(header.as_bytes()),
            b64(payload.as_bytes()),
            b64(sig)
        )
    }

    #[test]
    fn well_formed_token_parses() {
        let t = token(
            r#"{"alg":"RS256","kid":"k1","typ":"at+jwt"}"#,
            r#"{"sub":"a"}"#,
            b"sig",
        );
        let jws = UnverifiedJws::parse(&t).expect("parses");
        assert_eq!(jws.alg, Algorithm::RS256);
        assert_eq!(jws.header.kid.as_deref(), Some("k1"));
        assert_eq!(jws.signature, b"sig");
        assert!(t.starts_with(std::str::from_utf8(jws.signing_input).expect("ascii")));
    }

    #[test]
    fn wrong_shapes_are_malformed() {
        for bad in [
            "",
            ".",
            "..",
            "a.b",
            "a.b.c.d",
            "a..c",
            ".b.c",
            "a.b.",
            "a.b.c.d.e",
        ] {
            assert!(
                matches!(UnverifiedJws::parse(bad), Err(VerifyError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn padding_and_foreign_alphabets_are_refused() {
        let good = token(r#"{"alg":"RS256"}"#, r#"{"a":1}"#, b"s");
        let padded = format!("{good}==");
        assert!(UnverifiedJws::parse(&padded).is_err());
        let plus = good.replacen('.', "+.", 1);
        assert!(UnverifiedJws::parse(&plus).is_err());
    }

    #[test]
    fn alg_none_and_unknown_algs_are_refused() {
        for alg in ["none", "None", "HS257", "rs256", ""] {
            let t = token(&format!(r#"{{"alg":"{alg}"}}"#), "{}", b"s");
            assert!(
                matches!(
                    UnverifiedJws::parse(&t),
                    Err(VerifyError::UnsupportedAlgorithm { .. })
                ),
                "{alg}"
            );
        }
        let t = token(r#"{"alg":5}"#, "{}", b"s");
        assert!(matches!(
            UnverifiedJws::parse(&t),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn crit_enc_b64_and_nested_are_refused() {
        for header in [
            r#"{"alg":"RS256","crit":["exp"],"exp":1}"#,
            r#"{"alg":"RS256","crit":[]}"#,
            r#"{"alg":"RS256","enc":"A256GCM"}"#,
            r#"{"alg":"RS256","b64":false}"#,
            r#"{"alg":"RS256","cty":"JWT"}"#,
        ] {
            let t = token(header, "{}", b"s");
            assert!(
                matches!(
                    UnverifiedJws::parse(&t),
                    Err(VerifyError::UnsupportedHeader(_))
                ),
                "{header}"
            );
        }
    }

    #[test]
    fn duplicate_members_are_refused() {
        let t = token(r#"{"alg":"RS256","alg":"HS256"}"#, "{}", b"s");
        assert!(matches!(
            UnverifiedJws::parse(&t),
            Err(VerifyError::Malformed(_))
        ));
        assert!(parse_json_object(br#"{"sub":"a","sub":"b"}"#).is_err());
        assert!(parse_json_object(br#"{"sub":"a"}"#).is_ok());
        assert!(parse_json_object(b"[1]").is_err());
        assert!(parse_json_object(b"not json").is_err());
    }
}
